//! The facts of a cohort's stream. They mirror the messages of
//! `proto/kith/cohorts/v1/events.proto`; the cohort id is the stream id and is not repeated.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{Departure, Details, Minutes, Place, Rsvp, SessionTitle};

/// How someone came to hold a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeatedBy {
    /// Joined an open cohort with a free seat.
    SelfJoin,
    /// Accepted a facilitator's invitation.
    Invitation,
}

/// Something that happened to a cohort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    CohortCreated {
        community_id: Uuid,
        details: Details,
        created_by: Uuid,
    },
    CohortUpdated {
        details: Details,
        updated_by: Uuid,
    },
    CohortOpened {
        by: Uuid,
    },
    CohortStarted {
        by: Uuid,
    },
    CohortClosed {
        by: Uuid,
    },
    CohortGraduated {
        by: Uuid,
    },
    CohortArchived {
        by: Uuid,
    },
    FacilitatorAssigned {
        member_id: Uuid,
        assigned_by: Uuid,
    },
    FacilitatorRemoved {
        member_id: Uuid,
        removed_by: Uuid,
    },
    /// Someone took a free seat.
    MemberJoinedCohort {
        member_id: Uuid,
        seated_by: SeatedBy,
    },
    /// Someone joined a full cohort and waits, last in line.
    MemberWaitlisted {
        member_id: Uuid,
    },
    /// A seat freed and the first on the waitlist took it.
    WaitlistPromoted {
        member_id: Uuid,
    },
    /// Someone gave up their seat or waitlist place.
    MemberLeftCohort {
        member_id: Uuid,
        place: Place,
    },
    /// A manager took someone's seat, waitlist place or invitation.
    MemberRemovedFromCohort {
        member_id: Uuid,
        place: Place,
        removed_by: Uuid,
    },
    /// The member left the community, and with it this place in the cohort.
    MemberReleased {
        member_id: Uuid,
        place: Place,
        departure: Departure,
    },
    /// A seat is held for the member until `expires_at`.
    MemberInvited {
        member_id: Uuid,
        invited_by: Uuid,
        expires_at: DateTime<Utc>,
    },
    InvitationDeclined {
        member_id: Uuid,
    },
    InvitationRevoked {
        member_id: Uuid,
        revoked_by: Uuid,
    },
    /// The invitation passed its expiry unanswered; its seat is free again.
    InvitationExpired {
        member_id: Uuid,
    },
    SessionScheduled {
        session_id: Uuid,
        /// The id of the first session of a weekly series; `None` for a one-off.
        series_id: Option<Uuid>,
        /// 1-based place in its series (1 for a one-off).
        occurrence: u32,
        title: SessionTitle,
        starts_at: DateTime<Utc>,
        duration: Minutes,
        scheduled_by: Uuid,
    },
    SessionRescheduled {
        session_id: Uuid,
        starts_at: DateTime<Utc>,
        duration: Minutes,
        by: Uuid,
    },
    SessionCancelled {
        session_id: Uuid,
        by: Uuid,
    },
    SessionRsvp {
        session_id: Uuid,
        member_id: Uuid,
        response: Rsvp,
    },
    AttendanceRecorded {
        session_id: Uuid,
        present: Vec<Uuid>,
        recorded_by: Uuid,
    },
}

impl Event {
    /// The member whose place in the cohort the event may change, if any.
    pub fn member(&self) -> Option<Uuid> {
        match self {
            Self::FacilitatorAssigned { member_id, .. }
            | Self::FacilitatorRemoved { member_id, .. }
            | Self::MemberJoinedCohort { member_id, .. }
            | Self::MemberWaitlisted { member_id }
            | Self::WaitlistPromoted { member_id }
            | Self::MemberLeftCohort { member_id, .. }
            | Self::MemberRemovedFromCohort { member_id, .. }
            | Self::MemberReleased { member_id, .. }
            | Self::MemberInvited { member_id, .. }
            | Self::InvitationDeclined { member_id }
            | Self::InvitationRevoked { member_id, .. }
            | Self::InvitationExpired { member_id } => Some(*member_id),
            _ => None,
        }
    }

    /// The event's protobuf message name (without the package).
    pub fn name(&self) -> &'static str {
        match self {
            Self::CohortCreated { .. } => "CohortCreated",
            Self::CohortUpdated { .. } => "CohortUpdated",
            Self::CohortOpened { .. } => "CohortOpened",
            Self::CohortStarted { .. } => "CohortStarted",
            Self::CohortClosed { .. } => "CohortClosed",
            Self::CohortGraduated { .. } => "CohortGraduated",
            Self::CohortArchived { .. } => "CohortArchived",
            Self::FacilitatorAssigned { .. } => "FacilitatorAssigned",
            Self::FacilitatorRemoved { .. } => "FacilitatorRemoved",
            Self::MemberJoinedCohort { .. } => "MemberJoinedCohort",
            Self::MemberWaitlisted { .. } => "MemberWaitlisted",
            Self::WaitlistPromoted { .. } => "WaitlistPromoted",
            Self::MemberLeftCohort { .. } => "MemberLeftCohort",
            Self::MemberRemovedFromCohort { .. } => "MemberRemovedFromCohort",
            Self::MemberReleased { .. } => "MemberReleased",
            Self::MemberInvited { .. } => "MemberInvited",
            Self::InvitationDeclined { .. } => "InvitationDeclined",
            Self::InvitationRevoked { .. } => "InvitationRevoked",
            Self::InvitationExpired { .. } => "InvitationExpired",
            Self::SessionScheduled { .. } => "SessionScheduled",
            Self::SessionRescheduled { .. } => "SessionRescheduled",
            Self::SessionCancelled { .. } => "SessionCancelled",
            Self::SessionRsvp { .. } => "SessionRsvp",
            Self::AttendanceRecorded { .. } => "AttendanceRecorded",
        }
    }
}
