//! Values that arrive from outside, parsed once into types that cannot hold a bad value. Once a
//! handler has a [`Capacity`] it never checks the range again.

use std::fmt;

use chrono::NaiveDate;

/// The largest cohort: a micro-community stays below thirty people.
pub const MAX_CAPACITY: u32 = 30;
/// How far ahead a cohort invitation may expire, in days.
pub const MAX_INVITATION_DAYS: i64 = 30;
/// The most occurrences one weekly schedule creates.
pub const MAX_WEEKLY_OCCURRENCES: u32 = 52;
/// The shortest and longest session, in minutes.
pub const SESSION_MINUTES: std::ops::RangeInclusive<u32> = 5..=480;

/// Why a value was refused; the message says what is wrong, without naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

fn invalid(message: impl Into<String>) -> InvalidValue {
    InvalidValue(message.into())
}

/// Checks free text with the platform's one text check (NFC, trimmed, length in characters, no
/// control characters but line breaks and tabs in multi-line fields, nothing that reorders text,
/// something visible).
fn text(raw: &str, rules: kith_platform::text::TextRules) -> Result<String, InvalidValue> {
    kith_platform::text::parse(raw, rules).map_err(|err| invalid(err.to_string()))
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $rules:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses and trims `raw`.
            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                text(raw, $rules).map(Self)
            }

            /// The value as an event recorded it, taken as it is: the log is history, and a
            /// value written under older rules must still read back.
            pub fn from_stored(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The parsed text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// A cohort's name: one line of 1 to 100 characters.
    CohortName,
    kith_platform::text::TextRules::line(1, 100)
);
text_value!(
    /// The goal a cohort shares: up to 1,000 characters on several lines, may be empty.
    Goal,
    kith_platform::text::TextRules::lines(0, 1000)
);
text_value!(
    /// A session's title: one line of 1 to 200 characters.
    SessionTitle,
    kith_platform::text::TextRules::line(1, 200)
);

/// What sort of group a cohort is; the kind suggests its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A peer group of 8–16 holding each other to their goals.
    Mastermind,
    /// A group around one coach.
    Coaching,
    /// A cohort moving through a course together.
    Course,
    /// An open circle.
    Circle,
}

impl Kind {
    /// The capacity a cohort of this kind gets when none is given.
    pub fn default_capacity(self) -> Capacity {
        Capacity(match self {
            Self::Mastermind => 12,
            Self::Coaching => 8,
            Self::Course => 30,
            Self::Circle => 20,
        })
    }
}

/// How many seats a cohort has: 1 to [`MAX_CAPACITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capacity(u32);

impl Capacity {
    pub fn parse(raw: u32) -> Result<Self, InvalidValue> {
        if (1..=MAX_CAPACITY).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(invalid(format!("must be 1 to {MAX_CAPACITY}, got {raw}")))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// An IANA time zone such as `Europe/Berlin`; weekly sessions keep their local time across
/// daylight-saving changes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(chrono_tz::Tz);

impl TimeZone {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        raw.trim().parse::<chrono_tz::Tz>().map(Self).map_err(|_| {
            invalid(format!(
                "unknown time zone {raw:?}; use an IANA name such as Europe/Berlin"
            ))
        })
    }

    pub fn tz(self) -> chrono_tz::Tz {
        self.0
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl Default for TimeZone {
    fn default() -> Self {
        Self(chrono_tz::Tz::UTC)
    }
}

/// A cohort's optional start and end dates, the end not before the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Dates {
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
}

impl Dates {
    pub fn new(start: Option<NaiveDate>, end: Option<NaiveDate>) -> Result<Self, InvalidValue> {
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            return Err(invalid(format!(
                "ends on {end}, before it starts on {start}"
            )));
        }
        Ok(Self { start, end })
    }

    pub fn start(self) -> Option<NaiveDate> {
        self.start
    }

    pub fn end(self) -> Option<NaiveDate> {
        self.end
    }
}

/// Everything a cohort's creator describes and a manager may later change (except the kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub name: CohortName,
    pub kind: Kind,
    pub capacity: Capacity,
    pub dates: Dates,
    pub time_zone: TimeZone,
    pub goal: Goal,
}

/// A person's role in the cohort's community, as the cohorts service last learned it from
/// membership's events. Owners rank above hosts, hosts above coaches and moderators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommunityRole {
    Owner,
    Host,
    Coach,
    Moderator,
    Member,
}

impl CommunityRole {
    /// Owners and hosts manage every cohort of their community.
    pub fn manages_cohorts(self) -> bool {
        matches!(self, Self::Owner | Self::Host)
    }

    /// Who may create cohorts and facilitate them: owners, hosts and coaches.
    pub fn may_facilitate(self) -> bool {
        matches!(self, Self::Owner | Self::Host | Self::Coach)
    }
}

/// Where a cohort is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// Created, being prepared; facilitators may invite, nobody may self-join.
    #[default]
    Draft,
    /// Taking self-joins.
    Open,
    /// Under way.
    Running,
    /// Ended or cancelled; takes no joins.
    Closed,
    /// Completed together.
    Graduated,
    /// Put away; takes no more commands.
    Archived,
}

impl Status {
    /// Whether seats can be taken, held or handed on (promotion) in this status.
    pub fn seats_move(self) -> bool {
        matches!(self, Self::Draft | Self::Open | Self::Running)
    }
}

/// A member's answer to a session invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rsvp {
    Yes,
    No,
    Maybe,
}

/// How often a scheduled session happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recurrence {
    /// Once.
    Once,
    /// Every week at the same local time in the cohort's time zone, this many times (2 to
    /// [`MAX_WEEKLY_OCCURRENCES`]).
    Weekly { occurrences: u32 },
}

impl Recurrence {
    pub fn weekly(occurrences: u32) -> Result<Self, InvalidValue> {
        if (2..=MAX_WEEKLY_OCCURRENCES).contains(&occurrences) {
            Ok(Self::Weekly { occurrences })
        } else {
            Err(invalid(format!(
                "must be 2 to {MAX_WEEKLY_OCCURRENCES}, got {occurrences}"
            )))
        }
    }
}

/// A session's length in whole minutes, within [`SESSION_MINUTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Minutes(u32);

impl Minutes {
    pub fn parse(raw: u32) -> Result<Self, InvalidValue> {
        if SESSION_MINUTES.contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(invalid(format!(
                "must be {} to {} minutes, got {raw}",
                SESSION_MINUTES.start(),
                SESSION_MINUTES.end()
            )))
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Where someone stands in a cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// Holds one of the seats.
    Seat,
    /// Waits for a seat, in order.
    Waitlist,
    /// Invited by a facilitator; the invitation holds a seat until it expires.
    Invitation,
    /// Runs the cohort; facilitators take no seat.
    Facilitator,
}

/// Why the community's own events took someone out of its cohorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Departure {
    Left,
    Removed,
    Banned,
    Erased,
}

/// The id of the `k`-th session (1-based) of a weekly series whose first session has id
/// `series`; the first keeps the series id.
pub fn occurrence_id(series: uuid::Uuid, k: u32) -> uuid::Uuid {
    if k <= 1 {
        series
    } else {
        uuid::Uuid::new_v5(&series, format!("occurrence-{k}").as_bytes())
    }
}
