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
    list_threads(pb::ListThreadsRequest) -> pb::ListThreadsResponse;
    get_thread(pb::GetThreadRequest) -> pb::GetThreadResponse;
    get_unread_counts(pb::GetUnreadCountsRequest) -> pb::GetUnreadCountsResponse;
}
