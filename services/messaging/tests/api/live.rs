//! The live stream: a subscriber that disconnects and resumes from its last position, on
//! another replica, receives every event once and in commit order; one whose access ends is
//! told and the stream ends.

use std::time::Duration;

use futures::StreamExt;
use kith_proto::cohorts as cpb;
use kith_proto::messaging as msg;
use kith_proto::messaging::subscribe_response::Event as Live;
use prost::Message as _;
use tonic::Streaming;
use uuid::Uuid;

use crate::helpers::{App, cohort_with, error_reason, post, rid};

/// The next event of `stream`, failing the test after 30 s (the log behind the projection waits for every older transaction of the cluster).
async fn next(
    stream: &mut Streaming<msg::SubscribeResponse>,
) -> Option<Result<msg::SubscribeResponse, tonic::Status>> {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("a live event within 30 s")
}

async fn subscribe(
    app: &App,
    client: &mut crate::helpers::Messaging,
    member: Uuid,
    from_position: i64,
) -> Streaming<msg::SubscribeResponse> {
    client
        .subscribe(app.as_member(member, msg::SubscribeRequest { from_position }))
        .await
        .expect("subscribe")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_resumes_on_another_replica_gets_every_event_once_in_order() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 3, 10, 3).await;
    let [ana, ben, cy] = community.members[..] else {
        panic!("three members");
    };
    let mut client = app.messaging().await;
    let mut replica = app.replica().await;
    let first = post(&app, &mut client, ana, &cohort, "", "go").await;
    let start = first.committed.unwrap().position;

    // Ben and Cy post concurrently, threads and replies, through both replicas.
    let writers = [(ben, client.clone()), (cy, replica.clone())].map(|(member, client)| {
        let (app, cohort, thread) = (&app, cohort.clone(), first.message_id.clone());
        async move {
            let mut client = client;
            let mut last = 0;
            for i in 0..15 {
                let in_thread = if i % 3 == 0 { "" } else { thread.as_str() };
                let reply = post(
                    app,
                    &mut client,
                    member,
                    &cohort,
                    in_thread,
                    &format!("{i}"),
                )
                .await;
                last = last.max(reply.committed.unwrap().position);
            }
            last
        }
    });
    let mut stream = subscribe(&app, &mut client, ana, start).await;
    let last = futures::future::join_all(writers)
        .await
        .into_iter()
        .max()
        .unwrap();

    // Take part of it, drop the stream, resume from the last position on the other replica.
    let mut received: Vec<msg::SubscribeResponse> = Vec::new();
    while received.len() < 10 {
        let event = next(&mut stream).await.expect("open").expect("event");
        if matches!(event.event, Some(Live::MessagePosted(_))) {
            received.push(event);
        }
    }
    drop(stream);
    let resume_at = received.last().unwrap().position;
    let mut stream = subscribe(&app, &mut replica, ana, resume_at).await;
    // Until the 30 posts: the one with the highest position need not be the last committed.
    while received.len() < 30 {
        let event = next(&mut stream).await.expect("open").expect("event");
        if matches!(event.event, Some(Live::MessagePosted(_))) {
            received.push(event);
        }
    }

    // Exactly the messages the log holds after the start, in its commit order. Every post has
    // returned, so all are committed (the log's tail would stop short while another test's
    // transaction is open).
    let start_at = kith_platform::eventlog::checkpoint_of(&app.pool().await, start)
        .await
        .unwrap()
        .unwrap();
    let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
        "SELECT position, event_type, payload FROM events
         WHERE (transaction_id::text::bigint, position) > ($1, $2)
         ORDER BY transaction_id, position",
    )
    .bind(start_at.transaction_id)
    .bind(start_at.position)
    .fetch_all(&app.pool().await)
    .await
    .unwrap();
    let expected: Vec<(i64, String)> = rows
        .into_iter()
        .filter(|(_, event_type, _)| event_type.ends_with(".MessagePosted"))
        .map(|(position, _, payload)| {
            (
                position,
                msg::MessagePosted::decode(payload.as_slice())
                    .unwrap()
                    .message_id,
            )
        })
        .collect();
    let got: Vec<(i64, String)> = received
        .iter()
        .map(|event| match &event.event {
            Some(Live::MessagePosted(m)) => (event.position, m.message_id.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(got.len(), 30);
    assert_eq!(got, expected);
    assert_eq!(got.iter().map(|(position, _)| *position).max(), Some(last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_counts_and_cursor_moves_arrive_live_and_a_removal_ends_the_stream() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let first = post(&app, &mut client, ana, &cohort, "", "hello").await;
    let mut stream = subscribe(&app, &mut client, ben, first.committed.unwrap().position).await;

    let reply = post(
        &app,
        &mut client,
        ana,
        &cohort,
        &first.message_id,
        "anyone?",
    )
    .await;
    // Ben sees the reply, then his unread count of two.
    let mut counts = None;
    let mut posted = Vec::new();
    while counts.is_none() {
        match next(&mut stream).await.unwrap().unwrap().event {
            Some(Live::MessagePosted(m)) => posted.push(m.message_id),
            Some(Live::UnreadCounts(c)) => counts = Some(c),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(posted, std::slice::from_ref(&reply.message_id));
    assert_eq!(counts.unwrap().total_messages, 2);
    // He reads it: his own cursor and counts of zero follow.
    client
        .mark_read(app.as_member(
            ben,
            msg::MarkReadRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                seq: reply.seq,
                ..Default::default()
            },
        ))
        .await
        .expect("read");
    let moved = next(&mut stream).await.unwrap().unwrap();
    assert!(
        matches!(&moved.event, Some(Live::ReadCursorMoved(c)) if c.member_id == ben.to_string() && c.seq == reply.seq)
    );
    let counts = next(&mut stream).await.unwrap().unwrap();
    assert!(matches!(&counts.event, Some(Live::UnreadCounts(c)) if c.total_messages == 0));

    // The coach removes Ben from the cohort, his only conversation: he is told, and the stream
    // ends.
    app.cohorts()
        .await
        .remove_from_cohort(app.as_member(
            community.coach,
            cpb::RemoveFromCohortRequest {
                request_id: rid(),
                cohort_id: cohort.clone(),
                member_id: ben.to_string(),
            },
        ))
        .await
        .expect("remove");
    let ended = next(&mut stream).await.unwrap().unwrap();
    assert_eq!(ended.conversation_id, cohort);
    assert!(matches!(ended.event, Some(Live::AccessEnded(_))));
    let status = next(&mut stream)
        .await
        .unwrap()
        .expect_err("the stream ends");
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(error_reason(&status).as_deref(), Some("NOT_A_READER"));
    assert!(next(&mut stream).await.is_none());
}
