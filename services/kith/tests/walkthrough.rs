//! The README's worked example, end to end: `kith up`, `kith demo` playing a mastermind's first
//! day through the gRPC API, the engagement report as a page, the Parquet export, and the DuckDB
//! SQL over it giving the report's figures.

use kith_platform::testing::{ServiceProcess, TEST_JWT_SECRET, TestEnv, nats_url};

const KITH: &str = env!("CARGO_BIN_EXE_kith");

/// Runs `kith <args>` against the environment; its stdout, having checked that it succeeded.
async fn kith(env: &TestEnv, args: &[&str]) -> String {
    let output = tokio::process::Command::new(KITH)
        .args(args)
        .kill_on_drop(true)
        .env("DATABASE_URL", &env.db.url)
        .env("NATS_URL", nats_url())
        .env("KITH_JWT_SECRET", TEST_JWT_SECRET)
        .env(
            "KITH_NATS_NAMESPACE",
            env.args.nats.nats_namespace.as_deref().unwrap_or_default(),
        )
        .output()
        .await
        .expect("kith");
    assert!(
        output.status.success(),
        "kith {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A Python with DuckDB, as `.ci/run` provides it.
fn duckdb_python() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("KITH_DUCKDB_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/tmp/kith-tools/venv/bin/python".into());
    std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_worked_example_runs_from_kith_up_to_a_duckdb_query() {
    let env = TestEnv::new().await;
    let up = ServiceProcess::spawn(KITH, &["up"], &env).await;
    let grpc = up.grpc.to_string();
    let played = kith(&env, &["demo", "--grpc", &grpc, "--json"]).await;
    let ids: serde_json::Value = serde_json::from_str(&played).expect("the demo's ids");
    let community = ids["community_id"]
        .as_str()
        .expect("community_id")
        .to_owned();

    // The report, as the week from today; once the relay has published everything, the bus
    // gives the same report as the log.
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (
        format!("{today}T00:00:00Z"),
        format!("{}T00:00:00Z", today + chrono::Duration::days(7)),
    );
    let report = |format: &'static str, rest: Vec<String>| {
        let mut args: Vec<String> = [
            "report",
            "engagement",
            "--community",
            community.as_str(),
            "--from",
            from.as_str(),
            "--to",
            to.as_str(),
            "--format",
            format,
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(rest);
        let env = &env;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kith(env, &args).await
        }
    };
    let source = |source: &str| vec!["--source".to_owned(), source.to_owned()];
    let from_log = report("json", source("postgres")).await;
    kith_platform::testing::eventually(
        std::time::Duration::from_secs(20),
        "the report from the bus to be the log's",
        || async { (report("json", source("nats")).await == from_log).then_some(()) },
    )
    .await;
    let figures: serde_json::Value = serde_json::from_str(&from_log).expect("json");
    // What the demo did (see `kith demo`): 4 threads and 7 replies, 3 reactions and 2 reads,
    // by 8 members; Fatima's thread never answered; Gus left and Hana, waiting, took his seat.
    assert_eq!(figures["posts"], 4);
    assert_eq!(figures["replies"], 7);
    assert_eq!(figures["reactions"], 3);
    assert_eq!(figures["active_members"], 8);
    assert_eq!(
        (&figures["threads_answered"], &figures["threads_unanswered"]),
        (&3.into(), &1.into())
    );
    assert_eq!(
        (
            &figures["sessions"],
            &figures["promoted"],
            &figures["waitlist_at_end"]
        ),
        (&1.into(), &1.into(), &0.into())
    );
    // Seats when the session starts: Ben, Chen, Dara, Eli, Fatima, Hana; yes from four.
    assert_eq!(figures["rsvp_yes_rate"], 0.6667);

    // The page a host would open.
    let dir = std::env::temp_dir().join(format!("kith-walkthrough-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let page = dir.join("engagement.html");
    report("html", vec!["-o".to_owned(), page.display().to_string()]).await;
    let tidy = dir.join("engagement.parquet");
    report("parquet", vec!["-o".to_owned(), tidy.display().to_string()]).await;
    let bytes = std::fs::read(&tidy).expect("the Parquet report");
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("engagement definitions v2") && html.contains("<svg"));

    // The export, and the SQL over it.
    let export = dir.join("export");
    let export_arg = export.display().to_string();
    kith(
        &env,
        &["events", "export", "--format", "parquet", "-o", &export_arg],
    )
    .await;
    let Some(python) = duckdb_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have DuckDB (pip install duckdb into $KITH_TOOLS/venv)"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
        return;
    };
    let runner = concat!(env!("CARGO_MANIFEST_DIR"), "/../../analytics/engagement.py");
    let output = tokio::process::Command::new(python)
        .arg(runner)
        .arg(&export)
        .args([
            "--community",
            &community,
            "--from",
            &from,
            "--to",
            &to,
            "--json",
        ])
        .output()
        .await
        .expect("python");
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sql: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    for figure in [
        "active_members",
        "dau",
        "wau",
        "mau",
        "stickiness",
        "posts",
        "replies",
        "reactions",
        "threads_answered",
        "threads_unanswered",
        "participation_gini",
        "threads_answered_by_facilitator",
        "threads_awaiting_facilitator",
        "sessions",
        "rsvp_yes_rate",
        "promoted",
        "waitlist_at_end",
    ] {
        assert_eq!(
            figures[figure].as_f64(),
            sql[figure].as_f64(),
            "{figure}: report {}, SQL {}",
            figures[figure],
            sql[figure]
        );
    }
    assert_eq!(figures["retention"], sql["retention"]);
    up.signal("TERM");
}
