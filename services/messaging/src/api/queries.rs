//! The read calls: authenticate, validate, wait for `min_position`, check that the caller reads
//! the conversation, then read the messages projection.

use std::collections::HashMap;

use kith_platform::page_query;
use kith_platform::paging::{min_position, page_keyed, page_keys, page_token, status_from_db};
use kith_platform::validation::{Violations, page_size};
use kith_platform::wire::timestamp;
use kith_proto::messaging as pb;
use sqlx::Row;
use sqlx::postgres::PgRow;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use crate::domain::ConversationKind;

type Reply<T> = Result<Response<T>, Status>;

const DEFAULT_THREADS: u32 = 20;
const MAX_THREADS: u32 = 100;
const DEFAULT_REPLIES: u32 = 50;
const MAX_REPLIES: u32 = 200;

fn incomplete() -> Status {
    Status::internal("request validation was incomplete")
}

/// The columns [`message`] reads, from `messages m` (a macro, so queries stay static strings).
macro_rules! message_columns {
    () => {
        "m.conversation_id, m.message_id, m.thread_id, m.author_id, m.seq, m.title, m.body,
         m.mentioned_ids, m.mentions_everyone, m.posted_at, m.edited_at, m.deleted, m.hidden,
         m.erased"
    };
}

/// A message as `viewer` may see it: a hidden message's body only for its author.
fn message(row: &PgRow, viewer: Uuid) -> Result<pb::Message, sqlx::Error> {
    let author: Uuid = row.try_get("author_id")?;
    let hidden: bool = row.try_get("hidden")?;
    let shown = !hidden || author == viewer;
    let text = |column: &str| -> Result<String, sqlx::Error> {
        Ok(if shown {
            row.try_get::<Option<String>, _>(column)?
                .unwrap_or_default()
        } else {
            String::new()
        })
    };
    let mentioned: Vec<Uuid> = row.try_get("mentioned_ids")?;
    Ok(pb::Message {
        conversation_id: row.try_get::<Uuid, _>("conversation_id")?.to_string(),
        message_id: row.try_get::<Uuid, _>("message_id")?.to_string(),
        thread_id: row
            .try_get::<Option<Uuid>, _>("thread_id")?
            .map(|t| t.to_string())
            .unwrap_or_default(),
        author_id: author.to_string(),
        seq: row.try_get("seq")?,
        title: text("title")?,
        body: text("body")?,
        mentioned_ids: mentioned.iter().map(Uuid::to_string).collect(),
        mentions_everyone: row.try_get("mentions_everyone")?,
        posted_at: Some(timestamp(row.try_get("posted_at")?)),
        edited_at: row
            .try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("edited_at")?
            .map(timestamp),
        deleted: row.try_get("deleted")?,
        hidden,
        erased: row.try_get("erased")?,
        reactions: Vec::new(),
    })
}

impl Api {
    /// The reactions of `messages`, counted per reaction, with whether `viewer` is among them.
    async fn reactions(
        &self,
        conversation: Uuid,
        messages: &mut [pb::Message],
        viewer: Uuid,
    ) -> Result<(), Status> {
        let ids: Vec<Uuid> = messages
            .iter()
            .filter_map(|m| m.message_id.parse().ok())
            .collect();
        let rows = sqlx::query(
            "SELECT message_id, reaction, count(*)::int AS n, bool_or(member_id = $3) AS mine
             FROM reactions WHERE conversation_id = $1 AND message_id = ANY($2)
             GROUP BY message_id, reaction ORDER BY message_id, min(reaction)",
        )
        .bind(conversation)
        .bind(&ids)
        .bind(viewer)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let mut by_message: HashMap<String, Vec<pb::ReactionCount>> = HashMap::new();
        for row in rows {
            let id: Uuid = row.try_get("message_id").map_err(status_from_db)?;
            by_message
                .entry(id.to_string())
                .or_default()
                .push(pb::ReactionCount {
                    reaction: row.try_get("reaction").map_err(status_from_db)?,
                    count: row.try_get("n").map_err(status_from_db)?,
                    mine: row.try_get("mine").map_err(status_from_db)?,
                });
        }
        for message in messages {
            message.reactions = by_message.remove(&message.message_id).unwrap_or_default();
        }
        Ok(())
    }

    pub(super) async fn list_threads(
        &self,
        request: Request<pb::ListThreadsRequest>,
    ) -> Reply<pb::ListThreadsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let limit = page_size(&mut v, r.page_size, DEFAULT_THREADS, MAX_THREADS);
        let after = page_keys::<2>(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let Some(conversation) = conversation else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        let known = self.reader_of(conversation, caller).await?;
        if known.kind == ConversationKind::Direct {
            return Err(kith_platform::command::refusal(
                kith_platform::command::ErrorKind::FailedPrecondition,
                "NOT_A_COHORT_CONVERSATION",
                "a direct conversation has no threads; read it with GetThread-free history",
                None,
            ));
        }
        // Pinned first, then by latest activity; the page continues after (pinned, last_seq).
        let (after_pinned, after_seq) = after.map_or((2, i64::MAX), |[p, s]| (p, s));
        let rows = sqlx::query(concat!(
            "SELECT ", message_columns!(), ", t.reply_count, t.pinned, t.last_seq, t.last_activity_at,
                    t.pinned::int AS pinned_key,
                    (SELECT count(*)::int FROM messages u
                      WHERE u.conversation_id = t.conversation_id AND u.thread_id = t.thread_id
                        AND u.author_id <> $2 AND NOT u.deleted AND NOT u.hidden
                        AND u.seq > GREATEST(
                          COALESCE((SELECT seq FROM read_cursors c WHERE c.member_id = $2
                                     AND c.conversation_id = t.conversation_id AND c.thread_key = t.thread_id), 0),
                          COALESCE((SELECT seq FROM read_cursors c WHERE c.member_id = $2
                                     AND c.conversation_id = t.conversation_id AND c.thread_key = $5), 0))
                    ) AS unread
             FROM threads t
             JOIN messages m ON m.conversation_id = t.conversation_id AND m.message_id = t.thread_id
             WHERE t.conversation_id = $1 AND (t.pinned::int, t.last_seq) < ($3, $4)
             ORDER BY t.pinned DESC, t.last_seq DESC
             LIMIT $6"
        ))
        .bind(conversation)
        .bind(caller)
        .bind(after_pinned)
        .bind(after_seq)
        .bind(Uuid::nil())
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (mut threads, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| {
                Ok(vec![
                    i64::from(row.try_get::<i32, _>("pinned_key")?),
                    row.try_get("last_seq")?,
                ])
            },
            |row| thread(row, caller),
        )?;
        let mut firsts: Vec<pb::Message> =
            threads.iter_mut().filter_map(|t| t.first.take()).collect();
        self.reactions(conversation, &mut firsts, caller).await?;
        for (thread, first) in threads.iter_mut().zip(firsts) {
            thread.first = Some(first);
        }
        Ok(Response::new(pb::ListThreadsResponse {
            threads,
            next_page_token,
        }))
    }

    pub(super) async fn get_thread(
        &self,
        request: Request<pb::GetThreadRequest>,
    ) -> Reply<pb::GetThreadResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let thread_id = v.uuid("thread_id", &r.thread_id);
        let limit = page_size(&mut v, r.page_size, DEFAULT_REPLIES, MAX_REPLIES);
        let after = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let (Some(conversation), Some(thread_id)) = (conversation, thread_id) else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        self.reader_of(conversation, caller).await?;
        let head = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            ", t.reply_count, t.pinned, t.last_seq, t.last_activity_at,
                    0 AS unread
             FROM threads t
             JOIN messages m ON m.conversation_id = t.conversation_id AND m.message_id = t.thread_id
             WHERE t.conversation_id = $1 AND t.thread_id = $2"
        ))
        .bind(conversation)
        .bind(thread_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?;
        let Some(head) = head else {
            let mut v = Violations::new();
            v.add(
                "thread_id",
                format!("no thread {thread_id} in this conversation"),
            );
            v.finish()?;
            return Err(incomplete());
        };
        let mut thread = thread(&head, caller).map_err(status_from_db)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m
             WHERE m.conversation_id = $1 AND m.thread_id = $2 AND m.message_id <> $2 AND m.seq > $3
             ORDER BY m.seq LIMIT $4"
        ))
        .bind(conversation)
        .bind(thread_id)
        .bind(after.unwrap_or(0))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (mut replies, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| Ok(vec![row.try_get("seq")?]),
            |row| message(row, caller),
        )?;
        let mut first: Vec<pb::Message> = thread.first.take().into_iter().collect();
        self.reactions(conversation, &mut first, caller).await?;
        thread.first = first.pop();
        self.reactions(conversation, &mut replies, caller).await?;
        Ok(Response::new(pb::GetThreadResponse {
            thread: Some(thread),
            replies,
            next_page_token,
        }))
    }

    pub(super) async fn get_unread_counts(
        &self,
        request: Request<pb::GetUnreadCountsRequest>,
    ) -> Reply<pb::GetUnreadCountsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        self.wait(min).await?;
        let rows = sqlx::query(
            "WITH readable AS (
                SELECT c.conversation_id FROM conversations c
                JOIN community_members cm ON cm.community_id = c.community_id
                     AND cm.member_id = $1 AND cm.active
                WHERE (c.kind = 'cohort' AND EXISTS (
                          SELECT 1 FROM cohort_places p WHERE p.cohort_id = c.conversation_id
                             AND p.member_id = $1 AND p.place IN ('seat', 'facilitator')))
                   OR (c.kind = 'direct' AND c.participants @> ARRAY[$1::uuid])
             )
             SELECT m.conversation_id, m.thread_id, count(*)::int AS messages,
                    count(*) FILTER (WHERE $1 = ANY(m.mentioned_ids) OR m.mentions_everyone)::int AS mentions
             FROM readable r
             JOIN messages m ON m.conversation_id = r.conversation_id
             WHERE m.author_id <> $1 AND NOT m.deleted AND NOT m.hidden
               AND m.seq > GREATEST(
                     COALESCE((SELECT seq FROM read_cursors c WHERE c.member_id = $1
                                AND c.conversation_id = m.conversation_id
                                AND c.thread_key = COALESCE(m.thread_id, $2)), 0),
                     COALESCE((SELECT seq FROM read_cursors c WHERE c.member_id = $1
                                AND c.conversation_id = m.conversation_id AND c.thread_key = $2), 0))
             GROUP BY m.conversation_id, m.thread_id
             ORDER BY m.conversation_id, m.thread_id",
        )
        .bind(caller)
        .bind(Uuid::nil())
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let mut threads = Vec::with_capacity(rows.len());
        let mut conversations: Vec<pb::UnreadCount> = Vec::new();
        let (mut total_messages, mut total_mentions) = (0, 0);
        for row in rows {
            let conversation: Uuid = row.try_get("conversation_id").map_err(status_from_db)?;
            let thread: Option<Uuid> = row.try_get("thread_id").map_err(status_from_db)?;
            let messages: i32 = row.try_get("messages").map_err(status_from_db)?;
            let mentions: i32 = row.try_get("mentions").map_err(status_from_db)?;
            total_messages += messages;
            total_mentions += mentions;
            let conversation_id = conversation.to_string();
            match conversations.last_mut() {
                Some(last) if last.conversation_id == conversation_id => {
                    last.messages += messages;
                    last.mentions += mentions;
                }
                _ => conversations.push(pb::UnreadCount {
                    conversation_id: conversation_id.clone(),
                    thread_id: String::new(),
                    messages,
                    mentions,
                }),
            }
            threads.push(pb::UnreadCount {
                conversation_id,
                thread_id: thread.map(|t| t.to_string()).unwrap_or_default(),
                messages,
                mentions,
            });
        }
        Ok(Response::new(pb::GetUnreadCountsResponse {
            threads,
            conversations,
            total_messages,
            total_mentions,
        }))
    }
}

/// A thread row: its first message and what is counted of it.
fn thread(row: &PgRow, viewer: Uuid) -> Result<pb::Thread, sqlx::Error> {
    Ok(pb::Thread {
        first: Some(message(row, viewer)?),
        reply_count: row.try_get("reply_count")?,
        pinned: row.try_get("pinned")?,
        last_seq: row.try_get("last_seq")?,
        last_activity_at: Some(timestamp(row.try_get("last_activity_at")?)),
        unread: row.try_get("unread")?,
    })
}
