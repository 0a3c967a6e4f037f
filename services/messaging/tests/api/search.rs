//! Full-text search: stemmed by the community's language (and stemmed again when it changes),
//! never finding deleted or hidden messages nor another member's direct conversations, with page
//! tokens bound to their query that neither skip nor repeat while others write.

use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use uuid::Uuid;

use crate::helpers::{
    App, assert_code, cohort_with, open_direct, post, rid, until_community_version, violated_fields,
};

/// Sets the community's language and waits until messaging has applied it.
async fn set_language(app: &App, community: &str, owner: Uuid, language: &str) {
    let version = app
        .membership()
        .await
        .set_community_language(app.as_member(
            owner,
            mpb::SetCommunityLanguageRequest {
                request_id: rid(),
                community_id: community.into(),
                language: language.into(),
            },
        ))
        .await
        .expect("set language")
        .into_inner()
        .committed
        .expect("committed")
        .version;
    until_community_version(app, community, version).await;
}

fn searching(words: &str, conversation: &str) -> msg::SearchMessagesRequest {
    msg::SearchMessagesRequest {
        query: words.into(),
        conversation_id: conversation.into(),
        page_size: 100,
        ..Default::default()
    }
}

/// The bodies `member` finds, newest first.
async fn found(app: &App, member: Uuid, request: msg::SearchMessagesRequest) -> Vec<String> {
    app.messaging()
        .await
        .search_messages(app.as_member(member, request))
        .await
        .expect("search")
        .into_inner()
        .messages
        .into_iter()
        .map(|m| m.body)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn words_are_stemmed_by_the_communitys_language_and_again_when_it_changes() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    post(
        &app,
        &mut client,
        ana,
        &cohort,
        "",
        "We shipped the pricing pages",
    )
    .await;
    let last = post(&app, &mut client, ben, &cohort, "", "Running every morning").await;
    let at = |words: &str| msg::SearchMessagesRequest {
        min_position: last.committed.as_ref().unwrap().position,
        ..searching(words, &cohort)
    };

    // No language: words as written.
    assert!(found(&app, ben, at("shipping")).await.is_empty());
    assert_eq!(
        found(&app, ben, at("shipped")).await,
        ["We shipped the pricing pages"]
    );

    // English: stemmed, old messages included; a web-search query.
    set_language(&app, &community.id, community.owner, "en").await;
    assert_eq!(
        found(&app, ben, at("shipping")).await,
        ["We shipped the pricing pages"]
    );
    assert_eq!(found(&app, ana, at("run")).await, ["Running every morning"]);
    assert_eq!(
        found(&app, ana, at("\"pricing page\"")).await,
        ["We shipped the pricing pages"]
    );
    assert!(found(&app, ana, at("pricing -page")).await.is_empty());
    assert_eq!(
        found(&app, ana, at("pricing or morning")).await,
        ["Running every morning", "We shipped the pricing pages"]
    );
    // A message written after the change is stemmed the same way.
    let runs = post(&app, &mut client, ana, &cohort, "", "She runs daily").await;
    let after = msg::SearchMessagesRequest {
        min_position: runs.committed.as_ref().unwrap().position,
        ..searching("run", &cohort)
    };
    assert_eq!(
        found(&app, ben, after).await,
        ["She runs daily", "Running every morning"]
    );
    // German stems differently: "running" is no longer "run" (while "runs" still is).
    set_language(&app, &community.id, community.owner, "de").await;
    assert_eq!(
        found(&app, ben, searching("run", &cohort)).await,
        ["She runs daily"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_hidden_and_others_direct_messages_are_never_found() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 3, 10, 2).await;
    let [ana, ben, cy] = community.members[..] else {
        panic!("three members");
    };
    let mut client = app.messaging().await;
    post(&app, &mut client, ana, &cohort, "", "avocado kept").await;
    let deleted = post(&app, &mut client, ana, &cohort, "", "avocado deleted").await;
    let hidden = post(&app, &mut client, ben, &cohort, "", "avocado hidden").await;
    client
        .delete_message(app.as_member(
            ana,
            msg::DeleteMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: deleted.message_id.clone(),
            },
        ))
        .await
        .expect("delete");
    let hid = client
        .hide_message(app.as_member(
            community.coach,
            msg::HideMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: hidden.message_id.clone(),
            },
        ))
        .await
        .expect("hide")
        .into_inner()
        .committed
        .unwrap();
    let request = msg::SearchMessagesRequest {
        min_position: hid.position,
        ..searching("avocado", &cohort)
    };
    assert_eq!(found(&app, ben, request).await, ["avocado kept"]);

    // Direct conversations: Ana with Ben, and Ana with Cy.
    let with_ben = open_direct(&app, &mut client, ana, &community, &[ben]).await;
    let with_cy = open_direct(&app, &mut client, ana, &community, &[cy]).await;
    post(&app, &mut client, ana, &with_ben, "", "avocado for ben").await;
    let last = post(&app, &mut client, ana, &with_cy, "", "avocado for cy").await;
    let direct = |position: i64| msg::SearchMessagesRequest {
        query: "avocado".into(),
        community_id: community.id.clone(),
        page_size: 100,
        min_position: position,
        ..Default::default()
    };
    let position = last.committed.unwrap().position;
    assert_eq!(
        found(&app, ana, direct(position)).await,
        ["avocado for cy", "avocado for ben"]
    );
    assert_eq!(
        found(&app, ben, direct(position)).await,
        ["avocado for ben"]
    );
    assert_eq!(found(&app, cy, direct(position)).await, ["avocado for cy"]);
    // Cy cannot search Ana and Ben's conversation by its id.
    let refused = client
        .search_messages(app.as_member(cy, searching("avocado", &with_ben)))
        .await;
    assert_code(refused, tonic::Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_neither_skip_nor_repeat_under_concurrent_posts_and_tokens_are_bound_to_the_query() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let mut last = None;
    for n in 0..7 {
        last = Some(post(&app, &mut client, ana, &cohort, "", &format!("kiwi {n}")).await);
    }
    let position = last.unwrap().committed.unwrap().position;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .search_messages(app.as_member(
                ben,
                msg::SearchMessagesRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    min_position: position,
                    ..searching("kiwi", &cohort)
                },
            ))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.messages.into_iter().map(|m| m.body));
        pages += 1;
        // Others keep writing matching messages between pages.
        post(&app, &mut client, ana, &cohort, "", "kiwi later").await;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let expected: Vec<String> = (0..7).rev().map(|n| format!("kiwi {n}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // A token from this query does not serve another.
    let first = client
        .search_messages(app.as_member(
            ben,
            msg::SearchMessagesRequest {
                page_size: 1,
                ..searching("kiwi", &cohort)
            },
        ))
        .await
        .expect("first page")
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    for other in [
        msg::SearchMessagesRequest {
            page_size: 1,
            page_token: first.next_page_token.clone(),
            ..searching("banana", &cohort)
        },
        msg::SearchMessagesRequest {
            page_size: 1,
            page_token: "garbage".into(),
            ..searching("kiwi", &cohort)
        },
    ] {
        let refused = client.search_messages(app.as_member(ben, other)).await;
        let refused = assert_code(refused, tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), ["page_token"]);
    }
    // And from another caller neither.
    let refused = client
        .search_messages(app.as_member(
            ana,
            msg::SearchMessagesRequest {
                page_size: 1,
                page_token: first.next_page_token,
                ..searching("kiwi", &cohort)
            },
        ))
        .await;
    assert_code(refused, tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_search_names_its_fields() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 1, 10, 1).await;
    let ana = community.members[0];
    let mut client = app.messaging().await;
    let cases: Vec<(msg::SearchMessagesRequest, Vec<&str>)> = vec![
        (searching("", &cohort), vec!["query"]),
        (searching(&"x".repeat(201), &cohort), vec!["query"]),
        (searching("a\u{0}b", &cohort), vec!["query"]),
        (searching("two\nlines", &cohort), vec!["query"]),
        (searching("fine", "not-a-uuid"), vec!["conversation_id"]),
        (searching("fine", ""), vec!["conversation_id"]),
        (
            msg::SearchMessagesRequest {
                community_id: community.id.clone(),
                ..searching("fine", &cohort)
            },
            vec!["conversation_id"],
        ),
        (
            msg::SearchMessagesRequest {
                page_size: 101,
                ..searching("fine", &cohort)
            },
            vec!["page_size"],
        ),
    ];
    for (request, fields) in cases {
        let refused = client.search_messages(app.as_member(ana, request)).await;
        let refused = assert_code(refused, tonic::Code::InvalidArgument);
        assert_eq!(violated_fields(&refused), fields);
    }
    // Only stop words: a valid query that finds nothing.
    post(&app, &mut client, ana, &cohort, "", "the and of").await;
    set_language(&app, &community.id, community.owner, "en").await;
    assert!(found(&app, ana, searching("the", &cohort)).await.is_empty());
}
