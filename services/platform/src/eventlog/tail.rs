//! Reading the whole log in an order that never skips an event.
//!
//! Positions come from a sequence, so they are handed out at insert time, not at commit time: a
//! transaction can commit an event at position 10 after a reader has already seen position 11.
//! A reader that checkpointed "11" would skip 10 forever. So readers order by
//! `(transaction_id, position)` and only read transactions older than the oldest one still
//! running (`pg_snapshot_xmin`): every transaction below that horizon has committed or aborted,
//! so nothing can appear behind the checkpoint later.

use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use super::RecordedEvent;
use crate::Result;

/// Where a reader of the log stands: the last event it has seen, in commit-safe order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Checkpoint {
    pub transaction_id: i64,
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Self = Self {
        transaction_id: 0,
        position: 0,
    };
}

/// The columns every reader selects, in the order [`from_row`] reads them.
macro_rules! event_columns {
    () => {
        "position, transaction_id::text::bigint, stream_type, stream_id, version, event_id, \
         event_type, payload, metadata::text, recorded_at"
    };
}
pub(crate) use event_columns;

const TAIL_SQL: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events
     WHERE (transaction_id, position) > ($1::text::xid8, $2)
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY transaction_id, position
     LIMIT $3"
);

pub(crate) fn from_row(row: &PgRow) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        position: row.try_get(0)?,
        transaction_id: row.try_get(1)?,
        stream_type: row.try_get(2)?,
        stream_id: row.try_get(3)?,
        version: row.try_get(4)?,
        event_id: row.try_get(5)?,
        event_type: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata_json: row.try_get(8)?,
        recorded_at: row.try_get(9)?,
    })
}

/// Up to `limit` events after `after`, in `(transaction_id, position)` order, from transactions
/// that can no longer change what precedes them.
pub async fn tail<'e>(
    executor: impl PgExecutor<'e>,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<RecordedEvent>> {
    let rows = sqlx::query(TAIL_SQL)
    .bind(after.transaction_id.to_string())
    .bind(after.position)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter().map(from_row).collect()
}
