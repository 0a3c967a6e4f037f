//! The rules about people's places: promotion from the waitlist, a lost seat, sessions.

use kith_platform::testing::community::{Community, cohorts};
use kith_proto::cohorts as cpb;
use kith_proto::notifications as pb;
use prost::Message;

use crate::helpers::{App, kinds, rid};

#[tokio::test]
async fn a_seat_freed_in_a_full_cohort_tells_the_promoted_member_and_a_removal_tells_the_removed() {
    let app = App::spawn().await;
    let community = Community::create(app.addr, 3).await;
    // Capacity 2: the coach facilitates (no seat), two sit, the third waits.
    let cohort = community.open_cohort(2).await;
    let [first, second, waiting] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    community.join(&cohort, first).await;
    community.join(&cohort, second).await;
    let (place, _) = community.join(&cohort, waiting).await;
    assert_eq!(place, cpb::Place::Waitlist);
    let mut client = cohorts(app.addr).await;
    client
        .leave_cohort(community.as_member(
            first,
            cpb::LeaveCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        ))
        .await
        .expect("leave");
    let feed = app
        .feed_until(waiting, "the promotion", |f| !f.is_empty())
        .await;
    assert_eq!(kinds(&feed[0]), (pb::Kind::PromotedFromWaitlist, vec![]));
    assert_eq!(feed[0].cohort_id, cohort);
    assert_eq!(feed[0].community_id, community.id);
    // Leaving on one's own tells the leaver nothing.
    assert!(app.feed(first).await.is_empty());

    client
        .remove_from_cohort(community.as_member(
            community.coach,
            cpb::RemoveFromCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: second.to_string(),
            },
        ))
        .await
        .expect("remove");
    let feed = app
        .feed_until(second, "the lost seat", |f| !f.is_empty())
        .await;
    assert_eq!(kinds(&feed[0]), (pb::Kind::SeatLost, vec![]));
    assert_eq!(feed[0].actor_id, community.coach.to_string());
}

#[tokio::test]
async fn a_scheduled_weekly_series_is_one_notification_and_a_cancelled_session_another() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(1).await;
    let member = community.members[0];
    let mut client = cohorts(app.addr).await;
    let starts_at = kith_platform::wire::timestamp(chrono::Utc::now() + chrono::Duration::days(2));
    let scheduled = client
        .schedule_session(community.as_member(
            community.coach,
            cpb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                title: "Weekly hot seat".into(),
                starts_at: Some(starts_at),
                duration_minutes: 60,
                weekly_occurrences: 4,
            },
        ))
        .await
        .expect("schedule")
        .into_inner();
    let feed = app
        .feed_until(member, "the series", |f| !f.is_empty())
        .await;
    assert_eq!(feed.len(), 1, "one notice for a series of four: {feed:?}");
    assert_eq!(kinds(&feed[0]), (pb::Kind::SessionScheduled, vec![]));
    assert!(feed[0].starts_at.is_some());
    let session = feed[0].session_id.clone();
    assert!(scheduled.session_ids.contains(&session), "{scheduled:?}");
    client
        .cancel_session(community.as_member(
            community.coach,
            cpb::CancelSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                session_id: session.clone(),
            },
        ))
        .await
        .expect("cancel");
    let feed = app
        .feed_until(member, "the cancellation", |f| f.len() == 2)
        .await;
    assert_eq!(kinds(&feed[0]), (pb::Kind::SessionCancelled, vec![]));
    assert_eq!(feed[0].session_id, session);
    // The coach who did both is told of neither.
    assert!(app.feed(community.coach).await.is_empty());
}

#[tokio::test]
async fn each_session_is_reminded_of_a_day_and_an_hour_before_once_however_often_the_scheduler_runs()
 {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(1).await;
    let member = community.members[0];
    let mut client = cohorts(app.addr).await;
    let starts_at = chrono::Utc::now() + chrono::Duration::days(2);
    let session = client
        .schedule_session(community.as_member(
            community.coach,
            cpb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                title: "Hot seat".into(),
                starts_at: Some(kith_platform::wire::timestamp(starts_at)),
                duration_minutes: 60,
                weekly_occurrences: 0,
            },
        ))
        .await
        .expect("schedule")
        .into_inner()
        .session_ids
        .remove(0);
    app.feed_until(member, "the scheduled session", |f| f.len() == 1)
        .await;
    let pool = app.pool("notifications").await;
    let reminders = |feed: &[pb::Notification]| {
        feed.iter()
            .filter(|n| n.kind() == pb::Kind::SessionReminder)
            .cloned()
            .collect::<Vec<_>>()
    };
    // A day before: the 24-hour reminder, once however often the scheduler looks.
    let day_before = starts_at - chrono::Duration::hours(23);
    for _ in 0..3 {
        kith_notifications::reminders::remind(&pool, day_before)
            .await
            .expect("remind");
    }
    let feed = app
        .feed_until(member, "the 24-hour reminder", |f| reminders(f).len() == 1)
        .await;
    let first = reminders(&feed).remove(0);
    assert_eq!(first.session_id, session);
    assert!(!first.urgent);
    // Half an hour before: the urgent one-hour reminder; nothing more of the day-before one.
    kith_notifications::reminders::remind(&pool, starts_at - chrono::Duration::minutes(30))
        .await
        .expect("remind");
    kith_notifications::reminders::remind(&pool, starts_at - chrono::Duration::minutes(20))
        .await
        .expect("remind");
    let feed = app
        .feed_until(member, "the one-hour reminder", |f| reminders(f).len() == 2)
        .await;
    assert!(reminders(&feed)[0].urgent);
    let coach = app
        .feed_until(community.coach, "the facilitator's reminders", |f| {
            reminders(f).len() == 2
        })
        .await;
    assert_eq!(reminders(&coach).len(), 2);
    // After the start, nothing.
    let after =
        kith_notifications::reminders::remind(&pool, starts_at + chrono::Duration::minutes(1))
            .await
            .expect("remind");
    assert_eq!(after, 0);
    let notices: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM events WHERE event_type = 'kith.notifications.v1.NotificationsDecided'
         ORDER BY position",
    )
    .fetch_all(&pool)
    .await
    .expect("notices");
    let decided: Vec<usize> = notices
        .iter()
        .map(|bytes| {
            pb::NotificationsDecided::decode(bytes.as_slice())
                .expect("decisions")
                .notifications
                .len()
        })
        .collect();
    // The scheduled notice (for the member: the coach scheduled it), then each reminder for
    // both, each event's decisions recorded together.
    assert_eq!(decided, [1, 2, 2]);
    pool.close().await;
}
