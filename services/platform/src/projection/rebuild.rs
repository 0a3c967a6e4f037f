//! Rebuilding a projection from the log: replay from the first event into fresh tables in a
//! scratch schema, then, under the projection's checkpoint lock, catch up and swap the fresh tables
//! in. Readers see the old tables until the swap commits and the new ones after; a live runner
//! waits on the lock during the swap and continues from the new checkpoint.

use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection};

use super::Projection;
use super::checkpoint::{LOG_SOURCE, lock_checkpoint, write_checkpoint};
use crate::Result;
use crate::db::{self, Schema};
use crate::eventlog::{self, Checkpoint};

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    pub events: u64,
    pub checkpoint: Checkpoint,
    pub seconds: f64,
}

const BATCH: i64 = 2000;

/// Rebuilds `projection` in `schema` from the service's own log. `on_progress(applied, total)`
/// is called after each batch so a CLI can draw a progress bar.
pub async fn rebuild(
    database_url: &str,
    schema: &Schema,
    projection: &dyn Projection,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<RebuildReport> {
    let started = Instant::now();
    let scratch = Schema::parse(&format!("{schema}_rebuild"))?;
    let mut conn = db::connect_one(database_url, schema).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await?;
    let total = u64::try_from(total).unwrap_or(0);
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch}"
    )))
    .execute(&mut conn)
    .await?;
    // Unqualified names now resolve to the scratch tables first, and to the service's tables
    // (the log, the keys) for everything the scratch schema lacks.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET search_path TO {scratch}, {schema}"
    )))
    .execute(&mut conn)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(projection.ddl()))
        .execute(&mut conn)
        .await?;

    let mut checkpoint = Checkpoint::START;
    let mut applied = 0u64;
    loop {
        let batch = eventlog::tail(&mut conn, checkpoint, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let mut tx = conn.begin().await?;
        for event in &batch {
            projection.apply(&mut tx, event).await?;
        }
        tx.commit().await?;
        applied += batch.len() as u64;
        checkpoint = batch.last().map_or(checkpoint, |event| event.checkpoint());
        on_progress(applied, total.max(applied));
    }

    // Swap under the checkpoint lock, after catching up with what was appended meanwhile.
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut conn)
        .await?;
    let mut tx = conn.begin().await?;
    lock_checkpoint(&mut tx, projection.name(), LOG_SOURCE).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL search_path TO {scratch}, {schema}"
    )))
    .execute(&mut *tx)
    .await?;
    loop {
        let batch = eventlog::tail(&mut tx, checkpoint, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for event in &batch {
            projection.apply(&mut tx, event).await?;
        }
        applied += batch.len() as u64;
        checkpoint = batch.last().map_or(checkpoint, |event| event.checkpoint());
    }
    for table in projection.tables() {
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {schema}.{table} CASCADE; ALTER TABLE {scratch}.{table} SET SCHEMA {schema}"))).execute(&mut *tx).await?;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL search_path TO {schema}")))
        .execute(&mut *tx)
        .await?;
    write_checkpoint(&mut tx, projection.name(), LOG_SOURCE, checkpoint).await?;
    tx.commit().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {scratch} CASCADE"
    )))
    .execute(&mut conn)
    .await?;
    on_progress(applied, total.max(applied));
    conn.close().await?;
    Ok(RebuildReport {
        events: applied,
        checkpoint,
        seconds: started.elapsed().as_secs_f64(),
    })
}
