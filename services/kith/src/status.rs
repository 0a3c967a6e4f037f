//! `kith status`: what an operator asks first. Per service: whether a relay leads and how many
//! events wait to be published; per projection and source: where it stands, how far behind, and
//! why it is stopped if it is (with the event); and the oldest open transaction of the database
//! server, which every tail of every log waits for. Exits non-zero when something is stuck.

use std::time::Duration;

use anyhow::Context;
use kith_platform::config::{DatabaseArgs, NatsArgs};
use kith_platform::db::{self, Schema};
use kith_platform::eventlog::{Checkpoint, EventLog};
use kith_platform::projection::{Stall, read_stall};
use serde::Serialize;

use crate::commands::service_names;

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Only this service; every service when omitted.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(service_names()))]
    service: Option<String>,
    /// Print JSON (one object) for scripts instead of text.
    #[arg(long)]
    json: bool,
    /// Print again every this many seconds until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    watch: Option<u64>,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    nats: NatsArgs,
}

#[derive(Debug, Serialize)]
struct Report {
    services: Vec<ServiceStatus>,
    /// The oldest transaction open on the database server (any database): tails wait for it.
    oldest_transaction: Option<OldTransaction>,
    /// What is stuck, one line each; empty when all is well.
    stuck: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    service: String,
    relay: RelayStatus,
    projections: Vec<ProjectionStatus>,
}

#[derive(Debug, Serialize)]
struct RelayStatus {
    /// The backend holding the relay's lock, if any replica leads.
    leader_pid: Option<i32>,
    stream: String,
    /// Events of the log not yet on the stream (`None` when the stream cannot be read).
    lag_events: Option<i64>,
    /// Why the relay cannot go on, if it cannot.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ProjectionStatus {
    projection: String,
    source: String,
    /// Log position, or stream sequence for a bus source.
    checkpoint: i64,
    lag_events: Option<i64>,
    /// Age of the oldest event not yet applied, in seconds.
    lag_seconds: Option<f64>,
    stalled: Option<StallStatus>,
}

#[derive(Debug, Serialize)]
struct StallStatus {
    at: i64,
    event_id: Option<String>,
    error: String,
    since: String,
}

#[derive(Debug, Serialize)]
struct OldTransaction {
    pid: i32,
    database: Option<String>,
    state: Option<String>,
    seconds: f64,
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let client = kith_platform::bus::connect(&args.nats.nats_url, "kith-status")
        .await
        .context("connecting to NATS")?;
    let js = kith_platform::bus::jetstream(client);
    loop {
        let report = gather(&args, &js).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_text(&report);
        }
        let Some(every) = args.watch else {
            if report.stuck.is_empty() {
                return Ok(());
            }
            anyhow::bail!("{} thing(s) stuck", report.stuck.len());
        };
        tokio::time::sleep(Duration::from_secs(every)).await;
        if !args.json {
            println!();
        }
    }
}

async fn gather(args: &StatusArgs, js: &async_nats::jetstream::Context) -> anyhow::Result<Report> {
    let mut services = Vec::new();
    let mut stuck = Vec::new();
    let mut oldest_transaction = None;
    for name in service_names()
        .into_iter()
        .filter(|name| args.service.as_deref().is_none_or(|s| s == *name))
    {
        let schema = Schema::parse(name)?;
        // Patiently: a server at its connection limit for a moment is not a reason to report
        // nothing. One connection, reused: the report asks one thing at a time, and a pool of
        // two opened a second connection when the first was not back yet, which a server at
        // its limit refused until the pool gave up (seen in CI: "pool timed out").
        let pool = db::connect_patiently(
            &args.database.database_url,
            &schema,
            1,
            Duration::from_secs(10),
        )
        .await
        .with_context(|| format!("connecting to {name}'s database"))?;
        if oldest_transaction.is_none() {
            oldest_transaction = oldest(&pool).await?;
        }
        let log = EventLog::new(pool.clone()).for_service(name);
        let relay = relay_status(&args.nats, name, &schema, &log, js).await?;
        if relay.leader_pid.is_none() {
            stuck.push(format!("{name}: no replica leads the relay"));
        }
        if let Some(error) = &relay.error {
            stuck.push(format!("{name}: relay: {error}"));
        }
        let projections = projection_status(&pool, js).await?;
        for projection in &projections {
            if let Some(stall) = &projection.stalled {
                stuck.push(format!(
                    "{name}.{} ({}) stopped at {}: {}",
                    projection.projection, projection.source, stall.at, stall.error
                ));
            }
        }
        services.push(ServiceStatus {
            service: name.to_owned(),
            relay,
            projections,
        });
        pool.close().await;
    }
    Ok(Report {
        services,
        oldest_transaction,
        stuck,
    })
}

async fn relay_status(
    nats: &NatsArgs,
    service: &str,
    schema: &Schema,
    log: &EventLog,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<RelayStatus> {
    let leader_pid =
        kith_platform::leader::holder(log.pool(), &kith_platform::relay::lock_key(schema)).await?;
    let spec = nats.stream_for(service);
    let (lag_events, error) = match js.get_stream(&spec.name).await {
        Err(err) => (None, Some(format!("stream {}: {err}", spec.name))),
        Ok(mut stream) => match kith_platform::relay::stream_end(&spec, log, &mut stream).await {
            Ok(end) => (
                Some(
                    kith_platform::lag::log_lag(log.pool(), end.checkpoint)
                        .await?
                        .0,
                ),
                None,
            ),
            Err(err) => (None, Some(err.to_string())),
        },
    };
    Ok(RelayStatus {
        leader_pid,
        stream: spec.name,
        lag_events,
        error,
    })
}

async fn projection_status(
    pool: &sqlx::PgPool,
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<Vec<ProjectionStatus>> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT projection, source, transaction_id, position FROM projection_checkpoints
         ORDER BY projection, source",
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    for (projection, source, transaction_id, position) in rows {
        let (lag_events, lag_seconds) = match source.strip_prefix("bus:") {
            None => {
                let checkpoint = Checkpoint {
                    transaction_id,
                    position,
                };
                let (events, seconds) = kith_platform::lag::log_lag(pool, checkpoint).await?;
                (Some(events), Some(seconds))
            }
            Some(stream) => match kith_platform::lag::bus_lag(js, stream, position).await {
                Ok((events, seconds)) => (Some(events), Some(seconds)),
                Err(_) => (None, None),
            },
        };
        let stalled = {
            let mut conn = pool.acquire().await?;
            read_stall(&mut conn, &projection, &source).await?
        };
        out.push(ProjectionStatus {
            projection,
            source,
            checkpoint: position,
            lag_events,
            lag_seconds,
            stalled: stalled.map(
                |Stall {
                     position,
                     event_id,
                     error,
                     since,
                 }| StallStatus {
                    at: position,
                    event_id: event_id.map(|id| id.to_string()),
                    error,
                    since: since.to_rfc3339(),
                },
            ),
        });
    }
    Ok(out)
}

async fn oldest(pool: &sqlx::PgPool) -> anyhow::Result<Option<OldTransaction>> {
    let row: Option<(i32, Option<String>, Option<String>, f64)> = sqlx::query_as(
        "SELECT pid, datname::text, state, extract(epoch FROM now() - xact_start)::float8
         FROM pg_stat_activity
         WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()
         ORDER BY xact_start LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(pid, database, state, seconds)| OldTransaction {
        pid,
        database,
        state,
        seconds,
    }))
}

fn print_text(report: &Report) {
    for service in &report.services {
        let relay = &service.relay;
        println!(
            "{}: relay {} on {}, {} events to publish{}",
            service.service,
            relay
                .leader_pid
                .map_or("WITHOUT A LEADER".to_owned(), |pid| format!(
                    "led (backend {pid})"
                )),
            relay.stream,
            relay.lag_events.map_or("?".to_owned(), |n| n.to_string()),
            relay
                .error
                .as_ref()
                .map(|e| format!("; STUCK: {e}"))
                .unwrap_or_default()
        );
        for p in &service.projections {
            println!(
                "  {:<14} {:<28} at {:>10}  behind {:>8} events, {:>8} s{}",
                p.projection,
                p.source,
                p.checkpoint,
                p.lag_events.map_or("?".to_owned(), |n| n.to_string()),
                p.lag_seconds.map_or("?".to_owned(), |s| format!("{s:.1}")),
                p.stalled
                    .as_ref()
                    .map(|s| format!(
                        "\n    STOPPED at {}{} since {}: {}",
                        s.at,
                        s.event_id
                            .as_ref()
                            .map(|id| format!(" (event {id})"))
                            .unwrap_or_default(),
                        s.since,
                        s.error
                    ))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(old) = &report.oldest_transaction {
        println!(
            "oldest open transaction: {:.1} s (backend {}, database {}, {})",
            old.seconds,
            old.pid,
            old.database.as_deref().unwrap_or("?"),
            old.state.as_deref().unwrap_or("?")
        );
    }
    if report.stuck.is_empty() {
        println!("nothing stuck");
    } else {
        for line in &report.stuck {
            println!("STUCK: {line}");
        }
    }
}
