//! What the decider knows about a community: exactly what its decisions need, folded from the
//! community's events. Only [`super::evolve`] changes it; everything else reads it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::event::Event;
use super::role::{JoinPath, Role};
use super::values::{Answer, CommunityName, Description, Handle, Language, Profile};

/// Where someone who joined at least once stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// A member now.
    Active,
    /// Left of their own accord; may come back.
    Left,
    /// Removed by a member of higher rank; may come back.
    Removed,
    /// Banned; may not come back by any path. A banned member who is erased stays banned.
    Banned,
    /// Their data was erased; may come back as a new member.
    Erased,
}

/// The record of someone who joined the community at least once. A member who joins again
/// gets a fresh record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Where they stand now.
    pub status: MemberStatus,
    /// The role they hold (or held last, when no longer active).
    pub role: Role,
    /// How they came in, the last time they joined.
    pub path: JoinPath,
    /// Their profile; `None` once erased.
    pub profile: Option<Profile>,
}

impl Member {
    /// Whether they are a member now.
    pub fn is_active(&self) -> bool {
        self.status == MemberStatus::Active
    }
}

/// An invitation and how much of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// Who created it.
    pub created_by: Uuid,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// How many members may join with it.
    pub max_uses: u32,
    /// How many members joined with it.
    pub uses: u32,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl Invitation {
    /// Whether it has stopped working at `now` (the expiry instant itself is too late).
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whether as many members joined with it as it allows.
    pub fn is_exhausted(&self) -> bool {
        self.uses >= self.max_uses
    }
}

/// A join request waiting for a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The profile the person will join with; `None` if it could not be unsealed.
    pub profile: Option<Profile>,
    /// Their answers to the screening questions; `None` if they could not be unsealed.
    pub answers: Option<Vec<Answer>>,
}

/// A community as the decider sees it. The default value is a community not yet created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Community {
    created: bool,
    archived: bool,
    name: Option<CommunityName>,
    description: Option<Description>,
    language: Language,
    /// Everyone who joined at least once, whatever their status now.
    members: BTreeMap<Uuid, Member>,
    /// Everyone who ever asked to join, so that a rejected requester can still be erased.
    requesters: BTreeSet<Uuid>,
    banned: BTreeSet<Uuid>,
    /// Everyone erased who has not joined or asked to join since.
    erased: BTreeSet<Uuid>,
    invitations: BTreeMap<Uuid, Invitation>,
    join_requests: BTreeMap<Uuid, JoinRequest>,
}

impl Community {
    /// Whether the community was created.
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// Whether the community was archived.
    pub fn is_archived(&self) -> bool {
        self.archived
    }

    /// The community's name, once created.
    pub fn name(&self) -> Option<&CommunityName> {
        self.name.as_ref()
    }

    /// The community's description, once created.
    pub fn description(&self) -> Option<&Description> {
        self.description.as_ref()
    }

    /// The language the community writes in (empty: none).
    pub fn language(&self) -> &Language {
        &self.language
    }

    /// The record of someone who joined at least once, whatever their status now.
    pub fn member(&self, id: Uuid) -> Option<&Member> {
        self.members.get(&id)
    }

    /// The record of an active member.
    pub fn active_member(&self, id: Uuid) -> Option<&Member> {
        self.members.get(&id).filter(|member| member.is_active())
    }

    /// The role of an active member.
    pub fn role_of(&self, id: Uuid) -> Option<Role> {
        self.active_member(id).map(|member| member.role)
    }

    /// Everyone who joined at least once, by id.
    pub fn members(&self) -> impl Iterator<Item = (Uuid, &Member)> {
        self.members.iter().map(|(id, member)| (*id, member))
    }

    /// How many active members there are.
    pub fn active_count(&self) -> usize {
        self.members.values().filter(|m| m.is_active()).count()
    }

    /// How many active owners there are.
    pub fn owners(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.is_active() && m.role == Role::Owner)
            .count()
    }

    /// The active member using `handle`, if any. Handles are lowercase already, so comparing
    /// them is case-insensitive.
    pub fn handle_holder(&self, handle: &Handle) -> Option<Uuid> {
        self.members
            .iter()
            .find(|(_, member)| {
                member.is_active()
                    && member
                        .profile
                        .as_ref()
                        .is_some_and(|profile| &profile.handle == handle)
            })
            .map(|(id, _)| *id)
    }

    /// Whether someone is banned.
    pub fn is_banned(&self, id: Uuid) -> bool {
        self.banned.contains(&id)
    }

    /// Whether someone's data was erased and they have not joined or asked to join since.
    pub fn is_erased(&self, id: Uuid) -> bool {
        self.erased.contains(&id)
    }

    /// Whether someone ever joined, asked to join or was banned, and so has data here (a profile,
    /// answers, a ban's reason) that can be erased.
    pub fn is_known(&self, id: Uuid) -> bool {
        self.members.contains_key(&id) || self.requesters.contains(&id) || self.banned.contains(&id)
    }

    /// An invitation by id.
    pub fn invitation(&self, id: Uuid) -> Option<&Invitation> {
        self.invitations.get(&id)
    }

    /// The pending join request of someone.
    pub fn join_request(&self, member_id: Uuid) -> Option<&JoinRequest> {
        self.join_requests.get(&member_id)
    }

    /// The pending join requests, by the id of the person asking.
    pub fn join_requests(&self) -> impl Iterator<Item = (Uuid, &JoinRequest)> {
        self.join_requests
            .iter()
            .map(|(id, request)| (*id, request))
    }

    /// Folds one event into the state. Total: an event that does not fit (say, about a member
    /// never seen) changes what it can and never panics, since the log is the truth.
    pub(super) fn apply(mut self, event: &Event) -> Self {
        match event {
            Event::CommunityCreated {
                name, description, ..
            }
            | Event::CommunityUpdated {
                name, description, ..
            } => {
                self.created = true;
                self.name = Some(name.clone());
                self.description = Some(description.clone());
            }
            Event::CommunityLanguageSet { language, .. } => self.language = language.clone(),
            Event::CommunityArchived { .. } => self.archived = true,
            Event::MemberJoined {
                member_id,
                role,
                path,
                profile,
                invitation_id,
            } => {
                let fresh = Member {
                    status: MemberStatus::Active,
                    role: *role,
                    path: *path,
                    profile: profile.clone(),
                };
                self.members.insert(*member_id, fresh);
                self.join_requests.remove(member_id);
                self.erased.remove(member_id);
                let invitation = invitation_id.and_then(|id| self.invitations.get_mut(&id));
                if let Some(invitation) = invitation {
                    invitation.uses = invitation.uses.saturating_add(1);
                }
            }
            Event::ProfileUpdated { member_id, profile } => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.profile = profile.clone();
                }
            }
            Event::RoleAssigned {
                member_id, role, ..
            } => self.set_role(*member_id, *role),
            Event::RoleRevoked { member_id, .. } => self.set_role(*member_id, Role::Member),
            Event::InvitationCreated {
                invitation_id,
                created_by,
                expires_at,
                max_uses,
            } => {
                let invitation = Invitation {
                    created_by: *created_by,
                    expires_at: *expires_at,
                    max_uses: *max_uses,
                    uses: 0,
                    revoked: false,
                };
                self.invitations.insert(*invitation_id, invitation);
            }
            Event::InvitationRevoked { invitation_id, .. } => {
                if let Some(invitation) = self.invitations.get_mut(invitation_id) {
                    invitation.revoked = true;
                }
            }
            Event::JoinRequested {
                member_id,
                profile,
                answers,
            } => {
                let request = JoinRequest {
                    profile: profile.clone(),
                    answers: answers.clone(),
                };
                self.join_requests.insert(*member_id, request);
                self.requesters.insert(*member_id);
                self.erased.remove(member_id);
            }
            Event::JoinRequestApproved { member_id, .. }
            | Event::JoinRequestRejected { member_id, .. }
            | Event::JoinRequestWithdrawn { member_id } => {
                self.join_requests.remove(member_id);
            }
            Event::MemberUnbanned { member_id, .. } => {
                self.banned.remove(member_id);
                // Out, as if removed (or erased, if their data went while banned).
                let status = if self.erased.contains(member_id) {
                    MemberStatus::Erased
                } else {
                    MemberStatus::Removed
                };
                if let Some(member) = self.members.get_mut(member_id)
                    && member.status == MemberStatus::Banned
                {
                    member.status = status;
                }
            }
            Event::MemberLeft { member_id } => self.set_status(*member_id, MemberStatus::Left),
            Event::MemberRemoved { member_id, .. } => {
                self.set_status(*member_id, MemberStatus::Removed);
            }
            Event::MemberBanned { member_id, .. } => {
                self.banned.insert(*member_id);
                self.join_requests.remove(member_id);
                self.set_status(*member_id, MemberStatus::Banned);
            }
            Event::MemberErased { member_id, .. } => {
                self.erased.insert(*member_id);
                self.join_requests.remove(member_id);
                // A ban outlives erasure: the person stays banned, only their data goes.
                let status = if self.banned.contains(member_id) {
                    MemberStatus::Banned
                } else {
                    MemberStatus::Erased
                };
                if let Some(member) = self.members.get_mut(member_id) {
                    member.status = status;
                    member.profile = None;
                }
            }
        }
        self
    }

    fn set_role(&mut self, member_id: Uuid, role: Role) {
        if let Some(member) = self.members.get_mut(&member_id) {
            member.role = role;
        }
    }

    fn set_status(&mut self, member_id: Uuid, status: MemberStatus) {
        if let Some(member) = self.members.get_mut(&member_id) {
            member.status = status;
        }
    }
}
