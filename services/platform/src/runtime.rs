//! What a running service gets from the process: its database schema, the bus, the
//! authenticator, and background tasks (relay, projections, consumers) that stop in order on
//! shutdown. `kith up` shares one runtime between every service; a service binary has its own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::ServingStatus;

use crate::auth::Authenticator;
use crate::config::ServiceArgs;
use crate::db::{self, Migration, Schema};
use crate::eventlog::EventLog;
use crate::grpc::Router;
use crate::projection::{
    self, BusSource, CheckpointNotices, CheckpointWatch, LOG_SOURCE, LogProjector, Progress,
    Projection,
};
use crate::relay::{self, RelayConfig};
use crate::{Result, bus, grpc};

/// Shared by the services of one process.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub args: ServiceArgs,
    pub jetstream: jetstream::Context,
    pub authenticator: Authenticator,
    /// Cancelled after the gRPC server has drained: background work then finishes its batch.
    pub background: CancellationToken,
    pub tasks: TaskTracker,
    /// Each service's checkpoint notices, by service.
    notices: Arc<Mutex<HashMap<String, CheckpointNotices>>>,
    /// Each service's pool, by service, for health checks.
    pools: Arc<Mutex<Vec<(String, PgPool)>>>,
}

impl Runtime {
    /// Connects to NATS and makes sure the database exists.
    pub async fn connect(args: ServiceArgs) -> Result<Self> {
        db::ensure_database(&args.database.database_url).await?;
        let client = bus::connect(&args.nats.nats_url, "kith").await?;
        let authenticator = args.auth.authenticator()?;
        args.sealing.install()?;
        Ok(Self {
            jetstream: bus::jetstream(client),
            authenticator,
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
            notices: Arc::default(),
            pools: Arc::default(),
            args,
        })
    }

    /// The event log of `service` in `pool`, refusing events larger than the bus carries.
    pub fn event_log(&self, service: &str, pool: &PgPool) -> EventLog {
        let max_payload = self.jetstream.client().server_info().max_payload;
        let limit = if max_payload > relay::HEADER_ALLOWANCE {
            max_payload - relay::HEADER_ALLOWANCE
        } else {
            crate::eventlog::DEFAULT_MAX_EVENT_BYTES
        };
        let log = EventLog::new(pool.clone())
            .for_service(service)
            .with_max_event_bytes(limit);
        // Appends made on any replica wake this process's relay and projections, which then poll
        // only rarely while idle.
        self.notices(service).wake_on_appends(log.appended());
        if let Ok(schema) = Schema::parse(service) {
            self.tasks
                .spawn(crate::projection::notices::announce_appends(
                    pool.clone(),
                    schema,
                    log.committed_here(),
                    self.background.clone(),
                ));
        }
        log
    }

    fn pools(&self) -> Vec<(String, PgPool)> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The checkpoint notices of `service` (listening since its [`Runtime::database`]).
    fn notices(&self, service: &str) -> CheckpointNotices {
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
            .unwrap_or_default()
    }

    /// A migrated pool for `service`, in the schema of the same name.
    pub async fn database(
        &self,
        service: &str,
        migrations: &[Migration],
    ) -> Result<(Schema, PgPool)> {
        let schema = Schema::parse(service)?;
        let pool = db::connect_patiently(
            &self.args.database.database_url,
            &schema,
            self.args.database.database_max_connections,
            db::STARTUP_PATIENCE,
        )
        .await?;
        db::migrate(&pool, &schema, service, migrations).await?;
        crate::metrics::metrics().watch_pool(service, &pool);
        let notices = CheckpointNotices::listen(pool.clone(), &schema, self.background.clone());
        self.notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(service.to_owned(), notices);
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((service.to_owned(), pool.clone()));
        Ok((schema, pool))
    }

    /// Starts the relay of `service`'s log to its JetStream stream.
    pub async fn spawn_relay(&self, service: &str, schema: &Schema, log: &EventLog) -> Result<()> {
        let stream = self.args.nats.stream_for(service);
        stream.ensure(&self.jetstream).await?;
        let config = RelayConfig {
            schema: schema.clone(),
            stream,
            batch_size: 1000,
            poll_interval: IDLE_POLL,
            published: relay::Published::default(),
        };
        self.tasks.spawn(crate::lag::sample_relay(
            log.clone(),
            self.jetstream.clone(),
            config.stream.clone(),
            config.published.clone(),
            service.to_owned(),
            self.background.clone(),
        ));
        self.tasks.spawn(relay::run(
            config,
            log.clone(),
            self.jetstream.clone(),
            self.background.clone(),
        ));
        Ok(())
    }

    /// Creates the projection's tables and starts feeding it from the service's own log.
    pub async fn spawn_log_projection(
        &self,
        log: &EventLog,
        projection: Arc<dyn Projection>,
    ) -> Result<Progress> {
        if projection::create_tables(log.pool(), projection.as_ref()).await? {
            self.rebuild_before_serving(log, projection.as_ref())
                .await?;
        }
        let watch = self
            .notices(log.service())
            .watch(projection.name(), LOG_SOURCE);
        let projection_name = projection.name();
        let projector = LogProjector::new(log.pool().clone(), projection, log.appended())
            .for_service(log.service())
            .watched_by(watch);
        let progress = projector.progress();
        self.tasks.spawn(crate::lag::sample_log_projection(
            log.pool().clone(),
            crate::metrics::SourceLabels::new(log.service(), projection_name, LOG_SOURCE),
            self.background.clone(),
        ));
        self.tasks.spawn(projector.run(self.background.clone()));
        Ok(progress)
    }

    /// Rebuilds a projection that gained a table (a new version) from the log before it serves.
    /// A replica that finds another one rebuilding waits for it to finish.
    async fn rebuild_before_serving(
        &self,
        log: &EventLog,
        projection: &dyn Projection,
    ) -> Result<()> {
        let schema = crate::db::Schema::parse(log.service())?;
        loop {
            tracing::info!(
                projection = projection.name(),
                "the projection gained a table; rebuilding it from the log before serving"
            );
            match projection::rebuild(
                &self.args.database.database_url,
                &schema,
                projection,
                |_, _| {},
            )
            .await
            {
                Ok(report) => {
                    tracing::info!(
                        projection = projection.name(),
                        events = report.events,
                        seconds = report.seconds,
                        "projection rebuilt"
                    );
                    return Ok(());
                }
                Err(crate::Error::Stuck(reason)) => {
                    tracing::info!(projection = projection.name(), %reason, "waiting for the rebuild another replica runs");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if !projection::create_tables(log.pool(), projection).await? {
                        return Ok(());
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Creates the projection's tables and starts feeding it from another service's stream.
    /// Returns a watch on its checkpoint, for waiting on it from any replica.
    pub async fn spawn_bus_projection(
        &self,
        pool: &PgPool,
        source: BusSource,
        projection: Arc<dyn Projection>,
    ) -> Result<CheckpointWatch> {
        if projection::create_tables(pool, projection.as_ref()).await? {
            tracing::warn!(
                projection = projection.name(),
                "the projection gained a table, empty of what was applied before; run `kith rebuild --service {}`",
                source.service
            );
        }
        let watch = self
            .notices(&source.service)
            .watch(projection.name(), &source.key())
            .reporting_stalls(pool, projection.name(), &source.key());
        self.tasks.spawn(crate::lag::sample_bus_projection(
            pool.clone(),
            self.jetstream.clone(),
            source.stream.clone(),
            crate::metrics::SourceLabels::new(&source.service, projection.name(), &source.key()),
            self.background.clone(),
        ));
        self.tasks.spawn(projection::run_bus_source(
            pool.clone(),
            self.jetstream.clone(),
            source,
            projection,
            self.background.clone(),
        ));
        Ok(watch)
    }

    /// Serves this process's Prometheus metrics on `addr` until the runtime stops; returns the
    /// bound address (useful with port 0).
    pub async fn serve_metrics(&self, addr: SocketAddr) -> Result<SocketAddr> {
        crate::metrics::serve(addr, self.background.clone()).await
    }

    /// Stops background work (each task finishes the batch in hand) and waits for it.
    pub async fn stop(&self) {
        self.background.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Serves `router` (plus health and reflection) on `listen` until `shutdown`, then drains calls
/// in flight and stops the runtime's background work. `on_ready` gets the bound address (useful
/// with port 0).
pub async fn serve(
    runtime: &Runtime,
    listen: SocketAddr,
    router: Router,
    services: &[&str],
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    runtime
        .args
        .auth
        .check_exposure(&runtime.authenticator, listen)?;
    let (router, health) = grpc::with_standard_services(router)?;
    let (listener, addr) = grpc::bind(listen).await?;
    for service in services.iter().copied().chain(["", READINESS]) {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    on_ready(addr);
    let readiness = tokio::spawn(watch_readiness(
        runtime.pools(),
        health.clone(),
        services.iter().map(|s| (*s).to_owned()).collect(),
        shutdown.clone(),
    ));
    let stopping = {
        let health = health.clone();
        let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for service in services.iter().map(String::as_str).chain(["", READINESS]) {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
        })
    };
    let served = grpc::serve(listener, router, shutdown).await;
    let _ = readiness.await;
    let _ = stopping.await;
    tracing::info!("grpc server drained; stopping background work");
    runtime.stop().await;
    served
}

/// The health service name that says whether this process can serve calls now (Kubernetes'
/// readiness probe). The overall status (`""`) is liveness: it stays SERVING while the database is
/// out of reach, since a restart would not bring it back and the process recovers by itself.
pub const READINESS: &str = "readiness";

/// How often an idle relay looks at the log without being woken: appends on every replica wake
/// it at once (an in-process notice, or a PostgreSQL notification from another process), so this
/// is only the safety net for a notification lost while a listener reconnected.
const IDLE_POLL: Duration = Duration::from_secs(5);

/// How often readiness checks the databases, and how long a check may take.
const READINESS_EVERY: Duration = Duration::from_secs(2);

/// Reports NOT_SERVING on [`READINESS`] and on every service name while any of the process's
/// databases does not answer (twice in a row, so one slow answer does not flap it), SERVING again
/// as soon as they all do, until `shutdown`.
async fn watch_readiness(
    pools: Vec<(String, PgPool)>,
    health: tonic_health::server::HealthReporter,
    services: Vec<String>,
    shutdown: CancellationToken,
) {
    let mut failures = 0u32;
    let mut ready = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(READINESS_EVERY) => {}
        }
        let mut down = None;
        for (service, pool) in &pools {
            let answered =
                tokio::time::timeout(READINESS_EVERY, sqlx::query("SELECT 1").execute(pool)).await;
            if !matches!(answered, Ok(Ok(_))) {
                down = Some(service.clone());
                break;
            }
        }
        failures = if down.is_some() { failures + 1 } else { 0 };
        let now_ready = failures < 2;
        if now_ready == ready || shutdown.is_cancelled() {
            continue;
        }
        ready = now_ready;
        let status = if ready {
            tracing::info!("database reachable again: ready");
            ServingStatus::Serving
        } else {
            tracing::warn!(service = ?down, "database unreachable: not ready (calls answer UNAVAILABLE)");
            ServingStatus::NotServing
        };
        for service in services.iter().map(String::as_str).chain([READINESS]) {
            health.set_service_status(service, status).await;
        }
    }
}

/// The whole life of a service's own binary: telemetry, signals, the runtime, metrics, then the
/// gRPC server `start` builds, until SIGTERM/SIGINT. Prints the metrics and gRPC addresses.
pub async fn run_service(
    service: &str,
    grpc_service: &str,
    args: crate::config::ServiceArgs,
    listen: crate::config::ListenArgs,
    start: impl AsyncFnOnce(&Runtime) -> Result<Router>,
) -> Result<()> {
    let _telemetry = crate::telemetry::init(&format!("kith-{service}"));
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let runtime = Runtime::connect(args).await?;
    let metrics = runtime.serve_metrics(listen.metrics_listen).await?;
    println!("metrics: http://{metrics}/metrics");
    let router = start(&runtime).await?;
    serve(
        &runtime,
        listen.listen,
        router,
        &[grpc_service],
        shutdown,
        |addr| println!("kith-{service} serving gRPC on {addr}"),
    )
    .await
}

static HELPERS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Records a process this one started in its own process group (an embedded database, say) so
/// that an exit forced by a second signal still asks the group to stop.
pub fn register_helper_process(pid: u32) {
    HELPERS.lock().unwrap_or_else(|p| p.into_inner()).push(pid);
}

fn helper_processes() -> Vec<u32> {
    HELPERS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Cancels `token` on SIGINT or SIGTERM; a second signal exits at once.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining (signal again to exit at once)");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        for pid in helper_processes() {
            // Each helper leads its own process group.
            let _ = std::process::Command::new("kill")
                .args(["-INT", "--", &format!("-{pid}")])
                .status();
        }
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::error!(error = %err, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
