//! Wire requests to domain values, with a field violation for everything wrong.

use kith_platform::validation::Violations;
use kith_proto::cohorts as pb;

use crate::codec::{kind_from_pb, rsvp_from_pb};
use crate::domain::{
    Capacity, CohortName, Dates, Details, Goal, Kind, Minutes, Recurrence, Rsvp, TimeZone,
};

/// The fields of a cohort's details as they arrive, shared by create and update.
pub(super) struct DetailFields<'a> {
    pub(super) name: &'a str,
    /// `None` when absent: the kind's default.
    pub(super) capacity: Option<u32>,
    pub(super) starts_on: Option<&'a pb::Date>,
    pub(super) ends_on: Option<&'a pb::Date>,
    pub(super) time_zone: &'a str,
    pub(super) goal: &'a str,
}

/// A kind that must be specified.
pub(super) fn kind(v: &mut Violations, value: i32) -> Option<Kind> {
    let kind = kind_from_pb(value);
    if kind.is_none() {
        v.add(
            "kind",
            "must be one of MASTERMIND, COACHING, COURSE, CIRCLE",
        );
    }
    kind
}

fn date(
    v: &mut Violations,
    field: &str,
    value: Option<&pb::Date>,
) -> Option<Option<chrono::NaiveDate>> {
    match value {
        None => Some(None),
        Some(d) => v.date(field, d.year, d.month, d.day).map(Some),
    }
}

/// A cohort's details; an absent capacity takes the kind's default.
pub(super) fn details(v: &mut Violations, f: DetailFields<'_>, kind: Kind) -> Option<Details> {
    let name = v.check("name", CohortName::parse(f.name));
    let capacity = match f.capacity {
        None => Some(kind.default_capacity()),
        Some(capacity) => v.check("capacity", Capacity::parse(capacity)),
    };
    let starts_on = date(v, "starts_on", f.starts_on);
    let ends_on = date(v, "ends_on", f.ends_on);
    let dates = match (starts_on, ends_on) {
        (Some(start), Some(end)) => v.check("ends_on", Dates::new(start, end)),
        _ => None,
    };
    let time_zone = if f.time_zone.trim().is_empty() {
        Some(TimeZone::default())
    } else {
        v.check("time_zone", TimeZone::parse(f.time_zone))
    };
    let goal = v.check("goal", Goal::parse(f.goal));
    Some(Details {
        name: name?,
        kind,
        capacity: capacity?,
        dates: dates?,
        time_zone: time_zone?,
        goal: goal?,
    })
}

/// A session length.
pub(super) fn minutes(v: &mut Violations, value: u32) -> Option<Minutes> {
    v.check("duration_minutes", Minutes::parse(value))
}

/// 0 or 1: once; 2 to 52: weekly.
pub(super) fn recurrence(v: &mut Violations, occurrences: u32) -> Option<Recurrence> {
    if occurrences <= 1 {
        Some(Recurrence::Once)
    } else {
        v.check("weekly_occurrences", Recurrence::weekly(occurrences))
    }
}

/// An RSVP that must be specified.
pub(super) fn rsvp(v: &mut Violations, value: i32) -> Option<Rsvp> {
    let rsvp = rsvp_from_pb(value);
    if rsvp.is_none() {
        v.add("response", "must be one of YES, NO, MAYBE");
    }
    rsvp
}

/// A community version: zero (do not wait) or a version from a membership reply.
pub(super) fn community_version(v: &mut Violations, value: i64) -> i64 {
    if value < 0 {
        v.add("community_version", "must not be negative");
    }
    value
}
