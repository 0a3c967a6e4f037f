//! Appending a command's events to one stream, at an expected version, once per command key.

use sqlx::PgExecutor;
use sqlx::error::ErrorKind;
use uuid::Uuid;

use super::{EventLog, Metadata};
use crate::{Error, Result};

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// The fully-qualified protobuf message name.
    pub event_type: String,
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// Encodes a protobuf event under its fully-qualified name, with a fresh time-ordered id.
    pub fn from_message<M: prost::Name>(message: &M) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: M::full_name(),
            payload: message.encode_to_vec(),
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append.
    pub version: i64,
    /// The position of the last appended event (0 when nothing was appended).
    pub position: i64,
    /// True when the command key had been used before: nothing was appended and this is the
    /// first call's result.
    pub replayed: bool,
}

/// What to append: `events` to `stream_id` right after `expected_version`.
#[derive(Debug, Clone)]
pub struct Append<'a> {
    pub stream_type: &'a str,
    pub stream_id: &'a str,
    /// The version the caller decided on (0 for a new stream).
    pub expected_version: i64,
    pub events: Vec<NewEvent>,
    pub metadata: &'a Metadata,
    /// The command's idempotency key; a second append with the same key appends nothing.
    pub command_key: Option<&'a str>,
    /// Subjects whose sealing keys are destroyed in the same statement (erasure), so that no
    /// reader can ever see the erasure event while the data is still readable.
    pub erase_subjects: &'a [String],
}

// One statement, so that an append is one round trip and one commit: the events go in with a
// single multi-row insert whose primary key (stream_id, version) turns a lost race into a unique
// violation, the command key is recorded beside them, and erased subjects lose their keys.
const APPEND_SQL: &str = "
WITH appended AS (
    INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
    SELECT $1, $2, $3 + n, e, t, p, $7::jsonb
    FROM unnest($4::uuid[], $5::text[], $6::bytea[]) WITH ORDINALITY AS x(e, t, p, n)
    RETURNING version, position
), last AS (
    SELECT max(version) AS version, max(position) AS position FROM appended
), command AS (
    INSERT INTO commands (command_key, stream_id, version, position)
    SELECT $8, $2, version, position FROM last WHERE $8::text IS NOT NULL
), erased AS (
    DELETE FROM sealing_keys WHERE subject = ANY($9::text[])
)
SELECT version, position FROM last";

impl EventLog {
    /// Appends `append.events` in one statement. A lost race is [`Error::Conflict`]; a reused
    /// command key returns the first result with `replayed: true` and appends nothing.
    #[tracing::instrument(skip_all, fields(stream_id = append.stream_id, expected = append.expected_version, events = append.events.len()), err)]
    pub async fn append(&self, append: Append<'_>) -> Result<Appended> {
        let result = append_with(&self.pool, &append).await;
        if result.is_ok() {
            self.appended.notify_waiters();
        }
        match result {
            Err(Error::Conflict { .. }) | Err(Error::Database(_))
                if append.command_key.is_some() =>
            {
                // The key may have been recorded by a concurrent or earlier call of the same
                // command; its first result is then the answer.
                let key = append.command_key.unwrap_or_default();
                match self.command_result(key).await? {
                    Some(first) => Ok(first),
                    None => result,
                }
            }
            other => other,
        }
    }

    /// The first result of the command with this key, if it appended.
    pub async fn command_result(&self, command_key: &str) -> Result<Option<Appended>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT version, position FROM commands WHERE command_key = $1")
                .bind(command_key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(version, position)| Appended {
            version,
            position,
            replayed: true,
        }))
    }
}

/// Appends within the caller's executor (a pool, or a transaction the caller holds open).
pub async fn append_with<'e>(
    executor: impl PgExecutor<'e>,
    append: &Append<'_>,
) -> Result<Appended> {
    if append.events.is_empty() {
        return Ok(Appended {
            version: append.expected_version,
            position: 0,
            replayed: false,
        });
    }
    let metadata =
        serde_json::to_string(append.metadata).map_err(|err| Error::Codec(err.to_string()))?;
    let ids: Vec<Uuid> = append.events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = append
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    let payloads: Vec<&[u8]> = append.events.iter().map(|e| e.payload.as_slice()).collect();
    let row: Result<(i64, i64), sqlx::Error> = sqlx::query_as(APPEND_SQL)
        .bind(append.stream_type)
        .bind(append.stream_id)
        .bind(append.expected_version)
        .bind(ids)
        .bind(types)
        .bind(payloads)
        .bind(metadata)
        .bind(append.command_key)
        .bind(append.erase_subjects)
        .fetch_one(executor)
        .await;
    match row {
        Ok((version, position)) => Ok(Appended {
            version,
            position,
            replayed: false,
        }),
        Err(sqlx::Error::Database(db))
            if db.kind() == ErrorKind::UniqueViolation
                && db.constraint() == Some("events_pkey") =>
        {
            Err(Error::Conflict {
                stream_id: append.stream_id.to_owned(),
                expected: append.expected_version,
            })
        }
        Err(err) => Err(err.into()),
    }
}
