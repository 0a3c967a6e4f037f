//! A member's read state: one cursor per conversation or thread, moved only forward; explicit
//! follows; whether their receipts are private.

use std::collections::HashMap;

use uuid::Uuid;

use super::command::{ReaderAction, ReaderCommand};
use super::error::DomainError;
use super::event::ReaderEvent;

/// A conversation, or one thread in it.
pub type ThreadKey = (Uuid, Option<Uuid>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reader {
    pub cursors: HashMap<ThreadKey, i64>,
    /// Explicit follows (true) and unfollows (false); posting and mentions follow implicitly.
    pub follows: HashMap<(Uuid, Uuid), bool>,
    pub private_receipts: bool,
}

pub fn evolve(mut state: Reader, event: &ReaderEvent) -> Reader {
    match event {
        ReaderEvent::ReadCursorMoved {
            conversation_id,
            thread,
            seq,
        } => {
            let cursor = state
                .cursors
                .entry((*conversation_id, *thread))
                .or_default();
            *cursor = (*cursor).max(*seq);
        }
        ReaderEvent::ThreadFollowed {
            conversation_id,
            thread_id,
        } => {
            state.follows.insert((*conversation_id, *thread_id), true);
        }
        ReaderEvent::ThreadUnfollowed {
            conversation_id,
            thread_id,
        } => {
            state.follows.insert((*conversation_id, *thread_id), false);
        }
        ReaderEvent::ReadReceiptsSet { private } => state.private_receipts = *private,
    }
    state
}

/// Nothing here is refused: a cursor that would move back, or a follow that holds already,
/// changes nothing.
pub fn decide(state: &Reader, command: &ReaderCommand) -> Result<Vec<ReaderEvent>, DomainError> {
    Ok(match &command.action {
        ReaderAction::MoveCursor {
            conversation_id,
            thread,
            seq,
        } => {
            let at = state
                .cursors
                .get(&(*conversation_id, *thread))
                .copied()
                .unwrap_or(0);
            if *seq > at {
                vec![ReaderEvent::ReadCursorMoved {
                    conversation_id: *conversation_id,
                    thread: *thread,
                    seq: *seq,
                }]
            } else {
                vec![]
            }
        }
        ReaderAction::Follow {
            conversation_id,
            thread_id,
        } => {
            if state.follows.get(&(*conversation_id, *thread_id)) == Some(&true) {
                vec![]
            } else {
                vec![ReaderEvent::ThreadFollowed {
                    conversation_id: *conversation_id,
                    thread_id: *thread_id,
                }]
            }
        }
        ReaderAction::Unfollow {
            conversation_id,
            thread_id,
        } => {
            if state.follows.get(&(*conversation_id, *thread_id)) == Some(&false) {
                vec![]
            } else {
                vec![ReaderEvent::ThreadUnfollowed {
                    conversation_id: *conversation_id,
                    thread_id: *thread_id,
                }]
            }
        }
        ReaderAction::SetPrivateReceipts { private } => {
            if state.private_receipts == *private {
                vec![]
            } else {
                vec![ReaderEvent::ReadReceiptsSet { private: *private }]
            }
        }
    })
}
