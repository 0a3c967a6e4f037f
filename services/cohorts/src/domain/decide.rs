//! The cohort decider: `decide` turns a command into events or a refusal, `evolve` folds events
//! into the state the next decision reads. Both are pure; the clock is `command.now`.
//!
//! Every decision on a cohort under way begins with the expiry prelude: invitations past their
//! expiry are recorded as expired and their seats handed to the waitlist, and the command is then
//! decided as if those events had been folded in. A refused command records nothing, the prelude
//! included; the next command (or the sweeper's `ExpireInvitations`) records it.

use super::command::{Action, Command};
use super::error::DomainError;
use super::event::Event;
use super::state::Cohort;
use super::values::Status;

mod draft;
mod guards;
mod lifecycle;
mod seats;
mod sessions;

use draft::Draft;

/// The state before any event: a cohort not yet created.
pub fn initial() -> Cohort {
    Cohort::default()
}

/// Folds one event into the state. Never panics, whatever the event.
pub fn evolve(state: Cohort, event: &Event) -> Cohort {
    state.apply(event)
}

/// Decides what `command` does to the cohort in `state`: the events to append, in order, or why
/// it is refused.
///
/// # Errors
///
/// A [`DomainError`] saying why the command is refused; nothing is to be appended then.
pub fn decide(state: &Cohort, command: &Command) -> Result<Vec<Event>, DomainError> {
    if let Action::CreateCohort {
        community_id,
        details,
    } = &command.action
    {
        return lifecycle::create_cohort(state, command, *community_id, details);
    }
    if !state.exists() {
        return Err(DomainError::CohortNotFound);
    }
    if state.status() == Status::Archived {
        // The service's own bookkeeping must not fail on an archived cohort; there is nothing
        // left to hand on in one.
        return match command.action {
            Action::ReleaseMember { .. } | Action::ExpireInvitations => Ok(Vec::new()),
            _ => Err(DomainError::CohortArchived),
        };
    }
    let mut draft = Draft::new(state);
    seats::expire_invitations(&mut draft, command.now);
    decide_on(&mut draft, command)?;
    Ok(draft.into_events())
}

fn decide_on(draft: &mut Draft<'_>, command: &Command) -> Result<(), DomainError> {
    match &command.action {
        Action::CreateCohort { .. } => Err(DomainError::CohortExists),
        Action::UpdateCohort { details } => lifecycle::update_cohort(draft, command, details),
        Action::OpenCohort => lifecycle::change_status(draft, command, Status::Open, |by| {
            Event::CohortOpened { by }
        }),
        Action::StartCohort => lifecycle::change_status(draft, command, Status::Running, |by| {
            Event::CohortStarted { by }
        }),
        Action::CloseCohort => lifecycle::change_status(draft, command, Status::Closed, |by| {
            Event::CohortClosed { by }
        }),
        Action::GraduateCohort => {
            lifecycle::change_status(draft, command, Status::Graduated, |by| {
                Event::CohortGraduated { by }
            })
        }
        Action::ArchiveCohort => lifecycle::change_status(draft, command, Status::Archived, |by| {
            Event::CohortArchived { by }
        }),
        Action::AssignFacilitator {
            member_id,
            member_role,
        } => lifecycle::assign_facilitator(draft, command, *member_id, *member_role),
        Action::RemoveFacilitator { member_id } => {
            lifecycle::remove_facilitator(draft, command, *member_id)
        }
        Action::JoinCohort => seats::join(draft, command),
        Action::InviteMember {
            member_id,
            member_role,
            expires_at,
        } => seats::invite(draft, command, *member_id, *member_role, *expires_at),
        Action::AcceptInvitation => seats::accept_invitation(draft, command),
        Action::DeclineInvitation => seats::decline_invitation(draft, command),
        Action::RevokeInvitation { member_id } => {
            seats::revoke_invitation(draft, command, *member_id)
        }
        // The prelude is the whole of it.
        Action::ExpireInvitations => Ok(()),
        Action::LeaveCohort => seats::leave(draft, command),
        Action::RemoveMember { member_id } => seats::remove_member(draft, command, *member_id),
        Action::ReleaseMember {
            member_id,
            departure,
        } => {
            seats::release_member(draft, *member_id, *departure);
            Ok(())
        }
        Action::ScheduleSession {
            session_id,
            title,
            starts_at,
            duration,
            recurrence,
        } => {
            let schedule = sessions::Schedule {
                session_id: *session_id,
                title,
                starts_at: *starts_at,
                duration: *duration,
                recurrence: *recurrence,
            };
            sessions::schedule(draft, command, &schedule)
        }
        Action::RescheduleSession {
            session_id,
            starts_at,
            duration,
        } => sessions::reschedule(draft, command, *session_id, *starts_at, *duration),
        Action::CancelSession { session_id } => sessions::cancel(draft, command, *session_id),
        Action::RespondToSession {
            session_id,
            response,
        } => sessions::respond(draft, command, *session_id, *response),
        Action::RecordAttendance {
            session_id,
            present,
        } => sessions::record_attendance(draft, command, *session_id, present),
    }
}
