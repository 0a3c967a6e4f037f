//! Appending a command's events to one stream, at an expected version, once per command key.
//!
//! Appends made at the same time are committed together: a few writer tasks each take every
//! append waiting in the queue and write them in one statement, so concurrent commands share one
//! commit. If such a group fails (a lost race, a reused key), its halves are retried, down to the
//! single append at fault, so one command's conflict never fails another.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::error::ErrorKind;
use sqlx::{PgExecutor, PgPool};
use tokio::sync::{Mutex, mpsc, oneshot};
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

/// A command's idempotency key and the fingerprint of the request that first used it: the same
/// key with the same fingerprint is a retry (answered with the first result), with another
/// fingerprint a mistake (refused with [`Error::RequestReused`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandKey {
    pub key: String,
    /// A hash of what the command was asked to do; empty when there is nothing to compare (a key
    /// derived from an event, say), which matches any request.
    pub fingerprint: Vec<u8>,
}

impl CommandKey {
    pub fn new(key: impl Into<String>, fingerprint: Vec<u8>) -> Self {
        Self {
            key: key.into(),
            fingerprint,
        }
    }

    /// The first result recorded under this key, or the refusal of a different request reusing it.
    /// A row without a fingerprint (written before they were kept) matches any request.
    pub fn first_result(&self, recorded: Option<&[u8]>, first: Appended) -> Result<Appended> {
        match recorded {
            Some(recorded)
                if !recorded.is_empty()
                    && !self.fingerprint.is_empty()
                    && recorded != self.fingerprint.as_slice() =>
            {
                Err(Error::RequestReused(self.key.clone()))
            }
            _ => Ok(Appended {
                replayed: true,
                ..first
            }),
        }
    }

    /// Whether `other` is the same request under the same key.
    pub fn same_request(&self, other: &CommandKey) -> bool {
        self.key == other.key
            && (self.fingerprint.is_empty()
                || other.fingerprint.is_empty()
                || self.fingerprint == other.fingerprint)
    }
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
    pub command_key: Option<&'a CommandKey>,
    /// Subjects whose sealing keys are destroyed in the same statement (erasure), so that no
    /// reader can ever see the erasure event while the data is still readable.
    pub erase_subjects: &'a [String],
}

/// An append that can wait in the queue.
#[derive(Debug)]
struct Owned {
    stream_type: String,
    stream_id: String,
    expected_version: i64,
    events: Vec<NewEvent>,
    metadata: String,
    command_key: Option<CommandKey>,
    erase_subjects: Vec<String>,
}

impl Owned {
    fn new(append: &Append<'_>, max_event_bytes: usize) -> Result<Self> {
        if let Some(bytes) = append
            .events
            .iter()
            .map(|event| event.payload.len())
            .find(|bytes| *bytes > max_event_bytes)
        {
            return Err(Error::EventTooLarge {
                bytes,
                limit: max_event_bytes,
            });
        }
        Ok(Self {
            stream_type: append.stream_type.to_owned(),
            stream_id: append.stream_id.to_owned(),
            expected_version: append.expected_version,
            events: append.events.clone(),
            metadata: serde_json::to_string(append.metadata)
                .map_err(|err| Error::Codec(err.to_string()))?,
            command_key: append.command_key.cloned(),
            erase_subjects: append.erase_subjects.to_vec(),
        })
    }
}

// One statement, so that a group of appends is one round trip and one commit: the events go in
// with a single multi-row insert whose primary key (stream_id, version) turns a lost race into a
// unique violation, each command key is recorded beside its stream's last event, and erased
// subjects lose their keys.
const APPEND_SQL: &str = "
WITH appended AS (
    INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
    SELECT t, s, v, e, y, p, m::jsonb
    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::bytea[], $7::text[])
        AS x(t, s, v, e, y, p, m)
    RETURNING stream_id, version, position
), command AS (
    INSERT INTO commands (command_key, stream_id, version, position, fingerprint)
    SELECT k.command_key, a.stream_id, a.version, a.position, k.fingerprint
    FROM unnest($8::text[], $9::text[], $10::bigint[], $12::bytea[])
        AS k(command_key, stream_id, version, fingerprint)
    JOIN appended a ON a.stream_id = k.stream_id AND a.version = k.version
), erased AS (
    DELETE FROM sealing_keys WHERE subject = ANY($11::text[])
)
SELECT stream_id, version, position FROM appended";

// The same for a single append, which is most appends: no grouping by stream, so cheaper.
const APPEND_ONE_SQL: &str = "
WITH appended AS (
    INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
    SELECT $1, $2, $3 + n, e, y, p, $7::jsonb
    FROM unnest($4::uuid[], $5::text[], $6::bytea[]) WITH ORDINALITY AS x(e, y, p, n)
    RETURNING version, position
), last AS (
    SELECT max(version) AS version, max(position) AS position FROM appended
), command AS (
    INSERT INTO commands (command_key, stream_id, version, position, fingerprint)
    SELECT $8, $2, version, position, $10 FROM last WHERE $8::text IS NOT NULL
), erased AS (
    DELETE FROM sealing_keys WHERE subject = ANY($9::text[])
)
SELECT version, position FROM last";

// The commonest append of all: one command's events with its key and no erasure, in the leanest
// statement that records both.
const APPEND_KEYED_SQL: &str = "
WITH appended AS (
    INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
    SELECT $1, $2, $3 + n, e, y, p, $7::jsonb
    FROM unnest($4::uuid[], $5::text[], $6::bytea[]) WITH ORDINALITY AS x(e, y, p, n)
    RETURNING version, position
)
INSERT INTO commands (command_key, stream_id, version, position, fingerprint)
SELECT $8, $2, max(version), max(position), $9 FROM appended
RETURNING version, position";

async fn write_one<'e>(executor: impl PgExecutor<'e>, append: &Owned) -> Result<Appended> {
    let ids: Vec<Uuid> = append.events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = append
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    let payloads: Vec<&[u8]> = append.events.iter().map(|e| e.payload.as_slice()).collect();
    let lean = append.command_key.is_some() && append.erase_subjects.is_empty();
    let query = sqlx::query_as(if lean {
        APPEND_KEYED_SQL
    } else {
        APPEND_ONE_SQL
    })
    .bind(&append.stream_type)
    .bind(&append.stream_id)
    .bind(append.expected_version)
    .bind(ids)
    .bind(types)
    .bind(payloads)
    .bind(&append.metadata)
    .bind(append.command_key.as_ref().map(|key| key.key.as_str()));
    let fingerprint = append
        .command_key
        .as_ref()
        .map(|key| key.fingerprint.as_slice());
    let query = if lean {
        query.bind(fingerprint)
    } else {
        query.bind(&append.erase_subjects).bind(fingerprint)
    };
    let (version, position): (i64, i64) = query
        .fetch_one(executor)
        .await
        .map_err(|err| conflict_or(err, &[append]))?;
    Ok(Appended {
        version,
        position,
        replayed: false,
    })
}

/// Writes `group` in one statement; one result per append, in order.
async fn write<'e>(executor: impl PgExecutor<'e>, group: &[&Owned]) -> Result<Vec<Appended>> {
    if let [one] = group {
        return Ok(vec![write_one(executor, one).await?]);
    }
    let mut types = Vec::new();
    let mut streams = Vec::new();
    let mut versions = Vec::new();
    let mut ids = Vec::new();
    let mut event_types = Vec::new();
    let mut payloads: Vec<&[u8]> = Vec::new();
    let mut metadata = Vec::new();
    let mut keys = Vec::new();
    let mut key_streams = Vec::new();
    let mut key_versions = Vec::new();
    let mut fingerprints: Vec<&[u8]> = Vec::new();
    let mut erased = Vec::new();
    for append in group {
        for (n, event) in append.events.iter().enumerate() {
            types.push(append.stream_type.as_str());
            streams.push(append.stream_id.as_str());
            versions.push(append.expected_version + 1 + n as i64);
            ids.push(event.event_id);
            event_types.push(event.event_type.as_str());
            payloads.push(&event.payload);
            metadata.push(append.metadata.as_str());
        }
        if let Some(key) = &append.command_key {
            keys.push(key.key.as_str());
            fingerprints.push(&key.fingerprint);
            key_streams.push(append.stream_id.as_str());
            key_versions.push(append.expected_version + append.events.len() as i64);
        }
        erased.extend(append.erase_subjects.iter().map(String::as_str));
    }
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(APPEND_SQL)
        .bind(types)
        .bind(&streams)
        .bind(versions)
        .bind(ids)
        .bind(event_types)
        .bind(payloads)
        .bind(metadata)
        .bind(keys)
        .bind(key_streams)
        .bind(key_versions)
        .bind(erased)
        .bind(fingerprints)
        .fetch_all(executor)
        .await
        .map_err(|err| conflict_or(err, group))?;
    // A group can hold thousands of appends (a consumer's batch of decisions): looked up by
    // key, not by a scan of the rows per append, which made large groups quadratic.
    let positions: HashMap<(&str, i64), i64> = rows
        .iter()
        .map(|(stream_id, version, position)| ((stream_id.as_str(), *version), *position))
        .collect();
    group
        .iter()
        .map(|append| {
            let last = append.expected_version + append.events.len() as i64;
            positions
                .get(&(append.stream_id.as_str(), last))
                .map(|position| Appended {
                    version: last,
                    position: *position,
                    replayed: false,
                })
                .ok_or_else(|| {
                    Error::Codec(format!("append to {} returned no row", append.stream_id))
                })
        })
        .collect()
}

fn conflict_or(err: sqlx::Error, group: &[&Owned]) -> Error {
    match &err {
        sqlx::Error::Database(db)
            if db.kind() == ErrorKind::UniqueViolation
                && db.constraint() == Some("events_pkey") =>
        {
            let first = group.first();
            Error::Conflict {
                stream_id: first.map(|a| a.stream_id.clone()).unwrap_or_default(),
                expected: first.map_or(0, |a| a.expected_version),
            }
        }
        _ => err.into(),
    }
}

/// Whether an append failed because one of its command keys had been recorded before: the
/// statement appended nothing, and the key's first result is the answer.
pub fn key_recorded_before(err: &Error) -> bool {
    matches!(err, Error::Database(sqlx::Error::Database(db))
        if db.kind() == ErrorKind::UniqueViolation && db.constraint() == Some("commands_pkey"))
}

struct Pending {
    append: Owned,
    reply: oneshot::Sender<Result<Appended>>,
}

/// The most appends written in one statement.
const GROUP_LIMIT: usize = 64;
/// Writer tasks per log; each holds at most one connection while writing.
const WRITERS: usize = 2;

/// Appends written straight from the caller's task while the log is this quiet; beyond it they
/// queue for the writer tasks, whose hand-off costs a little latency but groups commits.
const DIRECT_LIMIT: usize = 1;

/// The queue in front of the writer tasks.
#[derive(Debug, Clone)]
pub(super) struct Writers {
    queue: mpsc::UnboundedSender<Pending>,
    in_flight: Arc<AtomicUsize>,
}

/// Counts an append in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("stream_id", &self.append.stream_id)
            .finish()
    }
}

impl Writers {
    /// Starts the writer tasks; they end when the last handle to the log is dropped.
    pub(super) fn start(pool: &PgPool) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            tokio::spawn(run_writer(pool.clone(), Arc::clone(&receiver)));
        }
        Self {
            queue,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

async fn run_writer(pool: PgPool, receiver: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    // An append to a stream already in the group waits for the next group, so that each
    // stream's result row belongs to exactly one append.
    let mut carried: Option<Pending> = None;
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let first = match carried.take() {
                Some(first) => first,
                None => match receiver.recv().await {
                    Some(first) => first,
                    None => return,
                },
            };
            let mut group = vec![first];
            while group.len() < GROUP_LIMIT {
                match receiver.try_recv() {
                    Ok(next)
                        if group
                            .iter()
                            .any(|p| p.append.stream_id == next.append.stream_id) =>
                    {
                        carried = Some(next);
                        break;
                    }
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&pool, group).await;
    }
}

fn unreachable(err: &Error) -> bool {
    matches!(err, Error::Database(db) if crate::error::db_trouble(db) == crate::error::DbTrouble::Unreachable)
}

/// Writes a group, and when it fails, each half of it again, down to single appends: a lost
/// race or a reused key costs its neighbours a retry, never their result.
async fn write_group(pool: &PgPool, group: Vec<Pending>) {
    let mut work = vec![group];
    while let Some(mut group) = work.pop() {
        let appends: Vec<&Owned> = group.iter().map(|pending| &pending.append).collect();
        match write(pool, &appends).await {
            Ok(results) => {
                for (pending, result) in group.into_iter().zip(results) {
                    let _ = pending.reply.send(Ok(result));
                }
            }
            // A lost race or one bad row: find the append at fault. But with the database out
            // of reach every half would only wait for the same failure again.
            Err(err) if group.len() > 1 && !unreachable(&err) => {
                tracing::debug!(error = %err, appends = group.len(), "group failed; writing its halves");
                let second = group.split_off(group.len() / 2);
                work.push(second);
                work.push(group);
            }
            Err(err) => {
                let shared = err.to_string();
                let mut group = group.into_iter();
                if let Some(first) = group.next() {
                    let _ = first.reply.send(Err(err));
                }
                for pending in group {
                    let _ = pending.reply.send(Err(Error::Unavailable(shared.clone())));
                }
            }
        }
    }
}

impl EventLog {
    /// Appends `append.events`, committed together with any appends made at the same time. A lost
    /// race is [`Error::Conflict`]; a reused command key returns the first result with
    /// `replayed: true` and appends nothing.
    #[tracing::instrument(
        name = "append",
        skip_all,
        fields(
            otel.name = "INSERT events",
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = "INSERT",
            db.collection.name = "events",
            kith.stream_id = append.stream_id,
            kith.expected_version = append.expected_version,
            kith.events = append.events.len(),
        ),
        err
    )]
    pub async fn append(&self, append: Append<'_>) -> Result<Appended> {
        if append.events.is_empty() {
            return Ok(Appended {
                version: append.expected_version,
                position: 0,
                replayed: false,
            });
        }
        let owned = Owned::new(&append, self.max_event_bytes)?;
        let in_flight = InFlight(Arc::clone(&self.writers.in_flight));
        let result = if in_flight.0.fetch_add(1, Ordering::Relaxed) < DIRECT_LIMIT {
            write(&self.pool, &[&owned])
                .await
                .map(|mut one| one.remove(0))
        } else {
            let (reply, result) = oneshot::channel();
            self.writers
                .queue
                .send(Pending {
                    append: owned,
                    reply,
                })
                .map_err(|_| Error::ShuttingDown)?;
            result.await.map_err(|_| Error::ShuttingDown)?
        };
        drop(in_flight);
        self.count(&result, append.events.len());
        if result.is_ok() {
            self.appended.notify_waiters();
            self.committed_here.notify_one();
            self.committed_here.notify_one();
        }
        match result {
            Err(Error::Database(ref db))
                if crate::error::db_trouble(db) == crate::error::DbTrouble::Unreachable =>
            {
                // Out of reach: the key cannot be looked up either.
                result
            }
            Err(Error::Conflict { .. }) | Err(Error::Database(_))
                if append.command_key.is_some() =>
            {
                // The key may have been recorded by a concurrent or earlier call of the same
                // command; its first result is then the answer.
                match append.command_key {
                    Some(key) => match self.command_result(key).await? {
                        Some(first) => Ok(first),
                        None => result,
                    },
                    None => result,
                }
            }
            other => other,
        }
    }

    /// Appends `appends` together in one statement and one commit, all or none: a lost race on
    /// any stream fails them all with [`Error::Conflict`]. For a caller that decided several
    /// commands in a row on one stream and wants them committed at once.
    pub async fn append_all(&self, appends: &[Append<'_>]) -> Result<Vec<Appended>> {
        let owned = appends
            .iter()
            .filter(|append| !append.events.is_empty())
            .map(|append| Owned::new(append, self.max_event_bytes))
            .collect::<Result<Vec<_>>>()?;
        if owned.is_empty() {
            return Ok(appends
                .iter()
                .map(|append| Appended {
                    version: append.expected_version,
                    position: 0,
                    replayed: false,
                })
                .collect());
        }
        let refs: Vec<&Owned> = owned.iter().collect();
        let written = write(&self.pool, &refs).await;
        self.count(&written, owned.iter().map(|o| o.events.len()).sum());
        let mut written = written?.into_iter();
        self.appended.notify_waiters();
        self.committed_here.notify_one();
        Ok(appends
            .iter()
            .map(|append| {
                if append.events.is_empty() {
                    Appended {
                        version: append.expected_version,
                        position: 0,
                        replayed: false,
                    }
                } else {
                    written.next().unwrap_or(Appended {
                        version: append.expected_version,
                        position: 0,
                        replayed: false,
                    })
                }
            })
            .collect())
    }

    fn count<T>(&self, result: &Result<T>, events: usize) {
        let labels = crate::metrics::ServiceLabels::of(self.service());
        let metrics = crate::metrics::metrics();
        match result {
            Ok(_) => {
                metrics
                    .appended
                    .get_or_create(&labels)
                    .inc_by(u64::try_from(events).unwrap_or(0));
            }
            Err(Error::Conflict { .. }) => {
                metrics.conflicts.get_or_create(&labels).inc();
            }
            Err(_) => {}
        }
    }

    /// The first results of the commands with these keys that appended, by key.
    /// The first results recorded under these keys, each with the fingerprint of the request
    /// that recorded it; check each caller's request with [`CommandKey::first_result`].
    pub async fn command_results(
        &self,
        keys: &[&CommandKey],
    ) -> Result<std::collections::HashMap<String, (Appended, Option<Vec<u8>>)>> {
        let texts: Vec<&str> = keys.iter().map(|key| key.key.as_str()).collect();
        let rows: Vec<(String, i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT command_key, version, position, fingerprint FROM commands \
             WHERE command_key = ANY($1)",
        )
        .bind(texts)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(text, version, position, fingerprint)| {
                let first = Appended {
                    version,
                    position,
                    replayed: true,
                };
                (text, (first, fingerprint))
            })
            .collect())
    }

    /// The first result of the command with this key, if it appended; [`Error::RequestReused`]
    /// if it was a different request.
    pub async fn command_result(&self, key: &CommandKey) -> Result<Option<Appended>> {
        let row: Option<(i64, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT version, position, fingerprint FROM commands WHERE command_key = $1",
        )
        .bind(&key.key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(version, position, fingerprint)| {
            key.first_result(
                fingerprint.as_deref(),
                Appended {
                    version,
                    position,
                    replayed: true,
                },
            )
        })
        .transpose()
    }
}

/// The largest event payload when the bus has not said what it carries: NATS's default
/// `max_payload` of 1 MiB, less room for the headers.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024 - crate::relay::HEADER_ALLOWANCE;

/// Appends within the caller's executor (a pool, or a transaction the caller holds open), without
/// grouping.
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
    let owned = Owned::new(append, DEFAULT_MAX_EVENT_BYTES)?;
    let mut results = write(executor, &[&owned]).await?;
    Ok(results.remove(0))
}

/// Appends several streams' events within the caller's executor in one statement, all or none:
/// for a consumer whose reaction to a batch of events is new events of its own, committed in the
/// same transaction as its checkpoint so that a redelivery can neither lose nor repeat them.
pub async fn append_all_with<'e>(
    executor: impl PgExecutor<'e>,
    appends: &[Append<'_>],
) -> Result<Vec<Appended>> {
    let owned = appends
        .iter()
        .filter(|append| !append.events.is_empty())
        .map(|append| Owned::new(append, DEFAULT_MAX_EVENT_BYTES))
        .collect::<Result<Vec<_>>>()?;
    if owned.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<&Owned> = owned.iter().collect();
    write(executor, &refs).await
}
