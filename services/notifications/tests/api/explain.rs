//! "Why was I (not) notified?" for a muted member, someone else's notification, and the levels.

use kith_proto::notifications as pb;

use crate::helpers::{App, as_member, assert_code, error_reason, kinds};

fn level(cohort: &str, level: pb::Level) -> pb::ScopeLevel {
    pb::ScopeLevel {
        community_id: String::new(),
        cohort_id: cohort.to_owned(),
        level: level as i32,
    }
}

#[tokio::test]
async fn a_muted_cohort_withholds_everything_and_the_answer_says_which_preference() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(3).await;
    let [author, muted, listening] = [
        community.members[0],
        community.members[1],
        community.members[2],
    ];
    let set = app
        .set_preferences(
            muted,
            pb::Preferences {
                levels: vec![level(&cohort, pb::Level::Muted)],
                ..Default::default()
            },
        )
        .await;
    // The preference is in before the post is made.
    let got = app
        .notifications()
        .await
        .get_preferences(as_member(
            muted,
            pb::GetPreferencesRequest { min_position: set },
        ))
        .await
        .expect("preferences")
        .into_inner();
    assert!(got.set);
    assert_eq!(
        got.preferences.expect("preferences").levels,
        vec![level(&cohort, pb::Level::Muted)]
    );

    let body = format!(
        "@{} and @{}: kickoff",
        community.handles[1], community.handles[2]
    );
    let posted = app.post(author, &cohort, "", &body).await;
    app.feed_until(listening, "the listener's mention", |f| !f.is_empty())
        .await;
    let source = app
        .messaging_event(posted.committed.expect("committed").position)
        .await;
    let why = app.explained(muted, &source).await;
    assert!(!why.notified, "{why:?}");
    assert_eq!(why.kind(), pb::Kind::Mention);
    assert_eq!(why.level(), pb::Level::Muted);
    assert_eq!(why.level_scope, "cohort");
    assert_eq!(why.channels.len(), 3);
    assert!(
        why.channels
            .iter()
            .all(|c| c.status == "withheld" && c.reason == "COHORT_MUTED"),
        "{:?}",
        why.channels
    );
    assert!(why.summary.starts_with("Not notified"), "{}", why.summary);
    assert!(
        why.summary.contains("you muted this cohort"),
        "{}",
        why.summary
    );
    assert!(app.feed(muted).await.is_empty());

    // The one who listens got it, and is told why in fields and words.
    let heard = app.explained(listening, &source).await;
    assert!(heard.notified);
    assert_eq!(heard.reasons[0].code, "MENTIONED");
    assert_eq!(heard.level_scope, "default");
}

#[tokio::test]
async fn mentions_and_replies_only_keeps_mentions_and_drops_new_threads() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(2).await;
    let [author, member] = [community.members[0], community.members[1]];
    app.set_preferences(
        member,
        pb::Preferences {
            levels: vec![pb::ScopeLevel {
                community_id: community.id.clone(),
                cohort_id: String::new(),
                level: pb::Level::MentionsAndReplies as i32,
            }],
            ..Default::default()
        },
    )
    .await;
    let quiet = app.post(author, &cohort, "", "a thread for everyone").await;
    let named = app
        .post(
            author,
            &cohort,
            "",
            &format!("@{} this one is yours", community.handles[1]),
        )
        .await;
    let feed = app
        .feed_until(member, "the mention", |f| !f.is_empty())
        .await;
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0].message_id, named.message_id);
    assert_eq!(kinds(&feed[0]).0, pb::Kind::Mention);
    let source = app
        .messaging_event(quiet.committed.expect("committed").position)
        .await;
    let why = app.explained(member, &source).await;
    assert!(!why.notified);
    assert_eq!(why.level_scope, "community");
    assert!(
        why.channels
            .iter()
            .all(|c| c.reason == "COMMUNITY_MENTIONS_AND_REPLIES_ONLY")
    );
}

#[tokio::test]
async fn someone_elses_notification_is_not_found() {
    let app = App::spawn().await;
    let (community, cohort) = app.cohort(2).await;
    let [author, reader] = [community.members[0], community.members[1]];
    app.post(author, &cohort, "", "hello").await;
    let feed = app
        .feed_until(reader, "the thread", |f| !f.is_empty())
        .await;
    let mut client = app.notifications().await;
    let ask = |member| {
        as_member(
            member,
            pb::ExplainNotificationRequest {
                subject: Some(pb::explain_notification_request::Subject::NotificationId(
                    feed[0].notification_id.clone(),
                )),
                min_position: 0,
            },
        )
    };
    let own = client
        .explain_notification(ask(reader))
        .await
        .expect("own")
        .into_inner();
    assert!(own.notified);
    assert_eq!(own.notification_id, feed[0].notification_id);
    let status = assert_code(
        client.explain_notification(ask(author)).await,
        tonic::Code::NotFound,
    );
    assert_eq!(
        error_reason(&status).as_deref(),
        Some("NOTIFICATION_NOT_FOUND")
    );
}
