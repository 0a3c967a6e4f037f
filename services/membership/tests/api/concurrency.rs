//! Two replicas of the service on one database decide on the same community at once: the log's
//! expected version makes them take turns, and no rule is broken by the race.

use std::collections::HashMap;

use kith_proto::membership as pb;
use kith_proto::membership::membership_service_client::MembershipServiceClient;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{App, create_community, in_days, profile, rid};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invitation_for_five_admits_exactly_five_of_twenty_racing_across_two_replicas() {
    let app = App::spawn().await;
    let replica = app.replica().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Five seats").await;
    let invitation = client
        .create_invitation(app.as_member(
            owner,
            pb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(in_days(1)),
                max_uses: 5,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .invitation_id;
    let replica_client = MembershipServiceClient::connect(format!("http://{replica}"))
        .await
        .unwrap();

    let mut racers = Vec::new();
    for n in 0..20 {
        let mut client = if n % 2 == 0 {
            client.clone()
        } else {
            replica_client.clone()
        };
        let request = app.as_member(
            Uuid::new_v4(),
            pb::AcceptInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                invitation_id: invitation.clone(),
                profile: profile(&format!("Racer {n}"), &format!("racer{n}")),
            },
        );
        racers.push(tokio::spawn(async move {
            client.accept_invitation(request).await
        }));
    }
    let mut outcomes: HashMap<Code, usize> = HashMap::new();
    let mut last_position = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(reply) => {
                *outcomes.entry(Code::Ok).or_default() += 1;
                last_position = last_position.max(reply.into_inner().committed.unwrap().position);
            }
            Err(status) => *outcomes.entry(status.code()).or_default() += 1,
        }
    }
    assert_eq!(outcomes.get(&Code::Ok), Some(&5), "{outcomes:?}");
    assert_eq!(
        outcomes.get(&Code::FailedPrecondition),
        Some(&15),
        "{outcomes:?}"
    );
    let read = client
        .get_community(app.as_member(
            owner,
            pb::GetCommunityRequest {
                community_id: community,
                min_position: last_position,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .community
        .unwrap();
    assert_eq!(read.member_count, 6);
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM events ORDER BY version")
        .fetch_all(&app.pool().await)
        .await
        .unwrap();
    assert_eq!(
        versions,
        (1..=8).collect::<Vec<_>>(),
        "one stream, no gaps, no duplicates"
    );
    app.stop().await;
}
