//! A member's own stream (`member/<member_id>`): the preferences they set, where they are
//! reached, and what they read in the feed.

use std::convert::Infallible;

use uuid::Uuid;

use super::contact::Contact;
use super::preferences::Preferences;
use super::values::Channel;

/// What the member's stream holds that decisions need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// `None` until the member sets any.
    pub preferences: Option<Preferences>,
    pub contact: Contact,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberCommand {
    SetPreferences(Preferences),
    SetContact(Contact),
    /// The one-click unsubscribe of an email: email off, everything else as it was.
    UnsubscribeEmail,
    /// Notifications the API found unread in the member's feed.
    MarkRead(Vec<Uuid>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    PreferencesSet(Preferences),
    ContactSet(Contact),
    NotificationsRead(Vec<Uuid>),
}

pub fn evolve(mut state: Member, event: &MemberEvent) -> Member {
    match event {
        MemberEvent::PreferencesSet(preferences) => state.preferences = Some(preferences.clone()),
        MemberEvent::ContactSet(contact) => state.contact = contact.clone(),
        MemberEvent::NotificationsRead(_) => {}
    }
    state
}

/// Nothing a member does to their own stream is refused; asking for what already is (the same
/// preferences, an unsubscribe when email is off, reading nothing) records nothing.
pub fn decide(state: &Member, command: &MemberCommand) -> Result<Vec<MemberEvent>, Infallible> {
    Ok(match command {
        MemberCommand::SetPreferences(preferences) => {
            if state.preferences.as_ref() == Some(preferences) {
                Vec::new()
            } else {
                vec![MemberEvent::PreferencesSet(preferences.clone())]
            }
        }
        MemberCommand::SetContact(contact) if *contact == state.contact => Vec::new(),
        MemberCommand::SetContact(contact) => vec![MemberEvent::ContactSet(contact.clone())],
        MemberCommand::UnsubscribeEmail => {
            let mut preferences = state.preferences.clone().unwrap_or_default();
            if preferences.channels_off.insert(Channel::Email) {
                vec![MemberEvent::PreferencesSet(preferences)]
            } else {
                Vec::new()
            }
        }
        MemberCommand::MarkRead(ids) if ids.is_empty() => Vec::new(),
        MemberCommand::MarkRead(ids) => vec![MemberEvent::NotificationsRead(ids.clone())],
    })
}
