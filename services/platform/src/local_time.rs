//! Wall-clock times in a member's or a cohort's time zone, turned into instants by one rule for
//! every service: a wall time that a daylight-saving change skips moves one hour later, as the
//! clocks do; one that happens twice takes the earlier instant.

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant of `wall` in `zone`; `None` only where a zone skipped more than an hour (a whole
/// day, as some Pacific zones once did).
pub fn instant(zone: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    zone.from_local_datetime(&wall)
        .earliest()
        .or_else(|| {
            let later = wall.checked_add_signed(TimeDelta::hours(1))?;
            zone.from_local_datetime(&later).earliest()
        })
        .map(|local| local.with_timezone(&Utc))
}

/// An IANA zone name (`Europe/Berlin`), or a message saying what is wrong with it.
pub fn parse_zone(raw: &str) -> Result<Tz, String> {
    raw.trim().parse::<Tz>().map_err(|_| {
        // Quoted back only when short: the caller's text is not an error message's payload.
        if raw.chars().count() <= 64 {
            format!("unknown time zone {raw:?}; use an IANA name such as Europe/Berlin")
        } else {
            "unknown time zone; use an IANA name such as Europe/Berlin".to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn wall(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(h, min, 0))
            .expect("a valid date")
    }

    #[test]
    fn a_skipped_wall_time_moves_one_hour_later() {
        // Berlin skipped 02:00-03:00 on 2026-03-29.
        let at = instant(chrono_tz::Europe::Berlin, wall(2026, 3, 29, 2, 30)).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-03-29T01:30:00+00:00");
    }

    #[test]
    fn a_repeated_wall_time_takes_the_earlier_instant() {
        // Berlin lived 02:00-03:00 twice on 2026-10-25, first at +02:00.
        let at = instant(chrono_tz::Europe::Berlin, wall(2026, 10, 25, 2, 30)).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }

    #[test]
    fn unknown_zones_are_named_in_the_error() {
        assert!(
            parse_zone("Mars/Olympus")
                .unwrap_err()
                .contains("Mars/Olympus")
        );
        assert_eq!(parse_zone(" Asia/Tokyo ").unwrap(), chrono_tz::Asia::Tokyo);
    }
}
