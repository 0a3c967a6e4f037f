//! Hiding, pins, reports and slow mode as facilitators, moderators and members use them.

use std::time::Duration;

use kith_proto::messaging as msg;
use tonic_types::StatusExt;

use crate::helpers::{App, assert_code, cohort_with, error_reason, post, rid, threads};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hidden_messages_pins_reports_and_slow_mode() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 2, 10, 2).await;
    let [ana, ben] = community.members[..] else {
        panic!("two members");
    };
    let mut client = app.messaging().await;
    let older = post(&app, &mut client, ana, &cohort, "", "first thread").await;
    let rude = post(&app, &mut client, ben, &cohort, "", "something rude").await;

    // Ana reports it; a member may not see reports, the owner may.
    let reported = client
        .report_message(app.as_member(
            ana,
            msg::ReportMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: rude.message_id.clone(),
                reason: "rude".into(),
            },
        ))
        .await
        .expect("report")
        .into_inner();
    let listing = |caller, include_resolved, min_position| {
        app.as_member(
            caller,
            msg::ListReportsRequest {
                community_id: community.id.clone(),
                include_resolved,
                min_position,
                ..Default::default()
            },
        )
    };
    let denied = client.list_reports(listing(ana, false, 0)).await;
    assert_code(denied, tonic::Code::PermissionDenied);
    let reports = client
        .list_reports(listing(
            community.owner,
            false,
            reported.committed.unwrap().position,
        ))
        .await
        .expect("reports")
        .into_inner()
        .reports;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].report_id, reported.report_id);
    assert_eq!(reports[0].reason, "rude");
    assert_eq!(reports[0].message.as_ref().unwrap().body, "something rude");

    // The coach hides it: Ana sees that a message was hidden, Ben still sees his own.
    let hidden = client
        .hide_message(app.as_member(
            community.coach,
            msg::HideMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: rude.message_id.clone(),
            },
        ))
        .await
        .expect("hide")
        .into_inner()
        .committed
        .unwrap();
    let seen = threads(&app, &mut client, ana, &cohort, hidden.position)
        .await
        .unwrap();
    let shown = seen
        .iter()
        .map(|t| t.first.as_ref().unwrap())
        .find(|m| m.message_id == rude.message_id)
        .unwrap();
    assert!(shown.hidden);
    assert!(shown.body.is_empty());
    let own = threads(&app, &mut client, ben, &cohort, 0).await.unwrap();
    let own = own
        .iter()
        .map(|t| t.first.as_ref().unwrap())
        .find(|m| m.message_id == rude.message_id)
        .unwrap();
    assert_eq!(own.body, "something rude");
    // Hidden messages do not count as unread.
    let counts = crate::helpers::unread(&app, &mut client, ana, 0).await;
    assert_eq!(counts.total_messages, 0);

    // The owner resolves the report; it leaves the open list.
    let resolved = client
        .resolve_report(app.as_member(
            community.owner,
            msg::ResolveReportRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                report_id: reported.report_id.clone(),
            },
        ))
        .await
        .expect("resolve")
        .into_inner()
        .committed
        .unwrap()
        .position;
    let open = client
        .list_reports(listing(community.owner, false, resolved))
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert!(open.is_empty());
    let all = client
        .list_reports(listing(community.owner, true, resolved))
        .await
        .unwrap()
        .into_inner()
        .reports;
    assert_eq!(all[0].resolved_by, community.owner.to_string());

    // The coach pins the older thread: it comes first. Ana may not pin.
    let refused = client
        .pin_thread(app.as_member(
            ana,
            msg::PinThreadRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                thread_id: older.message_id.clone(),
            },
        ))
        .await;
    assert_eq!(
        error_reason(&assert_code(refused, tonic::Code::PermissionDenied)).as_deref(),
        Some("NOT_PERMITTED")
    );
    let pinned = client
        .pin_thread(app.as_member(
            community.coach,
            msg::PinThreadRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                thread_id: older.message_id.clone(),
            },
        ))
        .await
        .expect("pin")
        .into_inner()
        .committed
        .unwrap();
    let seen = threads(&app, &mut client, ana, &cohort, pinned.position)
        .await
        .unwrap();
    assert_eq!(seen[0].first.as_ref().unwrap().message_id, older.message_id);
    assert!(seen[0].pinned);

    // Slow mode: Ana's next post within the minute is refused with how long to wait.
    client
        .set_slow_mode(app.as_member(
            community.coach,
            msg::SetSlowModeRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                interval_seconds: 60,
            },
        ))
        .await
        .expect("slow mode");
    let too_soon = client
        .post_message(app.as_member(
            ana,
            msg::PostMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                thread_id: older.message_id.clone(),
                body: "again".into(),
                ..Default::default()
            },
        ))
        .await;
    let status = assert_code(too_soon, tonic::Code::ResourceExhausted);
    assert_eq!(error_reason(&status).as_deref(), Some("SLOW_MODE"));
    let wait = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("a RetryInfo");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    // The facilitator is exempt.
    post(
        &app,
        &mut client,
        community.coach,
        &cohort,
        &older.message_id,
        "noted",
    )
    .await;
    // Too long an interval is refused, naming the field.
    let refused = client
        .set_slow_mode(app.as_member(
            community.coach,
            msg::SetSlowModeRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                interval_seconds: 6 * 3600 + 1,
            },
        ))
        .await;
    assert_eq!(
        crate::helpers::violated_fields(&assert_code(refused, tonic::Code::InvalidArgument)),
        ["interval_seconds"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_seen_by_with_private_receipts_and_direct_conversation_lists() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 3, 10, 3).await;
    let [ana, ben, cy] = community.members[..] else {
        panic!("three members");
    };
    let mut client = app.messaging().await;
    let thread = post(&app, &mut client, ana, &cohort, "", "v1").await;
    let edited = client
        .edit_message(app.as_member(
            ana,
            msg::EditMessageRequest {
                request_id: rid(),
                conversation_id: cohort.clone(),
                message_id: thread.message_id.clone(),
                body: "v2".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("edit")
        .into_inner()
        .committed
        .unwrap();
    let history = client
        .get_message_history(app.as_member(
            ben,
            msg::GetMessageHistoryRequest {
                conversation_id: cohort.clone(),
                message_id: thread.message_id.clone(),
                min_position: edited.position,
            },
        ))
        .await
        .expect("history")
        .into_inner()
        .versions;
    let bodies: Vec<&str> = history.iter().map(|v| v.body.as_str()).collect();
    assert_eq!(bodies, ["v1", "v2"]);

    // Ben reads it with public receipts, Cy with private ones: only Ben is shown.
    client
        .set_read_receipts(app.as_member(
            cy,
            msg::SetReadReceiptsRequest {
                request_id: rid(),
                private: true,
            },
        ))
        .await
        .expect("private receipts");
    let mut last = 0;
    for reader in [ben, cy] {
        last = client
            .mark_read(app.as_member(
                reader,
                msg::MarkReadRequest {
                    request_id: rid(),
                    conversation_id: cohort.clone(),
                    thread_id: thread.message_id.clone(),
                    seq: thread.seq,
                },
            ))
            .await
            .expect("read")
            .into_inner()
            .committed
            .unwrap()
            .position;
    }
    let seen_by = client
        .get_seen_by(app.as_member(
            ana,
            msg::GetSeenByRequest {
                conversation_id: cohort.clone(),
                message_id: thread.message_id.clone(),
                min_position: last,
            },
        ))
        .await
        .expect("seen by")
        .into_inner()
        .member_ids;
    assert_eq!(seen_by, [ben.to_string()]);
    // Cy's own counts still use the cursor.
    assert_eq!(
        crate::helpers::unread(&app, &mut client, cy, 0)
            .await
            .total_messages,
        0
    );

    // Two direct conversations of Ana's, the latest active first, with Ana's unread counts.
    let mut dms = Vec::new();
    let mut posted_at = 0;
    for other in [ben, cy] {
        let dm = client
            .open_direct_conversation(app.as_member(
                ana,
                msg::OpenDirectConversationRequest {
                    request_id: rid(),
                    community_id: community.id.clone(),
                    participant_ids: vec![other.to_string()],
                },
            ))
            .await
            .expect("open")
            .into_inner()
            .conversation_id;
        let said = post(&app, &mut client, other, &dm, "", "hello Ana").await;
        posted_at = said.committed.unwrap().position;
        dms.push(dm);
    }
    let listed = client
        .list_direct_conversations(app.as_member(
            ana,
            msg::ListDirectConversationsRequest {
                community_id: community.id.clone(),
                page_size: 1,
                min_position: posted_at,
                ..Default::default()
            },
        ))
        .await
        .expect("dms")
        .into_inner();
    assert_eq!(listed.conversations[0].conversation_id, dms[1]);
    assert_eq!(listed.conversations[0].unread, 1);
    let next = client
        .list_direct_conversations(app.as_member(
            ana,
            msg::ListDirectConversationsRequest {
                community_id: community.id.clone(),
                page_size: 1,
                page_token: listed.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .expect("dms")
        .into_inner();
    assert_eq!(next.conversations[0].conversation_id, dms[0]);
    assert!(next.next_page_token.is_empty());
    // History of a direct conversation, newest first.
    let messages = client
        .list_messages(app.as_member(
            ben,
            msg::ListMessagesRequest {
                conversation_id: dms[0].clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("messages")
        .into_inner()
        .messages;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, "hello Ana");
}
