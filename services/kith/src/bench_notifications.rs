//! `kith bench notifications`: how fast the rules decide, replaying a messaging history through
//! them (the consumer a rebuild or a catch-up runs), beside reading the same stream with a bare
//! NATS consumer and raw PostgreSQL commits in the same run; and the latency from a post's OK to
//! the mentioned member's feed stream while other cohorts post at a steady rate, beside raw NATS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use futures::StreamExt;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::{self, Projection};
use kith_platform::runtime::Runtime;
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use kith_proto::notifications as npb;
use kith_proto::notifications::notifications_service_client::NotificationsServiceClient;
use uuid::Uuid;

use crate::bench::{RAW_TABLE, Scratch, in_scratch, raw_rate, redact, spinner};
use crate::bench_cohorts::{
    Callers, Served, as_member, bar, bench_args, community_of, join, open_cohort_by, percentile,
    raw_nats,
};
use crate::bench_messaging::post;

#[derive(Debug, clap::Args)]
pub(crate) struct NotificationsArgs {
    /// Server to measure on; a scratch database is created there and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    database_url: String,
    /// NATS server with JetStream; streams go under a scratch namespace, deleted afterwards.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Messaging events replayed through the rules.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Cohorts the replayed history is spread over.
    #[arg(long, default_value_t = 2_000)]
    cohorts: usize,
    /// Members seated in each replayed cohort.
    #[arg(long, default_value_t = 12)]
    seated: usize,
    /// Posts timed from their OK to the mentioned member's feed stream.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Posts per second other cohorts make meanwhile.
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Concurrent callers of the background posts.
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// Skip the replay (the latency only).
    #[arg(long, conflicts_with = "replay_only")]
    latency_only: bool,
    /// Skip the latency (the replay only).
    #[arg(long)]
    replay_only: bool,
}

pub(crate) async fn run(args: NotificationsArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.cohorts == 0 || args.seated < 2 || args.samples == 0 {
        anyhow::bail!("--events, --cohorts and --samples must be positive, --seated at least 2");
    }
    if args.callers == 0 || args.callers > 256 {
        anyhow::bail!("--callers must be 1 to 256");
    }
    kith_platform::db::ensure_database(&args.database_url).await?;
    println!(
        "kith bench notifications: on {} and {}",
        redact(&args.database_url),
        args.nats_url
    );
    if !args.latency_only {
        in_scratch(
            &args.database_url,
            Some(&args.nats_url),
            async |scratch, namespace| replay(&args, scratch, namespace).await,
        )
        .await?;
    }
    if args.replay_only {
        return Ok(());
    }
    in_scratch(
        &args.database_url,
        Some(&args.nats_url),
        async |scratch, namespace| live(&args, scratch, namespace).await,
    )
    .await
}

/// A synthetic history: who is where, and what was said.
struct History {
    membership: Vec<RecordedEvent>,
    cohorts: Vec<RecordedEvent>,
    messaging: Vec<RecordedEvent>,
}

fn event<M: prost::Name>(
    stream_type: &str,
    stream_id: Uuid,
    version: i64,
    position: i64,
    message: &M,
) -> RecordedEvent {
    RecordedEvent {
        position,
        transaction_id: 0,
        stream_type: stream_type.into(),
        stream_id: stream_id.to_string(),
        version,
        event_id: Uuid::now_v7(),
        event_type: M::full_name(),
        payload: message.encode_to_vec(),
        metadata_json: "{}".into(),
        recorded_at: Utc::now(),
    }
}

/// One community; `cohorts` cohorts of `seated` members each; `events` messaging events, a
/// new thread every tenth post and replies otherwise (in threads of about ten), one post in
/// five mentioning someone in the cohort.
fn history(args: &NotificationsArgs) -> History {
    let community = Uuid::new_v4();
    let mut membership = Vec::new();
    let mut cohorts = Vec::new();
    let mut messaging = Vec::new();
    let mut seats = Vec::with_capacity(args.cohorts);
    for c in 0..args.cohorts {
        let cohort = Uuid::new_v4();
        let members: Vec<Uuid> = (0..args.seated).map(|_| Uuid::new_v4()).collect();
        let created = cpb::CohortCreated {
            community_id: community.to_string(),
            ..Default::default()
        };
        cohorts.push(event(
            "cohort",
            cohort,
            1,
            cohorts.len() as i64 + 1,
            &created,
        ));
        for (i, member) in members.iter().enumerate() {
            let joined = mpb::MemberJoined {
                community_id: community.to_string(),
                member_id: member.to_string(),
                role: mpb::MemberRole::Member as i32,
                ..Default::default()
            };
            let version = (c * args.seated + i) as i64 + 1;
            membership.push(event("community", community, version, version, &joined));
            let seated = cpb::MemberJoinedCohort {
                cohort_id: cohort.to_string(),
                member_id: member.to_string(),
                ..Default::default()
            };
            cohorts.push(event(
                "cohort",
                cohort,
                i as i64 + 2,
                cohorts.len() as i64 + 1,
                &seated,
            ));
        }
        let started = msg::ConversationStarted {
            conversation_id: cohort.to_string(),
            kind: msg::ConversationKind::Cohort as i32,
            community_id: community.to_string(),
            cohort_id: cohort.to_string(),
            participant_ids: Vec::new(),
            started_by: members[0].to_string(),
        };
        messaging.push(event(
            "conversation",
            cohort,
            1,
            messaging.len() as i64 + 1,
            &started,
        ));
        seats.push((cohort, members, 1i64, Uuid::nil()));
    }
    let mut rng = kith_platform::testing::Lcg(7);
    while messaging.len() < args.events {
        let at = rng.below(args.cohorts as u64) as usize;
        let (cohort, members, version, thread) = &mut seats[at];
        let author = rng.pick(members);
        *version += 1;
        let message = Uuid::new_v4();
        if thread.is_nil() || *version % 10 == 0 {
            *thread = message;
        }
        let mentioned: Vec<String> = if rng.below(5) == 0 {
            let someone = rng.pick(members);
            (someone != author)
                .then(|| someone.to_string())
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        let posted = msg::MessagePosted {
            conversation_id: cohort.to_string(),
            message_id: message.to_string(),
            thread_id: thread.to_string(),
            author_id: author.to_string(),
            mentioned_ids: mentioned,
            ..Default::default()
        };
        let position = messaging.len() as i64 + 1;
        messaging.push(event("conversation", *cohort, *version, position, &posted));
    }
    History {
        membership,
        cohorts,
        messaging,
    }
}

/// Publishes `events` to `service`'s stream, acks pipelined.
async fn publish(
    js: &async_nats::jetstream::Context,
    nats: &kith_platform::config::NatsArgs,
    service: &str,
    events: &[RecordedEvent],
    what: &str,
) -> anyhow::Result<()> {
    let spec = nats.stream_for(service);
    spec.ensure(js).await?;
    let progress = bar(events.len(), what);
    for chunk in events.chunks(1000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for event in chunk {
            let subject = spec.subject(&event.stream_type, &event.stream_id);
            acks.push(
                js.send_publish(subject, kith_platform::relay::message(event, None))
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(())
}

/// How fast a bare ordered consumer reads the whole stream: messages per second.
async fn raw_read(
    js: &async_nats::jetstream::Context,
    stream: &str,
    total: usize,
) -> anyhow::Result<f64> {
    let stream = js.get_stream(stream).await?;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let started = Instant::now();
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    while read < total {
        messages.next().await.context("the stream ended early")??;
        read += 1;
    }
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

async fn replay(
    args: &NotificationsArgs,
    scratch: &Scratch,
    namespace: &str,
) -> anyhow::Result<()> {
    let service_args = bench_args(scratch, &args.nats_url, namespace);
    let runtime = Runtime::connect(service_args.clone()).await?;
    let (schema, pool) = runtime.database(kith_notifications::SERVICE, &[]).await?;
    let generating = spinner(format!("generating {} messaging events", args.events));
    let history = history(args);
    generating.finish_and_clear();
    let js = runtime.jetstream.clone();
    let nats = &service_args.nats;
    publish(
        &js,
        nats,
        "membership",
        &history.membership,
        "membership events",
    )
    .await?;
    publish(&js, nats, "cohorts", &history.cohorts, "cohorts events").await?;
    publish(
        &js,
        nats,
        "messaging",
        &history.messaging,
        "messaging events",
    )
    .await?;
    let raw_nats = raw_read(
        &js,
        &nats.stream_for("messaging").name,
        history.messaging.len(),
    )
    .await?;
    sqlx::raw_sql(RAW_TABLE).execute(&pool).await?;
    let raw_pg = raw_rate(&pool, 8, 3.0).await?;

    // The ledger's tables (preferences and contacts, which the rules read), then who is where.
    let ledger = kith_notifications::projections::Ledger;
    sqlx::raw_sql(sqlx::AssertSqlSafe(ledger.ddl()))
        .execute(&pool)
        .await?;
    let sources = kith_notifications::bus_projections(nats);
    let url = &scratch.url;
    for (source, consumer) in &sources[..2] {
        projection::rebuild_from_bus(url, &schema, &js, source, consumer.as_ref(), |_, _| {})
            .await?;
    }
    let (source, rules) = &sources[2];
    let progress = bar(
        history.messaging.len(),
        "messaging events through the rules",
    );
    let started = Instant::now();
    let report =
        projection::rebuild_from_bus(url, &schema, &js, source, rules.as_ref(), |applied, _| {
            progress.set_position(applied);
        })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    let decisions =
        decisions_recorded(&runtime.event_log(kith_notifications::SERVICE, &pool)).await?;
    println!(
        "replay: {} messaging events through the rules in {seconds:.1}s: {:.0} events/s, {decisions} notifications decided, {:.0} decisions/s (target >= 20,000)",
        report.events,
        report.events as f64 / seconds,
        decisions as f64 / seconds
    );
    println!("raw NATS: an ordered consumer reads the same stream at {raw_nats:.0} msgs/s");
    println!("raw PostgreSQL: {raw_pg:.0} single-row insert commits/s (8 connections)");
    pool.close().await;
    runtime.stop().await;
    Ok(())
}

/// How many decisions the log holds (each `NotificationsDecided` holds all of an event's).
async fn decisions_recorded(log: &kith_platform::eventlog::EventLog) -> anyhow::Result<usize> {
    let counting = spinner("counting the decisions recorded".to_owned());
    let mut after = kith_platform::eventlog::Checkpoint::START;
    let mut decisions = 0;
    loop {
        let events = log.tail(after, 5_000).await?;
        let Some(last) = events.last() else {
            counting.finish_and_clear();
            return Ok(decisions);
        };
        after = last.checkpoint();
        for event in &events {
            let recorded = kith_notifications::projections::ledger::decisions(event)?;
            decisions += recorded.map_or(0, |d| d.len());
        }
    }
}

/// Members of the measured cohort and of each background cohort.
const SEATED: usize = 12;
/// Background cohorts.
const BACKGROUND: usize = 8;

async fn live(args: &NotificationsArgs, scratch: &Scratch, namespace: &str) -> anyhow::Result<()> {
    let runtime = Runtime::connect(bench_args(scratch, &args.nats_url, namespace)).await?;
    let membership = kith_membership::start(&runtime).await?;
    let cohorts = kith_cohorts::start(&runtime).await?;
    let messaging = kith_messaging::start(&runtime).await?;
    let notifications = kith_notifications::start(&runtime).await?;
    let router = kith_platform::grpc::server()
        .add_service(membership.server)
        .add_service(cohorts.server)
        .add_service(messaging.server)
        .add_service(notifications.server);
    let (addr, server) = Served::start(runtime, router).await?;
    let outcome = latency(args, addr, &scratch.url).await;
    server.stop().await?;
    outcome
}

async fn latency(
    args: &NotificationsArgs,
    addr: std::net::SocketAddr,
    database_url: &str,
) -> anyhow::Result<()> {
    use kith_proto::messaging::messaging_service_client::MessagingServiceClient;
    let callers = Arc::new(Callers::connect(addr, args.callers).await?);
    let owner = Uuid::new_v4();
    let size = SEATED * (BACKGROUND + 1);
    let (community, members, version) = community_of(&callers, owner, 16, size).await?;
    let mut groups = Vec::new();
    for group in members.chunks(SEATED) {
        let cohort = open_cohort_by(&callers, 0, owner, &community, version, 30).await?;
        let mut client = callers.cohorts(0);
        for member in group {
            join(&mut client, *member, cohort.clone()).await?;
        }
        groups.push((cohort, group.to_vec()));
    }
    // Each background cohort gets a thread everyone replied in: every reply then notifies the
    // whole cohort's followers.
    let mut threads = Vec::new();
    for (cohort, group) in &groups[1..] {
        let mut client = MessagingServiceClient::new(callers.channel(0));
        let first = post(&mut client, group[0], cohort, "", "Week 1".into()).await?;
        for member in group {
            post(
                &mut client,
                *member,
                cohort,
                &first.message_id,
                "here".into(),
            )
            .await?;
        }
        threads.push((cohort.clone(), first.message_id, group.clone()));
    }
    let (measured, group) = &groups[0];
    let (author, mentioned) = (group[0], group[1]);
    let handle = mention_handle(&callers, &community, mentioned).await?;
    let mut feed = NotificationsServiceClient::new(callers.channel(1))
        .stream_notifications(as_member(
            mentioned,
            npb::StreamNotificationsRequest { from_position: 0 },
        )?)
        .await?
        .into_inner();

    // Background load at --rate posts/s, replies in the background cohorts' threads.
    let stop = tokio_util::sync::CancellationToken::new();
    let posted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (stop, posted, callers) = (stop.clone(), Arc::clone(&posted), Arc::clone(&callers));
        let threads = Arc::new(threads);
        let rate = args.rate;
        let limit = Arc::new(tokio::sync::Semaphore::new(args.callers));
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut i = 0usize;
            while !stop.is_cancelled() {
                tick.tick().await;
                let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
                    return;
                };
                let (cohort, thread, group) = threads[i % threads.len()].clone();
                let member = group[(i / threads.len()) % group.len()];
                let mut client = MessagingServiceClient::new(callers.channel(i));
                let posted = Arc::clone(&posted);
                tokio::spawn(async move {
                    if post(&mut client, member, &cohort, &thread, format!("load {i}"))
                        .await
                        .is_ok()
                    {
                        posted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    drop(permit);
                });
                i += 1;
            }
        })
    };
    // Two seconds for the load to reach its pace before the samples.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counted_from = posted.load(std::sync::atomic::Ordering::Relaxed);
    let measuring = Instant::now();
    let mut samples = Vec::with_capacity(args.samples);
    let mut traced = Vec::with_capacity(args.samples);
    let progress = bar(args.samples, "post OK -> mentioned member's feed stream");
    let mut client = MessagingServiceClient::new(callers.channel(2));
    for i in 0..args.samples {
        let reply = post(
            &mut client,
            author,
            measured,
            "",
            format!("@{handle} sample {i}"),
        )
        .await?;
        let ok = Instant::now();
        let ok_at = Utc::now();
        loop {
            let change = tokio::time::timeout(Duration::from_secs(30), feed.next())
                .await
                .context("no feed change within 30 s")?
                .context("the feed stream ended")??;
            if change
                .notification
                .as_ref()
                .is_some_and(|n| n.message_id == reply.message_id)
            {
                break;
            }
        }
        samples.push(ok.elapsed());
        traced.push((reply.message_id.clone(), ok_at, Utc::now()));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let background = (posted.load(std::sync::atomic::Ordering::Relaxed) - counted_from) as f64
        / measuring.elapsed().as_secs_f64();
    stop.cancel();
    let _ = load.await;
    samples.sort();
    let (to_rules, after_rules) = stages(database_url, mentioned, &traced).await?;
    let raw = raw_nats(&args.nats_url, args.samples).await?;
    println!(
        "post OK -> mentioned member's feed stream: p50={:.1}ms p99={:.1}ms (n={}), while other cohorts posted {background:.0}/s (asked {}/s; target p99 < 100 ms at 1,000/s)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len(),
        args.rate
    );
    println!(
        "  where it goes: post OK -> the rules' batch that decided it begins p50={:.1}ms p99={:.1}ms; that batch's start -> feed stream p50={:.1}ms p99={:.1}ms",
        percentile(&to_rules, 0.5),
        percentile(&to_rules, 0.99),
        percentile(&after_rules, 0.5),
        percentile(&after_rules, 0.99),
    );
    println!(
        "raw NATS: publish -> delivery p50={:.2}ms p99={:.2}ms (n={}, core subject, same server)",
        percentile(&raw, 0.5),
        percentile(&raw, 0.99),
        raw.len()
    );
    Ok(())
}

/// Splits each sample (message, post OK, feed delivery) at the start of the rules' transaction
/// that decided it (its decision's `recorded_at`, on the same host's clock): before it, the
/// relay, NATS and the consumer's wait; after it, the rules' batch, the ledger and the stream.
async fn stages(
    database_url: &str,
    member: Uuid,
    traced: &[(String, chrono::DateTime<Utc>, chrono::DateTime<Utc>)],
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let pool = sqlx::PgPool::connect(database_url).await?;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (message, ok, fed) in traced {
        let decided: Option<chrono::DateTime<Utc>> = sqlx::query_scalar(
            "SELECT e.recorded_at FROM notifications.notifications n
             JOIN notifications.events e ON e.position = n.decided_position
             WHERE n.message_id = $1 AND n.recipient_id = $2",
        )
        .bind(message.parse::<Uuid>()?)
        .bind(member)
        .fetch_optional(&pool)
        .await?;
        if let Some(decided) = decided {
            before.push((decided - *ok).to_std().unwrap_or_default());
            after.push((*fed - decided).to_std().unwrap_or_default());
        }
    }
    pool.close().await;
    before.sort();
    after.sort();
    Ok((before, after))
}

/// The handle `member` joined with, from membership (the bench's community fixture gives each
/// member one).
async fn mention_handle(
    callers: &Callers,
    community: &str,
    member: Uuid,
) -> anyhow::Result<String> {
    let profile = callers
        .membership(0)
        .get_member(as_member(
            member,
            mpb::GetMemberRequest {
                community_id: community.into(),
                member_id: member.to_string(),
                min_position: 0,
            },
        )?)
        .await?
        .into_inner();
    profile
        .member
        .and_then(|m| m.profile)
        .map(|p| p.handle)
        .filter(|h| !h.is_empty())
        .context("the member has no handle")
}
