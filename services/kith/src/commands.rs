//! The `kith` commands other than benchmarks.

use std::sync::Arc;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kith_platform::config::{
    AuthArgs, DatabaseArgs, ListenArgs, NatsArgs, SealingArgs, ServiceArgs,
};
use kith_platform::db::{self, Schema};
use kith_platform::runtime::{self, Runtime};
use kith_platform::{auth, projection, telemetry};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::embedded::Embedded;

/// A service this binary runs: adding a service to Kith is one entry here and one `start` in
/// [`up`].
struct Service {
    name: &'static str,
    /// The projections of its own log, which `rebuild` can replay.
    projections: fn(&sqlx::PgPool) -> Vec<Arc<dyn projection::Projection>>,
    /// The projections fed from other services' streams, which `rebuild` replays from the bus.
    bus_projections: fn(&NatsArgs) -> Vec<projection::FromBus>,
}

const SERVICES: &[Service] = &[
    Service {
        name: kith_membership::SERVICE,
        projections: kith_membership::projections,
        bus_projections: kith_membership::bus_projections,
    },
    Service {
        name: kith_cohorts::SERVICE,
        projections: kith_cohorts::projections,
        bus_projections: kith_cohorts::bus_projections,
    },
    Service {
        name: kith_messaging::SERVICE,
        projections: kith_messaging::projections,
        bus_projections: kith_messaging::bus_projections,
    },
    Service {
        name: kith_notifications::SERVICE,
        projections: kith_notifications::projections,
        bus_projections: kith_notifications::bus_projections,
    },
];

pub(crate) fn service_names() -> Vec<&'static str> {
    SERVICES.iter().map(|s| s.name).collect()
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    listen: ListenArgs,
    #[command(flatten)]
    delivery: kith_notifications::DeliveryArgs,
    /// Where PostgreSQL and NATS keep their data when `kith up` starts them itself (when nothing
    /// answers at a local --database-url or --nats-url).
    #[arg(long, env = "KITH_DATA_DIR", default_value = ".kith")]
    data_dir: std::path::PathBuf,
    /// Never start PostgreSQL or NATS; fail if they do not answer.
    #[arg(long, env = "KITH_NO_EMBEDDED")]
    no_embedded: bool,
    /// Run only these services (comma-separated or repeated), e.g. one per process as in
    /// production; every service when omitted. They still talk only through NATS.
    #[arg(
        long = "service",
        env = "KITH_SERVICES",
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(service_names())
    )]
    services: Vec<String>,
}

impl UpArgs {
    fn runs(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|name| name == service)
    }

    /// The services this process runs, in the order of [`SERVICES`].
    fn chosen(&self) -> Vec<&'static str> {
        service_names()
            .into_iter()
            .filter(|name| self.runs(name))
            .collect()
    }
}

pub(crate) async fn up(args: UpArgs) -> anyhow::Result<()> {
    // Spans are reported under the service's own name when the process runs one.
    let chosen = args.chosen();
    let telemetry_name = match chosen.as_slice() {
        [one] => format!("kith-{one}"),
        _ => "kith".to_owned(),
    };
    let _telemetry = telemetry::init(&telemetry_name);
    let embedded = if args.no_embedded {
        Embedded::default()
    } else {
        Embedded::ensure(
            &args.service.database.database_url,
            &args.service.nats.nats_url,
            &args.data_dir,
        )
        .await?
    };
    let served = serve_all(args).await;
    embedded.stop().await;
    served
}

async fn serve_all(args: UpArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    runtime::cancel_on_signal(shutdown.clone());
    let runtime = Runtime::connect(args.service.clone())
        .await
        .context("connecting to PostgreSQL and NATS (are they running? see README)")?;
    let metrics = runtime
        .serve_metrics(args.listen.metrics_listen)
        .await
        .context("serving metrics")?;
    let chosen = args.chosen();
    let membership = match args.runs(kith_membership::SERVICE) {
        true => Some(
            kith_membership::start(&runtime)
                .await
                .context("starting membership")?,
        ),
        false => None,
    };
    let cohorts = match args.runs(kith_cohorts::SERVICE) {
        true => Some(
            kith_cohorts::start(&runtime)
                .await
                .context("starting cohorts")?,
        ),
        false => None,
    };
    let messaging = match args.runs(kith_messaging::SERVICE) {
        true => Some(
            kith_messaging::start(&runtime)
                .await
                .context("starting messaging")?,
        ),
        false => None,
    };
    let notifications = match args.runs(kith_notifications::SERVICE) {
        true => Some(
            kith_notifications::start_with(&runtime, args.delivery.clone())
                .await
                .context("starting notifications")?,
        ),
        false => None,
    };
    let mut names = Vec::new();
    if membership.is_some() {
        names.push("kith.membership.v1.MembershipService");
    }
    if cohorts.is_some() {
        names.push(kith_cohorts::service::GRPC_SERVICE);
    }
    if messaging.is_some() {
        names.push(kith_messaging::service::GRPC_SERVICE);
    }
    if notifications.is_some() {
        names.push(kith_notifications::GRPC_SERVICE);
    }
    let router = kith_platform::grpc::server()
        .add_optional_service(membership.map(|started| started.server))
        .add_optional_service(cohorts.map(|started| started.server))
        .add_optional_service(messaging.map(|started| started.server))
        .add_optional_service(notifications.map(|started| started.server));
    runtime::serve(
        &runtime,
        args.listen.listen,
        router,
        &names,
        shutdown,
        |addr| {
            tracing::info!(%addr, services = ?chosen, "kith is serving");
            println!("kith is serving gRPC on {addr} ({})", chosen.join(", "));
            println!("metrics: http://{metrics}/metrics");
            println!("try: grpcurl -plaintext {addr} list");
        },
    )
    .await?;
    tracing::info!("kith stopped");
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// Only this service's schema (each service has its own database in production); every
    /// service when omitted.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(service_names()))]
    service: Option<String>,
    #[command(flatten)]
    database: DatabaseArgs,
}

pub(crate) async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("kith");
    db::ensure_database(&args.database.database_url).await?;
    let chosen = SERVICES
        .iter()
        .filter(|s| args.service.as_deref().is_none_or(|name| name == s.name));
    for service in chosen {
        let schema = Schema::parse(service.name)?;
        let pool = db::connect(&args.database.database_url, &schema, 2).await?;
        db::migrate(&pool, &schema, service.name, &[]).await?;
        for projection in (service.projections)(&pool) {
            projection::create_tables(&pool, projection.as_ref()).await?;
        }
        println!("{}: migrated", service.name);
        pool.close().await;
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The member id (a UUID) the token speaks for; a new one is made when omitted.
    #[arg(long)]
    member: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    #[command(flatten)]
    auth: AuthArgs,
}

pub(crate) fn token(args: TokenArgs) -> anyhow::Result<()> {
    let member = match args.member.as_deref() {
        Some(raw) => raw
            .parse::<Uuid>()
            .map_err(|_| anyhow::anyhow!("--member must be a UUID, got {raw:?}"))?,
        None => {
            let member = Uuid::new_v4();
            eprintln!("member id: {member}");
            member
        }
    };
    if args.ttl == 0 {
        bail!("--ttl must be at least 1 second");
    }
    println!("{}", member_token(&args.auth, member, args.ttl)?);
    Ok(())
}

/// A development token (HS256) for `member`, valid for `ttl` seconds, with the issuer and
/// audience the servers are told to expect so that it passes them.
pub(crate) fn member_token(auth: &AuthArgs, member: Uuid, ttl: u64) -> anyhow::Result<String> {
    let claims = auth::Claims {
        iss: Some(
            auth.jwt_issuer
                .first()
                .cloned()
                .unwrap_or_else(|| "kith-dev".to_owned()),
        ),
        aud: auth.jwt_audience.first().cloned(),
        ..auth::Claims::for_member(member, ttl)
    };
    Ok(auth::mint(
        &claims,
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(auth.secret().as_bytes()),
    )?)
}

#[derive(Debug, clap::Args)]
pub(crate) struct RebuildArgs {
    /// The service whose projections to rebuild.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(service_names()))]
    service: String,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    sealing: SealingArgs,
}

fn progress_bar(name: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(name.to_owned());
    bar
}

pub(crate) async fn rebuild(args: RebuildArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("kith");
    args.sealing.install()?;
    let schema = Schema::parse(&args.service)?;
    let pool = db::connect(&args.database.database_url, &schema, 2).await?;
    let service = SERVICES
        .iter()
        .find(|s| s.name == args.service)
        .context("unknown service")?;
    for projection in (service.projections)(&pool) {
        let bar = progress_bar(projection.name());
        let report = projection::rebuild(
            &args.database.database_url,
            &schema,
            projection.as_ref(),
            |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        )
        .await?;
        bar.finish();
        println!(
            "{}.{}: rebuilt from {} events in {:.2}s",
            args.service,
            projection.name(),
            report.events,
            report.seconds
        );
    }
    let from_bus = (service.bus_projections)(&args.nats);
    if !from_bus.is_empty() {
        let client = kith_platform::bus::connect(&args.nats.nats_url, "kith-rebuild").await?;
        let js = kith_platform::bus::jetstream(client);
        for (source, projection) in from_bus {
            let bar = progress_bar(projection.name());
            let report = projection::rebuild_from_bus(
                &args.database.database_url,
                &schema,
                &js,
                &source,
                projection.as_ref(),
                |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                },
            )
            .await?;
            bar.finish();
            println!(
                "{}.{}: rebuilt from {} events of {} in {:.2}s",
                args.service,
                projection.name(),
                report.events,
                source.stream,
                report.seconds
            );
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub(crate) struct RepublishArgs {
    /// The service whose stream to rebuild from its log.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(service_names()))]
    service: String,
    /// Delete the stream even though it still holds messages (otherwise only an empty or missing
    /// stream is rebuilt without asking).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    nats: NatsArgs,
}

/// Deletes the service's stream and publishes its whole log again, in log order, while the
/// service's relays stand aside. Consumers of the stream find their place again by the event id
/// their checkpoints name.
pub(crate) async fn republish(args: RepublishArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("kith");
    let schema = Schema::parse(&args.service)?;
    let pool = db::connect(&args.database.database_url, &schema, 2).await?;
    let client = kith_platform::bus::connect(&args.nats.nats_url, "kith-republish").await?;
    let js = kith_platform::bus::jetstream(client);
    let spec = args.nats.stream_for(&args.service);
    if let Ok(mut stream) = js.get_stream(&spec.name).await {
        let state = stream.info().await?.state.clone();
        if state.messages > 0 && !args.yes {
            bail!(
                "stream {} still holds {} messages (sequences {} to {}); republishing deletes it and \
                 publishes the log again. Pass --yes to go ahead",
                spec.name,
                state.messages,
                state.first_sequence,
                state.last_sequence
            );
        }
    }
    let log = kith_platform::eventlog::EventLog::new(pool.clone()).for_service(&args.service);
    eprintln!(
        "taking the {} relay's leadership; its relays pause meanwhile",
        args.service
    );
    let bar = progress_bar(&spec.name);
    let published = kith_platform::relay::republish(&spec, &schema, &log, &js, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish();
    println!(
        "{}: republished {published} events to {}; the relays continue from there",
        args.service, spec.name
    );
    pool.close().await;
    Ok(())
}
