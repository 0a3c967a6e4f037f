//! Values that arrive from outside, parsed once into types that cannot hold a bad value.

use std::fmt;

use unicode_segmentation::UnicodeSegmentation;
use uuid::Uuid;

/// The longest message body, in characters (a long weekly update fits; a book chapter does not).
pub const MAX_BODY_CHARS: usize = 10_000;
/// The longest thread title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// The longest search query, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;
/// The longest report reason, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;
/// The most members one message may mention (besides `@cohort`).
pub const MAX_MENTIONS: usize = 20;
/// The most people in a direct conversation (Mighty Networks' limit for group messages).
pub const MAX_DIRECT_PARTICIPANTS: usize = 9;
/// The longest slow-mode interval: six hours.
pub const MAX_SLOW_MODE_SECONDS: u32 = 6 * 60 * 60;
/// The longest reaction, in bytes: one grapheme cluster (a family emoji with skin tones is ~35).
pub const MAX_REACTION_BYTES: usize = 64;

/// Why a value was refused; the message says what is wrong, without naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue(pub String);

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

fn text(raw: &str, rules: kith_platform::text::TextRules) -> Result<String, InvalidValue> {
    kith_platform::text::parse(raw, rules).map_err(|err| InvalidValue(err.to_string()))
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
    /// A message's text: 1 to 10,000 characters on several lines.
    Body,
    kith_platform::text::TextRules::lines(1, MAX_BODY_CHARS)
);
text_value!(
    /// A thread's title: one line of 1 to 200 characters.
    Title,
    kith_platform::text::TextRules::line(1, MAX_TITLE_CHARS)
);
text_value!(
    /// Why someone reports a message: 1 to 1,000 characters on several lines.
    ReportReason,
    kith_platform::text::TextRules::lines(1, MAX_REASON_CHARS)
);

text_value!(
    /// What to search for: one line of 1 to 200 characters, read as a web search (`"a phrase"`,
    /// `or`, `-without`).
    SearchQuery,
    kith_platform::text::TextRules::line(1, MAX_SEARCH_CHARS)
);

/// A reaction: exactly one grapheme cluster (an emoji, with its modifiers and joiners, or any
/// other single character a person sees as one), visible, with no control or bidi character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reaction(String);

impl Reaction {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if raw.len() > MAX_REACTION_BYTES {
            return Err(InvalidValue(format!(
                "a reaction is one emoji or character, at most {MAX_REACTION_BYTES} bytes"
            )));
        }
        let value = text(
            raw,
            kith_platform::text::TextRules::line(1, MAX_REACTION_BYTES),
        )?;
        if value.chars().any(char::is_whitespace) || value.graphemes(true).count() != 1 {
            return Err(InvalidValue(
                "a reaction is exactly one emoji or character (one grapheme cluster)".into(),
            ));
        }
        Ok(Self(value))
    }

    pub fn from_stored(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who a message mentions, resolved when it was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mentions {
    /// Members mentioned by handle, each once, in the order first mentioned.
    pub members: Vec<Uuid>,
    /// `@cohort`: everyone who reads the conversation.
    pub everyone: bool,
}

/// What a body says it mentions, before anyone is looked up: `@cohort`, and the handles written
/// as `@handle`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenMentions {
    /// `@cohort` (any case) appears as a word.
    pub everyone: bool,
    /// Each `@handle` word: the handle as written, lowercased, and without a trailing `.` or `-`
    /// when it has one (sentence punctuation, or part of a handle such as `ann.`: both are
    /// looked up). At most [`MAX_MENTIONS`] words.
    pub handles: Vec<Vec<String>>,
}

impl WrittenMentions {
    /// Finds the mentions in `body`. An `@` starts a mention only at the start of a word (so an
    /// e-mail address mentions nobody); the handle is 3 to 30 characters of `a-z`, `0-9`, `_`,
    /// `.` and `-`, starting with a letter or a digit, as membership accepts handles, and must
    /// not run on into other letters. More than [`MAX_MENTIONS`] distinct handles is refused,
    /// whether or not they name anyone: resolving them is work done for the writer.
    pub fn find(body: &Body) -> Result<Self, usize> {
        let text = body.as_str();
        let handle_char = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
        let mut found = Self::default();
        let mut previous: Option<char> = None;
        for (at, c) in text.char_indices() {
            let starts_word = previous.is_none_or(|p| !(p.is_alphanumeric() || "_.-@".contains(p)));
            previous = Some(c);
            if c != '@' || !starts_word {
                continue;
            }
            let rest = &text[at + 1..];
            let end = rest.find(|c: char| !handle_char(c)).unwrap_or(rest.len());
            if rest[end..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '@')
            {
                continue;
            }
            let written = rest[..end].to_ascii_lowercase();
            if written == "cohort" {
                found.everyone = true;
                continue;
            }
            let mut forms: Vec<String> = Vec::with_capacity(2);
            for form in [written.as_str(), written.trim_end_matches(['.', '-'])] {
                let valid = (3..=30).contains(&form.len())
                    && form.starts_with(|c: char| c.is_ascii_alphanumeric());
                if valid && !forms.iter().any(|f| f == form) {
                    forms.push(form.to_owned());
                }
            }
            if !forms.is_empty() && !found.handles.contains(&forms) {
                found.handles.push(forms);
            }
        }
        if found.handles.len() > MAX_MENTIONS {
            return Err(found.handles.len());
        }
        Ok(found)
    }

    /// Every form to look up.
    pub fn lookups(&self) -> impl Iterator<Item = &str> {
        self.handles.iter().flatten().map(String::as_str)
    }
}

/// A slow-mode interval: 0 (off) to six hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SlowMode(u32);

impl SlowMode {
    pub fn parse(seconds: u32) -> Result<Self, InvalidValue> {
        if seconds > MAX_SLOW_MODE_SECONDS {
            return Err(InvalidValue(format!(
                "slow mode is at most {MAX_SLOW_MODE_SECONDS} seconds (six hours); 0 turns it off"
            )));
        }
        Ok(Self(seconds))
    }

    pub fn from_stored(seconds: u32) -> Self {
        Self(seconds)
    }

    pub fn seconds(self) -> u32 {
        self.0
    }
}
