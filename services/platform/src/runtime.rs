//! What a running service gets from the process: its database schema, the bus, the
//! authenticator, and background tasks (relay, projections, consumers) that stop in order on
//! shutdown. `kith up` shares one runtime between every service; a service binary has its own.

use std::net::SocketAddr;
use std::sync::Arc;
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
use crate::projection::{self, BusSource, LogProjector, Progress, Projection};
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
}

impl Runtime {
    /// Connects to NATS and makes sure the database exists.
    pub async fn connect(args: ServiceArgs) -> Result<Self> {
        db::ensure_database(&args.database.database_url).await?;
        let client = bus::connect(&args.nats.nats_url, "kith").await?;
        let authenticator = args.auth.authenticator()?;
        Ok(Self {
            jetstream: bus::jetstream(client),
            authenticator,
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
            args,
        })
    }

    /// A migrated pool for `service`, in the schema of the same name.
    pub async fn database(
        &self,
        service: &str,
        migrations: &[Migration],
    ) -> Result<(Schema, PgPool)> {
        let schema = Schema::parse(service)?;
        let pool = db::connect(
            &self.args.database.database_url,
            &schema,
            self.args.database.database_max_connections,
        )
        .await?;
        db::migrate(&pool, &schema, service, migrations).await?;
        crate::metrics::metrics().watch_pool(service, &pool);
        Ok((schema, pool))
    }

    /// Starts the relay of `service`'s log to its JetStream stream.
    pub async fn spawn_relay(&self, service: &str, schema: &Schema, log: &EventLog) -> Result<()> {
        let stream = self.args.nats.stream_for(service);
        stream.ensure(&self.jetstream).await?;
        let config = RelayConfig {
            database_url: self.args.database.database_url.clone(),
            schema: schema.clone(),
            stream,
            batch_size: 1000,
            poll_interval: Duration::from_millis(20),
        };
        self.tasks.spawn(relay::run(
            config,
            self.jetstream.clone(),
            log.appended(),
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
        projection::create_tables(log.pool(), projection.as_ref()).await?;
        let projector = LogProjector::new(log.pool().clone(), projection, log.appended())
            .for_service(log.service());
        let progress = projector.progress();
        self.tasks.spawn(projector.run(self.background.clone()));
        Ok(progress)
    }

    /// Creates the projection's tables and starts feeding it from another service's stream.
    pub async fn spawn_bus_projection(
        &self,
        pool: &PgPool,
        source: BusSource,
        projection: Arc<dyn Projection>,
    ) -> Result<()> {
        projection::create_tables(pool, projection.as_ref()).await?;
        self.tasks.spawn(projection::run_bus_source(
            pool.clone(),
            self.jetstream.clone(),
            source,
            projection,
            self.background.clone(),
        ));
        Ok(())
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
    let (router, health) = grpc::with_standard_services(router)?;
    let (listener, addr) = grpc::bind(listen).await?;
    for service in services.iter().copied().chain([""]) {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    on_ready(addr);
    let stopping = {
        let health = health.clone();
        let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            for service in services.iter().map(String::as_str).chain([""]) {
                health
                    .set_service_status(service, ServingStatus::NotServing)
                    .await;
            }
        })
    };
    let served = grpc::serve(listener, router, shutdown).await;
    let _ = stopping.await;
    tracing::info!("grpc server drained; stopping background work");
    runtime.stop().await;
    served
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
    let _telemetry = crate::telemetry::init(service);
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
