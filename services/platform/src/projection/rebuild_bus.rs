//! Rebuilding a projection fed from another service's stream: replay the whole stream through an
//! ephemeral consumer into fresh tables in a scratch schema, then, under the projection's
//! checkpoint lock, catch up with the stream's head and swap the fresh tables in with the
//! checkpoint at the last sequence applied. The live consumer waits on the lock during the swap;
//! afterwards everything it holds at or below the new checkpoint is skipped, and anything that
//! does not follow it on is recreated from the checkpoint (see `bus_source`).
//!
//! A stream that no longer holds its first messages (purged or aged out) is refused: a rebuild
//! from it would silently miss them.

use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

use super::bus_source::{BusSource, Delivered};
use super::checkpoint::{lock_checkpoint, write_checkpoint};
use super::rebuild::Scratch;
use super::{Projection, RebuildReport};
use crate::db::Schema;
use crate::eventlog::Checkpoint;
use crate::{Error, Result};

const BATCH: usize = 1000;

/// Rebuilds `projection` in `schema` from `source`'s whole stream. `on_progress(applied, total)`
/// is called after each batch.
pub async fn rebuild_from_bus(
    database_url: &str,
    schema: &Schema,
    js: &jetstream::Context,
    source: &BusSource,
    projection: &dyn Projection,
    on_progress: impl FnMut(u64, u64),
) -> Result<RebuildReport> {
    let mut stream = js.get_stream(&source.stream).await.map_err(Error::nats)?;
    let state = stream.info().await.map_err(Error::nats)?.state.clone();
    if state.first_sequence > 1 {
        return Err(Error::Stuck(format!(
            "stream {} begins at sequence {}: its earlier messages were purged or aged out, so a \
             rebuild from it would miss them. Rebuild the stream from its log first with \
             `kith republish`",
            source.stream, state.first_sequence
        )));
    }
    let mut scratch = Scratch::create(database_url, schema, projection).await?;
    let result = replay(&mut scratch, &stream, source, projection, on_progress).await;
    scratch.discard().await;
    result
}

/// Where the replay stands in the stream.
struct Replayed {
    sequence: u64,
    /// The last event applied, and its sequence.
    last_event: Option<(Uuid, i64)>,
    applied: u64,
}

async fn replay(
    scratch: &mut Scratch,
    stream: &Stream,
    source: &BusSource,
    projection: &dyn Projection,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<RebuildReport> {
    let started = Instant::now();
    let Scratch {
        conn,
        schema,
        scratch,
    } = scratch;
    let mut stream = stream.clone();
    let total = stream.info().await.map_err(Error::nats)?.state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(Error::nats)?;
    let mut done = Replayed {
        sequence: 0,
        last_event: None,
        applied: 0,
    };
    let mut head = stream
        .info()
        .await
        .map_err(Error::nats)?
        .state
        .last_sequence;
    while done.sequence < head {
        let mut tx = conn.begin().await?;
        apply_batch(&mut tx, &stream, &consumer, projection, &mut done).await?;
        tx.commit().await?;
        on_progress(done.applied, total.max(done.applied));
        head = stream
            .info()
            .await
            .map_err(Error::nats)?
            .state
            .last_sequence;
    }

    // Swap under the checkpoint lock, after catching up with what arrived meanwhile.
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut *conn)
        .await?;
    let mut tx = conn.begin().await?;
    lock_checkpoint(&mut tx, projection.name(), &source.key()).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL search_path TO {scratch}, {schema}"
    )))
    .execute(&mut *tx)
    .await?;
    head = stream
        .info()
        .await
        .map_err(Error::nats)?
        .state
        .last_sequence;
    while done.sequence < head {
        apply_batch(&mut tx, &stream, &consumer, projection, &mut done).await?;
        head = stream
            .info()
            .await
            .map_err(Error::nats)?
            .state
            .last_sequence;
    }
    Scratch::swap_in(schema, scratch, &mut tx, projection).await?;
    let checkpoint = Checkpoint {
        transaction_id: 0,
        position: i64::try_from(done.sequence)
            .map_err(|_| Error::Codec("sequence overflow".into()))?,
    };
    write_checkpoint(
        &mut tx,
        projection.name(),
        &source.key(),
        checkpoint,
        done.last_event,
    )
    .await?;
    tx.commit().await?;
    Scratch::analyze(conn, schema, projection).await;
    let _ = stream
        .delete_consumer(&consumer.cached_info().name.clone())
        .await;
    on_progress(done.applied, total.max(done.applied));
    Ok(RebuildReport {
        events: done.applied,
        checkpoint,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Applies the next batch of the ephemeral consumer within `tx`. A gap in the sequences (messages
/// removed from the stream) is refused, since the projection would silently miss events.
async fn apply_batch(
    tx: &mut PgConnection,
    stream: &Stream,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    projection: &dyn Projection,
    done: &mut Replayed,
) -> Result<()> {
    let mut messages = consumer
        .fetch()
        .max_messages(BATCH)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .map_err(Error::nats)?;
    let mut received = 0;
    let mut events = Vec::new();
    let mut last = done.sequence;
    while let Some(message) = messages.next().await {
        let message = message.map_err(Error::nats)?;
        let sequence = message.info().map_err(Error::nats)?.stream_sequence;
        received += 1;
        if sequence <= last {
            continue;
        }
        if sequence != last + 1 {
            return Err(gap(stream, projection, last + 1, sequence));
        }
        if let Delivered::Event(event) = Delivered::of(&message) {
            let at =
                i64::try_from(sequence).map_err(|_| Error::Codec("sequence overflow".into()))?;
            events.push((at, event));
        }
        last = sequence;
    }
    let refs: Vec<&_> = events.iter().map(|(_, event)| event).collect();
    super::apply_rebuilding(projection, &mut *tx, &refs).await?;
    done.applied += events.len() as u64;
    if let Some((at, event)) = events.last() {
        done.last_event = Some((event.event_id, *at));
    }
    done.sequence = last;
    if received == 0 {
        // The head is ahead but nothing came: is the next message gone?
        match stream.get_raw_message(done.sequence + 1).await {
            Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => {
                return Err(gap(stream, projection, done.sequence + 1, 0));
            }
            _ => {}
        }
    }
    Ok(())
}

fn gap(stream: &Stream, projection: &dyn Projection, expected: u64, got: u64) -> Error {
    Error::Stuck(format!(
        "stream {} lacks message {expected} (next held: {got}) while rebuilding {}: messages \
         were removed from it. Rebuild the stream from its log with `kith republish`",
        stream.cached_info().config.name,
        projection.name()
    ))
}
