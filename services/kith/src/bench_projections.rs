//! `kith bench projections`: how fast a read model catches up on a backlog, from the service's
//! own log and from another service's stream on the bus, beside the rate at which PostgreSQL
//! takes the same number of rows of the read model's shape in by COPY, in the same run on the
//! same database.
//!
//! Then, live, the latency from a membership command's OK to cohorts' projection of it (and on
//! to the cohort roster), beside raw NATS publish-to-delivery.
//!
//! The read model is cohorts' `communities` projection (who belongs to which community, in
//! which role and standing); the backlog is membership events: joins, role changes, departures,
//! bans and unbans over communities of up to thirty members.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use kith_platform::config::NatsArgs;
use kith_platform::db::{self, Schema};
use kith_platform::eventlog::EventLog;
use kith_platform::projection::{self, BusSource, LogProjector, Projection};
use kith_proto::membership as mpb;
use prost::{Message, Name};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use kith_platform::testing::Lcg;

use crate::bench::{Scratch, in_scratch, redact};

#[derive(Debug, clap::Args)]
pub(crate) struct ProjectionsArgs {
    /// Server to measure on; a scratch database is created there and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    database_url: String,
    /// NATS server with JetStream; the stream goes under a scratch namespace, deleted afterwards.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Events in the backlog.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Membership commands timed through to cohorts' projection of them.
    #[arg(long, default_value_t = 100)]
    samples: usize,
}

/// Members per community: Kith's groups are under thirty people.
const MEMBERS: u64 = 30;
/// Events per community stream.
const PER_COMMUNITY: u64 = 100;
/// Events written to the log per statement while filling it.
const FILL_CHUNK: u64 = 20_000;

pub(crate) async fn run(args: ProjectionsArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.samples == 0 {
        anyhow::bail!("--events and --samples must be positive");
    }
    db::ensure_database(&args.database_url).await?;
    let result = in_scratch(
        &args.database_url,
        Some(&args.nats_url),
        async |scratch, namespace| measure(&args, scratch, namespace).await,
    )
    .await;
    result?;
    // Live: a command's OK in membership to cohorts' projection of it, with both services
    // running, beside raw NATS (on a scratch database and namespace of its own).
    crate::bench_cohorts::run(crate::bench_cohorts::CohortsArgs::latency(
        &args.database_url,
        &args.nats_url,
        args.samples,
    ))
    .await
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The communities projection as cohorts runs it, with the source it reads.
fn communities(nats: &NatsArgs) -> anyhow::Result<(BusSource, Arc<dyn Projection>)> {
    kith_cohorts::bus_projections(nats)
        .into_iter()
        .find(|(_, projection)| projection.name() == "communities")
        .context("cohorts has no communities projection")
}

async fn measure(args: &ProjectionsArgs, scratch: &Scratch, namespace: &str) -> anyhow::Result<()> {
    let nats = NatsArgs {
        nats_url: args.nats_url.clone(),
        stream_replicas: 1,
        duplicate_window_secs: 120,
        nats_namespace: Some(namespace.to_owned()),
    };
    println!(
        "kith bench projections: a backlog of {} membership events, on {} and {}",
        args.events,
        redact(&args.database_url),
        args.nats_url
    );
    // The backlog, in a membership log; the projection fed from the log lives beside it.
    let log_schema = Schema::parse("membership")?;
    let log_pool = db::connect(&scratch.url, &log_schema, 4).await?;
    db::migrate(&log_pool, &log_schema, "membership", &[]).await?;
    fill(&log_pool, args.events).await?;
    sqlx::raw_sql("VACUUM ANALYZE events")
        .execute(&log_pool)
        .await?;

    let copy = copy_rate(&log_pool, args.events).await?;
    println!(
        "COPY: {copy:.0} rows/s ({} rows of the read model's shape and key, one statement)",
        args.events
    );

    let from_log = catch_up_from_log(&log_pool, &nats, args.events).await?;
    println!(
        "catch-up from the own log: {from_log:.0} events/s ({:.2} of COPY)",
        from_log / copy
    );

    let from_bus = catch_up_from_bus(scratch, &log_pool, &log_schema, &nats, args.events).await?;
    println!(
        "catch-up from the bus: {from_bus:.0} events/s ({:.2} of COPY)",
        from_bus / copy
    );
    log_pool.close().await;
    Ok(())
}

fn encoded<M: Message + Name>(message: &M) -> (String, Vec<u8>) {
    (M::full_name(), message.encode_to_vec())
}

/// Writes `events` membership events to the log: each community's stream starts with its founder
/// joining, then joins, role changes, departures, bans and unbans among its members.
async fn fill(pool: &PgPool, events: u64) -> anyhow::Result<()> {
    let progress = bar(events, "filling the log");
    let mut rng = Lcg(0x6b69_7468);
    let mut community = Uuid::nil();
    let mut members: Vec<String> = Vec::new();
    let mut written = 0;
    while written < events {
        let chunk = FILL_CHUNK.min(events - written);
        let mut streams = Vec::with_capacity(chunk as usize);
        let mut versions = Vec::with_capacity(chunk as usize);
        let mut ids = Vec::with_capacity(chunk as usize);
        let mut types = Vec::with_capacity(chunk as usize);
        let mut payloads = Vec::with_capacity(chunk as usize);
        for n in written..written + chunk {
            let version = n % PER_COMMUNITY + 1;
            if version == 1 {
                community = Uuid::new_v4();
                members = (0..MEMBERS).map(|_| Uuid::new_v4().to_string()).collect();
            }
            let member_id = members[rng.below(MEMBERS) as usize].clone();
            let role = 1 + rng.below(5) as i32;
            let (event_type, payload) = match (version, rng.below(10)) {
                (1, _) | (_, 0..=3) => encoded(&mpb::MemberJoined {
                    member_id,
                    role,
                    ..Default::default()
                }),
                (_, 4) => encoded(&mpb::RoleAssigned {
                    member_id,
                    role,
                    ..Default::default()
                }),
                (_, 5) => encoded(&mpb::MemberLeft {
                    member_id,
                    ..Default::default()
                }),
                (_, 6) => encoded(&mpb::MemberRemoved {
                    member_id,
                    ..Default::default()
                }),
                (_, 7) => encoded(&mpb::MemberBanned {
                    member_id,
                    ..Default::default()
                }),
                (_, 8) => encoded(&mpb::MemberUnbanned {
                    member_id,
                    ..Default::default()
                }),
                _ => encoded(&mpb::RoleRevoked {
                    member_id,
                    ..Default::default()
                }),
            };
            streams.push(community.to_string());
            versions.push(i64::try_from(version)?);
            ids.push(Uuid::now_v7());
            types.push(event_type);
            payloads.push(payload);
        }
        sqlx::query(
            "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload)
             SELECT 'community', s, v, e, t, p
             FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::bytea[])
                 AS x(s, v, e, t, p)",
        )
        .bind(streams)
        .bind(versions)
        .bind(ids)
        .bind(types)
        .bind(payloads)
        .execute(pool)
        .await?;
        written += chunk;
        progress.set_position(written);
    }
    progress.finish_and_clear();
    Ok(())
}

/// Rows per second PostgreSQL takes in by COPY: `rows` rows of `community_members`' shape and
/// primary key, one COPY statement, committed.
async fn copy_rate(pool: &PgPool, rows: u64) -> anyhow::Result<f64> {
    sqlx::raw_sql(
        "CREATE TABLE copied_members (community_id uuid NOT NULL, member_id uuid NOT NULL,
             role text NOT NULL, status text NOT NULL, PRIMARY KEY (community_id, member_id))",
    )
    .execute(pool)
    .await?;
    // Made before the clock starts: the figure is PostgreSQL's, not the formatting's.
    let mut chunks = Vec::new();
    let mut chunk = String::new();
    for n in 0..rows {
        chunk.push_str(&format!(
            "{}\t{}\tmember\tactive\n",
            Uuid::new_v4(),
            Uuid::new_v4()
        ));
        if n % 50_000 == 49_999 {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    chunks.push(chunk);
    let spinner = crate::bench::spinner(format!("COPY of {rows} rows"));
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut copy = conn.copy_in_raw("COPY copied_members FROM STDIN").await?;
    for chunk in chunks {
        copy.send(chunk.into_bytes()).await?;
    }
    copy.finish().await?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    Ok(rate)
}

/// The projection applied over the log from the start, batch after batch as the service runs
/// it; events per second.
async fn catch_up_from_log(pool: &PgPool, nats: &NatsArgs, events: u64) -> anyhow::Result<f64> {
    let (_, projection) = communities(nats)?;
    projection::create_tables(pool, projection.as_ref()).await?;
    let projector = LogProjector::new(pool.clone(), projection, Arc::new(Notify::new()));
    let progress = bar(events, "catching up from the log");
    let started = Instant::now();
    let mut applied = 0;
    loop {
        let n = projector.step().await?;
        if n == 0 {
            break;
        }
        applied += n as u64;
        progress.set_position(applied);
    }
    let rate = applied as f64 / started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    if applied != events {
        anyhow::bail!("the projection applied {applied} events of the {events} in the log");
    }
    Ok(rate)
}

/// The log published to its stream (by the relay's republish), then the projection in another
/// schema fed from the stream by the service's consumer, from the start; events per second of
/// the consuming alone.
async fn catch_up_from_bus(
    scratch: &Scratch,
    log_pool: &PgPool,
    log_schema: &Schema,
    nats: &NatsArgs,
    events: u64,
) -> anyhow::Result<f64> {
    let client = kith_platform::bus::connect(&nats.nats_url, "kith-bench").await?;
    let js = async_nats::jetstream::new(client);
    let spec = nats.stream_for("membership");
    let progress = bar(events, "publishing the log to the bus");
    let log = EventLog::new(log_pool.clone());
    kith_platform::relay::republish(&spec, log_schema, &log, &js, |done, _| {
        progress.set_position(done);
    })
    .await?;
    progress.finish_and_clear();

    let schema = Schema::parse("cohorts")?;
    let pool = db::connect(&scratch.url, &schema, 4).await?;
    db::migrate(&pool, &schema, "cohorts", &[]).await?;
    let (source, projection) = communities(nats)?;
    anyhow::ensure!(
        source.stream == spec.name,
        "cohorts reads {}",
        source.stream
    );
    projection::create_tables(&pool, projection.as_ref()).await?;
    let key = source.key();
    let shutdown = CancellationToken::new();
    let progress = bar(events, "catching up from the bus");
    let started = Instant::now();
    let consumer = tokio::spawn(projection::run_bus_source(
        pool.clone(),
        js,
        source,
        Arc::clone(&projection),
        shutdown.clone(),
    ));
    let deadline = started + Duration::from_secs(3600);
    let outcome = loop {
        let mut conn = pool.acquire().await?;
        let (taken, _) = projection::read_bus_checkpoint(&mut conn, "communities", &key).await?;
        drop(conn);
        progress.set_position(taken);
        if taken >= events {
            break Ok(events as f64 / started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "the consumer took {taken} of {events} events in an hour"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    progress.finish_and_clear();
    shutdown.cancel();
    consumer.await?;
    pool.close().await;
    outcome
}
