//! A membership server on port 0 and typed helpers to drive it.

use std::net::SocketAddr;

use kith_platform::grpc;
use kith_platform::runtime::{self, Runtime};
use kith_platform::testing::TestEnv;
pub(crate) use kith_platform::testing::{assert_code, error_reason, violated_fields, with_token};
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use kith_proto::membership::{self as pb};
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

pub(crate) type Client = MembershipServiceClient<Channel>;

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<kith_platform::Result<()>>>,
    pub(crate) env: TestEnv,
}

impl App {
    pub(crate) async fn spawn() -> Self {
        Self::spawn_with(TestEnv::new().await).await
    }

    /// Another server on the same database and NATS namespace, as a second replica would be.
    /// Returns its address; it stops when `self` does.
    pub(crate) async fn replica(&self) -> SocketAddr {
        let runtime = Runtime::connect(self.env.args.clone())
            .await
            .expect("runtime");
        let membership = kith_membership::start(&runtime)
            .await
            .expect("start membership");
        let router = grpc::server().add_service(membership.server);
        let shutdown = self.shutdown.child_token();
        let (ready, addr) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            runtime::serve(
                &runtime,
                "127.0.0.1:0".parse().expect("addr"),
                router,
                &[],
                shutdown,
                |addr| {
                    let _ = ready.send(addr);
                },
            )
            .await
        });
        addr.await.expect("replica ready")
    }

    async fn spawn_with(env: TestEnv) -> Self {
        let runtime = Runtime::connect(env.args.clone()).await.expect("runtime");
        let membership = kith_membership::start(&runtime)
            .await
            .expect("start membership");
        let router = grpc::server().add_service(membership.server);
        let shutdown = CancellationToken::new();
        let (ready, addr) = tokio::sync::oneshot::channel();
        let server = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                runtime::serve(
                    &runtime,
                    "127.0.0.1:0".parse().expect("addr"),
                    router,
                    &["kith.membership.v1.MembershipService"],
                    shutdown,
                    |addr| {
                        let _ = ready.send(addr);
                    },
                )
                .await
            })
        };
        let addr = addr.await.expect("server ready");
        Self {
            addr,
            shutdown,
            server: Some(server),
            env,
        }
    }

    pub(crate) async fn client(&self) -> Client {
        MembershipServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// A request carrying `member`'s token.
    pub(crate) fn as_member<T>(&self, member: Uuid, message: T) -> Request<T> {
        with_token(&self.env.token(member), message)
    }

    /// A pool in the service's schema, for looking under the hood.
    pub(crate) async fn pool(&self) -> sqlx::PgPool {
        let schema = kith_platform::db::Schema::parse("membership").expect("schema");
        kith_platform::db::connect(&self.env.db.url, &schema, 2)
            .await
            .expect("pool")
    }

    /// Stops the server and its background work.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(crate) fn rid() -> String {
    Uuid::new_v4().to_string()
}

pub(crate) fn profile(name: &str, handle: &str) -> Option<pb::ProfileInput> {
    Some(pb::ProfileInput {
        display_name: name.into(),
        handle: handle.into(),
        bio: String::new(),
    })
}

/// Creates a community owned by `owner`; returns its id and the position of the reply.
pub(crate) async fn create_community(
    app: &App,
    client: &mut Client,
    owner: Uuid,
    name: &str,
) -> (String, i64) {
    let reply = client
        .create_community(app.as_member(
            owner,
            pb::CreateCommunityRequest {
                request_id: rid(),
                name: name.into(),
                description: "a place to grow".into(),
                founder: profile(
                    "Olive Owner",
                    &format!("owner{}", &owner.simple().to_string()[..6]),
                ),
            },
        ))
        .await
        .expect("create community")
        .into_inner();
    (
        reply.community_id,
        reply.committed.expect("committed").position,
    )
}

/// Creates an invitation and has `member` accept it; returns the acceptance's position.
pub(crate) async fn invite_and_join(
    app: &App,
    client: &mut Client,
    community: &str,
    inviter: Uuid,
    member: Uuid,
    handle: &str,
) -> i64 {
    let invitation = client
        .create_invitation(app.as_member(
            inviter,
            pb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.into(),
                expires_at: Some(in_days(7)),
                max_uses: 1,
            },
        ))
        .await
        .expect("create invitation")
        .into_inner();
    client
        .accept_invitation(app.as_member(
            member,
            pb::AcceptInvitationRequest {
                request_id: rid(),
                community_id: community.into(),
                invitation_id: invitation.invitation_id,
                profile: profile(&format!("Member {handle}"), handle),
            },
        ))
        .await
        .expect("accept invitation")
        .into_inner()
        .committed
        .expect("committed")
        .position
}

pub(crate) fn in_days(days: i64) -> prost_types::Timestamp {
    let at = chrono::Utc::now() + chrono::Duration::days(days);
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}
