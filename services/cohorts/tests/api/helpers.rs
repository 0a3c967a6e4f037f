//! A server running membership and cohorts on port 0 (as `kith up` does), and typed helpers to
//! drive both.

use std::net::SocketAddr;
use std::time::Duration;

use kith_platform::grpc;
use kith_platform::runtime::{self, Runtime};
use kith_platform::testing::TestEnv;
pub(crate) use kith_platform::testing::{assert_code, error_reason, violated_fields, with_token};
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::cohorts::{self as pb};
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::transport::Channel;
use uuid::Uuid;

pub(crate) type Cohorts = CohortsServiceClient<Channel>;
pub(crate) type Membership = MembershipServiceClient<Channel>;

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<kith_platform::Result<()>>>,
    pub(crate) env: TestEnv,
}

impl App {
    pub(crate) async fn spawn() -> Self {
        let env = TestEnv::new().await;
        let runtime = Runtime::connect(env.args.clone()).await.expect("runtime");
        let membership = kith_membership::start(&runtime)
            .await
            .expect("start membership");
        let cohorts = kith_cohorts::start(&runtime).await.expect("start cohorts");
        let router = grpc::server()
            .add_service(membership.server)
            .add_service(cohorts.server);
        let shutdown = CancellationToken::new();
        let (ready, addr) = tokio::sync::oneshot::channel();
        let server = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                runtime::serve(
                    &runtime,
                    "127.0.0.1:0".parse().expect("addr"),
                    router,
                    &[kith_cohorts::service::GRPC_SERVICE],
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

    /// Another cohorts server on the same database and NATS namespace, as a second replica
    /// would be; returns its address. It stops when `self` does.
    pub(crate) async fn replica(&self) -> SocketAddr {
        let runtime = Runtime::connect(self.env.args.clone())
            .await
            .expect("runtime");
        let cohorts = kith_cohorts::start(&runtime).await.expect("start cohorts");
        let router = grpc::server().add_service(cohorts.server);
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

    /// A request carrying `member`'s token.
    pub(crate) fn as_member<T>(&self, member: Uuid, message: T) -> Request<T> {
        with_token(&self.env.token(member), message)
    }

    /// A pool in the cohorts schema, for looking under the hood.
    pub(crate) async fn pool(&self) -> sqlx::PgPool {
        let schema = kith_platform::db::Schema::parse("cohorts").expect("schema");
        kith_platform::db::connect(&self.env.db.url, &schema, 4)
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

    /// A new member joins the community now; returns them and the community's version after.
    pub(crate) async fn add_member(&mut self, app: &App) -> (Uuid, i64) {
        let mut client = app.membership().await;
        let invitation = client
            .create_invitation(app.as_member(
                self.owner,
                mpb::CreateInvitationRequest {
                    request_id: rid(),
                    community_id: self.id.clone(),
                    expires_at: Some(in_minutes(60)),
                    max_uses: 1,
                },
            ))
            .await
            .expect("create invitation")
            .into_inner()
            .invitation_id;
        let member = Uuid::new_v4();
        self.accept(app, &mut client, &invitation, member).await;
        self.members.push(member);
        (member, self.version)
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

/// The whole roster as `viewer` sees it, once it includes `min_position`.
pub(crate) async fn roster(
    app: &App,
    client: &mut Cohorts,
    viewer: Uuid,
    cohort: &str,
    min_position: i64,
) -> Vec<pb::RosterEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_roster(app.as_member(
                viewer,
                pb::ListRosterRequest {
                    cohort_id: cohort.into(),
                    page_size: 200,
                    page_token: page_token.clone(),
                    min_position,
                },
            ))
            .await
            .expect("list roster")
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

/// Member ids of `entries` in `place`, in roster order.
pub(crate) fn in_place(entries: &[pb::RosterEntry], place: pb::Place) -> Vec<Uuid> {
    entries
        .iter()
        .filter(|e| e.place == place as i32)
        .map(|e| e.member_id.parse().expect("member id"))
        .collect()
}

/// How long cross-service effects may take in a test before it fails.
pub(crate) const BUS_TIMEOUT: Duration = Duration::from_secs(20);
