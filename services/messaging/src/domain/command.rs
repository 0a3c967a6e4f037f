//! What someone asks of a conversation or of their own read state. What the service knows of
//! the conversation's readers (from membership's and cohorts' events) comes with the command as
//! [`Access`], together with the clock, so that deciding stays pure.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{Body, Mentions, Reaction, ReportReason, SlowMode, Title};

/// What the service knows of the actor's standing in the conversation, when the command runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    /// Reads and writes the conversation: seated in or facilitating the cohort, or a participant
    /// of the direct conversation, and an active member of the community.
    pub reader: bool,
    /// Facilitates the cohort.
    pub facilitator: bool,
    /// An owner, host or moderator of the community.
    pub moderator: bool,
}

/// Where a conversation belongs, as the service knows it before its first event: a cohort's
/// conversation starts with its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cohort { community_id: Uuid, cohort_id: Uuid },
}

/// A request to change a conversation, made by someone at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub actor: Uuid,
    pub access: Access,
    /// Where the conversation belongs, when the service knows it (cohort conversations).
    pub origin: Option<Origin>,
    /// The only clock the decider reads (slow mode).
    pub now: DateTime<Utc>,
    pub action: Action,
}

/// What a conversation command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a direct conversation between `participants` (the actor among them), all active
    /// members of `community_id` except those in `not_members`. Opening one that exists is a
    /// no-op.
    OpenDirect {
        community_id: Uuid,
        participants: Vec<Uuid>,
        not_members: Vec<Uuid>,
    },
    /// Post a message: a new thread (`thread` none, optionally titled) or a reply in one. In a
    /// direct conversation every message is top level and untitled.
    Post {
        message_id: Uuid,
        thread: Option<Uuid>,
        title: Option<Title>,
        body: Body,
        mentions: Mentions,
    },
    /// A new version of one's own message.
    Edit {
        message_id: Uuid,
        title: Option<Title>,
        body: Body,
        mentions: Mentions,
    },
    /// A tombstone (the author, facilitators, moderators); the message's key goes with it.
    Delete {
        message_id: Uuid,
    },
    /// Hide from everyone but the author and moderators (facilitators, moderators).
    Hide {
        message_id: Uuid,
    },
    Unhide {
        message_id: Uuid,
    },
    /// Pin a thread to the top of the conversation (facilitators).
    Pin {
        thread_id: Uuid,
    },
    Unpin {
        thread_id: Uuid,
    },
    /// React with one grapheme; once per reaction per member per message.
    React {
        message_id: Uuid,
        reaction: Reaction,
    },
    Unreact {
        message_id: Uuid,
        reaction: Reaction,
    },
    /// Report a message to the community's moderators (any reader).
    Report {
        report_id: Uuid,
        message_id: Uuid,
        reason: ReportReason,
    },
    /// Close a report (owners, hosts, moderators).
    ResolveReport {
        report_id: Uuid,
    },
    /// At most one message per member per interval in a cohort conversation (facilitators,
    /// moderators); facilitators are exempt.
    SetSlowMode {
        interval: SlowMode,
    },
}

/// A request about one member's own read state. The gRPC layer checks that the member reads the
/// conversation and that the cursor points at a message that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderCommand {
    pub actor: Uuid,
    pub action: ReaderAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderAction {
    /// Mark read up to the message of `seq` in a conversation (`thread` none: its top level, or
    /// a whole direct conversation) or a thread. A cursor never moves back.
    MoveCursor {
        conversation_id: Uuid,
        thread: Option<Uuid>,
        seq: i64,
    },
    Follow {
        conversation_id: Uuid,
        thread_id: Uuid,
    },
    Unfollow {
        conversation_id: Uuid,
        thread_id: Uuid,
    },
    /// Keep one's cursors out of "seen by" (they still count for one's own unread counts).
    SetPrivateReceipts { private: bool },
}
