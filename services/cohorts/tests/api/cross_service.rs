//! Membership's events reach cohorts through JetStream only: a member banned or gone from the
//! community loses every place in its cohorts, and freed seats go to the waitlist.

use kith_platform::testing::eventually;
use kith_platform::wire::decode_payload;
use kith_proto::cohorts as pb;
use kith_proto::membership as mpb;
use prost::Name;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    App, BUS_TIMEOUT, Community, assert_code, error_reason, in_place, join, open_cohort, rid,
    roster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_banned_member_leaves_every_cohort_of_the_community_and_the_waitlist_moves_up() {
    let app = App::spawn().await;
    let community = Community::create(&app, 4).await;
    let [banned, second, waiting_a, waiting_b] = community.members[..] else {
        panic!("four members");
    };
    let mut cohorts = app.cohorts().await;
    let a = open_cohort(&app, &mut cohorts, &community, 2).await;
    let b = open_cohort(&app, &mut cohorts, &community, 1).await;
    join(&app, &mut cohorts, &community, &a, banned).await;
    join(&app, &mut cohorts, &community, &a, second).await;
    let (place, _) = join(&app, &mut cohorts, &community, &a, waiting_a).await;
    assert_eq!(place, pb::Place::Waitlist);
    join(&app, &mut cohorts, &community, &b, banned).await;
    let (place, joined) = join(&app, &mut cohorts, &community, &b, waiting_b).await;
    assert_eq!(place, pb::Place::Waitlist);

    let mut membership = app.membership().await;
    let ban = membership
        .ban_member(app.as_member(
            community.owner,
            mpb::BanMemberRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                member_id: banned.to_string(),
                reason: "harassment".into(),
            },
        ))
        .await
        .expect("ban")
        .into_inner()
        .committed
        .expect("committed");

    for (cohort, promoted) in [(&a, waiting_a), (&b, waiting_b)] {
        let entries = eventually(BUS_TIMEOUT, "the ban to reach the roster", || {
            let (app, cohort) = (&app, cohort.clone());
            let mut cohorts = cohorts.clone();
            async move {
                // Read at least our own writes: the coach is a facilitator only once the
                // roster has the cohorts (the log's tail can lag behind other transactions of
                // the cluster), and a read before that is refused, not waited for.
                let entries = roster(app, &mut cohorts, community.coach, &cohort, joined).await;
                let gone = !entries.iter().any(|e| e.member_id == banned.to_string());
                let moved_up = in_place(&entries, pb::Place::Seat).contains(&promoted);
                (gone && moved_up).then_some(entries)
            }
        })
        .await;
        assert!(in_place(&entries, pb::Place::Waitlist).is_empty());
    }

    // The log says why: a release for the ban, then the promotion, as events of their own.
    let pool = app.pool().await;
    let events = kith_platform::eventlog::EventLog::new(pool)
        .read_stream(&a, 0)
        .await
        .expect("read stream");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let released = types
        .iter()
        .position(|t| *t == pb::MemberReleased::full_name())
        .expect("a MemberReleased event");
    let release: pb::MemberReleased = decode_payload(&events[released]).expect("decode");
    assert_eq!(release.member_id, banned.to_string());
    assert_eq!(release.departure, pb::Departure::Banned as i32);
    assert_eq!(release.place, pb::Place::Seat as i32);
    assert_eq!(types[released + 1], pb::WaitlistPromoted::full_name());

    // Banned means no way back in, once cohorts has seen the ban.
    let again = cohorts
        .join_cohort(app.as_member(
            banned,
            pb::JoinCohortRequest {
                request_id: rid(),
                cohort_id: a.clone(),
                community_version: ban.version,
            },
        ))
        .await;
    let again = assert_code(again, Code::PermissionDenied);
    assert_eq!(error_reason(&again).as_deref(), Some("NOT_A_MEMBER"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaving_the_community_gives_up_waitlist_places_and_invitations_too() {
    let app = App::spawn().await;
    let community = Community::create(&app, 3).await;
    let [seated, waiting, invited] = community.members[..] else {
        panic!("three members");
    };
    let mut cohorts = app.cohorts().await;
    let cohort = open_cohort(&app, &mut cohorts, &community, 2).await;
    join(&app, &mut cohorts, &community, &cohort, seated).await;
    cohorts
        .invite_to_cohort(app.as_member(
            community.coach,
            pb::InviteToCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: invited.to_string(),
                expires_at: Some(crate::helpers::in_minutes(60)),
                community_version: community.version,
            },
        ))
        .await
        .expect("invite");
    let (place, joined) = join(&app, &mut cohorts, &community, &cohort, waiting).await;
    assert_eq!(
        place,
        pb::Place::Waitlist,
        "the invitation holds the second seat"
    );

    let mut membership = app.membership().await;
    for member in [waiting, invited] {
        membership
            .leave_community(app.as_member(
                member,
                mpb::LeaveCommunityRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                },
            ))
            .await
            .expect("leave community");
    }
    // Read from a roster that includes the joins, so that "gone" means released.
    let entries = eventually(BUS_TIMEOUT, "both departures to reach the roster", || {
        let (app, cohort) = (&app, cohort.clone());
        let mut cohorts = cohorts.clone();
        async move {
            let entries = roster(app, &mut cohorts, community.coach, &cohort, joined).await;
            let ids: Vec<String> = entries.iter().map(|e| e.member_id.clone()).collect();
            (!ids.contains(&waiting.to_string()) && !ids.contains(&invited.to_string()))
                .then_some(entries)
        }
    })
    .await;
    assert_eq!(in_place(&entries, pb::Place::Seat), vec![seated]);
    let facilitators = in_place(&entries, pb::Place::Facilitator);
    assert_eq!(facilitators, vec![community.coach]);
    let got = cohorts
        .get_cohort(app.as_member(
            seated,
            pb::GetCohortRequest {
                cohort_id: cohort.clone(),
                min_position: 0,
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .cohort
        .expect("cohort");
    assert_eq!(
        (got.seated, got.held, got.waitlisted, got.available),
        (1, 0, 0, 1)
    );
    let _ = Uuid::nil();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn someone_who_joined_the_community_a_moment_ago_joins_a_cohort_at_once() {
    let app = App::spawn().await;
    let community = Community::create(&app, 0).await;
    let mut cohorts = app.cohorts().await;
    let cohort = open_cohort(&app, &mut cohorts, &community, 5).await;
    let mut membership = app.membership().await;
    for n in 0..5 {
        let invitation = membership
            .create_invitation(app.as_member(
                community.owner,
                mpb::CreateInvitationRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    expires_at: Some(crate::helpers::in_minutes(30)),
                    max_uses: 1,
                },
            ))
            .await
            .expect("invitation")
            .into_inner()
            .invitation_id;
        let newcomer = Uuid::new_v4();
        membership
            .accept_invitation(app.as_member(
                newcomer,
                mpb::AcceptInvitationRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    invitation_id: invitation,
                    profile: Some(mpb::ProfileInput {
                        display_name: format!("Newcomer {n}"),
                        handle: format!("newcomer{n}x{}", &newcomer.simple().to_string()[..6]),
                        bio: String::new(),
                    }),
                },
            ))
            .await
            .expect("join the community");
        // No community_version: the service notices it is behind membership and catches up.
        let joined = cohorts
            .join_cohort(app.as_member(
                newcomer,
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: 0,
                },
            ))
            .await
            .expect("a newcomer joins the cohort at once")
            .into_inner();
        assert_eq!(joined.place, pb::Place::Seat as i32);
    }
    // Someone who never joined the community is still refused.
    assert_code(
        cohorts
            .join_cohort(app.as_member(
                Uuid::new_v4(),
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: 0,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    app.stop().await;
}
