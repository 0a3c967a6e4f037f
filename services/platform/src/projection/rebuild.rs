//! Rebuilding a projection from the log: replay from the first event into fresh tables in a
//! scratch schema, then, under the projection's checkpoint lock, catch up and swap the fresh tables
//! in. Readers see the old tables until the swap commits and the new ones after; a live runner
//! waits on the lock during the swap and continues from the new checkpoint.
//!
//! Each rebuild has a scratch schema of its own, dropped when it ends however it ends, and only
//! one rebuild of a projection runs at a time (a second is refused, naming the first).

use std::time::Instant;

use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::Projection;
use super::checkpoint::{LOG_SOURCE, lock_checkpoint, write_checkpoint};
use crate::db::{self, Schema};
use crate::eventlog::{self, Checkpoint};
use crate::{Error, Result};

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    pub events: u64,
    pub checkpoint: Checkpoint,
    pub seconds: f64,
}

const BATCH: i64 = 2000;

/// A rebuild's own scratch schema, on a session that holds the projection's rebuild lock.
pub(super) struct Scratch {
    pub(super) conn: PgConnection,
    pub(super) schema: Schema,
    pub(super) scratch: Schema,
}

impl Scratch {
    /// Takes the rebuild lock of `projection` and creates an empty scratch schema holding its
    /// tables, with unqualified names resolving to the scratch tables first and the service's
    /// (the log, the keys) for everything else.
    pub(super) async fn create(
        database_url: &str,
        schema: &Schema,
        projection: &dyn Projection,
    ) -> Result<Self> {
        let mut conn = db::connect_one(database_url, schema).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(format!("{schema}.rebuild.{}", projection.name()))
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            return Err(Error::Stuck(format!(
                "another rebuild of {schema}.{} is running; wait for it to finish",
                projection.name()
            )));
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let scratch = Schema::parse(&format!("{schema}_rebuild_{}", &unique[..12]))?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA {scratch}; SET search_path TO {scratch}, {schema}"
        )))
        .execute(&mut conn)
        .await?;
        let mut made = Self {
            conn,
            schema: schema.clone(),
            scratch,
        };
        if let Err(err) = sqlx::raw_sql(AssertSqlSafe(projection.ddl()))
            .execute(&mut made.conn)
            .await
        {
            made.discard().await;
            return Err(err.into());
        }
        Ok(made)
    }

    /// Swaps the scratch tables in for `projection`'s, inside `tx` (search path: the scratch
    /// schema first), and leaves the transaction working in the service's schema.
    pub(super) async fn swap_in(
        schema: &Schema,
        scratch: &Schema,
        tx: &mut PgConnection,
        projection: &dyn Projection,
    ) -> Result<()> {
        for table in projection.tables() {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS {schema}.{table} CASCADE; \
                 ALTER TABLE {scratch}.{table} SET SCHEMA {schema}"
            )))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL search_path TO {schema}")))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Gathers the planner's statistics of `projection`'s tables, just swapped in full: without
    /// them (autovacuum off, or not yet round) the planner takes the rebuilt tables for the
    /// empty ones it saw last and may pick plans that scan them whole. Best effort.
    pub(super) async fn analyze(
        conn: &mut PgConnection,
        schema: &Schema,
        projection: &dyn Projection,
    ) {
        for table in projection.tables() {
            let analyzed = sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {schema}.{table}")))
                .execute(&mut *conn)
                .await;
            if let Err(err) = analyzed {
                tracing::warn!(%schema, table, error = %err, "could not analyze a rebuilt table");
            }
        }
    }

    /// Drops the scratch schema and ends the session (which frees the rebuild lock).
    pub(super) async fn discard(mut self) {
        let dropped = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.scratch
        )))
        .execute(&mut self.conn)
        .await;
        if let Err(err) = dropped {
            tracing::warn!(scratch = %self.scratch, error = %err, "could not drop a rebuild's scratch schema; drop it by hand");
        }
        let _ = self.conn.close().await;
    }
}

/// Rebuilds `projection` in `schema` from the service's own log. `on_progress(applied, total)`
/// is called after each batch so a CLI can draw a progress bar.
pub async fn rebuild(
    database_url: &str,
    schema: &Schema,
    projection: &dyn Projection,
    on_progress: impl FnMut(u64, u64),
) -> Result<RebuildReport> {
    let mut scratch = Scratch::create(database_url, schema, projection).await?;
    let result = replay(&mut scratch, projection, on_progress).await;
    scratch.discard().await;
    result
}

async fn replay(
    scratch: &mut Scratch,
    projection: &dyn Projection,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<RebuildReport> {
    let started = Instant::now();
    let Scratch {
        conn,
        schema,
        scratch,
    } = scratch;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let total = u64::try_from(total).unwrap_or(0);
    let mut checkpoint = Checkpoint::START;
    let mut applied = 0u64;
    loop {
        let batch = eventlog::tail(conn, checkpoint, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        let mut tx = conn.begin().await?;
        let events: Vec<&_> = batch.iter().collect();
        super::apply_rebuilding(projection, &mut tx, &events).await?;
        tx.commit().await?;
        applied += batch.len() as u64;
        checkpoint = batch.last().map_or(checkpoint, |event| event.checkpoint());
        on_progress(applied, total.max(applied));
    }

    // Swap under the checkpoint lock, after catching up with what was appended meanwhile.
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut *conn)
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
        let events: Vec<&_> = batch.iter().collect();
        super::apply_rebuilding(projection, &mut tx, &events).await?;
        applied += batch.len() as u64;
        checkpoint = batch.last().map_or(checkpoint, |event| event.checkpoint());
    }
    Scratch::swap_in(schema, scratch, &mut tx, projection).await?;
    write_checkpoint(&mut tx, projection.name(), LOG_SOURCE, checkpoint, None).await?;
    sqlx::query("UPDATE projection_ddl SET rebuild_pending = false WHERE projection = $1")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Scratch::analyze(conn, schema, projection).await;
    on_progress(applied, total.max(applied));
    Ok(RebuildReport {
        events: applied,
        checkpoint,
        seconds: started.elapsed().as_secs_f64(),
    })
}
