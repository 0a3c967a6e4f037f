//! What happened, as the domain sees it; `codec` maps these to the protobuf events of
//! `kith/messaging/v1/events.proto` one to one.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::conversation::ConversationKind;
use super::values::{Body, Mentions, Reaction, ReportReason, SlowMode, Title};

/// An event of a conversation stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ConversationStarted {
        kind: ConversationKind,
        community_id: Uuid,
        /// For a direct conversation, its participants, sorted.
        participants: Vec<Uuid>,
        started_by: Uuid,
    },
    MessagePosted {
        message_id: Uuid,
        /// The thread's first message; itself for a new thread, none in a direct conversation.
        thread: Option<Uuid>,
        author: Uuid,
        title: Option<Title>,
        /// None when the body can no longer be read (deleted, or its author erased).
        body: Option<Body>,
        mentions: Mentions,
        posted_at: DateTime<Utc>,
    },
    MessageEdited {
        message_id: Uuid,
        author: Uuid,
        title: Option<Title>,
        body: Option<Body>,
        mentions: Mentions,
    },
    MessageDeleted {
        message_id: Uuid,
        author: Uuid,
        by: Uuid,
    },
    MessageHidden {
        message_id: Uuid,
        by: Uuid,
    },
    MessageUnhidden {
        message_id: Uuid,
        by: Uuid,
    },
    ThreadPinned {
        thread_id: Uuid,
        by: Uuid,
    },
    ThreadUnpinned {
        thread_id: Uuid,
        by: Uuid,
    },
    ReactionAdded {
        message_id: Uuid,
        member: Uuid,
        reaction: Reaction,
    },
    ReactionRemoved {
        message_id: Uuid,
        member: Uuid,
        reaction: Reaction,
    },
    MessageReported {
        report_id: Uuid,
        message_id: Uuid,
        reporter: Uuid,
        reason: Option<ReportReason>,
    },
    ReportResolved {
        report_id: Uuid,
        by: Uuid,
    },
    SlowModeSet {
        interval: SlowMode,
        by: Uuid,
    },
}

/// An event of a reader stream (one member's read state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderEvent {
    ReadCursorMoved {
        conversation_id: Uuid,
        thread: Option<Uuid>,
        seq: i64,
    },
    ThreadFollowed {
        conversation_id: Uuid,
        thread_id: Uuid,
    },
    ThreadUnfollowed {
        conversation_id: Uuid,
        thread_id: Uuid,
    },
    ReadReceiptsSet {
        private: bool,
    },
}
