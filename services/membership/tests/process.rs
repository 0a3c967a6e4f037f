//! The membership binary as it runs in Kubernetes: several processes on one database and one
//! NATS, killed and stopped the way a cluster does it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kith_platform::eventlog::EventLog;
use kith_platform::testing::{
    PrivatePostgres, ServiceProcess, TEST_JWT_SECRET, TestEnv, eventually, log_order, stream_order,
    with_token,
};
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use kith_proto::membership::{CreateCommunityRequest, ProfileInput};
use tokio::sync::Mutex;
use tonic::Request;
use uuid::Uuid;

const MEMBERSHIP: &str = env!("CARGO_BIN_EXE_kith-membership");

fn create(member: Uuid, n: usize) -> Request<CreateCommunityRequest> {
    let token =
        kith_platform::auth::mint_hs256(TEST_JWT_SECRET.as_bytes(), member, 600).expect("token");
    with_token(
        &token,
        CreateCommunityRequest {
            request_id: format!("create-{n}"),
            name: format!("Community {n}"),
            description: String::new(),
            founder: Some(ProfileInput {
                display_name: "Founder".into(),
                handle: format!("founder{n}"),
                bio: String::new(),
            }),
        },
    )
}

fn is_leader(page: &str) -> bool {
    ServiceProcess::series_value(page, r#"kith_relay_leader{service="membership"}"#) == Some(1.0)
}

async fn log_of(env: &TestEnv) -> EventLog {
    let schema = kith_platform::db::Schema::parse("membership").expect("schema");
    let pool = kith_platform::db::connect(&env.db.url, &schema, 2)
        .await
        .expect("pool");
    EventLog::new(pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_other_process_takes_the_relay_over_within_five_seconds_when_the_leader_is_killed() {
    let env = TestEnv::new().await;
    let first = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    let second = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    let (leader, follower) = eventually(Duration::from_secs(10), "a relay leader", || {
        let (first, second) = (&first, &second);
        async move {
            match (
                is_leader(&first.scrape().await),
                is_leader(&second.scrape().await),
            ) {
                (true, false) => Some((first, second)),
                (false, true) => Some((second, first)),
                _ => None,
            }
        }
    })
    .await;
    let leader_pid = leader.child.id();

    // A steady stream of appends through the process that survives.
    let member = Uuid::new_v4();
    let mut client = MembershipServiceClient::connect(format!("http://{}", follower.grpc))
        .await
        .expect("connect");
    let mut n = 0;
    for _ in 0..40 {
        client
            .create_community(create(member, n))
            .await
            .expect("append");
        n += 1;
    }
    // Another caller keeps appending across the kill, so the leader dies mid-stream.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (stop, addr) = (Arc::clone(&stop), follower.grpc);
        tokio::spawn(async move {
            let mut client = MembershipServiceClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let member = Uuid::new_v4();
            let mut appended = 0usize;
            while !stop.load(Ordering::Relaxed) {
                client
                    .create_community(create(member, 1_000_000 + appended))
                    .await
                    .expect("background append");
                appended += 1;
            }
            appended
        })
    };
    let log = log_of(&env).await;
    eventually(
        Duration::from_secs(10),
        "the background appends to start",
        || {
            let log = &log;
            async move {
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
                    .fetch_one(log.pool())
                    .await
                    .ok()?;
                (count > 100).then_some(())
            }
        },
    )
    .await;
    let killed_at = Instant::now();
    leader.signal("KILL");
    // The first append after the kill: the takeover is done when JetStream has it.
    let after = client
        .create_community(create(member, n))
        .await
        .expect("append after the kill")
        .into_inner()
        .committed
        .expect("committed")
        .position;
    n += 1;
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let stream = env.args.nats.stream_for("membership").name;
    let event_after: Uuid = sqlx::query_scalar("SELECT event_id FROM events WHERE position = $1")
        .bind(after)
        .fetch_one(log.pool())
        .await
        .expect("the event");
    eventually(Duration::from_secs(10), "the new leader to publish", || {
        let (js, stream) = (&js, &stream);
        async move {
            stream_order(js, stream)
                .await
                .iter()
                .any(|(id, _, _)| *id == event_after)
                .then_some(())
        }
    })
    .await;
    let takeover = killed_at.elapsed();
    assert!(
        takeover <= Duration::from_secs(5),
        "the relay was taken over after {takeover:?}"
    );
    assert!(is_leader(&follower.scrape().await));
    assert_ne!(follower.child.id(), leader_pid);

    for _ in 0..20 {
        client
            .create_community(create(member, n))
            .await
            .expect("append");
        n += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let background = background.await.expect("background appender");
    // Each community is two events. The tail shows only what every older transaction of the
    // server (other tests' too) has settled, so wait for it rather than read it once.
    let count = (n + background) * 2;
    let expected = eventually(Duration::from_secs(10), "the whole log", || {
        let log = &log;
        async move {
            let all = log_order(log).await;
            (all.len() == count).then_some(all)
        }
    })
    .await;
    eventually(Duration::from_secs(10), "every event on the bus", || {
        let (js, stream, expected) = (&js, &stream, &expected);
        async move { (stream_order(js, stream).await.len() >= expected.len()).then_some(()) }
    })
    .await;
    assert_eq!(
        stream_order(&js, &stream).await,
        expected,
        "JetStream holds every event exactly once, in log order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_keeps_every_acknowledged_write_and_exits_in_its_grace_period() {
    let env = TestEnv::new().await;
    let mut process = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for caller in 0..16 {
        let (acknowledged, stop, addr) =
            (Arc::clone(&acknowledged), Arc::clone(&stop), process.grpc);
        callers.push(tokio::spawn(async move {
            let Ok(mut client) = MembershipServiceClient::connect(format!("http://{addr}")).await
            else {
                return;
            };
            let member = Uuid::new_v4();
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match client
                    .create_community(create(member, caller * 100_000 + n))
                    .await
                {
                    Ok(reply) => acknowledged
                        .lock()
                        .await
                        .push(reply.into_inner().community_id),
                    // Refused or cut off while stopping: not acknowledged, so not promised.
                    Err(_) => return,
                }
            }
        }));
    }
    eventually(Duration::from_secs(20), "some load", || {
        let acknowledged = Arc::clone(&acknowledged);
        async move { (acknowledged.lock().await.len() >= 200).then_some(()) }
    })
    .await;
    let signalled = Instant::now();
    process.signal("TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), process.child.wait())
        .await
        .expect("the process exits within its 30 s grace period")
        .expect("exit status");
    assert!(exit.success(), "exit status {exit:?}");
    let stopped_in = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }

    let log = log_of(&env).await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE event_type = 'kith.membership.v1.CommunityCreated'",
    )
    .fetch_all(log.pool())
    .await
    .expect("created communities");
    let acknowledged = acknowledged.lock().await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged communities are not in the log (stopped in {stopped_in:?})",
        missing.len(),
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_stopped_with_sigterm_hands_the_relay_over_at_once() {
    let env = TestEnv::new().await;
    let mut first = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    eventually(Duration::from_secs(10), "the first process to lead", || {
        let first = &first;
        async move { is_leader(&first.scrape().await).then_some(()) }
    })
    .await;
    let second = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    assert!(!is_leader(&second.scrape().await));
    let stopped_at = Instant::now();
    first.signal("TERM");
    let exit = tokio::time::timeout(Duration::from_secs(30), first.child.wait())
        .await
        .expect("exits within its grace period")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    eventually(Duration::from_secs(5), "the second process to lead", || {
        let second = &second;
        async move { is_leader(&second.scrape().await).then_some(()) }
    })
    .await;
    let handover = stopped_at.elapsed();
    // The lock is released on the way out, not when PostgreSQL notices a dead connection; the
    // follower campaigns every half second.
    assert!(
        handover < Duration::from_secs(3),
        "handover took {handover:?}"
    );
}

async fn readiness(addr: std::net::SocketAddr, service: &str) -> Option<i32> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut health = HealthClient::new(channel);
    health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|reply| reply.into_inner().status)
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_unavailable_within_seconds_and_the_service_recovers_by_itself() {
    use tonic_types::StatusExt;
    let env = TestEnv::new().await;
    let mut postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .expect("a PostgreSQL of the test's own");
    let process = ServiceProcess::spawn_on(
        MEMBERSHIP,
        &[],
        &env,
        &postgres.url("kith"),
        &kith_platform::testing::nats_url(),
    )
    .await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", process.grpc))
        .await
        .expect("connect");
    let member = Uuid::new_v4();
    client
        .create_community(create(member, 0))
        .await
        .expect("works while the database is up");

    // The database dies under load.
    postgres.kill();
    let started = Instant::now();
    let calls = (1..=20).map(|n| {
        let mut client = client.clone();
        async move { client.create_community(create(member, n)).await }
    });
    let answers = futures::future::join_all(calls).await;
    let took = started.elapsed();
    for answer in answers {
        let status = answer.expect_err("nothing can commit without the database");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        let reason = status.get_details_error_info().map(|info| info.reason);
        assert_eq!(
            reason.as_deref(),
            Some("DATABASE_UNAVAILABLE"),
            "{status:?}"
        );
    }
    println!("database killed: 20 calls answered UNAVAILABLE within {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "callers learn of the outage within seconds, not after a 10 s wait: {took:?}"
    );
    // Not ready (take it out of the load balancer), but alive (a restart would not help).
    eventually(
        Duration::from_secs(15),
        "readiness to report the outage",
        || async {
            (readiness(process.grpc, "readiness").await == Some(NOT_SERVING)).then_some(())
        },
    )
    .await;
    assert_eq!(readiness(process.grpc, "").await, Some(SERVING));

    postgres.restart();
    eventually(
        Duration::from_secs(30),
        "commands to work again once the database is back",
        || {
            let mut client = client.clone();
            async move { client.create_community(create(member, 100)).await.ok() }
        },
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "readiness to come back",
        || async { (readiness(process.grpc, "readiness").await == Some(SERVING)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_started_together_on_a_new_database_all_start() {
    let env = TestEnv::new().await;
    let postgres = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .expect("a PostgreSQL of the test's own");
    // Twice, on two new databases: a race has two chances to show.
    let nats = kith_platform::testing::nats_url();
    for database in ["kith_a", "kith_b"] {
        let url = postgres.url(database);
        let starting = (0..3).map(|_| ServiceProcess::spawn_on(MEMBERSHIP, &[], &env, &url, &nats));
        let replicas = futures::future::join_all(starting).await;
        for replica in &replicas {
            assert_eq!(readiness(replica.grpc, "").await, Some(SERVING));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_leader_whose_network_goes_silent_is_replaced_within_fifteen_seconds() {
    let env = TestEnv::new().await;
    let options = kith_platform::db::parse_url(&env.db.url).expect("url");
    let server: std::net::SocketAddr = format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .expect("a numeric PostgreSQL address");
    let proxy = kith_platform::testing::SilentProxy::start(server).await;
    let nats = kith_platform::testing::nats_url();
    // The leader reaches PostgreSQL through a path that will fall silent.
    let far = ServiceProcess::spawn_on(
        MEMBERSHIP,
        &[],
        &env,
        &proxy.rewrite_url(&env.db.url, server),
        &nats,
    )
    .await;
    eventually(Duration::from_secs(10), "the first process to lead", || {
        let far = &far;
        async move { is_leader(&far.scrape().await).then_some(()) }
    })
    .await;
    let near = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    assert!(!is_leader(&near.scrape().await));

    // The leader's host vanishes from the network: nothing arrives, nothing is closed.
    proxy.silence();
    let silenced = Instant::now();
    let mut client = MembershipServiceClient::connect(format!("http://{}", near.grpc))
        .await
        .expect("connect");
    let member = Uuid::new_v4();
    let last = client
        .create_community(create(member, 0))
        .await
        .expect("the healthy replica takes commands")
        .into_inner()
        .committed
        .expect("committed")
        .position;
    let log = log_of(&env).await;
    let event: Uuid = sqlx::query_scalar("SELECT event_id FROM events WHERE position = $1")
        .bind(last)
        .fetch_one(log.pool())
        .await
        .expect("the event");
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let stream = env.args.nats.stream_for("membership").name;
    eventually(
        Duration::from_secs(20),
        "the other replica to relay",
        || {
            let (js, stream) = (&js, &stream);
            async move {
                stream_order(js, stream)
                    .await
                    .iter()
                    .any(|(id, _, _)| *id == event)
                    .then_some(())
            }
        },
    )
    .await;
    let takeover = silenced.elapsed();
    println!("silent relay leader: the other replica published after {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(15),
        "the relay was taken over after {takeover:?}"
    );
    assert!(is_leader(&near.scrape().await));
    assert!(
        !is_leader(&far.scrape().await),
        "the silent replica stopped leading"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_lag_counts_every_unpublished_event_while_nats_is_down_and_falls_back_after() {
    let env = TestEnv::new().await;
    let mut nats = kith_platform::testing::PrivateNats::start();
    let process = ServiceProcess::spawn_on(MEMBERSHIP, &[], &env, &env.db.url, &nats.url()).await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", process.grpc))
        .await
        .expect("connect");
    let member = Uuid::new_v4();
    let lag = |page: &str| {
        ServiceProcess::series_value(page, r#"kith_relay_lag_events{service="membership"}"#)
    };
    let lag_reaches = |want: f64, what: &'static str| {
        let process = &process;
        eventually(Duration::from_secs(20), what, move || async move {
            let seen = lag(&process.scrape().await);
            (seen == Some(want)).then_some(())
        })
    };
    for n in 0..3 {
        client
            .create_community(create(member, n))
            .await
            .expect("create");
    }
    // Published: the stream holds their six events.
    let js = async_nats::jetstream::new(
        async_nats::connect(nats.url())
            .await
            .expect("connect to NATS"),
    );
    let stream = env.args.nats.stream_for("membership").name;
    eventually(Duration::from_secs(20), "six events in the stream", || {
        let (js, stream) = (&js, &stream);
        async move {
            let mut stream = js.get_stream(stream).await.ok()?;
            (stream.info().await.ok()?.state.last_sequence == 6).then_some(())
        }
    })
    .await;
    lag_reaches(0.0, "nothing left to publish").await;

    // NATS goes away; commands go on and their events wait in the log.
    nats.kill();
    for n in 3..8 {
        client
            .create_community(create(member, n))
            .await
            .expect("create while NATS is down");
    }
    // Five communities, two events each: all of them unpublished, not the last batch's size.
    lag_reaches(10.0, "the unpublished events counted").await;

    nats.restart();
    lag_reaches(0.0, "published once NATS is back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_on_a_follower_wakes_the_leaders_relay_at_once() {
    let env = TestEnv::new().await;
    let first = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    let second = ServiceProcess::spawn(MEMBERSHIP, &[], &env).await;
    let follower = eventually(Duration::from_secs(10), "a relay leader", || {
        let (first, second) = (&first, &second);
        async move {
            match (
                is_leader(&first.scrape().await),
                is_leader(&second.scrape().await),
            ) {
                (true, false) => Some(second),
                (false, true) => Some(first),
                _ => None,
            }
        }
    })
    .await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", follower.grpc))
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let stream = env.args.nats.stream_for("membership").name;
    let member = Uuid::new_v4();
    // The leader's relay polls an idle log only every few seconds; an append elsewhere announces
    // itself, so each event is in the stream in a small fraction of a second.
    let mut slowest = Duration::ZERO;
    for n in 0..10 {
        client
            .create_community(create(member, n))
            .await
            .expect("create");
        let committed = Instant::now();
        let want = 2 * (n as u64 + 1);
        eventually(Duration::from_secs(5), "the events in the stream", || {
            let (js, stream) = (&js, &stream);
            async move {
                let mut stream = js.get_stream(stream).await.ok()?;
                (stream.info().await.ok()?.state.last_sequence >= want).then_some(())
            }
        })
        .await;
        slowest = slowest.max(committed.elapsed());
    }
    println!("slowest of 10 appends on the follower to reach the stream: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(600),
        "woken by a poll, not by the announcement: {slowest:?}"
    );
}
