use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::schedule::{next_digest, quiet_until};
use crate::domain::{Digest, QuietHours};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 instant")
        .with_timezone(&Utc)
}

fn zone(name: &str) -> Tz {
    name.parse().expect("an IANA zone")
}

fn night() -> QuietHours {
    QuietHours::new(22 * 60, 7 * 60).expect("valid quiet hours")
}

#[test]
fn given_quiet_hours_across_midnight_a_late_event_waits_for_the_local_morning() {
    // 23:30 in Berlin (CET, +01:00) is quiet until 07:00 local, 06:00 UTC.
    let held = quiet_until(zone("Europe/Berlin"), night(), utc("2026-01-14T22:30:00Z"));
    assert_eq!(held, Some(utc("2026-01-15T06:00:00Z")));
}

#[test]
fn given_quiet_hours_an_event_outside_them_is_not_held() {
    assert_eq!(
        quiet_until(zone("Europe/Berlin"), night(), utc("2026-01-14T12:00:00Z")),
        None
    );
    // 06:59 local is still quiet, 07:00 is not.
    assert!(quiet_until(zone("Europe/Berlin"), night(), utc("2026-01-15T05:59:00Z")).is_some());
    assert_eq!(
        quiet_until(zone("Europe/Berlin"), night(), utc("2026-01-15T06:00:00Z")),
        None
    );
}

#[test]
fn given_the_spring_change_quiet_hours_end_at_seven_local_summer_time() {
    // New York moves from EST to EDT at 02:00 on 2026-03-08: 23:00 EST on the 7th is held until
    // 07:00 EDT on the 8th, which is 11:00 UTC (not 12:00, as a fixed offset would say).
    let held = quiet_until(
        zone("America/New_York"),
        night(),
        utc("2026-03-08T04:00:00Z"),
    );
    assert_eq!(held, Some(utc("2026-03-08T11:00:00Z")));
}

#[test]
fn given_the_autumn_change_quiet_hours_last_one_hour_longer_in_utc() {
    // Berlin moves from CEST to CET at 03:00 on 2026-10-25: 23:00 CEST on the 24th (21:00 UTC)
    // is held until 07:00 CET, 06:00 UTC: nine hours, not eight.
    let held = quiet_until(zone("Europe/Berlin"), night(), utc("2026-10-24T21:00:00Z"));
    assert_eq!(held, Some(utc("2026-10-25T06:00:00Z")));
}

#[test]
fn given_quiet_hours_ending_in_the_skipped_hour_they_end_an_hour_later_by_the_clock() {
    // Quiet 01:00-02:30 in Berlin on the night 02:00-03:00 does not exist (2026-03-29): at
    // 01:15 CET (00:15 UTC) they end at 03:30 CEST, 01:30 UTC.
    let quiet = QuietHours::new(60, 150).unwrap();
    let held = quiet_until(zone("Europe/Berlin"), quiet, utc("2026-03-29T00:15:00Z"));
    assert_eq!(held, Some(utc("2026-03-29T01:30:00Z")));
}

#[test]
fn given_quiet_hours_ending_in_the_repeated_hour_an_event_in_its_second_pass_waits_for_it() {
    // Quiet 22:00-02:30 in Berlin; 02:10 CET (the second 02:10 of 2026-10-25, 01:10 UTC) is held
    // until 02:30 CET, 01:30 UTC, not until the first 02:30 (already past).
    let quiet = QuietHours::new(22 * 60, 150).unwrap();
    let held = quiet_until(zone("Europe/Berlin"), quiet, utc("2026-10-25T01:10:00Z"));
    assert_eq!(held, Some(utc("2026-10-25T01:30:00Z")));
}

#[test]
fn given_a_daily_digest_at_eight_two_members_in_two_zones_get_it_at_their_own_eight() {
    let after = utc("2026-06-01T12:00:00Z");
    let daily = Digest::Daily { hour: 8, minute: 0 };
    // Tokyo (+09:00): 12:00 UTC is 21:00 local; next 08:00 local is 23:00 UTC.
    assert_eq!(
        next_digest(zone("Asia/Tokyo"), daily, after),
        Some(utc("2026-06-01T23:00:00Z"))
    );
    // New York (EDT, -04:00): 12:00 UTC is 08:00 local exactly, so the next is tomorrow's.
    assert_eq!(
        next_digest(zone("America/New_York"), daily, after),
        Some(utc("2026-06-02T12:00:00Z"))
    );
}

#[test]
fn given_a_daily_digest_at_a_quarter_to_it_goes_at_that_minute_in_a_quarter_hour_zone() {
    // Kathmandu (+05:45): 00:00 UTC is 05:45 local; 07:45 local is 02:00 UTC.
    let daily = Digest::Daily {
        hour: 7,
        minute: 45,
    };
    assert_eq!(
        next_digest(zone("Asia/Kathmandu"), daily, utc("2026-06-01T00:00:00Z")),
        Some(utc("2026-06-01T02:00:00Z"))
    );
    // Exactly at the digest time, the next one is a day later.
    assert_eq!(
        next_digest(zone("Asia/Kathmandu"), daily, utc("2026-06-01T02:00:00Z")),
        Some(utc("2026-06-02T02:00:00Z"))
    );
}

#[test]
fn given_a_weekly_digest_it_goes_out_on_monday_at_the_local_hour() {
    // 2026-06-03 is a Wednesday; the next Monday is 2026-06-08, 07:00 in Berlin (CEST).
    let weekly = Digest::Weekly { hour: 7, minute: 0 };
    assert_eq!(
        next_digest(zone("Europe/Berlin"), weekly, utc("2026-06-03T10:00:00Z")),
        Some(utc("2026-06-08T05:00:00Z"))
    );
    assert_eq!(
        next_digest(
            zone("Europe/Berlin"),
            Digest::None,
            utc("2026-06-03T10:00:00Z")
        ),
        None
    );
}

#[test]
fn quiet_hours_refuse_an_empty_or_out_of_range_window() {
    assert!(QuietHours::new(60, 60).is_err());
    assert!(QuietHours::new(1440, 60).is_err());
    assert!(QuietHours::new(0, 1439).is_ok());
}
