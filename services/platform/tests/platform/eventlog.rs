//! The event log: append at an expected version, idempotency, append-only, and a tailing reader
//! that never skips or repeats an event under concurrent writers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kith_platform::Error;
use kith_platform::eventlog::{Append, Checkpoint, CommandKey, Metadata, append_with};
use rand::Rng;
use uuid::Uuid;

use crate::helpers::{append_n, event, log};

#[tokio::test]
async fn appending_at_a_stale_version_is_a_conflict_and_writes_nothing() {
    let (_db, log) = log().await;
    append_n(&log, "s1", 0, 2).await;
    let metadata = Metadata::default();
    let stale = log
        .append(Append {
            stream_type: "thing",
            stream_id: "s1",
            expected_version: 1,
            events: vec![event(0), event(1)],
            metadata: &metadata,
            command_key: None,
            erase_subjects: &[],
        })
        .await;
    assert!(
        matches!(stale, Err(Error::Conflict { expected: 1, .. })),
        "got {stale:?}"
    );
    let events = log.read_stream("s1", 0).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn a_multi_event_append_gets_consecutive_versions_and_reports_the_last() {
    let (_db, log) = log().await;
    let metadata = Metadata {
        actor: Some("someone".into()),
        ..Default::default()
    };
    let done = log
        .append(Append {
            stream_type: "thing",
            stream_id: "s1",
            expected_version: 0,
            events: vec![event(0), event(1), event(2)],
            metadata: &metadata,
            command_key: None,
            erase_subjects: &[],
        })
        .await
        .unwrap();
    assert_eq!(done.version, 3);
    let events = log.read_stream("s1", 0).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].position, done.position);
    assert_eq!(events[0].metadata().actor.as_deref(), Some("someone"));
    assert_eq!(events[1].payload, b"event 1");
}

#[tokio::test]
async fn a_retried_command_returns_the_first_result_and_appends_nothing() {
    let (_db, log) = log().await;
    let metadata = Metadata::default();
    let key = CommandKey::new("member-1:req-1", b"request A".to_vec());
    let append = |version| Append {
        stream_type: "thing",
        stream_id: "s1",
        expected_version: version,
        events: vec![event(0)],
        metadata: &metadata,
        command_key: Some(&key),
        erase_subjects: &[],
    };
    let first = log.append(append(0)).await.unwrap();
    assert!(!first.replayed);
    // The retry decided again on the new state: a different expected version.
    let second = log.append(append(1)).await.unwrap();
    assert!(second.replayed);
    assert_eq!(
        (second.version, second.position),
        (first.version, first.position)
    );
    // Same expected version as the first call: the unique key still wins over the conflict.
    let third = log.append(append(0)).await.unwrap();
    assert!(third.replayed);
    assert_eq!(log.read_stream("s1", 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_key_reused_for_a_different_request_is_refused_and_appends_nothing() {
    let (_db, log) = log().await;
    let metadata = Metadata::default();
    let first_key = CommandKey::new("member-1:req-1", b"request A".to_vec());
    let other_key = CommandKey::new("member-1:req-1", b"request B".to_vec());
    let append = |stream_id, version, key| Append {
        stream_type: "thing",
        stream_id,
        expected_version: version,
        events: vec![event(0)],
        metadata: &metadata,
        command_key: Some(key),
        erase_subjects: &[],
    };
    log.append(append("s1", 0, &first_key)).await.unwrap();
    // On the same stream (a conflict first) and on another stream (the key's own row).
    for (stream_id, version) in [("s1", 1), ("s2", 0)] {
        let refused = log.append(append(stream_id, version, &other_key)).await;
        assert!(
            matches!(refused, Err(Error::RequestReused(_))),
            "{stream_id}: {refused:?}"
        );
    }
    assert!(matches!(
        log.command_result(&other_key).await,
        Err(Error::RequestReused(_))
    ));
    assert!(
        log.command_result(&first_key)
            .await
            .unwrap()
            .unwrap()
            .replayed
    );
    assert_eq!(log.read_stream("s1", 0).await.unwrap().len(), 1);
    assert!(log.read_stream("s2", 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_log_refuses_update_delete_and_truncate() {
    let (_db, log) = log().await;
    append_n(&log, "s1", 0, 1).await;
    for sql in [
        "UPDATE events SET payload = 'x'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::raw_sql(sql).execute(log.pool()).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(log.read_stream("s1", 0).await.unwrap().len(), 1);
}

/// 16 writers append to 8 shared streams, each holding its transaction open for a random moment
/// so that commits land out of position order, while a reader tails throughout. The reader must
/// see every committed event exactly once and each stream's events in version order. A reader
/// ordered by position alone skips the events that commit late with smaller positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_sees_every_committed_event_once_under_concurrent_appenders() {
    const WRITERS: usize = 16;
    const APPENDS_PER_WRITER: usize = 40;
    const STREAMS: usize = 8;
    const TOTAL: usize = WRITERS * APPENDS_PER_WRITER * 2;
    let (_db, log) = log().await;

    // Reads until it has seen as many events as will be committed (or a deadline passes): a
    // reader that skips never gets there, one that repeats gets there with duplicates.
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            let mut checkpoint = Checkpoint::START;
            let mut seen = Vec::new();
            while seen.len() < TOTAL && tokio::time::Instant::now() < deadline {
                let batch = log.tail(checkpoint, 50).await.expect("tail");
                if batch.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                checkpoint = batch.last().unwrap().checkpoint();
                seen.extend(
                    batch
                        .into_iter()
                        .map(|e| (e.event_id, e.stream_id, e.version)),
                );
            }
            seen
        })
    };

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let log = log.clone();
        writers.push(tokio::spawn(async move {
            let metadata = Metadata::default();
            let mut committed = Vec::new();
            for n in 0..APPENDS_PER_WRITER {
                let stream_id = format!("stream-{}", (writer + n) % STREAMS);
                loop {
                    let mut tx = log.pool().begin().await.expect("begin");
                    let version: i64 = sqlx::query_scalar(
                        "SELECT coalesce(max(version), 0) FROM events WHERE stream_id = $1",
                    )
                    .bind(&stream_id)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("version");
                    let new = vec![event(n), event(n + 1)];
                    let ids: Vec<Uuid> = new.iter().map(|e| e.event_id).collect();
                    let result = append_with(
                        &mut *tx,
                        &Append {
                            stream_type: "thing",
                            stream_id: &stream_id,
                            expected_version: version,
                            events: new,
                            metadata: &metadata,
                            command_key: None,
                            erase_subjects: &[],
                        },
                    )
                    .await;
                    match result {
                        Ok(_) => {
                            // Hold the transaction open so later positions can commit first.
                            let pause = rand::rng().random_range(0..3000);
                            tokio::time::sleep(Duration::from_micros(pause)).await;
                            tx.commit().await.expect("commit");
                            committed.extend(ids);
                            break;
                        }
                        Err(Error::Conflict { .. }) => {
                            tx.rollback().await.expect("rollback");
                        }
                        Err(err) => panic!("append failed: {err}"),
                    }
                }
            }
            committed
        }));
    }
    let mut committed = HashSet::new();
    for writer in writers {
        committed.extend(writer.await.expect("writer"));
    }
    let seen = reader.await.expect("reader");

    let unique: HashSet<Uuid> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(unique.len(), seen.len(), "the reader saw an event twice");
    let missed = committed.difference(&unique).count();
    assert_eq!(missed, 0, "the reader skipped {missed} committed events");
    assert_eq!(unique.len(), TOTAL);
    let mut versions: HashMap<String, i64> = HashMap::new();
    for (_, stream_id, version) in &seen {
        let last = versions.entry(stream_id.clone()).or_insert(0);
        assert_eq!(
            *version,
            *last + 1,
            "stream {stream_id} out of version order"
        );
        *last = *version;
    }
}

/// Concurrent appends to different streams share commits, and one append that lost its race
/// fails alone: every other append in its group lands, with its own version and position.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits_and_a_conflict_fails_only_its_own_append() {
    let (_db, log) = log().await;
    // Eight streams already at version 1; appends at version 0 to them will conflict.
    for s in 0..8 {
        append_n(&log, &format!("taken-{s}"), 0, 1).await;
    }
    let mut tasks = Vec::new();
    for n in 0..64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let (stream_id, expected) = if n % 8 == 0 {
                (format!("taken-{}", n / 8), 0)
            } else {
                (format!("fresh-{n}"), 0)
            };
            let metadata = Metadata::default();
            let key = CommandKey::new(format!("cmd-{n}"), Vec::new());
            let result = log
                .append(Append {
                    stream_type: "thing",
                    stream_id: &stream_id,
                    expected_version: expected,
                    events: vec![event(n), event(n + 1)],
                    metadata: &metadata,
                    command_key: Some(&key),
                    erase_subjects: &[],
                })
                .await;
            (n, stream_id, result)
        }));
    }
    let mut landed = 0;
    for task in tasks {
        let (n, stream_id, result) = task.await.unwrap();
        if n % 8 == 0 {
            assert!(
                matches!(result, Err(Error::Conflict { .. })),
                "append {n}: {result:?}"
            );
        } else {
            let done = result.unwrap_or_else(|err| panic!("append {n} failed: {err}"));
            assert_eq!(done.version, 2);
            let events = log.read_stream(&stream_id, 0).await.unwrap();
            assert_eq!(events.len(), 2);
            assert_eq!(events[1].position, done.position);
            assert_eq!(events[0].payload, format!("event {n}").into_bytes());
            landed += 1;
        }
    }
    assert_eq!(landed, 56);
    let (events, commits): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT transaction_id::text) FROM events WHERE stream_id LIKE 'fresh-%'",
    )
    .fetch_one(log.pool())
    .await
    .unwrap();
    assert_eq!(events, 112);
    assert!(
        commits < 56,
        "56 concurrent appends should share commits, took {commits}"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM commands")
        .fetch_one(log.pool())
        .await
        .unwrap();
    assert_eq!(keys, 56, "only appends that landed record their key");
}

#[tokio::test]
async fn a_large_payload_is_stored_compressed_with_lz4_and_read_back_whole() {
    let (_db, log) = log().await;
    // A dozen decisions' worth of protobuf: long, and repetitive as a notice is.
    let payload: Vec<u8> = (0..12_000u32)
        .map(|i| b"0123456789abcdef-"[(i % 17) as usize])
        .collect();
    let big = kith_platform::eventlog::NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "kith.test.v1.Big".into(),
        payload: payload.clone(),
    };
    log.append(Append {
        stream_type: "thing",
        stream_id: "big",
        expected_version: 0,
        events: vec![big],
        metadata: &Metadata::default(),
        command_key: None,
        erase_subjects: &[],
    })
    .await
    .unwrap();
    let read = log.read_stream("big", 0).await.unwrap();
    assert_eq!(read[0].payload, payload);
    let method: Option<String> = sqlx::query_scalar(
        "SELECT pg_column_compression(payload) FROM events WHERE stream_id = 'big'",
    )
    .fetch_one(log.pool())
    .await
    .unwrap();
    assert_eq!(method.as_deref(), Some("lz4"));
}
