//! `kith up` as a newcomer runs it: a real process that serves gRPC health and the membership
//! API, accepts a token minted by `kith token`, and exits cleanly on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use kith_platform::testing::{TEST_JWT_SECRET, TestEnv};
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use kith_proto::membership::{CreateCommunityRequest, GetCommunityRequest, ProfileInput};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tonic::Request;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kith_up_serves_health_and_membership_and_stops_on_sigterm() {
    let env = TestEnv::new().await;
    let namespace = env.args.nats.nats_namespace.clone().unwrap();
    let mut child = Command::new(KITH)
        // Every listener on a free port: beside a developer's own `kith up`, and beside the other
        // tests that start one.
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--unsubscribe-listen",
            "127.0.0.1:0",
        ])
        .env("DATABASE_URL", &env.db.url)
        .env("KITH_NATS_NAMESPACE", &namespace)
        .env("KITH_JWT_SECRET", TEST_JWT_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kith up");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("kith is serving gRPC on ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("kith up exited before serving");
    })
    .await
    .expect("kith up announces its address");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    // Reflection, as grpcurl uses it: the services are listed without any proto files.
    let mut reflection = ServerReflectionClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut replies = reflection
        .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let listed = match replies.message().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => panic!("unexpected reflection reply {other:?}"),
    };
    for service in [
        "kith.membership.v1.MembershipService",
        "kith.cohorts.v1.CohortsService",
        "kith.messaging.v1.MessagingService",
    ] {
        assert!(listed.contains(&service.to_owned()), "{listed:?}");
    }
    assert!(
        listed.contains(&"grpc.health.v1.Health".to_owned()),
        "{listed:?}"
    );

    let member = Uuid::new_v4();
    let minted = Command::new(KITH)
        .args(["token", "--member", &member.to_string()])
        .env("KITH_JWT_SECRET", TEST_JWT_SECRET)
        .output()
        .await
        .unwrap();
    assert!(minted.status.success());
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();

    let mut client = MembershipServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut create = Request::new(CreateCommunityRequest {
        request_id: "first".into(),
        name: "Up and running".into(),
        description: String::new(),
        founder: Some(ProfileInput {
            display_name: "Newcomer".into(),
            handle: "newcomer".into(),
            bio: String::new(),
        }),
    });
    create
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let created = client.create_community(create).await.unwrap().into_inner();
    let mut get = Request::new(GetCommunityRequest {
        community_id: created.community_id,
        min_position: created.committed.unwrap().position,
    });
    get.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let community = client
        .get_community(get)
        .await
        .unwrap()
        .into_inner()
        .community
        .unwrap();
    assert_eq!(community.name, "Up and running");

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("kith up exits within its grace period after SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");

    // The operator commands work on what `up` left behind.
    let migrated = Command::new(KITH)
        .arg("migrate")
        .env("DATABASE_URL", &env.db.url)
        .output()
        .await
        .unwrap();
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let migrated = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.contains("membership: migrated"), "{migrated}");
    assert!(migrated.contains("cohorts: migrated"), "{migrated}");
    let rebuilt = Command::new(KITH)
        .args(["rebuild", "--service", "membership"])
        .env("DATABASE_URL", &env.db.url)
        .output()
        .await
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let report = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(
        report.contains("membership.directory: rebuilt from 2 events"),
        "{report}"
    );
    // Cohorts: its own log, and membership's events from the bus.
    let rebuilt = Command::new(KITH)
        .args(["rebuild", "--service", "cohorts"])
        .env("DATABASE_URL", &env.db.url)
        .env("KITH_NATS_NAMESPACE", &namespace)
        .output()
        .await
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let report = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(
        report.contains("cohorts.roster: rebuilt from 0 events"),
        "{report}"
    );
    // As many events as the relay published before the SIGTERM (it had two to publish).
    assert!(
        report.contains("cohorts.communities: rebuilt from"),
        "{report}"
    );
}

#[tokio::test]
async fn bad_flags_are_named_in_the_error() {
    let out = Command::new(KITH)
        .args(["token", "--member", "alice"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--member must be a UUID"));
    let out = Command::new(KITH)
        .args(["up", "--listen", "nowhere"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}
