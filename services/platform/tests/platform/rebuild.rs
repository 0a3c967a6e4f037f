//! Rebuilding a projection from the log gives the same rows as the live one.

use std::sync::Arc;
use std::time::Duration;

use kith_platform::db::Schema;
use kith_platform::projection::{self, LogProjector};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Counting, SCHEMA, append_n, counted, log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_projection_equals_the_live_one_and_keeps_following_the_log() {
    let (db, log) = log().await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let projector = LogProjector::new(pool.clone(), Arc::new(Counting), log.appended());
    let progress = projector.progress();
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn(projector.run(shutdown.clone()));
    let mut last = None;
    for s in 0..5 {
        last = Some(append_n(&log, &format!("stream-{s}"), 0, 20).await);
    }
    progress
        .wait_for(last.unwrap().position, Duration::from_secs(10))
        .await
        .unwrap();
    let live = counted(&pool).await;
    assert_eq!(live.len(), 5);

    // Vandalise the live table, then rebuild while the live runner keeps running.
    sqlx::query("UPDATE counted SET events = 999")
        .execute(&pool)
        .await
        .unwrap();
    let mut reported = Vec::new();
    let report = projection::rebuild(
        &db.url,
        &Schema::parse(SCHEMA).unwrap(),
        &Counting,
        |done, total| {
            reported.push((done, total));
        },
    )
    .await
    .unwrap();
    assert_eq!(report.events, 100);
    assert_eq!(reported.last(), Some(&(100, 100)));
    assert_eq!(counted(&pool).await, live);

    // The live runner continues from the rebuilt checkpoint without applying anything twice.
    let more = append_n(&log, "stream-0", 20, 3).await;
    progress
        .wait_for(more.position, Duration::from_secs(10))
        .await
        .unwrap();
    let rows = counted(&pool).await;
    assert_eq!(rows[0], ("stream-0".into(), 23, 23));
    shutdown.cancel();
    runner.await.unwrap();
    assert_eq!(
        scratch_schemas(&pool).await,
        0,
        "the scratch schema is dropped"
    );
}

async fn scratch_schemas(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'svc_rebuild%'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuilds_started_together_never_spoil_each_other() {
    let (db, log) = log().await;
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    for s in 0..4 {
        append_n(&log, &format!("stream-{s}"), 0, 500).await;
    }
    let schema = Schema::parse(SCHEMA).unwrap();
    let rebuilds = (0..3).map(|_| projection::rebuild(&db.url, &schema, &Counting, |_, _| {}));
    let results = futures::future::join_all(rebuilds).await;
    let mut rebuilt = 0;
    for result in results {
        match result {
            Ok(report) => {
                assert_eq!(report.events, 2000);
                rebuilt += 1;
            }
            // Only one rebuild of a projection runs at a time; the others are told so.
            Err(kith_platform::Error::Stuck(message)) => {
                assert!(message.contains("another rebuild"), "{message}")
            }
            Err(other) => panic!("a rebuild failed: {other}"),
        }
    }
    assert!(rebuilt >= 1);
    assert_eq!(
        counted(&pool).await,
        (0..4)
            .map(|s| (format!("stream-{s}"), 500, 500))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        scratch_schemas(&pool).await,
        0,
        "every scratch schema is dropped"
    );
}
