//! The checks and refusal messages that decisions share.

use uuid::Uuid;

use super::super::command::Command;
use super::super::error::DomainError;
use super::super::values::{CommunityRole, Status};
use super::draft::Draft;

// What each refusal says: who may do the thing.
pub(super) const CREATE_COHORTS: &str =
    "only the community's owners, hosts and coaches may create cohorts";
pub(super) const UPDATE_COHORT: &str =
    "only the cohort's facilitators and the community's owners and hosts may update the cohort";
pub(super) const CHANGE_STATUS: &str = "only the cohort's facilitators and the community's owners and hosts may open, start, close, graduate or archive the cohort";
pub(super) const MANAGE_FACILITATORS: &str = "only the cohort's facilitators and the community's owners and hosts may assign and remove facilitators";
pub(super) const INVITE_MEMBERS: &str =
    "only the cohort's facilitators and the community's owners and hosts may invite members";
pub(super) const REVOKE_INVITATIONS: &str =
    "only the cohort's facilitators and the community's owners and hosts may revoke invitations";
pub(super) const REMOVE_MEMBERS: &str =
    "only the cohort's facilitators and the community's owners and hosts may remove members";
pub(super) const MANAGE_SESSIONS: &str = "only the cohort's facilitators and the community's owners and hosts may schedule, move and cancel sessions";
pub(super) const RECORD_ATTENDANCE: &str =
    "only the cohort's facilitators and the community's owners and hosts may record attendance";

/// The actor's community role; someone outside the community acts on none of its cohorts.
pub(super) fn require_member(command: &Command) -> Result<CommunityRole, DomainError> {
    command.actor_role.ok_or(DomainError::CallerNotAMember)
}

/// Lets through the cohort's facilitators and the community's owners and hosts; anyone else is
/// refused with `message`, which says who may. A facilitator who has left the community is
/// refused too: their release is on its way.
pub(super) fn require_manager(
    draft: &Draft<'_>,
    command: &Command,
    message: &'static str,
) -> Result<(), DomainError> {
    let role = require_member(command)?;
    if role.manages_cohorts() || draft.slot(command.actor).facilitator {
        Ok(())
    } else {
        Err(DomainError::Forbidden(message))
    }
}

/// Refuses in a closed or graduated cohort what only a cohort under way allows.
pub(super) fn require_seats_move(status: Status) -> Result<(), DomainError> {
    if status.seats_move() {
        Ok(())
    } else {
        Err(DomainError::CohortEnded(status))
    }
}

/// Refuses unless `member` holds a pending invitation, saying whether it just expired.
pub(super) fn require_invitation(draft: &Draft<'_>, member: Uuid) -> Result<(), DomainError> {
    if draft.invitation(member).is_some() {
        Ok(())
    } else if draft.expired_in_prelude(member) {
        Err(DomainError::InvitationExpired(member))
    } else {
        Err(DomainError::NoInvitation(member))
    }
}
