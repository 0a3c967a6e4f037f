//! The conversations as readers see them, from the service's own log: conversations, messages
//! (their latest version, and every version for the history), threads with their reply counts
//! and latest activity, reactions, reports, and each member's read cursors, follows and receipt
//! setting.
//!
//! Bodies and titles are stored opened, for reading and search; a deletion blanks them here as
//! its key goes, and an erasure blanks every message of the member (see [`super::access`]). A
//! rebuild opens nothing whose key is gone, so it shows the same.

use std::collections::HashSet;

use async_trait::async_trait;
use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::Projection;
use kith_platform::sealing::Sealer;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::codec::{decode, decode_reader, sealing_keys_of};
use crate::domain::{ConversationKind, Event, ReaderEvent};

/// The text search configuration of `$community`'s language (see `kith_platform::language`), as
/// the members projection keeps it; words as written when none is known.
macro_rules! search_config {
    ($community:literal) => {
        concat!(
            "COALESCE((SELECT l.search_config::regconfig FROM communities l WHERE l.community_id = ",
            $community,
            "), 'simple')"
        )
    };
}
pub(crate) use search_config;

/// A post, in one statement (a round trip per table was most of the read model's time): the
/// message with its ranks from the counts it bumps, its first version, its mentions, its thread
/// and its conversation. An author erased before the post was applied keeps no body; see
/// [`hold_author`], which must be held first.
///
/// $1 conversation, $2 message, $3 seq, $4 thread (NULL in a direct conversation), $5 author,
/// $6 title, $7 body, $8 mentioned ids, $9 @cohort, $10 posted at, $11 thread key, $12 nil,
/// $13 log position, $14 mention rows (the nil uuid for @cohort).
const POSTED_SQL: &str = concat!(
    "
WITH c AS (
    SELECT c.community_id,
           EXISTS (SELECT 1 FROM community_members cm
                   WHERE cm.community_id = c.community_id AND cm.member_id = $5 AND cm.erased)
               AS erased
    FROM conversations c WHERE c.conversation_id = $1
), counts AS (
    -- The conversation's, the thread's, the author's, and the author's in the thread.
    INSERT INTO message_counts (conversation_id, thread_key, author_id, messages)
    SELECT DISTINCT $1::uuid, k.t, k.a, 1::bigint
    FROM (VALUES ($11::uuid, $12::uuid), ($12, $12), ($11, $5::uuid), ($12, $5)) AS k(t, a)
    ON CONFLICT (conversation_id, thread_key, author_id)
    DO UPDATE SET messages = message_counts.messages + 1
    RETURNING thread_key, author_id, messages
), inserted AS (
    INSERT INTO messages (conversation_id, message_id, seq, thread_id, author_id,
        community_id, title, body, mentioned_ids, mentions_everyone, posted_at, erased,
        thread_key, conv_rank, thread_rank, author_rank, author_thread_rank, position, search)
    SELECT $1, $2, $3, $4, $5, c.community_id,
           CASE WHEN c.erased THEN NULL ELSE $6 END,
           CASE WHEN c.erased THEN NULL ELSE $7 END,
           $8, $9, $10, c.erased, $11,
           (SELECT n.messages FROM counts n WHERE n.thread_key = $12 AND n.author_id = $12),
           (SELECT n.messages FROM counts n WHERE n.thread_key = $11 AND n.author_id = $12),
           (SELECT n.messages FROM counts n WHERE n.thread_key = $12 AND n.author_id = $5),
           (SELECT n.messages FROM counts n WHERE n.thread_key = $11 AND n.author_id = $5),
           $13,
           CASE WHEN c.erased THEN NULL
                ELSE to_tsvector(",
    search_config!("c.community_id"),
    ", COALESCE($6, '') || ' ' || $7)
           END
    FROM c
    ON CONFLICT DO NOTHING
    RETURNING message_id, title, body
), first_version AS (
    INSERT INTO message_versions (conversation_id, message_id, version, title, body, written_at)
    SELECT $1, i.message_id, 1, i.title, i.body, $10 FROM inserted i
    ON CONFLICT DO NOTHING
), shared AS (
    -- The author's first message in a thread others wrote in: the thread becomes shared for
    -- each of them and for the author. (The statement's snapshot holds the earlier authors,
    -- not the author's count inserted above.)
    INSERT INTO shared_threads (member_id, conversation_id, thread_key)
    SELECT w.author_id, $1, $11
    FROM (SELECT a.author_id FROM message_counts a
          WHERE a.conversation_id = $1 AND a.thread_key = $11
            AND a.author_id <> $12 AND a.author_id <> $5
          UNION ALL
          SELECT $5) AS w
    WHERE $11 <> $12
      AND EXISTS (SELECT 1 FROM counts n
                  WHERE n.thread_key = $11 AND n.author_id = $5 AND n.messages = 1)
      AND EXISTS (SELECT 1 FROM message_counts o
                  WHERE o.conversation_id = $1 AND o.thread_key = $11
                    AND o.author_id <> $12 AND o.author_id <> $5)
    ON CONFLICT DO NOTHING
), mentioned AS (
    INSERT INTO mentions (conversation_id, seq, thread_key, member_id, author_id)
    SELECT $1, $3, $11, m, $5 FROM unnest($14::uuid[]) AS m
    ON CONFLICT DO NOTHING
), started AS (
    INSERT INTO threads (conversation_id, thread_id, last_seq, last_activity_at)
    SELECT $1, $4, $3, $10 WHERE $4 = $2
    ON CONFLICT DO NOTHING
), replied AS (
    UPDATE threads SET reply_count = reply_count + 1,
        last_seq = GREATEST(last_seq, $3), last_activity_at = GREATEST(last_activity_at, $10)
    WHERE conversation_id = $1 AND thread_id = $4 AND $4 <> $2
)
UPDATE conversations SET last_seq = GREATEST(last_seq, $3),
    last_position = GREATEST(last_position, $13)
WHERE conversation_id = $1"
);

const DDL: &str = "
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id uuid    PRIMARY KEY,
    kind            text    NOT NULL,
    community_id    uuid    NOT NULL,
    participants    uuid[]  NOT NULL,
    slow_mode       int     NOT NULL DEFAULT 0,
    last_seq        bigint  NOT NULL DEFAULT 0,
    -- The log position of its latest message: an order of activity across conversations.
    last_position   bigint  NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS conversations_participants ON conversations USING gin (participants);
CREATE TABLE IF NOT EXISTS messages (
    conversation_id   uuid        NOT NULL,
    message_id        uuid        NOT NULL,
    seq               bigint      NOT NULL,
    thread_id         uuid,
    author_id         uuid        NOT NULL,
    community_id      uuid        NOT NULL,
    title             text,
    body              text,
    mentioned_ids     uuid[]      NOT NULL,
    mentions_everyone bool        NOT NULL,
    posted_at         timestamptz NOT NULL,
    edited_at         timestamptz,
    deleted           bool        NOT NULL DEFAULT false,
    hidden            bool        NOT NULL DEFAULT false,
    -- Its author was erased from the community (its body reads as nothing, whatever order
    -- the erasure and the message were applied in).
    erased            bool        NOT NULL DEFAULT false,
    -- thread_id, or the nil uuid in a direct conversation.
    thread_key        uuid        NOT NULL,
    -- Ordinals that never change once given, so that counting the messages after a cursor is a
    -- subtraction, not a scan: among the conversation's messages, its thread's, its author's
    -- in the conversation, and its author's in the thread.
    conv_rank          bigint     NOT NULL,
    thread_rank        bigint     NOT NULL,
    author_rank        bigint     NOT NULL,
    author_thread_rank bigint     NOT NULL,
    -- The log position of its post: an order across conversations, for search.
    position           bigint     NOT NULL,
    -- Title and body for full-text search, stemmed by the community's language; NULL once the
    -- body is gone (deleted, erased).
    search             tsvector,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX IF NOT EXISTS messages_search ON messages USING gin (search);
CREATE UNIQUE INDEX IF NOT EXISTS messages_seq ON messages (conversation_id, seq) INCLUDE (conv_rank);
CREATE INDEX IF NOT EXISTS messages_thread_key ON messages (conversation_id, thread_key, seq) INCLUDE (thread_rank);
CREATE INDEX IF NOT EXISTS messages_by_author ON messages (conversation_id, author_id, seq) INCLUDE (author_rank);
CREATE INDEX IF NOT EXISTS messages_by_author_thread ON messages (conversation_id, thread_key, author_id, seq) INCLUDE (author_thread_rank);
CREATE INDEX IF NOT EXISTS messages_author ON messages (community_id, author_id);
-- How many messages each conversation (thread_key nil), thread, author (author_id nil for all)
-- has had; the source of the ranks.
CREATE TABLE IF NOT EXISTS message_counts (
    conversation_id uuid   NOT NULL,
    thread_key      uuid   NOT NULL,
    author_id       uuid   NOT NULL,
    messages        bigint NOT NULL,
    -- Author first: one index finds both a count and the threads a member wrote in.
    PRIMARY KEY (author_id, conversation_id, thread_key)
);
-- Who wrote in which thread, for [`POSTED_SQL`] to find a thread's authors.
CREATE INDEX IF NOT EXISTS message_counts_thread ON message_counts (conversation_id, thread_key);
-- The threads each member wrote in together with someone else: the written-in threads that can
-- hold something unread for them (a member may have started thousands nobody answered).
CREATE TABLE IF NOT EXISTS shared_threads (
    member_id       uuid NOT NULL,
    conversation_id uuid NOT NULL,
    thread_key      uuid NOT NULL,
    PRIMARY KEY (member_id, conversation_id, thread_key)
);
-- Messages deleted or hidden: few, subtracted from the counts.
CREATE TABLE IF NOT EXISTS gone (
    conversation_id uuid   NOT NULL,
    seq             bigint NOT NULL,
    thread_key      uuid   NOT NULL,
    author_id       uuid   NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
-- Who each message mentions (the nil uuid: @cohort, everyone).
CREATE TABLE IF NOT EXISTS mentions (
    conversation_id uuid   NOT NULL,
    seq             bigint NOT NULL,
    thread_key      uuid   NOT NULL,
    member_id       uuid   NOT NULL,
    author_id       uuid   NOT NULL,
    PRIMARY KEY (conversation_id, seq, member_id)
);
CREATE INDEX IF NOT EXISTS mentions_member ON mentions (member_id, conversation_id, seq);
CREATE TABLE IF NOT EXISTS message_versions (
    conversation_id uuid        NOT NULL,
    message_id      uuid        NOT NULL,
    version         int         NOT NULL,
    title           text,
    body            text,
    written_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, message_id, version)
);
CREATE TABLE IF NOT EXISTS threads (
    conversation_id  uuid        NOT NULL,
    thread_id        uuid        NOT NULL,
    reply_count      int         NOT NULL DEFAULT 0,
    last_seq         bigint      NOT NULL,
    last_activity_at timestamptz NOT NULL,
    pinned           bool        NOT NULL DEFAULT false,
    PRIMARY KEY (conversation_id, thread_id)
);
CREATE INDEX IF NOT EXISTS threads_activity ON threads (conversation_id, pinned DESC, last_seq DESC);
CREATE TABLE IF NOT EXISTS reactions (
    conversation_id uuid NOT NULL,
    message_id      uuid NOT NULL,
    member_id       uuid NOT NULL,
    reaction        text NOT NULL,
    PRIMARY KEY (conversation_id, message_id, member_id, reaction)
);
CREATE TABLE IF NOT EXISTS reports (
    report_id       uuid PRIMARY KEY,
    conversation_id uuid NOT NULL,
    message_id      uuid NOT NULL,
    reporter_id     uuid NOT NULL,
    reason          text,
    resolved_by     uuid,
    position        bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS read_cursors (
    member_id       uuid   NOT NULL,
    conversation_id uuid   NOT NULL,
    -- The nil uuid for the conversation's own cursor (every thread, or a direct conversation).
    thread_key      uuid   NOT NULL,
    seq             bigint NOT NULL,
    PRIMARY KEY (member_id, conversation_id, thread_key)
);
CREATE INDEX IF NOT EXISTS read_cursors_conversation ON read_cursors (conversation_id, thread_key, seq);
CREATE TABLE IF NOT EXISTS follows (
    member_id       uuid NOT NULL,
    conversation_id uuid NOT NULL,
    thread_id       uuid NOT NULL,
    following       bool NOT NULL,
    PRIMARY KEY (member_id, conversation_id, thread_id)
);
CREATE TABLE IF NOT EXISTS reader_settings (
    member_id        uuid PRIMARY KEY,
    private_receipts bool NOT NULL
);
";

/// The read model of conversations and read state.
#[derive(Debug)]
pub struct Messages {
    sealer: Sealer,
}

impl Messages {
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer }
    }
}

fn kind_name(kind: ConversationKind) -> &'static str {
    match kind {
        ConversationKind::Cohort => "cohort",
        ConversationKind::Direct => "direct",
    }
}

#[async_trait]
impl Projection for Messages {
    fn name(&self) -> &'static str {
        "messages"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "conversations",
            "messages",
            "message_versions",
            "threads",
            "reactions",
            "reports",
            "read_cursors",
            "follows",
            "reader_settings",
            "message_counts",
            "gone",
            "mentions",
            "shared_threads",
        ]
    }

    fn ddl(&self) -> &'static str {
        DDL
    }

    /// Fewer round trips per post than [`Projection::apply`] one by one: the keys of the batch's
    /// sealed fields are fetched in one query (each message has a key of its own), and the
    /// authors' locks ([`hold_author`]) are taken in one statement before anything is written;
    /// then each event is applied as `apply` does.
    async fn apply_batch(&self, conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<()> {
        let mut opener = self.sealer.opener();
        let keys: Vec<Uuid> = events
            .iter()
            .filter(|event| event.stream_type == "conversation")
            .flat_map(|event| sealing_keys_of(event))
            .collect();
        opener.prefetch(&keys).await?;
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            decoded.push(if event.stream_type == "conversation" {
                let conversation: Uuid = kith_platform::wire::stored_id(&event.stream_id)?;
                Some((conversation, decode(Some(&mut opener), event).await?))
            } else {
                None
            });
        }
        let authors: Vec<(Uuid, Uuid)> = decoded
            .iter()
            .flatten()
            .filter_map(|(conversation, event)| Some((*conversation, author_of(event)?)))
            .collect();
        let held = hold_authors(conn, authors).await?;
        for (event, decoded) in events.iter().zip(decoded) {
            match decoded {
                Some((conversation, decoded)) => {
                    apply_conversation(conn, conversation, event, decoded, &held).await?;
                }
                None => self.apply(conn, event).await?,
            }
        }
        Ok(())
    }

    async fn apply(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<()> {
        match event.stream_type.as_str() {
            "conversation" => {
                let mut opener = self.sealer.opener();
                let decoded = decode(Some(&mut opener), event).await?;
                let conversation: Uuid = kith_platform::wire::stored_id(&event.stream_id)?;
                apply_conversation(conn, conversation, event, decoded, &Held::new()).await
            }
            "reader" => {
                let member: Uuid = kith_platform::wire::stored_id(&event.stream_id)?;
                apply_reader(conn, member, decode_reader(event)?).await
            }
            _ => Ok(()),
        }
    }
}

/// The (conversation, member) pairs whose [`hold_author`] locks this transaction holds.
type Held = HashSet<(Uuid, Uuid)>;

/// Whose locks applying `event` takes ([`hold_author`]).
fn author_of(event: &Event) -> Option<Uuid> {
    match event {
        Event::MessagePosted { author, .. } | Event::MessageEdited { author, .. } => Some(*author),
        Event::MessageReported { reporter, .. } => Some(*reporter),
        _ => None,
    }
}

async fn apply_conversation(
    conn: &mut PgConnection,
    conversation: Uuid,
    recorded: &RecordedEvent,
    event: Event,
    held: &Held,
) -> Result<()> {
    let seq = recorded.version;
    match event {
        Event::ConversationStarted {
            kind,
            community_id,
            participants,
            ..
        } => {
            sqlx::query(
                "INSERT INTO conversations (conversation_id, kind, community_id, participants, last_seq)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (conversation_id) DO NOTHING",
            )
            .bind(conversation)
            .bind(kind_name(kind))
            .bind(community_id)
            .bind(participants)
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        Event::MessagePosted {
            message_id,
            thread,
            author,
            title,
            body,
            mentions,
            posted_at,
        } => {
            let title = title.map(|t| t.as_str().to_owned());
            let body = body.map(|b| b.as_str().to_owned());
            if !held.contains(&(conversation, author)) {
                hold_author(conn, conversation, author).await?;
            }
            let mut mentioned = mentions.members.clone();
            if mentions.everyone {
                mentioned.push(Uuid::nil());
            }
            sqlx::query(POSTED_SQL)
                .bind(conversation)
                .bind(message_id)
                .bind(seq)
                .bind(thread)
                .bind(author)
                .bind(&title)
                .bind(&body)
                .bind(&mentions.members)
                .bind(mentions.everyone)
                .bind(posted_at)
                .bind(thread.unwrap_or(Uuid::nil()))
                .bind(Uuid::nil())
                .bind(recorded.position)
                .bind(&mentioned)
                .execute(&mut *conn)
                .await?;
        }
        Event::MessageEdited {
            message_id,
            author,
            title,
            body,
            mentions,
        } => {
            let title = title.map(|t| t.as_str().to_owned());
            let body = body.map(|b| b.as_str().to_owned());
            if !held.contains(&(conversation, author)) {
                hold_author(conn, conversation, author).await?;
            }
            sqlx::query(concat!(
                "UPDATE messages SET title = CASE WHEN erased THEN NULL ELSE $3 END,
                     body = CASE WHEN erased THEN NULL ELSE $4 END, mentioned_ids = $5,
                     mentions_everyone = $6, edited_at = $7,
                     search = CASE WHEN erased THEN NULL
                                   ELSE to_tsvector(",
                search_config!("messages.community_id"),
                ", COALESCE($3, '') || ' ' || $4)
                              END
                 WHERE conversation_id = $1 AND message_id = $2"
            ))
            .bind(conversation)
            .bind(message_id)
            .bind(&title)
            .bind(&body)
            .bind(&mentions.members)
            .bind(mentions.everyone)
            .bind(recorded.recorded_at)
            .execute(&mut *conn)
            .await?;
            version(conn, conversation, message_id, recorded.recorded_at).await?;
        }
        Event::MessageDeleted { message_id, .. } => {
            let thread: Option<Option<Uuid>> = sqlx::query_scalar(
                "UPDATE messages SET deleted = true, title = NULL, body = NULL, search = NULL
                 WHERE conversation_id = $1 AND message_id = $2 AND NOT deleted
                 RETURNING thread_id",
            )
            .bind(conversation)
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await?;
            went(conn, conversation, message_id).await?;
            sqlx::query(
                "UPDATE message_versions SET title = NULL, body = NULL
                 WHERE conversation_id = $1 AND message_id = $2",
            )
            .bind(conversation)
            .bind(message_id)
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM reactions WHERE conversation_id = $1 AND message_id = $2")
                .bind(conversation)
                .bind(message_id)
                .execute(&mut *conn)
                .await?;
            match thread.flatten() {
                // A deleted first message keeps its thread (and its replies), unpinned.
                Some(thread) if thread == message_id => {
                    sqlx::query(
                        "UPDATE threads SET pinned = false WHERE conversation_id = $1 AND thread_id = $2",
                    )
                    .bind(conversation)
                    .bind(thread)
                    .execute(&mut *conn)
                    .await?;
                }
                Some(thread) => {
                    sqlx::query(
                        "UPDATE threads SET reply_count = reply_count - 1
                         WHERE conversation_id = $1 AND thread_id = $2",
                    )
                    .bind(conversation)
                    .bind(thread)
                    .execute(&mut *conn)
                    .await?;
                }
                None => {}
            }
        }
        Event::MessageHidden { message_id, .. } | Event::MessageUnhidden { message_id, .. } => {
            sqlx::query(
                "UPDATE messages SET hidden = $3 WHERE conversation_id = $1 AND message_id = $2",
            )
            .bind(conversation)
            .bind(message_id)
            .bind(matches!(event, Event::MessageHidden { .. }))
            .execute(&mut *conn)
            .await?;
            if matches!(event, Event::MessageHidden { .. }) {
                went(conn, conversation, message_id).await?;
            } else {
                sqlx::query(
                    "DELETE FROM gone g USING messages m
                     WHERE m.conversation_id = $1 AND m.message_id = $2 AND NOT m.deleted
                       AND g.conversation_id = m.conversation_id AND g.seq = m.seq",
                )
                .bind(conversation)
                .bind(message_id)
                .execute(&mut *conn)
                .await?;
            }
        }
        Event::ThreadPinned { thread_id, .. } | Event::ThreadUnpinned { thread_id, .. } => {
            sqlx::query(
                "UPDATE threads SET pinned = $3 WHERE conversation_id = $1 AND thread_id = $2",
            )
            .bind(conversation)
            .bind(thread_id)
            .bind(matches!(event, Event::ThreadPinned { .. }))
            .execute(&mut *conn)
            .await?;
        }
        Event::ReactionAdded {
            message_id,
            member,
            reaction,
        } => {
            sqlx::query(
                "INSERT INTO reactions (conversation_id, message_id, member_id, reaction)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(conversation)
            .bind(message_id)
            .bind(member)
            .bind(reaction.as_str())
            .execute(&mut *conn)
            .await?;
        }
        Event::ReactionRemoved {
            message_id,
            member,
            reaction,
        } => {
            sqlx::query(
                "DELETE FROM reactions WHERE conversation_id = $1 AND message_id = $2
                     AND member_id = $3 AND reaction = $4",
            )
            .bind(conversation)
            .bind(message_id)
            .bind(member)
            .bind(reaction.as_str())
            .execute(&mut *conn)
            .await?;
        }
        Event::MessageReported {
            report_id,
            message_id,
            reporter,
            reason,
        } => {
            if !held.contains(&(conversation, reporter)) {
                hold_author(conn, conversation, reporter).await?;
            }
            sqlx::query(
                "INSERT INTO reports (report_id, conversation_id, message_id, reporter_id, reason, position)
                 SELECT $1, $2, $3, $4,
                        CASE WHEN EXISTS (SELECT 1 FROM community_members cm
                                          WHERE cm.community_id = c.community_id
                                            AND cm.member_id = $4 AND cm.erased)
                             THEN NULL ELSE $5 END,
                        $6
                 FROM conversations c WHERE c.conversation_id = $2
                 ON CONFLICT DO NOTHING",
            )
            .bind(report_id)
            .bind(conversation)
            .bind(message_id)
            .bind(reporter)
            .bind(reason.map(|r| r.as_str().to_owned()))
            .bind(recorded.position)
            .execute(&mut *conn)
            .await?;
        }
        Event::ReportResolved { report_id, by } => {
            sqlx::query("UPDATE reports SET resolved_by = $2 WHERE report_id = $1")
                .bind(report_id)
                .bind(by)
                .execute(&mut *conn)
                .await?;
        }
        Event::SlowModeSet { interval, .. } => {
            sqlx::query("UPDATE conversations SET slow_mode = $2 WHERE conversation_id = $1")
                .bind(conversation)
                .bind(i32::try_from(interval.seconds()).unwrap_or(i32::MAX))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Records that a message no longer counts as unread (deleted or hidden).
async fn went(conn: &mut PgConnection, conversation: Uuid, message: Uuid) -> Result<()> {
    sqlx::query(
        "INSERT INTO gone (conversation_id, seq, thread_key, author_id)
         SELECT conversation_id, seq, thread_key, author_id FROM messages
         WHERE conversation_id = $1 AND message_id = $2
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(message)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the message's current title and body as its next version, for its history.
async fn version(
    conn: &mut PgConnection,
    conversation: Uuid,
    message: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_versions (conversation_id, message_id, version, title, body, written_at)
         SELECT m.conversation_id, m.message_id,
                (SELECT COALESCE(max(v.version), 0) + 1 FROM message_versions v
                  WHERE v.conversation_id = $1 AND v.message_id = $2),
                m.title, m.body, $3
         FROM messages m WHERE m.conversation_id = $1 AND m.message_id = $2",
    )
    .bind(conversation)
    .bind(message)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Takes, shared and until the transaction ends, the locks that an erasure of `member` in the
/// conversation's community ([`erasure_lock`]) and a change of its language ([`language_lock`])
/// take exclusively: a message of theirs applied meanwhile would otherwise be missed by the
/// erasure and keep its body, or by the reindexing and keep the old language's words.
async fn hold_author(conn: &mut PgConnection, conversation: Uuid, member: Uuid) -> Result<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock_shared(hashtextextended(c.community_id::text || '/' || $2::text, 0)),
                pg_advisory_xact_lock_shared(hashtextextended(c.community_id::text || '/language', 0))
         FROM conversations c WHERE c.conversation_id = $1",
    )
    .bind(conversation)
    .bind(member)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`hold_author`] for several (conversation, member) pairs in one statement; returns the pairs
/// it holds (those of conversations already stored: one started in the same batch is held
/// when its message is applied).
async fn hold_authors(conn: &mut PgConnection, mut pairs: Vec<(Uuid, Uuid)>) -> Result<Held> {
    pairs.sort_unstable();
    pairs.dedup();
    if pairs.is_empty() {
        return Ok(Held::new());
    }
    let (conversations, members): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
    let held: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT x.conversation_id, x.member_id FROM (
             SELECT x.conversation_id, x.member_id,
                    pg_advisory_xact_lock_shared(hashtextextended(c.community_id::text || '/' || x.member_id::text, 0)),
                    pg_advisory_xact_lock_shared(hashtextextended(c.community_id::text || '/language', 0))
             FROM unnest($1::uuid[], $2::uuid[]) AS x(conversation_id, member_id)
             JOIN conversations c ON c.conversation_id = x.conversation_id
             OFFSET 0) AS x",
    )
    .bind(&conversations)
    .bind(&members)
    .fetch_all(&mut *conn)
    .await?;
    Ok(held.into_iter().collect())
}

/// Takes the lock that orders an erasure of `member` in `community` with the messages of theirs
/// being applied ([`hold_author`]), until the transaction ends.
pub(crate) async fn erasure_lock(
    conn: &mut PgConnection,
    community: Uuid,
    member: Uuid,
) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 0))")
        .bind(community)
        .bind(member)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the lock that orders a change of `community`'s language with its messages being applied
/// ([`hold_author`]), until the transaction ends.
async fn language_lock(conn: &mut PgConnection, community: Uuid) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/language', 0))")
        .bind(community)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Sets `community`'s search configuration and stems its messages again by it, ordered with
/// messages being applied by [`language_lock`].
pub(crate) async fn set_search_config(
    conn: &mut PgConnection,
    community: Uuid,
    config: &str,
) -> Result<()> {
    language_lock(conn, community).await?;
    // A server without the configuration (an older PostgreSQL) searches words as written
    // rather than stopping the read model.
    let known: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_ts_config WHERE cfgname = $1)",
    )
    .bind(config)
    .fetch_one(&mut *conn)
    .await?;
    if !known {
        tracing::warn!(%community, config, "this PostgreSQL lacks the text search configuration; the community's messages are searched by words as written");
    }
    let config = if known {
        config
    } else {
        kith_platform::language::NO_LANGUAGE_CONFIG
    };
    let changed = sqlx::query(
        "UPDATE communities SET search_config = $2
         WHERE community_id = $1 AND search_config <> $2",
    )
    .bind(community)
    .bind(config)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed > 0 {
        sqlx::query(concat!(
            "UPDATE messages m SET search = to_tsvector(",
            search_config!("m.community_id"),
            ", COALESCE(m.title, '') || ' ' || m.body)
             WHERE m.community_id = $1 AND m.body IS NOT NULL"
        ))
        .bind(community)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn apply_reader(conn: &mut PgConnection, member: Uuid, event: ReaderEvent) -> Result<()> {
    match event {
        ReaderEvent::ReadCursorMoved {
            conversation_id,
            thread,
            seq,
        } => {
            sqlx::query(
                "INSERT INTO read_cursors (member_id, conversation_id, thread_key, seq)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (member_id, conversation_id, thread_key)
                 DO UPDATE SET seq = GREATEST(read_cursors.seq, EXCLUDED.seq)",
            )
            .bind(member)
            .bind(conversation_id)
            .bind(thread.unwrap_or(Uuid::nil()))
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        }
        ReaderEvent::ThreadFollowed {
            conversation_id,
            thread_id,
        }
        | ReaderEvent::ThreadUnfollowed {
            conversation_id,
            thread_id,
        } => {
            sqlx::query(
                "INSERT INTO follows (member_id, conversation_id, thread_id, following)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (member_id, conversation_id, thread_id) DO UPDATE SET following = EXCLUDED.following",
            )
            .bind(member)
            .bind(conversation_id)
            .bind(thread_id)
            .bind(matches!(event, ReaderEvent::ThreadFollowed { .. }))
            .execute(&mut *conn)
            .await?;
        }
        ReaderEvent::ReadReceiptsSet { private } => {
            sqlx::query(
                "INSERT INTO reader_settings (member_id, private_receipts) VALUES ($1, $2)
                 ON CONFLICT (member_id) DO UPDATE SET private_receipts = EXCLUDED.private_receipts",
            )
            .bind(member)
            .bind(private)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Blanks every message `member` wrote in `community`, once their keys are gone (erasure).
pub(crate) async fn blank_erased(
    conn: &mut PgConnection,
    community: Uuid,
    member: Uuid,
) -> Result<()> {
    sqlx::query(
        "UPDATE messages SET title = NULL, body = NULL, search = NULL, erased = true
         WHERE community_id = $1 AND author_id = $2",
    )
    .bind(community)
    .bind(member)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE message_versions v SET title = NULL, body = NULL
         FROM messages m
         WHERE m.community_id = $1 AND m.author_id = $2
           AND v.conversation_id = m.conversation_id AND v.message_id = m.message_id",
    )
    .bind(community)
    .bind(member)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE reports r SET reason = NULL
         FROM conversations c
         WHERE c.community_id = $1 AND r.conversation_id = c.conversation_id AND r.reporter_id = $2",
    )
    .bind(community)
    .bind(member)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
