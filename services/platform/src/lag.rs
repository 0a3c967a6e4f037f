//! Lag as an operator reads it: how far each worker is behind the head of its source (the log's
//! last committed event, the stream's last message), in events and in the age of the oldest event
//! it has not applied. Measured from the committed checkpoints and the sources themselves, apart
//! from the workers, so a stuck, stalled or not yet started worker shows as lagging instead of
//! reporting the size of its last batch. `kith status` and the metrics read the same functions.

use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::bus::StreamSpec;
use crate::eventlog::{Checkpoint, EventLog};
use crate::metrics::{ServiceLabels, SourceLabels, metrics};
use crate::projection::{LOG_SOURCE, read_bus_checkpoint, read_checkpoint};
use crate::{Error, Result};

/// How often the gauges are brought up to date.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How long a sample waits for NATS before counting from what it knew.
const ASK_NATS_FOR: Duration = Duration::from_secs(1);

/// The most events a lag count reads: beyond it the gauge says "at least this many", so that a
/// sample stays cheap however large the backlog (every replica samples every source).
pub const COUNT_AT_MOST: i64 = 1_000_000;

/// Events in the log after `checkpoint` (at most [`COUNT_AT_MOST`]), and the age in seconds of
/// the first of them in the readers' order (0 when none), found through the tail's index.
pub async fn log_lag(pool: &PgPool, checkpoint: Checkpoint) -> Result<(i64, f64)> {
    let (events, oldest): (i64, Option<chrono::DateTime<chrono::Utc>>) = sqlx::query_as(
        "SELECT
             (SELECT count(*) FROM (
                  SELECT 1 FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)
                  LIMIT $3) behind),
             (SELECT recorded_at FROM events WHERE (transaction_id, position) > ($1::text::xid8, $2)
              ORDER BY transaction_id, position LIMIT 1)",
    )
    .bind(checkpoint.transaction_id.to_string())
    .bind(checkpoint.position)
    .bind(COUNT_AT_MOST)
    .fetch_one(pool)
    .await?;
    Ok((events, age(oldest)))
}

/// Messages in `stream` after sequence `position`, and the age in seconds of the first of them.
pub async fn bus_lag(js: &jetstream::Context, stream: &str, position: i64) -> Result<(i64, f64)> {
    let mut stream = js.get_stream(stream).await.map_err(Error::nats)?;
    let last = stream
        .info()
        .await
        .map_err(Error::nats)?
        .state
        .last_sequence;
    let behind = (i64::try_from(last).unwrap_or(i64::MAX) - position).max(0);
    if behind == 0 {
        return Ok((0, 0.0));
    }
    let next = u64::try_from(position + 1).unwrap_or(0);
    let seconds = match stream.get_raw_message(next).await {
        Ok(message) => age(chrono::DateTime::<chrono::Utc>::from_timestamp(
            message.time.unix_timestamp(),
            message.time.nanosecond(),
        )),
        // Gone (purged, or a deleted message): the stream's first message is the oldest.
        Err(_) => 0.0,
    };
    Ok((behind, seconds))
}

/// The age in seconds of the oldest transaction open in the service's database, or holding a
/// transaction id anywhere on the server (transaction ids are server-wide, so such a transaction
/// in another database also holds back the tail of this log), if any.
pub async fn oldest_transaction(pool: &PgPool) -> Result<Option<f64>> {
    Ok(sqlx::query_scalar(
        "SELECT extract(epoch FROM now() - min(xact_start))::float8 FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
           AND (datname = current_database() OR backend_xid IS NOT NULL)",
    )
    .fetch_one(pool)
    .await?)
}

fn age(oldest: Option<chrono::DateTime<chrono::Utc>>) -> f64 {
    oldest.map_or(0.0, |at| {
        (chrono::Utc::now() - at).as_seconds_f64().max(0.0)
    })
}

/// Keeps the lag gauges of one projection fed from the service's own log.
pub async fn sample_log_projection(
    pool: PgPool,
    labels: SourceLabels,
    shutdown: CancellationToken,
) {
    sample(shutdown, || async {
        let checkpoint = {
            let mut conn = pool.acquire().await?;
            read_checkpoint(&mut conn, &labels.projection, LOG_SOURCE).await?
        };
        let (events, seconds) = log_lag(&pool, checkpoint).await?;
        metrics().projection_lag(&labels, events, seconds);
        Ok(())
    })
    .await;
}

/// Keeps the lag gauges of one projection fed from another service's stream; before its first
/// batch it is behind by the whole stream.
pub async fn sample_bus_projection(
    pool: PgPool,
    js: jetstream::Context,
    stream: String,
    labels: SourceLabels,
    shutdown: CancellationToken,
) {
    sample(shutdown, || async {
        let (position, _) = {
            let mut conn = pool.acquire().await?;
            read_bus_checkpoint(&mut conn, &labels.projection, &labels.source).await?
        };
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        let (events, seconds) = bus_lag(&js, &stream, position).await?;
        metrics().projection_lag(&labels, events, seconds);
        Ok(())
    })
    .await;
}

/// Keeps the relay's lag gauge: the log's events after the last one the stream holds. While NATS
/// cannot be asked, the last end it was seen at stands, so the gauge keeps growing with every
/// event appended meanwhile instead of freezing.
pub async fn sample_relay(
    log: EventLog,
    js: jetstream::Context,
    spec: StreamSpec,
    published: crate::relay::Published,
    service: String,
    shutdown: CancellationToken,
) {
    let gauge = metrics()
        .relay_lag
        .get_or_create(&ServiceLabels::of(&service))
        .clone();
    let oldest = metrics()
        .oldest_transaction
        .get_or_create(&ServiceLabels::of(&service))
        .clone();
    sample(shutdown, || async {
        // The leader's relay marks what it publishes; any replica can ask the stream, briefly,
        // so that an unreachable NATS does not hold up the count.
        let asked = tokio::time::timeout(ASK_NATS_FOR, async {
            let mut stream = js.get_stream(&spec.name).await.map_err(Error::nats)?;
            crate::relay::stream_end(&spec, &log, &mut stream).await
        })
        .await;
        if let Ok(Ok(found)) = asked {
            published.set(found.checkpoint);
        }
        let (events, _) = log_lag(log.pool(), published.get()).await?;
        gauge.set(events);
        oldest.set(oldest_transaction(log.pool()).await?.unwrap_or(0.0));
        Ok(())
    })
    .await;
}

/// Runs `once` now and every [`SAMPLE_EVERY`] until `shutdown`; a failed sample (the database
/// out of reach) leaves the gauges as they were and is logged once per change of mind.
async fn sample<F, Fut>(shutdown: CancellationToken, mut once: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut failing = false;
    loop {
        match once().await {
            Ok(()) => failing = false,
            Err(err) if !failing => {
                failing = true;
                tracing::debug!(error = %err, "lag not measured");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
    }
}
