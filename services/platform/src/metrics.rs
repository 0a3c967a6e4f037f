//! Prometheus metrics of a process: gRPC calls by method and code with latency histograms, log
//! appends and conflicts, relay lag, projection lag per source (events and seconds), consumer
//! redeliveries and database pool use. Every component records into the process-wide
//! [`metrics()`], labelled by service, and [`serve`] answers scrapes on their own port.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub service: String,
    pub projection: String,
    pub source: String,
}

/// A notification delivery step: the channel (`email`, `webhook`) and what happened (`held`,
/// `attempted`, `sent`, `failed`, `parked`, `cancelled`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub channel: String,
    pub outcome: String,
}

/// A notification channel (`email`, `webhook`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UnknownEventLabels {
    pub projection: String,
    pub event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub service: String,
    pub state: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics of this process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub grpc_requests: Family<CallLabels, Counter>,
    pub grpc_duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub appended: Family<ServiceLabels, Counter>,
    pub conflicts: Family<ServiceLabels, Counter>,
    pub relay_lag: Family<ServiceLabels, Gauge>,
    pub relay_leader: Family<ServiceLabels, Gauge>,
    pub oldest_transaction: Family<ServiceLabels, Gauge<f64, AtomicU64>>,
    pub projection_lag_events: Family<SourceLabels, Gauge>,
    pub projection_lag_seconds: Family<SourceLabels, Gauge<f64, AtomicU64>>,
    pub redeliveries: Family<SourceLabels, Counter>,
    pub set_aside: Family<SourceLabels, Counter>,
    pub unknown_events: Family<UnknownEventLabels, Counter>,
    pub notification_deliveries: Family<DeliveryLabels, Counter>,
    pub notifications_parked: Family<ChannelLabels, Gauge>,
    pub projection_stalled: Family<SourceLabels, Gauge>,
    pool_connections: Family<PoolLabels, Gauge>,
    pool_max: Family<ServiceLabels, Gauge>,
    pools: Mutex<Vec<(String, PgPool)>>,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let grpc_requests = Family::<CallLabels, Counter>::default();
        registry.register(
            "kith_grpc_requests",
            "gRPC calls answered, by service, method and status code",
            grpc_requests.clone(),
        );
        let grpc_duration =
            Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "kith_grpc_request_duration_seconds",
            "gRPC call latency from request to the end of the response",
            grpc_duration.clone(),
        );
        let appended = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "kith_events_appended",
            "events appended to the service's log",
            appended.clone(),
        );
        let conflicts = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "kith_append_conflicts",
            "appends refused because another writer moved the stream first",
            conflicts.clone(),
        );
        let relay_lag = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "kith_relay_lag_events",
            "log positions not yet published to JetStream (on the relay leader)",
            relay_lag.clone(),
        );
        let oldest_transaction = Family::<ServiceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "kith_db_oldest_transaction_seconds",
            "age of the oldest open transaction in the service's database; the log's tail (relay, \
             projections) cannot pass the events it may still commit",
            oldest_transaction.clone(),
        );
        let relay_leader = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "kith_relay_leader",
            "1 while this process leads the service's relay",
            relay_leader.clone(),
        );
        let projection_lag_events = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "kith_projection_lag_events",
            "events of a source not yet applied to a projection",
            projection_lag_events.clone(),
        );
        let projection_lag_seconds = Family::<SourceLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "kith_projection_lag_seconds",
            "age of the oldest event of a source not yet applied to a projection (0 when caught up)",
            projection_lag_seconds.clone(),
        );
        let redeliveries = Family::<SourceLabels, Counter>::default();
        registry.register(
            "kith_consumer_redeliveries",
            "bus messages delivered to a consumer more than once",
            redeliveries.clone(),
        );
        let set_aside = Family::<SourceLabels, Counter>::default();
        registry.register(
            "kith_consumer_set_aside",
            "messages on a consumed stream that are not Kith events, stepped over without applying",
            set_aside.clone(),
        );
        let notification_deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "kith_notification_deliveries",
            "notification delivery steps recorded, by channel and outcome (a parked one waits for an operator: kith notifications parked)",
            notification_deliveries.clone(),
        );
        let notifications_parked = Family::<ChannelLabels, Gauge>::default();
        registry.register(
            "kith_notifications_parked",
            "notification deliveries parked now, by channel: they failed every attempt and wait for an operator (kith notifications parked lists them, kith notifications requeue sends them on)",
            notifications_parked.clone(),
        );
        let unknown_events = Family::<UnknownEventLabels, Counter>::default();
        registry.register(
            "kith_projection_unknown_events",
            "events of a type this version does not know, skipped because the projection does not read their streams",
            unknown_events.clone(),
        );
        let projection_stalled = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "kith_projection_stalled",
            "1 while a projection cannot go on in a source (the log says why), on the replica trying",
            projection_stalled.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "kith_db_pool_connections",
            "database connections of the service's pool, by state (idle, in_use)",
            pool_connections.clone(),
        );
        let pool_max = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            "kith_db_pool_max_connections",
            "the most connections the service's pool opens",
            pool_max.clone(),
        );
        Self {
            registry,
            grpc_requests,
            grpc_duration,
            appended,
            conflicts,
            relay_lag,
            relay_leader,
            oldest_transaction,
            projection_lag_events,
            projection_lag_seconds,
            redeliveries,
            set_aside,
            notification_deliveries,
            notifications_parked,
            unknown_events,
            projection_stalled,
            pool_connections,
            pool_max,
            pools: Mutex::new(Vec::new()),
        }
    }

    /// Reports `pool`'s use under `service` at every scrape.
    pub fn watch_pool(&self, service: &str, pool: &PgPool) {
        self.pool_max
            .get_or_create(&ServiceLabels::of(service))
            .set(i64::from(pool.options().get_max_connections()));
        self.pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((service.to_owned(), pool.clone()));
    }

    /// Where a projection stands in a source: events behind and the age of the oldest of them.
    pub fn projection_lag(&self, labels: &SourceLabels, events: i64, seconds: f64) {
        self.projection_lag_events
            .get_or_create(labels)
            .set(events.max(0));
        self.projection_lag_seconds
            .get_or_create(labels)
            .set(seconds.max(0.0));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        for (service, pool) in self.pools.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let size = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(0);
            for (state, value) in [("idle", idle), ("in_use", (size - idle).max(0))] {
                self.pool_connections
                    .get_or_create(&PoolLabels {
                        service: service.clone(),
                        state: state.to_owned(),
                    })
                    .set(value);
            }
        }
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "metrics could not be encoded");
        }
        out
    }
}

impl ServiceLabels {
    pub fn of(service: &str) -> Self {
        Self {
            service: service.to_owned(),
        }
    }
}

impl SourceLabels {
    pub fn new(service: &str, projection: &str, source: &str) -> Self {
        Self {
            service: service.to_owned(),
            projection: projection.to_owned(),
            source: source.to_owned(),
        }
    }
}

/// Binds the metrics endpoint (`GET /metrics`) on `addr`; returns the bound address. It serves
/// until `shutdown`, which is cancelled after everything else has stopped, so a last scrape sees
/// the final figures.
pub async fn serve(addr: SocketAddr, shutdown: CancellationToken) -> Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|err| Error::Config(format!("--metrics-listen {addr}: {err}")))?;
    let bound = listener
        .local_addr()
        .map_err(|err| Error::Config(format!("--metrics-listen {addr}: {err}")))?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            tokio::spawn(answer(stream));
        }
    });
    Ok(bound)
}

/// Answers one HTTP/1.1 request and closes the connection; scrapers expect nothing more.
async fn answer(mut stream: tokio::net::TcpStream) {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics().render(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A tower layer that counts gRPC calls by method and status code and times them, reading the
/// code from the response headers (errors) or trailers (everything else).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// See [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
    RB: http_body::Body + Unpin + Send + 'static,
{
    type Response = http::Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let (service, method) = known_method(request.uri().path());
        let future = self.inner.call(request);
        Box::pin(async move {
            // Polled inside the call's server span (see `grpc::server`), which lives until the
            // reply's last frame so that the status lands on it.
            let span = tracing::Span::current();
            let mut response = future.await?;
            client_faults_renamed(response.headers_mut());
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                MeteredBody {
                    inner: body,
                    call: Some(Call {
                        service,
                        method,
                        started,
                        code,
                        span,
                    }),
                },
            ))
        })
    }
}

/// The service and method of a call's path when it names a method this server has; any other
/// path (anyone can send any) counts as `unknown`, so that metrics series stay bounded.
pub(crate) fn known_method(path: &str) -> (String, String) {
    static KNOWN: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut known = std::collections::HashSet::new();
        for set in [
            kith_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        known.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        for reflection in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
            known.insert(format!(
                "/{reflection}.ServerReflection/ServerReflectionInfo"
            ));
        }
        known
    });
    if !known.contains(path) {
        return ("unknown".to_owned(), "unknown".to_owned());
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_owned();
    let method = parts.next().unwrap_or_default().to_owned();
    (service, method)
}

/// The most a request message may be, as tonic decodes it (its default).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Statuses tonic gives for a caller's faults before any Kith code runs, renamed to what gRPC's
/// conventions call them: a request larger than the server decodes is a limit reached
/// (RESOURCE_EXHAUSTED, where tonic says OUT_OF_RANGE), and bytes that are not the request
/// message are bad input (INVALID_ARGUMENT, where tonic says INTERNAL, which would page an
/// operator for a client's bug). The status is in the headers of a trailers-only reply or in the
/// trailers.
fn client_faults_renamed(headers: &mut http::HeaderMap) {
    // grpc-message is percent-encoded on the wire.
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .unwrap_or_default();
    let status = headers.get("grpc-status").and_then(|v| v.to_str().ok());
    let renamed = match status {
        Some("11") if message.contains("message length too large") => Some((
            "8",
            "request%20too%20large%3A%20requests%20are%20limited%20to%204%20MiB",
        )),
        Some("13") if message.contains("failed to decode Protobuf message") => Some((
            "3",
            "the%20request%20is%20not%20a%20valid%20message%20of%20this%20method",
        )),
        _ => None,
    };
    if let Some((code, message)) = renamed {
        headers.insert("grpc-status", http::HeaderValue::from_static(code));
        headers.insert("grpc-message", http::HeaderValue::from_static(message));
        headers.remove("grpc-status-details-bin");
    }
}

#[derive(Debug)]
struct Call {
    service: String,
    method: String,
    started: std::time::Instant,
    code: Option<String>,
    span: tracing::Span,
}

impl Call {
    fn record(self, code: Option<String>) {
        let number = code.or(self.code);
        if let Some(value) = number.as_deref().and_then(|n| n.parse::<i64>().ok()) {
            self.span.record("rpc.grpc.status_code", value);
            // The server side of the conventions: only the codes that mean the server failed
            // mark the span as an error; a caller's mistake or a refusal is not one.
            if matches!(value, 2 | 4 | 12 | 13 | 14 | 15) {
                self.span.record("otel.status_code", "ERROR");
            }
        }
        let code = number.map_or_else(|| "UNKNOWN".to_owned(), |code| code_name(&code).to_owned());
        let m = metrics();
        m.grpc_requests
            .get_or_create(&CallLabels {
                service: self.service.clone(),
                method: self.method.clone(),
                code,
            })
            .inc();
        m.grpc_duration
            .get_or_create(&MethodLabels {
                service: self.service,
                method: self.method,
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// The canonical name of a numeric gRPC status code.
/// The name of a status code, as the metrics label it.
pub fn code_label(code: tonic::Code) -> &'static str {
    code_name(&(code as i32).to_string())
}

fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "CANCELLED",
        "2" => "UNKNOWN",
        "3" => "INVALID_ARGUMENT",
        "4" => "DEADLINE_EXCEEDED",
        "5" => "NOT_FOUND",
        "6" => "ALREADY_EXISTS",
        "7" => "PERMISSION_DENIED",
        "8" => "RESOURCE_EXHAUSTED",
        "9" => "FAILED_PRECONDITION",
        "10" => "ABORTED",
        "11" => "OUT_OF_RANGE",
        "12" => "UNIMPLEMENTED",
        "13" => "INTERNAL",
        "14" => "UNAVAILABLE",
        "15" => "DATA_LOSS",
        "16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// A response body that records its call when the trailers pass, the body ends, or the client
/// goes away (then as CANCELLED unless a code was already known).
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B: http_body::Body + Unpin> http_body::Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Self::Data>, Self::Error>>>
    {
        let mut polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &mut polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_mut() {
                    client_faults_renamed(trailers);
                    let code = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if let Some(call) = self.call.take() {
                        call.record(code);
                    }
                }
            }
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_))) => {
                if let Some(call) = self.call.take() {
                    call.record(None);
                }
            }
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            let known = call.code.clone();
            call.record(known.or_else(|| Some("1".to_owned())));
        }
    }
}
