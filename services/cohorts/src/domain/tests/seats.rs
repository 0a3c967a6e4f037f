//! Joining, the waitlist and its promotion, leaving, removing and releasing members.

use uuid::Uuid;

use super::super::{Action, CommunityRole, Departure, DomainError, Event, Place, SYSTEM, Status};
use super::{
    COACH, OTHER_COACH, OUTSIDER, OWNER, by, by_member, coach, created, full, given, invited,
    joined, member, now, opened, plus, promoted, running, seated, waiting_and_invited, waitlist,
    waitlisted,
};

fn left(member_id: Uuid, place: Place) -> Event {
    Event::MemberLeftCohort { member_id, place }
}

fn removed(member_id: Uuid, place: Place) -> Event {
    Event::MemberRemovedFromCohort {
        member_id,
        place,
        removed_by: COACH,
    }
}

fn release(member_id: Uuid, departure: Departure) -> super::super::Command {
    by(
        SYSTEM,
        None,
        Action::ReleaseMember {
            member_id,
            departure,
        },
    )
}

fn released(member_id: Uuid, place: Place, departure: Departure) -> Event {
    Event::MemberReleased {
        member_id,
        place,
        departure,
    }
}

/// A full cohort of two with members 3 and 4 waiting, in that order.
fn with_waitlist() -> Vec<Event> {
    plus(full(2), [waitlisted(member(3)), waitlisted(member(4))])
}

#[test]
fn a_member_takes_a_free_seat_in_an_open_cohort() {
    let after = given(&opened(2))
        .when(by_member(member(1), Action::JoinCohort))
        .then(&[joined(member(1))])
        .when(by_member(member(2), Action::JoinCohort))
        .then(&[joined(member(2))]);
    assert_eq!(seated(&after.state), [member(1), member(2)]);
    assert_eq!(after.state.place_of(member(1)), Some(Place::Seat));
    assert_eq!(after.state.seats_taken(), 2);
}

#[test]
fn joining_a_full_cohort_waits_last_in_line() {
    let after = given(&full(2))
        .when(by_member(member(3), Action::JoinCohort))
        .then(&[waitlisted(member(3))])
        .when(by_member(member(4), Action::JoinCohort))
        .then(&[waitlisted(member(4))]);
    assert_eq!(waitlist(&after.state), [member(3), member(4)]);
    assert_eq!(after.state.place_of(member(4)), Some(Place::Waitlist));
    assert_eq!(after.state.waitlist_len(), 2);
}

#[test]
fn someone_outside_the_community_cannot_join() {
    given(&opened(2))
        .when(by(OUTSIDER, None, Action::JoinCohort))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn a_facilitator_takes_no_seat() {
    given(&opened(2))
        .when(coach(Action::JoinCohort))
        .then_error(DomainError::IsFacilitator(COACH));
}

#[test]
fn joining_twice_is_refused() {
    given(&with_waitlist())
        .when(by_member(member(1), Action::JoinCohort))
        .then_error(DomainError::AlreadyInCohort {
            member: member(1),
            place: Place::Seat,
        });
    given(&with_waitlist())
        .when(by_member(member(3), Action::JoinCohort))
        .then_error(DomainError::AlreadyInCohort {
            member: member(3),
            place: Place::Waitlist,
        });
}

#[test]
fn only_an_open_cohort_takes_self_joins() {
    let closed = plus(opened(2), [Event::CohortClosed { by: COACH }]);
    let cases = [
        (created(2), Status::Draft),
        (running(2), Status::Running),
        (closed, Status::Closed),
    ];
    for (events, status) in cases {
        given(&events)
            .when(by_member(member(1), Action::JoinCohort))
            .then_error(DomainError::NotOpen(status));
    }
}

#[test]
fn leaving_a_seat_hands_it_to_the_head_of_the_waitlist() {
    let after = given(&with_waitlist())
        .when(by_member(member(1), Action::LeaveCohort))
        .then(&[left(member(1), Place::Seat), promoted(member(3))]);
    assert_eq!(seated(&after.state), [member(2), member(3)]);
    assert_eq!(waitlist(&after.state), [member(4)]);
}

#[test]
fn leaving_a_seat_with_nobody_waiting_frees_it() {
    let after = given(&full(2))
        .when(by_member(member(2), Action::LeaveCohort))
        .then(&[left(member(2), Place::Seat)]);
    assert_eq!(after.state.seats_taken(), 1);
    assert_eq!(after.state.place_of(member(2)), None);
}

#[test]
fn leaving_the_waitlist_keeps_the_others_in_order_and_frees_no_seat() {
    let events = plus(with_waitlist(), [waitlisted(member(5))]);
    let after = given(&events)
        .when(by_member(member(4), Action::LeaveCohort))
        .then(&[left(member(4), Place::Waitlist)]);
    assert_eq!(waitlist(&after.state), [member(3), member(5)]);
    // The next seat still goes to the head.
    given(&events)
        .when(by_member(member(4), Action::LeaveCohort))
        .then(&[left(member(4), Place::Waitlist)])
        .when(by_member(member(2), Action::LeaveCohort))
        .then(&[left(member(2), Place::Seat), promoted(member(3))]);
}

#[test]
fn leaving_without_a_seat_or_turn_is_refused() {
    given(&opened(2))
        .when(by_member(member(1), Action::LeaveCohort))
        .then_error(DomainError::NotInCohort(member(1)));
    // An invitation is declined, not left.
    let events = plus(opened(2), [invited(member(1), now() + super::days(1))]);
    given(&events)
        .when(by_member(member(1), Action::LeaveCohort))
        .then_error(DomainError::NotInCohort(member(1)));
}

#[test]
fn leaving_a_closed_cohort_hands_no_seat_on() {
    let events = plus(with_waitlist(), [Event::CohortClosed { by: COACH }]);
    let after = given(&events)
        .when(by_member(member(1), Action::LeaveCohort))
        .then(&[left(member(1), Place::Seat)]);
    assert_eq!(waitlist(&after.state), [member(3), member(4)]);
}

#[test]
fn leaving_a_running_cohort_hands_the_seat_on() {
    let events = plus(with_waitlist(), [Event::CohortStarted { by: COACH }]);
    given(&events)
        .when(by_member(member(2), Action::LeaveCohort))
        .then(&[left(member(2), Place::Seat), promoted(member(3))]);
}

#[test]
fn a_manager_removes_a_seated_member_and_the_seat_is_handed_on() {
    given(&with_waitlist())
        .when(coach(Action::RemoveMember {
            member_id: member(2),
        }))
        .then(&[removed(member(2), Place::Seat), promoted(member(3))]);
}

#[test]
fn a_manager_removes_a_waitlisted_member() {
    let after = given(&with_waitlist())
        .when(coach(Action::RemoveMember {
            member_id: member(3),
        }))
        .then(&[removed(member(3), Place::Waitlist)]);
    assert_eq!(waitlist(&after.state), [member(4)]);
}

#[test]
fn removing_an_invited_member_hands_the_held_seat_on() {
    let events = plus(
        opened(2),
        [
            joined(member(1)),
            invited(member(2), now() + super::days(1)),
            waitlisted(member(3)),
        ],
    );
    given(&events)
        .when(coach(Action::RemoveMember {
            member_id: member(2),
        }))
        .then(&[removed(member(2), Place::Invitation), promoted(member(3))]);
}

#[test]
fn removing_a_member_takes_both_their_turn_and_their_invitation() {
    let after = given(&waiting_and_invited())
        .when(coach(Action::RemoveMember {
            member_id: member(3),
        }))
        .then(&[
            removed(member(3), Place::Waitlist),
            removed(member(3), Place::Invitation),
            promoted(member(4)),
        ]);
    assert_eq!(seated(&after.state), [member(1), member(4)]);
}

#[test]
fn a_facilitator_is_removed_as_a_facilitator_not_as_a_member() {
    given(&opened(2))
        .when(by(
            OWNER,
            Some(CommunityRole::Owner),
            Action::RemoveMember { member_id: COACH },
        ))
        .then_error(DomainError::RemoveFacilitatorInstead(COACH));
}

#[test]
fn removing_someone_who_holds_nothing_is_refused() {
    given(&opened(2))
        .when(coach(Action::RemoveMember {
            member_id: member(1),
        }))
        .then_error(DomainError::NotInCohort(member(1)));
}

#[test]
fn only_managers_remove_members() {
    given(&full(2))
        .when(by(
            OTHER_COACH,
            Some(CommunityRole::Coach),
            Action::RemoveMember {
                member_id: member(1),
            },
        ))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's owners and hosts may remove members",
        ));
}

#[test]
fn a_released_member_gives_up_their_seat_to_the_waitlist() {
    given(&with_waitlist())
        .when(release(member(1), Departure::Left))
        .then(&[
            released(member(1), Place::Seat, Departure::Left),
            promoted(member(3)),
        ]);
}

#[test]
fn a_released_member_gives_up_every_place_they_hold() {
    let after = given(&waiting_and_invited())
        .when(release(member(3), Departure::Banned))
        .then(&[
            released(member(3), Place::Waitlist, Departure::Banned),
            released(member(3), Place::Invitation, Departure::Banned),
            promoted(member(4)),
        ]);
    assert_eq!(after.state.place_of(member(3)), None);
}

#[test]
fn releasing_the_last_facilitator_of_a_running_cohort_is_allowed() {
    // The community removed them already; the cohort cannot keep someone who is gone.
    let after = given(&running(2))
        .when(release(COACH, Departure::Removed))
        .then(&[released(COACH, Place::Facilitator, Departure::Removed)]);
    assert!(after.state.facilitators().is_empty());
}

#[test]
fn releasing_someone_who_holds_nothing_records_nothing() {
    given(&with_waitlist())
        .when(release(member(9), Departure::Erased))
        .then(&[]);
}

#[test]
fn a_member_released_in_a_closed_cohort_hands_no_seat_on() {
    let events = plus(with_waitlist(), [Event::CohortClosed { by: COACH }]);
    given(&events)
        .when(release(member(1), Departure::Left))
        .then(&[released(member(1), Place::Seat, Departure::Left)]);
}

#[test]
fn a_promoted_member_who_was_invited_frees_the_held_seat_for_the_next_in_line() {
    // Member 3, first in line, holds an invitation too; a seat frees, they take it, and the seat
    // their invitation held goes to member 4.
    let after = given(&waiting_and_invited())
        .when(by_member(member(1), Action::LeaveCohort))
        .then(&[
            left(member(1), Place::Seat),
            promoted(member(3)),
            promoted(member(4)),
        ]);
    assert_eq!(seated(&after.state), [member(3), member(4)]);
    assert_eq!(after.state.invitations().count(), 0);
    assert_eq!(after.state.seats_taken(), 2);
}
