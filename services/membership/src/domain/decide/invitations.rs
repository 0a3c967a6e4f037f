//! Decisions about invitations: creating, accepting and revoking them.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::super::error::DomainError;
use super::super::event::Event;
use super::super::role::{JoinPath, Role};
use super::super::state::Community;
use super::super::values::{MAX_INVITATION_DAYS, MAX_INVITATION_USES, Profile};
use super::guards::{
    CREATE_INVITATIONS, REVOKE_INVITATION, ensure_handle_free, ensure_may_join, require_role,
};

pub(super) fn create_invitation(
    state: &Community,
    actor: Uuid,
    now: DateTime<Utc>,
    invitation_id: Uuid,
    expires_at: DateTime<Utc>,
    max_uses: u32,
) -> Result<Vec<Event>, DomainError> {
    let inviters = [Role::Owner, Role::Host, Role::Coach];
    require_role(state, actor, &inviters, CREATE_INVITATIONS)?;
    if expires_at <= now {
        return Err(DomainError::InvalidExpiry(
            "must be in the future".to_owned(),
        ));
    }
    // Near the end of time the limit overflows; then every future instant is within it.
    let latest = now.checked_add_signed(TimeDelta::days(MAX_INVITATION_DAYS));
    if latest.is_some_and(|limit| expires_at > limit) {
        return Err(DomainError::InvalidExpiry(format!(
            "must be at most {MAX_INVITATION_DAYS} days ahead"
        )));
    }
    if !(1..=MAX_INVITATION_USES).contains(&max_uses) {
        return Err(DomainError::InvalidMaxUses(format!(
            "must be 1 to {MAX_INVITATION_USES}"
        )));
    }
    if state.invitation(invitation_id).is_some() {
        return Err(DomainError::InvitationExists);
    }
    Ok(vec![Event::InvitationCreated {
        invitation_id,
        created_by: actor,
        expires_at,
        max_uses,
    }])
}

pub(super) fn accept_invitation(
    state: &Community,
    actor: Uuid,
    now: DateTime<Utc>,
    invitation_id: Uuid,
    profile: &Profile,
) -> Result<Vec<Event>, DomainError> {
    let invitation = state
        .invitation(invitation_id)
        .ok_or(DomainError::InvitationNotFound)?;
    if invitation.revoked {
        return Err(DomainError::InvitationRevoked);
    }
    if invitation.is_expired(now) {
        return Err(DomainError::InvitationExpired);
    }
    if invitation.is_exhausted() {
        return Err(DomainError::InvitationExhausted);
    }
    ensure_may_join(state, actor)?;
    ensure_handle_free(state, &profile.handle, None)?;
    Ok(vec![Event::MemberJoined {
        member_id: actor,
        role: Role::Member,
        path: JoinPath::Invitation,
        profile: Some(profile.clone()),
        invitation_id: Some(invitation_id),
    }])
}

pub(super) fn revoke_invitation(
    state: &Community,
    actor: Uuid,
    invitation_id: Uuid,
) -> Result<Vec<Event>, DomainError> {
    let invitation = state
        .invitation(invitation_id)
        .ok_or(DomainError::InvitationNotFound)?;
    let actor_role = state.role_of(actor);
    let manages = matches!(actor_role, Some(Role::Owner | Role::Host));
    let created_it = invitation.created_by == actor && actor_role.is_some();
    if !manages && !created_it {
        return Err(DomainError::forbidden(REVOKE_INVITATION));
    }
    if invitation.revoked {
        return Err(DomainError::InvitationRevoked);
    }
    Ok(vec![Event::InvitationRevoked {
        invitation_id,
        revoked_by: actor,
    }])
}
