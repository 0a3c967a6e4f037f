//! The facts of a community's stream, after personal fields were unsealed. They mirror the
//! messages of `proto/kith/membership/v1/events.proto`; the community id is the stream id and so
//! is not repeated here. A profile that could not be unsealed (its member was erased) is `None`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::role::{JoinPath, Role};
use super::values::{Answer, CommunityName, Description, Language, Profile, Reason};

/// Something that happened to a community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The community was created; its founder joins as first owner in the same append.
    CommunityCreated {
        /// The community's name.
        name: CommunityName,
        /// The community's description.
        description: Description,
        /// The founder.
        created_by: Uuid,
    },
    /// The community's name or description changed.
    CommunityUpdated {
        /// The new name.
        name: CommunityName,
        /// The new description.
        description: Description,
        /// Who changed it.
        updated_by: Uuid,
    },
    /// The language the community writes in changed.
    CommunityLanguageSet {
        /// The new language; empty for none.
        language: Language,
        /// Who set it.
        set_by: Uuid,
    },
    /// The community was archived; it takes no more commands.
    CommunityArchived {
        /// Who archived it.
        archived_by: Uuid,
    },
    /// Someone became an active member.
    MemberJoined {
        /// The new member.
        member_id: Uuid,
        /// The role they start with.
        role: Role,
        /// How they came in.
        path: JoinPath,
        /// Their profile; `None` once they were erased.
        profile: Option<Profile>,
        /// The invitation they accepted, when `path` is [`JoinPath::Invitation`].
        invitation_id: Option<Uuid>,
    },
    /// A member changed their profile.
    ProfileUpdated {
        /// The member.
        member_id: Uuid,
        /// The new profile; `None` once they were erased.
        profile: Option<Profile>,
    },
    /// A member was given a role in place of the one they held.
    RoleAssigned {
        /// The member.
        member_id: Uuid,
        /// The role they hold now.
        role: Role,
        /// The role they held before.
        previous_role: Role,
        /// Who assigned it.
        assigned_by: Uuid,
    },
    /// A role was taken from a member, who is a plain member afterwards.
    RoleRevoked {
        /// The member.
        member_id: Uuid,
        /// The role taken away.
        role: Role,
        /// Who took it.
        revoked_by: Uuid,
    },
    /// An invitation was created.
    InvitationCreated {
        /// The invitation.
        invitation_id: Uuid,
        /// Who created it.
        created_by: Uuid,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// How many members may join with it.
        max_uses: u32,
    },
    /// An invitation was revoked; it no longer lets anyone in.
    InvitationRevoked {
        /// The invitation.
        invitation_id: Uuid,
        /// Who revoked it.
        revoked_by: Uuid,
    },
    /// Someone asked to join.
    JoinRequested {
        /// The person asking.
        member_id: Uuid,
        /// Their profile; `None` once they were erased.
        profile: Option<Profile>,
        /// Their answers to the screening questions; `None` once they were erased.
        answers: Option<Vec<Answer>>,
    },
    /// A join request was approved; a [`Event::MemberJoined`] follows in the same append.
    JoinRequestApproved {
        /// The person who asked.
        member_id: Uuid,
        /// Who approved it.
        approved_by: Uuid,
    },
    /// A join request was rejected.
    JoinRequestRejected {
        /// The person who asked.
        member_id: Uuid,
        /// Who rejected it.
        rejected_by: Uuid,
        /// Why.
        reason: Reason,
    },
    /// A member left of their own accord.
    MemberLeft {
        /// The member.
        member_id: Uuid,
    },
    /// A member was removed by someone of higher rank.
    MemberRemoved {
        /// The member.
        member_id: Uuid,
        /// Who removed them.
        removed_by: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Someone was banned, whether a member or not (a ban may be pre-emptive).
    MemberBanned {
        /// The person banned.
        member_id: Uuid,
        /// Who banned them.
        banned_by: Uuid,
        /// Why.
        reason: Reason,
        /// Whether they were an active member when banned.
        was_member: bool,
    },
    /// A ban was lifted; the person may come back like anyone removed.
    MemberUnbanned {
        /// The person.
        member_id: Uuid,
        /// Who lifted it.
        unbanned_by: Uuid,
    },
    /// Someone withdrew their own pending join request.
    JoinRequestWithdrawn {
        /// The person who had asked.
        member_id: Uuid,
    },
    /// Someone's personal data in the community was erased; erasure also ends membership.
    MemberErased {
        /// The person erased.
        member_id: Uuid,
        /// Who asked for it (the person themselves or an owner).
        erased_by: Uuid,
        /// Whether they were an active member when erased.
        was_member: bool,
    },
}

impl Event {
    /// The event's protobuf message name (without the package), e.g. `"MemberJoined"`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CommunityCreated { .. } => "CommunityCreated",
            Self::CommunityUpdated { .. } => "CommunityUpdated",
            Self::CommunityLanguageSet { .. } => "CommunityLanguageSet",
            Self::CommunityArchived { .. } => "CommunityArchived",
            Self::MemberJoined { .. } => "MemberJoined",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::RoleAssigned { .. } => "RoleAssigned",
            Self::RoleRevoked { .. } => "RoleRevoked",
            Self::InvitationCreated { .. } => "InvitationCreated",
            Self::InvitationRevoked { .. } => "InvitationRevoked",
            Self::JoinRequested { .. } => "JoinRequested",
            Self::JoinRequestApproved { .. } => "JoinRequestApproved",
            Self::JoinRequestRejected { .. } => "JoinRequestRejected",
            Self::MemberLeft { .. } => "MemberLeft",
            Self::MemberRemoved { .. } => "MemberRemoved",
            Self::MemberBanned { .. } => "MemberBanned",
            Self::MemberErased { .. } => "MemberErased",
            Self::MemberUnbanned { .. } => "MemberUnbanned",
            Self::JoinRequestWithdrawn { .. } => "JoinRequestWithdrawn",
        }
    }
}
