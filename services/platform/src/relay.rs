//! The relay: moves a service's events from its PostgreSQL log to its JetStream stream, in log
//! order, each exactly once.
//!
//! One replica leads (see [`crate::leader`]). The stream itself is the checkpoint: after any error
//! the relay finds the last Kith event on the stream (skipping anything else published on its
//! subjects), checks that the log holds that very event, and continues after it. Every message
//! carries its event id as `Nats-Msg-Id`, for de-duplication, and the stream sequence it must
//! follow as `Nats-Expected-Last-Sequence`: JetStream rebuilds the stream's last sequence from its
//! own storage after a restart (unlike the last message id, which it forgets once the duplicate
//! window has passed), so a duplicate, a gap or a reordering is refused at any time, even if two
//! relays ever ran at once, and a refusal only ever leads to a resync. Within a pipelined batch
//! each message after the first also names the event before it (`Nats-Expected-Last-Msg-Id`, which
//! JetStream holds for the milliseconds that matter): if one message is refused because something
//! else took its sequence, every later one is refused too, instead of one of them matching the
//! shifted sequence and leaving a hole.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::DeleteStreamErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, message::PublishMessage as Publish};
use bytes::Bytes;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::bus::{self, StreamSpec, headers};
use crate::db::Schema;
use crate::eventlog::{self, Checkpoint, EventLog, RecordedEvent};
use crate::leader::LeaderLock;
use crate::{Error, Result};

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The service's schema, which names its relay lock.
    pub schema: Schema,
    pub stream: StreamSpec,
    /// Events read and published per round trip.
    pub batch_size: i64,
    /// How often an idle relay looks for events written by other processes.
    pub poll_interval: Duration,
    /// Where the stream is known to end, for the lag gauge; the relay moves it as it publishes.
    pub published: Published,
}

/// The log checkpoint of the last event known to be in the stream, shared between the relay (which
/// knows it exactly while it leads) and the lag sampler (which asks the stream when it can).
#[derive(Debug, Clone, Default)]
pub struct Published(std::sync::Arc<std::sync::Mutex<Checkpoint>>);

impl Published {
    /// Moves the mark to `checkpoint` if that is further.
    pub fn mark(&self, checkpoint: Checkpoint) {
        let mut mark = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *mark = (*mark).max(checkpoint);
    }

    /// Sets the mark to where the stream was found to end (which may be behind it: a stream
    /// purged or replaced).
    pub fn set(&self, checkpoint: Checkpoint) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = checkpoint;
    }

    pub fn get(&self) -> Checkpoint {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long after its last activity (a batch, an announced append) a reader keeps looking often.
pub const BUSY_FOR: Duration = Duration::from_secs(2);
/// How often it looks meanwhile.
pub const BUSY_POLL: Duration = Duration::from_millis(20);

/// Room left in a NATS message for the headers beside an event's payload.
pub const HEADER_ALLOWANCE: usize = 4096;

/// Runs the relay until `shutdown`: campaigns for leadership, publishes while leading, and
/// starts over after any error.
pub async fn run(
    config: RelayConfig,
    log: EventLog,
    js: jetstream::Context,
    shutdown: CancellationToken,
) {
    let lock = LeaderLock::new(log.pool(), lock_key(&config.schema));
    let labels = crate::metrics::ServiceLabels::of(&config.schema.to_string());
    let leader_gauge = crate::metrics::metrics()
        .relay_leader
        .get_or_create(&labels)
        .clone();
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(leadership) = lock.campaign(&shutdown).await else {
            return;
        };
        tracing::info!(schema = %config.schema, stream = %config.stream.name, "relay leading");
        leader_gauge.set(1);
        let result = tokio::select! {
            result = publish_loop(&config, &log, &js, &shutdown, &mut backoff) => result,
            () = leadership.lost() => Err(Error::Unavailable("relay leadership lost".into())),
        };
        leader_gauge.set(0);
        // Hand leadership over at once rather than when the session times out.
        leadership.release().await;
        let Err(err) = result else { return };
        match &err {
            Error::Stuck(_) => {
                tracing::error!(schema = %config.schema, stream = %config.stream.name, error = %err, retry_in = ?backoff, "relay cannot continue")
            }
            _ => {
                tracing::warn!(schema = %config.schema, stream = %config.stream.name, error = %err, retry_in = ?backoff, "relay interrupted; resyncing")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Where the relay stands: after the log event `checkpoint`, with the stream ending at `sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    pub checkpoint: Checkpoint,
    pub sequence: u64,
}

/// Where the stream ends: the log checkpoint of its last Kith event and its last sequence.
/// Messages that are not Kith events are stepped over; a stream that lost its events, or holds
/// events this log never wrote, is refused with what to do about it.
pub async fn resync(
    spec: &StreamSpec,
    log: &EventLog,
    js: &jetstream::Context,
) -> Result<StreamEnd> {
    let mut stream = spec.ensure(js).await?;
    stream_end(spec, log, &mut stream).await
}

/// Where `stream` ends, as [`resync`] finds it, without creating anything (for `kith status`).
pub async fn stream_end(
    spec: &StreamSpec,
    log: &EventLog,
    stream: &mut Stream,
) -> Result<StreamEnd> {
    let state = stream.info().await.map_err(Error::nats)?.state.clone();
    let last = state.last_sequence;
    if last == 0 {
        return Ok(StreamEnd {
            checkpoint: Checkpoint::START,
            sequence: 0,
        });
    }
    if state.first_sequence > 1 {
        tracing::warn!(
            stream = %spec.name,
            first_sequence = state.first_sequence,
            "the stream lost its first messages (purged or aged out): consumers starting from \
             nothing will refuse it; rebuild it with `kith republish`"
        );
    }
    let Some((sequence, event_id, position)) =
        last_kith_event(stream, state.first_sequence, last).await?
    else {
        if state.first_sequence > 1 {
            return Err(Error::Stuck(format!(
                "stream {} ends at sequence {last} but holds no Kith event from sequence {} on: \
                 its events were purged or aged out, so consumers would miss them. \
                 Rebuild it from the log with `kith republish`",
                spec.name, state.first_sequence
            )));
        }
        // Only other messages so far: publish the log from its start after them.
        return Ok(StreamEnd {
            checkpoint: Checkpoint::START,
            sequence: last,
        });
    };
    let held = log.event_at(position).await?;
    match held {
        Some(event) if event.event_id == event_id => Ok(StreamEnd {
            checkpoint: event.checkpoint(),
            sequence: last,
        }),
        _ => Err(Error::Stuck(format!(
            "stream {} holds event {event_id} at sequence {sequence} as position {position}, \
             which this log does not hold: the stream belongs to another database or an earlier \
             log. Rebuild it from this log with `kith republish`",
            spec.name
        ))),
    }
}

/// The last message at or below `last` that is a Kith event: (sequence, event id, position).
async fn last_kith_event(
    stream: &Stream,
    first: u64,
    last: u64,
) -> Result<Option<(u64, uuid::Uuid, i64)>> {
    let mut sequence = last;
    let mut stepped_over = 0u64;
    while sequence >= first.max(1) {
        match stream.get_raw_message(sequence).await {
            Ok(message) => {
                if let Some((event_id, position)) = bus::event_identity(&message.headers) {
                    if stepped_over > 0 {
                        tracing::warn!(stream = %stream.cached_info().config.name, stepped_over, "stepped over messages that are not Kith events");
                    }
                    return Ok(Some((sequence, event_id, position)));
                }
                stepped_over += 1;
            }
            // Deleted on its own (a removed message): look further back.
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {}
            Err(err) => return Err(Error::nats(err)),
        }
        sequence -= 1;
    }
    Ok(None)
}

async fn publish_loop(
    config: &RelayConfig,
    log: &EventLog,
    js: &jetstream::Context,
    shutdown: &CancellationToken,
    backoff: &mut Duration,
) -> Result<()> {
    let StreamEnd {
        mut checkpoint,
        mut sequence,
    } = resync(&config.stream, log, js).await?;
    config.published.mark(checkpoint);
    let max_payload = js.client().server_info().max_payload;
    let wake = log.appended();
    // A connection of its own rather than a pooled one: this loop is dropped wherever it stands
    // when leadership is lost, and a pooled connection dropped in the middle of a COPY would go
    // back to the pool with the rest of it unread.
    let mut conn = PgConnection::connect_with(&log.pool().connect_options()).await?;
    tracing::info!(stream = %config.stream.name, position = checkpoint.position, sequence, "relay resumed");
    let mut busy_until = tokio::time::Instant::now() + BUSY_FOR;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        // Registered before reading, so an append during the read is not missed (a `Notified`
        // counts as waiting only once enabled or polled).
        let appended = wake.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let batch = eventlog::tail(&mut conn, checkpoint, config.batch_size).await?;
        if batch.is_empty() {
            // Soon after activity the tail may hold events back for a moment (a transaction that
            // began before theirs still open), and nothing announces its end: look again soon.
            // Once quiet, sleep until an append is announced, polling only rarely.
            let pause = if tokio::time::Instant::now() < busy_until {
                BUSY_POLL
            } else {
                config.poll_interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = appended => busy_until = tokio::time::Instant::now() + BUSY_FOR,
                () = tokio::time::sleep(pause) => {}
            }
            continue;
        }
        busy_until = tokio::time::Instant::now() + BUSY_FOR;
        sequence = publish_batch(js, &config.stream, &batch, sequence, max_payload, true).await?;
        if let Some(event) = batch.last() {
            checkpoint = event.checkpoint();
            config.published.mark(checkpoint);
        }
        *backoff = Duration::from_millis(100);
    }
}

/// Publishes `batch` after stream sequence `sequence`, pipelined: the whole batch is sent, each
/// message expecting the one before it, then the acks are checked in order. Returns the stream's
/// new last sequence.
async fn publish_batch(
    js: &jetstream::Context,
    spec: &StreamSpec,
    batch: &[RecordedEvent],
    sequence: u64,
    max_payload: usize,
    traced: bool,
) -> Result<u64> {
    let mut acks = Vec::with_capacity(batch.len());
    let mut previous: Option<&RecordedEvent> = None;
    for (expected, event) in (sequence..).zip(batch) {
        let size = event.payload.len() + HEADER_ALLOWANCE;
        if size > max_payload {
            return Err(Error::Stuck(format!(
                "event {} at position {} is {} bytes, more than the {max_payload} bytes NATS \
                 carries in a message (max_payload): raise max_payload on the NATS servers",
                event.event_id,
                event.position,
                event.payload.len()
            )));
        }
        let subject = spec.subject(&event.stream_type, &event.stream_id);
        // A republish sends history again: spans in every old trace would say nothing new. And
        // with no collector there is nothing to join up.
        let span = match traced && crate::telemetry::exporting() {
            true => publish_span(spec, &subject, event),
            false => tracing::Span::none(),
        };
        let mut publish = message(event, crate::telemetry::traceparent_of(&span))
            .expected_last_sequence(expected);
        if let Some(previous) = previous {
            // Chains the pipeline: were the message before refused and another message taken
            // its place, the sequence alone would match this one's expectation again.
            publish = publish.expected_last_message_id(previous.event_id.to_string());
        }
        let ack = js
            .send_publish(subject, publish)
            .await
            .map_err(|err| failed(&span, Error::nats(err)))?;
        acks.push((ack, expected + 1, span));
        previous = Some(event);
    }
    for (ack, stored_at, span) in acks {
        let ack = ack.await.map_err(|err| failed(&span, Error::nats(err)))?;
        if ack.duplicate || ack.sequence != stored_at {
            span.record("otel.status_code", "ERROR");
            return Err(Error::Nats(format!(
                "stream {} stored an event at sequence {} (duplicate: {}) where {stored_at} was expected",
                spec.name, ack.sequence, ack.duplicate
            )));
        }
    }
    Ok(sequence + batch.len() as u64)
}

/// The relay lock of the service whose schema is `schema`.
pub fn lock_key(schema: &Schema) -> String {
    format!("{schema}.relay")
}

/// Rebuilds the stream from the log, the source of truth: takes the relay's leadership from
/// whichever replica holds it, deletes the stream, and publishes every event of the log again in
/// log order. `on_progress(published, total)` is called after each batch. The relays resume
/// after it. Consumers find their place again by the event id their checkpoint names.
pub async fn republish(
    spec: &StreamSpec,
    schema: &Schema,
    log: &EventLog,
    js: &jetstream::Context,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<u64> {
    let leadership = LeaderLock::new(log.pool(), lock_key(schema))
        .seize()
        .await?;
    let work = async {
        match js.delete_stream(&spec.name).await {
            Ok(_) => {}
            Err(err)
                if matches!(err.kind(), DeleteStreamErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::STREAM_NOT_FOUND) => {}
            Err(err) => return Err(Error::nats(err)),
        }
        spec.ensure(js).await?;
        let max_payload = js.client().server_info().max_payload;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(log.pool())
            .await?;
        let total = u64::try_from(total).unwrap_or(0);
        let mut checkpoint = Checkpoint::START;
        let mut sequence = 0;
        let mut conn = PgConnection::connect_with(&log.pool().connect_options()).await?;
        loop {
            let batch = eventlog::tail(&mut conn, checkpoint, 1000).await?;
            let Some(last) = batch.last() else {
                return Ok(sequence);
            };
            checkpoint = last.checkpoint();
            sequence = publish_batch(js, spec, &batch, sequence, max_payload, false).await?;
            on_progress(sequence, total.max(sequence));
        }
    };
    let result = tokio::select! {
        result = work => result,
        () = leadership.lost() => Err(Error::Unavailable("lost the relay lock while republishing".into())),
    };
    leadership.release().await;
    result
}

/// The span of one event's publish, from its send to its ack, in the trace of the command that
/// wrote the event; named and attributed by the OpenTelemetry messaging conventions.
fn publish_span(spec: &StreamSpec, subject: &str, event: &RecordedEvent) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format!("publish {}", spec.name),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
        messaging.destination.name = subject,
        messaging.message.id = %event.event_id,
        messaging.message.body.size = event.payload.len(),
        kith.event_type = %event.event_type,
        kith.position = event.position,
    );
    if let Some(traceparent) = event.metadata().traceparent {
        crate::telemetry::continue_traceparent(&span, &traceparent);
    }
    span
}

/// Marks `span` failed with `err`, and returns the error.
fn failed(span: &tracing::Span, err: Error) -> Error {
    span.record("otel.status_code", "ERROR");
    err
}

/// The message that carries `event`. Its `traceparent` is the publish span's when spans are
/// recorded (so each consumer's span hangs off the publish), otherwise the event's own.
pub fn message(event: &RecordedEvent, traceparent: Option<String>) -> Publish {
    let mut map = HeaderMap::new();
    map.insert(headers::EVENT_TYPE, event.event_type.as_str());
    map.insert(headers::STREAM_TYPE, event.stream_type.as_str());
    map.insert(headers::STREAM_ID, event.stream_id.as_str());
    map.insert(headers::VERSION, event.version.to_string().as_str());
    map.insert(headers::POSITION, event.position.to_string().as_str());
    map.insert(
        headers::RECORDED_AT,
        event.recorded_at.to_rfc3339().as_str(),
    );
    if let Some(traceparent) = traceparent.or_else(|| event.metadata().traceparent) {
        map.insert(headers::TRACEPARENT, traceparent.as_str());
    }
    Publish::build()
        .payload(Bytes::from(event.payload.clone()))
        .headers(map)
        .message_id(event.event_id.to_string())
}
