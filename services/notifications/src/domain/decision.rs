//! What a member's preferences make of a rule's match: the level that applies and where it was
//! set, and per channel whether to deliver and why not.

use uuid::Uuid;

use super::preferences::{LevelSource, Preferences};
use super::values::{Channel, Kind, Level};

/// Where a notification stands on one channel, and the stable reason for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelDecision {
    pub channel: Channel,
    pub deliver: bool,
    pub reason: &'static str,
}

/// The decision for one member and one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub level_source: LevelSource,
    pub channels: Vec<ChannelDecision>,
}

impl Decision {
    /// Whether any channel delivers it.
    pub fn delivers(&self) -> bool {
        self.channels.iter().any(|c| c.deliver)
    }
}

/// Where the event happened, as preferences are set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place {
    pub community: Option<Uuid>,
    pub cohort: Option<Uuid>,
    pub thread: Option<Uuid>,
}

/// Decides a match of `kind` at `place` for a member with `preferences`. `reachable` says which
/// channels the member can be reached on at all (an address or endpoint known).
pub fn decide(
    kind: Kind,
    place: Place,
    preferences: &Preferences,
    reachable: impl Fn(Channel) -> bool,
) -> Decision {
    let (level, level_source) = preferences.level(place.community, place.cohort);
    let withheld = if level == Level::Muted {
        Some(match level_source {
            LevelSource::Cohort => "COHORT_MUTED",
            _ => "COMMUNITY_MUTED",
        })
    } else if level == Level::MentionsAndReplies && !kind.personal() {
        Some(match level_source {
            LevelSource::Cohort => "COHORT_MENTIONS_AND_REPLIES_ONLY",
            _ => "COMMUNITY_MENTIONS_AND_REPLIES_ONLY",
        })
    } else if kind.silenced_by_muted_thread()
        && place
            .thread
            .is_some_and(|thread| preferences.muted_threads.contains(&thread))
    {
        Some("THREAD_MUTED")
    } else {
        None
    };
    let channels = Channel::ALL
        .into_iter()
        .map(|channel| {
            let (deliver, reason) = match withheld {
                Some(reason) => (false, reason),
                None if !preferences.channel_on(channel) => (false, "CHANNEL_OFF"),
                // Email is for what concerns the member in person; news of the group (a new
                // thread) stays in the feed, where it does not interrupt.
                None if channel == Channel::Email && !kind.personal() => (false, "FEED_ONLY"),
                None if !reachable(channel) => (false, "NO_ADDRESS"),
                None => (true, kind.code()),
            };
            ChannelDecision {
                channel,
                deliver,
                reason,
            }
        })
        .collect();
    Decision {
        level,
        level_source,
        channels,
    }
}
