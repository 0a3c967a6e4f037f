//! Feeding a projection from the service's own log.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Projection;
use super::checkpoint::{LOG_SOURCE, Stall, lock_checkpoint, read_checkpoint, write_checkpoint};
use super::notices::CheckpointWatch;
use crate::eventlog;
use crate::{Error, Result};

/// How far a projection has applied the log, on whichever replica applied it; queries wait on it
/// for read-your-writes.
#[derive(Debug, Clone)]
pub struct Progress {
    pool: PgPool,
    projection: &'static str,
    watch: CheckpointWatch,
    /// The local projector's wake-up: a read that waits for a position it has not applied tells
    /// it to look, so an event it was not told of (a lost announcement, a write by a tool) is
    /// picked up now rather than at its next rare poll.
    wake: Arc<Notify>,
}

impl Progress {
    /// Waits until the event at `position` is applied, or `timeout` passes. Position 0 (or less)
    /// returns at once.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<()> {
        if position <= 0 {
            return Ok(());
        }
        let Some(target) = eventlog::checkpoint_of(&self.pool, position).await? else {
            return Err(Error::UnknownPosition(position));
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let reached = self
            .watch
            .wait_until(deadline, || async {
                let mut conn = self.pool.acquire().await?;
                let applied = read_checkpoint(&mut conn, self.projection, LOG_SOURCE).await?;
                if applied < target {
                    self.wake.notify_waiters();
                }
                Ok((applied >= target).then_some(()))
            })
            .await?;
        reached.ok_or(Error::WaitTimeout(position))
    }

    /// How far the projection has applied the log, as committed.
    pub async fn applied(&self) -> Result<eventlog::Checkpoint> {
        let mut conn = self.pool.acquire().await?;
        read_checkpoint(&mut conn, self.projection, LOG_SOURCE).await
    }

    /// Waits until the projection has applied past `after`, or `deadline` passes; returns how far
    /// it has applied either way. For readers that follow the log behind the projection (live
    /// streams), on any replica.
    pub async fn wait_past(
        &self,
        after: eventlog::Checkpoint,
        deadline: tokio::time::Instant,
    ) -> Result<eventlog::Checkpoint> {
        let past = self
            .watch
            .wait_until(deadline, || async {
                let applied = self.applied().await?;
                Ok((applied > after).then_some(applied))
            })
            .await?;
        match past {
            Some(applied) => Ok(applied),
            None => self.applied().await,
        }
    }
}

/// Runs one projection over the service's own log.
#[derive(Debug)]
pub struct LogProjector {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    wake: Arc<Notify>,
    batch_size: i64,
    poll_interval: Duration,
    watch: CheckpointWatch,
    lag: crate::metrics::SourceLabels,
}

impl LogProjector {
    /// A runner for `projection`, woken by `wake` (the log's append notifier) and by polling.
    pub fn new(pool: PgPool, projection: Arc<dyn Projection>, wake: Arc<Notify>) -> Self {
        let projection_name = projection.name();
        let watch =
            CheckpointWatch::unwatched().reporting_stalls(&pool, projection_name, LOG_SOURCE);
        Self {
            pool,
            projection,
            wake,
            batch_size: 1000,
            // Woken by every append (in-process, or announced by another process); polling is
            // the safety net for an announcement lost while a listener reconnected.
            poll_interval: Duration::from_secs(5),
            lag: crate::metrics::SourceLabels::new("", projection_name, LOG_SOURCE),
            watch,
        }
    }

    /// Lets waiters on its progress wake on `watch` (its checkpoint's notices) rather than by
    /// re-reading alone; they learn of a stall at once either way.
    pub fn watched_by(mut self, watch: CheckpointWatch) -> Self {
        self.watch = watch.reporting_stalls(&self.pool, self.projection.name(), LOG_SOURCE);
        self
    }

    /// Labels its lag metrics with `service`.
    pub fn for_service(mut self, service: &str) -> Self {
        self.lag.service = service.to_owned();
        self
    }

    /// A handle for waiting on this runner's progress.
    pub fn progress(&self) -> Progress {
        Progress {
            pool: self.pool.clone(),
            projection: self.projection.name(),
            watch: self.watch.clone(),
            wake: Arc::clone(&self.wake),
        }
    }

    /// Applies batches until `shutdown`; the batch in hand is finished and checkpointed first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut busy_until = tokio::time::Instant::now() + crate::relay::BUSY_FOR;
        while !shutdown.is_cancelled() {
            // Registered before the step reads the log, so an append during it is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.step().await {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    // As the relay does: often soon after activity, rarely once quiet.
                    let pause = if tokio::time::Instant::now() < busy_until {
                        crate::relay::BUSY_POLL
                    } else {
                        self.poll_interval
                    };
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = woken => {
                            busy_until = tokio::time::Instant::now() + crate::relay::BUSY_FOR;
                        }
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    busy_until = tokio::time::Instant::now() + crate::relay::BUSY_FOR;
                }
                Err(err) => {
                    crate::metrics::metrics()
                        .projection_stalled
                        .get_or_create(&self.lag)
                        .set(1);
                    match &err {
                        // A replica of the newer version applies it; this one waits.
                        Error::UnknownEventType { .. } => {
                            tracing::warn!(projection = self.projection.name(), error = %err, "projection waits for a newer version to apply an event");
                        }
                        _ => {
                            tracing::error!(projection = self.projection.name(), error = %err, "projection batch failed; retrying");
                        }
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Records that the projection stops at `event` because of `err` (unless the trouble is the
    /// database's own, which passes), so every replica, waiting reads and the operator can say
    /// which event and why; returns the error to retry with.
    async fn stop_at(&self, event: &crate::eventlog::RecordedEvent, err: Error) -> Error {
        if err.is_transient() && !matches!(err, Error::UnknownEventType { .. }) {
            return err;
        }
        let name = self.projection.name();
        crate::metrics::metrics()
            .projection_stalled
            .get_or_create(&self.lag)
            .set(1);
        tracing::error!(
            projection = name,
            position = event.position,
            event_id = %event.event_id,
            event_type = %event.event_type,
            stream_id = %event.stream_id,
            error = %err,
            "projection stopped at an event it cannot apply"
        );
        if let Err(record) = super::checkpoint::record_stall(
            &self.pool,
            name,
            LOG_SOURCE,
            event.position,
            Some(event.event_id),
            &err.to_string(),
        )
        .await
        {
            tracing::warn!(projection = name, error = %record, "could not record the stall");
        }
        // How far behind it falls meanwhile is measured apart (crate::lag).
        err
    }

    /// Applies the next batch; returns how many events it read (0 when caught up).
    pub async fn step(&self) -> Result<usize> {
        let name = self.projection.name();
        let start = {
            let mut conn = self.pool.acquire().await?;
            read_checkpoint(&mut conn, name, LOG_SOURCE).await?
        };
        let batch = {
            let mut conn = self.pool.acquire().await?;
            eventlog::tail(&mut conn, start, self.batch_size).await?
        };
        if batch.is_empty() {
            crate::metrics::metrics()
                .projection_stalled
                .get_or_create(&self.lag)
                .set(0);
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let locked = lock_checkpoint(&mut tx, name, LOG_SOURCE).await?;
        let pending: Vec<&eventlog::RecordedEvent> = batch
            .iter()
            .filter(|event| event.checkpoint() > locked)
            .collect();
        let applied = super::apply_events(
            self.projection.as_ref(),
            &mut tx,
            &pending,
            super::Source::Log,
        )
        .await;
        let last = match applied.count {
            0 => locked,
            count => pending[count - 1].checkpoint(),
        };
        let stopped = match applied.stopped {
            // Nothing was written for it: keep what came before and stop right there.
            Some((index, err @ Error::UnknownEventType { .. })) => Some((pending[index], err)),
            Some((index, err)) => {
                drop(tx);
                return Err(self.stop_at(pending[index], err).await);
            }
            None => None,
        };
        if last != locked {
            write_checkpoint(&mut tx, name, LOG_SOURCE, last, None).await?;
            tx.commit().await?;
            self.projection.committed();
        } else {
            // Before recording a stall: the transaction holds the checkpoint row.
            drop(tx);
        }
        if let Some((event, err)) = stopped {
            return Err(self.stop_at(event, err).await);
        }
        if last == locked {
            // Another replica applied this batch already.
            return Ok(batch.len());
        }
        crate::metrics::metrics()
            .projection_stalled
            .get_or_create(&self.lag)
            .set(0);
        Ok(batch.len())
    }
}

/// The error of a read that needs a projection stopped at `stall`.
pub(crate) fn stalled(projection: &str, stall: &Stall) -> Error {
    Error::ProjectionStalled {
        projection: projection.to_owned(),
        at: match stall.event_id {
            Some(event) => format!("position {} (event {event})", stall.position),
            None => format!("position {}", stall.position),
        },
        reason: stall.error.clone(),
    }
}
