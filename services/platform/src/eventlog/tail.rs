//! Reading the whole log in an order that never skips an event.
//!
//! Positions come from a sequence, so they are handed out at insert time, not at commit time: a
//! transaction can commit an event at position 10 after a reader has already seen position 11.
//! A reader that checkpointed "11" would skip 10 forever. So readers order by
//! `(transaction_id, position)` and only read transactions older than the oldest one still
//! running (`pg_snapshot_xmin`): every transaction below that horizon has committed or aborted,
//! so nothing can appear behind the checkpoint later.

use sqlx::error::BoxDynError;
use sqlx::postgres::{PgRow, PgTypeInfo, PgValueRef, Postgres};
use sqlx::{PgConnection, Row};

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
        "position, transaction_id, stream_type, stream_id, version, event_id, event_type, \
         payload, metadata, recorded_at"
    };
}
pub(crate) use event_columns;

// ORDER BY names the table's columns so the sort is the `events_tail` index, whatever the
// select list does with the same names.
const TAIL_SELECT: &str = concat!("SELECT ", event_columns!(), " FROM events");

/// PostgreSQL's `xid8` in its binary form (8 bytes, big-endian), read without a text cast.
struct Xid8(i64);

impl sqlx::Type<Postgres> for Xid8 {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("xid8")
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for Xid8 {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let bytes: [u8; 8] = value.as_bytes()?.try_into()?;
        Ok(Self(i64::from_be_bytes(bytes)))
    }
}

/// `jsonb` in its binary form (a version byte, then the JSON text), kept as text.
struct RawJsonb(String);

impl sqlx::Type<Postgres> for RawJsonb {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("jsonb")
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for RawJsonb {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        match value.as_bytes()? {
            [1, text @ ..] => Ok(Self(std::str::from_utf8(text)?.to_owned())),
            _ => Err("unknown jsonb binary version".into()),
        }
    }
}

// Tailing is the hot path of the relay, projections and replays: columns are read by position
// without per-value type checks, which the fixed column list above makes safe.
pub(crate) fn from_row(row: &PgRow) -> Result<RecordedEvent> {
    Ok(RecordedEvent {
        position: row.try_get_unchecked(0)?,
        transaction_id: row.try_get_unchecked::<Xid8, _>(1)?.0,
        stream_type: row.try_get_unchecked(2)?,
        stream_id: row.try_get_unchecked(3)?,
        version: row.try_get_unchecked(4)?,
        event_id: row.try_get_unchecked(5)?,
        event_type: row.try_get_unchecked(6)?,
        payload: row.try_get_unchecked(7)?,
        metadata_json: row.try_get_unchecked::<RawJsonb, _>(8)?.0,
        recorded_at: row.try_get_unchecked(9)?,
    })
}

/// Up to `limit` events after `after`, in `(transaction_id, position)` order, from transactions
/// that can no longer change what precedes them.
pub async fn tail(
    conn: &mut PgConnection,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<RecordedEvent>> {
    // COPY takes no parameters; every value spliced in is an integer.
    let statement = format!(
        "COPY ({TAIL_SELECT}
           WHERE (transaction_id, position) > ('{}'::xid8, {})
             AND transaction_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
           ORDER BY events.transaction_id, events.position
           LIMIT {}) TO STDOUT (FORMAT binary)",
        after.transaction_id,
        after.position,
        limit.max(0),
    );
    // The tail is always an index walk: on a table without fresh statistics the planner may
    // otherwise scan and sort the whole log for every batch (measured: 5x slower). Session-level
    // and reset at once, so it works inside a caller's transaction and leaves pooled connections
    // as they were.
    sqlx::raw_sql("SET enable_seqscan = off; SET enable_sort = off")
        .execute(&mut *conn)
        .await?;
    let capacity = usize::try_from(limit.clamp(0, 10_000)).unwrap_or(0);
    let events = super::copy::copy_events(conn, &statement, capacity).await;
    let reset = sqlx::raw_sql("RESET enable_seqscan; RESET enable_sort")
        .execute(&mut *conn)
        .await;
    let events = events?;
    reset?;
    Ok(events)
}
