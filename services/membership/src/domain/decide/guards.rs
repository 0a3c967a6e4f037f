//! The checks and refusal messages that decisions share.

use uuid::Uuid;

use super::super::error::DomainError;
use super::super::role::Role;
use super::super::state::{Community, Member};
use super::super::values::Handle;

// What each refusal says: who may do the thing, or what to do first.
pub(super) const UPDATE_COMMUNITY: &str = "only owners and hosts may update the community";
pub(super) const ARCHIVE_COMMUNITY: &str = "only owners may archive the community";
pub(super) const ASSIGN_ROLES: &str = "only owners and hosts may assign roles";
pub(super) const HOST_ASSIGNS: &str =
    "hosts may assign only the coach, moderator and member roles, and only to members below host";
pub(super) const REVOKE_ROLES: &str = "only owners and hosts may revoke roles";
pub(super) const HOST_REVOKES: &str = "hosts may revoke only the coach and moderator roles";
pub(super) const CREATE_INVITATIONS: &str = "only owners, hosts and coaches may create invitations";
pub(super) const REVOKE_INVITATION: &str =
    "only owners, hosts and the invitation's creator may revoke it";
pub(super) const HANDLE_JOIN_REQUESTS: &str =
    "only owners, hosts and moderators may handle join requests";
pub(super) const REMOVE_MEMBERS: &str = "only owners, hosts and moderators may remove members";
pub(super) const REMOVE_SELF: &str = "members cannot remove themselves; use leave";
pub(super) const REMOVE_RANK: &str = "only members of a lower rank than yours may be removed";
pub(super) const BAN_MEMBERS: &str = "only owners, hosts and moderators may ban";
pub(super) const BAN_SELF: &str = "members cannot ban themselves";
pub(super) const UNBAN_MEMBERS: &str = "only owners, hosts and moderators may lift bans";
pub(super) const BAN_RANK: &str = "only members of a lower rank than yours may be banned";
pub(super) const ERASE_OTHERS: &str = "only owners may erase someone else's data";
pub(super) const LAST_OWNER_LEAVE: &str = "the last owner cannot leave; assign another owner first";
pub(super) const LAST_OWNER_ROLE: &str =
    "the last owner cannot give up the owner role; assign another owner first";
pub(super) const LAST_OWNER_ERASE: &str =
    "the last owner cannot be erased; assign another owner first";

pub(super) const MODERATORS: &[Role] = &[Role::Owner, Role::Host, Role::Moderator];
pub(super) const JOIN_REQUEST_HANDLERS: &[Role] = MODERATORS;

/// The caller as an active member; a banned caller is told so, anyone else that they are not a
/// member. Both rest on who the caller is.
pub(super) fn require_caller(state: &Community, actor: Uuid) -> Result<&Member, DomainError> {
    state.active_member(actor).ok_or(if state.is_banned(actor) {
        DomainError::Banned
    } else {
        DomainError::CallerNotAMember
    })
}

/// The active member `id` (someone acted on), or a refusal naming them.
pub(super) fn require_active(state: &Community, id: Uuid) -> Result<&Member, DomainError> {
    state.active_member(id).ok_or(DomainError::NotAMember(id))
}

/// The actor's role if they are an active member holding one of `allowed`; another member is
/// refused with `message`, which says who may, and a non-member as [`require_caller`] does.
pub(super) fn require_role(
    state: &Community,
    actor: Uuid,
    allowed: &[Role],
    message: &str,
) -> Result<Role, DomainError> {
    match state.role_of(actor) {
        Some(role) if allowed.contains(&role) => Ok(role),
        Some(_) => Err(DomainError::forbidden(message)),
        // Not a member at all: say that, rather than which role it takes.
        None => require_caller(state, actor).map(|member| member.role),
    }
}

/// Refuses `handle` if an active member other than `except` uses it.
pub(super) fn ensure_handle_free(
    state: &Community,
    handle: &Handle,
    except: Option<Uuid>,
) -> Result<(), DomainError> {
    match state.handle_holder(handle) {
        Some(holder) if Some(holder) != except => {
            Err(DomainError::HandleTaken(handle.as_str().to_owned()))
        }
        _ => Ok(()),
    }
}

/// Refuses to let a banned person or an active member in, by whatever path.
pub(super) fn ensure_may_join(state: &Community, id: Uuid) -> Result<(), DomainError> {
    if state.is_banned(id) {
        return Err(DomainError::Banned);
    }
    if state.active_member(id).is_some() {
        return Err(DomainError::AlreadyMember);
    }
    Ok(())
}

/// Refuses, with `message`, anything that would take `member_id` out of the owners when they are
/// the only active one.
pub(super) fn ensure_not_last_owner(
    state: &Community,
    member_id: Uuid,
    message: &'static str,
) -> Result<(), DomainError> {
    if state.role_of(member_id) == Some(Role::Owner) && state.owners() <= 1 {
        return Err(DomainError::LastOwner(message));
    }
    Ok(())
}
