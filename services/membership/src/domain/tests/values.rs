//! Parsing of the value types, and role ranks.

use super::super::{
    Answer, Bio, CommunityName, Description, DisplayName, Handle, InvalidValue, Reason, Role,
};

fn chars(c: char, count: usize) -> String {
    std::iter::repeat_n(c, count).collect()
}

#[test]
fn a_community_name_is_trimmed() {
    let name = CommunityName::parse("  Morning Runners \n").unwrap();
    assert_eq!(name.as_str(), "Morning Runners");
    assert_eq!(name.into_inner(), "Morning Runners".to_owned());
}

#[test]
fn an_empty_or_blank_community_name_is_refused() {
    assert!(CommunityName::parse("").is_err());
    assert!(CommunityName::parse("   \t").is_err());
}

#[test]
fn a_community_name_counts_characters_not_bytes() {
    assert!(CommunityName::parse(&chars('é', 100)).is_ok());
    assert!(CommunityName::parse(&chars('é', 101)).is_err());
}

#[test]
fn a_community_name_with_a_control_character_is_refused() {
    let refused = CommunityName::parse("Run\u{7}ners").unwrap_err();
    assert_eq!(
        refused.to_string(),
        "must be one line without control characters (found U+0007)"
    );
    assert!(CommunityName::parse("Run\nners").is_err());
}

#[test]
fn a_description_may_be_empty_but_not_over_2000_characters() {
    assert_eq!(Description::parse("  ").unwrap().as_str(), "");
    assert!(Description::parse(&chars('a', 2000)).is_ok());
    let refused = Description::parse(&chars('a', 2001)).unwrap_err();
    assert_eq!(
        refused,
        InvalidValue("must be at most 2000 characters".to_owned())
    );
}

#[test]
fn a_description_may_span_several_lines() {
    assert!(Description::parse("We run.\nEvery morning.").is_ok());
}

#[test]
fn a_display_name_is_1_to_80_characters_without_control_characters() {
    assert!(DisplayName::parse("").is_err());
    assert!(DisplayName::parse(&chars('x', 80)).is_ok());
    assert!(DisplayName::parse(&chars('x', 81)).is_err());
    assert!(DisplayName::parse("Ada\tLovelace").is_err());
    assert_eq!(DisplayName::parse(" Ada ").unwrap().as_str(), "Ada");
}

#[test]
fn a_handle_is_lowercased() {
    assert_eq!(
        Handle::parse("Ada_L.ove-1").unwrap().as_str(),
        "ada_l.ove-1"
    );
}

#[test]
fn a_handle_must_be_3_to_30_characters() {
    assert!(Handle::parse("ab").is_err());
    assert!(Handle::parse("abc").is_ok());
    assert!(Handle::parse(&chars('a', 30)).is_ok());
    let refused = Handle::parse(&chars('a', 31)).unwrap_err();
    assert_eq!(refused.to_string(), "must be 3 to 30 characters");
}

#[test]
fn a_handle_allows_only_letters_digits_underscores_dots_and_dashes() {
    for refused in ["ada lovelace", "ada@home", "ada!", "adé", "ada+1"] {
        assert!(
            Handle::parse(refused).is_err(),
            "{refused} should be refused"
        );
    }
    for accepted in ["ada", "ada_1", "a.d-a", "007"] {
        assert!(
            Handle::parse(accepted).is_ok(),
            "{accepted} should be accepted"
        );
    }
}

#[test]
fn a_handle_must_start_with_a_letter_or_a_digit() {
    for refused in ["_ada", ".ada", "-ada"] {
        let error = Handle::parse(refused).unwrap_err();
        assert_eq!(error.to_string(), "must start with a letter or a digit");
    }
    assert!(Handle::parse("9ada").is_ok());
}

#[test]
fn a_handle_does_not_fold_look_alike_letters_into_ascii() {
    // Cyrillic `к` and a fullwidth `ｋ` only look like `k`: refused, not folded.
    assert!(Handle::parse("\u{43A}elvin").is_err());
    assert!(Handle::parse("\u{FF4B}elvin").is_err());
}

#[test]
fn a_handle_is_normalised_before_it_is_compared() {
    // U+212A KELVIN SIGN is the same text as `K` (canonically equivalent): NFC makes it one.
    assert_eq!(Handle::parse("\u{212A}elvin").unwrap().as_str(), "kelvin");
}

#[test]
fn a_bio_and_a_reason_may_be_empty_but_not_over_500_characters() {
    assert!(Bio::parse("").is_ok());
    assert!(Bio::parse(&chars('b', 500)).is_ok());
    assert!(Bio::parse(&chars('b', 501)).is_err());
    assert!(Reason::parse("").is_ok());
    assert!(Reason::parse(&chars('r', 500)).is_ok());
    assert!(Reason::parse(&chars('r', 501)).is_err());
}

#[test]
fn an_answer_is_1_to_1000_characters() {
    assert!(Answer::parse("  ").is_err());
    assert!(Answer::parse(&chars('a', 1000)).is_ok());
    let refused = Answer::parse(&chars('a', 1001)).unwrap_err();
    assert_eq!(refused.to_string(), "must be 1 to 1000 characters");
}

#[test]
fn roles_rank_by_authority() {
    assert!(Role::Owner.rank() > Role::Host.rank());
    assert!(Role::Host.rank() > Role::Coach.rank());
    assert_eq!(Role::Coach.rank(), Role::Moderator.rank());
    assert!(Role::Moderator.rank() > Role::Member.rank());
}
