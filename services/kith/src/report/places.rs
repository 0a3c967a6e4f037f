//! The cohort side of the engagement report: sessions (RSVP and attendance), the waitlist, and
//! who facilitates each cohort (for the facilitator response time), from cohorts' events.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Scope, nearest_rank, round, text};
use crate::events::Exported;

/// The sessions, RSVPs, attendance and waitlist of the cohorts in scope over the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Places {
    /// Sessions starting in the period, not cancelled.
    pub(crate) sessions: usize,
    /// Of those sessions' seats (members seated when each started), the share whose last
    /// answer was yes.
    pub(crate) rsvp_yes_rate: f64,
    /// Of the seats of those sessions with attendance recorded, the share recorded present.
    pub(crate) attendance_rate: f64,
    pub(crate) sessions_with_attendance: usize,
    /// Members waiting at the period's end.
    pub(crate) waitlist_at_end: usize,
    /// For promotions in the period: seconds from joining the waitlist to the seat.
    pub(crate) waitlist_wait_median_seconds: Option<i64>,
    pub(crate) waitlist_wait_p90_seconds: Option<i64>,
    pub(crate) promoted: usize,
}

/// A session as the history leaves it.
#[derive(Default)]
struct Session {
    cohort: String,
    starts_at: Option<DateTime<Utc>>,
    cancelled: bool,
    /// Each member's last answer: yes or not.
    answers: HashMap<String, bool>,
    present: Option<HashSet<String>>,
}

/// Who is where in the cohorts in scope, as the events go by.
#[derive(Default)]
pub(crate) struct Tracker {
    /// The cohorts in scope.
    cohorts: HashSet<String>,
    /// Each cohort's seat changes in order: (when, member, seated after it).
    seats: HashMap<String, Vec<(DateTime<Utc>, String, bool)>>,
    /// Who facilitates each cohort now.
    facilitators: HashMap<String, HashSet<String>>,
    sessions: HashMap<String, Session>,
    /// Who waits, per cohort, since when.
    waiting: HashMap<(String, String), DateTime<Utc>>,
    waits: Vec<i64>,
}

impl Tracker {
    /// Takes in one event (in recorded order, up to the period's end).
    pub(crate) fn take(&mut self, record: &Exported, scope: &Scope) {
        // Most of a history is messaging's: nothing here to look at.
        if !record.event_type.starts_with("kith.cohorts.v1.") {
            return;
        }
        let e = &record.event;
        let at = record.recorded_at;
        let cohort = text(e, "cohort_id").to_owned();
        let member = text(e, "member_id").to_owned();
        match record.event_type.as_str() {
            "kith.cohorts.v1.CohortCreated" => {
                let chosen = scope.cohort.as_deref().is_none_or(|c| c == cohort);
                if text(e, "community_id") == scope.community && chosen {
                    self.cohorts.insert(cohort);
                }
            }
            _ if !self.cohorts.contains(&cohort) => {}
            "kith.cohorts.v1.MemberJoinedCohort" => self.seat(&cohort, &member, at, true),
            "kith.cohorts.v1.WaitlistPromoted" => {
                self.seat(&cohort, &member, at, true);
                if let Some(since) = self.waiting.remove(&(cohort, member))
                    && at >= scope.from
                {
                    self.waits.push((at - since).num_seconds());
                }
            }
            "kith.cohorts.v1.MemberWaitlisted" => {
                self.waiting.insert((cohort, member), at);
            }
            "kith.cohorts.v1.MemberLeftCohort"
            | "kith.cohorts.v1.MemberRemovedFromCohort"
            | "kith.cohorts.v1.MemberReleased" => {
                self.seat(&cohort, &member, at, false);
                self.waiting.remove(&(cohort.clone(), member.clone()));
                if let Some(facilitating) = self.facilitators.get_mut(&cohort) {
                    facilitating.remove(&member);
                }
            }
            "kith.cohorts.v1.FacilitatorAssigned" => {
                self.facilitators.entry(cohort).or_default().insert(member);
            }
            "kith.cohorts.v1.FacilitatorRemoved" => {
                if let Some(facilitating) = self.facilitators.get_mut(&cohort) {
                    facilitating.remove(&member);
                }
            }
            "kith.cohorts.v1.SessionScheduled" | "kith.cohorts.v1.SessionRescheduled" => {
                let session = self
                    .sessions
                    .entry(text(e, "session_id").to_owned())
                    .or_default();
                session.cohort = cohort;
                session.starts_at = text(e, "starts_at").parse().ok();
            }
            "kith.cohorts.v1.SessionCancelled" => {
                if let Some(session) = self.sessions.get_mut(text(e, "session_id")) {
                    session.cancelled = true;
                }
            }
            "kith.cohorts.v1.SessionRsvp" => {
                if let Some(session) = self.sessions.get_mut(text(e, "session_id")) {
                    let yes = text(e, "response") == "RSVP_RESPONSE_YES";
                    session.answers.insert(member, yes);
                }
            }
            "kith.cohorts.v1.AttendanceRecorded" => {
                if let Some(session) = self.sessions.get_mut(text(e, "session_id")) {
                    let present = e["present"]
                        .as_array()
                        .map(|all| {
                            all.iter()
                                .filter_map(|m| m.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    session.present = Some(present);
                }
            }
            _ => {}
        }
    }

    fn seat(&mut self, cohort: &str, member: &str, at: DateTime<Utc>, seated: bool) {
        self.seats
            .entry(cohort.to_owned())
            .or_default()
            .push((at, member.to_owned(), seated));
    }

    /// Whether `conversation` is the conversation of a cohort in scope.
    pub(crate) fn is_cohort(&self, conversation: &str) -> bool {
        self.cohorts.contains(conversation)
    }

    /// Whether `member` facilitates the cohort whose conversation is `conversation` now (a
    /// cohort's conversation has the cohort's id).
    pub(crate) fn facilitates(&self, conversation: &str, member: &str) -> bool {
        self.facilitators
            .get(conversation)
            .is_some_and(|members| members.contains(member))
    }

    /// Who was seated in `cohort` at `at`.
    fn seated_at(&self, cohort: &str, at: DateTime<Utc>) -> BTreeSet<&str> {
        let mut seated = BTreeSet::new();
        for (when, member, now) in self.seats.get(cohort).into_iter().flatten() {
            if *when > at {
                break;
            }
            if *now {
                seated.insert(member.as_str());
            } else {
                seated.remove(member.as_str());
            }
        }
        seated
    }

    /// The figures, once every event up to the period's end was taken.
    pub(crate) fn figures(mut self, scope: &Scope) -> Places {
        let (mut seats, mut yes, mut expected, mut present) = (0usize, 0usize, 0usize, 0usize);
        let (mut sessions, mut recorded) = (0, 0);
        for session in self.sessions.values() {
            let Some(starts) = session.starts_at else {
                continue;
            };
            if session.cancelled || starts < scope.from || starts >= scope.to {
                continue;
            }
            sessions += 1;
            let seated = self.seated_at(&session.cohort, starts);
            seats += seated.len();
            yes += seated
                .iter()
                .filter(|m| session.answers.get(**m) == Some(&true))
                .count();
            if let Some(there) = &session.present {
                recorded += 1;
                expected += seated.len();
                present += seated.iter().filter(|m| there.contains(**m)).count();
            }
        }
        let share = |part: usize, whole: usize| {
            if whole == 0 {
                0.0
            } else {
                round(part as f64 / whole as f64)
            }
        };
        self.waits.sort_unstable();
        Places {
            sessions,
            rsvp_yes_rate: share(yes, seats),
            attendance_rate: share(present, expected),
            sessions_with_attendance: recorded,
            waitlist_at_end: self.waiting.len(),
            waitlist_wait_median_seconds: nearest_rank(&self.waits, 0.5),
            waitlist_wait_p90_seconds: nearest_rank(&self.waits, 0.9),
            promoted: self.waits.len(),
        }
    }
}
