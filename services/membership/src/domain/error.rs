//! Why a command was refused. Each refusal has its own variant and a lowercase message that says
//! what is wrong; [`DomainError::kind`] sorts them into the few classes the gRPC layer maps to
//! status codes.

use uuid::Uuid;

pub use kith_platform::command::ErrorKind;

/// A command refused by the decider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The community has not been created.
    #[error("community not found")]
    CommunityNotFound,
    /// The community has been created already.
    #[error("community already exists")]
    CommunityExists,
    /// The community is archived and takes no more commands.
    #[error("community is archived")]
    CommunityArchived,
    /// The caller is not an active member (who they are: permission denied).
    #[error("you are not a member of the community")]
    CallerNotAMember,
    /// The member acted on is not an active member (the community's state: a failed
    /// precondition).
    #[error("{0} is not a member of the community")]
    NotAMember(Uuid),
    /// The actor is an active member already.
    #[error("already a member of the community")]
    AlreadyMember,
    /// Another active member uses the handle.
    #[error("handle {0} is already taken")]
    HandleTaken(String),
    /// The actor lacks the authority; the message says who may do it.
    #[error("{0}")]
    Forbidden(String),
    /// The actor is banned from the community.
    #[error("banned from the community")]
    Banned,
    /// The person is not banned.
    #[error("{0} is not banned from the community")]
    NotBanned(Uuid),
    /// The person is banned already.
    #[error("already banned from the community")]
    AlreadyBanned,
    /// The person's data was erased already and nothing new was recorded since.
    #[error("already erased")]
    AlreadyErased,
    /// The command would leave the community without an active owner; the message says which
    /// command and what to do first.
    #[error("{0}")]
    LastOwner(&'static str),
    /// The member holds that role already.
    #[error("the member already has that role")]
    RoleUnchanged,
    /// The member does not hold the role to revoke.
    #[error("the member does not hold that role")]
    RoleNotHeld,
    /// Plain membership is not a role that can be revoked.
    #[error("plain membership cannot be revoked; remove the member instead")]
    MembershipNotRevocable,
    /// No invitation has that id.
    #[error("invitation not found")]
    InvitationNotFound,
    /// An invitation with that id exists already.
    #[error("invitation already exists")]
    InvitationExists,
    /// The invitation has expired.
    #[error("invitation has expired")]
    InvitationExpired,
    /// The invitation has been used as many times as it allows.
    #[error("invitation has been used up")]
    InvitationExhausted,
    /// The invitation was revoked.
    #[error("invitation was revoked")]
    InvitationRevoked,
    /// The person has no pending join request.
    #[error("join request not found")]
    JoinRequestNotFound,
    /// The actor has a pending join request already.
    #[error("a join request is already pending")]
    JoinRequestPending,
    /// An invitation's expiry is out of range; the message says the range.
    #[error("invalid expiry: {0}")]
    InvalidExpiry(String),
    /// An invitation's use limit is out of range; the message says the range.
    #[error("invalid max uses: {0}")]
    InvalidMaxUses(String),
    /// A join request carries more answers than allowed.
    #[error("too many answers: at most {max} are allowed, got {got}")]
    TooManyAnswers {
        /// The number of answers given.
        got: usize,
        /// The most allowed.
        max: usize,
    },
}

impl DomainError {
    /// The class of the refusal.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::CommunityNotFound | Self::InvitationNotFound | Self::JoinRequestNotFound => {
                ErrorKind::NotFound
            }
            Self::CommunityExists
            | Self::AlreadyMember
            | Self::HandleTaken(_)
            | Self::AlreadyBanned
            | Self::InvitationExists
            | Self::JoinRequestPending => ErrorKind::AlreadyExists,
            Self::CallerNotAMember | Self::Forbidden(_) | Self::Banned => {
                ErrorKind::PermissionDenied
            }
            Self::InvalidExpiry(_) | Self::InvalidMaxUses(_) | Self::TooManyAnswers { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::CommunityArchived
            | Self::NotAMember(_)
            | Self::AlreadyErased
            | Self::NotBanned(_)
            | Self::LastOwner(_)
            | Self::RoleUnchanged
            | Self::RoleNotHeld
            | Self::MembershipNotRevocable
            | Self::InvitationExpired
            | Self::InvitationExhausted
            | Self::InvitationRevoked => ErrorKind::FailedPrecondition,
        }
    }

    /// The stable, machine-readable name of the refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CommunityNotFound => "COMMUNITY_NOT_FOUND",
            Self::CommunityExists => "COMMUNITY_EXISTS",
            Self::CommunityArchived => "COMMUNITY_ARCHIVED",
            Self::CallerNotAMember => "NOT_A_MEMBER",
            Self::NotAMember(_) => "MEMBER_NOT_ACTIVE",
            Self::AlreadyMember => "ALREADY_A_MEMBER",
            Self::HandleTaken(_) => "HANDLE_TAKEN",
            Self::Forbidden(_) => "NOT_PERMITTED",
            Self::Banned => "BANNED",
            Self::AlreadyBanned => "ALREADY_BANNED",
            Self::NotBanned(_) => "NOT_BANNED",
            Self::AlreadyErased => "ALREADY_ERASED",
            Self::LastOwner(_) => "LAST_OWNER",
            Self::RoleUnchanged => "ROLE_UNCHANGED",
            Self::RoleNotHeld => "ROLE_NOT_HELD",
            Self::MembershipNotRevocable => "ROLE_NOT_REVOCABLE",
            Self::InvitationNotFound => "INVITATION_NOT_FOUND",
            Self::InvitationExists => "INVITATION_EXISTS",
            Self::InvitationExpired => "INVITATION_EXPIRED",
            Self::InvitationExhausted => "INVITATION_EXHAUSTED",
            Self::InvitationRevoked => "INVITATION_REVOKED",
            Self::JoinRequestNotFound => "JOIN_REQUEST_NOT_FOUND",
            Self::JoinRequestPending => "JOIN_REQUEST_PENDING",
            Self::InvalidExpiry(_) => "INVALID_EXPIRY",
            Self::InvalidMaxUses(_) => "INVALID_MAX_USES",
            Self::TooManyAnswers { .. } => "TOO_MANY_ANSWERS",
        }
    }

    /// A [`DomainError::Forbidden`] with the given message.
    pub(crate) fn forbidden(message: &str) -> Self {
        Self::Forbidden(message.to_owned())
    }
}
