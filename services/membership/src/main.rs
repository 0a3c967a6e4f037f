//! `kith-membership`: the membership service alone, as it runs in Kubernetes. Same flags as
//! `kith up`.

use clap::Parser;
use kith_platform::config::{ListenArgs, ServiceArgs};
use kith_platform::runtime::{self, Runtime};
use kith_platform::{grpc, telemetry};
use tokio_util::sync::CancellationToken;

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
    let _telemetry = telemetry::init(kith_membership::SERVICE);
    let shutdown = CancellationToken::new();
    runtime::cancel_on_signal(shutdown.clone());
    let runtime = Runtime::connect(args.service).await?;
    let membership = kith_membership::start(&runtime).await?;
    let metrics = runtime.serve_metrics(args.listen.metrics_listen).await?;
    println!("metrics: http://{metrics}/metrics");
    let router = grpc::server().add_service(membership.server);
    runtime::serve(
        &runtime,
        args.listen.listen,
        router,
        &["kith.membership.v1.MembershipService"],
        shutdown,
        |addr| println!("kith-membership serving gRPC on {addr}"),
    )
    .await?;
    Ok(())
}
