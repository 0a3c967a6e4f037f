//! A community with an owner, a coach and members, and cohorts they sit in, made through the
//! membership and cohorts services' gRPC APIs at `addr` (a `kith up`-like server in a test):
//! the starting point of every test about what happens inside a group.

use std::net::SocketAddr;

use kith_proto::cohorts as cpb;
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tonic::transport::Channel;
use uuid::Uuid;

use super::{TEST_JWT_SECRET, retrying, with_token};

/// A fresh idempotency key.
pub fn rid() -> String {
    Uuid::new_v4().to_string()
}

fn in_minutes(minutes: i64) -> prost_types::Timestamp {
    crate::wire::timestamp(chrono::Utc::now() + chrono::Duration::minutes(minutes))
}

/// A community as membership recorded it; `version` is its stream's version after the last join
/// (pass it as `community_version`).
#[derive(Debug, Clone)]
pub struct Community {
    pub addr: SocketAddr,
    pub id: String,
    pub owner: Uuid,
    pub coach: Uuid,
    pub members: Vec<Uuid>,
    /// Each member's handle, by index in `members`.
    pub handles: Vec<String>,
    pub version: i64,
}

impl Community {
    /// A community owned by a new owner, with a coach and `members` plain members.
    pub async fn create(addr: SocketAddr, members: usize) -> Self {
        let mut client = membership(addr).await;
        let owner = Uuid::new_v4();
        let created = client
            .create_community(as_member(
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
        let mut community = Self {
            addr,
            id: created.community_id,
            owner,
            coach: Uuid::new_v4(),
            members: Vec::new(),
            handles: Vec::new(),
            version: created.committed.expect("committed").version,
        };
        let invitation = client
            .create_invitation(community.as_member(
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
        community.accept(&invitation, coach, profile("coach")).await;
        let assigned = client
            .assign_role(community.as_member(
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
        for _ in 0..members {
            let member = Uuid::new_v4();
            let profile = profile("m");
            community.handles.push(profile.handle.clone());
            community.accept(&invitation, member, profile).await;
            community.members.push(member);
        }
        community
    }

    /// A request carrying `member`'s token.
    pub fn as_member<T>(&self, member: Uuid, message: T) -> tonic::Request<T> {
        as_member(member, message)
    }

    async fn accept(&mut self, invitation: &str, member: Uuid, profile: mpb::ProfileInput) {
        let version = membership(self.addr)
            .await
            .accept_invitation(self.as_member(
                member,
                mpb::AcceptInvitationRequest {
                    request_id: rid(),
                    community_id: self.id.clone(),
                    invitation_id: invitation.into(),
                    profile: Some(profile),
                },
            ))
            .await
            .expect("accept invitation")
            .into_inner()
            .committed
            .expect("committed")
            .version;
        self.version = self.version.max(version);
    }

    /// Creates and opens a mastermind cohort of `capacity` with the coach as its facilitator;
    /// returns its id.
    pub async fn open_cohort(&self, capacity: u32) -> String {
        let mut client = cohorts(self.addr).await;
        let cohort = client
            .create_cohort(self.as_member(
                self.coach,
                cpb::CreateCohortRequest {
                    request_id: rid(),
                    community_id: self.id.clone(),
                    name: "Founders mastermind".into(),
                    kind: cpb::CohortKind::Mastermind as i32,
                    capacity: Some(capacity),
                    time_zone: "Europe/Berlin".into(),
                    goal: "ship weekly".into(),
                    community_version: self.version,
                    ..Default::default()
                },
            ))
            .await
            .expect("create cohort")
            .into_inner()
            .cohort_id;
        client
            .open_cohort(self.as_member(
                self.coach,
                cpb::OpenCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                },
            ))
            .await
            .expect("open cohort");
        cohort
    }

    /// `member` joins `cohort`; returns the place they got and the reply's position.
    pub async fn join(&self, cohort: &str, member: Uuid) -> (cpb::Place, i64) {
        let client = cohorts(self.addr).await;
        let request = cpb::JoinCohortRequest {
            request_id: rid(),
            cohort_id: cohort.into(),
            community_version: self.version,
        };
        let reply = retrying(|| {
            let mut client = client.clone();
            let request = self.as_member(member, request.clone());
            async move { client.join_cohort(request).await }
        })
        .await
        .expect("join cohort")
        .into_inner();
        (
            cpb::Place::try_from(reply.place).expect("place"),
            reply.committed.expect("committed").position,
        )
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

/// A request carrying `member`'s token for a test environment ([`super::TestEnv`]).
pub fn as_member<T>(member: Uuid, message: T) -> tonic::Request<T> {
    let token =
        crate::auth::mint_hs256(TEST_JWT_SECRET.as_bytes(), member, 3600).expect("mint token");
    with_token(&token, message)
}

/// A membership client of `addr`.
pub async fn membership(addr: SocketAddr) -> MembershipServiceClient<Channel> {
    MembershipServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

/// A cohorts client of `addr`.
pub async fn cohorts(addr: SocketAddr) -> CohortsServiceClient<Channel> {
    CohortsServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}
