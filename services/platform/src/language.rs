//! The languages a community may write in, as far as Kith treats text by language: full-text
//! search stems words by the community's language (so "shipping" finds "shipped"). A language is
//! an ISO 639-1 code; each maps to the PostgreSQL text search configuration that stems it. No
//! language (the empty code) searches words as written, in any script.

/// Every supported code and its PostgreSQL configuration, in code order. PostgreSQL 13 and later
/// ship them all.
pub const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "arabic"),
    ("ca", "catalan"),
    ("da", "danish"),
    ("de", "german"),
    ("el", "greek"),
    ("en", "english"),
    ("es", "spanish"),
    ("eu", "basque"),
    ("fi", "finnish"),
    ("fr", "french"),
    ("ga", "irish"),
    ("hi", "hindi"),
    ("hu", "hungarian"),
    ("hy", "armenian"),
    ("id", "indonesian"),
    ("it", "italian"),
    ("lt", "lithuanian"),
    ("ne", "nepali"),
    ("nl", "dutch"),
    ("no", "norwegian"),
    ("pt", "portuguese"),
    ("ro", "romanian"),
    ("ru", "russian"),
    ("sr", "serbian"),
    ("sv", "swedish"),
    ("ta", "tamil"),
    ("tr", "turkish"),
    ("yi", "yiddish"),
];

/// The configuration for words as written, whatever the language.
pub const NO_LANGUAGE_CONFIG: &str = "simple";

/// The PostgreSQL text search configuration of `code` (an ISO 639-1 code, lowercase), or `None`
/// when Kith does not support it. The empty code is no language.
pub fn search_config(code: &str) -> Option<&'static str> {
    if code.is_empty() {
        return Some(NO_LANGUAGE_CONFIG);
    }
    LANGUAGES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|at| LANGUAGES[at].1)
}

/// Every supported code, for error messages.
pub fn supported() -> String {
    LANGUAGES
        .iter()
        .map(|(code, _)| *code)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_so_that_lookup_finds_each() {
        assert!(LANGUAGES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, config) in LANGUAGES {
            assert_eq!(search_config(code), Some(*config));
        }
    }

    #[test]
    fn no_language_searches_words_as_written_and_unknown_codes_are_none() {
        assert_eq!(search_config(""), Some("simple"));
        assert_eq!(search_config("EN"), None);
        assert_eq!(search_config("xx"), None);
        assert_eq!(search_config("english"), None);
    }
}
