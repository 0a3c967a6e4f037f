//! Refusal classes and messages.

use uuid::Uuid;

use super::super::{DomainError, ErrorKind, Kind, Place, Status};

const SOMEONE: Uuid = Uuid::from_u128(42);

/// One of each refusal with its class.
fn every_refusal() -> Vec<(DomainError, ErrorKind)> {
    use DomainError as E;
    use ErrorKind as K;
    vec![
        (E::CohortNotFound, K::NotFound),
        (E::NoInvitation(SOMEONE), K::NotFound),
        (E::SessionNotFound(SOMEONE), K::NotFound),
        (E::CohortExists, K::AlreadyExists),
        (E::AlreadyInStatus(Status::Open), K::AlreadyExists),
        (E::AlreadyFacilitator(SOMEONE), K::AlreadyExists),
        (
            E::AlreadyInCohort {
                member: SOMEONE,
                place: Place::Seat,
            },
            K::AlreadyExists,
        ),
        (E::AlreadyInvited(SOMEONE), K::AlreadyExists),
        (E::SessionExists(SOMEONE), K::AlreadyExists),
        (E::Forbidden("no"), K::PermissionDenied),
        (E::ExpiryNotInFuture, K::InvalidArgument),
        (E::ExpiryTooFar, K::InvalidArgument),
        (E::SessionInPast, K::InvalidArgument),
        (E::SessionOutOfRange, K::InvalidArgument),
        (E::InvalidOccurrences(1), K::InvalidArgument),
        (E::CohortArchived, K::FailedPrecondition),
        (E::NotACommunityMember(SOMEONE), K::FailedPrecondition),
        (E::CohortEnded(Status::Closed), K::FailedPrecondition),
        (
            E::KindChange {
                from: Kind::Circle,
                to: Kind::Course,
            },
            K::FailedPrecondition,
        ),
        (
            E::CapacityBelowSeatsTaken {
                capacity: 4,
                taken: 5,
            },
            K::FailedPrecondition,
        ),
        (
            E::InvalidTransition {
                from: Status::Draft,
                to: Status::Closed,
            },
            K::FailedPrecondition,
        ),
        (E::NotClosed(Status::Running), K::FailedPrecondition),
        (E::NoFacilitator, K::FailedPrecondition),
        (E::NotEligibleFacilitator(SOMEONE), K::FailedPrecondition),
        (E::NotAFacilitator(SOMEONE), K::FailedPrecondition),
        (E::LastFacilitator, K::FailedPrecondition),
        (
            E::HoldsPlace {
                member: SOMEONE,
                place: Place::Waitlist,
            },
            K::FailedPrecondition,
        ),
        (E::IsFacilitator(SOMEONE), K::FailedPrecondition),
        (E::RemoveFacilitatorInstead(SOMEONE), K::FailedPrecondition),
        (E::NotOpen(Status::Draft), K::FailedPrecondition),
        (E::CohortFull { capacity: 8 }, K::FailedPrecondition),
        (E::InvitationExpired(SOMEONE), K::FailedPrecondition),
        (E::NotInCohort(SOMEONE), K::FailedPrecondition),
        (E::SessionCancelled(SOMEONE), K::FailedPrecondition),
        (E::SessionStarted(SOMEONE), K::FailedPrecondition),
        (E::SessionNotStarted(SOMEONE), K::FailedPrecondition),
    ]
}

#[test]
fn refusals_fall_into_the_grpc_classes() {
    for (error, kind) in every_refusal() {
        assert_eq!(error.kind(), kind, "{error:?}");
    }
}

#[test]
fn refusal_messages_are_lowercase() {
    for (error, _) in every_refusal() {
        let message = error.to_string();
        let first = message.chars().next().unwrap();
        assert!(!first.is_uppercase(), "{message}");
        assert!(
            !message.contains("Draft") && !message.contains("Seat"),
            "{message}"
        );
    }
}

#[test]
fn refusal_messages_say_what_is_wrong_and_what_to_do() {
    let cases = [
        (
            DomainError::NotOpen(Status::Draft),
            "the cohort is not open; it is draft",
        ),
        (
            DomainError::NotClosed(Status::Running),
            "the cohort is running; close it before archiving it",
        ),
        (
            DomainError::InvalidTransition {
                from: Status::Graduated,
                to: Status::Open,
            },
            "a graduated cohort cannot become open",
        ),
        (
            DomainError::AlreadyInStatus(Status::Closed),
            "the cohort is already closed",
        ),
        (
            DomainError::CapacityBelowSeatsTaken {
                capacity: 4,
                taken: 6,
            },
            "a capacity of 4 is below the 6 seats taken or held by invitations; remove members or revoke invitations first",
        ),
        (
            DomainError::KindChange {
                from: Kind::Mastermind,
                to: Kind::Course,
            },
            "a cohort's kind cannot change (it is a mastermind cohort, not a course one); create a new cohort instead",
        ),
        (
            DomainError::HoldsPlace {
                member: SOMEONE,
                place: Place::Waitlist,
            },
            "00000000-0000-0000-0000-00000000002a holds a waitlist place in the cohort, and facilitators take no seat; remove them from it first",
        ),
        (
            DomainError::AlreadyInCohort {
                member: SOMEONE,
                place: Place::Seat,
            },
            "00000000-0000-0000-0000-00000000002a already holds a seat in the cohort",
        ),
        (
            DomainError::CohortEnded(Status::Graduated),
            "the cohort is graduated; only a draft, open or running cohort allows this",
        ),
        (
            DomainError::ExpiryTooFar,
            "an invitation may expire at most 30 days ahead",
        ),
        (
            DomainError::InvalidOccurrences(60),
            "a weekly series has 2 to 52 occurrences, got 60",
        ),
        (
            DomainError::CohortFull { capacity: 12 },
            "all 12 seats are taken or held by invitations",
        ),
        (
            DomainError::LastFacilitator,
            "a running cohort keeps at least one facilitator; assign another one first",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}
