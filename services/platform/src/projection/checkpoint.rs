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

/// Where `projection` stands in a bus source: the stream sequence it applied last and the event
/// id of that message (`None` before the first, or for a checkpoint written before ids were kept).
pub async fn read_bus_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
) -> Result<(u64, Option<uuid::Uuid>)> {
    let row: Option<(i64, Option<uuid::Uuid>)> = sqlx::query_as(
        "SELECT position, event_id FROM projection_checkpoints
         WHERE projection = $1 AND source = $2",
    )
    .bind(projection)
    .bind(source)
    .fetch_optional(conn)
    .await?;
    Ok(row.map_or((0, None), |(sequence, event_id)| {
        (u64::try_from(sequence).unwrap_or(0), event_id)
    }))
}

/// Moves the checkpoint (inside the caller's transaction, with the row locked by
/// [`lock_checkpoint`]), and sends the notice waiters on every replica wake on.
pub(crate) async fn write_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
    checkpoint: Checkpoint,
    event_id: Option<uuid::Uuid>,
) -> Result<()> {
    // The notice goes out at commit, to waiters on every replica (see `notices`); the channel is
    // the schema the connection works in.
    sqlx::query(
        "WITH updated AS (
             UPDATE projection_checkpoints
             SET transaction_id = $3, position = $4, event_id = $6, updated_at = now()
             WHERE projection = $1 AND source = $2
             RETURNING 1)
         SELECT pg_notify('kith_' || current_schema() || '_checkpoints', $5) FROM updated",
    )
    .bind(projection)
    .bind(source)
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.position)
    .bind(super::notices::payload(projection, source))
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(())
}
