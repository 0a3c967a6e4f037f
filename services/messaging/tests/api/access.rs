//! Access follows the roster through events: a member removed from the cohort, or banned from
//! the community, can no longer read, post or react there (nor in their direct conversations,
//! for a ban) once the event reaches messaging, on every replica; a waitlisted member reads
//! nothing.

use std::time::Duration;

use kith_platform::testing::eventually;
use kith_proto::cohorts as pb;
use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use uuid::Uuid;

use crate::helpers::{
    App, Messaging, assert_code, cohort_with, error_reason, join, open_direct, post, rid, unread,
};

/// Waits until `member` is refused reading `conversation` on `client`.
async fn until_refused(app: &App, client: &Messaging, member: Uuid, conversation: &str) {
    eventually(
        Duration::from_secs(10),
        "messaging to learn that the member's access ended",
        || {
            let mut client = client.clone();
            let request = app.as_member(
                member,
                msg::GetThreadRequest {
                    conversation_id: conversation.into(),
                    thread_id: Uuid::new_v4().to_string(),
                    ..Default::default()
                },
            );
            async move {
                match client.get_thread(request).await {
                    Err(status) if status.code() == tonic::Code::PermissionDenied => Some(()),
                    _ => None,
                }
            }
        },
    )
    .await;
}

/// Everything a reader does, refused with NOT_A_READER.
async fn refused_everything(
    app: &App,
    client: &mut Messaging,
    member: Uuid,
    conversation: &str,
    message: &str,
) {
    let pool = app.pool().await;
    let keys = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sealing_keys")
            .fetch_one(&pool)
            .await
            .expect("keys")
    };
    let keys_before = keys().await;
    let posted = client
        .post_message(app.as_member(
            member,
            msg::PostMessageRequest {
                request_id: rid(),
                conversation_id: conversation.into(),
                body: "still here?".into(),
                ..Default::default()
            },
        ))
        .await;
    let posted = assert_code(posted, tonic::Code::PermissionDenied);
    assert_eq!(error_reason(&posted).as_deref(), Some("NOT_A_READER"));
    // A refused post writes nothing, not even its key.
    assert_eq!(keys().await, keys_before);
    let reacted = client
        .add_reaction(app.as_member(
            member,
            msg::AddReactionRequest {
                request_id: rid(),
                conversation_id: conversation.into(),
                message_id: message.into(),
                reaction: "👍".into(),
            },
        ))
        .await;
    assert_code(reacted, tonic::Code::PermissionDenied);
    let listed = client
        .list_threads(app.as_member(
            member,
            msg::ListThreadsRequest {
                conversation_id: conversation.into(),
                ..Default::default()
            },
        ))
        .await;
    let read = client
        .mark_read(app.as_member(
            member,
            msg::MarkReadRequest {
                request_id: rid(),
                conversation_id: conversation.into(),
                seq: 1,
                ..Default::default()
            },
        ))
        .await;
    assert_code(read, tonic::Code::PermissionDenied);
    let searched = client
        .search_messages(app.as_member(
            member,
            msg::SearchMessagesRequest {
                query: "hello".into(),
                conversation_id: conversation.into(),
                ..Default::default()
            },
        ))
        .await;
    assert_code(searched, tonic::Code::PermissionDenied);
    // A direct conversation has no thread list; a cohort's is refused.
    if let Err(status) = listed {
        assert!(
            matches!(status.code(), tonic::Code::PermissionDenied),
            "{status:?}"
        );
    }
    let counts = unread(app, client, member, 0).await;
    assert!(
        counts
            .conversations
            .iter()
            .all(|c| c.conversation_id != conversation),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removed_from_the_cohort_the_member_can_no_longer_read_or_write_there_on_any_replica() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let mut replica = app.replica().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "hello").await;
    post(&app, &mut replica, ben, &cohort, &thread.message_id, "hi").await;

    app.cohorts()
        .await
        .remove_from_cohort(app.as_member(
            community.coach,
            pb::RemoveFromCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: ben.to_string(),
            },
        ))
        .await
        .expect("remove");
    for client in [&mut client, &mut replica] {
        until_refused(&app, client, ben, &cohort).await;
        refused_everything(&app, client, ben, &cohort, &thread.message_id).await;
    }
    // Ana still reads and writes.
    post(
        &app,
        &mut replica,
        ana,
        &cohort,
        &thread.message_id,
        "bye Ben",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ban_ends_access_to_the_cohort_and_to_direct_conversations_on_any_replica() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let mut replica = app.replica().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "hello").await;
    let dm = open_direct(&app, &mut client, ana, &community, &[ben]).await;
    let said = post(&app, &mut replica, ben, &dm, "", "psst").await;

    app.membership()
        .await
        .ban_member(app.as_member(
            community.owner,
            mpb::BanMemberRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                member_id: ben.to_string(),
                reason: String::new(),
            },
        ))
        .await
        .expect("ban");
    for client in [&mut client, &mut replica] {
        until_refused(&app, client, ben, &cohort).await;
        refused_everything(&app, client, ben, &cohort, &thread.message_id).await;
        until_refused(&app, client, ben, &dm).await;
        refused_everything(&app, client, ben, &dm, &said.message_id).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waitlisted_member_reads_nothing_until_promoted() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 1, 1).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut cohorts = app.cohorts().await;
    let (place, _) = join(&app, &mut cohorts, &community, &cohort, ben).await;
    assert_eq!(place, pb::Place::Waitlist);
    let mut client = app.messaging().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "hello").await;
    // The waitlist place reached messaging when the post above did not refuse Ana... wait for
    // Ben's too, through the refusal itself, which cannot change without a seat.
    until_refused(&app, &client, ben, &cohort).await;
    refused_everything(&app, &mut client, ben, &cohort, &thread.message_id).await;
    // Ana leaves: Ben is promoted and reads.
    cohorts
        .leave_cohort(app.as_member(
            ana,
            pb::LeaveCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
            },
        ))
        .await
        .expect("leave");
    post(
        &app,
        &mut client,
        ben,
        &cohort,
        &thread.message_id,
        "my turn",
    )
    .await;
}
