//! The relay: every event reaches JetStream exactly once and in log order, whatever happens to
//! the relay in between.

use std::time::Duration;

use async_nats::jetstream;
use kith_platform::bus;
use kith_platform::db::Schema;
use kith_platform::eventlog::EventLog;
use kith_platform::eventlog::{Append, Metadata, NewEvent};
use kith_platform::relay::{self, RelayConfig};
use kith_platform::testing::{PrivateNats, TestStream, eventually, log_order, nats, stream_order};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{SCHEMA, append_n, log};

fn config(stream: &TestStream) -> RelayConfig {
    RelayConfig {
        schema: Schema::parse(SCHEMA).unwrap(),
        stream: stream.spec.clone(),
        batch_size: 64,
        poll_interval: Duration::from_millis(10),
        published: Default::default(),
    }
}

fn start(
    config: &RelayConfig,
    js: &jetstream::Context,
    log: &EventLog,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(relay::run(
        config.clone(),
        log.clone(),
        js.clone(),
        shutdown.clone(),
    ));
    (shutdown, handle)
}

async fn wait_for_messages(js: &jetstream::Context, name: &str, count: u64) {
    eventually(
        Duration::from_secs(30),
        "the stream to hold every event",
        || async {
            let mut stream = js.get_stream(name).await.ok()?;
            let last = stream.info().await.ok()?.state.last_sequence;
            (last >= count).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_resumes_and_publishes_every_event_exactly_once_in_order() {
    let (_db, log) = log().await;
    let stream = TestStream::new("relay");
    let js = bus::jetstream(nats().await);
    let config = config(&stream);

    let (_first_shutdown, first) = start(&config, &js, &log);
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            for round in 0..30 {
                for s in 0..5 {
                    append_n(&log, &format!("stream-{s}"), round * 2, 2).await;
                }
            }
        })
    };
    // Kill the relay wherever it is (possibly with a batch half published) once it has started.
    wait_for_messages(&js, &stream.spec.name, 20).await;
    first.abort();
    let _ = first.await;
    // Events keep coming while no relay runs; then a new one starts.
    let (second_shutdown, second) = start(&config, &js, &log);
    writer.await.unwrap();
    wait_for_messages(&js, &stream.spec.name, 300).await;
    second_shutdown.cancel();
    second.await.unwrap();

    let expected = log_order(&log).await;
    assert_eq!(expected.len(), 300);
    let published = stream_order(&js, &stream.spec.name).await;
    assert_eq!(
        published, expected,
        "the stream must hold the log, once each, in log order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_log_publish_each_event_once() {
    let (_db, log) = log().await;
    let stream = TestStream::new("relay");
    let js = bus::jetstream(nats().await);
    let config = config(&stream);
    let (a_shutdown, a) = start(&config, &js, &log);
    let (b_shutdown, b) = start(&config, &js, &log);
    for s in 0..4 {
        append_n(&log, &format!("stream-{s}"), 0, 25).await;
    }
    wait_for_messages(&js, &stream.spec.name, 100).await;
    // The leader steps down; the other takes over and carries on from the stream's end.
    a_shutdown.cancel();
    a.await.unwrap();
    for s in 0..4 {
        append_n(&log, &format!("stream-{s}"), 25, 25).await;
    }
    wait_for_messages(&js, &stream.spec.name, 200).await;
    b_shutdown.cancel();
    b.await.unwrap();
    assert_eq!(
        stream_order(&js, &stream.spec.name).await,
        log_order(&log).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_rides_out_nats_being_killed_and_restarted() {
    let (_db, log) = log().await;
    let mut server = PrivateNats::start();
    let js = bus::jetstream(private_client(&server).await);
    let stream = TestStream::new("fault");
    let (shutdown, relay) = start(&config(&stream), &js, &log);

    for s in 0..5 {
        append_n(&log, &format!("stream-{s}"), 0, 10).await;
    }
    wait_for_messages(&js, &stream.spec.name, 50).await;

    // NATS dies; the log keeps taking events; NATS comes back with its store.
    server.kill();
    for s in 0..5 {
        append_n(&log, &format!("stream-{s}"), 10, 10).await;
    }
    server.restart();
    wait_for_messages(&js, &stream.spec.name, 100).await;
    shutdown.cancel();
    relay.await.unwrap();

    let published = stream_order(&js, &stream.spec.name).await;
    assert_eq!(
        published,
        log_order(&log).await,
        "every event once, in log order, after the outage"
    );
}

async fn private_client(server: &PrivateNats) -> async_nats::Client {
    eventually(
        Duration::from_secs(10),
        "the private NATS to accept connections",
        || {
            let url = server.url();
            async move { bus::connect(&url, "relay-fault-test").await.ok() }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_resumes_after_nats_restarts_once_the_duplicate_window_has_passed() {
    let (_db, log) = log().await;
    let mut server = PrivateNats::start();
    let js = bus::jetstream(private_client(&server).await);
    let mut stream = TestStream::new("window");
    stream.spec.duplicate_window = Duration::from_secs(1);
    let (shutdown, relay) = start(&config(&stream), &js, &log);
    append_n(&log, "community-1", 0, 1).await;
    wait_for_messages(&js, &stream.spec.name, 1).await;

    // NATS stays down longer than the duplicate window, so after its restart it no longer
    // remembers the last message id; the stream's last sequence it rebuilds from its store.
    server.kill();
    tokio::time::sleep(stream.spec.duplicate_window * 4).await;
    server.restart();
    append_n(&log, "community-2", 0, 1).await;
    wait_for_messages(&js, &stream.spec.name, 2).await;
    shutdown.cancel();
    relay.await.unwrap();
    assert_eq!(
        stream_order(&js, &stream.spec.name).await,
        log_order(&log).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_are_not_kith_events_on_its_subjects_do_not_stop_the_relay() {
    let (_db, log) = log().await;
    let stream = TestStream::new("junk");
    let js = bus::jetstream(nats().await);
    let junk = |n: usize| {
        let js = js.clone();
        let subject = format!("{}.x", stream.spec.subject_prefix);
        async move {
            js.publish(subject, format!("hi {n}").into())
                .await
                .expect("publish")
                .await
                .expect("stored");
        }
    };
    stream.spec.ensure(&js).await.unwrap();
    junk(0).await;
    let (shutdown, relay) = start(&config(&stream), &js, &log);
    for round in 0..10 {
        append_n(&log, "stream-a", round * 3, 3).await;
        junk(round as usize + 1).await;
    }
    wait_for_kith_events(&js, &stream.spec.name, 30).await;
    // A relay that starts when the stream ends in something else carries on as well.
    shutdown.cancel();
    relay.await.unwrap();
    junk(99).await;
    let (shutdown, relay) = start(&config(&stream), &js, &log);
    append_n(&log, "stream-b", 0, 5).await;
    wait_for_kith_events(&js, &stream.spec.name, 35).await;
    shutdown.cancel();
    relay.await.unwrap();
    assert_eq!(
        stream_order(&js, &stream.spec.name).await,
        log_order(&log).await,
        "every event once, in log order, with the other messages stepped over"
    );
}

async fn wait_for_kith_events(js: &jetstream::Context, name: &str, count: usize) {
    eventually(
        Duration::from_secs(30),
        "the stream to hold every event",
        || async { (stream_order(js, name).await.len() >= count).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_stream_is_refused_until_republished_from_the_log() {
    let (_db, log) = log().await;
    let stream = TestStream::new("purged");
    let js = bus::jetstream(nats().await);
    let (shutdown, relay) = start(&config(&stream), &js, &log);
    append_n(&log, "stream-a", 0, 10).await;
    wait_for_messages(&js, &stream.spec.name, 10).await;
    shutdown.cancel();
    relay.await.unwrap();

    // Purged while the relay was away: the stream no longer says where the log stands.
    js.get_stream(&stream.spec.name)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    append_n(&log, "stream-a", 10, 5).await;
    let (shutdown, relay) = start(&config(&stream), &js, &log);
    let refused = relay::resync(&stream.spec, &log, &js).await;
    match refused {
        Err(kith_platform::Error::Stuck(message)) => {
            assert!(message.contains("kith republish"), "{message}")
        }
        other => panic!("a purged stream must be refused, got {other:?}"),
    }

    // The log is the source of truth: republishing rebuilds the stream while the relay runs.
    let schema = Schema::parse(SCHEMA).unwrap();
    let published = relay::republish(&stream.spec, &schema, &log, &js, |_, _| {})
        .await
        .expect("republish");
    // Whatever no older transaction of the server still hides; the relay publishes the rest.
    assert!((10..=15).contains(&published), "{published}");
    append_n(&log, "stream-b", 0, 3).await;
    wait_for_messages(&js, &stream.spec.name, 18).await;
    shutdown.cancel();
    relay.await.unwrap();
    let mut info = js.get_stream(&stream.spec.name).await.unwrap();
    assert_eq!(info.info().await.unwrap().state.first_sequence, 1);
    assert_eq!(
        stream_order(&js, &stream.spec.name).await,
        log_order(&log).await
    );
}

#[tokio::test]
async fn an_event_larger_than_the_bus_carries_is_refused_at_append() {
    let (_db, log) = log().await;
    let log = log.with_max_event_bytes(1000);
    let metadata = Metadata::default();
    let refused = log
        .append(Append {
            stream_type: "thing",
            stream_id: "big",
            expected_version: 0,
            events: vec![NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "kith.test.v1.Happened".into(),
                payload: vec![7; 1001],
            }],
            metadata: &metadata,
            command_key: None,
            erase_subjects: &[],
        })
        .await;
    assert!(
        matches!(
            refused,
            Err(kith_platform::Error::EventTooLarge {
                bytes: 1001,
                limit: 1000
            })
        ),
        "{refused:?}"
    );
    assert!(log_order(&log).await.is_empty(), "nothing was appended");
}
