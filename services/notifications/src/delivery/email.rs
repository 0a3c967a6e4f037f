//! Email: one message per person with everything due for them, after the batching window,
//! with an RFC 8058 one-click unsubscribe.

use chrono::Utc;
use kith_platform::{Error, Result};
use kith_proto::notifications as pb;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use uuid::Uuid;

use super::{Deliverer, Due, Step, backoff, due_columns};
use crate::codec::kind_from_wire;
use crate::domain::schedule::next_digest;
use crate::domain::{Channel, Kind};

/// How many members' emails one round sends at most.
const MEMBERS_PER_ROUND: i64 = 200;
/// How many times an email is tried before it is parked.
const EMAIL_ATTEMPTS: u32 = 5;

/// The SMTP connection settings and the sender.
#[derive(Clone)]
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub(crate) fn new(url: &str, from: &str) -> Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|err| Error::Config(format!("--smtp-url: {err}")))?
            .timeout(Some(std::time::Duration::from_secs(30)))
            .build();
        let from = from
            .parse()
            .map_err(|err| Error::Config(format!("--email-from {from:?}: {err}")))?;
        Ok(Self { transport, from })
    }
}

/// `List-Unsubscribe: <https://...>`
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_owned()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> std::result::Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_owned())
    }
}

fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Why an email goes now, when it is not simply the batching window ending: it opens the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occasion {
    Batch,
    QuietHoursEnded,
    Digest { weekly: bool },
}

/// The subject and text of an email about `due`; `more` is how many other unread
/// notifications wait in the member's feed (a digest mentions them).
fn compose(due: &[Due], occasion: Occasion, more: i64, unsubscribe: &str) -> (String, String) {
    let describe = |d: &Due| kind_from_wire(d.kind).map_or("something happened", Kind::describe);
    let subject = match (occasion, due) {
        (Occasion::Digest { weekly }, due) => format!(
            "Your {} digest: {} notification{}",
            if weekly { "weekly" } else { "daily" },
            due.len(),
            if due.len() == 1 { "" } else { "s" }
        ),
        (_, [one]) => sentence(describe(one)),
        (_, many) => format!("{} new notifications", many.len()),
    };
    let mut body = String::new();
    match occasion {
        Occasion::Batch => {}
        Occasion::QuietHoursEnded => body.push_str("While your quiet hours were on:\n\n"),
        Occasion::Digest { weekly } => body.push_str(&format!(
            "Since your last {} digest:\n\n",
            if weekly { "weekly" } else { "daily" }
        )),
    }
    for d in due {
        body.push_str(&format!(
            "- {} ({} UTC){}\n",
            sentence(describe(d)),
            d.occurred_at.format("%Y-%m-%d %H:%M"),
            if d.updated { ", since edited" } else { "" }
        ));
    }
    if matches!(occasion, Occasion::Digest { .. }) && more > 0 {
        body.push_str(&format!(
            "\nAnd {more} more unread in your feed (group news that is not emailed).\n"
        ));
    }
    body.push_str("\nOpen Kith to read them.\n\n");
    body.push_str(&format!(
        "You get these emails because of your notification preferences. To stop them: {unsubscribe}\n"
    ));
    (subject, body)
}

impl Deliverer {
    /// Sends each member's due emails as one; whether anything was done.
    pub(super) async fn emails(&self) -> Result<bool> {
        let window = self.args.email_batch_window.as_secs_f64();
        let members: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT recipient_id FROM deliveries
             WHERE channel = $1
               AND ((status = 'pending' AND occurred_at <= now() - make_interval(secs => $2))
                 OR (status IN ('held', 'failed') AND due_at <= now()))
             LIMIT $3",
        )
        .bind(pb::Channel::Email as i32)
        .bind(window)
        .bind(MEMBERS_PER_ROUND)
        .fetch_all(&self.pool)
        .await?;
        let mut worked = false;
        for member in members {
            worked |= self.email_member(member).await?;
        }
        Ok(worked)
    }

    async fn email_member(&self, member: Uuid) -> Result<bool> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            due_columns!(),
            " FROM deliveries d JOIN notifications n USING (notification_id)
             WHERE d.recipient_id = $1 AND d.channel = $2
               AND d.status IN ('pending', 'held', 'failed')
             ORDER BY n.decided_position"
        ))
        .bind(member)
        .bind(pb::Channel::Email as i32)
        .fetch_all(&self.pool)
        .await?;
        let mut due = rows.iter().map(Due::read).collect::<Result<Vec<_>, _>>()?;
        if due.is_empty() {
            return Ok(false);
        }
        let cancel = |reason| {
            due.iter()
                .map(|d| (d.notification, Step::Cancelled { reason }))
                .collect::<Vec<_>>()
        };
        let Some(mailer) = &self.mailer else {
            self.record(pb::Channel::Email, &cancel("NO_EMAIL_SERVER"))
                .await?;
            return Ok(true);
        };
        let (address, _) = self.contact(member).await?;
        let Some(address) = address else {
            self.record(pb::Channel::Email, &cancel("NO_ADDRESS"))
                .await?;
            return Ok(true);
        };
        let preferences = self.preferences(member).await?;
        if !preferences.channel_on(Channel::Email) {
            self.record(pb::Channel::Email, &cancel("CHANNEL_OFF"))
                .await?;
            return Ok(true);
        }
        let now = Utc::now();
        let mut worked = false;
        // With a digest chosen, what is not urgent and has not been through a round yet waits
        // for the next one; what waits for a later digest stays out of this email.
        if let (Some(reason), Some(until)) = (
            preferences.digest.reason(),
            next_digest(preferences.time_zone, preferences.digest, now),
        ) {
            let (wait, rest): (Vec<Due>, Vec<Due>) = due
                .into_iter()
                .partition(|d| d.status == "pending" && !d.urgent);
            let steps: Vec<_> = wait
                .iter()
                .map(|d| (d.notification, Step::Held { until, reason }))
                .collect();
            self.record(pb::Channel::Email, &steps).await?;
            worked = !steps.is_empty();
            due = rest;
        }
        due.retain(|d| !(waits_for_digest(d) && d.due_at.is_some_and(|at| at > now)));
        if due.is_empty() {
            return Ok(worked);
        }
        let occasion = match due.iter().find(|d| waits_for_digest(d)) {
            Some(d) => Occasion::Digest {
                weekly: d.reason == "DIGEST_WEEKLY",
            },
            None if due
                .iter()
                .any(|d| d.status == "held" && d.reason == "QUIET_HOURS") =>
            {
                Occasion::QuietHoursEnded
            }
            None => Occasion::Batch,
        };
        if let Some(until) = Self::quiet(&preferences, now) {
            let (pass, hold): (Vec<Due>, Vec<Due>) = due
                .into_iter()
                .partition(|d| d.urgent && preferences.urgent_passes_quiet_hours);
            let steps: Vec<_> = hold
                .iter()
                .filter(|d| !(d.status == "held" && d.due_at == Some(until)))
                .map(|d| {
                    (
                        d.notification,
                        Step::Held {
                            until,
                            reason: "QUIET_HOURS",
                        },
                    )
                })
                .collect();
            self.record(pb::Channel::Email, &steps).await?;
            if pass.is_empty() {
                return Ok(worked || !steps.is_empty());
            }
            due = pass;
        }
        // The rate cap counts the emails (batches) sent in the last hour.
        let sent: Vec<chrono::DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(changed_at) FROM deliveries
             WHERE recipient_id = $1 AND channel = $2 AND status IN ('sent', 'sending')
               AND changed_at > now() - interval '1 hour'
             GROUP BY batch_id ORDER BY 1",
        )
        .bind(member)
        .bind(pb::Channel::Email as i32)
        .fetch_all(&self.pool)
        .await?;
        if sent.len() >= self.args.emails_per_hour as usize {
            let until = sent[0] + chrono::Duration::hours(1);
            let steps: Vec<_> = due
                .iter()
                .filter(|d| !(d.status == "held" && d.due_at == Some(until)))
                .map(|d| {
                    (
                        d.notification,
                        Step::Held {
                            until,
                            reason: "RATE_CAPPED",
                        },
                    )
                })
                .collect();
            self.record(pb::Channel::Email, &steps).await?;
            return Ok(worked || !steps.is_empty());
        }
        let batch = Uuid::now_v7();
        let attempt = due.iter().map(|d| d.attempts).max().unwrap_or(0).max(0) as u32 + 1;
        let intents: Vec<_> = due
            .iter()
            .map(|d| (d.notification, Step::Attempted { attempt, batch }))
            .collect();
        self.record(pb::Channel::Email, &intents).await?;
        let unsubscribe = format!(
            "{}/unsubscribe?member={member}&signature={}",
            self.public_url.trim_end_matches('/'),
            self.keys.unsubscribe_signature(member)
        );
        let more = match occasion {
            Occasion::Digest { .. } => self.unread_besides(member, &due).await?,
            _ => 0,
        };
        let (subject, body) = compose(&due, occasion, more, &unsubscribe);
        let sent = send(mailer, &address, batch, &subject, body, unsubscribe).await;
        super::fault_point("email");
        let steps: Vec<_> = match sent {
            Ok(()) => {
                tracing::info!(%member, count = due.len(), %batch, "email sent");
                due.iter()
                    .map(|d| (d.notification, Step::Sent { attempt, batch }))
                    .collect()
            }
            Err(error) if attempt >= EMAIL_ATTEMPTS => {
                tracing::warn!(%member, %error, attempt, "email failed; parked");
                due.iter()
                    .map(|d| {
                        (
                            d.notification,
                            Step::Parked {
                                attempts: attempt,
                                error: error.clone(),
                            },
                        )
                    })
                    .collect()
            }
            Err(error) => {
                let retry_at = now
                    + chrono::Duration::from_std(backoff(
                        std::time::Duration::from_secs(30),
                        attempt,
                    ))
                    .unwrap_or_default();
                tracing::warn!(%member, %error, attempt, %retry_at, "email failed; will retry");
                due.iter()
                    .map(|d| {
                        (
                            d.notification,
                            Step::Failed {
                                attempt,
                                error: error.clone(),
                                retry_at,
                            },
                        )
                    })
                    .collect()
            }
        };
        self.record(pb::Channel::Email, &steps).await?;
        Ok(true)
    }
}

/// Whether `d` is held for a digest (and goes when it comes).
fn waits_for_digest(d: &Due) -> bool {
    d.status == "held" && d.reason.starts_with("DIGEST_")
}

impl Deliverer {
    /// How many unread notifications `member` has in the feed besides `due`.
    async fn unread_besides(&self, member: Uuid, due: &[Due]) -> Result<i64> {
        let ids: Vec<Uuid> = due.iter().map(|d| d.notification).collect();
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM notifications
             WHERE recipient_id = $1 AND in_feed AND NOT read AND NOT retracted
               AND notification_id <> ALL($2)",
        )
        .bind(member)
        .bind(&ids)
        .fetch_one(&self.pool)
        .await?)
    }
}

async fn send(
    mailer: &Mailer,
    address: &str,
    batch: Uuid,
    subject: &str,
    body: String,
    unsubscribe: String,
) -> std::result::Result<(), String> {
    let to: lettre::message::Mailbox = address
        .parse()
        .map_err(|err| format!("the stored address does not parse: {err}"))?;
    let message = lettre::Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(format!("<{batch}@kith.notifications>")))
        .header(ListUnsubscribe(format!("<{unsubscribe}>")))
        .header(ListUnsubscribePost)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|err| format!("building the message: {err}"))?;
    mailer
        .transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|err| format!("SMTP: {err}"))
}
