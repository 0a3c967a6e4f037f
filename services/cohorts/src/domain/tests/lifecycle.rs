//! Creating, updating and archiving a cohort, and moving it through its statuses.

use super::super::{
    Action, CommunityRole, Departure, DomainError, Event, Kind, Place, SYSTEM, Status,
};
use super::{
    COACH, COMMUNITY, HOST, MODERATOR, OTHER_COACH, OUTSIDER, OWNER, by, by_member, coach, created,
    details, full, given, invited, member, now, opened, plus, promoted, running, waitlist,
    waitlisted,
};

fn create(actor: uuid::Uuid, role: Option<CommunityRole>) -> super::super::Command {
    by(
        actor,
        role,
        Action::CreateCohort {
            community_id: COMMUNITY,
            details: details(12),
        },
    )
}

fn update(capacity: u32) -> Action {
    Action::UpdateCohort {
        details: details(capacity),
    }
}

fn archived() -> Vec<Event> {
    plus(created(12), [Event::CohortArchived { by: COACH }])
}

#[test]
fn a_coach_creates_a_draft_cohort_and_facilitates_it() {
    let after = given(&[])
        .when(create(COACH, Some(CommunityRole::Coach)))
        .then(&created(12));
    let cohort = &after.state;
    assert!(cohort.exists());
    assert_eq!(cohort.status(), Status::Draft);
    assert_eq!(cohort.community_id(), Some(COMMUNITY));
    assert_eq!(cohort.details(), Some(&details(12)));
    assert_eq!(cohort.facilitators(), [COACH]);
    assert_eq!(cohort.place_of(COACH), Some(Place::Facilitator));
    assert_eq!(cohort.seats_taken(), 0);
}

#[test]
fn owners_and_hosts_may_create_cohorts() {
    for (actor, role) in [(OWNER, CommunityRole::Owner), (HOST, CommunityRole::Host)] {
        given(&[]).when(create(actor, Some(role))).then(&[
            Event::CohortCreated {
                community_id: COMMUNITY,
                details: details(12),
                created_by: actor,
            },
            Event::FacilitatorAssigned {
                member_id: actor,
                assigned_by: actor,
            },
        ]);
    }
}

#[test]
fn moderators_and_members_cannot_create_cohorts() {
    for (actor, role) in [
        (MODERATOR, CommunityRole::Moderator),
        (member(1), CommunityRole::Member),
    ] {
        given(&[])
            .when(create(actor, Some(role)))
            .then_error(DomainError::Forbidden(
                "only the community's owners, hosts and coaches may create cohorts",
            ));
    }
}

#[test]
fn someone_outside_the_community_cannot_create_a_cohort() {
    given(&[])
        .when(create(OUTSIDER, None))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn a_cohort_cannot_be_created_twice() {
    given(&created(12))
        .when(create(HOST, Some(CommunityRole::Host)))
        .then_error(DomainError::CohortExists);
    given(&archived())
        .when(create(HOST, Some(CommunityRole::Host)))
        .then_error(DomainError::CohortExists);
}

/// One of each command but creation, each of which needs the cohort to exist.
fn every_other_action() -> Vec<Action> {
    let later = now() + super::days(1);
    vec![
        update(12),
        Action::OpenCohort,
        Action::StartCohort,
        Action::CloseCohort,
        Action::GraduateCohort,
        Action::ArchiveCohort,
        Action::AssignFacilitator {
            member_id: OTHER_COACH,
            member_role: Some(CommunityRole::Coach),
        },
        Action::RemoveFacilitator { member_id: COACH },
        Action::JoinCohort,
        Action::InviteMember {
            member_id: member(1),
            member_role: Some(CommunityRole::Member),
            expires_at: later,
        },
        Action::AcceptInvitation,
        Action::DeclineInvitation,
        Action::RevokeInvitation {
            member_id: member(1),
        },
        Action::ExpireInvitations,
        Action::LeaveCohort,
        Action::RemoveMember {
            member_id: member(1),
        },
        Action::ReleaseMember {
            member_id: member(1),
            departure: Departure::Left,
        },
        Action::CancelSession {
            session_id: uuid::Uuid::from_u128(7),
        },
        Action::RecordAttendance {
            session_id: uuid::Uuid::from_u128(7),
            present: Vec::new(),
        },
    ]
}

#[test]
fn every_command_but_creation_needs_an_existing_cohort() {
    for action in every_other_action() {
        given(&[])
            .when(by(OWNER, Some(CommunityRole::Owner), action))
            .then_error(DomainError::CohortNotFound);
    }
}

#[test]
fn an_archived_cohort_takes_no_commands_but_the_services_bookkeeping() {
    for action in every_other_action() {
        let bookkeeping = matches!(
            action,
            Action::ReleaseMember { .. } | Action::ExpireInvitations
        );
        let when = given(&archived()).when(by(OWNER, Some(CommunityRole::Owner), action));
        if bookkeeping {
            when.then(&[]);
        } else {
            when.then_error(DomainError::CohortArchived);
        }
    }
}

#[test]
fn releasing_and_expiring_in_an_archived_cohort_record_nothing_even_when_something_is_held() {
    let events = plus(
        opened(2),
        [
            invited(member(1), now() - super::days(1)),
            Event::CohortClosed { by: COACH },
            Event::CohortArchived { by: COACH },
        ],
    );
    given(&events)
        .when(by(SYSTEM, None, Action::ExpireInvitations))
        .then(&[]);
    given(&events)
        .when(by(
            SYSTEM,
            None,
            Action::ReleaseMember {
                member_id: member(1),
                departure: Departure::Banned,
            },
        ))
        .then(&[]);
}

#[test]
fn a_facilitator_updates_the_cohort() {
    let after = given(&opened(12))
        .when(coach(update(20)))
        .then(&[Event::CohortUpdated {
            details: details(20),
            updated_by: COACH,
        }]);
    assert_eq!(after.state.details(), Some(&details(20)));
}

#[test]
fn owners_and_hosts_update_cohorts_they_do_not_facilitate() {
    for (actor, role) in [(OWNER, CommunityRole::Owner), (HOST, CommunityRole::Host)] {
        given(&opened(12))
            .when(by(actor, Some(role), update(20)))
            .then(&[Event::CohortUpdated {
                details: details(20),
                updated_by: actor,
            }]);
    }
}

#[test]
fn a_coach_who_does_not_facilitate_and_a_member_cannot_update_the_cohort() {
    let refused = DomainError::Forbidden(
        "only the cohort's facilitators and the community's owners and hosts may update the cohort",
    );
    given(&opened(12))
        .when(by(OTHER_COACH, Some(CommunityRole::Coach), update(20)))
        .then_error(refused.clone());
    given(&opened(12))
        .when(by_member(member(1), update(20)))
        .then_error(refused);
}

#[test]
fn a_facilitator_who_left_the_community_manages_nothing() {
    given(&opened(12))
        .when(by(COACH, None, update(20)))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn an_ended_cohort_cannot_be_updated() {
    let closed = plus(opened(12), [Event::CohortClosed { by: COACH }]);
    given(&closed)
        .when(coach(update(20)))
        .then_error(DomainError::CohortEnded(Status::Closed));
    let graduated = plus(running(12), [Event::CohortGraduated { by: COACH }]);
    given(&graduated)
        .when(coach(update(20)))
        .then_error(DomainError::CohortEnded(Status::Graduated));
}

#[test]
fn the_kind_cannot_change() {
    let mut course = details(12);
    course.kind = Kind::Course;
    given(&opened(12))
        .when(coach(Action::UpdateCohort { details: course }))
        .then_error(DomainError::KindChange {
            from: Kind::Mastermind,
            to: Kind::Course,
        });
}

#[test]
fn the_capacity_cannot_drop_below_the_seats_taken_and_held() {
    // Two seated and one held by an invitation: three taken.
    let events = plus(
        full(2),
        [Event::CohortUpdated {
            details: details(3),
            updated_by: COACH,
        }],
    );
    let events = plus(events, [invited(member(3), now() + super::days(3))]);
    given(&events)
        .when(coach(update(2)))
        .then_error(DomainError::CapacityBelowSeatsTaken {
            capacity: 2,
            taken: 3,
        });
    given(&events)
        .when(coach(update(3)))
        .then(&[Event::CohortUpdated {
            details: details(3),
            updated_by: COACH,
        }]);
}

#[test]
fn more_seats_go_to_the_head_of_the_waitlist_in_order_and_no_further() {
    let events = plus(
        full(2),
        [
            waitlisted(member(3)),
            waitlisted(member(4)),
            waitlisted(member(5)),
        ],
    );
    let after = given(&events).when(coach(update(4))).then(&[
        Event::CohortUpdated {
            details: details(4),
            updated_by: COACH,
        },
        promoted(member(3)),
        promoted(member(4)),
    ]);
    assert_eq!(waitlist(&after.state), [member(5)]);
    assert_eq!(after.state.seats_taken(), 4);
}

#[test]
fn a_draft_cohort_opens_starts_closes_graduates_and_is_archived() {
    let after = given(&created(12))
        .when(coach(Action::OpenCohort))
        .then(&[Event::CohortOpened { by: COACH }]);
    assert_eq!(after.state.status(), Status::Open);
    let after = after
        .when(coach(Action::StartCohort))
        .then(&[Event::CohortStarted { by: COACH }]);
    assert_eq!(after.state.status(), Status::Running);
    let after = after
        .when(coach(Action::CloseCohort))
        .then(&[Event::CohortClosed { by: COACH }]);
    assert_eq!(after.state.status(), Status::Closed);
    let after = after
        .when(coach(Action::GraduateCohort))
        .then(&[Event::CohortGraduated { by: COACH }]);
    assert_eq!(after.state.status(), Status::Graduated);
    let after = after
        .when(coach(Action::ArchiveCohort))
        .then(&[Event::CohortArchived { by: COACH }]);
    assert_eq!(after.state.status(), Status::Archived);
}

#[test]
fn the_shortcuts_between_statuses_are_allowed() {
    given(&created(12))
        .when(coach(Action::StartCohort))
        .then(&[Event::CohortStarted { by: COACH }]);
    given(&running(12))
        .when(coach(Action::GraduateCohort))
        .then(&[Event::CohortGraduated { by: COACH }]);
    given(&created(12))
        .when(coach(Action::ArchiveCohort))
        .then(&[Event::CohortArchived { by: COACH }]);
    given(&plus(opened(12), [Event::CohortClosed { by: COACH }]))
        .when(coach(Action::ArchiveCohort))
        .then(&[Event::CohortArchived { by: COACH }]);
}

fn in_status(status: Status) -> Vec<Event> {
    match status {
        Status::Draft => created(12),
        Status::Open => opened(12),
        Status::Running => running(12),
        Status::Closed => plus(running(12), [Event::CohortClosed { by: COACH }]),
        Status::Graduated => plus(running(12), [Event::CohortGraduated { by: COACH }]),
        Status::Archived => plus(created(12), [Event::CohortArchived { by: COACH }]),
    }
}

#[test]
fn other_moves_are_refused_naming_both_statuses() {
    let cases = [
        (Status::Draft, Action::CloseCohort, Status::Closed),
        (Status::Draft, Action::GraduateCohort, Status::Graduated),
        (Status::Open, Action::GraduateCohort, Status::Graduated),
        (Status::Running, Action::OpenCohort, Status::Open),
        (Status::Closed, Action::OpenCohort, Status::Open),
        (Status::Closed, Action::StartCohort, Status::Running),
        (Status::Graduated, Action::OpenCohort, Status::Open),
        (Status::Graduated, Action::StartCohort, Status::Running),
        (Status::Graduated, Action::CloseCohort, Status::Closed),
    ];
    for (from, action, to) in cases {
        given(&in_status(from))
            .when(coach(action))
            .then_error(DomainError::InvalidTransition { from, to });
    }
}

#[test]
fn moving_to_the_status_the_cohort_has_is_refused() {
    let cases = [
        (Status::Open, Action::OpenCohort),
        (Status::Running, Action::StartCohort),
        (Status::Closed, Action::CloseCohort),
        (Status::Graduated, Action::GraduateCohort),
    ];
    for (status, action) in cases {
        given(&in_status(status))
            .when(coach(action))
            .then_error(DomainError::AlreadyInStatus(status));
    }
}

#[test]
fn a_cohort_under_way_must_be_closed_before_it_is_archived() {
    for status in [Status::Open, Status::Running] {
        given(&in_status(status))
            .when(coach(Action::ArchiveCohort))
            .then_error(DomainError::NotClosed(status));
    }
}

#[test]
fn a_cohort_without_facilitators_cannot_start() {
    let events = plus(
        opened(12),
        [Event::FacilitatorRemoved {
            member_id: COACH,
            removed_by: OWNER,
        }],
    );
    given(&events)
        .when(by(OWNER, Some(CommunityRole::Owner), Action::StartCohort))
        .then_error(DomainError::NoFacilitator);
}

#[test]
fn only_managers_move_the_cohort() {
    given(&created(12))
        .when(by_member(member(1), Action::OpenCohort))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's owners and hosts may open, start, close, graduate or archive the cohort",
        ));
    given(&created(12))
        .when(by(HOST, Some(CommunityRole::Host), Action::OpenCohort))
        .then(&[Event::CohortOpened { by: HOST }]);
}

#[test]
fn closing_leaves_seats_waitlist_and_invitations_as_they_are() {
    let events = plus(
        opened(2),
        [
            super::joined(member(1)),
            invited(member(2), now() + super::days(2)),
            waitlisted(member(3)),
        ],
    );
    let after = given(&events)
        .when(coach(Action::CloseCohort))
        .then(&[Event::CohortClosed { by: COACH }]);
    assert_eq!(after.state.seats_taken(), 2);
    assert_eq!(after.state.place_of(member(2)), Some(Place::Invitation));
    assert_eq!(waitlist(&after.state), [member(3)]);
}
