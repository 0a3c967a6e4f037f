//! Refusal classes and messages, and that `evolve` takes any event without panicking.

use chrono::TimeDelta;

use super::super::{DomainError, ErrorKind, Event, JoinPath, MemberStatus, Role, evolve};
use super::{INVITATION, MEMBER, OUTSIDER, OWNER, given, now, profile, reason, staffed};

#[test]
fn refusals_fall_into_the_grpc_classes() {
    let cases = [
        (DomainError::CommunityNotFound, ErrorKind::NotFound),
        (DomainError::InvitationNotFound, ErrorKind::NotFound),
        (DomainError::JoinRequestNotFound, ErrorKind::NotFound),
        (DomainError::CommunityExists, ErrorKind::AlreadyExists),
        (DomainError::InvitationExists, ErrorKind::AlreadyExists),
        (DomainError::AlreadyMember, ErrorKind::AlreadyExists),
        (
            DomainError::HandleTaken("ada".to_owned()),
            ErrorKind::AlreadyExists,
        ),
        (DomainError::JoinRequestPending, ErrorKind::AlreadyExists),
        (DomainError::AlreadyBanned, ErrorKind::AlreadyExists),
        (
            DomainError::Forbidden("no".to_owned()),
            ErrorKind::PermissionDenied,
        ),
        (DomainError::Banned, ErrorKind::PermissionDenied),
        (
            DomainError::InvalidExpiry("x".to_owned()),
            ErrorKind::InvalidArgument,
        ),
        (
            DomainError::InvalidMaxUses("x".to_owned()),
            ErrorKind::InvalidArgument,
        ),
        (
            DomainError::TooManyAnswers { got: 6, max: 5 },
            ErrorKind::InvalidArgument,
        ),
        (
            DomainError::CommunityArchived,
            ErrorKind::FailedPrecondition,
        ),
        (
            DomainError::NotAMember(OUTSIDER),
            ErrorKind::FailedPrecondition,
        ),
        (DomainError::AlreadyErased, ErrorKind::FailedPrecondition),
        (DomainError::LastOwner("x"), ErrorKind::FailedPrecondition),
        (DomainError::RoleUnchanged, ErrorKind::FailedPrecondition),
        (DomainError::RoleNotHeld, ErrorKind::FailedPrecondition),
        (
            DomainError::MembershipNotRevocable,
            ErrorKind::FailedPrecondition,
        ),
        (
            DomainError::InvitationExpired,
            ErrorKind::FailedPrecondition,
        ),
        (
            DomainError::InvitationExhausted,
            ErrorKind::FailedPrecondition,
        ),
        (
            DomainError::InvitationRevoked,
            ErrorKind::FailedPrecondition,
        ),
    ];
    for (error, kind) in cases {
        assert_eq!(error.kind(), kind, "{error:?}");
    }
}

#[test]
fn refusal_messages_are_lowercase_and_say_what_is_wrong() {
    assert_eq!(
        DomainError::HandleTaken("ada".to_owned()).to_string(),
        "handle ada is already taken"
    );
    assert_eq!(
        DomainError::NotAMember(OUTSIDER).to_string(),
        format!("{OUTSIDER} is not a member of the community")
    );
    assert_eq!(
        DomainError::TooManyAnswers { got: 6, max: 5 }.to_string(),
        "too many answers: at most 5 are allowed, got 6"
    );
    assert_eq!(
        DomainError::LastOwner("the last owner cannot leave; assign another owner first")
            .to_string(),
        "the last owner cannot leave; assign another owner first"
    );
    for error in [
        DomainError::CommunityArchived,
        DomainError::InvitationExhausted,
        DomainError::MembershipNotRevocable,
    ] {
        let message = error.to_string();
        assert!(message.starts_with(char::is_lowercase), "{message}");
    }
}

#[test]
fn evolve_takes_events_about_strangers_without_panicking() {
    let strange = [
        Event::ProfileUpdated {
            member_id: OUTSIDER,
            profile: None,
        },
        Event::RoleAssigned {
            member_id: OUTSIDER,
            role: Role::Owner,
            previous_role: Role::Member,
            assigned_by: OWNER,
        },
        Event::RoleRevoked {
            member_id: OUTSIDER,
            role: Role::Host,
            revoked_by: OWNER,
        },
        Event::InvitationRevoked {
            invitation_id: INVITATION,
            revoked_by: OWNER,
        },
        Event::JoinRequestApproved {
            member_id: OUTSIDER,
            approved_by: OWNER,
        },
        Event::MemberLeft {
            member_id: OUTSIDER,
        },
        Event::MemberRemoved {
            member_id: OUTSIDER,
            removed_by: OWNER,
            reason: reason(""),
        },
        Event::MemberJoined {
            member_id: OUTSIDER,
            role: Role::Member,
            path: JoinPath::Invitation,
            profile: None,
            invitation_id: Some(INVITATION),
        },
    ];
    let state = strange.iter().fold(given(&[]).state, evolve);
    assert!(!state.is_created());
    assert_eq!(state.member(OUTSIDER).unwrap().profile, None);
}

#[test]
fn a_profile_that_could_not_be_unsealed_holds_no_handle() {
    let events = [
        Event::InvitationCreated {
            invitation_id: INVITATION,
            created_by: OWNER,
            expires_at: now() + TimeDelta::days(1),
            max_uses: 3,
        },
        Event::ProfileUpdated {
            member_id: MEMBER,
            profile: None,
        },
    ];
    let state = events.iter().fold(given(&staffed()).state, evolve);
    let member = state.member(MEMBER).unwrap();
    assert_eq!(member.status, MemberStatus::Active);
    assert_eq!(member.profile, None);
    let freed = profile("member").handle;
    assert_eq!(state.handle_holder(&freed), None);
}
