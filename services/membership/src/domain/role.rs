//! Roles in a community and how members come in.

/// A member's role in a community. Each member holds exactly one; [`Role::rank`] orders their
/// authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs the community; may do anything, including making other owners.
    Owner,
    /// Runs the community day to day; manages members, coaches and moderators.
    Host,
    /// Leads sessions; may invite people.
    Coach,
    /// Keeps the peace; handles join requests, removals and bans.
    Moderator,
    /// A plain member.
    Member,
}

impl Role {
    /// The role's authority: a member may act on (remove, ban) only members of a strictly lower
    /// rank. Coaches and moderators share a rank: neither outranks the other.
    pub fn rank(self) -> u8 {
        match self {
            Self::Owner => 4,
            Self::Host => 3,
            Self::Coach | Self::Moderator => 2,
            Self::Member => 1,
        }
    }
}

/// How a member came into a community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinPath {
    /// The member created the community.
    Founder,
    /// The member accepted an invitation.
    Invitation,
    /// A join request of the member was approved.
    JoinRequest,
}
