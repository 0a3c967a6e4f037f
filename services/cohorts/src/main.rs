//! `kith-cohorts`: the cohorts service alone, as it runs in Kubernetes. Same flags as `kith up`.

use clap::Parser;
use kith_platform::config::{ListenArgs, ServiceArgs};
use kith_platform::runtime::{self, Runtime};
use kith_platform::{grpc, telemetry};
use tokio_util::sync::CancellationToken;

/// Kith cohorts service: small groups with a hard capacity, waitlists, facilitators and live
/// sessions, over gRPC. Learns community membership from the membership service's events on NATS.
#[derive(Debug, Parser)]
#[command(name = "kith-cohorts", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    listen: ListenArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry = telemetry::init(kith_cohorts::SERVICE);
    let shutdown = CancellationToken::new();
    runtime::cancel_on_signal(shutdown.clone());
    let runtime = Runtime::connect(args.service).await?;
    let cohorts = kith_cohorts::start(&runtime).await?;
    let metrics = runtime.serve_metrics(args.listen.metrics_listen).await?;
    println!("metrics: http://{metrics}/metrics");
    let router = grpc::server().add_service(cohorts.server);
    runtime::serve(
        &runtime,
        args.listen.listen,
        router,
        &[kith_cohorts::service::GRPC_SERVICE],
        shutdown,
        |addr| println!("kith-cohorts serving gRPC on {addr}"),
    )
    .await?;
    Ok(())
}
