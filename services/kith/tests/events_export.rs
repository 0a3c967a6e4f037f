//! `kith events export`: the services' events, decoded by type name, merged in recorded order,
//! as JSON lines and as CSV; sealed fields stay sealed; a time window narrows it.

use kith_platform::testing::{ServiceProcess, TestEnv, eventually, nats_url, with_token};
use kith_proto::membership as pb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use uuid::Uuid;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

async fn export(env: &TestEnv, args: &[&str]) -> (String, String) {
    run_kith(env, &["events", "export"], args).await
}

/// Runs `kith <command> <args>` against the environment; its stdout and stderr.
async fn run_kith(env: &TestEnv, command: &[&str], args: &[&str]) -> (String, String) {
    let output = try_kith(env, command, args).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "kith {command:?} failed: {stderr}");
    (String::from_utf8(output.stdout).expect("utf-8"), stderr)
}

/// Runs `kith <command> <args>` against the environment, whatever its outcome.
async fn try_kith(env: &TestEnv, command: &[&str], args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(KITH)
        .args(command)
        .args(args)
        .kill_on_drop(true)
        .env("DATABASE_URL", &env.db.url)
        .env("NATS_URL", nats_url())
        .env(
            "KITH_NATS_NAMESPACE",
            env.args.nats.nats_namespace.as_deref().unwrap_or_default(),
        )
        .output()
        .await
        .expect("kith events export")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_exported_decoded_in_recorded_order_with_sealed_fields_sealed() {
    let env = TestEnv::new().await;
    let kith = ServiceProcess::spawn(KITH, &["up"], &env).await;
    let mut client = MembershipServiceClient::connect(format!("http://{}", kith.grpc))
        .await
        .expect("connect");
    let founder = Uuid::new_v4();
    let created = client
        .create_community(with_token(
            &env.token(founder),
            pb::CreateCommunityRequest {
                request_id: "export".into(),
                name: "Trail, \"Runners\"".into(),
                description: "We run.\nOften.".into(),
                founder: Some(pb::ProfileInput {
                    display_name: "Grace Hopper".into(),
                    handle: "grace".into(),
                    bio: String::new(),
                }),
            },
        ))
        .await
        .expect("create")
        .into_inner();
    client
        .set_community_language(with_token(
            &env.token(founder),
            pb::SetCommunityLanguageRequest {
                request_id: "lang".into(),
                community_id: created.community_id.clone(),
                language: "en".into(),
            },
        ))
        .await
        .expect("set language");
    // Once the relay has put all three events on the bus, both sources say the same.
    let (from_log, _) = export(&env, &["--source", "postgres"]).await;
    assert_eq!(from_log.lines().count(), 3);
    eventually(
        std::time::Duration::from_secs(10),
        "the relay to publish the three events",
        || async {
            let (from_bus, _) = export(&env, &["--source", "nats"]).await;
            (from_bus.lines().count() == 3).then_some(from_bus)
        },
    )
    .await;
    // Something else published on membership's subjects is not an event: skipped.
    let namespace = env.args.nats.nats_namespace.clone().unwrap_or_default();
    let stray = async_nats::connect(nats_url()).await.expect("nats");
    let js = async_nats::jetstream::new(stray);
    js.publish(
        format!("{namespace}.kith.membership.stray"),
        "not an event".into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let (from_bus, said) = export(&env, &["--source", "nats"]).await;
    assert_eq!(from_bus, from_log);
    assert!(said.contains("exported 3 events"), "{said}");
    kith.signal("TERM");

    let (jsonl, said) = export(&env, &["--source", "postgres", "--format", "jsonl"]).await;
    let events: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().expect("event_type"))
        .collect();
    assert_eq!(
        types,
        [
            "kith.membership.v1.CommunityCreated",
            "kith.membership.v1.MemberJoined",
            "kith.membership.v1.CommunityLanguageSet",
        ]
    );
    assert!(said.contains("exported 3 events"), "{said}");
    let first = &events[0];
    assert_eq!(first["service"], "membership");
    assert_eq!(first["stream_id"], created.community_id.as_str());
    assert_eq!(first["version"], 1);
    assert_eq!(first["event"]["name"], "Trail, \"Runners\"");
    assert_eq!(first["event"]["created_by"], founder.to_string().as_str());
    assert_eq!(events[2]["event"]["language"], "en");
    // The profile is personal: sealed in the log, sealed in the export.
    assert!(!jsonl.contains("Grace Hopper") && !jsonl.contains("grace\""));
    assert!(events[1]["event"]["profile"]["display_name"].is_object());
    // Recorded order.
    let times: Vec<&str> = events
        .iter()
        .map(|e| e["recorded_at"].as_str().expect("recorded_at"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");

    // CSV: a header and the same events, the awkward name quoted as RFC 4180 has it.
    let (csv, _) = export(&env, &["--source", "postgres", "--format", "csv"]).await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "service,position,recorded_at,stream_type,stream_id,version,event_id,event_type,event"
        )
    );
    assert!(csv.contains(r#""Trail, \""Runners\"""#), "{csv}");
    let rows = csv.matches("\nmembership,").count();
    assert_eq!(rows, 3);

    // Parquet: a file per UTC day under a new directory; never into one that holds files, and
    // never without a directory.
    let dir = std::env::temp_dir().join(format!("kith-export-{}", Uuid::new_v4()));
    let dir_arg = dir.display().to_string();
    let (_, said) = export(
        &env,
        &[
            "--source", "postgres", "--format", "parquet", "-o", &dir_arg,
        ],
    )
    .await;
    assert!(said.contains("exported 3 events"), "{said}");
    let days: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("the directory")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    assert!(!days.is_empty());
    for day in &days {
        let name = day
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("day=20"), "{name}");
        let file = std::fs::read(day.join("events.parquet")).expect("the day's file");
        assert!(
            file.starts_with(b"PAR1") && file.ends_with(b"PAR1"),
            "a Parquet file"
        );
    }
    for (args, says) in [
        (
            vec![
                "--source", "postgres", "--format", "parquet", "-o", &dir_arg,
            ],
            "already holds files",
        ),
        (
            vec!["--source", "postgres", "--format", "parquet"],
            "--output DIR",
        ),
    ] {
        let refused = try_kith(&env, &["events", "export"], &args).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains(says),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).expect("clean up");

    // The engagement report reads the same history: no conversation yet, so nothing counted,
    // the same from both sources, with its definitions.
    let report = |source: &'static str| {
        let community = created.community_id.clone();
        let env = &env;
        async move {
            let args = [
                "--community",
                community.as_str(),
                "--from",
                "2026-01-01T00:00:00Z",
                "--to",
                "2999-01-01T00:00:00Z",
                "--format",
                "json",
                "--source",
                source,
            ];
            run_kith(env, &["report", "engagement"], &args).await
        }
    };
    let ((from_log, said), (from_bus, _)) = (report("postgres").await, report("nats").await);
    assert_eq!(from_log, from_bus);
    assert!(
        said.contains("replayed 3 events from membership, cohorts, messaging in"),
        "{said}"
    );
    let parsed: serde_json::Value = serde_json::from_str(&from_log).expect("a JSON report");
    assert_eq!(parsed["active_members"], 0);
    assert_eq!(parsed["posts"], 0);
    assert!(
        parsed["definitions"]
            .as_str()
            .is_some_and(|d| d.starts_with("engagement definitions v2"))
    );

    // A window after everything holds nothing; one before the end holds everything.
    for source in ["postgres", "nats"] {
        let (later, _) = export(
            &env,
            &["--source", source, "--from", "2999-01-01T00:00:00Z"],
        )
        .await;
        assert!(later.is_empty(), "{source}");
        let (all, _) = export(&env, &["--source", source, "--to", "2999-01-01T00:00:00Z"]).await;
        assert_eq!(all.lines().count(), 3, "{source}");
    }
    // A window that starts at the last event: the bus is read from a time (just before it),
    // and both sources agree on what falls inside.
    let (all, _) = export(&env, &["--source", "postgres"]).await;
    let last: serde_json::Value =
        serde_json::from_str(all.lines().last().expect("an event")).expect("json");
    let at = last["recorded_at"]
        .as_str()
        .expect("recorded_at")
        .to_owned();
    let inside = all
        .lines()
        .filter(|line| {
            let event: serde_json::Value = serde_json::from_str(line).expect("json");
            event["recorded_at"].as_str().expect("recorded_at") >= at.as_str()
        })
        .count();
    let (from_log, _) = export(&env, &["--source", "postgres", "--from", &at]).await;
    let (from_bus, _) = export(&env, &["--source", "nats", "--from", &at]).await;
    assert_eq!(from_log.lines().count(), inside);
    assert_eq!(from_bus, from_log);

    // A purged stream holds nothing: the export from the bus says so, and ends.
    let bus = async_nats::jetstream::new(async_nats::connect(nats_url()).await.expect("nats"));
    bus.get_stream(format!(
        "{}_KITH_MEMBERSHIP",
        namespace.to_ascii_uppercase()
    ))
    .await
    .expect("membership's stream")
    .purge()
    .await
    .expect("purge");
    let (purged, said) = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        export(&env, &["--source", "nats"]),
    )
    .await
    .expect("an export of a purged stream ends");
    assert!(purged.is_empty(), "{purged}");
    assert!(said.contains("exported 0 events"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_for_something_that_is_not_an_id_is_refused_naming_the_flag() {
    let env = TestEnv::new().await;
    let output = tokio::process::Command::new(KITH)
        .args([
            "report",
            "engagement",
            "--community",
            "not-an-id",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-02-01T00:00:00Z",
        ])
        .env("DATABASE_URL", &env.db.url)
        .output()
        .await
        .expect("kith report");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--community"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backwards_window_is_refused_naming_the_flags() {
    let env = TestEnv::new().await;
    let output = tokio::process::Command::new(KITH)
        .args([
            "events",
            "export",
            "--from",
            "2026-02-01T00:00:00Z",
            "--to",
            "2026-01-01T00:00:00Z",
        ])
        .env("DATABASE_URL", &env.db.url)
        .output()
        .await
        .expect("kith events export");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--from") && stderr.contains("--to"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_a_bad_definitions_file_is_refused_naming_the_file_and_field() {
    let env = TestEnv::new().await;
    let file = std::env::temp_dir().join(format!("kith-defs-{}.json", Uuid::new_v4()));
    std::fs::write(&file, r#"{"mau_days": 400}"#).expect("write");
    let output = tokio::process::Command::new(KITH)
        .args([
            "report",
            "engagement",
            "--community",
            &Uuid::new_v4().to_string(),
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-02-01T00:00:00Z",
            "--definitions",
        ])
        .arg(&file)
        .env("DATABASE_URL", &env.db.url)
        .output()
        .await
        .expect("kith report");
    std::fs::remove_file(&file).expect("clean up");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--definitions") && stderr.contains("mau_days must be 1 to 365"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_fails_leaves_no_file_behind() {
    let file = std::env::temp_dir().join(format!("kith-report-{}.html", Uuid::new_v4()));
    let output = tokio::process::Command::new(KITH)
        .args([
            "report",
            "engagement",
            "--community",
            &Uuid::new_v4().to_string(),
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-02-01T00:00:00Z",
            "--source",
            "postgres",
            "--format",
            "html",
            "-o",
        ])
        .arg(&file)
        .env(
            "DATABASE_URL",
            format!(
                "postgres://postgres@127.0.0.1:5432/kith_missing_{}",
                Uuid::new_v4().simple()
            ),
        )
        .output()
        .await
        .expect("kith report");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
    assert!(!file.exists(), "a failed report left {}", file.display());
}
