//! `kith bench log`: the event log against raw PostgreSQL, measured in one run on one database.
//!
//! For each concurrency it runs, for the same wall time, (a) plain single-row inserts of the
//! event row shape, each its own commit — the limit — (b) the log's append (one event, with an
//! idempotency key, at an expected version), and (c) the command path a gRPC call takes,
//! `Repository::execute`, one event per command on distinct streams, without a request id and
//! with one (as every gRPC command carries). Then it times tailing the whole log.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use indicatif::{ProgressBar, ProgressStyle};
use kith_platform::aggregate::{Codec, Decider, Repository};
use kith_platform::db::{self, Schema};
use kith_platform::eventlog::{
    Append, Checkpoint, CommandKey, EventLog, Metadata, NewEvent, RecordedEvent,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use uuid::Uuid;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Bench {
    /// Append and tail rates of the event log beside raw single-row insert commits.
    Log(LogArgs),
    /// Cohort joins per second (one contended cohort, many uncontended ones) and the latency
    /// from a membership event to the cohort roster, beside raw PostgreSQL and raw NATS.
    Cohorts(crate::bench_cohorts::CohortsArgs),
    /// How fast a read model catches up on a backlog of events, from its service's own log and
    /// from another service's stream, beside PostgreSQL's COPY rate for as many rows.
    Projections(crate::bench_projections::ProjectionsArgs),
    /// Posts per second into one cohort and into many, the latency from a post to another
    /// member's live stream, and the unread-count query on a long history, beside raw
    /// PostgreSQL and raw NATS.
    Messaging(crate::bench_messaging::MessagingArgs),
    /// Notifications decided per second replaying a messaging history through the rules, and
    /// the latency from a post's OK to the mentioned member's feed stream under a steady load,
    /// beside raw NATS and raw PostgreSQL.
    Notifications(crate::bench_notifications::NotificationsArgs),
    /// Events per second the engagement report replays from generated logs of the services'
    /// real event types (10 million by default), beside PostgreSQL's COPY TO of the same rows in
    /// the same order, and the peak memory.
    Replay(crate::bench_replay::ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// Server to measure on; a scratch database is created there and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    database_url: String,
    /// Seconds each measurement runs in all (split into alternating rounds).
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Events in the log for the tail measurement.
    #[arg(long, default_value_t = 500_000)]
    tail_events: u64,
}

pub(crate) async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Log(args) => log(args).await,
        Bench::Cohorts(args) => crate::bench_cohorts::run(args).await,
        Bench::Projections(args) => crate::bench_projections::run(args).await,
        Bench::Messaging(args) => crate::bench_messaging::run(args).await,
        Bench::Notifications(args) => crate::bench_notifications::run(args).await,
        Bench::Replay(args) => crate::bench_replay::run(args).await,
    }
}

/// Rounds each measurement is split into.
const ROUNDS: usize = 6;
/// Passes of the tail measurement; the median is reported.
const TAIL_PASSES: usize = 3;

pub(crate) const RAW_TABLE: &str = "
CREATE TABLE raw_events (
    position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    stream_type text NOT NULL, stream_id text NOT NULL, version bigint NOT NULL,
    event_id uuid NOT NULL UNIQUE, event_type text NOT NULL, payload bytea NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}', recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version));
CREATE UNIQUE INDEX raw_events_position ON raw_events (position);
CREATE INDEX raw_events_tail ON raw_events (transaction_id, position);";

pub(crate) struct Scratch {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl Scratch {
    pub(crate) async fn create(url: &str) -> anyhow::Result<Self> {
        let (base, _) = url
            .rsplit_once('/')
            .context("--database-url must name a database")?;
        let admin = format!("{base}/postgres");
        let name = format!("kith_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
        let mut conn = PgConnection::connect_with(&db::parse_url(&admin)?)
            .await
            .with_context(|| format!("connecting to {admin}"))?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    pub(crate) async fn drop(self) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&db::parse_url(&self.admin)?).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

/// Runs `work` on a scratch database (`Scratch`) and a scratch NATS namespace for its streams,
/// and removes both when it ends: finished, failed, or interrupted by Ctrl-C or SIGTERM (a
/// bench that falls behind is often stopped by hand, and its streams would otherwise keep
/// their gigabytes on the server). A second signal exits at once, leaving them; the line
/// printed first names them for removing by hand.
pub(crate) async fn in_scratch<T>(
    database_url: &str,
    nats_url: Option<&str>,
    work: impl AsyncFnOnce(&Scratch, &str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let scratch = Scratch::create(database_url).await?;
    let namespace = format!("bench{}", &Uuid::new_v4().simple().to_string()[..10]);
    if nats_url.is_some() {
        eprintln!(
            "scratch database {}, NATS namespace {namespace}: removed when this run ends or is interrupted",
            scratch.name
        );
    } else {
        eprintln!(
            "scratch database {}: removed when this run ends or is interrupted",
            scratch.name
        );
    }
    let interrupted = tokio_util::sync::CancellationToken::new();
    kith_platform::runtime::cancel_on_signal(interrupted.clone());
    let result = tokio::select! {
        result = work(&scratch, &namespace) => result,
        () = interrupted.cancelled() => Err(anyhow::anyhow!(
            "interrupted; the scratch database and streams are removed"
        )),
    };
    // The database first: an interrupted run's services are still going, and with their log
    // gone they publish nothing more; the process ends right after the streams go.
    let dropped = scratch.drop().await;
    if let Some(nats_url) = nats_url {
        kith_platform::bus::delete_namespace(nats_url, &namespace).await;
    }
    dropped?;
    result
}

pub(crate) fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn payload() -> Vec<u8> {
    // About the size of a membership event with a sealed profile.
    vec![7u8; 160]
}

/// Runs `workers` loops of `op` for `seconds`; returns operations per second.
async fn measure<F, Fut>(workers: usize, seconds: f64, op: F) -> anyhow::Result<f64>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let op = Arc::clone(&op);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                op(worker, n).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

pub(crate) async fn raw_rate(pool: &PgPool, workers: usize, seconds: f64) -> anyhow::Result<f64> {
    let pool = pool.clone();
    let run = Uuid::new_v4().simple().to_string();
    measure(workers, seconds, move |worker, n| {
        let pool = pool.clone();
        let stream_id = format!("raw-{run}-{worker}");
        async move {
            sqlx::query(
                "INSERT INTO raw_events (stream_type, stream_id, version, event_id, event_type, payload, metadata)
                 VALUES ('bench', $1, $2, $3, 'kith.bench.v1.Happened', $4, '{}'::jsonb)",
            )
            .bind(stream_id)
            .bind(i64::try_from(n + 1)?)
            .bind(Uuid::now_v7())
            .bind(payload())
            .execute(&pool)
            .await?;
            Ok(())
        }
    })
    .await
}

async fn append_rate(log: &EventLog, workers: usize, seconds: f64) -> anyhow::Result<f64> {
    let log = log.clone();
    let run = Uuid::new_v4().simple().to_string();
    measure(workers, seconds, move |worker, n| {
        let log = log.clone();
        let stream_id = format!("append-{run}-{worker}");
        let key = CommandKey::new(format!("bench:{run}:{worker}:{n}"), Vec::new());
        async move {
            let metadata = Metadata::default();
            log.append(Append {
                stream_type: "bench",
                stream_id: &stream_id,
                expected_version: i64::try_from(n)?,
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: "kith.bench.v1.Happened".into(),
                    payload: payload(),
                }],
                metadata: &metadata,
                command_key: Some(&key),
                erase_subjects: &[],
            })
            .await?;
            Ok(())
        }
    })
    .await
}

/// The smallest real decider: every command appends one event.
struct Tick;

impl Decider for Tick {
    type State = u64;
    type Event = ();
    type Command = ();
    type Error = std::convert::Infallible;
    const STREAM_TYPE: &'static str = "bench";

    fn evolve(state: u64, _: &()) -> u64 {
        state + 1
    }

    fn decide(_: &u64, _: &()) -> Result<Vec<()>, Self::Error> {
        Ok(vec![()])
    }

    fn knows(event_type: &str) -> bool {
        event_type == "kith.bench.v1.Happened"
    }
}

struct TickCodec;

#[async_trait]
impl Codec<Tick> for TickCodec {
    async fn encode(&self, _: &str, events: &[()]) -> kith_platform::Result<Vec<NewEvent>> {
        Ok(events
            .iter()
            .map(|_| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "kith.bench.v1.Happened".into(),
                payload: payload(),
            })
            .collect())
    }

    async fn decode(&self, events: &[RecordedEvent]) -> kith_platform::Result<Vec<()>> {
        Ok(vec![(); events.len()])
    }

    fn erased_subjects(&self, _: &str, _: &[()]) -> Vec<String> {
        Vec::new()
    }
}

/// Commands per second through `Repository::execute`, each on its worker's own stream; with
/// `keyed`, each carries a request id and a request fingerprint as a gRPC command does.
async fn execute_rate(
    repository: &Arc<Repository<Tick, TickCodec>>,
    workers: usize,
    seconds: f64,
    keyed: bool,
) -> anyhow::Result<f64> {
    let repository = Arc::clone(repository);
    let run = Uuid::new_v4().simple().to_string();
    measure(workers, seconds, move |worker, n| {
        let repository = Arc::clone(&repository);
        let stream_id = format!("execute-{run}-{worker}");
        let key =
            keyed.then(|| CommandKey::new(format!("bench:{run}:{worker}:{n}"), vec![n as u8; 32]));
        async move {
            let metadata = Metadata {
                command_id: key.as_ref().map(|key| key.key.clone()),
                ..Metadata::default()
            };
            repository
                .execute(&stream_id, key.as_ref(), &metadata, &())
                .await
                .map_err(|rejected| anyhow::anyhow!("execute failed: {rejected:?}"))?;
            Ok(())
        }
    })
    .await
}

async fn fill(log: &EventLog, events: u64) -> anyhow::Result<()> {
    let bar = ProgressBar::new(events);
    bar.set_style(
        ProgressStyle::with_template("filling log [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    sqlx::query(
        "INSERT INTO events (stream_type, stream_id, version, event_id, event_type, payload)
         SELECT 'fill', 'fill-' || (g / 1000), g % 1000 + 1, gen_random_uuid(), 'kith.bench.v1.Happened', $2
         FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(i64::try_from(events)?)
    .bind(payload())
    .execute(log.pool())
    .await?;
    bar.finish_and_clear();
    Ok(())
}

async fn tail_rate(log: &EventLog) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut checkpoint = Checkpoint::START;
    let mut count = 0u64;
    loop {
        let batch = log.tail(checkpoint, 10_000).await?;
        let Some(last) = batch.last() else { break };
        checkpoint = last.checkpoint();
        count += batch.len() as u64;
    }
    Ok((count, count as f64 / started.elapsed().as_secs_f64()))
}

async fn log(args: LogArgs) -> anyhow::Result<()> {
    if args.seconds <= 0.0 {
        anyhow::bail!("--seconds must be positive");
    }
    if args.concurrency.iter().any(|c| *c == 0 || *c > 64) {
        anyhow::bail!("--concurrency values must be 1 to 64");
    }
    db::ensure_database(&args.database_url).await?;
    in_scratch(&args.database_url, None, async |scratch, _| {
        let schema = Schema::parse("bench")?;
        let max = args.concurrency.iter().copied().max().unwrap_or(1) as u32;
        let pool = db::connect(&scratch.url, &schema, max + 2).await?;
        db::migrate(&pool, &schema, "bench", &[]).await?;
        sqlx::raw_sql(RAW_TABLE).execute(&pool).await?;
        let log = EventLog::new(pool.clone());
        let repository = Arc::new(Repository::new(log.clone(), TickCodec));
        println!(
            "kith bench log: {}s per measurement, tail over {} events, on {}",
            args.seconds,
            args.tail_events,
            redact(&args.database_url)
        );
        for &c in &args.concurrency {
            // Alternate short rounds of each so that drift in the machine (checkpoints, other
            // load) falls on both sides alike.
            let bar = spinner(format!("c={c}"));
            let slice = args.seconds / ROUNDS as f64;
            let (mut raw, mut append, mut execute, mut keyed) = (0.0, 0.0, 0.0, 0.0);
            for round in 1..=ROUNDS {
                bar.set_message(format!("c={c} round {round}/{ROUNDS}: raw inserts"));
                raw += raw_rate(&pool, c, slice).await? / ROUNDS as f64;
                bar.set_message(format!("c={c} round {round}/{ROUNDS}: platform appends"));
                append += append_rate(&log, c, slice).await? / ROUNDS as f64;
                bar.set_message(format!("c={c} round {round}/{ROUNDS}: commands"));
                execute += execute_rate(&repository, c, slice, false).await? / ROUNDS as f64;
                bar.set_message(format!(
                    "c={c} round {round}/{ROUNDS}: commands with request ids"
                ));
                keyed += execute_rate(&repository, c, slice, true).await? / ROUNDS as f64;
            }
            bar.finish_and_clear();
            println!(
                "c={c} raw={raw:.0} append={append:.0} ratio={:.2} execute={execute:.0} ratio={:.2} execute_with_request_id={keyed:.0} ratio={:.2}",
                append / raw,
                execute / raw,
                keyed / raw,
            );
        }
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await?;
        let missing = args.tail_events.saturating_sub(u64::try_from(existing)?);
        if missing > 0 {
            fill(&log, missing).await?;
        }
        // Read the log as it stands once it has been around a while: vacuumed and checkpointed,
        // so that the figure is reading, not writing back the pages the fill left dirty.
        // CHECKPOINT needs a privileged role; without one it is skipped with a warning.
        let bar = spinner("vacuuming and checkpointing the log".into());
        sqlx::raw_sql("VACUUM ANALYZE events")
            .execute(&pool)
            .await?;
        if let Err(err) = sqlx::raw_sql("CHECKPOINT").execute(&pool).await {
            tracing::warn!(error = %err, "could not checkpoint before the tail measurement");
        }
        // Three passes over the whole log, the median reported: one pass is short enough for a
        // neighbour's burst on this machine to move it by a third.
        let mut rates = Vec::new();
        for pass in 1..=TAIL_PASSES {
            bar.set_message(format!("tailing the log, pass {pass}/{TAIL_PASSES}"));
            let (count, rate) = tail_rate(&log).await?;
            if count < args.tail_events {
                anyhow::bail!(
                    "the tail read {count} events, fewer than the {} in the log",
                    args.tail_events
                );
            }
            rates.push(rate);
        }
        bar.finish_and_clear();
        rates.sort_by(f64::total_cmp);
        let rate = rates[rates.len() / 2];
        println!("tail={rate:.0}");
        pool.close().await;
        anyhow::Ok(())
    })
    .await
}

pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}
