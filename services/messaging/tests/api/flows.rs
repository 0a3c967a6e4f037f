//! A cohort's conversation end to end: threads, replies, reactions, edits, deletion, unread
//! counts and read cursors; and a direct conversation.

use kith_proto::messaging as msg;
use uuid::Uuid;

use crate::helpers::{App, assert_code, cohort_with, post, rid, threads, unread};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thread_with_replies_reactions_edits_and_a_deletion_as_members_read_it() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 3, 10, 3).await;
    let [ana, ben, cy] = community.members[..] else {
        panic!("three members");
    };
    let mut client = app.messaging().await;

    // Ana starts a thread, Ben replies, the coach starts another.
    let first = post(
        &app,
        &mut client,
        ana,
        &cohort,
        "",
        "Week 1: what did you ship?",
    )
    .await;
    let reply = post(
        &app,
        &mut client,
        ben,
        &cohort,
        &first.message_id,
        "The landing page",
    )
    .await;
    let other = post(
        &app,
        &mut client,
        community.coach,
        &cohort,
        "",
        "@cohort session moved",
    )
    .await;
    assert_eq!((first.seq, reply.seq, other.seq), (2, 3, 4));

    // Cy sees both threads, latest activity first, each unread.
    let seen = threads(
        &app,
        &mut client,
        cy,
        &cohort,
        other.committed.unwrap().position,
    )
    .await
    .expect("threads");
    let ids: Vec<&str> = seen
        .iter()
        .map(|t| t.first.as_ref().unwrap().message_id.as_str())
        .collect();
    assert_eq!(ids, [other.message_id.as_str(), first.message_id.as_str()]);
    assert_eq!(seen[1].reply_count, 1);
    assert_eq!(seen[1].unread, 2);
    assert_eq!(seen[0].unread, 1);
    assert!(seen[0].first.as_ref().unwrap().mentions_everyone);
    let counts = unread(&app, &mut client, cy, 0).await;
    assert_eq!((counts.total_messages, counts.total_mentions), (3, 1));
    assert_eq!(counts.conversations.len(), 1);
    assert_eq!(counts.conversations[0].conversation_id, cohort);

    // A reaction, twice, counts once.
    for _ in 0..2 {
        client
            .add_reaction(app.as_member(
                cy,
                msg::AddReactionRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    message_id: reply.message_id.clone(),
                    reaction: "🎉".into(),
                },
            ))
            .await
            .expect("react");
    }
    // Ben edits his reply; the thread shows the latest version.
    let edited = client
        .edit_message(app.as_member(
            ben,
            msg::EditMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: reply.message_id.clone(),
                title: String::new(),
                body: "The landing page, and the pricing page".into(),
            },
        ))
        .await
        .expect("edit")
        .into_inner()
        .committed
        .unwrap();
    let thread = client
        .get_thread(app.as_member(
            cy,
            msg::GetThreadRequest {
                conversation_id: cohort.clone(),
                thread_id: first.message_id.clone(),
                page_size: 0,
                page_token: String::new(),
                min_position: edited.position,
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    let replies = thread.replies;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].body, "The landing page, and the pricing page");
    assert!(replies[0].edited_at.is_some());
    assert_eq!(replies[0].reactions.len(), 1);
    assert_eq!(replies[0].reactions[0].reaction, "🎉");
    assert_eq!(replies[0].reactions[0].count, 1);
    assert!(replies[0].reactions[0].mine);

    // Cy reads the first thread up to the reply: its count drops to zero, the other stays.
    let read_first_to = |seq: i64| {
        app.as_member(
            cy,
            msg::MarkReadRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                thread_id: first.message_id.clone(),
                seq,
            },
        )
    };
    let read = client
        .mark_read(read_first_to(reply.seq))
        .await
        .expect("mark read")
        .into_inner()
        .committed
        .unwrap();
    let counts = unread(&app, &mut client, cy, read.position).await;
    assert_eq!(counts.total_messages, 1);
    assert_eq!(counts.threads.len(), 1);
    assert_eq!(counts.threads[0].thread_id, other.message_id);
    // A cursor never moves back.
    client
        .mark_read(read_first_to(1))
        .await
        .expect("an older seq changes nothing");
    assert_eq!(unread(&app, &mut client, cy, 0).await.total_messages, 1);
    // Nor does it move past the conversation's latest message.
    let past = client
        .mark_read(read_first_to(1_000))
        .await
        .expect_err("a seq past the latest message");
    assert_eq!(past.code(), tonic::Code::InvalidArgument);
    assert_eq!(kith_platform::testing::violated_fields(&past), ["seq"]);

    // Another member cannot edit Ben's reply; Ben deletes it: a tombstone with no body.
    let refused = client
        .edit_message(app.as_member(
            ana,
            msg::EditMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: reply.message_id.clone(),
                title: String::new(),
                body: "not mine".into(),
            },
        ))
        .await;
    assert_code(refused, tonic::Code::PermissionDenied);
    let deleted = client
        .delete_message(app.as_member(
            ben,
            msg::DeleteMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: reply.message_id.clone(),
            },
        ))
        .await
        .expect("delete")
        .into_inner()
        .committed
        .unwrap();
    let thread = client
        .get_thread(app.as_member(
            ana,
            msg::GetThreadRequest {
                conversation_id: cohort.clone(),
                thread_id: first.message_id.clone(),
                page_size: 0,
                page_token: String::new(),
                min_position: deleted.position,
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    assert!(thread.replies[0].deleted);
    assert!(thread.replies[0].body.is_empty());
    assert!(thread.replies[0].reactions.is_empty());
    assert_eq!(thread.thread.unwrap().reply_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_direct_conversation_is_found_again_by_its_people_and_read_only_by_them() {
    let app = App::spawn().await;
    let (community, _, _) = cohort_with(&app, 3, 10, 0).await;
    let [ana, ben, cy] = community.members[..] else {
        panic!("three members");
    };
    let mut client = app.messaging().await;
    let open = |other: Uuid| msg::OpenDirectConversationRequest {
        request_id: rid(),
        community_id: community.id.clone(),
        participant_ids: vec![other.to_string()],
    };
    let opened = client
        .open_direct_conversation(app.as_member(ana, open(ben)))
        .await
        .expect("open")
        .into_inner();
    let again = client
        .open_direct_conversation(app.as_member(ben, open(ana)))
        .await
        .expect("open again")
        .into_inner();
    assert_eq!(opened.conversation_id, again.conversation_id);
    let dm = opened.conversation_id;
    let hello = post(&app, &mut client, ana, &dm, "", "hi Ben").await;
    assert_eq!(hello.seq, 2);
    let counts = unread(&app, &mut client, ben, hello.committed.unwrap().position).await;
    assert_eq!(counts.total_messages, 1);
    assert_eq!(counts.conversations[0].conversation_id, dm);
    assert_eq!(unread(&app, &mut client, ana, 0).await.total_messages, 0);
    // Cy is not in it.
    let refused = client
        .post_message(app.as_member(
            cy,
            msg::PostMessageRequest {
                request_id: rid(),
                conversation_id: dm.clone(),
                thread_id: String::new(),
                title: String::new(),
                body: "let me in".into(),
            },
        ))
        .await;
    assert_code(refused, tonic::Code::PermissionDenied);
    assert_eq!(unread(&app, &mut client, cy, 0).await.total_messages, 0);
}
