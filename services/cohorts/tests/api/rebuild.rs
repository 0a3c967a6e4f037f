//! Rebuilding the cohorts projections from the log gives the rows the live projection has.

use kith_platform::db::Schema;
use kith_platform::projection;
use kith_proto::cohorts as pb;
use sqlx::PgPool;

use crate::helpers::{App, Community, in_minutes, join, open_cohort, rid};

/// Every row of every roster table, as JSON text, in a stable order.
async fn snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("cohorts", "cohort_id"),
        ("cohort_places", "cohort_id, member_id"),
        ("sessions", "session_id"),
        ("session_rsvps", "session_id, member_id"),
    ] {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        let table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("snapshot");
        rows.extend(table_rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projections_rebuilt_from_the_log_equal_the_live_ones() {
    let app = App::spawn().await;
    let community = Community::create(&app, 6).await;
    let m = community.members.clone();
    let mut client = app.cohorts().await;
    let a = open_cohort(&app, &mut client, &community, 2).await;
    let b = open_cohort(&app, &mut client, &community, 3).await;
    for member in &m[..4] {
        join(&app, &mut client, &community, &a, *member).await;
    }
    join(&app, &mut client, &community, &b, m[4]).await;
    client
        .leave_cohort(app.as_member(
            m[0],
            pb::LeaveCohortRequest {
                request_id: rid(),
                cohort_id: a.clone(),
            },
        ))
        .await
        .expect("leave");
    client
        .invite_to_cohort(app.as_member(
            community.coach,
            pb::InviteToCohortRequest {
                request_id: rid(),
                cohort_id: b.clone(),
                member_id: m[5].to_string(),
                expires_at: Some(in_minutes(90)),
                community_version: community.version,
            },
        ))
        .await
        .expect("invite");
    let scheduled = client
        .schedule_session(app.as_member(
            community.coach,
            pb::ScheduleSessionRequest {
                request_id: rid(),
                cohort_id: a.clone(),
                title: "Kick-off".into(),
                starts_at: Some(in_minutes(60 * 24)),
                duration_minutes: 60,
                weekly_occurrences: 3,
            },
        ))
        .await
        .expect("schedule")
        .into_inner();
    let reply = client
        .respond_to_session(app.as_member(
            m[1],
            pb::RespondToSessionRequest {
                request_id: rid(),
                cohort_id: a.clone(),
                session_id: scheduled.session_ids[1].clone(),
                response: pb::RsvpResponse::Maybe as i32,
            },
        ))
        .await
        .expect("rsvp")
        .into_inner();
    client
        .start_cohort(app.as_member(
            community.coach,
            pb::StartCohortRequest {
                request_id: rid(),
                cohort_id: b.clone(),
            },
        ))
        .await
        .expect("start");
    let last = client
        .cancel_session(app.as_member(
            community.coach,
            pb::CancelSessionRequest {
                request_id: rid(),
                cohort_id: a.clone(),
                session_id: scheduled.session_ids[2].clone(),
            },
        ))
        .await
        .expect("cancel")
        .into_inner()
        .committed
        .expect("committed")
        .position;
    assert!(last > reply.committed.expect("committed").position);
    // Wait for the live projection to include the last write.
    client
        .get_cohort(app.as_member(
            community.coach,
            pb::GetCohortRequest {
                cohort_id: a.clone(),
                min_position: last,
            },
        ))
        .await
        .expect("caught up");

    let pool = app.pool().await;
    let live = snapshot(&pool).await;
    assert!(live.len() > 10, "a meaningful snapshot: {live:#?}");
    let schema = Schema::parse("cohorts").expect("schema");
    for projection in kith_cohorts::projections(&pool) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {}",
            projection.tables()[1]
        )))
        .execute(&pool)
        .await
        .expect("damage the live projection");
        let report = projection::rebuild(&app.env.db.url, &schema, projection.as_ref(), |_, _| {})
            .await
            .expect("rebuild");
        let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(report.events, u64::try_from(logged).expect("count"));
    }
    assert_eq!(snapshot(&pool).await, live);
    app.stop().await;
}

/// Every row of the tables fed by membership's stream, as JSON text, in a stable order.
async fn communities_snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for (table, order) in [
        ("communities", "community_id"),
        ("community_members", "community_id, member_id"),
    ] {
        let sql = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        let table_rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .expect("snapshot");
        rows.extend(table_rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_projection_of_membership_rebuilt_from_the_bus_equals_the_live_one() {
    let app = App::spawn().await;
    let community = Community::create(&app, 5).await;
    let other = Community::create(&app, 2).await;
    let pool = app.pool().await;
    // Live: wait until both communities' last versions have been applied.
    for c in [&community, &other] {
        kith_platform::testing::eventually(
            std::time::Duration::from_secs(20),
            "the communities projection to catch up",
            || {
                let pool = &pool;
                async move {
                    let seen: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM communities WHERE community_id = $1::uuid",
                    )
                    .bind(&c.id)
                    .fetch_optional(pool)
                    .await
                    .ok()
                    .flatten();
                    (seen >= Some(c.version)).then_some(())
                }
            },
        )
        .await;
    }
    let live = communities_snapshot(&pool).await;
    assert!(live.len() >= 2 + 5 + 2 + 4, "{live:#?}");

    sqlx::raw_sql("DELETE FROM community_members")
        .execute(&pool)
        .await
        .expect("damage the live projection");
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let schema = Schema::parse("cohorts").expect("schema");
    for (source, projection) in kith_cohorts::bus_projections(&app.env.args.nats) {
        let report = projection::rebuild_from_bus(
            &app.env.db.url,
            &schema,
            &js,
            &source,
            projection.as_ref(),
            |_, _| {},
        )
        .await
        .expect("rebuild from the bus");
        assert!(report.events > 10, "{report:?}");
    }
    assert_eq!(communities_snapshot(&pool).await, live);
    app.stop().await;
}
