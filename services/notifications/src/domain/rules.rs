//! The rules: who an event concerns, and as what. Preferences play no part here (see
//! [`super::decision`]): a rule says whom an event is for, a preference what the member wants
//! of it, and both are kept so that either can be explained.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::values::Kind;

/// One rule matching one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub recipient: Uuid,
    pub kind: Kind,
}

/// Everyone an event concerns, once each: the strongest rule names the notification, the others
/// are kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub recipient: Uuid,
    pub kind: Kind,
    /// The other rules that matched, strongest first.
    pub also: Vec<Kind>,
}

/// Collapses candidates to one per member, leaving out `actor` (nobody is notified of their
/// own doing). Ordered by member, so the same event always gives the same list.
pub fn collapse(
    candidates: impl IntoIterator<Item = Candidate>,
    actor: Option<Uuid>,
) -> Vec<Matched> {
    let mut by_member: BTreeMap<Uuid, Vec<Kind>> = BTreeMap::new();
    for candidate in candidates {
        if Some(candidate.recipient) == actor {
            continue;
        }
        let kinds = by_member.entry(candidate.recipient).or_default();
        if !kinds.contains(&candidate.kind) {
            kinds.push(candidate.kind);
        }
    }
    by_member
        .into_iter()
        .map(|(recipient, mut kinds)| {
            kinds.sort_by_key(|kind| (std::cmp::Reverse(kind.strength()), *kind));
            let kind = kinds.remove(0);
            Matched {
                recipient,
                kind,
                also: kinds,
            }
        })
        .collect()
}

/// A message as the rules see it, with who reads its conversation and who follows its thread
/// at the moment it was posted.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    pub author: Uuid,
    /// A direct conversation (every message is for all its people) rather than a cohort's.
    pub direct: bool,
    /// The first message of a thread.
    pub starts_thread: bool,
    pub mentioned: &'a [Uuid],
    pub mentions_everyone: bool,
    /// Who reads the conversation.
    pub readers: &'a [Uuid],
    /// Who followed the thread before this message.
    pub followers: &'a [Uuid],
}

/// Every rule a post matches: mentions of readers, replies for the thread's followers, a new
/// thread for the cohort's readers, a direct message for its people.
pub fn post_candidates(post: &Post<'_>) -> Vec<Candidate> {
    let mut out = Vec::new();
    let reads = |member: &Uuid| post.readers.contains(member);
    let mut add = |recipient: Uuid, kind: Kind| out.push(Candidate { recipient, kind });
    // A mention only reaches someone who can read what mentions them.
    for member in post.mentioned.iter().filter(|m| reads(m)) {
        add(*member, Kind::Mention);
    }
    if post.mentions_everyone {
        for member in post.readers {
            add(*member, Kind::Mention);
        }
    }
    if post.direct {
        for member in post.readers {
            add(*member, Kind::DirectMessage);
        }
    } else if post.starts_thread {
        for member in post.readers {
            add(*member, Kind::NewThread);
        }
    } else {
        for member in post.followers.iter().filter(|m| reads(m)) {
            add(*member, Kind::Reply);
        }
    }
    out
}

/// An edit of a message, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    pub author: Uuid,
    /// Who the edited text mentions.
    pub mentioned: &'a [Uuid],
    pub mentions_everyone: bool,
    /// Who reads the conversation now.
    pub readers: &'a [Uuid],
    /// Who was notified of the message already (their notification is updated instead).
    pub notified: &'a [Uuid],
}

/// The mentions an edit adds: readers it mentions who were not notified of the message before.
/// Those who were get their notification updated, never a second one.
pub fn edit_candidates(edit: &Edit<'_>) -> Vec<Candidate> {
    let everyone = if edit.mentions_everyone {
        edit.readers
    } else {
        &[]
    };
    edit.mentioned
        .iter()
        .filter(|m| edit.readers.contains(m))
        .chain(everyone)
        .filter(|m| !edit.notified.contains(m))
        .map(|recipient| Candidate {
            recipient: *recipient,
            kind: Kind::Mention,
        })
        .collect()
}
