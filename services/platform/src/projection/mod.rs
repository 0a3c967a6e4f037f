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

use crate::eventlog::RecordedEvent;
use crate::{Error, Result};

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
    /// Applies several events, in order, with the effect of applying them one by one: the place
    /// for a projection to write a batch in a statement per table rather than several per event
    /// (catching up on a backlog is then bounded by the database's write rate, not by round
    /// trips). By default, one by one. When it fails, the platform rolls it back and applies the
    /// events one at a time to find the one at fault.
    async fn apply_batch(&self, conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<()> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
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

/// Where a batch of events comes from, which decides its spans.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The service's own log: an `apply {projection}` span.
    Log,
    /// A stream on the bus: a consumer span `process {stream}`, the apply under it.
    Bus { stream: &'a str },
    /// A rebuild re-applying history: no spans, which would otherwise add one to every old
    /// trace.
    Rebuild,
}

/// What applying a batch came to.
#[derive(Debug)]
pub(crate) struct Applied {
    /// How many of the events, from the first, were applied (or stepped over).
    pub(crate) count: usize,
    /// The event (by index) that stopped the rest, and why; nothing of it was written.
    pub(crate) stopped: Option<(usize, Error)>,
}

/// Applies `events`, in order, inside the caller's transaction: several at once through the
/// projection's [`Projection::apply_batch`] (one statement per table rather than several per
/// event), and when that fails, one at a time to apply what can be and find the event at fault.
///
/// Events of a type this build does not know stop the batch there when the projection reads
/// their stream, and are stepped over (counted) when it does not.
///
/// The spans continue the trace of the command that wrote the events when they all belong to
/// one (the common case: a command's events, applied as they come); a batch that mixes traces
/// (catching up, or under load) is a span of its own with a link to each, as the OpenTelemetry
/// messaging conventions have it for batch processing.
pub(crate) async fn apply_events(
    projection: &dyn Projection,
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
    source: Source<'_>,
) -> Applied {
    use tracing::Instrument;
    let mut usable = Vec::with_capacity(events.len());
    let mut stopped = None;
    for (index, event) in events.iter().enumerate() {
        if projection.knows(&event.event_type) {
            usable.push((index, *event));
        } else if projection.reads(&event.stream_type) {
            stopped = Some((
                index,
                Error::UnknownEventType {
                    stream_id: event.stream_id.clone(),
                    event_type: event.event_type.clone(),
                },
            ));
            break;
        } else {
            crate::metrics::metrics()
                .unknown_events
                .get_or_create(&crate::metrics::UnknownEventLabels {
                    projection: projection.name().to_owned(),
                    event_type: event.event_type.clone(),
                })
                .inc();
        }
    }
    let reach = stopped.as_ref().map_or(events.len(), |(index, _)| *index);
    if usable.is_empty() {
        return Applied {
            count: reach,
            stopped,
        };
    }
    let batch: Vec<&RecordedEvent> = usable.iter().map(|(_, event)| *event).collect();
    let (outer, span) = spans(projection, &batch, source);
    match apply_all(projection, conn, &batch)
        .instrument(span.clone())
        .await
    {
        Ok(()) => Applied {
            count: reach,
            stopped,
        },
        Err((at, err)) => {
            span.record("otel.status_code", "ERROR");
            outer.record("otel.status_code", "ERROR");
            let index = usable[at].0;
            Applied {
                count: index,
                stopped: Some((index, err)),
            }
        }
    }
}

/// [`apply_events`] for a rebuild, where any event that stops the batch fails the rebuild.
pub(crate) async fn apply_rebuilding(
    projection: &dyn Projection,
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<()> {
    match apply_events(projection, conn, events, Source::Rebuild)
        .await
        .stopped
    {
        Some((_, err)) => Err(err),
        None => Ok(()),
    }
}

/// Applies `batch` at once, or when that fails one event at a time; the error names the index
/// of the event at fault.
async fn apply_all(
    projection: &dyn Projection,
    conn: &mut PgConnection,
    batch: &[&RecordedEvent],
) -> std::result::Result<(), (usize, Error)> {
    use sqlx::Connection;
    if let [event] = batch {
        return projection.apply(conn, event).await.map_err(|err| (0, err));
    }
    // A savepoint, so that a failed batch leaves nothing behind to redo one by one.
    let mut savepoint = conn.begin().await.map_err(|err| (0, err.into()))?;
    let tried = projection.apply_batch(&mut savepoint, batch).await;
    match tried {
        Ok(()) => savepoint.commit().await.map_err(|err| (0, err.into())),
        Err(err) => {
            savepoint.rollback().await.map_err(|err| (0, err.into()))?;
            for (index, event) in batch.iter().enumerate() {
                projection
                    .apply(conn, event)
                    .await
                    .map_err(|err| (index, err))?;
            }
            // One by one they all applied: the batch form disagrees with `apply`, a bug in the
            // projection; what is written is `apply`'s.
            tracing::warn!(projection = projection.name(), events = batch.len(), error = %err, "a batch failed to apply at once but applied one event at a time");
            Ok(())
        }
    }
}

/// The span a batch's apply runs in, and the consumer span around it for a bus source (none for
/// the log).
fn spans(
    projection: &dyn Projection,
    batch: &[&RecordedEvent],
    source: Source<'_>,
) -> (tracing::Span, tracing::Span) {
    let name = projection.name();
    let mut types: Vec<&str> = batch.iter().map(|e| e.event_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    let types = types.join(",");
    let apply_span = |parent: Option<tracing::Id>| {
        tracing::info_span!(
            parent: parent,
            "projection.apply",
            otel.name = %format!("apply {name}"),
            otel.status_code = tracing::field::Empty,
            kith.projection = name,
            kith.events = batch.len(),
            kith.event_type = %types,
            kith.stream_id = %batch[0].stream_id,
            kith.version = batch[0].version,
        )
    };
    match source {
        Source::Rebuild => (tracing::Span::none(), tracing::Span::none()),
        Source::Log => {
            let apply = apply_span(None);
            continue_or_link(&apply, batch);
            (tracing::Span::none(), apply)
        }
        Source::Bus { stream } => {
            let process = tracing::info_span!(
                parent: None,
                "process",
                otel.name = %format!("process {stream}"),
                otel.kind = "consumer",
                otel.status_code = tracing::field::Empty,
                messaging.system = "nats",
                messaging.operation.type = "process",
                messaging.operation.name = "process",
                messaging.destination.name = stream,
                messaging.consumer.group.name = name,
                messaging.batch.message_count = batch.len(),
                messaging.message.id = %batch[0].event_id,
                kith.event_type = %types,
            );
            continue_or_link(&process, batch);
            let apply = apply_span(process.id());
            (process, apply)
        }
    }
}

/// Makes `span` a child of the events' trace when they share one, or links it to each trace.
fn continue_or_link(span: &tracing::Span, batch: &[&RecordedEvent]) {
    if !crate::telemetry::exporting() {
        return;
    }
    let parents: Vec<String> = batch
        .iter()
        .filter_map(|event| event.metadata().traceparent)
        .collect();
    let trace_of = |traceparent: &str| traceparent.get(3..35).map(str::to_owned);
    let Some(first) = parents.first() else {
        return;
    };
    if parents.iter().all(|p| trace_of(p) == trace_of(first)) {
        crate::telemetry::continue_traceparent(span, first);
    } else {
        // The conventions' limit on links per span, and an end to the cost of parsing them.
        for traceparent in parents.iter().take(128) {
            crate::telemetry::link_traceparent(span, traceparent);
        }
    }
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
