//! Hiding, reports and slow mode.

use uuid::Uuid;

use super::super::{Action, DomainError, Event, ReportReason, SlowMode};
use super::{
    COACH, MODERATOR, NONE, OUTSIDER, STAFF, by, coach, given, member, msg, seated,
    thread_with_reply,
};

const REPORT: Uuid = Uuid::from_u128(70_001);

fn reason(text: &str) -> ReportReason {
    ReportReason::parse(text).unwrap()
}

#[test]
fn facilitators_and_moderators_hide_and_unhide() {
    for (actor, access) in [(COACH, super::FACILITATOR), (MODERATOR, STAFF)] {
        let after = given(&thread_with_reply())
            .when(by(actor, access, Action::Hide { message_id: msg(2) }))
            .then(&[Event::MessageHidden {
                message_id: msg(2),
                by: actor,
            }])
            .when(by(actor, access, Action::Hide { message_id: msg(2) }))
            .then(&[]);
        assert!(after.state.messages[&msg(2)].hidden);
        after
            .when(by(actor, access, Action::Unhide { message_id: msg(2) }))
            .then(&[Event::MessageUnhidden {
                message_id: msg(2),
                by: actor,
            }]);
    }
}

#[test]
fn a_member_cannot_hide() {
    given(&thread_with_reply())
        .when(seated(member(1), Action::Hide { message_id: msg(2) }))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's moderators may do this",
        ));
}

#[test]
fn any_reader_reports_and_moderators_resolve() {
    let report = Action::Report {
        report_id: REPORT,
        message_id: msg(2),
        reason: reason("spam"),
    };
    let after = given(&thread_with_reply())
        .when(seated(member(1), report.clone()))
        .then(&[Event::MessageReported {
            report_id: REPORT,
            message_id: msg(2),
            reporter: member(1),
            reason: Some(reason("spam")),
        }]);
    assert_eq!(after.state.reports.get(&REPORT), Some(&false));
    let after = after
        .when(seated(member(1), report))
        .then_error_and_keep(DomainError::ReportExists);
    after
        .when(coach(Action::ResolveReport { report_id: REPORT }))
        .then_error_and_keep(DomainError::Forbidden(
            "only the community's owners, hosts and moderators may resolve reports",
        ))
        .when(by(
            MODERATOR,
            STAFF,
            Action::ResolveReport { report_id: REPORT },
        ))
        .then(&[Event::ReportResolved {
            report_id: REPORT,
            by: MODERATOR,
        }])
        .when(by(
            MODERATOR,
            STAFF,
            Action::ResolveReport { report_id: REPORT },
        ))
        .then(&[]);
}

#[test]
fn outsiders_cannot_report_and_unknown_reports_are_not_found() {
    given(&thread_with_reply())
        .when(by(
            OUTSIDER,
            NONE,
            Action::Report {
                report_id: REPORT,
                message_id: msg(2),
                reason: reason("spam"),
            },
        ))
        .then_error(DomainError::NotAReader);
    given(&thread_with_reply())
        .when(by(
            MODERATOR,
            STAFF,
            Action::ResolveReport { report_id: REPORT },
        ))
        .then_error(DomainError::ReportNotFound);
}

#[test]
fn facilitators_and_moderators_set_slow_mode_up_to_six_hours() {
    let slow = |s| Action::SetSlowMode {
        interval: SlowMode::parse(s).unwrap(),
    };
    given(&thread_with_reply())
        .when(coach(slow(30)))
        .then(&[Event::SlowModeSet {
            interval: SlowMode::parse(30).unwrap(),
            by: COACH,
        }])
        .when(by(MODERATOR, STAFF, slow(30)))
        .then(&[])
        .when(by(MODERATOR, STAFF, slow(0)))
        .then(&[Event::SlowModeSet {
            interval: SlowMode::parse(0).unwrap(),
            by: MODERATOR,
        }]);
    given(&thread_with_reply())
        .when(seated(member(1), slow(30)))
        .then_error(DomainError::Forbidden(
            "only the cohort's facilitators and the community's moderators may do this",
        ));
    assert!(SlowMode::parse(6 * 3600).is_ok());
    assert!(SlowMode::parse(6 * 3600 + 1).is_err());
}
