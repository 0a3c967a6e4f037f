//! The calls a member needs about themselves and a moderator about bans: their communities, an
//! invitation before accepting it, their own join request (and withdrawing it), bans and unbans.

use kith_proto::membership as pb;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{
    App, Client, assert_code, create_community, error_reason, in_days, invite_and_join, profile,
    rid,
};

/// A new invitation's id and the position of its creation.
async fn invitation(
    app: &App,
    client: &mut Client,
    community: &str,
    inviter: Uuid,
) -> (String, i64) {
    let created = client
        .create_invitation(app.as_member(
            inviter,
            pb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.into(),
                expires_at: Some(in_days(7)),
                max_uses: 5,
            },
        ))
        .await
        .expect("create invitation")
        .into_inner();
    (
        created.invitation_id,
        created.committed.expect("committed").position,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_lists_their_own_communities_newest_first_in_pages() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let (owner, me) = (Uuid::new_v4(), Uuid::new_v4());
    let mut joined = Vec::new();
    for name in ["First", "Second", "Third"] {
        let (community, _) = create_community(&app, &mut client, owner, name).await;
        invite_and_join(&app, &mut client, &community, owner, me, "mine").await;
        joined.push(community);
    }
    // Left the second one: no longer listed.
    let left = client
        .leave_community(app.as_member(
            me,
            pb::LeaveCommunityRequest {
                request_id: rid(),
                community_id: joined[1].clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_my_communities(app.as_member(
                me,
                pb::ListMyCommunitiesRequest {
                    page_size: 1,
                    page_token: token.clone(),
                    min_position: left.position,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for mine in page.communities {
            assert_eq!(mine.role, pb::MemberRole::Member as i32);
            listed.push(mine.community.unwrap().community_id);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, [joined[2].clone(), joined[0].clone()]);
    // The owner sees all three, as owner; a stranger none.
    let owners = client
        .list_my_communities(app.as_member(owner, pb::ListMyCommunitiesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(owners.communities.len(), 3);
    assert!(
        owners
            .communities
            .iter()
            .all(|c| c.role == pb::MemberRole::Owner as i32)
    );
    let none = client
        .list_my_communities(app.as_member(Uuid::new_v4(), pb::ListMyCommunitiesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(none.communities.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_previewed_before_accepting_and_bans_are_listed_and_lifted() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let (owner, guest, troll) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (community, _) = create_community(&app, &mut client, owner, "Previewed").await;
    invite_and_join(&app, &mut client, &community, owner, troll, "troll").await;
    let (invite, created) = invitation(&app, &mut client, &community, owner).await;

    let preview = |id: &str| pb::GetInvitationPreviewRequest {
        invitation_id: id.into(),
        min_position: created,
    };
    let seen = client
        .get_invitation_preview(app.as_member(guest, preview(&invite)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.community_id, community);
    assert_eq!(seen.name, "Previewed");
    assert_eq!(seen.description, "a place to grow");
    assert_eq!(seen.member_count, 2);
    assert_eq!(seen.status, pb::InvitationStatus::Active as i32);
    assert!(!seen.already_member && !seen.banned);
    let unknown = client
        .get_invitation_preview(app.as_member(guest, preview(&rid())))
        .await;
    let unknown = assert_code(unknown, Code::NotFound);
    assert_eq!(
        error_reason(&unknown).as_deref(),
        Some("INVITATION_NOT_FOUND")
    );

    // A ban, with its reason, seen by moderators only; the banned person's preview says so.
    let banned = client
        .ban_member(app.as_member(
            owner,
            pb::BanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: troll.to_string(),
                reason: "insults".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let list = |who: Uuid, position: i64| {
        app.as_member(
            who,
            pb::ListBansRequest {
                community_id: community.clone(),
                min_position: position,
                ..Default::default()
            },
        )
    };
    let bans = client
        .list_bans(list(owner, banned.position))
        .await
        .unwrap()
        .into_inner()
        .bans;
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].member_id, troll.to_string());
    assert_eq!(bans[0].banned_by, owner.to_string());
    assert_eq!(bans[0].reason, "insults");
    assert!(bans[0].was_member);
    let refused = assert_code(
        client.list_bans(list(guest, 0)).await,
        Code::PermissionDenied,
    );
    assert_eq!(error_reason(&refused).as_deref(), Some("NOT_A_MEMBER"));
    let troll_sees = client
        .get_invitation_preview(app.as_member(troll, preview(&invite)))
        .await
        .unwrap()
        .into_inner();
    assert!(troll_sees.banned && !troll_sees.already_member);

    // Lifted: the list empties and the person may come back with an invitation.
    let unban = |member: Uuid| {
        app.as_member(
            owner,
            pb::UnbanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: member.to_string(),
            },
        )
    };
    let lifted = client
        .unban_member(unban(troll))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    assert!(
        client
            .list_bans(list(owner, lifted.position))
            .await
            .unwrap()
            .into_inner()
            .bans
            .is_empty()
    );
    let again = assert_code(
        client.unban_member(unban(troll)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&again).as_deref(), Some("NOT_BANNED"));
    let back = client
        .accept_invitation(app.as_member(
            troll,
            pb::AcceptInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                invitation_id: invite.clone(),
                profile: profile("Reformed", "reformed"),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let now = client
        .get_invitation_preview(app.as_member(
            troll,
            pb::GetInvitationPreviewRequest {
                invitation_id: invite.clone(),
                min_position: back.position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(now.already_member && !now.banned);
    assert_eq!(now.member_count, 2);

    // A revoked invitation previews as revoked.
    let revoked = client
        .revoke_invitation(app.as_member(
            owner,
            pb::RevokeInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                invitation_id: invite.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let shown = client
        .get_invitation_preview(app.as_member(
            guest,
            pb::GetInvitationPreviewRequest {
                invitation_id: invite,
                min_position: revoked.position,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.status, pb::InvitationStatus::Revoked as i32);
    assert_eq!(
        (shown.name.as_str(), shown.member_count),
        ("", 0),
        "a dead invitation opens nothing about the community"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_sees_and_withdraws_their_own_join_request() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let (owner, asker) = (Uuid::new_v4(), Uuid::new_v4());
    let (community, _) = create_community(&app, &mut client, owner, "Selective").await;
    let ask = || {
        app.as_member(
            asker,
            pb::RequestToJoinRequest {
                request_id: rid(),
                community_id: community.clone(),
                profile: profile("Asker", "asker"),
                answers: vec!["I write every day".into()],
            },
        )
    };
    let asked = client
        .request_to_join(ask())
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let mine = |position: i64| {
        app.as_member(
            asker,
            pb::GetMyJoinRequestRequest {
                community_id: community.clone(),
                min_position: position,
            },
        )
    };
    let request = client
        .get_my_join_request(mine(asked.position))
        .await
        .unwrap()
        .into_inner()
        .join_request
        .unwrap();
    assert_eq!(request.member_id, asker.to_string());
    assert_eq!(request.community_id, community);
    assert_eq!(request.answers, ["I write every day"]);
    assert_eq!(request.profile.unwrap().handle, "asker");

    let withdraw = || {
        app.as_member(
            asker,
            pb::WithdrawJoinRequestRequest {
                request_id: rid(),
                community_id: community.clone(),
            },
        )
    };
    let withdrawn = client
        .withdraw_join_request(withdraw())
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    let gone = assert_code(
        client.get_my_join_request(mine(withdrawn.position)).await,
        Code::NotFound,
    );
    assert_eq!(
        error_reason(&gone).as_deref(),
        Some("JOIN_REQUEST_NOT_FOUND")
    );
    let pending = client
        .list_join_requests(app.as_member(
            owner,
            pb::ListJoinRequestsRequest {
                community_id: community.clone(),
                min_position: withdrawn.position,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(pending.join_requests.is_empty());
    let twice = assert_code(
        client.withdraw_join_request(withdraw()).await,
        Code::NotFound,
    );
    assert_eq!(
        error_reason(&twice).as_deref(),
        Some("JOIN_REQUEST_NOT_FOUND")
    );
    // They may ask again.
    client.request_to_join(ask()).await.expect("ask again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_adds_a_table_fills_it_from_the_log_on_start() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let (owner, troll) = (Uuid::new_v4(), Uuid::new_v4());
    let (community, _) = create_community(&app, &mut client, owner, "Upgraded").await;
    invite_and_join(&app, &mut client, &community, owner, troll, "troll").await;
    let banned = client
        .ban_member(app.as_member(
            owner,
            pb::BanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: troll.to_string(),
                reason: "spam".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    // As the previous version left it: the directory's tables, without `bans`.
    let pool = app.pool().await;
    sqlx::query("DROP TABLE bans").execute(&pool).await.unwrap();

    // A replica of this version starts: it rebuilds the directory before serving.
    let replica = app.replica().await;
    let mut upgraded = crate::helpers::Client::connect(format!("http://{replica}"))
        .await
        .unwrap();
    let bans = upgraded
        .list_bans(app.as_member(
            owner,
            pb::ListBansRequest {
                community_id: community.clone(),
                min_position: banned.position,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .bans;
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].member_id, troll.to_string());
    assert_eq!(bans[0].reason, "spam");
    // Nothing else was disturbed: the members are all there, once.
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM members")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(members, 2);
    let count: i32 = sqlx::query_scalar("SELECT member_count FROM communities")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "the owner; the banned member no longer counts");

    // A rebuild cut short (the process killed mid-way) is done again by the next start.
    sqlx::query("UPDATE projection_ddl SET rebuild_pending = true WHERE projection = 'directory'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM bans")
        .execute(&pool)
        .await
        .unwrap();
    app.replica().await;
    let restored: i64 = sqlx::query_scalar("SELECT count(*) FROM bans")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(restored, 1);
    let pending: bool = sqlx::query_scalar(
        "SELECT rebuild_pending FROM projection_ddl WHERE projection = 'directory'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!pending, "cleared by the rebuild");
}
