//! The gRPC API: wire types are parsed into domain values here, commands run through the
//! platform's repository, and queries read the directory projection.

mod commands;
mod parse;
mod queries;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kith_platform::aggregate::Repository;
use kith_platform::auth::Authenticator;
use kith_platform::command::{self, command_key, committed, status_from_rejected};
use kith_platform::grpc::{status_from_auth, status_from_platform};
use kith_platform::projection::Progress;
use kith_proto::platform::Committed;
use sqlx::PgPool;
use tonic::{Request, Status};
use uuid::Uuid;

use crate::codec::MembershipCodec;
use crate::domain::{Action, Command};
use crate::service::CommunityDecider;

/// How long a query waits for the read model to reach a `min_position`.
const READ_YOUR_WRITES_TIMEOUT: Duration = Duration::from_secs(5);

/// Namespace of ids derived from a caller's request id, so a retried create returns the same id.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6b69_7468_6d65_6d62_6572_7368_6970_0001);

/// The membership gRPC service.
#[derive(Debug, Clone)]
pub struct Api {
    repository: Arc<Repository<CommunityDecider, MembershipCodec>>,
    pool: PgPool,
    progress: Progress,
    authenticator: Authenticator,
}

impl Api {
    pub(crate) fn new(
        repository: Repository<CommunityDecider, MembershipCodec>,
        pool: PgPool,
        progress: Progress,
        authenticator: Authenticator,
    ) -> Self {
        Self {
            repository: Arc::new(repository),
            pool,
            progress,
            authenticator,
        }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Uuid, Status> {
        self.authenticator
            .authenticate(request.metadata())
            .map(|caller| caller.member_id)
            .map_err(|err| status_from_auth(&err))
    }

    /// Runs one command on a community and answers with where it landed.
    async fn run<T: prost::Message + prost::Name>(
        &self,
        request: &Request<T>,
        caller: Uuid,
        request_id: &str,
        community_id: Uuid,
        action: Action,
    ) -> Result<Committed, Status> {
        let key = command_key(request, caller, request_id);
        let metadata = command::metadata(request, &ID_NAMESPACE, caller, request_id);
        let command = Command {
            actor: caller,
            now: Utc::now(),
            action,
        };
        let appended = self
            .repository
            .execute(&community_id.to_string(), Some(&key), &metadata, &command)
            .await
            .map_err(|rejected| status_from_rejected(&rejected))?;
        Ok(committed(appended))
    }

    /// The id of the invitation created by the event at `position` (a retried create).
    async fn created_invitation(&self, position: i64) -> Result<String, Status> {
        use prost::Message;
        let event = self
            .repository
            .log()
            .event_at(position)
            .await
            .map_err(|err| status_from_platform(&err))?
            .ok_or_else(|| Status::internal("the first result of this request is missing"))?;
        pb::InvitationCreated::decode(event.payload.as_slice())
            .map(|created| created.invitation_id)
            .map_err(|_| Status::internal("the first result of this request is unreadable"))
    }

    /// Waits until the directory includes `min_position`.
    async fn wait(&self, min_position: i64) -> Result<(), Status> {
        self.progress
            .wait_for(min_position, READ_YOUR_WRITES_TIMEOUT)
            .await
            .map_err(|err| status_from_platform(&err))
    }
}

/// An id derived from the caller's request id, stable across retries.
fn derived_id(caller: Uuid, request_id: &str, kind: &str) -> Uuid {
    command::derived_id(&ID_NAMESPACE, caller, request_id, kind)
}

use kith_proto::membership as pb;
use kith_proto::membership::membership_service_server::MembershipService;
use tonic::Response;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl MembershipService for Api {
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn create_community(
        &self,
        request: Request<pb::CreateCommunityRequest>,
    ) -> Reply<pb::CreateCommunityResponse> {
        kith_platform::grpc::observed(Api::create_community(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn update_community(
        &self,
        request: Request<pb::UpdateCommunityRequest>,
    ) -> Reply<pb::UpdateCommunityResponse> {
        kith_platform::grpc::observed(Api::update_community(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn set_community_language(
        &self,
        request: Request<pb::SetCommunityLanguageRequest>,
    ) -> Reply<pb::SetCommunityLanguageResponse> {
        kith_platform::grpc::observed(Api::set_community_language(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn archive_community(
        &self,
        request: Request<pb::ArchiveCommunityRequest>,
    ) -> Reply<pb::ArchiveCommunityResponse> {
        kith_platform::grpc::observed(Api::archive_community(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn get_community(
        &self,
        request: Request<pb::GetCommunityRequest>,
    ) -> Reply<pb::GetCommunityResponse> {
        kith_platform::grpc::observed(Api::get_community(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Reply<pb::UpdateProfileResponse> {
        kith_platform::grpc::observed(Api::update_profile(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn assign_role(
        &self,
        request: Request<pb::AssignRoleRequest>,
    ) -> Reply<pb::AssignRoleResponse> {
        kith_platform::grpc::observed(Api::assign_role(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> Reply<pb::RevokeRoleResponse> {
        kith_platform::grpc::observed(Api::revoke_role(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Reply<pb::GetMemberResponse> {
        kith_platform::grpc::observed(Api::get_member(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Reply<pb::ListMembersResponse> {
        kith_platform::grpc::observed(Api::list_members(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn create_invitation(
        &self,
        request: Request<pb::CreateInvitationRequest>,
    ) -> Reply<pb::CreateInvitationResponse> {
        kith_platform::grpc::observed(Api::create_invitation(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Reply<pb::AcceptInvitationResponse> {
        kith_platform::grpc::observed(Api::accept_invitation(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn revoke_invitation(
        &self,
        request: Request<pb::RevokeInvitationRequest>,
    ) -> Reply<pb::RevokeInvitationResponse> {
        kith_platform::grpc::observed(Api::revoke_invitation(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn list_invitations(
        &self,
        request: Request<pb::ListInvitationsRequest>,
    ) -> Reply<pb::ListInvitationsResponse> {
        kith_platform::grpc::observed(Api::list_invitations(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn request_to_join(
        &self,
        request: Request<pb::RequestToJoinRequest>,
    ) -> Reply<pb::RequestToJoinResponse> {
        kith_platform::grpc::observed(Api::request_to_join(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn approve_join_request(
        &self,
        request: Request<pb::ApproveJoinRequestRequest>,
    ) -> Reply<pb::ApproveJoinRequestResponse> {
        kith_platform::grpc::observed(Api::approve_join_request(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn reject_join_request(
        &self,
        request: Request<pb::RejectJoinRequestRequest>,
    ) -> Reply<pb::RejectJoinRequestResponse> {
        kith_platform::grpc::observed(Api::reject_join_request(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn list_join_requests(
        &self,
        request: Request<pb::ListJoinRequestsRequest>,
    ) -> Reply<pb::ListJoinRequestsResponse> {
        kith_platform::grpc::observed(Api::list_join_requests(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn leave_community(
        &self,
        request: Request<pb::LeaveCommunityRequest>,
    ) -> Reply<pb::LeaveCommunityResponse> {
        kith_platform::grpc::observed(Api::leave_community(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        kith_platform::grpc::observed(Api::remove_member(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn ban_member(
        &self,
        request: Request<pb::BanMemberRequest>,
    ) -> Reply<pb::BanMemberResponse> {
        kith_platform::grpc::observed(Api::ban_member(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn erase_member(
        &self,
        request: Request<pb::EraseMemberRequest>,
    ) -> Reply<pb::EraseMemberResponse> {
        kith_platform::grpc::observed(Api::erase_member(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn unban_member(
        &self,
        request: Request<pb::UnbanMemberRequest>,
    ) -> Reply<pb::UnbanMemberResponse> {
        kith_platform::grpc::observed(Api::unban_member(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn list_bans(
        &self,
        request: Request<pb::ListBansRequest>,
    ) -> Reply<pb::ListBansResponse> {
        kith_platform::grpc::observed(Api::list_bans(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn list_my_communities(
        &self,
        request: Request<pb::ListMyCommunitiesRequest>,
    ) -> Reply<pb::ListMyCommunitiesResponse> {
        kith_platform::grpc::observed(Api::list_my_communities(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn get_invitation_preview(
        &self,
        request: Request<pb::GetInvitationPreviewRequest>,
    ) -> Reply<pb::GetInvitationPreviewResponse> {
        kith_platform::grpc::observed(Api::get_invitation_preview(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn get_my_join_request(
        &self,
        request: Request<pb::GetMyJoinRequestRequest>,
    ) -> Reply<pb::GetMyJoinRequestResponse> {
        kith_platform::grpc::observed(Api::get_my_join_request(self, request).await)
    }
    #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
    async fn withdraw_join_request(
        &self,
        request: Request<pb::WithdrawJoinRequestRequest>,
    ) -> Reply<pb::WithdrawJoinRequestResponse> {
        kith_platform::grpc::observed(Api::withdraw_join_request(self, request).await)
    }
}
