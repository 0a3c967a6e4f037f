//! Connections and migrations. Each service lives in its own PostgreSQL schema (a database of its
//! own in production); every connection of its pool has `search_path` set to that schema, so the
//! SQL everywhere else names tables without a schema.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool};

use crate::{Error, Result};

/// A schema name that is safe to splice into SQL: lowercase letters, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema(String);

impl Schema {
    /// Parses a schema name; refuses anything that would need quoting.
    pub fn parse(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::Config(format!(
                "schema {name:?} must be 1 to 63 characters of a-z, 0-9 and _"
            )))
        }
    }

    /// The name, safe to splice into SQL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The connection options of a database URL. TLS follows the URL's `sslmode`; without one, a
/// server on this machine is reached in plain text (TLS buys nothing over loopback and costs a
/// handshake per connection) and any other is `prefer`red over TLS, as libpq does.
pub fn parse_url(url: &str) -> Result<PgConnectOptions> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|err| Error::Config(format!("database url: {err}")))?;
    let local = matches!(
        options.get_host(),
        "localhost" | "127.0.0.1" | "::1" | "[::1]"
    ) || options.get_host().starts_with('/');
    Ok(if local && !url.contains("sslmode=") {
        options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
    } else {
        options
    })
}

fn options(url: &str, schema: &Schema) -> Result<PgConnectOptions> {
    let options = parse_url(url)?;
    Ok(options
        .options([("search_path", schema.as_str())])
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// How long a starting service waits for PostgreSQL to answer before it gives up.
pub const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// How long a call waits for a pooled connection before it is told the database is unavailable:
/// long enough to ride out a burst, short enough that a caller learns of an outage at once.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pooled connection idle this long is checked with a round trip before it is handed out.
/// One in steady use is not: checking it would cost every statement a second round trip, which
/// on a local database is as much as the statement itself. A connection that broke while in use
/// (the server restarted) fails its next statement once, as a retryable UNAVAILABLE, and is
/// dropped from the pool.
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// A pool whose connections all work in `schema`.
pub async fn connect(url: &str, schema: &Schema, max_connections: u32) -> Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options(url, schema)?)
        .await?;
    Ok(pool)
}

/// [`connect`], waiting up to `patience` while the database is unreachable or still starting
/// up (a replica that starts beside a database that restarts, or before it is ready), so that a
/// service starts by itself once the database answers rather than exit and be restarted.
pub async fn connect_patiently(
    url: &str,
    schema: &Schema,
    max_connections: u32,
    patience: Duration,
) -> Result<PgPool> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect(url, schema, max_connections).await {
            Err(Error::Database(err))
                if crate::error::db_trouble(&err) == crate::error::DbTrouble::Unreachable
                    && tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(error = %err, retry_in = ?backoff, "waiting for PostgreSQL");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// One connection outside any pool, for work that must own its session (the relay's leadership
/// lock lives and dies with it).
pub async fn connect_one(url: &str, schema: &Schema) -> Result<PgConnection> {
    Ok(PgConnection::connect_with(&options(url, schema)?).await?)
}

/// One migration step of a component.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; never renumber a released step.
    pub version: i32,
    /// A short description kept in the migrations table.
    pub name: &'static str,
    /// The SQL, run in one transaction with the other pending steps.
    pub sql: &'static str,
}

/// The platform's own tables (event log, idempotency, keys, checkpoints), which every service
/// migrates into its schema before its own.
pub const PLATFORM_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event log, commands, sealing keys, projection checkpoints",
        sql: include_str!("../migrations/0001_event_log.sql"),
    },
    Migration {
        version: 2,
        name: "bus checkpoints name their event; projection DDL applied; stalls recorded",
        sql: include_str!("../migrations/0002_checkpoint_event.sql"),
    },
    Migration {
        version: 3,
        name: "command keys remember the request they were used for",
        sql: include_str!("../migrations/0003_command_fingerprint.sql"),
    },
    Migration {
        version: 4,
        name: "sealing keys may be wrapped by a key-encryption key",
        sql: include_str!("../migrations/0004_wrapped_sealing_keys.sql"),
    },
    Migration {
        version: 5,
        name: "a projection that gained a table is rebuilt, surviving restarts",
        sql: include_str!("../migrations/0005_projection_rebuild_pending.sql"),
    },
    Migration {
        version: 6,
        name: "event payloads compressed with lz4",
        sql: include_str!("../migrations/0006_payload_lz4.sql"),
    },
];

/// Creates the schema if needed and applies the platform's migrations and then `component`'s, each
/// step once. Concurrent callers (several replicas starting at once) serialise on an advisory lock.
pub async fn migrate(
    pool: &PgPool,
    schema: &Schema,
    component: &str,
    steps: &[Migration],
) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('kith.migrate'))")
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS kith_migrations (
            component  text        NOT NULL,
            version    int         NOT NULL,
            name       text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version))",
    )
    .execute(&mut *tx)
    .await?;
    for (owner, list) in [("platform", PLATFORM_MIGRATIONS), (component, steps)] {
        let applied: Vec<i32> =
            sqlx::query_scalar("SELECT version FROM kith_migrations WHERE component = $1")
                .bind(owner)
                .fetch_all(&mut *tx)
                .await?;
        for step in list.iter().filter(|step| !applied.contains(&step.version)) {
            tracing::info!(schema = %schema, component = owner, version = step.version, name = step.name, "applying migration");
            sqlx::raw_sql(step.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO kith_migrations (component, version, name) VALUES ($1, $2, $3)",
            )
            .bind(owner)
            .bind(step.version)
            .bind(step.name)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Creates the database named in `url` if it does not exist yet, so that a fresh PostgreSQL
/// needs no manual step.
pub async fn ensure_database(url: &str) -> Result<()> {
    let options = parse_url(url)?;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = options.clone().database("postgres");
    let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
    let mut backoff = Duration::from_millis(200);
    let mut conn = loop {
        match PgConnection::connect_with(&admin).await {
            Err(err)
                if crate::error::db_trouble(&err) == crate::error::DbTrouble::Unreachable
                    && tokio::time::Instant::now() + backoff < deadline =>
            {
                tracing::warn!(error = %err, retry_in = ?backoff, "waiting for PostgreSQL");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            other => break other?,
        }
    };
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        let created = sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\"")))
            .execute(&mut conn)
            .await;
        match created {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // A concurrent starter created it first: PostgreSQL says so as duplicate_database,
            // or, when both got past the existence check at once, as a unique violation of the
            // catalog.
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(err) => return Err(err.into()),
        }
    }
    conn.close().await?;
    Ok(())
}
