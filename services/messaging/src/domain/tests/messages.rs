//! Editing and deleting.

use super::super::{Action, DomainError, Event, Mentions};
use super::{
    COACH, MODERATOR, NONE, OUTSIDER, STAFF, body, by, coach, given, member, msg, seated,
    thread_with_reply, title,
};

fn edit(n: u128, text: &str) -> Action {
    Action::Edit {
        message_id: msg(n),
        title: None,
        body: body(text),
        mentions: Mentions::default(),
    }
}

fn edited(n: u128, author: uuid::Uuid, text: &str) -> Event {
    Event::MessageEdited {
        message_id: msg(n),
        author,
        title: None,
        body: Some(body(text)),
        mentions: Mentions::default(),
    }
}

#[test]
fn the_author_edits_and_every_version_is_an_event() {
    given(&thread_with_reply())
        .when(seated(member(2), edit(2, "second try")))
        .then(&[edited(2, member(2), "second try")])
        .when(seated(member(2), edit(2, "third try")))
        .then(&[edited(2, member(2), "third try")]);
}

#[test]
fn only_the_author_edits() {
    given(&thread_with_reply())
        .when(seated(member(1), edit(2, "not mine")))
        .then_error(DomainError::Forbidden("only its author may edit a message"));
    given(&thread_with_reply())
        .when(coach(edit(2, "not mine either")))
        .then_error(DomainError::Forbidden("only its author may edit a message"));
}

#[test]
fn an_author_who_lost_access_cannot_edit() {
    given(&thread_with_reply())
        .when(by(member(2), NONE, edit(2, "from outside")))
        .then_error(DomainError::NotAReader);
}

#[test]
fn a_title_is_edited_only_on_a_threads_first_message() {
    let retitle = |n| Action::Edit {
        message_id: msg(n),
        title: Some(title("Better title")),
        body: body("hello"),
        mentions: Mentions::default(),
    };
    given(&thread_with_reply())
        .when(seated(member(1), retitle(1)))
        .then(&[Event::MessageEdited {
            message_id: msg(1),
            author: member(1),
            title: Some(title("Better title")),
            body: Some(body("hello")),
            mentions: Mentions::default(),
        }]);
    given(&thread_with_reply())
        .when(seated(member(2), retitle(2)))
        .then_error(DomainError::TitleNotAllowed);
}

#[test]
fn editing_an_unknown_or_deleted_message_is_refused() {
    given(&thread_with_reply())
        .when(seated(member(2), edit(9, "?")))
        .then_error(DomainError::MessageNotFound);
    given(&thread_with_reply())
        .when(seated(member(2), Action::Delete { message_id: msg(2) }))
        .then(&[Event::MessageDeleted {
            message_id: msg(2),
            author: member(2),
            by: member(2),
        }])
        .when(seated(member(2), edit(2, "back")))
        .then_error(DomainError::MessageDeleted);
}

#[test]
fn the_author_facilitators_and_moderators_delete_and_a_second_delete_changes_nothing() {
    for (actor, access) in [
        (member(2), super::READER),
        (COACH, super::FACILITATOR),
        (MODERATOR, STAFF),
    ] {
        given(&thread_with_reply())
            .when(by(actor, access, Action::Delete { message_id: msg(2) }))
            .then(&[Event::MessageDeleted {
                message_id: msg(2),
                author: member(2),
                by: actor,
            }])
            .when(by(actor, access, Action::Delete { message_id: msg(2) }))
            .then(&[]);
    }
}

#[test]
fn another_member_or_an_outsider_cannot_delete() {
    let refusal = DomainError::Forbidden(
        "only its author, the cohort's facilitators and the community's moderators may delete a message",
    );
    given(&thread_with_reply())
        .when(seated(member(1), Action::Delete { message_id: msg(2) }))
        .then_error(refusal.clone());
    given(&thread_with_reply())
        .when(by(OUTSIDER, NONE, Action::Delete { message_id: msg(2) }))
        .then_error(refusal);
}

#[test]
fn deleting_takes_the_reactions_and_the_pin_with_it() {
    let after = given(&thread_with_reply())
        .when(seated(
            member(2),
            Action::React {
                message_id: msg(1),
                reaction: super::reaction("🎉"),
            },
        ))
        .then(&[Event::ReactionAdded {
            message_id: msg(1),
            member: member(2),
            reaction: super::reaction("🎉"),
        }])
        .when(coach(Action::Pin { thread_id: msg(1) }))
        .then(&[Event::ThreadPinned {
            thread_id: msg(1),
            by: COACH,
        }])
        .when(seated(member(1), Action::Delete { message_id: msg(1) }))
        .then(&[Event::MessageDeleted {
            message_id: msg(1),
            author: member(1),
            by: member(1),
        }]);
    assert!(after.state.messages[&msg(1)].reactions.is_empty());
    assert!(after.state.pinned.is_empty());
}
