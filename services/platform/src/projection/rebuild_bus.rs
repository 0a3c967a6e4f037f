//! Rebuilding a projection fed from another service's stream: replay the whole stream through an
//! ephemeral consumer into fresh tables in a scratch schema, then, under the projection's
//! checkpoint lock, catch up with the stream's head and swap the fresh tables in with the
//! checkpoint at the last sequence applied. The live consumer waits on the lock during the swap;
//! afterwards everything it holds at or below the new checkpoint is skipped, and anything that
//! does not follow it on is recreated from the checkpoint (see `bus_source`).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::bus_source::{BusSource, event_from_message};
use super::checkpoint::{lock_checkpoint, write_checkpoint};
use super::{Projection, RebuildReport};
use crate::db::{self, Schema};
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
    mut on_progress: impl FnMut(u64, u64),
) -> Result<RebuildReport> {
    let started = Instant::now();
    let scratch = Schema::parse(&format!("{schema}_rebuild"))?;
    let mut conn = db::connect_one(database_url, schema).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch};
         SET search_path TO {scratch}, {schema}"
    )))
    .execute(&mut conn)
    .await?;
    sqlx::raw_sql(AssertSqlSafe(projection.ddl()))
        .execute(&mut conn)
        .await?;

    let mut stream = js.get_stream(&source.stream).await.map_err(Error::nats)?;
    let total = stream.info().await.map_err(Error::nats)?.state.messages;
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::All,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(Error::nats)?;

    let mut last = 0u64;
    let mut applied = 0u64;
    loop {
        let head = stream
            .info()
            .await
            .map_err(Error::nats)?
            .state
            .last_sequence;
        if last >= head {
            break;
        }
        let n = apply_batch(&mut conn, &consumer, projection, &mut last).await?;
        applied += n;
        on_progress(applied, total.max(applied));
    }

    // Swap under the checkpoint lock, after catching up with what arrived meanwhile.
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO {schema}")))
        .execute(&mut conn)
        .await?;
    let mut tx = conn.begin().await?;
    lock_checkpoint(&mut tx, projection.name(), &source.key()).await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL search_path TO {scratch}, {schema}"
    )))
    .execute(&mut *tx)
    .await?;
    loop {
        let head = stream
            .info()
            .await
            .map_err(Error::nats)?
            .state
            .last_sequence;
        if last >= head {
            break;
        }
        applied += apply_batch(&mut tx, &consumer, projection, &mut last).await?;
    }
    for table in projection.tables() {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP TABLE IF EXISTS {schema}.{table} CASCADE; ALTER TABLE {scratch}.{table} SET SCHEMA {schema}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL search_path TO {schema}")))
        .execute(&mut *tx)
        .await?;
    let checkpoint = Checkpoint {
        transaction_id: 0,
        position: i64::try_from(last).map_err(|_| Error::Codec("sequence overflow".into()))?,
    };
    write_checkpoint(&mut tx, projection.name(), &source.key(), checkpoint).await?;
    tx.commit().await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {scratch} CASCADE"
    )))
    .execute(&mut conn)
    .await?;
    let _ = stream.delete_consumer(&consumer_name(&consumer)).await;
    on_progress(applied, total.max(applied));
    conn.close().await?;
    Ok(RebuildReport {
        events: applied,
        checkpoint,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn consumer_name(consumer: &jetstream::consumer::Consumer<pull::Config>) -> String {
    consumer.cached_info().name.clone()
}

/// Applies the next batch of the ephemeral consumer in one transaction of `conn`; a gap in the
/// sequences (a purged stream) is refused, since the projection would silently miss events.
async fn apply_batch(
    conn: &mut PgConnection,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    projection: &dyn Projection,
    last: &mut u64,
) -> Result<u64> {
    let mut messages = consumer
        .fetch()
        .max_messages(BATCH)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .map_err(Error::nats)?;
    let mut tx = conn.begin().await?;
    let mut applied = 0;
    let mut newest = None;
    while let Some(message) = messages.next().await {
        let message = message.map_err(Error::nats)?;
        let sequence = message.info().map_err(Error::nats)?.stream_sequence;
        if sequence <= *last {
            continue;
        }
        if *last != 0 && sequence != *last + 1 {
            return Err(Error::Projection {
                projection: projection.name().to_owned(),
                message: format!("gap in the stream: expected {}, got {sequence}", *last + 1),
            });
        }
        super::apply_traced(projection, &mut tx, &event_from_message(&message)?).await?;
        *last = sequence;
        applied += 1;
        newest = Some(message);
    }
    tx.commit().await?;
    if let Some(message) = newest {
        message.ack().await.map_err(Error::nats)?;
    }
    Ok(applied)
}
