//! Delivery of email and webhooks, by one replica at a time (a leader lock): what the rules
//! decided for those channels waits in the ledger as `pending`, and this worker sends it.
//!
//! Every step is an event in this service's log, recorded before the next one starts: a hold
//! for quiet hours or a rate cap, the intent to send (before anything leaves), the outcome. So
//! the ledger always says what happened and why, and a process killed while sending is seen,
//! on restart, as having maybe sent: an email is then not sent again (email has no idempotency
//! key, and a duplicate is worse than the gap), a webhook is sent again under the same
//! `webhook-id`, which receivers use to drop what they already have.
//!
//! Email waits for its batching window, then goes as one message per person with everything
//! that is due for them, unless they read it in the feed first (the ledger cancels it).

mod email;
pub mod keys;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kith_platform::eventlog::{Append, EventLog, Metadata, NewEvent};
use kith_platform::leader::LeaderLock;
use kith_platform::projection::Progress;
use kith_platform::sealing::Sealer;
use kith_platform::{Error, Result};
use kith_proto::notifications as pb;
use prost::Message;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::DeliveryArgs;
use crate::domain::Preferences;
use crate::domain::schedule::quiet_until;
use crate::projections::route::preferences_of;

pub use keys::Keys;

/// The stream type of a delivery's events.
const DELIVERY_STREAM: &str = "delivery";
/// The least and the most the worker waits, when idle, before looking again: it is woken
/// sooner when the ledger changes (a new decision, a read), and otherwise looks when the next
/// delivery falls due (a batching window ending, a hold or a retry coming due).
const IDLE_MIN: Duration = Duration::from_millis(50);
const IDLE_MAX: Duration = Duration::from_secs(60);
/// How long the worker waits for the ledger to apply what it recorded.
const LEDGER_PATIENCE: Duration = Duration::from_secs(10);

/// The id of `notification`'s delivery on `channel`.
pub fn delivery_id(notification: Uuid, channel: pb::Channel) -> Uuid {
    crate::projections::route::after(notification, &format!("{notification}/{}", channel as i32))
}

/// A notification due on a channel, as the worker reads it.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub(crate) notification: Uuid,
    pub(crate) recipient: Uuid,
    pub(crate) status: String,
    pub(crate) reason: String,
    pub(crate) attempts: i32,
    pub(crate) kind: i32,
    pub(crate) also: Vec<i32>,
    pub(crate) urgent: bool,
    pub(crate) community: Option<Uuid>,
    pub(crate) cohort: Option<Uuid>,
    pub(crate) conversation: Option<Uuid>,
    pub(crate) thread: Option<Uuid>,
    pub(crate) message: Option<Uuid>,
    pub(crate) actor: Option<Uuid>,
    pub(crate) session: Option<Uuid>,
    pub(crate) starts_at: Option<DateTime<Utc>>,
    pub(crate) occurred_at: DateTime<Utc>,
    pub(crate) updated: bool,
    pub(crate) due_at: Option<DateTime<Utc>>,
}

/// The columns [`Due::read`] reads, from `deliveries d JOIN notifications n`.
macro_rules! due_columns {
    () => {
        "d.notification_id, d.recipient_id, d.status, d.reason, d.attempts, d.due_at, n.kind, n.also,
         n.urgent, n.community_id, n.cohort_id, n.conversation_id, n.thread_id, n.message_id,
         n.actor_id, n.session_id, n.starts_at, n.occurred_at, n.updated"
    };
}
pub(crate) use due_columns;

impl Due {
    pub(crate) fn read(row: &sqlx::postgres::PgRow) -> std::result::Result<Self, sqlx::Error> {
        Ok(Self {
            notification: row.try_get("notification_id")?,
            recipient: row.try_get("recipient_id")?,
            status: row.try_get("status")?,
            reason: row.try_get("reason")?,
            attempts: row.try_get("attempts")?,
            kind: row.try_get("kind")?,
            also: row.try_get("also")?,
            urgent: row.try_get("urgent")?,
            community: row.try_get("community_id")?,
            cohort: row.try_get("cohort_id")?,
            conversation: row.try_get("conversation_id")?,
            thread: row.try_get("thread_id")?,
            message: row.try_get("message_id")?,
            actor: row.try_get("actor_id")?,
            session: row.try_get("session_id")?,
            starts_at: row.try_get("starts_at")?,
            occurred_at: row.try_get("occurred_at")?,
            updated: row.try_get("updated")?,
            due_at: row.try_get("due_at")?,
        })
    }
}

/// A step of a delivery, about to be recorded.
pub(crate) enum Step {
    Held {
        until: DateTime<Utc>,
        reason: &'static str,
    },
    Attempted {
        attempt: u32,
        batch: Uuid,
    },
    Sent {
        attempt: u32,
        batch: Uuid,
    },
    Failed {
        attempt: u32,
        error: String,
        retry_at: DateTime<Utc>,
    },
    Parked {
        attempts: u32,
        error: String,
    },
    Cancelled {
        reason: &'static str,
    },
    /// An operator sends a parked delivery on again.
    Requeued,
}

impl Step {
    /// What the step says happened, as metrics label it.
    fn outcome(&self) -> &'static str {
        match self {
            Step::Held { .. } => "held",
            Step::Attempted { .. } => "attempted",
            Step::Sent { .. } => "sent",
            Step::Failed { .. } => "failed",
            Step::Parked { .. } => "parked",
            Step::Cancelled { .. } => "cancelled",
            Step::Requeued => "requeued",
        }
    }

    fn event(&self, notification: Uuid, channel: pb::Channel) -> NewEvent {
        let delivery = delivery_id(notification, channel).to_string();
        let notification = notification.to_string();
        let channel = channel as i32;
        let at = kith_platform::wire::timestamp;
        match self {
            Step::Held { until, reason } => NewEvent::from_message(&pb::DeliveryHeld {
                delivery_id: delivery,
                notification_id: notification,
                channel,
                until: Some(at(*until)),
                reason: (*reason).to_owned(),
            }),
            Step::Attempted { attempt, batch } => NewEvent::from_message(&pb::DeliveryAttempted {
                delivery_id: delivery,
                notification_id: notification,
                channel,
                attempt: *attempt,
                batch_id: batch.to_string(),
            }),
            Step::Sent { attempt, batch } => NewEvent::from_message(&pb::DeliverySent {
                delivery_id: delivery,
                notification_id: notification,
                channel,
                attempt: *attempt,
                batch_id: batch.to_string(),
            }),
            Step::Failed {
                attempt,
                error,
                retry_at,
            } => NewEvent::from_message(&pb::DeliveryFailed {
                delivery_id: delivery,
                notification_id: notification,
                channel,
                attempt: *attempt,
                error: error.clone(),
                retry_at: Some(at(*retry_at)),
            }),
            Step::Parked { attempts, error } => NewEvent::from_message(&pb::DeliveryParked {
                delivery_id: delivery,
                notification_id: notification,
                channel,
                attempts: *attempts,
                error: error.clone(),
            }),
            Step::Cancelled { reason } => NewEvent::from_message(&pb::DeliveryCancelled {
                delivery_id: delivery,
                notification_id: notification,
                channel,
                reason: (*reason).to_owned(),
            }),
            Step::Requeued => NewEvent::from_message(&pb::DeliveryRequeued {
                delivery_id: delivery,
                notification_id: notification,
                channel,
            }),
        }
    }
}

/// Sends what is due, as the leader of its deployment.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pub(crate) pool: PgPool,
    log: EventLog,
    progress: Progress,
    pub(crate) sealer: Sealer,
    pub(crate) args: Arc<DeliveryArgs>,
    pub(crate) keys: Keys,
    mailer: Option<email::Mailer>,
    http: reqwest::Client,
    /// Where unsubscribe links point.
    pub(crate) public_url: String,
}

impl Deliverer {
    pub fn new(
        pool: PgPool,
        log: EventLog,
        progress: Progress,
        args: Arc<DeliveryArgs>,
        keys: Keys,
        public_url: String,
    ) -> Result<Self> {
        let mailer = match &args.smtp_url {
            Some(url) => Some(email::Mailer::new(url.expose(), &args.email_from)?),
            None => {
                tracing::warn!("no --smtp-url (KITH_SMTP_URL): notification emails are not sent");
                None
            }
        };
        let http = webhook::client(args.webhook_allow_private)?;
        Ok(Self {
            sealer: Sealer::new(pool.clone()),
            pool,
            log,
            progress,
            args,
            keys,
            mailer,
            http,
            public_url,
        })
    }

    /// Campaigns for the delivery lock and, while leading, sends what is due, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let lock = LeaderLock::new(&self.pool, "notifications.delivery");
        loop {
            let Some(leadership) = lock.campaign(&shutdown).await else {
                return;
            };
            tracing::info!("delivering notifications (this replica leads delivery)");
            if let Err(err) = self.recover().await {
                tracing::warn!(error = %err, "delivery: recovering interrupted sends failed; retrying");
            }
            loop {
                if shutdown.is_cancelled() || leadership.is_lost() {
                    break;
                }
                // Read before the round: what the ledger applies from here on wakes the wait.
                let seen = self.progress.applied().await.ok();
                let worked = match self.tick().await {
                    Ok(worked) => worked,
                    Err(err) => {
                        tracing::warn!(error = %err, "delivery: a round failed; retrying");
                        false
                    }
                };
                if !worked {
                    let idle = self.idle(seen);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = leadership.lost() => break,
                        () = idle => {}
                    }
                }
            }
            leadership.release().await;
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    /// Waits, with nothing due now, until the ledger has changed since `seen` (read before the
    /// round that found nothing) or the next delivery falls due.
    async fn idle(&self, seen: Option<kith_platform::eventlog::Checkpoint>) {
        let next: Result<Option<DateTime<Utc>>> = async {
            Ok(sqlx::query_scalar(
                "SELECT min(due) FROM (
                     SELECT min(due_at) AS due FROM deliveries
                     WHERE status IN ('held', 'failed') AND channel IN ($1, $2)
                     UNION ALL
                     SELECT min(occurred_at) + make_interval(secs => $3) FROM deliveries
                     WHERE status = 'pending' AND channel = $1
                 ) due",
            )
            .bind(pb::Channel::Email as i32)
            .bind(pb::Channel::Webhook as i32)
            .bind(self.args.email_batch_window.as_secs_f64())
            .fetch_one(&self.pool)
            .await?)
        }
        .await;
        let wait = match next {
            Ok(Some(due)) => (due - Utc::now()).to_std().unwrap_or_default(),
            Ok(None) => IDLE_MAX,
            Err(err) => {
                tracing::warn!(error = %err, "delivery: cannot tell when the next delivery is due");
                Duration::from_secs(1)
            }
        }
        .clamp(IDLE_MIN, IDLE_MAX);
        let Some(seen) = seen else {
            tokio::time::sleep(wait).await;
            return;
        };
        let _ = self
            .progress
            .wait_past(seen, tokio::time::Instant::now() + wait)
            .await;
    }

    /// After taking over: every delivery left `sending` was interrupted between its intent and
    /// its outcome. Emails are cancelled (they may have gone); webhooks go again as they are.
    async fn recover(&self) -> Result<()> {
        self.settle().await?;
        let interrupted: Vec<Uuid> = sqlx::query_scalar(
            "SELECT notification_id FROM deliveries WHERE channel = $1 AND status = 'sending'",
        )
        .bind(pb::Channel::Email as i32)
        .fetch_all(&self.pool)
        .await?;
        if !interrupted.is_empty() {
            tracing::warn!(
                count = interrupted.len(),
                "emails interrupted while sending are not sent again (they may have gone)"
            );
            let steps: Vec<_> = interrupted
                .into_iter()
                .map(|id| {
                    (
                        id,
                        Step::Cancelled {
                            reason: "INTERRUPTED_NOT_RESENT",
                        },
                    )
                })
                .collect();
            self.record(pb::Channel::Email, &steps).await?;
        }
        Ok(())
    }

    /// Waits until the ledger has applied everything in the log now.
    async fn settle(&self) -> Result<()> {
        let head: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM events")
            .fetch_one(&self.pool)
            .await?;
        self.progress
            .wait_for(head.unwrap_or(0), LEDGER_PATIENCE)
            .await
    }

    /// One round: the emails and webhooks due now. Whether anything was done.
    async fn tick(&self) -> Result<bool> {
        let emails = self.emails().await?;
        let webhooks = self.webhooks().await?;
        Ok(emails || webhooks)
    }

    /// Records `steps` (one per notification) on `channel`, and waits until the ledger shows
    /// them, so that the next round reads what they did.
    pub(crate) async fn record(&self, channel: pb::Channel, steps: &[(Uuid, Step)]) -> Result<()> {
        if steps.is_empty() {
            return Ok(());
        }
        let appended = append_steps(&self.log, channel, steps).await?;
        let channel_name = match channel {
            pb::Channel::Email => "email",
            pb::Channel::Webhook => "webhook",
            _ => "in_app",
        };
        for (_, step) in steps {
            kith_platform::metrics::metrics()
                .notification_deliveries
                .get_or_create(&kith_platform::metrics::DeliveryLabels {
                    channel: channel_name.to_owned(),
                    outcome: step.outcome().to_owned(),
                })
                .inc();
        }
        let last = appended.iter().map(|a| a.position).max().unwrap_or(0);
        self.progress.wait_for(last, LEDGER_PATIENCE).await
    }

    /// A member's preferences, as last set.
    pub(crate) async fn preferences(&self, member: Uuid) -> Result<Preferences> {
        let mut conn = self.pool.acquire().await?;
        Ok(preferences_of(&mut conn, &[member])
            .await?
            .remove(&member)
            .unwrap_or_default())
    }

    /// A member's email address and webhook URL, as last set (the address opened with their
    /// key: `None` once erased).
    pub(crate) async fn contact(&self, member: Uuid) -> Result<(Option<String>, Option<String>)> {
        let row: Option<(Option<Vec<u8>>, Option<String>)> =
            sqlx::query_as("SELECT email, webhook_url FROM contacts WHERE member_id = $1")
                .bind(member)
                .fetch_optional(&self.pool)
                .await?;
        let Some((email, webhook)) = row else {
            return Ok((None, None));
        };
        let sealed = email
            .map(|bytes| kith_proto::platform::Sealed::decode(bytes.as_slice()))
            .transpose()
            .map_err(|err| Error::Codec(format!("a stored email address: {err}")))?;
        let email = self.sealer.opener().open(sealed.as_ref()).await?;
        Ok((email, webhook))
    }

    /// When quiet hours hold something for `member` now, until when (urgent notifications
    /// pass when the member lets them, and are not asked about here).
    pub(crate) fn quiet(preferences: &Preferences, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        quiet_until(preferences.time_zone, preferences.quiet_hours?, now)
    }
}

/// How often every replica counts the parked deliveries for its metrics.
const PARKED_EVERY: Duration = Duration::from_secs(5);

/// Keeps `kith_notifications_parked{channel}` at the number of deliveries parked now, until
/// `shutdown`. Every replica reports the same count (aggregate with `max`), so the gauge does
/// not depend on which one leads delivery.
pub async fn count_parked(pool: PgPool, shutdown: CancellationToken) {
    let gauges = &kith_platform::metrics::metrics().notifications_parked;
    loop {
        let counts: std::result::Result<Vec<(i32, i64)>, sqlx::Error> = sqlx::query_as(
            "SELECT channel, count(*) FROM deliveries WHERE status = 'parked' GROUP BY channel",
        )
        .fetch_all(&pool)
        .await;
        match counts {
            Ok(counts) => {
                for (channel, name) in [
                    (pb::Channel::Email, "email"),
                    (pb::Channel::Webhook, "webhook"),
                ] {
                    let count = counts
                        .iter()
                        .find(|(c, _)| *c == channel as i32)
                        .map_or(0, |(_, n)| *n);
                    gauges
                        .get_or_create(&kith_platform::metrics::ChannelLabels {
                            channel: name.to_owned(),
                        })
                        .set(count);
                }
            }
            Err(err) => tracing::debug!(error = %err, "cannot count parked deliveries now"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PARKED_EVERY) => {}
        }
    }
}

/// Appends `steps` (one per notification) on `channel`, each after its delivery's last event.
async fn append_steps(
    log: &EventLog,
    channel: pb::Channel,
    steps: &[(Uuid, Step)],
) -> Result<Vec<kith_platform::eventlog::Appended>> {
    let streams: Vec<String> = steps
        .iter()
        .map(|(id, _)| delivery_id(*id, channel).to_string())
        .collect();
    let versions = kith_platform::eventlog::versions(log.pool(), &streams).await?;
    let metadata = Metadata::default();
    let appends: Vec<Append<'_>> = steps
        .iter()
        .zip(&streams)
        .map(|((id, step), stream)| Append {
            stream_type: DELIVERY_STREAM,
            stream_id: stream,
            expected_version: versions.get(stream).copied().unwrap_or(0),
            events: vec![step.event(*id, channel)],
            metadata: &metadata,
            command_key: None,
            erase_subjects: &[],
        })
        .collect();
    log.append_all(&appends).await
}

/// Sends each of `parked` (a notification and a channel) on again, as an operator asked: a
/// `DeliveryRequeued` on each delivery that is parked now (others are left as they are). Returns
/// the notifications requeued.
pub async fn requeue(log: &EventLog, parked: &[(Uuid, pb::Channel)]) -> Result<Vec<Uuid>> {
    let channels: Vec<i32> = parked.iter().map(|(_, c)| *c as i32).collect();
    let ids: Vec<Uuid> = parked.iter().map(|(id, _)| *id).collect();
    let still: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT d.notification_id, d.channel FROM deliveries d
         JOIN unnest($1::uuid[], $2::int[]) AS p(id, channel)
           ON d.notification_id = p.id AND d.channel = p.channel
         WHERE d.status = 'parked'",
    )
    .bind(&ids)
    .bind(&channels)
    .fetch_all(log.pool())
    .await?;
    let mut requeued = Vec::new();
    for channel in [pb::Channel::Email, pb::Channel::Webhook] {
        let steps: Vec<(Uuid, Step)> = still
            .iter()
            .filter(|(_, c)| *c == channel as i32)
            .map(|(id, _)| (*id, Step::Requeued))
            .collect();
        if !steps.is_empty() {
            append_steps(log, channel, &steps).await?;
            requeued.extend(steps.iter().map(|(id, _)| *id));
        }
    }
    Ok(requeued)
}

/// The delay before attempt `attempt + 1`: `first` doubled per attempt, up to an hour, times a
/// random factor between 0.5 and 1.5 so that many failures do not retry in step.
pub(crate) fn backoff(first: Duration, attempt: u32) -> Duration {
    use rand::Rng;
    let doubled = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(Duration::from_secs(3600));
    capped.mul_f64(rand::rng().random_range(0.5..1.5))
}

/// For fault tests only: with `KITH_FAULT_ABORT_AFTER_SEND` naming `channel`, the process dies
/// here, between sending and recording the outcome, as a SIGKILL would kill it.
fn fault_point(channel: &str) {
    if std::env::var("KITH_FAULT_ABORT_AFTER_SEND").is_ok_and(|named| named == channel) {
        tracing::error!(
            channel,
            "KITH_FAULT_ABORT_AFTER_SEND: aborting after a send, as asked"
        );
        std::process::abort();
    }
}
