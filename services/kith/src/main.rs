//! `kith`: every Kith service in one process on one port, and the operator and analyst commands.

mod bench;
mod bench_cohorts;
mod bench_messaging;
mod bench_notifications;
mod bench_projections;
mod bench_replay;
mod commands;
mod demo;
mod embedded;
mod events;
mod notifications;
mod report;
mod status;

use clap::{Parser, Subcommand};

/// Kith: the backend for micro-communities (groups of fewer than 30 people inside larger
/// communities).
///
/// Every flag also reads an environment variable (shown in each command's --help); the defaults
/// work against a local PostgreSQL (127.0.0.1:5432, user postgres) and NATS with JetStream
/// (127.0.0.1:4222).
#[derive(Debug, Parser)]
#[command(name = "kith", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in this process, on one gRPC port (default 127.0.0.1:50051). When
    /// nothing answers at a local PostgreSQL or NATS address, start them under .kith/ first.
    Up(Box<commands::UpArgs>),
    /// Create the database if needed and apply every service's migrations, then exit.
    Migrate(commands::MigrateArgs),
    /// Print a development JWT (HS256) for a member id, for grpcurl and tests.
    Token(commands::TokenArgs),
    /// Rebuild a service's projections from its event log, with progress, then exit.
    Rebuild(commands::RebuildArgs),
    /// Show each service's relay, each projection's checkpoint, lag and why it is stopped if
    /// it is, and the oldest open transaction; exits non-zero when something is stuck.
    Status(status::StatusArgs),
    /// Rebuild a service's JetStream stream from its event log (after a purge, an age limit or a
    /// lost NATS store), with progress, then exit.
    Republish(commands::RepublishArgs),
    /// Play a small mastermind's first day (a community, a cohort with a waitlist, a session,
    /// threads, replies, reactions) through a running `kith up`'s gRPC API, to have something
    /// to report on and export.
    Demo(demo::DemoArgs),
    /// Measure the platform against raw PostgreSQL and NATS on this machine.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Read the services' events for analysis: decoded, merged in recorded order.
    #[command(subcommand)]
    Events(events::Events),
    /// Replay every service's events from their streams (from the start, or --from a time; or
    /// their logs with --source postgres), merged in recorded order and decoded: the same
    /// command as `kith events export`.
    Replay(events::ExportArgs),
    /// Reports computed from the raw events, under definitions printed with them.
    #[command(subcommand)]
    Report(report::Report),
    /// What the notifications service holds for an operator: parked deliveries, and sending
    /// them on.
    #[command(subcommand)]
    Notifications(notifications::Notifications),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("kith: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => commands::up(*args).await,
            Command::Migrate(args) => commands::migrate(args).await,
            Command::Token(args) => commands::token(args),
            Command::Rebuild(args) => commands::rebuild(args).await,
            Command::Republish(args) => commands::republish(args).await,
            Command::Status(args) => status::status(args).await,
            Command::Bench(bench) => bench::run(bench).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Events(events) => events::run(events).await,
            Command::Replay(args) => events::run(events::Events::Export(args)).await,
            Command::Report(report) => report::run(report).await,
            Command::Notifications(command) => notifications::run(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kith: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
