use super::id;
use crate::domain::{Channel, Kind, Level, LevelSource, Place, Preferences, Scope, decide};

const COMMUNITY: u128 = 100;
const COHORT: u128 = 200;
const THREAD: u128 = 300;

fn place() -> Place {
    Place {
        community: Some(id(COMMUNITY)),
        cohort: Some(id(COHORT)),
        thread: Some(id(THREAD)),
    }
}

fn everywhere(_: Channel) -> bool {
    true
}

/// The reason on each channel, in channel order.
fn reasons(kind: Kind, preferences: &Preferences) -> Vec<(Channel, bool, &'static str)> {
    decide(kind, place(), preferences, everywhere)
        .channels
        .iter()
        .map(|c| (c.channel, c.deliver, c.reason))
        .collect()
}

#[test]
fn given_no_preferences_every_channel_delivers_by_the_rule() {
    let decision = decide(Kind::Mention, place(), &Preferences::default(), everywhere);
    assert_eq!(decision.level, Level::All);
    assert_eq!(decision.level_source, LevelSource::Default);
    assert!(
        decision
            .channels
            .iter()
            .all(|c| c.deliver && c.reason == "MENTIONED")
    );
}

#[test]
fn given_a_muted_cohort_even_a_mention_is_withheld_everywhere() {
    let mut preferences = Preferences::default();
    preferences
        .levels
        .insert(Scope::Cohort(id(COHORT)), Level::Muted);
    let decision = decide(Kind::Mention, place(), &preferences, everywhere);
    assert!(!decision.delivers());
    assert_eq!(decision.level_source, LevelSource::Cohort);
    assert!(decision.channels.iter().all(|c| c.reason == "COHORT_MUTED"));
}

#[test]
fn given_mentions_only_for_the_community_a_new_thread_is_withheld_but_a_mention_is_not() {
    let mut preferences = Preferences::default();
    preferences
        .levels
        .insert(Scope::Community(id(COMMUNITY)), Level::MentionsAndReplies);
    assert!(
        reasons(Kind::NewThread, &preferences).iter().all(
            |(_, deliver, reason)| !deliver && *reason == "COMMUNITY_MENTIONS_AND_REPLIES_ONLY"
        )
    );
    assert!(
        reasons(Kind::Mention, &preferences)
            .iter()
            .all(|(_, deliver, _)| *deliver)
    );
    assert!(
        reasons(Kind::Reply, &preferences)
            .iter()
            .all(|(_, deliver, _)| *deliver)
    );
}

#[test]
fn given_a_cohort_level_it_wins_over_the_community_level() {
    let mut preferences = Preferences::default();
    preferences
        .levels
        .insert(Scope::Community(id(COMMUNITY)), Level::Muted);
    preferences
        .levels
        .insert(Scope::Cohort(id(COHORT)), Level::All);
    let decision = decide(Kind::NewThread, place(), &preferences, everywhere);
    assert_eq!(
        (decision.level, decision.level_source),
        (Level::All, LevelSource::Cohort)
    );
    assert!(decision.delivers());
}

#[test]
fn given_a_muted_thread_replies_are_withheld_but_mentions_in_it_come_through() {
    let mut preferences = Preferences::default();
    preferences.muted_threads.insert(id(THREAD));
    assert!(
        reasons(Kind::Reply, &preferences)
            .iter()
            .all(|(_, deliver, reason)| !deliver && *reason == "THREAD_MUTED")
    );
    assert!(
        reasons(Kind::Mention, &preferences)
            .iter()
            .all(|(_, deliver, _)| *deliver)
    );
}

#[test]
fn given_email_off_and_no_webhook_only_the_feed_delivers() {
    let mut preferences = Preferences::default();
    preferences.channels_off.insert(Channel::Email);
    let decision = decide(Kind::Reply, place(), &preferences, |channel| {
        channel != Channel::Webhook
    });
    let got: Vec<_> = decision
        .channels
        .iter()
        .map(|c| (c.channel, c.deliver, c.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (Channel::InApp, true, "REPLY_IN_FOLLOWED_THREAD"),
            (Channel::Email, false, "CHANNEL_OFF"),
            (Channel::Webhook, false, "NO_ADDRESS"),
        ]
    );
}

mod member {
    use crate::domain::member::{decide, evolve};
    use crate::domain::{Channel, Member, MemberCommand, MemberEvent, Preferences};

    fn given(events: &[MemberEvent]) -> Member {
        events.iter().fold(Member::default(), evolve)
    }

    #[test]
    fn given_no_preferences_an_unsubscribe_turns_email_off_and_only_email() {
        let state = given(&[]);
        let events = decide(&state, &MemberCommand::UnsubscribeEmail).unwrap();
        let mut expected = Preferences::default();
        expected.channels_off.insert(Channel::Email);
        assert_eq!(events, vec![MemberEvent::PreferencesSet(expected.clone())]);
        // Again: nothing more to record.
        let state = given(&events);
        assert!(
            decide(&state, &MemberCommand::UnsubscribeEmail)
                .unwrap()
                .is_empty()
        );
        assert_eq!(state.preferences, Some(expected));
    }

    #[test]
    fn given_preferences_setting_the_same_again_records_nothing() {
        let preferences = Preferences {
            time_zone: chrono_tz::Asia::Tokyo,
            ..Preferences::default()
        };
        let state = given(&[MemberEvent::PreferencesSet(preferences.clone())]);
        assert!(
            decide(&state, &MemberCommand::SetPreferences(preferences))
                .unwrap()
                .is_empty()
        );
        assert!(
            decide(&state, &MemberCommand::MarkRead(vec![]))
                .unwrap()
                .is_empty()
        );
    }
}

#[test]
fn given_no_preferences_a_new_thread_reaches_the_feed_and_webhook_but_not_email() {
    let got = reasons(Kind::NewThread, &Preferences::default());
    assert_eq!(
        got,
        vec![
            (Channel::InApp, true, "NEW_THREAD_IN_COHORT"),
            (Channel::Email, false, "FEED_ONLY"),
            (Channel::Webhook, true, "NEW_THREAD_IN_COHORT"),
        ]
    );
}
