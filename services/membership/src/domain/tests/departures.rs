//! Leaving, removals and bans.

use super::super::{Action, DomainError, Event, MemberStatus, Role};
use super::{
    CO_OWNER, COACH, HOST, MEMBER, MODERATOR, OUTSIDER, OWNER, banned, by, erased, given, joined,
    plus, promoted, reason, request, requested, staffed,
};

fn remove(member_id: uuid::Uuid) -> Action {
    Action::RemoveMember {
        member_id,
        reason: reason("rude"),
    }
}

fn removed(member_id: uuid::Uuid, removed_by: uuid::Uuid) -> Event {
    Event::MemberRemoved {
        member_id,
        removed_by,
        reason: reason("rude"),
    }
}

fn ban(member_id: uuid::Uuid) -> Action {
    Action::BanMember {
        member_id,
        reason: reason("spam"),
    }
}

fn forbidden(message: &str) -> DomainError {
    DomainError::Forbidden(message.to_owned())
}

#[test]
fn a_member_may_leave() {
    let after = given(&staffed())
        .when(by(MEMBER, Action::Leave))
        .then(&[Event::MemberLeft { member_id: MEMBER }]);
    assert_eq!(
        after.state.member(MEMBER).unwrap().status,
        MemberStatus::Left
    );
    assert_eq!(after.state.role_of(MEMBER), None);
}

#[test]
fn someone_who_is_not_a_member_cannot_leave() {
    given(&staffed())
        .when(by(OUTSIDER, Action::Leave))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn leaving_twice_is_refused() {
    given(&staffed())
        .when(by(MEMBER, Action::Leave))
        .then(&[Event::MemberLeft { member_id: MEMBER }])
        .when(by(MEMBER, Action::Leave))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn the_last_owner_cannot_leave() {
    given(&staffed())
        .when(by(OWNER, Action::Leave))
        .then_error(DomainError::LastOwner(
            "the last owner cannot leave; assign another owner first",
        ));
}

#[test]
fn an_owner_may_leave_when_another_owner_remains() {
    let events = plus(
        staffed(),
        [joined(CO_OWNER, "coowner"), promoted(CO_OWNER, Role::Owner)],
    );
    let after = given(&events)
        .when(by(OWNER, Action::Leave))
        .then(&[Event::MemberLeft { member_id: OWNER }]);
    // Now the other owner is the last one.
    after
        .when(by(CO_OWNER, Action::Leave))
        .then_error(DomainError::LastOwner(
            "the last owner cannot leave; assign another owner first",
        ));
}

#[test]
fn a_moderator_may_remove_a_member() {
    let after = given(&staffed())
        .when(by(MODERATOR, remove(MEMBER)))
        .then(&[removed(MEMBER, MODERATOR)]);
    assert_eq!(
        after.state.member(MEMBER).unwrap().status,
        MemberStatus::Removed
    );
}

#[test]
fn a_member_cannot_remove_anyone() {
    let events = plus(staffed(), [joined(OUTSIDER, "ada")]);
    given(&events)
        .when(by(MEMBER, remove(OUTSIDER)))
        .then_error(forbidden(
            "only owners, hosts and moderators may remove members",
        ));
}

#[test]
fn nobody_can_remove_themselves() {
    given(&staffed())
        .when(by(HOST, remove(HOST)))
        .then_error(forbidden("members cannot remove themselves; use leave"));
}

#[test]
fn removing_someone_who_is_not_a_member_is_refused() {
    given(&staffed())
        .when(by(OWNER, remove(OUTSIDER)))
        .then_error(DomainError::NotAMember(OUTSIDER));
}

#[test]
fn a_moderator_cannot_remove_a_coach_of_the_same_rank() {
    given(&staffed())
        .when(by(MODERATOR, remove(COACH)))
        .then_error(forbidden(
            "only members of a lower rank than yours may be removed",
        ));
}

#[test]
fn a_host_cannot_remove_an_owner() {
    given(&staffed())
        .when(by(HOST, remove(OWNER)))
        .then_error(forbidden(
            "only members of a lower rank than yours may be removed",
        ));
}

#[test]
fn a_removed_member_may_ask_to_join_again() {
    let events = plus(staffed(), [removed(MEMBER, OWNER)]);
    given(&events)
        .when(by(MEMBER, request("member")))
        .then(&[requested(MEMBER, "member")]);
}

#[test]
fn a_moderator_may_ban_a_member() {
    let after = given(&staffed())
        .when(by(MODERATOR, ban(MEMBER)))
        .then(&[banned(MEMBER, true)]);
    assert!(after.state.is_banned(MEMBER));
    assert_eq!(
        after.state.member(MEMBER).unwrap().status,
        MemberStatus::Banned
    );
    assert_eq!(after.state.role_of(MEMBER), None);
}

#[test]
fn a_ban_may_be_pre_emptive() {
    let after = given(&staffed())
        .when(by(MODERATOR, ban(OUTSIDER)))
        .then(&[banned(OUTSIDER, false)]);
    assert!(after.state.is_banned(OUTSIDER));
    assert!(after.state.member(OUTSIDER).is_none());
}

#[test]
fn nobody_can_ban_themselves() {
    given(&staffed())
        .when(by(MODERATOR, ban(MODERATOR)))
        .then_error(forbidden("members cannot ban themselves"));
}

#[test]
fn a_coach_cannot_ban() {
    given(&staffed())
        .when(by(COACH, ban(MEMBER)))
        .then_error(forbidden("only owners, hosts and moderators may ban"));
}

#[test]
fn banning_twice_is_refused() {
    let events = plus(staffed(), [banned(OUTSIDER, false)]);
    given(&events)
        .when(by(HOST, ban(OUTSIDER)))
        .then_error(DomainError::AlreadyBanned);
}

#[test]
fn a_moderator_cannot_ban_a_host() {
    given(&staffed())
        .when(by(MODERATOR, ban(HOST)))
        .then_error(forbidden(
            "only members of a lower rank than yours may be banned",
        ));
}

#[test]
fn a_moderator_may_ban_a_former_host() {
    let events = plus(staffed(), [Event::MemberLeft { member_id: HOST }]);
    given(&events)
        .when(by(MODERATOR, ban(HOST)))
        .then(&[banned(HOST, false)]);
}

#[test]
fn a_banned_member_can_no_longer_act() {
    let events = plus(staffed(), [banned(MEMBER, true)]);
    given(&events)
        .when(by(MEMBER, Action::Leave))
        .then_error(DomainError::Banned);
}

#[test]
fn a_ban_drops_the_pending_join_request() {
    let events = plus(staffed(), [requested(OUTSIDER, "ada")]);
    let after = given(&events)
        .when(by(OWNER, ban(OUTSIDER)))
        .then(&[Event::MemberBanned {
            member_id: OUTSIDER,
            banned_by: OWNER,
            reason: reason("spam"),
            was_member: false,
        }]);
    assert!(after.state.join_request(OUTSIDER).is_none());
}

fn unban(member_id: uuid::Uuid) -> Action {
    Action::UnbanMember { member_id }
}

#[test]
fn moderators_lift_a_ban_and_the_person_may_come_back() {
    let events = plus(staffed(), [banned(MEMBER, true)]);
    let after = given(&events)
        .when(by(MODERATOR, unban(MEMBER)))
        .then(&[Event::MemberUnbanned {
            member_id: MEMBER,
            unbanned_by: MODERATOR,
        }]);
    assert!(!after.state.is_banned(MEMBER));
    assert_eq!(
        after.state.member(MEMBER).map(|m| m.status),
        Some(MemberStatus::Removed)
    );
    let lifted = plus(
        events,
        [Event::MemberUnbanned {
            member_id: MEMBER,
            unbanned_by: MODERATOR,
        }],
    );
    given(&lifted)
        .when(by(MEMBER, request("member")))
        .then(&[requested(MEMBER, "member")]);
}

#[test]
fn only_moderators_lift_bans_and_only_of_the_banned() {
    let events = plus(staffed(), [banned(OUTSIDER, false)]);
    given(&events)
        .when(by(COACH, unban(OUTSIDER)))
        .then_error(forbidden("only owners, hosts and moderators may lift bans"));
    given(&events)
        .when(by(OUTSIDER, unban(OUTSIDER)))
        .then_error(DomainError::Banned);
    given(&staffed())
        .when(by(OWNER, unban(MEMBER)))
        .then_error(DomainError::NotBanned(MEMBER));
}

#[test]
fn a_banned_person_erased_and_then_unbanned_stays_erased() {
    let events = plus(
        staffed(),
        [
            banned(MEMBER, true),
            erased(MEMBER, false),
            Event::MemberUnbanned {
                member_id: MEMBER,
                unbanned_by: OWNER,
            },
        ],
    );
    let state = events
        .iter()
        .fold(crate::domain::initial(), crate::domain::evolve);
    assert_eq!(
        state.member(MEMBER).map(|m| m.status),
        Some(MemberStatus::Erased)
    );
}

#[test]
fn someone_banned_who_never_joined_may_still_be_erased() {
    let events = plus(staffed(), [banned(OUTSIDER, false)]);
    given(&events)
        .when(by(
            OUTSIDER,
            Action::EraseMember {
                member_id: OUTSIDER,
            },
        ))
        .then(&[erased(OUTSIDER, false)]);
}
