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

pub(crate) async fn write_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    source: &str,
    checkpoint: Checkpoint,
) -> Result<()> {
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $3, position = $4, updated_at = now()
         WHERE projection = $1 AND source = $2",
    )
    .bind(projection)
    .bind(source)
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.position)
    .execute(conn)
    .await?;
    Ok(())
}
