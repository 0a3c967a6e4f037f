//! A read model that cannot apply an event stops at it and says so everywhere an operator or a
//! caller looks: `kith status` (and its exit status), the metrics, and the reads that wait for
//! it; once the cause is fixed it resumes by itself. And an event already in the log with a value
//! today's rules refuse (a NUL) is stored, not a reason to stop.

use std::time::Duration;

use kith_platform::eventlog::{Append, EventLog, Metadata, NewEvent};
use kith_platform::testing::{ServiceProcess, TestEnv, eventually, nats_url, with_token};
use kith_proto::membership as pb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

fn create(token: &str, name: &str) -> tonic::Request<pb::CreateCommunityRequest> {
    with_token(
        token,
        pb::CreateCommunityRequest {
            request_id: Uuid::new_v4().to_string(),
            name: name.into(),
            description: String::new(),
            founder: Some(pb::ProfileInput {
                display_name: "Founder".into(),
                handle: format!("f{}", &Uuid::new_v4().simple().to_string()[..8]),
                bio: String::new(),
            }),
        },
    )
}

async fn kith_status(env: &TestEnv) -> (bool, serde_json::Value) {
    let output = tokio::process::Command::new(KITH)
        .args(["status", "--json"])
        .env("DATABASE_URL", &env.db.url)
        .env("NATS_URL", nats_url())
        .env(
            "KITH_NATS_NAMESPACE",
            env.args.nats.nats_namespace.as_deref().unwrap_or_default(),
        )
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("kith status");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "kith status --json printed no JSON ({err}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

fn directory_stall(report: &serde_json::Value) -> Option<serde_json::Value> {
    report["services"]
        .as_array()?
        .iter()
        .find(|s| s["service"] == "membership")?["projections"]
        .as_array()?
        .iter()
        .find(|p| p["projection"] == "directory")
        .map(|p| p["stalled"].clone())
        .filter(|stalled| !stalled.is_null())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_read_model_is_named_by_status_metrics_and_reads_and_resumes_once_fixed() {
    let env = TestEnv::new().await;
    let kith = ServiceProcess::spawn(KITH, &["up", "--no-embedded"], &env).await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let token = env.token(Uuid::new_v4());
    client
        .create_community(create(&token, "Healthy"))
        .await
        .expect("create");
    let (ok, report) = kith_status(&env).await;
    assert!(ok, "all is well: {report}");

    // Something the read model's table refuses (as a NUL once did): its next event cannot apply.
    let schema = kith_platform::db::Schema::parse("membership").unwrap();
    let pool = kith_platform::db::connect(&env.db.url, &schema, 2)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE communities ADD CONSTRAINT not_poison CHECK (name <> 'Poison')")
        .execute(&pool)
        .await
        .unwrap();
    let poisoned = client
        .create_community(create(&token, "Poison"))
        .await
        .expect("the command itself is fine")
        .into_inner();
    let position = poisoned.committed.expect("committed").position;
    // The community's first event is the one its table refuses.
    let (event_id, event_position): (Uuid, i64) = sqlx::query_as(
        "SELECT event_id, position FROM events WHERE stream_id = $1 AND version = 1",
    )
    .bind(&poisoned.community_id)
    .fetch_one(&pool)
    .await
    .unwrap();

    // The read that waits for it is told which read model is stopped, at once.
    let started = std::time::Instant::now();
    let read = client
        .get_community(with_token(
            &token,
            pb::GetCommunityRequest {
                community_id: poisoned.community_id.clone(),
                min_position: position,
            },
        ))
        .await
        .expect_err("the read model is stopped before this event");
    assert_eq!(read.code(), Code::Unavailable, "{read:?}");
    assert_eq!(
        read.get_details_error_info().map(|i| i.reason).as_deref(),
        Some("PROJECTION_STALLED")
    );
    assert!(read.message().contains("directory"), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // `kith status` names the projection and the event, and exits non-zero.
    let (ok, report) = kith_status(&env).await;
    assert!(!ok, "something is stuck: {report}");
    let stall = directory_stall(&report).expect("the directory's stall");
    assert_eq!(stall["at"], event_position, "{stall}");
    assert_eq!(stall["event_id"], event_id.to_string(), "{stall}");
    assert!(
        stall["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not_poison"),
        "{stall}"
    );

    // The metrics say it is stalled and behind.
    let series = r#"{service="membership",projection="directory",source="log"}"#;
    eventually(
        Duration::from_secs(30),
        "the metrics to show it",
        || async {
            let page = kith.scrape().await;
            let stalled =
                ServiceProcess::series_value(&page, &format!("kith_projection_stalled{series}"));
            let lag =
                ServiceProcess::series_value(&page, &format!("kith_projection_lag_events{series}"));
            (stalled == Some(1.0) && lag.is_some_and(|lag| lag >= 1.0)).then_some(())
        },
    )
    .await;

    // Fixed: it resumes by itself and catches up.
    sqlx::query("ALTER TABLE communities DROP CONSTRAINT not_poison")
        .execute(&pool)
        .await
        .unwrap();
    let community = eventually(Duration::from_secs(30), "the read model to resume", || {
        let mut client = client.clone();
        let request = with_token(
            &token,
            pb::GetCommunityRequest {
                community_id: poisoned.community_id.clone(),
                min_position: position,
            },
        );
        async move { client.get_community(request).await.ok() }
    })
    .await
    .into_inner()
    .community
    .expect("community");
    assert_eq!(community.name, "Poison");
    let (ok, report) = kith_status(&env).await;
    assert!(ok, "nothing stuck any more: {report}");
    assert!(directory_stall(&report).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_in_the_log_with_a_value_todays_rules_refuse_is_stored_not_stopped_at() {
    let env = TestEnv::new().await;
    let kith = ServiceProcess::spawn(KITH, &["up", "--no-embedded"], &env).await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let token = env.token(Uuid::new_v4());

    // Today the API refuses it, naming the field.
    let mut request = create(&token, "Fine");
    request.get_mut().description = "a\u{0}b".into();
    let refused = client
        .create_community(request)
        .await
        .expect_err("a NUL is refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields: Vec<String> = refused
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default();
    assert!(
        fields.iter().any(|f| f.contains("description")),
        "{fields:?}"
    );

    // But an event written before that rule holds one.
    let schema = kith_platform::db::Schema::parse("membership").unwrap();
    let pool = kith_platform::db::connect(&env.db.url, &schema, 2)
        .await
        .unwrap();
    let community = Uuid::new_v4();
    let founder = Uuid::new_v4();
    let appended = EventLog::new(pool.clone())
        .append(Append {
            stream_type: "community",
            stream_id: &community.to_string(),
            expected_version: 0,
            events: vec![NewEvent::from_message(&pb::CommunityCreated {
                community_id: community.to_string(),
                name: "Old rules".into(),
                description: "a\u{0}b".into(),
                created_by: founder.to_string(),
            })],
            metadata: &Metadata::default(),
            command_key: None,
            erase_subjects: &[],
        })
        .await
        .expect("append the old event");
    let read = client
        .get_community(with_token(
            &env.token(founder),
            pb::GetCommunityRequest {
                community_id: community.to_string(),
                min_position: appended.position,
            },
        ))
        .await;
    // The founder is no member (the old event had no join), so the read may be refused for who
    // the caller is, but never for the read model being stopped or behind.
    if let Err(status) = &read {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // And later events still apply.
    let next = client
        .create_community(create(&token, "After"))
        .await
        .expect("create")
        .into_inner();
    client
        .get_community(with_token(
            &token,
            pb::GetCommunityRequest {
                community_id: next.community_id,
                min_position: next.committed.expect("committed").position,
            },
        ))
        .await
        .expect("the read model went past the old event");
    let stored: String =
        sqlx::query_scalar("SELECT description FROM communities WHERE community_id = $1")
            .bind(community)
            .fetch_one(&pool)
            .await
            .expect("the old community is in the read model");
    assert_eq!(
        stored, "a\u{FFFD}b",
        "stored, with what PostgreSQL cannot hold replaced"
    );
    let (ok, report) = kith_status(&env).await;
    assert!(ok, "{report}");
}
