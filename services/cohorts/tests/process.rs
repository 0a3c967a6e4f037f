//! `kith-cohorts` as its own process, as it runs in Kubernetes, beside a membership service it
//! shares nothing with but PostgreSQL's server and NATS: the events still flow, a ban still
//! empties seats, and its metrics show both of its projection sources.

use std::time::Duration;

use kith_platform::grpc;
use kith_platform::runtime::{self, Runtime};
use kith_platform::testing::{ServiceProcess, TEST_JWT_SECRET, TestEnv, eventually, with_token};
use kith_proto::cohorts as pb;
use kith_proto::cohorts::cohorts_service_client::CohortsServiceClient;
use kith_proto::membership as mpb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use uuid::Uuid;

const COHORTS: &str = env!("CARGO_BIN_EXE_kith-cohorts");

fn as_member<T>(member: Uuid, message: T) -> Request<T> {
    let token =
        kith_platform::auth::mint_hs256(TEST_JWT_SECRET.as_bytes(), member, 600).expect("token");
    with_token(&token, message)
}

fn rid() -> String {
    Uuid::new_v4().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cohorts_binary_follows_membership_through_nats_alone() {
    let env = TestEnv::new().await;
    // Membership in this process, cohorts in its own.
    let runtime = Runtime::connect(env.args.clone()).await.expect("runtime");
    let membership = kith_membership::start(&runtime).await.expect("membership");
    let shutdown = CancellationToken::new();
    let (ready, addr) = tokio::sync::oneshot::channel();
    {
        let shutdown = shutdown.clone();
        let router = grpc::server().add_service(membership.server);
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
    }
    let membership_addr = addr.await.expect("membership ready");
    let cohorts_process = ServiceProcess::spawn(COHORTS, &[], &env).await;

    let mut members = MembershipServiceClient::connect(format!("http://{membership_addr}"))
        .await
        .expect("connect membership");
    let mut cohorts = CohortsServiceClient::connect(format!("http://{}", cohorts_process.grpc))
        .await
        .expect("connect cohorts");
    let owner = Uuid::new_v4();
    let profile = |handle: &str| mpb::ProfileInput {
        display_name: handle.into(),
        handle: handle.into(),
        bio: String::new(),
    };
    let community = members
        .create_community(as_member(
            owner,
            mpb::CreateCommunityRequest {
                request_id: rid(),
                name: "Split deployment".into(),
                description: String::new(),
                founder: Some(profile("owner")),
            },
        ))
        .await
        .expect("community")
        .into_inner()
        .community_id;
    let invitation = members
        .create_invitation(as_member(
            owner,
            mpb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(kith_platform::wire::timestamp(
                    chrono::Utc::now() + chrono::Duration::hours(1),
                )),
                max_uses: 2,
            },
        ))
        .await
        .expect("invitation")
        .into_inner()
        .invitation_id;
    let (seated, waiting) = (Uuid::new_v4(), Uuid::new_v4());
    let mut version = 0;
    for (member, handle) in [(seated, "seated"), (waiting, "waiting")] {
        version = members
            .accept_invitation(as_member(
                member,
                mpb::AcceptInvitationRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    invitation_id: invitation.clone(),
                    profile: Some(profile(handle)),
                },
            ))
            .await
            .expect("join")
            .into_inner()
            .committed
            .expect("committed")
            .version;
    }
    let cohort = cohorts
        .create_cohort(as_member(
            owner,
            pb::CreateCohortRequest {
                request_id: rid(),
                community_id: community.clone(),
                name: "One seat".into(),
                kind: pb::CohortKind::Coaching as i32,
                capacity: Some(1),
                community_version: version,
                ..Default::default()
            },
        ))
        .await
        .expect("cohort")
        .into_inner()
        .cohort_id;
    cohorts
        .open_cohort(as_member(
            owner,
            pb::OpenCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        ))
        .await
        .expect("open");
    for member in [seated, waiting] {
        cohorts
            .join_cohort(as_member(
                member,
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: version,
                },
            ))
            .await
            .expect("join cohort");
    }
    members
        .ban_member(as_member(
            owner,
            mpb::BanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: seated.to_string(),
                reason: "spam".into(),
            },
        ))
        .await
        .expect("ban");
    let seat = eventually(Duration::from_secs(20), "the ban to free the seat", || {
        let mut cohorts = cohorts.clone();
        let cohort = cohort.clone();
        async move {
            let entries = cohorts
                .list_roster(as_member(
                    owner,
                    pb::ListRosterRequest {
                        cohort_id: cohort,
                        ..Default::default()
                    },
                ))
                .await
                .ok()?
                .into_inner()
                .entries;
            let in_seats: Vec<String> = entries
                .iter()
                .filter(|e| e.place == pb::Place::Seat as i32)
                .map(|e| e.member_id.clone())
                .collect();
            (in_seats == [waiting.to_string()]).then_some(in_seats)
        }
    })
    .await;
    assert_eq!(seat, [waiting.to_string()]);

    let page = cohorts_process.scrape().await;
    let bus = format!("bus:{}", env.args.nats.stream_for("membership").name);
    for source in ["log", bus.as_str()] {
        let projection = if source == "log" {
            "roster"
        } else {
            "communities"
        };
        let series = format!(
            r#"kith_projection_lag_events{{service="cohorts",projection="{projection}",source="{source}"}}"#
        );
        assert!(
            ServiceProcess::series_value(&page, &series).is_some(),
            "{series} missing"
        );
    }
    cohorts_process.signal("TERM");
    shutdown.cancel();
}
