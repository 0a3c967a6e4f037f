//! Pages under concurrent writes: no listing repeats an item; a list in a fixed order misses
//! nothing that existed when its first page was read; a list by activity misses only what new
//! activity moved ahead of the pages already read.

use kith_proto::messaging as msg;

use crate::helpers::{App, cohort_with, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_pages_neither_repeat_nor_miss_while_others_post() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let mut last = None;
    for n in 0..7 {
        last = Some(post(&app, &mut client, ana, &cohort, "", &format!("m{n}")).await);
    }
    let position = last.unwrap().committed.unwrap().position;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_messages(app.as_member(
                ben,
                msg::ListMessagesRequest {
                    conversation_id: cohort.clone(),
                    page_size: 3,
                    page_token: token.clone(),
                    min_position: position,
                },
            ))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.messages.into_iter().map(|m| m.body));
        post(&app, &mut client, ana, &cohort, "", "meanwhile").await;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..7).rev().map(|n| format!("m{n}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thread_pages_miss_only_what_new_activity_moved_ahead() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let mut ids = Vec::new();
    let mut last = None;
    for n in 0..6 {
        let started = post(&app, &mut client, ana, &cohort, "", &format!("t{n}")).await;
        ids.push(started.message_id.clone());
        last = Some(started);
    }
    let mut position = last.unwrap().committed.unwrap().position;
    let page = |token: String, min_position: i64| msg::ListThreadsRequest {
        conversation_id: cohort.clone(),
        page_size: 2,
        page_token: token,
        min_position,
    };
    let (mut seen, mut token) = (Vec::new(), String::new());
    let mut round = 0;
    loop {
        let listed = client
            .list_threads(app.as_member(ben, page(token.clone(), position)))
            .await
            .expect("page")
            .into_inner();
        seen.extend(
            listed
                .threads
                .into_iter()
                .map(|t| t.first.expect("first").body),
        );
        if round == 0 {
            // After the first page (t5, t4): a new thread, then a reply that moves t1 up.
            post(&app, &mut client, ben, &cohort, "", "t6").await;
            let moved = post(&app, &mut client, ben, &cohort, &ids[1], "bump").await;
            position = moved.committed.unwrap().position;
        }
        round += 1;
        if listed.next_page_token.is_empty() {
            break;
        }
        token = listed.next_page_token;
    }
    assert_eq!(seen, ["t5", "t4", "t3", "t2", "t0"]);
    let fresh = client
        .list_threads(app.as_member(ben, page(String::new(), position)))
        .await
        .expect("fresh page")
        .into_inner();
    let fresh: Vec<String> = fresh
        .threads
        .into_iter()
        .map(|t| t.first.expect("first").body)
        .collect();
    assert_eq!(fresh, ["t1", "t6"]);
}
