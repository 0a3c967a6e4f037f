//! `kith-cohorts`: the cohorts service alone, as it runs in Kubernetes. Same flags as `kith up`.

use clap::Parser;
use kith_platform::config::{ListenArgs, ServiceArgs};
use kith_platform::grpc;
use kith_platform::runtime;

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
    runtime::run_service(
        kith_cohorts::SERVICE,
        kith_cohorts::service::GRPC_SERVICE,
        args.service,
        args.listen,
        async |runtime| Ok(grpc::server().add_service(kith_cohorts::start(runtime).await?.server)),
    )
    .await?;
    Ok(())
}
