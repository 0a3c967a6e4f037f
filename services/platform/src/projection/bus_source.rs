//! Feeding a projection from another service's JetStream stream through a durable pull consumer.
//!
//! The consumer takes the whole stream (no subject filter) so stream sequences arrive without
//! gaps; the checkpoint is the last stream sequence taken, with the event id found there. A batch
//! is applied and checkpointed in one transaction and acked only after the commit, so a crash
//! between the two redelivers messages that the checkpoint then skips.
//!
//! Replicas of a service share the durable consumer, and a shared pull consumer would hand each
//! a different part of the stream; so one replica consumes at a time, the leader of a lock named
//! after the consumer (see [`crate::leader`]). A new leader recreates the consumer right after the
//! checkpoint, so whatever a vanished leader held unacknowledged comes again at once rather than
//! after the ack wait. Before that it checks that the stream still holds the message its
//! checkpoint names: a purged, aged-out or replaced stream is refused with what to run, never
//! read past. Messages on the stream that are not Kith events are stepped over (acknowledged
//! with their batch, counted, logged), never applied.
//!
//! A batch is applied at once (see [`super::apply_events`]) and acknowledged with one ack of its
//! last message; the next batch is fetched while this one is written.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{ConsumerErrorKind, LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, AckKind, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Projection;
use super::checkpoint::{lock_checkpoint, read_bus_checkpoint, write_checkpoint};
use crate::bus::headers;
use crate::eventlog::{Checkpoint, RecordedEvent};
use crate::leader::LeaderLock;
use crate::metrics::SourceLabels;
use crate::{Error, Result};

/// A foreign stream feeding a projection.
#[derive(Debug, Clone)]
pub struct BusSource {
    /// The JetStream stream, e.g. `KITH_MEMBERSHIP`.
    pub stream: String,
    /// The durable consumer's name, unique per consuming service and projection.
    pub durable: String,
    pub batch_size: usize,
    /// The consuming service, for metrics.
    pub service: String,
}

impl BusSource {
    /// The checkpoint's source key.
    pub fn key(&self) -> String {
        format!("bus:{}", self.stream)
    }

    /// The service whose stream this is, for telling an operator what to republish.
    fn producer(&self) -> String {
        self.stream
            .rsplit("KITH_")
            .next()
            .unwrap_or(&self.stream)
            .to_ascii_lowercase()
    }
}

/// A message taken from a consumed stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// A Kith event.
    Event(RecordedEvent),
    /// Anything else published on the stream's subjects: stepped over, never applied.
    NotAnEvent {
        /// What makes it not an event.
        why: String,
    },
}

impl Delivered {
    /// What a bus message carries.
    pub fn of(message: &async_nats::Message) -> Self {
        match event_from_message(message) {
            Ok(event) => Self::Event(event),
            Err(why) => Self::NotAnEvent { why },
        }
    }
}

/// Decodes a bus message into the Kith event it carries; `Err` says why it is not one.
pub fn event_from_message(message: &async_nats::Message) -> Result<RecordedEvent, String> {
    let headers = message
        .headers
        .as_ref()
        .ok_or_else(|| "no headers".to_owned())?;
    let get = |name: &str| -> Result<String, String> {
        headers
            .get(name)
            .map(|value| value.as_str().to_owned())
            .ok_or_else(|| format!("no {name} header"))
    };
    let bad = |what: &str| format!("a bad {what} header");
    let traceparent = headers
        .get(headers::TRACEPARENT)
        .map(|v| v.as_str().to_owned());
    let metadata = crate::eventlog::Metadata {
        traceparent,
        ..Default::default()
    };
    Ok(RecordedEvent {
        position: get(headers::POSITION)?
            .parse()
            .map_err(|_| bad(headers::POSITION))?,
        transaction_id: 0,
        stream_type: get(headers::STREAM_TYPE)?,
        stream_id: get(headers::STREAM_ID)?,
        version: get(headers::VERSION)?
            .parse()
            .map_err(|_| bad(headers::VERSION))?,
        event_id: get("Nats-Msg-Id")?
            .parse::<Uuid>()
            .map_err(|_| bad("Nats-Msg-Id"))?,
        event_type: get(headers::EVENT_TYPE)?,
        payload: message.payload.to_vec(),
        metadata_json: serde_json::to_string(&metadata).unwrap_or_default(),
        recorded_at: get(headers::RECORDED_AT)?
            .parse::<DateTime<Utc>>()
            .map_err(|_| bad(headers::RECORDED_AT))?,
    })
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Events applied.
    pub applied: usize,
    /// Messages past the checkpoint that were not Kith events.
    pub set_aside: usize,
}

/// Applies `batch` (stream sequence, message) and advances the checkpoint, in one transaction.
/// Messages at or below the checkpoint are skipped; a gap after it is refused; messages that are
/// not events move the checkpoint without being applied.
pub async fn apply_bus_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    source_key: &str,
    batch: &[(u64, Delivered)],
) -> Result<BatchOutcome> {
    let mut tx = pool.begin().await?;
    let locked = lock_checkpoint(&mut tx, projection.name(), source_key).await?;
    // What lies past the checkpoint, in order and without a gap.
    let mut fresh: Vec<(i64, &Delivered)> = Vec::with_capacity(batch.len());
    let mut expected = locked.position + 1;
    for (sequence, delivered) in batch {
        let sequence =
            i64::try_from(*sequence).map_err(|_| Error::Codec("sequence overflow".into()))?;
        if sequence < expected {
            continue;
        }
        if sequence != expected {
            return Err(Error::Stuck(format!(
                "gap in {source_key} for projection {}: expected sequence {expected}, got \
                 {sequence}; if it persists, messages were removed from the stream: rebuild the \
                 stream from its log with `kith republish`",
                projection.name(),
            )));
        }
        fresh.push((sequence, delivered));
        expected += 1;
    }
    let events: Vec<(i64, &RecordedEvent)> = fresh
        .iter()
        .filter_map(|(sequence, delivered)| match delivered {
            Delivered::Event(event) => Some((*sequence, event)),
            Delivered::NotAnEvent { .. } => None,
        })
        .collect();
    let refs: Vec<&RecordedEvent> = events.iter().map(|(_, event)| *event).collect();
    let stream = source_key.strip_prefix("bus:").unwrap_or(source_key);
    let applied =
        super::apply_events(projection, &mut tx, &refs, super::Source::Bus { stream }).await;
    // The checkpoint moves over what was applied and the messages that are not events around
    // it, up to the event that stopped the batch if one did.
    let mut stopped = None;
    let mut last = match applied.stopped {
        Some((index, err @ Error::UnknownEventType { .. })) => {
            let (sequence, event) = events[index];
            stopped = Some((sequence, event, err));
            sequence - 1
        }
        Some((index, err)) => {
            drop(tx);
            let (sequence, event) = events[index];
            return Err(stop_at(pool, projection, source_key, sequence, event, err).await);
        }
        None => fresh
            .last()
            .map_or(locked.position, |(sequence, _)| *sequence),
    };
    last = last.max(locked.position);
    let mut outcome = BatchOutcome {
        applied: applied.count,
        set_aside: 0,
    };
    for (sequence, delivered) in &fresh {
        if let (Delivered::NotAnEvent { why }, true) = (delivered, *sequence <= last) {
            tracing::warn!(projection = projection.name(), source = source_key, sequence, %why, "stepped over a message that is not a Kith event");
            outcome.set_aside += 1;
        }
    }
    let last_event = events[..applied.count]
        .last()
        .map(|(sequence, event)| (event.event_id, *sequence));
    if last != locked.position {
        write_checkpoint(
            &mut tx,
            projection.name(),
            source_key,
            Checkpoint {
                transaction_id: 0,
                position: last,
            },
            last_event,
        )
        .await?;
        tx.commit().await?;
        projection.committed();
    } else {
        // Nothing new: leave the row (and its event id) as it is.
        drop(tx);
    }
    match stopped {
        Some((sequence, event, err)) => {
            Err(stop_at(pool, projection, source_key, sequence, event, err).await)
        }
        None => Ok(outcome),
    }
}

/// Records that the projection stops at the event at `sequence` because of `err` (unless the
/// trouble is the database's own, which passes), for every replica, waiting reads and the
/// operator; returns the error.
async fn stop_at(
    pool: &PgPool,
    projection: &dyn Projection,
    source_key: &str,
    sequence: i64,
    event: &RecordedEvent,
    err: Error,
) -> Error {
    if err.is_transient() && !matches!(err, Error::UnknownEventType { .. }) {
        return err;
    }
    tracing::error!(
        projection = projection.name(),
        source = source_key,
        sequence,
        event_id = %event.event_id,
        event_type = %event.event_type,
        stream_id = %event.stream_id,
        error = %err,
        "projection stopped at an event it cannot apply"
    );
    if let Err(record) = super::checkpoint::record_stall(
        pool,
        projection.name(),
        source_key,
        sequence,
        Some(event.event_id),
        &err.to_string(),
    )
    .await
    {
        tracing::warn!(projection = projection.name(), error = %record, "could not record the stall");
    }
    err
}

/// How long a consumer stood down for an event type it does not know waits before it asks to
/// lead again, so that a replica of a newer version can take the consumer over.
const STAND_DOWN: Duration = Duration::from_secs(10);

/// Runs a projection from a foreign stream until `shutdown`, consuming only while this replica
/// leads the consumer's lock.
pub async fn run_bus_source(
    pool: PgPool,
    js: jetstream::Context,
    source: BusSource,
    projection: Arc<dyn Projection>,
    shutdown: CancellationToken,
) {
    let labels = SourceLabels::new(&source.service, projection.name(), &source.key());
    let metrics = crate::metrics::metrics();
    metrics.projection_stalled.get_or_create(&labels).set(0);
    let lock = LeaderLock::new(&pool, format!("consumer.{}", source.durable));
    let mut backoff = Duration::from_millis(200);
    loop {
        let Some(leadership) = lock.campaign(&shutdown).await else {
            return;
        };
        tracing::info!(durable = %source.durable, stream = %source.stream, "consuming");
        let consumed = tokio::select! {
            result = consume(&pool, &js, &source, projection.as_ref(), &shutdown, &mut backoff) => result,
            () = leadership.lost() => Err(Error::Unavailable("consumer leadership lost".into())),
        };
        leadership.release().await;
        let Err(err) = consumed else { return };
        metrics.projection_stalled.get_or_create(&labels).set(1);
        let pause = match &err {
            Error::UnknownEventType { .. } => {
                tracing::error!(projection = projection.name(), stream = %source.stream, error = %err, stand_down = ?STAND_DOWN, "the stream holds an event this version cannot apply; standing down for a newer replica");
                STAND_DOWN
            }
            Error::Stuck(_) => {
                tracing::error!(projection = projection.name(), stream = %source.stream, error = %err, retry_in = ?backoff, "consumer cannot go on");
                backoff
            }
            _ => {
                tracing::warn!(projection = projection.name(), stream = %source.stream, error = %err, retry_in = ?backoff, "consumer interrupted; resuming from the checkpoint");
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// The stream sequence to consume from: right after the checkpoint, once the stream is known to
/// still hold the last event the checkpoint applied where it was. A checkpoint whose event moved
/// (a rebuilt stream) follows it to its new sequence.
async fn resume_after_checkpoint(
    pool: &PgPool,
    stream: &mut Stream,
    source: &BusSource,
    projection: &dyn Projection,
) -> Result<u64> {
    let key = source.key();
    let (taken, last_event) = {
        let mut conn = pool.acquire().await?;
        read_bus_checkpoint(&mut conn, projection.name(), &key).await?
    };
    let state = stream.info().await.map_err(Error::nats)?.state.clone();
    let republish = format!(
        "Run `kith republish --service {}` to rebuild the stream from its log",
        source.producer()
    );
    let lost_after = |from: u64| {
        Error::Stuck(format!(
            "stream {} lost messages after sequence {from}, where projection {} stands (it now \
             begins at {}). {republish}",
            source.stream,
            projection.name(),
            state.first_sequence
        ))
    };
    if taken == 0 {
        if state.first_sequence > 1 {
            return Err(Error::Stuck(format!(
                "stream {} begins at sequence {}: its first messages were purged or aged out, \
                 and projection {} has applied none of them. {republish}",
                source.stream,
                state.first_sequence,
                projection.name()
            )));
        }
        return Ok(1);
    }
    let Some((event_id, at)) = last_event else {
        // Only messages that were not events so far, or a checkpoint from before events were
        // named: all there is to go by is that the stream still reaches that far.
        if state.first_sequence > taken + 1 {
            return Err(lost_after(taken));
        }
        return Ok(taken + 1);
    };
    let here = match stream.get_raw_message(at).await {
        Ok(message) => crate::bus::event_identity(&message.headers).map(|(id, _)| id),
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => None,
        Err(err) => return Err(Error::nats(err)),
    };
    if here == Some(event_id) {
        if state.first_sequence > at + 1 {
            return Err(lost_after(at));
        }
        if taken == at {
            return Ok(taken + 1);
        }
        // It stepped over messages that were not events after its last event; in a rebuilt
        // stream events may stand there now. Stepping over the others again is harmless.
        move_checkpoint(pool, projection, &key, taken, at, event_id).await?;
        return Ok(at + 1);
    }
    let Some(moved_to) = find_message(stream, event_id).await? else {
        return Err(Error::Stuck(format!(
            "stream {} no longer holds event {event_id}, the last projection {} applied (at \
             sequence {at}): it was purged or replaced. {republish}; if the log no longer holds \
             it either, rebuild the projection with `kith rebuild --service {}`",
            source.stream,
            projection.name(),
            source.service
        )));
    };
    tracing::warn!(projection = projection.name(), stream = %source.stream, from = at, to = moved_to, %event_id, "the stream was rebuilt; the checkpoint follows its last event to its new sequence");
    move_checkpoint(pool, projection, &key, taken, moved_to, event_id).await?;
    Ok(moved_to + 1)
}

/// Sets the checkpoint back (or over) to `to`, where its last event `event_id` now stands, if it
/// is still at `from`.
async fn move_checkpoint(
    pool: &PgPool,
    projection: &dyn Projection,
    key: &str,
    from: u64,
    to: u64,
    event_id: Uuid,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let locked = lock_checkpoint(&mut tx, projection.name(), key).await?;
    if u64::try_from(locked.position).ok() != Some(from) {
        return Err(Error::Unavailable(
            "the checkpoint moved while being relocated".into(),
        ));
    }
    let to = i64::try_from(to).unwrap_or(i64::MAX);
    write_checkpoint(
        &mut tx,
        projection.name(),
        key,
        Checkpoint {
            transaction_id: 0,
            position: to,
        },
        Some((event_id, to)),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The sequence of the message with `Nats-Msg-Id` = `event_id`, read through headers only.
async fn find_message(stream: &Stream, event_id: Uuid) -> Result<Option<u64>> {
    let scan = stream
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            headers_only: true,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(Error::nats)?;
    let wanted = event_id.to_string();
    let mut messages = scan.messages().await.map_err(Error::nats)?;
    let last = stream.cached_info().state.last_sequence;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_secs(5), messages.next()).await
    {
        let message = message.map_err(Error::nats)?;
        let sequence = message.info().map_err(Error::nats)?.stream_sequence;
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned());
        if id.as_deref() == Some(wanted.as_str()) {
            return Ok(Some(sequence));
        }
        if sequence >= last {
            break;
        }
    }
    Ok(None)
}

/// How long a fetch waits for a first message. Short: a quiet consumer learns soon that its
/// consumer or stream is gone, and the server ends a fetch that has messages only when they stop
/// coming or its expiry passes, whichever is first.
const FETCH_EXPIRY: Duration = Duration::from_millis(500);

async fn consume(
    pool: &PgPool,
    js: &jetstream::Context,
    source: &BusSource,
    projection: &dyn Projection,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<()> {
    let mut stream = js.get_stream(&source.stream).await.map_err(Error::nats)?;
    let start = resume_after_checkpoint(pool, &mut stream, source, projection).await?;
    // A fresh consumer right after the checkpoint: nothing a previous holder left in flight is
    // waited for.
    match stream.delete_consumer(&source.durable).await {
        Ok(_) => {}
        Err(err)
            if matches!(err.kind(), ConsumerErrorKind::JetStream(js)
                if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {}
        Err(err) => return Err(Error::nats(err)),
    }
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(source.durable.clone()),
            // One ack per batch, for its last message, acknowledges the whole batch.
            ack_policy: AckPolicy::All,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_wait: Duration::from_secs(30),
            max_ack_pending: i64::try_from(source.batch_size * 2).unwrap_or(1000),
            ..Default::default()
        })
        .await
        .map_err(Error::nats)?;
    let key = source.key();
    let labels = SourceLabels::new(&source.service, projection.name(), &key);
    let metrics = crate::metrics::metrics();
    // A fetch returns what the stream holds at once, up to a batch, or waits for the first
    // message up to its expiry.
    let fetch = || {
        consumer
            .fetch()
            .max_messages(source.batch_size)
            .expires(FETCH_EXPIRY)
            .messages()
    };
    let mut next = fetch().await.map_err(Error::nats)?;
    // The sequence the next batch must start at, once one was applied.
    let mut expected: Option<u64> = None;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let mut messages = next;
        let mut batch: Vec<(u64, Delivered)> = Vec::new();
        let mut received: Vec<Message> = Vec::new();
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = shutdown.cancelled() => return Ok(()),
            };
            let Some(message) = message else { break };
            let message = message.map_err(Error::nats)?;
            let info = message.info().map_err(Error::nats)?;
            let sequence = info.stream_sequence;
            if info.delivered > 1 {
                metrics.redeliveries.get_or_create(&labels).inc();
            }
            batch.push((sequence, Delivered::of(&message)));
            received.push(message);
        }
        // The next batch is asked for before this one is applied, so that it travels while
        // this one is written rather than after (two batches fit in max_ack_pending).
        next = fetch().await.map_err(Error::nats)?;
        let Some(last) = received.last() else {
            // An empty fetch is also what a deleted consumer (or stream) looks like: make sure
            // this one still exists, or start over from the checkpoint.
            let mut consumer = consumer.clone();
            consumer.info().await.map_err(Error::nats)?;
            continue;
        };
        if let (Some(expected), Some((first, _))) = (expected, batch.first())
            && *first > expected
        {
            // The client gives up on a fetch 5 s after its expiry and drops what it holds
            // unread: a batch fetched ahead of an apply that took longer is lost here, not on
            // the stream. Starting over from the checkpoint gets it again (and finds a real gap,
            // on a fresh consumer, for what it is).
            return Err(Error::Unavailable(format!(
                "messages {expected} to {} were fetched ahead and dropped while a batch was \
                 applied; starting over from the checkpoint",
                first - 1
            )));
        }
        let outcome = apply_bus_batch(pool, projection, &key, &batch).await?;
        if outcome.set_aside > 0 {
            metrics
                .set_aside
                .get_or_create(&labels)
                .inc_by(outcome.set_aside as u64);
        }
        // Messages that are not events are acknowledged with the rest: the checkpoint has
        // stepped over them, and they are counted and logged.
        last.ack_with(AckKind::Ack).await.map_err(Error::nats)?;
        expected = batch.last().map(|(sequence, _)| sequence + 1);
        metrics.projection_stalled.get_or_create(&labels).set(0);
        *backoff = Duration::from_millis(200);
    }
}
