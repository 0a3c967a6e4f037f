//! Who may call what: tokens first, then roles.

use jsonwebtoken::{Algorithm, EncodingKey};
use kith_platform::auth::{Claims, mint, mint_hs256, unix_now};
use kith_platform::testing::TEST_JWT_SECRET;
use kith_proto::membership as pb;
use tonic::{Code, Request};
use uuid::Uuid;

use crate::helpers::{
    App, assert_code, create_community, in_days, invite_and_join, rid, with_token,
};

fn get(community: &str) -> pb::GetCommunityRequest {
    pb::GetCommunityRequest {
        community_id: community.into(),
        min_position: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Guarded").await;

    let status = assert_code(
        client.get_community(Request::new(get(&community))).await,
        Code::Unauthenticated,
    );
    assert!(
        status.message().contains("authorization"),
        "{}",
        status.message()
    );

    let forged = mint_hs256(b"not-the-secret", owner, 60).unwrap();
    assert_code(
        client
            .get_community(with_token(&forged, get(&community)))
            .await,
        Code::Unauthenticated,
    );

    let expired = mint(
        &Claims {
            sub: owner.to_string(),
            exp: unix_now() - 3600,
            iat: unix_now() - 7200,
            iss: None,
            nbf: None,
            aud: None,
        },
        Algorithm::HS256,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let status = assert_code(
        client
            .get_community(with_token(&expired, get(&community)))
            .await,
        Code::Unauthenticated,
    );
    assert!(status.message().contains("expired"), "{}", status.message());
    assert_eq!(
        crate::helpers::error_reason(&status).as_deref(),
        Some("TOKEN_EXPIRED")
    );

    assert_code(
        client
            .get_community(with_token("garbage", get(&community)))
            .await,
        Code::Unauthenticated,
    );
    // Commands too, and nothing is written.
    assert_code(
        client
            .create_community(Request::new(pb::CreateCommunityRequest {
                request_id: rid(),
                name: "x".into(),
                description: String::new(),
                founder: crate::helpers::profile("X", "xxx"),
            }))
            .await,
        Code::Unauthenticated,
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool().await)
        .await
        .unwrap();
    assert_eq!(events, 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_refused_what_it_may_not_do() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Ranks").await;
    let member = Uuid::new_v4();
    let moderator = Uuid::new_v4();
    let host = Uuid::new_v4();
    invite_and_join(&app, &mut client, &community, owner, member, "plain").await;
    invite_and_join(&app, &mut client, &community, owner, moderator, "moddy").await;
    invite_and_join(&app, &mut client, &community, owner, host, "hosty").await;
    let mut last_position = 0;
    for (who, role) in [
        (moderator, pb::MemberRole::Moderator),
        (host, pb::MemberRole::Host),
    ] {
        last_position = client
            .assign_role(app.as_member(
                owner,
                pb::AssignRoleRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    member_id: who.to_string(),
                    role: role as i32,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .committed
            .unwrap()
            .position;
    }
    // A plain member cannot invite.
    assert_code(
        client
            .create_invitation(app.as_member(
                member,
                pb::CreateInvitationRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    expires_at: Some(in_days(1)),
                    max_uses: 1,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // A moderator cannot hand out roles.
    assert_code(
        client
            .assign_role(app.as_member(
                moderator,
                pb::AssignRoleRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    member_id: member.to_string(),
                    role: pb::MemberRole::Coach as i32,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // A host cannot make an owner, nor remove one.
    assert_code(
        client
            .assign_role(app.as_member(
                host,
                pb::AssignRoleRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    member_id: member.to_string(),
                    role: pb::MemberRole::Owner as i32,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client
            .remove_member(app.as_member(
                host,
                pb::RemoveMemberRequest {
                    request_id: rid(),
                    community_id: community.clone(),
                    member_id: owner.to_string(),
                    reason: String::new(),
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // A moderator cannot see invitations; an outsider cannot list members.
    assert_code(
        client
            .list_invitations(app.as_member(
                moderator,
                pb::ListInvitationsRequest {
                    community_id: community.clone(),
                    page_size: 10,
                    page_token: String::new(),
                    min_position: last_position,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_code(
        client
            .list_members(app.as_member(
                Uuid::new_v4(),
                pb::ListMembersRequest {
                    community_id: community.clone(),
                    role: 0,
                    page_size: 10,
                    page_token: String::new(),
                    min_position: last_position,
                },
            ))
            .await,
        Code::PermissionDenied,
    );
    // What they may do still works: the moderator removes the plain member.
    client
        .remove_member(app.as_member(
            moderator,
            pb::RemoveMemberRequest {
                request_id: rid(),
                community_id: community,
                member_id: member.to_string(),
                reason: "off topic".into(),
            },
        ))
        .await
        .unwrap();
    app.stop().await;
}
