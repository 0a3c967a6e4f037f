//! Bad input is INVALID_ARGUMENT naming each field, and appends nothing.

use kith_proto::messaging as msg;

use crate::helpers::{App, assert_code, cohort_with, post, rid, violated_fields};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_malformed_field_is_named_and_nothing_is_appended() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 1, 10, 1).await;
    let ana = community.members[0];
    let mut client = app.messaging().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "hello").await;
    let pool = app.pool().await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = count().await;

    let posting = |body: String, thread_id: &str, title: &str| msg::PostMessageRequest {
        request_id: rid(),
        conversation_id: cohort.clone(),
        thread_id: thread_id.into(),
        title: title.into(),
        body,
    };
    let cases: Vec<(msg::PostMessageRequest, Vec<&str>)> = vec![
        (posting(String::new(), "", ""), vec!["body"]),
        (posting("x".repeat(10_001), "", ""), vec!["body"]),
        (posting("a\u{0}b".into(), "", ""), vec!["body"]),
        (posting("evil \u{202e}txt.exe".into(), "", ""), vec!["body"]),
        (posting("\u{200b}\u{200b}".into(), "", ""), vec!["body"]),
        (posting("fine".into(), "not-a-uuid", ""), vec!["thread_id"]),
        // 21 distinct handles, named or not, are more than a message may mention.
        (
            posting((0..21).map(|n| format!("@someone{n} ")).collect(), "", ""),
            vec!["body"],
        ),
        (posting("fine".into(), "", "two\nlines"), vec!["title"]),
        (
            msg::PostMessageRequest {
                request_id: String::new(),
                conversation_id: "nope".into(),
                ..posting(String::new(), "", "")
            },
            vec!["request_id", "conversation_id", "body"],
        ),
    ];
    for (request, fields) in cases {
        let reply = client.post_message(app.as_member(ana, request)).await;
        let reply = assert_code(reply, tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&reply), fields);
    }
    // A body of exactly 10,000 characters is fine (counted in characters, not bytes).
    post(&app, &mut client, ana, &cohort, "", &"é".repeat(10_000)).await;
    let before = before + 1;

    // An unknown thread, and a reply to a reply, name thread_id.
    let reply = post(
        &app,
        &mut client,
        ana,
        &cohort,
        &thread.message_id,
        "a reply",
    )
    .await;
    let before = before + 1;
    for unknown in [uuid::Uuid::new_v4().to_string(), reply.message_id.clone()] {
        let refused = client
            .post_message(app.as_member(ana, posting("x".into(), &unknown, "")))
            .await;
        let refused = assert_code(refused, tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["thread_id"]);
    }

    // Reactions: exactly one grapheme.
    for bad in ["", "👍👍", "ok", " ", "\u{202e}"] {
        let refused = client
            .add_reaction(app.as_member(
                ana,
                msg::AddReactionRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    message_id: thread.message_id.clone(),
                    reaction: bad.into(),
                },
            ))
            .await;
        let refused = assert_code(refused, tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["reaction"], "{bad:?}");
    }

    // A page token from another query.
    let page = client
        .list_threads(app.as_member(
            ana,
            msg::ListThreadsRequest {
                conversation_id: cohort.clone(),
                page_size: 1,
                min_position: reply.committed.unwrap().position,
                ..Default::default()
            },
        ))
        .await
        .expect("threads")
        .into_inner();
    assert!(!page.next_page_token.is_empty());
    let foreign = client
        .get_thread(app.as_member(
            ana,
            msg::GetThreadRequest {
                conversation_id: cohort.clone(),
                thread_id: thread.message_id.clone(),
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await;
    let foreign = assert_code(foreign, tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&foreign), ["page_token"]);
    let other_caller = client
        .list_threads(app.as_member(
            community.coach,
            msg::ListThreadsRequest {
                conversation_id: cohort.clone(),
                page_size: 1,
                page_token: page.next_page_token,
                ..Default::default()
            },
        ))
        .await;
    assert_code(other_caller, tonic::Code::InvalidArgument);

    // A cursor past the end, or on a thread that is not one.
    for (thread_id, seq, field) in [
        (String::new(), 10_000, "seq"),
        (reply.message_id.clone(), 1, "thread_id"),
        (String::new(), 0, "seq"),
    ] {
        let refused = client
            .mark_read(app.as_member(
                ana,
                msg::MarkReadRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    thread_id,
                    seq,
                },
            ))
            .await;
        let refused = assert_code(refused, tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), [field]);
    }
    assert_eq!(count().await, before, "nothing appended by a refused call");
}
