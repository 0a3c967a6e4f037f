//! Leadership of the work only one replica of a service may do at a time: the relay, each durable
//! consumer, the service's own reactions.
//!
//! A leader holds a PostgreSQL advisory lock on a session of its own and proves every
//! [`HEARTBEAT`] that the session still holds it. The session is set to end itself after
//! [`SESSION_IDLE_TIMEOUT`] without a statement (`idle_session_timeout`), so when a leader's host
//! vanishes, or its network goes silent without closing anything, PostgreSQL ends the session and
//! frees the lock within that time instead of when the kernel's keepalive gives up (two hours by
//! default); a follower, asking every [`CAMPAIGN_EVERY`], then takes over. The leader itself
//! stops the moment a heartbeat fails or takes longer than [`HEARTBEAT_TIMEOUT`], which is well
//! before the server can free the lock, so two replicas never both believe they lead.
//!
//! Correctness never rests on the lock alone (the relay is guarded by JetStream's expected
//! sequence, projections by their checkpoint row): leadership keeps the work single and live.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::{Error, Result};

/// How often a leader proves it still holds its lock.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a heartbeat may take before the leader gives up leading.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long PostgreSQL keeps a lock session that has gone quiet. A leader falls silent for at
/// most `HEARTBEAT + HEARTBEAT_TIMEOUT` before it stops by itself, well within this.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a follower asks for the lock.
pub const CAMPAIGN_EVERY: Duration = Duration::from_secs(1);

/// A lock that one replica at a time may hold, named by `key` within a database.
#[derive(Debug, Clone)]
pub struct LeaderLock {
    options: PgConnectOptions,
    key: String,
}

impl LeaderLock {
    /// The lock `key` (unique within the database, e.g. `membership.relay`), taken on sessions
    /// of their own to the database of `pool`.
    pub fn new(pool: &PgPool, key: impl Into<String>) -> Self {
        Self {
            options: (*pool.connect_options()).clone(),
            key: key.into(),
        }
    }

    /// The lock's name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Waits until this replica holds the lock (`None` when `shutdown` comes first). Database
    /// trouble is logged and retried: a replica that cannot reach PostgreSQL simply does not lead.
    pub async fn campaign(&self, shutdown: &CancellationToken) -> Option<Leadership> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.session().await {
                Ok(mut conn) => loop {
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, try_lock(&mut conn, &self.key))
                        .await
                    {
                        Ok(Ok(true)) => return Some(Leadership::start(conn, self.key.clone())),
                        Ok(Ok(false)) => backoff = Duration::from_millis(200),
                        Ok(Err(err)) => {
                            tracing::warn!(lock = %self.key, error = %err, "cannot ask for leadership; reconnecting");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!(lock = %self.key, "asking for leadership timed out; reconnecting");
                            break;
                        }
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(CAMPAIGN_EVERY) => {}
                    }
                },
                Err(err) => {
                    tracing::warn!(lock = %self.key, error = %err, retry_in = ?backoff, "cannot open a lock session");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Takes the lock from whoever holds it, for operator work that must stop the usual leader
    /// (a republish stops the relay): queues for the lock, which keeps followers' polls from
    /// taking it, then ends the holder's lock session, whose work stops at its next heartbeat.
    pub async fn seize(&self) -> Result<Leadership> {
        let mut conn = self.session().await?;
        let me: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut conn)
            .await?;
        let mut other = PgConnection::connect_with(&self.options).await?;
        let acquire = sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
            .bind(&self.key)
            .execute(&mut conn);
        let evict = async {
            loop {
                // Once this session queues, the holder is the only session granted the lock.
                let ended = sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(format!(
                    "SELECT pg_terminate_backend(pid) FROM ({HOLDERS}) holder WHERE pid <> $2"
                )))
                .bind(&self.key)
                .bind(me)
                .fetch_all(&mut other)
                .await;
                match ended {
                    Ok(ended) if !ended.is_empty() => {
                        tracing::warn!(lock = %self.key, "ended the current leader's lock session");
                    }
                    Ok(_) => {}
                    Err(err) => break Err(Error::from(err)),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let acquired = tokio::time::timeout(SESSION_IDLE_TIMEOUT * 3, async {
            tokio::select! {
                acquired = acquire => acquired.map(|_| ()).map_err(Error::from),
                evicted = evict => evicted,
            }
        })
        .await
        .map_err(|_| Error::Unavailable(format!("could not take lock {} in time", self.key)))?;
        acquired?;
        let _ = other.close().await;
        sqlx::query("SET statement_timeout = 5000")
            .execute(&mut conn)
            .await?;
        Ok(Leadership::start(conn, self.key.clone()))
    }

    /// A session that PostgreSQL ends by itself once it goes quiet, so that its locks cannot
    /// outlive a vanished client.
    async fn session(&self) -> Result<PgConnection> {
        let mut conn = tokio::time::timeout(
            HEARTBEAT_TIMEOUT * 2,
            PgConnection::connect_with(&self.options),
        )
        .await
        .map_err(|_| Error::Unavailable("connecting to PostgreSQL timed out".into()))??;
        let idle = format!(
            "SET idle_session_timeout = {}",
            SESSION_IDLE_TIMEOUT.as_millis()
        );
        let user_timeout = format!(
            "SET tcp_user_timeout = {}",
            SESSION_IDLE_TIMEOUT.as_millis()
        );
        for setting in [
            idle.as_str(),
            // For a session busy sending when its peer vanished: give up on unacknowledged data.
            user_timeout.as_str(),
            "SET tcp_keepalives_idle = 5",
            "SET tcp_keepalives_interval = 2",
            "SET tcp_keepalives_count = 3",
            "SET statement_timeout = 5000",
        ] {
            if let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(setting))
                .execute(&mut conn)
                .await
            {
                // Older servers lack idle_session_timeout (PostgreSQL 14+): heartbeats still stop
                // a leader that lost its session, but takeover then waits for TCP keepalives.
                tracing::warn!(lock = %self.key, %setting, error = %err, "lock session setting refused");
            }
        }
        Ok(conn)
    }
}

/// The backends holding the advisory lock `$1` in this database (a session lock on
/// `hashtext(key)` shows in `pg_locks` split into its high and low halves).
const HOLDERS: &str = "SELECT pid FROM pg_locks
     WHERE locktype = 'advisory' AND objsubid = 1 AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)::bigint";

/// The backend that holds the lock `key` in the database of `executor`, if one does (for
/// `kith status`).
pub async fn holder<'e>(executor: impl sqlx::PgExecutor<'e>, key: &str) -> Result<Option<i32>> {
    Ok(sqlx::query_scalar(HOLDERS)
        .bind(key)
        .fetch_optional(executor)
        .await?)
}

async fn try_lock(conn: &mut PgConnection, key: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(key)
            .fetch_one(conn)
            .await?,
    )
}

/// Whether this session holds its advisory lock (a lock session holds only the one).
async fn still_holds(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
                        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted)",
    )
    .fetch_one(conn)
    .await?)
}

/// Held leadership. Work done under it watches [`Leadership::lost`] and stops when it fires;
/// [`Leadership::release`] hands the lock over at once (dropping it without releasing closes the
/// session, which frees the lock as well).
#[derive(Debug)]
pub struct Leadership {
    key: String,
    lost: CancellationToken,
    stop: Option<oneshot::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Leadership {
    fn start(conn: PgConnection, key: String) -> Self {
        let lost = CancellationToken::new();
        let (stop, stopped) = oneshot::channel();
        let heartbeat = tokio::spawn(heartbeat(conn, key.clone(), lost.clone(), stopped));
        tracing::debug!(lock = %key, "leading");
        Self {
            key,
            lost,
            stop: Some(stop),
            heartbeat: Some(heartbeat),
        }
    }

    /// Completes when this replica can no longer confirm that it holds the lock.
    pub fn lost(&self) -> WaitForCancellationFutureOwned {
        self.lost.clone().cancelled_owned()
    }

    /// Whether leadership has been lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Releases the lock and ends the session, so another replica can take over at once.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(heartbeat) = self.heartbeat.take() {
            // Bounded: an unreachable server frees the lock itself once the session goes quiet.
            if tokio::time::timeout(HEARTBEAT_TIMEOUT, heartbeat)
                .await
                .is_err()
            {
                tracing::warn!(lock = %self.key, "could not release leadership in time; the server frees it");
            }
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            // Dropping the task drops the session's socket, which frees the lock.
            heartbeat.abort();
        }
    }
}

async fn heartbeat(
    mut conn: PgConnection,
    key: String,
    lost: CancellationToken,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => {
                let unlocked = tokio::time::timeout(
                    HEARTBEAT_TIMEOUT,
                    sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut conn),
                )
                .await;
                if !matches!(unlocked, Ok(Ok(_))) {
                    tracing::debug!(lock = %key, "unlock did not answer; closing the session frees it");
                }
                let _ = tokio::time::timeout(HEARTBEAT_TIMEOUT, conn.close()).await;
                return;
            }
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
        let confirmed = tokio::time::timeout(HEARTBEAT_TIMEOUT, still_holds(&mut conn)).await;
        let reason = match confirmed {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => "the session no longer holds the lock".to_owned(),
            Ok(Err(err)) => format!("the lock session failed: {err}"),
            Err(_) => format!("the lock session did not answer within {HEARTBEAT_TIMEOUT:?}"),
        };
        tracing::warn!(lock = %key, %reason, "leadership lost; stopping the work it guards");
        lost.cancel();
        return;
    }
}
