//! `kith up`'s Prometheus endpoint, scraped as Prometheus does: every projection source has its
//! lag series, and calls, appends, the relay and the pools are counted.

use std::time::Duration;

use kith_platform::testing::{ServiceProcess, TestEnv, eventually, with_token};
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use kith_proto::membership::{CreateCommunityRequest, ProfileInput};
use sqlx::Connection;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_shows_projection_lag_for_every_source_and_counts_calls() {
    let env = TestEnv::new().await;
    let kith = ServiceProcess::spawn(KITH, &["up"], &env).await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let request = with_token(
        &env.token(Uuid::new_v4()),
        CreateCommunityRequest {
            request_id: "one".into(),
            name: "Measured".into(),
            description: String::new(),
            founder: Some(ProfileInput {
                display_name: "Metered".into(),
                handle: "metered".into(),
                bio: String::new(),
            }),
        },
    );
    client.create_community(request).await.expect("create");

    let bus_source = format!("bus:{}", env.args.nats.stream_for("membership").name);
    let sources = [
        ("membership", "directory", "log".to_owned()),
        ("cohorts", "roster", "log".to_owned()),
        ("cohorts", "communities", bus_source),
    ];
    let page = eventually(Duration::from_secs(20), "every series", || {
        let (kith, sources) = (&kith, &sources);
        async move {
            let page = kith.scrape().await;
            let all = sources.iter().all(|(service, projection, source)| {
                ["kith_projection_lag_events", "kith_projection_lag_seconds"]
                    .iter()
                    .all(|metric| {
                        ServiceProcess::series_value(
                            &page,
                            &format!(
                                r#"{metric}{{service="{service}",projection="{projection}",source="{source}"}}"#
                            ),
                        )
                        .is_some()
                    })
            });
            let appended = ServiceProcess::series_value(
                &page,
                r#"kith_events_appended_total{service="membership"}"#,
            );
            let leaders = ["membership", "cohorts"].iter().all(|service| {
                ServiceProcess::series_value(
                    &page,
                    &format!(r#"kith_relay_leader{{service="{service}"}}"#),
                ) == Some(1.0)
            });
            (all && leaders && appended >= Some(2.0)).then_some(page)
        }
    })
    .await;
    for series in [
        r#"kith_grpc_requests_total{service="kith.membership.v1.MembershipService",method="CreateCommunity",code="OK"}"#,
        r#"kith_grpc_request_duration_seconds_count{service="kith.membership.v1.MembershipService",method="CreateCommunity"}"#,
        r#"kith_relay_lag_events{service="membership"}"#,
        r#"kith_relay_leader{service="cohorts"}"#,
        r#"kith_db_pool_connections{service="cohorts",state="in_use"}"#,
        r#"kith_db_pool_max_connections{service="membership"}"#,
    ] {
        assert!(
            ServiceProcess::series_value(&page, series).is_some(),
            "{series} missing from\n{page}"
        );
    }
    assert_eq!(
        ServiceProcess::series_value(
            &page,
            r#"kith_grpc_requests_total{service="kith.membership.v1.MembershipService",method="CreateCommunity",code="OK"}"#
        ),
        Some(1.0)
    );

    // Anyone can send any path: it counts as `unknown`, never as a series of its own.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", kith.grpc))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    for n in 0..20 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let path = format!("/random{n}.Service/Method{n}")
            .parse()
            .expect("path");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let answer = grpc.unary(tonic::Request::new(()), path, codec).await;
        assert_eq!(
            answer.expect_err("no such method").code(),
            tonic::Code::Unimplemented
        );
    }
    // A request over the size limit is a limit reached, not a value out of range.
    let huge = with_token(
        &env.token(Uuid::new_v4()),
        CreateCommunityRequest {
            request_id: "huge".into(),
            name: "Huge".into(),
            description: "x".repeat(5 * 1024 * 1024),
            founder: None,
        },
    );
    let refused = client.create_community(huge).await.expect_err("too large");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(refused.message().contains("4 MiB"), "{refused:?}");

    let page = eventually(Duration::from_secs(10), "the unknown calls counted", || {
        let kith = &kith;
        async move {
            let page = kith.scrape().await;
            (ServiceProcess::series_value(
                &page,
                r#"kith_grpc_requests_total{service="unknown",method="unknown",code="UNIMPLEMENTED"}"#,
            ) == Some(20.0))
            .then_some(page)
        }
    })
    .await;
    assert!(
        !page.contains("random"),
        "a raw path became a label:\n{page}"
    );
    assert_eq!(
        ServiceProcess::series_value(
            &page,
            r#"kith_grpc_requests_total{service="kith.membership.v1.MembershipService",method="CreateCommunity",code="RESOURCE_EXHAUSTED"}"#
        ),
        Some(1.0)
    );

    // A transaction left open in the database (a stuck migration, a forgotten psql): the gauge
    // the "oldest transaction" alert reads shows its age.
    let mut idle = sqlx::PgConnection::connect(&env.db.url)
        .await
        .expect("connect");
    // Without a transaction id of its own: one that has one holds back the tail of every log on
    // the server, and would slow the other tests sharing it.
    sqlx::query("BEGIN")
        .execute(&mut idle)
        .await
        .expect("begin");
    sqlx::query("SELECT 1")
        .execute(&mut idle)
        .await
        .expect("start the transaction");
    eventually(
        Duration::from_secs(20),
        "the open transaction's age",
        || {
            let kith = &kith;
            async move {
                let page = kith.scrape().await;
                ServiceProcess::series_value(
                    &page,
                    r#"kith_db_oldest_transaction_seconds{service="membership"}"#,
                )
                .filter(|age| *age >= 2.0)
            }
        },
    )
    .await;
    sqlx::query("ROLLBACK")
        .execute(&mut idle)
        .await
        .expect("rollback");
    kith.signal("TERM");
}
