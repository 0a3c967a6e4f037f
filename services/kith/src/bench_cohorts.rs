//! `kith bench cohorts`: the cohorts service measured over real gRPC in one process with
//! membership, on a scratch database and a scratch NATS namespace, beside raw PostgreSQL commits
//! and raw NATS delivery measured in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use kith_platform::config::{AuthArgs, DatabaseArgs, NatsArgs, ServiceArgs};
use kith_platform::db::{self, Schema};
use kith_platform::runtime::{self, Runtime};
use kith_proto::cohorts as pb;
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::bench::{RAW_TABLE, Scratch, in_scratch, raw_rate, redact, spinner};

#[derive(Debug, clap::Args)]
pub(crate) struct CohortsArgs {
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
    /// Joins per measurement (each by a different community member).
    #[arg(long, default_value_t = 6000)]
    joins: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 32)]
    callers: usize,
    /// Cohorts the uncontended joins spread over.
    #[arg(long, default_value_t = 1000)]
    cohorts: usize,
    /// Membership events timed through to the cohort roster.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// Only the latency from a membership command to cohorts (no join rates).
    #[arg(long)]
    latency_only: bool,
}

impl CohortsArgs {
    /// The latency measurement alone, with `samples` members, for `kith bench projections`.
    pub(crate) fn latency(database_url: &str, nats_url: &str, samples: usize) -> Self {
        Self {
            database_url: database_url.to_owned(),
            nats_url: nats_url.to_owned(),
            joins: samples,
            callers: 8,
            cohorts: 1,
            samples,
            latency_only: true,
        }
    }
}

pub(crate) const SECRET: &str = "kith-bench-secret";

pub(crate) struct Callers {
    channels: Vec<Channel>,
}

impl Callers {
    pub(crate) async fn connect(addr: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let mut channels = Vec::new();
        for _ in 0..count.div_ceil(8).max(1) {
            channels.push(
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?,
            );
        }
        Ok(Self { channels })
    }

    /// The channel of `caller` (callers share one per eight).
    pub(crate) fn channel(&self, caller: usize) -> Channel {
        self.channels[caller % self.channels.len()].clone()
    }

    pub(crate) fn cohorts(&self, caller: usize) -> CohortsServiceClient<Channel> {
        CohortsServiceClient::new(self.channels[caller % self.channels.len()].clone())
    }

    pub(crate) fn membership(&self, caller: usize) -> MembershipServiceClient<Channel> {
        MembershipServiceClient::new(self.channels[caller % self.channels.len()].clone())
    }
}

pub(crate) fn as_member<T>(member: Uuid, message: T) -> anyhow::Result<Request<T>> {
    let token = kith_platform::auth::mint_hs256(SECRET.as_bytes(), member, 3600)?;
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

pub(crate) fn rid() -> String {
    Uuid::new_v4().to_string()
}

pub(crate) fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!("{what} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Runs `total` operations over `callers` concurrent loops (operation `i` by caller
/// `i % callers`); returns operations per second.
pub(crate) async fn spread<F, Fut>(
    callers: usize,
    total: usize,
    what: &str,
    op: F,
) -> anyhow::Result<f64>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let progress = bar(total, what);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for caller in 0..callers {
        let (op, progress) = (Arc::clone(&op), progress.clone());
        tasks.push(tokio::spawn(async move {
            for i in (caller..total).step_by(callers) {
                op(caller, i).await?;
                progress.inc(1);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    progress.finish_and_clear();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted
        .get(index)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

pub(crate) async fn run(args: CohortsArgs) -> anyhow::Result<()> {
    if args.callers == 0 || args.callers > 256 {
        anyhow::bail!("--callers must be 1 to 256");
    }
    if args.joins == 0 || args.cohorts == 0 || args.samples == 0 {
        anyhow::bail!("--joins, --cohorts and --samples must be positive");
    }
    db::ensure_database(&args.database_url).await?;
    in_scratch(
        &args.database_url,
        Some(&args.nats_url),
        async |scratch, namespace| measure(&args, scratch, namespace).await,
    )
    .await
}

/// The services' arguments for a bench on `scratch` under the NATS `namespace`.
pub(crate) fn bench_args(scratch: &Scratch, nats_url: &str, namespace: &str) -> ServiceArgs {
    ServiceArgs {
        database: DatabaseArgs {
            database_url: scratch.url.clone(),
            database_max_connections: 16,
        },
        nats: NatsArgs {
            nats_url: nats_url.to_owned(),
            stream_replicas: 1,
            duplicate_window_secs: 120,
            nats_namespace: Some(namespace.to_owned()),
        },
        auth: AuthArgs {
            jwt_secret: Some(SECRET.parse().unwrap_or_else(|never| match never {})),
            jwt_public_key_file: None,
            jwt_jwks_file: None,
            jwt_issuer: Vec::new(),
            jwt_audience: Vec::new(),
            insecure_dev_auth: false,
        },
        sealing: Default::default(),
    }
}

/// The services of a bench, served on a free local port in this process.
pub(crate) struct Served {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<kith_platform::Result<()>>,
}

impl Served {
    /// Serves `router` on `runtime`; returns the address once it listens.
    pub(crate) async fn start(
        runtime: Runtime,
        router: kith_platform::grpc::Router,
    ) -> anyhow::Result<(SocketAddr, Self)> {
        let shutdown = CancellationToken::new();
        let (ready, addr) = tokio::sync::oneshot::channel();
        let task = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                runtime::serve(
                    &runtime,
                    "127.0.0.1:0".parse().expect("a socket address"),
                    router,
                    &[],
                    shutdown,
                    |addr| {
                        let _ = ready.send(addr);
                    },
                )
                .await
            })
        };
        let addr = addr.await.context("the server did not start")?;
        Ok((addr, Self { shutdown, task }))
    }

    /// Drains calls in flight and stops the services.
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

async fn measure(args: &CohortsArgs, scratch: &Scratch, namespace: &str) -> anyhow::Result<()> {
    let runtime = Runtime::connect(bench_args(scratch, &args.nats_url, namespace)).await?;
    let membership = kith_membership::start(&runtime).await?;
    let cohorts = kith_cohorts::start(&runtime).await?;
    let router = kith_platform::grpc::server()
        .add_service(membership.server)
        .add_service(cohorts.server);
    let (addr, server) = Served::start(runtime, router).await?;
    if !args.latency_only {
        println!(
            "kith bench cohorts: {} joins per measurement by {} callers over gRPC, on {} and {}",
            args.joins,
            args.callers,
            redact(&args.database_url),
            args.nats_url
        );
    }
    let outcome = scenarios(args, addr, scratch).await;
    server.stop().await?;
    outcome
}

async fn scenarios(args: &CohortsArgs, addr: SocketAddr, scratch: &Scratch) -> anyhow::Result<()> {
    let callers = Arc::new(Callers::connect(addr, args.callers).await?);
    let owner = Uuid::new_v4();
    let (community, members, version) = community(&callers, owner, args).await?;
    let community = Arc::new(community);
    let members = Arc::new(members);

    // One cohort of 12, every join contending for it.
    let contended = open_cohort(&callers, owner, &community, version).await?;
    if args.latency_only {
        let mut client = callers.cohorts(0);
        for member in members.iter().take(args.samples) {
            join(&mut client, *member, contended.clone()).await?;
        }
        return latency(
            args, &callers, owner, &community, &members, &contended, scratch,
        )
        .await;
    }
    let rate = {
        let (callers, members, cohort) = (
            Arc::clone(&callers),
            Arc::clone(&members),
            contended.clone(),
        );
        spread(
            args.callers,
            args.joins,
            "contended joins",
            move |caller, i| {
                let mut client = callers.cohorts(caller);
                let (member, cohort) = (members[i], cohort.clone());
                async move { join(&mut client, member, cohort).await }
            },
        )
        .await?
    };
    println!(
        "contended:   joins/s={rate:.0}  (one cohort of 12 seats, {} callers; 12 seated, the rest waitlisted)",
        args.callers
    );

    // Many cohorts, each join on a different one from the last.
    let spread_over = {
        let bar = spinner(format!("creating {} cohorts", args.cohorts));
        let ids = Arc::new(tokio::sync::Mutex::new(vec![String::new(); args.cohorts]));
        {
            let (callers, community, ids) = (
                Arc::clone(&callers),
                Arc::clone(&community),
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
        let (callers, members, cohorts) = (
            Arc::clone(&callers),
            Arc::clone(&members),
            Arc::clone(&spread_over),
        );
        spread(
            args.callers,
            args.joins,
            "uncontended joins",
            move |caller, i| {
                let mut client = callers.cohorts(caller);
                let (member, cohort) = (members[i], cohorts[i % cohorts.len()].clone());
                async move { join(&mut client, member, cohort).await }
            },
        )
        .await?
    };
    println!(
        "uncontended: joins/s={rate:.0}  ({} cohorts, {} callers)",
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

    latency(
        args, &callers, owner, &community, &members, &contended, scratch,
    )
    .await?;
    Ok(())
}

/// A community with `args.joins` members besides its owner; returns its id, the members and the
/// community stream's version after the last join.
pub(crate) async fn community(
    callers: &Arc<Callers>,
    owner: Uuid,
    args: &CohortsArgs,
) -> anyhow::Result<(String, Vec<Uuid>, i64)> {
    community_of(callers, owner, args.callers, args.joins).await
}

/// A community with `size` members besides its owner, joined by `concurrency` callers.
pub(crate) async fn community_of(
    callers: &Arc<Callers>,
    owner: Uuid,
    concurrency: usize,
    size: usize,
) -> anyhow::Result<(String, Vec<Uuid>, i64)> {
    let mut client = callers.membership(0);
    let community = client
        .create_community(as_member(
            owner,
            mpb::CreateCommunityRequest {
                request_id: rid(),
                name: "Bench community".into(),
                description: String::new(),
                founder: Some(profile()),
            },
        )?)
        .await?
        .into_inner()
        .community_id;
    let invitation = client
        .create_invitation(as_member(
            owner,
            mpb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(kith_platform::wire::timestamp(
                    chrono::Utc::now() + chrono::Duration::days(1),
                )),
                max_uses: 10_000,
            },
        )?)
        .await?
        .into_inner()
        .invitation_id;
    let members: Arc<Vec<Uuid>> = Arc::new((0..size).map(|_| Uuid::new_v4()).collect());
    let version = Arc::new(std::sync::atomic::AtomicI64::new(0));
    {
        let (callers, members, version) = (
            Arc::clone(callers),
            Arc::clone(&members),
            Arc::clone(&version),
        );
        let (community, invitation) = (community.clone(), invitation.clone());
        spread(concurrency, size, "community members", move |caller, i| {
            let mut client = callers.membership(caller);
            let (member, community, invitation, version) = (
                members[i],
                community.clone(),
                invitation.clone(),
                Arc::clone(&version),
            );
            async move {
                let reply = client
                    .accept_invitation(as_member(
                        member,
                        mpb::AcceptInvitationRequest {
                            request_id: rid(),
                            community_id: community,
                            invitation_id: invitation,
                            profile: Some(profile()),
                        },
                    )?)
                    .await?
                    .into_inner();
                let at = reply.committed.map_or(0, |c| c.version);
                version.fetch_max(at, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .await?;
    }
    let version = version.load(std::sync::atomic::Ordering::Relaxed);
    Ok((community, members.to_vec(), version))
}

fn profile() -> mpb::ProfileInput {
    let handle = format!("b{}", &Uuid::new_v4().simple().to_string()[..12]);
    mpb::ProfileInput {
        display_name: handle.clone(),
        handle,
        bio: String::new(),
    }
}

async fn open_cohort(
    callers: &Callers,
    owner: Uuid,
    community: &str,
    community_version: i64,
) -> anyhow::Result<String> {
    open_cohort_by(callers, 0, owner, community, community_version, 12).await
}

pub(crate) async fn open_cohort_by(
    callers: &Callers,
    caller: usize,
    owner: Uuid,
    community: &str,
    community_version: i64,
    capacity: u32,
) -> anyhow::Result<String> {
    let mut client = callers.cohorts(caller);
    let cohort = client
        .create_cohort(as_member(
            owner,
            pb::CreateCohortRequest {
                request_id: rid(),
                community_id: community.into(),
                name: "Bench cohort".into(),
                kind: pb::CohortKind::Mastermind as i32,
                capacity: Some(capacity),
                community_version,
                ..Default::default()
            },
        )?)
        .await?
        .into_inner()
        .cohort_id;
    client
        .open_cohort(as_member(
            owner,
            pb::OpenCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        )?)
        .await?;
    Ok(cohort)
}

pub(crate) async fn join(
    client: &mut CohortsServiceClient<Channel>,
    member: Uuid,
    cohort: String,
) -> anyhow::Result<()> {
    client
        .join_cohort(as_member(
            member,
            pb::JoinCohortRequest {
                request_id: rid(),
                cohort_id: cohort,
                community_version: 0,
            },
        )?)
        .await?;
    Ok(())
}

/// From a membership event (a removal committed in membership) to the cohort roster no longer
/// listing the member, one at a time; beside raw NATS publish-to-delivery on the same server.
async fn latency(
    args: &CohortsArgs,
    callers: &Callers,
    owner: Uuid,
    community: &str,
    members: &[Uuid],
    cohort: &str,
    scratch: &Scratch,
) -> anyhow::Result<()> {
    let schema = Schema::parse("cohorts")?;
    let pool = db::connect(&scratch.url, &schema, 2).await?;
    let cohort_id: Uuid = cohort.parse()?;
    let mut client = callers.membership(0);
    let mut samples = Vec::new();
    let mut to_projection = Vec::new();
    let progress = bar(
        args.samples.min(members.len()),
        "membership event -> roster",
    );
    for member in members.iter().take(args.samples) {
        client
            .remove_member(as_member(
                owner,
                mpb::RemoveMemberRequest {
                    request_id: rid(),
                    community_id: community.into(),
                    member_id: member.to_string(),
                    reason: "bench".into(),
                },
            )?)
            .await?;
        let committed = Instant::now();
        let deadline = committed + Duration::from_secs(30);
        let mut projected = None;
        loop {
            // Whether cohorts' projection of membership's events has the removal yet, and
            // whether the roster still lists the member.
            let (seen, present): (bool, bool) = sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM community_members
                                WHERE member_id = $2 AND status <> 'active'),
                        EXISTS (SELECT 1 FROM cohort_places WHERE cohort_id = $1 AND member_id = $2)",
            )
            .bind(cohort_id)
            .bind(member)
            .fetch_one(&pool)
            .await?;
            if seen && projected.is_none() {
                projected = Some(committed.elapsed());
            }
            if !present {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("member {member} was still on the roster 30 s after their removal");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        to_projection.push(projected.unwrap_or_else(|| committed.elapsed()));
        samples.push(committed.elapsed());
        progress.inc(1);
    }
    progress.finish_and_clear();
    pool.close().await;
    samples.sort();
    to_projection.sort();
    let raw = raw_nats(&args.nats_url, args.samples).await?;
    println!(
        "membership command OK -> cohorts' projection of it: p50={:.1}ms p99={:.1}ms (n={}; through the relay, NATS and the consumer)",
        percentile(&to_projection, 0.5),
        percentile(&to_projection, 0.99),
        to_projection.len()
    );
    println!(
        "membership event -> cohort roster: p50={:.1}ms p99={:.1}ms (n={}; the removal's reply to the roster row gone)",
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

pub(crate) async fn raw_nats(url: &str, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let client = async_nats::connect(url).await?;
    let subject = format!("kithbench.{}", Uuid::new_v4().simple());
    let mut subscriber = client.subscribe(subject.clone()).await?;
    client.flush().await?;
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sent = Instant::now();
        client.publish(subject.clone(), "x".into()).await?;
        client.flush().await?;
        subscriber
            .next()
            .await
            .context("the NATS subscription ended")?;
        out.push(sent.elapsed());
    }
    out.sort();
    Ok(out)
}
