//! The embedded default on a machine where PostgreSQL and NATS are installed but not running:
//! `kith up` starts both under its data folder, serves, answers a gRPC health check, and stops
//! them when it stops. The addresses are free local ports rather than 5432 and 4222, so the
//! machine's own servers (which other tests use) stay up; to `kith up` it is the same situation:
//! nothing answers where it was told to look.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const KITH: &str = env!("CARGO_BIN_EXE_kith");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

async fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kith_up_starts_stopped_postgres_and_nats_serves_and_stops_them() {
    let (pg_port, nats_port) = (free_port(), free_port());
    let pg: SocketAddr = format!("127.0.0.1:{pg_port}").parse().expect("addr");
    let nats: SocketAddr = format!("127.0.0.1:{nats_port}").parse().expect("addr");
    assert!(!answers(pg).await && !answers(nats).await);
    let data =
        std::env::temp_dir().join(format!("kith-embedded-{}", uuid::Uuid::new_v4().simple()));

    let mut child = Command::new(KITH)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--unsubscribe-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .env("DATABASE_URL", format!("postgres://postgres@{pg}/kith"))
        .env("NATS_URL", format!("nats://{nats}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start kith up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (started, addr) = tokio::time::timeout(Duration::from_secs(90), async {
        let mut started = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if line.starts_with("started ") {
                started.push(line.clone());
            }
            if let Some(rest) = line.strip_prefix("kith is serving gRPC on ") {
                return (
                    started,
                    rest.split_whitespace().next().expect("addr").to_owned(),
                );
            }
        }
        panic!("kith up exited before serving");
    })
    .await
    .expect("kith up serves within 90 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(
        started[0].starts_with(&format!("started PostgreSQL on {pg}")),
        "{started:?}"
    );
    assert!(
        started[1].starts_with(&format!("started NATS with JetStream on {nats}")),
        "{started:?}"
    );
    assert!(data.join("postgres").join("PG_VERSION").exists());

    let mut health = HealthClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect"),
    );
    let status = health
        .check(HealthCheckRequest {
            service: "kith.cohorts.v1.CohortsService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let pid = child.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("kith up stops within 60 s")
        .expect("exit status");
    assert!(exit.success(), "{exit:?}");
    assert!(!answers(pg).await, "PostgreSQL was stopped");
    assert!(!answers(nats).await, "NATS was stopped");
    let _ = std::fs::remove_dir_all(&data);
}
