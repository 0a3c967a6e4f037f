//! A cohort's life over gRPC: who may create and manage it, its lifecycle and refusals,
//! facilitators, invitations that hold seats and expire, idempotent retries, and the listings.

use std::time::Duration;

use kith_platform::testing::eventually;
use kith_proto::cohorts as pb;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    App, Community, assert_code, create_cohort, in_place, join, open_cohort, rid, roster,
};

fn request<T>(build: impl FnOnce(String) -> T) -> T {
    build(rid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_with_refusals_and_who_may_manage() {
    let app = App::spawn().await;
    let community = Community::create(&app, 2).await;
    let [member, other] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.cohorts().await;

    // Plain members and strangers do not create cohorts; hosts, owners and coaches do.
    for (who, code) in [
        (member, Code::PermissionDenied),
        (Uuid::new_v4(), Code::PermissionDenied),
    ] {
        let refused = client
            .create_cohort(app.as_member(
                who,
                pb::CreateCohortRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    name: "Nope".into(),
                    kind: pb::CohortKind::Coaching as i32,
                    community_version: community.version,
                    ..Default::default()
                },
            ))
            .await;
        assert_code(refused, code);
    }
    let created = client
        .create_cohort(app.as_member(
            community.coach,
            pb::CreateCohortRequest {
                request_id: "create-once".into(),
                community_id: community.id.clone(),
                name: "Coaching group".into(),
                kind: pb::CohortKind::Coaching as i32,
                community_version: community.version,
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner();
    let cohort = created.cohort_id.clone();
    // A retry with the same request id lands on the same cohort and writes nothing.
    let retried = client
        .create_cohort(app.as_member(
            community.coach,
            pb::CreateCohortRequest {
                request_id: "create-once".into(),
                community_id: community.id.clone(),
                name: "Coaching group".into(),
                kind: pb::CohortKind::Coaching as i32,
                community_version: community.version,
                ..Default::default()
            },
        ))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retried.cohort_id, cohort);
    let committed = retried.committed.expect("committed");
    assert!(committed.replayed);
    let got = client
        .get_cohort(app.as_member(
            member,
            pb::GetCohortRequest {
                cohort_id: cohort.clone(),
                min_position: committed.position,
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .cohort
        .expect("cohort");
    let details = got.details.expect("details");
    assert_eq!(details.capacity, 8, "coaching groups default to 8 seats");
    assert_eq!(details.time_zone, "UTC");
    assert_eq!(got.status, pb::CohortStatus::Draft as i32);
    assert_eq!((got.facilitators, got.available), (1, 8));

    // Draft: no self-joins; members do not manage.
    assert_code(
        client
            .join_cohort(app.as_member(
                member,
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: 0,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        client
            .open_cohort(app.as_member(
                member,
                request(|request_id| pb::OpenCohortRequest {
                    request_id,
                    cohort_id: cohort.clone(),
                }),
            ))
            .await,
        Code::PermissionDenied,
    );
    // The owner manages every cohort of the community.
    client
        .open_cohort(app.as_member(
            community.owner,
            request(|request_id| pb::OpenCohortRequest {
                request_id,
                cohort_id: cohort.clone(),
            }),
        ))
        .await
        .expect("owner opens");
    assert_code(
        client
            .archive_cohort(app.as_member(
                community.coach,
                request(|request_id| pb::ArchiveCohortRequest {
                    request_id,
                    cohort_id: cohort.clone(),
                }),
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        client
            .graduate_cohort(app.as_member(
                community.coach,
                request(|request_id| pb::GraduateCohortRequest {
                    request_id,
                    cohort_id: cohort.clone(),
                }),
            ))
            .await,
        Code::FailedPrecondition,
    );
    join(&app, &mut client, &community, &cohort, member).await;

    // Facilitators are owners, hosts or coaches; a running cohort keeps one.
    assert_code(
        client
            .assign_facilitator(app.as_member(
                community.coach,
                pb::AssignFacilitatorRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    member_id: other.to_string(),
                    community_version: community.version,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    client
        .start_cohort(app.as_member(
            community.coach,
            request(|request_id| pb::StartCohortRequest {
                request_id,
                cohort_id: cohort.clone(),
            }),
        ))
        .await
        .expect("start");
    assert_code(
        client
            .remove_facilitator(app.as_member(
                community.coach,
                pb::RemoveFacilitatorRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    member_id: community.coach.to_string(),
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    client
        .assign_facilitator(app.as_member(
            community.coach,
            pb::AssignFacilitatorRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: community.owner.to_string(),
                community_version: community.version,
            },
        ))
        .await
        .expect("the owner may facilitate");
    client
        .remove_facilitator(app.as_member(
            community.owner,
            pb::RemoveFacilitatorRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: community.coach.to_string(),
            },
        ))
        .await
        .expect("one facilitator remains");
    // A running cohort takes no self-joins.
    assert_code(
        client
            .join_cohort(app.as_member(
                other,
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: 0,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    for step in ["close", "graduate", "archive"] {
        let id = cohort.clone();
        let result = match step {
            "close" => client
                .close_cohort(app.as_member(
                    community.owner,
                    pb::CloseCohortRequest {
                        request_id: rid(),
                        cohort_id: id,
                    },
                ))
                .await
                .map(|r| r.into_inner().committed),
            "graduate" => client
                .graduate_cohort(app.as_member(
                    community.owner,
                    pb::GraduateCohortRequest {
                        request_id: rid(),
                        cohort_id: id,
                    },
                ))
                .await
                .map(|r| r.into_inner().committed),
            _ => client
                .archive_cohort(app.as_member(
                    community.owner,
                    pb::ArchiveCohortRequest {
                        request_id: rid(),
                        cohort_id: id,
                    },
                ))
                .await
                .map(|r| r.into_inner().committed),
        };
        result.unwrap_or_else(|status| panic!("{step}: {status:?}"));
    }
    // Archived takes nothing more.
    assert_code(
        client
            .leave_cohort(app.as_member(
                member,
                request(|request_id| pb::LeaveCohortRequest {
                    request_id,
                    cohort_id: cohort.clone(),
                }),
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        client
            .open_cohort(app.as_member(
                community.owner,
                request(|request_id| pb::OpenCohortRequest {
                    request_id,
                    cohort_id: Uuid::new_v4().to_string(),
                }),
            ))
            .await,
        Code::NotFound,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invitation_holds_a_seat_until_it_expires_then_the_waitlist_gets_it() {
    let app = App::spawn().await;
    let community = Community::create(&app, 4).await;
    let [seated, invited, waiting, accepting] = community.members[..] else {
        panic!("four members");
    };
    let mut client = app.cohorts().await;
    let cohort = open_cohort(&app, &mut client, &community, 3).await;
    join(&app, &mut client, &community, &cohort, seated).await;
    let invite = |member: Uuid, expires_at| pb::InviteToCohortRequest {
        request_id: rid(),
        cohort_id: cohort.clone(),
        member_id: member.to_string(),
        expires_at: Some(expires_at),
        community_version: community.version,
    };
    let soon = kith_platform::wire::timestamp(chrono::Utc::now() + chrono::Duration::seconds(2));
    client
        .invite_to_cohort(app.as_member(community.coach, invite(invited, soon)))
        .await
        .expect("invite, expiring soon");
    client
        .invite_to_cohort(app.as_member(
            community.coach,
            invite(accepting, crate::helpers::in_minutes(60)),
        ))
        .await
        .expect("invite");
    // Three seats: one taken, two held; the next joiner waits.
    let (place, _) = join(&app, &mut client, &community, &cohort, waiting).await;
    assert_eq!(place, pb::Place::Waitlist);
    let accepted = client
        .accept_cohort_invitation(app.as_member(
            accepting,
            pb::AcceptCohortInvitationRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                community_version: 0,
            },
        ))
        .await
        .expect("accept")
        .into_inner()
        .committed
        .expect("committed");
    let entries = roster(
        &app,
        &mut client,
        community.coach,
        &cohort,
        accepted.position,
    )
    .await;
    assert_eq!(in_place(&entries, pb::Place::Invitation), [invited]);
    assert_eq!(in_place(&entries, pb::Place::Waitlist), [waiting]);

    // Nobody answers the other invitation: the service records its expiry by itself and the
    // first waiting member takes the seat.
    let entries = eventually(Duration::from_secs(15), "the invitation to expire", || {
        let (app, cohort) = (&app, cohort.clone());
        let mut client = client.clone();
        async move {
            let entries = roster(app, &mut client, community.coach, &cohort, 0).await;
            in_place(&entries, pb::Place::Seat)
                .contains(&waiting)
                .then_some(entries)
        }
    })
    .await;
    assert!(in_place(&entries, pb::Place::Invitation).is_empty());
    assert_eq!(in_place(&entries, pb::Place::Seat).len(), 3);
    assert_code(
        client
            .accept_cohort_invitation(app.as_member(
                invited,
                pb::AcceptCohortInvitationRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: 0,
                },
            ))
            .await,
        Code::NotFound,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_filter_paginate_and_follow_the_cohorts_membership() {
    let app = App::spawn().await;
    let community = Community::create(&app, 2).await;
    let [member, outsider_in_community] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.cohorts().await;
    let first = open_cohort(&app, &mut client, &community, 4).await;
    let second = create_cohort(&app, &mut client, &community, 4).await;
    let third = open_cohort(&app, &mut client, &community, 4).await;
    let (_, last) = join(&app, &mut client, &community, &third, member).await;

    let list = |status: pb::CohortStatus, page_token: String| pb::ListCohortsRequest {
        community_id: community.id.clone(),
        kind: pb::CohortKind::Mastermind as i32,
        status: status as i32,
        page_size: 1,
        page_token,
        min_position: last,
    };
    let page1 = client
        .list_cohorts(app.as_member(member, list(pb::CohortStatus::Open, String::new())))
        .await
        .expect("page 1")
        .into_inner();
    let page2 = client
        .list_cohorts(app.as_member(
            member,
            list(pb::CohortStatus::Open, page1.next_page_token.clone()),
        ))
        .await
        .expect("page 2")
        .into_inner();
    let ids: Vec<&str> = page1
        .cohorts
        .iter()
        .chain(&page2.cohorts)
        .map(|c| c.cohort_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [first.as_str(), third.as_str()],
        "open ones, oldest first"
    );
    assert!(page2.next_page_token.is_empty());
    let drafts = client
        .list_cohorts(app.as_member(member, list(pb::CohortStatus::Draft, String::new())))
        .await
        .expect("drafts")
        .into_inner();
    assert_eq!(drafts.cohorts.len(), 1);
    assert_eq!(drafts.cohorts[0].cohort_id, second);

    let mine = client
        .list_member_cohorts(app.as_member(
            member,
            pb::ListMemberCohortsRequest {
                min_position: last,
                ..Default::default()
            },
        ))
        .await
        .expect("my cohorts")
        .into_inner()
        .cohorts;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].place, pb::Place::Seat as i32);
    assert_eq!(mine[0].cohort.as_ref().expect("cohort").cohort_id, third);
    // Someone else's cohorts: owners and hosts only.
    assert_code(
        client
            .list_member_cohorts(app.as_member(
                outsider_in_community,
                pb::ListMemberCohortsRequest {
                    member_id: member.to_string(),
                    community_id: community.id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let coach_cohorts = client
        .list_member_cohorts(app.as_member(
            community.owner,
            pb::ListMemberCohortsRequest {
                member_id: community.coach.to_string(),
                community_id: community.id.clone(),
                min_position: last,
                ..Default::default()
            },
        ))
        .await
        .expect("the owner lists the coach's cohorts")
        .into_inner()
        .cohorts;
    assert_eq!(coach_cohorts.len(), 3);
    assert!(
        coach_cohorts
            .iter()
            .all(|c| c.place == pb::Place::Facilitator as i32)
    );

    // The roster is for the cohort's people: a community member outside it is refused, a
    // stranger to the community cannot even see the cohort.
    assert_code(
        client
            .list_roster(app.as_member(
                outsider_in_community,
                pb::ListRosterRequest {
                    cohort_id: third.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client
            .get_cohort(app.as_member(
                Uuid::new_v4(),
                pb::GetCohortRequest {
                    cohort_id: third.clone(),
                    min_position: 0,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    let entries = roster(&app, &mut client, member, &third, last).await;
    assert_eq!(in_place(&entries, pb::Place::Seat), [member]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn more_seats_promote_from_the_waitlist_and_fewer_than_taken_are_refused() {
    let app = App::spawn().await;
    let community = Community::create(&app, 3).await;
    let m = community.members.clone();
    let mut client = app.cohorts().await;
    let cohort = open_cohort(&app, &mut client, &community, 1).await;
    for member in &m {
        join(&app, &mut client, &community, &cohort, *member).await;
    }
    let update = |capacity| pb::UpdateCohortRequest {
        request_id: rid(),
        cohort_id: cohort.clone(),
        name: "Bigger mastermind".into(),
        capacity,
        time_zone: "Asia/Tokyo".into(),
        goal: "grow".into(),
        ..Default::default()
    };
    let grown = client
        .update_cohort(app.as_member(community.coach, update(2)))
        .await
        .expect("grow")
        .into_inner()
        .committed
        .expect("committed");
    let entries = roster(&app, &mut client, community.coach, &cohort, grown.position).await;
    assert_eq!(in_place(&entries, pb::Place::Seat), [m[0], m[1]]);
    assert_eq!(in_place(&entries, pb::Place::Waitlist), [m[2]]);
    let status = assert_code(
        client
            .update_cohort(app.as_member(community.coach, update(1)))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains('2'), "{status:?}");
    let got = client
        .get_cohort(app.as_member(
            m[0],
            pb::GetCohortRequest {
                cohort_id: cohort.clone(),
                min_position: grown.position,
            },
        ))
        .await
        .expect("get")
        .into_inner()
        .cohort
        .expect("cohort");
    let details = got.details.expect("details");
    assert_eq!(
        (
            details.name.as_str(),
            details.capacity,
            details.time_zone.as_str(),
            details.kind
        ),
        (
            "Bigger mastermind",
            2,
            "Asia/Tokyo",
            pb::CohortKind::Mastermind as i32
        )
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_cohort_is_readable_at_once_without_min_position() {
    let app = App::spawn().await;
    let community = Community::create(&app, 0).await;
    let mut client = app.cohorts().await;
    for _ in 0..10 {
        let cohort = create_cohort(&app, &mut client, &community, 6).await;
        let got = client
            .get_cohort(app.as_member(
                community.coach,
                pb::GetCohortRequest {
                    cohort_id: cohort.clone(),
                    min_position: 0,
                },
            ))
            .await
            .expect("the cohort, waited for rather than NOT_FOUND")
            .into_inner()
            .cohort
            .expect("cohort");
        assert_eq!(got.cohort_id, cohort);
    }
    assert_code(
        client
            .get_cohort(app.as_member(
                community.coach,
                pb::GetCohortRequest {
                    cohort_id: Uuid::new_v4().to_string(),
                    min_position: 0,
                },
            ))
            .await,
        Code::NotFound,
    );
    app.stop().await;
}
