//! Decisions about seats: joining and leaving, the waitlist, invitations that hold seats, and
//! taking members out. Every freed seat goes to the head of the waitlist before anything else
//! can take it.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::super::command::Command;
use super::super::error::DomainError;
use super::super::event::{Event, SeatedBy};
use super::super::state::Invitation;
use super::super::values::{CommunityRole, Departure, MAX_INVITATION_DAYS, Place, Status};
use super::draft::Draft;
use super::guards::{
    INVITE_MEMBERS, REMOVE_MEMBERS, REVOKE_INVITATIONS, require_invitation, require_manager,
    require_member, require_seats_move,
};

/// Records every invitation past its expiry at `now`, soonest expiry first (then by member id,
/// so that the order never depends on how the state stores them), each followed by handing its
/// seat on.
pub(super) fn expire_invitations(draft: &mut Draft<'_>, now: DateTime<Utc>) {
    let mut expired: Vec<&Invitation> = draft
        .cohort()
        .invitations()
        .filter(|invitation| invitation.is_expired(now))
        .collect();
    expired.sort_by_key(|invitation| (invitation.expires_at, invitation.member_id));
    for invitation in expired {
        draft.record_expiry(invitation.member_id);
        draft.promote();
    }
}

pub(super) fn join(draft: &mut Draft<'_>, command: &Command) -> Result<(), DomainError> {
    let actor = command.actor;
    require_member(command)?;
    let slot = draft.slot(actor);
    if slot.facilitator {
        return Err(DomainError::IsFacilitator(actor));
    }
    if slot.seat {
        return Err(DomainError::AlreadyInCohort {
            member: actor,
            place: Place::Seat,
        });
    }
    // Before the waitlist check: a waitlisted member with an invitation takes the held seat.
    if slot.invited && draft.status().seats_move() {
        draft.push(Event::MemberJoinedCohort {
            member_id: actor,
            seated_by: SeatedBy::Invitation,
        });
        return Ok(());
    }
    if slot.ticket.is_some() {
        return Err(DomainError::AlreadyInCohort {
            member: actor,
            place: Place::Waitlist,
        });
    }
    if draft.status() != Status::Open {
        return Err(DomainError::NotOpen(draft.status()));
    }
    draft.push(if draft.free_seats() > 0 {
        Event::MemberJoinedCohort {
            member_id: actor,
            seated_by: SeatedBy::SelfJoin,
        }
    } else {
        Event::MemberWaitlisted { member_id: actor }
    });
    Ok(())
}

pub(super) fn leave(draft: &mut Draft<'_>, command: &Command) -> Result<(), DomainError> {
    let actor = command.actor;
    let slot = draft.slot(actor);
    let place = if slot.seat {
        Place::Seat
    } else if slot.ticket.is_some() {
        Place::Waitlist
    } else {
        return Err(DomainError::NotInCohort(actor));
    };
    draft.push(Event::MemberLeftCohort {
        member_id: actor,
        place,
    });
    draft.promote();
    Ok(())
}

pub(super) fn remove_member(
    draft: &mut Draft<'_>,
    command: &Command,
    member: Uuid,
) -> Result<(), DomainError> {
    require_manager(draft, command, REMOVE_MEMBERS)?;
    let slot = draft.slot(member);
    if slot.facilitator {
        return Err(DomainError::RemoveFacilitatorInstead(member));
    }
    let places: Vec<Place> = slot.places().collect();
    if places.is_empty() {
        return Err(DomainError::NotInCohort(member));
    }
    for place in places {
        draft.push(Event::MemberRemovedFromCohort {
            member_id: member,
            place,
            removed_by: command.actor,
        });
    }
    draft.promote();
    Ok(())
}

/// The community has let the member go, so every place goes with them; the last facilitator of
/// a running cohort too, since the community decided already.
pub(super) fn release_member(draft: &mut Draft<'_>, member: Uuid, departure: Departure) {
    let places: Vec<Place> = draft.slot(member).places().collect();
    for place in places {
        draft.push(Event::MemberReleased {
            member_id: member,
            place,
            departure,
        });
    }
    draft.promote();
}

pub(super) fn invite(
    draft: &mut Draft<'_>,
    command: &Command,
    member: Uuid,
    member_role: Option<CommunityRole>,
    expires_at: DateTime<Utc>,
) -> Result<(), DomainError> {
    require_manager(draft, command, INVITE_MEMBERS)?;
    require_seats_move(draft.status())?;
    if member_role.is_none() {
        return Err(DomainError::NotACommunityMember(member));
    }
    let slot = draft.slot(member);
    if slot.facilitator {
        return Err(DomainError::IsFacilitator(member));
    }
    if slot.seat {
        return Err(DomainError::AlreadyInCohort {
            member,
            place: Place::Seat,
        });
    }
    if slot.invited {
        return Err(DomainError::AlreadyInvited(member));
    }
    // One place per person: someone waiting is offered the next free seat by the waitlist, and
    // an invitation needs a free seat, which a waitlist never leaves.
    if slot.ticket.is_some() {
        return Err(DomainError::AlreadyInCohort {
            member,
            place: Place::Waitlist,
        });
    }
    let now = command.now;
    if expires_at <= now {
        return Err(DomainError::ExpiryNotInFuture);
    }
    // Near the end of time the limit overflows; then every future instant is within it.
    let latest = now.checked_add_signed(TimeDelta::days(MAX_INVITATION_DAYS));
    if latest.is_some_and(|limit| expires_at > limit) {
        return Err(DomainError::ExpiryTooFar);
    }
    if draft.free_seats() == 0 {
        return Err(DomainError::CohortFull {
            capacity: draft.capacity(),
        });
    }
    draft.push(Event::MemberInvited {
        member_id: member,
        invited_by: command.actor,
        expires_at,
    });
    Ok(())
}

pub(super) fn accept_invitation(
    draft: &mut Draft<'_>,
    command: &Command,
) -> Result<(), DomainError> {
    let actor = command.actor;
    require_invitation(draft, actor)?;
    require_member(command)?;
    // A closed cohort takes no one, not even on an invitation made while it was under way.
    require_seats_move(draft.status())?;
    draft.push(Event::MemberJoinedCohort {
        member_id: actor,
        seated_by: SeatedBy::Invitation,
    });
    Ok(())
}

pub(super) fn decline_invitation(
    draft: &mut Draft<'_>,
    command: &Command,
) -> Result<(), DomainError> {
    let actor = command.actor;
    require_invitation(draft, actor)?;
    draft.push(Event::InvitationDeclined { member_id: actor });
    draft.promote();
    Ok(())
}

pub(super) fn revoke_invitation(
    draft: &mut Draft<'_>,
    command: &Command,
    member: Uuid,
) -> Result<(), DomainError> {
    require_manager(draft, command, REVOKE_INVITATIONS)?;
    require_invitation(draft, member)?;
    draft.push(Event::InvitationRevoked {
        member_id: member,
        revoked_by: command.actor,
    });
    draft.promote();
    Ok(())
}
