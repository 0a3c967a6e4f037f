//! Notices of checkpoint advances and of appends, across replicas.
//!
//! Only one replica applies a given batch (the checkpoint row is locked for it, and a bus source
//! has one consumer), but a read or a command that waits for a projection may arrive at any
//! replica. So every checkpoint write also sends a PostgreSQL notification on its schema's
//! channel, delivered at commit; each process listens on one connection per service and wakes its
//! local waiters. Waiters still re-read now and then: a notification sent while the listening
//! connection was down is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::db::Schema;

/// How often a waiter re-reads its condition even without a notice.
pub const RECHECK_EVERY: Duration = Duration::from_millis(250);

/// How often the listener checks that its connection still delivers (it sends itself a notice).
const PING_EVERY: Duration = Duration::from_secs(30);
/// How long that notice may take before the listener connects again.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// The payload of that notice; never a projection's (those hold a tab).
const PING: &str = "ping";
/// The payload announcing that events were appended: the relay and the log's projections, idle
/// on any replica, look at once rather than at their next (rare) poll.
const APPENDED: &str = "appended";
/// The least time between two announcements from one process: under load the readers are busy
/// anyway, and one notice covers every append before it.
const ANNOUNCE_SPACING: Duration = Duration::from_millis(2);

/// The channel a schema's checkpoint notices go to.
pub fn channel(schema: &str) -> String {
    format!("kith_{schema}_checkpoints")
}

/// The payload naming a projection's source.
pub(crate) fn payload(projection: &str, source: &str) -> String {
    format!("{projection}\t{source}")
}

/// The notices of one schema, shared by everything in the process that waits on its projections.
#[derive(Debug, Clone, Default)]
pub struct CheckpointNotices {
    sources: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    appended: Arc<Mutex<Vec<Arc<Notify>>>>,
}

impl CheckpointNotices {
    /// Listens to `schema`'s channel until `shutdown`, reconnecting after any failure.
    pub fn listen(pool: PgPool, schema: &Schema, shutdown: CancellationToken) -> Self {
        let notices = Self::default();
        tokio::spawn(
            notices
                .clone()
                .run(pool, channel(schema.as_str()), shutdown),
        );
        notices
    }

    /// A watch on one projection's source.
    pub fn watch(&self, projection: &str, source: &str) -> CheckpointWatch {
        CheckpointWatch {
            notify: self.notify(&payload(projection, source)),
            stalls: None,
        }
    }

    /// Wakes `notify`'s waiters whenever any process announces an append to this schema's log.
    pub fn wake_on_appends(&self, notify: Arc<Notify>) {
        self.appended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(notify);
    }

    fn appends_announced(&self) {
        for notify in self
            .appended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            notify.notify_waiters();
        }
    }

    fn notify(&self, key: &str) -> Arc<Notify> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(sources.entry(key.to_owned()).or_default())
    }

    fn wake_all(&self) {
        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        for notify in sources.values() {
            notify.notify_waiters();
        }
        drop(sources);
        self.appends_announced();
    }

    async fn run(self, pool: PgPool, channel: String, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        'connect: while !shutdown.is_cancelled() {
            let listener = async {
                let mut listener = PgListener::connect_with(&pool).await?;
                listener.listen(&channel).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                () = shutdown.cancelled() => return,
                listener = listener => match listener {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::warn!(%channel, error = %err, retry_in = ?backoff, "cannot listen for checkpoint notices");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue 'connect;
                    }
                },
            };
            backoff = Duration::from_millis(200);
            // Anything may have moved while no one listened.
            self.wake_all();
            let mut next_ping = Instant::now() + PING_EVERY;
            let mut echo_due: Option<Instant> = None;
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.try_recv() => received,
                    () = tokio::time::sleep_until(echo_due.unwrap_or(next_ping)) => {
                        if echo_due.is_some() {
                            // A connection a proxy or a dead path dropped without closing
                            // delivers nothing and says nothing: listen again.
                            tracing::warn!(%channel, "checkpoint notices went silent; listening again");
                            self.wake_all();
                            continue 'connect;
                        }
                        if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
                            .bind(&channel)
                            .bind(PING)
                            .execute(&pool)
                            .await
                        {
                            tracing::debug!(%channel, error = %err, "could not ping the notice listener");
                        }
                        echo_due = Some(Instant::now() + PING_TIMEOUT);
                        continue;
                    }
                };
                match received {
                    Ok(Some(notice)) if notice.payload() == PING => {
                        echo_due = None;
                        next_ping = Instant::now() + PING_EVERY;
                    }
                    Ok(Some(notice)) if notice.payload() == APPENDED => self.appends_announced(),
                    Ok(Some(notice)) => {
                        let sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(notify) = sources.get(notice.payload()) {
                            notify.notify_waiters();
                        }
                    }
                    // The connection dropped; the next call reconnects.
                    Ok(None) => self.wake_all(),
                    Err(err) => {
                        tracing::warn!(%channel, error = %err, "checkpoint notices interrupted");
                        self.wake_all();
                        continue 'connect;
                    }
                }
            }
        }
    }
}

/// Announces this process's appends to `schema`'s log (given by `committed_here`) to every
/// process, at most one notice per [`ANNOUNCE_SPACING`], until `shutdown`.
pub async fn announce_appends(
    pool: PgPool,
    schema: Schema,
    committed_here: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let channel = channel(schema.as_str());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = committed_here.notified() => {}
        }
        if let Err(err) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(APPENDED)
            .execute(&pool)
            .await
        {
            // The readers' own polling picks the events up.
            tracing::debug!(%channel, error = %err, "could not announce an append");
        }
        tokio::time::sleep(ANNOUNCE_SPACING).await;
    }
}

/// Announces once that events were appended to `schema`'s log, for a tool that appends outside
/// a running service (so its readers look now rather than at their next poll).
pub async fn announce_append(pool: &PgPool, schema: &Schema) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel(schema.as_str()))
        .bind(APPENDED)
        .execute(pool)
        .await?;
    Ok(())
}

/// Wakes waiters when one projection's checkpoint in one source advances, on any replica.
#[derive(Debug, Clone)]
pub struct CheckpointWatch {
    notify: Arc<Notify>,
    stalls: Option<Arc<StallSource>>,
}

/// Where a watch looks for a stall of its projection.
#[derive(Debug)]
struct StallSource {
    pool: PgPool,
    projection: String,
    source: String,
}

impl CheckpointWatch {
    /// A watch that no notice ever wakes (for tools that run a projection alone); waiters then
    /// rely on re-reading.
    pub fn unwatched() -> Self {
        Self {
            notify: Arc::new(Notify::new()),
            stalls: None,
        }
    }

    /// Completes at the checkpoint's next advance after it is enabled (`Notified::enable`), for
    /// a follower that waits on several watches at once; re-read after it, and re-read now and
    /// then too, since an advance between enabling and waiting is only caught if enabled first.
    pub fn advanced(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Makes waits end at once with [`crate::Error::ProjectionStalled`] when the projection is
    /// stopped at an event it cannot apply, instead of at their deadline.
    pub fn reporting_stalls(mut self, pool: &PgPool, projection: &str, source: &str) -> Self {
        self.stalls = Some(Arc::new(StallSource {
            pool: pool.clone(),
            projection: projection.to_owned(),
            source: source.to_owned(),
        }));
        self
    }

    /// Runs `check` until it returns `Some`, again after every advance (and every
    /// [`RECHECK_EVERY`]); `None` when `deadline` passes first. A stopped projection (see
    /// [`CheckpointWatch::reporting_stalls`]) ends the wait with its reason.
    pub async fn wait_until<T, F, Fut>(&self, deadline: Instant, mut check: F) -> Result<Option<T>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        loop {
            // Registered before the check, so an advance during it is not missed.
            let advanced = self.notify.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if let Some(found) = check().await? {
                return Ok(Some(found));
            }
            if let Some(stalls) = &self.stalls {
                let mut conn = stalls.pool.acquire().await?;
                if let Some(stall) =
                    super::checkpoint::read_stall(&mut conn, &stalls.projection, &stalls.source)
                        .await?
                {
                    return Err(super::log_source::stalled(&stalls.projection, &stall));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::select! {
                () = advanced => {}
                () = tokio::time::sleep_until(deadline.min(now + RECHECK_EVERY)) => {}
            }
        }
    }
}
