//! The ledger rebuilt from the log is the live one, and replaying the other services' streams
//! through the rules (a rebuild of the consumers, a redelivery) decides nothing twice.

use kith_platform::db::Schema;
use kith_platform::projection;
use kith_proto::notifications as pb;
use sqlx::PgPool;

use crate::helpers::{App, as_member, rid};

/// Every row of the ledger's tables, as JSON text, in a stable order.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("notifications", "notification_id"),
        ("deliveries", "notification_id, channel"),
        ("preferences", "member_id"),
    ] {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        let table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("snapshot");
        rows.extend(table_rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    rows
}

async fn notification_events(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_type IN ('notice', 'notification')",
    )
    .fetch_one(pool)
    .await
    .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rebuilt_ledger_equals_the_live_one_and_replaying_the_sources_adds_nothing() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(3).await;
    let [author, ana, ben] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    app.set_preferences(
        ben,
        pb::Preferences {
            time_zone: "America/New_York".into(),
            levels: vec![pb::ScopeLevel {
                community_id: String::new(),
                cohort_id: cohort.clone(),
                level: pb::Level::MentionsAndReplies as i32,
            }],
            quiet_hours: Some(pb::QuietHours {
                start_minute: 22 * 60,
                end_minute: 7 * 60,
            }),
            ..Default::default()
        },
    )
    .await;
    let thread = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} first", community.handles[1]),
        )
        .await;
    app.post(ana, &cohort, &thread.message_id, "a reply").await;
    let gone = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} soon gone", community.handles[2]),
        )
        .await;
    app.feed_until(ben, "ben's mention", |f| !f.is_empty())
        .await;
    app.messaging()
        .await
        .delete_message(as_member(
            author,
            kith_proto::messaging::DeleteMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: gone.message_id.clone(),
            },
        ))
        .await
        .expect("delete");
    app.feed_until(ben, "the retraction", |f| f.is_empty())
        .await;
    let feed = app.feed_until(author, "the reply", |f| !f.is_empty()).await;
    app.notifications()
        .await
        .mark_read(as_member(
            author,
            pb::MarkReadRequest {
                request_id: rid(),
                notification_ids: vec![feed[0].notification_id.clone()],
            },
        ))
        .await
        .expect("mark read");
    let read = app
        .feed_until(author, "the read mark", |f| f.iter().all(|n| n.read))
        .await;
    assert_eq!(read.len(), 1);

    let pool = app.pool("notifications").await;
    let live = snapshot(&pool).await;
    let events = notification_events(&pool).await;
    assert!(
        live.iter().any(|row| row.contains("\"retracted\": true")),
        "{live:#?}"
    );
    let schema = Schema::parse("notifications").expect("schema");

    let report = projection::rebuild(
        &app.env.db.url,
        &schema,
        &kith_notifications::projections::Ledger,
        |_, _| {},
    )
    .await
    .expect("rebuild the ledger");
    assert!(report.events > 0);
    assert_eq!(
        snapshot(&pool).await,
        live,
        "the rebuilt ledger is the live one"
    );

    let client = kith_platform::bus::connect(&app.env.args.nats.nats_url, "test")
        .await
        .expect("nats");
    let js = kith_platform::bus::jetstream(client);
    for (source, consumer) in kith_notifications::bus_projections(&app.env.args.nats) {
        projection::rebuild_from_bus(
            &app.env.db.url,
            &schema,
            &js,
            &source,
            consumer.as_ref(),
            |_, _| {},
        )
        .await
        .expect("replay a source through the rules");
    }
    assert_eq!(
        notification_events(&pool).await,
        events,
        "replaying the sources recorded no notification again"
    );
    assert_eq!(snapshot(&pool).await, live);
    pool.close().await;
}
