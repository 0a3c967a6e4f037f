//! The gRPC server every service runs: its own services plus health (for Kubernetes probes) and
//! reflection (for grpcurl), a span per call that continues the caller's W3C trace, and a
//! graceful shutdown that reports NOT_SERVING first and drains calls in flight.

use std::net::SocketAddr;

use tokio::net::TcpListener;
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
///
/// Each call is one server span named and attributed by the OpenTelemetry RPC conventions
/// (`kith.membership.v1.MembershipService/BanMember`, `rpc.system`, `rpc.service`,
/// `rpc.method`, and once the call ends `rpc.grpc.status_code`), continuing the caller's W3C
/// trace. Everything the call does hangs off it, and the trace context it writes into the
/// command's events is this span's, so consumers across the bus hang off the server too.
pub fn server() -> tonic::transport::Server<Layers> {
    tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer)
        .trace_fn(|request: &http::Request<()>| {
            let (service, method) = crate::metrics::known_method(request.uri().path());
            let name = if service == "unknown" {
                "grpc".to_owned()
            } else {
                format!("{service}/{method}")
            };
            let span = tracing::info_span!(
                "grpc",
                otel.name = %name,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
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

/// Serves until `shutdown`, then drains calls in flight. Accepted connections get TCP_NODELAY:
/// a listener of our own skips the builder's socket options, and with Nagle's algorithm a small
/// frame (a live event, a short reply) waits for the peer's delayed ACK, 40 ms on Linux.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|err| Error::Config(format!("grpc server: {err}")))
}

/// The `domain` of every `google.rpc.ErrorInfo` Kith attaches.
pub const ERROR_DOMAIN: &str = "kith";

/// A status carrying a `google.rpc.ErrorInfo` with a stable, machine-readable `reason`, so that
/// callers never parse the message.
pub fn status_with_reason(code: Code, message: impl Into<String>, reason: &str) -> Status {
    use tonic_types::{ErrorDetails, StatusExt};
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, std::collections::HashMap::new()),
    )
}

/// The one mapping from platform errors to gRPC statuses. Internals are logged, never sent.
pub fn status_from_platform(err: &Error) -> Status {
    match err {
        Error::Conflict { .. } => status_with_reason(
            Code::Aborted,
            "the stream changed concurrently; retry the command",
            "CONCURRENT_CHANGE",
        ),
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
        Error::ShuttingDown => status_with_reason(
            Code::Unavailable,
            "the server is shutting down; retry on another replica",
            "SHUTTING_DOWN",
        ),
        Error::Unavailable(reason) => {
            tracing::warn!(%reason, "command not run");
            status_with_reason(
                Code::Unavailable,
                "temporarily unavailable; retry the command with the same request id",
                "UNAVAILABLE",
            )
        }
        Error::UnknownEventType {
            stream_id,
            event_type,
        } => {
            tracing::warn!(%stream_id, %event_type, "a newer version wrote this stream");
            status_with_reason(
                Code::Unavailable,
                format!(
                    "this replica runs an older version that cannot read {stream_id} (it holds \
                     events of type {event_type}); retry: a replica of the newer version can"
                ),
                "NEWER_VERSION_REQUIRED",
            )
        }
        Error::ProjectionStalled {
            projection,
            at,
            reason,
        } => {
            tracing::warn!(%projection, %at, %reason, "a read waits for a stopped projection");
            status_with_reason(
                Code::Unavailable,
                format!(
                    "the read model {projection} is stopped at {at} and cannot answer this read \
                     yet; operators see why in `kith status`"
                ),
                "PROJECTION_STALLED",
            )
        }
        Error::RequestReused(_) => {
            use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
            let mut details = ErrorDetails::with_bad_request(vec![FieldViolation::new(
                "request_id",
                "was already used for a different request; a retry must repeat the request exactly, a new request needs a new id",
            )]);
            details.set_error_info(
                "REQUEST_ID_REUSED",
                ERROR_DOMAIN,
                std::collections::HashMap::new(),
            );
            Status::with_error_details(
                Code::InvalidArgument,
                "request_id was already used for a different request",
                details,
            )
        }
        Error::EventTooLarge { bytes, limit } => status_with_reason(
            Code::InvalidArgument,
            format!(
                "the request would record an event of {bytes} bytes; events are limited to {limit} bytes"
            ),
            "EVENT_TOO_LARGE",
        ),
        Error::Database(db) => match crate::error::db_trouble(db) {
            crate::error::DbTrouble::Unreachable => {
                tracing::warn!(error = %db, "database unreachable");
                // An exhausted pool is load, not an outage: say so, an operator reads this.
                let busy = matches!(db, sqlx::Error::PoolTimedOut)
                    || matches!(db, sqlx::Error::Database(e) if e.code().as_deref() == Some("53300"));
                status_with_reason(
                    Code::Unavailable,
                    if busy {
                        "the database is busy (no connection came free in time); retry (a command with the same request id)"
                    } else {
                        "the database is unreachable; retry (a command with the same request id)"
                    },
                    "DATABASE_UNAVAILABLE",
                )
            }
            crate::error::DbTrouble::Contention => {
                tracing::info!(error = %db, "transaction lost a race");
                status_with_reason(
                    Code::Aborted,
                    "the transaction conflicted with another; retry",
                    "TRANSACTION_CONFLICT",
                )
            }
            crate::error::DbTrouble::Other => {
                tracing::error!(error = %db, "internal database error");
                Status::internal("internal error")
            }
        },
        Error::Nats(reason) => {
            tracing::warn!(%reason, "bus unavailable");
            status_with_reason(
                Code::Unavailable,
                "the event bus is unreachable; retry",
                "BUS_UNAVAILABLE",
            )
        }
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error")
        }
    }
}

/// Records how a call ended on the current span (its handler's): the status code and, for a
/// refusal, its ErrorInfo reason, never the message (which may hold what the caller sent: a
/// handle, a name). Logs server-side failures at WARN and a caller's mistakes and refusals at
/// DEBUG: bad input is not the operator's error. Returns the reply unchanged.
pub fn observed<T>(reply: Result<T, Status>) -> Result<T, Status> {
    let span = tracing::Span::current();
    match &reply {
        Ok(_) => {
            span.record("grpc.code", "OK");
        }
        Err(status) => {
            use tonic_types::StatusExt;
            let code = crate::metrics::code_label(status.code());
            let reason = status
                .get_details_error_info()
                .map(|info| info.reason)
                .unwrap_or_default();
            span.record("grpc.code", code);
            span.record("kith.reason", reason.as_str());
            if is_server_side(status.code()) {
                tracing::warn!(grpc.code = code, kith.reason = %reason, "call failed");
            } else {
                tracing::debug!(grpc.code = code, kith.reason = %reason, "call refused");
            }
        }
    }
    reply
}

/// Whether a status means the server (or something behind it) failed, as opposed to the caller
/// asking for something it may not have.
fn is_server_side(code: Code) -> bool {
    matches!(
        code,
        Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Unimplemented
    )
}

/// UNAUTHENTICATED with the reason.
pub fn status_from_auth(err: &AuthError) -> Status {
    status_with_reason(Code::Unauthenticated, err.to_string(), err.reason())
}
