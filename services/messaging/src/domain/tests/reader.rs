//! A member's read state: cursors only move forward; follows; private receipts.

use uuid::Uuid;

use super::super::{ReaderAction, ReaderCommand, ReaderEvent};
use super::member;

type Given = kith_platform::testing::decider::Given<crate::service::ReaderDecider>;

const CONVERSATION: Uuid = Uuid::from_u128(800);
const THREAD: Uuid = Uuid::from_u128(50_001);

fn given(events: &[ReaderEvent]) -> Given {
    kith_platform::testing::decider::given(events)
}

fn reader(action: ReaderAction) -> ReaderCommand {
    ReaderCommand {
        actor: member(1),
        action,
    }
}

fn read_to(seq: i64) -> ReaderCommand {
    reader(ReaderAction::MoveCursor {
        conversation_id: CONVERSATION,
        thread: Some(THREAD),
        seq,
    })
}

fn moved(seq: i64) -> ReaderEvent {
    ReaderEvent::ReadCursorMoved {
        conversation_id: CONVERSATION,
        thread: Some(THREAD),
        seq,
    }
}

#[test]
fn a_cursor_only_moves_forward() {
    let after = given(&[])
        .when(read_to(5))
        .then(&[moved(5)])
        .when(read_to(3))
        .then(&[])
        .when(read_to(5))
        .then(&[])
        .when(read_to(9))
        .then(&[moved(9)]);
    assert_eq!(after.state.cursors[&(CONVERSATION, Some(THREAD))], 9);
}

#[test]
fn each_thread_and_the_top_level_have_their_own_cursor() {
    let after = given(&[moved(9)])
        .when(reader(ReaderAction::MoveCursor {
            conversation_id: CONVERSATION,
            thread: None,
            seq: 4,
        }))
        .then(&[ReaderEvent::ReadCursorMoved {
            conversation_id: CONVERSATION,
            thread: None,
            seq: 4,
        }]);
    assert_eq!(after.state.cursors[&(CONVERSATION, None)], 4);
}

#[test]
fn follows_and_unfollows_change_only_what_differs() {
    let follow = reader(ReaderAction::Follow {
        conversation_id: CONVERSATION,
        thread_id: THREAD,
    });
    let unfollow = reader(ReaderAction::Unfollow {
        conversation_id: CONVERSATION,
        thread_id: THREAD,
    });
    given(&[])
        // Unfollowing a thread one follows by posting in it is recorded.
        .when(unfollow.clone())
        .then(&[ReaderEvent::ThreadUnfollowed {
            conversation_id: CONVERSATION,
            thread_id: THREAD,
        }])
        .when(unfollow)
        .then(&[])
        .when(follow.clone())
        .then(&[ReaderEvent::ThreadFollowed {
            conversation_id: CONVERSATION,
            thread_id: THREAD,
        }])
        .when(follow)
        .then(&[]);
}

#[test]
fn private_receipts_are_a_setting() {
    given(&[])
        .when(reader(ReaderAction::SetPrivateReceipts { private: false }))
        .then(&[])
        .when(reader(ReaderAction::SetPrivateReceipts { private: true }))
        .then(&[ReaderEvent::ReadReceiptsSet { private: true }]);
}
