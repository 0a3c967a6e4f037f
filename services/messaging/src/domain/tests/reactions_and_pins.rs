//! Reactions and pins.

use super::super::{Action, DomainError, Event, Reaction};
use super::{
    COACH, MODERATOR, NONE, OUTSIDER, STAFF, by, coach, given, member, msg, reaction, seated,
    thread_with_reply,
};

fn react(n: u128, r: &str) -> Action {
    Action::React {
        message_id: msg(n),
        reaction: reaction(r),
    }
}

#[test]
fn one_of_each_reaction_per_member_per_message() {
    let after = given(&thread_with_reply())
        .when(seated(member(1), react(2, "👍🏽")))
        .then(&[Event::ReactionAdded {
            message_id: msg(2),
            member: member(1),
            reaction: reaction("👍🏽"),
        }])
        // The same again changes nothing.
        .when(seated(member(1), react(2, "👍🏽")))
        .then(&[])
        // Another reaction, or another member's, is its own.
        .when(seated(member(1), react(2, "❤️")))
        .then(&[Event::ReactionAdded {
            message_id: msg(2),
            member: member(1),
            reaction: reaction("❤️"),
        }])
        .when(seated(member(3), react(2, "👍🏽")))
        .then(&[Event::ReactionAdded {
            message_id: msg(2),
            member: member(3),
            reaction: reaction("👍🏽"),
        }])
        .when(seated(
            member(1),
            Action::Unreact {
                message_id: msg(2),
                reaction: reaction("👍🏽"),
            },
        ))
        .then(&[Event::ReactionRemoved {
            message_id: msg(2),
            member: member(1),
            reaction: reaction("👍🏽"),
        }]);
    assert_eq!(after.state.messages[&msg(2)].reactions.len(), 2);
    // Removing what is not there changes nothing.
    after
        .when(seated(
            member(1),
            Action::Unreact {
                message_id: msg(2),
                reaction: reaction("👍🏽"),
            },
        ))
        .then(&[]);
}

#[test]
fn a_reaction_is_exactly_one_grapheme() {
    for good in ["👍", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "é", "+", "❤️"] {
        assert!(Reaction::parse(good).is_ok(), "{good:?} is one grapheme");
    }
    for bad in [
        "",
        "👍👍",
        "ok",
        " ",
        "\u{202e}",
        "\u{0}",
        "\u{200b}",
        "a\u{202e}",
    ] {
        assert!(
            Reaction::parse(bad).is_err(),
            "{bad:?} is not one visible grapheme"
        );
    }
}

#[test]
fn reacting_needs_a_reader_and_a_live_message() {
    given(&thread_with_reply())
        .when(by(OUTSIDER, NONE, react(2, "👍")))
        .then_error(DomainError::NotAReader);
    given(&thread_with_reply())
        .when(seated(member(1), react(9, "👍")))
        .then_error(DomainError::MessageNotFound);
}

#[test]
fn facilitators_pin_and_unpin_threads() {
    let after = given(&thread_with_reply())
        .when(coach(Action::Pin { thread_id: msg(1) }))
        .then(&[Event::ThreadPinned {
            thread_id: msg(1),
            by: COACH,
        }])
        .when(coach(Action::Pin { thread_id: msg(1) }))
        .then(&[]);
    assert!(after.state.pinned.contains(&msg(1)));
    after
        .when(coach(Action::Unpin { thread_id: msg(1) }))
        .then(&[Event::ThreadUnpinned {
            thread_id: msg(1),
            by: COACH,
        }]);
}

#[test]
fn only_facilitators_pin_and_only_threads() {
    let refusal = DomainError::Forbidden("only the cohort's facilitators may pin threads");
    given(&thread_with_reply())
        .when(seated(member(1), Action::Pin { thread_id: msg(1) }))
        .then_error(refusal.clone());
    given(&thread_with_reply())
        .when(by(MODERATOR, STAFF, Action::Pin { thread_id: msg(1) }))
        .then_error(refusal);
    given(&thread_with_reply())
        .when(coach(Action::Pin { thread_id: msg(2) }))
        .then_error(DomainError::UnknownThread(msg(2)));
}
