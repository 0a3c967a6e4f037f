//! Decisions about the cohort itself: creating and updating it, moving it through its statuses,
//! and its facilitators.

use uuid::Uuid;

use super::super::command::Command;
use super::super::error::DomainError;
use super::super::event::Event;
use super::super::state::Cohort;
use super::super::values::{CommunityRole, Details, Status};
use super::draft::Draft;
use super::guards::{
    CHANGE_STATUS, CREATE_COHORTS, MANAGE_FACILITATORS, UPDATE_COHORT, require_manager,
    require_member, require_seats_move,
};

pub(super) fn create_cohort(
    state: &Cohort,
    command: &Command,
    community_id: Uuid,
    details: &Details,
) -> Result<Vec<Event>, DomainError> {
    if !require_member(command)?.may_facilitate() {
        return Err(DomainError::Forbidden(CREATE_COHORTS));
    }
    if state.exists() {
        return Err(DomainError::CohortExists);
    }
    let actor = command.actor;
    Ok(vec![
        Event::CohortCreated {
            community_id,
            details: details.clone(),
            created_by: actor,
        },
        Event::FacilitatorAssigned {
            member_id: actor,
            assigned_by: actor,
        },
    ])
}

pub(super) fn update_cohort(
    draft: &mut Draft<'_>,
    command: &Command,
    details: &Details,
) -> Result<(), DomainError> {
    require_manager(draft, command, UPDATE_COHORT)?;
    require_seats_move(draft.status())?;
    if let Some(current) = draft.cohort().details()
        && current.kind != details.kind
    {
        return Err(DomainError::KindChange {
            from: current.kind,
            to: details.kind,
        });
    }
    let taken = draft.seats_taken();
    if details.capacity.get() < taken {
        return Err(DomainError::CapacityBelowSeatsTaken {
            capacity: details.capacity.get(),
            taken,
        });
    }
    draft.push(Event::CohortUpdated {
        details: details.clone(),
        updated_by: command.actor,
    });
    draft.promote();
    Ok(())
}

/// Moves the cohort to `to`, recording it with `event` (which takes who moved it).
pub(super) fn change_status(
    draft: &mut Draft<'_>,
    command: &Command,
    to: Status,
    event: fn(Uuid) -> Event,
) -> Result<(), DomainError> {
    require_manager(draft, command, CHANGE_STATUS)?;
    let from = draft.status();
    if from == to {
        return Err(DomainError::AlreadyInStatus(to));
    }
    let allowed = match to {
        Status::Draft => false,
        Status::Open => from == Status::Draft,
        Status::Running => matches!(from, Status::Draft | Status::Open),
        Status::Closed => matches!(from, Status::Open | Status::Running),
        Status::Graduated => matches!(from, Status::Running | Status::Closed),
        Status::Archived => matches!(from, Status::Draft | Status::Closed | Status::Graduated),
    };
    if !allowed {
        // Archiving a cohort under way would strand its members; say how to get there.
        if to == Status::Archived && matches!(from, Status::Open | Status::Running) {
            return Err(DomainError::NotClosed(from));
        }
        return Err(DomainError::InvalidTransition { from, to });
    }
    if to == Status::Running && draft.cohort().facilitators().is_empty() {
        return Err(DomainError::NoFacilitator);
    }
    draft.push(event(command.actor));
    Ok(())
}

pub(super) fn assign_facilitator(
    draft: &mut Draft<'_>,
    command: &Command,
    member: Uuid,
    member_role: Option<CommunityRole>,
) -> Result<(), DomainError> {
    require_manager(draft, command, MANAGE_FACILITATORS)?;
    require_seats_move(draft.status())?;
    let role = member_role.ok_or(DomainError::NotACommunityMember(member))?;
    if !role.may_facilitate() {
        return Err(DomainError::NotEligibleFacilitator(member));
    }
    let slot = draft.slot(member);
    if slot.facilitator {
        return Err(DomainError::AlreadyFacilitator(member));
    }
    if let Some(place) = slot.places().next() {
        return Err(DomainError::HoldsPlace { member, place });
    }
    draft.push(Event::FacilitatorAssigned {
        member_id: member,
        assigned_by: command.actor,
    });
    Ok(())
}

pub(super) fn remove_facilitator(
    draft: &mut Draft<'_>,
    command: &Command,
    member: Uuid,
) -> Result<(), DomainError> {
    require_manager(draft, command, MANAGE_FACILITATORS)?;
    if !draft.slot(member).facilitator {
        return Err(DomainError::NotAFacilitator(member));
    }
    if draft.status() == Status::Running && draft.cohort().facilitators().len() <= 1 {
        return Err(DomainError::LastFacilitator);
    }
    draft.push(Event::FacilitatorRemoved {
        member_id: member,
        removed_by: command.actor,
    });
    Ok(())
}
