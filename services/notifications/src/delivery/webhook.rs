//! Webhooks: each notification POSTed as JSON to the member's endpoint, signed as the Standard
//! Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`), retried
//! with exponential backoff and jitter, parked after the last attempt. The `webhook-id` is the
//! delivery's id, the same on every attempt, so a receiver drops what it already has.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kith_platform::{Error, Result};
use kith_proto::notifications as pb;
use uuid::Uuid;

use super::keys::sign_webhook;
use super::{Deliverer, Due, Step, backoff, delivery_id, due_columns};
use crate::domain::contact::is_public;

/// How many webhooks one round sends at most.
const PER_ROUND: i64 = 100;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves names for webhook calls, refusing addresses the deployment does not call: a public
/// name that resolves to a private address (by mistake or by a DNS rebinding) is refused too.
#[derive(Debug)]
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| allow_private || is_public(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address this deployment calls").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client of webhook calls: no redirects (one could lead anywhere), bounded time.
pub(super) fn client(allow_private: bool) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(CALL_TIMEOUT)
        .user_agent("kith-notifications")
        .dns_resolver(Arc::new(PublicOnly { allow_private }))
        .build()
        .map_err(|err| Error::Config(format!("the webhook HTTP client: {err}")))
}

fn text(id: Option<Uuid>) -> serde_json::Value {
    id.map_or(serde_json::Value::Null, |id| id.to_string().into())
}

fn kind_name(kind: i32) -> String {
    pb::Kind::try_from(kind).map_or_else(|_| kind.to_string(), |k| k.as_str_name().to_owned())
}

/// The JSON body of a notification's webhook.
fn payload(due: &Due) -> Vec<u8> {
    serde_json::json!({
        "type": "notification.created",
        "timestamp": Utc::now().to_rfc3339(),
        "data": {
            "notification_id": due.notification.to_string(),
            "recipient_id": due.recipient.to_string(),
            "kind": kind_name(due.kind),
            "also": due.also.iter().map(|k| kind_name(*k)).collect::<Vec<_>>(),
            "community_id": text(due.community),
            "cohort_id": text(due.cohort),
            "conversation_id": text(due.conversation),
            "thread_id": text(due.thread),
            "message_id": text(due.message),
            "actor_id": text(due.actor),
            "session_id": text(due.session),
            "starts_at": due.starts_at.map(|at| at.to_rfc3339()),
            "occurred_at": due.occurred_at.to_rfc3339(),
            "urgent": due.urgent,
            "updated": due.updated,
        }
    })
    .to_string()
    .into_bytes()
}

impl Deliverer {
    /// Sends the webhooks due now; whether anything was done.
    pub(super) async fn webhooks(&self) -> Result<bool> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            due_columns!(),
            " FROM deliveries d JOIN notifications n USING (notification_id)
             WHERE d.channel = $1
               AND (d.status IN ('pending', 'sending')
                 OR (d.status IN ('failed', 'held') AND d.due_at <= now()))
             ORDER BY n.decided_position LIMIT $2"
        ))
        .bind(pb::Channel::Webhook as i32)
        .bind(PER_ROUND)
        .fetch_all(&self.pool)
        .await?;
        let due = rows.iter().map(Due::read).collect::<Result<Vec<_>, _>>()?;
        let worked = !due.is_empty();
        for one in due {
            self.webhook(one).await?;
        }
        Ok(worked)
    }

    async fn webhook(&self, due: Due) -> Result<()> {
        let channel = pb::Channel::Webhook;
        let (_, url) = self.contact(due.recipient).await?;
        let Some(url) = url else {
            return self
                .record(
                    channel,
                    &[(
                        due.notification,
                        Step::Cancelled {
                            reason: "NO_ADDRESS",
                        },
                    )],
                )
                .await;
        };
        let per_minute: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries
             WHERE recipient_id = $1 AND channel = $2 AND status = 'sent'
               AND changed_at > now() - interval '1 minute'",
        )
        .bind(due.recipient)
        .bind(channel as i32)
        .fetch_one(&self.pool)
        .await?;
        if per_minute >= i64::from(self.args.webhooks_per_minute) {
            let until = Utc::now() + chrono::Duration::seconds(60);
            return self
                .record(
                    channel,
                    &[(
                        due.notification,
                        Step::Held {
                            until,
                            reason: "RATE_CAPPED",
                        },
                    )],
                )
                .await;
        }
        let attempt = due.attempts.max(0) as u32 + 1;
        let id = delivery_id(due.notification, channel);
        self.record(
            channel,
            &[(due.notification, Step::Attempted { attempt, batch: id })],
        )
        .await?;
        let body = payload(&due);
        let timestamp = Utc::now().timestamp();
        let secret = self.keys.webhook_secret(due.recipient, &url);
        let signature = sign_webhook(&secret, &id.to_string(), timestamp, &body);
        let answer = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", id.to_string())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        super::fault_point("webhook");
        let outcome = match answer {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("the endpoint answered {}", response.status())),
            Err(err) => Err(format!("calling the endpoint: {}", without_url(&err))),
        };
        let step = match outcome {
            Ok(()) => {
                tracing::info!(member = %due.recipient, webhook = %id, attempt, "webhook sent");
                Step::Sent { attempt, batch: id }
            }
            Err(error) if attempt >= self.args.webhook_max_attempts => {
                tracing::warn!(member = %due.recipient, webhook = %id, attempt, %error, "webhook parked after its last attempt");
                Step::Parked {
                    attempts: attempt,
                    error,
                }
            }
            Err(error) => {
                let retry_at = Utc::now()
                    + chrono::Duration::from_std(backoff(self.args.webhook_first_retry, attempt))
                        .unwrap_or_default();
                tracing::info!(member = %due.recipient, webhook = %id, attempt, %error, %retry_at, "webhook failed; will retry");
                Step::Failed {
                    attempt,
                    error,
                    retry_at,
                }
            }
        };
        self.record(channel, &[(due.notification, step)]).await
    }
}

/// An HTTP error without the URL in it (it may carry a token in its query).
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut cause = std::error::Error::source(err);
    let mut detail = String::new();
    while let Some(inner) = cause {
        detail = inner.to_string();
        cause = inner.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}
