//! Unread counts and "seen by" under concurrency: members post, reply, edit, delete, hide and
//! read at random, all at once; the counts the service gives then equal those of a simple model
//! folded from the log.

use std::collections::{BTreeMap, HashMap, HashSet};

use kith_platform::testing::Lcg;
use kith_proto::messaging as msg;
use prost::{Message as _, Name};
use uuid::Uuid;

use crate::helpers::{App, Messaging, cohort_with, post, rid};

/// One message as the model knows it.
#[derive(Debug, Clone)]
struct Posted {
    id: String,
    thread: String,
    author: Uuid,
    seq: i64,
    everyone: bool,
    gone: bool,
}

/// The state the log folds into.
#[derive(Debug, Default)]
struct Model {
    messages: Vec<Posted>,
    /// (member, thread key or "") → seq
    cursors: HashMap<(Uuid, String), i64>,
    private: HashSet<Uuid>,
}

impl Model {
    /// Folds every event of the log, in commit order. Every write has returned, so all are
    /// committed; the log's tail would stop short while another test's transaction is open.
    async fn fold(pool: &sqlx::PgPool, conversation: &str) -> Self {
        let mut model = Self::default();
        let rows: Vec<(String, i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT stream_id, version, event_type, payload FROM events
             ORDER BY transaction_id, position",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        for (stream_id, version, event_type, payload) in rows {
            {
                let t = event_type.as_str();
                if t == msg::MessagePosted::full_name() && stream_id == conversation {
                    let e = msg::MessagePosted::decode(payload.as_slice()).unwrap();
                    model.messages.push(Posted {
                        id: e.message_id,
                        thread: e.thread_id,
                        author: e.author_id.parse().unwrap(),
                        seq: version,
                        everyone: e.mentions_everyone,
                        gone: false,
                    });
                } else if t == msg::MessageDeleted::full_name() {
                    let e = msg::MessageDeleted::decode(payload.as_slice()).unwrap();
                    model.gone(&e.message_id, true);
                } else if t == msg::MessageHidden::full_name() {
                    let e = msg::MessageHidden::decode(payload.as_slice()).unwrap();
                    model.gone(&e.message_id, true);
                } else if t == msg::MessageUnhidden::full_name() {
                    let e = msg::MessageUnhidden::decode(payload.as_slice()).unwrap();
                    model.gone(&e.message_id, false);
                } else if t == msg::ReadCursorMoved::full_name() {
                    let e = msg::ReadCursorMoved::decode(payload.as_slice()).unwrap();
                    let cursor = model
                        .cursors
                        .entry((e.member_id.parse().unwrap(), e.thread_id))
                        .or_default();
                    *cursor = (*cursor).max(e.seq);
                } else if t == msg::ReadReceiptsSet::full_name() {
                    let e = msg::ReadReceiptsSet::decode(payload.as_slice()).unwrap();
                    let member = e.member_id.parse().unwrap();
                    if e.private {
                        model.private.insert(member);
                    } else {
                        model.private.remove(&member);
                    }
                }
            }
        }
        model
    }

    fn gone(&mut self, id: &str, gone: bool) {
        if let Some(m) = self.messages.iter_mut().find(|m| m.id == id) {
            m.gone = gone;
        }
    }

    fn cursor(&self, member: Uuid, thread: &str) -> i64 {
        let own = self
            .cursors
            .get(&(member, thread.to_owned()))
            .copied()
            .unwrap_or(0);
        let all = self
            .cursors
            .get(&(member, String::new()))
            .copied()
            .unwrap_or(0);
        own.max(all)
    }

    /// The threads `member` follows: where they posted, or someone mentioned everyone.
    fn followed(&self, member: Uuid) -> HashSet<String> {
        self.messages
            .iter()
            .filter(|m| m.author == member || m.everyone)
            .map(|m| m.thread.clone())
            .collect()
    }

    /// Unread (messages, mentions) per thread for `member`, every thread.
    fn unread(&self, member: Uuid) -> BTreeMap<String, (i32, i32)> {
        let mut counts = BTreeMap::new();
        for m in &self.messages {
            if m.gone || m.author == member || m.seq <= self.cursor(member, &m.thread) {
                continue;
            }
            let entry = counts.entry(m.thread.clone()).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += i32::from(m.everyone);
        }
        counts
    }

    fn seen_by(&self, message: &Posted, readers: &[Uuid]) -> Vec<String> {
        let mut seen: Vec<String> = readers
            .iter()
            .filter(|r| **r != message.author && !self.private.contains(r))
            .filter(|r| self.cursor(**r, &message.thread) >= message.seq)
            .map(Uuid::to_string)
            .collect();
        seen.sort();
        seen
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_counts_and_seen_by_equal_a_model_of_the_log_after_concurrent_activity() {
    let app = App::spawn().await;
    let (community, cohort, _) = cohort_with(&app, 5, 10, 5).await;
    let coach = community.coach;
    let mut readers = community.members.clone();
    readers.push(coach);
    let mut client = app.messaging().await;
    // A first thread, so replies have somewhere to go; the coach waits for his seat to arrive.
    let first = post(&app, &mut client, coach, &cohort, "", "@cohort welcome").await;
    // Every member's seat has reached messaging before the free-for-all.
    for member in &community.members {
        post(
            &app,
            &mut client,
            *member,
            &cohort,
            &first.message_id,
            "here",
        )
        .await;
    }

    let actors = readers.iter().enumerate().map(|(i, member)| {
        let (app, cohort, first) = (&app, cohort.clone(), first.clone());
        let mut client: Messaging = client.clone();
        let (member, is_coach) = (*member, *member == coach);
        async move {
            let mut rng = Lcg(0x5eed + i as u64);
            let mut threads = vec![(first.message_id.clone(), first.seq)];
            let mut own: Vec<String> = Vec::new();
            let mut last = 0i64;
            for step in 0..25 {
                let choice = rng.below(10);
                let reply = match choice {
                    0..=2 => {
                        let body = if is_coach && choice == 0 {
                            "@cohort news"
                        } else {
                            "a thread"
                        };
                        client
                            .post_message(app.as_member(
                                member,
                                msg::PostMessageRequest {
                                    request_id: rid(),
                                    conversation_id: cohort.clone(),
                                    body: format!("{body} {step}"),
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|r| {
                                let r = r.into_inner();
                                threads.push((r.message_id.clone(), r.seq));
                                own.push(r.message_id.clone());
                                r.committed
                            })
                    }
                    3..=5 => {
                        let (thread, _) = threads[rng.below(threads.len() as u64) as usize].clone();
                        client
                            .post_message(app.as_member(
                                member,
                                msg::PostMessageRequest {
                                    request_id: rid(),
                                    conversation_id: cohort.clone(),
                                    thread_id: thread,
                                    body: format!("a reply {step}"),
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|r| {
                                let r = r.into_inner();
                                own.push(r.message_id.clone());
                                r.committed
                            })
                    }
                    6 if !own.is_empty() => {
                        let target = own[rng.below(own.len() as u64) as usize].clone();
                        client
                            .edit_message(app.as_member(
                                member,
                                msg::EditMessageRequest {
                                    request_id: rid(),
                                    conversation_id: cohort.clone(),
                                    message_id: target,
                                    body: format!("edited {step}"),
                                    ..Default::default()
                                },
                            ))
                            .await
                            .map(|r| r.into_inner().committed)
                    }
                    7 if !own.is_empty() => {
                        let target = own.remove(rng.below(own.len() as u64) as usize);
                        client
                            .delete_message(app.as_member(
                                member,
                                msg::DeleteMessageRequest {
                                    request_id: rid(),
                                    conversation_id: cohort.clone(),
                                    message_id: target,
                                },
                            ))
                            .await
                            .map(|r| r.into_inner().committed)
                    }
                    8 if is_coach => {
                        let (target, _) = threads[rng.below(threads.len() as u64) as usize].clone();
                        client
                            .hide_message(app.as_member(
                                member,
                                msg::HideMessageRequest {
                                    request_id: rid(),
                                    conversation_id: cohort.clone(),
                                    message_id: target,
                                },
                            ))
                            .await
                            .map(|r| r.into_inner().committed)
                    }
                    8 => client
                        .set_read_receipts(app.as_member(
                            member,
                            msg::SetReadReceiptsRequest {
                                request_id: rid(),
                                private: rng.below(2) == 0,
                            },
                        ))
                        .await
                        .map(|r| r.into_inner().committed),
                    _ => {
                        // Read a thread, or the whole conversation, up to what this member saw.
                        let (thread, seq) =
                            threads[rng.below(threads.len() as u64) as usize].clone();
                        let whole = rng.below(3) == 0;
                        client
                            .mark_read(app.as_member(
                                member,
                                msg::MarkReadRequest {
                                    request_id: rid(),
                                    conversation_id: cohort.clone(),
                                    thread_id: if whole { String::new() } else { thread },
                                    seq: seq + rng.below(3) as i64,
                                },
                            ))
                            .await
                            .map(|r| r.into_inner().committed)
                    }
                };
                match reply {
                    Ok(Some(committed)) => last = last.max(committed.position),
                    Ok(None) => {}
                    // Refusals the model does not need: a deleted message edited, a cursor past
                    // the end, a thread deleted under a reply, a thread that is a reply.
                    Err(status) => assert!(
                        matches!(
                            status.code(),
                            tonic::Code::FailedPrecondition
                                | tonic::Code::InvalidArgument
                                | tonic::Code::NotFound
                        ),
                        "step {step} (choice {choice}) of {member}: {status:?}"
                    ),
                }
            }
            last
        }
    });
    let lasts = futures::future::join_all(actors).await;
    // Each actor's last write follows its earlier ones in commit order, but not the other
    // actors': wait for each.
    for position in &lasts {
        client
            .get_unread_counts(app.as_member(
                coach,
                msg::GetUnreadCountsRequest {
                    min_position: *position,
                },
            ))
            .await
            .expect("caught up");
    }
    let last = lasts.into_iter().max().unwrap();

    let model = Model::fold(&app.pool().await, &cohort).await;
    assert!(
        model.messages.len() > 30,
        "a meaningful run: {} messages",
        model.messages.len()
    );
    for member in &readers {
        let counts = client
            .get_unread_counts(
                app.as_member(*member, msg::GetUnreadCountsRequest { min_position: last }),
            )
            .await
            .expect("counts")
            .into_inner();
        let got: BTreeMap<String, (i32, i32)> = counts
            .threads
            .iter()
            .map(|t| (t.thread_id.clone(), (t.messages, t.mentions)))
            .collect();
        let all = model.unread(*member);
        let followed = model.followed(*member);
        let expected: BTreeMap<String, (i32, i32)> = all
            .iter()
            .filter(|(thread, _)| followed.contains(*thread))
            .map(|(thread, counts)| (thread.clone(), *counts))
            .collect();
        if got != expected {
            let differing: Vec<String> = got
                .keys()
                .chain(expected.keys())
                .filter(|k| got.get(*k) != expected.get(*k))
                .map(|k| {
                    let in_thread: Vec<String> = model
                        .messages
                        .iter()
                        .filter(|m| &m.thread == k)
                        .map(|m| format!("{}@{}{}{}", &m.id[..8], m.seq, if m.gone { " gone" } else { "" }, if m.author == *member { " own" } else { "" }))
                        .collect();
                    format!(
                        "thread {}: service {:?}, model {:?}, cursor {} / {}; messages {in_thread:?}",
                        &k[..8],
                        got.get(k),
                        expected.get(k),
                        model.cursors.get(&(*member, k.clone())).copied().unwrap_or(0),
                        model.cursors.get(&(*member, String::new())).copied().unwrap_or(0),
                    )
                })
                .collect();
            panic!("unread of {member} differs: {differing:#?}");
        }
        let total: i32 = all.values().map(|(m, _)| m).sum();
        let mentions: i32 = all.values().map(|(_, n)| n).sum();
        assert_eq!(
            (counts.total_messages, counts.total_mentions),
            (total, mentions),
            "totals of {member}"
        );
        assert_eq!(
            counts.conversations.len(),
            usize::from(total + mentions > 0)
        );
    }
    // The thread list's counts are the same, for every thread.
    for member in readers.iter().take(2) {
        let listed = crate::helpers::threads(&app, &mut client, *member, &cohort, last)
            .await
            .expect("threads");
        let all = model.unread(*member);
        for thread in &listed {
            let id = &thread.first.as_ref().unwrap().message_id;
            let expected = all.get(id).map_or(0, |(messages, _)| *messages);
            assert_eq!(
                thread.unread, expected,
                "unread of thread {id} for {member}"
            );
        }
    }
    assert!(
        readers.iter().any(|m| !model.unread(*m).is_empty()),
        "some member has something unread"
    );
    let mut someone_seen = false;
    for message in model.messages.iter().filter(|m| !m.gone).take(12) {
        let seen = client
            .get_seen_by(app.as_member(
                coach,
                msg::GetSeenByRequest {
                    conversation_id: cohort.clone(),
                    message_id: message.id.clone(),
                    min_position: last,
                },
            ))
            .await
            .expect("seen by")
            .into_inner()
            .member_ids;
        assert_eq!(
            seen,
            model.seen_by(message, &readers),
            "seen by of {}",
            message.id
        );
        someone_seen |= !seen.is_empty();
    }
    assert!(someone_seen, "some message was seen by someone");
}
