//! What production does to a replica: it may not be the one consuming membership's stream, it
//! may run an older version than the one that wrote a stream, and it keeps sweeping for hours.

use std::time::{Duration, Instant};

use kith_platform::eventlog::{Append, EventLog, Metadata, NewEvent};
use kith_platform::testing::eventually;
use kith_proto::cohorts as pb;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::{App, Cohorts, Community, assert_code, join, open_cohort, rid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_does_not_consume_membership_wakes_its_waits_at_once() {
    let app = App::spawn().await;
    let mut community = Community::create(&app, 0).await;
    let mut client = app.cohorts().await;
    // Created through the first server, which consumes membership's stream since it started: the
    // replica starting now only follows.
    let cohort = open_cohort(&app, &mut client, &community, 12).await;
    let replica = app.replica().await;
    let mut on_replica = Cohorts::connect(format!("http://{replica}"))
        .await
        .expect("connect to the replica");

    let (member, version) = community.add_member(&app).await;
    let started = Instant::now();
    let joined = on_replica
        .join_cohort(app.as_member(
            member,
            pb::JoinCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                community_version: version,
            },
        ))
        .await
        .expect("the replica sees the community version the consumer applied")
        .into_inner();
    assert_eq!(joined.place, pb::Place::Seat as i32);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "woken at once, not at the wait's deadline: {:?}",
        started.elapsed()
    );

    // Without a version to wait for: a refusal that rests on membership waits a moment for it.
    let (newcomer, _) = community.add_member(&app).await;
    on_replica
        .join_cohort(app.as_member(
            newcomer,
            pb::JoinCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                community_version: 0,
            },
        ))
        .await
        .expect("a member who joined the community a moment ago is not refused on the replica");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cohort_holding_an_event_of_a_newer_version_is_left_to_that_version() {
    let app = App::spawn().await;
    let community = Community::create(&app, 2).await;
    let mut client = app.cohorts().await;
    let cohort = open_cohort(&app, &mut client, &community, 12).await;
    let other = open_cohort(&app, &mut client, &community, 12).await;
    // A replica of the next version recorded an event this one does not know.
    let pool = app.pool().await;
    let log = EventLog::new(pool.clone());
    let version = log.read_stream(&cohort, 0).await.unwrap().len() as i64;
    log.append(Append {
        stream_type: "cohort",
        stream_id: &cohort,
        expected_version: version,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "kith.cohorts.v1.CohortPaused".into(),
            payload: Vec::new(),
        }],
        metadata: &Metadata::default(),
        command_key: None,
        erase_subjects: &[],
    })
    .await
    .unwrap();

    let refused = assert_code(
        client
            .join_cohort(app.as_member(
                community.members[0],
                pb::JoinCohortRequest {
                    request_id: rid(),
                    cohort_id: cohort.clone(),
                    community_version: community.version,
                },
            ))
            .await,
        Code::Unavailable,
    );
    let reason = refused.get_details_error_info().map(|info| info.reason);
    assert_eq!(
        reason.as_deref(),
        Some("NEWER_VERSION_REQUIRED"),
        "{refused:?}"
    );

    // Its roster stops at that event instead of skipping it: a later change elsewhere is not
    // shown by this version until the newer one has applied the event.
    let (_, position) = join(&app, &mut client, &community, &other, community.members[1]).await;
    let waited = client
        .list_roster(app.as_member(
            community.members[1],
            pb::ListRosterRequest {
                cohort_id: other.clone(),
                page_size: 50,
                page_token: String::new(),
                min_position: position,
            },
        ))
        .await;
    assert!(waited.is_err(), "the roster did not skip the newer event");
    let stalled = kith_platform::metrics::metrics()
        .projection_stalled
        .get_or_create(&kith_platform::metrics::SourceLabels::new(
            "cohorts", "roster", "log",
        ))
        .get();
    assert_eq!(stalled, 1, "the roster says it is stalled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_expiry_sweep_leaves_archived_cohorts_alone() {
    let app = App::spawn().await;
    let community = Community::create(&app, 1).await;
    let mut client = app.cohorts().await;
    let cohort = open_cohort(&app, &mut client, &community, 12).await;
    let soon = kith_platform::wire::timestamp(chrono::Utc::now() + chrono::Duration::seconds(2));
    let invited = client
        .invite_to_cohort(app.as_member(
            community.coach,
            pb::InviteToCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: community.members[0].to_string(),
                expires_at: Some(soon),
                community_version: community.version,
            },
        ))
        .await
        .expect("invite")
        .into_inner();
    let mut last = invited.committed.expect("committed").position;
    for step in ["close", "archive"] {
        let reply = if step == "close" {
            client
                .close_cohort(app.as_member(
                    community.owner,
                    pb::CloseCohortRequest {
                        request_id: rid(),
                        cohort_id: cohort.clone(),
                    },
                ))
                .await
                .map(|r| r.into_inner().committed)
        } else {
            client
                .archive_cohort(app.as_member(
                    community.owner,
                    pb::ArchiveCohortRequest {
                        request_id: rid(),
                        cohort_id: cohort.clone(),
                    },
                ))
                .await
                .map(|r| r.into_inner().committed)
        };
        last = reply
            .unwrap_or_else(|status| panic!("{step}: {status:?}"))
            .expect("committed")
            .position;
    }
    // Read the roster once it holds the archive, so the projection is where the sweep looks.
    crate::helpers::roster(&app, &mut client, community.owner, &cohort, last).await;
    let pool = app.pool().await;
    let cohort_id: Uuid = cohort.parse().unwrap();
    eventually(
        Duration::from_secs(10),
        "the archived cohort's invitation to lapse",
        || async {
            let lapsed: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM cohort_places WHERE cohort_id = $1
                   AND place = 'invitation' AND expires_at <= now())",
            )
            .bind(cohort_id)
            .fetch_one(&pool)
            .await
            .unwrap();
            lapsed.then_some(())
        },
    )
    .await;
    let visited = kith_cohorts::reactions::cohorts_with_lapsed_invitations(&pool)
        .await
        .unwrap();
    assert!(
        !visited.contains(&cohort_id),
        "an archived cohort is not swept again and again"
    );
    app.stop().await;
}
