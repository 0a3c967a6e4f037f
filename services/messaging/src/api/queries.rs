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
use crate::domain::{ConversationKind, SearchQuery};

/// Where a search looks.
enum Scope {
    Conversation(Uuid),
    /// The caller's direct conversations in a community.
    Direct(Uuid),
}

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
pub(super) use message_columns;

/// A message as `viewer` may see it: a hidden message's body only for its author.
pub(super) fn message(row: &PgRow, viewer: Uuid) -> Result<pb::Message, sqlx::Error> {
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
    async fn reactions(&self, messages: &mut [pb::Message], viewer: Uuid) -> Result<(), Status> {
        let (conversations, ids): (Vec<Uuid>, Vec<Uuid>) = messages
            .iter()
            .filter_map(|m| {
                Some((
                    m.conversation_id.parse::<Uuid>().ok()?,
                    m.message_id.parse::<Uuid>().ok()?,
                ))
            })
            .unzip();
        let rows = sqlx::query(
            "SELECT r.message_id, r.reaction, count(*)::int AS n, bool_or(r.member_id = $3) AS mine
             FROM unnest($1::uuid[], $2::uuid[]) AS w(conversation_id, message_id)
             JOIN reactions r ON r.conversation_id = w.conversation_id AND r.message_id = w.message_id
             GROUP BY r.message_id, r.reaction ORDER BY r.message_id, min(r.reaction)",
        )
        .bind(&conversations)
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
                "a direct conversation has no threads; read it with ListMessages",
                None,
            ));
        }
        // Pinned first, then by latest activity; the page continues after (pinned, last_seq).
        let (after_pinned, after_seq) = after.map_or((2, i64::MAX), |[p, s]| (p, s));
        let rows = sqlx::query(concat!(
            "SELECT ", message_columns!(), ", t.reply_count, t.pinned, t.last_seq, t.last_activity_at,
                    t.pinned::int AS pinned_key,
                    (SELECT (COALESCE((SELECT mc.messages FROM message_counts mc
                                        WHERE mc.conversation_id = t.conversation_id
                                          AND mc.thread_key = t.thread_id AND mc.author_id = $5), 0)
                             - COALESCE((SELECT r.thread_rank FROM messages r
                                          WHERE r.conversation_id = t.conversation_id
                                            AND r.thread_key = t.thread_id AND r.seq <= e.at
                                          ORDER BY r.seq DESC LIMIT 1), 0)
                             - COALESCE((SELECT mc.messages FROM message_counts mc
                                          WHERE mc.conversation_id = t.conversation_id
                                            AND mc.thread_key = t.thread_id AND mc.author_id = $2), 0)
                             + COALESCE((SELECT r.author_thread_rank FROM messages r
                                          WHERE r.conversation_id = t.conversation_id
                                            AND r.thread_key = t.thread_id AND r.author_id = $2
                                            AND r.seq <= e.at ORDER BY r.seq DESC LIMIT 1), 0)
                             - (SELECT count(*) FROM gone g
                                 WHERE g.conversation_id = t.conversation_id
                                   AND g.thread_key = t.thread_id AND g.seq > e.at
                                   AND g.author_id <> $2))::int
                     FROM (SELECT GREATEST(
                              COALESCE((SELECT seq FROM read_cursors c WHERE c.member_id = $2
                                         AND c.conversation_id = t.conversation_id
                                         AND c.thread_key = t.thread_id), 0),
                              COALESCE((SELECT seq FROM read_cursors c WHERE c.member_id = $2
                                         AND c.conversation_id = t.conversation_id
                                         AND c.thread_key = $5), 0)) AS at) e
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
        self.reactions(&mut firsts, caller).await?;
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
             WHERE m.conversation_id = $1 AND m.thread_key = $2 AND m.message_id <> $2 AND m.seq > $3
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
        self.reactions(&mut first, caller).await?;
        thread.first = first.pop();
        self.reactions(&mut replies, caller).await?;
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
        Ok(Response::new(self.unread_counts(caller).await?))
    }

    /// `caller`'s unread counts in every conversation they read now: per conversation and in
    /// total, and per thread for the threads they follow (posted or were mentioned in, or
    /// followed, and not unfollowed) and per direct conversation. Each count is a subtraction of
    /// ranks (see the messages projection), so it costs a few index probes per conversation and
    /// per thread cursor, whatever the history's length.
    pub(super) async fn unread_counts(
        &self,
        caller: Uuid,
    ) -> Result<pb::GetUnreadCountsResponse, Status> {
        let rows = sqlx::query(UNREAD_SQL)
            .bind(caller)
            .bind(Uuid::nil())
            .fetch_all(&self.pool)
            .await
            .map_err(status_from_db)?;
        let mut threads = Vec::new();
        let mut conversations = Vec::new();
        let (mut total_messages, mut total_mentions) = (0, 0);
        for row in rows {
            let conversation: Uuid = row.try_get("conversation_id").map_err(status_from_db)?;
            let thread: Uuid = row.try_get("thread_key").map_err(status_from_db)?;
            let direct: bool = row.try_get("direct").map_err(status_from_db)?;
            let messages: i64 = row.try_get("messages").map_err(status_from_db)?;
            let mentions: i64 = row.try_get("mentions").map_err(status_from_db)?;
            if messages == 0 && mentions == 0 {
                continue;
            }
            let count = pb::UnreadCount {
                conversation_id: conversation.to_string(),
                thread_id: if thread.is_nil() {
                    String::new()
                } else {
                    thread.to_string()
                },
                messages: i32::try_from(messages).unwrap_or(i32::MAX),
                mentions: i32::try_from(mentions).unwrap_or(i32::MAX),
            };
            if thread.is_nil() {
                total_messages += count.messages;
                total_mentions += count.mentions;
                if direct {
                    threads.push(count.clone());
                }
                conversations.push(count);
            } else {
                threads.push(count);
            }
        }
        Ok(pb::GetUnreadCountsResponse {
            threads,
            conversations,
            total_messages,
            total_mentions,
        })
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

const DEFAULT_MESSAGES: u32 = 50;
const MAX_MESSAGES: u32 = 200;
const DEFAULT_LIST: u32 = 20;
const MAX_LIST: u32 = 100;

impl Api {
    pub(super) async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Reply<pb::ListMessagesResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let limit = page_size(&mut v, r.page_size, DEFAULT_MESSAGES, MAX_MESSAGES);
        let before = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let Some(conversation) = conversation else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        self.reader_of(conversation, caller).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.conversation_id = $1 AND m.seq < $2
              ORDER BY m.seq DESC LIMIT $3"
        ))
        .bind(conversation)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (mut messages, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| Ok(vec![row.try_get("seq")?]),
            |row| message(row, caller),
        )?;
        self.reactions(&mut messages, caller).await?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages,
            next_page_token,
        }))
    }

    pub(super) async fn search_messages(
        &self,
        request: Request<pb::SearchMessagesRequest>,
    ) -> Reply<pb::SearchMessagesResponse> {
        use crate::projections::messages::search_config;
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let words = v.check("query", SearchQuery::parse(&r.query));
        let scope = match (r.conversation_id.is_empty(), r.community_id.is_empty()) {
            (false, true) => v
                .uuid("conversation_id", &r.conversation_id)
                .map(Scope::Conversation),
            (true, false) => v.uuid("community_id", &r.community_id).map(Scope::Direct),
            _ => {
                v.add(
                    "conversation_id",
                    "give exactly one of conversation_id (one conversation) and community_id \
                     (your direct conversations in it)",
                );
                None
            }
        };
        let limit = page_size(&mut v, r.page_size, DEFAULT_LIST, MAX_LIST);
        let before = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let (Some(words), Some(scope)) = (words, scope) else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        // The conversations searched, each the caller reads now.
        let (community, conversations) = match scope {
            Scope::Conversation(conversation) => {
                let known = self.reader_of(conversation, caller).await?;
                (known.community, vec![conversation])
            }
            Scope::Direct(community) => {
                self.member_of(community, caller).await?;
                let direct: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT conversation_id FROM conversations
                     WHERE kind = 'direct' AND community_id = $1 AND participants @> ARRAY[$2::uuid]",
                )
                .bind(community)
                .bind(caller)
                .fetch_all(&self.pool)
                .await
                .map_err(status_from_db)?;
                (community, direct)
            }
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            ", m.position FROM messages m
             WHERE m.conversation_id = ANY($1) AND NOT m.deleted AND NOT m.hidden
               AND m.search @@ websearch_to_tsquery(",
            search_config!("$2"),
            ", $3)
               AND m.position < $4
             ORDER BY m.position DESC LIMIT $5"
        ))
        .bind(&conversations)
        .bind(community)
        .bind(words.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (mut messages, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| Ok(vec![row.try_get("position")?]),
            |row| message(row, caller),
        )?;
        self.reactions(&mut messages, caller).await?;
        Ok(Response::new(pb::SearchMessagesResponse {
            messages,
            next_page_token,
        }))
    }

    /// The message `message_id` of `conversation` as the projection holds it: its author, seq,
    /// thread and whether it is hidden; INVALID_ARGUMENT on `message_id` when there is none.
    async fn message_row(&self, conversation: Uuid, message_id: Uuid) -> Result<PgRow, Status> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.conversation_id = $1 AND m.message_id = $2"
        ))
        .bind(conversation)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(status_from_db)?;
        match row {
            Some(row) => Ok(row),
            None => Err(kith_platform::command::refusal(
                kith_platform::command::ErrorKind::NotFound,
                "MESSAGE_NOT_FOUND",
                "message not found",
                None,
            )),
        }
    }

    pub(super) async fn get_message_history(
        &self,
        request: Request<pb::GetMessageHistoryRequest>,
    ) -> Reply<pb::GetMessageHistoryResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let message_id = v.uuid("message_id", &r.message_id);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let (Some(conversation), Some(message_id)) = (conversation, message_id) else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        self.reader_of(conversation, caller).await?;
        let row = self.message_row(conversation, message_id).await?;
        let shown = message(&row, caller).map_err(status_from_db)?;
        // A hidden message's history is its author's alone, as its body is.
        let hidden_from_caller = shown.hidden && shown.author_id != caller.to_string();
        let rows = sqlx::query(
            "SELECT version, title, body, written_at FROM message_versions
             WHERE conversation_id = $1 AND message_id = $2 ORDER BY version",
        )
        .bind(conversation)
        .bind(message_id)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let versions = rows
            .iter()
            .map(|row| {
                let text = |column: &str| -> Result<String, sqlx::Error> {
                    Ok(if hidden_from_caller {
                        String::new()
                    } else {
                        row.try_get::<Option<String>, _>(column)?
                            .unwrap_or_default()
                    })
                };
                Ok(pb::MessageVersion {
                    version: row.try_get("version")?,
                    title: text("title")?,
                    body: text("body")?,
                    written_at: Some(timestamp(row.try_get("written_at")?)),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(status_from_db)?;
        Ok(Response::new(pb::GetMessageHistoryResponse { versions }))
    }

    pub(super) async fn get_seen_by(
        &self,
        request: Request<pb::GetSeenByRequest>,
    ) -> Reply<pb::GetSeenByResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let conversation = v.uuid("conversation_id", &r.conversation_id);
        let message_id = v.uuid("message_id", &r.message_id);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let (Some(conversation), Some(message_id)) = (conversation, message_id) else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        let known = self.reader_of(conversation, caller).await?;
        let row = self.message_row(conversation, message_id).await?;
        let seq: i64 = row.try_get("seq").map_err(status_from_db)?;
        let thread: Option<Uuid> = row.try_get("thread_id").map_err(status_from_db)?;
        let author: Uuid = row.try_get("author_id").map_err(status_from_db)?;
        // Readers now: a cohort's seated members and facilitators, a direct conversation's
        // people; each active in the community. At most 30 of them, so this is exact.
        let member_ids: Vec<Uuid> = sqlx::query_scalar(
            "WITH readers AS (
                 SELECT DISTINCT p.member_id FROM cohort_places p
                 WHERE $4 = 'cohort' AND p.cohort_id = $1 AND p.place IN ('seat', 'facilitator')
                 UNION
                 SELECT unnest(participants) FROM conversations
                 WHERE $4 = 'direct' AND conversation_id = $1
             )
             SELECT r.member_id FROM readers r
             JOIN community_members cm ON cm.community_id = $5 AND cm.member_id = r.member_id
                  AND cm.active
             WHERE r.member_id <> $6
               AND NOT COALESCE((SELECT private_receipts FROM reader_settings s
                                  WHERE s.member_id = r.member_id), false)
               AND EXISTS (SELECT 1 FROM read_cursors c
                           WHERE c.member_id = r.member_id AND c.conversation_id = $1
                             AND c.thread_key IN ($2, $3) AND c.seq >= $7)
             ORDER BY r.member_id",
        )
        .bind(conversation)
        .bind(thread.unwrap_or(Uuid::nil()))
        .bind(Uuid::nil())
        .bind(match known.kind {
            ConversationKind::Cohort => "cohort",
            ConversationKind::Direct => "direct",
        })
        .bind(known.community)
        .bind(author)
        .bind(seq)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        Ok(Response::new(pb::GetSeenByResponse {
            member_ids: member_ids.iter().map(Uuid::to_string).collect(),
        }))
    }

    pub(super) async fn list_direct_conversations(
        &self,
        request: Request<pb::ListDirectConversationsRequest>,
    ) -> Reply<pb::ListDirectConversationsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let community = v.uuid("community_id", &r.community_id);
        let limit = page_size(&mut v, r.page_size, DEFAULT_LIST, MAX_LIST);
        let before = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let Some(community) = community else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        self.member_of(community, caller).await?;
        let rows = sqlx::query(
            "SELECT c.conversation_id, c.participants, c.last_seq, c.last_position,
                    (SELECT count(*)::int FROM messages m
                      WHERE m.conversation_id = c.conversation_id AND m.author_id <> $2
                        AND NOT m.deleted AND NOT m.hidden
                        AND m.seq > COALESCE((SELECT seq FROM read_cursors rc
                                               WHERE rc.member_id = $2
                                                 AND rc.conversation_id = c.conversation_id
                                                 AND rc.thread_key = $3), 0)) AS unread
             FROM conversations c
             WHERE c.kind = 'direct' AND c.community_id = $1 AND c.participants @> ARRAY[$2::uuid]
               AND c.last_position < $4
             ORDER BY c.last_position DESC LIMIT $5",
        )
        .bind(community)
        .bind(caller)
        .bind(Uuid::nil())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (conversations, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| Ok(vec![row.try_get("last_position")?]),
            |row| {
                let participants: Vec<Uuid> = row.try_get("participants")?;
                Ok(pb::DirectConversation {
                    conversation_id: row.try_get::<Uuid, _>("conversation_id")?.to_string(),
                    participant_ids: participants.iter().map(Uuid::to_string).collect(),
                    last_seq: row.try_get("last_seq")?,
                    unread: row.try_get("unread")?,
                })
            },
        )?;
        Ok(Response::new(pb::ListDirectConversationsResponse {
            conversations,
            next_page_token,
        }))
    }

    pub(super) async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Reply<pb::ListReportsResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let query = page_query!(caller, r);
        let mut v = Violations::new();
        let community = v.uuid("community_id", &r.community_id);
        let limit = page_size(&mut v, r.page_size, DEFAULT_LIST, MAX_LIST);
        let before = page_token(&mut v, &r.page_token, &query);
        let min = min_position(&mut v, r.min_position);
        v.finish()?;
        let Some(community) = community else {
            return Err(incomplete());
        };
        self.wait(min).await?;
        let role = self.role_in(community, caller).await?;
        if !matches!(
            role.as_deref(),
            Some(crate::projections::access::role::OWNER)
                | Some(crate::projections::access::role::HOST)
                | Some(crate::projections::access::role::MODERATOR)
        ) {
            return Err(kith_platform::command::refusal(
                kith_platform::command::ErrorKind::PermissionDenied,
                "NOT_PERMITTED",
                "only the community's owners, hosts and moderators see its reports",
                None,
            ));
        }
        let rows = sqlx::query(concat!(
            "SELECT r.report_id, r.reporter_id, r.reason, r.resolved_by, r.position, ",
            message_columns!(),
            " FROM reports r
              JOIN conversations c ON c.conversation_id = r.conversation_id
              JOIN messages m ON m.conversation_id = r.conversation_id AND m.message_id = r.message_id
              WHERE c.community_id = $1 AND ($2 OR r.resolved_by IS NULL) AND r.position < $3
              ORDER BY r.position DESC LIMIT $4"
        ))
        .bind(community)
        .bind(r.include_resolved)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(status_from_db)?;
        let (reports, next_page_token) = page_keyed(
            &rows,
            limit,
            &query,
            |row| Ok(vec![row.try_get("position")?]),
            |row| {
                // Moderators see a hidden message's body: deciding on it is their job.
                let mut shown = message(row, row.try_get("author_id")?)?;
                shown.reactions.clear();
                Ok(pb::Report {
                    report_id: row.try_get::<Uuid, _>("report_id")?.to_string(),
                    conversation_id: shown.conversation_id.clone(),
                    reporter_id: row.try_get::<Uuid, _>("reporter_id")?.to_string(),
                    reason: row
                        .try_get::<Option<String>, _>("reason")?
                        .unwrap_or_default(),
                    resolved_by: row
                        .try_get::<Option<Uuid>, _>("resolved_by")?
                        .map(|id| id.to_string())
                        .unwrap_or_default(),
                    message: Some(shown),
                })
            },
        )?;
        Ok(Response::new(pb::ListReportsResponse {
            reports,
            next_page_token,
        }))
    }
}

/// A member's unread counts ($1; $2 is the nil uuid): one row per conversation they read
/// (thread_key nil) and one per thread they follow. A count is what came after the cursor that
/// counts (the conversation's, or the thread's when further), less the member's own messages
/// and others' messages gone (deleted, hidden) after it, each from ranks, so that it costs a
/// few index probes whatever the history's length. A conversation's count also subtracts what
/// each thread cursor past the conversation's has read.
const UNREAD_SQL: &str = "
WITH readable AS (
    -- From the member's places and the participants index, never a scan of every
    -- conversation: each post updates its conversation's row, so the table holds many dead
    -- versions between vacuums, and a scan of them took 900 ms.
    SELECT c.conversation_id, false AS direct FROM cohort_places p
    JOIN conversations c ON c.conversation_id = p.cohort_id
    JOIN community_members cm ON cm.community_id = c.community_id
         AND cm.member_id = $1 AND cm.active
    WHERE p.member_id = $1 AND p.place IN ('seat', 'facilitator') AND c.kind = 'cohort'
    UNION
    SELECT c.conversation_id, true FROM conversations c
    JOIN community_members cm ON cm.community_id = c.community_id
         AND cm.member_id = $1 AND cm.active
    WHERE c.kind = 'direct' AND c.participants @> ARRAY[$1::uuid]
),
conv AS (
    SELECT r.conversation_id, r.direct,
           COALESCE((SELECT seq FROM read_cursors rc WHERE rc.member_id = $1
                       AND rc.conversation_id = r.conversation_id AND rc.thread_key = $2), 0) AS cc
    FROM readable r
),
thread_cursors AS (
    SELECT rc.conversation_id, rc.thread_key, rc.seq AS at, v.cc
    FROM read_cursors rc JOIN conv v ON v.conversation_id = rc.conversation_id
    WHERE rc.member_id = $1 AND rc.thread_key <> $2
),
followed AS (
    SELECT DISTINCT t.conversation_id, t.thread_key
    FROM (
        -- Threads the member wrote in where someone else wrote too: in the others nothing is
        -- ever unread, and a member who started thousands of threads must not pay for them.
        SELECT s.conversation_id, s.thread_key FROM shared_threads s
        JOIN conv v ON v.conversation_id = s.conversation_id
        WHERE s.member_id = $1
        UNION ALL
        SELECT n.conversation_id, n.thread_key FROM mentions n
        JOIN conv v ON v.conversation_id = n.conversation_id
        WHERE n.member_id IN ($1, $2) AND n.thread_key <> $2 AND n.author_id <> $1
        UNION ALL
        SELECT f.conversation_id, f.thread_id FROM follows f
        JOIN conv v ON v.conversation_id = f.conversation_id
        WHERE f.member_id = $1 AND f.following
    ) t
    WHERE NOT EXISTS (SELECT 1 FROM follows f WHERE f.member_id = $1
                        AND f.conversation_id = t.conversation_id
                        AND f.thread_id = t.thread_key AND NOT f.following)
),
spans AS (
    -- The conversation, after its cursor.
    SELECT 'conv' AS kind, v.conversation_id, $2::uuid AS thread_key, v.direct, v.cc AS lo,
           NULL::bigint AS hi
    FROM conv v
    UNION ALL
    -- What a thread cursor past the conversation's has read.
    SELECT 'read', t.conversation_id, t.thread_key, false, t.cc, t.at
    FROM thread_cursors t WHERE t.at > t.cc
    UNION ALL
    -- A followed thread, after the cursor that counts for it.
    SELECT 'follow', f.conversation_id, f.thread_key, false,
           GREATEST(v.cc, COALESCE((SELECT t.at FROM thread_cursors t
                                     WHERE t.conversation_id = f.conversation_id
                                       AND t.thread_key = f.thread_key), 0)),
           NULL
    FROM followed f JOIN conv v ON v.conversation_id = f.conversation_id
),
counted AS (
    SELECT s.kind, s.conversation_id, s.thread_key, s.direct,
        -- Every message in (lo, hi]: by the count when hi is open, else by the rank at hi.
        (CASE WHEN s.hi IS NULL THEN
             COALESCE((SELECT mc.messages FROM message_counts mc
                        WHERE mc.conversation_id = s.conversation_id
                          AND mc.thread_key = s.thread_key AND mc.author_id = $2), 0)
         ELSE COALESCE((SELECT m.thread_rank FROM messages m
                         WHERE m.conversation_id = s.conversation_id AND m.thread_key = s.thread_key
                           AND m.seq <= s.hi ORDER BY m.seq DESC LIMIT 1), 0)
         END)
        - (CASE WHEN s.kind = 'conv' THEN
             COALESCE((SELECT m.conv_rank FROM messages m
                        WHERE m.conversation_id = s.conversation_id AND m.seq <= s.lo
                        ORDER BY m.seq DESC LIMIT 1), 0)
           ELSE
             COALESCE((SELECT m.thread_rank FROM messages m
                        WHERE m.conversation_id = s.conversation_id AND m.thread_key = s.thread_key
                          AND m.seq <= s.lo ORDER BY m.seq DESC LIMIT 1), 0)
           END)
        -- The member's own in (lo, hi].
        - (CASE WHEN s.hi IS NULL THEN
             COALESCE((SELECT mc.messages FROM message_counts mc
                        WHERE mc.conversation_id = s.conversation_id
                          AND mc.thread_key = s.thread_key AND mc.author_id = $1), 0)
           ELSE COALESCE((SELECT m.author_thread_rank FROM messages m
                           WHERE m.conversation_id = s.conversation_id
                             AND m.thread_key = s.thread_key AND m.author_id = $1
                             AND m.seq <= s.hi ORDER BY m.seq DESC LIMIT 1), 0)
           END)
        + (CASE WHEN s.kind = 'conv' THEN
             COALESCE((SELECT m.author_rank FROM messages m
                        WHERE m.conversation_id = s.conversation_id AND m.author_id = $1
                          AND m.seq <= s.lo ORDER BY m.seq DESC LIMIT 1), 0)
           ELSE
             COALESCE((SELECT m.author_thread_rank FROM messages m
                        WHERE m.conversation_id = s.conversation_id
                          AND m.thread_key = s.thread_key AND m.author_id = $1
                          AND m.seq <= s.lo ORDER BY m.seq DESC LIMIT 1), 0)
           END)
        -- Others' messages gone in (lo, hi].
        - (SELECT count(*) FROM gone g
            WHERE g.conversation_id = s.conversation_id
              AND (s.kind = 'conv' OR g.thread_key = s.thread_key)
              AND g.seq > s.lo AND (s.hi IS NULL OR g.seq <= s.hi)
              AND g.author_id <> $1) AS unread
    FROM spans s
),
mentioned AS (
    -- Others' messages, not gone, mentioning the member or everyone, after the cursor that
    -- counts for their thread.
    SELECT n.conversation_id, n.thread_key, count(DISTINCT n.seq) AS mentions
    FROM conv v JOIN mentions n ON n.conversation_id = v.conversation_id AND n.seq > v.cc
    WHERE n.member_id IN ($1, $2) AND n.author_id <> $1
      AND NOT EXISTS (SELECT 1 FROM gone g WHERE g.conversation_id = n.conversation_id
                        AND g.seq = n.seq)
      AND n.seq > COALESCE((SELECT t.at FROM thread_cursors t
                             WHERE t.conversation_id = n.conversation_id
                               AND t.thread_key = n.thread_key), 0)
    GROUP BY n.conversation_id, n.thread_key
)
SELECT c.conversation_id, $2::uuid AS thread_key, bool_or(c.direct) AS direct,
       sum(CASE WHEN c.kind = 'conv' THEN c.unread ELSE -c.unread END)::bigint AS messages,
       COALESCE((SELECT sum(m.mentions) FROM mentioned m
                  WHERE m.conversation_id = c.conversation_id), 0)::bigint AS mentions
FROM counted c WHERE c.kind IN ('conv', 'read')
GROUP BY c.conversation_id
UNION ALL
SELECT c.conversation_id, c.thread_key, false, c.unread::bigint,
       COALESCE((SELECT m.mentions FROM mentioned m WHERE m.conversation_id = c.conversation_id
                   AND m.thread_key = c.thread_key), 0)::bigint
FROM counted c WHERE c.kind = 'follow'
ORDER BY 1, 2
";
