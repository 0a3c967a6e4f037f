//! A member's own stream (`member/<member_id>`): the preferences they set and what they read
//! in the feed.

use std::convert::Infallible;

use uuid::Uuid;

use super::preferences::Preferences;

/// What the member's stream holds that decisions need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// `None` until the member sets any.
    pub preferences: Option<Preferences>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberCommand {
    SetPreferences(Preferences),
    /// Notifications the API found unread in the member's feed.
    MarkRead(Vec<Uuid>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    PreferencesSet(Preferences),
    NotificationsRead(Vec<Uuid>),
}

pub fn evolve(mut state: Member, event: &MemberEvent) -> Member {
    if let MemberEvent::PreferencesSet(preferences) = event {
        state.preferences = Some(preferences.clone());
    }
    state
}

/// Nothing a member does to their own stream is refused; setting the same preferences again, or
/// reading nothing, records nothing.
pub fn decide(state: &Member, command: &MemberCommand) -> Result<Vec<MemberEvent>, Infallible> {
    Ok(match command {
        MemberCommand::SetPreferences(preferences) => {
            if state.preferences.as_ref() == Some(preferences) {
                Vec::new()
            } else {
                vec![MemberEvent::PreferencesSet(preferences.clone())]
            }
        }
        MemberCommand::MarkRead(ids) if ids.is_empty() => Vec::new(),
        MemberCommand::MarkRead(ids) => vec![MemberEvent::NotificationsRead(ids.clone())],
    })
}
