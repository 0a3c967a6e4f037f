//! The small closed sets notifications reason with.

/// How much of a community or a cohort reaches a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    /// New threads too, besides what names the member.
    #[default]
    All,
    /// Only what names the member: mentions, replies in followed threads, direct messages and
    /// news of their own places.
    MentionsAndReplies,
    Muted,
}

/// Where a notification can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    InApp,
    Email,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::InApp, Channel::Email, Channel::Webhook];
}

/// What a notification is about: one per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Mention,
    Reply,
    NewThread,
    DirectMessage,
    CohortInvitation,
    JoinRequest,
    PromotedFromWaitlist,
    SeatLost,
    SessionScheduled,
    SessionRescheduled,
    SessionCancelled,
    SessionReminder,
    ReportFiled,
}

impl Kind {
    /// When several rules match one event for one member, the strongest names the
    /// notification: being named beats a conversation one takes part in, which beats news of
    /// the group.
    pub fn strength(self) -> u8 {
        match self {
            Kind::Mention => 10,
            Kind::DirectMessage => 9,
            Kind::Reply => 8,
            Kind::NewThread => 1,
            _ => 5,
        }
    }

    /// Whether the kind concerns the member in person, so that it passes the "mentions and
    /// replies" level; only news of the group (a new thread) does not.
    pub fn personal(self) -> bool {
        !matches!(self, Kind::NewThread)
    }

    /// Whether a muted thread silences it: replies and the thread's news do; a mention names
    /// the member and still comes through.
    pub fn silenced_by_muted_thread(self) -> bool {
        matches!(self, Kind::Reply | Kind::NewThread)
    }

    /// A stable code for the rule, as reasons quote it.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Mention => "MENTIONED",
            Kind::Reply => "REPLY_IN_FOLLOWED_THREAD",
            Kind::NewThread => "NEW_THREAD_IN_COHORT",
            Kind::DirectMessage => "DIRECT_MESSAGE",
            Kind::CohortInvitation => "INVITED_TO_COHORT",
            Kind::JoinRequest => "JOIN_REQUEST_TO_APPROVE",
            Kind::PromotedFromWaitlist => "PROMOTED_FROM_WAITLIST",
            Kind::SeatLost => "SEAT_LOST",
            Kind::SessionScheduled => "SESSION_SCHEDULED",
            Kind::SessionRescheduled => "SESSION_RESCHEDULED",
            Kind::SessionCancelled => "SESSION_CANCELLED",
            Kind::SessionReminder => "SESSION_REMINDER",
            Kind::ReportFiled => "REPORT_TO_MODERATE",
        }
    }

    /// The rule in words, for the member who asks why.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Mention => "you were mentioned",
            Kind::Reply => "someone replied in a thread you follow",
            Kind::NewThread => "a new thread started in a cohort you are in",
            Kind::DirectMessage => "a message arrived in your direct conversation",
            Kind::CohortInvitation => "you were invited to a cohort",
            Kind::JoinRequest => "someone asked to join a community you approve requests for",
            Kind::PromotedFromWaitlist => "you were promoted from the waitlist to a seat",
            Kind::SeatLost => "you lost your place in a cohort",
            Kind::SessionScheduled => "a session was scheduled in your cohort",
            Kind::SessionRescheduled => "a session of your cohort was moved",
            Kind::SessionCancelled => "a session of your cohort was cancelled",
            Kind::SessionReminder => "a session of your cohort starts soon",
            Kind::ReportFiled => "a message was reported in a community you moderate",
        }
    }
}
