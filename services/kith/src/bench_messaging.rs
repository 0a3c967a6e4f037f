//! `kith bench messaging`: the messaging service over real gRPC in one process with membership
//! and cohorts, on a scratch database and NATS namespace, beside raw PostgreSQL commits and raw
//! NATS delivery measured in the same run: posts per second into one cohort and into many, the
//! latency from a post's OK to another member's live stream, and the unread-count query on a
//! cohort of 30 with a long history.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use kith_platform::db::{self, Schema};
use kith_platform::runtime::Runtime;
use kith_proto::messaging as msg;
use kith_proto::messaging::messaging_service_client::MessagingServiceClient;
use kith_proto::messaging::subscribe_response::Event as Live;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::bench::{RAW_TABLE, Scratch, in_scratch, raw_rate, redact, spinner};
use crate::bench_cohorts::{
    Callers, Served, as_member, bar, bench_args, community_of, join, open_cohort_by, percentile,
    raw_nats, rid, spread,
};

#[derive(Debug, clap::Args)]
pub(crate) struct MessagingArgs {
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
    /// Posts per rate measurement.
    #[arg(long, default_value_t = 10_000)]
    posts: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    callers: usize,
    /// Cohorts the spread posts go to.
    #[arg(long, default_value_t = 1000)]
    cohorts: usize,
    /// Posts timed from their OK to another member's live stream.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Messages in the cohort whose unread counts are queried.
    #[arg(long, default_value_t = 100_000)]
    history: usize,
}

/// The members of the measured cohort (its hard capacity).
const SEATED: usize = 30;

pub(crate) async fn run(args: MessagingArgs) -> anyhow::Result<()> {
    if args.callers == 0 || args.callers > 256 {
        anyhow::bail!("--callers must be 1 to 256");
    }
    if args.posts == 0 || args.cohorts == 0 || args.samples == 0 {
        anyhow::bail!("--posts, --cohorts and --samples must be positive");
    }
    db::ensure_database(&args.database_url).await?;
    in_scratch(
        &args.database_url,
        Some(&args.nats_url),
        async |scratch, namespace| measure(&args, scratch, namespace).await,
    )
    .await
}

async fn measure(args: &MessagingArgs, scratch: &Scratch, namespace: &str) -> anyhow::Result<()> {
    let runtime = Runtime::connect(bench_args(scratch, &args.nats_url, namespace)).await?;
    let membership = kith_membership::start(&runtime).await?;
    let cohorts = kith_cohorts::start(&runtime).await?;
    let messaging = kith_messaging::start(&runtime).await?;
    let router = kith_platform::grpc::server()
        .add_service(membership.server)
        .add_service(cohorts.server)
        .add_service(messaging.server);
    let (addr, server) = Served::start(runtime, router).await?;
    println!(
        "kith bench messaging: {} posts per rate by {} callers over gRPC, on {} and {}",
        args.posts,
        args.callers,
        redact(&args.database_url),
        args.nats_url
    );
    let outcome = scenarios(args, addr, scratch, namespace).await;
    server.stop().await?;
    outcome
}

fn messaging(callers: &Callers, caller: usize) -> MessagingServiceClient<Channel> {
    MessagingServiceClient::new(callers.channel(caller))
}

/// Posts `body` as `member` (see [`post_as`]).
pub(crate) async fn post(
    client: &mut MessagingServiceClient<Channel>,
    member: Uuid,
    conversation: &str,
    thread: &str,
    body: String,
) -> anyhow::Result<msg::PostMessageResponse> {
    let request = msg::PostMessageRequest {
        request_id: rid(),
        conversation_id: conversation.into(),
        thread_id: thread.into(),
        title: String::new(),
        body,
    };
    post_as(client, request, |request| as_member(member, request)).await
}

/// Posts `request` signed by `sign`; retries (same request id) while the author's seat, or a
/// new cohort, is still on its way to messaging, or no connection was free in time under load.
pub(crate) async fn post_as(
    client: &mut MessagingServiceClient<Channel>,
    request: msg::PostMessageRequest,
    sign: impl Fn(msg::PostMessageRequest) -> anyhow::Result<tonic::Request<msg::PostMessageRequest>>,
) -> anyhow::Result<msg::PostMessageResponse> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.post_message(sign(request.clone())?).await {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::PermissionDenied
                        | tonic::Code::NotFound
                        | tonic::Code::Unavailable
                ) && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => return Err(status.into()),
        }
    }
}

async fn scenarios(
    args: &MessagingArgs,
    addr: SocketAddr,
    scratch: &Scratch,
    namespace: &str,
) -> anyhow::Result<()> {
    let callers = Arc::new(Callers::connect(addr, args.callers).await?);
    let owner = Uuid::new_v4();
    let (community, members, version) = community_of(&callers, owner, args.callers, SEATED).await?;
    // The owner opens a cohort of 30 (owners may) and facilitates it; its members sit in it.
    let cohort = open_cohort_by(&callers, 0, owner, &community, version, 30).await?;
    {
        let mut client = callers.cohorts(0);
        for member in &members {
            join(&mut client, *member, cohort.clone()).await?;
        }
    }
    let members = Arc::new(members);
    let cohort = Arc::new(cohort);
    // Everyone's seat has reached messaging, and there is a thread to reply in.
    let thread = {
        let mut client = messaging(&callers, 0);
        let first = post(&mut client, members[0], &cohort, "", "Week 1".into()).await?;
        for member in members.iter() {
            post(
                &mut client,
                *member,
                &cohort,
                &first.message_id,
                "here".into(),
            )
            .await?;
        }
        Arc::new(first.message_id)
    };

    // One cohort: every post contends for its one conversation stream.
    let rate = {
        let (callers, members, cohort, thread) = (
            Arc::clone(&callers),
            Arc::clone(&members),
            Arc::clone(&cohort),
            Arc::clone(&thread),
        );
        spread(
            args.callers,
            args.posts,
            "posts, one cohort",
            move |caller, i| {
                let mut client = messaging(&callers, caller);
                let member = members[i % members.len()];
                let (cohort, thread) = (Arc::clone(&cohort), Arc::clone(&thread));
                async move {
                    let in_thread = if i % 4 == 0 { "" } else { thread.as_str() };
                    post(
                        &mut client,
                        member,
                        &cohort,
                        in_thread,
                        format!("update {i}"),
                    )
                    .await?;
                    Ok(())
                }
            },
        )
        .await?
    };
    println!(
        "one cohort:  posts/s={rate:.0}  (30 members, {} callers; 1 in 4 a new thread)",
        args.callers
    );

    // Many cohorts, facilitated by the owner, who posts into each in turn.
    let spread_over = {
        let bar = spinner(format!("creating {} cohorts", args.cohorts));
        let ids = Arc::new(tokio::sync::Mutex::new(vec![String::new(); args.cohorts]));
        {
            let (callers, community, ids) = (
                Arc::clone(&callers),
                Arc::new(community.clone()),
                Arc::clone(&ids),
            );
            spread(
                args.callers,
                args.cohorts,
                "creating cohorts",
                move |caller, i| {
                    let (callers, community, ids) = (
                        Arc::clone(&callers),
                        Arc::clone(&community),
                        Arc::clone(&ids),
                    );
                    async move {
                        let id = open_cohort_by(&callers, caller, owner, &community, 0, 12).await?;
                        ids.lock().await[i] = id;
                        Ok(())
                    }
                },
            )
            .await?;
        }
        bar.finish_and_clear();
        Arc::new(ids.lock().await.clone())
    };
    let rate = {
        let (callers, cohorts) = (Arc::clone(&callers), Arc::clone(&spread_over));
        spread(
            args.callers,
            args.posts,
            "posts, many cohorts",
            move |caller, i| {
                let mut client = messaging(&callers, caller);
                let cohort = cohorts[i % cohorts.len()].clone();
                async move {
                    post(&mut client, owner, &cohort, "", format!("note {i}")).await?;
                    Ok(())
                }
            },
        )
        .await?
    };
    println!(
        "many cohorts: posts/s={rate:.0}  ({} cohorts, {} callers)",
        args.cohorts, args.callers
    );

    // The limit: raw single-row insert commits on the same server, same concurrency.
    let schema = Schema::parse("rawbench")?;
    let pool = db::connect(&scratch.url, &schema, args.callers as u32 + 2).await?;
    db::migrate(&pool, &schema, "rawbench", &[]).await?;
    sqlx::raw_sql(RAW_TABLE).execute(&pool).await?;
    let bar = spinner(format!("raw PostgreSQL inserts at c={}", args.callers));
    let raw = raw_rate(&pool, args.callers, 3.0).await?;
    bar.finish_and_clear();
    pool.close().await;
    println!(
        "raw PostgreSQL: commits/s={raw:.0}  (single-row insert commits, c={})",
        args.callers
    );

    live(args, scratch, &callers, &members, &cohort).await?;
    unread(
        args, scratch, namespace, &callers, &members, &cohort, &thread,
    )
    .await
}

/// Waits until the relay has put every event of messaging's log on the bus, so that the unread
/// query is timed on a settled system rather than beside the relay's catch-up; says how long.
async fn settle(args: &MessagingArgs, scratch: &Scratch, namespace: &str) -> anyhow::Result<()> {
    let schema = Schema::parse("messaging")?;
    let pool = db::connect(&scratch.url, &schema, 1).await?;
    let js = async_nats::jetstream::new(async_nats::connect(&args.nats_url).await?);
    let name = format!("{}_KITH_MESSAGING", namespace.to_ascii_uppercase());
    let started = Instant::now();
    loop {
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await?;
        let published = js.get_stream(&name).await?.info().await?.state.messages;
        if published >= u64::try_from(events).unwrap_or(0) {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the relay published {published} of {events} events in 600 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pool.close().await;
    if started.elapsed() > Duration::from_millis(300) {
        println!(
            "the relay finished publishing the history {:.1}s after the read model",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// From a post's OK to another member's live stream receiving it, one post at a time; beside raw
/// NATS publish-to-delivery on the same server.
async fn live(
    args: &MessagingArgs,
    scratch: &Scratch,
    callers: &Callers,
    members: &[Uuid],
    cohort: &str,
) -> anyhow::Result<()> {
    let mut client = messaging(callers, 0);
    let mut stream = client
        .subscribe(as_member(
            members[1],
            msg::SubscribeRequest { from_position: 0 },
        )?)
        .await?
        .into_inner();
    let mut samples = Vec::with_capacity(args.samples);
    let mut projected = Vec::with_capacity(args.samples);
    let schema = Schema::parse("messaging")?;
    let pool = db::connect(&scratch.url, &schema, 2).await?;
    let progress = bar(args.samples, "post OK -> live stream");
    for i in 0..args.samples {
        let posted = post(&mut client, members[0], cohort, "", format!("live {i}")).await?;
        let ok = Instant::now();
        let id: Uuid = posted.message_id.parse()?;
        // When the read model the stream follows has it: the stream's share of the latency is
        // what comes after.
        loop {
            let there: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM messages WHERE message_id = $1)")
                    .bind(id)
                    .fetch_one(&pool)
                    .await?;
            if there {
                projected.push(ok.elapsed());
                break;
            }
            if ok.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("the post was not in the read model 30 s after its OK");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .context("no live event within 30 s")?
                .context("the live stream ended")??;
            if let Some(Live::MessagePosted(message)) = &event.event
                && message.message_id == posted.message_id
            {
                break;
            }
        }
        samples.push(ok.elapsed());
        progress.inc(1);
    }
    progress.finish_and_clear();
    pool.close().await;
    samples.sort();
    projected.sort();
    let raw = raw_nats(&args.nats_url, args.samples).await?;
    println!(
        "post OK -> messages read model: p50={:.1}ms p99={:.1}ms (n={})",
        percentile(&projected, 0.5),
        percentile(&projected, 0.99),
        projected.len()
    );
    println!(
        "post OK -> another member's live stream: p50={:.1}ms p99={:.1}ms (n={})",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.len()
    );
    println!(
        "raw NATS: publish -> delivery p50={:.2}ms p99={:.2}ms (n={}, core subject, same server)",
        percentile(&raw, 0.5),
        percentile(&raw, 0.99),
        raw.len()
    );
    Ok(())
}

/// The unread-count query of the cohort's members once it holds `args.history` messages, with
/// each member's cursors somewhere in that history.
async fn unread(
    args: &MessagingArgs,
    scratch: &Scratch,
    namespace: &str,
    callers: &Arc<Callers>,
    members: &Arc<Vec<Uuid>>,
    cohort: &Arc<String>,
    thread: &Arc<String>,
) -> anyhow::Result<()> {
    let mut client = messaging(callers, 0);
    let now = client
        .list_messages(as_member(
            members[0],
            msg::ListMessagesRequest {
                conversation_id: cohort.to_string(),
                page_size: 1,
                ..Default::default()
            },
        )?)
        .await?
        .into_inner()
        .messages
        .first()
        .map_or(0, |m| m.seq);
    let missing = args.history.saturating_sub(now as usize);
    if missing > 0 {
        let (callers, members, cohort, thread) = (
            Arc::clone(callers),
            Arc::clone(members),
            Arc::clone(cohort),
            Arc::clone(thread),
        );
        spread(
            args.callers,
            missing,
            "filling the history",
            move |caller, i| {
                let mut client = messaging(&callers, caller);
                let member = members[i % members.len()];
                let (cohort, thread) = (Arc::clone(&cohort), Arc::clone(&thread));
                async move {
                    let in_thread = if i % 10 == 0 { "" } else { thread.as_str() };
                    post(
                        &mut client,
                        member,
                        &cohort,
                        in_thread,
                        format!("history {i}"),
                    )
                    .await?;
                    Ok(())
                }
            },
        )
        .await?;
    }
    // Each member has read the whole conversation up to a different point.
    let mut last = 0;
    for (i, member) in members.iter().enumerate() {
        let seq = 1 + (args.history as i64 * i as i64) / SEATED as i64;
        last = client
            .mark_read(as_member(
                *member,
                msg::MarkReadRequest {
                    request_id: rid(),
                    conversation_id: cohort.to_string(),
                    thread_id: String::new(),
                    seq,
                },
            )?)
            .await?
            .into_inner()
            .committed
            .map_or(last, |c| c.position);
    }
    // The read model may be behind the history just written: wait until it has every message,
    // and say how long that took.
    let caught_up = Instant::now();
    loop {
        match client
            .get_unread_counts(as_member(
                members[0],
                msg::GetUnreadCountsRequest { min_position: last },
            )?)
            .await
        {
            Ok(_) => break,
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Unavailable
                ) && caught_up.elapsed() < Duration::from_secs(600) => {}
            Err(status) => return Err(status.into()),
        }
    }
    let behind = caught_up.elapsed();
    if behind > Duration::from_millis(100) {
        println!(
            "the messages read model finished the history {:.1}s after its last post",
            behind.as_secs_f64()
        );
    }
    settle(args, scratch, namespace).await?;
    let rounds = 20;
    let mut samples = Vec::with_capacity(rounds * members.len());
    let progress = bar(rounds * members.len(), "unread counts");
    let mut total = 0i64;
    for _ in 0..rounds {
        for member in members.iter() {
            let started = Instant::now();
            let counts = client
                .get_unread_counts(as_member(
                    *member,
                    msg::GetUnreadCountsRequest { min_position: 0 },
                )?)
                .await?
                .into_inner();
            samples.push(started.elapsed());
            total += i64::from(counts.total_messages);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let slow: Vec<usize> = samples
        .iter()
        .enumerate()
        .filter(|(_, took)| **took > Duration::from_millis(10))
        .map(|(n, _)| n)
        .collect();
    samples.sort();
    if !slow.is_empty() {
        println!(
            "unread counts over 10 ms: calls {slow:?} of {}",
            samples.len()
        );
    }
    println!(
        "unread counts: p50={:.2}ms p99={:.2}ms max={:.2}ms (n={}, {} members, {} messages in the cohort, mean {} unread)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
        samples.len(),
        members.len(),
        args.history,
        total / samples.len().max(1) as i64
    );
    Ok(())
}
