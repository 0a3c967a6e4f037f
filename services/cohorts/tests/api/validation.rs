//! Malformed requests are INVALID_ARGUMENT naming every bad field, and change nothing.

use kith_proto::cohorts as pb;
use tonic::Code;

use crate::helpers::{App, Community, assert_code, create_cohort, rid, violated_fields};

fn create(community: &Community) -> pb::CreateCohortRequest {
    pb::CreateCohortRequest {
        request_id: rid(),
        community_id: community.id.clone(),
        name: "Writers circle".into(),
        kind: pb::CohortKind::Circle as i32,
        capacity: Some(10),
        time_zone: "America/New_York".into(),
        community_version: community.version,
        ..Default::default()
    }
}

fn date(year: i32, month: u32, day: u32) -> Option<pb::Date> {
    Some(pb::Date { year, month, day })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_field_is_named() {
    let app = App::spawn().await;
    let community = Community::create(&app, 1).await;
    let mut client = app.cohorts().await;
    let cases: Vec<(&str, pb::CreateCohortRequest, Vec<&str>)> = vec![
        (
            "capacity 31",
            pb::CreateCohortRequest {
                capacity: Some(31),
                ..create(&community)
            },
            vec!["capacity"],
        ),
        (
            "capacity 0",
            pb::CreateCohortRequest {
                capacity: Some(0),
                ..create(&community)
            },
            vec!["capacity"],
        ),
        (
            "empty name",
            pb::CreateCohortRequest {
                name: "  ".into(),
                ..create(&community)
            },
            vec!["name"],
        ),
        (
            "unknown time zone",
            pb::CreateCohortRequest {
                time_zone: "Mars/Olympus".into(),
                ..create(&community)
            },
            vec!["time_zone"],
        ),
        (
            "end before start",
            pb::CreateCohortRequest {
                starts_on: date(2027, 3, 10),
                ends_on: date(2027, 3, 1),
                ..create(&community)
            },
            vec!["ends_on"],
        ),
        (
            "no such date",
            pb::CreateCohortRequest {
                starts_on: date(2027, 2, 30),
                ..create(&community)
            },
            vec!["starts_on"],
        ),
        (
            "year -5",
            pb::CreateCohortRequest {
                starts_on: date(-5, 1, 1),
                ..create(&community)
            },
            vec!["starts_on"],
        ),
        (
            "year 1 and 99999",
            pb::CreateCohortRequest {
                starts_on: date(1, 1, 1),
                ends_on: date(99999, 1, 1),
                ..create(&community)
            },
            vec!["starts_on", "ends_on"],
        ),
        (
            "bad community id",
            pb::CreateCohortRequest {
                community_id: "not-a-uuid".into(),
                ..create(&community)
            },
            vec!["community_id"],
        ),
        (
            "no kind",
            pb::CreateCohortRequest {
                kind: 0,
                ..create(&community)
            },
            vec!["kind"],
        ),
        (
            "no request id",
            pb::CreateCohortRequest {
                request_id: String::new(),
                ..create(&community)
            },
            vec!["request_id"],
        ),
        (
            "long goal",
            pb::CreateCohortRequest {
                goal: "g".repeat(1001),
                ..create(&community)
            },
            vec!["goal"],
        ),
        (
            "several at once",
            pb::CreateCohortRequest {
                capacity: Some(31),
                name: String::new(),
                time_zone: "Nowhere".into(),
                ..create(&community)
            },
            vec!["name", "capacity", "time_zone"],
        ),
    ];
    for (what, request, fields) in cases {
        let status = assert_code(
            client
                .create_cohort(app.as_member(community.coach, request))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), fields, "{what}: {status:?}");
    }

    let cohort = create_cohort(&app, &mut client, &community, 5).await;
    let update = |capacity| pb::UpdateCohortRequest {
        request_id: rid(),
        cohort_id: cohort.clone(),
        name: "Renamed".into(),
        capacity,
        ..Default::default()
    };
    for capacity in [0, 31] {
        let status = assert_code(
            client
                .update_cohort(app.as_member(community.coach, update(capacity)))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(
            violated_fields(&status),
            ["capacity"],
            "update capacity {capacity}"
        );
    }

    let status = assert_code(
        client
            .join_cohort(app.as_member(
                community.members[0],
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: "42".into(),
                    community_version: -1,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["cohort_id", "community_version"]);

    let status = assert_code(
        client
            .schedule_session(app.as_member(
                community.coach,
                pb::ScheduleSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    title: String::new(),
                    starts_at: None,
                    duration_minutes: 2,
                    weekly_occurrences: 53,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        [
            "title",
            "starts_at",
            "duration_minutes",
            "weekly_occurrences"
        ]
    );

    // Outside what a protobuf Timestamp may hold, or what a person could mean.
    for (what, starts_at) in [
        (
            "year 10000",
            prost_types::Timestamp {
                seconds: 253_402_300_800,
                nanos: 0,
            },
        ),
        (
            "negative nanos",
            prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: -1,
            },
        ),
        (
            "year 2300",
            prost_types::Timestamp {
                seconds: 10_413_792_000,
                nanos: 0,
            },
        ),
    ] {
        let status = assert_code(
            client
                .schedule_session(app.as_member(
                    community.coach,
                    pb::ScheduleSessionRequest {
                        request_id: rid(),
                        cohort_id: cohort.clone(),
                        title: "Kickoff".into(),
                        starts_at: Some(starts_at),
                        duration_minutes: 60,
                        weekly_occurrences: 1,
                    },
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), ["starts_at"], "{what}");
    }

    // Ranges only the decider can check against its clock are named the same way.
    let status = assert_code(
        client
            .schedule_session(app.as_member(
                community.coach,
                pb::ScheduleSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    title: "Yesterday".into(),
                    starts_at: Some(crate::helpers::in_minutes(-60)),
                    duration_minutes: 60,
                    weekly_occurrences: 0,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["starts_at"], "{status:?}");
    let status = assert_code(
        client
            .invite_to_cohort(app.as_member(
                community.coach,
                pb::InviteToCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    member_id: community.members[0].to_string(),
                    expires_at: Some(crate::helpers::in_minutes(60 * 24 * 31)),
                    community_version: community.version,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["expires_at"], "{status:?}");

    let status = assert_code(
        client
            .respond_to_session(app.as_member(
                community.coach,
                pb::RespondToSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    session_id: "x".into(),
                    response: 0,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["session_id", "response"]);

    let status = assert_code(
        client
            .record_attendance(app.as_member(
                community.coach,
                pb::RecordAttendanceRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    session_id: uuid::Uuid::new_v4().to_string(),
                    present: vec![community.members[0].to_string(), "nope".into()],
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["present[1]"]);

    let status = assert_code(
        client
            .list_cohorts(app.as_member(
                community.coach,
                pb::ListCohortsRequest {
                    community_id: community.id.clone(),
                    kind: 9,
                    status: 42,
                    page_size: 201,
                    page_token: "garbage".into(),
                    min_position: -1,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        ["kind", "status", "page_size", "page_token", "min_position"]
    );

    let status = assert_code(
        client
            .get_roster_at(app.as_member(
                community.coach,
                pb::GetRosterAtRequest {
                    cohort_id: cohort.clone(),
                    moment: None,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["moment"]);

    // Nothing was written by any of the refused calls: the log holds the creation alone.
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM events WHERE stream_id = $1")
            .bind(&cohort)
            .fetch_one(&app.pool().await)
            .await
            .expect("version");
    assert_eq!(
        version,
        Some(2),
        "created with its first facilitator, nothing else"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = App::spawn().await;
    let mut client = app.cohorts().await;
    let status = assert_code(
        client
            .get_cohort(pb::GetCohortRequest {
                cohort_id: uuid::Uuid::new_v4().to_string(),
                min_position: 0,
            })
            .await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("authorization"), "{status:?}");
    app.stop().await;
}
