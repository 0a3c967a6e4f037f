//! Test fixtures on real components: a throwaway PostgreSQL database per test and uniquely named
//! JetStream streams, both removed when dropped. A missing PostgreSQL or NATS fails the test with
//! a message saying what to start; nothing is skipped.

mod collector;
pub mod community;
mod fixtures;
mod processes;
mod proxy;
pub mod sinks;

use std::time::Duration;

pub use collector::{Collector, ReceivedSpan, kind as span_kind};
pub use fixtures::{Lcg, Statements};
pub use processes::{PrivateNats, PrivatePostgres, free_port};
pub use proxy::SilentProxy;

use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::bus::StreamSpec;
use crate::db::{self, Migration, Schema};

/// The server that test databases are created on: `KITH_TEST_DATABASE_URL`, else the local one.
pub fn admin_url() -> String {
    std::env::var("KITH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// NATS for tests: `NATS_URL`, else the local one.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Runs async cleanup from a `Drop`, which cannot await: a short-lived runtime on a thread of its
/// own does the work, and the drop waits for it.
fn clean_up(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let cleanup = std::thread::spawn(move || {
        if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            runtime.block_on(work);
        }
    });
    let _ = cleanup.join();
}

/// A database of its own for one test, dropped with the value.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database.
    pub async fn create() -> Self {
        let admin = admin_url();
        let name = format!("kith_test_{}", Uuid::new_v4().simple());
        let mut conn =
            PgConnection::connect_with(&crate::db::parse_url(&admin).expect("admin url"))
                .await
                .unwrap_or_else(|err| {
                    panic!("PostgreSQL must be running at {admin} for tests: {err}")
                });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            name,
        }
    }

    /// A pool in `schema`, migrated with the platform's tables and `steps`.
    pub async fn pool(&self, schema: &str, steps: &[Migration]) -> PgPool {
        let schema = Schema::parse(schema).expect("schema name");
        let pool = db::connect(&self.url, &schema, 40)
            .await
            .expect("connect test database");
        db::migrate(&pool, &schema, "test", steps)
            .await
            .expect("migrate test database");
        pool
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = admin_url();
        clean_up(async move {
            if let Ok(mut conn) =
                PgConnection::connect_with(&crate::db::parse_url(&admin).expect("admin url")).await
            {
                let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await;
            }
        });
    }
}

/// A JetStream stream name and subject prefix of its own for one test, deleted with the value.
#[derive(Debug)]
pub struct TestStream {
    pub spec: StreamSpec,
}

impl TestStream {
    /// A fresh name; the stream itself is created by whoever publishes first.
    pub fn new(service: &str) -> Self {
        let unique = Uuid::new_v4().simple().to_string();
        Self {
            spec: StreamSpec {
                name: format!(
                    "KITH_TEST_{}_{}",
                    service.to_ascii_uppercase(),
                    &unique[..12]
                ),
                subject_prefix: format!("test.{}.{service}", &unique[..12]),
                replicas: 1,
                duplicate_window: Duration::from_secs(120),
            },
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let name = self.spec.name.clone();
        let url = nats_url();
        clean_up(async move {
            if let Ok(client) = async_nats::connect(&url).await {
                let js = async_nats::jetstream::new(client);
                let _ = js.delete_stream(&name).await;
            }
        });
    }
}

/// A NATS connection for tests.
pub async fn nats() -> async_nats::Client {
    let url = nats_url();
    async_nats::connect(&url).await.unwrap_or_else(|err| {
        panic!("NATS with JetStream must be running at {url} for tests: {err}")
    })
}

/// Polls `check` from a plain thread until it holds, failing the test after `timeout`.
pub fn eventually_sync(timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`. For conditions that
/// have no notification to wait on (state in another process, on the bus).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything a service needs for a test: its own database and its own NATS namespace (streams
/// deleted on drop), with the development JWT secret.
#[derive(Debug)]
pub struct TestEnv {
    pub db: TestDatabase,
    pub args: crate::config::ServiceArgs,
    namespace: String,
}

/// The JWT secret of test environments.
pub const TEST_JWT_SECRET: &str = "kith-test-secret";

impl TestEnv {
    pub async fn new() -> Self {
        // `KITH_TEST_LOG=kith_platform=debug` shows what the services in the test did.
        if let Ok(filter) = std::env::var("KITH_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let db = TestDatabase::create().await;
        let namespace = format!("t{}", &Uuid::new_v4().simple().to_string()[..12]);
        let args = crate::config::ServiceArgs {
            database: crate::config::DatabaseArgs {
                database_url: db.url.clone(),
                database_max_connections: 20,
            },
            nats: crate::config::NatsArgs {
                nats_url: nats_url(),
                stream_replicas: 1,
                duplicate_window_secs: 120,
                nats_namespace: Some(namespace.clone()),
            },
            auth: crate::config::AuthArgs {
                jwt_secret: Some(
                    TEST_JWT_SECRET
                        .parse()
                        .unwrap_or_else(|never| match never {}),
                ),
                jwt_public_key_file: None,
                jwt_jwks_file: None,
                jwt_issuer: Vec::new(),
                jwt_audience: Vec::new(),
                insecure_dev_auth: false,
            },
            sealing: Default::default(),
        };
        Self {
            db,
            args,
            namespace,
        }
    }

    /// A development token for `member`.
    pub fn token(&self, member: Uuid) -> String {
        crate::auth::mint_hs256(TEST_JWT_SECRET.as_bytes(), member, 3600).expect("mint token")
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let namespace = self.namespace.clone();
        clean_up(async move { crate::bus::delete_namespace(&nats_url(), &namespace).await });
    }
}

/// Every event of the log, in tail order: (event id, stream id, version).
pub async fn log_order(log: &crate::eventlog::EventLog) -> Vec<(Uuid, String, i64)> {
    let mut all = Vec::new();
    let mut checkpoint = crate::eventlog::Checkpoint::START;
    loop {
        let batch = log.tail(checkpoint, 1000).await.expect("tail the log");
        let Some(last) = batch.last() else { return all };
        checkpoint = last.checkpoint();
        all.extend(
            batch
                .into_iter()
                .map(|e| (e.event_id, e.stream_id, e.version)),
        );
    }
}

/// Every Kith event of a JetStream stream, in stream order: (message id, stream id header,
/// version header). Messages that are not Kith events, and removed ones, are left out.
pub async fn stream_order(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> Vec<(Uuid, String, i64)> {
    use crate::bus::headers;
    let mut stream = js.get_stream(name).await.expect("the stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut all = Vec::new();
    for sequence in state.first_sequence.max(1)..=state.last_sequence {
        let Ok(message) = stream.get_raw_message(sequence).await else {
            continue;
        };
        let Some((event_id, _)) = crate::bus::event_identity(&message.headers) else {
            continue;
        };
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        all.push((
            event_id,
            header(headers::STREAM_ID),
            header(headers::VERSION).parse().unwrap_or_default(),
        ));
    }
    all
}

/// A service binary (`kith up`, `kith-membership`, ...) running as its own process against a
/// test environment, on free ports for gRPC and metrics.
#[derive(Debug)]
pub struct ServiceProcess {
    pub child: tokio::process::Child,
    pub grpc: std::net::SocketAddr,
    pub metrics: std::net::SocketAddr,
}

impl ServiceProcess {
    /// Starts `program args...` with the environment's database, NATS namespace and JWT secret,
    /// and waits until it announces its gRPC and metrics addresses on stdout.
    pub async fn spawn(program: &str, args: &[&str], env: &TestEnv) -> Self {
        Self::spawn_on(program, args, env, &env.db.url, &nats_url()).await
    }

    /// The same, against the PostgreSQL database and NATS server given (a server of the test's
    /// own, say), with the environment's NATS namespace and JWT secret.
    pub async fn spawn_on(
        program: &str,
        args: &[&str],
        env: &TestEnv,
        database_url: &str,
        nats_url: &str,
    ) -> Self {
        Self::start(program, args, env, database_url, nats_url, None, &[]).await
    }

    /// [`ServiceProcess::spawn`] with more environment variables (an OTLP endpoint, say).
    pub async fn spawn_with_vars(
        program: &str,
        args: &[&str],
        env: &TestEnv,
        vars: &[(&str, String)],
    ) -> Self {
        Self::start(program, args, env, &env.db.url, &nats_url(), None, vars).await
    }

    /// [`ServiceProcess::spawn`] with everything the process logs (at INFO and above) copied to
    /// `log`, for tests that check what was logged.
    pub async fn spawn_logging_to(
        program: &str,
        args: &[&str],
        env: &TestEnv,
        log: &std::path::Path,
    ) -> Self {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("create {}: {err}", log.display()));
        Self::start(
            program,
            args,
            env,
            &env.db.url,
            &nats_url(),
            Some(file),
            &[],
        )
        .await
    }

    async fn start(
        program: &str,
        args: &[&str],
        env: &TestEnv,
        database_url: &str,
        nats_url: &str,
        log: Option<std::fs::File>,
        vars: &[(&str, String)],
    ) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let mut child = tokio::process::Command::new(program)
            // Notifications' unsubscribe endpoint, on a free port like everything else.
            .env("KITH_UNSUBSCRIBE_LISTEN", "127.0.0.1:0")
            .envs(vars.iter().map(|(name, value)| (*name, value.as_str())))
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .env("DATABASE_URL", database_url)
            .env(
                "KITH_NATS_NAMESPACE",
                env.args.nats.nats_namespace.as_deref().unwrap_or_default(),
            )
            .env("NATS_URL", nats_url)
            .env("KITH_JWT_SECRET", TEST_JWT_SECRET)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("start {program}: {err}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut log = log;
        let (grpc, metrics) = tokio::time::timeout(Duration::from_secs(60), async {
            let (mut grpc, mut metrics) = (None, None);
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                // The log from the start, not only from the announcement on.
                if let Some(file) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(file, "{line}");
                }
                if let Some(rest) = line.split("serving gRPC on ").nth(1) {
                    grpc = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                }
                if let Some(rest) = line.strip_prefix("metrics: http://") {
                    metrics = rest.split('/').next().and_then(|a| a.parse().ok());
                }
                if let (Some(grpc), Some(metrics)) = (grpc, metrics) {
                    return (grpc, metrics);
                }
            }
            panic!("{program} exited before announcing its addresses");
        })
        .await
        .unwrap_or_else(|_| panic!("{program} did not announce its addresses within 60 s"));
        // Keep draining stdout (where the log goes) so the process never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(file) = log.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(file, "{line}");
                }
            }
        });
        Self {
            child,
            grpc,
            metrics,
        }
    }

    /// The metrics page, as Prometheus scrapes it.
    pub async fn scrape(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics)
            .await
            .expect("connect to metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: kith\r\nAccept: */*\r\n\r\n")
            .await
            .expect("send scrape");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read scrape");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("a running process").to_string();
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// The value of the metric series `series` (name and labels exactly as exposed), if present.
    pub fn series_value(page: &str, series: &str) -> Option<f64> {
        page.lines().find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }
}

/// Given / when / then over any decider, for domain tests: given past events, when a command
/// arrives, then these events (folded in, so the next `when` sees them) or this refusal.
pub mod decider {
    use std::fmt::{Debug, Display};

    use crate::aggregate::Decider;

    /// An aggregate as it stands after some events.
    #[derive(Debug)]
    pub struct Given<D: Decider> {
        pub state: D::State,
    }

    /// The result of a command.
    #[derive(Debug)]
    pub struct When<D: Decider> {
        state: D::State,
        result: Result<Vec<D::Event>, D::Error>,
    }

    /// The aggregate after `events`.
    pub fn given<D: Decider>(events: &[D::Event]) -> Given<D> {
        Given {
            state: events.iter().fold(D::State::default(), D::evolve),
        }
    }

    impl<D: Decider> Given<D> {
        pub fn when(self, command: D::Command) -> When<D> {
            let result = D::decide(&self.state, &command);
            When {
                state: self.state,
                result,
            }
        }
    }

    impl<D: Decider> When<D>
    where
        D::Event: PartialEq + Debug,
        D::Error: PartialEq + Debug + Display,
    {
        /// Checks the events and folds them in, for the next `when`.
        #[track_caller]
        pub fn then(self, expected: &[D::Event]) -> Given<D> {
            match self.result {
                Ok(events) => {
                    assert_eq!(events, expected);
                    Given {
                        state: events.iter().fold(self.state, D::evolve),
                    }
                }
                Err(error) => panic!("expected events, got the refusal {error:?}: {error}"),
            }
        }

        /// Checks the refusal.
        #[track_caller]
        pub fn then_error(self, expected: D::Error) {
            match self.result {
                Ok(events) => panic!("expected the refusal {expected:?}, got events {events:?}"),
                Err(error) => assert_eq!(error, expected),
            }
        }

        /// Checks the refusal and goes on from the unchanged state, for the next `when`.
        #[track_caller]
        pub fn then_error_and_keep(self, expected: D::Error) -> Given<D> {
            match self.result {
                Ok(events) => panic!("expected the refusal {expected:?}, got events {events:?}"),
                Err(error) => assert_eq!(error, expected),
            }
            Given { state: self.state }
        }
    }
}

/// Calls `call` again while it answers UNAVAILABLE (with the same request, so the same request id,
/// which makes a retry safe), as a client's gRPC retry policy does: at most 10 tries, 100 ms
/// apart. Under load a call may find no free database connection in time and say so.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(status) if status.code() == tonic::Code::Unavailable && tries < 9 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// `message` as a gRPC request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("a header value"),
    );
    request
}

/// Asserts the call failed with `code` and returns its status.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
) -> tonic::Status {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
    }
}

/// The field names of an INVALID_ARGUMENT status's BadRequest details.
#[track_caller]
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The `reason` of a status's `google.rpc.ErrorInfo`, checking its domain is Kith's.
#[track_caller]
pub fn error_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    let info = status.get_details_error_info()?;
    assert_eq!(info.domain, crate::grpc::ERROR_DOMAIN, "{status:?}");
    Some(info.reason)
}
