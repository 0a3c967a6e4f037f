//! Cohort events between the domain and the log: protobuf on the wire. Cohort events carry
//! member ids and nothing personal, so nothing is sealed here.

use async_trait::async_trait;
use chrono::NaiveDate;
use kith_platform::aggregate::Codec;
use kith_platform::eventlog::{NewEvent, RecordedEvent};
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id, stored_time, timestamp};
use kith_platform::{Error, Result};
use kith_proto::cohorts as pb;
use prost::Name;
use uuid::Uuid;

use crate::domain::{
    Capacity, CohortName, Dates, Departure, Details, Event, Goal, InvalidValue, Kind, Minutes,
    Place, Rsvp, SeatedBy, SessionTitle, TimeZone,
};
use crate::service::CohortDecider;

/// Encodes and decodes cohort events.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CohortCodec;

pub(crate) fn kind_to_pb(kind: Kind) -> pb::CohortKind {
    match kind {
        Kind::Mastermind => pb::CohortKind::Mastermind,
        Kind::Coaching => pb::CohortKind::Coaching,
        Kind::Course => pb::CohortKind::Course,
        Kind::Circle => pb::CohortKind::Circle,
    }
}

/// The domain kind of a wire kind; `None` for UNSPECIFIED or unknown values.
pub(crate) fn kind_from_pb(value: i32) -> Option<Kind> {
    match pb::CohortKind::try_from(value).ok()? {
        pb::CohortKind::Mastermind => Some(Kind::Mastermind),
        pb::CohortKind::Coaching => Some(Kind::Coaching),
        pb::CohortKind::Course => Some(Kind::Course),
        pb::CohortKind::Circle => Some(Kind::Circle),
        pb::CohortKind::Unspecified => None,
    }
}

pub(crate) fn place_to_pb(place: Place) -> pb::Place {
    match place {
        Place::Seat => pb::Place::Seat,
        Place::Waitlist => pb::Place::Waitlist,
        Place::Invitation => pb::Place::Invitation,
        Place::Facilitator => pb::Place::Facilitator,
    }
}

fn place_from_pb(value: i32) -> Result<Place> {
    match pb::Place::try_from(value) {
        Ok(pb::Place::Seat) => Ok(Place::Seat),
        Ok(pb::Place::Waitlist) => Ok(Place::Waitlist),
        Ok(pb::Place::Invitation) => Ok(Place::Invitation),
        Ok(pb::Place::Facilitator) => Ok(Place::Facilitator),
        _ => Err(Error::Codec(format!("unknown place {value}"))),
    }
}

fn departure_to_pb(departure: Departure) -> pb::Departure {
    match departure {
        Departure::Left => pb::Departure::Left,
        Departure::Removed => pb::Departure::Removed,
        Departure::Banned => pb::Departure::Banned,
        Departure::Erased => pb::Departure::Erased,
    }
}

fn departure_from_pb(value: i32) -> Result<Departure> {
    match pb::Departure::try_from(value) {
        Ok(pb::Departure::Left) => Ok(Departure::Left),
        Ok(pb::Departure::Removed) => Ok(Departure::Removed),
        Ok(pb::Departure::Banned) => Ok(Departure::Banned),
        Ok(pb::Departure::Erased) => Ok(Departure::Erased),
        _ => Err(Error::Codec(format!("unknown departure {value}"))),
    }
}

pub(crate) fn rsvp_to_pb(rsvp: Rsvp) -> pb::RsvpResponse {
    match rsvp {
        Rsvp::Yes => pb::RsvpResponse::Yes,
        Rsvp::No => pb::RsvpResponse::No,
        Rsvp::Maybe => pb::RsvpResponse::Maybe,
    }
}

/// The domain answer of a wire answer; `None` for UNSPECIFIED or unknown values.
pub(crate) fn rsvp_from_pb(value: i32) -> Option<Rsvp> {
    match pb::RsvpResponse::try_from(value).ok()? {
        pb::RsvpResponse::Yes => Some(Rsvp::Yes),
        pb::RsvpResponse::No => Some(Rsvp::No),
        pb::RsvpResponse::Maybe => Some(Rsvp::Maybe),
        pb::RsvpResponse::Unspecified => None,
    }
}

fn seated_by_to_pb(seated_by: SeatedBy) -> pb::SeatedBy {
    match seated_by {
        SeatedBy::SelfJoin => pb::SeatedBy::SelfJoin,
        SeatedBy::Invitation => pb::SeatedBy::Invitation,
    }
}

pub(crate) fn date_to_pb(date: NaiveDate) -> pb::Date {
    use chrono::Datelike;
    pb::Date {
        year: date.year(),
        month: date.month(),
        day: date.day(),
    }
}

/// The calendar date of a wire date; `None` when it is not a real date.
pub(crate) fn date_from_pb(date: &pb::Date) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(date.year, date.month, date.day)
}

pub(crate) fn details_to_pb(details: &Details) -> pb::CohortDetails {
    pb::CohortDetails {
        name: details.name.as_str().to_owned(),
        kind: kind_to_pb(details.kind) as i32,
        capacity: details.capacity.get(),
        starts_on: details.dates.start().map(date_to_pb),
        ends_on: details.dates.end().map(date_to_pb),
        time_zone: details.time_zone.name().to_owned(),
        goal: details.goal.as_str().to_owned(),
    }
}

fn stored<T>(parsed: std::result::Result<T, InvalidValue>) -> Result<T> {
    parsed.map_err(|err| Error::Codec(format!("stored value no longer parses: {err}")))
}

fn stored_date(date: Option<&pb::Date>) -> Result<Option<NaiveDate>> {
    date.map(|d| date_from_pb(d).ok_or_else(|| Error::Codec(format!("bad date {d:?}"))))
        .transpose()
}

fn details_from_pb(details: Option<&pb::CohortDetails>) -> Result<Details> {
    let d = details.ok_or_else(|| Error::Codec("cohort details missing".into()))?;
    Ok(Details {
        name: CohortName::from_stored(d.name.as_str()),
        kind: kind_from_pb(d.kind)
            .ok_or_else(|| Error::Codec(format!("unknown cohort kind {}", d.kind)))?,
        capacity: stored(Capacity::parse(d.capacity))?,
        dates: stored(Dates::new(
            stored_date(d.starts_on.as_ref())?,
            stored_date(d.ends_on.as_ref())?,
        ))?,
        time_zone: stored(TimeZone::parse(&d.time_zone))?,
        goal: Goal::from_stored(d.goal.as_str()),
    })
}

fn message<M: prost::Message + Name>(message: M) -> NewEvent {
    NewEvent::from_message(&message)
}

/// One domain event as its protobuf message, in the stream of `cohort_id`.
pub(crate) fn encode_one(cohort_id: &str, event: &Event) -> NewEvent {
    let c = cohort_id.to_owned();
    match event {
        Event::CohortCreated {
            community_id,
            details,
            created_by,
        } => message(pb::CohortCreated {
            cohort_id: c,
            community_id: community_id.to_string(),
            details: Some(details_to_pb(details)),
            created_by: created_by.to_string(),
        }),
        Event::CohortUpdated {
            details,
            updated_by,
        } => message(pb::CohortUpdated {
            cohort_id: c,
            details: Some(details_to_pb(details)),
            updated_by: updated_by.to_string(),
        }),
        Event::CohortOpened { by } => message(pb::CohortOpened {
            cohort_id: c,
            opened_by: by.to_string(),
        }),
        Event::CohortStarted { by } => message(pb::CohortStarted {
            cohort_id: c,
            started_by: by.to_string(),
        }),
        Event::CohortClosed { by } => message(pb::CohortClosed {
            cohort_id: c,
            closed_by: by.to_string(),
        }),
        Event::CohortGraduated { by } => message(pb::CohortGraduated {
            cohort_id: c,
            graduated_by: by.to_string(),
        }),
        Event::CohortArchived { by } => message(pb::CohortArchived {
            cohort_id: c,
            archived_by: by.to_string(),
        }),
        Event::FacilitatorAssigned {
            member_id,
            assigned_by,
        } => message(pb::FacilitatorAssigned {
            cohort_id: c,
            member_id: member_id.to_string(),
            assigned_by: assigned_by.to_string(),
        }),
        Event::FacilitatorRemoved {
            member_id,
            removed_by,
        } => message(pb::FacilitatorRemoved {
            cohort_id: c,
            member_id: member_id.to_string(),
            removed_by: removed_by.to_string(),
        }),
        Event::MemberJoinedCohort {
            member_id,
            seated_by,
        } => message(pb::MemberJoinedCohort {
            cohort_id: c,
            member_id: member_id.to_string(),
            seated_by: seated_by_to_pb(*seated_by) as i32,
        }),
        Event::MemberWaitlisted { member_id } => message(pb::MemberWaitlisted {
            cohort_id: c,
            member_id: member_id.to_string(),
        }),
        Event::WaitlistPromoted { member_id } => message(pb::WaitlistPromoted {
            cohort_id: c,
            member_id: member_id.to_string(),
        }),
        Event::MemberLeftCohort { member_id, place } => message(pb::MemberLeftCohort {
            cohort_id: c,
            member_id: member_id.to_string(),
            place: place_to_pb(*place) as i32,
        }),
        Event::MemberRemovedFromCohort {
            member_id,
            place,
            removed_by,
        } => message(pb::MemberRemovedFromCohort {
            cohort_id: c,
            member_id: member_id.to_string(),
            place: place_to_pb(*place) as i32,
            removed_by: removed_by.to_string(),
        }),
        Event::MemberReleased {
            member_id,
            place,
            departure,
        } => message(pb::MemberReleased {
            cohort_id: c,
            member_id: member_id.to_string(),
            place: place_to_pb(*place) as i32,
            departure: departure_to_pb(*departure) as i32,
        }),
        Event::MemberInvited {
            member_id,
            invited_by,
            expires_at,
        } => message(pb::MemberInvited {
            cohort_id: c,
            member_id: member_id.to_string(),
            invited_by: invited_by.to_string(),
            expires_at: Some(timestamp(*expires_at)),
        }),
        Event::InvitationDeclined { member_id } => message(pb::InvitationDeclined {
            cohort_id: c,
            member_id: member_id.to_string(),
        }),
        Event::InvitationRevoked {
            member_id,
            revoked_by,
        } => message(pb::InvitationRevoked {
            cohort_id: c,
            member_id: member_id.to_string(),
            revoked_by: revoked_by.to_string(),
        }),
        Event::InvitationExpired { member_id } => message(pb::InvitationExpired {
            cohort_id: c,
            member_id: member_id.to_string(),
        }),
        Event::SessionScheduled {
            session_id,
            series_id,
            occurrence,
            title,
            starts_at,
            duration,
            scheduled_by,
        } => message(pb::SessionScheduled {
            cohort_id: c,
            session_id: session_id.to_string(),
            series_id: series_id.map(|id| id.to_string()).unwrap_or_default(),
            occurrence: *occurrence,
            title: title.as_str().to_owned(),
            starts_at: Some(timestamp(*starts_at)),
            duration_minutes: duration.get(),
            scheduled_by: scheduled_by.to_string(),
        }),
        Event::SessionRescheduled {
            session_id,
            starts_at,
            duration,
            by,
        } => message(pb::SessionRescheduled {
            cohort_id: c,
            session_id: session_id.to_string(),
            starts_at: Some(timestamp(*starts_at)),
            duration_minutes: duration.get(),
            rescheduled_by: by.to_string(),
        }),
        Event::SessionCancelled { session_id, by } => message(pb::SessionCancelled {
            cohort_id: c,
            session_id: session_id.to_string(),
            cancelled_by: by.to_string(),
        }),
        Event::SessionRsvp {
            session_id,
            member_id,
            response,
        } => message(pb::SessionRsvp {
            cohort_id: c,
            session_id: session_id.to_string(),
            member_id: member_id.to_string(),
            response: rsvp_to_pb(*response) as i32,
        }),
        Event::AttendanceRecorded {
            session_id,
            present,
            recorded_by,
        } => message(pb::AttendanceRecorded {
            cohort_id: c,
            session_id: session_id.to_string(),
            present: present.iter().map(Uuid::to_string).collect(),
            recorded_by: recorded_by.to_string(),
        }),
    }
}

/// Decodes one stored cohort event into the domain.
pub(crate) fn decode_one(event: &RecordedEvent) -> Result<Event> {
    let t = event.event_type.as_str();
    Ok(if t == pb::CohortCreated::full_name() {
        let e: pb::CohortCreated = decode_payload(event)?;
        Event::CohortCreated {
            community_id: stored_id(&e.community_id)?,
            details: details_from_pb(e.details.as_ref())?,
            created_by: stored_id(&e.created_by)?,
        }
    } else if t == pb::CohortUpdated::full_name() {
        let e: pb::CohortUpdated = decode_payload(event)?;
        Event::CohortUpdated {
            details: details_from_pb(e.details.as_ref())?,
            updated_by: stored_id(&e.updated_by)?,
        }
    } else if t == pb::CohortOpened::full_name() {
        let e: pb::CohortOpened = decode_payload(event)?;
        Event::CohortOpened {
            by: stored_id(&e.opened_by)?,
        }
    } else if t == pb::CohortStarted::full_name() {
        let e: pb::CohortStarted = decode_payload(event)?;
        Event::CohortStarted {
            by: stored_id(&e.started_by)?,
        }
    } else if t == pb::CohortClosed::full_name() {
        let e: pb::CohortClosed = decode_payload(event)?;
        Event::CohortClosed {
            by: stored_id(&e.closed_by)?,
        }
    } else if t == pb::CohortGraduated::full_name() {
        let e: pb::CohortGraduated = decode_payload(event)?;
        Event::CohortGraduated {
            by: stored_id(&e.graduated_by)?,
        }
    } else if t == pb::CohortArchived::full_name() {
        let e: pb::CohortArchived = decode_payload(event)?;
        Event::CohortArchived {
            by: stored_id(&e.archived_by)?,
        }
    } else if t == pb::FacilitatorAssigned::full_name() {
        let e: pb::FacilitatorAssigned = decode_payload(event)?;
        Event::FacilitatorAssigned {
            member_id: stored_id(&e.member_id)?,
            assigned_by: stored_id(&e.assigned_by)?,
        }
    } else if t == pb::FacilitatorRemoved::full_name() {
        let e: pb::FacilitatorRemoved = decode_payload(event)?;
        Event::FacilitatorRemoved {
            member_id: stored_id(&e.member_id)?,
            removed_by: stored_id(&e.removed_by)?,
        }
    } else if t == pb::MemberJoinedCohort::full_name() {
        let e: pb::MemberJoinedCohort = decode_payload(event)?;
        Event::MemberJoinedCohort {
            member_id: stored_id(&e.member_id)?,
            seated_by: match pb::SeatedBy::try_from(e.seated_by) {
                Ok(pb::SeatedBy::SelfJoin) => SeatedBy::SelfJoin,
                Ok(pb::SeatedBy::Invitation) => SeatedBy::Invitation,
                _ => return Err(Error::Codec(format!("unknown seated_by {}", e.seated_by))),
            },
        }
    } else if t == pb::MemberWaitlisted::full_name() {
        let e: pb::MemberWaitlisted = decode_payload(event)?;
        Event::MemberWaitlisted {
            member_id: stored_id(&e.member_id)?,
        }
    } else if t == pb::WaitlistPromoted::full_name() {
        let e: pb::WaitlistPromoted = decode_payload(event)?;
        Event::WaitlistPromoted {
            member_id: stored_id(&e.member_id)?,
        }
    } else if t == pb::MemberLeftCohort::full_name() {
        let e: pb::MemberLeftCohort = decode_payload(event)?;
        Event::MemberLeftCohort {
            member_id: stored_id(&e.member_id)?,
            place: place_from_pb(e.place)?,
        }
    } else if t == pb::MemberRemovedFromCohort::full_name() {
        let e: pb::MemberRemovedFromCohort = decode_payload(event)?;
        Event::MemberRemovedFromCohort {
            member_id: stored_id(&e.member_id)?,
            place: place_from_pb(e.place)?,
            removed_by: stored_id(&e.removed_by)?,
        }
    } else if t == pb::MemberReleased::full_name() {
        let e: pb::MemberReleased = decode_payload(event)?;
        Event::MemberReleased {
            member_id: stored_id(&e.member_id)?,
            place: place_from_pb(e.place)?,
            departure: departure_from_pb(e.departure)?,
        }
    } else if t == pb::MemberInvited::full_name() {
        let e: pb::MemberInvited = decode_payload(event)?;
        Event::MemberInvited {
            member_id: stored_id(&e.member_id)?,
            invited_by: stored_id(&e.invited_by)?,
            expires_at: stored_time(e.expires_at.as_ref())?,
        }
    } else if t == pb::InvitationDeclined::full_name() {
        let e: pb::InvitationDeclined = decode_payload(event)?;
        Event::InvitationDeclined {
            member_id: stored_id(&e.member_id)?,
        }
    } else if t == pb::InvitationRevoked::full_name() {
        let e: pb::InvitationRevoked = decode_payload(event)?;
        Event::InvitationRevoked {
            member_id: stored_id(&e.member_id)?,
            revoked_by: stored_id(&e.revoked_by)?,
        }
    } else if t == pb::InvitationExpired::full_name() {
        let e: pb::InvitationExpired = decode_payload(event)?;
        Event::InvitationExpired {
            member_id: stored_id(&e.member_id)?,
        }
    } else if t == pb::SessionScheduled::full_name() {
        let e: pb::SessionScheduled = decode_payload(event)?;
        Event::SessionScheduled {
            session_id: stored_id(&e.session_id)?,
            series_id: stored_opt_id(&e.series_id)?,
            occurrence: e.occurrence,
            title: SessionTitle::from_stored(e.title),
            starts_at: stored_time(e.starts_at.as_ref())?,
            duration: stored(Minutes::parse(e.duration_minutes))?,
            scheduled_by: stored_id(&e.scheduled_by)?,
        }
    } else if t == pb::SessionRescheduled::full_name() {
        let e: pb::SessionRescheduled = decode_payload(event)?;
        Event::SessionRescheduled {
            session_id: stored_id(&e.session_id)?,
            starts_at: stored_time(e.starts_at.as_ref())?,
            duration: stored(Minutes::parse(e.duration_minutes))?,
            by: stored_id(&e.rescheduled_by)?,
        }
    } else if t == pb::SessionCancelled::full_name() {
        let e: pb::SessionCancelled = decode_payload(event)?;
        Event::SessionCancelled {
            session_id: stored_id(&e.session_id)?,
            by: stored_id(&e.cancelled_by)?,
        }
    } else if t == pb::SessionRsvp::full_name() {
        let e: pb::SessionRsvp = decode_payload(event)?;
        Event::SessionRsvp {
            session_id: stored_id(&e.session_id)?,
            member_id: stored_id(&e.member_id)?,
            response: rsvp_from_pb(e.response)
                .ok_or_else(|| Error::Codec(format!("unknown rsvp {}", e.response)))?,
        }
    } else if t == pb::AttendanceRecorded::full_name() {
        let e: pb::AttendanceRecorded = decode_payload(event)?;
        Event::AttendanceRecorded {
            session_id: stored_id(&e.session_id)?,
            present: e
                .present
                .iter()
                .map(|id| stored_id(id))
                .collect::<Result<_>>()?,
            recorded_by: stored_id(&e.recorded_by)?,
        }
    } else {
        return Err(Error::Codec(format!("unknown cohorts event type {t}")));
    })
}

#[async_trait]
impl Codec<CohortDecider> for CohortCodec {
    async fn encode(&self, stream_id: &str, events: &[Event]) -> Result<Vec<NewEvent>> {
        Ok(events.iter().map(|e| encode_one(stream_id, e)).collect())
    }

    async fn decode(&self, events: &[RecordedEvent]) -> Result<Vec<Event>> {
        events.iter().map(decode_one).collect()
    }

    fn erased_subjects(&self, _stream_id: &str, _events: &[Event]) -> Vec<String> {
        Vec::new()
    }
}
