//! Deciding a run of messaging events together gives what deciding them one by one gives: the
//! same notifications, with the same ids, reasons and channels, and the same follows. A seeded
//! history mixes what runs take (starts, posts, follows) with what they do not (edits,
//! deletions, hiding, reports), in runs of every length.

use chrono::{TimeZone, Utc};
use kith_notifications::projections::route::{Appended, decided_before_notices};
use kith_notifications::projections::{Conversations, Ledger, Members, Places};
use kith_platform::eventlog::{
    Append, Checkpoint, Metadata, NewEvent, RecordedEvent, append_all_with,
};
use kith_platform::projection::{Projection, create_tables};
use kith_platform::testing::{Lcg, TestDatabase};
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use kith_proto::notifications as npb;
use prost::{Message, Name};
use sqlx::PgPool;
use uuid::Uuid;

fn event<M: prost::Name>(
    stream_type: &str,
    stream_id: Uuid,
    version: i64,
    position: i64,
    message: &M,
) -> RecordedEvent {
    RecordedEvent {
        position,
        transaction_id: 1,
        stream_type: stream_type.into(),
        stream_id: stream_id.to_string(),
        version,
        event_id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{stream_type}/{stream_id}/{version}/{position}").as_bytes(),
        ),
        event_type: M::full_name(),
        payload: message.encode_to_vec(),
        metadata_json: "{}".into(),
        recorded_at: Utc
            .timestamp_opt(1_800_000_000 + position, 0)
            .single()
            .expect("time"),
    }
}

/// Who is where (membership's and cohorts' events) and what was said (messaging's).
fn history(seed: u64) -> (Vec<RecordedEvent>, Vec<RecordedEvent>, Vec<RecordedEvent>) {
    let mut rng = Lcg(seed);
    let community = Uuid::from_u128(1);
    let members: Vec<Uuid> = (0..12).map(|i| Uuid::from_u128(100 + i)).collect();
    let mut membership = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let role = if i == 0 {
            mpb::MemberRole::Moderator
        } else {
            mpb::MemberRole::Member
        };
        let joined = mpb::MemberJoined {
            community_id: community.to_string(),
            member_id: member.to_string(),
            role: role as i32,
            ..Default::default()
        };
        membership.push(event(
            "community",
            community,
            i as i64 + 1,
            i as i64 + 1,
            &joined,
        ));
    }
    let mut cohorts = Vec::new();
    let mut conversations = Vec::new();
    for c in 0..3u128 {
        let cohort = Uuid::from_u128(10 + c);
        let created = cpb::CohortCreated {
            community_id: community.to_string(),
            ..Default::default()
        };
        let at = cohorts.len() as i64 + 1;
        cohorts.push(event("cohort", cohort, 1, at, &created));
        for (i, member) in members.iter().skip(c as usize * 3).take(6).enumerate() {
            let seated = cpb::MemberJoinedCohort {
                cohort_id: cohort.to_string(),
                member_id: member.to_string(),
                ..Default::default()
            };
            let at = cohorts.len() as i64 + 1;
            cohorts.push(event("cohort", cohort, i as i64 + 2, at, &seated));
        }
        let readers: Vec<Uuid> = members
            .iter()
            .skip(c as usize * 3)
            .take(6)
            .copied()
            .collect();
        conversations.push((cohort, Some(cohort), readers));
    }
    let direct = Uuid::from_u128(50);
    conversations.push((direct, None, members[..3].to_vec()));

    let mut messaging = Vec::new();
    let mut versions = std::collections::HashMap::new();
    // Each new event goes at the next position.
    let next = |messaging: &mut Vec<RecordedEvent>, make: &dyn Fn(i64) -> RecordedEvent| {
        let position = messaging.len() as i64 + 1;
        messaging.push(make(position));
    };
    for (id, cohort, readers) in &conversations {
        let started = msg::ConversationStarted {
            conversation_id: id.to_string(),
            kind: if cohort.is_some() {
                msg::ConversationKind::Cohort
            } else {
                msg::ConversationKind::Direct
            } as i32,
            community_id: community.to_string(),
            cohort_id: cohort.map(|c| c.to_string()).unwrap_or_default(),
            participant_ids: if cohort.is_none() {
                readers.iter().map(Uuid::to_string).collect()
            } else {
                Vec::new()
            },
            started_by: readers[0].to_string(),
        };
        versions.insert(*id, 1i64);
        next(&mut messaging, &|p| {
            event("conversation", *id, 1, p, &started)
        });
    }
    let mut posted: Vec<(Uuid, Uuid, Uuid)> = Vec::new(); // (conversation, message, thread)
    for _ in 0..400 {
        let (id, cohort, readers) = &conversations[rng.below(conversations.len() as u64) as usize];
        let author = rng.pick(readers);
        let roll = rng.below(100);
        if roll < 8 && !posted.is_empty() {
            // Follow or unfollow a thread of someone's.
            let (conversation, _, thread) = posted[rng.below(posted.len() as u64) as usize];
            let member = rng.pick(&members);
            let reader = Uuid::from_u128(0xfeed_0000 + member.as_u128());
            let (conversation, thread) = (conversation.to_string(), thread.to_string());
            let version = {
                let v = versions.entry(reader).or_insert(0);
                *v += 1;
                *v
            };
            if roll.is_multiple_of(2) {
                let e = msg::ThreadFollowed {
                    member_id: member.to_string(),
                    conversation_id: conversation,
                    thread_id: thread,
                };
                next(&mut messaging, &|p| event("reader", reader, version, p, &e));
            } else {
                let e = msg::ThreadUnfollowed {
                    member_id: member.to_string(),
                    conversation_id: conversation,
                    thread_id: thread,
                };
                next(&mut messaging, &|p| event("reader", reader, version, p, &e));
            }
            continue;
        }
        let version = {
            let v = versions.entry(*id).or_insert(1);
            *v += 1;
            *v
        };
        if roll < 16 && !posted.is_empty() {
            // Something only one by one: an edit, a deletion, a hiding or a report.
            let (conversation, message, _) = posted[rng.below(posted.len() as u64) as usize];
            if conversation != *id {
                continue;
            }
            let (c, m) = (conversation.to_string(), message.to_string());
            match roll % 4 {
                0 => {
                    let e = msg::MessageEdited {
                        conversation_id: c,
                        message_id: m,
                        author_id: author.to_string(),
                        ..Default::default()
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
                1 => {
                    let e = msg::MessageDeleted {
                        conversation_id: c,
                        message_id: m,
                        author_id: author.to_string(),
                        deleted_by: author.to_string(),
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
                2 => {
                    let e = msg::MessageHidden {
                        conversation_id: c,
                        message_id: m,
                        hidden_by: members[0].to_string(),
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
                _ => {
                    let e = msg::MessageReported {
                        conversation_id: c,
                        report_id: Uuid::from_u128(0xabc0_0000 + version as u128).to_string(),
                        message_id: m,
                        reporter_id: author.to_string(),
                        reason: None,
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
            }
            continue;
        }
        let message = Uuid::from_u128(0x5000_0000 + messaging.len() as u128);
        let thread = match cohort {
            None => None,
            Some(_) => {
                let open: Vec<&(Uuid, Uuid, Uuid)> =
                    posted.iter().filter(|(c, _, _)| c == id).collect();
                if open.is_empty() || rng.below(4) == 0 {
                    Some(message)
                } else {
                    Some(open[rng.below(open.len() as u64) as usize].2)
                }
            }
        };
        let mentioned: Vec<String> = if rng.below(3) == 0 {
            vec![rng.pick(readers).to_string()]
        } else {
            Vec::new()
        };
        let e = msg::MessagePosted {
            conversation_id: id.to_string(),
            message_id: message.to_string(),
            thread_id: thread.map(|t| t.to_string()).unwrap_or_default(),
            author_id: author.to_string(),
            mentioned_ids: mentioned
                .into_iter()
                .filter(|m| *m != author.to_string())
                .collect(),
            mentions_everyone: rng.below(40) == 0,
            ..Default::default()
        };
        next(&mut messaging, &|p| {
            event("conversation", *id, version, p, &e)
        });
        if let Some(thread) = thread {
            posted.push((*id, message, thread));
        }
    }
    (membership, cohorts, messaging)
}

/// A schema with the notifications tables, who is where applied.
async fn prepared(
    db: &TestDatabase,
    schema: &str,
    membership: &[RecordedEvent],
    cohorts: &[RecordedEvent],
) -> PgPool {
    let pool = db.pool(schema, &[]).await;
    for projection in [
        &Ledger as &dyn Projection,
        &Members::default(),
        &Places::default(),
        &Conversations::default(),
    ] {
        create_tables(&pool, projection).await.expect("tables");
    }
    let mut tx = pool.begin().await.expect("tx");
    for e in membership {
        Members::default().apply(&mut tx, e).await.expect("members");
    }
    for e in cohorts {
        Places::default().apply(&mut tx, e).await.expect("places");
    }
    tx.commit().await.expect("commit");
    pool
}

/// What deciding left: the notification events (by stream and version) and the rules' tables.
async fn outcome(pool: &PgPool) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id || ' ' || version || ' ' || event_id || ' ' || event_type || ' ' || encode(payload, 'hex') || ' ' || metadata::text
         FROM events WHERE stream_type IN ('notice', 'notification') ORDER BY stream_id, version",
    )
    .fetch_all(pool)
    .await
    .expect("events");
    for (table, order) in [
        ("thread_follows", "conversation_id, thread_id, member_id"),
        ("message_recipients", "message_id"),
        ("retracted_messages", "message_id"),
        ("conversations", "conversation_id"),
    ] {
        let sql = format!("SELECT '{table} ' || to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        rows.extend(
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .expect("table"),
        );
    }
    rows
}

#[tokio::test]
async fn deciding_runs_together_equals_deciding_one_by_one() {
    let db = TestDatabase::create().await;
    for seed in [1u64, 7, 42] {
        let (membership, cohorts, messaging) = history(seed);
        let one = prepared(&db, &format!("one_{seed}"), &membership, &cohorts).await;
        for e in &messaging {
            let mut tx = one.begin().await.expect("tx");
            Conversations::default()
                .apply(&mut tx, e)
                .await
                .expect("apply");
            tx.commit().await.expect("commit");
        }
        let runs = prepared(&db, &format!("runs_{seed}"), &membership, &cohorts).await;
        let refs: Vec<&RecordedEvent> = messaging.iter().collect();
        for (i, chunk) in refs.chunks(1 + seed as usize * 5).enumerate() {
            let mut tx = runs.begin().await.expect("tx");
            Conversations::default()
                .apply_batch(&mut tx, chunk)
                .await
                .unwrap_or_else(|err| panic!("batch {i}: {err}"));
            tx.commit().await.expect("commit");
        }
        let (expected, got) = (outcome(&one).await, outcome(&runs).await);
        assert!(
            expected
                .iter()
                .filter(|r| !r.starts_with("thread_follows")
                    && !r.starts_with("message_recipients")
                    && !r.starts_with("retracted_messages")
                    && !r.starts_with("conversations"))
                .count()
                > 100,
            "the history decides plenty"
        );
        assert_eq!(got.len(), expected.len(), "seed {seed}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "seed {seed}");
        }
        one.close().await;
        runs.close().await;
    }
}

/// `rules` decide all of `messaging` as one run, in one transaction.
async fn decide_all(pool: &PgPool, rules: &Conversations, messaging: &[RecordedEvent]) {
    let refs: Vec<&RecordedEvent> = messaging.iter().collect();
    let mut tx = pool.begin().await.expect("tx");
    rules.apply_batch(&mut tx, &refs).await.expect("decide");
    tx.commit().await.expect("commit");
}

/// The log's events, in order.
async fn log_of(pool: &PgPool) -> Vec<RecordedEvent> {
    let mut conn = pool.acquire().await.expect("conn");
    kith_platform::eventlog::tail(&mut conn, Checkpoint::START, 1_000_000)
        .await
        .expect("log")
}

/// The ledger's notifications, built from `log`, without the positions (which differ from log
/// to log).
async fn ledger_of(pool: &PgPool, log: &[RecordedEvent]) -> Vec<String> {
    let mut tx = pool.begin().await.expect("tx");
    let refs: Vec<&RecordedEvent> = log.iter().collect();
    Ledger.apply_batch(&mut tx, &refs).await.expect("ledger");
    tx.commit().await.expect("commit");
    sqlx::query_scalar(
        "SELECT (to_jsonb(n) - 'decided_position' - 'changed_tx' - 'changed_position' - 'source_key')::text
         FROM notifications n ORDER BY notification_id",
    )
    .fetch_all(pool)
    .await
    .expect("notifications")
}

#[tokio::test]
async fn decisions_an_older_version_recorded_one_by_one_are_read_alike_and_not_decided_again() {
    let db = TestDatabase::create().await;
    let (membership, cohorts, messaging) = history(3);
    // Given the decisions of today's version: one notice per source event.
    let now = prepared(&db, "now", &membership, &cohorts).await;
    decide_all(&now, &Conversations::default(), &messaging).await;
    let now_log = log_of(&now).await;
    let notices: Vec<Vec<npb::NotificationDecided>> = now_log
        .iter()
        .filter(|e| e.event_type == npb::NotificationsDecided::full_name())
        .map(|e| {
            npb::NotificationsDecided::decode(e.payload.as_slice())
                .expect("notice")
                .notifications
        })
        .collect();
    let decided: usize = notices.iter().map(Vec::len).sum();
    assert!(
        decided > 100 && notices.len() < decided,
        "{} notices, {decided} decisions",
        notices.len()
    );
    // And the same decisions as an older version recorded them: each an event of its own.
    let old = prepared(&db, "old", &membership, &cohorts).await;
    let mut conn = old.acquire().await.expect("conn");
    let metadata = Metadata::default();
    for notice in &notices {
        let events: Vec<(String, NewEvent)> = notice
            .iter()
            .map(|d| {
                let id: Uuid = d.notification_id.parse().expect("id");
                let event = NewEvent {
                    event_id: decided_before_notices(id),
                    event_type: npb::NotificationDecided::full_name(),
                    payload: d.encode_to_vec(),
                };
                (d.notification_id.clone(), event)
            })
            .collect();
        let appends: Vec<Append<'_>> = events
            .iter()
            .map(|(stream, event)| Append {
                stream_type: "notification",
                stream_id: stream,
                expected_version: 0,
                events: vec![event.clone()],
                metadata: &metadata,
                command_key: None,
                erase_subjects: &[],
            })
            .collect();
        append_all_with(&mut *conn, &appends)
            .await
            .expect("old decisions");
    }
    drop(conn);
    // When today's version decides the same events there (a rebuild after an upgrade).
    decide_all(&old, &Conversations::default(), &messaging).await;
    // Then nothing is decided twice: no notice, each decision once.
    let old_log = log_of(&old).await;
    let count = |log: &[RecordedEvent], t: String| log.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count(&old_log, npb::NotificationsDecided::full_name()), 0);
    assert_eq!(
        count(&old_log, npb::NotificationDecided::full_name()),
        decided
    );
    // And the ledger reads both logs alike.
    let (from_notices, one_by_one) = (
        ledger_of(&now, &now_log).await,
        ledger_of(&old, &old_log).await,
    );
    assert_eq!(from_notices.len(), decided);
    assert_eq!(from_notices, one_by_one);
    // One row of each notice is its source event's key; each decision of the old form is.
    let keys = async |pool: &PgPool| -> (i64, i64) {
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE source_key), count(DISTINCT source_event_id)
             FROM notifications",
        )
        .fetch_one(pool)
        .await
        .expect("keys")
    };
    assert_eq!(
        keys(&now).await,
        (notices.len() as i64, notices.len() as i64)
    );
    assert_eq!(keys(&old).await, (decided as i64, notices.len() as i64));
    now.close().await;
    old.close().await;
}

#[tokio::test]
async fn a_ledger_from_before_source_keys_makes_every_row_a_key() {
    let db = TestDatabase::create().await;
    let (membership, cohorts, messaging) = history(9);
    let pool = prepared(&db, "ledger", &membership, &cohorts).await;
    decide_all(&pool, &Conversations::default(), &messaging).await;
    let decided = ledger_of(&pool, &log_of(&pool).await).await.len() as i64;
    // Given a ledger as an older version kept it: no key column, an index on every row's source,
    sqlx::raw_sql(
        "ALTER TABLE notifications DROP COLUMN source_key;
         CREATE INDEX notifications_source ON notifications (source_event_id, recipient_id);
         UPDATE projection_ddl SET ddl = 'an older version' WHERE projection = 'ledger';",
    )
    .execute(&pool)
    .await
    .expect("older ledger");
    // when this version applies its DDL,
    create_tables(&pool, &Ledger).await.expect("tables");
    // then every row it held is a key, rows decided after are not by default, and only the
    // smaller index is left.
    let (keys, rows): (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE source_key), count(*) FROM notifications")
            .fetch_one(&pool)
            .await
            .expect("keys");
    assert_eq!((keys, rows), (decided, decided));
    assert!(decided > 100, "{decided} rows");
    let default: String = sqlx::query_scalar(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d
         JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE d.adrelid = 'notifications'::regclass AND a.attname = 'source_key'",
    )
    .fetch_one(&pool)
    .await
    .expect("default");
    assert_eq!(default, "false");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename = 'notifications'
           AND indexname LIKE '%source%' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("indexes");
    assert_eq!(indexes, ["notifications_by_source"]);
    pool.close().await;
}

#[tokio::test]
async fn recipients_an_older_version_kept_a_row_each_are_gathered_one_row_per_message() {
    let db = TestDatabase::create().await;
    let (membership, cohorts, messaging) = history(5);
    let today = prepared(&db, "today", &membership, &cohorts).await;
    decide_all(&today, &Conversations::default(), &messaging).await;
    // Given the same recipients in the shape an older version kept, a row per recipient,
    let old = db.pool("older", &[]).await;
    sqlx::raw_sql(
        "CREATE TABLE message_recipients (
             message_id uuid NOT NULL, recipient_id uuid NOT NULL,
             notification_id uuid NOT NULL, thread_id uuid,
             PRIMARY KEY (message_id, recipient_id));
         INSERT INTO message_recipients
         SELECT r.message_id, x.recipient_id, x.notification_id, r.thread_id
         FROM today.message_recipients r,
              unnest(r.recipient_ids, r.notification_ids) AS x(recipient_id, notification_id);",
    )
    .execute(&old)
    .await
    .expect("older table");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM message_recipients")
        .fetch_one(&old)
        .await
        .expect("count");
    // when this version creates its tables there,
    create_tables(&old, &Conversations::default())
        .await
        .expect("tables");
    // then each message has one row, equal to the one deciding today wrote.
    let table = async |pool: &PgPool| -> Vec<String> {
        sqlx::query_scalar("SELECT to_jsonb(t)::text FROM message_recipients t ORDER BY message_id")
            .fetch_all(pool)
            .await
            .expect("rows")
    };
    let (expected, got) = (table(&today).await, table(&old).await);
    assert!(
        rows > expected.len() as i64 && expected.len() > 20,
        "{rows} rows gathered into {} messages",
        expected.len()
    );
    assert_eq!(got, expected);
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('message_recipients_by_row')::text")
            .fetch_one(&old)
            .await
            .expect("regclass");
    assert_eq!(left, None, "the old table is gone");
}

#[tokio::test]
async fn the_live_rules_write_the_ledgers_rows_and_the_ledger_steps_over_them() {
    let db = TestDatabase::create().await;
    let (membership, cohorts, messaging) = history(11);
    // Every column but the transaction ids (the two logs' differ), and each delivery.
    let rows = async |pool: &PgPool| -> Vec<String> {
        let mut rows: Vec<String> = sqlx::query_scalar(
            "SELECT (to_jsonb(n) - 'changed_tx')::text FROM notifications n
             ORDER BY notification_id",
        )
        .fetch_all(pool)
        .await
        .expect("notifications");
        rows.extend(
            sqlx::query_scalar::<_, String>(
                "SELECT to_jsonb(d)::text FROM deliveries d ORDER BY notification_id, channel",
            )
            .fetch_all(pool)
            .await
            .expect("deliveries"),
        );
        rows
    };
    let count = async |pool: &PgPool| -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM notifications")
            .fetch_one(pool)
            .await
            .expect("count")
    };
    // Given the rules running live, which write the ledger's rows of the posts they decide
    // together with the notices,
    let live = prepared(&db, "live", &membership, &cohorts).await;
    let log = kith_platform::eventlog::EventLog::new(live.clone());
    let rules = Conversations {
        appended: Appended::of(&log),
    };
    decide_all(&live, &rules, &messaging).await;
    let written = count(&live).await;
    assert!(written > 100, "{written} rows written with the notices");
    // when the ledger reads the log they were recorded in,
    ledger_of(&live, &log_of(&live).await).await;
    // then the ledger is the one it writes alone from the same decisions, recorded in the log
    // only (as a rebuild of the rules does).
    let alone = prepared(&db, "alone", &membership, &cohorts).await;
    decide_all(&alone, &Conversations::default(), &messaging).await;
    assert_eq!(
        count(&alone).await,
        0,
        "a rebuild's rules write no ledger rows"
    );
    ledger_of(&alone, &log_of(&alone).await).await;
    let expected = rows(&alone).await;
    assert!(expected.len() as i64 > written);
    assert_eq!(rows(&live).await, expected);
    live.close().await;
    alone.close().await;
}
