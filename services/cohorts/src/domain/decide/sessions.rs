//! Decisions about live sessions: scheduling (weekly series keep their local time across
//! daylight-saving changes), moving, cancelling, answering and recording attendance.

use std::collections::HashSet;

use chrono::{DateTime, Days, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::super::command::Command;
use super::super::error::DomainError;
use super::super::event::Event;
use super::super::state::Session;
use super::super::values::{
    MAX_WEEKLY_OCCURRENCES, Minutes, Recurrence, Rsvp, SessionTitle, occurrence_id,
};
use super::draft::Draft;
use super::guards::{MANAGE_SESSIONS, RECORD_ATTENDANCE, require_manager, require_seats_move};

/// What a schedule asks for, gathered to keep the argument list short.
pub(super) struct Schedule<'c> {
    pub(super) session_id: Uuid,
    pub(super) title: &'c SessionTitle,
    pub(super) starts_at: DateTime<Utc>,
    pub(super) duration: Minutes,
    pub(super) recurrence: Recurrence,
}

pub(super) fn schedule(
    draft: &mut Draft<'_>,
    command: &Command,
    schedule: &Schedule<'_>,
) -> Result<(), DomainError> {
    require_manager(draft, command, MANAGE_SESSIONS)?;
    require_seats_move(draft.status())?;
    if schedule.starts_at <= command.now {
        return Err(DomainError::SessionInPast);
    }
    let occurrences = match schedule.recurrence {
        Recurrence::Once => 1,
        // The variant's field is public, so a value that skipped `Recurrence::weekly` may come.
        Recurrence::Weekly { occurrences } => {
            if !(2..=MAX_WEEKLY_OCCURRENCES).contains(&occurrences) {
                return Err(DomainError::InvalidOccurrences(occurrences));
            }
            occurrences
        }
    };
    let series_id = (occurrences > 1).then_some(schedule.session_id);
    let time_zone = draft
        .cohort()
        .details()
        .map_or(Tz::UTC, |details| details.time_zone.tz());
    let mut events = Vec::new();
    for occurrence in 1..=occurrences {
        let session_id = occurrence_id(schedule.session_id, occurrence);
        if draft.cohort().session(session_id).is_some() {
            return Err(DomainError::SessionExists(session_id));
        }
        let starts_at = weeks_later(schedule.starts_at, time_zone, occurrence - 1)
            .ok_or(DomainError::SessionOutOfRange)?;
        events.push(Event::SessionScheduled {
            session_id,
            series_id,
            occurrence,
            title: schedule.title.clone(),
            starts_at,
            duration: schedule.duration,
            scheduled_by: command.actor,
        });
    }
    for event in events {
        draft.push(event);
    }
    Ok(())
}

/// The instant `weeks` weeks after `first` at the same wall-clock time in `time_zone`. A wall
/// time skipped by a daylight-saving change moves one hour later, as clocks do; one that happens
/// twice takes the earlier instant. `None` past the end of the calendar.
fn weeks_later(first: DateTime<Utc>, time_zone: Tz, weeks: u32) -> Option<DateTime<Utc>> {
    if weeks == 0 {
        return Some(first);
    }
    let days = Days::new(7 * u64::from(weeks));
    let wall = first
        .with_timezone(&time_zone)
        .naive_local()
        .checked_add_days(days)?;
    match kith_platform::local_time::instant(time_zone, wall) {
        Some(at) => Some(at),
        // A gap longer than an hour (a zone that skipped a whole day): keep the weekly rhythm.
        None => first.checked_add_days(days),
    }
}

pub(super) fn reschedule(
    draft: &mut Draft<'_>,
    command: &Command,
    session_id: Uuid,
    starts_at: DateTime<Utc>,
    duration: Minutes,
) -> Result<(), DomainError> {
    require_manager(draft, command, MANAGE_SESSIONS)?;
    require_upcoming(draft, command, session_id)?;
    if starts_at <= command.now {
        return Err(DomainError::SessionInPast);
    }
    draft.push(Event::SessionRescheduled {
        session_id,
        starts_at,
        duration,
        by: command.actor,
    });
    Ok(())
}

pub(super) fn cancel(
    draft: &mut Draft<'_>,
    command: &Command,
    session_id: Uuid,
) -> Result<(), DomainError> {
    require_manager(draft, command, MANAGE_SESSIONS)?;
    require_upcoming(draft, command, session_id)?;
    draft.push(Event::SessionCancelled {
        session_id,
        by: command.actor,
    });
    Ok(())
}

pub(super) fn respond(
    draft: &mut Draft<'_>,
    command: &Command,
    session_id: Uuid,
    response: Rsvp,
) -> Result<(), DomainError> {
    let actor = command.actor;
    // Someone outside the community is refused for who they are, before the cohort's state.
    super::guards::require_member(command)?;
    if !takes_part(draft, actor) {
        return Err(DomainError::NotInCohort(actor));
    }
    let session = require_upcoming(draft, command, session_id)?;
    if session.rsvps.get(&actor) == Some(&response) {
        return Ok(());
    }
    draft.push(Event::SessionRsvp {
        session_id,
        member_id: actor,
        response,
    });
    Ok(())
}

pub(super) fn record_attendance(
    draft: &mut Draft<'_>,
    command: &Command,
    session_id: Uuid,
    present: &[Uuid],
) -> Result<(), DomainError> {
    require_manager(draft, command, RECORD_ATTENDANCE)?;
    let session = require_session(draft, session_id)?;
    if command.now < session.starts_at {
        return Err(DomainError::SessionNotStarted(session_id));
    }
    let mut seen = HashSet::new();
    let mut attendees = Vec::new();
    for &member in present {
        if !takes_part(draft, member) {
            return Err(DomainError::NotInCohort(member));
        }
        if seen.insert(member) {
            attendees.push(member);
        }
    }
    draft.push(Event::AttendanceRecorded {
        session_id,
        present: attendees,
        recorded_by: command.actor,
    });
    Ok(())
}

/// Seated members and facilitators take part in sessions; the waitlisted and invited do not yet.
fn takes_part(draft: &Draft<'_>, member: Uuid) -> bool {
    let slot = draft.slot(member);
    slot.seat || slot.facilitator
}

/// The session, unless unknown or cancelled.
fn require_session<'a>(draft: &Draft<'a>, session_id: Uuid) -> Result<&'a Session, DomainError> {
    let session = draft
        .cohort()
        .session(session_id)
        .ok_or(DomainError::SessionNotFound(session_id))?;
    if session.cancelled {
        return Err(DomainError::SessionCancelled(session_id));
    }
    Ok(session)
}

/// The session, unless unknown, cancelled or started at the time of the command.
fn require_upcoming<'a>(
    draft: &Draft<'a>,
    command: &Command,
    session_id: Uuid,
) -> Result<&'a Session, DomainError> {
    let session = require_session(draft, session_id)?;
    if command.now >= session.starts_at {
        return Err(DomainError::SessionStarted(session_id));
    }
    Ok(session)
}
