//! Mentions by handle: resolved when the message is written against who reads the conversation
//! then, through the handle tokens membership puts in its events; anything else stays text.

use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use uuid::Uuid;

use crate::helpers::{App, cohort_with, open_direct, post, rid, unread, until_community_version};

/// The handle membership holds for `member`, once membership's directory shows them.
async fn handle_of(app: &App, community: &str, member: Uuid) -> String {
    let client = app.membership().await;
    kith_platform::testing::eventually(
        std::time::Duration::from_secs(10),
        "membership's directory to show the member",
        || {
            let mut client = client.clone();
            let request = app.as_member(
                member,
                mpb::GetMemberRequest {
                    community_id: community.into(),
                    member_id: member.to_string(),
                    min_position: 0,
                },
            );
            async move {
                match client.get_member(request).await {
                    Ok(reply) => reply.into_inner().member.and_then(|m| m.profile),
                    Err(status) if status.code() == tonic::Code::NotFound => None,
                    Err(status) => panic!("get member: {status:?}"),
                }
            }
        },
    )
    .await
    .handle
}

/// `member` takes `handle`; returns once messaging has applied the change.
async fn rename(app: &App, community: &str, member: Uuid, handle: &str) {
    let version = app
        .membership()
        .await
        .update_profile(app.as_member(
            member,
            mpb::UpdateProfileRequest {
                request_id: rid(),
                community_id: community.into(),
                profile: Some(mpb::ProfileInput {
                    display_name: "Renamed".into(),
                    handle: handle.into(),
                    bio: String::new(),
                }),
            },
        ))
        .await
        .expect("update profile")
        .into_inner()
        .committed
        .expect("committed")
        .version;
    until_community_version(app, community, version).await;
}

/// Who the message mentions, as a reader of the thread sees it.
async fn mentioned(
    app: &App,
    reader: Uuid,
    conversation: &str,
    posted: &msg::PostMessageResponse,
) -> Vec<String> {
    let thread = app
        .messaging()
        .await
        .get_thread(app.as_member(
            reader,
            msg::GetThreadRequest {
                conversation_id: conversation.into(),
                thread_id: posted.message_id.clone(),
                min_position: posted.committed.as_ref().expect("committed").position,
                ..Default::default()
            },
        ))
        .await
        .expect("thread")
        .into_inner();
    thread
        .thread
        .and_then(|t| t.first)
        .expect("first message")
        .mentioned_ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handles_of_readers_become_mentions_and_everything_else_stays_text() {
    let app = App::spawn().await;
    // Ana and Ben are seated; Cy is in the community but not in the cohort.
    let (community, cohort, _) = cohort_with(&app, 3, 10, 2).await;
    let [ana, ben, cy] = community.members[..] else {
        panic!("three members");
    };
    let ana_handle = handle_of(&app, &community.id, ana).await;
    let suffix = &Uuid::new_v4().simple().to_string()[..8];
    let (ben_handle, cy_handle) = (format!("ben.{suffix}"), format!("cy_{suffix}"));
    rename(&app, &community.id, ben, &ben_handle).await;
    rename(&app, &community.id, cy, &cy_handle).await;
    let mut client = app.messaging().await;

    // Ana's handle from when she joined, Ben's from his update (written in capitals, ending a
    // sentence); Cy reads nothing here, the coach is the author, the rest names nobody.
    let body = format!(
        "Welcome @{ana_handle} and @{}. Cc @{cy_handle}, @nobody_{suffix}, \
         me@example.com and myself @{}",
        ben_handle.to_uppercase(),
        handle_of(&app, &community.id, community.coach).await,
    );
    let welcome = post(&app, &mut client, community.coach, &cohort, "", &body).await;
    assert_eq!(
        mentioned(&app, ana, &cohort, &welcome).await,
        [ana.to_string(), ben.to_string()]
    );
    let position = welcome.committed.as_ref().expect("committed").position;
    for reader in [ana, ben] {
        let counts = unread(&app, &mut client, reader, position).await;
        assert_eq!((counts.total_messages, counts.total_mentions), (1, 1));
    }

    // A handle given up names nobody; the new one names its member.
    let renamed = format!("benji_{suffix}");
    rename(&app, &community.id, ben, &renamed).await;
    let old = post(
        &app,
        &mut client,
        ana,
        &cohort,
        "",
        &format!("@{ben_handle}"),
    )
    .await;
    assert!(mentioned(&app, ben, &cohort, &old).await.is_empty());
    let new = post(
        &app,
        &mut client,
        ana,
        &cohort,
        "",
        &format!("hi @{renamed}!"),
    )
    .await;
    assert_eq!(mentioned(&app, ben, &cohort, &new).await, [ben.to_string()]);

    // In a direct conversation, only its people can be mentioned.
    let dm = open_direct(&app, &mut client, ana, &community, &[ben]).await;
    let said = post(
        &app,
        &mut client,
        ana,
        &dm,
        "",
        &format!("@{renamed} and @{cy_handle}"),
    )
    .await;
    let history = client
        .list_messages(app.as_member(
            ben,
            msg::ListMessagesRequest {
                conversation_id: dm.clone(),
                min_position: said.committed.as_ref().expect("committed").position,
                ..Default::default()
            },
        ))
        .await
        .expect("list messages")
        .into_inner();
    let said = history
        .messages
        .iter()
        .find(|m| m.message_id == said.message_id)
        .expect("the message in the history");
    assert_eq!(said.mentioned_ids, [ben.to_string()]);
}
