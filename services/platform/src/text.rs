//! The one check of free text that every API field goes through, so that nothing a caller types
//! can stop a read model, mislead a reader or slip past a length limit.
//!
//! A value is normalised to Unicode NFC (so that the same text typed two ways compares equal),
//! trimmed, and measured in characters. It may not hold control characters (a multi-line field
//! may hold line breaks and tabs; a CR LF pair becomes LF), nor the characters that reorder text
//! on screen (bidirectional overrides and isolates: a file name `exe.txt` shown as `txt.exe`),
//! nor Unicode non-characters; and a value that is not empty must show something: one made only
//! of invisible characters (zero-width spaces, joiners, fillers) is refused.

use std::fmt;

use unicode_normalization::UnicodeNormalization;

/// The rules for one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRules {
    /// Fewest characters after trimming (0: may be empty).
    pub min: usize,
    /// Most characters after trimming.
    pub max: usize,
    /// Whether line breaks and tabs are allowed.
    pub multiline: bool,
}

impl TextRules {
    /// One line of `min` to `max` characters.
    pub const fn line(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            multiline: false,
        }
    }

    /// Several lines, `min` to `max` characters in all.
    pub const fn lines(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            multiline: true,
        }
    }
}

/// Why a value was refused; the message says what is wrong without naming the field (the caller
/// knows which field it checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextError(String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

/// Characters that change the order in which text is shown: the embeddings and overrides
/// (U+202A–U+202E) and the isolates (U+2066–U+2069).
fn reorders(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing: format characters, joiners, fillers, variation selectors and
/// tags. (Whitespace is trimmed or counted apart.)
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    ) || reorders(c)
}

/// Unicode non-characters, which are never meant to be interchanged.
fn noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// Checks `raw` against `rules`; returns the value to store: NFC, trimmed, line breaks as LF.
pub fn parse(raw: &str, rules: TextRules) -> Result<String, TextError> {
    let normalised: String = if rules.multiline {
        raw.replace("\r\n", "\n").nfc().collect()
    } else {
        raw.nfc().collect()
    };
    let text = normalised.trim();
    let chars = text.chars().count();
    if chars < rules.min || chars > rules.max {
        return Err(TextError(if rules.min == 0 {
            format!("must be at most {} characters", rules.max)
        } else {
            format!("must be {} to {} characters", rules.min, rules.max)
        }));
    }
    for c in text.chars() {
        if c.is_control() && !(rules.multiline && (c == '\n' || c == '\t')) {
            return Err(TextError(if rules.multiline {
                format!(
                    "must not contain control characters other than line breaks and tabs (found U+{:04X})",
                    u32::from(c)
                )
            } else {
                format!(
                    "must be one line without control characters (found U+{:04X})",
                    u32::from(c)
                )
            }));
        }
        if reorders(c) {
            return Err(TextError(format!(
                "must not contain characters that reorder text (found U+{:04X})",
                u32::from(c)
            )));
        }
        if noncharacter(c) {
            return Err(TextError(format!(
                "must not contain Unicode non-characters (found U+{:04X})",
                u32::from(c)
            )));
        }
    }
    if !text.is_empty() && text.chars().all(|c| c.is_whitespace() || invisible(c)) {
        return Err(TextError(
            "must contain something visible, not only invisible characters".to_owned(),
        ));
    }
    Ok(text.to_owned())
}

/// Text from an event, made safe to store in a PostgreSQL `text` column, which cannot hold NUL:
/// an event written before today's rules (or by another version) may still carry one, and a read
/// model must store it rather than stop. NUL becomes U+FFFD.
pub fn storable(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') {
        std::borrow::Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: TextRules = TextRules::line(1, 10);
    const LINES: TextRules = TextRules::lines(0, 20);

    #[test]
    fn text_is_trimmed_normalised_and_counted_in_characters() {
        assert_eq!(parse("  Olive  ", LINE).unwrap(), "Olive");
        // "é" typed as e + combining acute is stored as the one character.
        assert_eq!(parse("Cafe\u{301}", LINE).unwrap(), "Caf\u{E9}");
        assert_eq!(parse("ééééééééé", LINE).unwrap().chars().count(), 9);
        assert!(parse("ééééééééééé", LINE).is_err());
        assert!(parse("", LINE).is_err());
        assert_eq!(parse("", LINES).unwrap(), "");
    }

    #[test]
    fn control_characters_are_refused_except_line_breaks_where_lines_are_allowed() {
        assert!(parse("a\u{0}b", LINE).is_err());
        assert!(parse("a\u{0}b", LINES).is_err());
        assert!(parse("a\nb", LINE).is_err());
        assert!(parse("a\u{7}b", LINES).is_err());
        assert!(parse("a\u{85}b", LINES).is_err());
        assert_eq!(parse("a\r\nb\tc", LINES).unwrap(), "a\nb\tc");
        assert!(parse("a\rb", LINES).is_err());
    }

    #[test]
    fn characters_that_reorder_text_or_show_nothing_are_refused() {
        assert!(parse("exe\u{202E}txt", LINE).is_err());
        assert!(parse("a\u{2067}b", LINES).is_err());
        assert!(parse("\u{200B}\u{200B}", LINE).is_err());
        assert!(parse("\u{3164}", LINE).is_err());
        assert!(parse("\u{FEFF} \u{2060}", LINES).is_err());
        assert!(parse("a\u{FFFF}", LINE).is_err());
        // Visible text with a joiner inside (an emoji sequence) is fine.
        assert!(parse("👩\u{200D}💻", LINE).is_ok());
    }

    #[test]
    fn text_from_an_event_is_made_storable() {
        assert_eq!(storable("a\u{0}b"), "a\u{FFFD}b");
        assert!(matches!(storable("ab"), std::borrow::Cow::Borrowed("ab")));
    }
}
