//! Given / when / then over the decider: given past events, when a command arrives, then these
//! events (which are folded in, so the next `when` sees them) or this refusal.

mod errors;
mod facilitators;
mod invariants;
mod invitations;
mod lifecycle;
mod seats;
mod sessions;

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use uuid::Uuid;

use super::{
    Action, Capacity, Cohort, CohortName, Command, CommunityRole, Dates, Details, Event, Goal,
    Kind, SeatedBy, TimeZone,
};

pub(super) const OWNER: Uuid = Uuid::from_u128(1);
pub(super) const HOST: Uuid = Uuid::from_u128(2);
/// Created the cohort and facilitates it.
pub(super) const COACH: Uuid = Uuid::from_u128(3);
/// A coach of the community who does not facilitate the cohort.
pub(super) const OTHER_COACH: Uuid = Uuid::from_u128(4);
pub(super) const MODERATOR: Uuid = Uuid::from_u128(5);
pub(super) const OUTSIDER: Uuid = Uuid::from_u128(6);
pub(super) const COMMUNITY: Uuid = Uuid::from_u128(900);

/// The `n`th plain member of the community.
pub(super) fn member(n: u128) -> Uuid {
    Uuid::from_u128(1_000 + n)
}

/// Given / when / then over this service's decider (the platform's harness).
pub(super) type Given = kith_platform::testing::decider::Given<crate::service::CohortDecider>;

/// The cohort after `events`.
pub(super) fn given(events: &[Event]) -> Given {
    kith_platform::testing::decider::given(events)
}

/// A fixed instant, so that tests do not read the clock.
pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

pub(super) fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

/// `action` asked at [`now`] by `actor` holding `role` in the community.
pub(super) fn by(actor: Uuid, role: Option<CommunityRole>, action: Action) -> Command {
    at(actor, role, now(), action)
}

/// `action` asked at `time` by `actor` holding `role` in the community.
pub(super) fn at(
    actor: Uuid,
    role: Option<CommunityRole>,
    time: DateTime<Utc>,
    action: Action,
) -> Command {
    Command {
        actor,
        actor_role: role,
        now: time,
        action,
    }
}

/// `action` asked at [`now`] by [`COACH`], the cohort's facilitator.
pub(super) fn coach(action: Action) -> Command {
    by(COACH, Some(CommunityRole::Coach), action)
}

/// `action` asked at [`now`] by a plain member of the community.
pub(super) fn by_member(actor: Uuid, action: Action) -> Command {
    by(actor, Some(CommunityRole::Member), action)
}

/// A mastermind cohort's details with `capacity` seats, in UTC.
pub(super) fn details(capacity: u32) -> Details {
    Details {
        name: CohortName::parse("Writers' room").unwrap(),
        kind: Kind::Mastermind,
        capacity: Capacity::parse(capacity).unwrap(),
        dates: Dates::default(),
        time_zone: TimeZone::default(),
        goal: Goal::parse("Finish a first draft.").unwrap(),
    }
}

/// A draft cohort of `capacity` seats created by [`COACH`], who facilitates it.
pub(super) fn created(capacity: u32) -> Vec<Event> {
    created_with(details(capacity))
}

pub(super) fn created_with(details: Details) -> Vec<Event> {
    vec![
        Event::CohortCreated {
            community_id: COMMUNITY,
            details,
            created_by: COACH,
        },
        Event::FacilitatorAssigned {
            member_id: COACH,
            assigned_by: COACH,
        },
    ]
}

/// [`created`], then opened.
pub(super) fn opened(capacity: u32) -> Vec<Event> {
    plus(created(capacity), [Event::CohortOpened { by: COACH }])
}

/// [`opened`] with its seats `1..=capacity` taken by members in order.
pub(super) fn full(capacity: u32) -> Vec<Event> {
    plus(
        opened(capacity),
        (1..=u128::from(capacity)).map(|n| joined(member(n))),
    )
}

/// A full open cohort of two in which member 1 is seated, members 3 and 4 wait in that order,
/// and member 3 also holds an invitation to the seat member 2 left. The decider never leaves a
/// seat free while people wait, so only a log it did not write gets here; the rules still say
/// what such a member may do.
pub(super) fn waiting_and_invited() -> Vec<Event> {
    plus(
        full(2),
        [
            waitlisted(member(3)),
            waitlisted(member(4)),
            Event::MemberLeftCohort {
                member_id: member(2),
                place: super::Place::Seat,
            },
            invited(member(3), now() + days(1)),
        ],
    )
}

/// [`created`], then started.
pub(super) fn running(capacity: u32) -> Vec<Event> {
    plus(created(capacity), [Event::CohortStarted { by: COACH }])
}

/// `base` followed by `more`.
pub(super) fn plus(mut base: Vec<Event>, more: impl IntoIterator<Item = Event>) -> Vec<Event> {
    base.extend(more);
    base
}

pub(super) fn joined(member_id: Uuid) -> Event {
    Event::MemberJoinedCohort {
        member_id,
        seated_by: SeatedBy::SelfJoin,
    }
}

pub(super) fn accepted(member_id: Uuid) -> Event {
    Event::MemberJoinedCohort {
        member_id,
        seated_by: SeatedBy::Invitation,
    }
}

pub(super) fn waitlisted(member_id: Uuid) -> Event {
    Event::MemberWaitlisted { member_id }
}

pub(super) fn promoted(member_id: Uuid) -> Event {
    Event::WaitlistPromoted { member_id }
}

/// [`COACH`] invites `member_id` until `expires_at`.
pub(super) fn invited(member_id: Uuid, expires_at: DateTime<Utc>) -> Event {
    Event::MemberInvited {
        member_id,
        invited_by: COACH,
        expires_at,
    }
}

pub(super) fn expired(member_id: Uuid) -> Event {
    Event::InvitationExpired { member_id }
}

pub(super) fn seated(state: &Cohort) -> Vec<Uuid> {
    state.seated().collect()
}

pub(super) fn waitlist(state: &Cohort) -> Vec<Uuid> {
    state.waitlist().collect()
}
