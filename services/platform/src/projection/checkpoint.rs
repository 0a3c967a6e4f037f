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
                 event_id = coalesce($6, event_id), event_sequence = coalesce($7, event_sequence)
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
