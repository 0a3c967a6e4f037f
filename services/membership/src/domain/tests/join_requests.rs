//! Asking to join, and approving or rejecting join requests.

use super::super::{Action, Answer, DomainError, Event, JoinPath, MAX_ANSWERS, Role};
use super::{
    COACH, HOST, MEMBER, MODERATOR, OUTSIDER, OWNER, banned, by, given, joined, plus, profile,
    reason, request, requested, staffed,
};

fn approve(member_id: uuid::Uuid) -> Action {
    Action::ApproveJoinRequest { member_id }
}

fn reject(member_id: uuid::Uuid) -> Action {
    Action::RejectJoinRequest {
        member_id,
        reason: reason("not a runner"),
    }
}

fn answers(count: usize) -> Vec<Answer> {
    (0..count)
        .map(|n| Answer::parse(&format!("answer {n}")).unwrap())
        .collect()
}

fn pending() -> Vec<Event> {
    plus(staffed(), [requested(OUTSIDER, "ada")])
}

const HANDLERS: &str = "only owners, hosts and moderators may handle join requests";

#[test]
fn anyone_may_ask_to_join() {
    let action = Action::RequestToJoin {
        profile: profile("ada"),
        answers: answers(MAX_ANSWERS),
    };
    let after = given(&staffed())
        .when(by(OUTSIDER, action))
        .then(&[Event::JoinRequested {
            member_id: OUTSIDER,
            profile: Some(profile("ada")),
            answers: Some(answers(MAX_ANSWERS)),
        }]);
    let pending = after.state.join_request(OUTSIDER).unwrap();
    assert_eq!(pending.profile, Some(profile("ada")));
    assert_eq!(after.state.join_requests().count(), 1);
}

#[test]
fn a_banned_person_cannot_ask_to_join() {
    let events = plus(staffed(), [banned(OUTSIDER, false)]);
    given(&events)
        .when(by(OUTSIDER, request("ada")))
        .then_error(DomainError::Banned);
}

#[test]
fn an_active_member_cannot_ask_to_join() {
    given(&staffed())
        .when(by(MEMBER, request("other")))
        .then_error(DomainError::AlreadyMember);
}

#[test]
fn asking_twice_is_refused() {
    given(&pending())
        .when(by(OUTSIDER, request("ada")))
        .then_error(DomainError::JoinRequestPending);
}

#[test]
fn asking_with_a_taken_handle_is_refused() {
    given(&staffed())
        .when(by(OUTSIDER, request("moderator")))
        .then_error(DomainError::HandleTaken("moderator".to_owned()));
}

#[test]
fn asking_with_too_many_answers_is_refused() {
    let action = Action::RequestToJoin {
        profile: profile("ada"),
        answers: answers(MAX_ANSWERS + 1),
    };
    given(&staffed())
        .when(by(OUTSIDER, action))
        .then_error(DomainError::TooManyAnswers { got: 6, max: 5 });
}

#[test]
fn a_moderator_may_approve_a_join_request() {
    let after = given(&pending())
        .when(by(MODERATOR, approve(OUTSIDER)))
        .then(&[
            Event::JoinRequestApproved {
                member_id: OUTSIDER,
                approved_by: MODERATOR,
            },
            Event::MemberJoined {
                member_id: OUTSIDER,
                role: Role::Member,
                path: JoinPath::JoinRequest,
                profile: Some(profile("ada")),
                invitation_id: None,
            },
        ]);
    assert_eq!(after.state.role_of(OUTSIDER), Some(Role::Member));
    assert!(after.state.join_request(OUTSIDER).is_none());
}

#[test]
fn a_coach_cannot_approve_a_join_request() {
    given(&pending())
        .when(by(COACH, approve(OUTSIDER)))
        .then_error(DomainError::Forbidden(HANDLERS.to_owned()));
}

#[test]
fn approving_without_a_pending_request_is_refused() {
    given(&staffed())
        .when(by(HOST, approve(OUTSIDER)))
        .then_error(DomainError::JoinRequestNotFound);
}

#[test]
fn approving_when_the_handle_was_taken_meanwhile_is_refused() {
    let events = plus(pending(), [joined(uuid::Uuid::from_u128(42), "ada")]);
    given(&events)
        .when(by(OWNER, approve(OUTSIDER)))
        .then_error(DomainError::HandleTaken("ada".to_owned()));
}

#[test]
fn a_moderator_may_reject_a_join_request() {
    let after = given(&pending())
        .when(by(MODERATOR, reject(OUTSIDER)))
        .then(&[Event::JoinRequestRejected {
            member_id: OUTSIDER,
            rejected_by: MODERATOR,
            reason: reason("not a runner"),
        }]);
    assert!(after.state.join_request(OUTSIDER).is_none());
    assert!(after.state.member(OUTSIDER).is_none());
}

#[test]
fn a_member_cannot_reject_a_join_request() {
    given(&pending())
        .when(by(MEMBER, reject(OUTSIDER)))
        .then_error(DomainError::Forbidden(HANDLERS.to_owned()));
}

#[test]
fn rejecting_without_a_pending_request_is_refused() {
    given(&staffed())
        .when(by(OWNER, reject(OUTSIDER)))
        .then_error(DomainError::JoinRequestNotFound);
}

#[test]
fn a_rejected_person_may_ask_again() {
    given(&pending())
        .when(by(OWNER, reject(OUTSIDER)))
        .then(&[Event::JoinRequestRejected {
            member_id: OUTSIDER,
            rejected_by: OWNER,
            reason: reason("not a runner"),
        }])
        .when(by(OUTSIDER, request("ada")))
        .then(&[requested(OUTSIDER, "ada")]);
}

#[test]
fn a_banned_requester_cannot_be_approved() {
    given(&pending())
        .when(by(
            MODERATOR,
            Action::BanMember {
                member_id: OUTSIDER,
                reason: reason("spam"),
            },
        ))
        .then(&[banned(OUTSIDER, false)])
        .when(by(OWNER, approve(OUTSIDER)))
        .then_error(DomainError::JoinRequestNotFound);
}

#[test]
fn a_requester_withdraws_their_own_request_and_no_one_else_can() {
    let after = given(&pending())
        .when(by(OUTSIDER, Action::WithdrawJoinRequest))
        .then(&[Event::JoinRequestWithdrawn {
            member_id: OUTSIDER,
        }]);
    assert!(after.state.join_request(OUTSIDER).is_none());
    // Withdrawing is one's own: a moderator has no request to withdraw; twice is refused.
    given(&pending())
        .when(by(MODERATOR, Action::WithdrawJoinRequest))
        .then_error(DomainError::JoinRequestNotFound);
    let withdrawn = plus(
        pending(),
        [Event::JoinRequestWithdrawn {
            member_id: OUTSIDER,
        }],
    );
    given(&withdrawn)
        .when(by(OUTSIDER, Action::WithdrawJoinRequest))
        .then_error(DomainError::JoinRequestNotFound);
    given(&withdrawn)
        .when(by(OUTSIDER, request("ada")))
        .then(&[requested(OUTSIDER, "ada")]);
}
