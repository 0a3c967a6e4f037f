//! Threads, replies, titles, mentions and slow mode.

use super::super::{Action, DomainError, Event, Mentions, SlowMode};
use super::{
    COACH, FACILITATOR, NONE, OUTSIDER, READER, at, body, by, coach, given, member, mentioning,
    msg, new_thread, now, posted, posted_at, reply, seated, seconds, started, thread_with_reply,
    title,
};

#[test]
fn the_first_post_starts_the_cohorts_conversation() {
    let after = given(&[])
        .when(seated(member(1), new_thread(1)))
        .then(&[started(), posted(1, None, member(1))]);
    assert_eq!(after.state.messages[&msg(1)].seq, 2);
    assert_eq!(after.state.messages[&msg(1)].thread, Some(msg(1)));
}

#[test]
fn a_reply_goes_in_the_thread_of_its_first_message() {
    let after = given(&[started(), posted(1, None, member(1))])
        .when(seated(member(2), reply(2, 1)))
        .then(&[posted(2, Some(1), member(2))]);
    assert_eq!(after.state.messages[&msg(2)].thread, Some(msg(1)));
    assert_eq!(after.state.messages[&msg(2)].seq, 3);
}

#[test]
fn replies_are_one_level_deep() {
    given(&thread_with_reply())
        .when(seated(member(3), reply(3, 2)))
        .then_error(DomainError::UnknownThread(msg(2)));
}

#[test]
fn a_reply_to_an_unknown_thread_is_refused() {
    given(&[started()])
        .when(seated(member(3), reply(3, 77)))
        .then_error(DomainError::UnknownThread(msg(77)));
}

#[test]
fn a_deleted_thread_takes_no_more_replies() {
    let mut events = thread_with_reply();
    events.push(Event::MessageDeleted {
        message_id: msg(1),
        author: member(1),
        by: member(1),
    });
    given(&events)
        .when(seated(member(3), reply(3, 1)))
        .then_error(DomainError::ThreadDeleted);
}

#[test]
fn someone_not_seated_can_neither_start_nor_write_the_conversation() {
    given(&[])
        .when(by(OUTSIDER, NONE, new_thread(1)))
        .then_error(DomainError::NotAReader);
    given(&thread_with_reply())
        .when(by(OUTSIDER, NONE, reply(3, 1)))
        .then_error(DomainError::NotAReader);
}

#[test]
fn a_message_id_is_used_once() {
    given(&thread_with_reply())
        .when(seated(member(3), new_thread(2)))
        .then_error(DomainError::MessageExists);
}

#[test]
fn only_a_new_thread_has_a_title() {
    let titled = Action::Post {
        message_id: msg(1),
        thread: None,
        title: Some(title("Week 1 updates")),
        body: body("post yours below"),
        mentions: Mentions::default(),
    };
    given(&[]).when(coach(titled)).then(&[
        Event::ConversationStarted {
            kind: super::super::ConversationKind::Cohort,
            community_id: super::COMMUNITY,
            participants: vec![],
            started_by: COACH,
        },
        Event::MessagePosted {
            message_id: msg(1),
            thread: Some(msg(1)),
            author: COACH,
            title: Some(title("Week 1 updates")),
            body: Some(body("post yours below")),
            mentions: Mentions::default(),
            posted_at: now(),
        },
    ]);
    let titled_reply = Action::Post {
        message_id: msg(3),
        thread: Some(msg(1)),
        title: Some(title("no")),
        body: body("x"),
        mentions: Mentions::default(),
    };
    given(&thread_with_reply())
        .when(seated(member(3), titled_reply))
        .then_error(DomainError::TitleNotAllowed);
}

#[test]
fn mentions_are_part_of_the_event() {
    let post = Action::Post {
        message_id: msg(3),
        thread: Some(msg(1)),
        title: None,
        body: body("@ana @ben see this"),
        mentions: mentioning(&[member(1), member(2)]),
    };
    given(&thread_with_reply())
        .when(seated(member(3), post))
        .then(&[Event::MessagePosted {
            message_id: msg(3),
            thread: Some(msg(1)),
            author: member(3),
            title: None,
            body: Some(body("@ana @ben see this")),
            mentions: mentioning(&[member(1), member(2)]),
            posted_at: now(),
        }]);
}

#[test]
fn a_message_mentions_at_most_twenty_members() {
    let many: Vec<_> = (1..=21).map(member).collect();
    let post = Action::Post {
        message_id: msg(3),
        thread: None,
        title: None,
        body: body("everyone, one by one"),
        mentions: mentioning(&many),
    };
    given(&thread_with_reply())
        .when(seated(member(3), post))
        .then_error(DomainError::TooManyMentions(21));
}

fn mentioning_everyone(n: u128) -> Action {
    Action::Post {
        message_id: msg(n),
        thread: None,
        title: None,
        body: body("@cohort session moved"),
        mentions: Mentions {
            members: vec![],
            everyone: true,
        },
    }
}

#[test]
fn only_facilitators_mention_the_whole_cohort() {
    given(&thread_with_reply())
        .when(seated(member(3), mentioning_everyone(3)))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators may mention @cohort",
        ));
    given(&thread_with_reply())
        .when(coach(mentioning_everyone(3)))
        .then(&[Event::MessagePosted {
            message_id: msg(3),
            thread: Some(msg(3)),
            author: COACH,
            title: None,
            body: Some(body("@cohort session moved")),
            mentions: Mentions {
                members: vec![],
                everyone: true,
            },
            posted_at: now(),
        }]);
}

fn slow(interval: u32) -> Vec<Event> {
    let mut events = thread_with_reply();
    events.push(Event::SlowModeSet {
        interval: SlowMode::parse(interval).unwrap(),
        by: COACH,
    });
    events
}

#[test]
fn slow_mode_makes_a_member_wait_and_says_how_long() {
    // Member 2 posted at now(); 30 s of 60 have passed.
    given(&slow(60))
        .when(at(member(2), READER, now() + seconds(30), reply(3, 1)))
        .then_error(DomainError::SlowMode(std::time::Duration::from_secs(30)));
    // Once the interval has passed, they may post.
    let after = given(&slow(60))
        .when(at(member(2), READER, now() + seconds(60), reply(3, 1)))
        .then(&[posted_at(3, Some(1), member(2), now() + seconds(60))]);
    // And the wait starts again from that post.
    after
        .when(at(member(2), READER, now() + seconds(61), reply(4, 1)))
        .then_error(DomainError::SlowMode(std::time::Duration::from_secs(59)));
}

#[test]
fn slow_mode_leaves_facilitators_and_first_posts_alone() {
    given(&slow(60))
        .when(at(member(3), READER, now() + seconds(1), reply(3, 1)))
        .then(&[posted_at(3, Some(1), member(3), now() + seconds(1))])
        .when(at(COACH, FACILITATOR, now() + seconds(1), reply(4, 1)))
        .then(&[posted_at(4, Some(1), COACH, now() + seconds(1))])
        .when(at(COACH, FACILITATOR, now() + seconds(2), reply(5, 1)))
        .then(&[posted_at(5, Some(1), COACH, now() + seconds(2))]);
}

#[test]
fn commands_other_than_a_post_need_a_started_conversation() {
    given(&[])
        .when(seated(member(1), Action::Delete { message_id: msg(1) }))
        .then_error(DomainError::ConversationNotFound);
}
