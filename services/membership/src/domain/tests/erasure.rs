//! Erasing someone's personal data.

use super::super::{Action, DomainError, Event, Handle, MemberStatus, Role};
use super::{
    CO_OWNER, HOST, INVITATION, MEMBER, MODERATOR, OUTSIDER, OWNER, accept, banned, by, erased,
    given, invitation_created, joined, joined_by_invitation, plus, promoted, reason, request,
    requested, staffed,
};

fn erase(member_id: uuid::Uuid) -> Action {
    Action::EraseMember { member_id }
}

#[test]
fn a_member_may_erase_themselves() {
    let after = given(&staffed())
        .when(by(MEMBER, erase(MEMBER)))
        .then(&[erased(MEMBER, true)]);
    let member = after.state.member(MEMBER).unwrap();
    assert_eq!(member.status, MemberStatus::Erased);
    assert_eq!(member.profile, None);
    assert!(after.state.is_erased(MEMBER));
}

#[test]
fn an_owner_may_erase_someone_else() {
    given(&staffed())
        .when(by(OWNER, erase(HOST)))
        .then(&[Event::MemberErased {
            member_id: HOST,
            erased_by: OWNER,
            was_member: true,
        }]);
}

#[test]
fn a_host_cannot_erase_someone_else() {
    given(&staffed())
        .when(by(HOST, erase(MEMBER)))
        .then_error(DomainError::Forbidden(
            "only owners may erase someone else's data".to_owned(),
        ));
}

#[test]
fn erasing_a_stranger_is_refused() {
    given(&staffed())
        .when(by(OWNER, erase(OUTSIDER)))
        .then_error(DomainError::NotAMember(OUTSIDER));
}

#[test]
fn erasing_twice_is_refused() {
    given(&staffed())
        .when(by(MEMBER, erase(MEMBER)))
        .then(&[erased(MEMBER, true)])
        .when(by(OWNER, erase(MEMBER)))
        .then_error(DomainError::AlreadyErased);
}

#[test]
fn the_last_owner_cannot_be_erased() {
    given(&staffed())
        .when(by(OWNER, erase(OWNER)))
        .then_error(DomainError::LastOwner(
            "the last owner cannot be erased; assign another owner first",
        ));
}

#[test]
fn an_owner_may_be_erased_when_another_owner_remains() {
    let events = plus(
        staffed(),
        [joined(CO_OWNER, "coowner"), promoted(CO_OWNER, Role::Owner)],
    );
    let after = given(&events)
        .when(by(OWNER, erase(OWNER)))
        .then(&[erased(OWNER, true)]);
    assert_eq!(after.state.owners(), 1);
}

#[test]
fn a_former_member_may_be_erased() {
    let events = plus(staffed(), [Event::MemberLeft { member_id: MEMBER }]);
    given(&events)
        .when(by(MEMBER, erase(MEMBER)))
        .then(&[erased(MEMBER, false)]);
}

#[test]
fn a_rejected_requester_may_erase_themselves() {
    let events = plus(
        staffed(),
        [
            requested(OUTSIDER, "ada"),
            Event::JoinRequestRejected {
                member_id: OUTSIDER,
                rejected_by: OWNER,
                reason: reason(""),
            },
        ],
    );
    given(&events)
        .when(by(OUTSIDER, erase(OUTSIDER)))
        .then(&[erased(OUTSIDER, false)]);
}

#[test]
fn erasure_drops_the_pending_join_request() {
    let events = plus(staffed(), [requested(OUTSIDER, "ada")]);
    let after = given(&events)
        .when(by(OUTSIDER, erase(OUTSIDER)))
        .then(&[erased(OUTSIDER, false)]);
    assert!(after.state.join_request(OUTSIDER).is_none());
    after
        .when(by(
            MODERATOR,
            Action::ApproveJoinRequest {
                member_id: OUTSIDER,
            },
        ))
        .then_error(DomainError::JoinRequestNotFound);
}

#[test]
fn an_erased_members_handle_is_free_again() {
    let events = plus(staffed(), [invitation_created(5), erased(MEMBER, true)]);
    let after = given(&events);
    assert_eq!(
        after.state.handle_holder(&Handle::parse("member").unwrap()),
        None
    );
    after
        .when(by(OUTSIDER, accept("member")))
        .then(&[joined_by_invitation(OUTSIDER, "member")]);
}

#[test]
fn an_erased_member_may_join_again_with_an_invitation() {
    let events = plus(staffed(), [invitation_created(5), erased(MEMBER, true)]);
    let after = given(&events)
        .when(by(MEMBER, accept("newme")))
        .then(&[joined_by_invitation(MEMBER, "newme")]);
    assert!(!after.state.is_erased(MEMBER));
    let member = after.state.member(MEMBER).unwrap();
    assert_eq!(member.status, MemberStatus::Active);
    assert_eq!(member.role, Role::Member);
}

#[test]
fn an_erased_member_may_ask_to_join_again() {
    let events = plus(staffed(), [erased(MEMBER, true)]);
    given(&events)
        .when(by(MEMBER, request("newme")))
        .then(&[requested(MEMBER, "newme")]);
}

#[test]
fn a_member_who_came_back_after_erasure_may_be_erased_again() {
    let events = plus(staffed(), [erased(MEMBER, true), joined(MEMBER, "newme")]);
    given(&events)
        .when(by(MEMBER, erase(MEMBER)))
        .then(&[erased(MEMBER, true)]);
}

#[test]
fn an_erased_coach_comes_back_as_a_plain_member() {
    let events = plus(
        staffed(),
        [
            joined(CO_OWNER, "ada"),
            promoted(CO_OWNER, Role::Coach),
            erased(CO_OWNER, true),
            invitation_created(1),
        ],
    );
    let after = given(&events)
        .when(by(CO_OWNER, accept("ada")))
        .then(&[joined_by_invitation(CO_OWNER, "ada")]);
    assert_eq!(after.state.role_of(CO_OWNER), Some(Role::Member));
}

#[test]
fn a_banned_member_stays_banned_after_erasure() {
    let events = plus(staffed(), [invitation_created(5), banned(MEMBER, true)]);
    let after = given(&events)
        .when(by(OWNER, erase(MEMBER)))
        .then(&[Event::MemberErased {
            member_id: MEMBER,
            erased_by: OWNER,
            was_member: false,
        }]);
    let member = after.state.member(MEMBER).unwrap();
    assert_eq!(member.status, MemberStatus::Banned);
    assert_eq!(member.profile, None);
    assert!(after.state.is_banned(MEMBER) && after.state.is_erased(MEMBER));
    assert!(after.state.invitation(INVITATION).is_some());
    after
        .when(by(MEMBER, accept("member")))
        .then_error(DomainError::Banned);
}

#[test]
fn a_banned_and_erased_person_cannot_ask_to_join() {
    let events = plus(staffed(), [banned(MEMBER, true), erased(MEMBER, false)]);
    given(&events)
        .when(by(MEMBER, request("member")))
        .then_error(DomainError::Banned);
}

#[test]
fn a_host_who_was_erased_no_longer_counts_as_active() {
    let events = plus(staffed(), [erased(HOST, true)]);
    given(&events)
        .when(by(HOST, Action::Leave))
        .then_error(DomainError::CallerNotAMember);
}
