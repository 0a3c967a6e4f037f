//! What the service does by itself: it releases the places of members who left the community
//! (membership's events, or a join that raced one), and records invitations past their expiry so
//! their held seats go to the waitlist.
//!
//! Releasing is driven by a condition, not a queue: any place held in a cohort by someone who is
//! not an active member of its community is released. Both projections hand over the members a
//! committed batch touched; whichever of a join and a departure commits last triggers the scan
//! that sees both, so neither order loses a release. A full scan at start and every
//! [`FULL_SCAN_EVERY`] covers a crash between a commit and the hand-over. A release of someone
//! with nothing left to release appends nothing, so a repeated scan is harmless.
//!
//! Hand-overs are released by the replica whose projection applied the batch; the periodic scans
//! and the expiry sweep run on one replica at a time (the `cohorts.sweeper` lock).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kith_platform::aggregate::{Rejected, Repository};
use kith_platform::eventlog::Metadata;
use kith_platform::leader::LeaderLock;
use sqlx::{PgPool, Row};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::codec::CohortCodec;
use crate::domain::{Action, Command, SYSTEM};
use crate::projections::community::{departure_of, status};
use crate::projections::{Touch, Touched};
use crate::service::CohortDecider;

/// How often every place is checked, whatever was handed over.
const FULL_SCAN_EVERY: Duration = Duration::from_secs(30);
/// How often invitations are checked for expiry (an expired invitation is refused when used
/// whatever this says; the sweep only frees the seat it held).
const EXPIRY_EVERY: Duration = Duration::from_secs(5);

/// The background task of releases and expiries.
#[derive(Debug)]
pub(crate) struct Reactions {
    pool: PgPool,
    repository: Arc<Repository<CohortDecider, CohortCodec>>,
    sources: Vec<Arc<Touched>>,
    wake: Arc<Notify>,
}

impl Reactions {
    pub(crate) fn new(
        pool: PgPool,
        repository: Arc<Repository<CohortDecider, CohortCodec>>,
        sources: Vec<Arc<Touched>>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            repository,
            sources,
            wake,
        }
    }

    /// Releases the places of the members that committed batches touched, as they are handed
    /// over. Runs on every replica: each hands over what it applied itself. A release that fails
    /// (the database out of reach, say) is tried again here, soon, not left to the next full scan.
    pub(crate) async fn release_touched(self: Arc<Self>, shutdown: CancellationToken) {
        let mut pending: Vec<Touch> = Vec::new();
        let mut retry = Duration::from_millis(200);
        loop {
            // Registered before taking the hand-overs, so one made meanwhile is not missed.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            pending.extend(self.sources.iter().flat_map(|s| s.take()));
            // Newest first, so that a member's release joins the trace of their latest touch.
            pending.reverse();
            pending.sort_by_key(|touch| touch.member);
            pending.dedup_by_key(|touch| touch.member);
            let failed = !pending.is_empty()
                && {
                    match self.release(Some(&pending)).await {
                        Ok(()) => {
                            pending.clear();
                            retry = Duration::from_millis(200);
                            false
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, members = pending.len(), retry_in = ?retry, "release failed; trying again");
                            true
                        }
                    }
                };
            let until = if failed {
                let at = Instant::now() + retry;
                retry = (retry * 2).min(Duration::from_secs(5));
                at
            } else {
                Instant::now() + FULL_SCAN_EVERY
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = woken => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// The periodic work, on one replica at a time: a full release scan every
    /// [`FULL_SCAN_EVERY`] and the invitation expiry every [`EXPIRY_EVERY`].
    pub(crate) async fn sweep(self: Arc<Self>, shutdown: CancellationToken) {
        let lock = LeaderLock::new(&self.pool, "cohorts.sweeper");
        loop {
            let Some(leadership) = lock.campaign(&shutdown).await else {
                return;
            };
            tokio::select! {
                () = self.sweep_while_leading(&shutdown) => {}
                () = leadership.lost() => {}
            }
            leadership.release().await;
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    async fn sweep_while_leading(&self, shutdown: &CancellationToken) {
        let mut next_full_scan = Instant::now();
        let mut next_expiry = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_full_scan {
                match self.release(None).await {
                    Ok(()) => next_full_scan = now + FULL_SCAN_EVERY,
                    Err(err) => {
                        tracing::warn!(error = %err, "full release scan failed; retrying soon");
                        next_full_scan = now + Duration::from_secs(1);
                    }
                }
            }
            if Instant::now() >= next_expiry {
                if let Err(err) = self.expire().await {
                    tracing::warn!(error = %err, "invitation expiry failed; retrying");
                }
                next_expiry = Instant::now() + EXPIRY_EVERY;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next_full_scan.min(next_expiry)) => {}
            }
        }
    }

    /// Releases the places of departed members, all of them or those in `members`. Each release
    /// is a span in the trace of the event that touched the member (a departure, or a join that
    /// raced one), so the trace of a ban goes on into the release and the roster it changes.
    async fn release(&self, members: Option<&[Touch]>) -> anyhow::Result<()> {
        use tracing::Instrument;
        let ids: Option<Vec<Uuid>> =
            members.map(|members| members.iter().map(|touch| touch.member).collect());
        let rows = sqlx::query(
            "SELECT p.cohort_id, p.member_id, m.status
             FROM cohort_places p
             JOIN community_members m
               ON m.community_id = p.community_id AND m.member_id = p.member_id
             WHERE m.status <> $1 AND ($2::uuid[] IS NULL OR p.member_id = ANY($2))",
        )
        .bind(status::ACTIVE)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let cohort: Uuid = row.try_get(0)?;
            let member: Uuid = row.try_get(1)?;
            let standing: String = row.try_get(2)?;
            let Some(departure) = departure_of(&standing) else {
                continue;
            };
            let span = tracing::info_span!(
                parent: None,
                "release",
                otel.name = "release departed member",
                kith.cohort_id = %cohort,
                kith.member_id = %member,
                kith.departure = ?departure,
            );
            let cause = members
                .and_then(|members| members.iter().find(|touch| touch.member == member))
                .and_then(|touch| touch.traceparent.as_deref());
            if let Some(traceparent) = cause {
                kith_platform::telemetry::continue_traceparent(&span, traceparent);
            }
            self.system_command(
                cohort,
                Action::ReleaseMember {
                    member_id: member,
                    departure,
                },
            )
            .instrument(span)
            .await?;
            tracing::info!(%cohort, %member, ?departure, "released a departed member's place");
        }
        Ok(())
    }

    /// Records expired invitations, cohort by cohort.
    async fn expire(&self) -> anyhow::Result<()> {
        // One cohort's trouble (a stream a newer version wrote, say) must not hold up the rest.
        for cohort in cohorts_with_lapsed_invitations(&self.pool).await? {
            if let Err(err) = self.system_command(cohort, Action::ExpireInvitations).await {
                tracing::warn!(%cohort, error = %err, "invitation expiry failed for a cohort; the next sweep tries again");
            }
        }
        Ok(())
    }

    async fn system_command(&self, cohort: Uuid, action: Action) -> anyhow::Result<()> {
        let command = Command {
            actor: SYSTEM,
            actor_role: None,
            now: Utc::now(),
            action,
        };
        let metadata = Metadata {
            actor: Some("kith-cohorts".to_owned()),
            traceparent: kith_platform::telemetry::current_traceparent(),
            ..Default::default()
        };
        match self
            .repository
            .execute(&cohort.to_string(), None, &metadata, &command)
            .await
        {
            Ok(_) => Ok(()),
            Err(Rejected::Domain(err)) => {
                // The cohort moved on (archived, say); nothing to do there.
                tracing::debug!(%cohort, error = %err, "system command refused");
                Ok(())
            }
            Err(Rejected::Platform(err)) => Err(err.into()),
        }
    }
}

/// The cohorts the expiry sweep visits: those holding an invitation past its expiry. An archived
/// cohort keeps its last roster and hands nothing on (the decider records nothing there), so its
/// lapsed invitations are left alone rather than visited again every second.
pub async fn cohorts_with_lapsed_invitations(pool: &PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT DISTINCT p.cohort_id FROM cohort_places p JOIN cohorts c USING (cohort_id)
         WHERE p.expires_at IS NOT NULL AND p.expires_at <= now() AND p.place = 'invitation'
           AND c.status <> 'archived'",
    )
    .fetch_all(pool)
    .await
}
