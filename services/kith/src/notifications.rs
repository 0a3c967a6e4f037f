//! `kith notifications`: what the notifications service holds for an operator to act on.

use anyhow::Context;
use kith_platform::config::DatabaseArgs;
use kith_platform::db::{self, Schema};
use serde::Serialize;
use uuid::Uuid;

/// How long the commands wait for a database that refuses connections for a moment (restarting,
/// or at its connection limit).
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Notifications {
    /// Webhooks and emails that failed every attempt and wait for an operator, latest first:
    /// who, which channel, how many attempts, the last error. The member's endpoint or the SMTP
    /// server is where to look; the ledger keeps them as `parked`.
    Parked(ParkedArgs),
    /// Tries parked deliveries again, once what made them fail is fixed: each goes back to
    /// `pending` with a fresh set of attempts (a webhook under the same `webhook-id`), and the
    /// running service sends it. Name notifications (as `parked --json` prints them) or pass
    /// --all.
    Requeue(RequeueArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct RequeueArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Notifications whose parked deliveries go again.
    #[arg(value_name = "NOTIFICATION_ID", required_unless_present = "all")]
    notifications: Vec<Uuid>,
    /// Every parked delivery goes again.
    #[arg(long, conflicts_with = "notifications")]
    all: bool,
    /// Only deliveries on this channel.
    #[arg(long, value_enum)]
    channel: Option<ParkedChannel>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ParkedChannel {
    Email,
    Webhook,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ParkedArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Print JSON (one object per line) for scripts instead of a table.
    #[arg(long)]
    json: bool,
    /// The most deliveries listed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    limit: i64,
}

/// A parked delivery as stored: notification, member, channel, attempts, error, when, kind.
type ParkedRow = (
    Uuid,
    Uuid,
    i32,
    i32,
    String,
    chrono::DateTime<chrono::Utc>,
    i32,
);

/// A delivery that gave up.
#[derive(Debug, Serialize)]
struct Parked {
    notification_id: Uuid,
    member_id: Uuid,
    channel: String,
    attempts: i32,
    error: String,
    /// RFC 3339.
    parked_at: String,
    kind: String,
}

pub(crate) async fn run(command: Notifications) -> anyhow::Result<()> {
    match command {
        Notifications::Parked(args) => parked(args).await,
        Notifications::Requeue(args) => requeue(args).await,
    }
}

async fn parked(args: ParkedArgs) -> anyhow::Result<()> {
    let schema = Schema::parse(kith_notifications::SERVICE)?;
    let pool = db::connect_patiently(&args.database.database_url, &schema, 1, PATIENCE)
        .await
        .context("connecting to the notifications database (--database-url)")?;
    let rows: Vec<ParkedRow> = sqlx::query_as(
        "SELECT d.notification_id, d.recipient_id, d.channel, d.attempts, d.reason,
                    d.changed_at, n.kind
             FROM deliveries d JOIN notifications n USING (notification_id)
             WHERE d.status = 'parked'
             ORDER BY d.changed_at DESC, d.notification_id LIMIT $1",
    )
    .bind(args.limit)
    .fetch_all(&pool)
    .await
    .context("reading parked deliveries (is the notifications schema migrated?)")?;
    pool.close().await;
    let name = |value: i32, as_str: fn(i32) -> Option<&'static str>| {
        as_str(value).map_or_else(|| value.to_string(), str::to_owned)
    };
    let parked: Vec<Parked> = rows
        .into_iter()
        .map(
            |(notification_id, member_id, channel, attempts, error, parked_at, kind)| Parked {
                notification_id,
                member_id,
                channel: name(channel, |c| {
                    kith_proto::notifications::Channel::try_from(c)
                        .ok()
                        .map(|c| c.as_str_name())
                }),
                attempts,
                error,
                parked_at: parked_at.to_rfc3339(),
                kind: name(kind, |k| {
                    kith_proto::notifications::Kind::try_from(k)
                        .ok()
                        .map(|k| k.as_str_name())
                }),
            },
        )
        .collect();
    if args.json {
        for one in &parked {
            println!("{}", serde_json::to_string(one)?);
        }
        return Ok(());
    }
    if parked.is_empty() {
        println!("no parked deliveries");
        return Ok(());
    }
    println!(
        "{:<20}  {:<36}  {:<15}  {:>8}  error",
        "parked at (UTC)", "member", "channel", "attempts"
    );
    for one in &parked {
        println!(
            "{:<20}  {:<36}  {:<15}  {:>8}  {}",
            one.parked_at
                .get(..19)
                .unwrap_or(&one.parked_at)
                .replace('T', " "),
            one.member_id,
            one.channel,
            one.attempts,
            one.error
        );
    }
    println!("{} parked (notification ids with --json)", parked.len());
    Ok(())
}

async fn requeue(args: RequeueArgs) -> anyhow::Result<()> {
    use kith_proto::notifications::Channel;
    let schema = Schema::parse(kith_notifications::SERVICE)?;
    let pool = db::connect_patiently(&args.database.database_url, &schema, 2, PATIENCE)
        .await
        .context("connecting to the notifications database (--database-url)")?;
    let channel = args.channel.map(|c| match c {
        ParkedChannel::Email => Channel::Email as i32,
        ParkedChannel::Webhook => Channel::Webhook as i32,
    });
    let parked: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT notification_id, channel FROM deliveries
         WHERE status = 'parked' AND ($1 OR notification_id = ANY($2))
           AND ($3::int IS NULL OR channel = $3)
         ORDER BY changed_at, notification_id",
    )
    .bind(args.all)
    .bind(&args.notifications)
    .bind(channel)
    .fetch_all(&pool)
    .await
    .context("reading parked deliveries (is the notifications schema migrated?)")?;
    let missing: Vec<String> = args
        .notifications
        .iter()
        .filter(|id| !parked.iter().any(|(parked, _)| parked == *id))
        .map(Uuid::to_string)
        .collect();
    if !missing.is_empty() {
        pool.close().await;
        anyhow::bail!(
            "no parked delivery{} for {} (see `kith notifications parked`); nothing was requeued",
            if args.channel.is_some() {
                " on --channel"
            } else {
                ""
            },
            missing.join(", ")
        );
    }
    let wanted: Vec<(Uuid, Channel)> = parked
        .iter()
        .map(|(id, c)| (*id, Channel::try_from(*c).unwrap_or(Channel::Unspecified)))
        .collect();
    let log = kith_platform::eventlog::EventLog::new(pool.clone())
        .for_service(kith_notifications::SERVICE);
    let requeued = kith_notifications::delivery::requeue(&log, &wanted)
        .await
        .context("recording the requeues")?;
    kith_platform::projection::notices::announce_append(&pool, &schema)
        .await
        .context("telling the running service")?;
    pool.close().await;
    println!(
        "requeued {} parked deliver{}; the running service sends {} now",
        requeued.len(),
        if requeued.len() == 1 { "y" } else { "ies" },
        if requeued.len() == 1 { "it" } else { "them" }
    );
    Ok(())
}
