//! Projections: read models kept in PostgreSQL tables, fed from the service's own log or from
//! other services' JetStream streams.
//!
//! A batch of events is applied and the projection's checkpoint for that source advanced in one
//! transaction, so anything at or below the checkpoint is skipped: a redelivered or replayed event
//! has no effect. The checkpoint row is locked for the batch, so two replicas running the same
//! projection, or a rebuild swapping tables in, never apply the same event twice.

mod bus_source;
mod checkpoint;
mod log_source;
pub mod notices;
mod rebuild;
mod rebuild_bus;

use async_trait::async_trait;
use sqlx::PgConnection;

pub use bus_source::{BusSource, Delivered, apply_bus_batch, event_from_message, run_bus_source};
pub use checkpoint::{LOG_SOURCE, Stall, read_bus_checkpoint, read_checkpoint, read_stall};
pub use log_source::{LogProjector, Progress};
pub use notices::{CheckpointNotices, CheckpointWatch};
pub use rebuild::{RebuildReport, rebuild};
pub use rebuild_bus::rebuild_from_bus;

use crate::Result;
use crate::eventlog::RecordedEvent;

/// A projection fed from another service's stream, with the stream it reads.
pub type FromBus = (BusSource, std::sync::Arc<dyn Projection>);

/// A read model.
#[async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug + 'static {
    /// Unique within the service; keys the checkpoints.
    fn name(&self) -> &'static str;
    /// The tables it owns, swapped as a whole by a rebuild.
    fn tables(&self) -> &'static [&'static str];
    /// Creates its tables and indexes, unqualified and idempotent (`IF NOT EXISTS`).
    fn ddl(&self) -> &'static str;
    /// Applies one event inside the batch's transaction. Event types it has no use for are
    /// ignored.
    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()>;
    /// Whether events of streams of `stream_type` can change this projection. An event of a type
    /// this build does not know (written by a newer version) stops the projection when it does,
    /// since applying it wrongly or not at all would both be silent mistakes; when it does not,
    /// the event is skipped and counted.
    fn reads(&self, stream_type: &str) -> bool {
        let _ = stream_type;
        true
    }
    /// Whether this version knows the event type at all: by default, whether it is a message of
    /// the Kith protos this build was made with.
    fn knows(&self, event_type: &str) -> bool {
        crate::wire::is_known_event_type(event_type)
    }
    /// Called after a batch of `apply` calls has committed: the place to hand what the batch
    /// changed to work that must only see committed rows.
    fn committed(&self) {}
}

/// Which trace an event's apply belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trace<'a> {
    /// The trace of the command that wrote it, named in the event's metadata (the service's own
    /// log).
    OfEvent,
    /// Under this span (the consumer's `process` span of a bus message).
    Within(&'a tracing::Span),
    /// None: a rebuild re-applies history, which would otherwise add a span to every old trace.
    Untraced,
}

/// Applies one event, in a span in the trace `trace` says, so a trace follows a command from the
/// API through the log or the bus into every read model.
pub(crate) async fn apply_traced(
    projection: &dyn Projection,
    conn: &mut PgConnection,
    event: &RecordedEvent,
    trace: Trace<'_>,
) -> Result<()> {
    use tracing::Instrument;
    let span = match trace {
        Trace::Untraced => tracing::Span::none(),
        Trace::OfEvent | Trace::Within(_) => {
            let parent = match trace {
                Trace::Within(parent) => parent.id(),
                _ => None,
            };
            let span = tracing::info_span!(
                parent: parent,
                "projection.apply",
                otel.name = %format!("apply {}", projection.name()),
                kith.projection = projection.name(),
                kith.event_type = %event.event_type,
                kith.stream_id = %event.stream_id,
                kith.version = event.version,
            );
            if let (Trace::OfEvent, Some(traceparent)) = (trace, event.metadata().traceparent) {
                crate::telemetry::continue_traceparent(&span, &traceparent);
            }
            span
        }
    };
    if !projection.knows(&event.event_type) {
        if projection.reads(&event.stream_type) {
            return Err(crate::Error::UnknownEventType {
                stream_id: event.stream_id.clone(),
                event_type: event.event_type.clone(),
            });
        }
        crate::metrics::metrics()
            .unknown_events
            .get_or_create(&crate::metrics::UnknownEventLabels {
                projection: projection.name().to_owned(),
                event_type: event.event_type.clone(),
            })
            .inc();
        return Ok(());
    }
    projection.apply(conn, event).instrument(span).await
}

/// Creates the projection's tables if they are missing, or applies its DDL again when it changed
/// (a new index, say). Replicas starting together take turns; a replica that starts beside
/// running ones finds the DDL applied and touches nothing, so it takes no lock on the tables they
/// write (an `IF NOT EXISTS` index statement would, and deadlock with them).
///
/// Returns true while the projection must be rebuilt from its source before it serves: a new
/// version gave it a table, which holds nothing of the events applied before. The need is
/// recorded with the table and cleared by the rebuild's swap, so it survives a rebuild cut short.
pub async fn create_tables(pool: &sqlx::PgPool, projection: &dyn Projection) -> Result<bool> {
    let mut attempt = 0;
    loop {
        match apply_ddl(pool, projection).await {
            Err(crate::Error::Database(err))
                if attempt < 5
                    && crate::error::db_trouble(&err) == crate::error::DbTrouble::Contention =>
            {
                attempt += 1;
                tracing::warn!(projection = projection.name(), error = %err, "projection DDL lost a race; again");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

async fn apply_ddl(pool: &sqlx::PgPool, projection: &dyn Projection) -> Result<bool> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('kith.migrate'))")
        .execute(&mut *tx)
        .await?;
    let applied: Option<String> =
        sqlx::query_scalar("SELECT ddl FROM projection_ddl WHERE projection = $1")
            .bind(projection.name())
            .fetch_optional(&mut *tx)
            .await?;
    let missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM unnest($1::text[]) t WHERE to_regclass(t) IS NULL",
    )
    .bind(projection.tables())
    .fetch_one(&mut *tx)
    .await?;
    let pending = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT rebuild_pending FROM projection_ddl WHERE projection = $1",
        )
        .bind(projection.name())
        .fetch_optional(pool)
        .await
        .map(|pending| pending.unwrap_or(false))
    };
    if applied.as_deref() == Some(projection.ddl()) && missing == 0 {
        drop(tx);
        return Ok(pending().await?);
    }
    let total = i64::try_from(projection.tables().len()).unwrap_or(i64::MAX);
    let added = applied.is_some() && missing > 0 && missing < total;
    sqlx::raw_sql(projection.ddl()).execute(&mut *tx).await?;
    sqlx::query(
        "INSERT INTO projection_ddl (projection, ddl, rebuild_pending) VALUES ($1, $2, $3)
         ON CONFLICT (projection) DO UPDATE SET ddl = EXCLUDED.ddl, applied_at = now(),
             rebuild_pending = projection_ddl.rebuild_pending OR EXCLUDED.rebuild_pending",
    )
    .bind(projection.name())
    .bind(projection.ddl())
    .bind(added)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(pending().await?)
}
