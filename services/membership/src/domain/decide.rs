//! The community decider: `decide` turns a command into events or a refusal, `evolve` folds
//! events into the state the next decision reads. Both are pure; the clock is `command.now`.

use uuid::Uuid;

use super::command::{Action, Command};
use super::error::DomainError;
use super::event::Event;
use super::role::{JoinPath, Role};
use super::state::Community;
use super::values::{Answer, CommunityName, Description, MAX_ANSWERS, Profile, Reason};

mod guards;
mod invitations;

use invitations::{accept_invitation, create_invitation, revoke_invitation};

use guards::{
    ARCHIVE_COMMUNITY, ASSIGN_ROLES, BAN_MEMBERS, BAN_RANK, BAN_SELF, ERASE_OTHERS,
    HANDLE_JOIN_REQUESTS, HOST_ASSIGNS, HOST_REVOKES, JOIN_REQUEST_HANDLERS, LAST_OWNER_ERASE,
    LAST_OWNER_LEAVE, LAST_OWNER_ROLE, MODERATORS, REMOVE_MEMBERS, REMOVE_RANK, REMOVE_SELF,
    REVOKE_ROLES, UNBAN_MEMBERS, UPDATE_COMMUNITY, ensure_handle_free, ensure_may_join,
    ensure_not_last_owner, require_active, require_caller, require_role,
};

/// The state before any event: a community not yet created.
pub fn initial() -> Community {
    Community::default()
}

/// Folds one event into the state. Never panics, whatever the event.
pub fn evolve(state: Community, event: &Event) -> Community {
    state.apply(event)
}

/// Decides what `command` does to the community in `state`: the events to append, in order, or
/// why it is refused.
///
/// # Errors
///
/// A [`DomainError`] saying why the command is refused; nothing is to be appended then.
pub fn decide(state: &Community, command: &Command) -> Result<Vec<Event>, DomainError> {
    let actor = command.actor;
    if let Action::CreateCommunity {
        name,
        description,
        founder,
    } = &command.action
    {
        return create_community(state, actor, name, description, founder);
    }
    if !state.is_created() {
        return Err(DomainError::CommunityNotFound);
    }
    // An archived community takes no more commands, except erasure and withdrawing one's own join
    // request: a person's right to take back their data outlives the community's activity.
    if state.is_archived()
        && !matches!(
            command.action,
            Action::EraseMember { .. } | Action::WithdrawJoinRequest
        )
    {
        return Err(DomainError::CommunityArchived);
    }
    let now = command.now;
    match &command.action {
        Action::CreateCommunity { .. } => Err(DomainError::CommunityExists),
        Action::UpdateCommunity { name, description } => {
            require_role(state, actor, &[Role::Owner, Role::Host], UPDATE_COMMUNITY)?;
            Ok(vec![Event::CommunityUpdated {
                name: name.clone(),
                description: description.clone(),
                updated_by: actor,
            }])
        }
        Action::SetLanguage { language } => {
            require_role(state, actor, &[Role::Owner, Role::Host], UPDATE_COMMUNITY)?;
            if state.language() == language {
                return Ok(Vec::new());
            }
            Ok(vec![Event::CommunityLanguageSet {
                language: language.clone(),
                set_by: actor,
            }])
        }
        Action::ArchiveCommunity => {
            require_role(state, actor, &[Role::Owner], ARCHIVE_COMMUNITY)?;
            Ok(vec![Event::CommunityArchived { archived_by: actor }])
        }
        Action::UpdateProfile { profile } => update_profile(state, actor, profile),
        Action::AssignRole { member_id, role } => assign_role(state, actor, *member_id, *role),
        Action::RevokeRole { member_id, role } => revoke_role(state, actor, *member_id, *role),
        Action::CreateInvitation {
            invitation_id,
            expires_at,
            max_uses,
        } => create_invitation(state, actor, now, *invitation_id, *expires_at, *max_uses),
        Action::AcceptInvitation {
            invitation_id,
            profile,
        } => accept_invitation(state, actor, now, *invitation_id, profile),
        Action::RevokeInvitation { invitation_id } => {
            revoke_invitation(state, actor, *invitation_id)
        }
        Action::RequestToJoin { profile, answers } => {
            request_to_join(state, actor, profile, answers)
        }
        Action::ApproveJoinRequest { member_id } => approve_join_request(state, actor, *member_id),
        Action::RejectJoinRequest { member_id, reason } => {
            reject_join_request(state, actor, *member_id, reason)
        }
        Action::Leave => {
            require_caller(state, actor)?;
            ensure_not_last_owner(state, actor, LAST_OWNER_LEAVE)?;
            Ok(vec![Event::MemberLeft { member_id: actor }])
        }
        Action::RemoveMember { member_id, reason } => {
            remove_member(state, actor, *member_id, reason)
        }
        Action::BanMember { member_id, reason } => ban_member(state, actor, *member_id, reason),
        Action::EraseMember { member_id } => erase_member(state, actor, *member_id),
        Action::UnbanMember { member_id } => {
            require_role(state, actor, MODERATORS, UNBAN_MEMBERS)?;
            if !state.is_banned(*member_id) {
                return Err(DomainError::NotBanned(*member_id));
            }
            Ok(vec![Event::MemberUnbanned {
                member_id: *member_id,
                unbanned_by: actor,
            }])
        }
        Action::WithdrawJoinRequest => {
            if state.join_request(actor).is_none() {
                return Err(DomainError::JoinRequestNotFound);
            }
            Ok(vec![Event::JoinRequestWithdrawn { member_id: actor }])
        }
    }
}

fn create_community(
    state: &Community,
    actor: Uuid,
    name: &CommunityName,
    description: &Description,
    founder: &Profile,
) -> Result<Vec<Event>, DomainError> {
    if state.is_created() {
        return Err(DomainError::CommunityExists);
    }
    Ok(vec![
        Event::CommunityCreated {
            name: name.clone(),
            description: description.clone(),
            created_by: actor,
        },
        Event::MemberJoined {
            member_id: actor,
            role: Role::Owner,
            path: JoinPath::Founder,
            profile: Some(founder.clone()),
            invitation_id: None,
        },
    ])
}

fn update_profile(
    state: &Community,
    actor: Uuid,
    profile: &Profile,
) -> Result<Vec<Event>, DomainError> {
    require_caller(state, actor)?;
    ensure_handle_free(state, &profile.handle, Some(actor))?;
    Ok(vec![Event::ProfileUpdated {
        member_id: actor,
        profile: Some(profile.clone()),
    }])
}

fn assign_role(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
    role: Role,
) -> Result<Vec<Event>, DomainError> {
    let actor_role = require_caller(state, actor)?.role;
    if !matches!(actor_role, Role::Owner | Role::Host) {
        return Err(DomainError::forbidden(ASSIGN_ROLES));
    }
    let target = require_active(state, member_id)?;
    if actor_role == Role::Host {
        let assignable = matches!(role, Role::Coach | Role::Moderator | Role::Member);
        if !assignable || target.role.rank() >= Role::Host.rank() {
            return Err(DomainError::forbidden(HOST_ASSIGNS));
        }
    }
    if target.role == role {
        return Err(DomainError::RoleUnchanged);
    }
    ensure_not_last_owner(state, member_id, LAST_OWNER_ROLE)?;
    Ok(vec![Event::RoleAssigned {
        member_id,
        role,
        previous_role: target.role,
        assigned_by: actor,
    }])
}

fn revoke_role(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
    role: Role,
) -> Result<Vec<Event>, DomainError> {
    if role == Role::Member {
        return Err(DomainError::MembershipNotRevocable);
    }
    let actor_role = require_caller(state, actor)?.role;
    match actor_role {
        Role::Owner => {}
        Role::Host if matches!(role, Role::Coach | Role::Moderator) => {}
        Role::Host => return Err(DomainError::forbidden(HOST_REVOKES)),
        Role::Coach | Role::Moderator | Role::Member => {
            return Err(DomainError::forbidden(REVOKE_ROLES));
        }
    }
    let target = require_active(state, member_id)?;
    if target.role != role {
        return Err(DomainError::RoleNotHeld);
    }
    ensure_not_last_owner(state, member_id, LAST_OWNER_ROLE)?;
    Ok(vec![Event::RoleRevoked {
        member_id,
        role,
        revoked_by: actor,
    }])
}

fn request_to_join(
    state: &Community,
    actor: Uuid,
    profile: &Profile,
    answers: &[Answer],
) -> Result<Vec<Event>, DomainError> {
    if answers.len() > MAX_ANSWERS {
        return Err(DomainError::TooManyAnswers {
            got: answers.len(),
            max: MAX_ANSWERS,
        });
    }
    ensure_may_join(state, actor)?;
    if state.join_request(actor).is_some() {
        return Err(DomainError::JoinRequestPending);
    }
    ensure_handle_free(state, &profile.handle, None)?;
    Ok(vec![Event::JoinRequested {
        member_id: actor,
        profile: Some(profile.clone()),
        answers: Some(answers.to_vec()),
    }])
}

fn approve_join_request(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
) -> Result<Vec<Event>, DomainError> {
    require_role(state, actor, JOIN_REQUEST_HANDLERS, HANDLE_JOIN_REQUESTS)?;
    let request = state
        .join_request(member_id)
        .ok_or(DomainError::JoinRequestNotFound)?;
    // A ban or a join drops the request, so these only guard against a log that says otherwise.
    ensure_may_join(state, member_id)?;
    if let Some(profile) = &request.profile {
        ensure_handle_free(state, &profile.handle, None)?;
    }
    Ok(vec![
        Event::JoinRequestApproved {
            member_id,
            approved_by: actor,
        },
        Event::MemberJoined {
            member_id,
            role: Role::Member,
            path: JoinPath::JoinRequest,
            profile: request.profile.clone(),
            invitation_id: None,
        },
    ])
}

fn reject_join_request(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
    reason: &Reason,
) -> Result<Vec<Event>, DomainError> {
    require_role(state, actor, JOIN_REQUEST_HANDLERS, HANDLE_JOIN_REQUESTS)?;
    if state.join_request(member_id).is_none() {
        return Err(DomainError::JoinRequestNotFound);
    }
    Ok(vec![Event::JoinRequestRejected {
        member_id,
        rejected_by: actor,
        reason: reason.clone(),
    }])
}

fn remove_member(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
    reason: &Reason,
) -> Result<Vec<Event>, DomainError> {
    let actor_role = require_role(state, actor, MODERATORS, REMOVE_MEMBERS)?;
    if member_id == actor {
        return Err(DomainError::forbidden(REMOVE_SELF));
    }
    let target = require_active(state, member_id)?;
    if target.role.rank() >= actor_role.rank() {
        return Err(DomainError::forbidden(REMOVE_RANK));
    }
    Ok(vec![Event::MemberRemoved {
        member_id,
        removed_by: actor,
        reason: reason.clone(),
    }])
}

fn ban_member(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
    reason: &Reason,
) -> Result<Vec<Event>, DomainError> {
    let actor_role = require_role(state, actor, MODERATORS, BAN_MEMBERS)?;
    if member_id == actor {
        return Err(DomainError::forbidden(BAN_SELF));
    }
    if state.is_banned(member_id) {
        return Err(DomainError::AlreadyBanned);
    }
    let target = state.active_member(member_id);
    if let Some(target) = target
        && target.role.rank() >= actor_role.rank()
    {
        return Err(DomainError::forbidden(BAN_RANK));
    }
    Ok(vec![Event::MemberBanned {
        member_id,
        banned_by: actor,
        reason: reason.clone(),
        was_member: target.is_some(),
    }])
}

fn erase_member(
    state: &Community,
    actor: Uuid,
    member_id: Uuid,
) -> Result<Vec<Event>, DomainError> {
    if actor != member_id && state.role_of(actor) != Some(Role::Owner) {
        return Err(DomainError::forbidden(ERASE_OTHERS));
    }
    if !state.is_known(member_id) {
        return Err(DomainError::NotAMember(member_id));
    }
    if state.is_erased(member_id) {
        return Err(DomainError::AlreadyErased);
    }
    ensure_not_last_owner(state, member_id, LAST_OWNER_ERASE)?;
    Ok(vec![Event::MemberErased {
        member_id,
        erased_by: actor,
        was_member: state.active_member(member_id).is_some(),
    }])
}
