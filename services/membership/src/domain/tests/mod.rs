//! Given / when / then over the decider: given past events, when a command arrives, then these
//! events (which are folded in, so the next `when` sees them) or this refusal.

mod community;
mod departures;
mod erasure;
mod errors;
mod invitations;
mod join_requests;
mod roles;
mod values;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use uuid::Uuid;

use super::{
    Action, Bio, Command, CommunityName, Description, DisplayName, Event, Handle, JoinPath,
    Profile, Reason, Role,
};

pub(super) const OWNER: Uuid = Uuid::from_u128(1);
pub(super) const HOST: Uuid = Uuid::from_u128(2);
pub(super) const COACH: Uuid = Uuid::from_u128(3);
pub(super) const MODERATOR: Uuid = Uuid::from_u128(4);
pub(super) const MEMBER: Uuid = Uuid::from_u128(5);
pub(super) const OUTSIDER: Uuid = Uuid::from_u128(6);
pub(super) const CO_OWNER: Uuid = Uuid::from_u128(7);
pub(super) const INVITATION: Uuid = Uuid::from_u128(100);

/// Given / when / then over this service's decider (the platform's harness).
pub(super) type Given = kith_platform::testing::decider::Given<crate::service::CommunityDecider>;

/// The community after `events`.
pub(super) fn given(events: &[Event]) -> Given {
    kith_platform::testing::decider::given(events)
}

/// A fixed instant, so that tests do not read the clock.
pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

/// `action` asked by `actor` at [`now`].
pub(super) fn by(actor: Uuid, action: Action) -> Command {
    at(actor, now(), action)
}

/// `action` asked by `actor` at `time`.
pub(super) fn at(actor: Uuid, time: DateTime<Utc>, action: Action) -> Command {
    Command {
        actor,
        now: time,
        action,
    }
}

pub(super) fn profile(handle: &str) -> Profile {
    Profile {
        display_name: DisplayName::parse(&format!("The {handle}")).unwrap(),
        handle: Handle::parse(handle).unwrap(),
        bio: Bio::parse("").unwrap(),
    }
}

pub(super) fn name(text: &str) -> CommunityName {
    CommunityName::parse(text).unwrap()
}

pub(super) fn description(text: &str) -> Description {
    Description::parse(text).unwrap()
}

pub(super) fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap()
}

/// A community created by [`OWNER`] with the handle `owner`.
pub(super) fn created() -> Vec<Event> {
    vec![
        Event::CommunityCreated {
            name: name("Runners"),
            description: description("We run."),
            created_by: OWNER,
        },
        Event::MemberJoined {
            member_id: OWNER,
            role: Role::Owner,
            path: JoinPath::Founder,
            profile: Some(profile("owner")),
            invitation_id: None,
        },
    ]
}

/// `member_id` joins as a plain member through an approved join request, with `handle`.
pub(super) fn joined(member_id: Uuid, handle: &str) -> Event {
    Event::MemberJoined {
        member_id,
        role: Role::Member,
        path: JoinPath::JoinRequest,
        profile: Some(profile(handle)),
        invitation_id: None,
    }
}

/// [`OWNER`] gives a plain member `role`.
pub(super) fn promoted(member_id: Uuid, role: Role) -> Event {
    Event::RoleAssigned {
        member_id,
        role,
        previous_role: Role::Member,
        assigned_by: OWNER,
    }
}

/// A created community with one member of each role: [`HOST`], [`COACH`], [`MODERATOR`],
/// [`MEMBER`], their handles being their role names.
pub(super) fn staffed() -> Vec<Event> {
    plus(
        created(),
        [
            joined(HOST, "host"),
            promoted(HOST, Role::Host),
            joined(COACH, "coach"),
            promoted(COACH, Role::Coach),
            joined(MODERATOR, "moderator"),
            promoted(MODERATOR, Role::Moderator),
            joined(MEMBER, "member"),
        ],
    )
}

/// `base` followed by `more`.
pub(super) fn plus(mut base: Vec<Event>, more: impl IntoIterator<Item = Event>) -> Vec<Event> {
    base.extend(more);
    base
}

/// [`OWNER`] creates [`INVITATION`], expiring a week after [`now`], for `max_uses` members.
pub(super) fn invitation_created(max_uses: u32) -> Event {
    Event::InvitationCreated {
        invitation_id: INVITATION,
        created_by: OWNER,
        expires_at: now() + TimeDelta::days(7),
        max_uses,
    }
}

/// `member_id` joins with [`INVITATION`], with `handle`.
pub(super) fn joined_by_invitation(member_id: Uuid, handle: &str) -> Event {
    Event::MemberJoined {
        member_id,
        role: Role::Member,
        path: JoinPath::Invitation,
        profile: Some(profile(handle)),
        invitation_id: Some(INVITATION),
    }
}

/// `member_id` asks to join with `handle` and no answers.
pub(super) fn requested(member_id: Uuid, handle: &str) -> Event {
    Event::JoinRequested {
        member_id,
        profile: Some(profile(handle)),
        answers: Some(Vec::new()),
    }
}

/// [`MODERATOR`] bans `member_id`.
pub(super) fn banned(member_id: Uuid, was_member: bool) -> Event {
    Event::MemberBanned {
        member_id,
        banned_by: MODERATOR,
        reason: reason("spam"),
        was_member,
    }
}

/// `member_id` erases their own data.
pub(super) fn erased(member_id: Uuid, was_member: bool) -> Event {
    Event::MemberErased {
        member_id,
        erased_by: member_id,
        was_member,
    }
}

pub(super) fn accept(handle: &str) -> Action {
    Action::AcceptInvitation {
        invitation_id: INVITATION,
        profile: profile(handle),
    }
}

pub(super) fn request(handle: &str) -> Action {
    Action::RequestToJoin {
        profile: profile(handle),
        answers: Vec::new(),
    }
}
