//! Scheduling, moving and cancelling sessions, answering them and recording attendance.

use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use uuid::Uuid;

use super::super::{
    Action, CommunityRole, DomainError, Event, MAX_WEEKLY_OCCURRENCES, Minutes, Recurrence, Rsvp,
    SessionTitle, Status, TimeZone,
};
use super::{
    COACH, HOST, OTHER_COACH, at, by, by_member, coach, created_with, days, details, full, given,
    member, now, opened, plus, waitlisted,
};

const SESSION: Uuid = Uuid::from_u128(500);

fn title() -> SessionTitle {
    SessionTitle::parse("Weekly check-in").unwrap()
}

fn hour() -> Minutes {
    Minutes::parse(60).unwrap()
}

fn tomorrow() -> DateTime<Utc> {
    now() + days(1)
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn schedule(starts_at: DateTime<Utc>, recurrence: Recurrence) -> Action {
    Action::ScheduleSession {
        session_id: SESSION,
        title: title(),
        starts_at,
        duration: hour(),
        recurrence,
    }
}

fn scheduled(
    session_id: Uuid,
    series_id: Option<Uuid>,
    occurrence: u32,
    starts_at: DateTime<Utc>,
) -> Event {
    Event::SessionScheduled {
        session_id,
        series_id,
        occurrence,
        title: title(),
        starts_at,
        duration: hour(),
        scheduled_by: COACH,
    }
}

fn occurrence(k: u32) -> Uuid {
    Uuid::new_v5(&SESSION, format!("occurrence-{k}").as_bytes())
}

/// The starts of a weekly series scheduled at `first` in `zone`.
fn weekly_starts(zone: &str, first: DateTime<Utc>, occurrences: u32) -> Vec<DateTime<Utc>> {
    let mut berlin = details(12);
    berlin.time_zone = TimeZone::parse(zone).unwrap();
    let after = given(&plus(
        created_with(berlin),
        [Event::CohortOpened { by: COACH }],
    ))
    .when(at(
        COACH,
        Some(CommunityRole::Coach),
        first - days(1),
        schedule(first, Recurrence::weekly(occurrences).unwrap()),
    ))
    .then(&expected_series(first, occurrences, zone));
    after
        .state
        .sessions()
        .map(|session| session.starts_at)
        .collect()
}

/// What a series at `first` in `zone` should record, with the starts worked out independently:
/// the local wall time of `first`, a week later each time.
fn expected_series(first: DateTime<Utc>, occurrences: u32, zone: &str) -> Vec<Event> {
    let zone: chrono_tz::Tz = zone.parse().unwrap();
    let wall = first.with_timezone(&zone).naive_local();
    (1..=occurrences)
        .map(|k| {
            let local = wall + TimeDelta::days(7 * i64::from(k - 1));
            let starts_at = zone
                .from_local_datetime(&local)
                .earliest()
                .unwrap_or_else(|| {
                    zone.from_local_datetime(&(local + TimeDelta::hours(1)))
                        .earliest()
                        .unwrap()
                })
                .with_timezone(&Utc);
            let id = if k == 1 { SESSION } else { occurrence(k) };
            scheduled(id, Some(SESSION), k, starts_at)
        })
        .collect()
}

/// An open, full cohort of two with [`SESSION`] tomorrow and member 3 waiting.
fn with_session() -> Vec<Event> {
    plus(
        full(2),
        [
            waitlisted(member(3)),
            scheduled(SESSION, None, 1, tomorrow()),
        ],
    )
}

fn cancelled() -> Vec<Event> {
    plus(
        with_session(),
        [Event::SessionCancelled {
            session_id: SESSION,
            by: COACH,
        }],
    )
}

#[test]
fn a_facilitator_schedules_a_one_off_session() {
    let after = given(&opened(12))
        .when(coach(schedule(tomorrow(), Recurrence::Once)))
        .then(&[scheduled(SESSION, None, 1, tomorrow())]);
    let session = after.state.session(SESSION).unwrap();
    assert_eq!(session.starts_at, tomorrow());
    assert!(!session.cancelled);
    assert!(session.rsvps.is_empty() && session.present.is_empty());
}

#[test]
fn a_weekly_series_derives_its_later_ids_from_the_first() {
    given(&opened(12))
        .when(coach(schedule(tomorrow(), Recurrence::weekly(3).unwrap())))
        .then(&[
            scheduled(SESSION, Some(SESSION), 1, tomorrow()),
            scheduled(occurrence(2), Some(SESSION), 2, tomorrow() + days(7)),
            scheduled(occurrence(3), Some(SESSION), 3, tomorrow() + days(14)),
        ]);
}

#[test]
fn a_weekly_series_keeps_its_local_time_across_the_spring_daylight_saving_change() {
    // Tuesday 25 March 2025, 18:00 in Berlin (CET, UTC+1); clocks go forward on Sunday 30 March.
    let starts = weekly_starts("Europe/Berlin", utc(2025, 3, 25, 17, 0), 3);
    assert_eq!(
        starts,
        [
            utc(2025, 3, 25, 17, 0),
            utc(2025, 4, 1, 16, 0),
            utc(2025, 4, 8, 16, 0)
        ]
    );
}

#[test]
fn a_weekly_series_keeps_its_local_time_across_the_autumn_daylight_saving_change() {
    // Thursday 23 October 2025, 09:00 in Berlin (CEST, UTC+2); clocks go back on 26 October.
    let starts = weekly_starts("Europe/Berlin", utc(2025, 10, 23, 7, 0), 2);
    assert_eq!(starts, [utc(2025, 10, 23, 7, 0), utc(2025, 10, 30, 8, 0)]);
}

#[test]
fn a_local_time_skipped_by_the_clocks_moves_one_hour_later() {
    // Sunday 23 March 2025, 02:30 in Berlin; on 30 March 02:30 does not exist, so 03:30 CEST.
    let starts = weekly_starts("Europe/Berlin", utc(2025, 3, 23, 1, 30), 2);
    assert_eq!(starts, [utc(2025, 3, 23, 1, 30), utc(2025, 3, 30, 1, 30)]);
}

#[test]
fn a_local_time_that_happens_twice_takes_the_earlier_instant() {
    // Sunday 19 October 2025, 02:30 in Berlin; on 26 October 02:30 happens in CEST, then CET.
    let starts = weekly_starts("Europe/Berlin", utc(2025, 10, 19, 0, 30), 3);
    assert_eq!(
        starts,
        [
            utc(2025, 10, 19, 0, 30),
            utc(2025, 10, 26, 0, 30),
            utc(2025, 11, 2, 1, 30)
        ]
    );
}

#[test]
fn a_weekly_series_has_2_to_52_occurrences() {
    for occurrences in [0, 1, MAX_WEEKLY_OCCURRENCES + 1] {
        given(&opened(12))
            .when(coach(schedule(
                tomorrow(),
                Recurrence::Weekly { occurrences },
            )))
            .then_error(DomainError::InvalidOccurrences(occurrences));
    }
    let after = given(&opened(12))
        .when(coach(schedule(
            tomorrow(),
            Recurrence::weekly(MAX_WEEKLY_OCCURRENCES).unwrap(),
        )))
        .then(&expected_series(tomorrow(), MAX_WEEKLY_OCCURRENCES, "UTC"));
    assert_eq!(after.state.sessions().count(), 52);
}

#[test]
fn a_series_past_the_end_of_the_calendar_is_refused() {
    let last = DateTime::<Utc>::MAX_UTC - days(3);
    given(&opened(12))
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            last - days(1),
            schedule(last, Recurrence::weekly(2).unwrap()),
        ))
        .then_error(DomainError::SessionOutOfRange);
}

#[test]
fn a_session_must_start_in_the_future() {
    given(&opened(12))
        .when(coach(schedule(now(), Recurrence::Once)))
        .then_error(DomainError::SessionInPast);
}

#[test]
fn a_session_id_is_used_once_including_the_ids_a_series_derives() {
    given(&with_session())
        .when(coach(schedule(tomorrow(), Recurrence::Once)))
        .then_error(DomainError::SessionExists(SESSION));
    let taken = plus(opened(12), [scheduled(occurrence(2), None, 1, tomorrow())]);
    given(&taken)
        .when(coach(schedule(tomorrow(), Recurrence::weekly(2).unwrap())))
        .then_error(DomainError::SessionExists(occurrence(2)));
}

#[test]
fn only_managers_schedule_move_and_cancel_sessions() {
    let refused = DomainError::Forbidden(
        "only the cohort's facilitators and the community's owners and hosts may schedule, move and cancel sessions",
    );
    given(&opened(12))
        .when(by(
            OTHER_COACH,
            Some(CommunityRole::Coach),
            schedule(tomorrow(), Recurrence::Once),
        ))
        .then_error(refused.clone());
    given(&with_session())
        .when(by_member(
            member(1),
            Action::RescheduleSession {
                session_id: SESSION,
                starts_at: tomorrow() + days(1),
                duration: hour(),
            },
        ))
        .then_error(refused.clone());
    given(&with_session())
        .when(by_member(
            member(1),
            Action::CancelSession {
                session_id: SESSION,
            },
        ))
        .then_error(refused);
}

#[test]
fn an_ended_cohort_schedules_no_sessions() {
    let closed = plus(opened(12), [Event::CohortClosed { by: COACH }]);
    given(&closed)
        .when(coach(schedule(tomorrow(), Recurrence::Once)))
        .then_error(DomainError::CohortEnded(Status::Closed));
}

#[test]
fn a_session_that_has_not_started_is_moved() {
    let later = tomorrow() + days(1);
    let longer = Minutes::parse(90).unwrap();
    let after = given(&with_session())
        .when(by(
            HOST,
            Some(CommunityRole::Host),
            Action::RescheduleSession {
                session_id: SESSION,
                starts_at: later,
                duration: longer,
            },
        ))
        .then(&[Event::SessionRescheduled {
            session_id: SESSION,
            starts_at: later,
            duration: longer,
            by: HOST,
        }]);
    let session = after.state.session(SESSION).unwrap();
    assert_eq!((session.starts_at, session.duration), (later, longer));
}

fn reschedule(starts_at: DateTime<Utc>) -> Action {
    Action::RescheduleSession {
        session_id: SESSION,
        starts_at,
        duration: hour(),
    }
}

#[test]
fn moving_a_session_is_refused_when_unknown_cancelled_started_or_into_the_past() {
    let unknown = Uuid::from_u128(501);
    given(&with_session())
        .when(coach(Action::RescheduleSession {
            session_id: unknown,
            starts_at: tomorrow(),
            duration: hour(),
        }))
        .then_error(DomainError::SessionNotFound(unknown));
    given(&cancelled())
        .when(coach(reschedule(tomorrow() + days(1))))
        .then_error(DomainError::SessionCancelled(SESSION));
    given(&with_session())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            tomorrow(),
            reschedule(tomorrow() + days(1)),
        ))
        .then_error(DomainError::SessionStarted(SESSION));
    given(&with_session())
        .when(coach(reschedule(now() - TimeDelta::minutes(1))))
        .then_error(DomainError::SessionInPast);
}

#[test]
fn a_session_that_has_not_started_is_cancelled() {
    let after = given(&with_session())
        .when(coach(Action::CancelSession {
            session_id: SESSION,
        }))
        .then(&[Event::SessionCancelled {
            session_id: SESSION,
            by: COACH,
        }]);
    assert!(after.state.session(SESSION).unwrap().cancelled);
}

#[test]
fn cancelling_is_refused_when_unknown_cancelled_or_started() {
    let cancel = || Action::CancelSession {
        session_id: SESSION,
    };
    given(&opened(12))
        .when(coach(cancel()))
        .then_error(DomainError::SessionNotFound(SESSION));
    given(&cancelled())
        .when(coach(cancel()))
        .then_error(DomainError::SessionCancelled(SESSION));
    given(&with_session())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            tomorrow() + TimeDelta::minutes(5),
            cancel(),
        ))
        .then_error(DomainError::SessionStarted(SESSION));
}

fn respond(response: Rsvp) -> Action {
    Action::RespondToSession {
        session_id: SESSION,
        response,
    }
}

fn rsvp(member_id: Uuid, response: Rsvp) -> Event {
    Event::SessionRsvp {
        session_id: SESSION,
        member_id,
        response,
    }
}

#[test]
fn seated_members_and_facilitators_answer_a_session() {
    let after = given(&with_session())
        .when(by_member(member(1), respond(Rsvp::Yes)))
        .then(&[rsvp(member(1), Rsvp::Yes)])
        .when(coach(respond(Rsvp::Maybe)))
        .then(&[rsvp(COACH, Rsvp::Maybe)])
        .when(by_member(member(1), respond(Rsvp::No)))
        .then(&[rsvp(member(1), Rsvp::No)]);
    let rsvps = &after.state.session(SESSION).unwrap().rsvps;
    assert_eq!(rsvps.get(&member(1)), Some(&Rsvp::No));
    assert_eq!(rsvps.get(&COACH), Some(&Rsvp::Maybe));
}

#[test]
fn the_same_answer_again_records_nothing() {
    given(&with_session())
        .when(by_member(member(1), respond(Rsvp::Yes)))
        .then(&[rsvp(member(1), Rsvp::Yes)])
        .when(by_member(member(1), respond(Rsvp::Yes)))
        .then(&[]);
}

#[test]
fn only_seated_members_and_facilitators_answer() {
    for stranger in [member(3), member(9)] {
        given(&with_session())
            .when(by_member(stranger, respond(Rsvp::Yes)))
            .then_error(DomainError::NotInCohort(stranger));
    }
}

#[test]
fn answering_is_refused_when_unknown_cancelled_or_started() {
    given(&full(2))
        .when(by_member(member(1), respond(Rsvp::Yes)))
        .then_error(DomainError::SessionNotFound(SESSION));
    given(&cancelled())
        .when(by_member(member(1), respond(Rsvp::Yes)))
        .then_error(DomainError::SessionCancelled(SESSION));
    given(&with_session())
        .when(at(
            member(1),
            Some(CommunityRole::Member),
            tomorrow(),
            respond(Rsvp::Yes),
        ))
        .then_error(DomainError::SessionStarted(SESSION));
}

fn record(present: Vec<Uuid>) -> Action {
    Action::RecordAttendance {
        session_id: SESSION,
        present,
    }
}

fn during() -> DateTime<Utc> {
    tomorrow() + TimeDelta::minutes(30)
}

#[test]
fn a_facilitator_records_attendance_once_the_session_started_collapsing_repeats() {
    let after = given(&with_session())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            tomorrow(),
            record(vec![member(2), COACH, member(2), member(1)]),
        ))
        .then(&[Event::AttendanceRecorded {
            session_id: SESSION,
            present: vec![member(2), COACH, member(1)],
            recorded_by: COACH,
        }]);
    assert_eq!(
        after.state.session(SESSION).unwrap().present,
        [member(2), COACH, member(1)]
    );
}

#[test]
fn a_later_record_replaces_the_earlier_one() {
    let after = given(&with_session())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            during(),
            record(vec![member(1)]),
        ))
        .then(&[Event::AttendanceRecorded {
            session_id: SESSION,
            present: vec![member(1)],
            recorded_by: COACH,
        }])
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            during(),
            record(vec![member(2)]),
        ))
        .then(&[Event::AttendanceRecorded {
            session_id: SESSION,
            present: vec![member(2)],
            recorded_by: COACH,
        }]);
    assert_eq!(after.state.session(SESSION).unwrap().present, [member(2)]);
}

#[test]
fn attendance_names_only_seated_members_and_facilitators() {
    given(&with_session())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            during(),
            record(vec![member(1), member(3), member(9)]),
        ))
        .then_error(DomainError::NotInCohort(member(3)));
}

#[test]
fn attendance_is_refused_before_the_start_and_for_unknown_or_cancelled_sessions() {
    given(&with_session())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            tomorrow() - TimeDelta::seconds(1),
            record(vec![member(1)]),
        ))
        .then_error(DomainError::SessionNotStarted(SESSION));
    given(&full(2))
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            during(),
            record(vec![]),
        ))
        .then_error(DomainError::SessionNotFound(SESSION));
    given(&cancelled())
        .when(at(
            COACH,
            Some(CommunityRole::Coach),
            during(),
            record(vec![]),
        ))
        .then_error(DomainError::SessionCancelled(SESSION));
}

#[test]
fn only_managers_record_attendance() {
    given(&with_session())
        .when(at(
            member(1),
            Some(CommunityRole::Member),
            during(),
            record(vec![member(1)]),
        ))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's owners and hosts may record attendance",
        ));
}
