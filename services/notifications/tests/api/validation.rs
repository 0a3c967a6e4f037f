//! Bad input is INVALID_ARGUMENT naming each field, and changes nothing.

use kith_proto::notifications as pb;
use uuid::Uuid;

use crate::helpers::{App, as_member, assert_code, rid, violated_fields};

#[tokio::test]
async fn bad_preferences_name_every_field_and_leave_the_old_ones_in_place() {
    let app = App::spawn().await;
    let member = Uuid::new_v4();
    let mut client = app.notifications().await;
    let good = pb::Preferences {
        time_zone: "Europe/Berlin".into(),
        ..Default::default()
    };
    let set = app.set_preferences(member, good.clone()).await;
    let bad = pb::Preferences {
        time_zone: "Europe/Atlantis".into(),
        levels: vec![
            pb::ScopeLevel {
                community_id: "not-a-uuid".into(),
                cohort_id: String::new(),
                level: pb::Level::Muted as i32,
            },
            pb::ScopeLevel {
                community_id: Uuid::new_v4().to_string(),
                cohort_id: String::new(),
                level: 0,
            },
        ],
        muted_thread_ids: vec!["thread?".into()],
        channels_off: vec![0],
        digest: pb::DigestFrequency::Daily as i32,
        digest_hour: 24,
        digest_minute: 60,
        quiet_hours: Some(pb::QuietHours {
            start_minute: 60,
            end_minute: 60,
        }),
        urgent_passes_quiet_hours: false,
    };
    let status = assert_code(
        client
            .set_preferences(as_member(
                member,
                pb::SetPreferencesRequest {
                    request_id: rid(),
                    preferences: Some(bad),
                },
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "preferences.channels_off[0]",
            "preferences.digest_hour",
            "preferences.digest_minute",
            "preferences.levels[0].community_id",
            "preferences.levels[1].level",
            "preferences.muted_thread_ids[0]",
            "preferences.quiet_hours.end_minute",
            "preferences.time_zone",
        ]
    );
    assert!(
        status.message().contains("Europe/Atlantis") || format!("{status:?}").contains("Atlantis")
    );
    let kept = client
        .get_preferences(as_member(
            member,
            pb::GetPreferencesRequest { min_position: set },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        kept.preferences.expect("preferences").time_zone,
        "Europe/Berlin"
    );

    let missing = assert_code(
        client
            .set_preferences(as_member(
                member,
                pb::SetPreferencesRequest {
                    request_id: String::new(),
                    preferences: None,
                },
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    let mut fields = violated_fields(&missing);
    fields.sort();
    assert_eq!(fields, vec!["preferences", "request_id"]);
}

#[tokio::test]
async fn bad_ids_positions_and_pages_are_refused_by_field() {
    let app = App::spawn().await;
    let member = Uuid::new_v4();
    let mut client = app.notifications().await;
    let status = assert_code(
        client
            .mark_read(as_member(
                member,
                pb::MarkReadRequest {
                    request_id: rid(),
                    notification_ids: vec!["x".into()],
                },
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["notification_ids[0]"]);
    let status = assert_code(
        client
            .explain_notification(as_member(
                member,
                pb::ExplainNotificationRequest {
                    subject: None,
                    min_position: -1,
                },
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, vec!["min_position", "notification_id"]);
    let status = assert_code(
        client
            .list_notifications(as_member(
                member,
                pb::ListNotificationsRequest {
                    page_size: 1000,
                    page_token: "forged".into(),
                    ..Default::default()
                },
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, vec!["page_size", "page_token"]);
    let status = assert_code(
        client
            .stream_notifications(as_member(
                member,
                pb::StreamNotificationsRequest { from_position: -5 },
            ))
            .await,
        tonic::Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), vec!["from_position"]);
    // Without a token nothing is answered.
    let status = assert_code(
        client
            .get_unread_count(pb::GetUnreadCountRequest { min_position: 0 })
            .await,
        tonic::Code::Unauthenticated,
    );
    assert!(!status.message().is_empty());
}
