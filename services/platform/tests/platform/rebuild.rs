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
    let scratch: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'svc_rebuild'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(scratch, 0, "the scratch schema is dropped");
}
