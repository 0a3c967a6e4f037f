//! Erasure: the member's personal data becomes unreadable everywhere — in queries, in a rebuild,
//! in a replay of the log and on the bus — while the log stays append-only.

use std::time::Duration;

use kith_platform::db::Schema;
use kith_platform::eventlog::Checkpoint;
use kith_platform::projection;
use kith_platform::sealing::Sealer;
use kith_proto::membership as pb;
use prost::Message;
use uuid::Uuid;

use crate::helpers::{App, create_community, invite_and_join, rid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_member_shows_as_erased_in_queries_rebuilds_replays_and_on_the_bus() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Private").await;
    let erin = Uuid::new_v4();
    let keeper = Uuid::new_v4();
    invite_and_join(&app, &mut client, &community, owner, erin, "erin").await;
    invite_and_join(&app, &mut client, &community, owner, keeper, "keeper").await;
    client
        .update_profile(app.as_member(
            erin,
            pb::UpdateProfileRequest {
                request_id: rid(),
                community_id: community.clone(),
                profile: Some(pb::ProfileInput {
                    display_name: "Erin Erasable".into(),
                    handle: "erin".into(),
                    bio: "lives at 1 Secret Lane".into(),
                }),
            },
        ))
        .await
        .unwrap();
    let erased = client
        .erase_member(app.as_member(
            erin,
            pb::EraseMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: erin.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .committed
        .unwrap();

    let get = |member: Uuid, position: i64| pb::GetMemberRequest {
        community_id: community.clone(),
        member_id: member.to_string(),
        min_position: position,
    };
    let shown = client
        .get_member(app.as_member(owner, get(erin, erased.position)))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert!(shown.erased);
    assert_eq!(shown.status, pb::MemberStatus::Erased as i32);
    assert_eq!(shown.profile.unwrap(), pb::Profile::default());
    let kept = client
        .get_member(app.as_member(owner, get(keeper, 0)))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(kept.profile.unwrap().display_name, "Member keeper");

    // A rebuild cannot bring the data back.
    let pool = app.pool().await;
    let schema = Schema::parse("membership").unwrap();
    for projection in kith_membership::projections(&pool) {
        projection::rebuild(&app.env.db.url, &schema, projection.as_ref(), |_, _| {})
            .await
            .unwrap();
    }
    let rebuilt = client
        .get_member(app.as_member(owner, get(erin, 0)))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert!(rebuilt.erased);
    assert_eq!(rebuilt.profile.unwrap(), pb::Profile::default());
    let (name, handle): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT display_name, handle FROM members WHERE member_id = $1")
            .bind(erin)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((name, handle), (None, None));

    // A replay of the log: every sealed field of Erin's stays shut, the keeper's opens.
    let log = kith_platform::eventlog::EventLog::new(pool.clone());
    let events = log.tail(Checkpoint::START, 1000).await.unwrap();
    let sealer = Sealer::new(pool.clone());
    let mut opened_erin = 0;
    let mut opened_keeper = 0;
    for event in events.iter().filter(|e| {
        e.event_type.ends_with("MemberJoined") || e.event_type.ends_with("ProfileUpdated")
    }) {
        assert!(
            !String::from_utf8_lossy(&event.payload).contains("Erin"),
            "plaintext in the log"
        );
        let (member, profile) = if event.event_type.ends_with("MemberJoined") {
            let e = pb::MemberJoined::decode(event.payload.as_slice()).unwrap();
            (e.member_id, e.profile.unwrap())
        } else {
            let e = pb::ProfileUpdated::decode(event.payload.as_slice()).unwrap();
            (e.member_id, e.profile.unwrap())
        };
        let name = sealer
            .opener()
            .open(profile.display_name.as_ref())
            .await
            .unwrap();
        if member == erin.to_string() {
            assert_eq!(name, None, "erased data opened in a replay");
            opened_erin += 1;
        } else if member == keeper.to_string() {
            assert!(name.is_some());
            opened_keeper += 1;
        }
    }
    assert_eq!((opened_erin, opened_keeper), (2, 1));

    // The bus carries the same sealed bytes: Erin's events fetched from JetStream stay shut.
    let js = async_nats::jetstream::new(kith_platform::testing::nats().await);
    let name = app.env.args.nats.stream_for("membership").name;
    let total = events.len() as u64;
    let stream =
        kith_platform::testing::eventually(Duration::from_secs(10), "the relay", || async {
            let mut stream = js.get_stream(&name).await.ok()?;
            (stream.info().await.ok()?.state.messages >= total).then_some(stream)
        })
        .await;
    let mut checked = 0;
    for sequence in 1..=total {
        let message = stream.get_raw_message(sequence).await.unwrap();
        if message.headers.get("Kith-Event-Type").unwrap().as_str()
            == "kith.membership.v1.MemberJoined"
        {
            let e = pb::MemberJoined::decode(message.payload.as_ref()).unwrap();
            if e.member_id == erin.to_string() {
                let profile = e.profile.unwrap();
                assert_eq!(
                    sealer.opener().open(profile.handle.as_ref()).await.unwrap(),
                    None
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 1);
    // And her handle is free again for someone else.
    invite_and_join(&app, &mut client, &community, owner, Uuid::new_v4(), "erin").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_text_reasons_are_sealed_in_the_log_and_erased_with_the_member() {
    let app = App::spawn().await;
    let mut client = app.client().await;
    let owner = Uuid::new_v4();
    let (community, _) = create_community(&app, &mut client, owner, "Moderated").await;
    let (spammer, other) = (Uuid::new_v4(), Uuid::new_v4());
    invite_and_join(&app, &mut client, &community, owner, spammer, "spammer").await;
    invite_and_join(&app, &mut client, &community, owner, other, "other").await;
    client
        .ban_member(app.as_member(
            owner,
            pb::BanMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: spammer.to_string(),
                reason: "posted phone number 555-0199 everywhere".into(),
            },
        ))
        .await
        .unwrap();
    client
        .remove_member(app.as_member(
            owner,
            pb::RemoveMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: other.to_string(),
                reason: "moved to the Berlin group".into(),
            },
        ))
        .await
        .unwrap();

    let pool = app.pool().await;
    let sealer = Sealer::new(pool.clone());
    // Every event the commands above committed, straight from the table (a tail holds back
    // events while other transactions are open).
    let reasons = |pool: sqlx::PgPool| async move {
        let events: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT event_type, payload FROM events ORDER BY position")
                .fetch_all(&pool)
                .await
                .unwrap();
        let mut sealed = Vec::new();
        for (event_type, payload) in &events {
            let text = String::from_utf8_lossy(payload);
            assert!(
                !text.contains("555-0199") && !text.contains("Berlin"),
                "a reason in plain text in {event_type}"
            );
            if event_type.ends_with("MemberBanned") {
                let e = pb::MemberBanned::decode(payload.as_slice()).unwrap();
                assert!(e.reason.is_empty());
                sealed.push(e.sealed_reason.unwrap());
            } else if event_type.ends_with("MemberRemoved") {
                let e = pb::MemberRemoved::decode(payload.as_slice()).unwrap();
                sealed.push(e.sealed_reason.unwrap());
            }
        }
        sealed
    };
    let sealed = reasons(pool.clone()).await;
    assert_eq!(sealed.len(), 2);
    let mut opener = sealer.opener();
    assert_eq!(
        opener.open(Some(&sealed[0])).await.unwrap().as_deref(),
        Some("posted phone number 555-0199 everywhere")
    );
    assert_eq!(
        opener.open(Some(&sealed[1])).await.unwrap().as_deref(),
        Some("moved to the Berlin group")
    );

    // Erasing the banned member erases the reason given about them; the other's stays.
    client
        .erase_member(app.as_member(
            owner,
            pb::EraseMemberRequest {
                request_id: rid(),
                community_id: community.clone(),
                member_id: spammer.to_string(),
            },
        ))
        .await
        .unwrap();
    let mut opener = sealer.opener();
    assert_eq!(opener.open(Some(&sealed[0])).await.unwrap(), None);
    assert!(opener.open(Some(&sealed[1])).await.unwrap().is_some());
}
