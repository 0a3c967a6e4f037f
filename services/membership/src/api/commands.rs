//! The mutating calls: authenticate, validate every field, then run the command. Every call on an
//! existing community goes through [`Api::command`]; each handler only says how its fields become
//! an [`Action`].

use kith_platform::validation::Violations;
use kith_proto::membership as pb;
use kith_proto::platform::Committed;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{Api, derived_id, parse};
use crate::domain::{Action, CommunityName, Description, Language, MAX_INVITATION_USES, Reason};

type Reply<T> = Result<Response<T>, Status>;

/// A request that runs one command on an existing community.
pub(super) trait CommunityCommand: prost::Message + prost::Name {
    fn request_id(&self) -> &str;
    fn community_id(&self) -> &str;
}

macro_rules! community_commands {
    ($($request:ty),* $(,)?) => {
        $(impl CommunityCommand for $request {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn community_id(&self) -> &str {
                &self.community_id
            }
        })*
    };
}

community_commands!(
    pb::UpdateCommunityRequest,
    pb::ArchiveCommunityRequest,
    pb::SetCommunityLanguageRequest,
    pb::UpdateProfileRequest,
    pb::AssignRoleRequest,
    pb::RevokeRoleRequest,
    pb::CreateInvitationRequest,
    pb::AcceptInvitationRequest,
    pb::RevokeInvitationRequest,
    pb::RequestToJoinRequest,
    pb::ApproveJoinRequestRequest,
    pb::RejectJoinRequestRequest,
    pb::LeaveCommunityRequest,
    pb::RemoveMemberRequest,
    pb::BanMemberRequest,
    pb::EraseMemberRequest,
    pb::UnbanMemberRequest,
    pb::WithdrawJoinRequestRequest,
);

/// Both halves of a parse, or the violations already recorded.
fn both<A, B>(a: Option<A>, b: Option<B>) -> Option<(A, B)> {
    a.zip(b)
}

impl Api {
    /// Authenticates, validates the request id, the community id and whatever `action` reads
    /// (all violations together), then runs the command.
    async fn command<T: CommunityCommand>(
        &self,
        request: &Request<T>,
        action: impl FnOnce(&T, &mut Violations) -> Option<Action>,
    ) -> Result<Committed, Status> {
        let caller = self.caller(request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(r.request_id());
        let community = v.uuid("community_id", r.community_id());
        let action = action(r, &mut v);
        v.finish()?;
        let (Some(request_id), Some(community), Some(action)) = (request_id, community, action)
        else {
            return Err(Status::internal("request validation was incomplete"));
        };
        self.run(request, caller, &request_id, community, action)
            .await
    }

    pub(super) async fn create_community(
        &self,
        request: Request<pb::CreateCommunityRequest>,
    ) -> Reply<pb::CreateCommunityResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let name = v.check("name", CommunityName::parse(&r.name));
        let description = v.check("description", Description::parse(&r.description));
        let founder = parse::profile(&mut v, "founder", r.founder.as_ref());
        v.finish()?;
        let (Some(request_id), Some(name), Some(description), Some(founder)) =
            (request_id, name, description, founder)
        else {
            return Err(Status::internal("request validation was incomplete"));
        };
        // Derived from the caller's request id, so a retry answers with the same community.
        let community_id = derived_id(caller, &request_id, "community");
        let action = Action::CreateCommunity {
            name,
            description,
            founder,
        };
        let committed = self
            .run(&request, caller, &request_id, community_id, action)
            .await?;
        Ok(Response::new(pb::CreateCommunityResponse {
            community_id: community_id.to_string(),
            committed: Some(committed),
        }))
    }

    pub(super) async fn update_community(
        &self,
        request: Request<pb::UpdateCommunityRequest>,
    ) -> Reply<pb::UpdateCommunityResponse> {
        let committed = self
            .command(&request, |r, v| {
                let name = v.check("name", CommunityName::parse(&r.name));
                let description = v.check("description", Description::parse(&r.description));
                both(name, description)
                    .map(|(name, description)| Action::UpdateCommunity { name, description })
            })
            .await?;
        Ok(Response::new(pb::UpdateCommunityResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn set_community_language(
        &self,
        request: Request<pb::SetCommunityLanguageRequest>,
    ) -> Reply<pb::SetCommunityLanguageResponse> {
        let committed = self
            .command(&request, |r, v| {
                v.check("language", Language::parse(&r.language))
                    .map(|language| Action::SetLanguage { language })
            })
            .await?;
        Ok(Response::new(pb::SetCommunityLanguageResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn archive_community(
        &self,
        request: Request<pb::ArchiveCommunityRequest>,
    ) -> Reply<pb::ArchiveCommunityResponse> {
        let committed = self
            .command(&request, |_, _| Some(Action::ArchiveCommunity))
            .await?;
        Ok(Response::new(pb::ArchiveCommunityResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Reply<pb::UpdateProfileResponse> {
        let committed = self
            .command(&request, |r, v| {
                parse::profile(v, "profile", r.profile.as_ref())
                    .map(|profile| Action::UpdateProfile { profile })
            })
            .await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn assign_role(
        &self,
        request: Request<pb::AssignRoleRequest>,
    ) -> Reply<pb::AssignRoleResponse> {
        let committed = self
            .command(&request, |r, v| {
                let member_id = v.uuid("member_id", &r.member_id);
                let role = parse::role(v, "role", r.role);
                both(member_id, role)
                    .map(|(member_id, role)| Action::AssignRole { member_id, role })
            })
            .await?;
        Ok(Response::new(pb::AssignRoleResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Reply<pb::RevokeRoleResponse> {
        let committed = self
            .command(&request, |r, v| {
                let member_id = v.uuid("member_id", &r.member_id);
                let role = parse::role(v, "role", r.role);
                both(member_id, role)
                    .map(|(member_id, role)| Action::RevokeRole { member_id, role })
            })
            .await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Reply<pb::CreateInvitationResponse> {
        // Random, because the id is what lets someone in; a retry learns the first call's id from
        // the event it wrote.
        let invitation_id = Uuid::new_v4();
        let committed = self
            .command(&request, |r, v| {
                let expires_at = v.time("expires_at", r.expires_at.as_ref());
                if r.max_uses == 0 || r.max_uses > MAX_INVITATION_USES {
                    v.add("max_uses", format!("must be 1 to {MAX_INVITATION_USES}"));
                }
                expires_at.map(|expires_at| Action::CreateInvitation {
                    invitation_id,
                    expires_at,
                    max_uses: r.max_uses,
                })
            })
            .await?;
        let invitation_id = if committed.replayed {
            self.created_invitation(committed.position).await?
        } else {
            invitation_id.to_string()
        };
        Ok(Response::new(pb::CreateInvitationResponse {
            invitation_id,
            committed: Some(committed),
        }))
    }

    pub(super) async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Reply<pb::AcceptInvitationResponse> {
        let committed = self
            .command(&request, |r, v| {
                let invitation_id = v.uuid("invitation_id", &r.invitation_id);
                let profile = parse::profile(v, "profile", r.profile.as_ref());
                both(invitation_id, profile).map(|(invitation_id, profile)| {
                    Action::AcceptInvitation {
                        invitation_id,
                        profile,
                    }
                })
            })
            .await?;
        Ok(Response::new(pb::AcceptInvitationResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Reply<pb::RevokeInvitationResponse> {
        let committed = self
            .command(&request, |r, v| {
                v.uuid("invitation_id", &r.invitation_id)
                    .map(|invitation_id| Action::RevokeInvitation { invitation_id })
            })
            .await?;
        Ok(Response::new(pb::RevokeInvitationResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn request_to_join(
        &self,
        request: Request<pb::RequestToJoinRequest>,
    ) -> Reply<pb::RequestToJoinResponse> {
        let committed = self
            .command(&request, |r, v| {
                let profile = parse::profile(v, "profile", r.profile.as_ref());
                let answers = parse::answers(v, &r.answers);
                profile.map(|profile| Action::RequestToJoin { profile, answers })
            })
            .await?;
        Ok(Response::new(pb::RequestToJoinResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn approve_join_request(
        &self,
        request: Request<pb::ApproveJoinRequestRequest>,
    ) -> Reply<pb::ApproveJoinRequestResponse> {
        let committed = self
            .command(&request, |r, v| {
                v.uuid("member_id", &r.member_id)
                    .map(|member_id| Action::ApproveJoinRequest { member_id })
            })
            .await?;
        Ok(Response::new(pb::ApproveJoinRequestResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn reject_join_request(
        &self,
        request: Request<pb::RejectJoinRequestRequest>,
    ) -> Reply<pb::RejectJoinRequestResponse> {
        let committed = self
            .command(&request, |r, v| {
                let member_id = v.uuid("member_id", &r.member_id);
                let reason = v.check("reason", Reason::parse(&r.reason));
                both(member_id, reason)
                    .map(|(member_id, reason)| Action::RejectJoinRequest { member_id, reason })
            })
            .await?;
        Ok(Response::new(pb::RejectJoinRequestResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn leave_community(
        &self,
        request: Request<pb::LeaveCommunityRequest>,
    ) -> Reply<pb::LeaveCommunityResponse> {
        let committed = self.command(&request, |_, _| Some(Action::Leave)).await?;
        Ok(Response::new(pb::LeaveCommunityResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        let committed = self
            .command(&request, |r, v| {
                let member_id = v.uuid("member_id", &r.member_id);
                let reason = v.check("reason", Reason::parse(&r.reason));
                both(member_id, reason)
                    .map(|(member_id, reason)| Action::RemoveMember { member_id, reason })
            })
            .await?;
        Ok(Response::new(pb::RemoveMemberResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn ban_member(
        &self,
        request: Request<pb::BanMemberRequest>,
    ) -> Reply<pb::BanMemberResponse> {
        let committed = self
            .command(&request, |r, v| {
                let member_id = v.uuid("member_id", &r.member_id);
                let reason = v.check("reason", Reason::parse(&r.reason));
                both(member_id, reason)
                    .map(|(member_id, reason)| Action::BanMember { member_id, reason })
            })
            .await?;
        Ok(Response::new(pb::BanMemberResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn unban_member(
        &self,
        request: Request<pb::UnbanMemberRequest>,
    ) -> Reply<pb::UnbanMemberResponse> {
        let committed = self
            .command(&request, |r, v| {
                v.uuid("member_id", &r.member_id)
                    .map(|member_id| Action::UnbanMember { member_id })
            })
            .await?;
        Ok(Response::new(pb::UnbanMemberResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn withdraw_join_request(
        &self,
        request: Request<pb::WithdrawJoinRequestRequest>,
    ) -> Reply<pb::WithdrawJoinRequestResponse> {
        let committed = self
            .command(&request, |_, _| Some(Action::WithdrawJoinRequest))
            .await?;
        Ok(Response::new(pb::WithdrawJoinRequestResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn erase_member(
        &self,
        request: Request<pb::EraseMemberRequest>,
    ) -> Reply<pb::EraseMemberResponse> {
        let committed = self
            .command(&request, |r, v| {
                v.uuid("member_id", &r.member_id)
                    .map(|member_id| Action::EraseMember { member_id })
            })
            .await?;
        Ok(Response::new(pb::EraseMemberResponse {
            committed: Some(committed),
        }))
    }
}
