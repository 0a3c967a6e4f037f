//! The tonic service trait, each call delegating to its handler with a span around it.

use kith_proto::messaging as pb;
use kith_proto::messaging::messaging_service_server::MessagingService;
use tonic::{Request, Response, Status};

use super::Api;

type Reply<T> = Result<Response<T>, Status>;

macro_rules! delegate {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl MessagingService for Api {
            type SubscribeStream = super::live::LiveStream;

            #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
            async fn subscribe(
                &self,
                request: Request<pb::SubscribeRequest>,
            ) -> Reply<Self::SubscribeStream> {
                kith_platform::grpc::observed(Api::subscribe(self, request).await)
            }

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
    post_message(pb::PostMessageRequest) -> pb::PostMessageResponse;
    edit_message(pb::EditMessageRequest) -> pb::EditMessageResponse;
    delete_message(pb::DeleteMessageRequest) -> pb::DeleteMessageResponse;
    add_reaction(pb::AddReactionRequest) -> pb::AddReactionResponse;
    remove_reaction(pb::RemoveReactionRequest) -> pb::RemoveReactionResponse;
    open_direct_conversation(pb::OpenDirectConversationRequest) -> pb::OpenDirectConversationResponse;
    mark_read(pb::MarkReadRequest) -> pb::MarkReadResponse;
    hide_message(pb::HideMessageRequest) -> pb::HideMessageResponse;
    unhide_message(pb::UnhideMessageRequest) -> pb::UnhideMessageResponse;
    pin_thread(pb::PinThreadRequest) -> pb::PinThreadResponse;
    unpin_thread(pb::UnpinThreadRequest) -> pb::UnpinThreadResponse;
    report_message(pb::ReportMessageRequest) -> pb::ReportMessageResponse;
    resolve_report(pb::ResolveReportRequest) -> pb::ResolveReportResponse;
    set_slow_mode(pb::SetSlowModeRequest) -> pb::SetSlowModeResponse;
    follow_thread(pb::FollowThreadRequest) -> pb::FollowThreadResponse;
    unfollow_thread(pb::UnfollowThreadRequest) -> pb::UnfollowThreadResponse;
    set_read_receipts(pb::SetReadReceiptsRequest) -> pb::SetReadReceiptsResponse;
    list_threads(pb::ListThreadsRequest) -> pb::ListThreadsResponse;
    get_thread(pb::GetThreadRequest) -> pb::GetThreadResponse;
    get_unread_counts(pb::GetUnreadCountsRequest) -> pb::GetUnreadCountsResponse;
    list_messages(pb::ListMessagesRequest) -> pb::ListMessagesResponse;
    get_message_history(pb::GetMessageHistoryRequest) -> pb::GetMessageHistoryResponse;
    get_seen_by(pb::GetSeenByRequest) -> pb::GetSeenByResponse;
    search_messages(pb::SearchMessagesRequest) -> pb::SearchMessagesResponse;
    list_direct_conversations(pb::ListDirectConversationsRequest) -> pb::ListDirectConversationsResponse;
    list_reports(pb::ListReportsRequest) -> pb::ListReportsResponse;
}
