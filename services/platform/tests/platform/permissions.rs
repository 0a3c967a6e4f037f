//! Production NATS with the users and permissions of `deploy/nats/auth.conf`: a service's relay
//! publishes on its own subjects, another service consumes them, and nothing else may publish
//! there or touch the stream.

use std::sync::Arc;
use std::time::Duration;

use kith_platform::bus::{self, StreamSpec};
use kith_platform::projection::{self, BusSource};
use kith_platform::testing::{PrivateNats, eventually, stream_order};

use crate::helpers::{Counting, append_n, counted, log, spawn_relay};

const USERS: [(&str, &str); 6] = [
    ("membership", "KITH_MEMBERSHIP_NATS_PASSWORD"),
    ("cohorts", "KITH_COHORTS_NATS_PASSWORD"),
    ("messaging", "KITH_MESSAGING_NATS_PASSWORD"),
    ("notifications", "KITH_NOTIFICATIONS_NATS_PASSWORD"),
    ("analyst", "KITH_ANALYST_NATS_PASSWORD"),
    ("admin", "KITH_ADMIN_NATS_PASSWORD"),
];

fn password(user: &str) -> String {
    format!("k{user}{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_services_relay_publishes_on_its_subjects_and_consumers_only_read() {
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats/auth.conf");
    let passwords: Vec<(String, String)> = USERS
        .iter()
        .map(|(user, variable)| ((*variable).to_owned(), password(user)))
        .collect();
    let server = PrivateNats::start_with(Some(config), passwords.clone());
    let url = |user: &str| {
        let variable = USERS.iter().find(|(u, _)| *u == user).unwrap().1;
        let secret = &passwords.iter().find(|(v, _)| v == variable).unwrap().1;
        format!("nats://kith-{user}:{secret}@127.0.0.1:{}", server.port)
    };
    let as_membership = bus::jetstream(bus::connect(&url("membership"), "relay").await.unwrap());
    let cohorts_client = bus::connect(&url("cohorts"), "consumer").await.unwrap();
    let as_cohorts = bus::jetstream(cohorts_client.clone());

    // Membership's relay publishes its log on its own stream, with the production names.
    let (_db, log) = log().await;
    append_n(&log, "community-1", 0, 3).await;
    let spec = StreamSpec::for_service("membership");
    let (shutdown, relay_task) = spawn_relay(&log, &as_membership, &spec);

    // Cohorts consumes it.
    let pool = log.pool().clone();
    projection::create_tables(&pool, &Counting).await.unwrap();
    let consumer = tokio::spawn(projection::run_bus_source(
        pool.clone(),
        as_cohorts.clone(),
        BusSource {
            stream: spec.name.clone(),
            durable: "cohorts-communities".into(),
            batch_size: 10,
            service: "cohorts".into(),
        },
        Arc::new(Counting),
        shutdown.clone(),
    ));
    eventually(
        Duration::from_secs(20),
        "cohorts to read membership's events",
        || async { (counted(&pool).await == vec![("community-1".to_owned(), 3, 3)]).then_some(()) },
    )
    .await;

    // Cohorts may not publish on membership's subjects, through JetStream or not.
    let impatient = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(cohorts_client.clone());
    let stray = async {
        impatient
            .publish("kith.membership.community.x", "hi".into())
            .await?
            .await
            .map(|_| ())
            .map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into)
    }
    .await;
    assert!(stray.is_err(), "a stray publish by cohorts is refused");
    cohorts_client
        .publish("kith.membership.community.y", "hi".into())
        .await
        .unwrap();
    cohorts_client.flush().await.unwrap();
    // Nor delete or purge it.
    assert!(impatient.delete_stream(&spec.name).await.is_err());

    // The stream holds the relay's events and nothing else, and the relay goes on.
    append_n(&log, "community-1", 3, 2).await;
    eventually(Duration::from_secs(20), "the next events", || async {
        (counted(&pool).await == vec![("community-1".to_owned(), 5, 5)]).then_some(())
    })
    .await;
    let mut stream = as_membership.get_stream(&spec.name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 5);
    assert_eq!(
        stream_order(&as_membership, &spec.name).await,
        kith_platform::testing::log_order(&log).await
    );

    // The analyst reads but may not publish.
    let analyst = bus::connect(&url("analyst"), "analyst").await.unwrap();
    let analyst_js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(analyst);
    assert_eq!(stream_order(&analyst_js, &spec.name).await.len(), 5);
    assert!(
        async {
            analyst_js
                .publish("kith.membership.community.z", "hi".into())
                .await?
                .await
                .map(|_| ())
                .map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into)
        }
        .await
        .is_err()
    );

    shutdown.cancel();
    relay_task.await.unwrap();
    consumer.await.unwrap();
}
