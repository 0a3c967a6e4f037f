//! Given / when / then over the deciders: given past events, when a command arrives, then these
//! events (folded in, so the next `when` sees them) or this refusal.

mod direct;
mod mentions;
mod messages;
mod moderation;
mod posting;
mod reactions_and_pins;
mod reader;

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use uuid::Uuid;

use super::{
    Access, Action, Body, Command, ConversationKind, Event, Mentions, Origin, Reaction, Title,
};

pub(super) const COMMUNITY: Uuid = Uuid::from_u128(900);
pub(super) const COHORT: Uuid = Uuid::from_u128(800);
/// Facilitates the cohort.
pub(super) const COACH: Uuid = Uuid::from_u128(3);
/// A moderator of the community, not seated in the cohort.
pub(super) const MODERATOR: Uuid = Uuid::from_u128(5);
/// Not seated in the cohort (or no longer).
pub(super) const OUTSIDER: Uuid = Uuid::from_u128(6);

/// The `n`th seated member.
pub(super) fn member(n: u128) -> Uuid {
    Uuid::from_u128(1_000 + n)
}

/// The `n`th message's id.
pub(super) fn msg(n: u128) -> Uuid {
    Uuid::from_u128(50_000 + n)
}

pub(super) type Given = kith_platform::testing::decider::Given<crate::service::ConversationDecider>;

pub(super) fn given(events: &[Event]) -> Given {
    kith_platform::testing::decider::given(events)
}

pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

pub(super) fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

pub(super) const READER: Access = Access {
    reader: true,
    facilitator: false,
    moderator: false,
};
pub(super) const FACILITATOR: Access = Access {
    reader: true,
    facilitator: true,
    moderator: false,
};
pub(super) const STAFF: Access = Access {
    reader: false,
    facilitator: false,
    moderator: true,
};
pub(super) const NONE: Access = Access {
    reader: false,
    facilitator: false,
    moderator: false,
};

/// `action` on the cohort's conversation by `actor` with `access`, at [`now`].
pub(super) fn by(actor: Uuid, access: Access, action: Action) -> Command {
    at(actor, access, now(), action)
}

pub(super) fn at(actor: Uuid, access: Access, time: DateTime<Utc>, action: Action) -> Command {
    Command {
        actor,
        access,
        origin: Some(Origin::Cohort {
            community_id: COMMUNITY,
            cohort_id: COHORT,
        }),
        now: time,
        action,
    }
}

/// A seated member's `action`.
pub(super) fn seated(actor: Uuid, action: Action) -> Command {
    by(actor, READER, action)
}

/// The facilitator's `action`.
pub(super) fn coach(action: Action) -> Command {
    by(COACH, FACILITATOR, action)
}

pub(super) fn body(text: &str) -> Body {
    Body::parse(text).unwrap()
}

pub(super) fn title(text: &str) -> Title {
    Title::parse(text).unwrap()
}

pub(super) fn reaction(text: &str) -> Reaction {
    Reaction::parse(text).unwrap()
}

pub(super) fn mentioning(members: &[Uuid]) -> Mentions {
    Mentions {
        members: members.to_vec(),
        everyone: false,
    }
}

/// A new thread `n` with a body and no title or mentions.
pub(super) fn new_thread(n: u128) -> Action {
    Action::Post {
        message_id: msg(n),
        thread: None,
        title: None,
        body: body("hello"),
        mentions: Mentions::default(),
    }
}

/// Reply `n` in the thread of message `thread`.
pub(super) fn reply(n: u128, thread: u128) -> Action {
    Action::Post {
        message_id: msg(n),
        thread: Some(msg(thread)),
        title: None,
        body: body("a reply"),
        mentions: Mentions::default(),
    }
}

pub(super) fn started() -> Event {
    Event::ConversationStarted {
        kind: ConversationKind::Cohort,
        community_id: COMMUNITY,
        participants: Vec::new(),
        started_by: member(1),
    }
}

pub(super) fn posted(n: u128, thread: Option<u128>, author: Uuid) -> Event {
    posted_at(n, thread, author, now())
}

pub(super) fn posted_at(n: u128, thread: Option<u128>, author: Uuid, time: DateTime<Utc>) -> Event {
    Event::MessagePosted {
        message_id: msg(n),
        thread: Some(msg(thread.unwrap_or(n))),
        author,
        title: None,
        body: Some(body(if thread.is_some() { "a reply" } else { "hello" })),
        mentions: Mentions::default(),
        posted_at: time,
    }
}

/// A cohort conversation with thread 1 by member 1 and reply 2 by member 2.
pub(super) fn thread_with_reply() -> Vec<Event> {
    vec![
        started(),
        posted(1, None, member(1)),
        posted(2, Some(1), member(2)),
    ]
}
