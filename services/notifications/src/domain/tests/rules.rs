use super::id;
use crate::domain::{
    Candidate, Edit, Kind, Matched, Post, collapse, edit_candidates, post_candidates,
};

const AUTHOR: u128 = 1;
const ANA: u128 = 2;
const BEN: u128 = 3;
const CAI: u128 = 4;
const OUTSIDER: u128 = 9;

fn readers() -> Vec<uuid::Uuid> {
    vec![id(AUTHOR), id(ANA), id(BEN), id(CAI)]
}

fn matched(post: &Post<'_>) -> Vec<Matched> {
    collapse(post_candidates(post), Some(post.author))
}

fn cohort_post<'a>(readers: &'a [uuid::Uuid]) -> Post<'a> {
    Post {
        author: id(AUTHOR),
        direct: false,
        starts_thread: false,
        mentioned: &[],
        mentions_everyone: false,
        readers,
        followers: &[],
    }
}

#[test]
fn a_new_thread_is_for_every_reader_but_its_author() {
    let readers = readers();
    let post = Post {
        starts_thread: true,
        ..cohort_post(&readers)
    };
    let got = matched(&post);
    assert_eq!(
        got.iter()
            .map(|m| (m.recipient, m.kind))
            .collect::<Vec<_>>(),
        vec![
            (id(ANA), Kind::NewThread),
            (id(BEN), Kind::NewThread),
            (id(CAI), Kind::NewThread)
        ]
    );
}

#[test]
fn a_mention_in_a_new_thread_collapses_into_one_mention() {
    let readers = readers();
    let mentioned = [id(ANA)];
    let post = Post {
        starts_thread: true,
        mentioned: &mentioned,
        ..cohort_post(&readers)
    };
    let ana = matched(&post).into_iter().find(|m| m.recipient == id(ANA));
    assert_eq!(
        ana,
        Some(Matched {
            recipient: id(ANA),
            kind: Kind::Mention,
            also: vec![Kind::NewThread],
        })
    );
}

#[test]
fn a_reply_is_for_the_followers_who_still_read_the_conversation() {
    let readers = readers();
    let followers = [id(AUTHOR), id(BEN), id(OUTSIDER)];
    let post = Post {
        followers: &followers,
        ..cohort_post(&readers)
    };
    assert_eq!(
        matched(&post),
        vec![Matched {
            recipient: id(BEN),
            kind: Kind::Reply,
            also: vec![],
        }]
    );
}

#[test]
fn a_mention_of_someone_who_cannot_read_reaches_no_one() {
    let readers = readers();
    let mentioned = [id(OUTSIDER)];
    let post = Post {
        mentioned: &mentioned,
        ..cohort_post(&readers)
    };
    assert!(matched(&post).is_empty());
}

#[test]
fn a_cohort_mention_reaches_every_reader_once() {
    let readers = readers();
    let mentioned = [id(ANA)];
    let followers = [id(ANA)];
    let post = Post {
        mentioned: &mentioned,
        mentions_everyone: true,
        followers: &followers,
        ..cohort_post(&readers)
    };
    let got = matched(&post);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m.kind == Kind::Mention));
    let ana = got.iter().find(|m| m.recipient == id(ANA)).unwrap();
    assert_eq!(ana.also, vec![Kind::Reply]);
}

#[test]
fn a_direct_message_is_for_the_other_people_of_the_conversation() {
    let people = [id(AUTHOR), id(CAI)];
    let post = Post {
        direct: true,
        starts_thread: false,
        ..cohort_post(&people)
    };
    assert_eq!(
        matched(&post),
        vec![Matched {
            recipient: id(CAI),
            kind: Kind::DirectMessage,
            also: vec![],
        }]
    );
}

#[test]
fn the_actor_is_never_a_recipient() {
    let got = collapse(
        [
            Candidate {
                recipient: id(AUTHOR),
                kind: Kind::Mention,
            },
            Candidate {
                recipient: id(ANA),
                kind: Kind::SessionCancelled,
            },
        ],
        Some(id(AUTHOR)),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].recipient, id(ANA));
}

#[test]
fn given_an_edit_that_adds_a_mention_only_the_newly_mentioned_reader_is_notified() {
    let readers = readers();
    // Ana was mentioned in the post; the edit mentions Ana, Ben, the author and an outsider.
    let edit = Edit {
        author: id(AUTHOR),
        mentioned: &[id(ANA), id(BEN), id(AUTHOR), id(OUTSIDER)],
        mentions_everyone: false,
        readers: &readers,
        notified: &[id(ANA)],
    };
    let got = collapse(edit_candidates(&edit), Some(edit.author));
    assert_eq!(
        got.iter()
            .map(|m| (m.recipient, m.kind))
            .collect::<Vec<_>>(),
        vec![(id(BEN), Kind::Mention)]
    );
}

#[test]
fn given_an_edit_that_mentions_everyone_those_not_yet_notified_are() {
    let readers = readers();
    let edit = Edit {
        author: id(AUTHOR),
        mentioned: &[],
        mentions_everyone: true,
        readers: &readers,
        notified: &[id(ANA), id(CAI)],
    };
    let got = collapse(edit_candidates(&edit), Some(edit.author));
    assert_eq!(
        got.iter().map(|m| m.recipient).collect::<Vec<_>>(),
        vec![id(BEN)]
    );
    // An edit that mentions nobody new notifies nobody.
    let quiet = Edit {
        mentions_everyone: false,
        mentioned: &[id(ANA)],
        ..edit
    };
    assert!(edit_candidates(&quiet).is_empty());
}
