//! One rule for refusals in both services: who the caller is answers PERMISSION_DENIED, the state
//! of the resource FAILED_PRECONDITION; every refusal carries an ErrorInfo with a stable reason.

use kith_proto::cohorts as pb;
use kith_proto::membership as mpb;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    App, Community, assert_code, error_reason, in_minutes, join, open_cohort, rid,
};

/// Asserts `result` is a refusal with `code` and `reason`.
#[track_caller]
fn refused<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, tonic::Status>,
    code: Code,
    reason: &str,
) {
    let status = match result {
        Err(status) => status,
        Ok(value) => panic!("{what}: expected {code:?}, got Ok({value:?})"),
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(
        error_reason(&status).as_deref(),
        Some(reason),
        "{what}: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_you_are_is_permission_denied_and_the_state_of_things_a_failed_precondition() {
    let app = App::spawn().await;
    let community = Community::create(&app, 2).await;
    let mut cohorts = app.cohorts().await;
    let mut membership = app.membership().await;
    let cohort = open_cohort(&app, &mut cohorts, &community, 1).await;
    let session = cohorts
        .schedule_session(app.as_member(
            community.coach,
            pb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                title: "Kickoff".into(),
                starts_at: Some(in_minutes(60)),
                duration_minutes: 60,
                weekly_occurrences: 1,
            },
        ))
        .await
        .expect("schedule")
        .into_inner()
        .session_ids[0]
        .clone();
    let stranger = Uuid::new_v4();

    // A stranger: the same answer from every call, read or write, in both services.
    refused(
        "GetCohort",
        cohorts
            .get_cohort(app.as_member(
                stranger,
                pb::GetCohortRequest {
                    cohort_id: cohort.clone(),
                    min_position: 0,
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    refused(
        "ListRoster",
        cohorts
            .list_roster(app.as_member(
                stranger,
                pb::ListRosterRequest {
                    cohort_id: cohort.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    refused(
        "JoinCohort",
        cohorts
            .join_cohort(app.as_member(
                stranger,
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: community.version,
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    refused(
        "RespondToSession",
        cohorts
            .respond_to_session(app.as_member(
                stranger,
                pb::RespondToSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    session_id: session.clone(),
                    response: pb::RsvpResponse::Yes as i32,
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    refused(
        "GetMember",
        membership
            .get_member(app.as_member(
                stranger,
                mpb::GetMemberRequest {
                    community_id: community.id.clone(),
                    member_id: community.owner.to_string(),
                    min_position: 0,
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    refused(
        "ListMembers",
        membership
            .list_members(app.as_member(
                stranger,
                mpb::ListMembersRequest {
                    community_id: community.id.clone(),
                    ..Default::default()
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );
    refused(
        "UpdateProfile",
        membership
            .update_profile(app.as_member(
                stranger,
                mpb::UpdateProfileRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    profile: Some(mpb::ProfileInput {
                        display_name: "Stranger".into(),
                        handle: "stranger".into(),
                        bio: String::new(),
                    }),
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_A_MEMBER",
    );

    // A member without the role: who they are.
    refused(
        "ScheduleSession by a plain member",
        cohorts
            .schedule_session(app.as_member(
                community.members[0],
                pb::ScheduleSessionRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    title: "Mine".into(),
                    starts_at: Some(in_minutes(90)),
                    duration_minutes: 30,
                    weekly_occurrences: 1,
                },
            ))
            .await,
        Code::PermissionDenied,
        "NOT_PERMITTED",
    );

    // The state of the cohort: full (its one seat taken, the next member waits), then archived.
    let (place, _) = join(
        &app,
        &mut cohorts,
        &community,
        &cohort,
        community.members[0],
    )
    .await;
    assert_eq!(place, pb::Place::Seat);
    refused(
        "InviteToCohort into a full cohort",
        cohorts
            .invite_to_cohort(app.as_member(
                community.coach,
                pb::InviteToCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    member_id: community.members[1].to_string(),
                    expires_at: Some(in_minutes(600)),
                    community_version: community.version,
                },
            ))
            .await,
        Code::FailedPrecondition,
        "COHORT_FULL",
    );
    refused(
        "JoinCohort twice",
        cohorts
            .join_cohort(app.as_member(
                community.members[0],
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: community.version,
                },
            ))
            .await,
        Code::AlreadyExists,
        "ALREADY_IN_COHORT",
    );
    refused(
        "GetCohort of no cohort",
        cohorts
            .get_cohort(app.as_member(
                community.owner,
                pb::GetCohortRequest {
                    cohort_id: Uuid::new_v4().to_string(),
                    min_position: 0,
                },
            ))
            .await,
        Code::NotFound,
        "COHORT_NOT_FOUND",
    );
    // Bad input carries a reason too, beside the field violations.
    let bad = assert_code(
        cohorts
            .get_cohort(app.as_member(
                community.owner,
                pb::GetCohortRequest {
                    cohort_id: "nope".into(),
                    min_position: 0,
                },
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(error_reason(&bad).as_deref(), Some("INVALID_FIELD"));
    app.stop().await;
}
