//! "Why was I (not) notified?", answered from the ledger: the rule that matched, the level that
//! applied and where it was set, each channel's status and the reason for it, and what happened
//! since (read, updated, retracted), in fields and in words.

use kith_platform::command::{ErrorKind, refusal};
use kith_platform::paging::{min_position, status_from_db};
use kith_platform::validation::Violations;
use kith_proto::notifications as pb;
use kith_proto::notifications::explain_notification_request::Subject;
use sqlx::Row;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, incomplete};
use crate::codec::{channel_from_wire, kind_from_wire};
use crate::domain::{Channel, Kind};
use crate::projections::route::notification_id_beside;

type Reply<T> = Result<Response<T>, Status>;

/// A delivery as the explanation reads it: channel, status, reason, due, attempts.
type ChannelRow = (
    i32,
    String,
    String,
    Option<chrono::DateTime<chrono::Utc>>,
    i32,
);

macro_rules! explained_columns {
    () => {
        "notification_id, kind, also, level, level_scope, read, updated, retracted, retraction_reason,
         channels, channels_deliver, channels_reason"
    };
}

fn reason(code: &str, text: impl Into<String>) -> pb::Reason {
    pb::Reason {
        code: code.to_owned(),
        text: text.into(),
    }
}

fn channel_name(channel: Option<Channel>) -> &'static str {
    match channel {
        Some(Channel::InApp) => "in-app feed",
        Some(Channel::Email) => "email",
        Some(Channel::Webhook) => "webhook",
        None => "unknown channel",
    }
}

/// A channel's status and reason, in words.
fn channel_text(channel: Option<Channel>, status: &str, code: &str) -> String {
    let name = channel_name(channel);
    let why = match code {
        "CHANNEL_OFF" => "you switched this channel off".to_owned(),
        "FEED_ONLY" => {
            "email is for what concerns you in person; group news stays in the feed".to_owned()
        }
        "NO_ADDRESS" => "Kith has no address or endpoint for you on it".to_owned(),
        "COHORT_MUTED" => "you muted this cohort".to_owned(),
        "COMMUNITY_MUTED" => "you muted this community".to_owned(),
        "COHORT_MENTIONS_AND_REPLIES_ONLY" => {
            "this cohort is set to mentions and replies only".to_owned()
        }
        "COMMUNITY_MENTIONS_AND_REPLIES_ONLY" => {
            "this community is set to mentions and replies only".to_owned()
        }
        "THREAD_MUTED" => "you muted this thread".to_owned(),
        "QUIET_HOURS" => "your quiet hours are on; it goes with the rest when they end".to_owned(),
        "DIGEST_DAILY" => "you chose a daily digest; it goes in the next one".to_owned(),
        "DIGEST_WEEKLY" => "you chose a weekly digest; it goes in the next one".to_owned(),
        "RATE_CAPPED" => "you got the most emails an hour allows; it goes in the next".to_owned(),
        "SENT" => "it was sent".to_owned(),
        "REQUEUED" => "it failed every attempt, and an operator had it tried again".to_owned(),
        "SENDING" => "it is being sent".to_owned(),
        "NO_EMAIL_SERVER" => "this deployment sends no email".to_owned(),
        "INTERRUPTED_NOT_RESENT" => {
            "sending was interrupted; it may have gone, so it is not sent twice".to_owned()
        }
        "READ_IN_APP" => "you read it in the feed first".to_owned(),
        "MESSAGE_DELETED" => "the message was deleted".to_owned(),
        "MESSAGE_HIDDEN" => "a moderator hid the message".to_owned(),
        other => format!("the rule matched ({other})"),
    };
    format!("{name}: {status}, because {why}")
}

impl Api {
    pub(super) async fn explain_notification(
        &self,
        request: Request<pb::ExplainNotificationRequest>,
    ) -> Reply<pb::ExplainNotificationResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        // (by notification id?, the id)
        let subject = match &r.subject {
            Some(Subject::NotificationId(id)) => v.uuid("notification_id", id).map(|id| (true, id)),
            Some(Subject::SourceEventId(id)) => v.uuid("source_event_id", id).map(|id| (false, id)),
            None => {
                v.add(
                    "notification_id",
                    "name a notification_id or a source_event_id",
                );
                None
            }
        };
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let Some((by_notification, id)) = subject else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        let notification = if by_notification {
            Some(id)
        } else {
            self.notification_of(id, caller).await?
        };
        let row = match notification {
            Some(notification) => sqlx::query(concat!(
                "SELECT ",
                explained_columns!(),
                " FROM notifications WHERE notification_id = $1 AND recipient_id = $2"
            ))
            .bind(notification)
            .bind(caller)
            .fetch_optional(&self.pool)
            .await
            .map_err(status_from_db)?,
            None => None,
        };
        let Some(row) = row else {
            if by_notification {
                return Err(refusal(
                    ErrorKind::NotFound,
                    "NOTIFICATION_NOT_FOUND",
                    "no such notification of yours",
                    None,
                ));
            }
            let text = "no rule matched you for this event: you were not mentioned, do not \
                        follow its thread, are not in its cohort or conversation, or it was your \
                        own doing (or Kith has not received the event yet)";
            return Ok(Response::new(pb::ExplainNotificationResponse {
                summary: format!("Not notified: {text}."),
                reasons: vec![reason("NO_RULE_MATCHED", text)],
                ..Default::default()
            }));
        };
        self.explain_row(&row).await.map(Response::new)
    }

    /// The id `member`'s notification of `source_event` has, if any of its notifications is in
    /// the ledger: one of them gives the time that begins them all.
    async fn notification_of(
        &self,
        source_event: Uuid,
        member: Uuid,
    ) -> Result<Option<Uuid>, Status> {
        let sibling: Option<Uuid> = sqlx::query_scalar(
            "SELECT notification_id FROM notifications
             WHERE source_event_id = $1 AND source_key LIMIT 1",
        )
        .bind(source_event)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?;
        Ok(sibling.map(|sibling| notification_id_beside(sibling, source_event, member)))
    }

    async fn explain_row(
        &self,
        row: &sqlx::postgres::PgRow,
    ) -> Result<pb::ExplainNotificationResponse, Status> {
        let get = |e: sqlx::Error| status_from_db(e);
        let id: Uuid = row.try_get("notification_id").map_err(get)?;
        let kind: i32 = row.try_get("kind").map_err(get)?;
        let also: Vec<i32> = row.try_get("also").map_err(get)?;
        let level: i32 = row.try_get("level").map_err(get)?;
        let level_scope: String = row.try_get("level_scope").map_err(get)?;
        let read: bool = row.try_get("read").map_err(get)?;
        let updated: bool = row.try_get("updated").map_err(get)?;
        let retracted: bool = row.try_get("retracted").map_err(get)?;
        let retraction: Option<String> = row.try_get("retraction_reason").map_err(get)?;
        let mut channels: Vec<ChannelRow> = sqlx::query_as(
            "SELECT channel, status, reason, due_at, attempts FROM deliveries
                 WHERE notification_id = $1 ORDER BY channel",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        // A channel with nothing to send has no delivery: its status is what was decided.
        let decided: Option<Vec<i32>> = row.try_get("channels").map_err(get)?;
        let deliver: Option<Vec<bool>> = row.try_get("channels_deliver").map_err(get)?;
        let why: Option<Vec<String>> = row.try_get("channels_reason").map_err(get)?;
        let decided = decided.unwrap_or_default().into_iter().zip(
            deliver
                .unwrap_or_default()
                .into_iter()
                .zip(why.unwrap_or_default()),
        );
        for (channel, (deliver, code)) in decided {
            if channels.iter().any(|c| c.0 == channel) {
                continue;
            }
            let (status, code) = match (deliver, channel_from_wire(channel)) {
                (true, Some(Channel::InApp)) if retracted => {
                    ("retracted", retraction.clone().unwrap_or_default())
                }
                (true, Some(Channel::InApp)) => ("delivered", code),
                (true, _) => ("pending", code),
                (false, _) => ("withheld", code),
            };
            channels.push((channel, status.to_owned(), code, None, 0));
        }
        channels.sort_by_key(|c| c.0);

        let mut reasons = Vec::new();
        let rule = kind_from_wire(kind);
        reasons.push(reason(
            rule.map_or("UNKNOWN_RULE", Kind::code),
            rule.map_or("a rule this version does not know", Kind::describe),
        ));
        for other in also.iter().filter_map(|k| kind_from_wire(*k)) {
            reasons.push(reason(
                other.code(),
                format!("also: {} (one notification for both)", other.describe()),
            ));
        }
        let level_name = match pb::Level::try_from(level) {
            Ok(pb::Level::All) => "all",
            Ok(pb::Level::MentionsAndReplies) => "mentions and replies only",
            Ok(pb::Level::Muted) => "muted",
            _ => "unknown",
        };
        let level_where = match level_scope.as_str() {
            "cohort" => "set by you for this cohort",
            "community" => "set by you for this community",
            _ => "the default, as you set none here",
        };
        reasons.push(reason(
            &format!("LEVEL_{}", level_name.to_uppercase().replace(' ', "_")),
            format!("your level was {level_name} ({level_where})"),
        ));
        let mut notified = false;
        let mut statuses = Vec::new();
        for (channel, status, code, due_at, attempts) in &channels {
            let which = channel_from_wire(*channel);
            let due_at = due_at.filter(|_| matches!(status.as_str(), "held" | "failed"));
            // A retracted feed entry had been delivered: only what was delivered is retracted.
            if matches!(status.as_str(), "delivered" | "sent")
                || (status == "retracted" && which == Some(Channel::InApp))
            {
                notified = true;
            }
            let mut text = channel_text(which, status, code);
            if let Some(at) = due_at {
                text.push_str(&format!(" (due {} UTC)", at.format("%Y-%m-%d %H:%M")));
            }
            reasons.push(reason(code, text));
            statuses.push(pb::ChannelStatus {
                channel: *channel,
                status: status.clone(),
                reason: code.clone(),
                due_at: due_at.map(kith_platform::wire::timestamp),
                attempts: u32::try_from(*attempts).unwrap_or(0),
            });
        }
        if updated {
            reasons.push(reason(
                "UPDATED",
                "the message was edited; the notification shows the new version",
            ));
        }
        if read {
            reasons.push(reason("READ", "you read it in the feed"));
        }
        if retracted {
            let why = retraction.clone().unwrap_or_default();
            reasons.push(reason(
                "RETRACTED",
                format!(
                    "it was retracted ({why}): it left your feed and nothing more of it is sent"
                ),
            ));
        }
        let summary = match (retracted, notified) {
            (true, _) => format!(
                "Retracted: {}, but the message went away ({}).",
                rule.map_or("a rule matched", Kind::describe),
                retraction.clone().unwrap_or_default()
            ),
            (false, true) => format!(
                "Notified: {}.",
                rule.map_or("a rule matched", Kind::describe)
            ),
            (false, false) => {
                let why = channels
                    .first()
                    .map(|(c, s, code, _, _)| channel_text(channel_from_wire(*c), s, code))
                    .unwrap_or_default();
                format!(
                    "Not notified: {}, but {why}.",
                    rule.map_or("a rule matched", Kind::describe)
                )
            }
        };
        Ok(pb::ExplainNotificationResponse {
            notified,
            notification_id: id.to_string(),
            kind,
            also,
            level,
            level_scope,
            channels: statuses,
            retracted,
            retraction_reason: retraction.unwrap_or_default(),
            reasons,
            summary,
        })
    }
}
