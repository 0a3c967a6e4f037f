//! `kith-notifications`: the notifications service alone, as it runs in Kubernetes. Same flags as
//! `kith up`.

use clap::Parser;
use kith_platform::config::{ListenArgs, ServiceArgs};
use kith_platform::grpc;
use kith_platform::runtime;

/// Kith notifications service: each member's notification feed, preferences and the reason for
/// every decision, over gRPC. Decides from the membership, cohorts and messaging services' events
/// on NATS.
#[derive(Debug, Parser)]
#[command(name = "kith-notifications", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    delivery: kith_notifications::DeliveryArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    runtime::run_service(
        kith_notifications::SERVICE,
        kith_notifications::service::GRPC_SERVICE,
        args.service,
        args.listen,
        async |runtime| {
            Ok(grpc::server().add_service(kith_notifications::start(runtime).await?.server))
        },
    )
    .await?;
    Ok(())
}
