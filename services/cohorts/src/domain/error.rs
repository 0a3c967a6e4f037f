//! Why a command was refused. Each refusal has its own variant and a lowercase message that says
//! what is wrong and, where there is one, what to do instead; [`DomainError::kind`] sorts them
//! into the few classes the gRPC layer maps to status codes.

use uuid::Uuid;

use super::values::{Kind, MAX_INVITATION_DAYS, MAX_WEEKLY_OCCURRENCES, Place, Status};

pub use kith_platform::command::ErrorKind;

/// A command refused by the decider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The cohort has not been created.
    #[error("cohort not found")]
    CohortNotFound,
    /// The cohort has been created already.
    #[error("cohort already exists")]
    CohortExists,
    /// The cohort is archived and takes no more commands.
    #[error("the cohort is archived and takes no more commands")]
    CohortArchived,
    /// The caller is not an active member of the community (who they are: permission denied).
    #[error("you are not a member of the community")]
    CallerNotAMember,
    /// The member acted on is not an active member of the community (the community's state: a
    /// failed precondition).
    #[error("{0} is not a member of the community")]
    NotACommunityMember(Uuid),
    /// The actor lacks the authority; the message says who may do it.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The cohort is closed or graduated, and this needs a draft, open or running one.
    #[error("the cohort is {}; only a draft, open or running cohort allows this", status_name(*.0))]
    CohortEnded(Status),
    /// An update tried to change the cohort's kind.
    #[error(
        "a cohort's kind cannot change (it is a {} cohort, not a {} one); create a new cohort instead",
        kind_name(*from),
        kind_name(*to)
    )]
    KindChange { from: Kind, to: Kind },
    /// An update tried to shrink the cohort below the seats taken and held.
    #[error(
        "a capacity of {capacity} is below the {taken} seats taken or held by invitations; remove members or revoke invitations first"
    )]
    CapacityBelowSeatsTaken { capacity: u32, taken: u32 },
    /// The cohort cannot move from its status to the one asked for.
    #[error("a {} cohort cannot become {}", status_name(*from), status_name(*to))]
    InvalidTransition { from: Status, to: Status },
    /// Only a draft, closed or graduated cohort can be archived.
    #[error("the cohort is {}; close it before archiving it", status_name(*.0))]
    NotClosed(Status),
    /// The cohort is in the status asked for already.
    #[error("the cohort is already {}", status_name(*.0))]
    AlreadyInStatus(Status),
    /// A cohort cannot start without a facilitator.
    #[error("a cohort needs a facilitator to start; assign one first")]
    NoFacilitator,
    /// The member's community role does not allow facilitating.
    #[error("{0} may not facilitate; only the community's owners, hosts and coaches may")]
    NotEligibleFacilitator(Uuid),
    /// The member facilitates the cohort already.
    #[error("{0} already facilitates the cohort")]
    AlreadyFacilitator(Uuid),
    /// The member does not facilitate the cohort.
    #[error("{0} does not facilitate the cohort")]
    NotAFacilitator(Uuid),
    /// A running cohort keeps at least one facilitator.
    #[error("a running cohort keeps at least one facilitator; assign another one first")]
    LastFacilitator,
    /// A facilitator-to-be holds a seat, waitlist place or invitation.
    #[error(
        "{member} holds {} in the cohort, and facilitators take no seat; remove them from it first",
        place_name(*place)
    )]
    HoldsPlace { member: Uuid, place: Place },
    /// A facilitator cannot take, wait for or be invited to a seat.
    #[error("{0} facilitates the cohort, and facilitators take no seat")]
    IsFacilitator(Uuid),
    /// Facilitators leave the cohort through removal as facilitator, not member removal.
    #[error("{0} facilitates the cohort; remove them as a facilitator instead")]
    RemoveFacilitatorInstead(Uuid),
    /// The member holds a seat or waitlist place already.
    #[error("{member} already holds {} in the cohort", place_name(*place))]
    AlreadyInCohort { member: Uuid, place: Place },
    /// The member holds a pending invitation already.
    #[error("{0} is already invited to the cohort")]
    AlreadyInvited(Uuid),
    /// Self-joins need an open cohort.
    #[error("the cohort is not open; it is {}", status_name(*.0))]
    NotOpen(Status),
    /// Every seat is taken or held by an invitation.
    #[error("all {capacity} seats are taken or held by invitations")]
    CohortFull { capacity: u32 },
    /// An invitation's expiry is not after the time of the request.
    #[error("an invitation must expire in the future")]
    ExpiryNotInFuture,
    /// An invitation's expiry is too far ahead.
    #[error("an invitation may expire at most {} days ahead", MAX_INVITATION_DAYS)]
    ExpiryTooFar,
    /// The member has no pending invitation.
    #[error("{0} has no pending invitation to the cohort")]
    NoInvitation(Uuid),
    /// The member's invitation passed its expiry.
    #[error("the invitation of {0} has expired; a facilitator may invite them again")]
    InvitationExpired(Uuid),
    /// The member holds no seat (nor, where that counts, waitlist place or invitation).
    #[error("{0} holds no seat in the cohort")]
    NotInCohort(Uuid),
    /// A session must be scheduled, or moved, to a time after the request.
    #[error("a session must start in the future")]
    SessionInPast,
    /// A weekly series would run past the last instant the calendar can represent.
    #[error("the sessions would start too far in the future")]
    SessionOutOfRange,
    /// A weekly series has too few or too many occurrences.
    #[error("a weekly series has 2 to {max} occurrences, got {}", .0, max = MAX_WEEKLY_OCCURRENCES)]
    InvalidOccurrences(u32),
    /// A session (of a series, perhaps a later occurrence) with that id exists already.
    #[error("session {0} already exists")]
    SessionExists(Uuid),
    /// No session has that id.
    #[error("session {0} not found")]
    SessionNotFound(Uuid),
    /// The session was cancelled.
    #[error("session {0} was cancelled")]
    SessionCancelled(Uuid),
    /// The session has started, so it can no longer be moved, cancelled or answered.
    #[error("session {0} has started already")]
    SessionStarted(Uuid),
    /// Attendance is recorded once the session has started.
    #[error("session {0} has not started yet; record attendance once it has")]
    SessionNotStarted(Uuid),
}

impl DomainError {
    /// Whose standing in the community the refusal rests on (`actor` when it is the actor's
    /// authority), if it rests on any: the service learns it from membership's events a moment
    /// after membership records them.
    pub fn membership_subject(&self, actor: Uuid) -> Option<Uuid> {
        match self {
            Self::NotACommunityMember(member) | Self::NotEligibleFacilitator(member) => {
                Some(*member)
            }
            Self::Forbidden(_) | Self::CallerNotAMember => Some(actor),
            _ => None,
        }
    }

    /// The class of the refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::CohortNotFound | Self::NoInvitation(_) | Self::SessionNotFound(_) => {
                ErrorKind::NotFound
            }
            Self::CohortExists
            | Self::AlreadyInStatus(_)
            | Self::AlreadyFacilitator(_)
            | Self::AlreadyInCohort { .. }
            | Self::AlreadyInvited(_)
            | Self::SessionExists(_) => ErrorKind::AlreadyExists,
            Self::Forbidden(_) | Self::CallerNotAMember => ErrorKind::PermissionDenied,
            Self::ExpiryNotInFuture
            | Self::ExpiryTooFar
            | Self::SessionInPast
            | Self::SessionOutOfRange
            | Self::InvalidOccurrences(_) => ErrorKind::InvalidArgument,
            Self::CohortArchived
            | Self::NotACommunityMember(_)
            | Self::CohortEnded(_)
            | Self::KindChange { .. }
            | Self::CapacityBelowSeatsTaken { .. }
            | Self::InvalidTransition { .. }
            | Self::NotClosed(_)
            | Self::NoFacilitator
            | Self::NotEligibleFacilitator(_)
            | Self::NotAFacilitator(_)
            | Self::LastFacilitator
            | Self::HoldsPlace { .. }
            | Self::IsFacilitator(_)
            | Self::RemoveFacilitatorInstead(_)
            | Self::NotOpen(_)
            | Self::CohortFull { .. }
            | Self::InvitationExpired(_)
            | Self::NotInCohort(_)
            | Self::SessionCancelled(_)
            | Self::SessionStarted(_)
            | Self::SessionNotStarted(_) => ErrorKind::FailedPrecondition,
        }
    }
}

impl DomainError {
    /// The stable, machine-readable name of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CohortNotFound => "COHORT_NOT_FOUND",
            Self::CohortExists => "COHORT_EXISTS",
            Self::CohortArchived => "COHORT_ARCHIVED",
            Self::CallerNotAMember => "NOT_A_MEMBER",
            Self::NotACommunityMember(_) => "MEMBER_NOT_ACTIVE",
            Self::Forbidden(_) => "NOT_PERMITTED",
            Self::CohortEnded(_) => "COHORT_ENDED",
            Self::KindChange { .. } => "KIND_IMMUTABLE",
            Self::CapacityBelowSeatsTaken { .. } => "CAPACITY_BELOW_SEATS_TAKEN",
            Self::InvalidTransition { .. } => "INVALID_STATUS_TRANSITION",
            Self::NotClosed(_) => "COHORT_NOT_CLOSED",
            Self::AlreadyInStatus(_) => "ALREADY_IN_STATUS",
            Self::NoFacilitator => "NO_FACILITATOR",
            Self::NotEligibleFacilitator(_) => "NOT_ELIGIBLE_FACILITATOR",
            Self::AlreadyFacilitator(_) => "ALREADY_FACILITATOR",
            Self::NotAFacilitator(_) => "NOT_A_FACILITATOR",
            Self::LastFacilitator => "LAST_FACILITATOR",
            Self::HoldsPlace { .. } => "HOLDS_PLACE",
            Self::IsFacilitator(_) => "IS_FACILITATOR",
            Self::RemoveFacilitatorInstead(_) => "REMOVE_FACILITATOR_INSTEAD",
            Self::AlreadyInCohort { .. } => "ALREADY_IN_COHORT",
            Self::AlreadyInvited(_) => "ALREADY_INVITED",
            Self::NotOpen(_) => "COHORT_NOT_OPEN",
            Self::CohortFull { .. } => "COHORT_FULL",
            Self::ExpiryNotInFuture => "EXPIRY_NOT_IN_FUTURE",
            Self::ExpiryTooFar => "EXPIRY_TOO_FAR",
            Self::NoInvitation(_) => "INVITATION_NOT_FOUND",
            Self::InvitationExpired(_) => "INVITATION_EXPIRED",
            Self::NotInCohort(_) => "NOT_IN_COHORT",
            Self::SessionInPast => "SESSION_IN_PAST",
            Self::SessionOutOfRange => "SESSION_OUT_OF_RANGE",
            Self::InvalidOccurrences(_) => "INVALID_OCCURRENCES",
            Self::SessionExists(_) => "SESSION_EXISTS",
            Self::SessionNotFound(_) => "SESSION_NOT_FOUND",
            Self::SessionCancelled(_) => "SESSION_CANCELLED",
            Self::SessionStarted(_) => "SESSION_STARTED",
            Self::SessionNotStarted(_) => "SESSION_NOT_STARTED",
        }
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Draft => "draft",
        Status::Open => "open",
        Status::Running => "running",
        Status::Closed => "closed",
        Status::Graduated => "graduated",
        Status::Archived => "archived",
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Mastermind => "mastermind",
        Kind::Coaching => "coaching",
        Kind::Course => "course",
        Kind::Circle => "circle",
    }
}

fn place_name(place: Place) -> &'static str {
    match place {
        Place::Seat => "a seat",
        Place::Waitlist => "a waitlist place",
        Place::Invitation => "an invitation",
        Place::Facilitator => "a facilitator's place",
    }
}
