//! A server running membership, cohorts, messaging and notifications on port 0, and typed
//! helpers: a cohort with members, posts, and waiting for a member's feed.

use std::net::SocketAddr;
use std::time::Duration;

use kith_platform::grpc;
use kith_platform::runtime::{self, Runtime};
use kith_platform::testing::TestEnv;
pub(crate) use kith_platform::testing::community::{Community, as_member, rid};
pub(crate) use kith_platform::testing::{assert_code, error_reason, eventually, violated_fields};
use kith_proto::messaging as msg;
use kith_proto::messaging::messaging_service_client::MessagingServiceClient;
use kith_proto::notifications as pb;
use kith_proto::notifications::notifications_service_client::NotificationsServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

pub(crate) type Messaging = MessagingServiceClient<Channel>;
pub(crate) type Notifications = NotificationsServiceClient<Channel>;

/// How long a test waits for an event to travel from one service to another.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    pub(crate) env: TestEnv,
    /// The one-click unsubscribe endpoint.
    pub(crate) unsubscribe: SocketAddr,
}

impl App {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(kith_notifications::DeliveryArgs::default()).await
    }

    /// With email and webhook delivery set up as `delivery` says.
    pub(crate) async fn spawn_with(delivery: kith_notifications::DeliveryArgs) -> Self {
        let env = TestEnv::new().await;
        let runtime = Runtime::connect(env.args.clone()).await.expect("runtime");
        let membership = kith_membership::start(&runtime).await.expect("membership");
        let cohorts = kith_cohorts::start(&runtime).await.expect("cohorts");
        let messaging = kith_messaging::start(&runtime).await.expect("messaging");
        let notifications = kith_notifications::start_with(&runtime, delivery)
            .await
            .expect("notifications");
        let unsubscribe = notifications.unsubscribe_addr;
        let router = grpc::server()
            .add_service(membership.server)
            .add_service(cohorts.server)
            .add_service(messaging.server)
            .add_service(notifications.server);
        let shutdown = CancellationToken::new();
        let (ready, addr) = tokio::sync::oneshot::channel();
        let token = shutdown.clone();
        tokio::spawn(async move {
            runtime::serve(
                &runtime,
                "127.0.0.1:0".parse().expect("addr"),
                router,
                &[kith_notifications::GRPC_SERVICE],
                token,
                |addr| {
                    let _ = ready.send(addr);
                },
            )
            .await
        });
        let addr = addr.await.expect("server ready");
        Self {
            addr,
            shutdown,
            env,
            unsubscribe,
        }
    }

    pub(crate) async fn messaging(&self) -> Messaging {
        MessagingServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    pub(crate) async fn notifications(&self) -> Notifications {
        NotificationsServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// A pool in `schema`, for looking under the hood.
    pub(crate) async fn pool(&self, schema: &str) -> sqlx::PgPool {
        let schema = kith_platform::db::Schema::parse(schema).expect("schema");
        kith_platform::db::connect(&self.env.db.url, &schema, 4)
            .await
            .expect("pool")
    }

    /// A community of `members` plain members and an open cohort where all of them and the
    /// coach sit, once messaging and notifications both know every seat (so that a mention
    /// resolves and every reader is told).
    pub(crate) async fn cohort(&self, members: usize) -> (Community, String) {
        let community = Community::create(self.addr, members).await;
        let cohort = community.open_cohort(30).await;
        for member in &community.members {
            community.join(&cohort, *member).await;
        }
        let id: Uuid = cohort.parse().expect("cohort id");
        let everyone = members as i64 + 1;
        for (schema, sql) in [
            (
                "messaging",
                "SELECT count(*) FROM cohort_places p JOIN cohorts c USING (cohort_id)
                 JOIN community_members m
                   ON m.community_id = c.community_id AND m.member_id = p.member_id AND m.active
                 WHERE p.cohort_id = $1 AND p.place IN ('seat', 'facilitator')",
            ),
            (
                "notifications",
                "SELECT count(*) FROM places p JOIN cohorts c USING (cohort_id)
                 JOIN members m
                   ON m.community_id = c.community_id AND m.member_id = p.member_id AND m.active
                 WHERE p.cohort_id = $1 AND p.place IN ('seat', 'facilitator')",
            ),
        ] {
            let pool = self.pool(schema).await;
            eventually(
                PATIENCE,
                "every seat to reach messaging and notifications",
                || {
                    let pool = pool.clone();
                    async move {
                        let seated: i64 = sqlx::query_scalar(sql)
                            .bind(id)
                            .fetch_one(&pool)
                            .await
                            .unwrap_or(0);
                        (seated == everyone).then_some(())
                    }
                },
            )
            .await;
            pool.close().await;
        }
        (community, cohort)
    }

    /// `member` posts `body` in `conversation` (in `thread` when not empty), retrying while the
    /// seat is still on its way to messaging.
    pub(crate) async fn post(
        &self,
        member: Uuid,
        conversation: &str,
        thread: &str,
        body: &str,
    ) -> msg::PostMessageResponse {
        let client = self.messaging().await;
        let request = msg::PostMessageRequest {
            request_id: rid(),
            conversation_id: conversation.into(),
            thread_id: thread.into(),
            title: String::new(),
            body: body.into(),
        };
        eventually(PATIENCE, "messaging to take the post", || {
            let mut client = client.clone();
            let request = as_member(member, request.clone());
            async move {
                match client.post_message(request).await {
                    Ok(reply) => Some(reply.into_inner()),
                    Err(status)
                        if matches!(
                            status.code(),
                            tonic::Code::PermissionDenied
                                | tonic::Code::Unavailable
                                | tonic::Code::NotFound
                        ) =>
                    {
                        None
                    }
                    Err(status) => panic!("post: {status:?}"),
                }
            }
        })
        .await
    }

    /// The id of messaging's event at `position` (the source event of what it caused).
    pub(crate) async fn messaging_event(&self, position: i64) -> String {
        let pool = self.pool("messaging").await;
        let id: Uuid = sqlx::query_scalar("SELECT event_id FROM events WHERE position = $1")
            .bind(position)
            .fetch_one(&pool)
            .await
            .expect("messaging event");
        pool.close().await;
        id.to_string()
    }

    /// `member`'s whole feed, newest first.
    pub(crate) async fn feed(&self, member: Uuid) -> Vec<pb::Notification> {
        let mut client = self.notifications().await;
        let mut out = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_notifications(as_member(
                    member,
                    pb::ListNotificationsRequest {
                        page_size: 2,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                ))
                .await
                .expect("list notifications")
                .into_inner();
            out.extend(page.notifications);
            if page.next_page_token.is_empty() {
                return out;
            }
            page_token = page.next_page_token;
        }
    }

    /// Waits until `member`'s feed satisfies `done`, and returns it.
    pub(crate) async fn feed_until(
        &self,
        member: Uuid,
        what: &str,
        done: impl Fn(&[pb::Notification]) -> bool,
    ) -> Vec<pb::Notification> {
        eventually(PATIENCE, what, || async {
            let feed = self.feed(member).await;
            done(&feed).then_some(feed)
        })
        .await
    }

    /// Waits until `member`'s feed holds a notification about `message`, and returns it.
    pub(crate) async fn about(&self, member: Uuid, message: &str) -> pb::Notification {
        let feed = self
            .feed_until(member, "a notification about the message", |f| {
                f.iter().any(|n| n.message_id == message)
            })
            .await;
        feed.into_iter()
            .find(|n| n.message_id == message)
            .expect("found")
    }

    /// Waits until notifications has decided (delivered or not) on `source_event` for `member`,
    /// and returns the explanation.
    pub(crate) async fn explained(
        &self,
        member: Uuid,
        source_event: &str,
    ) -> pb::ExplainNotificationResponse {
        let client = self.notifications().await;
        eventually(PATIENCE, "notifications to decide on the event", || {
            let mut client = client.clone();
            async move {
                let reply = client
                    .explain_notification(as_member(
                        member,
                        pb::ExplainNotificationRequest {
                            subject: Some(
                                pb::explain_notification_request::Subject::SourceEventId(
                                    source_event.to_owned(),
                                ),
                            ),
                            min_position: 0,
                        },
                    ))
                    .await
                    .expect("explain")
                    .into_inner();
                (!reply.notification_id.is_empty()).then_some(reply)
            }
        })
        .await
    }

    /// The explanation of `member`'s notification `notification` as it stands now.
    pub(crate) async fn why(
        &self,
        member: Uuid,
        notification: &str,
    ) -> pb::ExplainNotificationResponse {
        self.notifications()
            .await
            .explain_notification(as_member(
                member,
                pb::ExplainNotificationRequest {
                    subject: Some(pb::explain_notification_request::Subject::NotificationId(
                        notification.to_owned(),
                    )),
                    min_position: 0,
                },
            ))
            .await
            .expect("explain")
            .into_inner()
    }

    pub(crate) async fn set_preferences(&self, member: Uuid, preferences: pb::Preferences) -> i64 {
        let position = self
            .notifications()
            .await
            .set_preferences(as_member(
                member,
                pb::SetPreferencesRequest {
                    request_id: rid(),
                    preferences: Some(preferences),
                },
            ))
            .await
            .expect("set preferences")
            .into_inner()
            .committed
            .expect("committed")
            .position;
        // Decisions read preferences from the ledger: they are there before the test goes on.
        self.notifications()
            .await
            .get_preferences(as_member(
                member,
                pb::GetPreferencesRequest {
                    min_position: position,
                },
            ))
            .await
            .expect("the preferences applied");
        position
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The kinds of a notification, strongest first.
pub(crate) fn kinds(notification: &pb::Notification) -> (pb::Kind, Vec<pb::Kind>) {
    (
        notification.kind(),
        notification
            .also
            .iter()
            .map(|k| pb::Kind::try_from(*k).expect("kind"))
            .collect(),
    )
}

/// Delivery through `smtp` (and webhooks to loopback), with a batching window of `window`.
pub(crate) fn delivering(smtp: &str, window: Duration) -> kith_notifications::DeliveryArgs {
    kith_notifications::DeliveryArgs {
        smtp_url: Some(smtp.parse().unwrap_or_else(|never| match never {})),
        email_batch_window: window,
        webhook_allow_private: true,
        webhook_first_retry: Duration::from_millis(100),
        ..Default::default()
    }
}

impl App {
    /// Gives `member` an email address (and a webhook URL, when not empty); returns the
    /// webhook secret.
    pub(crate) async fn contact(&self, member: Uuid, email: &str, webhook_url: &str) -> String {
        let mut client = self.notifications().await;
        let set = client
            .set_contact(as_member(
                member,
                pb::SetContactRequest {
                    request_id: rid(),
                    email: email.into(),
                    webhook_url: webhook_url.into(),
                },
            ))
            .await
            .expect("set contact")
            .into_inner();
        // Decisions read the contact from the ledger: it is there before the test goes on.
        let min_position = set.committed.expect("committed").position;
        client
            .get_contact(as_member(member, pb::GetContactRequest { min_position }))
            .await
            .expect("the contact applied");
        set.webhook_secret
    }

    /// The status and reason of `notification` on `channel`, once it satisfies `done`.
    pub(crate) async fn channel_until(
        &self,
        member: Uuid,
        notification: &str,
        channel: pb::Channel,
        done: impl Fn(&pb::ChannelStatus) -> bool,
    ) -> pb::ChannelStatus {
        let client = self.notifications().await;
        eventually(
            PATIENCE,
            "the delivery to reach the expected status",
            || {
                let mut client = client.clone();
                let done = &done;
                async move {
                    let why = client
                        .explain_notification(as_member(
                            member,
                            pb::ExplainNotificationRequest {
                                subject: Some(
                                    pb::explain_notification_request::Subject::NotificationId(
                                        notification.to_owned(),
                                    ),
                                ),
                                min_position: 0,
                            },
                        ))
                        .await
                        .expect("explain")
                        .into_inner();
                    why.channels
                        .into_iter()
                        .find(|c| c.channel() == channel)
                        .filter(|c| done(c))
                }
            },
        )
        .await
    }
}
