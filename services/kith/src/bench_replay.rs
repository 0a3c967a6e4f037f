//! `kith bench replay`: how fast the engagement report replays a history from the services'
//! logs in PostgreSQL, beside how fast PostgreSQL hands over the same rows (COPY TO, in the same
//! merged order), in one run on one scratch database.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use kith_platform::db::{self, Schema};
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use prost::Message;
use uuid::Uuid;

use crate::bench::{in_scratch, redact, spinner};
use crate::events::{Decoder, ReadArgs, Window};
use crate::report::{Replay, Rules, Scope};

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// Server to measure on; a scratch database is created there and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    database_url: String,
    /// Events generated and replayed.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1000..))]
    events: u64,
    /// Cohorts the history is spread over (each with its conversation and 12 members).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    cohorts: u64,
}

/// Members seated in each cohort.
const SEATED: u64 = 12;
/// Days the history spans.
const DAYS: i64 = 90;

/// The services' event logs the history goes to, in the report's order.
const LOGS: [&str; 3] = ["membership", "cohorts", "messaging"];

/// One row of a log, as COPY takes it (text format).
fn row(
    out: &mut String,
    stream_type: &str,
    stream_id: &Uuid,
    version: u64,
    message: &impl prost::Name,
    payload: &[u8],
    at: DateTime<Utc>,
) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "{stream_type}\t{stream_id}\t{version}\t{}\t{}\t\\\\x",
        Uuid::now_v7(),
        type_name(message),
    );
    for byte in payload {
        let _ = write!(out, "{byte:02x}");
    }
    let _ = writeln!(out, "\t{{}}\t{}", at.format("%Y-%m-%d %H:%M:%S%.6f+00"));
}

fn type_name<M: prost::Name>(_: &M) -> String {
    M::full_name()
}

/// Generates the history into the three logs with COPY, a chunk at a time; returns the events
/// written and the community they are about.
async fn generate(url: &str, args: &ReplayArgs) -> anyhow::Result<(u64, Uuid)> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
        .single()
        .context("a start")?;
    let span = Duration::from_secs(u64::try_from(DAYS * 86_400)?);
    let community = Uuid::new_v4();
    let mut pools = Vec::new();
    for log in LOGS {
        let schema = Schema::parse(log)?;
        let pool = db::connect(url, &schema, 1).await?;
        db::migrate(&pool, &schema, "benchreplay", &[]).await?;
        pools.push(pool);
    }
    let mut chunks: [String; 3] = Default::default();
    let mut copies = Vec::new();
    for (pool, log) in pools.iter().zip(LOGS) {
        let conn = pool.acquire().await?.detach();
        copies.push((conn, log));
    }
    let mut writers = Vec::new();
    for (conn, log) in &mut copies {
        writers.push(
            conn.copy_in_raw(&format!(
                "COPY {log}.events (stream_type, stream_id, version, event_id, event_type, payload, metadata, recorded_at) FROM STDIN"
            ))
            .await?,
        );
    }
    let progress = crate::events::progress_of("generating", i64::try_from(args.events)?);
    let mut written = 0u64;
    let mut rng = kith_platform::testing::Lcg(11);
    // The setup: members, cohorts, seats, conversations, at the start.
    let mut cohorts = Vec::new();
    let mut community_version = 0;
    for _ in 0..args.cohorts {
        let cohort = Uuid::new_v4();
        let created = cpb::CohortCreated {
            cohort_id: cohort.to_string(),
            community_id: community.to_string(),
            ..Default::default()
        };
        row(
            &mut chunks[1],
            "cohort",
            &cohort,
            1,
            &created,
            &created.encode_to_vec(),
            start,
        );
        let mut members = Vec::new();
        for seat in 0..SEATED {
            let member = Uuid::new_v4();
            community_version += 1;
            let joined = mpb::MemberJoined {
                community_id: community.to_string(),
                member_id: member.to_string(),
                ..Default::default()
            };
            row(
                &mut chunks[0],
                "community",
                &community,
                community_version,
                &joined,
                &joined.encode_to_vec(),
                start,
            );
            let seated = cpb::MemberJoinedCohort {
                cohort_id: cohort.to_string(),
                member_id: member.to_string(),
                ..Default::default()
            };
            row(
                &mut chunks[1],
                "cohort",
                &cohort,
                seat + 2,
                &seated,
                &seated.encode_to_vec(),
                start,
            );
            members.push(member);
        }
        let started = msg::ConversationStarted {
            conversation_id: cohort.to_string(),
            kind: msg::ConversationKind::Cohort as i32,
            community_id: community.to_string(),
            cohort_id: cohort.to_string(),
            ..Default::default()
        };
        row(
            &mut chunks[2],
            "conversation",
            &cohort,
            1,
            &started,
            &started.encode_to_vec(),
            start,
        );
        written += 2 + 2 * SEATED;
        cohorts.push((cohort, members, 1u64, Uuid::nil(), Uuid::nil()));
    }
    // The activity: posts (a new thread one time in ten), reactions and read cursors, spread
    // evenly over the days.
    let activity = args.events.saturating_sub(written).max(1);
    let step = span.as_nanos() / u128::from(activity);
    let mut n = 0u64;
    while written < args.events {
        let at =
            start + chrono::Duration::nanoseconds(i64::try_from(step * u128::from(n)).unwrap_or(0));
        n += 1;
        let which = rng.below(args.cohorts) as usize;
        let (cohort, members, version, thread, last) = &mut cohorts[which];
        let member = rng.pick(members);
        *version += 1;
        let roll = rng.below(100);
        if roll < 70 || last.is_nil() {
            let message = Uuid::new_v4();
            if thread.is_nil() || roll < 7 {
                *thread = message;
            }
            *last = message;
            let posted = msg::MessagePosted {
                conversation_id: cohort.to_string(),
                message_id: message.to_string(),
                thread_id: thread.to_string(),
                author_id: member.to_string(),
                ..Default::default()
            };
            row(
                &mut chunks[2],
                "conversation",
                cohort,
                *version,
                &posted,
                &posted.encode_to_vec(),
                at,
            );
        } else if roll < 85 {
            let reacted = msg::ReactionAdded {
                conversation_id: cohort.to_string(),
                message_id: last.to_string(),
                member_id: member.to_string(),
                reaction: "+1".into(),
            };
            row(
                &mut chunks[2],
                "conversation",
                cohort,
                *version,
                &reacted,
                &reacted.encode_to_vec(),
                at,
            );
        } else {
            let read = msg::ReadCursorMoved {
                member_id: member.to_string(),
                conversation_id: cohort.to_string(),
                thread_id: String::new(),
                seq: i64::try_from(*version).unwrap_or(0),
            };
            row(
                &mut chunks[2],
                "conversation",
                cohort,
                *version,
                &read,
                &read.encode_to_vec(),
                at,
            );
        }
        written += 1;
        if written.is_multiple_of(50_000) {
            for (chunk, writer) in chunks.iter_mut().zip(writers.iter_mut()) {
                writer.send(std::mem::take(chunk).into_bytes()).await?;
            }
            progress.set_position(written);
        }
    }
    for (chunk, mut writer) in chunks.into_iter().zip(writers) {
        writer.send(chunk.into_bytes()).await?;
        writer.finish().await?;
    }
    progress.finish_and_clear();
    for (pool, log) in pools.iter().zip(LOGS) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {log}.events")))
            .execute(pool)
            .await?;
        pool.close().await;
    }
    Ok((written, community))
}

/// Rows per second PostgreSQL hands over the same rows, merged in the same order, by COPY TO.
async fn copy_rate(url: &str, events: u64) -> anyhow::Result<f64> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db::parse_url(url)?)
        .await?;
    let union = LOGS
        .iter()
        .enumerate()
        .map(|(rank, log)| {
            format!(
                "SELECT '{log}' AS service, {rank} AS rank, position, recorded_at, stream_type, \
                 stream_id, version, event_id, event_type, payload FROM {log}.events"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let waiting = spinner(format!("COPY TO of {events} rows"));
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut out = conn
        .copy_out_raw(&format!(
            "COPY ({union} ORDER BY recorded_at, rank, position) TO STDOUT"
        ))
        .await?;
    use futures::TryStreamExt;
    let mut bytes = 0usize;
    while let Some(chunk) = out.try_next().await? {
        bytes += chunk.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    waiting.finish_and_clear();
    drop(out);
    drop(conn);
    pool.close().await;
    anyhow::ensure!(bytes > 0, "COPY TO returned nothing");
    Ok(events as f64 / seconds)
}

/// The process's peak resident memory, from /proc (Linux), in MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub(crate) async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    db::ensure_database(&args.database_url).await?;
    println!(
        "kith bench replay: {} events over {} cohorts, on {}",
        args.events,
        args.cohorts,
        redact(&args.database_url)
    );
    in_scratch(&args.database_url, None, async |scratch, _| {
        measure(&scratch.url, &args).await
    })
    .await
}

async fn measure(url: &str, args: &ReplayArgs) -> anyhow::Result<()> {
    let (events, community) = generate(url, args).await?;
    let copy = copy_rate(url, events).await?;
    let before = peak_memory_mib();
    let decoder = Decoder::new()?;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
        .single()
        .context("a start")?;
    let scope = Scope {
        community: community.to_string(),
        cohort: None,
        from: start + chrono::Duration::days(DAYS - 30),
        to: start + chrono::Duration::days(DAYS),
        silent_days: 14,
        rules: Rules::default(),
        rules_source: None,
    };
    let mut replay = Replay::new(&scope);
    let started = Instant::now();
    crate::events::read(
        &ReadArgs::postgres(url),
        Window::default(),
        &decoder,
        None,
        &mut replay,
    )
    .await?;
    let replayed = replay.events;
    let report = replay.finish();
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(replayed == events, "replayed {replayed} of {events} events");
    let rate = replayed as f64 / seconds;
    println!(
        "replayed {replayed} events into the engagement report in {seconds:.1}s: {rate:.0} events/s \
         (the last 30 days: {} active members, {} posts, {} replies)",
        report.active_members, report.posts, report.replies
    );
    println!("COPY TO of the same rows in the same order: {copy:.0} rows/s");
    match (before, peak_memory_mib()) {
        (Some(before), Some(after)) => println!(
            "peak memory: {after:.0} MiB resident for the whole process ({before:.0} MiB before the replay: generating and COPY)"
        ),
        _ => println!("peak memory: not known on this system"),
    }
    println!("replay={rate:.0} copy={copy:.0} ratio={:.2}", rate / copy);
    Ok(())
}
