//! Time in the member's own zone: whether an instant falls in their quiet hours and when those
//! end, and when their next digest goes out. Wall times are turned into instants by the
//! platform's one rule ([`kith_platform::local_time::instant`]), so a quiet-hours end or a digest
//! hour that a daylight-saving change skips comes an hour later, never not at all.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use kith_platform::local_time;

use super::preferences::{Digest, QuietHours};

/// The instant quiet hours that hold `at` end, or `None` when `at` is outside them.
pub fn quiet_until(zone: Tz, quiet: QuietHours, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = at.with_timezone(&zone);
    let minute = local.hour() * 60 + local.minute();
    if !quiet.contains(minute) {
        return None;
    }
    // Across midnight and before it: they end tomorrow.
    let today = local.date_naive();
    let end_day = if quiet.start() > quiet.end() && minute >= quiet.start() {
        today.checked_add_days(Days::new(1))?
    } else {
        today
    };
    let end = wall(end_day, quiet.end())?;
    let until = local_time::instant(zone, end)?;
    // A wall time an autumn change makes happen twice can resolve before `at`: then the second
    // one is meant.
    Some(if until > at {
        until
    } else {
        until + chrono::TimeDelta::hours(1)
    })
}

/// The first instant after `after` at which a digest goes out, or `None` without digests.
pub fn next_digest(zone: Tz, digest: Digest, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (minute, weekly) = match digest {
        Digest::None => return None,
        Digest::Daily { hour, minute } => (u32::from(hour) * 60 + u32::from(minute), false),
        Digest::Weekly { hour, minute } => (u32::from(hour) * 60 + u32::from(minute), true),
    };
    let start = after.with_timezone(&zone).date_naive();
    (0..=8u64)
        .filter_map(|days| start.checked_add_days(Days::new(days)))
        .filter(|day| !weekly || day.weekday() == Weekday::Mon)
        .filter_map(|day| local_time::instant(zone, wall(day, minute)?))
        .find(|at| *at > after)
}

fn wall(day: NaiveDate, minute: u32) -> Option<chrono::NaiveDateTime> {
    Some(day.and_time(NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?))
}
