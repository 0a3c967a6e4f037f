//! The command path's round trips: a command on a stream held in memory costs one statement, with
//! or without a request id, and the checks that statement cannot make (a refusal decided on a
//! state another process has moved past, a retry the state now refuses or ignores) are made on
//! the paths that need them.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use kith_platform::aggregate::{Codec, Decider, Rejected, Repository};
use kith_platform::eventlog::{Appended, CommandKey, EventLog, Metadata, NewEvent, RecordedEvent};
use kith_platform::testing::Statements;
use kith_platform::{Error, Result};
use uuid::Uuid;

use crate::helpers::log;

/// A set of numbers: adding one present changes nothing, removing one absent is refused.
struct Numbers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add(u64),
    Remove(u64),
}

impl Decider for Numbers {
    type State = BTreeSet<u64>;
    type Event = Change;
    type Command = Change;
    type Error = &'static str;
    const STREAM_TYPE: &'static str = "numbers";

    fn evolve(mut state: BTreeSet<u64>, event: &Change) -> BTreeSet<u64> {
        match event {
            Change::Add(n) => state.insert(*n),
            Change::Remove(n) => state.remove(n),
        };
        state
    }

    fn decide(state: &BTreeSet<u64>, command: &Change) -> Result<Vec<Change>, &'static str> {
        match command {
            Change::Add(n) if state.contains(n) => Ok(Vec::new()),
            Change::Remove(n) if !state.contains(n) => Err("not in the set"),
            change => Ok(vec![*change]),
        }
    }

    fn knows(event_type: &str) -> bool {
        event_type.starts_with("kith.test.v1.")
    }
}

struct NumbersCodec;

#[async_trait]
impl Codec<Numbers> for NumbersCodec {
    async fn encode(&self, _: &str, events: &[Change]) -> Result<Vec<NewEvent>> {
        Ok(events
            .iter()
            .map(|change| {
                let (event_type, n) = match change {
                    Change::Add(n) => ("kith.test.v1.Added", n),
                    Change::Remove(n) => ("kith.test.v1.Removed", n),
                };
                NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event_type.into(),
                    payload: n.to_be_bytes().to_vec(),
                }
            })
            .collect())
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Change>> {
        events
            .iter()
            .map(|event| {
                let bytes: [u8; 8] = event
                    .payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Codec("not eight bytes".into()))?;
                let n = u64::from_be_bytes(bytes);
                Ok(if event.event_type.ends_with("Added") {
                    Change::Add(n)
                } else {
                    Change::Remove(n)
                })
            })
            .collect()
    }

    fn erased_subjects(&self, _: &str, _: &[Change]) -> Vec<String> {
        Vec::new()
    }
}

const STREAM: &str = "numbers-1";

fn key(text: &str, change: Change) -> CommandKey {
    CommandKey::new(text, format!("{change:?}").into_bytes())
}

async fn run(
    repository: &Repository<Numbers, NumbersCodec>,
    key: Option<&CommandKey>,
    change: Change,
) -> Result<Appended, Rejected<&'static str>> {
    repository
        .execute(STREAM, key, &Metadata::default(), &change)
        .await
}

async fn stored(log: &EventLog) -> Vec<Change> {
    let events = log.read_stream(STREAM, 0).await.expect("read");
    NumbersCodec.decode(&events).await.expect("decode")
}

// A current-thread runtime, so that the counting subscriber, set for this thread, sees the
// statements of the tasks the repository spawns too.
#[tokio::test]
async fn a_command_on_a_stream_in_memory_costs_one_statement_with_or_without_a_request_id() {
    let (_db, log) = log().await;
    let repository = Repository::new(log.clone(), NumbersCodec);
    run(
        &repository,
        Some(&key("k0", Change::Add(0))),
        Change::Add(0),
    )
    .await
    .expect("the first command loads the stream");

    let (statements, _counting) = Statements::count_on_this_thread();
    let keyed = run(
        &repository,
        Some(&key("k1", Change::Add(1))),
        Change::Add(1),
    )
    .await
    .expect("appended");
    assert_eq!(keyed.version, 2);
    assert_eq!(
        statements.taken(),
        1,
        "a command with a request id: its events and its key in one statement"
    );
    run(&repository, None, Change::Add(2))
        .await
        .expect("appended");
    assert_eq!(statements.taken(), 1, "a command without a request id");

    // A retry (which the state now decides changes nothing) answers with the first result.
    let retry = run(
        &repository,
        Some(&key("k1", Change::Add(1))),
        Change::Add(1),
    )
    .await
    .expect("replayed");
    assert_eq!(
        retry,
        Appended {
            replayed: true,
            ..keyed
        }
    );
    assert_eq!(
        stored(&log).await,
        [Change::Add(0), Change::Add(1), Change::Add(2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_the_state_now_ignores_or_refuses_answers_with_the_first_result() {
    let (_db, log) = log().await;
    let repository = Repository::new(log.clone(), NumbersCodec);
    let add = key("add-5", Change::Add(5));
    let first = run(&repository, Some(&add), Change::Add(5))
        .await
        .expect("appended");
    let remove = key("remove-5", Change::Remove(5));
    let removed = run(&repository, Some(&remove), Change::Remove(5))
        .await
        .expect("appended");
    run(&repository, None, Change::Add(5))
        .await
        .expect("added again");

    // Adding 5 again would change nothing today, removing it again would be refused: both
    // retries answer with what their first call did.
    let again = run(&repository, Some(&add), Change::Add(5))
        .await
        .expect("replayed");
    assert_eq!(
        again,
        Appended {
            replayed: true,
            ..first
        }
    );
    run(&repository, None, Change::Remove(5))
        .await
        .expect("removed again");
    let again = run(&repository, Some(&remove), Change::Remove(5))
        .await
        .expect("replayed, not refused");
    assert_eq!(
        again,
        Appended {
            replayed: true,
            ..removed
        }
    );

    // The same key with another request is refused, whichever way the state would decide it.
    let other = CommandKey::new("remove-5", b"another request".to_vec());
    let reused = run(&repository, Some(&other), Change::Remove(5)).await;
    assert!(
        matches!(reused, Err(Rejected::Platform(Error::RequestReused(_)))),
        "{reused:?}"
    );
    let reused = run(&repository, Some(&other), Change::Add(9)).await;
    assert!(
        matches!(reused, Err(Rejected::Platform(Error::RequestReused(_)))),
        "{reused:?}"
    );
    // And a command the state refuses, never run before, is refused.
    let fresh = key("remove-7", Change::Remove(7));
    let refused = run(&repository, Some(&fresh), Change::Remove(7)).await;
    assert!(
        matches!(refused, Err(Rejected::Domain("not in the set"))),
        "{refused:?}"
    );
    assert_eq!(
        stored(&log).await,
        [
            Change::Add(5),
            Change::Remove(5),
            Change::Add(5),
            Change::Remove(5)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_not_decided_on_a_state_another_process_has_moved_past() {
    let (_db, log) = log().await;
    let here = Repository::new(log.clone(), NumbersCodec);
    let elsewhere = Repository::new(EventLog::new(log.pool().clone()), NumbersCodec);
    run(&here, None, Change::Add(1)).await.expect("appended");
    // Another process adds 2; this one still holds the set {1} in memory.
    run(&elsewhere, None, Change::Add(2))
        .await
        .expect("appended");
    let removed = run(&here, None, Change::Remove(2))
        .await
        .expect("2 is in the set: the refusal a stale state would give is checked first");
    assert_eq!(removed.version, 3);
    // And a no-op too: another process removes 1, then adding it here must add it.
    run(&elsewhere, None, Change::Remove(1))
        .await
        .expect("removed");
    let added = run(&here, None, Change::Add(1)).await.expect("appended");
    assert_eq!(added.version, 5, "not decided unchanged on a stale state");
    assert_eq!(
        stored(&log).await,
        [
            Change::Add(1),
            Change::Add(2),
            Change::Remove(2),
            Change::Remove(1),
            Change::Add(1)
        ]
    );
}

/// The numbers codec, holding the batch that adds 99 at its encoding until the test opens the
/// gate: the commands sent meanwhile queue behind it and are decided together, as one batch.
struct Gated {
    entered: Arc<tokio::sync::Notify>,
    gate: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Codec<Numbers> for Gated {
    async fn encode(&self, stream_id: &str, events: &[Change]) -> Result<Vec<NewEvent>> {
        if events.contains(&Change::Add(99)) {
            self.entered.notify_one();
            self.gate.notified().await;
        }
        NumbersCodec.encode(stream_id, events).await
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Change>> {
        NumbersCodec.decode(events).await
    }

    fn erased_subjects(&self, _: &str, _: &[Change]) -> Vec<String> {
        Vec::new()
    }
}

/// Runs `commands` as one batch on a stream: a command adding 99 holds the stream while they
/// queue behind it. Returns their results, in order.
async fn one_batch(
    repository: &Arc<Repository<Numbers, Gated>>,
    entered: &tokio::sync::Notify,
    gate: &tokio::sync::Notify,
    commands: Vec<(Option<CommandKey>, Change)>,
) -> Vec<Result<Appended, Rejected<&'static str>>> {
    let holder = {
        let repository = Arc::clone(repository);
        tokio::spawn(async move {
            repository
                .execute(STREAM, None, &Metadata::default(), &Change::Add(99))
                .await
        })
    };
    entered.notified().await;
    let queued: Vec<_> = commands
        .into_iter()
        .map(|(key, change)| {
            let repository = Arc::clone(repository);
            tokio::spawn(async move {
                repository
                    .execute(STREAM, key.as_ref(), &Metadata::default(), &change)
                    .await
            })
        })
        .collect();
    // On this current-thread runtime each spawned call queues its command in its first poll,
    // which a yield lets happen.
    tokio::task::yield_now().await;
    gate.notify_one();
    holder.await.expect("holder").expect("99 added");
    let mut results = Vec::new();
    for call in queued {
        results.push(call.await.expect("call"));
    }
    results
}

fn gated(
    log: &EventLog,
) -> (
    Arc<Repository<Numbers, Gated>>,
    Arc<tokio::sync::Notify>,
    Arc<tokio::sync::Notify>,
) {
    let entered = Arc::new(tokio::sync::Notify::new());
    let gate = Arc::new(tokio::sync::Notify::new());
    let codec = Gated {
        entered: Arc::clone(&entered),
        gate: Arc::clone(&gate),
    };
    (Arc::new(Repository::new(log.clone(), codec)), entered, gate)
}

/// Adds 10 under a key, then removes it: a retry of the add would now append again. Returns the
/// key and the add's result.
async fn added_then_removed(repository: &Repository<Numbers, Gated>) -> (CommandKey, Appended) {
    let add = key("add-10", Change::Add(10));
    let first = repository
        .execute(STREAM, Some(&add), &Metadata::default(), &Change::Add(10))
        .await
        .expect("added");
    repository
        .execute(STREAM, None, &Metadata::default(), &Change::Remove(10))
        .await
        .expect("removed");
    (add, first)
}

#[tokio::test]
async fn a_retry_in_a_batch_does_not_leave_its_batchmates_decided_on_events_never_written() {
    let (_db, log) = log().await;
    let (repository, entered, gate) = gated(&log);
    let (add, first) = added_then_removed(&repository).await;
    // In one batch: the retry (which, 10 being gone, decides to add it again: the append finds
    // its key recorded and writes nothing) and a new request adding 10, decided after it on a
    // state that holds the retry's 10.
    let fresh = key("add-10-again", Change::Add(10));
    let results = one_batch(
        &repository,
        &entered,
        &gate,
        vec![
            (Some(add.clone()), Change::Add(10)),
            (Some(fresh), Change::Add(10)),
        ],
    )
    .await;
    let retry = results[0].as_ref().expect("the retry answered");
    assert_eq!(
        *retry,
        Appended {
            replayed: true,
            ..first
        }
    );
    let again = results[1].as_ref().expect("the new request answered");
    assert!(!again.replayed);
    let stored = stored(&log).await;
    assert_eq!(
        stored,
        [
            Change::Add(10),
            Change::Remove(10),
            Change::Add(99),
            Change::Add(10)
        ],
        "the new request's 10 was written"
    );
    assert_eq!(again.version, 4, "{again:?}");
}

#[tokio::test]
async fn a_retry_in_a_batch_of_appends_does_not_fail_the_command_left_beside_it() {
    let (_db, log) = log().await;
    let (repository, entered, gate) = gated(&log);
    let (add, first) = added_then_removed(&repository).await;
    // Both append: the batch's statement fails on the retry's key, which is answered with its
    // first result; the other command must still be written.
    let results = one_batch(
        &repository,
        &entered,
        &gate,
        vec![
            (Some(add.clone()), Change::Add(10)),
            (Some(key("add-11", Change::Add(11))), Change::Add(11)),
        ],
    )
    .await;
    assert_eq!(
        results[0].as_ref().expect("the retry answered"),
        &Appended {
            replayed: true,
            ..first
        }
    );
    let other = results[1].as_ref().expect("the other command appended");
    assert!(!other.replayed);
    assert_eq!(
        stored(&log).await,
        [
            Change::Add(10),
            Change::Remove(10),
            Change::Add(99),
            Change::Add(11)
        ]
    );
}
