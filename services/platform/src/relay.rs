//! The relay: moves a service's events from its PostgreSQL log to its JetStream stream, in log
//! order, each exactly once.
//!
//! One replica leads, chosen by a PostgreSQL advisory lock held on the relay's own connection
//! (which it also reads through, so a lost connection ends both reading and leadership). The
//! stream itself is the checkpoint: after any error the relay reads the stream's last message,
//! finds that event in the log and continues after it. Every message carries its event id as
//! `Nats-Msg-Id` and the previous event's id as `Nats-Expected-Last-Msg-Id`, so JetStream refuses
//! a duplicate, a gap or a reordering even if two relays ever ran at once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage as Publish};
use bytes::Bytes;
use sqlx::PgConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{StreamSpec, headers};
use crate::db::{self, Schema};
use crate::eventlog::{self, Checkpoint, RecordedEvent};
use crate::{Error, Result};

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub database_url: String,
    pub schema: Schema,
    pub stream: StreamSpec,
    /// Events read and published per round trip.
    pub batch_size: i64,
    /// How often an idle relay looks for events written by other processes.
    pub poll_interval: Duration,
}

/// Runs the relay until `shutdown`: campaigns for leadership, publishes while leading, and
/// starts over after any error.
pub async fn run(
    config: RelayConfig,
    js: jetstream::Context,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        match lead(&config, &js, &wake, &shutdown).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(schema = %config.schema, stream = %config.stream.name, error = %err, retry_in = ?backoff, "relay interrupted; resyncing");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn lock_key(schema: &Schema) -> String {
    format!("{schema}.relay")
}

/// Waits for leadership, then publishes until shutdown (Ok) or an error.
async fn lead(
    config: &RelayConfig,
    js: &jetstream::Context,
    wake: &Notify,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut conn = db::connect_one(&config.database_url, &config.schema).await?;
    loop {
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(lock_key(&config.schema))
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
    tracing::info!(schema = %config.schema, stream = %config.stream.name, "relay leading");
    let labels = crate::metrics::ServiceLabels::of(&config.schema.to_string());
    let leader_gauge = crate::metrics::metrics()
        .relay_leader
        .get_or_create(&labels)
        .clone();
    leader_gauge.set(1);
    let result = publish_loop(config, js, wake, shutdown, &mut conn).await;
    leader_gauge.set(0);
    // Hand leadership over at once rather than when the connection times out.
    let _ = sqlx::query("SELECT pg_advisory_unlock(hashtext($1))")
        .bind(lock_key(&config.schema))
        .execute(&mut conn)
        .await;
    result
}

/// Where the stream ends: the log checkpoint of its last message and that message's id.
async fn resync(
    config: &RelayConfig,
    js: &jetstream::Context,
    conn: &mut PgConnection,
) -> Result<(Checkpoint, Option<String>)> {
    let mut stream = config.stream.ensure(js).await?;
    let last = stream
        .info()
        .await
        .map_err(Error::nats)?
        .state
        .last_sequence;
    if last == 0 {
        return Ok((Checkpoint::START, None));
    }
    let message = stream.get_raw_message(last).await.map_err(Error::nats)?;
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    let position: i64 = header(headers::POSITION)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            Error::Nats(format!(
                "message {last} of {} has no {} header",
                config.stream.name,
                headers::POSITION
            ))
        })?;
    let checkpoint = eventlog::checkpoint_of(&mut *conn, position)
        .await?
        .ok_or_else(|| {
            Error::Nats(format!(
                "stream {} ends at position {position}, which the log does not hold",
                config.stream.name
            ))
        })?;
    Ok((checkpoint, header("Nats-Msg-Id")))
}

async fn publish_loop(
    config: &RelayConfig,
    js: &jetstream::Context,
    wake: &Notify,
    shutdown: &CancellationToken,
    conn: &mut PgConnection,
) -> Result<()> {
    let (mut checkpoint, mut last_id) = resync(config, js, conn).await?;
    let lag = crate::metrics::metrics()
        .relay_lag
        .get_or_create(&crate::metrics::ServiceLabels::of(
            &config.schema.to_string(),
        ))
        .clone();
    tracing::info!(stream = %config.stream.name, position = checkpoint.position, "relay resumed");
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let batch = eventlog::tail(&mut *conn, checkpoint, config.batch_size).await?;
        lag.set(if (batch.len() as i64) < config.batch_size {
            batch.len() as i64
        } else {
            // A full batch: more wait behind it.
            let last: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
                .fetch_one(&mut *conn)
                .await?;
            last.unwrap_or(0) - checkpoint.position
        });
        if batch.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = wake.notified() => {}
                () = tokio::time::sleep(config.poll_interval) => {}
            }
            continue;
        }
        // Pipelined: send the whole batch, then collect the acks in order.
        let mut acks = Vec::with_capacity(batch.len());
        for event in &batch {
            let publish = message(event, last_id.as_deref());
            let subject = config.stream.subject(&event.stream_type, &event.stream_id);
            acks.push(
                js.send_publish(subject, publish)
                    .await
                    .map_err(Error::nats)?,
            );
            last_id = Some(event.event_id.to_string());
        }
        for ack in acks {
            ack.await.map_err(Error::nats)?;
        }
        if let Some(event) = batch.last() {
            checkpoint = event.checkpoint();
        }
    }
}

fn message(event: &RecordedEvent, previous_id: Option<&str>) -> Publish {
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
    if let Some(traceparent) = event.metadata().traceparent {
        map.insert(headers::TRACEPARENT, traceparent.as_str());
    }
    let publish = Publish::build()
        .payload(Bytes::from(event.payload.clone()))
        .headers(map)
        .message_id(event.event_id.to_string());
    match previous_id {
        Some(previous) => publish.expected_last_message_id(previous),
        None => publish,
    }
}
