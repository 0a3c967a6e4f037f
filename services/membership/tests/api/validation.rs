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
