//! The tonic service trait, each call delegating to its handler with a span around it.

use kith_proto::notifications as pb;
use kith_proto::notifications::notifications_service_server::NotificationsService;
use tonic::{Request, Response, Status};

use super::Api;

type Reply<T> = Result<Response<T>, Status>;

macro_rules! delegate {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl NotificationsService for Api {
            type StreamNotificationsStream = super::stream::FeedStream;

            #[tracing::instrument(skip_all, fields(grpc.code = tracing::field::Empty, kith.reason = tracing::field::Empty))]
            async fn stream_notifications(
                &self,
                request: Request<pb::StreamNotificationsRequest>,
            ) -> Reply<Self::StreamNotificationsStream> {
                kith_platform::grpc::observed(Api::stream_notifications(self, request).await)
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
    get_preferences(pb::GetPreferencesRequest) -> pb::GetPreferencesResponse;
    set_preferences(pb::SetPreferencesRequest) -> pb::SetPreferencesResponse;
    list_notifications(pb::ListNotificationsRequest) -> pb::ListNotificationsResponse;
    get_unread_count(pb::GetUnreadCountRequest) -> pb::GetUnreadCountResponse;
    mark_read(pb::MarkReadRequest) -> pb::MarkReadResponse;
    explain_notification(pb::ExplainNotificationRequest) -> pb::ExplainNotificationResponse;
    set_contact(pb::SetContactRequest) -> pb::SetContactResponse;
    get_contact(pb::GetContactRequest) -> pb::GetContactResponse;
}
