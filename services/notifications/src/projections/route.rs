//! Turning a rule's matches into notifications: the recipients' preferences are read, each
//! decision taken ([`crate::domain::decide`]) and the event's decisions appended to this
//! service's log together, as one `NotificationsDecided`, inside the consumer's transaction.
//! Every id is derived from the source event (and the recipient), and an event already in the
//! log is not written again, so a replay of the source (a rebuild, a redelivery past the
//! checkpoint) adds nothing.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use kith_platform::Result;
use kith_platform::eventlog::{Append, Metadata, NewEvent, RecordedEvent, append_all_with};
use kith_platform::wire::timestamp;
use kith_proto::notifications as pb;
use prost::Message;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::codec::{channel_to_wire, kind_to_wire, level_to_wire, stored_preferences};
use crate::domain::{Channel, Matched, Place, Preferences, decide};

/// Namespace of the ids this service derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_6e6f_7469_6669_6361_7469_6f6e);

/// Tells this process's readers of the log (the relay, the ledger) that the rules appended, and
/// has other replicas told, as an append through the log's own handle does: the rules append
/// inside their consumer's transaction, past that handle. Empty (no one to tell) in a rebuild.
#[derive(Debug, Clone, Default)]
pub struct Appended {
    appended: Option<std::sync::Arc<tokio::sync::Notify>>,
    committed_here: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl Appended {
    pub fn of(log: &kith_platform::eventlog::EventLog) -> Self {
        Self {
            appended: Some(log.appended()),
            committed_here: Some(log.committed_here()),
        }
    }

    /// How the rules record: with the ledger's rows too when they run live (the ledger then
    /// steps over what they wrote); a rebuild leaves the ledger to its own projection.
    pub(crate) fn recording(&self) -> Recording {
        if self.appended.is_some() {
            Recording::LogAndLedger
        } else {
            Recording::LogOnly
        }
    }

    /// After a commit that may have appended.
    pub fn wake(&self) {
        if let Some(appended) = &self.appended {
            appended.notify_waiters();
        }
        if let Some(committed) = &self.committed_here {
            committed.notify_one();
        }
    }
}

/// Where the rules' decisions go in the consumer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recording {
    /// To the log; the ledger applies them when it reads them there.
    LogOnly,
    /// To the log and the ledger's tables at once, which spares the feed a stage: the ledger,
    /// reading the log, finds them applied and steps over them. Only for the live service; a
    /// rebuild of the rules must not write into the live ledger.
    LogAndLedger,
}

/// The stream type of what follows a notification (an update, a retraction).
pub(crate) const NOTIFICATION_STREAM: &str = "notification";
/// The stream type of the decisions taken for one source event.
const NOTICE_STREAM: &str = "notice";

/// The id of the stream of `source_event`'s decisions (recorded `at`).
fn notice_id(source_event: Uuid, at: DateTime<Utc>) -> Uuid {
    ordered_id(
        u64::try_from(at.timestamp_millis()).unwrap_or(0),
        &format!("{source_event}:notice"),
    )
}

/// The id of the notification of `source_event` (recorded `at`) for `recipient`: the same
/// event and member always give the same id.
pub fn notification_id(source_event: Uuid, at: DateTime<Utc>, recipient: Uuid) -> Uuid {
    ordered_id(
        u64::try_from(at.timestamp_millis()).unwrap_or(0),
        &format!("{source_event}:{recipient}"),
    )
}

/// [`notification_id`] for `recipient`, from the id of another notification of the same
/// `source_event` (which begins with the same time).
pub fn notification_id_beside(sibling: Uuid, source_event: Uuid, recipient: Uuid) -> Uuid {
    after(sibling, &format!("{source_event}:{recipient}"))
}

/// The id of the event that records `what` of `notification`, so that recording it again is
/// seen for what it is.
fn event_id(notification: Uuid, what: &str) -> Uuid {
    after(notification, &format!("{notification}:{what}"))
}

/// The id under which versions before notices recorded `notification`'s decision, as an event
/// of its own on the notification's stream.
pub fn decided_before_notices(notification: Uuid) -> Uuid {
    event_id(notification, "decided")
}

/// An id derived from `name` that sorts with `earlier` (an id made here).
pub(crate) fn after(earlier: Uuid, name: &str) -> Uuid {
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&earlier.as_bytes()[..6]);
    ordered_id(u64::from_be_bytes(millis), name)
}

/// An id that is always the same for `name` and sorts by `millis`: its first 48 bits are the
/// time in milliseconds, as a UUIDv7's are, the rest a hash of `name` (a UUIDv8). Ids decided
/// one after the other then land side by side in the log's unique indexes and the ledger's,
/// where random ones would each dirty a page anywhere in them: a million-event replay wrote
/// a third slower once those indexes outgrew the server's buffers.
fn ordered_id(millis: u64, name: &str) -> Uuid {
    let hash = Uuid::new_v5(&NAMESPACE, name.as_bytes()).into_bytes();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&hash[6..]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// What a notification points at, besides its rule.
#[derive(Debug, Clone, Default)]
pub(crate) struct About {
    pub(crate) community: Option<Uuid>,
    pub(crate) cohort: Option<Uuid>,
    pub(crate) conversation: Option<Uuid>,
    pub(crate) thread: Option<Uuid>,
    pub(crate) message: Option<Uuid>,
    pub(crate) actor: Option<Uuid>,
    pub(crate) session: Option<Uuid>,
    pub(crate) starts_at: Option<DateTime<Utc>>,
    pub(crate) urgent: bool,
}

fn text(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// The preferences of `members` as last set (defaults for those who never set any).
pub(crate) async fn preferences_of(
    conn: &mut PgConnection,
    members: &[Uuid],
) -> Result<HashMap<Uuid, Preferences>> {
    let rows: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT member_id, preferences FROM preferences WHERE member_id = ANY($1)")
            .bind(members)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(member, bytes)| {
            let wire = pb::Preferences::decode(bytes.as_slice()).unwrap_or_default();
            (member, stored_preferences(&wire))
        })
        .collect())
}

/// One event's matches, decided together with others'.
#[derive(Debug)]
pub(crate) struct Notice<'a> {
    pub(crate) service: &'a str,
    pub(crate) source: &'a RecordedEvent,
    pub(crate) about: About,
    pub(crate) matched: Vec<Matched>,
}

/// Decides and records a notification for each of `matched`, from `source` (an event of
/// `service`). Returns the ids of the notifications decided (recorded now or before).
pub(crate) async fn notify(
    conn: &mut PgConnection,
    service: &str,
    source: &RecordedEvent,
    about: &About,
    matched: &[Matched],
) -> Result<Vec<Uuid>> {
    let notice = Notice {
        service,
        source,
        about: about.clone(),
        matched: matched.to_vec(),
    };
    Ok(notify_all(conn, &[notice], Recording::LogOnly)
        .await?
        .pop()
        .unwrap_or_default())
}

/// [`notify`] for several events at once: the recipients' preferences and contacts read in one
/// statement each, every decision appended in one. Returns each notice's notification ids.
pub(crate) async fn notify_all(
    conn: &mut PgConnection,
    notices: &[Notice<'_>],
    recording: Recording,
) -> Result<Vec<Vec<Uuid>>> {
    let mut recipients: Vec<Uuid> = notices
        .iter()
        .flat_map(|n| n.matched.iter().map(|m| m.recipient))
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    if recipients.is_empty() {
        return Ok(vec![Vec::new(); notices.len()]);
    }
    let preferences = preferences_of(conn, &recipients).await?;
    let reach: HashMap<Uuid, (bool, bool)> = sqlx::query_as::<_, (Uuid, bool, bool)>(
        "SELECT member_id, email IS NOT NULL, webhook_url IS NOT NULL FROM contacts
         WHERE member_id = ANY($1)",
    )
    .bind(&recipients)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|(member, email, webhook)| (member, (email, webhook)))
    .collect();
    let defaults = Preferences::default();
    let mut ids = Vec::with_capacity(notices.len());
    let mut recorded = Vec::new();
    // Each notice's decisions, by its event id, for the ledger.
    let mut decisions: HashMap<Uuid, Vec<pb::NotificationDecided>> = HashMap::new();
    for notice in notices {
        let about = &notice.about;
        let source = notice.source;
        let place = Place {
            community: about.community,
            cohort: about.cohort,
            thread: about.thread,
        };
        let mut these = Vec::with_capacity(notice.matched.len());
        let mut decided = Vec::with_capacity(notice.matched.len());
        for m in &notice.matched {
            let id = notification_id(source.event_id, source.recorded_at, m.recipient);
            let prefs = preferences.get(&m.recipient).unwrap_or(&defaults);
            let (email, webhook) = reach.get(&m.recipient).copied().unwrap_or_default();
            let decision = decide(m.kind, place, prefs, |channel| match channel {
                Channel::InApp => true,
                Channel::Email => email,
                Channel::Webhook => webhook,
            });
            let event = pb::NotificationDecided {
                notification_id: id.to_string(),
                recipient_id: m.recipient.to_string(),
                kind: kind_to_wire(m.kind).into(),
                also: m.also.iter().map(|k| kind_to_wire(*k).into()).collect(),
                source_service: notice.service.to_owned(),
                source_event_id: source.event_id.to_string(),
                source_event_type: source.event_type.clone(),
                community_id: text(about.community),
                cohort_id: text(about.cohort),
                conversation_id: text(about.conversation),
                thread_id: text(about.thread),
                message_id: text(about.message),
                actor_id: text(about.actor),
                level: level_to_wire(decision.level).into(),
                level_scope: decision.level_source.code().to_owned(),
                channels: decision
                    .channels
                    .iter()
                    .map(|c| pb::ChannelDecision {
                        channel: channel_to_wire(c.channel).into(),
                        deliver: c.deliver,
                        reason: c.reason.to_owned(),
                    })
                    .collect(),
                urgent: about.urgent,
                occurred_at: Some(timestamp(source.recorded_at)),
                session_id: text(about.session),
                starts_at: about.starts_at.map(timestamp),
            };
            decided.push(event);
            these.push(id);
        }
        if !decided.is_empty() {
            let notice = notice_id(source.event_id, source.recorded_at);
            // A log written before notices holds each decision as an event of its own, all of
            // an event's in one transaction: the first one's says the notice was recorded.
            let first = these.first().copied().map(decided_before_notices);
            let notice_event = event_id(notice, "decided");
            let notifications = pb::NotificationsDecided {
                notifications: decided,
            };
            recorded.push(Recorded {
                stream_type: NOTICE_STREAM,
                stream: notice,
                event_id: notice_event,
                recorded_before_as: first,
                after: 0,
                body: encode(&notifications),
                cause: source,
            });
            if recording == Recording::LogAndLedger {
                decisions.insert(notice_event, notifications.notifications);
            }
        }
        ids.push(these);
    }
    let appended = record(conn, recorded).await?;
    if recording == Recording::LogAndLedger {
        into_ledger(conn, appended, decisions).await?;
    }
    Ok(ids)
}

/// Writes the decisions of the notices just `appended` into the ledger's tables, as the ledger
/// would on reading them from the log: the same rows, at the same log checkpoint (this
/// transaction's id and the notice's position) and time (the transaction's start, which the
/// log records).
async fn into_ledger(
    conn: &mut PgConnection,
    appended: Vec<AppendedEvent>,
    mut decisions: HashMap<Uuid, Vec<pb::NotificationDecided>>,
) -> Result<()> {
    if appended.is_empty() {
        return Ok(());
    }
    let (transaction_id, recorded_at): (i64, DateTime<Utc>) =
        sqlx::query_as("SELECT pg_current_xact_id()::text::bigint, now()")
            .fetch_one(&mut *conn)
            .await?;
    let mut events = Vec::with_capacity(appended.len());
    for a in appended {
        let Some(notifications) = decisions.remove(&a.event_id) else {
            continue;
        };
        let event = RecordedEvent {
            position: a.position,
            transaction_id,
            stream_type: a.stream_type.to_owned(),
            stream_id: a.stream_id,
            version: a.version,
            event_id: a.event_id,
            event_type: a.event_type,
            payload: Vec::new(),
            metadata_json: String::new(),
            recorded_at,
        };
        events.push((event, notifications));
    }
    let run: Vec<(&RecordedEvent, pb::NotificationDecided)> = events
        .iter()
        .flat_map(|(event, notifications)| notifications.iter().map(move |d| (event, d.clone())))
        .collect();
    super::ledger::decided(conn, &run).await
}

/// An event [`record`] appended.
struct AppendedEvent {
    event_id: Uuid,
    event_type: String,
    stream_type: &'static str,
    stream_id: String,
    version: i64,
    position: i64,
}

/// Records `what` (an update or a retraction, built by `make`) on each of `notifications`, after
/// its last event.
pub(crate) async fn follow_up(
    conn: &mut PgConnection,
    source: &RecordedEvent,
    notifications: &[Uuid],
    what: &str,
    make: impl Fn(Uuid) -> NewEventBody,
) -> Result<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    let streams: Vec<String> = notifications.iter().map(Uuid::to_string).collect();
    let versions = kith_platform::eventlog::versions(&mut *conn, &streams).await?;
    let tag = format!("{what}:{}", source.event_id);
    // A notification's own stream starts with what follows it (older logs: with its decision).
    let events = notifications.iter().map(|id| Recorded {
        stream_type: NOTIFICATION_STREAM,
        stream: *id,
        event_id: event_id(*id, &tag),
        recorded_before_as: None,
        after: versions.get(&id.to_string()).copied().unwrap_or(0),
        body: make(*id),
        cause: source,
    });
    record(conn, events.collect()).await.map(|_| ())
}

/// An event's type and bytes.
pub(crate) type NewEventBody = (String, Vec<u8>);

pub(crate) fn encode<M: Message + prost::Name>(message: &M) -> NewEventBody {
    (M::full_name(), message.encode_to_vec())
}

/// An event about to be recorded on a notice's or a notification's stream.
struct Recorded<'a> {
    stream_type: &'static str,
    stream: Uuid,
    event_id: Uuid,
    /// The id under which an older version recorded the same.
    recorded_before_as: Option<Uuid>,
    /// The stream's version it follows.
    after: i64,
    body: NewEventBody,
    /// The event of another service that caused it.
    cause: &'a RecordedEvent,
}

/// Appends each event not already in the log (by its id), in one statement, with metadata that
/// ties it to its cause. Returns those it appended.
async fn record(conn: &mut PgConnection, events: Vec<Recorded<'_>>) -> Result<Vec<AppendedEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = events
        .iter()
        .flat_map(|e| std::iter::once(e.event_id).chain(e.recorded_before_as))
        .collect();
    let present = kith_platform::eventlog::recorded(&mut *conn, &ids).await?;
    let mut metadata: HashMap<Uuid, Metadata> = HashMap::new();
    for event in &events {
        metadata.entry(event.cause.event_id).or_insert_with(|| {
            let cause = event.cause.metadata();
            Metadata {
                actor: cause.actor,
                correlation_id: cause.correlation_id,
                causation_id: Some(event.cause.event_id),
                command_id: None,
                traceparent: cause.traceparent,
            }
        });
    }
    let streams: Vec<(&str, String, i64, NewEvent, Uuid)> = events
        .into_iter()
        .filter(|e| {
            !present.contains(&e.event_id)
                && !e.recorded_before_as.is_some_and(|id| present.contains(&id))
        })
        .map(|e| {
            let (event_type, payload) = e.body;
            (
                e.stream_type,
                e.stream.to_string(),
                e.after,
                NewEvent {
                    event_id: e.event_id,
                    event_type,
                    payload,
                },
                e.cause.event_id,
            )
        })
        .collect();
    let appends: Vec<Append<'_>> = streams
        .iter()
        .map(|(stream_type, stream, version, event, cause)| Append {
            stream_type,
            stream_id: stream,
            expected_version: *version,
            events: vec![event.clone()],
            metadata: &metadata[cause],
            command_key: None,
            erase_subjects: &[],
        })
        .collect();
    let positions = append_all_with(&mut *conn, &appends).await?;
    Ok(streams
        .into_iter()
        .zip(positions)
        .map(
            |((stream_type, stream_id, _, event, _), at)| AppendedEvent {
                event_id: event.event_id,
                event_type: event.event_type,
                stream_type,
                stream_id,
                version: at.version,
                position: at.position,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("an instant")
    }

    #[test]
    fn a_notification_id_is_the_same_for_the_same_event_and_member_and_sorts_by_time() {
        let (event, member, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let now = at("2026-12-07T10:00:00.123Z");
        let id = notification_id(event, now, member);
        assert_eq!(id, notification_id(event, now, member));
        assert_ne!(id, notification_id(event, now, other));
        assert_eq!(id.get_version_num(), 8);
        // Later events' ids sort after, whatever the hash: they append at the indexes' end.
        let later = notification_id(Uuid::new_v4(), at("2026-12-07T10:00:00.124Z"), other);
        assert!(later > id, "{later} after {id}");
        assert!(later.to_string() > id.to_string(), "as text too");
        // What is recorded of a notification sorts with it.
        let updated = event_id(id, "updated:x");
        assert_eq!(&updated.as_bytes()[..6], &id.as_bytes()[..6]);
        assert_ne!(updated, event_id(id, "retracted:x"));
        // Another recipient's id follows from this one, without the event's time.
        assert_eq!(
            notification_id_beside(id, event, other),
            notification_id(event, now, other)
        );
        assert_eq!(notification_id_beside(id, event, member), id);
    }

    #[test]
    fn a_notice_id_is_the_same_for_the_same_event_and_sorts_by_time() {
        let (event, other) = (Uuid::new_v4(), Uuid::new_v4());
        let now = at("2026-12-07T10:00:00.123Z");
        let notice = notice_id(event, now);
        assert_eq!(notice, notice_id(event, now));
        assert_ne!(notice, notice_id(other, now));
        assert!(notice_id(other, at("2026-12-07T10:00:00.124Z")) > notice);
        // Never one of the event's notifications.
        assert_ne!(notice, notification_id(event, now, event));
    }
}
