//! A server running membership, cohorts and messaging on port 0 (as `kith up` does), and typed
//! helpers to drive them: a community with members, a cohort they sit in, posts.

use std::net::SocketAddr;

use kith_platform::grpc;
use kith_platform::runtime::{self, Runtime};
use kith_platform::testing::TestEnv;
pub(crate) use kith_platform::testing::{assert_code, error_reason, violated_fields, with_token};
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::cohorts::{self as pb};
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use kith_proto::messaging as msg;
use kith_proto::messaging::messaging_service_client::MessagingServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

pub(crate) type Cohorts = CohortsServiceClient<Channel>;
pub(crate) type Membership = MembershipServiceClient<Channel>;
pub(crate) type Messaging = MessagingServiceClient<Channel>;

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    pub(crate) env: TestEnv,
}

async fn serve(
    runtime: Runtime,
    router: kith_platform::grpc::Router,
    shutdown: CancellationToken,
) -> SocketAddr {
    let (ready, addr) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        runtime::serve(
            &runtime,
            "127.0.0.1:0".parse().expect("addr"),
            router,
            &[kith_messaging::service::GRPC_SERVICE],
            shutdown,
            |addr| {
                let _ = ready.send(addr);
            },
        )
        .await
    });
    addr.await.expect("server ready")
}

impl App {
    pub(crate) async fn spawn() -> Self {
        let env = TestEnv::new().await;
        let runtime = Runtime::connect(env.args.clone()).await.expect("runtime");
        let membership = kith_membership::start(&runtime)
            .await
            .expect("start membership");
        let cohorts = kith_cohorts::start(&runtime).await.expect("start cohorts");
        let messaging = kith_messaging::start(&runtime)
            .await
            .expect("start messaging");
        let router = grpc::server()
            .add_service(membership.server)
            .add_service(cohorts.server)
            .add_service(messaging.server);
        let shutdown = CancellationToken::new();
        let addr = serve(runtime, router, shutdown.clone()).await;
        Self {
            addr,
            shutdown,
            env,
        }
    }

    /// Another messaging server on the same database and NATS namespace, as a second replica
    /// would be; returns a client of it. It stops when `self` does.
    pub(crate) async fn replica(&self) -> Messaging {
        let runtime = Runtime::connect(self.env.args.clone())
            .await
            .expect("runtime");
        let messaging = kith_messaging::start(&runtime)
            .await
            .expect("start messaging");
        let router = grpc::server().add_service(messaging.server);
        let addr = serve(runtime, router, self.shutdown.child_token()).await;
        MessagingServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect")
    }

    pub(crate) async fn cohorts(&self) -> Cohorts {
        CohortsServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    pub(crate) async fn membership(&self) -> Membership {
        MembershipServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    pub(crate) async fn messaging(&self) -> Messaging {
        MessagingServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// A request carrying `member`'s token.
    pub(crate) fn as_member<T>(&self, member: Uuid, message: T) -> Request<T> {
        with_token(&self.env.token(member), message)
    }

    /// A pool in the messaging schema, for looking under the hood.
    pub(crate) async fn pool(&self) -> sqlx::PgPool {
        let schema = kith_platform::db::Schema::parse("messaging").expect("schema");
        kith_platform::db::connect(&self.env.db.url, &schema, 4)
            .await
            .expect("pool")
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

pub(crate) fn in_minutes(minutes: i64) -> prost_types::Timestamp {
    kith_platform::wire::timestamp(chrono::Utc::now() + chrono::Duration::minutes(minutes))
}

/// A community with an owner, a coach and some members, as membership has recorded it; `version`
/// is the community stream's version after the last join (pass it as `community_version`).
#[derive(Debug, Clone)]
pub(crate) struct Community {
    pub(crate) id: String,
    pub(crate) owner: Uuid,
    pub(crate) coach: Uuid,
    pub(crate) members: Vec<Uuid>,
    pub(crate) version: i64,
}

impl Community {
    /// Creates a community owned by a new owner, with a coach and `members` plain members.
    pub(crate) async fn create(app: &App, members: usize) -> Self {
        let mut client = app.membership().await;
        let owner = Uuid::new_v4();
        let created = client
            .create_community(app.as_member(
                owner,
                mpb::CreateCommunityRequest {
                    request_id: rid(),
                    name: "Growth Circle".into(),
                    description: String::new(),
                    founder: Some(profile("owner")),
                },
            ))
            .await
            .expect("create community")
            .into_inner();
        let id = created.community_id;
        let mut community = Self {
            id,
            owner,
            coach: Uuid::new_v4(),
            members: Vec::new(),
            version: created.committed.expect("committed").version,
        };
        let invitation = client
            .create_invitation(app.as_member(
                owner,
                mpb::CreateInvitationRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    expires_at: Some(in_minutes(60)),
                    max_uses: 10_000,
                },
            ))
            .await
            .expect("create invitation")
            .into_inner()
            .invitation_id;
        let coach = community.coach;
        community.accept(app, &mut client, &invitation, coach).await;
        let assigned = client
            .assign_role(app.as_member(
                owner,
                mpb::AssignRoleRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    member_id: coach.to_string(),
                    role: mpb::MemberRole::Coach as i32,
                },
            ))
            .await
            .expect("assign coach")
            .into_inner();
        community.version = assigned.committed.expect("committed").version;
        // Joins go through the one community stream; a few at a time keeps the test quick.
        let new_members: Vec<Uuid> = (0..members).map(|_| Uuid::new_v4()).collect();
        for chunk in new_members.chunks(16) {
            let joins = chunk.iter().map(|member| {
                let app = &*app;
                let invitation = invitation.clone();
                let community_id = community.id.clone();
                let member = *member;
                async move {
                    let mut client = app.membership().await;
                    accept(app, &mut client, &community_id, &invitation, member).await
                }
            });
            for version in futures::future::join_all(joins).await {
                community.version = community.version.max(version);
            }
        }
        community.members = new_members;
        community
    }

    async fn accept(&mut self, app: &App, client: &mut Membership, invitation: &str, member: Uuid) {
        let version = accept(app, client, &self.id, invitation, member).await;
        self.version = self.version.max(version);
    }
}

fn profile(prefix: &str) -> mpb::ProfileInput {
    let handle = format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..10]);
    mpb::ProfileInput {
        display_name: format!("Person {handle}"),
        handle,
        bio: String::new(),
    }
}

async fn accept(
    app: &App,
    client: &mut Membership,
    community: &str,
    invitation: &str,
    member: Uuid,
) -> i64 {
    client
        .accept_invitation(app.as_member(
            member,
            mpb::AcceptInvitationRequest {
                request_id: rid(),
                community_id: community.into(),
                invitation_id: invitation.into(),
                profile: Some(profile("m")),
            },
        ))
        .await
        .expect("accept invitation")
        .into_inner()
        .committed
        .expect("committed")
        .version
}

/// Creates a cohort as the community's coach (its first facilitator) and opens it; returns its
/// id.
pub(crate) async fn open_cohort(
    app: &App,
    client: &mut Cohorts,
    community: &Community,
    capacity: u32,
) -> String {
    let cohort = create_cohort(app, client, community, capacity).await;
    client
        .open_cohort(app.as_member(
            community.coach,
            pb::OpenCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        ))
        .await
        .expect("open cohort");
    cohort
}

/// Creates a draft mastermind cohort as the community's coach; returns its id.
pub(crate) async fn create_cohort(
    app: &App,
    client: &mut Cohorts,
    community: &Community,
    capacity: u32,
) -> String {
    client
        .create_cohort(app.as_member(
            community.coach,
            pb::CreateCohortRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                name: "Founders mastermind".into(),
                kind: pb::CohortKind::Mastermind as i32,
                capacity: Some(capacity),
                time_zone: "Europe/Berlin".into(),
                goal: "ship weekly".into(),
                community_version: community.version,
                ..Default::default()
            },
        ))
        .await
        .expect("create cohort")
        .into_inner()
        .cohort_id
}

/// `member` joins `cohort`; returns the place they got and the reply's position.
pub(crate) async fn join(
    app: &App,
    client: &mut Cohorts,
    community: &Community,
    cohort: &str,
    member: Uuid,
) -> (pb::Place, i64) {
    let request = pb::JoinCohortRequest {
        request_id: rid(),
        cohort_id: cohort.into(),
        community_version: community.version,
    };
    let reply = kith_platform::testing::retrying(|| {
        let mut client = client.clone();
        let request = app.as_member(member, request.clone());
        async move { client.join_cohort(request).await }
    })
    .await
    .expect("join cohort")
    .into_inner();
    (
        pb::Place::try_from(reply.place).expect("place"),
        reply.committed.expect("committed").position,
    )
}

/// A community with a coach and `members` plain members, and an open cohort of `capacity`
/// whose facilitator is the coach and where the first `seated` members sit; returns both and
/// the cohort's position after the last join.
pub(crate) async fn cohort_with(
    app: &App,
    members: usize,
    capacity: u32,
    seated: usize,
) -> (Community, String, i64) {
    let community = Community::create(app, members).await;
    let mut cohorts = app.cohorts().await;
    let cohort = open_cohort(app, &mut cohorts, &community, capacity).await;
    let mut position = 0;
    for member in &community.members[..seated] {
        let (_, at) = join(app, &mut cohorts, &community, &cohort, *member).await;
        position = position.max(at);
    }
    (community, cohort, position)
}

/// `member` posts `body` in `conversation` (in `thread` when not empty), retrying while the
/// cohort's seat is still on its way to messaging (the call answers NOT_A_READER until then).
pub(crate) async fn post(
    app: &App,
    client: &mut Messaging,
    member: Uuid,
    conversation: &str,
    thread: &str,
    body: &str,
) -> msg::PostMessageResponse {
    let request = msg::PostMessageRequest {
        request_id: rid(),
        conversation_id: conversation.into(),
        thread_id: thread.into(),
        title: String::new(),
        body: body.into(),
    };
    kith_platform::testing::eventually(
        std::time::Duration::from_secs(10),
        "messaging to learn of the seat and take the post",
        || {
            let mut client = client.clone();
            let request = app.as_member(member, request.clone());
            async move {
                match client.post_message(request).await {
                    Ok(reply) => Some(reply.into_inner()),
                    // UNAVAILABLE: no database connection free in time under load; NOT_FOUND:
                    // the new cohort's event has not reached messaging yet (it waits a second
                    // for it, which a loaded machine can exceed). The same request id makes the
                    // retry safe, as a client's retry policy would.
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
        },
    )
    .await
}

/// The threads of `conversation` as `member` sees them, once they include `min_position`.
pub(crate) async fn threads(
    app: &App,
    client: &mut Messaging,
    member: Uuid,
    conversation: &str,
    min_position: i64,
) -> Result<Vec<msg::Thread>, tonic::Status> {
    let mut threads = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_threads(app.as_member(
                member,
                msg::ListThreadsRequest {
                    conversation_id: conversation.into(),
                    page_size: 2,
                    page_token: page_token.clone(),
                    min_position,
                },
            ))
            .await?
            .into_inner();
        threads.extend(page.threads);
        if page.next_page_token.is_empty() {
            return Ok(threads);
        }
        page_token = page.next_page_token;
    }
}

/// `member`'s unread counts once messaging includes `min_position`.
pub(crate) async fn unread(
    app: &App,
    client: &mut Messaging,
    member: Uuid,
    min_position: i64,
) -> msg::GetUnreadCountsResponse {
    client
        .get_unread_counts(app.as_member(member, msg::GetUnreadCountsRequest { min_position }))
        .await
        .expect("unread counts")
        .into_inner()
}

/// Opens (or finds again) the direct conversation of `member` with `others` in `community`;
/// returns its id.
pub(crate) async fn open_direct(
    app: &App,
    client: &mut Messaging,
    member: Uuid,
    community: &Community,
    others: &[Uuid],
) -> String {
    client
        .open_direct_conversation(app.as_member(
            member,
            msg::OpenDirectConversationRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                participant_ids: others.iter().map(Uuid::to_string).collect(),
            },
        ))
        .await
        .expect("open direct conversation")
        .into_inner()
        .conversation_id
}

/// Returns once messaging has applied membership's events of `community` up to `version`.
pub(crate) async fn until_community_version(app: &App, community: &str, version: i64) {
    let pool = app.pool().await;
    let community: Uuid = community.parse().expect("community id");
    kith_platform::testing::eventually(
        std::time::Duration::from_secs(10),
        "messaging to apply the community's events",
        || {
            let pool = pool.clone();
            async move {
                let seen: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM communities WHERE community_id = $1")
                        .bind(community)
                        .fetch_optional(&pool)
                        .await
                        .expect("community version");
                (seen >= Some(version)).then_some(())
            }
        },
    )
    .await;
    pool.close().await;
}
