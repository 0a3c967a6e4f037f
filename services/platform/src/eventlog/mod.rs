//! The event log of one service: an append-only table in its schema (see
//! `migrations/0001_event_log.sql`). Appends are optimistic at an expected version and idempotent
//! per command key; readers load a stream or tail the whole log without ever skipping an event.

mod append;
mod copy;
mod metadata;
mod tail;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

pub use append::{
    Append, Appended, CommandKey, DEFAULT_MAX_EVENT_BYTES, NewEvent, append_all_with, append_with,
    key_recorded_before,
};
pub use metadata::Metadata;
pub use tail::{Checkpoint, tail};

use crate::Result;

/// An event as it stands in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Global order of insertion; not commit order (see [`Checkpoint`]).
    pub position: i64,
    /// The writing transaction's id; with `position` it orders the log in commit-safe order.
    pub transaction_id: i64,
    pub stream_type: String,
    pub stream_id: String,
    /// 1 for a stream's first event, then one more for each.
    pub version: i64,
    pub event_id: Uuid,
    /// The fully-qualified protobuf message name.
    pub event_type: String,
    /// The protobuf-encoded event.
    pub payload: Vec<u8>,
    /// The metadata as stored (JSON); parsed on demand by [`RecordedEvent::metadata`] because
    /// most readers never look at it and tailing is the hot path.
    pub metadata_json: String,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The parsed metadata; an unreadable column reads as empty rather than failing a reader.
    pub fn metadata(&self) -> Metadata {
        serde_json::from_str(&self.metadata_json).unwrap_or_default()
    }

    /// Where a reader stands after this event.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

/// A service's event log.
#[derive(Debug, Clone)]
pub struct EventLog {
    pool: PgPool,
    appended: Arc<Notify>,
    /// Appends committed through this handle only (not those other processes announce).
    committed_here: Arc<Notify>,
    writers: append::Writers,
    /// The `service` label of its metrics.
    service: Arc<str>,
    /// The largest payload an event may have: what the bus can carry.
    max_event_bytes: usize,
}

impl EventLog {
    /// The log in the pool's schema (migrated with [`crate::db::migrate`]).
    /// Starts the log's writer tasks, so it must be called inside a Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        Self {
            writers: append::Writers::start(&pool),
            pool,
            appended: Arc::new(Notify::new()),
            committed_here: Arc::new(Notify::new()),
            service: Arc::from(""),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }

    /// Refuses events whose payload is larger than `bytes` ([`crate::Error::EventTooLarge`]), so
    /// that nothing enters the log that the relay could not publish.
    pub fn with_max_event_bytes(mut self, bytes: usize) -> Self {
        self.max_event_bytes = bytes;
        self
    }

    /// The log of `service`: its metrics carry that name.
    pub fn for_service(mut self, service: &str) -> Self {
        self.service = Arc::from(service);
        self
    }

    /// The service whose log this is ("" when not named).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The pool the log lives in.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Woken after every append made through this handle, so in-process readers (relay,
    /// projections) pick new events up at once instead of at their next poll.
    pub fn appended(&self) -> Arc<Notify> {
        Arc::clone(&self.appended)
    }

    /// Given a permit after each append committed through this handle, for announcing appends to
    /// other processes ([`crate::projection::notices::announce_appends`]).
    pub fn committed_here(&self) -> Arc<Notify> {
        Arc::clone(&self.committed_here)
    }

    /// The events of one stream after `after_version`, in version order.
    #[tracing::instrument(skip_all, fields(stream_id), err)]
    pub async fn read_stream(
        &self,
        stream_id: &str,
        after_version: i64,
    ) -> Result<Vec<RecordedEvent>> {
        const SQL: &str = concat!(
            "SELECT ",
            tail::event_columns!(),
            " FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"
        );
        let rows = sqlx::query(SQL)
            .bind(stream_id)
            .bind(after_version)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tail::from_row).collect()
    }

    /// The event at `position`, if there is one.
    pub async fn event_at(&self, position: i64) -> Result<Option<RecordedEvent>> {
        const SQL: &str = concat!(
            "SELECT ",
            tail::event_columns!(),
            " FROM events WHERE position = $1"
        );
        let row = sqlx::query(SQL)
            .bind(position)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tail::from_row).transpose()
    }

    /// Up to `limit` events committed after `after`, in commit-safe order.
    pub async fn tail(&self, after: Checkpoint, limit: i64) -> Result<Vec<RecordedEvent>> {
        let mut conn = self.pool.acquire().await?;
        tail(&mut conn, after, limit).await
    }
}

/// The (transaction id, position) of the event at `position`, if there is one.
pub async fn checkpoint_of<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    position: i64,
) -> Result<Option<Checkpoint>> {
    let txid: Option<i64> =
        sqlx::query_scalar("SELECT transaction_id::text::bigint FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(executor)
            .await?;
    Ok(txid.map(|transaction_id| Checkpoint {
        transaction_id,
        position,
    }))
}

// The two lookups below are planned afresh each time rather than prepared once: a plan cached
// while the log was small scans it whole, and goes on doing so as the log grows wherever its
// statistics lag (autovacuum off, or not yet run). Notifications' check of what it had already
// recorded took 5.7 ms a call that way at 600 posts/s, against well under a millisecond.

/// Which of `event_ids` the log holds.
pub async fn recorded<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    event_ids: &[uuid::Uuid],
) -> Result<std::collections::HashSet<uuid::Uuid>> {
    Ok(
        sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
            .bind(event_ids)
            .persistent(false)
            .fetch_all(executor)
            .await?
            .into_iter()
            .collect(),
    )
}

/// The version of each of `streams` that has events: what an append to it expects.
pub async fn versions<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    streams: &[String],
) -> Result<std::collections::HashMap<String, i64>> {
    Ok(sqlx::query_as(
        "SELECT stream_id, max(version) FROM events WHERE stream_id = ANY($1) GROUP BY stream_id",
    )
    .bind(streams)
    .persistent(false)
    .fetch_all(executor)
    .await?
    .into_iter()
    .collect())
}
