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
    /// HS256 shared secret. Ignored when a public key or JWKS file is given.
    #[arg(long, env = "KITH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// PEM file with the RS256 public key that checks tokens.
    #[arg(
        long,
        env = "KITH_JWT_PUBLIC_KEY_FILE",
        conflicts_with = "jwt_jwks_file"
    )]
    pub jwt_public_key_file: Option<PathBuf>,
    /// JWKS file (JSON Web Key Set) whose keys check tokens, picked by the token's `kid`. The file
    /// is re-read when it changes, so keys rotate without a restart: add the new key, switch the
    /// issuer to it, remove the old one once its tokens have expired.
    #[arg(long, env = "KITH_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// Accept only tokens from this issuer (`iss`); repeat or separate with commas for several.
    #[arg(long, env = "KITH_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// Accept only tokens for this audience (`aud`); repeat or separate with commas for several.
    #[arg(long, env = "KITH_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// With no secret, key or JWKS file, accept tokens signed with the well-known development
    /// secret even when listening beyond loopback. Anyone can then mint a token for any member:
    /// never in production.
    #[arg(long, env = "KITH_INSECURE_DEV_AUTH")]
    pub insecure_dev_auth: bool,
}

impl AuthArgs {
    /// The authenticator these flags describe; without a secret, key or JWKS file, the development
    /// secret, loudly (and [`AuthArgs::check_exposure`] refuses it beyond loopback).
    pub fn authenticator(&self) -> Result<Authenticator> {
        let config = |flag: &str, path: &std::path::Path, err: &dyn std::fmt::Display| {
            Error::Config(format!("{flag} {}: {err}", path.display()))
        };
        let authenticator = if let Some(path) = &self.jwt_jwks_file {
            Authenticator::jwks_file(path).map_err(|err| config("--jwt-jwks-file", path, &err))?
        } else if let Some(path) = &self.jwt_public_key_file {
            let pem =
                std::fs::read(path).map_err(|err| config("--jwt-public-key-file", path, &err))?;
            Authenticator::rs256(&pem).map_err(|err| config("--jwt-public-key-file", path, &err))?
        } else if let Some(secret) = &self.jwt_secret {
            if secret.expose().len() < 16 {
                return Err(Error::Config(
                    "--jwt-secret must be at least 16 bytes".to_owned(),
                ));
            }
            Authenticator::hs256(secret.expose().as_bytes())
        } else {
            tracing::warn!(
                "no --jwt-secret, --jwt-public-key-file or --jwt-jwks-file: accepting tokens signed \
                 with the well-known development secret (loopback only)"
            );
            Authenticator::hs256(DEV_JWT_SECRET.as_bytes()).development()
        };
        Ok(authenticator
            .with_issuers(self.jwt_issuer.clone())
            .with_audiences(self.jwt_audience.clone()))
    }

    /// Refuses to serve tokens anyone can mint on an address other hosts reach, unless
    /// `--insecure-dev-auth` says so.
    pub fn check_exposure(&self, authenticator: &Authenticator, listen: SocketAddr) -> Result<()> {
        if !authenticator.is_development() || listen.ip().is_loopback() {
            return Ok(());
        }
        if self.insecure_dev_auth {
            tracing::warn!(
                %listen,
                "--insecure-dev-auth: anyone who can reach this address can act as any member"
            );
            return Ok(());
        }
        Err(Error::Config(format!(
            "refusing to listen on {listen} with the development token secret: anyone could act \
             as any member. Set --jwt-jwks-file, --jwt-public-key-file or --jwt-secret (see \
             k8s/README.md), listen on 127.0.0.1, or pass --insecure-dev-auth for a throwaway setup"
        )))
    }

    /// The HS256 secret in force (for minting development tokens).
    pub fn secret(&self) -> String {
        self.jwt_secret.as_ref().map_or_else(
            || DEV_JWT_SECRET.to_owned(),
            |secret| secret.expose().to_owned(),
        )
    }
}

/// The key-encryption key that wraps the keys sealing personal data.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SealingArgs {
    /// Key-encryption key (64 hex digits: `openssl rand -hex 32`) that wraps the keys sealing
    /// personal data, so that a copy of the database alone opens nothing. To rotate, give the new
    /// one first and the old one after a comma: on start every key is wrapped again by the first.
    #[arg(
        long,
        env = "KITH_SEALING_KEK",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub sealing_kek: Vec<Secret>,
    /// File holding the key-encryption key(s), one per line, current first (a Kubernetes Secret
    /// mounted as a file).
    #[arg(long, env = "KITH_SEALING_KEK_FILE", conflicts_with = "sealing_kek")]
    pub sealing_kek_file: Option<PathBuf>,
    /// Key (64 hex digits) of the tokens by which membership tells the other services which
    /// member a handle names without telling them the handle. Give every service the same one
    /// (see k8s/README.md); without it a built-in key is used.
    #[arg(long, env = "KITH_HANDLE_KEY", hide_env_values = true)]
    pub handle_key: Option<Secret>,
}

impl SealingArgs {
    /// The KEKs these flags give, if any.
    pub fn keks(&self) -> Result<Option<crate::sealing::Keks>> {
        if let Some(path) = &self.sealing_kek_file {
            let text = std::fs::read_to_string(path).map_err(|err| {
                Error::Config(format!("--sealing-kek-file {}: {err}", path.display()))
            })?;
            let lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
            return crate::sealing::Keks::parse(lines)
                .map(Some)
                .map_err(|err| named(&format!("--sealing-kek-file {}", path.display()), err));
        }
        if self.sealing_kek.is_empty() {
            return Ok(None);
        }
        crate::sealing::Keks::parse(self.sealing_kek.iter().map(Secret::expose))
            .map(Some)
            .map_err(|err| named("--sealing-kek (KITH_SEALING_KEK)", err))
    }

    /// Installs the KEKs for every [`crate::sealing::Sealer`] of this process, and the handle key.
    pub fn install(&self) -> Result<()> {
        let keks = self.keks()?;
        match &self.handle_key {
            Some(key) => crate::pseudonym::install_key(
                crate::pseudonym::parse_key(key.expose())
                    .map_err(|err| named("--handle-key (KITH_HANDLE_KEY)", err))?,
            )?,
            None if keks.is_some() => tracing::warn!(
                "no --handle-key (KITH_HANDLE_KEY): handle tokens on the bus use the built-in key, \
                 so anyone who reads the log can test guessed handles against them"
            ),
            None => {}
        }
        match keks {
            Some(keks) => {
                tracing::info!(kek = keks.current_id(), "sealing keys are wrapped by a KEK");
                crate::sealing::install_kek(keks)
            }
            None => Ok(()),
        }
    }
}

/// A configuration error prefixed with the flag it came from.
fn named(flag: &str, err: Error) -> Error {
    match err {
        Error::Config(message) => Error::Config(format!("{flag}: {message}")),
        other => Error::Config(format!("{flag}: {other}")),
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
    #[command(flatten)]
    pub sealing: SealingArgs,
}
