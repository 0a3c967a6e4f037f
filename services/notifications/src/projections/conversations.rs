//! Messaging's stream: each conversation's community and people, who follows which thread, and
//! the rules about messages. A post notifies the mentioned, the thread's followers, the cohort
//! (a new thread) or the direct conversation's people; an edit updates those notifications, a
//! deletion or hiding retracts them; a report notifies the community's moderators.

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id};
use kith_proto::messaging as mpb;
use kith_proto::notifications as pb;
use prost::Name;
use sqlx::PgConnection;
use uuid::Uuid;

use super::audience::{seated, with_roles};
use super::route::{About, encode, follow_up, notify};

mod batch;
use crate::domain::{Candidate, Edit, Kind, Post, collapse, edit_candidates, post_candidates};

const MESSAGING: &str = "messaging";

const DDL: &str = "
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id uuid   PRIMARY KEY,
    community_id    uuid   NOT NULL,
    cohort_id       uuid,
    participants    uuid[] NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS thread_follows (
    conversation_id uuid NOT NULL,
    thread_id       uuid NOT NULL,
    member_id       uuid NOT NULL,
    following       bool NOT NULL,
    PRIMARY KEY (conversation_id, thread_id, member_id)
);
-- Who each message notified, and with which notification (both in notification id order): to
-- update or retract them with it, and so that an edit mentioning someone new notifies only
-- them. One row per message: a post in a busy thread notifies a dozen people, and a row each
-- was a tenth of the rules' writes.
CREATE TABLE IF NOT EXISTS message_recipients (
    message_id       uuid   PRIMARY KEY,
    -- The message's thread, for a notification an edit adds.
    thread_id        uuid,
    recipient_ids    uuid[] NOT NULL,
    notification_ids uuid[] NOT NULL
);
-- Versions before kept a row per recipient: gathered into one per message.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
               WHERE attrelid = to_regclass('message_recipients')
                 AND attname = 'recipient_id' AND NOT attisdropped) THEN
        ALTER TABLE message_recipients RENAME TO message_recipients_by_row;
        ALTER INDEX message_recipients_pkey RENAME TO message_recipients_by_row_pkey;
        CREATE TABLE message_recipients (
            message_id       uuid   PRIMARY KEY,
            thread_id        uuid,
            recipient_ids    uuid[] NOT NULL,
            notification_ids uuid[] NOT NULL
        );
        INSERT INTO message_recipients (message_id, thread_id, recipient_ids, notification_ids)
        SELECT message_id, (array_agg(thread_id) FILTER (WHERE thread_id IS NOT NULL))[1],
               array_agg(recipient_id ORDER BY notification_id),
               array_agg(notification_id ORDER BY notification_id)
        FROM message_recipients_by_row GROUP BY message_id;
        DROP TABLE message_recipients_by_row;
    END IF;
END $$;
-- Messages deleted or hidden: an edit of one notifies no one.
CREATE TABLE IF NOT EXISTS retracted_messages (
    message_id uuid PRIMARY KEY
);
";

/// Conversations, follows and the rules about messages.
#[derive(Debug, Default)]
pub struct Conversations {
    /// Who to wake once what the rules appended has committed.
    pub appended: super::route::Appended,
}

/// A conversation as the rules need it.
#[derive(Debug, Clone)]
struct Known {
    community: Uuid,
    cohort: Option<Uuid>,
    participants: Vec<Uuid>,
}

#[async_trait]
impl Projection for Conversations {
    fn committed(&self) {
        self.appended.wake();
    }

    fn name(&self) -> &'static str {
        "conversations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "conversations",
            "thread_follows",
            "message_recipients",
            "retracted_messages",
        ]
    }

    fn ddl(&self) -> &'static str {
        DDL
    }

    /// Runs of conversation starts, posts and follows (nearly all of messaging's traffic) are
    /// applied together, with a few statements per run rather than several per event; anything
    /// else one by one, in order.
    async fn apply_batch(&self, conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<()> {
        let mut run: Vec<&RecordedEvent> = Vec::new();
        for event in events {
            if batch::takes(event) {
                run.push(event);
                continue;
            }
            if !run.is_empty() {
                batch::apply(conn, &run, self.appended.recording()).await?;
                run.clear();
            }
            self.apply(conn, event).await?;
        }
        if !run.is_empty() {
            batch::apply(conn, &run, self.appended.recording()).await?;
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        let t = event.event_type.as_str();
        if t == mpb::ConversationStarted::full_name() {
            let e: mpb::ConversationStarted = decode_payload(event)?;
            let participants = e
                .participant_ids
                .iter()
                .map(|id| stored_id(id))
                .collect::<Result<Vec<_>>>()?;
            sqlx::query(
                "INSERT INTO conversations (conversation_id, community_id, cohort_id, participants)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id) DO NOTHING",
            )
            .bind(stored_id(&e.conversation_id)?)
            .bind(stored_id(&e.community_id)?)
            .bind(stored_opt_id(&e.cohort_id)?)
            .bind(&participants)
            .execute(&mut *conn)
            .await?;
        } else if t == mpb::MessagePosted::full_name() {
            let e: mpb::MessagePosted = decode_payload(event)?;
            posted(conn, event, &e).await?;
        } else if t == mpb::MessageEdited::full_name() {
            let e: mpb::MessageEdited = decode_payload(event)?;
            edited(conn, event, &e).await?;
        } else if t == mpb::MessageDeleted::full_name() {
            let e: mpb::MessageDeleted = decode_payload(event)?;
            retract(conn, event, &e.message_id, "MESSAGE_DELETED").await?;
        } else if t == mpb::MessageHidden::full_name() {
            let e: mpb::MessageHidden = decode_payload(event)?;
            retract(conn, event, &e.message_id, "MESSAGE_HIDDEN").await?;
        } else if t == mpb::MessageReported::full_name() {
            let e: mpb::MessageReported = decode_payload(event)?;
            let conversation = stored_id(&e.conversation_id)?;
            let Some(known) = known(conn, conversation).await? else {
                return Ok(());
            };
            let reporter = stored_opt_id(&e.reporter_id)?;
            let moderators =
                with_roles(conn, known.community, &["owner", "host", "moderator"]).await?;
            let matched = collapse(
                moderators.into_iter().map(|recipient| Candidate {
                    recipient,
                    kind: Kind::ReportFiled,
                }),
                reporter,
            );
            let about = About {
                community: Some(known.community),
                cohort: known.cohort,
                conversation: Some(conversation),
                message: stored_opt_id(&e.message_id)?,
                actor: reporter,
                ..About::default()
            };
            notify(conn, MESSAGING, event, &about, &matched).await?;
        } else if t == mpb::ThreadFollowed::full_name() || t == mpb::ThreadUnfollowed::full_name() {
            let following = t == mpb::ThreadFollowed::full_name();
            let (member, conversation, thread) = if following {
                let e: mpb::ThreadFollowed = decode_payload(event)?;
                (e.member_id, e.conversation_id, e.thread_id)
            } else {
                let e: mpb::ThreadUnfollowed = decode_payload(event)?;
                (e.member_id, e.conversation_id, e.thread_id)
            };
            sqlx::query(
                "INSERT INTO thread_follows (conversation_id, thread_id, member_id, following)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (conversation_id, thread_id, member_id)
                 DO UPDATE SET following = EXCLUDED.following",
            )
            .bind(stored_id(&conversation)?)
            .bind(stored_id(&thread)?)
            .bind(stored_id(&member)?)
            .bind(following)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

async fn known(conn: &mut PgConnection, conversation: Uuid) -> Result<Option<Known>> {
    let row: Option<(Uuid, Option<Uuid>, Vec<Uuid>)> = sqlx::query_as(
        "SELECT community_id, cohort_id, participants FROM conversations WHERE conversation_id = $1",
    )
    .bind(conversation)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(community, cohort, participants)| Known {
        community,
        cohort,
        participants,
    }))
}

/// Who reads the conversation now: a cohort's seated members and facilitators, or a direct
/// conversation's people who are still active members of the community.
async fn readers(conn: &mut PgConnection, known: &Known) -> Result<Vec<Uuid>> {
    match known.cohort {
        Some(cohort) => seated(conn, cohort).await,
        None => Ok(sqlx::query_scalar(
            "SELECT member_id FROM members
             WHERE community_id = $1 AND active AND member_id = ANY($2) ORDER BY member_id",
        )
        .bind(known.community)
        .bind(&known.participants)
        .fetch_all(&mut *conn)
        .await?),
    }
}

async fn posted(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    e: &mpb::MessagePosted,
) -> Result<()> {
    let conversation = stored_id(&e.conversation_id)?;
    let Some(known) = known(conn, conversation).await? else {
        // A conversation always starts with ConversationStarted; without it there is no one
        // to tell.
        return Ok(());
    };
    let message = stored_id(&e.message_id)?;
    let author = stored_id(&e.author_id)?;
    let thread = stored_opt_id(&e.thread_id)?;
    let mentioned = e
        .mentioned_ids
        .iter()
        .map(|id| stored_id(id))
        .collect::<Result<Vec<_>>>()?;
    let readers = readers(conn, &known).await?;
    let followers: Vec<Uuid> = match thread {
        Some(thread) => {
            sqlx::query_scalar(
                "SELECT member_id FROM thread_follows
             WHERE conversation_id = $1 AND thread_id = $2 AND following ORDER BY member_id",
            )
            .bind(conversation)
            .bind(thread)
            .fetch_all(&mut *conn)
            .await?
        }
        None => Vec::new(),
    };
    let post = Post {
        author,
        direct: known.cohort.is_none(),
        starts_thread: thread == Some(message),
        mentioned: &mentioned,
        mentions_everyone: e.mentions_everyone,
        readers: &readers,
        followers: &followers,
    };
    let matched = collapse(post_candidates(&post), Some(author));
    let about = about_message(&known, conversation, thread, message, author);
    let ids = notify(conn, MESSAGING, event, &about, &matched).await?;
    remember(conn, message, thread, &matched, &ids).await?;
    // The author and those mentioned follow the thread from now on, unless they unfollowed it.
    if let Some(thread) = thread {
        let mut joining = mentioned;
        joining.push(author);
        follow(conn, conversation, thread, &joining).await?;
    }
    Ok(())
}

/// What a notification about `message` points at.
fn about_message(
    known: &Known,
    conversation: Uuid,
    thread: Option<Uuid>,
    message: Uuid,
    author: Uuid,
) -> About {
    About {
        community: Some(known.community),
        cohort: known.cohort,
        conversation: Some(conversation),
        thread,
        message: Some(message),
        actor: Some(author),
        ..About::default()
    }
}

/// `members` follow `thread` from now on, unless they unfollowed it before.
async fn follow(
    conn: &mut PgConnection,
    conversation: Uuid,
    thread: Uuid,
    members: &[Uuid],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO thread_follows (conversation_id, thread_id, member_id, following)
         SELECT $1, $2, unnest($3::uuid[]), true ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(thread)
    .bind(members)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records who `message` notified (`matched`, with the notification `ids` decided for them),
/// after those it notified before.
async fn remember(
    conn: &mut PgConnection,
    message: Uuid,
    thread: Option<Uuid>,
    matched: &[crate::domain::Matched],
    ids: &[Uuid],
) -> Result<()> {
    if matched.is_empty() {
        return Ok(());
    }
    let mut pairs: Vec<(Uuid, Uuid)> = matched
        .iter()
        .map(|m| m.recipient)
        .zip(ids.iter().copied())
        .collect();
    pairs.sort_unstable_by_key(|(_, id)| *id);
    let (recipients, ids): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
    // The old row's arrays on the right of each SET: an edit adds only whom it newly notifies.
    sqlx::query(
        "INSERT INTO message_recipients (message_id, thread_id, recipient_ids, notification_ids)
         VALUES ($1, $4, $2, $3)
         ON CONFLICT (message_id) DO UPDATE SET
             recipient_ids = message_recipients.recipient_ids || ARRAY(
                 SELECT r FROM unnest(EXCLUDED.recipient_ids) AS x(r)
                 WHERE r <> ALL (message_recipients.recipient_ids)),
             notification_ids = message_recipients.notification_ids || ARRAY(
                 SELECT n FROM unnest(EXCLUDED.recipient_ids, EXCLUDED.notification_ids) AS x(r, n)
                 WHERE r <> ALL (message_recipients.recipient_ids))",
    )
    .bind(message)
    .bind(&recipients)
    .bind(&ids)
    .bind(thread)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whom `message` notified, with their notifications, in notification id order, and its thread.
async fn notified_by(
    conn: &mut PgConnection,
    message: Uuid,
) -> Result<(Vec<(Uuid, Uuid)>, Option<Uuid>)> {
    let row: Option<(Vec<Uuid>, Vec<Uuid>, Option<Uuid>)> = sqlx::query_as(
        "SELECT recipient_ids, notification_ids, thread_id FROM message_recipients
         WHERE message_id = $1",
    )
    .bind(message)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((recipients, ids, thread)) = row else {
        return Ok((Vec::new(), None));
    };
    let mut pairs: Vec<(Uuid, Uuid)> = recipients.into_iter().zip(ids).collect();
    pairs.sort_unstable_by_key(|(_, id)| *id);
    Ok((pairs, thread))
}

/// An edit updates the notifications of the message, and notifies those it newly mentions.
async fn edited(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    e: &mpb::MessageEdited,
) -> Result<()> {
    let message = stored_id(&e.message_id)?;
    let retracted: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM retracted_messages WHERE message_id = $1)",
    )
    .bind(message)
    .fetch_one(&mut *conn)
    .await?;
    if retracted {
        return Ok(());
    }
    let (before, thread) = notified_by(conn, message).await?;
    let ids: Vec<Uuid> = before.iter().map(|(_, id)| *id).collect();
    follow_up(conn, event, &ids, "updated", |id| {
        encode(&pb::NotificationUpdated {
            notification_id: id.to_string(),
            source_event_id: event.event_id.to_string(),
        })
    })
    .await?;
    let conversation = stored_id(&e.conversation_id)?;
    let Some(known) = known(conn, conversation).await? else {
        return Ok(());
    };
    let author = stored_id(&e.author_id)?;
    let mentioned = e
        .mentioned_ids
        .iter()
        .map(|id| stored_id(id))
        .collect::<Result<Vec<_>>>()?;
    let readers = readers(conn, &known).await?;
    let notified: Vec<Uuid> = before.iter().map(|(recipient, _)| *recipient).collect();
    let edit = Edit {
        author,
        mentioned: &mentioned,
        mentions_everyone: e.mentions_everyone,
        readers: &readers,
        notified: &notified,
    };
    let matched = collapse(edit_candidates(&edit), Some(author));
    if matched.is_empty() {
        return Ok(());
    }
    let about = about_message(&known, conversation, thread, message, author);
    let ids = notify(conn, MESSAGING, event, &about, &matched).await?;
    remember(conn, message, thread, &matched, &ids).await?;
    // Those newly mentioned follow the thread from now on, as a post's mentioned do.
    if let Some(thread) = thread {
        let joining: Vec<Uuid> = matched.iter().map(|m| m.recipient).collect();
        follow(conn, conversation, thread, &joining).await?;
    }
    Ok(())
}

async fn retract(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    message: &str,
    reason: &str,
) -> Result<()> {
    let message = stored_id(message)?;
    let ids: Vec<Uuid> = notified_by(conn, message)
        .await?
        .0
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    follow_up(conn, event, &ids, "retracted", |id| {
        encode(&pb::NotificationRetracted {
            notification_id: id.to_string(),
            reason: reason.to_owned(),
            source_event_id: event.event_id.to_string(),
        })
    })
    .await?;
    // A retracted notification is not updated or retracted again, and an edit of the message
    // notifies no one.
    sqlx::query("DELETE FROM message_recipients WHERE message_id = $1")
        .bind(message)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO retracted_messages (message_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(message)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
