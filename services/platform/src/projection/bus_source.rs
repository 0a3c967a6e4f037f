//! Feeding a projection from another service's JetStream stream through a durable pull consumer.
//!
//! The consumer takes the whole stream (no subject filter) so stream sequences arrive without
//! gaps; the checkpoint is the last applied stream sequence. A batch is applied and checkpointed
//! in one transaction and acked only after the commit, so a crash between the two redelivers
//! messages that the checkpoint then skips. If anything looks off (an apply error, a gap, a
//! checkpoint behind the consumer after a rebuild) the consumer is recreated from the checkpoint.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy, pull};
use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Projection;
use super::checkpoint::{lock_checkpoint, read_checkpoint, write_checkpoint};
use crate::bus::headers;
use crate::eventlog::{Checkpoint, RecordedEvent};
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
}

/// Decodes a bus message into the event it carries.
pub fn event_from_message(message: &async_nats::Message) -> Result<RecordedEvent> {
    let headers = message
        .headers
        .as_ref()
        .ok_or_else(|| Error::Codec(format!("message on {} has no headers", message.subject)))?;
    let get = |name: &str| -> Result<String> {
        headers
            .get(name)
            .map(|value| value.as_str().to_owned())
            .ok_or_else(|| {
                Error::Codec(format!(
                    "message on {} lacks header {name}",
                    message.subject
                ))
            })
    };
    let parse_err =
        |what: &str| Error::Codec(format!("message on {} has a bad {what}", message.subject));
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
            .map_err(|_| parse_err("position"))?,
        transaction_id: 0,
        stream_type: get(headers::STREAM_TYPE)?,
        stream_id: get(headers::STREAM_ID)?,
        version: get(headers::VERSION)?
            .parse()
            .map_err(|_| parse_err("version"))?,
        event_id: get("Nats-Msg-Id")?
            .parse::<Uuid>()
            .map_err(|_| parse_err("Nats-Msg-Id"))?,
        event_type: get(headers::EVENT_TYPE)?,
        payload: message.payload.to_vec(),
        metadata_json: serde_json::to_string(&metadata).unwrap_or_default(),
        recorded_at: get(headers::RECORDED_AT)?
            .parse::<DateTime<Utc>>()
            .map_err(|_| parse_err("recorded time"))?,
    })
}

/// Applies `batch` (stream sequence, event) and advances the checkpoint, in one transaction.
/// Events at or below the checkpoint are skipped; a gap after it is refused. Returns how many
/// events were applied.
pub async fn apply_bus_batch(
    pool: &PgPool,
    projection: &dyn Projection,
    source_key: &str,
    batch: &[(u64, RecordedEvent)],
) -> Result<usize> {
    let mut tx = pool.begin().await?;
    let locked = lock_checkpoint(&mut tx, projection.name(), source_key).await?;
    let mut last = locked.position;
    let mut applied = 0;
    for (sequence, event) in batch {
        let sequence =
            i64::try_from(*sequence).map_err(|_| Error::Codec("sequence overflow".into()))?;
        if sequence <= last {
            continue;
        }
        if last != 0 && sequence != last + 1 {
            return Err(Error::Projection {
                projection: projection.name().to_owned(),
                message: format!(
                    "gap in {source_key}: expected sequence {}, got {sequence}",
                    last + 1
                ),
            });
        }
        super::apply_traced(projection, &mut tx, event).await?;
        last = sequence;
        applied += 1;
    }
    write_checkpoint(
        &mut tx,
        projection.name(),
        source_key,
        Checkpoint {
            transaction_id: 0,
            position: last,
        },
    )
    .await?;
    tx.commit().await?;
    projection.committed();
    Ok(applied)
}

/// Runs a projection from a foreign stream until `shutdown`. Replicas of a service share the
/// durable consumer, and a shared pull consumer hands each replica a different part of the
/// stream; so only one replica consumes at a time: the holder of a PostgreSQL advisory lock
/// named after the consumer, on a connection of its own. The others wait and take over when it
/// stops or dies (the lock goes with its connection).
pub async fn run_bus_source(
    pool: PgPool,
    js: jetstream::Context,
    source: BusSource,
    projection: Arc<dyn Projection>,
    shutdown: CancellationToken,
) {
    // The series exist on every replica; only the one consuming moves them (take the max).
    crate::metrics::metrics().projection_lag(
        &crate::metrics::SourceLabels::new(&source.service, projection.name(), &source.key()),
        0,
        0.0,
    );
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let led = lead(&pool, &source, &shutdown, || {
            consume(&pool, &js, &source, projection.as_ref(), &shutdown)
        })
        .await;
        match led {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(projection = projection.name(), stream = %source.stream, error = %err, "consumer interrupted; recreating from checkpoint");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Waits for the consumer's lock, runs `work` while holding it, and releases it.
async fn lead<F, Fut>(
    pool: &PgPool,
    source: &BusSource,
    shutdown: &CancellationToken,
    work: F,
) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    // Detached: a session lock must not go back to the pool with its connection.
    let mut conn = pool.acquire().await?.detach();
    let key = format!("consumer.{}", source.durable);
    loop {
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&key)
            .fetch_one(&mut conn)
            .await?;
        if leader {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    tracing::info!(durable = %source.durable, stream = %source.stream, "consuming");
    let result = work().await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(&key)
        .execute(&mut conn)
        .await;
    result
}

async fn consumer_at_checkpoint(
    pool: &PgPool,
    js: &jetstream::Context,
    source: &BusSource,
    projection: &dyn Projection,
    recreate: bool,
) -> Result<Consumer<pull::Config>> {
    let stream = js.get_stream(&source.stream).await.map_err(Error::nats)?;
    let checkpoint = {
        let mut conn = pool.acquire().await?;
        read_checkpoint(&mut conn, projection.name(), &source.key()).await?
    };
    let start = u64::try_from(checkpoint.position).unwrap_or(0) + 1;
    if let Ok(mut existing) = stream.get_consumer::<pull::Config>(&source.durable).await {
        let info = existing.info().await.map_err(Error::nats)?;
        // Acked past the checkpoint means the projection was rebuilt or lost a commit: start over
        // from the checkpoint.
        if recreate || info.ack_floor.stream_sequence + 1 > start {
            stream
                .delete_consumer(&source.durable)
                .await
                .map_err(Error::nats)?;
        } else {
            return Ok(existing);
        }
    }
    stream
        .create_consumer(pull::Config {
            durable_name: Some(source.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_wait: Duration::from_secs(30),
            max_ack_pending: i64::try_from(source.batch_size * 2).unwrap_or(1000),
            ..Default::default()
        })
        .await
        .map_err(Error::nats)
}

async fn consume(
    pool: &PgPool,
    js: &jetstream::Context,
    source: &BusSource,
    projection: &dyn Projection,
    shutdown: &CancellationToken,
) -> Result<()> {
    let consumer = consumer_at_checkpoint(pool, js, source, projection, false).await?;
    let key = source.key();
    let labels = crate::metrics::SourceLabels::new(&source.service, projection.name(), &key);
    let metrics = crate::metrics::metrics();
    metrics.projection_lag(&labels, 0, 0.0);
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let mut messages = consumer
            .fetch()
            .max_messages(source.batch_size)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(Error::nats)?;
        let mut batch: Vec<(u64, RecordedEvent)> = Vec::new();
        let mut received: Vec<Message> = Vec::new();
        let mut pending = 0;
        while let Some(message) = messages.next().await {
            let message = message.map_err(Error::nats)?;
            let info = message.info().map_err(Error::nats)?;
            let sequence = info.stream_sequence;
            pending = info.pending;
            if info.delivered > 1 {
                metrics.redeliveries.get_or_create(&labels).inc();
            }
            batch.push((sequence, event_from_message(&message)?));
            received.push(message);
        }
        if batch.is_empty() {
            metrics.projection_lag(&labels, 0, 0.0);
            continue;
        }
        if let Err(err) = apply_bus_batch(pool, projection, &key, &batch).await {
            // Make the next attempt start exactly at the checkpoint.
            consumer_at_checkpoint(pool, js, source, projection, true).await?;
            return Err(err);
        }
        for message in received {
            message.ack().await.map_err(Error::nats)?;
        }
        let age = match batch.last() {
            Some((_, newest)) if pending > 0 => {
                (chrono::Utc::now() - newest.recorded_at).as_seconds_f64()
            }
            _ => 0.0,
        };
        metrics.projection_lag(&labels, i64::try_from(pending).unwrap_or(i64::MAX), age);
    }
}
