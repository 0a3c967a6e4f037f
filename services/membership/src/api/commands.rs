//! The mutating calls: authenticate, validate every field, then run the command.

use chrono::DateTime;
use kith_platform::validation::Violations;
use kith_proto::membership as pb;
use tonic::{Request, Response, Status};

use super::{Api, derived_id, parse};
use crate::domain::{Action, CommunityName, Description, Reason};

type Reply<T> = Result<Response<T>, Status>;

impl Api {
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
            return Err(Status::internal("validation incomplete"));
        };
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
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let name = v.check("name", CommunityName::parse(&r.name));
        let description = v.check("description", Description::parse(&r.description));
        v.finish()?;
        let (Some(request_id), Some(community), Some(name), Some(description)) =
            (request_id, community, name, description)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::UpdateCommunity { name, description },
            )
            .await?;
        Ok(Response::new(pb::UpdateCommunityResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn archive_community(
        &self,
        request: Request<pb::ArchiveCommunityRequest>,
    ) -> Reply<pb::ArchiveCommunityResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        v.finish()?;
        let (Some(request_id), Some(community)) = (request_id, community) else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::ArchiveCommunity,
            )
            .await?;
        Ok(Response::new(pb::ArchiveCommunityResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Reply<pb::UpdateProfileResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let profile = parse::profile(&mut v, "profile", r.profile.as_ref());
        v.finish()?;
        let (Some(request_id), Some(community), Some(profile)) = (request_id, community, profile)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::UpdateProfile { profile },
            )
            .await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn assign_role(
        &self,
        request: Request<pb::AssignRoleRequest>,
    ) -> Reply<pb::AssignRoleResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        let role = parse::role(&mut v, "role", r.role);
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id), Some(role)) =
            (request_id, community, member_id, role)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::AssignRole { member_id, role },
            )
            .await?;
        Ok(Response::new(pb::AssignRoleResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Reply<pb::RevokeRoleResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        let role = parse::role(&mut v, "role", r.role);
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id), Some(role)) =
            (request_id, community, member_id, role)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::RevokeRole { member_id, role },
            )
            .await?;
        Ok(Response::new(pb::RevokeRoleResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Reply<pb::CreateInvitationResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let expires_at = match r.expires_at.as_ref() {
            None => {
                v.add("expires_at", "is required");
                None
            }
            Some(t) => {
                let at = u32::try_from(t.nanos)
                    .ok()
                    .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos));
                if at.is_none() {
                    v.add("expires_at", "is not a valid timestamp");
                }
                at
            }
        };
        if r.max_uses == 0 || r.max_uses > crate::domain::MAX_INVITATION_USES {
            v.add(
                "max_uses",
                format!("must be 1 to {}", crate::domain::MAX_INVITATION_USES),
            );
        }
        v.finish()?;
        let (Some(request_id), Some(community), Some(expires_at)) =
            (request_id, community, expires_at)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        // Random, because the id is what lets someone in; a retry learns the first call's id
        // from the event it wrote.
        let invitation_id = uuid::Uuid::new_v4();
        let action = Action::CreateInvitation {
            invitation_id,
            expires_at,
            max_uses: r.max_uses,
        };
        let committed = self
            .run(&request, caller, &request_id, community, action)
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
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let invitation_id = v.uuid("invitation_id", &r.invitation_id);
        let profile = parse::profile(&mut v, "profile", r.profile.as_ref());
        v.finish()?;
        let (Some(request_id), Some(community), Some(invitation_id), Some(profile)) =
            (request_id, community, invitation_id, profile)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::AcceptInvitation {
                    invitation_id,
                    profile,
                },
            )
            .await?;
        Ok(Response::new(pb::AcceptInvitationResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Reply<pb::RevokeInvitationResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let invitation_id = v.uuid("invitation_id", &r.invitation_id);
        v.finish()?;
        let (Some(request_id), Some(community), Some(invitation_id)) =
            (request_id, community, invitation_id)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::RevokeInvitation { invitation_id },
            )
            .await?;
        Ok(Response::new(pb::RevokeInvitationResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn request_to_join(
        &self,
        request: Request<pb::RequestToJoinRequest>,
    ) -> Reply<pb::RequestToJoinResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let profile = parse::profile(&mut v, "profile", r.profile.as_ref());
        let answers = parse::answers(&mut v, &r.answers);
        v.finish()?;
        let (Some(request_id), Some(community), Some(profile)) = (request_id, community, profile)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::RequestToJoin { profile, answers },
            )
            .await?;
        Ok(Response::new(pb::RequestToJoinResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn approve_join_request(
        &self,
        request: Request<pb::ApproveJoinRequestRequest>,
    ) -> Reply<pb::ApproveJoinRequestResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id)) =
            (request_id, community, member_id)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::ApproveJoinRequest { member_id },
            )
            .await?;
        Ok(Response::new(pb::ApproveJoinRequestResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn reject_join_request(
        &self,
        request: Request<pb::RejectJoinRequestRequest>,
    ) -> Reply<pb::RejectJoinRequestResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        let reason = v.check("reason", Reason::parse(&r.reason));
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id), Some(reason)) =
            (request_id, community, member_id, reason)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::RejectJoinRequest { member_id, reason },
            )
            .await?;
        Ok(Response::new(pb::RejectJoinRequestResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn leave_community(
        &self,
        request: Request<pb::LeaveCommunityRequest>,
    ) -> Reply<pb::LeaveCommunityResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        v.finish()?;
        let (Some(request_id), Some(community)) = (request_id, community) else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(&request, caller, &request_id, community, Action::Leave)
            .await?;
        Ok(Response::new(pb::LeaveCommunityResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        let reason = v.check("reason", Reason::parse(&r.reason));
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id), Some(reason)) =
            (request_id, community, member_id, reason)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::RemoveMember { member_id, reason },
            )
            .await?;
        Ok(Response::new(pb::RemoveMemberResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn ban_member(
        &self,
        request: Request<pb::BanMemberRequest>,
    ) -> Reply<pb::BanMemberResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        let reason = v.check("reason", Reason::parse(&r.reason));
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id), Some(reason)) =
            (request_id, community, member_id, reason)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::BanMember { member_id, reason },
            )
            .await?;
        Ok(Response::new(pb::BanMemberResponse {
            committed: Some(committed),
        }))
    }

    pub(super) async fn erase_member(
        &self,
        request: Request<pb::EraseMemberRequest>,
    ) -> Reply<pb::EraseMemberResponse> {
        let caller = self.caller(&request)?;
        let r = request.get_ref();
        let mut v = Violations::new();
        let request_id = v.request_id(&r.request_id);
        let community = v.uuid("community_id", &r.community_id);
        let member_id = v.uuid("member_id", &r.member_id);
        v.finish()?;
        let (Some(request_id), Some(community), Some(member_id)) =
            (request_id, community, member_id)
        else {
            return Err(Status::internal("validation incomplete"));
        };
        let committed = self
            .run(
                &request,
                caller,
                &request_id,
                community,
                Action::EraseMember { member_id },
            )
            .await?;
        Ok(Response::new(pb::EraseMemberResponse {
            committed: Some(committed),
        }))
    }
}
