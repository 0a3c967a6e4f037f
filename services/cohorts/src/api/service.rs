//! The tonic service trait, each call delegating to its handler with a span around it.

use kith_proto::cohorts as pb;
use kith_proto::cohorts::cohorts_service_server::CohortsService;
use tonic::{Request, Response, Status};

use super::Api;

type Reply<T> = Result<Response<T>, Status>;

macro_rules! delegate {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl CohortsService for Api {
            $(
                #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
                async fn $method(&self, request: Request<$request>) -> Reply<$response> {
                    kith_platform::grpc::observed(Api::$method(self, request).await)
                }
            )*
        }
    };
}

delegate! {
    create_cohort(pb::CreateCohortRequest) -> pb::CreateCohortResponse;
    update_cohort(pb::UpdateCohortRequest) -> pb::UpdateCohortResponse;
    open_cohort(pb::OpenCohortRequest) -> pb::OpenCohortResponse;
    start_cohort(pb::StartCohortRequest) -> pb::StartCohortResponse;
    close_cohort(pb::CloseCohortRequest) -> pb::CloseCohortResponse;
    graduate_cohort(pb::GraduateCohortRequest) -> pb::GraduateCohortResponse;
    archive_cohort(pb::ArchiveCohortRequest) -> pb::ArchiveCohortResponse;
    assign_facilitator(pb::AssignFacilitatorRequest) -> pb::AssignFacilitatorResponse;
    remove_facilitator(pb::RemoveFacilitatorRequest) -> pb::RemoveFacilitatorResponse;
    join_cohort(pb::JoinCohortRequest) -> pb::JoinCohortResponse;
    leave_cohort(pb::LeaveCohortRequest) -> pb::LeaveCohortResponse;
    remove_from_cohort(pb::RemoveFromCohortRequest) -> pb::RemoveFromCohortResponse;
    invite_to_cohort(pb::InviteToCohortRequest) -> pb::InviteToCohortResponse;
    accept_cohort_invitation(pb::AcceptCohortInvitationRequest) -> pb::AcceptCohortInvitationResponse;
    decline_cohort_invitation(pb::DeclineCohortInvitationRequest) -> pb::DeclineCohortInvitationResponse;
    revoke_cohort_invitation(pb::RevokeCohortInvitationRequest) -> pb::RevokeCohortInvitationResponse;
    schedule_session(pb::ScheduleSessionRequest) -> pb::ScheduleSessionResponse;
    reschedule_session(pb::RescheduleSessionRequest) -> pb::RescheduleSessionResponse;
    cancel_session(pb::CancelSessionRequest) -> pb::CancelSessionResponse;
    respond_to_session(pb::RespondToSessionRequest) -> pb::RespondToSessionResponse;
    record_attendance(pb::RecordAttendanceRequest) -> pb::RecordAttendanceResponse;
    get_cohort(pb::GetCohortRequest) -> pb::GetCohortResponse;
    list_cohorts(pb::ListCohortsRequest) -> pb::ListCohortsResponse;
    list_roster(pb::ListRosterRequest) -> pb::ListRosterResponse;
    get_roster_at(pb::GetRosterAtRequest) -> pb::GetRosterAtResponse;
    list_member_cohorts(pb::ListMemberCohortsRequest) -> pb::ListMemberCohortsResponse;
    list_sessions(pb::ListSessionsRequest) -> pb::ListSessionsResponse;
}
