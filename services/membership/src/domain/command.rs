//! What someone asks of a community. Arguments are already parsed into domain values; the
//! clock comes in with the command so that deciding stays pure.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::role::Role;
use super::values::{Answer, CommunityName, Description, Language, Profile, Reason};

/// A request to change a community, made by an authenticated person at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The person asking (the subject of their token).
    pub actor: Uuid,
    /// The time of the request; the only clock the decider reads.
    pub now: DateTime<Utc>,
    /// What they ask for.
    pub action: Action,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the community, with the actor as founder and first owner.
    CreateCommunity {
        /// The community's name.
        name: CommunityName,
        /// The community's description.
        description: Description,
        /// The founder's profile.
        founder: Profile,
    },
    /// Change the community's name and description (owners and hosts).
    UpdateCommunity {
        /// The new name.
        name: CommunityName,
        /// The new description.
        description: Description,
    },
    /// Set the language the community writes in (owners and hosts).
    SetLanguage {
        /// The language; empty for none.
        language: Language,
    },
    /// Archive the community (owners).
    ArchiveCommunity,
    /// Change the actor's own profile.
    UpdateProfile {
        /// The new profile.
        profile: Profile,
    },
    /// Give a member a role in place of the one they hold.
    AssignRole {
        /// The member.
        member_id: Uuid,
        /// The role to give.
        role: Role,
    },
    /// Take a role from a member, leaving them a plain member.
    RevokeRole {
        /// The member.
        member_id: Uuid,
        /// The role to take; it must be the one they hold.
        role: Role,
    },
    /// Create an invitation (owners, hosts and coaches).
    CreateInvitation {
        /// The new invitation's id, chosen by the caller.
        invitation_id: Uuid,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// How many members may join with it.
        max_uses: u32,
    },
    /// Join the community with an invitation.
    AcceptInvitation {
        /// The invitation.
        invitation_id: Uuid,
        /// The actor's profile in the community.
        profile: Profile,
    },
    /// Revoke an invitation (owners, hosts, or its creator).
    RevokeInvitation {
        /// The invitation.
        invitation_id: Uuid,
    },
    /// Ask to join the community.
    RequestToJoin {
        /// The actor's profile in the community.
        profile: Profile,
        /// Answers to the screening questions.
        answers: Vec<Answer>,
    },
    /// Approve a pending join request (owners, hosts and moderators).
    ApproveJoinRequest {
        /// The person who asked.
        member_id: Uuid,
    },
    /// Reject a pending join request (owners, hosts and moderators).
    RejectJoinRequest {
        /// The person who asked.
        member_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Leave the community.
    Leave,
    /// Remove a member of lower rank.
    RemoveMember {
        /// The member.
        member_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Ban someone, member or not.
    BanMember {
        /// The person.
        member_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Erase someone's personal data in the community (themselves, or anyone by an owner).
    EraseMember {
        /// The person.
        member_id: Uuid,
    },
    /// Lift a ban (owners, hosts and moderators).
    UnbanMember {
        /// The person banned.
        member_id: Uuid,
    },
    /// Withdraw the actor's own pending join request.
    WithdrawJoinRequest,
}
