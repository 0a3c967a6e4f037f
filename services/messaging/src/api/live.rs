//! The live stream: one task per subscriber follows the log behind the messages projection (so
//! what it sends matches what queries read), on whichever replica it runs, and sends what the
//! subscriber may see. Its resume point is the log position of the last event sent: the
//! checkpoint of that event, so resuming in commit order skips nothing and repeats nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kith_platform::eventlog::{Checkpoint, RecordedEvent};
use kith_platform::grpc::status_from_platform;
use kith_platform::paging::status_from_db;
use kith_platform::validation::Violations;
use kith_proto::messaging as pb;
use kith_proto::messaging::subscribe_response::Event as Live;
use sqlx::Row;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::Api;
use super::queries::{message, message_columns};
use crate::codec::{decode, decode_reader};
use crate::domain::{Event, ReaderEvent};

/// How many events are read from the log at once.
const BATCH: i64 = 500;
/// How many events wait for a slow subscriber before the follower waits for it.
const BUFFER: usize = 256;
/// How often access is checked again without a notice (one lost while a listener reconnected).
const RECHECK: Duration = Duration::from_secs(5);

pub(crate) type LiveStream =
    tokio_stream::wrappers::ReceiverStream<Result<pb::SubscribeResponse, Status>>;

impl Api {
    pub(super) async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<LiveStream>, Status> {
        let caller = self.caller(&request)?;
        let from = request.get_ref().from_position;
        let mut v = Violations::new();
        if from < 0 {
            v.add("from_position", "must not be negative");
        }
        v.finish()?;
        let start = if from == 0 {
            self.progress
                .applied()
                .await
                .map_err(|err| status_from_platform(&err))?
        } else {
            match kith_platform::eventlog::checkpoint_of(&self.pool, from)
                .await
                .map_err(|err| status_from_platform(&err))?
            {
                Some(checkpoint) => checkpoint,
                None => {
                    let mut v = Violations::new();
                    v.add(
                        "from_position",
                        "is not a position of this service's log (use a live event's position)",
                    );
                    v.finish()?;
                    return Err(Status::internal("request validation was incomplete"));
                }
            }
        };
        let (tx, rx) = mpsc::channel(BUFFER);
        let follower = Follower {
            api: self.clone(),
            caller,
            after: start,
            tx,
            readable: HashSet::new(),
            had_access: false,
        };
        tokio::spawn(follower.run());
        Ok(Response::new(LiveStream::new(rx)))
    }
}

/// One subscriber's follower.
struct Follower {
    api: Api,
    caller: Uuid,
    after: Checkpoint,
    tx: mpsc::Sender<Result<pb::SubscribeResponse, Status>>,
    /// The conversations the caller reads, as of the last check.
    readable: HashSet<Uuid>,
    had_access: bool,
}

/// Why the follower stops.
enum Stop {
    /// The subscriber went away.
    Gone,
    /// Something failed: sent to the subscriber, who may resume.
    Failed(Status),
}

impl From<Status> for Stop {
    fn from(status: Status) -> Self {
        Self::Failed(status)
    }
}

impl Follower {
    async fn run(mut self) {
        if let Err(Stop::Failed(status)) = self.follow().await {
            let _ = self.tx.send(Err(status)).await;
        }
    }

    async fn follow(&mut self) -> Result<(), Stop> {
        let api = self.api.clone();
        loop {
            // Enabled before reading, so an advance while reading is not missed.
            let members = api.members.advanced();
            let places = api.places.advanced();
            tokio::pin!(members, places);
            members.as_mut().enable();
            places.as_mut().enable();
            self.check_access().await?;
            let applied = api
                .progress
                .applied()
                .await
                .map_err(|err| status_from_platform(&err))?;
            if applied > self.after {
                self.send_until(applied).await?;
                continue;
            }
            let deadline = tokio::time::Instant::now() + RECHECK;
            tokio::select! {
                () = self.tx.closed() => return Err(Stop::Gone),
                past = api.progress.wait_past(self.after, deadline) => {
                    past.map_err(|err| status_from_platform(&err))?;
                }
                () = &mut members => {}
                () = &mut places => {}
            }
        }
    }

    /// Checks which conversations the caller reads: says `access_ended` for each one lost, and
    /// ends the stream once none is left.
    async fn check_access(&mut self) -> Result<(), Stop> {
        let now: HashSet<Uuid> = readable(&self.api.pool, self.caller)
            .await
            .map_err(status_from_db)?;
        let mut lost: Vec<Uuid> = self.readable.difference(&now).copied().collect();
        lost.sort();
        for conversation in lost {
            self.send(conversation, Live::AccessEnded(pb::AccessEnded {}))
                .await?;
        }
        self.had_access |= !now.is_empty();
        self.readable = now;
        if self.had_access && self.readable.is_empty() {
            return Err(Stop::Failed(kith_platform::command::refusal(
                kith_platform::command::ErrorKind::PermissionDenied,
                "NOT_A_READER",
                "you no longer read any conversation",
                None,
            )));
        }
        Ok(())
    }

    /// Sends what the caller may see of the log after `self.after`, up to `applied`.
    async fn send_until(&mut self, applied: Checkpoint) -> Result<(), Stop> {
        while self.after < applied {
            let events = self
                .api
                .conversations
                .log()
                .tail(self.after, BATCH)
                .await
                .map_err(|err| status_from_platform(&err))?;
            let events: Vec<RecordedEvent> = events
                .into_iter()
                .filter(|event| event.checkpoint() <= applied)
                .collect();
            let Some(last) = events.last() else {
                return Ok(());
            };
            let last = last.checkpoint();
            let mut unread_changed = false;
            let mut private: HashMap<Uuid, bool> = HashMap::new();
            for event in &events {
                self.after = event.checkpoint();
                unread_changed |= self.send_event(event, &mut private).await?;
            }
            self.after = last;
            if unread_changed {
                let counts = self.api.unread_counts(self.caller).await?;
                self.send(Uuid::nil(), Live::UnreadCounts(counts)).await?;
            }
        }
        Ok(())
    }

    /// Sends one log event if the caller may see it; true when it may change their unread
    /// counts.
    async fn send_event(
        &mut self,
        event: &RecordedEvent,
        private: &mut HashMap<Uuid, bool>,
    ) -> Result<bool, Stop> {
        let Ok(stream) = event.stream_id.parse::<Uuid>() else {
            return Ok(false);
        };
        match event.stream_type.as_str() {
            "conversation" => {
                if !self.readable.contains(&stream) {
                    return Ok(false);
                }
                let decoded = decode(None, event)
                    .await
                    .map_err(|err| status_from_platform(&err))?;
                let (live, unread) = match decoded {
                    Event::MessagePosted {
                        message_id, author, ..
                    } => (
                        Live::MessagePosted(self.message(stream, message_id).await?),
                        author != self.caller,
                    ),
                    Event::MessageEdited { message_id, .. } => (
                        Live::MessageEdited(self.message(stream, message_id).await?),
                        false,
                    ),
                    Event::MessageDeleted { message_id, .. } => {
                        (Live::MessageDeleted(message_id.to_string()), true)
                    }
                    Event::MessageHidden { message_id, .. } => {
                        (Live::MessageHidden(message_id.to_string()), true)
                    }
                    Event::MessageUnhidden { message_id, .. } => (
                        Live::MessageUnhidden(self.message(stream, message_id).await?),
                        true,
                    ),
                    Event::ReactionAdded {
                        message_id,
                        member,
                        reaction,
                    } => (
                        Live::ReactionAdded(pb::ReactionChanged {
                            message_id: message_id.to_string(),
                            member_id: member.to_string(),
                            reaction: reaction.as_str().to_owned(),
                        }),
                        false,
                    ),
                    Event::ReactionRemoved {
                        message_id,
                        member,
                        reaction,
                    } => (
                        Live::ReactionRemoved(pb::ReactionChanged {
                            message_id: message_id.to_string(),
                            member_id: member.to_string(),
                            reaction: reaction.as_str().to_owned(),
                        }),
                        false,
                    ),
                    Event::ThreadPinned { thread_id, .. } => {
                        (Live::ThreadPinned(thread_id.to_string()), false)
                    }
                    Event::ThreadUnpinned { thread_id, .. } => {
                        (Live::ThreadUnpinned(thread_id.to_string()), false)
                    }
                    Event::ConversationStarted { .. }
                    | Event::MessageReported { .. }
                    | Event::ReportResolved { .. }
                    | Event::SlowModeSet { .. } => return Ok(false),
                };
                self.send(stream, live).await?;
                Ok(unread)
            }
            "reader" => {
                let ReaderEvent::ReadCursorMoved {
                    conversation_id,
                    thread,
                    seq,
                } = decode_reader(event).map_err(|err| status_from_platform(&err))?
                else {
                    return Ok(false);
                };
                let own = stream == self.caller;
                if !own {
                    if !self.readable.contains(&conversation_id) {
                        return Ok(false);
                    }
                    let hidden = match private.get(&stream) {
                        Some(hidden) => *hidden,
                        None => {
                            let hidden: bool = sqlx::query_scalar(
                                "SELECT COALESCE((SELECT private_receipts FROM reader_settings
                                                   WHERE member_id = $1), false)",
                            )
                            .bind(stream)
                            .fetch_one(&self.api.pool)
                            .await
                            .map_err(status_from_db)?;
                            private.insert(stream, hidden);
                            hidden
                        }
                    };
                    if hidden {
                        return Ok(false);
                    }
                }
                self.send(
                    conversation_id,
                    Live::ReadCursorMoved(pb::CursorMoved {
                        member_id: stream.to_string(),
                        thread_id: thread.map(|t| t.to_string()).unwrap_or_default(),
                        seq,
                    }),
                )
                .await?;
                Ok(own)
            }
            _ => Ok(false),
        }
    }

    /// A message as the caller sees it now.
    async fn message(&self, conversation: Uuid, message_id: Uuid) -> Result<pb::Message, Stop> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m WHERE m.conversation_id = $1 AND m.message_id = $2"
        ))
        .bind(conversation)
        .bind(message_id)
        .fetch_one(&self.api.pool)
        .await
        .map_err(status_from_db)?;
        Ok(message(&row, self.caller).map_err(status_from_db)?)
    }

    async fn send(&self, conversation: Uuid, event: Live) -> Result<(), Stop> {
        let live = pb::SubscribeResponse {
            position: self.after.position,
            conversation_id: if conversation.is_nil() {
                String::new()
            } else {
                conversation.to_string()
            },
            event: Some(event),
        };
        self.tx.send(Ok(live)).await.map_err(|_| Stop::Gone)
    }
}

/// The conversations `member` reads now: the cohorts they sit in or facilitate (started or not)
/// and their direct conversations, in communities where they are active.
async fn readable(pool: &sqlx::PgPool, member: Uuid) -> Result<HashSet<Uuid>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.cohort_id AS id FROM cohorts c
         JOIN community_members m ON m.community_id = c.community_id AND m.member_id = $1 AND m.active
         WHERE EXISTS (SELECT 1 FROM cohort_places p WHERE p.cohort_id = c.cohort_id
                         AND p.member_id = $1 AND p.place IN ('seat', 'facilitator'))
         UNION
         SELECT v.conversation_id FROM conversations v
         JOIN community_members m ON m.community_id = v.community_id AND m.member_id = $1 AND m.active
         WHERE v.kind = 'direct' AND v.participants @> ARRAY[$1::uuid]",
    )
    .bind(member)
    .fetch_all(pool)
    .await?;
    rows.iter().map(|row| row.try_get("id")).collect()
}
