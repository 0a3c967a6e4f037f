//! `kith-messaging`: the messaging service alone, as it runs in Kubernetes. Same flags as
//! `kith up`.

use clap::Parser;
use kith_platform::config::{ListenArgs, ServiceArgs};
use kith_platform::grpc;
use kith_platform::runtime;

/// Kith messaging service: cohort conversations, direct messages, reactions and read state over
/// gRPC. Learns who reads what from the membership and cohorts services' events on NATS.
#[derive(Debug, Parser)]
#[command(name = "kith-messaging", version)]
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
        kith_messaging::SERVICE,
        kith_messaging::service::GRPC_SERVICE,
        args.service,
        args.listen,
        async |runtime| Ok(grpc::server().add_service(kith_messaging::start(runtime).await?.server)),
    )
    .await?;
    Ok(())
}
