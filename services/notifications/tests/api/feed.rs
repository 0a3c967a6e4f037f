//! What reaches a member's feed, once, and how it changes with the message it is about.

use kith_proto::notifications as pb;
use tokio_stream::StreamExt;

use crate::helpers::{App, PATIENCE, as_member, kinds, rid};

#[tokio::test]
async fn a_mention_in_a_new_thread_reaches_the_feed_once_and_the_rest_of_the_cohort_as_a_new_thread()
 {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(3).await;
    let [author, mentioned, other] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    let body = format!("Welcome, @{}! Goals for the week?", community.handles[1]);
    let posted = app.post(author, &cohort, "", &body).await;

    let feed = app
        .feed_until(mentioned, "the mention in the feed", |f| !f.is_empty())
        .await;
    assert_eq!(feed.len(), 1, "one notification for one event: {feed:?}");
    assert_eq!(
        kinds(&feed[0]),
        (pb::Kind::Mention, vec![pb::Kind::NewThread])
    );
    assert_eq!(feed[0].message_id, posted.message_id);
    assert_eq!(feed[0].actor_id, author.to_string());
    assert!(!feed[0].read);

    let others = app
        .feed_until(other, "the new thread in the feed", |f| !f.is_empty())
        .await;
    assert_eq!(kinds(&others[0]), (pb::Kind::NewThread, vec![]));
    let coach = app
        .feed_until(community.coach, "the facilitator's feed", |f| !f.is_empty())
        .await;
    assert_eq!(coach.len(), 1);
    // The author is told nothing of their own post.
    let source = app
        .messaging_event(posted.committed.expect("committed").position)
        .await;
    let mut client = app.notifications().await;
    let own = client
        .explain_notification(as_member(
            author,
            pb::ExplainNotificationRequest {
                subject: Some(pb::explain_notification_request::Subject::SourceEventId(
                    source,
                )),
                min_position: 0,
            },
        ))
        .await
        .expect("explain")
        .into_inner();
    assert!(!own.notified);
    assert_eq!(own.reasons[0].code, "NO_RULE_MATCHED");
    assert!(app.feed(author).await.is_empty());
}

#[tokio::test]
async fn a_reply_reaches_those_who_follow_the_thread_and_not_the_rest() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(3).await;
    let [starter, replier, bystander] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    let thread = app.post(starter, &cohort, "", "A question for all").await;
    // The bystander mutes nothing, but follows nothing either: a reply is not for them.
    app.feed_until(bystander, "the new thread", |f| f.len() == 1)
        .await;
    app.post(replier, &cohort, &thread.message_id, "An answer")
        .await;

    let feed = app
        .feed_until(starter, "the reply in the starter's feed", |f| {
            !f.is_empty()
        })
        .await;
    assert_eq!(feed.len(), 1);
    assert_eq!(kinds(&feed[0]), (pb::Kind::Reply, vec![]));
    assert_eq!(feed[0].thread_id, thread.message_id);
    // A third post settles the order: once the starter sees it, the reply was decided for all.
    let again = app
        .post(replier, &cohort, &thread.message_id, "And more")
        .await;
    app.feed_until(starter, "the second reply", |f| f.len() == 2)
        .await;
    let source = app
        .messaging_event(again.committed.expect("committed").position)
        .await;
    let bystanders = app.feed(bystander).await;
    assert_eq!(bystanders.len(), 1, "only the new thread: {bystanders:?}");
    let mut client = app.notifications().await;
    let why = client
        .explain_notification(as_member(
            bystander,
            pb::ExplainNotificationRequest {
                subject: Some(pb::explain_notification_request::Subject::SourceEventId(
                    source,
                )),
                min_position: 0,
            },
        ))
        .await
        .expect("explain")
        .into_inner();
    assert!(!why.notified);
}

#[tokio::test]
async fn a_direct_message_reaches_the_other_person() {
    let app = App::spawn().await;
    let (community, _) = app.cohort(2).await;
    let [ana, ben] = [community.members[0], community.members[1]];
    let conversation = app
        .messaging()
        .await
        .open_direct_conversation(as_member(
            ana,
            kith_proto::messaging::OpenDirectConversationRequest {
                request_id: rid(),
                community_id: community.id.clone(),
                participant_ids: vec![ben.to_string()],
            },
        ))
        .await
        .expect("open direct")
        .into_inner()
        .conversation_id;
    app.post(ana, &conversation, "", "Coffee?").await;
    let feed = app
        .feed_until(ben, "the direct message", |f| !f.is_empty())
        .await;
    assert_eq!(kinds(&feed[0]), (pb::Kind::DirectMessage, vec![]));
    assert_eq!(feed[0].conversation_id, conversation);
    assert!(feed[0].cohort_id.is_empty());
}

#[tokio::test]
async fn a_deleted_message_retracts_its_notification_and_an_edit_updates_it() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(3).await;
    let [author, ana, ben] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    let kept = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} have a look", community.handles[1]),
        )
        .await;
    let gone = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} oops", community.handles[2]),
        )
        .await;
    app.feed_until(ben, "the mention", |f| {
        f.iter().any(|n| n.message_id == gone.message_id)
    })
    .await;
    app.feed_until(ana, "the mention", |f| {
        f.iter().any(|n| n.message_id == kept.message_id)
    })
    .await;

    let mut messaging = app.messaging().await;
    messaging
        .delete_message(as_member(
            author,
            kith_proto::messaging::DeleteMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: gone.message_id.clone(),
            },
        ))
        .await
        .expect("delete");
    messaging
        .edit_message(as_member(
            author,
            kith_proto::messaging::EditMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: kept.message_id.clone(),
                title: String::new(),
                body: format!("@{} have a look, please", community.handles[1]),
            },
        ))
        .await
        .expect("edit");

    let feed = app
        .feed_until(ben, "the retraction", |f| {
            !f.iter().any(|n| n.message_id == gone.message_id)
        })
        .await;
    assert!(
        feed.iter().all(|n| !n.retracted),
        "the feed lists no retracted notification"
    );
    let source = app
        .messaging_event(gone.committed.expect("committed").position)
        .await;
    let why = app.explained(ben, &source).await;
    assert!(why.retracted);
    assert_eq!(why.retraction_reason, "MESSAGE_DELETED");
    assert!(why.reasons.iter().any(|r| r.code == "RETRACTED"));
    let in_app = why
        .channels
        .iter()
        .find(|c| c.channel() == pb::Channel::InApp)
        .expect("in-app status");
    assert_eq!(in_app.status, "retracted");

    let updated = app
        .feed_until(ana, "the update", |f| {
            f.iter()
                .any(|n| n.message_id == kept.message_id && n.updated)
        })
        .await;
    assert_eq!(
        updated
            .iter()
            .filter(|n| n.message_id == kept.message_id)
            .count(),
        1
    );
}

#[tokio::test]
async fn marking_read_changes_the_unread_count_and_a_retry_marks_nothing_more() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(2).await;
    let [author, reader] = [community.members[0], community.members[1]];
    for n in 0..3 {
        app.post(author, &cohort, "", &format!("thread {n}")).await;
    }
    let feed = app
        .feed_until(reader, "three threads", |f| f.len() == 3)
        .await;
    let mut client = app.notifications().await;
    let reads = client.clone();
    let unread = |min_position| {
        let mut client = reads.clone();
        async move {
            client
                .get_unread_count(as_member(
                    reader,
                    pb::GetUnreadCountRequest { min_position },
                ))
                .await
                .expect("unread")
                .into_inner()
                .unread
        }
    };
    assert_eq!(unread(0).await, 3);
    let request = pb::MarkReadRequest {
        request_id: rid(),
        notification_ids: vec![feed[0].notification_id.clone()],
    };
    let first = client
        .mark_read(as_member(reader, request.clone()))
        .await
        .expect("mark read")
        .into_inner();
    assert_eq!(first.marked, 1);
    let position = first.committed.expect("committed").position;
    assert_eq!(unread(position).await, 2);
    let retry = client
        .mark_read(as_member(reader, request))
        .await
        .expect("retry")
        .into_inner();
    assert!(retry.committed.expect("committed").replayed);
    // Nothing named: everything.
    let all = client
        .mark_read(as_member(
            reader,
            pb::MarkReadRequest {
                request_id: rid(),
                notification_ids: vec![],
            },
        ))
        .await
        .expect("mark all read")
        .into_inner();
    assert_eq!(all.marked, 2);
    assert_eq!(unread(all.committed.expect("committed").position).await, 0);
    // Someone else's notification is not theirs to mark.
    let stranger = client
        .mark_read(as_member(
            author,
            pb::MarkReadRequest {
                request_id: rid(),
                notification_ids: vec![feed[1].notification_id.clone()],
            },
        ))
        .await
        .expect("mark someone else's")
        .into_inner();
    assert_eq!(stranger.marked, 0);
}

#[tokio::test]
async fn the_feed_stream_sends_each_change_as_it_happens_and_resumes_where_it_left_off() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(2).await;
    let [author, reader] = [community.members[0], community.members[1]];
    let mut client = app.notifications().await;
    let mut stream = client
        .stream_notifications(as_member(
            reader,
            pb::StreamNotificationsRequest { from_position: 0 },
        ))
        .await
        .expect("stream")
        .into_inner();
    let first = app.post(author, &cohort, "", "first").await;
    let next = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("a change in time")
        .expect("the stream goes on")
        .expect("a change");
    let notification = next.notification.expect("notification");
    assert_eq!(notification.message_id, first.message_id);
    assert_eq!(next.unread, 1);
    drop(stream);

    // Two more while away; a new stream from the last position sends exactly those.
    let second = app.post(author, &cohort, "", "second").await;
    let third = app.post(author, &cohort, "", "third").await;
    app.feed_until(reader, "three threads", |f| f.len() == 3)
        .await;
    let mut resumed = client
        .stream_notifications(as_member(
            reader,
            pb::StreamNotificationsRequest {
                from_position: notification.position,
            },
        ))
        .await
        .expect("resume")
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let change = tokio::time::timeout(PATIENCE, resumed.next())
            .await
            .expect("a change in time")
            .expect("the stream goes on")
            .expect("a change");
        seen.push(change.notification.expect("notification").message_id);
    }
    assert_eq!(seen, vec![second.message_id, third.message_id]);
}

#[tokio::test]
async fn an_edit_that_mentions_someone_new_notifies_them_once_and_updates_the_others() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(3).await;
    let [author, ana, ben] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    let thread = app.post(author, &cohort, "", "plans for week 2").await;
    for reader in [ana, ben] {
        app.feed_until(reader, "the new thread", |f| {
            f.iter().any(|n| n.message_id == thread.message_id)
        })
        .await;
    }
    // A reply in a thread neither follows: it notifies no one.
    let reply = app
        .post(author, &cohort, &thread.message_id, "draft agenda")
        .await;
    let edit = |body: String| {
        let app = &app;
        let (cohort, message) = (cohort.clone(), reply.message_id.clone());
        async move {
            app.messaging()
                .await
                .edit_message(as_member(
                    author,
                    kith_proto::messaging::EditMessageRequest {
                        request_id: rid(),
                        conversation_id: cohort,
                        message_id: message,
                        title: String::new(),
                        body,
                    },
                ))
                .await
                .expect("edit")
                .into_inner()
        }
    };
    let handles = &community.handles;
    let first = edit(format!("@{} draft agenda", handles[1])).await;
    let feed = app
        .feed_until(ana, "the mention the edit added", |f| {
            f.iter().any(|n| n.message_id == reply.message_id)
        })
        .await;
    let mention = feed
        .iter()
        .find(|n| n.message_id == reply.message_id)
        .expect("the mention");
    assert_eq!(kinds(mention).0, pb::Kind::Mention);
    assert!(!mention.updated, "a new notification, not an update");
    let source = app
        .messaging_event(first.committed.expect("committed").position)
        .await;
    let why = app.explained(ana, &source).await;
    assert_eq!(why.notification_id, mention.notification_id);
    assert!(why.reasons.iter().any(|r| r.code == "MENTIONED"), "{why:?}");

    // Mentioning both: Ben is told now, Ana's notification is updated, not doubled.
    edit(format!("@{} @{} final agenda", handles[1], handles[2])).await;
    app.feed_until(ben, "the mention the second edit added", |f| {
        f.iter().any(|n| n.message_id == reply.message_id)
    })
    .await;
    let feed = app
        .feed_until(ana, "the update", |f| {
            f.iter()
                .any(|n| n.message_id == reply.message_id && n.updated)
        })
        .await;
    assert_eq!(
        feed.iter()
            .filter(|n| n.message_id == reply.message_id)
            .count(),
        1,
        "one notification of the message for Ana"
    );
    let ben_feed = app.feed(ben).await;
    assert_eq!(
        ben_feed
            .iter()
            .filter(|n| n.message_id == reply.message_id)
            .count(),
        1
    );
    // The author is never told of their own edit.
    assert!(
        !app.feed(author)
            .await
            .iter()
            .any(|n| n.message_id == reply.message_id)
    );
}
