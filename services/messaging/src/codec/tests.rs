//! The codec against a real log and key table: bodies are sealed per message, a deletion
//! destroys the message's key in its own append so no version reads back from the log, and a
//! decider's state loads without opening anything.

use std::sync::Arc;

use chrono::Utc;
use kith_platform::aggregate::Repository;
use kith_platform::eventlog::{EventLog, Metadata};
use kith_platform::sealing::Sealer;
use kith_platform::testing::TestDatabase;
use uuid::Uuid;

use super::{ConversationCodec, ReaderCodec, decode, decode_reader};
use crate::domain::{
    Access, Action, Body, Command, Event, Mentions, Origin, ReaderAction, ReaderCommand,
    ReaderEvent, Title,
};
use crate::service::{ConversationDecider, ReaderDecider};

const READER: Access = Access {
    reader: true,
    facilitator: false,
    moderator: false,
};

fn command(actor: Uuid, community: Uuid, cohort: Uuid, action: Action) -> Command {
    Command {
        actor,
        access: READER,
        origin: Some(Origin::Cohort {
            community_id: community,
            cohort_id: cohort,
        }),
        now: Utc::now(),
        action,
    }
}

/// Every version of every message of `conversation` as the log holds it, opened as far as the
/// keys allow.
async fn bodies(
    codec: &ConversationCodec,
    log: &EventLog,
    conversation: Uuid,
) -> Vec<Option<String>> {
    let mut opener = codec.opener();
    let mut out = Vec::new();
    for recorded in log.read_stream(&conversation.to_string(), 0).await.unwrap() {
        match decode(Some(&mut opener), &recorded).await.unwrap() {
            Event::MessagePosted { body, .. } | Event::MessageEdited { body, .. } => {
                out.push(body.map(|b| b.as_str().to_owned()));
            }
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn a_deleted_message_cannot_be_read_from_the_log_and_others_still_can() {
    let db = TestDatabase::create().await;
    let pool = db.pool("messaging", &[]).await;
    let log = EventLog::new(pool.clone());
    let codec = ConversationCodec::new(pool.clone(), Sealer::with_keks(pool.clone(), None));
    let repository = Arc::new(Repository::<ConversationDecider, _>::new(
        log.clone(),
        codec.clone(),
    ));
    let (community, cohort, author) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let stream = cohort.to_string();
    let run = |action| {
        let repository = Arc::clone(&repository);
        let stream = stream.clone();
        async move {
            repository
                .execute(
                    &stream,
                    None,
                    &Metadata::default(),
                    &command(author, community, cohort, action),
                )
                .await
                .map_err(|err| format!("{err:?}"))
                .expect("command runs")
        }
    };
    for (id, text) in [(first, "first, secret"), (second, "second")] {
        run(Action::Post {
            message_id: id,
            thread: None,
            title: Some(Title::parse("a title").unwrap()),
            body: Body::parse(text).unwrap(),
            mentions: Mentions::default(),
        })
        .await;
    }
    run(Action::Edit {
        message_id: first,
        title: None,
        body: Body::parse("first, edited").unwrap(),
        mentions: Mentions::default(),
    })
    .await;
    assert_eq!(
        bodies(&codec, &log, cohort).await,
        [
            Some("first, secret".into()),
            Some("second".into()),
            Some("first, edited".into())
        ]
    );
    // The plaintext is nowhere in the log's bytes.
    let raw: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(!raw.iter().any(|p| p.windows(6).any(|w| w == b"secret")));

    run(Action::Delete { message_id: first }).await;
    // Neither version of the deleted message opens any more, from a fresh reader of the log.
    let fresh = ConversationCodec::new(pool.clone(), Sealer::with_keks(pool.clone(), None));
    assert_eq!(
        bodies(&fresh, &log, cohort).await,
        [None, Some("second".into()), None]
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM sealing_keys WHERE subject LIKE $1")
        .bind(format!("{community}/{author}/{first}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, 0);
    // The decider's state still loads (nothing is opened for it), and knows the deletion.
    let again = Repository::<ConversationDecider, _>::new(log.clone(), fresh);
    let refused = again
        .execute(
            &stream,
            None,
            &Metadata::default(),
            &command(
                author,
                community,
                cohort,
                Action::Edit {
                    message_id: first,
                    title: None,
                    body: Body::parse("back?").unwrap(),
                    mentions: Mentions::default(),
                },
            ),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(kith_platform::aggregate::Rejected::Domain(
                crate::domain::DomainError::MessageDeleted
            ))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn reader_events_round_trip() {
    let db = TestDatabase::create().await;
    let pool = db.pool("messaging", &[]).await;
    let log = EventLog::new(pool.clone());
    let repository = Repository::<ReaderDecider, _>::new(log.clone(), ReaderCodec);
    let (member, conversation, thread) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let actions = [
        ReaderAction::MoveCursor {
            conversation_id: conversation,
            thread: Some(thread),
            seq: 7,
        },
        ReaderAction::MoveCursor {
            conversation_id: conversation,
            thread: None,
            seq: 3,
        },
        ReaderAction::Unfollow {
            conversation_id: conversation,
            thread_id: thread,
        },
        ReaderAction::SetPrivateReceipts { private: true },
    ];
    for action in actions {
        repository
            .execute(
                &member.to_string(),
                None,
                &Metadata::default(),
                &ReaderCommand {
                    actor: member,
                    action,
                },
            )
            .await
            .map_err(|err| format!("{err:?}"))
            .unwrap();
    }
    let decoded: Vec<ReaderEvent> = log
        .read_stream(&member.to_string(), 0)
        .await
        .unwrap()
        .iter()
        .map(|e| decode_reader(e).unwrap())
        .collect();
    assert_eq!(
        decoded,
        [
            ReaderEvent::ReadCursorMoved {
                conversation_id: conversation,
                thread: Some(thread),
                seq: 7
            },
            ReaderEvent::ReadCursorMoved {
                conversation_id: conversation,
                thread: None,
                seq: 3
            },
            ReaderEvent::ThreadUnfollowed {
                conversation_id: conversation,
                thread_id: thread
            },
            ReaderEvent::ReadReceiptsSet { private: true },
        ]
    );
}
