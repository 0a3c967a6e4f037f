//! Leadership: a leader that can no longer confirm its lock stops at once, and one whose host
//! vanishes (its connections silent, never closed) is replaced within seconds, not hours.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kith_platform::db::{self, Schema};
use kith_platform::leader::{
    CAMPAIGN_EVERY, HEARTBEAT, HEARTBEAT_TIMEOUT, LeaderLock, SESSION_IDLE_TIMEOUT,
};
use kith_platform::testing::{SilentProxy, TestDatabase};
use tokio_util::sync::CancellationToken;

use crate::helpers::SCHEMA;

const KEY: &str = "svc.test-leadership";

fn server_of(url: &str) -> SocketAddr {
    let options = db::parse_url(url).unwrap();
    format!("{}:{}", options.get_host(), options.get_port())
        .parse()
        .expect("a numeric PostgreSQL address")
}

async fn pool_at(url: &str) -> sqlx::PgPool {
    db::connect(url, &Schema::parse(SCHEMA).unwrap(), 2)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connections_go_silent_stops_and_is_replaced_within_fifteen_seconds() {
    let db = TestDatabase::create().await;
    db.pool(SCHEMA, &[]).await;
    let server = server_of(&db.url);
    let proxy = SilentProxy::start(server).await;
    let far = pool_at(&proxy.rewrite_url(&db.url, server)).await;
    let near = pool_at(&db.url).await;
    let shutdown = CancellationToken::new();

    let leader = LeaderLock::new(&far, KEY)
        .campaign(&shutdown)
        .await
        .expect("the first replica leads");
    let follower = {
        let lock = LeaderLock::new(&near, KEY);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { lock.campaign(&shutdown).await })
    };
    // Let the follower ask (and be refused) at least once while the leader is alive.
    tokio::time::sleep(CAMPAIGN_EVERY * 2).await;
    assert!(!follower.is_finished(), "the lock has one holder");

    // The leader's host vanishes: nothing it sends arrives, nothing is closed.
    proxy.silence();
    let silenced = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), leader.lost())
        .await
        .expect("the silent leader notices it can no longer confirm its lock");
    let stopped_after = silenced.elapsed();
    assert!(
        stopped_after <= HEARTBEAT + HEARTBEAT_TIMEOUT + Duration::from_secs(1),
        "stopped after {stopped_after:?}"
    );
    let successor = tokio::time::timeout(Duration::from_secs(15), follower)
        .await
        .expect("a follower takes over within 15 s")
        .unwrap()
        .expect("leads");
    let took_over_after = silenced.elapsed();
    assert!(
        took_over_after >= stopped_after,
        "the old leader stops before the new one starts"
    );
    assert!(
        took_over_after <= SESSION_IDLE_TIMEOUT + CAMPAIGN_EVERY + Duration::from_secs(2),
        "took over after {took_over_after:?}"
    );
    println!("silent leader: stopped after {stopped_after:?}, replaced after {took_over_after:?}");
    assert!(!successor.is_lost());
    successor.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_session_is_ended_stops_at_once_and_another_takes_over() {
    let db = TestDatabase::create().await;
    let pool = db.pool(SCHEMA, &[]).await;
    let shutdown = CancellationToken::new();
    let lock = LeaderLock::new(&pool, KEY);
    let leader = lock.campaign(&shutdown).await.unwrap();
    // A proxy's idle timeout, a failover, an operator: the lock's session ends under the leader.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks
         WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ended, vec![true]);
    let ended_at = Instant::now();
    tokio::time::timeout(HEARTBEAT + HEARTBEAT_TIMEOUT, leader.lost())
        .await
        .expect("the leader stops at its next heartbeat");
    let next = tokio::time::timeout(Duration::from_secs(5), lock.campaign(&shutdown))
        .await
        .expect("the lock is free again")
        .expect("leads");
    assert!(ended_at.elapsed() < HEARTBEAT + HEARTBEAT_TIMEOUT + Duration::from_secs(5));
    next.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_leadership_passes_to_a_follower_at_once_and_seizing_takes_it_from_a_live_leader()
{
    let db = TestDatabase::create().await;
    let pool = db.pool(SCHEMA, &[]).await;
    let shutdown = CancellationToken::new();
    let lock = LeaderLock::new(&pool, KEY);
    let first = lock.campaign(&shutdown).await.unwrap();
    let follower = {
        let lock = lock.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { lock.campaign(&shutdown).await })
    };
    first.release().await;
    let second = tokio::time::timeout(CAMPAIGN_EVERY * 3, follower)
        .await
        .expect("a follower takes a released lock at its next ask")
        .unwrap()
        .expect("leads");

    let seized = tokio::time::timeout(Duration::from_secs(10), lock.seize())
        .await
        .expect("seizing does not wait for the leader to give up")
        .expect("seized");
    tokio::time::timeout(HEARTBEAT + HEARTBEAT_TIMEOUT, second.lost())
        .await
        .expect("the leader it was taken from stops");
    assert!(!seized.is_lost());
    seized.release().await;
}
