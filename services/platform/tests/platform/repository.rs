//! The repository: commands on one stream are serialised in the process and committed in
//! batches, in order, each answered on its own; refusals, repeated request ids and races with
//! another process each affect only their own command.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use kith_platform::aggregate::{Codec, Decider, Rejected, Repository};
use kith_platform::eventlog::{CommandKey, EventLog, Metadata, NewEvent, RecordedEvent};
use kith_platform::{Error, Result};
use uuid::Uuid;

use crate::helpers::log;

/// A running total that refuses to add zero.
struct Total;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Added(u64);

impl Decider for Total {
    type State = Vec<u64>;
    type Event = Added;
    type Command = u64;
    type Error = &'static str;
    const STREAM_TYPE: &'static str = "total";

    fn evolve(mut state: Vec<u64>, event: &Added) -> Vec<u64> {
        state.push(event.0);
        state
    }

    fn decide(_: &Vec<u64>, command: &u64) -> Result<Vec<Added>, &'static str> {
        if *command == 0 {
            Err("zero adds nothing")
        } else {
            Ok(vec![Added(*command)])
        }
    }

    fn knows(event_type: &str) -> bool {
        event_type.starts_with("kith.test.v1.")
    }
}

struct Bytes;

#[async_trait]
impl Codec<Total> for Bytes {
    async fn encode(&self, _: &str, events: &[Added]) -> Result<Vec<NewEvent>> {
        Ok(events
            .iter()
            .map(|e| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "kith.test.v1.Added".into(),
                payload: e.0.to_be_bytes().to_vec(),
            })
            .collect())
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Added>> {
        events
            .iter()
            .map(|e| {
                let bytes: [u8; 8] = e
                    .payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Codec("not eight bytes".into()))?;
                Ok(Added(u64::from_be_bytes(bytes)))
            })
            .collect()
    }

    fn erased_subjects(&self, _: &str, _: &[Added]) -> Vec<String> {
        Vec::new()
    }
}

async fn run(
    repository: &Repository<Total, Bytes>,
    value: u64,
    key: Option<String>,
) -> Result<kith_platform::eventlog::Appended, Rejected<&'static str>> {
    // The request's content is the value: the same key with another value is another request.
    let key = key.map(|key| CommandKey::new(key, value.to_be_bytes().to_vec()));
    repository
        .execute("total-1", key.as_ref(), &Metadata::default(), &value)
        .await
}

async fn stored(log: &EventLog) -> (Vec<u64>, Vec<i64>, usize) {
    let events = log.read_stream("total-1", 0).await.expect("read");
    let values = Bytes.decode(&events).await.expect("decode");
    let versions = events.iter().map(|e| e.version).collect();
    let mut transactions: Vec<i64> = events.iter().map(|e| e.transaction_id).collect();
    transactions.dedup();
    (
        values.into_iter().map(|a| a.0).collect(),
        versions,
        transactions.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_stream_commit_together_in_order() {
    let (_db, log) = log().await;
    let repository = Arc::new(Repository::new(log.clone(), Bytes));
    let results = join_all((1..=200u64).map(|value| {
        let repository = Arc::clone(&repository);
        async move {
            (
                value,
                run(&repository, value, Some(format!("k{value}"))).await,
            )
        }
    }))
    .await;
    let mut versions: Vec<i64> = results
        .iter()
        .map(|(_, r)| r.as_ref().expect("appended").version)
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=200).collect::<Vec<_>>());
    let (values, stored_versions, commits) = stored(&log).await;
    assert_eq!(stored_versions, (1..=200).collect::<Vec<_>>());
    // Each reply names the version its own event landed at.
    for (value, result) in &results {
        let version = result.as_ref().expect("appended").version;
        assert_eq!(
            values[usize::try_from(version - 1).expect("version")],
            *value
        );
    }
    assert!(
        commits < 200,
        "200 queued commands took {commits} commits; they should share some"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_command_leaves_the_rest_of_its_batch_alone() {
    let (_db, log) = log().await;
    let repository = Arc::new(Repository::new(log.clone(), Bytes));
    let results = join_all((0..60u64).map(|n| {
        let repository = Arc::clone(&repository);
        let value = if n % 3 == 0 { 0 } else { n };
        async move { (value, run(&repository, value, None).await) }
    }))
    .await;
    for (value, result) in &results {
        match (value, result) {
            (0, Err(Rejected::Domain(reason))) => assert_eq!(*reason, "zero adds nothing"),
            (0, other) => panic!("zero was not refused: {other:?}"),
            (_, Ok(_)) => {}
            (value, other) => panic!("{value} failed: {other:?}"),
        }
    }
    let (values, versions, _) = stored(&log).await;
    assert_eq!(values.len(), 40);
    assert!(!values.contains(&0));
    assert_eq!(versions, (1..=40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_id_in_flight_many_times_appends_once() {
    let (_db, log) = log().await;
    let repository = Arc::new(Repository::new(log.clone(), Bytes));
    let results = join_all((0..20).map(|_| {
        let repository = Arc::clone(&repository);
        async move { run(&repository, 7, Some("the-same-request".into())).await }
    }))
    .await;
    let appended: Vec<_> = results.into_iter().map(|r| r.expect("answered")).collect();
    assert!(appended.iter().all(|a| a.version == 1));
    assert_eq!(appended.iter().filter(|a| !a.replayed).count(), 1);
    let (values, _, _) = stored(&log).await;
    assert_eq!(values, [7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_id_reused_for_different_requests_appends_the_first_and_refuses_the_rest() {
    let (_db, log) = log().await;
    let repository = Arc::new(Repository::new(log.clone(), Bytes));
    // In flight together (one batch, or racing batches), then once more after the commit.
    let mut results = join_all((1..=20u64).map(|value| {
        let repository = Arc::clone(&repository);
        async move { (value, run(&repository, value, Some("reused".into())).await) }
    }))
    .await;
    results.push((99, run(&repository, 99, Some("reused".into())).await));
    let appended: Vec<u64> = results
        .iter()
        .filter(|(_, result)| result.is_ok())
        .map(|(value, _)| *value)
        .collect();
    assert_eq!(appended.len(), 1, "{results:?}");
    for (value, result) in &results {
        if *value != appended[0] {
            assert!(
                matches!(result, Err(Rejected::Platform(Error::RequestReused(_)))),
                "{value}: {result:?}"
            );
        }
    }
    let (values, _, _) = stored(&log).await;
    assert_eq!(values, appended);
    // The first request itself still replays.
    let again = run(&repository, appended[0], Some("reused".into())).await;
    assert!(again.expect("replayed").replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_stream_lose_races_and_decide_again() {
    let (_db, log) = log().await;
    let first = Arc::new(Repository::new(log.clone(), Bytes));
    let second = Arc::new(Repository::new(EventLog::new(log.pool().clone()), Bytes));
    let results = join_all((1..=100u64).map(|value| {
        let repository = Arc::clone(if value % 2 == 0 { &first } else { &second });
        async move { run(&repository, value, Some(format!("k{value}"))).await }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let (mut values, versions, _) = stored(&log).await;
    assert_eq!(versions, (1..=100).collect::<Vec<_>>());
    values.sort_unstable();
    assert_eq!(values, (1..=100).collect::<Vec<_>>());
}

/// The same codec, but slow to encode, so that a batch is still being decided when a caller
/// goes away.
struct SlowBytes;

#[async_trait]
impl Codec<Total> for SlowBytes {
    async fn encode(&self, stream_id: &str, events: &[Added]) -> Result<Vec<NewEvent>> {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        Bytes.encode(stream_id, events).await
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Added>> {
        Bytes.decode(events).await
    }

    fn erased_subjects(&self, _: &str, _: &[Added]) -> Vec<String> {
        Vec::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_that_go_away_do_not_fail_the_commands_batched_with_theirs() {
    use rand::Rng;
    let (_db, log) = log().await;
    let repository = Arc::new(Repository::new(log.clone(), SlowBytes));
    let calls: Vec<_> = (1..=90u64)
        .map(|value| {
            let repository = Arc::clone(&repository);
            let call = tokio::spawn(async move {
                repository
                    .execute(
                        "total-1",
                        Some(&CommandKey::new(format!("k{value}"), Vec::new())),
                        &Metadata::default(),
                        &value,
                    )
                    .await
            });
            (value, call)
        })
        .collect();
    // A third of the callers go away (a reset, a short deadline) at some moment of their call.
    let mut survivors = Vec::new();
    for (value, call) in calls {
        if value % 3 == 0 {
            let delay = rand::rng().random_range(0..60);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                call.abort();
            });
        } else {
            survivors.push((value, call));
        }
    }
    for (value, call) in survivors {
        let answer = call.await.expect("the caller's task");
        assert!(
            answer.is_ok(),
            "{value} failed because another caller went away: {answer:?}"
        );
    }
    // Every answered command is in the log once; an abandoned one is there once or not at all.
    let (values, versions, _) = stored(&log).await;
    let mut sorted = values.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), values.len(), "nothing appended twice");
    assert_eq!(versions, (1..=values.len() as i64).collect::<Vec<_>>());
    for value in (1..=90u64).filter(|v| v % 3 != 0) {
        assert!(values.contains(&value), "{value} is in the log");
    }
}
