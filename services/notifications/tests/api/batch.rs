//! Deciding a run of messaging events together gives what deciding them one by one gives: the
//! same notifications, with the same ids, reasons and channels, and the same follows. A seeded
//! history mixes what runs take (starts, posts, follows) with what they do not (edits,
//! deletions, hiding, reports), in runs of every length.

use chrono::{TimeZone, Utc};
use kith_notifications::projections::{Conversations, Ledger, Members, Places};
use kith_platform::eventlog::RecordedEvent;
use kith_platform::projection::{Projection, create_tables};
use kith_platform::testing::{Lcg, TestDatabase};
use kith_proto::cohorts as cpb;
use kith_proto::membership as mpb;
use kith_proto::messaging as msg;
use sqlx::PgPool;
use uuid::Uuid;

fn event<M: prost::Name>(
    stream_type: &str,
    stream_id: Uuid,
    version: i64,
    position: i64,
    message: &M,
) -> RecordedEvent {
    RecordedEvent {
        position,
        transaction_id: 1,
        stream_type: stream_type.into(),
        stream_id: stream_id.to_string(),
        version,
        event_id: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{stream_type}/{stream_id}/{version}/{position}").as_bytes(),
        ),
        event_type: M::full_name(),
        payload: message.encode_to_vec(),
        metadata_json: "{}".into(),
        recorded_at: Utc
            .timestamp_opt(1_800_000_000 + position, 0)
            .single()
            .expect("time"),
    }
}

/// Who is where (membership's and cohorts' events) and what was said (messaging's).
fn history(seed: u64) -> (Vec<RecordedEvent>, Vec<RecordedEvent>, Vec<RecordedEvent>) {
    let mut rng = Lcg(seed);
    let community = Uuid::from_u128(1);
    let members: Vec<Uuid> = (0..12).map(|i| Uuid::from_u128(100 + i)).collect();
    let mut membership = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let role = if i == 0 {
            mpb::MemberRole::Moderator
        } else {
            mpb::MemberRole::Member
        };
        let joined = mpb::MemberJoined {
            community_id: community.to_string(),
            member_id: member.to_string(),
            role: role as i32,
            ..Default::default()
        };
        membership.push(event(
            "community",
            community,
            i as i64 + 1,
            i as i64 + 1,
            &joined,
        ));
    }
    let mut cohorts = Vec::new();
    let mut conversations = Vec::new();
    for c in 0..3u128 {
        let cohort = Uuid::from_u128(10 + c);
        let created = cpb::CohortCreated {
            community_id: community.to_string(),
            ..Default::default()
        };
        let at = cohorts.len() as i64 + 1;
        cohorts.push(event("cohort", cohort, 1, at, &created));
        for (i, member) in members.iter().skip(c as usize * 3).take(6).enumerate() {
            let seated = cpb::MemberJoinedCohort {
                cohort_id: cohort.to_string(),
                member_id: member.to_string(),
                ..Default::default()
            };
            let at = cohorts.len() as i64 + 1;
            cohorts.push(event("cohort", cohort, i as i64 + 2, at, &seated));
        }
        let readers: Vec<Uuid> = members
            .iter()
            .skip(c as usize * 3)
            .take(6)
            .copied()
            .collect();
        conversations.push((cohort, Some(cohort), readers));
    }
    let direct = Uuid::from_u128(50);
    conversations.push((direct, None, members[..3].to_vec()));

    let mut messaging = Vec::new();
    let mut versions = std::collections::HashMap::new();
    // Each new event goes at the next position.
    let next = |messaging: &mut Vec<RecordedEvent>, make: &dyn Fn(i64) -> RecordedEvent| {
        let position = messaging.len() as i64 + 1;
        messaging.push(make(position));
    };
    for (id, cohort, readers) in &conversations {
        let started = msg::ConversationStarted {
            conversation_id: id.to_string(),
            kind: if cohort.is_some() {
                msg::ConversationKind::Cohort
            } else {
                msg::ConversationKind::Direct
            } as i32,
            community_id: community.to_string(),
            cohort_id: cohort.map(|c| c.to_string()).unwrap_or_default(),
            participant_ids: if cohort.is_none() {
                readers.iter().map(Uuid::to_string).collect()
            } else {
                Vec::new()
            },
            started_by: readers[0].to_string(),
        };
        versions.insert(*id, 1i64);
        next(&mut messaging, &|p| {
            event("conversation", *id, 1, p, &started)
        });
    }
    let mut posted: Vec<(Uuid, Uuid, Uuid)> = Vec::new(); // (conversation, message, thread)
    for _ in 0..400 {
        let (id, cohort, readers) = &conversations[rng.below(conversations.len() as u64) as usize];
        let author = rng.pick(readers);
        let roll = rng.below(100);
        if roll < 8 && !posted.is_empty() {
            // Follow or unfollow a thread of someone's.
            let (conversation, _, thread) = posted[rng.below(posted.len() as u64) as usize];
            let member = rng.pick(&members);
            let reader = Uuid::from_u128(0xfeed_0000 + member.as_u128());
            let (conversation, thread) = (conversation.to_string(), thread.to_string());
            let version = {
                let v = versions.entry(reader).or_insert(0);
                *v += 1;
                *v
            };
            if roll.is_multiple_of(2) {
                let e = msg::ThreadFollowed {
                    member_id: member.to_string(),
                    conversation_id: conversation,
                    thread_id: thread,
                };
                next(&mut messaging, &|p| event("reader", reader, version, p, &e));
            } else {
                let e = msg::ThreadUnfollowed {
                    member_id: member.to_string(),
                    conversation_id: conversation,
                    thread_id: thread,
                };
                next(&mut messaging, &|p| event("reader", reader, version, p, &e));
            }
            continue;
        }
        let version = {
            let v = versions.entry(*id).or_insert(1);
            *v += 1;
            *v
        };
        if roll < 16 && !posted.is_empty() {
            // Something only one by one: an edit, a deletion, a hiding or a report.
            let (conversation, message, _) = posted[rng.below(posted.len() as u64) as usize];
            if conversation != *id {
                continue;
            }
            let (c, m) = (conversation.to_string(), message.to_string());
            match roll % 4 {
                0 => {
                    let e = msg::MessageEdited {
                        conversation_id: c,
                        message_id: m,
                        author_id: author.to_string(),
                        ..Default::default()
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
                1 => {
                    let e = msg::MessageDeleted {
                        conversation_id: c,
                        message_id: m,
                        author_id: author.to_string(),
                        deleted_by: author.to_string(),
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
                2 => {
                    let e = msg::MessageHidden {
                        conversation_id: c,
                        message_id: m,
                        hidden_by: members[0].to_string(),
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
                _ => {
                    let e = msg::MessageReported {
                        conversation_id: c,
                        report_id: Uuid::from_u128(0xabc0_0000 + version as u128).to_string(),
                        message_id: m,
                        reporter_id: author.to_string(),
                        reason: None,
                    };
                    next(&mut messaging, &|p| {
                        event("conversation", *id, version, p, &e)
                    });
                }
            }
            continue;
        }
        let message = Uuid::from_u128(0x5000_0000 + messaging.len() as u128);
        let thread = match cohort {
            None => None,
            Some(_) => {
                let open: Vec<&(Uuid, Uuid, Uuid)> =
                    posted.iter().filter(|(c, _, _)| c == id).collect();
                if open.is_empty() || rng.below(4) == 0 {
                    Some(message)
                } else {
                    Some(open[rng.below(open.len() as u64) as usize].2)
                }
            }
        };
        let mentioned: Vec<String> = if rng.below(3) == 0 {
            vec![rng.pick(readers).to_string()]
        } else {
            Vec::new()
        };
        let e = msg::MessagePosted {
            conversation_id: id.to_string(),
            message_id: message.to_string(),
            thread_id: thread.map(|t| t.to_string()).unwrap_or_default(),
            author_id: author.to_string(),
            mentioned_ids: mentioned
                .into_iter()
                .filter(|m| *m != author.to_string())
                .collect(),
            mentions_everyone: rng.below(40) == 0,
            ..Default::default()
        };
        next(&mut messaging, &|p| {
            event("conversation", *id, version, p, &e)
        });
        if let Some(thread) = thread {
            posted.push((*id, message, thread));
        }
    }
    (membership, cohorts, messaging)
}

/// A schema with the notifications tables, who is where applied.
async fn prepared(
    db: &TestDatabase,
    schema: &str,
    membership: &[RecordedEvent],
    cohorts: &[RecordedEvent],
) -> PgPool {
    let pool = db.pool(schema, &[]).await;
    for projection in [
        &Ledger as &dyn Projection,
        &Members::default(),
        &Places::default(),
        &Conversations::default(),
    ] {
        create_tables(&pool, projection).await.expect("tables");
    }
    let mut tx = pool.begin().await.expect("tx");
    for e in membership {
        Members::default().apply(&mut tx, e).await.expect("members");
    }
    for e in cohorts {
        Places::default().apply(&mut tx, e).await.expect("places");
    }
    tx.commit().await.expect("commit");
    pool
}

/// What deciding left: the notification events (by stream and version) and the rules' tables.
async fn outcome(pool: &PgPool) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id || ' ' || version || ' ' || event_id || ' ' || event_type || ' ' || encode(payload, 'hex') || ' ' || metadata::text
         FROM events WHERE stream_type = 'notification' ORDER BY stream_id, version",
    )
    .fetch_all(pool)
    .await
    .expect("events");
    for (table, order) in [
        ("thread_follows", "conversation_id, thread_id, member_id"),
        ("message_recipients", "message_id, recipient_id"),
        ("retracted_messages", "message_id"),
        ("conversations", "conversation_id"),
    ] {
        let sql = format!("SELECT '{table} ' || to_jsonb(t)::text FROM {table} t ORDER BY {order}");
        rows.extend(
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await
                .expect("table"),
        );
    }
    rows
}

#[tokio::test]
async fn deciding_runs_together_equals_deciding_one_by_one() {
    let db = TestDatabase::create().await;
    for seed in [1u64, 7, 42] {
        let (membership, cohorts, messaging) = history(seed);
        let one = prepared(&db, &format!("one_{seed}"), &membership, &cohorts).await;
        for e in &messaging {
            let mut tx = one.begin().await.expect("tx");
            Conversations::default()
                .apply(&mut tx, e)
                .await
                .expect("apply");
            tx.commit().await.expect("commit");
        }
        let runs = prepared(&db, &format!("runs_{seed}"), &membership, &cohorts).await;
        let refs: Vec<&RecordedEvent> = messaging.iter().collect();
        for (i, chunk) in refs.chunks(1 + seed as usize * 5).enumerate() {
            let mut tx = runs.begin().await.expect("tx");
            Conversations::default()
                .apply_batch(&mut tx, chunk)
                .await
                .unwrap_or_else(|err| panic!("batch {i}: {err}"));
            tx.commit().await.expect("commit");
        }
        let (expected, got) = (outcome(&one).await, outcome(&runs).await);
        assert!(
            expected
                .iter()
                .filter(|r| !r.starts_with("thread_follows")
                    && !r.starts_with("message_recipients")
                    && !r.starts_with("retracted_messages")
                    && !r.starts_with("conversations"))
                .count()
                > 100,
            "the history decides plenty"
        );
        assert_eq!(got.len(), expected.len(), "seed {seed}");
        for (g, e) in got.iter().zip(&expected) {
            assert_eq!(g, e, "seed {seed}");
        }
        one.close().await;
        runs.close().await;
    }
}
