//! Consumers: a batch is applied with its checkpoint in one transaction, so a redelivered batch
//! changes nothing.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use kith_platform::bus;
use kith_platform::db::Schema;
use kith_platform::projection::{self, BusSource, Delivered, apply_bus_batch};
use kith_platform::relay::{self, RelayConfig};
use kith_platform::testing::{TestStream, eventually, nats};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Counting, SCHEMA, append_n, counted, log};

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
    let shutdown = CancellationToken::new();
    let config = RelayConfig {
        schema: Schema::parse(SCHEMA).unwrap(),
        stream: stream.spec.clone(),
        batch_size: 100,
        poll_interval: Duration::from_millis(10),
    };
    let relay = tokio::spawn(relay::run(
        config,
        log.clone(),
        js.clone(),
        shutdown.clone(),
    ));
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
