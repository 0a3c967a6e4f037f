//! Rebuilding the membership projections from the log gives the rows the live projection has.

use kith_platform::db::Schema;
use kith_platform::projection;
use kith_proto::membership as pb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{App, create_community, in_days, invite_and_join, profile, rid};

/// Every row of every directory table, as JSON text, in a stable order.
pub(crate) async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("communities", "community_id"),
        ("members", "community_id, member_id"),
        ("invitations", "invitation_id"),
        ("join_requests", "community_id, member_id"),
    ] {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        let table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .unwrap();
        rows.extend(table_rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_projections_rebuilt_from_the_log_equal_the_live_ones() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Rebuilt").await;
    let (other, _) = create_community(&app, &mut client, Uuid::new_v4(), "Other").await;
    let members: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for (n, member) in members.iter().enumerate() {
        invite_and_join(
            &app,
            &mut client,
            &community,
            owner,
            *member,
            &format!("m{n}x"),
        )
        .await;
    }
    client
        .assign_role(app.as_member(
            owner,
            pb::AssignRoleRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: members[0].to_string(),
                role: pb::MemberRole::Host as i32,
            },
        ))
        .await
        .unwrap();
    client
        .leave_community(app.as_member(
            members[1],
            pb::LeaveCommunityRequest {
                request_id: rid(),
                community_id: community.clone(),
            },
        ))
        .await
        .unwrap();
    client
        .ban_member(app.as_member(
            members[0],
            pb::BanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: members[2].to_string(),
                reason: "rude".into(),
            },
        ))
        .await
        .unwrap();
    client
        .request_to_join(app.as_member(
            Uuid::new_v4(),
            pb::RequestToJoinRequest {
                request_id: rid(),
                community_id: other.clone(),
                profile: profile("Pending Pat", "pat"),
                answers: vec!["hello".into()],
            },
        ))
        .await
        .unwrap();
    let last = client
        .create_invitation(app.as_member(
            owner,
            pb::CreateInvitationRequest {
                request_id: rid(),
                community_id: community.clone(),
                expires_at: Some(in_days(3)),
                max_uses: 9,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();
    // Wait until the live projection has everything.
    client
        .get_community(app.as_member(
            owner,
            pb::GetCommunityRequest {
                community_id: community,
                min_position: last.position,
            },
        ))
        .await
        .unwrap();
    let pool = app.pool().await;
    let live = snapshot(&pool).await;
    assert!(live.len() >= 10, "{live:#?}");

    sqlx::raw_sql("DROP TABLE communities, members, invitations, join_requests")
        .execute(&pool)
        .await
        .unwrap();
    let schema = Schema::parse("membership").unwrap();
    for projection in kith_membership::projections(&pool) {
        projection::rebuild(&app.env.db.url, &schema, projection.as_ref(), |_, _| {})
            .await
            .unwrap();
    }
    assert_eq!(snapshot(&pool).await, live);
    app.stop().await;
}
