//! The capacity promise under contention: concurrent joins over real gRPC never overfill a
//! cohort, the waitlist follows the order of the join events in the log, and freed seats go to
//! the head of the waitlist.

use futures::future::join_all;
use kith_platform::wire::decode_payload;
use kith_proto::cohorts as pb;
use prost::Name;
use uuid::Uuid;

use crate::helpers::{App, Community, in_place, join, open_cohort, rid, roster};

/// Who the log says was seated, waitlisted and promoted, in log order; panics if the seats taken
/// ever exceed `capacity` at any version.
async fn from_log(
    pool: &sqlx::PgPool,
    cohort: &str,
    capacity: usize,
) -> (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>) {
    let events = kith_platform::eventlog::EventLog::new(pool.clone())
        .read_stream(cohort, 0)
        .await
        .expect("read stream");
    let (mut seated, mut waitlisted, mut promoted) = (Vec::new(), Vec::new(), Vec::new());
    let mut occupied: Vec<Uuid> = Vec::new();
    for event in &events {
        let t = event.event_type.as_str();
        if t == pb::MemberJoinedCohort::full_name() {
            let e: pb::MemberJoinedCohort = decode_payload(event).expect("decode");
            let member = e.member_id.parse().expect("id");
            seated.push(member);
            occupied.push(member);
        } else if t == pb::MemberWaitlisted::full_name() {
            let e: pb::MemberWaitlisted = decode_payload(event).expect("decode");
            waitlisted.push(e.member_id.parse().expect("id"));
        } else if t == pb::WaitlistPromoted::full_name() {
            let e: pb::WaitlistPromoted = decode_payload(event).expect("decode");
            let member = e.member_id.parse().expect("id");
            promoted.push(member);
            occupied.push(member);
        } else if t == pb::MemberLeftCohort::full_name() {
            let e: pb::MemberLeftCohort = decode_payload(event).expect("decode");
            let member: Uuid = e.member_id.parse().expect("id");
            occupied.retain(|m| *m != member);
        }
        assert!(
            occupied.len() <= capacity,
            "overfilled: {} seats taken of {capacity} at version {}",
            occupied.len(),
            event.version
        );
    }
    (seated, waitlisted, promoted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_joins_seat_twelve_and_waitlist_the_rest_in_log_order_twenty_times() {
    const CAPACITY: usize = 12;
    let app = App::spawn().await;
    let community = Community::create(&app, 100).await;
    let pool = app.pool().await;
    for run in 0..20 {
        let mut client = app.cohorts().await;
        let cohort = open_cohort(&app, &mut client, &community, CAPACITY as u32).await;

        let joins = community.members.iter().map(|member| {
            let (app, community, cohort) = (&app, &community, cohort.clone());
            let mut client = client.clone();
            async move {
                let (place, position) = join(app, &mut client, community, &cohort, *member).await;
                (*member, place, position)
            }
        });
        let results = join_all(joins).await;
        let replied_seated = results.iter().filter(|r| r.1 == pb::Place::Seat).count();
        let replied_waitlisted = results
            .iter()
            .filter(|r| r.1 == pb::Place::Waitlist)
            .count();
        assert_eq!(
            (replied_seated, replied_waitlisted),
            (12, 88),
            "run {run}: replies"
        );

        let (seated, waitlisted, promoted) = from_log(&pool, &cohort, CAPACITY).await;
        assert_eq!((seated.len(), waitlisted.len()), (12, 88), "run {run}: log");
        assert!(promoted.is_empty());
        let last = results.iter().map(|r| r.2).max().expect("joins");
        let entries = roster(&app, &mut client, community.coach, &cohort, last).await;
        let mut roster_seated = in_place(&entries, pb::Place::Seat);
        roster_seated.sort();
        let mut log_seated = seated.clone();
        log_seated.sort();
        assert_eq!(roster_seated, log_seated, "run {run}: seated");
        assert_eq!(
            in_place(&entries, pb::Place::Waitlist),
            waitlisted,
            "run {run}: the waitlist is in the order of the join events in the log"
        );

        // Five seated members leave at once; exactly the first five waiting are promoted.
        let leavers: Vec<Uuid> = seated[..5].to_vec();
        let leaves = leavers.iter().map(|member| {
            let (app, cohort) = (&app, cohort.clone());
            let mut client = client.clone();
            async move {
                client
                    .leave_cohort(app.as_member(
                        *member,
                        pb::LeaveCohortRequest {
                            request_id: rid(),
                            cohort_id: cohort,
                        },
                    ))
                    .await
                    .expect("leave")
                    .into_inner()
                    .committed
                    .expect("committed")
                    .position
            }
        });
        let last = join_all(leaves).await.into_iter().max().expect("leaves");
        let (_, _, promoted) = from_log(&pool, &cohort, CAPACITY).await;
        assert_eq!(promoted, waitlisted[..5].to_vec(), "run {run}: promotions");

        let entries = roster(&app, &mut client, community.coach, &cohort, last).await;
        let mut now_seated = in_place(&entries, pb::Place::Seat);
        now_seated.sort();
        let mut expected: Vec<Uuid> = seated[5..]
            .iter()
            .chain(&waitlisted[..5])
            .copied()
            .collect();
        expected.sort();
        assert_eq!(now_seated, expected, "run {run}: seated after the leaves");
        assert_eq!(
            in_place(&entries, pb::Place::Waitlist),
            waitlisted[5..].to_vec(),
            "run {run}: the rest wait in order"
        );
        let got = client
            .get_cohort(app.as_member(
                community.coach,
                pb::GetCohortRequest {
                    cohort_id: cohort.clone(),
                    min_position: last,
                },
            ))
            .await
            .expect("get cohort")
            .into_inner()
            .cohort
            .expect("cohort");
        assert_eq!((got.seated, got.available, got.waitlisted), (12, 0, 83));
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_racing_joins_still_seat_exactly_twelve_in_log_order() {
    const CAPACITY: usize = 12;
    let app = App::spawn().await;
    let replica = app.replica().await;
    let community = Community::create(&app, 100).await;
    let pool = app.pool().await;
    let other = crate::helpers::Cohorts::connect(format!("http://{replica}"))
        .await
        .expect("connect to the replica");
    for run in 0..5 {
        let mut client = app.cohorts().await;
        let cohort = open_cohort(&app, &mut client, &community, CAPACITY as u32).await;
        // Half the joins through each server: the two processes race on one stream and only
        // the log's version check keeps them honest.
        let joins = community.members.iter().enumerate().map(|(i, member)| {
            let (app, community, cohort) = (&app, &community, cohort.clone());
            let mut client = if i % 2 == 0 {
                client.clone()
            } else {
                other.clone()
            };
            async move { join(app, &mut client, community, &cohort, *member).await }
        });
        let results = join_all(joins).await;
        let seated = results.iter().filter(|r| r.0 == pb::Place::Seat).count();
        assert_eq!(seated, 12, "run {run}: replies");
        let (log_seated, waitlisted, _) = from_log(&pool, &cohort, CAPACITY).await;
        assert_eq!(
            (log_seated.len(), waitlisted.len()),
            (12, 88),
            "run {run}: log"
        );
        let last = results.iter().map(|r| r.1).max().expect("joins");
        let entries = roster(&app, &mut client, community.coach, &cohort, last).await;
        assert_eq!(
            in_place(&entries, pb::Place::Waitlist),
            waitlisted,
            "run {run}: the waitlist follows the log"
        );
    }
    app.stop().await;
}
