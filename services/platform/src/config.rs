//! Flags shared by every service binary and by `kith`, each with an environment fallback and a
//! default that works against a local PostgreSQL and NATS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::bus::StreamSpec;
use crate::{Error, Result};

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The development secret used when neither a secret nor a public key is configured.
pub const DEV_JWT_SECRET: &str = "kith-development-secret";

/// PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL; the database is created if missing. Each service keeps its tables in a
    /// schema named after it.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/kith"
    )]
    pub database_url: String,
    /// Connections per service pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
}

/// NATS JetStream.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS URL; a user and password in it (`nats://kith-cohorts:<password>@host:4222`) log in
    /// as that user (see k8s/README.md, NATS permissions).
    #[arg(
        long,
        env = "NATS_URL",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Replicas of each service's JetStream stream (3 on a three-node cluster).
    #[arg(long, env = "KITH_STREAM_REPLICAS", default_value_t = 1, value_parser = replicas)]
    pub stream_replicas: usize,
    /// JetStream duplicate window in seconds.
    #[arg(long, env = "KITH_DUPLICATE_WINDOW_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duplicate_window_secs: u64,
    /// Prefix for stream names and subjects, to keep several installations (or test runs) apart
    /// on one NATS: `ns` gives stream `NS_KITH_MEMBERSHIP` on subjects `ns.kith.membership.>`.
    #[arg(long, env = "KITH_NATS_NAMESPACE", value_parser = namespace)]
    pub nats_namespace: Option<String>,
}

impl NatsArgs {
    /// The stream layout of `service` with these settings.
    pub fn stream_for(&self, service: &str) -> StreamSpec {
        let base = StreamSpec::for_service(service);
        let (name, subject_prefix) =
            match self.nats_namespace.as_deref().filter(|ns| !ns.is_empty()) {
                Some(ns) => (
                    format!("{}_{}", ns.to_ascii_uppercase(), base.name),
                    format!("{ns}.{}", base.subject_prefix),
                ),
                None => (base.name, base.subject_prefix),
            };
        StreamSpec {
            name,
            subject_prefix,
            replicas: self.stream_replicas,
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
        }
    }
}

/// JetStream replicates a stream on 1 to 5 servers.
fn replicas(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=5).contains(&n) => Ok(n),
        _ => Err("must be a number from 1 to 5".to_owned()),
    }
}

/// A namespace must be usable both in a stream name and as a subject token.
fn namespace(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 32
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("must be 1 to 32 characters of a-z, A-Z, 0-9, '_' and '-'".to_owned())
    }
}

/// Token checking.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// HS256 shared secret (development). Ignored when a public key is given.
    #[arg(long, env = "KITH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// PEM file with the RS256 public key that checks tokens (production).
    #[arg(long, env = "KITH_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
}

impl AuthArgs {
    /// The authenticator these flags describe; falls back to the development secret, loudly.
    pub fn authenticator(&self) -> Result<Authenticator> {
        if let Some(path) = &self.jwt_public_key_file {
            let pem = std::fs::read(path).map_err(|err| {
                Error::Config(format!("--jwt-public-key-file {}: {err}", path.display()))
            })?;
            return Authenticator::rs256(&pem).map_err(|err| {
                Error::Config(format!("--jwt-public-key-file {}: {err}", path.display()))
            });
        }
        let secret = match &self.jwt_secret {
            Some(secret) => secret.expose().to_owned(),
            None => {
                tracing::warn!(
                    "no --jwt-secret or --jwt-public-key-file: accepting tokens signed with the development secret"
                );
                DEV_JWT_SECRET.to_owned()
            }
        };
        Ok(Authenticator::hs256(secret.as_bytes()))
    }

    /// The HS256 secret in force (for minting development tokens).
    pub fn secret(&self) -> String {
        self.jwt_secret.as_ref().map_or_else(
            || DEV_JWT_SECRET.to_owned(),
            |secret| secret.expose().to_owned(),
        )
    }
}

/// Where to listen.
#[derive(Debug, Clone, clap::Args)]
pub struct ListenArgs {
    /// gRPC address.
    #[arg(long, env = "KITH_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Prometheus metrics address (`GET /metrics`), separate from gRPC.
    #[arg(long, env = "KITH_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
}

/// Everything a service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}
