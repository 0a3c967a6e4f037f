//! Assigning and removing facilitators.

use uuid::Uuid;

use super::super::{Action, CommunityRole, DomainError, Event, Place, Status};
use super::{
    COACH, HOST, OTHER_COACH, OWNER, by, by_member, coach, created, given, invited, joined, member,
    now, opened, plus, running, waitlisted,
};

fn assign(member_id: Uuid, role: Option<CommunityRole>) -> Action {
    Action::AssignFacilitator {
        member_id,
        member_role: role,
    }
}

fn assigned(member_id: Uuid, by: Uuid) -> Event {
    Event::FacilitatorAssigned {
        member_id,
        assigned_by: by,
    }
}

fn remove(member_id: Uuid) -> Action {
    Action::RemoveFacilitator { member_id }
}

fn removed(member_id: Uuid, by: Uuid) -> Event {
    Event::FacilitatorRemoved {
        member_id,
        removed_by: by,
    }
}

#[test]
fn a_facilitator_assigns_another_coach_who_comes_after_them() {
    let after = given(&opened(12))
        .when(coach(assign(OTHER_COACH, Some(CommunityRole::Coach))))
        .then(&[assigned(OTHER_COACH, COACH)]);
    assert_eq!(after.state.facilitators(), [COACH, OTHER_COACH]);
    assert_eq!(after.state.place_of(OTHER_COACH), Some(Place::Facilitator));
}

#[test]
fn owners_and_hosts_may_facilitate_and_a_host_may_assign() {
    for (member_id, role) in [(OWNER, CommunityRole::Owner), (HOST, CommunityRole::Host)] {
        given(&created(12))
            .when(by(
                HOST,
                Some(CommunityRole::Host),
                assign(member_id, Some(role)),
            ))
            .then(&[assigned(member_id, HOST)]);
    }
}

#[test]
fn someone_outside_the_community_cannot_facilitate() {
    given(&opened(12))
        .when(coach(assign(member(1), None)))
        .then_error(DomainError::NotACommunityMember(member(1)));
}

#[test]
fn moderators_and_members_cannot_facilitate() {
    for role in [CommunityRole::Moderator, CommunityRole::Member] {
        given(&opened(12))
            .when(coach(assign(member(1), Some(role))))
            .then_error(DomainError::NotEligibleFacilitator(member(1)));
    }
}

#[test]
fn a_facilitator_cannot_be_assigned_twice() {
    given(&opened(12))
        .when(by(
            HOST,
            Some(CommunityRole::Host),
            assign(COACH, Some(CommunityRole::Coach)),
        ))
        .then_error(DomainError::AlreadyFacilitator(COACH));
}

#[test]
fn someone_holding_a_seat_a_turn_or_an_invitation_must_give_it_up_first() {
    let events = plus(
        opened(2),
        [
            joined(member(1)),
            invited(member(3), now() + super::days(1)),
            waitlisted(member(2)),
        ],
    );
    let cases = [
        (member(1), Place::Seat),
        (member(2), Place::Waitlist),
        (member(3), Place::Invitation),
    ];
    for (member_id, place) in cases {
        given(&events)
            .when(coach(assign(member_id, Some(CommunityRole::Coach))))
            .then_error(DomainError::HoldsPlace {
                member: member_id,
                place,
            });
    }
}

#[test]
fn an_ended_cohort_gets_no_new_facilitators() {
    let closed = plus(running(12), [Event::CohortClosed { by: COACH }]);
    given(&closed)
        .when(coach(assign(OTHER_COACH, Some(CommunityRole::Coach))))
        .then_error(DomainError::CohortEnded(Status::Closed));
}

#[test]
fn only_managers_assign_and_remove_facilitators() {
    let refused = DomainError::Forbidden(
        "only the cohort's facilitators and the community's owners and hosts may assign and remove facilitators",
    );
    given(&opened(12))
        .when(by(
            OTHER_COACH,
            Some(CommunityRole::Coach),
            assign(OTHER_COACH, Some(CommunityRole::Coach)),
        ))
        .then_error(refused.clone());
    given(&opened(12))
        .when(by_member(member(1), remove(COACH)))
        .then_error(refused);
}

#[test]
fn a_facilitator_is_removed() {
    let events = plus(opened(12), [assigned(OTHER_COACH, COACH)]);
    let after = given(&events)
        .when(coach(remove(OTHER_COACH)))
        .then(&[removed(OTHER_COACH, COACH)]);
    assert_eq!(after.state.facilitators(), [COACH]);
    assert_eq!(after.state.place_of(OTHER_COACH), None);
}

#[test]
fn removing_someone_who_does_not_facilitate_is_refused() {
    given(&opened(12))
        .when(coach(remove(OTHER_COACH)))
        .then_error(DomainError::NotAFacilitator(OTHER_COACH));
}

#[test]
fn a_running_cohort_keeps_its_last_facilitator() {
    given(&running(12))
        .when(by(OWNER, Some(CommunityRole::Owner), remove(COACH)))
        .then_error(DomainError::LastFacilitator);
    let two = plus(running(12), [assigned(OTHER_COACH, COACH)]);
    given(&two)
        .when(coach(remove(COACH)))
        .then(&[removed(COACH, COACH)]);
}

#[test]
fn a_cohort_not_yet_running_may_lose_its_last_facilitator() {
    given(&opened(12))
        .when(by(OWNER, Some(CommunityRole::Owner), remove(COACH)))
        .then(&[removed(COACH, OWNER)]);
}
