//! Creating, accepting and revoking invitations.

use chrono::{DateTime, TimeDelta, Utc};

use super::super::{Action, DomainError, Event, JoinPath, MemberStatus, Role};
use super::{
    CO_OWNER, COACH, HOST, INVITATION, MEMBER, OUTSIDER, OWNER, accept, at, banned, by, given,
    invitation_created, joined_by_invitation, now, plus, requested, staffed,
};

fn create(expires_at: DateTime<Utc>, max_uses: u32) -> Action {
    Action::CreateInvitation {
        invitation_id: INVITATION,
        expires_at,
        max_uses,
    }
}

fn revoke() -> Action {
    Action::RevokeInvitation {
        invitation_id: INVITATION,
    }
}

fn revoked_by(actor: uuid::Uuid) -> Event {
    Event::InvitationRevoked {
        invitation_id: INVITATION,
        revoked_by: actor,
    }
}

fn with_invitation(max_uses: u32) -> Vec<Event> {
    plus(staffed(), [invitation_created(max_uses)])
}

#[test]
fn a_coach_may_create_an_invitation() {
    let expires_at = now() + TimeDelta::days(7);
    let after = given(&staffed())
        .when(by(COACH, create(expires_at, 20)))
        .then(&[Event::InvitationCreated {
            invitation_id: INVITATION,
            created_by: COACH,
            expires_at,
            max_uses: 20,
        }]);
    let invitation = after.state.invitation(INVITATION).unwrap();
    assert_eq!((invitation.uses, invitation.revoked), (0, false));
}

#[test]
fn a_member_cannot_create_an_invitation() {
    given(&staffed())
        .when(by(MEMBER, create(now() + TimeDelta::days(7), 1)))
        .then_error(DomainError::Forbidden(
            "only owners, hosts and coaches may create invitations".to_owned(),
        ));
}

#[test]
fn an_invitation_must_expire_in_the_future() {
    given(&staffed())
        .when(by(OWNER, create(now(), 1)))
        .then_error(DomainError::InvalidExpiry(
            "must be in the future".to_owned(),
        ));
}

#[test]
fn an_invitation_may_expire_at_most_90_days_ahead() {
    let limit = now() + TimeDelta::days(90);
    given(&staffed())
        .when(by(OWNER, create(limit, 1)))
        .then(&[Event::InvitationCreated {
            invitation_id: INVITATION,
            created_by: OWNER,
            expires_at: limit,
            max_uses: 1,
        }]);
    given(&staffed())
        .when(by(OWNER, create(limit + TimeDelta::seconds(1), 1)))
        .then_error(DomainError::InvalidExpiry(
            "must be at most 90 days ahead".to_owned(),
        ));
}

#[test]
fn an_invitation_allows_1_to_10000_uses() {
    let expires_at = now() + TimeDelta::days(1);
    let refused = DomainError::InvalidMaxUses("must be 1 to 10000".to_owned());
    given(&staffed())
        .when(by(OWNER, create(expires_at, 0)))
        .then_error(refused.clone());
    given(&staffed())
        .when(by(OWNER, create(expires_at, 10_001)))
        .then_error(refused);
    given(&staffed())
        .when(by(OWNER, create(expires_at, 10_000)))
        .then(&[Event::InvitationCreated {
            invitation_id: INVITATION,
            created_by: OWNER,
            expires_at,
            max_uses: 10_000,
        }]);
}

#[test]
fn an_invitation_id_cannot_be_reused() {
    given(&with_invitation(1))
        .when(by(HOST, create(now() + TimeDelta::days(1), 1)))
        .then_error(DomainError::InvitationExists);
}

#[test]
fn accepting_an_invitation_joins_as_a_member() {
    let after = given(&with_invitation(5))
        .when(by(OUTSIDER, accept("ada")))
        .then(&[joined_by_invitation(OUTSIDER, "ada")]);
    let member = after.state.member(OUTSIDER).unwrap();
    assert_eq!(member.role, Role::Member);
    assert_eq!(member.path, JoinPath::Invitation);
    assert_eq!(after.state.invitation(INVITATION).unwrap().uses, 1);
}

#[test]
fn an_unknown_invitation_is_refused() {
    given(&staffed())
        .when(by(OUTSIDER, accept("ada")))
        .then_error(DomainError::InvitationNotFound);
}

#[test]
fn a_revoked_invitation_is_refused() {
    let events = plus(with_invitation(5), [revoked_by(OWNER)]);
    given(&events)
        .when(by(OUTSIDER, accept("ada")))
        .then_error(DomainError::InvitationRevoked);
}

#[test]
fn an_expired_invitation_is_refused() {
    let expiry = now() + TimeDelta::days(7);
    given(&with_invitation(5))
        .when(at(OUTSIDER, expiry, accept("ada")))
        .then_error(DomainError::InvitationExpired);
}

#[test]
fn an_exhausted_invitation_is_refused() {
    let events = plus(with_invitation(1), [joined_by_invitation(CO_OWNER, "bob")]);
    given(&events)
        .when(by(OUTSIDER, accept("ada")))
        .then_error(DomainError::InvitationExhausted);
}

#[test]
fn each_member_who_joins_with_an_invitation_uses_it_up() {
    given(&with_invitation(2))
        .when(by(OUTSIDER, accept("ada")))
        .then(&[joined_by_invitation(OUTSIDER, "ada")])
        .when(by(CO_OWNER, accept("bob")))
        .then(&[joined_by_invitation(CO_OWNER, "bob")])
        .when(by(uuid::Uuid::from_u128(99), accept("cyd")))
        .then_error(DomainError::InvitationExhausted);
}

#[test]
fn a_banned_member_cannot_accept_an_invitation() {
    let events = plus(with_invitation(5), [banned(OUTSIDER, false)]);
    given(&events)
        .when(by(OUTSIDER, accept("ada")))
        .then_error(DomainError::Banned);
}

#[test]
fn an_active_member_cannot_accept_an_invitation() {
    given(&with_invitation(5))
        .when(by(MEMBER, accept("other")))
        .then_error(DomainError::AlreadyMember);
}

#[test]
fn accepting_an_invitation_with_a_taken_handle_is_refused() {
    given(&with_invitation(5))
        .when(by(OUTSIDER, accept("COACH")))
        .then_error(DomainError::HandleTaken("coach".to_owned()));
}

#[test]
fn accepting_an_invitation_drops_a_pending_join_request() {
    let events = plus(with_invitation(5), [requested(OUTSIDER, "ada")]);
    let after = given(&events)
        .when(by(OUTSIDER, accept("ada")))
        .then(&[joined_by_invitation(OUTSIDER, "ada")]);
    assert!(after.state.join_request(OUTSIDER).is_none());
    after
        .when(by(
            OWNER,
            Action::ApproveJoinRequest {
                member_id: OUTSIDER,
            },
        ))
        .then_error(DomainError::JoinRequestNotFound);
}

#[test]
fn a_member_who_left_may_come_back_with_an_invitation() {
    let events = plus(
        with_invitation(5),
        [Event::MemberLeft { member_id: MEMBER }],
    );
    let after = given(&events)
        .when(by(MEMBER, accept("member")))
        .then(&[joined_by_invitation(MEMBER, "member")]);
    assert_eq!(
        after.state.member(MEMBER).unwrap().status,
        MemberStatus::Active
    );
}

#[test]
fn a_host_may_revoke_an_invitation() {
    let after = given(&with_invitation(5))
        .when(by(HOST, revoke()))
        .then(&[revoked_by(HOST)]);
    assert!(after.state.invitation(INVITATION).unwrap().revoked);
}

#[test]
fn the_creator_may_revoke_their_invitation() {
    let events = plus(
        staffed(),
        [Event::InvitationCreated {
            invitation_id: INVITATION,
            created_by: COACH,
            expires_at: now() + TimeDelta::days(1),
            max_uses: 1,
        }],
    );
    given(&events)
        .when(by(COACH, revoke()))
        .then(&[revoked_by(COACH)]);
}

#[test]
fn a_creator_who_left_cannot_revoke_their_invitation() {
    let events = plus(
        staffed(),
        [
            Event::InvitationCreated {
                invitation_id: INVITATION,
                created_by: COACH,
                expires_at: now() + TimeDelta::days(1),
                max_uses: 1,
            },
            Event::MemberLeft { member_id: COACH },
        ],
    );
    given(&events)
        .when(by(COACH, revoke()))
        .then_error(DomainError::Forbidden(
            "only owners, hosts and the invitation's creator may revoke it".to_owned(),
        ));
}

#[test]
fn a_coach_cannot_revoke_someone_elses_invitation() {
    given(&with_invitation(5))
        .when(by(COACH, revoke()))
        .then_error(DomainError::Forbidden(
            "only owners, hosts and the invitation's creator may revoke it".to_owned(),
        ));
}

#[test]
fn revoking_an_unknown_invitation_is_refused() {
    given(&staffed())
        .when(by(OWNER, revoke()))
        .then_error(DomainError::InvitationNotFound);
}

#[test]
fn revoking_an_invitation_twice_is_refused() {
    given(&with_invitation(5))
        .when(by(OWNER, revoke()))
        .then(&[revoked_by(OWNER)])
        .when(by(HOST, revoke()))
        .then_error(DomainError::InvitationRevoked);
}

#[test]
fn a_pending_request_does_not_reserve_a_handle_against_an_invitation() {
    let events = plus(with_invitation(5), [requested(CO_OWNER, "ada")]);
    given(&events)
        .when(by(OUTSIDER, accept("ada")))
        .then(&[joined_by_invitation(OUTSIDER, "ada")])
        // ...so approving the request now finds the handle taken.
        .when(by(
            OWNER,
            Action::ApproveJoinRequest {
                member_id: CO_OWNER,
            },
        ))
        .then_error(DomainError::HandleTaken("ada".to_owned()));
}
