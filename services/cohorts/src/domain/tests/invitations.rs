//! Invitations that hold seats: inviting, accepting, declining, revoking, and the expiry prelude
//! every decision begins with.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::super::{
    Action, Command, CommunityRole, Departure, DomainError, Event, Place, SYSTEM, Status,
};
use super::{
    COACH, HOST, OTHER_COACH, accepted, at, by, by_member, coach, created, days, expired, full,
    given, invited, joined, member, now, opened, plus, promoted, seated, waitlist, waitlisted,
};

fn invite(member_id: Uuid, expires_at: DateTime<Utc>) -> Action {
    Action::InviteMember {
        member_id,
        member_role: Some(CommunityRole::Member),
        expires_at,
    }
}

fn in_a_week() -> DateTime<Utc> {
    now() + days(7)
}

fn sweep(time: DateTime<Utc>) -> Command {
    at(SYSTEM, None, time, Action::ExpireInvitations)
}

/// An open cohort of two with member 1 seated and member 2 invited until [`in_a_week`]: full.
fn held() -> Vec<Event> {
    plus(
        opened(2),
        [joined(member(1)), invited(member(2), in_a_week())],
    )
}

#[test]
fn a_facilitator_invites_a_member_and_the_invitation_holds_a_seat() {
    let after = given(&opened(2))
        .when(coach(invite(member(1), in_a_week())))
        .then(&[invited(member(1), in_a_week())]);
    let cohort = &after.state;
    assert_eq!(cohort.seats_taken(), 1);
    assert_eq!(cohort.place_of(member(1)), Some(Place::Invitation));
    let invitation = cohort.invitation(member(1)).unwrap();
    assert_eq!(
        (invitation.invited_by, invitation.expires_at),
        (COACH, in_a_week())
    );
}

#[test]
fn a_draft_or_running_cohort_takes_invitations_too() {
    given(&created(2))
        .when(coach(invite(member(1), in_a_week())))
        .then(&[invited(member(1), in_a_week())]);
    given(&super::running(2))
        .when(coach(invite(member(1), in_a_week())))
        .then(&[invited(member(1), in_a_week())]);
}

#[test]
fn an_ended_cohort_takes_no_invitations() {
    let closed = plus(opened(2), [Event::CohortClosed { by: COACH }]);
    given(&closed)
        .when(coach(invite(member(1), in_a_week())))
        .then_error(DomainError::CohortEnded(Status::Closed));
}

#[test]
fn only_managers_invite() {
    given(&opened(2))
        .when(by(OTHER_COACH, Some(CommunityRole::Coach), invite(member(1), in_a_week())))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's owners and hosts may invite members",
        ));
    given(&opened(2))
        .when(by(
            HOST,
            Some(CommunityRole::Host),
            invite(member(1), in_a_week()),
        ))
        .then(&[Event::MemberInvited {
            member_id: member(1),
            invited_by: HOST,
            expires_at: in_a_week(),
        }]);
}

#[test]
fn someone_outside_the_community_cannot_be_invited() {
    given(&opened(2))
        .when(coach(Action::InviteMember {
            member_id: member(1),
            member_role: None,
            expires_at: in_a_week(),
        }))
        .then_error(DomainError::NotACommunityMember(member(1)));
}

#[test]
fn facilitators_seated_and_invited_members_cannot_be_invited() {
    given(&opened(2))
        .when(by(
            HOST,
            Some(CommunityRole::Host),
            invite(COACH, in_a_week()),
        ))
        .then_error(DomainError::IsFacilitator(COACH));
    given(&held())
        .when(coach(invite(member(1), in_a_week())))
        .then_error(DomainError::AlreadyInCohort {
            member: member(1),
            place: Place::Seat,
        });
    given(&held())
        .when(coach(invite(member(2), in_a_week())))
        .then_error(DomainError::AlreadyInvited(member(2)));
}

#[test]
fn a_waitlisted_member_is_not_invited_past_the_line() {
    // Written by hand: the decider itself would have handed the free seat to member 3 at once,
    // so a seat is free while people wait only in a log it did not write.
    let events = plus(
        full(2),
        [
            waitlisted(member(3)),
            waitlisted(member(4)),
            Event::MemberLeftCohort {
                member_id: member(1),
                place: Place::Seat,
            },
        ],
    );
    given(&events)
        .when(coach(invite(member(4), in_a_week())))
        .then_error(DomainError::AlreadyInCohort {
            member: member(4),
            place: Place::Waitlist,
        });
}

#[test]
fn an_invitation_must_expire_in_the_future() {
    given(&opened(2))
        .when(coach(invite(member(1), now())))
        .then_error(DomainError::ExpiryNotInFuture);
}

#[test]
fn an_invitation_may_expire_at_most_30_days_ahead() {
    let limit = now() + days(30);
    given(&opened(2))
        .when(coach(invite(member(1), limit)))
        .then(&[invited(member(1), limit)]);
    given(&opened(2))
        .when(coach(invite(member(1), limit + TimeDelta::seconds(1))))
        .then_error(DomainError::ExpiryTooFar);
}

#[test]
fn an_invitation_needs_a_free_seat() {
    given(&held())
        .when(coach(invite(member(3), in_a_week())))
        .then_error(DomainError::CohortFull { capacity: 2 });
}

#[test]
fn a_held_seat_is_not_free_for_self_joins() {
    given(&held())
        .when(by_member(member(3), Action::JoinCohort))
        .then(&[waitlisted(member(3))]);
}

#[test]
fn accepting_takes_the_held_seat() {
    let after = given(&held())
        .when(by_member(member(2), Action::AcceptInvitation))
        .then(&[accepted(member(2))]);
    assert_eq!(seated(&after.state), [member(1), member(2)]);
    assert_eq!(after.state.invitations().count(), 0);
    assert_eq!(after.state.seats_taken(), 2);
}

#[test]
fn joining_with_an_invitation_accepts_it_even_in_a_draft_cohort() {
    let events = plus(created(2), [invited(member(1), in_a_week())]);
    given(&events)
        .when(by_member(member(1), Action::JoinCohort))
        .then(&[accepted(member(1))]);
}

#[test]
fn a_waitlisted_member_with_an_invitation_who_joins_takes_the_held_seat() {
    let after = given(&super::waiting_and_invited())
        .when(by_member(member(3), Action::JoinCohort))
        .then(&[accepted(member(3))]);
    assert_eq!(seated(&after.state), [member(1), member(3)]);
    assert_eq!(waitlist(&after.state), [member(4)]);
}

#[test]
fn accepting_without_an_invitation_is_refused() {
    given(&held())
        .when(by_member(member(3), Action::AcceptInvitation))
        .then_error(DomainError::NoInvitation(member(3)));
}

#[test]
fn accepting_an_expired_invitation_is_refused_and_records_nothing() {
    given(&held())
        .when(at(
            member(2),
            Some(CommunityRole::Member),
            in_a_week(),
            Action::AcceptInvitation,
        ))
        .then_error(DomainError::InvitationExpired(member(2)));
}

#[test]
fn someone_who_left_the_community_cannot_accept() {
    given(&held())
        .when(by(member(2), None, Action::AcceptInvitation))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn an_ended_cohort_seats_no_one_even_on_an_invitation() {
    let closed = plus(held(), [Event::CohortClosed { by: COACH }]);
    given(&closed)
        .when(by_member(member(2), Action::AcceptInvitation))
        .then_error(DomainError::CohortEnded(Status::Closed));
    given(&closed)
        .when(by_member(member(2), Action::JoinCohort))
        .then_error(DomainError::NotOpen(Status::Closed));
}

#[test]
fn declining_hands_the_held_seat_to_the_waitlist() {
    let events = plus(held(), [waitlisted(member(3))]);
    let after = given(&events)
        .when(by_member(member(2), Action::DeclineInvitation))
        .then(&[
            Event::InvitationDeclined {
                member_id: member(2),
            },
            promoted(member(3)),
        ]);
    assert_eq!(seated(&after.state), [member(1), member(3)]);
}

#[test]
fn declining_without_an_invitation_is_refused() {
    given(&held())
        .when(by_member(member(1), Action::DeclineInvitation))
        .then_error(DomainError::NoInvitation(member(1)));
    given(&held())
        .when(at(
            member(2),
            Some(CommunityRole::Member),
            in_a_week(),
            Action::DeclineInvitation,
        ))
        .then_error(DomainError::InvitationExpired(member(2)));
}

#[test]
fn a_manager_revokes_an_invitation_and_the_seat_is_handed_on() {
    let events = plus(held(), [waitlisted(member(3))]);
    given(&events)
        .when(coach(Action::RevokeInvitation {
            member_id: member(2),
        }))
        .then(&[
            Event::InvitationRevoked {
                member_id: member(2),
                revoked_by: COACH,
            },
            promoted(member(3)),
        ]);
}

#[test]
fn revoking_needs_a_manager_and_a_pending_invitation() {
    given(&held())
        .when(by_member(
            member(1),
            Action::RevokeInvitation {
                member_id: member(2),
            },
        ))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's owners and hosts may revoke invitations",
        ));
    given(&held())
        .when(coach(Action::RevokeInvitation {
            member_id: member(1),
        }))
        .then_error(DomainError::NoInvitation(member(1)));
    given(&held())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            in_a_week(),
            Action::RevokeInvitation {
                member_id: member(2),
            },
        ))
        .then_error(DomainError::InvitationExpired(member(2)));
}

#[test]
fn the_sweeper_records_nothing_when_nothing_expired() {
    given(&held())
        .when(sweep(in_a_week() - TimeDelta::seconds(1)))
        .then(&[]);
}

#[test]
fn an_invitation_expires_at_its_expiry_instant_and_its_seat_goes_to_the_waitlist() {
    let events = plus(held(), [waitlisted(member(3)), waitlisted(member(4))]);
    let after = given(&events)
        .when(sweep(in_a_week()))
        .then(&[expired(member(2)), promoted(member(3))]);
    assert_eq!(after.state.invitations().count(), 0);
    assert_eq!(waitlist(&after.state), [member(4)]);
}

#[test]
fn expiries_come_soonest_first_then_by_member_each_followed_by_its_promotion() {
    let events = plus(
        opened(3),
        [
            invited(member(9), now() + days(2)),
            invited(member(8), now() + days(3)),
            invited(member(7), now() + days(2)),
            waitlisted(member(1)),
            waitlisted(member(2)),
        ],
    );
    given(&events).when(sweep(now() + days(3))).then(&[
        expired(member(7)),
        promoted(member(1)),
        expired(member(9)),
        promoted(member(2)),
        expired(member(8)),
    ]);
}

#[test]
fn a_seat_freed_by_expiry_goes_to_the_waitlist_before_the_joiner() {
    let events = plus(held(), [waitlisted(member(3))]);
    given(&events)
        .when(at(
            member(4),
            Some(CommunityRole::Member),
            in_a_week(),
            Action::JoinCohort,
        ))
        .then(&[
            expired(member(2)),
            promoted(member(3)),
            waitlisted(member(4)),
        ]);
}

#[test]
fn a_seat_freed_by_expiry_with_nobody_waiting_goes_to_the_joiner() {
    given(&held())
        .when(at(
            member(3),
            Some(CommunityRole::Member),
            in_a_week(),
            Action::JoinCohort,
        ))
        .then(&[expired(member(2)), joined(member(3))]);
}

#[test]
fn the_prelude_comes_before_any_command() {
    let session = Uuid::from_u128(77);
    let starts_at = in_a_week() + days(1);
    given(&held())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            in_a_week(),
            Action::CancelSession {
                session_id: session,
            },
        ))
        .then_error(DomainError::SessionNotFound(session));
    let scheduled = plus(
        held(),
        [Event::SessionScheduled {
            session_id: session,
            series_id: None,
            occurrence: 1,
            title: super::super::SessionTitle::parse("Kick-off").unwrap(),
            starts_at,
            duration: super::super::Minutes::parse(60).unwrap(),
            scheduled_by: COACH,
        }],
    );
    given(&scheduled)
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            in_a_week(),
            Action::CancelSession {
                session_id: session,
            },
        ))
        .then(&[
            expired(member(2)),
            Event::SessionCancelled {
                session_id: session,
                by: COACH,
            },
        ]);
}

#[test]
fn a_refused_command_does_not_record_the_prelude() {
    given(&held())
        .when(at(
            member(5),
            Some(CommunityRole::Member),
            in_a_week(),
            Action::OpenCohort,
        ))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's owners and hosts may open, start, close, graduate or archive the cohort",
        ));
}

#[test]
fn an_expiry_in_a_closed_cohort_hands_no_seat_on() {
    let events = plus(
        held(),
        [waitlisted(member(3)), Event::CohortClosed { by: COACH }],
    );
    given(&events)
        .when(sweep(in_a_week()))
        .then(&[expired(member(2))]);
}

#[test]
fn releasing_a_member_whose_invitation_expired_records_the_expiry_only() {
    given(&held())
        .when(at(
            SYSTEM,
            None,
            in_a_week(),
            Action::ReleaseMember {
                member_id: member(2),
                departure: Departure::Left,
            },
        ))
        .then(&[expired(member(2))]);
}

#[test]
fn removing_a_member_whose_invitation_expired_finds_nothing_to_remove() {
    given(&held())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            in_a_week(),
            Action::RemoveMember {
                member_id: member(2),
            },
        ))
        .then_error(DomainError::NotInCohort(member(2)));
}
