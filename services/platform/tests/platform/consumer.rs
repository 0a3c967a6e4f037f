//! Consumers: a batch is applied with its checkpoint in one transaction, so a redelivered batch
//! changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use kith_platform::bus;
use kith_platform::db::Schema;
use kith_platform::eventlog::{Append, EventLog, Metadata, NewEvent};
use kith_platform::projection::{self, BusSource, Delivered, Projection, apply_bus_batch};
use kith_platform::relay;
use kith_platform::testing::{TestStream, eventually, nats};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Counting, SCHEMA, append_n, counted, log, spawn_relay};

/// Appends `per_stream` events to three streams and relays them to a fresh test stream.
async fn published(
    per_stream: usize,
) -> (
    kith_platform::testing::TestDatabase,
    kith_platform::eventlog::EventLog,
    TestStream,
    jetstream::Context,
) {
    let (db, log) = log().await;
    let stream = TestStream::new("source");
    let js = bus::jetstream(nats().await);
    for s in 0..3 {
        append_n(&log, &format!("stream-{s}"), 0, per_stream).await;
    }
    let (shutdown, relay) = spawn_relay(&log, &js, &stream.spec);
    let total = (per_stream * 3) as u64;
    eventually(Duration::from_secs(30), "relayed events", || async {
        let mut s = js.get_stream(&stream.spec.name).await.ok()?;
        (s.info().await.ok()?.state.last_sequence >= total).then_some(())
    })
    .await;
    shutdown.cancel();
    relay.await.unwrap();
    (db, log, stream, js)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_delivered_twice_changes_the_projection_once() {
    let (_db, log, stream, js) = published(4).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let consumer = js
        .get_stream(&stream.spec.name)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("twice".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let key = format!("bus:{}", stream.spec.name);

    let fetch = || async {
        let mut messages = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let mut batch = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.unwrap();
            batch.push(message);
            if batch.len() == 12 {
                break;
            }
        }
        batch
    };
    let first = fetch().await;
    assert_eq!(first.len(), 12);
    let events: Vec<_> = first
        .iter()
        .map(|m| (m.info().unwrap().stream_sequence, Delivered::of(m)))
        .collect();
    assert_eq!(
        apply_bus_batch(&pool, &Counting, &key, &events)
            .await
            .unwrap()
            .applied,
        12
    );
    // As if the process died after the commit and before the acks: the server redelivers.
    for message in &first {
        message.double_ack_with(AckKind::Nak(None)).await.unwrap();
    }
    let again = fetch().await;
    assert_eq!(again.len(), 12, "the batch is delivered a second time");
    let mut redelivered: Vec<_> = again
        .iter()
        .map(|m| (m.info().unwrap().stream_sequence, Delivered::of(m)))
        .collect();
    redelivered.sort_by_key(|(sequence, _)| *sequence);
    assert_eq!(
        redelivered.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        events.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert_eq!(
        apply_bus_batch(&pool, &Counting, &key, &redelivered)
            .await
            .unwrap()
            .applied,
        0
    );
    for message in &again {
        message.ack().await.unwrap();
    }
    let rows = counted(&pool).await;
    assert_eq!(
        rows,
        vec![
            ("stream-0".into(), 4, 4),
            ("stream-1".into(), 4, 4),
            ("stream-2".into(), 4, 4)
        ]
    );
}

#[tokio::test]
async fn a_gap_after_the_checkpoint_is_refused_and_nothing_is_applied() {
    let (_db, log, stream, js) = published(2).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let s = js.get_stream(&stream.spec.name).await.unwrap();
    let event_at = |seq| {
        let s = &s;
        async move {
            let raw = s.get_raw_message(seq).await.unwrap();
            let message = async_nats::Message {
                subject: raw.subject.clone(),
                reply: None,
                payload: raw.payload.clone(),
                headers: Some(raw.headers),
                status: None,
                description: None,
                length: 0,
            };
            (seq, Delivered::of(&message))
        }
    };
    let key = format!("bus:{}", stream.spec.name);
    apply_bus_batch(&pool, &Counting, &key, &[event_at(1).await])
        .await
        .unwrap();
    let gap = apply_bus_batch(&pool, &Counting, &key, &[event_at(3).await]).await;
    assert!(
        gap.is_err(),
        "sequence 3 right after checkpoint 1 must be refused"
    );
    let total: i64 = counted(&pool).await.iter().map(|(_, n, _)| n).sum();
    assert_eq!(total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_consumer_applies_everything_once_across_restarts() {
    let (_db, log, stream, js) = published(10).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let source = BusSource {
        stream: stream.spec.name.clone(),
        durable: "counting".into(),
        batch_size: 7,
        service: "test".into(),
    };
    for _ in 0..2 {
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(projection::run_bus_source(
            pool.clone(),
            js.clone(),
            source.clone(),
            Arc::new(Counting),
            shutdown.clone(),
        ));
        eventually(
            Duration::from_secs(30),
            "the projection to catch up",
            || async {
                let total: i64 = counted(&pool).await.iter().map(|(_, n, _)| n).sum();
                (total >= 30).then_some(())
            },
        )
        .await;
        shutdown.cancel();
        runner.await.unwrap();
    }
    assert_eq!(
        counted(&pool).await,
        vec![
            ("stream-0".into(), 10, 10),
            ("stream-1".into(), 10, 10),
            ("stream-2".into(), 10, 10)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_durable_consumer_apply_every_event_once_in_order() {
    let (_db, log, stream, js) = published(40).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let source = BusSource {
        stream: stream.spec.name.clone(),
        durable: "counting".into(),
        batch_size: 5,
        service: "test".into(),
    };
    // Three replicas of one service: one pool (one database), one durable name.
    let shutdown = CancellationToken::new();
    let runners: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(projection::run_bus_source(
                pool.clone(),
                js.clone(),
                source.clone(),
                Arc::new(Counting),
                shutdown.clone(),
            ))
        })
        .collect();
    eventually(
        Duration::from_secs(30),
        "the projection to catch up",
        || async {
            let total: i64 = counted(&pool).await.iter().map(|(_, n, _)| n).sum();
            (total >= 120).then_some(())
        },
    )
    .await;
    shutdown.cancel();
    for runner in runners {
        runner.await.unwrap();
    }
    // Split deliveries would skip events below a checkpoint another replica moved past.
    assert_eq!(
        counted(&pool).await,
        vec![
            ("stream-0".into(), 40, 40),
            ("stream-1".into(), 40, 40),
            ("stream-2".into(), 40, 40)
        ]
    );
}

fn source_of(stream: &TestStream, batch_size: usize) -> BusSource {
    BusSource {
        stream: stream.spec.name.clone(),
        durable: "counting".into(),
        batch_size,
        service: "test".into(),
    }
}

fn run(
    pool: &sqlx::PgPool,
    js: &jetstream::Context,
    source: &BusSource,
    projection: Arc<dyn Projection>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(projection::run_bus_source(
        pool.clone(),
        js.clone(),
        source.clone(),
        projection,
        shutdown.clone(),
    ));
    (shutdown, runner)
}

async fn checkpoint(pool: &sqlx::PgPool, source: &BusSource) -> u64 {
    let mut conn = pool.acquire().await.unwrap();
    projection::read_bus_checkpoint(&mut conn, "counting", &source.key())
        .await
        .unwrap()
        .0
}

async fn total(pool: &sqlx::PgPool) -> i64 {
    counted(pool).await.iter().map(|(_, n, _)| n).sum()
}

fn stalled(source: &BusSource) -> i64 {
    kith_platform::metrics::metrics()
        .projection_stalled
        .get_or_create(&kith_platform::metrics::SourceLabels::new(
            "test",
            "counting",
            &source.key(),
        ))
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_steps_over_messages_that_are_not_kith_events_and_goes_on() {
    let (_db, log, stream, js) = published(5).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    for n in 0..2 {
        js.publish(
            format!("{}.x", stream.spec.subject_prefix),
            format!("hi {n}").into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let source = source_of(&stream, 4);
    let (shutdown, runner) = run(&pool, &js, &source, Arc::new(Counting));
    eventually(
        Duration::from_secs(20),
        "the checkpoint to pass the other messages",
        || async { (checkpoint(&pool, &source).await == 17).then_some(()) },
    )
    .await;
    shutdown.cancel();
    runner.await.unwrap();
    assert_eq!(
        counted(&pool).await,
        vec![
            ("stream-0".into(), 5, 5),
            ("stream-1".into(), 5, 5),
            ("stream-2".into(), 5, 5)
        ]
    );
    let set_aside = kith_platform::metrics::metrics()
        .set_aside
        .get_or_create(&kith_platform::metrics::SourceLabels::new(
            "test",
            "counting",
            &source.key(),
        ))
        .get();
    assert_eq!(set_aside, 2, "each message that is not an event is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_takes_at_once_what_the_previous_holder_left_unacknowledged() {
    let (_db, log, stream, js) = published(10).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let source = source_of(&stream, 50);
    // The previous holder: it took every message of the durable consumer and vanished before
    // acknowledging any.
    let abandoned = js
        .get_stream(&stream.spec.name)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some(source.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut taken = abandoned
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut held = 0;
    while let Some(message) = taken.next().await {
        message.unwrap();
        held += 1;
    }
    assert_eq!(held, 30);

    let (shutdown, runner) = run(&pool, &js, &source, Arc::new(Counting));
    // Well within the 30 s the server would otherwise wait for acks that never come.
    eventually(
        Duration::from_secs(8),
        "the new holder to apply everything",
        || async { (total(&pool).await == 30).then_some(()) },
    )
    .await;
    shutdown.cancel();
    runner.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_refuses_a_stream_that_lost_its_first_messages_until_it_is_republished() {
    let (_db, log, stream, js) = published(5).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    js.get_stream(&stream.spec.name)
        .await
        .unwrap()
        .purge()
        .keep(5)
        .await
        .unwrap();
    let source = source_of(&stream, 10);
    let (shutdown, runner) = run(&pool, &js, &source, Arc::new(Counting));
    eventually(
        Duration::from_secs(20),
        "the consumer to say it cannot go on",
        || async { (stalled(&source) == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        total(&pool).await,
        0,
        "nothing of a broken stream is applied"
    );

    let schema = Schema::parse(SCHEMA).unwrap();
    relay::republish(&stream.spec, &schema, &log, &js, |_, _| {})
        .await
        .expect("republish");
    eventually(
        Duration::from_secs(30),
        "the consumer to read the republished stream",
        || async { (total(&pool).await == 15).then_some(()) },
    )
    .await;
    shutdown.cancel();
    runner.await.unwrap();
    assert_eq!(
        counted(&pool).await,
        vec![
            ("stream-0".into(), 5, 5),
            ("stream-1".into(), 5, 5),
            ("stream-2".into(), 5, 5)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_follow_a_republished_stream_without_applying_anything_twice() {
    let (_db, log, stream, js) = published(5).await;
    // The service's relay runs throughout: republishing takes its leadership, and it publishes
    // whatever commits after that.
    let (relay_shutdown, relay_task) = spawn_relay(&log, &js, &stream.spec);
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let source = source_of(&stream, 10);
    let (shutdown, runner) = run(&pool, &js, &source, Arc::new(Counting));
    eventually(Duration::from_secs(20), "the first pass", || async {
        (total(&pool).await == 15).then_some(())
    })
    .await;
    let schema = Schema::parse(SCHEMA).unwrap();
    relay::republish(&stream.spec, &schema, &log, &js, |_, _| {})
        .await
        .expect("republish");
    append_n(&log, "stream-0", 5, 2).await;
    relay::republish(&stream.spec, &schema, &log, &js, |_, _| {})
        .await
        .expect("republish again");
    eventually(
        Duration::from_secs(30),
        "the consumer to take the new events",
        || async { (total(&pool).await >= 17).then_some(()) },
    )
    .await;
    shutdown.cancel();
    runner.await.unwrap();
    relay_shutdown.cancel();
    relay_task.await.unwrap();
    assert_eq!(
        counted(&pool).await,
        vec![
            ("stream-0".into(), 7, 7),
            ("stream-1".into(), 5, 5),
            ("stream-2".into(), 5, 5)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_from_a_purged_stream_is_refused_instead_of_waiting_forever() {
    let (db, log, stream, js) = published(2).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    js.get_stream(&stream.spec.name)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    let rebuilt = tokio::time::timeout(
        Duration::from_secs(20),
        projection::rebuild_from_bus(
            &db.url,
            &Schema::parse(SCHEMA).unwrap(),
            &js,
            &source_of(&stream, 10),
            &Counting,
            |_, _| {},
        ),
    )
    .await
    .expect("the rebuild answers");
    match rebuilt {
        Err(kith_platform::Error::Stuck(message)) => {
            assert!(message.contains("kith republish"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Counting, for the streams of type `thing` only.
#[derive(Debug)]
struct ThingsOnly;

#[async_trait::async_trait]
impl Projection for ThingsOnly {
    fn name(&self) -> &'static str {
        Counting.name()
    }
    fn tables(&self) -> &'static [&'static str] {
        Counting.tables()
    }
    fn ddl(&self) -> &'static str {
        Counting.ddl()
    }
    fn knows(&self, event_type: &str) -> bool {
        Counting.knows(event_type)
    }
    fn reads(&self, stream_type: &str) -> bool {
        stream_type == "thing"
    }
    async fn apply(
        &self,
        conn: &mut sqlx::PgConnection,
        event: &kith_platform::eventlog::RecordedEvent,
    ) -> kith_platform::Result<()> {
        if event.stream_type == "thing" {
            Counting.apply(conn, event).await
        } else {
            Ok(())
        }
    }
}

async fn append_typed(log: &EventLog, stream_type: &str, stream_id: &str, event_type: &str) {
    let metadata = Metadata::default();
    let version = log.read_stream(stream_id, 0).await.unwrap().len() as i64;
    log.append(Append {
        stream_type,
        stream_id,
        expected_version: version,
        events: vec![NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: event_type.into(),
            payload: b"from a newer version".to_vec(),
        }],
        metadata: &metadata,
        command_key: None,
        erase_subjects: &[],
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_event_type_stops_a_projection_that_reads_its_stream_and_is_skipped_otherwise() {
    let (_db, log) = crate::helpers::log().await;
    let stream = TestStream::new("newer");
    let js = bus::jetstream(nats().await);
    let pool = log.pool().clone();
    projection::create_tables(&pool, &ThingsOnly).await.unwrap();
    append_typed(&log, "thing", "t1", "kith.test.v1.Happened").await;
    append_typed(&log, "other", "o1", "kith.test.v2.Newer").await;
    append_typed(&log, "thing", "t1", "kith.test.v1.Happened").await;
    append_typed(&log, "thing", "t1", "kith.test.v2.Newer").await;
    append_typed(&log, "thing", "t1", "kith.test.v1.Happened").await;
    let (relay_shutdown, relay_task) = spawn_relay(&log, &js, &stream.spec);
    let source = source_of(&stream, 10);
    let (shutdown, runner) = run(&pool, &js, &source, Arc::new(ThingsOnly));
    eventually(
        Duration::from_secs(20),
        "the projection to stop at the unknown event of a stream it reads",
        || async { (stalled(&source) == 1 && checkpoint(&pool, &source).await == 3).then_some(()) },
    )
    .await;
    shutdown.cancel();
    runner.await.unwrap();
    relay_shutdown.cancel();
    relay_task.await.unwrap();
    assert_eq!(counted(&pool).await, vec![("t1".into(), 2, 2)]);
    let skipped = kith_platform::metrics::metrics()
        .unknown_events
        .get_or_create(&kith_platform::metrics::UnknownEventLabels {
            projection: "counting".into(),
            event_type: "kith.test.v2.Newer".into(),
        })
        .get();
    assert_eq!(
        skipped, 1,
        "the unknown event of a stream it does not read is skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stepped_over_other_messages_misses_nothing_in_a_republished_stream() {
    let (_db, log, stream, js) = published(5).await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    // The stream ends in something that is not an event: the consumer's checkpoint passes it.
    js.publish(format!("{}.x", stream.spec.subject_prefix), "hi".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let source = source_of(&stream, 10);
    let (shutdown, runner) = run(&pool, &js, &source, Arc::new(Counting));
    eventually(
        Duration::from_secs(20),
        "the consumer to pass it",
        || async { (checkpoint(&pool, &source).await == 16).then_some(()) },
    )
    .await;
    // Rebuilt from the log, the stream no longer holds it: the next event takes sequence 16.
    let schema = Schema::parse(SCHEMA).unwrap();
    relay::republish(&stream.spec, &schema, &log, &js, |_, _| {})
        .await
        .expect("republish");
    let (relay_shutdown, relay_task) = spawn_relay(&log, &js, &stream.spec);
    append_n(&log, "stream-1", 5, 2).await;
    eventually(Duration::from_secs(30), "both new events", || async {
        (total(&pool).await == 17).then_some(())
    })
    .await;
    shutdown.cancel();
    runner.await.unwrap();
    relay_shutdown.cancel();
    relay_task.await.unwrap();
    assert_eq!(
        counted(&pool).await,
        vec![
            ("stream-0".into(), 5, 5),
            ("stream-1".into(), 7, 7),
            ("stream-2".into(), 5, 5)
        ]
    );
}
