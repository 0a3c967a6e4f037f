//! Bad input is INVALID_ARGUMENT naming every wrong field, and writes nothing.

use kith_proto::membership as pb;
use uuid::Uuid;

use crate::helpers::{App, create_community, in_days, profile, rid, violated_fields};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_name_each_wrong_field_and_write_nothing() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();

    let status = client
        .create_community(app.as_member(
            owner,
            pb::CreateCommunityRequest {
                request_id: String::new(),
                name: String::new(),
                description: "x".repeat(2001),
                founder: Some(pb::ProfileInput {
                    display_name: " ".into(),
                    handle: "No Spaces!".into(),
                    bio: "b".repeat(501),
                }),
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "description",
            "founder.bio",
            "founder.display_name",
            "founder.handle",
            "name",
            "request_id"
        ]
    );

    let too_long = client
        .create_community(app.as_member(
            owner,
            pb::CreateCommunityRequest {
                request_id: rid(),
                name: "n".repeat(101),
                description: String::new(),
                founder: None,
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&too_long);
    fields.sort();
    assert_eq!(fields, vec!["founder", "name"]);

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool().await)
        .await
        .unwrap();
    assert_eq!(events, 0, "nothing half-written");

    let (community, _) = create_community(&app, &mut client, owner, "Valid").await;
    let bad_ids = client
        .assign_role(app.as_member(
            owner,
            pb::AssignRoleRequest {
                request_id: rid(),
                community_id: "not-a-uuid".into(),
                member_id: String::new(),
                role: 0,
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&bad_ids);
    fields.sort();
    assert_eq!(fields, vec!["community_id", "member_id", "role"]);

    let bad_invitation = client
        .create_invitation(app.as_member(
            owner,
            pb::CreateInvitationRequest {
                request_id: "r".repeat(129),
                community_id: community.clone(),
                expires_at: None,
                max_uses: 0,
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&bad_invitation);
    fields.sort();
    assert_eq!(fields, vec!["expires_at", "max_uses", "request_id"]);

    let past = client
        .create_invitation(app.as_member(
            owner,
            pb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(in_days(-1)),
                max_uses: 3,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(past.code(), tonic::Code::InvalidArgument, "{past:?}");
    assert_eq!(violated_fields(&past), ["expires_at"], "{past:?}");

    let answers = client
        .request_to_join(app.as_member(
            Uuid::new_v4(),
            pb::RequestToJoinRequest {
                request_id: rid(),
                community_id: community.clone(),
                profile: profile("Al", "al1"),
                answers: vec!["a".into(); 6],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&answers), vec!["answers"]);

    let empty_answer = client
        .request_to_join(app.as_member(
            Uuid::new_v4(),
            pb::RequestToJoinRequest {
                request_id: rid(),
                community_id: community.clone(),
                profile: profile("Al", "al2"),
                answers: vec!["fine".into(), "  ".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&empty_answer), vec!["answers[1]"]);

    let unknown = client
        .get_community(app.as_member(
            owner,
            pb::GetCommunityRequest {
                community_id: community.clone(),
                min_position: 1_000_000,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown), vec!["min_position"]);

    let listing = client
        .list_members(app.as_member(
            owner,
            pb::ListMembersRequest {
                community_id: community,
                role: 99,
                page_size: 201,
                page_token: "zz".into(),
                min_position: -1,
            },
        ))
        .await
        .unwrap_err();
    let mut fields = violated_fields(&listing);
    fields.sort();
    assert_eq!(
        fields,
        vec!["min_position", "page_size", "page_token", "role"]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_reused_for_a_different_request_is_refused_and_changes_nothing() {
    use crate::helpers::{assert_code, error_reason};
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Reuse").await;
    let update = |name: &str| pb::UpdateCommunityRequest {
        request_id: "reuse-1".into(),
        community_id: community.clone(),
        name: name.into(),
        description: String::new(),
    };
    let first = client
        .update_community(app.as_member(owner, update("Renamed")))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    assert!(!first.replayed);
    let pool = app.pool().await;
    let events = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let before = events().await;

    // Another method under the same id, and the same method with other content.
    let archive = client
        .archive_community(app.as_member(
            owner,
            pb::ArchiveCommunityRequest {
                request_id: "reuse-1".into(),
                community_id: community.clone(),
            },
        ))
        .await;
    let archive = assert_code(archive, tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&archive), ["request_id"]);
    assert_eq!(error_reason(&archive).as_deref(), Some("REQUEST_ID_REUSED"));
    let rename = client
        .update_community(app.as_member(owner, update("Renamed again")))
        .await;
    let rename = assert_code(rename, tonic::Code::InvalidArgument);
    assert_eq!(error_reason(&rename).as_deref(), Some("REQUEST_ID_REUSED"));
    assert_eq!(events().await, before, "nothing appended");

    // The same request again is a retry: the first result, replayed.
    let retry = client
        .update_community(app.as_member(owner, update("Renamed")))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    assert!(retry.replayed);
    assert_eq!(retry.position, first.position);
    // Another caller's request id is their own.
    let other = Uuid::new_v4();
    let other_archive = client
        .archive_community(app.as_member(
            other,
            pb::ArchiveCommunityRequest {
                request_id: "reuse-1".into(),
                community_id: community.clone(),
            },
        ))
        .await;
    assert_code(other_archive, tonic::Code::PermissionDenied);
}
