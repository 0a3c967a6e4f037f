//! Live sessions: weekly series at the same local time, rescheduling, cancelling, RSVPs,
//! attendance, and the roster as it stood when a session started, answered from the log.

use std::time::Duration;

use chrono::{Datelike, TimeZone, Timelike, Utc};
use kith_platform::testing::eventually;
use kith_platform::wire::{time_of, timestamp};
use kith_proto::cohorts as pb;
use tonic::Code;

use crate::helpers::{
    App, Community, assert_code, in_minutes, in_place, join, open_cohort, rid, violated_fields,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_weekly_series_keeps_its_local_time_and_collects_rsvps() {
    let app = App::spawn().await;
    let community = Community::create(&app, 3).await;
    let m = community.members.clone();
    let mut client = app.cohorts().await;
    let cohort = open_cohort(&app, &mut client, &community, 2).await;
    join(&app, &mut client, &community, &cohort, m[0]).await;
    join(&app, &mut client, &community, &cohort, m[1]).await;

    // 18:00 in Berlin on March 24, always before the last Sunday of March when Europe's
    // clocks change; a week later is always after it.
    // Next year's, so the series is in the future whenever the test runs.
    let year = Utc::now().year() + 1;
    let berlin = chrono_tz::Europe::Berlin;
    let first = berlin
        .with_ymd_and_hms(year, 3, 24, 18, 0, 0)
        .single()
        .expect("a Berlin time")
        .with_timezone(&Utc);
    let scheduled = client
        .schedule_session(app.as_member(
            community.coach,
            pb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                title: "Hot seat".into(),
                starts_at: Some(timestamp(first)),
                duration_minutes: 90,
                weekly_occurrences: 3,
            },
        ))
        .await
        .expect("schedule")
        .into_inner();
    assert_eq!(scheduled.session_ids.len(), 3);

    client
        .respond_to_session(app.as_member(
            m[0],
            pb::RespondToSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                session_id: scheduled.session_ids[0].clone(),
                response: pb::RsvpResponse::Yes as i32,
            },
        ))
        .await
        .expect("rsvp yes");
    client
        .respond_to_session(app.as_member(
            m[1],
            pb::RespondToSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                session_id: scheduled.session_ids[0].clone(),
                response: pb::RsvpResponse::No as i32,
            },
        ))
        .await
        .expect("rsvp no");
    // Only the cohort's people answer.
    assert_code(
        client
            .respond_to_session(app.as_member(
                m[2],
                pb::RespondToSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    session_id: scheduled.session_ids[0].clone(),
                    response: pb::RsvpResponse::Yes as i32,
                },
            ))
            .await,
        Code::FailedPrecondition,
    );
    let cancelled = client
        .cancel_session(app.as_member(
            community.coach,
            pb::CancelSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                session_id: scheduled.session_ids[2].clone(),
            },
        ))
        .await
        .expect("cancel")
        .into_inner()
        .committed
        .expect("committed");

    let listed = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                min_position: cancelled.position,
                ..Default::default()
            },
        ))
        .await
        .expect("list sessions")
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 2, "the cancelled one is left out");
    let local_times: Vec<(u32, u32)> = listed
        .iter()
        .map(|s| {
            let at = time_of(s.starts_at.as_ref())
                .expect("time")
                .with_timezone(&berlin);
            (at.hour(), at.minute())
        })
        .collect();
    assert_eq!(
        local_times,
        [(18, 0), (18, 0)],
        "same local time across the DST change"
    );
    let utc_hours: Vec<u32> = listed
        .iter()
        .map(|s| time_of(s.starts_at.as_ref()).expect("time").hour())
        .collect();
    assert_eq!(
        utc_hours,
        [17, 16],
        "the UTC instant moves with summer time"
    );
    assert_eq!((listed[0].yes, listed[0].no, listed[0].maybe), (1, 1, 0));
    assert_eq!(listed[0].rsvps.len(), 2);
    assert_eq!(listed[1].series_id, scheduled.session_ids[0]);
    assert_eq!(listed[1].occurrence, 2);

    let with_cancelled = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                include_cancelled: true,
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .expect("list sessions")
        .into_inner();
    assert_eq!(with_cancelled.sessions.len(), 2);
    let rest = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                include_cancelled: true,
                page_size: 2,
                page_token: with_cancelled.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("second page")
        .into_inner();
    assert_eq!(rest.sessions.len(), 1);
    assert!(rest.sessions[0].cancelled);
    assert!(rest.next_page_token.is_empty());

    // The token is bound to its query (here: without cancelled sessions) and cannot be forged
    // into a negative offset.
    let misuse = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                page_size: 2,
                page_token: with_cancelled.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_code(misuse, tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
    let mut forged = hex::decode(&with_cancelled.next_page_token).expect("hex token");
    let at = forged.len() - 8;
    forged[at..].copy_from_slice(&(-5i64).to_be_bytes());
    let forged = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                include_cancelled: true,
                page_size: 2,
                page_token: hex::encode(forged),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_code(forged, tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
    // Nor into a start no request could give (the year 292,277 and beyond).
    let mut forged = hex::decode(&with_cancelled.next_page_token).expect("hex token");
    let at = forged.len() - 16;
    forged[at..at + 8].copy_from_slice(&i64::MAX.to_be_bytes());
    let forged = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                include_cancelled: true,
                page_size: 2,
                page_token: hex::encode(forged),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_code(forged, tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);

    // Page by page, one session at a time: every session once, in order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sessions(app.as_member(
                m[0],
                pb::ListSessionsRequest {
                    cohort_id: cohort.clone(),
                    include_cancelled: true,
                    page_size: 1,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("a page")
            .into_inner();
        seen.extend(page.sessions.iter().map(|s| s.session_id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let all: Vec<String> = client
        .list_sessions(app.as_member(
            m[0],
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                include_cancelled: true,
                ..Default::default()
            },
        ))
        .await
        .expect("all")
        .into_inner()
        .sessions
        .into_iter()
        .map(|s| s.session_id)
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(seen, all, "three pages of one");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attendance_and_the_roster_as_it_stood_when_a_session_started() {
    let app = App::spawn().await;
    let community = Community::create(&app, 3).await;
    let m = community.members.clone();
    let mut client = app.cohorts().await;
    let cohort = open_cohort(&app, &mut client, &community, 3).await;
    join(&app, &mut client, &community, &cohort, m[0]).await;
    join(&app, &mut client, &community, &cohort, m[1]).await;
    let starts_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let session = client
        .schedule_session(app.as_member(
            community.coach,
            pb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                title: "Session 1".into(),
                starts_at: Some(timestamp(starts_at)),
                duration_minutes: 30,
                weekly_occurrences: 0,
            },
        ))
        .await
        .expect("schedule")
        .into_inner()
        .session_ids
        .remove(0);

    // Attendance is for sessions that have started; wait for the start itself.
    let attend = |present: Vec<String>| pb::RecordAttendanceRequest {
        request_id: rid(),
        cohort_id: cohort.clone(),
        session_id: session.clone(),
        present,
    };
    assert_code(
        client
            .record_attendance(app.as_member(community.coach, attend(vec![m[0].to_string()])))
            .await,
        Code::FailedPrecondition,
    );
    eventually(Duration::from_secs(10), "the session to start", || {
        let mut client = client.clone();
        let request = app.as_member(community.coach, attend(vec![m[0].to_string()]));
        async move { client.record_attendance(request).await.ok() }
    })
    .await;

    // After the session started, m2 joins and m0 leaves.
    join(&app, &mut client, &community, &cohort, m[2]).await;
    let left = client
        .leave_cohort(app.as_member(
            m[0],
            pb::LeaveCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        ))
        .await
        .expect("leave")
        .into_inner()
        .committed
        .expect("committed");

    let then = client
        .get_roster_at(app.as_member(
            m[1],
            pb::GetRosterAtRequest {
                cohort_id: cohort.clone(),
                moment: Some(pb::get_roster_at_request::Moment::SessionId(
                    session.clone(),
                )),
            },
        ))
        .await
        .expect("roster at the session")
        .into_inner();
    let mut seated_then = in_place(&then.entries, pb::Place::Seat);
    seated_then.sort();
    let mut expected = vec![m[0], m[1]];
    expected.sort();
    assert_eq!(
        seated_then, expected,
        "who was in it when the session started"
    );
    assert_eq!(
        in_place(&then.entries, pb::Place::Facilitator),
        [community.coach]
    );
    assert_eq!(
        time_of(then.as_of.as_ref()).map(|t| t.timestamp_millis()),
        Some(starts_at.timestamp_millis())
    );

    let now = client
        .get_roster_at(app.as_member(
            m[1],
            pb::GetRosterAtRequest {
                cohort_id: cohort.clone(),
                moment: Some(pb::get_roster_at_request::Moment::At(in_minutes(1))),
            },
        ))
        .await
        .expect("roster now")
        .into_inner();
    let mut seated_now = in_place(&now.entries, pb::Place::Seat);
    seated_now.sort();
    let mut expected = vec![m[1], m[2]];
    expected.sort();
    assert_eq!(seated_now, expected);
    assert_eq!(now.version, left.version);

    let sessions = client
        .list_sessions(app.as_member(
            community.coach,
            pb::ListSessionsRequest {
                cohort_id: cohort.clone(),
                min_position: left.position,
                ..Default::default()
            },
        ))
        .await
        .expect("sessions")
        .into_inner()
        .sessions;
    assert_eq!(sessions[0].present, [m[0].to_string()]);
    app.stop().await;
}
