//! The relay: every event reaches JetStream exactly once and in log order, whatever happens to
//! the relay in between.

use std::time::Duration;

use async_nats::jetstream;
use kith_platform::bus;
use kith_platform::db::Schema;
use kith_platform::eventlog::EventLog;
use kith_platform::relay::{self, RelayConfig};
use kith_platform::testing::{TestStream, eventually, log_order, nats, stream_order};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{SCHEMA, append_n, log};

fn config(stream: &TestStream) -> RelayConfig {
    RelayConfig {
        schema: Schema::parse(SCHEMA).unwrap(),
        stream: stream.spec.clone(),
        batch_size: 64,
        poll_interval: Duration::from_millis(10),
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

/// A NATS server of this test's own, so that it can be killed without disturbing other tests.
struct PrivateNats {
    child: std::process::Child,
    port: u16,
}

impl PrivateNats {
    fn start(port: u16, store: &std::path::Path) -> Self {
        let binary = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .find(|candidate| {
            std::process::Command::new(candidate)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("nats-server must be installed for the NATS fault test");
        let child = std::process::Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_rides_out_nats_being_killed_and_restarted() {
    let (_db, log) = log().await;
    let store = std::env::temp_dir().join(format!("kith-nats-{}", Uuid::new_v4().simple()));
    let port = free_port();
    let mut server = PrivateNats::start(port, &store);
    let client = eventually(
        Duration::from_secs(10),
        "the private NATS to accept connections",
        || {
            let url = server.url();
            async move { bus::connect(&url, "relay-fault-test").await.ok() }
        },
    )
    .await;
    let js = bus::jetstream(client);
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
    let _server = PrivateNats::start(port, &store);
    wait_for_messages(&js, &stream.spec.name, 100).await;
    shutdown.cancel();
    relay.await.unwrap();

    let published = stream_order(&js, &stream.spec.name).await;
    assert_eq!(
        published,
        log_order(&log).await,
        "every event once, in log order, after the outage"
    );
    drop(_server);
    let _ = std::fs::remove_dir_all(&store);
    drop(server);
}
