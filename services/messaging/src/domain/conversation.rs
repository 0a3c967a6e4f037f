//! A conversation: its state folded from its events, and the decisions on it.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::command::{Access, Action, Command, Origin};
use super::error::DomainError;
use super::event::Event;
use super::values::{MAX_DIRECT_PARTICIPANTS, MAX_MENTIONS, Mentions, Reaction, SlowMode, Title};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    Cohort,
    Direct,
}

/// What the first event said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub kind: ConversationKind,
    pub community_id: Uuid,
    pub participants: Vec<Uuid>,
}

/// What a decision needs to know of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub author: Uuid,
    /// The thread it is in; itself for a thread's first message; none in a direct conversation.
    pub thread: Option<Uuid>,
    /// The stream version of its MessagePosted event.
    pub seq: i64,
    pub deleted: bool,
    pub hidden: bool,
    pub reactions: BTreeSet<(Uuid, Reaction)>,
}

impl Message {
    /// Whether it starts a thread.
    pub fn starts_thread(&self, id: Uuid) -> bool {
        self.thread == Some(id)
    }
}

/// A conversation as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// The version of the last event folded in.
    pub version: i64,
    pub started: Option<Started>,
    pub messages: HashMap<Uuid, Message>,
    pub pinned: HashSet<Uuid>,
    /// Reports by id: whether each is resolved.
    pub reports: HashMap<Uuid, bool>,
    pub slow_mode: SlowMode,
    /// When each member last posted (slow mode).
    pub last_post: HashMap<Uuid, DateTime<Utc>>,
}

impl Conversation {
    fn message(&self, id: Uuid) -> Result<&Message, DomainError> {
        self.messages.get(&id).ok_or(DomainError::MessageNotFound)
    }

    /// A message that can still be acted on.
    fn live_message(&self, id: Uuid) -> Result<&Message, DomainError> {
        let message = self.message(id)?;
        if message.deleted {
            return Err(DomainError::MessageDeleted);
        }
        Ok(message)
    }
}

pub fn evolve(mut state: Conversation, event: &Event) -> Conversation {
    state.version += 1;
    match event {
        Event::ConversationStarted {
            kind,
            community_id,
            participants,
            ..
        } => {
            state.started = Some(Started {
                kind: *kind,
                community_id: *community_id,
                participants: participants.clone(),
            });
        }
        Event::MessagePosted {
            message_id,
            thread,
            author,
            posted_at,
            ..
        } => {
            state.messages.insert(
                *message_id,
                Message {
                    author: *author,
                    thread: *thread,
                    seq: state.version,
                    deleted: false,
                    hidden: false,
                    reactions: BTreeSet::new(),
                },
            );
            state.last_post.insert(*author, *posted_at);
        }
        Event::MessageEdited { .. } | Event::MessageReported { .. } => {}
        Event::MessageDeleted { message_id, .. } => {
            if let Some(message) = state.messages.get_mut(message_id) {
                message.deleted = true;
                message.reactions.clear();
            }
            state.pinned.remove(message_id);
        }
        Event::MessageHidden { message_id, .. } | Event::MessageUnhidden { message_id, .. } => {
            if let Some(message) = state.messages.get_mut(message_id) {
                message.hidden = matches!(event, Event::MessageHidden { .. });
            }
        }
        Event::ThreadPinned { thread_id, .. } => {
            state.pinned.insert(*thread_id);
        }
        Event::ThreadUnpinned { thread_id, .. } => {
            state.pinned.remove(thread_id);
        }
        Event::ReactionAdded {
            message_id,
            member,
            reaction,
        } => {
            if let Some(message) = state.messages.get_mut(message_id) {
                message.reactions.insert((*member, reaction.clone()));
            }
        }
        Event::ReactionRemoved {
            message_id,
            member,
            reaction,
        } => {
            if let Some(message) = state.messages.get_mut(message_id) {
                message.reactions.remove(&(*member, reaction.clone()));
            }
        }
        Event::ReportResolved { report_id, .. } => {
            state.reports.insert(*report_id, true);
        }
        Event::SlowModeSet { interval, .. } => state.slow_mode = *interval,
    }
    if let Event::MessageReported { report_id, .. } = event {
        state.reports.insert(*report_id, false);
    }
    state
}

pub fn decide(state: &Conversation, command: &Command) -> Result<Vec<Event>, DomainError> {
    let actor = command.actor;
    let access = command.access;
    if let Action::OpenDirect {
        community_id,
        participants,
        not_members,
    } = &command.action
    {
        return open_direct(state, actor, *community_id, participants, not_members);
    }
    // A cohort's conversation starts with its first message; every other command needs it.
    let mut events = Vec::new();
    let started = match (&state.started, command.origin, &command.action) {
        (Some(started), _, _) => started.clone(),
        (None, Some(Origin::Cohort { community_id, .. }), Action::Post { .. }) => {
            if !access.reader {
                return Err(DomainError::NotAReader);
            }
            events.push(Event::ConversationStarted {
                kind: ConversationKind::Cohort,
                community_id,
                participants: Vec::new(),
                started_by: actor,
            });
            Started {
                kind: ConversationKind::Cohort,
                community_id,
                participants: Vec::new(),
            }
        }
        (None, _, _) => return Err(DomainError::ConversationNotFound),
    };
    let cohort = started.kind == ConversationKind::Cohort;
    match &command.action {
        Action::OpenDirect { .. } => unreachable!("decided above"),
        Action::Post {
            message_id,
            thread,
            title,
            body,
            mentions,
        } => {
            require_reader(access)?;
            if state.messages.contains_key(message_id) {
                return Err(DomainError::MessageExists);
            }
            let thread = match thread {
                None if cohort => Some(*message_id),
                None => None,
                Some(_) if !cohort => return Err(DomainError::NoThreadsInDirect),
                Some(thread) => {
                    let first = state
                        .messages
                        .get(thread)
                        .filter(|m| m.starts_thread(*thread))
                        .ok_or(DomainError::UnknownThread(*thread))?;
                    if first.deleted {
                        return Err(DomainError::ThreadDeleted);
                    }
                    Some(*thread)
                }
            };
            check_title(title.as_ref(), thread == Some(*message_id))?;
            check_mentions(mentions, cohort, access)?;
            if cohort
                && !access.facilitator
                && let Some(wait) = slow_mode_wait(state, actor, command.now)
            {
                return Err(DomainError::SlowMode(wait));
            }
            events.push(Event::MessagePosted {
                message_id: *message_id,
                thread,
                author: actor,
                title: title.clone(),
                body: Some(body.clone()),
                mentions: mentions.clone(),
                posted_at: command.now,
            });
            Ok(events)
        }
        Action::Edit {
            message_id,
            title,
            body,
            mentions,
        } => {
            require_reader(access)?;
            let message = state.live_message(*message_id)?;
            if message.author != actor {
                return Err(DomainError::Forbidden("only its author may edit a message"));
            }
            check_title(title.as_ref(), message.starts_thread(*message_id))?;
            check_mentions(mentions, cohort, access)?;
            Ok(vec![Event::MessageEdited {
                message_id: *message_id,
                author: actor,
                title: title.clone(),
                body: Some(body.clone()),
                mentions: mentions.clone(),
            }])
        }
        Action::Delete { message_id } => {
            let message = state.message(*message_id)?;
            let own = message.author == actor && access.reader;
            if !(own || access.facilitator || access.moderator) {
                return Err(DomainError::Forbidden(
                    "only its author, the cohort's facilitators and the community's moderators may delete a message",
                ));
            }
            if message.deleted {
                return Ok(vec![]);
            }
            Ok(vec![Event::MessageDeleted {
                message_id: *message_id,
                author: message.author,
                by: actor,
            }])
        }
        Action::Hide { message_id } | Action::Unhide { message_id } => {
            require_staff(access)?;
            let message = state.live_message(*message_id)?;
            let hide = matches!(command.action, Action::Hide { .. });
            if message.hidden == hide {
                return Ok(vec![]);
            }
            Ok(vec![if hide {
                Event::MessageHidden {
                    message_id: *message_id,
                    by: actor,
                }
            } else {
                Event::MessageUnhidden {
                    message_id: *message_id,
                    by: actor,
                }
            }])
        }
        Action::Pin { thread_id } | Action::Unpin { thread_id } => {
            if !cohort {
                return Err(DomainError::NotACohortConversation);
            }
            if !access.facilitator {
                return Err(DomainError::Forbidden(
                    "only the cohort's facilitators may pin threads",
                ));
            }
            let first = state
                .messages
                .get(thread_id)
                .filter(|m| m.starts_thread(*thread_id))
                .ok_or(DomainError::UnknownThread(*thread_id))?;
            let pin = matches!(command.action, Action::Pin { .. });
            if pin && first.deleted {
                return Err(DomainError::ThreadDeleted);
            }
            if state.pinned.contains(thread_id) == pin {
                return Ok(vec![]);
            }
            Ok(vec![if pin {
                Event::ThreadPinned {
                    thread_id: *thread_id,
                    by: actor,
                }
            } else {
                Event::ThreadUnpinned {
                    thread_id: *thread_id,
                    by: actor,
                }
            }])
        }
        Action::React {
            message_id,
            reaction,
        }
        | Action::Unreact {
            message_id,
            reaction,
        } => {
            require_reader(access)?;
            let message = state.live_message(*message_id)?;
            let add = matches!(command.action, Action::React { .. });
            if message.reactions.contains(&(actor, reaction.clone())) == add {
                return Ok(vec![]);
            }
            let (message_id, member, reaction) = (*message_id, actor, reaction.clone());
            Ok(vec![if add {
                Event::ReactionAdded {
                    message_id,
                    member,
                    reaction,
                }
            } else {
                Event::ReactionRemoved {
                    message_id,
                    member,
                    reaction,
                }
            }])
        }
        Action::Report {
            report_id,
            message_id,
            reason,
        } => {
            require_reader(access)?;
            state.live_message(*message_id)?;
            if state.reports.contains_key(report_id) {
                return Err(DomainError::ReportExists);
            }
            Ok(vec![Event::MessageReported {
                report_id: *report_id,
                message_id: *message_id,
                reporter: actor,
                reason: Some(reason.clone()),
            }])
        }
        Action::ResolveReport { report_id } => {
            if !access.moderator {
                return Err(DomainError::Forbidden(
                    "only the community's owners, hosts and moderators may resolve reports",
                ));
            }
            match state.reports.get(report_id) {
                None => Err(DomainError::ReportNotFound),
                Some(true) => Ok(vec![]),
                Some(false) => Ok(vec![Event::ReportResolved {
                    report_id: *report_id,
                    by: actor,
                }]),
            }
        }
        Action::SetSlowMode { interval } => {
            if !cohort {
                return Err(DomainError::NotACohortConversation);
            }
            require_staff(access)?;
            if state.slow_mode == *interval {
                return Ok(vec![]);
            }
            Ok(vec![Event::SlowModeSet {
                interval: *interval,
                by: actor,
            }])
        }
    }
}

fn open_direct(
    state: &Conversation,
    actor: Uuid,
    community_id: Uuid,
    participants: &[Uuid],
    not_members: &[Uuid],
) -> Result<Vec<Event>, DomainError> {
    let set: BTreeSet<Uuid> = participants.iter().copied().collect();
    if set.len() != participants.len()
        || !(2..=MAX_DIRECT_PARTICIPANTS).contains(&set.len())
        || !set.contains(&actor)
    {
        return Err(DomainError::BadParticipants);
    }
    if not_members.contains(&actor) {
        return Err(DomainError::NotAReader);
    }
    if let Some(absent) = not_members.first() {
        return Err(DomainError::NotACommunityMember(*absent));
    }
    let sorted: Vec<Uuid> = set.into_iter().collect();
    match &state.started {
        Some(started)
            if started.kind == ConversationKind::Direct
                && started.participants == sorted
                && started.community_id == community_id =>
        {
            Ok(vec![])
        }
        Some(_) => Err(DomainError::ParticipantsDiffer),
        None => Ok(vec![Event::ConversationStarted {
            kind: ConversationKind::Direct,
            community_id,
            participants: sorted,
            started_by: actor,
        }]),
    }
}

fn require_reader(access: Access) -> Result<(), DomainError> {
    if access.reader {
        Ok(())
    } else {
        Err(DomainError::NotAReader)
    }
}

/// Facilitators of the cohort or moderators of the community.
fn require_staff(access: Access) -> Result<(), DomainError> {
    if access.facilitator || access.moderator {
        Ok(())
    } else {
        Err(DomainError::Forbidden(
            "only the cohort's facilitators and the community's moderators may do this",
        ))
    }
}

fn check_title(title: Option<&Title>, starts_thread_in_cohort: bool) -> Result<(), DomainError> {
    if title.is_some() && !starts_thread_in_cohort {
        return Err(DomainError::TitleNotAllowed);
    }
    Ok(())
}

fn check_mentions(mentions: &Mentions, cohort: bool, access: Access) -> Result<(), DomainError> {
    if mentions.members.len() > MAX_MENTIONS {
        return Err(DomainError::TooManyMentions(mentions.members.len()));
    }
    if mentions.everyone {
        if !cohort {
            return Err(DomainError::NotACohortConversation);
        }
        if !access.facilitator {
            return Err(DomainError::Forbidden(
                "only the cohort's facilitators may mention @cohort",
            ));
        }
    }
    Ok(())
}

/// How long `member` must still wait under slow mode, if at all.
fn slow_mode_wait(
    state: &Conversation,
    member: Uuid,
    now: DateTime<Utc>,
) -> Option<std::time::Duration> {
    let interval = i64::from(state.slow_mode.seconds());
    if interval == 0 {
        return None;
    }
    let last = state.last_post.get(&member)?;
    let next = *last + chrono::TimeDelta::seconds(interval);
    (next > now).then(|| (next - now).to_std().unwrap_or_default())
}

impl kith_platform::command::Refusal for DomainError {
    fn kind(&self) -> kith_platform::command::ErrorKind {
        DomainError::kind(self)
    }

    fn reason(&self) -> &'static str {
        DomainError::reason(self)
    }

    fn field(&self) -> Option<&'static str> {
        DomainError::field(self)
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        DomainError::retry_after(self)
    }
}
