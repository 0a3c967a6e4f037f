//! Direct conversations between two to nine members of a community.

use uuid::Uuid;

use super::super::{
    Access, Action, Command, ConversationKind, DomainError, Event, Mentions, SlowMode,
};
use super::{COMMUNITY, READER, body, given, member, msg, now, title};

fn direct(actor: Uuid, access: Access, action: Action) -> Command {
    Command {
        actor,
        access,
        origin: None,
        now: now(),
        action,
    }
}

fn open(actor: Uuid, participants: &[Uuid], not_members: &[Uuid]) -> Command {
    direct(
        actor,
        READER,
        Action::OpenDirect {
            community_id: COMMUNITY,
            participants: participants.to_vec(),
            not_members: not_members.to_vec(),
        },
    )
}

fn opened(actor: Uuid, participants: &[Uuid]) -> Event {
    let mut sorted = participants.to_vec();
    sorted.sort();
    Event::ConversationStarted {
        kind: ConversationKind::Direct,
        community_id: COMMUNITY,
        participants: sorted,
        started_by: actor,
    }
}

#[test]
fn opening_a_direct_conversation_twice_opens_it_once() {
    given(&[])
        .when(open(member(2), &[member(2), member(1)], &[]))
        .then(&[opened(member(2), &[member(1), member(2)])])
        .when(open(member(1), &[member(1), member(2)], &[]))
        .then(&[]);
}

#[test]
fn two_to_nine_distinct_members_the_caller_among_them() {
    let nine: Vec<Uuid> = (1..=9).map(member).collect();
    given(&[])
        .when(open(member(1), &nine, &[]))
        .then(&[opened(member(1), &nine)]);
    let ten: Vec<Uuid> = (1..=10).map(member).collect();
    for bad in [
        ten,
        vec![member(1)],
        vec![member(1), member(1)],
        vec![member(2), member(3)],
    ] {
        given(&[])
            .when(open(member(1), &bad, &[]))
            .then_error(DomainError::BadParticipants);
    }
}

#[test]
fn everyone_in_it_must_be_an_active_member() {
    given(&[])
        .when(open(member(1), &[member(1), member(2)], &[member(2)]))
        .then_error(DomainError::NotACommunityMember(member(2)));
    given(&[])
        .when(open(member(1), &[member(1), member(2)], &[member(1)]))
        .then_error(DomainError::NotAReader);
}

#[test]
fn a_direct_conversation_is_one_flow_without_threads_titles_or_slow_mode() {
    let after = given(&[opened(member(1), &[member(1), member(2)])])
        .when(direct(
            member(2),
            READER,
            Action::Post {
                message_id: msg(1),
                thread: None,
                title: None,
                body: body("hi"),
                mentions: Mentions::default(),
            },
        ))
        .then(&[Event::MessagePosted {
            message_id: msg(1),
            thread: None,
            author: member(2),
            title: None,
            body: Some(body("hi")),
            mentions: Mentions::default(),
            posted_at: now(),
        }]);
    after
        .when(direct(
            member(1),
            READER,
            Action::Post {
                message_id: msg(2),
                thread: Some(msg(1)),
                title: None,
                body: body("re"),
                mentions: Mentions::default(),
            },
        ))
        .then_error(DomainError::NoThreadsInDirect);
    given(&[opened(member(1), &[member(1), member(2)])])
        .when(direct(
            member(1),
            READER,
            Action::Post {
                message_id: msg(2),
                thread: None,
                title: Some(title("no")),
                body: body("re"),
                mentions: Mentions::default(),
            },
        ))
        .then_error(DomainError::TitleNotAllowed);
    given(&[opened(member(1), &[member(1), member(2)])])
        .when(direct(
            member(1),
            READER,
            Action::SetSlowMode {
                interval: SlowMode::parse(10).unwrap(),
            },
        ))
        .then_error(DomainError::NotACohortConversation);
}

#[test]
fn posting_in_a_direct_conversation_never_opened_is_not_found() {
    given(&[])
        .when(direct(
            member(1),
            READER,
            Action::Post {
                message_id: msg(1),
                thread: None,
                title: None,
                body: body("hi"),
                mentions: Mentions::default(),
            },
        ))
        .then_error(DomainError::ConversationNotFound);
}
