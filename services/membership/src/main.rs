//! `kith-membership`: the membership service alone, as it runs in Kubernetes. Same flags as
//! `kith up`.

use clap::Parser;
use kith_platform::config::{ListenArgs, ServiceArgs};
use kith_platform::grpc;
use kith_platform::runtime;

/// Kith membership service: communities, members, roles, invitations, join requests, bans and
/// erasure, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "kith-membership", version)]
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
        kith_membership::SERVICE,
        "kith.membership.v1.MembershipService",
        args.service,
        args.listen,
        async |runtime| {
            Ok(grpc::server().add_service(kith_membership::start(runtime).await?.server))
        },
    )
    .await?;
    Ok(())
}
