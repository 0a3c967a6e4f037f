//! The checkpoint rows of projections.

use sqlx::PgConnection;

use crate::Result;
use crate::eventlog::Checkpoint;

/// The source name of a service's own log.
pub const LOG_SOURCE: &str = "log";

/// Where `projection` stands in `source` (the start when it never ran).
pub async fn read_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
) -> Result<Checkpoint> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id, position FROM projection_checkpoints
         WHERE projection = $1 AND source = $2",
    )
    .bind(projection)
    .bind(source)
    .fetch_optional(conn)
    .await?;
    Ok(
        row.map_or(Checkpoint::START, |(transaction_id, position)| Checkpoint {
            transaction_id,
            position,
        }),
    )
}

/// Locks the checkpoint row for the rest of the transaction (creating it at the start when
/// missing) and returns it. Everything that applies events to the projection goes through here.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
) -> Result<Checkpoint> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, source) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(projection)
    .bind(source)
    .execute(&mut *conn)
    .await?;
    let (transaction_id, position): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id, position FROM projection_checkpoints
         WHERE projection = $1 AND source = $2 FOR UPDATE",
    )
    .bind(projection)
    .bind(source)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Checkpoint {
        transaction_id,
        position,
    })
}

/// Where `projection` stands in a bus source: the last stream sequence it took, and the last
/// event it applied with that event's sequence (`None` before the first, or for a checkpoint
/// written before they were kept).
pub async fn read_bus_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
) -> Result<(u64, Option<(uuid::Uuid, u64)>)> {
    let row: Option<(i64, Option<uuid::Uuid>, Option<i64>)> = sqlx::query_as(
        "SELECT position, event_id, event_sequence FROM projection_checkpoints
         WHERE projection = $1 AND source = $2",
    )
    .bind(projection)
    .bind(source)
    .fetch_optional(conn)
    .await?;
    let sequence = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(
        row.map_or((0, None), |(position, event_id, event_sequence)| {
            (
                sequence(position),
                event_id.zip(event_sequence.map(sequence)),
            )
        }),
    )
}

/// Moves the checkpoint (inside the caller's transaction, with the row locked by
/// [`lock_checkpoint`]), and sends the notice waiters on every replica wake on. A bus source
/// names the last event applied and its sequence; `None` keeps the ones recorded before (a batch
/// of messages that were not events).
pub(crate) async fn write_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
    checkpoint: Checkpoint,
    last_event: Option<(uuid::Uuid, i64)>,
) -> Result<()> {
    // The notice goes out at commit, to waiters on every replica (see `notices`); the channel is
    // the schema the connection works in.
    sqlx::query(
        "WITH updated AS (
             UPDATE projection_checkpoints
             SET transaction_id = $3, position = $4, updated_at = now(),
                 event_id = coalesce($6, event_id), event_sequence = coalesce($7, event_sequence),
                 stalled_position = NULL, stalled_event = NULL, stalled_error = NULL,
                 stalled_since = NULL
             WHERE projection = $1 AND source = $2
             RETURNING 1)
         SELECT pg_notify('kith_' || current_schema() || '_checkpoints', $5) FROM updated",
    )
    .bind(projection)
    .bind(source)
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.position)
    .bind(super::notices::payload(projection, source))
    .bind(last_event.map(|(id, _)| id))
    .bind(last_event.map(|(_, sequence)| sequence))
    .execute(conn)
    .await?;
    Ok(())
}

/// Why a projection stopped: the event it could not apply (its log position, or its stream
/// sequence for a bus source), and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    pub position: i64,
    pub event_id: Option<uuid::Uuid>,
    pub error: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// Records that `projection` stopped at an event in `source`, for every replica and the operator
/// to see (the first time's `since` is kept while it stays stopped there).
pub(crate) async fn record_stall(
    pool: &sqlx::PgPool,
    projection: &str,
    source: &str,
    position: i64,
    event_id: Option<uuid::Uuid>,
    error: &str,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // The row may be held by a batch in flight; a stall record never waits long for it.
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO projection_checkpoints (projection, source) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(projection)
    .bind(source)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE projection_checkpoints
         SET stalled_since = CASE WHEN stalled_position = $3 THEN stalled_since ELSE now() END,
             stalled_position = $3, stalled_event = $4, stalled_error = $5
         WHERE projection = $1 AND source = $2",
    )
    .bind(projection)
    .bind(source)
    .bind(position)
    .bind(event_id)
    .bind(crate::text::storable(error).as_ref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A stall as stored: position, event, error, since.
type StallRow = (
    Option<i64>,
    Option<uuid::Uuid>,
    Option<String>,
    Option<chrono::DateTime<chrono::Utc>>,
);

/// Why `projection` is stopped in `source`, if it is.
pub async fn read_stall(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
) -> Result<Option<Stall>> {
    let row: Option<StallRow> = sqlx::query_as(
        "SELECT stalled_position, stalled_event, stalled_error, stalled_since
             FROM projection_checkpoints WHERE projection = $1 AND source = $2",
    )
    .bind(projection)
    .bind(source)
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|(position, event_id, error, since)| {
        Some(Stall {
            position: position?,
            event_id,
            error: error?,
            since: since?,
        })
    }))
}
