//! Rebuilding the messages projection from the log gives the rows the live one has, and an
//! erasure or a deletion survives it: the bodies cannot be read from the log any more, nor from
//! any table.

use std::time::Duration;

use kith_platform::db::Schema;
use kith_platform::eventlog::{Checkpoint, EventLog, RecordedEvent};
use kith_platform::projection;
use kith_platform::testing::eventually;
use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::{App, cohort_with, open_direct, post, rid};

/// Returns once messaging has applied `member`'s erasure to every message of theirs.
async fn until_erased(pool: &PgPool, member: uuid::Uuid) {
    eventually(
        Duration::from_secs(10),
        "messaging to apply the erasure",
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT COALESCE(bool_and(erased), false) FROM messages WHERE author_id = $1",
            )
            .bind(member)
            .fetch_one(pool)
            .await
            .unwrap()
            .then_some(())
        },
    )
    .await;
}

/// How many messages of `conversation` a search for `words` by `member` finds.
async fn search(app: &App, member: uuid::Uuid, conversation: &str, words: &str) -> usize {
    app.messaging()
        .await
        .search_messages(app.as_member(
            member,
            msg::SearchMessagesRequest {
                query: words.into(),
                conversation_id: conversation.into(),
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .expect("search")
        .into_inner()
        .messages
        .len()
}

/// Every row of every table of the messages projection, as JSON text, in a stable order.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    snapshot_of(&mut pool.acquire().await.expect("connection")).await
}

/// [`snapshot`] of the tables `conn`'s search path finds first.
async fn snapshot_of(conn: &mut PgConnection) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("conversations", "conversation_id"),
        ("messages", "conversation_id, seq"),
        ("message_versions", "conversation_id, message_id, version"),
        ("threads", "conversation_id, thread_id"),
        (
            "reactions",
            "conversation_id, message_id, member_id, reaction",
        ),
        ("reports", "report_id"),
        ("read_cursors", "member_id, conversation_id, thread_key"),
        ("follows", "member_id, conversation_id, thread_id"),
        ("reader_settings", "member_id"),
        ("shared_threads", "member_id, conversation_id, thread_key"),
        ("message_counts", "author_id, conversation_id, thread_key"),
        ("mentions", "conversation_id, seq, member_id"),
        ("gone", "conversation_id, seq"),
    ] {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        let table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *conn)
            .await
            .expect("snapshot");
        rows.extend(table_rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuilt_equals_live_and_erased_or_deleted_bodies_are_gone_from_the_log_and_the_tables() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "ana's thread").await;
    let bens = post(
        &app,
        &mut client,
        ben,
        &cohort,
        &thread.message_id,
        "ben-secret one",
    )
    .await;
    post(&app, &mut client, ben, &cohort, "", "ben-secret two").await;
    let deleted = post(
        &app,
        &mut client,
        ana,
        &cohort,
        &thread.message_id,
        "ana-deleted",
    )
    .await;
    client
        .edit_message(app.as_member(
            ben,
            msg::EditMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: bens.message_id.clone(),
                body: "ben-secret one, edited".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("call");
    client
        .delete_message(app.as_member(
            ana,
            msg::DeleteMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: deleted.message_id.clone(),
            },
        ))
        .await
        .expect("call");
    for (member, reaction) in [(ana, "👍"), (ben, "🎉")] {
        client
            .add_reaction(app.as_member(
                member,
                msg::AddReactionRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    message_id: thread.message_id.clone(),
                    reaction: reaction.into(),
                },
            ))
            .await
            .expect("call");
    }
    client
        .report_message(app.as_member(
            ben,
            msg::ReportMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: thread.message_id.clone(),
                reason: "ben-secret reason".into(),
            },
        ))
        .await
        .expect("call");
    client
        .mark_read(app.as_member(
            ana,
            msg::MarkReadRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                seq: bens.seq,
                ..Default::default()
            },
        ))
        .await
        .expect("call");
    client
        .set_read_receipts(app.as_member(
            ana,
            msg::SetReadReceiptsRequest {
                request_id: rid(),
                private: true,
            },
        ))
        .await
        .expect("call");
    let dm = open_direct(&app, &mut client, ana, &community, &[ben]).await;
    let direct = post(&app, &mut client, ben, &dm, "", "ben-secret direct").await;
    // Everything above is in the read model before the erasure arrives.
    client
        .get_unread_counts(app.as_member(
            ana,
            msg::GetUnreadCountsRequest {
                min_position: direct.committed.unwrap().position,
            },
        ))
        .await
        .expect("caught up");

    // Search finds Ben's words, never the deleted message's.
    assert_eq!(search(&app, ana, &cohort, "secret").await, 2);
    assert_eq!(search(&app, ana, &cohort, "deleted").await, 0);

    // Ben erases himself from the community; messaging learns of it from the bus.
    app.membership()
        .await
        .erase_member(app.as_member(
            ben,
            mpb::EraseMemberRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                member_id: ben.to_string(),
            },
        ))
        .await
        .expect("erase");
    let pool = app.pool().await;
    until_erased(&pool, ben).await;
    let last = post(&app, &mut client, ana, &cohort, "", "after").await;
    client
        .get_unread_counts(app.as_member(
            ana,
            msg::GetUnreadCountsRequest {
                min_position: last.committed.unwrap().position,
            },
        ))
        .await
        .expect("caught up");

    assert_eq!(search(&app, ana, &cohort, "secret").await, 0);

    // Nothing of Ben's, nor the deleted message, in any table.
    let live = snapshot(&pool).await;
    assert!(live.len() > 15, "a meaningful snapshot: {live:#?}");
    for row in &live {
        assert!(
            !row.contains("ben-secret") && !row.contains("ana-deleted"),
            "{row}"
        );
    }
    // Nor in the log, opened with the keys that are left.
    let log = EventLog::new(pool.clone());
    let sealer = kith_platform::sealing::Sealer::with_keks(pool.clone(), None);
    let mut opener = sealer.opener();
    let mut readable = Vec::new();
    for stream in [cohort.as_str(), dm.as_str()] {
        for event in log.read_stream(stream, 0).await.unwrap() {
            if let Ok(decoded) = kith_messaging::codec::decode(Some(&mut opener), &event).await {
                readable.push(format!("{decoded:?}"));
            }
        }
    }
    assert!(readable.iter().any(|e| e.contains("ana's thread")));
    for event in &readable {
        assert!(
            !event.contains("ben-secret") && !event.contains("ana-deleted"),
            "{event}"
        );
    }

    // A rebuild gives the same rows.
    let schema = Schema::parse("messaging").expect("schema");
    for projection in kith_messaging::projections(&pool) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {}",
            projection.tables()[1]
        )))
        .execute(&pool)
        .await
        .expect("damage the live projection");
        projection::rebuild(&app.env.db.url, &schema, projection.as_ref(), |_, _| {})
            .await
            .expect("rebuild");
    }
    assert_eq!(snapshot(&pool).await, live);

    // The whole log as one batch (keys fetched together, the authors' locks taken in one
    // statement) leaves what the same events applied one by one leave, which is the live
    // rows. The batch is applied directly: through the platform, a failing batch would be
    // retried one event at a time and the difference hidden.
    let events = {
        let mut conn = pool.acquire().await.expect("connection");
        kith_platform::eventlog::tail(&mut conn, Checkpoint::START, 10_000)
            .await
            .expect("the log")
    };
    let events: Vec<&RecordedEvent> = events.iter().collect();
    assert!(
        events.len() >= 10,
        "a meaningful log: {} events",
        events.len()
    );
    for at_once in [true, false] {
        let messages = kith_messaging::projections(&pool).remove(0);
        let mut conn = PgConnection::connect(&app.env.db.url)
            .await
            .expect("connect");
        let schema = if at_once { "at_once" } else { "one_by_one" };
        // The access tables the projection reads (members, communities) stay messaging's.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA {schema}; SET search_path TO {schema}, messaging"
        )))
        .execute(&mut conn)
        .await
        .expect("a schema of its own");
        sqlx::raw_sql(sqlx::AssertSqlSafe(messages.ddl()))
            .execute(&mut conn)
            .await
            .expect("the projection's tables");
        let mut tx = conn.begin().await.expect("begin");
        if at_once {
            messages
                .apply_batch(&mut tx, &events)
                .await
                .expect("the log applies as one batch");
        } else {
            for event in &events {
                messages.apply(&mut tx, event).await.expect("apply");
            }
        }
        tx.commit().await.expect("commit");
        assert_eq!(snapshot_of(&mut conn).await, live, "applied in {schema}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_erasure_racing_the_authors_last_messages_leaves_none_of_them_readable() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "go").await;
    post(
        &app,
        &mut client,
        ben,
        &cohort,
        &thread.message_id,
        "ben-secret warm-up",
    )
    .await;
    // Ben keeps posting while his erasure goes through; posts after it are refused.
    let posting = {
        let (app, cohort, thread) = (&app, cohort.clone(), thread.message_id.clone());
        let mut client = client.clone();
        async move {
            for i in 0..40 {
                let reply = client
                    .post_message(app.as_member(
                        ben,
                        msg::PostMessageRequest {
                            request_id: rid(),
                            conversation_id: cohort.clone(),
                            thread_id: thread.clone(),
                            body: format!("ben-secret {i}"),
                            ..Default::default()
                        },
                    ))
                    .await;
                if reply.is_err() {
                    break;
                }
            }
        }
    };
    let erasing = async {
        app.membership()
            .await
            .erase_member(app.as_member(
                ben,
                mpb::EraseMemberRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    member_id: ben.to_string(),
                },
            ))
            .await
            .expect("erase")
    };
    futures::join!(posting, erasing);
    let pool = app.pool().await;
    until_erased(&pool, ben).await;
    // Every post of Ben's that was accepted is in the read model by now (ana's is after them).
    let last = post(&app, &mut client, ana, &cohort, "", "after").await;
    client
        .get_unread_counts(app.as_member(
            ana,
            msg::GetUnreadCountsRequest {
                min_position: last.committed.unwrap().position,
            },
        ))
        .await
        .expect("caught up");
    for row in snapshot(&pool).await {
        assert!(!row.contains("ben-secret"), "{row}");
    }
}
