//! The ledger, from this service's own log: every notification decided (delivered or withheld,
//! with its reasons), its state in the feed, each channel's status with the reason for its last
//! change, and each member's preferences. Rebuilt from the log alone, it is the live one.
//!
//! A channel's status: `delivered` (in the feed); for email and webhooks `pending` (waiting for
//! its batching window), `held` (quiet hours or a rate cap, until `due_at`), `sending` (the
//! intent recorded, the outcome not yet), `sent`, `failed` (tried again at `due_at`), `parked`
//! (every attempt failed); and for any channel `withheld` (a preference or a missing address),
//! `cancelled` (read in the feed first, or the address went away) and `retracted` (the message
//! went away first). Only an email or webhook that is to go has a `deliveries` row to follow it;
//! what was decided for the other channels (the feed, anything withheld) is kept on the
//! notification, which saves a row per channel on nearly every decision.

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id, time_of};
use kith_proto::notifications as pb;
use prost::{Message, Name};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::codec::channel_from_wire;
use crate::domain::Channel;

const DDL: &str = "
CREATE TABLE IF NOT EXISTS preferences (
    member_id   uuid   PRIMARY KEY,
    -- kith.notifications.v1.Preferences, as last set.
    preferences bytea  NOT NULL,
    position    bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    notification_id   uuid        PRIMARY KEY,
    recipient_id      uuid        NOT NULL,
    kind              int         NOT NULL,
    also              int[]       NOT NULL,
    source_service    text        NOT NULL,
    source_event_id   uuid        NOT NULL,
    source_event_type text        NOT NULL,
    community_id      uuid,
    cohort_id         uuid,
    conversation_id   uuid,
    thread_id         uuid,
    message_id        uuid,
    actor_id          uuid,
    session_id        uuid,
    starts_at         timestamptz,
    occurred_at       timestamptz NOT NULL,
    level             int         NOT NULL,
    level_scope       text        NOT NULL,
    urgent            bool        NOT NULL,
    -- Decided for the in-app feed.
    in_feed           bool        NOT NULL,
    read              bool        NOT NULL DEFAULT false,
    updated           bool        NOT NULL DEFAULT false,
    retracted         bool        NOT NULL DEFAULT false,
    retraction_reason text,
    -- What was decided for each channel (kith.notifications.v1.Channel, deliver, reason). A
    -- channel with nothing to send (the feed; a channel withheld) has no deliveries row.
    channels          int[],
    channels_deliver  bool[],
    channels_reason   text[],
    decided_position  bigint      NOT NULL,
    -- Set on one notification of each source event's decisions (any one: they share the
    -- source's time, which begins each of their ids), so that the index on source events holds
    -- an entry per event rather than one per recipient.
    source_key        bool        NOT NULL DEFAULT false,
    -- The log checkpoint of its last change, which live streams follow.
    changed_tx        bigint      NOT NULL,
    changed_position  bigint      NOT NULL
);
-- Tables from before the channels columns keep a deliveries row for every channel instead.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS channels int[],
    ADD COLUMN IF NOT EXISTS channels_deliver bool[], ADD COLUMN IF NOT EXISTS channels_reason text[];
CREATE INDEX IF NOT EXISTS notifications_feed
    ON notifications (recipient_id, decided_position DESC) WHERE in_feed;
CREATE INDEX IF NOT EXISTS notifications_unread
    ON notifications (recipient_id) WHERE in_feed AND NOT read AND NOT retracted;
CREATE INDEX IF NOT EXISTS notifications_changes
    ON notifications (recipient_id, changed_tx, changed_position);
-- Every row of a table from before the key column is a key: nothing is missed, only the
-- index is larger for them.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS source_key bool NOT NULL DEFAULT true;
ALTER TABLE notifications ALTER COLUMN source_key SET DEFAULT false;
CREATE INDEX IF NOT EXISTS notifications_by_source
    ON notifications (source_event_id) WHERE source_key;
DROP INDEX IF EXISTS notifications_source;
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id  uuid        NOT NULL,
    -- kith.notifications.v1.Channel
    channel          int         NOT NULL,
    recipient_id     uuid        NOT NULL,
    -- When the source event was recorded: the batching window counts from here.
    occurred_at      timestamptz NOT NULL,
    status           text        NOT NULL,
    reason           text        NOT NULL,
    -- When a held or failed delivery is due again.
    due_at           timestamptz,
    attempts         int         NOT NULL DEFAULT 0,
    batch_id         uuid,
    changed_position bigint      NOT NULL,
    -- When the last change was recorded (a rate cap counts what was sent in the last hour).
    changed_at       timestamptz NOT NULL,
    PRIMARY KEY (notification_id, channel)
);
CREATE INDEX IF NOT EXISTS deliveries_waiting
    ON deliveries (channel, recipient_id) WHERE status IN ('pending', 'held', 'failed', 'sending');
CREATE INDEX IF NOT EXISTS deliveries_parked
    ON deliveries (channel, changed_at) WHERE status = 'parked';
CREATE TABLE IF NOT EXISTS contacts (
    member_id   uuid   PRIMARY KEY,
    -- kith.platform.v1.Sealed, with the member's key; NULL: no email.
    email       bytea,
    webhook_url text,
    position    bigint NOT NULL
);
";

/// The ledger and the feed.
#[derive(Debug, Default)]
pub struct Ledger;

#[async_trait]
impl Projection for Ledger {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["preferences", "notifications", "deliveries", "contacts"]
    }

    fn ddl(&self) -> &'static str {
        DDL
    }

    /// Runs of decisions (nearly all of the log) go in two statements; the rest one by one, in
    /// order.
    async fn apply_batch(&self, conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<()> {
        let mut run = Vec::new();
        for event in events {
            if let Some(decisions) = decisions(event)? {
                run.extend(decisions.into_iter().map(|d| (*event, d)));
                continue;
            }
            if !run.is_empty() {
                not_yet_applied(conn, &mut run).await?;
                decided(conn, &run).await?;
                run.clear();
            }
            self.apply(conn, event).await?;
        }
        if !run.is_empty() {
            not_yet_applied(conn, &mut run).await?;
            decided(conn, &run).await?;
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let t = event.event_type.as_str();
        if t == pb::PreferencesSet::full_name() {
            let e: pb::PreferencesSet = decode_payload(event)?;
            sqlx::query(
                "INSERT INTO preferences (member_id, preferences, position) VALUES ($1, $2, $3)
                 ON CONFLICT (member_id)
                 DO UPDATE SET preferences = EXCLUDED.preferences, position = EXCLUDED.position",
            )
            .bind(stored_id(&e.member_id)?)
            .bind(e.preferences.unwrap_or_default().encode_to_vec())
            .bind(event.position)
            .execute(&mut *conn)
            .await?;
        } else if let Some(decisions) = decisions(event)? {
            let mut run: Vec<_> = decisions.into_iter().map(|d| (event, d)).collect();
            not_yet_applied(conn, &mut run).await?;
            decided(conn, &run).await?;
        } else if t == pb::NotificationUpdated::full_name() {
            let e: pb::NotificationUpdated = decode_payload(event)?;
            sqlx::query(
                "UPDATE notifications SET updated = true, changed_tx = $2, changed_position = $3
                 WHERE notification_id = $1 AND NOT retracted",
            )
            .bind(stored_id(&e.notification_id)?)
            .bind(event.transaction_id)
            .bind(event.position)
            .execute(&mut *conn)
            .await?;
        } else if t == pb::NotificationRetracted::full_name() {
            let e: pb::NotificationRetracted = decode_payload(event)?;
            let id = stored_id(&e.notification_id)?;
            sqlx::query(
                "UPDATE notifications
                 SET retracted = true, retraction_reason = $2, changed_tx = $3, changed_position = $4
                 WHERE notification_id = $1",
            )
            .bind(id)
            .bind(&e.reason)
            .bind(event.transaction_id)
            .bind(event.position)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE deliveries
                 SET status = 'retracted', reason = $2, changed_position = $3, changed_at = $4
                 WHERE notification_id = $1 AND status IN ('pending', 'held', 'failed', 'delivered')",
            )
            .bind(id)
            .bind(&e.reason)
            .bind(event.position)
            .bind(event.recorded_at)
            .execute(&mut *conn)
            .await?;
        } else if t == pb::ContactSet::full_name() {
            let e: pb::ContactSet = decode_payload(event)?;
            sqlx::query(
                "INSERT INTO contacts (member_id, email, webhook_url, position) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (member_id) DO UPDATE
                 SET email = EXCLUDED.email, webhook_url = EXCLUDED.webhook_url,
                     position = EXCLUDED.position",
            )
            .bind(stored_id(&e.member_id)?)
            .bind(e.email.as_ref().map(Message::encode_to_vec))
            .bind((!e.webhook_url.is_empty()).then_some(&e.webhook_url))
            .bind(event.position)
            .execute(&mut *conn)
            .await?;
        } else if let Some(change) = delivery_change(event)? {
            change.apply(conn, event).await?;
        } else if t == pb::NotificationsRead::full_name() {
            let e: pb::NotificationsRead = decode_payload(event)?;
            let member = stored_id(&e.member_id)?;
            let ids = e
                .notification_ids
                .iter()
                .map(|id| stored_id(id))
                .collect::<Result<Vec<Uuid>>>()?;
            let read: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE notifications SET read = true, changed_tx = $3, changed_position = $4
                 WHERE recipient_id = $1 AND notification_id = ANY($2) AND NOT read
                 RETURNING notification_id",
            )
            .bind(member)
            .bind(&ids)
            .bind(event.transaction_id)
            .bind(event.position)
            .fetch_all(&mut *conn)
            .await?;
            // Read in the feed first: the email about it has nothing left to say.
            sqlx::query(
                "UPDATE deliveries
                 SET status = 'cancelled', reason = 'READ_IN_APP', changed_position = $3, changed_at = $4
                 WHERE notification_id = ANY($1) AND channel = $2 AND status IN ('pending', 'held')",
            )
            .bind(&read)
            .bind(pb::Channel::Email as i32)
            .bind(event.position)
            .bind(event.recorded_at)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The decisions `event` records, if it records any: all of a `NotificationsDecided`, or the one
/// `NotificationDecided` of a log written before it.
pub fn decisions(event: &RecordedEvent) -> Result<Option<Vec<pb::NotificationDecided>>> {
    let t = event.event_type.as_str();
    Ok(if t == pb::NotificationsDecided::full_name() {
        Some(decode_payload::<pb::NotificationsDecided>(event)?.notifications)
    } else if t == pb::NotificationDecided::full_name() {
        Some(vec![decode_payload(event)?])
    } else {
        None
    })
}

/// Leaves out of `run` the decisions of each event whose first notification the ledger holds:
/// the live rules wrote them with the event, all in one statement, so one is there only if all
/// are. One probe per event instead of an insert per decision that would change nothing.
async fn not_yet_applied(
    conn: &mut PgConnection,
    run: &mut Vec<(&RecordedEvent, pb::NotificationDecided)>,
) -> Result<()> {
    // Each event's position and first notification, in the run's order.
    let mut firsts: Vec<(i64, Uuid)> = Vec::new();
    for (event, d) in run.iter() {
        if firsts.last().map(|(position, _)| *position) != Some(event.position) {
            firsts.push((event.position, stored_id(&d.notification_id)?));
        }
    }
    let ids: Vec<Uuid> = firsts.iter().map(|(_, id)| *id).collect();
    // Planned at each call, as the log's look-ups are: the table grows from empty.
    let held: std::collections::HashSet<Uuid> = sqlx::query_scalar(
        "SELECT notification_id FROM notifications WHERE notification_id = ANY($1)",
    )
    .persistent(false)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    if held.is_empty() {
        return Ok(());
    }
    let applied: std::collections::HashSet<i64> = firsts
        .into_iter()
        .filter(|(_, id)| held.contains(id))
        .map(|(position, _)| position)
        .collect();
    run.retain(|(event, _)| !applied.contains(&event.position));
    Ok(())
}

/// Records decided notifications (and each channel's first status) in two statements, however
/// many: a rule's decisions for one post come by the dozen. The live rules call it too, in their
/// own transaction (see `route::Recording`).
pub(crate) async fn decided(
    conn: &mut PgConnection,
    decided: &[(&RecordedEvent, pb::NotificationDecided)],
) -> Result<()> {
    #[derive(Default)]
    struct Columns {
        id: Vec<Uuid>,
        recipient: Vec<Uuid>,
        kind: Vec<i32>,
        also: Vec<String>,
        service: Vec<String>,
        source: Vec<Uuid>,
        source_type: Vec<String>,
        community: Vec<Option<Uuid>>,
        cohort: Vec<Option<Uuid>>,
        conversation: Vec<Option<Uuid>>,
        thread: Vec<Option<Uuid>>,
        message: Vec<Option<Uuid>>,
        actor: Vec<Option<Uuid>>,
        session: Vec<Option<Uuid>>,
        starts_at: Vec<Option<chrono::DateTime<chrono::Utc>>>,
        occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
        level: Vec<i32>,
        level_scope: Vec<String>,
        urgent: Vec<bool>,
        in_feed: Vec<bool>,
        source_key: Vec<bool>,
        channels: Vec<String>,
        deliver: Vec<String>,
        reasons: Vec<String>,
        position: Vec<i64>,
        tx: Vec<i64>,
        recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
    }
    #[derive(Default)]
    struct Channels {
        id: Vec<Uuid>,
        channel: Vec<i32>,
        status: Vec<&'static str>,
        reason: Vec<String>,
        position: Vec<i64>,
        recipient: Vec<Uuid>,
        occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
        recorded_at: Vec<chrono::DateTime<chrono::Utc>>,
    }
    let mut n = Columns::default();
    let mut d = Channels::default();
    let mut last_event = None;
    for (event, e) in decided {
        n.source_key.push(last_event != Some(event.position));
        last_event = Some(event.position);
        let id = stored_id(&e.notification_id)?;
        let recipient = stored_id(&e.recipient_id)?;
        let occurred_at = time_of(e.occurred_at.as_ref()).unwrap_or(event.recorded_at);
        n.id.push(id);
        n.recipient.push(recipient);
        n.kind.push(e.kind);
        n.also.push(
            e.also
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
        n.service.push(e.source_service.clone());
        n.source.push(stored_id(&e.source_event_id)?);
        n.source_type.push(e.source_event_type.clone());
        n.community.push(stored_opt_id(&e.community_id)?);
        n.cohort.push(stored_opt_id(&e.cohort_id)?);
        n.conversation.push(stored_opt_id(&e.conversation_id)?);
        n.thread.push(stored_opt_id(&e.thread_id)?);
        n.message.push(stored_opt_id(&e.message_id)?);
        n.actor.push(stored_opt_id(&e.actor_id)?);
        n.session.push(stored_opt_id(&e.session_id)?);
        n.starts_at.push(time_of(e.starts_at.as_ref()));
        n.occurred_at.push(occurred_at);
        n.level.push(e.level);
        n.level_scope.push(e.level_scope.clone());
        n.urgent.push(e.urgent);
        n.in_feed.push(
            e.channels
                .iter()
                .any(|c| c.deliver && channel_from_wire(c.channel) == Some(Channel::InApp)),
        );
        n.position.push(event.position);
        n.tx.push(event.transaction_id);
        n.recorded_at.push(event.recorded_at);
        // Arrays of arrays do not unnest one per row: each list travels as text.
        let list = |each: &dyn Fn(&pb::ChannelDecision) -> String| {
            e.channels
                .iter()
                .map(each)
                .collect::<Vec<_>>()
                .join("\u{1f}")
        };
        n.channels.push(list(&|c| c.channel.to_string()));
        n.deliver.push(list(&|c| c.deliver.to_string()));
        n.reasons.push(list(&|c| c.reason.clone()));
        // Only what is to be sent has a delivery to follow.
        for c in e
            .channels
            .iter()
            .filter(|c| c.deliver && channel_from_wire(c.channel) != Some(Channel::InApp))
        {
            d.id.push(id);
            d.channel.push(c.channel);
            d.status.push("pending");
            d.reason.push(c.reason.clone());
            d.position.push(event.position);
            d.recipient.push(recipient);
            d.occurred_at.push(occurred_at);
            d.recorded_at.push(event.recorded_at);
        }
    }
    sqlx::query(
        "INSERT INTO notifications (
            notification_id, recipient_id, kind, also, source_service, source_event_id,
            source_event_type, community_id, cohort_id, conversation_id, thread_id, message_id,
            actor_id, session_id, starts_at, occurred_at, level, level_scope, urgent, in_feed,
            channels, channels_deliver, channels_reason, source_key,
            decided_position, changed_tx, changed_position)
         SELECT id, recipient, kind,
                COALESCE(string_to_array(NULLIF(also, ''), ',')::int[], '{}'),
                service, source, source_type, community, cohort, conversation, thread, message,
                actor, session, starts_at, occurred_at, level, level_scope, urgent, in_feed,
                COALESCE(string_to_array(NULLIF(channels, ''), E'\x1f')::int[], '{}'),
                COALESCE(string_to_array(NULLIF(deliver, ''), E'\x1f')::bool[], '{}'),
                CASE WHEN channels = '' THEN '{}'::text[]
                     WHEN reasons = '' THEN ARRAY['']
                     ELSE string_to_array(reasons, E'\x1f') END,
                source_key, position, tx, position
         FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::uuid[],
                     $7::text[], $8::uuid[], $9::uuid[], $10::uuid[], $11::uuid[], $12::uuid[],
                     $13::uuid[], $14::uuid[], $15::timestamptz[], $16::timestamptz[], $17::int[],
                     $18::text[], $19::bool[], $20::bool[], $21::bigint[], $22::bigint[],
                     $23::text[], $24::text[], $25::text[], $26::bool[])
           AS x(id, recipient, kind, also, service, source, source_type, community, cohort,
                conversation, thread, message, actor, session, starts_at, occurred_at, level,
                level_scope, urgent, in_feed, position, tx, channels, deliver, reasons,
                source_key)
         ON CONFLICT (notification_id) DO NOTHING",
    )
    .bind(&n.id)
    .bind(&n.recipient)
    .bind(&n.kind)
    .bind(&n.also)
    .bind(&n.service)
    .bind(&n.source)
    .bind(&n.source_type)
    .bind(&n.community)
    .bind(&n.cohort)
    .bind(&n.conversation)
    .bind(&n.thread)
    .bind(&n.message)
    .bind(&n.actor)
    .bind(&n.session)
    .bind(&n.starts_at)
    .bind(&n.occurred_at)
    .bind(&n.level)
    .bind(&n.level_scope)
    .bind(&n.urgent)
    .bind(&n.in_feed)
    .bind(&n.position)
    .bind(&n.tx)
    .bind(&n.channels)
    .bind(&n.deliver)
    .bind(&n.reasons)
    .bind(&n.source_key)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO deliveries (notification_id, channel, status, reason, changed_position,
                                 recipient_id, occurred_at, changed_at)
         SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::bigint[],
                              $6::uuid[], $7::timestamptz[], $8::timestamptz[])
         ON CONFLICT DO NOTHING",
    )
    .bind(&d.id)
    .bind(&d.channel)
    .bind(&d.status)
    .bind(&d.reason)
    .bind(&d.position)
    .bind(&d.recipient)
    .bind(&d.occurred_at)
    .bind(&d.recorded_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What a delivery event changes of its row.
struct DeliveryChange {
    notification: Uuid,
    channel: i32,
    status: &'static str,
    reason: String,
    due_at: Option<chrono::DateTime<chrono::Utc>>,
    attempts: Option<i32>,
    batch: Option<Uuid>,
    /// The statuses it may change: an event the worker recorded after a read or a retraction
    /// changed the row does not bring the delivery back.
    from: &'static [&'static str],
}

/// Where a delivery may still go.
const OPEN: &[&str] = &["pending", "held", "failed", "sending"];
/// Where only an operator sends a delivery on.
const PARKED: &[&str] = &["parked"];

fn delivery_change(event: &RecordedEvent) -> Result<Option<DeliveryChange>> {
    let t = event.event_type.as_str();
    let change = |notification: &str,
                  channel: i32,
                  status,
                  reason: String,
                  from|
     -> Result<DeliveryChange> {
        Ok(DeliveryChange {
            notification: stored_id(notification)?,
            channel,
            status,
            reason,
            due_at: None,
            attempts: None,
            batch: None,
            from,
        })
    };
    Ok(Some(if t == pb::DeliveryHeld::full_name() {
        let e: pb::DeliveryHeld = decode_payload(event)?;
        DeliveryChange {
            due_at: time_of(e.until.as_ref()),
            ..change(
                &e.notification_id,
                e.channel,
                "held",
                e.reason,
                // A failed delivery, or one interrupted while sending, can be held too (a rate
                // cap on its retry): otherwise the hold would not take and the worker would
                // record it again at every round.
                OPEN,
            )?
        }
    } else if t == pb::DeliveryAttempted::full_name() {
        let e: pb::DeliveryAttempted = decode_payload(event)?;
        DeliveryChange {
            attempts: Some(i32::try_from(e.attempt).unwrap_or(i32::MAX)),
            batch: stored_opt_id(&e.batch_id)?,
            ..change(
                &e.notification_id,
                e.channel,
                "sending",
                "SENDING".into(),
                OPEN,
            )?
        }
    } else if t == pb::DeliverySent::full_name() {
        let e: pb::DeliverySent = decode_payload(event)?;
        change(&e.notification_id, e.channel, "sent", "SENT".into(), OPEN)?
    } else if t == pb::DeliveryFailed::full_name() {
        let e: pb::DeliveryFailed = decode_payload(event)?;
        DeliveryChange {
            due_at: time_of(e.retry_at.as_ref()),
            ..change(&e.notification_id, e.channel, "failed", e.error, OPEN)?
        }
    } else if t == pb::DeliveryParked::full_name() {
        let e: pb::DeliveryParked = decode_payload(event)?;
        change(&e.notification_id, e.channel, "parked", e.error, OPEN)?
    } else if t == pb::DeliveryRequeued::full_name() {
        let e: pb::DeliveryRequeued = decode_payload(event)?;
        DeliveryChange {
            attempts: Some(0),
            ..change(
                &e.notification_id,
                e.channel,
                "pending",
                "REQUEUED".into(),
                PARKED,
            )?
        }
    } else if t == pb::DeliveryCancelled::full_name() {
        let e: pb::DeliveryCancelled = decode_payload(event)?;
        change(&e.notification_id, e.channel, "cancelled", e.reason, OPEN)?
    } else {
        return Ok(None);
    }))
}

impl DeliveryChange {
    async fn apply(self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        sqlx::query(
            "UPDATE deliveries
             SET status = $3, reason = $4, due_at = $5, attempts = COALESCE($6, attempts),
                 batch_id = COALESCE($7, batch_id), changed_position = $8, changed_at = $10
             WHERE notification_id = $1 AND channel = $2 AND status = ANY($9)",
        )
        .bind(self.notification)
        .bind(self.channel)
        .bind(self.status)
        .bind(&self.reason)
        .bind(self.due_at)
        .bind(self.attempts)
        .bind(self.batch)
        .bind(event.position)
        .bind(self.from)
        .bind(event.recorded_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
