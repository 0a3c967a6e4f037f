//! Values that arrive from outside, parsed once into types that cannot hold a bad value
//! ("parse, don't validate"). Once a handler has a [`CommunityName`] it never checks it again.

use std::fmt;

/// The most answers a join request may carry (one per screening question).
pub const MAX_ANSWERS: usize = 5;
/// The most members who may join with one invitation.
pub const MAX_INVITATION_USES: u32 = 10_000;
/// How far ahead an invitation may expire, in days.
pub const MAX_INVITATION_DAYS: i64 = 90;

/// Why a value was refused; the message says what is wrong with it, without naming the field
/// (the caller knows which field it parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// Checks free text with the platform's one text check (NFC, trimmed, length in characters, no
/// control characters but line breaks and tabs where `multiline`, nothing that reorders text,
/// something visible).
fn trimmed_text(
    raw: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String, InvalidValue> {
    kith_platform::text::parse(
        raw,
        kith_platform::text::TextRules {
            min,
            max,
            multiline,
        },
    )
    .map_err(|err| InvalidValue(err.to_string()))
}

/// Adds the read accessors every text newtype shares.
macro_rules! text_accessors {
    ($name:ident) => {
        impl $name {
            /// The value as an event recorded it, taken as it is: the log is history, and a value
            /// written under older rules (or by another version) must still read back, never
            /// stop a decision or a read model.
            pub fn from_stored(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The parsed text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The parsed text, owned.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
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

/// A community's name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommunityName(String);

impl CommunityName {
    /// Parses a community name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        trimmed_text(raw, 1, 100, false).map(Self)
    }
}
text_accessors!(CommunityName);

/// A community's description: trimmed, at most 2000 characters (line breaks allowed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Description(String);

impl Description {
    /// Parses a description; an empty one is allowed.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        trimmed_text(raw, 0, 2000, true).map(Self)
    }
}
text_accessors!(Description);

/// The name a member shows in a community: trimmed, 1 to 80 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses a display name.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        trimmed_text(raw, 1, 80, false).map(Self)
    }
}
text_accessors!(DisplayName);

/// A member's handle, unique among the active members of a community: surrounding whitespace
/// trimmed, lowercased, 3 to 30 characters of `a-z`, `0-9`, `_`, `.` and `-`, starting with a
/// letter or a digit. Only ASCII is lowercased, so a look-alike such as the Kelvin sign is refused
/// rather than folded into `k`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Handle(String);

impl Handle {
    /// Parses a handle, lowercasing it.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        use unicode_normalization::UnicodeNormalization;
        // NFC first, so that what is compared is what was meant; only ASCII then passes.
        let handle = raw.nfc().collect::<String>().trim().to_ascii_lowercase();
        let chars = handle.chars().count();
        if !(3..=30).contains(&chars) {
            return Err(InvalidValue("must be 3 to 30 characters".to_owned()));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
        if !handle.chars().all(allowed) {
            return Err(InvalidValue(
                "must contain only letters a-z, digits, '_', '.' and '-'".to_owned(),
            ));
        }
        let starts_well = handle
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if !starts_well {
            return Err(InvalidValue(
                "must start with a letter or a digit".to_owned(),
            ));
        }
        Ok(Self(handle))
    }
}
text_accessors!(Handle);

/// What a member says about themselves: trimmed, at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bio(String);

impl Bio {
    /// Parses a bio; an empty one is allowed.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        trimmed_text(raw, 0, 500, true).map(Self)
    }
}
text_accessors!(Bio);

/// Why a moderator removed, banned or rejected someone: trimmed, at most 500 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reason(String);

impl Reason {
    /// Parses a reason; an empty one is allowed.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        trimmed_text(raw, 0, 500, true).map(Self)
    }
}
text_accessors!(Reason);

/// An answer to one of a community's screening questions: trimmed, 1 to 1000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Answer(String);

impl Answer {
    /// Parses an answer.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        trimmed_text(raw, 1, 1000, true).map(Self)
    }
}
text_accessors!(Answer);

/// A member's profile in one community; all of it is personal data, sealed in events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The name shown to other members.
    pub display_name: DisplayName,
    /// The handle, unique among active members.
    pub handle: Handle,
    /// What the member says about themselves (may be empty).
    pub bio: Bio,
}

/// The language a community writes in: an ISO 639-1 code Kith supports (see
/// `kith_platform::language`), lowercased, or empty for none. Search stems words by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Language(String);

impl Language {
    /// Parses a language code.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        use kith_platform::language;
        let code = raw.trim().to_ascii_lowercase();
        if language::search_config(&code).is_none() {
            return Err(InvalidValue(format!(
                "must be one of the ISO 639-1 codes {}, or empty for none",
                language::supported()
            )));
        }
        Ok(Self(code))
    }
}
text_accessors!(Language);
