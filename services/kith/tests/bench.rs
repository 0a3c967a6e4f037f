//! A bench stopped by hand (Ctrl-C, as an operator does when it falls behind) removes what it
//! made: its scratch database and its streams, which would otherwise keep their data on the
//! servers for good.

use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use kith_platform::testing::{TestEnv, eventually, nats_url};
use tokio::io::{AsyncBufReadExt, BufReader};

const KITH: &str = env!("CARGO_BIN_EXE_kith");

/// The streams on the server whose names start with `namespace`'s prefix.
async fn streams_of(namespace: &str) -> Vec<String> {
    let prefix = format!("{}_", namespace.to_ascii_uppercase());
    let client = async_nats::connect(nats_url()).await.expect("NATS");
    async_nats::jetstream::new(client)
        .stream_names()
        .filter_map(|name| async move { name.ok() })
        .filter(|name| std::future::ready(name.starts_with(&prefix)))
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_bench_leaves_no_scratch_database_or_streams_behind() {
    let env = TestEnv::new().await;
    let mut bench = tokio::process::Command::new(KITH)
        .args([
            "bench",
            "notifications",
            "--latency-only",
            "--rate",
            "20",
            "--samples",
            "1000000",
        ])
        .env("DATABASE_URL", &env.db.url)
        .env("NATS_URL", nats_url())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kith bench");
    let mut stderr = BufReader::new(bench.stderr.take().expect("stderr")).lines();

    // It names what it made before it makes anything else.
    let named = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stderr.next_line().await.expect("stderr") {
            if let Some(rest) = line.strip_prefix("scratch database ") {
                return Some(rest.to_owned());
            }
        }
        None
    })
    .await
    .expect("the bench names its scratch database within 60 s")
    .expect("the bench names its scratch database");
    let (database, rest) = named.split_once(", NATS namespace ").expect(&named);
    let (namespace, _) = rest.split_once(':').expect(rest);
    let (database, namespace) = (database.to_owned(), namespace.to_owned());

    let pool = sqlx::PgPool::connect(&env.db.url).await.expect("pool");
    let exists = |name: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            )
            .bind(name)
            .fetch_one(&pool)
            .await
            .expect("pg_database")
        }
    };
    assert!(exists(database.clone()).await, "{database} is made");
    // The services are running once their streams are there.
    eventually(
        Duration::from_secs(60),
        "the bench's services to create their streams",
        || async { (streams_of(&namespace).await.len() >= 4).then_some(()) },
    )
    .await;

    let pid = bench.id().expect("pid").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(60), bench.wait())
        .await
        .expect("the bench ends within 60 s of Ctrl-C")
        .expect("wait");
    let mut said = Vec::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        said.push(line);
    }
    assert!(!status.success(), "an interrupted bench is no success");
    assert!(
        said.iter().any(|line| line.contains("interrupted")),
        "it says it was interrupted: {said:?}"
    );
    assert!(!exists(database.clone()).await, "{database} is removed");
    assert_eq!(streams_of(&namespace).await, Vec::<String>::new());
}
