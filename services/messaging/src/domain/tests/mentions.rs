//! Finding the mentions written in a body, before anyone is looked up.

use super::super::{MAX_MENTIONS, WrittenMentions};
use super::body;

fn found(text: &str) -> WrittenMentions {
    WrittenMentions::find(&body(text)).expect("within the limit")
}

fn handles(text: &str) -> Vec<Vec<String>> {
    found(text).handles
}

fn forms(list: &[&[&str]]) -> Vec<Vec<String>> {
    list.iter()
        .map(|forms| forms.iter().map(|f| (*f).to_owned()).collect())
        .collect()
}

#[test]
fn given_handles_at_word_starts_when_found_then_each_is_lowercased_once_in_order() {
    assert_eq!(
        handles("@Bea thanks, and @sam_k too; @bea again"),
        forms(&[&["bea"], &["sam_k"]])
    );
}

#[test]
fn given_a_trailing_full_stop_when_found_then_both_forms_are_looked_up() {
    assert_eq!(handles("well done @ann."), forms(&[&["ann.", "ann"]]));
    assert_eq!(handles("ask @j.doe-"), forms(&[&["j.doe-", "j.doe"]]));
}

#[test]
fn given_an_email_address_when_found_then_it_mentions_nobody() {
    assert_eq!(handles("write to bea@example.com"), forms(&[]));
}

#[test]
fn given_words_that_are_not_handles_when_found_then_they_stay_text() {
    // Too short, too long, a bad first character, running on into letters, a lone @.
    let long = format!("@{}", "a".repeat(31));
    for text in ["@ab", long.as_str(), "@_bea", "@beaé", "@ alone", "@@bea"] {
        assert_eq!(handles(text), forms(&[]), "{text}");
    }
}

#[test]
fn given_at_cohort_in_any_case_when_found_then_it_mentions_everyone_and_no_handle() {
    let hello = found("Hello @COHORT!");
    assert!(hello.everyone);
    assert!(hello.handles.is_empty());
    assert!(!found("hello @cohorts").everyone);
}

#[test]
fn given_the_most_distinct_handles_allowed_when_found_then_all_are_kept() {
    let text: String = (0..MAX_MENTIONS).map(|n| format!("@member{n} ")).collect();
    assert_eq!(found(&text).handles.len(), MAX_MENTIONS);
    let repeated = format!("{text}{text}");
    assert_eq!(found(&repeated).handles.len(), MAX_MENTIONS);
}

#[test]
fn given_one_distinct_handle_too_many_when_found_then_it_is_refused_with_the_count() {
    let text: String = (0..=MAX_MENTIONS).map(|n| format!("@member{n} ")).collect();
    assert_eq!(WrittenMentions::find(&body(&text)), Err(MAX_MENTIONS + 1));
}
