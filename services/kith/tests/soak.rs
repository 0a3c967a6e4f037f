//! The soak: `kith up` and two more replicas of it, on a PostgreSQL and a NATS of the test's own,
//! under a steady load of community and cohort commands for `KITH_SOAK_SECONDS` (default 600),
//! while NATS, PostgreSQL and the replicas are killed and restarted at random. Afterwards the
//! logs, the JetStream streams and every projection must agree exactly, and every round of the
//! load must have ended as the rules say. Not in the default test run: `tests/soak.sh` runs it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kith_platform::db::Schema;
use kith_platform::eventlog::EventLog;
use kith_platform::testing::{
    PrivateNats, PrivatePostgres, ServiceProcess, TEST_JWT_SECRET, TestEnv, log_order,
    stream_order, with_token,
};
use kith_proto::cohorts as cpb;
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tokio::sync::{Mutex, RwLock};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");
const REPLICAS: usize = 3;
const WORKERS: usize = 6;
/// Members per round: three get a seat in a cohort of three, three wait.
const MEMBERS: usize = 6;
const CAPACITY: u32 = 3;

/// What happened during the run, printed at the end.
#[derive(Debug, Default)]
struct Tally {
    calls: AtomicU64,
    retries: AtomicU64,
    rounds: AtomicU64,
    /// The longest a single call needed (across its retries) to be answered, in ms.
    longest_ms: AtomicU64,
}

/// The system under test: the servers and the replicas' current addresses.
struct Cluster {
    env: TestEnv,
    database_url: String,
    nats_url: String,
    postgres: std::sync::Mutex<PrivatePostgres>,
    nats: std::sync::Mutex<PrivateNats>,
    replicas: Mutex<Vec<Option<ServiceProcess>>>,
    addrs: RwLock<Vec<SocketAddr>>,
}

impl Cluster {
    fn database_url(&self) -> String {
        self.database_url.clone()
    }

    fn nats_url(&self) -> String {
        self.nats_url.clone()
    }

    async fn spawn_replica(&self) -> ServiceProcess {
        ServiceProcess::spawn_on(
            KITH,
            &["up", "--no-embedded"],
            &self.env,
            &self.database_url(),
            &self.nats_url(),
        )
        .await
    }

    async fn refresh_addrs(&self) {
        let replicas = self.replicas.lock().await;
        *self.addrs.write().await = replicas.iter().flatten().map(|r| r.grpc).collect();
    }
}

fn token(member: Uuid) -> String {
    kith_platform::auth::mint_hs256(TEST_JWT_SECRET.as_bytes(), member, 7200).expect("token")
}

/// Whether a caller should try the same request again (on any replica).
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown
    )
}

/// Calls `call` on a live replica until it answers something other than a retryable failure,
/// as a client with a retry policy would; the request (and so its request id) stays the same.
async fn call<T, F, Fut>(cluster: &Cluster, tally: &Tally, what: &str, mut call: F) -> T
where
    F: FnMut(Channel) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let started = Instant::now();
    tally.calls.fetch_add(1, Ordering::Relaxed);
    loop {
        let addrs = cluster.addrs.read().await.clone();
        let Some(addr) = addrs.get(rand_index(addrs.len())).copied() else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(15))
            .connect_lazy();
        match call(channel).await {
            Ok(answer) => {
                let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                tally.longest_ms.fetch_max(took, Ordering::Relaxed);
                return answer;
            }
            Err(status) if retryable(&status) => {
                assert_ne!(
                    status.code(),
                    Code::Internal,
                    "{what} answered INTERNAL: {status:?}"
                );
                tally.retries.fetch_add(1, Ordering::Relaxed);
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "{what} did not succeed within 5 minutes: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(100 + rand_index(200) as u64)).await;
            }
            Err(status) => panic!("{what} failed: {status:?}"),
        }
    }
}

fn rand_index(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    usize::try_from(Uuid::new_v4().as_u128() % n as u128).unwrap_or(0)
}

fn as_member<T>(member: Uuid, message: T) -> Request<T> {
    with_token(&token(member), message)
}

/// One round of the load, as the rules say it ends: who is seated and who waits in its cohort.
#[derive(Debug, Clone)]
struct Round {
    cohort: Uuid,
    seated: Vec<Uuid>,
    waiting: Vec<Uuid>,
    gone: Vec<Uuid>,
}

/// A community with six members and a cohort of three seats: all six join (three seats, three
/// on the waitlist), the first leaves and the second is banned from the community; the two
/// first in line take their seats.
async fn round(cluster: &Cluster, tally: &Tally, n: u64) -> Round {
    let owner = Uuid::new_v4();
    let rid = |what: &str| format!("soak-{n}-{what}");
    let profile = |who: &str| mpb::ProfileInput {
        display_name: format!("Soak {who} {n}"),
        handle: format!("s{n}{who}"),
        bio: String::new(),
    };
    let created = call(cluster, tally, "create community", |channel| {
        let request = as_member(
            owner,
            mpb::CreateCommunityRequest {
                request_id: rid("community"),
                name: format!("Soak community {n}"),
                description: String::new(),
                founder: Some(profile("owner")),
            },
        );
        async move {
            MembershipServiceClient::new(channel)
                .create_community(request)
                .await
        }
    })
    .await
    .into_inner();
    let community = created.community_id;
    let invitation = call(cluster, tally, "create invitation", |channel| {
        let request = as_member(
            owner,
            mpb::CreateInvitationRequest {
                request_id: rid("invitation"),
                community_id: community.clone(),
                expires_at: Some(kith_platform::wire::timestamp(
                    chrono::Utc::now() + chrono::Duration::hours(3),
                )),
                max_uses: 100,
            },
        );
        async move {
            MembershipServiceClient::new(channel)
                .create_invitation(request)
                .await
        }
    })
    .await
    .into_inner()
    .invitation_id;
    let members: Vec<Uuid> = (0..MEMBERS).map(|_| Uuid::new_v4()).collect();
    let mut version = 0;
    for (i, member) in members.iter().enumerate() {
        let committed = call(cluster, tally, "accept invitation", |channel| {
            let request = as_member(
                *member,
                mpb::AcceptInvitationRequest {
                    request_id: rid(&format!("accept-{i}")),
                    community_id: community.clone(),
                    invitation_id: invitation.clone(),
                    profile: Some(profile(&format!("m{i}"))),
                },
            );
            async move {
                MembershipServiceClient::new(channel)
                    .accept_invitation(request)
                    .await
            }
        })
        .await
        .into_inner()
        .committed
        .expect("committed");
        version = version.max(committed.version);
    }
    let cohort = call(cluster, tally, "create cohort", |channel| {
        let request = as_member(
            owner,
            cpb::CreateCohortRequest {
                request_id: rid("cohort"),
                community_id: community.clone(),
                name: format!("Soak cohort {n}"),
                kind: cpb::CohortKind::Mastermind as i32,
                capacity: Some(CAPACITY),
                time_zone: "Europe/Berlin".into(),
                goal: "hold together".into(),
                community_version: version,
                ..Default::default()
            },
        );
        async move {
            CohortsServiceClient::new(channel)
                .create_cohort(request)
                .await
        }
    })
    .await
    .into_inner()
    .cohort_id;
    call(cluster, tally, "open cohort", |channel| {
        let request = as_member(
            owner,
            cpb::OpenCohortRequest {
                request_id: rid("open"),
                cohort_id: cohort.clone(),
            },
        );
        async move {
            CohortsServiceClient::new(channel)
                .open_cohort(request)
                .await
        }
    })
    .await;
    for (i, member) in members.iter().enumerate() {
        let joined = call(cluster, tally, "join cohort", |channel| {
            let request = as_member(
                *member,
                cpb::JoinCohortRequest {
                    request_id: rid(&format!("join-{i}")),
                    cohort_id: cohort.clone(),
                    community_version: version,
                },
            );
            async move {
                CohortsServiceClient::new(channel)
                    .join_cohort(request)
                    .await
            }
        })
        .await
        .into_inner();
        let expected = if i < CAPACITY as usize {
            cpb::Place::Seat
        } else {
            cpb::Place::Waitlist
        };
        assert_eq!(joined.place, expected as i32, "round {n}: join {i}");
    }
    call(cluster, tally, "leave cohort", |channel| {
        let request = as_member(
            members[0],
            cpb::LeaveCohortRequest {
                request_id: rid("leave"),
                cohort_id: cohort.clone(),
            },
        );
        async move {
            CohortsServiceClient::new(channel)
                .leave_cohort(request)
                .await
        }
    })
    .await;
    call(cluster, tally, "ban member", |channel| {
        let request = as_member(
            owner,
            mpb::BanMemberRequest {
                request_id: rid("ban"),
                community_id: community.clone(),
                member_id: members[1].to_string(),
                reason: String::new(),
            },
        );
        async move {
            MembershipServiceClient::new(channel)
                .ban_member(request)
                .await
        }
    })
    .await;
    tally.rounds.fetch_add(1, Ordering::Relaxed);
    Round {
        cohort: cohort.parse().expect("cohort id"),
        seated: vec![members[2], members[3], members[4]],
        waiting: vec![members[5]],
        gone: vec![members[0], members[1]],
    }
}

/// One fault at a time: it starts, lasts a moment, and is healed.
async fn chaos(
    cluster: Arc<Cluster>,
    stop: Arc<AtomicBool>,
    faults: Arc<Mutex<HashMap<&'static str, u64>>>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(3000 + rand_index(12_000) as u64)).await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        n += 1;
        let down_for = Duration::from_millis(500 + rand_index(7_500) as u64);
        let fault = match rand_index(4) {
            0 => {
                cluster.nats.lock().unwrap().kill();
                tokio::time::sleep(down_for).await;
                let c = Arc::clone(&cluster);
                tokio::task::spawn_blocking(move || c.nats.lock().unwrap().restart())
                    .await
                    .expect("restart NATS");
                "NATS killed and restarted"
            }
            1 => {
                let c = Arc::clone(&cluster);
                tokio::task::spawn_blocking(move || c.postgres.lock().unwrap().kill())
                    .await
                    .expect("kill PostgreSQL");
                tokio::time::sleep(down_for).await;
                let c = Arc::clone(&cluster);
                tokio::task::spawn_blocking(move || c.postgres.lock().unwrap().restart())
                    .await
                    .expect("restart PostgreSQL");
                "PostgreSQL killed and restarted"
            }
            kind => {
                let which = rand_index(REPLICAS);
                let signal = if kind == 2 { "KILL" } else { "TERM" };
                let mut replicas = cluster.replicas.lock().await;
                if let Some(mut replica) = replicas[which].take() {
                    replica.signal(signal);
                    let _ =
                        tokio::time::timeout(Duration::from_secs(30), replica.child.wait()).await;
                }
                drop(replicas);
                cluster.refresh_addrs().await;
                tokio::time::sleep(down_for / 4).await;
                let replica = cluster.spawn_replica().await;
                cluster.replicas.lock().await[which] = Some(replica);
                cluster.refresh_addrs().await;
                if kind == 2 {
                    "a replica SIGKILLed and restarted"
                } else {
                    "a replica SIGTERMed and restarted"
                }
            }
        };
        println!("soak: fault {n}: {fault} (down {down_for:?})");
        *faults.lock().await.entry(fault).or_default() += 1;
    }
}

/// Every table of a projection, as sorted text, for comparing.
async fn dump(pool: &sqlx::PgPool, schema: &str, tables: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for table in tables {
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {schema}.{table} t"
        )))
        .fetch_one(pool)
        .await
        .expect("dump a projection table");
        all.push(format!("{table}:\n{rows}"));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs for minutes; tests/soak.sh runs it"]
async fn soak() {
    let seconds: u64 = std::env::var("KITH_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let env = TestEnv::new().await;
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .expect("PostgreSQL");
    let nats = PrivateNats::start();
    let cluster = Arc::new(Cluster {
        env,
        database_url: postgres.url("kith"),
        nats_url: nats.url(),
        postgres: std::sync::Mutex::new(postgres),
        nats: std::sync::Mutex::new(nats),
        replicas: Mutex::new(Vec::new()),
        addrs: RwLock::new(Vec::new()),
    });
    // `kith up` first (it creates the database and the streams), then two more replicas.
    for _ in 0..REPLICAS {
        let replica = cluster.spawn_replica().await;
        cluster.replicas.lock().await.push(Some(replica));
    }
    cluster.refresh_addrs().await;
    println!(
        "soak: {REPLICAS} x `kith up` on PostgreSQL {} and NATS {}, {WORKERS} clients, {seconds} s",
        cluster.database_url(),
        cluster.nats_url()
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(HashMap::new()));
    let chaos_task = tokio::spawn(chaos(
        Arc::clone(&cluster),
        Arc::clone(&stop),
        Arc::clone(&faults),
    ));
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (cluster, tally, stop, next) = (
                Arc::clone(&cluster),
                Arc::clone(&tally),
                Arc::clone(&stop),
                Arc::clone(&next),
            );
            tokio::spawn(async move {
                let mut rounds = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    rounds.push(round(&cluster, &tally, n).await);
                }
                rounds
            })
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(30)).await;
        println!(
            "soak: {:>4} s: {} rounds, {} calls, {} retried, longest call {} ms",
            started.elapsed().as_secs(),
            tally.rounds.load(Ordering::Relaxed),
            tally.calls.load(Ordering::Relaxed),
            tally.retries.load(Ordering::Relaxed),
            tally.longest_ms.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    chaos_task.await.expect("chaos");
    let mut rounds = Vec::new();
    for worker in workers {
        rounds.extend(worker.await.expect("a load worker"));
    }
    println!(
        "soak: load and faults stopped; {} rounds done",
        rounds.len()
    );
    for (fault, count) in faults.lock().await.iter() {
        println!("soak: {count:>3} x {fault}");
    }

    // Everything settles: each log is on its stream, in order, once.
    let database_url = cluster.database_url();
    let pools: HashMap<&str, sqlx::PgPool> = {
        let mut pools = HashMap::new();
        for service in ["membership", "cohorts"] {
            let pool =
                kith_platform::db::connect(&database_url, &Schema::parse(service).unwrap(), 4)
                    .await
                    .expect("pool");
            pools.insert(service, pool);
        }
        pools
    };
    let js = async_nats::jetstream::new(
        kith_platform::bus::connect(&cluster.nats_url(), "soak")
            .await
            .expect("NATS"),
    );
    let settled = Instant::now();
    for service in ["membership", "cohorts"] {
        let log = EventLog::new(pools[service].clone());
        let stream = cluster.env.args.nats.stream_for(service).name;
        loop {
            let logged = log_order(&log).await;
            let published = stream_order(&js, &stream).await;
            if logged == published {
                println!(
                    "soak: {service}: log and stream {stream} agree: {} events, each once, in log order",
                    logged.len()
                );
                break;
            }
            assert!(
                settled.elapsed() < Duration::from_secs(180),
                "{service}: the stream never caught up with the log ({} logged, {} published)",
                logged.len(),
                published.len()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Every round ended as the rules say, on the live read model.
    let cohorts = &pools["cohorts"];
    for round in &rounds {
        let expected = {
            let mut seated = round.seated.clone();
            seated.sort();
            seated
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let places: Vec<(Uuid, String)> =
                sqlx::query_as("SELECT member_id, place FROM cohort_places WHERE cohort_id = $1")
                    .bind(round.cohort)
                    .fetch_all(cohorts)
                    .await
                    .expect("places");
            let mut seated: Vec<Uuid> = places
                .iter()
                .filter(|(_, place)| place == "seat")
                .map(|(m, _)| *m)
                .collect();
            seated.sort();
            let waiting: Vec<Uuid> = places
                .iter()
                .filter(|(_, place)| place == "waitlist")
                .map(|(m, _)| *m)
                .collect();
            let gone_hold = places.iter().any(|(m, _)| round.gone.contains(m));
            if seated == expected && waiting == round.waiting && !gone_hold {
                break;
            }
            assert!(
                seated.len() <= CAPACITY as usize,
                "cohort {} overfilled: {places:?}",
                round.cohort
            );
            assert!(
                Instant::now() < deadline,
                "cohort {} did not end as the rules say: {places:?}, expected seated {expected:?}, waiting {:?}",
                round.cohort,
                round.waiting
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "soak: all {} cohorts ended as the rules say (3 seated, 1 waiting, the leaver and the banned member gone)",
        rounds.len()
    );
    // The releases of banned members were appended after the streams were compared; compare the
    // cohorts log and stream once more.
    {
        let log = EventLog::new(cohorts.clone());
        let stream = cluster.env.args.nats.stream_for("cohorts").name;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if log_order(&log).await == stream_order(&js, &stream).await {
                break;
            }
            assert!(Instant::now() < deadline, "cohorts stream behind its log");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Every projection equals its rebuild from scratch (own log, or the other service's stream).
    let membership_projections = kith_membership::projections(&pools["membership"]);
    let cohort_projections = kith_cohorts::projections(cohorts);
    let bus_projections = kith_cohorts::bus_projections(&cluster.env.args.nats);
    let mut live = Vec::new();
    for projection in &membership_projections {
        live.push(("membership", projection.name(), projection.tables()));
    }
    for projection in &cohort_projections {
        live.push(("cohorts", projection.name(), projection.tables()));
    }
    for (_, projection) in &bus_projections {
        live.push(("cohorts", projection.name(), projection.tables()));
    }
    let mut before = Vec::new();
    for (service, _, tables) in &live {
        before.push(dump(&pools[service], service, tables).await);
    }
    for service in ["membership", "cohorts"] {
        let output = tokio::process::Command::new(KITH)
            .args(["rebuild", "--service", service])
            .env("DATABASE_URL", &database_url)
            .env("NATS_URL", cluster.nats_url())
            .env(
                "KITH_NATS_NAMESPACE",
                cluster
                    .env
                    .args
                    .nats
                    .nats_namespace
                    .as_deref()
                    .unwrap_or_default(),
            )
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("kith rebuild");
        assert!(
            output.status.success(),
            "kith rebuild --service {service}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            println!("soak: {line}");
        }
    }
    for ((service, name, tables), was) in live.iter().zip(&before) {
        let now = dump(&pools[service], service, tables).await;
        assert_eq!(
            &now, was,
            "{service}.{name}: the live projection differs from its rebuild"
        );
        let rows: usize = now.iter().map(|t| t.lines().count() - 1).sum();
        println!("soak: {service}.{name}: live = rebuilt ({rows} rows)");
    }
    println!(
        "soak: passed: {} rounds, {} calls, {} retried, longest call {} ms, {:.0} s",
        rounds.len(),
        tally.calls.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
        tally.longest_ms.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let mut replicas = cluster.replicas.lock().await;
    for replica in replicas.iter_mut().flatten() {
        replica.signal("TERM");
        let _ = tokio::time::timeout(Duration::from_secs(30), replica.child.wait()).await;
    }
}
