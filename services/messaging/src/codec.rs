//! Messaging events between the domain and the log: protobuf on the wire, with titles, bodies
//! and report reasons sealed.
//!
//! A message's title and body (every version) are sealed with the message's own key, subject
//! `<community>/<author>/<message>`: deleting the message destroys that key in the append that
//! records the deletion, and erasing the author from the community destroys every key under
//! `<community>/<author>` (membership's own subject for the member), so no version can be read
//! from the log, the bus or a replay afterwards. A report's reason is sealed with the reporter's
//! key, `<community>/<reporter>`.
//!
//! Deciding never needs a body, so the events a decider is loaded from are decoded without
//! opening anything; projections open what they show.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kith_platform::aggregate::Codec;
use kith_platform::eventlog::{NewEvent, RecordedEvent};
use kith_platform::sealing::{Opener, Sealer, SealingKey};
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id, stored_time, timestamp};
use kith_platform::{Error, Result};
use kith_proto::messaging as pb;
use kith_proto::platform::Sealed;
use prost::Name;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::{
    Body, ConversationKind, Event, Mentions, Reaction, ReaderEvent, ReportReason, SlowMode, Title,
};
use crate::service::{ConversationDecider, ReaderDecider};

/// How many conversations' communities stay cached (they never change).
pub const COMMUNITY_CACHE: usize = 100_000;

/// The sealing subject of one message's title and body.
pub fn message_subject(community: Uuid, author: Uuid, message: Uuid) -> String {
    format!("{community}/{author}/{message}")
}

/// A member's subject in a community: the same as membership's, so that erasure names it alike.
pub fn member_subject(community: Uuid, member: Uuid) -> String {
    format!("{community}/{member}")
}

/// Encodes and decodes conversation events.
#[derive(Debug, Clone)]
pub struct ConversationCodec {
    sealer: Sealer,
    pool: PgPool,
    communities: Arc<Mutex<HashMap<String, Uuid>>>,
    /// Keys made for messages about to be posted, by subject ([`Self::prepare_message_key`]).
    prepared: Arc<Mutex<HashMap<String, SealingKey>>>,
}

/// The most prepared keys kept: more are posts that were refused or retried, whose keys seal
/// nothing; dropping them is harmless (their rows are orphans either way, as a retry's are).
const PREPARED_KEYS: usize = 10_000;

impl ConversationCodec {
    pub fn new(pool: PgPool, sealer: Sealer) -> Self {
        Self {
            sealer,
            pool,
            communities: Arc::default(),
            prepared: Arc::default(),
        }
    }

    /// Makes, and writes, the key of a message about to be posted. Commands on one conversation
    /// are decided and encoded one after another; writing each new message's key there made
    /// every post in a busy conversation wait for the keys of all posts queued before it. Made
    /// beforehand, by each caller at once, the key is only taken from memory in the queue.
    pub async fn prepare_message_key(
        &self,
        community: Uuid,
        author: Uuid,
        message: Uuid,
    ) -> Result<()> {
        let subject = message_subject(community, author, message);
        let key = self.sealer.new_key(&subject).await?;
        let mut prepared = lock(&self.prepared);
        if prepared.len() >= PREPARED_KEYS {
            prepared.clear();
        }
        prepared.insert(subject, key);
        Ok(())
    }

    pub fn opener(&self) -> Opener {
        self.sealer.opener()
    }

    fn cached(&self, conversation: &str) -> Option<Uuid> {
        lock(&self.communities).get(conversation).copied()
    }

    fn remember(&self, conversation: &str, community: Uuid) {
        let mut cache = lock(&self.communities);
        if cache.len() >= COMMUNITY_CACHE {
            cache.clear();
        }
        cache.insert(conversation.to_owned(), community);
    }

    /// The community of a conversation: from the events being written when they start it, else
    /// from its first event in the log.
    async fn community_of(&self, conversation: &str, events: &[Event]) -> Result<Uuid> {
        if let Some(community) = self.cached(conversation) {
            return Ok(community);
        }
        let starting = events.iter().find_map(|event| match event {
            Event::ConversationStarted { community_id, .. } => Some(*community_id),
            _ => None,
        });
        let community = match starting {
            Some(community) => community,
            None => {
                let payload: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT payload FROM events WHERE stream_id = $1 AND version = 1",
                )
                .bind(conversation)
                .fetch_optional(&self.pool)
                .await?;
                let payload = payload.ok_or_else(|| {
                    Error::Codec(format!("conversation {conversation} has no first event"))
                })?;
                let started =
                    <pb::ConversationStarted as prost::Message>::decode(payload.as_slice())
                        .map_err(|err| {
                            Error::Codec(format!("first event of {conversation}: {err}"))
                        })?;
                stored_id(&started.community_id)?
            }
        };
        self.remember(conversation, community);
        Ok(community)
    }

    /// Seals a message's title and body: a new message with a key of its own, an edit with the
    /// key its message has.
    async fn seal_message(
        &self,
        community: Uuid,
        author: Uuid,
        message: Uuid,
        new: bool,
        title: Option<&Title>,
        body: Option<&Body>,
    ) -> Result<(Option<Sealed>, Option<Sealed>)> {
        let subject = message_subject(community, author, message);
        let key = if new {
            let prepared = lock(&self.prepared).remove(&subject);
            match prepared {
                Some(key) => key,
                None => self.sealer.new_key(&subject).await?,
            }
        } else {
            self.sealer.key_for(&subject).await?
        };
        Ok((
            title.map(|t| key.seal(t.as_str())),
            body.map(|b| key.seal(b.as_str())),
        ))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn message<M: prost::Message + Name>(message: M) -> NewEvent {
    NewEvent::from_message(&message)
}

fn ids(members: &[Uuid]) -> Vec<String> {
    members.iter().map(Uuid::to_string).collect()
}

fn opt_id(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

fn kind_to_pb(kind: ConversationKind) -> pb::ConversationKind {
    match kind {
        ConversationKind::Cohort => pb::ConversationKind::Cohort,
        ConversationKind::Direct => pb::ConversationKind::Direct,
    }
}

#[async_trait]
impl Codec<ConversationDecider> for ConversationCodec {
    async fn encode(&self, stream_id: &str, events: &[Event]) -> Result<Vec<NewEvent>> {
        let c = stream_id.to_owned();
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            out.push(match event {
                Event::ConversationStarted {
                    kind,
                    community_id,
                    participants,
                    started_by,
                } => message(pb::ConversationStarted {
                    conversation_id: c.clone(),
                    kind: kind_to_pb(*kind) as i32,
                    community_id: community_id.to_string(),
                    cohort_id: if *kind == ConversationKind::Cohort {
                        c.clone()
                    } else {
                        String::new()
                    },
                    participant_ids: ids(participants),
                    started_by: started_by.to_string(),
                }),
                Event::MessagePosted {
                    message_id,
                    thread,
                    author,
                    title,
                    body,
                    mentions,
                    posted_at,
                } => {
                    let community = self.community_of(stream_id, events).await?;
                    let (title, body) = self
                        .seal_message(
                            community,
                            *author,
                            *message_id,
                            true,
                            title.as_ref(),
                            body.as_ref(),
                        )
                        .await?;
                    message(pb::MessagePosted {
                        conversation_id: c.clone(),
                        message_id: message_id.to_string(),
                        thread_id: opt_id(*thread),
                        author_id: author.to_string(),
                        title,
                        body,
                        mentioned_ids: ids(&mentions.members),
                        mentions_everyone: mentions.everyone,
                        posted_at: Some(timestamp(*posted_at)),
                    })
                }
                Event::MessageEdited {
                    message_id,
                    author,
                    title,
                    body,
                    mentions,
                } => {
                    let community = self.community_of(stream_id, events).await?;
                    let (title, body) = self
                        .seal_message(
                            community,
                            *author,
                            *message_id,
                            false,
                            title.as_ref(),
                            body.as_ref(),
                        )
                        .await?;
                    message(pb::MessageEdited {
                        conversation_id: c.clone(),
                        message_id: message_id.to_string(),
                        author_id: author.to_string(),
                        title,
                        body,
                        mentioned_ids: ids(&mentions.members),
                        mentions_everyone: mentions.everyone,
                    })
                }
                Event::MessageDeleted {
                    message_id,
                    author,
                    by,
                } => {
                    // Cached for erased_subjects, which cannot look it up.
                    self.community_of(stream_id, events).await?;
                    message(pb::MessageDeleted {
                        conversation_id: c.clone(),
                        message_id: message_id.to_string(),
                        author_id: author.to_string(),
                        deleted_by: by.to_string(),
                    })
                }
                Event::MessageHidden { message_id, by } => message(pb::MessageHidden {
                    conversation_id: c.clone(),
                    message_id: message_id.to_string(),
                    hidden_by: by.to_string(),
                }),
                Event::MessageUnhidden { message_id, by } => message(pb::MessageUnhidden {
                    conversation_id: c.clone(),
                    message_id: message_id.to_string(),
                    unhidden_by: by.to_string(),
                }),
                Event::ThreadPinned { thread_id, by } => message(pb::ThreadPinned {
                    conversation_id: c.clone(),
                    thread_id: thread_id.to_string(),
                    pinned_by: by.to_string(),
                }),
                Event::ThreadUnpinned { thread_id, by } => message(pb::ThreadUnpinned {
                    conversation_id: c.clone(),
                    thread_id: thread_id.to_string(),
                    unpinned_by: by.to_string(),
                }),
                Event::ReactionAdded {
                    message_id,
                    member,
                    reaction,
                } => message(pb::ReactionAdded {
                    conversation_id: c.clone(),
                    message_id: message_id.to_string(),
                    member_id: member.to_string(),
                    reaction: reaction.as_str().to_owned(),
                }),
                Event::ReactionRemoved {
                    message_id,
                    member,
                    reaction,
                } => message(pb::ReactionRemoved {
                    conversation_id: c.clone(),
                    message_id: message_id.to_string(),
                    member_id: member.to_string(),
                    reaction: reaction.as_str().to_owned(),
                }),
                Event::MessageReported {
                    report_id,
                    message_id,
                    reporter,
                    reason,
                } => {
                    let community = self.community_of(stream_id, events).await?;
                    let reason = match reason {
                        Some(reason) => Some(
                            self.sealer
                                .key_for(&member_subject(community, *reporter))
                                .await?
                                .seal(reason.as_str()),
                        ),
                        None => None,
                    };
                    message(pb::MessageReported {
                        conversation_id: c.clone(),
                        report_id: report_id.to_string(),
                        message_id: message_id.to_string(),
                        reporter_id: reporter.to_string(),
                        reason,
                    })
                }
                Event::ReportResolved { report_id, by } => message(pb::ReportResolved {
                    conversation_id: c.clone(),
                    report_id: report_id.to_string(),
                    resolved_by: by.to_string(),
                }),
                Event::SlowModeSet { interval, by } => message(pb::SlowModeSet {
                    conversation_id: c.clone(),
                    interval_seconds: interval.seconds(),
                    set_by: by.to_string(),
                }),
            });
        }
        Ok(out)
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let decoded = decode(None, event).await?;
            if let Event::ConversationStarted { community_id, .. } = &decoded {
                self.remember(&event.stream_id, *community_id);
            }
            out.push(decoded);
        }
        Ok(out)
    }

    fn erased_subjects(&self, stream_id: &str, events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::MessageDeleted {
                    message_id, author, ..
                } => {
                    let community = self.cached(stream_id);
                    if community.is_none() {
                        tracing::error!(conversation = stream_id, "deleting a message of a conversation whose community is not known; its key stays");
                    }
                    community.map(|community| message_subject(community, *author, *message_id))
                }
                _ => None,
            })
            .collect()
    }
}

fn mentions(ids: &[String], everyone: bool) -> Result<Mentions> {
    Ok(Mentions {
        members: ids.iter().map(|id| stored_id(id)).collect::<Result<_>>()?,
        everyone,
    })
}

/// Opens a sealed text when an opener is given; `None` without one, when absent, or once its
/// key is gone.
async fn open(opener: Option<&mut Opener>, sealed: Option<&Sealed>) -> Result<Option<String>> {
    match opener {
        Some(opener) => opener.open(sealed).await,
        None => Ok(None),
    }
}

/// The keys `event`'s sealed fields are sealed with, so that a reader about to open a batch of
/// events can fetch them together ([`Opener::prefetch`]) rather than one query per message.
/// Events it cannot decode name none: decoding them reports the trouble.
pub fn sealing_keys_of(event: &RecordedEvent) -> Vec<Uuid> {
    let t = event.event_type.as_str();
    let sealed: Vec<Option<Sealed>> = if t == pb::MessagePosted::full_name() {
        decode_payload::<pb::MessagePosted>(event)
            .map_or_else(|_| Vec::new(), |e| vec![e.title, e.body])
    } else if t == pb::MessageEdited::full_name() {
        decode_payload::<pb::MessageEdited>(event)
            .map_or_else(|_| Vec::new(), |e| vec![e.title, e.body])
    } else if t == pb::MessageReported::full_name() {
        decode_payload::<pb::MessageReported>(event).map_or_else(|_| Vec::new(), |e| vec![e.reason])
    } else {
        Vec::new()
    };
    sealed
        .iter()
        .flatten()
        .filter_map(|s| s.key_id.parse().ok())
        .collect()
}

/// Decodes one stored conversation event, opening its sealed fields with `opener` when given.
pub async fn decode(mut opener: Option<&mut Opener>, event: &RecordedEvent) -> Result<Event> {
    let t = event.event_type.as_str();
    Ok(if t == pb::ConversationStarted::full_name() {
        let e: pb::ConversationStarted = decode_payload(event)?;
        let kind = match pb::ConversationKind::try_from(e.kind) {
            Ok(pb::ConversationKind::Cohort) => ConversationKind::Cohort,
            Ok(pb::ConversationKind::Direct) => ConversationKind::Direct,
            _ => {
                return Err(Error::Codec(format!(
                    "unknown conversation kind {}",
                    e.kind
                )));
            }
        };
        Event::ConversationStarted {
            kind,
            community_id: stored_id(&e.community_id)?,
            participants: e
                .participant_ids
                .iter()
                .map(|id| stored_id(id))
                .collect::<Result<_>>()?,
            started_by: stored_id(&e.started_by)?,
        }
    } else if t == pb::MessagePosted::full_name() {
        let e: pb::MessagePosted = decode_payload(event)?;
        let title = open(opener.as_deref_mut(), e.title.as_ref()).await?;
        let body = open(opener.as_deref_mut(), e.body.as_ref()).await?;
        Event::MessagePosted {
            message_id: stored_id(&e.message_id)?,
            thread: stored_opt_id(&e.thread_id)?,
            author: stored_id(&e.author_id)?,
            title: title.map(Title::from_stored),
            body: body.map(Body::from_stored),
            mentions: mentions(&e.mentioned_ids, e.mentions_everyone)?,
            posted_at: stored_time(e.posted_at.as_ref())?,
        }
    } else if t == pb::MessageEdited::full_name() {
        let e: pb::MessageEdited = decode_payload(event)?;
        let title = open(opener.as_deref_mut(), e.title.as_ref()).await?;
        let body = open(opener.as_deref_mut(), e.body.as_ref()).await?;
        Event::MessageEdited {
            message_id: stored_id(&e.message_id)?,
            author: stored_id(&e.author_id)?,
            title: title.map(Title::from_stored),
            body: body.map(Body::from_stored),
            mentions: mentions(&e.mentioned_ids, e.mentions_everyone)?,
        }
    } else if t == pb::MessageDeleted::full_name() {
        let e: pb::MessageDeleted = decode_payload(event)?;
        Event::MessageDeleted {
            message_id: stored_id(&e.message_id)?,
            author: stored_id(&e.author_id)?,
            by: stored_id(&e.deleted_by)?,
        }
    } else if t == pb::MessageHidden::full_name() {
        let e: pb::MessageHidden = decode_payload(event)?;
        Event::MessageHidden {
            message_id: stored_id(&e.message_id)?,
            by: stored_id(&e.hidden_by)?,
        }
    } else if t == pb::MessageUnhidden::full_name() {
        let e: pb::MessageUnhidden = decode_payload(event)?;
        Event::MessageUnhidden {
            message_id: stored_id(&e.message_id)?,
            by: stored_id(&e.unhidden_by)?,
        }
    } else if t == pb::ThreadPinned::full_name() {
        let e: pb::ThreadPinned = decode_payload(event)?;
        Event::ThreadPinned {
            thread_id: stored_id(&e.thread_id)?,
            by: stored_id(&e.pinned_by)?,
        }
    } else if t == pb::ThreadUnpinned::full_name() {
        let e: pb::ThreadUnpinned = decode_payload(event)?;
        Event::ThreadUnpinned {
            thread_id: stored_id(&e.thread_id)?,
            by: stored_id(&e.unpinned_by)?,
        }
    } else if t == pb::ReactionAdded::full_name() {
        let e: pb::ReactionAdded = decode_payload(event)?;
        Event::ReactionAdded {
            message_id: stored_id(&e.message_id)?,
            member: stored_id(&e.member_id)?,
            reaction: Reaction::from_stored(e.reaction),
        }
    } else if t == pb::ReactionRemoved::full_name() {
        let e: pb::ReactionRemoved = decode_payload(event)?;
        Event::ReactionRemoved {
            message_id: stored_id(&e.message_id)?,
            member: stored_id(&e.member_id)?,
            reaction: Reaction::from_stored(e.reaction),
        }
    } else if t == pb::MessageReported::full_name() {
        let e: pb::MessageReported = decode_payload(event)?;
        let reason = open(opener, e.reason.as_ref()).await?;
        Event::MessageReported {
            report_id: stored_id(&e.report_id)?,
            message_id: stored_id(&e.message_id)?,
            reporter: stored_id(&e.reporter_id)?,
            reason: reason.map(ReportReason::from_stored),
        }
    } else if t == pb::ReportResolved::full_name() {
        let e: pb::ReportResolved = decode_payload(event)?;
        Event::ReportResolved {
            report_id: stored_id(&e.report_id)?,
            by: stored_id(&e.resolved_by)?,
        }
    } else if t == pb::SlowModeSet::full_name() {
        let e: pb::SlowModeSet = decode_payload(event)?;
        Event::SlowModeSet {
            interval: SlowMode::from_stored(e.interval_seconds),
            by: stored_id(&e.set_by)?,
        }
    } else {
        return Err(Error::Codec(format!(
            "{t} at position {} is not a conversation event",
            event.position
        )));
    })
}

/// Encodes and decodes reader events (nothing personal: ids and positions).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReaderCodec;

#[async_trait]
impl Codec<ReaderDecider> for ReaderCodec {
    async fn encode(&self, stream_id: &str, events: &[ReaderEvent]) -> Result<Vec<NewEvent>> {
        let member = stream_id.to_owned();
        Ok(events
            .iter()
            .map(|event| match event {
                ReaderEvent::ReadCursorMoved {
                    conversation_id,
                    thread,
                    seq,
                } => message(pb::ReadCursorMoved {
                    member_id: member.clone(),
                    conversation_id: conversation_id.to_string(),
                    thread_id: opt_id(*thread),
                    seq: *seq,
                }),
                ReaderEvent::ThreadFollowed {
                    conversation_id,
                    thread_id,
                } => message(pb::ThreadFollowed {
                    member_id: member.clone(),
                    conversation_id: conversation_id.to_string(),
                    thread_id: thread_id.to_string(),
                }),
                ReaderEvent::ThreadUnfollowed {
                    conversation_id,
                    thread_id,
                } => message(pb::ThreadUnfollowed {
                    member_id: member.clone(),
                    conversation_id: conversation_id.to_string(),
                    thread_id: thread_id.to_string(),
                }),
                ReaderEvent::ReadReceiptsSet { private } => message(pb::ReadReceiptsSet {
                    member_id: member.clone(),
                    private: *private,
                }),
            })
            .collect())
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<ReaderEvent>> {
        events.iter().map(decode_reader).collect()
    }

    fn erased_subjects(&self, _stream_id: &str, _events: &[ReaderEvent]) -> Vec<String> {
        Vec::new()
    }
}

/// Decodes one stored reader event.
pub fn decode_reader(event: &RecordedEvent) -> Result<ReaderEvent> {
    let t = event.event_type.as_str();
    Ok(if t == pb::ReadCursorMoved::full_name() {
        let e: pb::ReadCursorMoved = decode_payload(event)?;
        ReaderEvent::ReadCursorMoved {
            conversation_id: stored_id(&e.conversation_id)?,
            thread: stored_opt_id(&e.thread_id)?,
            seq: e.seq,
        }
    } else if t == pb::ThreadFollowed::full_name() {
        let e: pb::ThreadFollowed = decode_payload(event)?;
        ReaderEvent::ThreadFollowed {
            conversation_id: stored_id(&e.conversation_id)?,
            thread_id: stored_id(&e.thread_id)?,
        }
    } else if t == pb::ThreadUnfollowed::full_name() {
        let e: pb::ThreadUnfollowed = decode_payload(event)?;
        ReaderEvent::ThreadUnfollowed {
            conversation_id: stored_id(&e.conversation_id)?,
            thread_id: stored_id(&e.thread_id)?,
        }
    } else if t == pb::ReadReceiptsSet::full_name() {
        let e: pb::ReadReceiptsSet = decode_payload(event)?;
        ReaderEvent::ReadReceiptsSet { private: e.private }
    } else {
        return Err(Error::Codec(format!(
            "{t} at position {} is not a reader event",
            event.position
        )));
    })
}

#[cfg(test)]
mod tests;
