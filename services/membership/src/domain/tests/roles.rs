//! Assigning and revoking roles.

use super::super::{Action, DomainError, Event, Role};
use super::{
    CO_OWNER, COACH, HOST, MEMBER, MODERATOR, OUTSIDER, OWNER, by, given, joined, plus, promoted,
    staffed,
};

fn assign(member_id: uuid::Uuid, role: Role) -> Action {
    Action::AssignRole { member_id, role }
}

fn revoke(member_id: uuid::Uuid, role: Role) -> Action {
    Action::RevokeRole { member_id, role }
}

fn forbidden(message: &str) -> DomainError {
    DomainError::Forbidden(message.to_owned())
}

/// [`staffed`] with a second owner, [`CO_OWNER`].
fn two_owners() -> Vec<super::super::Event> {
    plus(
        staffed(),
        [joined(CO_OWNER, "coowner"), promoted(CO_OWNER, Role::Owner)],
    )
}

#[test]
fn an_owner_may_make_another_owner() {
    let after = given(&staffed())
        .when(by(OWNER, assign(MEMBER, Role::Owner)))
        .then(&[Event::RoleAssigned {
            member_id: MEMBER,
            role: Role::Owner,
            previous_role: Role::Member,
            assigned_by: OWNER,
        }]);
    assert_eq!(after.state.owners(), 2);
}

#[test]
fn an_owner_may_step_down_when_another_owner_remains() {
    given(&two_owners())
        .when(by(OWNER, assign(OWNER, Role::Host)))
        .then(&[Event::RoleAssigned {
            member_id: OWNER,
            role: Role::Host,
            previous_role: Role::Owner,
            assigned_by: OWNER,
        }]);
}

#[test]
fn the_last_owner_cannot_step_down() {
    given(&staffed())
        .when(by(OWNER, assign(OWNER, Role::Host)))
        .then_error(DomainError::LastOwner(
            "the last owner cannot give up the owner role; assign another owner first",
        ));
}

#[test]
fn a_host_may_make_a_member_a_coach() {
    given(&staffed())
        .when(by(HOST, assign(MEMBER, Role::Coach)))
        .then(&[Event::RoleAssigned {
            member_id: MEMBER,
            role: Role::Coach,
            previous_role: Role::Member,
            assigned_by: HOST,
        }]);
}

#[test]
fn a_host_may_turn_a_moderator_into_a_coach() {
    given(&staffed())
        .when(by(HOST, assign(MODERATOR, Role::Coach)))
        .then(&[Event::RoleAssigned {
            member_id: MODERATOR,
            role: Role::Coach,
            previous_role: Role::Moderator,
            assigned_by: HOST,
        }]);
}

const HOST_ASSIGNS: &str =
    "hosts may assign only the coach, moderator and member roles, and only to members below host";

#[test]
fn a_host_cannot_make_an_owner() {
    given(&staffed())
        .when(by(HOST, assign(MEMBER, Role::Owner)))
        .then_error(forbidden(HOST_ASSIGNS));
}

#[test]
fn a_host_cannot_make_a_host() {
    given(&staffed())
        .when(by(HOST, assign(MEMBER, Role::Host)))
        .then_error(forbidden(HOST_ASSIGNS));
}

#[test]
fn a_host_cannot_demote_an_owner() {
    given(&staffed())
        .when(by(HOST, assign(OWNER, Role::Member)))
        .then_error(forbidden(HOST_ASSIGNS));
}

#[test]
fn a_host_cannot_change_another_hosts_role() {
    let events = plus(
        staffed(),
        [joined(CO_OWNER, "cohost"), promoted(CO_OWNER, Role::Host)],
    );
    given(&events)
        .when(by(HOST, assign(CO_OWNER, Role::Coach)))
        .then_error(forbidden(HOST_ASSIGNS));
}

#[test]
fn a_coach_cannot_assign_roles() {
    given(&staffed())
        .when(by(COACH, assign(MEMBER, Role::Moderator)))
        .then_error(forbidden("only owners and hosts may assign roles"));
}

#[test]
fn an_outsider_cannot_assign_roles() {
    given(&staffed())
        .when(by(OUTSIDER, assign(MEMBER, Role::Coach)))
        .then_error(DomainError::CallerNotAMember);
}

#[test]
fn a_role_cannot_be_given_to_someone_who_is_not_a_member() {
    given(&staffed())
        .when(by(OWNER, assign(OUTSIDER, Role::Coach)))
        .then_error(DomainError::NotAMember(OUTSIDER));
}

#[test]
fn assigning_the_role_already_held_is_refused() {
    given(&staffed())
        .when(by(OWNER, assign(COACH, Role::Coach)))
        .then_error(DomainError::RoleUnchanged);
}

#[test]
fn an_owner_may_revoke_a_host_role() {
    let after = given(&staffed())
        .when(by(OWNER, revoke(HOST, Role::Host)))
        .then(&[Event::RoleRevoked {
            member_id: HOST,
            role: Role::Host,
            revoked_by: OWNER,
        }]);
    assert_eq!(after.state.role_of(HOST), Some(Role::Member));
}

#[test]
fn an_owner_may_revoke_another_owners_role() {
    given(&two_owners())
        .when(by(OWNER, revoke(CO_OWNER, Role::Owner)))
        .then(&[Event::RoleRevoked {
            member_id: CO_OWNER,
            role: Role::Owner,
            revoked_by: OWNER,
        }]);
}

#[test]
fn a_host_may_revoke_a_moderator_role() {
    given(&staffed())
        .when(by(HOST, revoke(MODERATOR, Role::Moderator)))
        .then(&[Event::RoleRevoked {
            member_id: MODERATOR,
            role: Role::Moderator,
            revoked_by: HOST,
        }]);
}

#[test]
fn a_host_cannot_revoke_an_owner_role() {
    given(&staffed())
        .when(by(HOST, revoke(OWNER, Role::Owner)))
        .then_error(forbidden(
            "hosts may revoke only the coach and moderator roles",
        ));
}

#[test]
fn a_moderator_cannot_revoke_roles() {
    given(&staffed())
        .when(by(MODERATOR, revoke(COACH, Role::Coach)))
        .then_error(forbidden("only owners and hosts may revoke roles"));
}

#[test]
fn plain_membership_cannot_be_revoked() {
    given(&staffed())
        .when(by(OWNER, revoke(MEMBER, Role::Member)))
        .then_error(DomainError::MembershipNotRevocable);
}

#[test]
fn revoking_a_role_not_held_is_refused() {
    given(&staffed())
        .when(by(OWNER, revoke(COACH, Role::Moderator)))
        .then_error(DomainError::RoleNotHeld);
}

#[test]
fn revoking_a_role_from_a_non_member_is_refused() {
    given(&staffed())
        .when(by(OWNER, revoke(OUTSIDER, Role::Coach)))
        .then_error(DomainError::NotAMember(OUTSIDER));
}

#[test]
fn the_last_owner_cannot_have_the_owner_role_revoked() {
    given(&staffed())
        .when(by(OWNER, revoke(OWNER, Role::Owner)))
        .then_error(DomainError::LastOwner(
            "the last owner cannot give up the owner role; assign another owner first",
        ));
}

#[test]
fn a_moderator_whose_role_was_revoked_can_no_longer_moderate() {
    given(&staffed())
        .when(by(OWNER, revoke(MODERATOR, Role::Moderator)))
        .then(&[Event::RoleRevoked {
            member_id: MODERATOR,
            role: Role::Moderator,
            revoked_by: OWNER,
        }])
        .when(by(
            MODERATOR,
            Action::RemoveMember {
                member_id: MEMBER,
                reason: super::reason(""),
            },
        ))
        .then_error(forbidden(
            "only owners, hosts and moderators may remove members",
        ));
}
