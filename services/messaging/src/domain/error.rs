//! Why a command was refused. Each refusal has its own variant, a message that says what is
//! wrong (and what to do instead, where there is something), a kind the gRPC layer maps to a
//! status code and a stable reason.

use std::time::Duration;

use uuid::Uuid;

use kith_platform::command::ErrorKind;

use super::values::{MAX_DIRECT_PARTICIPANTS, MAX_MENTIONS};

/// A command refused by a decider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("conversation not found")]
    ConversationNotFound,
    /// The caller does not read this conversation (not seated in the cohort, not a participant,
    /// or no longer an active member of the community).
    #[error("you cannot read or write this conversation")]
    NotAReader,
    /// The actor lacks the authority; the message says who may do it.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("message not found")]
    MessageNotFound,
    /// The id of a new message is taken (request ids derive message ids; this is another one).
    #[error("a message with this id exists already")]
    MessageExists,
    /// `thread_id` names no thread of this conversation (a reply is not a thread).
    #[error("no thread {0} in this conversation; reply to a thread's first message")]
    UnknownThread(Uuid),
    /// The thread's first message was deleted: the thread takes no more replies.
    #[error("the thread was deleted and takes no more replies")]
    ThreadDeleted,
    /// The message was deleted; nothing more can be done with it.
    #[error("the message was deleted")]
    MessageDeleted,
    /// Only a thread's first message in a cohort conversation has a title.
    #[error("only a new thread in a cohort conversation has a title")]
    TitleNotAllowed,
    /// Threads are for cohort conversations; a direct conversation is one flow of messages.
    #[error("a direct conversation has no threads; post without thread_id")]
    NoThreadsInDirect,
    /// This needs a cohort conversation (slow mode, `@cohort`).
    #[error("this is only for a cohort's conversation")]
    NotACohortConversation,
    #[error("a message mentions at most {MAX_MENTIONS} members; it mentions {0}")]
    TooManyMentions(usize),
    /// Slow mode: the member must wait this long before their next message.
    #[error("slow mode: you can post again in {} s", .0.as_secs().max(1))]
    SlowMode(Duration),
    #[error("report not found")]
    ReportNotFound,
    #[error("a report with this id exists already")]
    ReportExists,
    /// A direct conversation is between 2 and 9 people, the caller among them.
    #[error(
        "a direct conversation is between 2 and {MAX_DIRECT_PARTICIPANTS} distinct members, you among them"
    )]
    BadParticipants,
    /// Someone asked for in a direct conversation is not an active member of the community.
    #[error("{0} is not a member of the community")]
    NotACommunityMember(Uuid),
    /// The conversation exists with other participants (ids derive from the set, so this is a
    /// foreign id).
    #[error("the conversation exists with other participants")]
    ParticipantsDiffer,
}

impl DomainError {
    pub fn kind(&self) -> ErrorKind {
        use DomainError::*;
        match self {
            ConversationNotFound | MessageNotFound | ReportNotFound => ErrorKind::NotFound,
            MessageExists | ReportExists => ErrorKind::AlreadyExists,
            NotAReader | Forbidden(_) => ErrorKind::PermissionDenied,
            ThreadDeleted
            | MessageDeleted
            | NotACohortConversation
            | NotACommunityMember(_)
            | ParticipantsDiffer => ErrorKind::FailedPrecondition,
            UnknownThread(_) | TitleNotAllowed | NoThreadsInDirect | TooManyMentions(_)
            | BadParticipants => ErrorKind::InvalidArgument,
            SlowMode(_) => ErrorKind::ResourceExhausted,
        }
    }

    pub fn reason(&self) -> &'static str {
        use DomainError::*;
        match self {
            ConversationNotFound => "CONVERSATION_NOT_FOUND",
            NotAReader => "NOT_A_READER",
            Forbidden(_) => "NOT_PERMITTED",
            MessageNotFound => "MESSAGE_NOT_FOUND",
            MessageExists => "MESSAGE_EXISTS",
            UnknownThread(_) => "UNKNOWN_THREAD",
            ThreadDeleted => "THREAD_DELETED",
            MessageDeleted => "MESSAGE_DELETED",
            TitleNotAllowed => "TITLE_NOT_ALLOWED",
            NoThreadsInDirect => "NO_THREADS_IN_DIRECT",
            NotACohortConversation => "NOT_A_COHORT_CONVERSATION",
            TooManyMentions(_) => "TOO_MANY_MENTIONS",
            SlowMode(_) => "SLOW_MODE",
            ReportNotFound => "REPORT_NOT_FOUND",
            ReportExists => "REPORT_EXISTS",
            BadParticipants => "BAD_PARTICIPANTS",
            NotACommunityMember(_) => "NOT_A_COMMUNITY_MEMBER",
            ParticipantsDiffer => "PARTICIPANTS_DIFFER",
        }
    }

    /// The request field an argument refusal is about.
    pub fn field(&self) -> Option<&'static str> {
        use DomainError::*;
        match self {
            UnknownThread(_) | NoThreadsInDirect => Some("thread_id"),
            TitleNotAllowed => Some("title"),
            TooManyMentions(_) => Some("body"),
            BadParticipants => Some("participant_ids"),
            _ => None,
        }
    }

    /// How long to wait before trying again, for a refusal that passes with time.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DomainError::SlowMode(wait) => Some(*wait),
            _ => None,
        }
    }
}
