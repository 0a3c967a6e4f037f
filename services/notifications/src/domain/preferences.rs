//! A member's notification preferences, parsed and checked: every value here is valid, so the
//! decisions never meet a bad one.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use uuid::Uuid;

use super::values::{Channel, Level};

/// Where a level is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Community(Uuid),
    Cohort(Uuid),
}

/// Quiet hours: from `start` to `end`, in minutes after local midnight, across midnight when
/// `end` is earlier than `start`. Never empty (start and end differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    start: u16,
    end: u16,
}

/// Minutes in a day.
pub const DAY_MINUTES: u32 = 24 * 60;

impl QuietHours {
    /// Quiet hours from `start` to `end` minutes after midnight; `Err` names the problem.
    pub fn new(start: u32, end: u32) -> Result<Self, &'static str> {
        if start >= DAY_MINUTES || end >= DAY_MINUTES {
            return Err("must be a minute of the day, 0 to 1439");
        }
        if start == end {
            return Err("must differ from start_minute (quiet hours cannot be empty or all day)");
        }
        Ok(Self {
            start: start as u16,
            end: end as u16,
        })
    }

    pub fn start(self) -> u32 {
        u32::from(self.start)
    }

    pub fn end(self) -> u32 {
        u32::from(self.end)
    }

    /// Whether `minute` (after local midnight) falls inside.
    pub fn contains(self, minute: u32) -> bool {
        let (start, end) = (self.start(), self.end());
        if start < end {
            (start..end).contains(&minute)
        } else {
            minute >= start || minute < end
        }
    }
}

/// How often a digest goes out, at the member's local time of day (weekly: on Mondays). While
/// one is chosen, emails that are not urgent wait for it instead of going one batch at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Digest {
    #[default]
    None,
    Daily {
        hour: u8,
        minute: u8,
    },
    Weekly {
        hour: u8,
        minute: u8,
    },
}

impl Digest {
    /// The reason a delivery waiting for this digest is held with.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Digest::None => None,
            Digest::Daily { .. } => Some("DIGEST_DAILY"),
            Digest::Weekly { .. } => Some("DIGEST_WEEKLY"),
        }
    }
}

/// Everything a member chose; [`Preferences::default`] for one who chose nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Preferences {
    pub time_zone: Tz,
    pub levels: BTreeMap<Scope, Level>,
    pub muted_threads: BTreeSet<Uuid>,
    pub channels_off: BTreeSet<Channel>,
    pub digest: Digest,
    pub quiet_hours: Option<QuietHours>,
    /// Whether urgent notifications (a session starting within the hour) pass quiet hours.
    pub urgent_passes_quiet_hours: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            time_zone: Tz::UTC,
            levels: BTreeMap::new(),
            muted_threads: BTreeSet::new(),
            channels_off: BTreeSet::new(),
            digest: Digest::None,
            quiet_hours: None,
            urgent_passes_quiet_hours: true,
        }
    }
}

/// Where the level that applied was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSource {
    Cohort,
    Community,
    Default,
}

impl LevelSource {
    pub fn code(self) -> &'static str {
        match self {
            LevelSource::Cohort => "cohort",
            LevelSource::Community => "community",
            LevelSource::Default => "default",
        }
    }
}

/// The most levels one member may set: a level per cohort and community they are in is far
/// fewer, and the bound keeps one event small.
pub const MAX_LEVELS: usize = 500;
/// The most threads one member may mute at once.
pub const MAX_MUTED_THREADS: usize = 1000;

impl Preferences {
    /// The level for something in `community` (and `cohort`): the cohort's own, else the
    /// community's, else [`Level::All`].
    pub fn level(&self, community: Option<Uuid>, cohort: Option<Uuid>) -> (Level, LevelSource) {
        if let Some(level) = cohort.and_then(|c| self.levels.get(&Scope::Cohort(c))) {
            return (*level, LevelSource::Cohort);
        }
        if let Some(level) = community.and_then(|c| self.levels.get(&Scope::Community(c))) {
            return (*level, LevelSource::Community);
        }
        (Level::All, LevelSource::Default)
    }

    pub fn channel_on(&self, channel: Channel) -> bool {
        !self.channels_off.contains(&channel)
    }
}
