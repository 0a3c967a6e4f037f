//! The gRPC server every service runs: its own services plus health (for Kubernetes probes) and
//! reflection (for grpcurl), a span per call that continues the caller's W3C trace, and a
//! graceful shutdown that reports NOT_SERVING first and drains calls in flight.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::transport::server::Router as TonicRouter;
use tower::layer::util::{Identity, Stack};

use crate::metrics::GrpcMetricsLayer;

/// The layers every Kith server runs calls through.
pub type Layers = Stack<GrpcMetricsLayer, Identity>;
/// A router of Kith services.
pub type Router = TonicRouter<Layers>;
use tonic::{Code, Status};
use tonic_health::server::HealthReporter;

use crate::auth::AuthError;
use crate::{Error, telemetry};

/// A server builder with the platform's per-call tracing and metrics.
pub fn server() -> tonic::transport::Server<Layers> {
    tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer)
        .trace_fn(|request: &http::Request<()>| {
            let span = tracing::info_span!(
                "grpc",
                rpc.method = %request.uri().path(),
                otel.kind = "server",
                grpc.code = tracing::field::Empty,
            );
            telemetry::continue_trace(&span, request.headers());
            span
        })
}

/// Adds health and reflection to `router`. Returns the router and the health reporter whose
/// status the caller sets to SERVING once ready.
pub fn with_standard_services(router: Router) -> Result<(Router, HealthReporter), Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(kith_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = builder()
        .build_v1()
        .map_err(|err| Error::Config(format!("reflection: {err}")))?;
    // Older grpcurl and other tools still speak only the v1alpha protocol.
    let reflection_alpha = builder()
        .build_v1alpha()
        .map_err(|err| Error::Config(format!("reflection: {err}")))?;
    Ok((
        router
            .add_service(health)
            .add_service(reflection)
            .add_service(reflection_alpha),
        reporter,
    ))
}

/// Binds `addr` (port 0 picks a free port; the bound address is returned with the listener).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| Error::Config(format!("cannot listen on {addr}: {err}")))?;
    let local = listener
        .local_addr()
        .map_err(|err| Error::Config(format!("listener address: {err}")))?;
    Ok((listener, local))
}

/// Serves until `shutdown`, then drains calls in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await
        .map_err(|err| Error::Config(format!("grpc server: {err}")))
}

/// The one mapping from platform errors to gRPC statuses. Internals are logged, never sent.
pub fn status_from_platform(err: &Error) -> Status {
    match err {
        Error::Conflict { .. } => {
            Status::aborted("the stream changed concurrently; retry the command")
        }
        Error::WaitTimeout(position) => Status::deadline_exceeded(format!(
            "the read model has not reached position {position} yet; retry shortly"
        )),
        Error::UnknownPosition(position) => {
            let mut violations = crate::validation::Violations::new();
            violations.add(
                "min_position",
                format!("{position} is not a position this service returned"),
            );
            violations
                .finish()
                .err()
                .unwrap_or_else(|| Status::invalid_argument("min_position"))
        }
        Error::ShuttingDown => Status::unavailable("the server is shutting down"),
        Error::Unavailable(reason) => {
            tracing::warn!(%reason, "command not run");
            Status::unavailable("temporarily unavailable; retry the command")
        }
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error")
        }
    }
}

/// UNAUTHENTICATED with the reason.
pub fn status_from_auth(err: &AuthError) -> Status {
    Status::new(Code::Unauthenticated, err.to_string())
}
