//! What someone asks of a cohort. Arguments are parsed into domain values, and what the cohorts
//! service knows of the community (the actor's role, an invitee's role) comes in with the command
//! together with the clock, so that deciding stays pure.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::values::{CommunityRole, Departure, Details, Minutes, Recurrence, Rsvp, SessionTitle};

/// A request to change a cohort, made by someone at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The person asking (the subject of their token), or [`SYSTEM`] for the service's own work.
    pub actor: Uuid,
    /// The actor's role in the cohort's community; `None` when not an active member.
    pub actor_role: Option<CommunityRole>,
    /// The time of the request; the only clock the decider reads.
    pub now: DateTime<Utc>,
    /// What they ask for.
    pub action: Action,
}

/// The actor of commands the service issues itself (expiring invitations, releasing members
/// who left the community).
pub const SYSTEM: Uuid = Uuid::nil();

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the cohort in a community (owners, hosts and coaches); the creator becomes its
    /// first facilitator.
    CreateCohort {
        community_id: Uuid,
        details: Details,
    },
    /// Change name, capacity, dates, time zone and goal; the kind stays (managers).
    UpdateCohort { details: Details },
    /// Draft → open: members may join by themselves (managers).
    OpenCohort,
    /// Draft or open → running; needs a facilitator (managers).
    StartCohort,
    /// Open or running → closed (managers).
    CloseCohort,
    /// Running or closed → graduated (managers).
    GraduateCohort,
    /// Draft, closed or graduated → archived (managers).
    ArchiveCohort,
    /// Make an owner, host or coach of the community a facilitator (managers).
    AssignFacilitator {
        member_id: Uuid,
        /// The member's role in the community; `None` when not an active member.
        member_role: Option<CommunityRole>,
    },
    /// Stop someone facilitating; a running cohort keeps at least one (managers).
    RemoveFacilitator { member_id: Uuid },
    /// Take a seat, or a place on the waitlist when the seats are taken (the actor).
    JoinCohort,
    /// Hold a seat for a member until `expires_at` (managers).
    InviteMember {
        member_id: Uuid,
        member_role: Option<CommunityRole>,
        expires_at: DateTime<Utc>,
    },
    /// Take the seat the actor's invitation holds.
    AcceptInvitation,
    /// Give back the seat the actor's invitation holds.
    DeclineInvitation,
    /// Withdraw a member's invitation (managers).
    RevokeInvitation { member_id: Uuid },
    /// Record invitations past their expiry, handing their seats on (the service's sweeper).
    ExpireInvitations,
    /// Give up a seat or a waitlist place (the actor).
    LeaveCohort,
    /// Take a seat, waitlist place or invitation from a member (managers).
    RemoveMember { member_id: Uuid },
    /// The member left the community: take every place they hold (the service, on membership's
    /// events). Nothing to take is not an error.
    ReleaseMember {
        member_id: Uuid,
        departure: Departure,
    },
    /// Schedule a session, or a weekly series of them whose further ids derive from
    /// `session_id` (managers).
    ScheduleSession {
        session_id: Uuid,
        title: SessionTitle,
        starts_at: DateTime<Utc>,
        duration: Minutes,
        recurrence: Recurrence,
    },
    /// Move a session that has not started (managers).
    RescheduleSession {
        session_id: Uuid,
        starts_at: DateTime<Utc>,
        duration: Minutes,
    },
    /// Cancel a session that has not started (managers).
    CancelSession { session_id: Uuid },
    /// Answer a session invitation (seated members and facilitators).
    RespondToSession { session_id: Uuid, response: Rsvp },
    /// Record who attended a session that has started (managers). Replaces an earlier record.
    RecordAttendance {
        session_id: Uuid,
        present: Vec<Uuid>,
    },
}
