//! A run of conversation starts, posts and follows applied together: what the rules read (the
//! conversations, who reads them, who follows each thread) is loaded in one statement each,
//! the run is walked in order in memory (a post's followers are those before it, the follows it
//! adds count for the posts after it), every decision is appended in one statement, and what
//! changed is written back in one statement per table. The effect is that of applying the
//! events one by one.

use std::collections::{BTreeMap, HashMap, HashSet};

use kith_platform::Result;
use kith_platform::eventlog::RecordedEvent;
use kith_platform::wire::{decode_payload, stored_id, stored_opt_id};
use kith_proto::messaging as mpb;
use prost::Name;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Known, MESSAGING, about_message};
use crate::domain::{Post, collapse, post_candidates};
use crate::projections::route::{Notice, Recording, notify_all};

/// Whether `event` can be part of a run.
pub(super) fn takes(event: &RecordedEvent) -> bool {
    let t = event.event_type.as_str();
    t == mpb::ConversationStarted::full_name()
        || t == mpb::MessagePosted::full_name()
        || t == mpb::ThreadFollowed::full_name()
        || t == mpb::ThreadUnfollowed::full_name()
}

enum Step<'a> {
    Started(Uuid, Known),
    Posted(&'a RecordedEvent, Box<mpb::MessagePosted>),
    Follow {
        conversation: Uuid,
        thread: Uuid,
        member: Uuid,
        following: bool,
    },
}

fn step(event: &RecordedEvent) -> Result<Step<'_>> {
    let t = event.event_type.as_str();
    Ok(if t == mpb::ConversationStarted::full_name() {
        let e: mpb::ConversationStarted = decode_payload(event)?;
        let participants = e
            .participant_ids
            .iter()
            .map(|id| stored_id(id))
            .collect::<Result<Vec<_>>>()?;
        Step::Started(
            stored_id(&e.conversation_id)?,
            Known {
                community: stored_id(&e.community_id)?,
                cohort: stored_opt_id(&e.cohort_id)?,
                participants,
            },
        )
    } else if t == mpb::MessagePosted::full_name() {
        Step::Posted(event, Box::new(decode_payload(event)?))
    } else {
        let following = t == mpb::ThreadFollowed::full_name();
        let (member, conversation, thread) = if following {
            let e: mpb::ThreadFollowed = decode_payload(event)?;
            (e.member_id, e.conversation_id, e.thread_id)
        } else {
            let e: mpb::ThreadUnfollowed = decode_payload(event)?;
            (e.member_id, e.conversation_id, e.thread_id)
        };
        Step::Follow {
            conversation: stored_id(&conversation)?,
            thread: stored_id(&thread)?,
            member: stored_id(&member)?,
            following,
        }
    })
}

/// Applies `run` (events [`takes`] accepts), in order.
pub(super) async fn apply(
    conn: &mut PgConnection,
    run: &[&RecordedEvent],
    recording: Recording,
) -> Result<()> {
    let steps = run.iter().map(|e| step(e)).collect::<Result<Vec<_>>>()?;

    // The conversations the run speaks of: as stored, or started in the run.
    let mentioned_conversations: Vec<Uuid> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Posted(_, e) => e.conversation_id.parse().ok(),
            Step::Started(id, _) => Some(*id),
            Step::Follow { .. } => None,
        })
        .collect();
    let stored: Vec<(Uuid, Uuid, Option<Uuid>, Vec<Uuid>)> = sqlx::query_as(
        "SELECT conversation_id, community_id, cohort_id, participants FROM conversations
         WHERE conversation_id = ANY($1)",
    )
    .bind(&mentioned_conversations)
    .fetch_all(&mut *conn)
    .await?;
    let mut known: HashMap<Uuid, Known> = stored
        .into_iter()
        .map(|(id, community, cohort, participants)| {
            (
                id,
                Known {
                    community,
                    cohort,
                    participants,
                },
            )
        })
        .collect();
    let mut started = Vec::new();
    for s in &steps {
        if let Step::Started(id, what) = s
            && !known.contains_key(id)
        {
            known.insert(*id, what.clone());
            started.push((*id, what.clone()));
        }
    }

    // Who reads them: each cohort's seated members, each direct conversation's active people.
    let cohorts: Vec<Uuid> = known.values().filter_map(|k| k.cohort).collect();
    let seated: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT p.cohort_id, p.member_id
         FROM places p
         JOIN cohorts c ON c.cohort_id = p.cohort_id
         JOIN members m ON m.community_id = c.community_id AND m.member_id = p.member_id AND m.active
         WHERE p.cohort_id = ANY($1) AND p.place IN ('seat', 'facilitator')
         ORDER BY p.cohort_id, p.member_id",
    )
    .bind(&cohorts)
    .fetch_all(&mut *conn)
    .await?;
    let mut readers_of: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (cohort, member) in seated {
        readers_of.entry(cohort).or_default().push(member);
    }
    let people: Vec<Uuid> = known
        .values()
        .filter(|k| k.cohort.is_none())
        .flat_map(|k| k.participants.iter().copied())
        .collect();
    let active: HashSet<(Uuid, Uuid)> = if people.is_empty() {
        HashSet::new()
    } else {
        sqlx::query_as::<_, (Uuid, Uuid)>(
            "SELECT community_id, member_id FROM members WHERE active AND member_id = ANY($1)",
        )
        .bind(&people)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };

    // Who follows the threads the run posts in, as stored.
    let mut pairs: Vec<(Uuid, Uuid)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Posted(_, e) => {
                Some((e.conversation_id.parse().ok()?, e.thread_id.parse().ok()?))
            }
            _ => None,
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (pair_conversations, pair_threads): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let stored_follows: Vec<(Uuid, Uuid, Uuid, bool)> = sqlx::query_as(
        "SELECT f.conversation_id, f.thread_id, f.member_id, f.following
         FROM thread_follows f
         JOIN unnest($1::uuid[], $2::uuid[]) AS t(c, th)
           ON f.conversation_id = t.c AND f.thread_id = t.th",
    )
    .bind(&pair_conversations)
    .bind(&pair_threads)
    .fetch_all(&mut *conn)
    .await?;
    let mut follows: HashMap<(Uuid, Uuid), BTreeMap<Uuid, bool>> = HashMap::new();
    for (conversation, thread, member, following) in stored_follows {
        follows
            .entry((conversation, thread))
            .or_default()
            .insert(member, following);
    }
    // Follows the run changes, to write back (the last word per key).
    let mut touched: BTreeMap<(Uuid, Uuid, Uuid), bool> = BTreeMap::new();

    // The run, in order.
    let mut notices = Vec::new();
    let mut messages = Vec::new();
    for s in &steps {
        match s {
            Step::Started(..) => {}
            Step::Follow {
                conversation,
                thread,
                member,
                following,
            } => {
                follows
                    .entry((*conversation, *thread))
                    .or_default()
                    .insert(*member, *following);
                touched.insert((*conversation, *thread, *member), *following);
            }
            Step::Posted(event, e) => {
                let conversation = stored_id(&e.conversation_id)?;
                let Some(conv) = known.get(&conversation) else {
                    continue;
                };
                let message = stored_id(&e.message_id)?;
                let author = stored_id(&e.author_id)?;
                let thread = stored_opt_id(&e.thread_id)?;
                let mentioned = e
                    .mentioned_ids
                    .iter()
                    .map(|id| stored_id(id))
                    .collect::<Result<Vec<_>>>()?;
                let readers: Vec<Uuid> = match conv.cohort {
                    Some(cohort) => readers_of.get(&cohort).cloned().unwrap_or_default(),
                    None => conv
                        .participants
                        .iter()
                        .filter(|p| active.contains(&(conv.community, **p)))
                        .copied()
                        .collect(),
                };
                let followers: Vec<Uuid> = thread
                    .and_then(|t| follows.get(&(conversation, t)))
                    .map(|members| {
                        members
                            .iter()
                            .filter(|(_, following)| **following)
                            .map(|(member, _)| *member)
                            .collect()
                    })
                    .unwrap_or_default();
                let post = Post {
                    author,
                    direct: conv.cohort.is_none(),
                    starts_thread: thread == Some(message),
                    mentioned: &mentioned,
                    mentions_everyone: e.mentions_everyone,
                    readers: &readers,
                    followers: &followers,
                };
                let matched = collapse(post_candidates(&post), Some(author));
                notices.push(Notice {
                    service: MESSAGING,
                    source: event,
                    about: about_message(conv, conversation, thread, message, author),
                    matched,
                });
                messages.push(message);
                // The author and those mentioned follow the thread from now on, unless they
                // unfollowed it.
                if let Some(thread) = thread {
                    let members = follows.entry((conversation, thread)).or_default();
                    for member in mentioned.iter().chain(std::iter::once(&author)) {
                        if !members.contains_key(member) {
                            members.insert(*member, true);
                            touched.insert((conversation, thread, *member), true);
                        }
                    }
                }
            }
        }
    }

    let decided = notify_all(conn, &notices, recording).await?;
    let mut kept: (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>, Vec<Option<Uuid>>) = Default::default();
    for ((message, notice), ids) in messages.iter().zip(&notices).zip(&decided) {
        for (matched, id) in notice.matched.iter().zip(ids) {
            kept.0.push(*message);
            kept.1.push(matched.recipient);
            kept.2.push(*id);
            kept.3.push(notice.about.thread);
        }
    }
    if !kept.0.is_empty() {
        // A row per message, its arrays in notification id order, as `remember` keeps them.
        sqlx::query(
            "INSERT INTO message_recipients (message_id, thread_id, recipient_ids, notification_ids)
             SELECT m, (array_agg(t))[1], array_agg(r ORDER BY n), array_agg(n ORDER BY n)
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[]) AS x(m, r, n, t)
             GROUP BY m
             ON CONFLICT DO NOTHING",
        )
        .bind(&kept.0)
        .bind(&kept.1)
        .bind(&kept.2)
        .bind(&kept.3)
        .execute(&mut *conn)
        .await?;
    }
    if !touched.is_empty() {
        let mut columns: (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>, Vec<bool>) = Default::default();
        for ((conversation, thread, member), following) in touched {
            columns.0.push(conversation);
            columns.1.push(thread);
            columns.2.push(member);
            columns.3.push(following);
        }
        sqlx::query(
            "INSERT INTO thread_follows (conversation_id, thread_id, member_id, following)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bool[])
             ON CONFLICT (conversation_id, thread_id, member_id)
             DO UPDATE SET following = EXCLUDED.following",
        )
        .bind(&columns.0)
        .bind(&columns.1)
        .bind(&columns.2)
        .bind(&columns.3)
        .execute(&mut *conn)
        .await?;
    }
    if !started.is_empty() {
        for (id, what) in started {
            sqlx::query(
                "INSERT INTO conversations (conversation_id, community_id, cohort_id, participants)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id) DO NOTHING",
            )
            .bind(id)
            .bind(what.community)
            .bind(what.cohort)
            .bind(&what.participants)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
