//! The communities projection writes a batch of membership events in a statement per table; the
//! tables it leaves must be exactly those that applying the same events one at a time leaves,
//! whatever the mix and order of joins, roles, departures, bans and unbans, and wherever the
//! batches are cut; and both must be what the rules below (restated here, apart from the
//! projection's code) say.

use chrono::Utc;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::testing::{Lcg, Statements, TestDatabase};
use kith_proto::membership as pb;
use prost::{Message, Name};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

fn recorded(
    community: Uuid,
    version: i64,
    position: i64,
    message: &dyn MessageName,
) -> RecordedEvent {
    RecordedEvent {
        position,
        transaction_id: 0,
        stream_type: "community".into(),
        stream_id: community.to_string(),
        version,
        event_id: Uuid::now_v7(),
        event_type: message.type_name(),
        payload: message.bytes(),
        metadata_json: "{}".into(),
        recorded_at: Utc::now(),
    }
}

/// A membership event of any type, as the log holds it.
trait MessageName {
    fn type_name(&self) -> String;
    fn bytes(&self) -> Vec<u8>;
}

impl<M: Message + Name> MessageName for M {
    fn type_name(&self) -> String {
        M::full_name()
    }
    fn bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }
}

fn history(seed: u64, count: usize) -> Vec<RecordedEvent> {
    let mut rng = Lcg(seed);
    let communities: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let members: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    let mut versions = [0i64; 3];
    let mut events = Vec::with_capacity(count);
    for position in 1..=count {
        let c = rng.below(3) as usize;
        versions[c] += 1;
        let member = members[rng.below(6) as usize].to_string();
        let role = rng.below(6) as i32;
        let message: Box<dyn MessageName> = match rng.below(11) {
            0..=2 => Box::new(pb::MemberJoined {
                member_id: member,
                role,
                ..Default::default()
            }),
            3 => Box::new(pb::RoleAssigned {
                member_id: member,
                role,
                ..Default::default()
            }),
            4 => Box::new(pb::RoleRevoked {
                member_id: member,
                ..Default::default()
            }),
            5 => Box::new(pb::MemberLeft {
                member_id: member,
                ..Default::default()
            }),
            6 => Box::new(pb::MemberRemoved {
                member_id: member,
                ..Default::default()
            }),
            7 => Box::new(pb::MemberBanned {
                member_id: member,
                ..Default::default()
            }),
            8 => Box::new(pb::MemberUnbanned {
                member_id: member,
                ..Default::default()
            }),
            9 => Box::new(pb::MemberErased {
                member_id: member,
                ..Default::default()
            }),
            _ => Box::new(pb::CommunityArchived::default()),
        };
        events.push(recorded(
            communities[c],
            versions[c],
            position as i64,
            message.as_ref(),
        ));
    }
    events
}

type Tables = (Vec<(Uuid, bool, i64)>, Vec<(Uuid, Uuid, String, String)>);

fn role_name(role: i32) -> &'static str {
    match role {
        1 => "owner",
        2 => "host",
        3 => "coach",
        4 => "moderator",
        _ => "member",
    }
}

/// The rules, one event at a time: a join makes an active member in its role; a departure sets
/// the standing (a plain member if there was no row); a role change touches only an existing
/// row; an unban makes a banned member removed; every event moves its community's version, and
/// an archival archives it.
fn expected(events: &[RecordedEvent]) -> Tables {
    use std::collections::BTreeMap;
    let mut communities: BTreeMap<Uuid, (bool, i64)> = BTreeMap::new();
    let mut members: BTreeMap<(Uuid, Uuid), (String, String)> = BTreeMap::new();
    for event in events {
        let community: Uuid = event.stream_id.parse().expect("community id");
        let seen = communities.entry(community).or_insert((false, 0));
        seen.1 = seen.1.max(event.version);
        let payload = event.payload.as_slice();
        let key = |id: &str| (community, id.parse::<Uuid>().expect("member id"));
        let mut depart = |id: &str, standing: &str| {
            let row = members
                .entry(key(id))
                .or_insert(("member".into(), String::new()));
            row.1 = standing.into();
        };
        match event.event_type.rsplit('.').next().unwrap_or_default() {
            "CommunityArchived" => seen.0 = true,
            "MemberJoined" => {
                let e = pb::MemberJoined::decode(payload).expect("decode");
                members.insert(
                    key(&e.member_id),
                    (role_name(e.role).into(), "active".into()),
                );
            }
            "RoleAssigned" => {
                let e = pb::RoleAssigned::decode(payload).expect("decode");
                if let Some(row) = members.get_mut(&key(&e.member_id)) {
                    row.0 = role_name(e.role).into();
                }
            }
            "RoleRevoked" => {
                let e = pb::RoleRevoked::decode(payload).expect("decode");
                if let Some(row) = members.get_mut(&key(&e.member_id)) {
                    row.0 = "member".into();
                }
            }
            "MemberUnbanned" => {
                let e = pb::MemberUnbanned::decode(payload).expect("decode");
                if let Some(row) = members
                    .get_mut(&key(&e.member_id))
                    .filter(|row| row.1 == "banned")
                {
                    row.1 = "removed".into();
                }
            }
            "MemberLeft" => depart(
                &pb::MemberLeft::decode(payload).expect("decode").member_id,
                "left",
            ),
            "MemberRemoved" => depart(
                &pb::MemberRemoved::decode(payload)
                    .expect("decode")
                    .member_id,
                "removed",
            ),
            "MemberBanned" => depart(
                &pb::MemberBanned::decode(payload).expect("decode").member_id,
                "banned",
            ),
            "MemberErased" => depart(
                &pb::MemberErased::decode(payload).expect("decode").member_id,
                "erased",
            ),
            other => panic!("the history holds no {other}"),
        }
    }
    (
        communities
            .into_iter()
            .map(|(id, (archived, version))| (id, archived, version))
            .collect(),
        members
            .into_iter()
            .map(|((c, m), (role, status))| (c, m, role, status))
            .collect(),
    )
}

async fn tables(pool: &PgPool) -> Tables {
    let communities = sqlx::query_as(
        "SELECT community_id, archived, version FROM communities ORDER BY community_id",
    )
    .fetch_all(pool)
    .await
    .expect("communities");
    let members = sqlx::query_as(
        "SELECT community_id, member_id, role, status FROM community_members ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("members");
    (communities, members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_leaves_the_tables_that_its_events_one_at_a_time_leave() {
    let db = TestDatabase::create().await;
    let nats = kith_platform::config::NatsArgs {
        nats_url: kith_platform::testing::nats_url(),
        stream_replicas: 1,
        duplicate_window_secs: 120,
        nats_namespace: None,
    };
    let projection = kith_cohorts::bus_projections(&nats)
        .into_iter()
        .next()
        .expect("the communities projection")
        .1;
    assert_eq!(projection.name(), "communities");
    let one_by_one = db.pool("one_by_one", &[]).await;
    let batched = db.pool("batched", &[]).await;
    for pool in [&one_by_one, &batched] {
        kith_platform::projection::create_tables(pool, projection.as_ref())
            .await
            .expect("tables");
    }
    for seed in [1, 2, 3] {
        for pool in [&one_by_one, &batched] {
            sqlx::query("TRUNCATE communities, community_members")
                .execute(pool)
                .await
                .expect("truncate");
        }
        let events = history(seed, 250);
        for event in &events {
            let mut tx = one_by_one.begin().await.expect("begin");
            projection.apply(&mut tx, event).await.expect("apply");
            tx.commit().await.expect("commit");
        }
        let mut rng = Lcg(seed * 7919);
        let mut rest: &[RecordedEvent] = &events;
        while !rest.is_empty() {
            let cut = (1 + rng.below(60) as usize).min(rest.len());
            let (batch, after) = rest.split_at(cut);
            let refs: Vec<&RecordedEvent> = batch.iter().collect();
            let mut conn = batched.acquire().await.expect("connection");
            let mut tx = conn.begin().await.expect("begin");
            projection
                .apply_batch(&mut tx, &refs)
                .await
                .expect("apply batch");
            tx.commit().await.expect("commit");
            rest = after;
        }
        let (one, batch) = (tables(&one_by_one).await, tables(&batched).await);
        let rules = expected(&events);
        assert!(!rules.1.is_empty(), "seed {seed}: the history made members");
        assert_eq!(one, rules, "seed {seed}: one at a time");
        assert_eq!(batch, rules, "seed {seed}: in batches");
    }
}

// A current-thread runtime, so that the counting subscriber, set for this thread, sees every
// statement.
#[tokio::test]
async fn a_batch_costs_a_statement_per_table_whatever_its_size() {
    let db = TestDatabase::create().await;
    let nats = kith_platform::config::NatsArgs {
        nats_url: kith_platform::testing::nats_url(),
        stream_replicas: 1,
        duplicate_window_secs: 120,
        nats_namespace: None,
    };
    let projection = kith_cohorts::bus_projections(&nats)
        .into_iter()
        .next()
        .expect("the communities projection")
        .1;
    let pool = db.pool("counted", &[]).await;
    kith_platform::projection::create_tables(&pool, projection.as_ref())
        .await
        .expect("tables");
    let events = history(11, 1000);
    let refs: Vec<&RecordedEvent> = events.iter().collect();
    let mut conn = pool.acquire().await.expect("connection");
    let mut tx = conn.begin().await.expect("begin");

    let (statements, counting) = Statements::count_on_this_thread();
    projection
        .apply_batch(&mut tx, &refs)
        .await
        .expect("apply batch");
    drop(counting);
    let sent = statements.taken();
    assert!(
        sent >= 2,
        "the counter saw {sent} statements: it is not counting"
    );
    assert!(
        sent <= 3,
        "1,000 events took {sent} statements: the rows they touch are read once and each table written once"
    );
    tx.commit().await.expect("commit");
    assert_eq!(tables(&pool).await, expected(&events));
}
