//! Engagement on a hand-built history, every figure worked out by hand below.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::{Activity, AtRisk, JoinWeek, Rules, Scope, engagement, gini, nearest_rank};
use crate::events::Exported;

const COMMUNITY: &str = "00000000-0000-0000-0000-0000000000c1";
const COHORT: &str = "00000000-0000-0000-0000-00000000000a";
const OTHER_COHORT: &str = "00000000-0000-0000-0000-00000000000b";
const ELSEWHERE: &str = "00000000-0000-0000-0000-00000000000e";

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, hour, minute, 0)
        .single()
        .expect("a time")
}

fn event(n: i64, when: DateTime<Utc>, kind: &str, body: serde_json::Value) -> Exported {
    Exported {
        service: "messaging".into(),
        position: n,
        recorded_at: when,
        stream_type: "conversation".into(),
        stream_id: String::new(),
        version: n,
        event_id: uuid::Uuid::nil(),
        event_type: format!("kith.messaging.v1.{kind}"),
        event: body,
    }
}

fn started(n: i64, when: DateTime<Utc>, conversation: &str, community: &str) -> Exported {
    event(
        n,
        when,
        "ConversationStarted",
        json!({"conversation_id": conversation, "community_id": community, "cohort_id": conversation}),
    )
}

fn posted(
    n: i64,
    when: DateTime<Utc>,
    conversation: &str,
    message: &str,
    thread: &str,
    author: &str,
) -> Exported {
    event(
        n,
        when,
        "MessagePosted",
        json!({"conversation_id": conversation, "message_id": message, "thread_id": thread, "author_id": author}),
    )
}

/// The period is 5 to 7 January. Ana (a) started a thread on 1 January, before it; then:
/// - 5 Jan: a starts t1 at 09:00, b replies 09:30 (first reply: 1,800 s), a replies 10:00;
/// - 6 Jan: c starts t2 at 12:00, a replies 14:00 (first reply: 7,200 s);
/// - 7 Jan: b starts t3 (never answered), d reacts to it, e reads;
/// - meanwhile f posts in another community, and g in the community's other cohort;
/// - on 8 Jan 00:00, the period's end, a posts again (outside).
fn history() -> Vec<Exported> {
    vec![
        started(1, at(1, 9, 0), COHORT, COMMUNITY),
        started(2, at(1, 9, 0), OTHER_COHORT, COMMUNITY),
        started(
            3,
            at(1, 9, 0),
            ELSEWHERE,
            "00000000-0000-0000-0000-0000000000c2",
        ),
        posted(4, at(1, 10, 0), COHORT, "t0", "t0", "a"),
        posted(5, at(5, 9, 0), COHORT, "t1", "t1", "a"),
        posted(6, at(5, 9, 30), COHORT, "r1", "t1", "b"),
        posted(7, at(5, 10, 0), COHORT, "r2", "t1", "a"),
        posted(8, at(6, 11, 0), ELSEWHERE, "x1", "x1", "f"),
        posted(9, at(6, 11, 30), OTHER_COHORT, "o1", "o1", "g"),
        posted(10, at(6, 12, 0), COHORT, "t2", "t2", "c"),
        posted(11, at(6, 14, 0), COHORT, "r3", "t2", "a"),
        posted(12, at(7, 8, 0), COHORT, "t3", "t3", "b"),
        event(
            13,
            at(7, 9, 0),
            "ReactionAdded",
            json!({"conversation_id": COHORT, "message_id": "t3", "member_id": "d", "reaction": "🎉"}),
        ),
        event(
            14,
            at(7, 9, 5),
            "ReadCursorMoved",
            json!({"conversation_id": COHORT, "member_id": "e", "seq": 9}),
        ),
        posted(15, at(8, 0, 0), COHORT, "t4", "t4", "a"),
    ]
}

/// The whole community over the fortnight from Monday 5 January.
fn fortnight() -> Scope {
    Scope {
        to: at(19, 0, 0),
        ..scope(None)
    }
}

fn scope(cohort: Option<&str>) -> Scope {
    Scope {
        community: COMMUNITY.into(),
        cohort: cohort.map(str::to_owned),
        from: at(5, 0, 0),
        to: at(8, 0, 0),
        silent_days: 14,
        rules: Rules::default(),
        rules_source: None,
    }
}

fn joined(n: i64, when: DateTime<Utc>, member: &str) -> Exported {
    Exported {
        service: "membership".into(),
        event_type: "kith.membership.v1.MemberJoined".into(),
        event: json!({"community_id": COMMUNITY, "member_id": member}),
        ..event(n, when, "", json!({}))
    }
}

#[test]
fn one_cohorts_engagement_matches_the_figures_worked_out_by_hand() {
    let report = engagement(&history(), &scope(Some(COHORT)));
    // Active: 5 Jan {a, b}, 6 Jan {c, a}, 7 Jan {b, d, e}: five members, DAU (2 + 2 + 3) / 3.
    assert_eq!(report.active_members, 5);
    assert_eq!(report.dau, 2.3333);
    // Seven days ending each day: {a (1 Jan), b}, {a, b, c}, {a, b, c, d, e}: (2 + 3 + 5) / 3.
    assert_eq!(report.wau, 3.3333);
    assert_eq!(report.mau, 5);
    assert_eq!(report.stickiness, 0.4667);
    assert_eq!((report.posts, report.replies, report.reactions), (3, 3, 1));
    // Waits 1,800 s and 7,200 s: the median by nearest rank is the first, the p90 the second;
    // t0 started before the period, t3 was never answered.
    assert_eq!(report.first_reply_median_seconds, Some(1_800));
    assert_eq!(report.first_reply_p90_seconds, Some(7_200));
    assert_eq!((report.threads_answered, report.threads_unanswered), (2, 1));
    // Messages written by the active members: a 3, b 2, c 1, d 0, e 0.
    // Gini = (-4·0 - 2·0 + 0·1 + 2·2 + 4·3) / (5 · 6) = 16 / 30.
    assert_eq!(report.participation_gini, 0.5333);
}

#[test]
fn the_whole_community_adds_its_other_cohort_and_never_another_community() {
    let report = engagement(&history(), &scope(None));
    // g's thread in the other cohort joins: six active members, one more post and one more
    // unanswered thread; f's post in another community never counts.
    assert_eq!(report.active_members, 6);
    assert_eq!((report.posts, report.replies), (4, 3));
    assert_eq!(report.threads_unanswered, 2);
}

#[test]
fn the_same_events_give_the_same_bytes() {
    let first = serde_json::to_string(&engagement(&history(), &scope(None))).expect("json");
    let again = serde_json::to_string(&engagement(&history(), &scope(None))).expect("json");
    assert_eq!(first, again);
    assert!(first.contains("engagement definitions v2"));
}

#[test]
fn percentiles_by_nearest_rank_and_gini_at_their_edges() {
    assert_eq!(nearest_rank(&[], 0.5), None);
    assert_eq!(nearest_rank(&[7], 0.9), Some(7));
    assert_eq!(nearest_rank(&[1, 2, 3, 4], 0.5), Some(2));
    assert_eq!(nearest_rank(&[1, 2, 3, 4], 0.9), Some(4));
    assert_eq!(gini(&[]), 0.0);
    assert_eq!(gini(&[0, 0]), 0.0);
    assert_eq!(gini(&[5, 5, 5]), 0.0);
    // One of four wrote everything: (−3·0 −1·0 +1·0 +3·8) / (4·8) = 0.75.
    assert_eq!(gini(&[0, 0, 0, 8]), 0.75);
}

/// Two weeks from Monday 5 January. a and b joined on the 5th, z on the 12th; h wrote on the 3rd,
/// in the fortnight before, and nothing since; b reads on the 13th and z writes on the 14th.
fn joining_history() -> (Vec<Exported>, Scope) {
    let mut events = history();
    events.insert(4, posted(100, at(3, 12, 0), COHORT, "h1", "h1", "h"));
    events.extend([
        joined(101, at(5, 8, 0), "a"),
        joined(102, at(5, 8, 0), "b"),
        joined(103, at(12, 8, 0), "z"),
        event(
            104,
            at(13, 9, 0),
            "ReadCursorMoved",
            json!({"conversation_id": COHORT, "member_id": "b", "seq": 12}),
        ),
        posted(105, at(14, 9, 0), COHORT, "z1", "z1", "z"),
    ]);
    events.sort_by_key(|e| e.recorded_at);
    let scope = Scope {
        to: at(19, 0, 0),
        silent_days: 7,
        ..scope(Some(COHORT))
    };
    (events, scope)
}

#[test]
fn retention_by_join_week_and_members_at_risk_over_two_weeks() {
    let (events, scope) = joining_history();
    let report = engagement(&events, &scope);
    // Week of the 5th: a (5th, 6th, 8th) and b (5th, 7th) active, then only b (13th).
    // Week of the 12th: z, active on the 14th; no later week starts before the 19th.
    assert_eq!(
        report.retention,
        [
            JoinWeek {
                week: "2026-01-05".into(),
                joined: 2,
                active_share: vec![1.0, 0.5],
            },
            JoinWeek {
                week: "2026-01-12".into(),
                joined: 1,
                active_share: vec![1.0],
            },
        ]
    );
    // Active in the fortnight before (22 Dec to 4 Jan): a (1st) and h (3rd); silent since the
    // 12th: a (last on the 8th) and h. b and z were not active before.
    assert_eq!(
        report.at_risk,
        [
            AtRisk {
                member_id: "a".into(),
                last_active: at(8, 0, 0).to_rfc3339(),
            },
            AtRisk {
                member_id: "h".into(),
                last_active: at(3, 12, 0).to_rfc3339(),
            },
        ]
    );
}

fn cohorts(n: i64, when: DateTime<Utc>, kind: &str, body: serde_json::Value) -> Exported {
    Exported {
        service: "cohorts".into(),
        event_type: format!("kith.cohorts.v1.{kind}"),
        ..event(n, when, kind, body)
    }
}

/// The period is 5 to 19 January (two weeks from Monday 5 January) in COHORT, where a, b and c
/// sit from 1 January and f facilitates:
/// - waitlist: w1 waits from 2 Jan 09:00 and is promoted 5 Jan 09:00 (259,200 s); w2 from 3 Jan
///   09:00 to 6 Jan 21:00 (302,400 s); w3 from 4 Jan, still waiting at the end;
/// - sessions: s1 on 6 Jan 18:00 (seats a, b, c, w1: w2 is promoted after it starts) where a and
///   w1 said yes, b said yes then no, c maybe, and a, c and x (not seated) were recorded
///   present; s2 on 8 Jan, cancelled; s3 on 9 Jan 18:00 (seats a, b, w1, w2: c left on 8 Jan),
///   no answers, no attendance; s4 on 20 Jan, after the period; a session of the other
///   community's cohort does not count. Seats 8, yes 2 (0.25); recorded 4, present 2 (0.5);
/// - threads: a's t1 (5 Jan 10:00) answered by b at 10:30 and by f at 12:00 (7,200 s); f's own
///   t2 awaits no one; b's t3 (7 Jan 10:00) answered by f at 10:10 (600 s); a's t4 (8 Jan) and
///   t5 (13 Jan) never by f. Median 600 s, p90 7,200 s, two awaiting;
/// - speaking: a, b and f write in the first week, only a in the second (1 and 0.3333).
fn places_history() -> Vec<Exported> {
    let to = |day: u32, hour: u32| at(day, hour, 0).to_rfc3339();
    let seat = |n, day, member: &str| {
        cohorts(
            n,
            at(day, 11, 0),
            "MemberJoinedCohort",
            json!({"cohort_id": COHORT, "member_id": member}),
        )
    };
    let session = |n, member_day: u32, id: &str, cohort: &str, day: u32| {
        cohorts(
            n,
            at(member_day, 8, 0),
            "SessionScheduled",
            json!({"cohort_id": cohort, "session_id": id, "starts_at": to(day, 18)}),
        )
    };
    let rsvp = |n, day, hour, member: &str, response: &str| {
        cohorts(
            n,
            at(day, hour, 0),
            "SessionRsvp",
            json!({"cohort_id": COHORT, "session_id": "s1", "member_id": member, "response": response}),
        )
    };
    let on = |n, day, hour, kind: &str, member: &str| {
        cohorts(
            n,
            at(day, hour, 0),
            kind,
            json!({"cohort_id": COHORT, "member_id": member}),
        )
    };
    vec![
        cohorts(
            1,
            at(1, 9, 0),
            "CohortCreated",
            json!({"cohort_id": COHORT, "community_id": COMMUNITY}),
        ),
        cohorts(
            2,
            at(1, 9, 0),
            "CohortCreated",
            json!({"cohort_id": ELSEWHERE, "community_id": "00000000-0000-0000-0000-0000000000c2"}),
        ),
        started(3, at(1, 9, 0), COHORT, COMMUNITY),
        seat(4, 1, "a"),
        seat(5, 1, "b"),
        seat(6, 1, "c"),
        on(7, 1, 12, "FacilitatorAssigned", "f"),
        session(8, 2, "s1", COHORT, 6),
        session(9, 2, "s2", COHORT, 8),
        session(10, 2, "s3", COHORT, 9),
        session(11, 2, "s4", COHORT, 20),
        session(12, 2, "e1", ELSEWHERE, 6),
        on(13, 2, 9, "MemberWaitlisted", "w1"),
        on(14, 3, 9, "MemberWaitlisted", "w2"),
        on(15, 4, 9, "MemberWaitlisted", "w3"),
        on(16, 5, 9, "WaitlistPromoted", "w1"),
        posted(17, at(5, 10, 0), COHORT, "t1", "t1", "a"),
        posted(18, at(5, 10, 30), COHORT, "r1", "t1", "b"),
        posted(19, at(5, 12, 0), COHORT, "r2", "t1", "f"),
        rsvp(20, 5, 13, "a", "RSVP_RESPONSE_YES"),
        rsvp(21, 5, 14, "b", "RSVP_RESPONSE_YES"),
        rsvp(22, 5, 15, "b", "RSVP_RESPONSE_NO"),
        rsvp(23, 5, 16, "c", "RSVP_RESPONSE_MAYBE"),
        rsvp(24, 5, 17, "w1", "RSVP_RESPONSE_YES"),
        posted(25, at(6, 10, 0), COHORT, "t2", "t2", "f"),
        cohorts(
            26,
            at(6, 20, 0),
            "AttendanceRecorded",
            json!({"cohort_id": COHORT, "session_id": "s1", "present": ["a", "c", "x"]}),
        ),
        on(27, 6, 21, "WaitlistPromoted", "w2"),
        posted(28, at(7, 10, 0), COHORT, "t3", "t3", "b"),
        cohorts(
            29,
            at(7, 10, 5),
            "SessionCancelled",
            json!({"cohort_id": COHORT, "session_id": "s2"}),
        ),
        posted(30, at(7, 10, 10), COHORT, "r3", "t3", "f"),
        on(31, 8, 9, "MemberLeftCohort", "c"),
        posted(32, at(8, 10, 0), COHORT, "t4", "t4", "a"),
        posted(33, at(13, 10, 0), COHORT, "t5", "t5", "a"),
    ]
}

#[test]
fn sessions_waitlist_facilitators_and_speaking_by_week_from_a_hand_built_history() {
    let scope = fortnight();
    let report = engagement(&places_history(), &scope);
    let p = &report.places;
    assert_eq!(p.sessions, 2, "s1 and s3");
    assert_eq!(p.rsvp_yes_rate, 0.25);
    assert_eq!((p.attendance_rate, p.sessions_with_attendance), (0.5, 1));
    assert_eq!(p.waitlist_at_end, 1);
    assert_eq!(p.promoted, 2);
    assert_eq!(p.waitlist_wait_median_seconds, Some(259_200));
    assert_eq!(p.waitlist_wait_p90_seconds, Some(302_400));
    assert_eq!(report.facilitator_response_median_seconds, Some(600));
    assert_eq!(report.facilitator_response_p90_seconds, Some(7_200));
    assert_eq!(report.threads_answered_by_facilitator, 2);
    assert_eq!(report.threads_awaiting_facilitator, 2);
    let weeks: Vec<(&str, f64)> = report
        .speaking_share
        .iter()
        .map(|w| (w.week.as_str(), w.share))
        .collect();
    assert_eq!(weeks, vec![("2026-01-05", 1.0), ("2026-01-12", 0.3333)]);
    // The first reply of t1 is b's, not the facilitator's.
    assert_eq!(report.first_reply_median_seconds, Some(600));
}

#[test]
fn definitions_from_a_file_change_what_counts_and_say_so() {
    // Writing only, WAU over 2 days, MAU over 1: d (reacted) and e (read) are no longer active.
    let rules = Rules {
        activity: [Activity::Write].into(),
        wau_days: 2,
        mau_days: 1,
    };
    let scope = Scope {
        rules,
        rules_source: Some("mine.json".into()),
        ..scope(Some(COHORT))
    };
    let report = engagement(&history(), &scope);
    // Active: 5 Jan {a, b}, 6 Jan {c, a}, 7 Jan {b}: three members, DAU (2 + 2 + 1) / 3.
    assert_eq!(report.active_members, 3);
    assert_eq!(report.dau, 1.6667);
    // Two days ending each day: {a, b}, {a, b, c}, {a, b, c}: (2 + 3 + 3) / 3.
    assert_eq!(report.wau, 2.6667);
    // The last day alone: {b}.
    assert_eq!(report.mau, 1);
    // Messages by the active members: a 3, b 2, c 1: (-2·1 + 0·2 + 2·3) / (3 · 6) = 4 / 18.
    assert_eq!(report.participation_gini, 0.2222);
    assert!(
        report.definitions.ends_with(
            "overridden by mine.json:\n- activity: writing a message only\n\
             - WAU: the members active in the 2 days ending that day\n\
             - MAU: the members active in the day ending on the period's last day\n"
        ),
        "{}",
        report.definitions
    );
}

#[test]
fn a_definitions_file_is_checked_and_its_errors_name_it() {
    let dir = std::env::temp_dir().join(format!("kith-definitions-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let file = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let partial = Rules::from_file(&file("partial.json", r#"{"mau_days": 28}"#)).expect("valid");
    assert_eq!(
        partial,
        Rules {
            mau_days: 28,
            ..Rules::default()
        }
    );
    for (name, text, says) in [
        ("unknown.json", r#"{"dau_days": 2}"#, "dau_days"),
        ("value.json", r#"{"activity": ["post"]}"#, "post"),
        ("empty.json", r#"{"activity": []}"#, "at least one"),
        (
            "days.json",
            r#"{"wau_days": 0}"#,
            "wau_days must be 1 to 365",
        ),
        ("broken.json", "{", "expected a JSON object"),
    ] {
        let err = Rules::from_file(&file(name, text))
            .expect_err(name)
            .to_string();
        assert!(err.contains(name) && err.contains(says), "{name}: {err}");
    }
    let missing = Rules::from_file(&dir.join("missing.json")).expect_err("missing");
    assert!(missing.to_string().contains("missing.json"), "{missing}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_csv_form_holds_every_figure_as_a_tidy_row() {
    let report = engagement(&places_history(), &fortnight());
    let text = super::tidy::csv(&report).expect("csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("section,key,metric,value"));
    let rows: Vec<&str> = text.lines().collect();
    for row in [
        "summary,,sessions,2",
        "summary,,rsvp_yes_rate,0.25",
        "summary,,waitlist_wait_median_seconds,259200",
        "summary,,first_reply_p90_seconds,1800",
        "speaking_share,2026-01-12,share,0.3333",
    ] {
        assert!(rows.contains(&row), "{row} in {text}");
    }
    // The definitions, lines and all, are one quoted field of the last row.
    assert!(
        text.contains("\ndefinitions,,text,\"engagement definitions v2\n")
            && text.ends_with("\"\n"),
        "{text}"
    );
    // The same report gives the same bytes.
    assert_eq!(text, super::tidy::csv(&report).expect("csv"));
}

#[test]
fn the_parquet_form_holds_the_csv_rows_with_numbers_typed() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    let report = engagement(&places_history(), &fortnight());
    let path = std::env::temp_dir().join(format!("kith-report-{}.parquet", uuid::Uuid::new_v4()));
    super::tidy::parquet(&report, std::fs::File::create(&path).expect("create")).expect("parquet");
    let reader =
        SerializedFileReader::new(std::fs::File::open(&path).expect("open")).expect("read");
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None).expect("rows") {
        let row = row.expect("row");
        let value = row.get_double(3).ok();
        let text = row.get_string(4).ok().cloned();
        rows.push((
            row.get_string(0).expect("section").clone(),
            row.get_string(1).expect("key").clone(),
            row.get_string(2).expect("metric").clone(),
            value,
            text,
        ));
    }
    std::fs::remove_file(&path).expect("clean up");
    // Row for row the CSV's, each value in the column its kind belongs in.
    let tidy = super::tidy::rows(&report).expect("rows");
    assert_eq!(rows.len(), tidy.len());
    for (row, [section, key, metric, value]) in rows.iter().zip(&tidy) {
        assert_eq!((&row.0, &row.1, &row.2), (section, key, metric));
        match value.parse::<f64>() {
            Ok(number) => assert_eq!((row.3, row.4.as_deref()), (Some(number), None)),
            Err(_) if value.is_empty() => assert_eq!((row.3, row.4.as_deref()), (None, None)),
            Err(_) => assert_eq!((row.3, row.4.as_deref()), (None, Some(value.as_str()))),
        }
    }
    let find = |section: &str, key: &str, metric: &str| {
        rows.iter()
            .find(|r| r.0 == section && r.1 == key && r.2 == metric)
            .unwrap_or_else(|| panic!("{section},{key},{metric} in {rows:?}"))
            .clone()
    };
    assert_eq!(find("summary", "", "sessions").3, Some(2.0));
    assert_eq!(find("summary", "", "rsvp_yes_rate").3, Some(0.25));
    assert_eq!(
        find("speaking_share", "2026-01-12", "share").3,
        Some(0.3333)
    );
    let definitions = find("definitions", "", "text");
    assert_eq!(
        (definitions.3, definitions.4),
        (None, Some(report.definitions))
    );
}

fn places_report() -> super::Engagement {
    engagement(&places_history(), &fortnight())
}

#[test]
fn the_html_page_holds_every_section_fetches_nothing_and_escapes_what_it_shows() {
    let report = places_report();
    // Active each day of the fortnight: a, b and f on 5 Jan; f 6 Jan; b and f 7 Jan; a 8 and
    // 13 Jan; no one else.
    let active: Vec<usize> = report.daily_active.iter().map(|d| d.active).collect();
    assert_eq!(active, vec![3, 1, 2, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    let voices: Vec<(&str, u64)> = report
        .voices
        .iter()
        .map(|v| (v.member_id.as_str(), v.messages))
        .collect();
    assert_eq!(voices, vec![("a", 3), ("f", 3), ("b", 2)]);
    let page = super::html::page(&report);
    assert!(page.starts_with("<!DOCTYPE html>"));
    for section in [
        "Activity over time",
        "Participation",
        "Retention by join week",
        "At risk (",
        "Definitions",
        "engagement definitions v2",
    ] {
        assert!(page.contains(section), "{section}");
    }
    for fetch in [
        "<script", "src=", "<link", "url(", "@import", "http://", "https://",
    ] {
        assert!(!page.contains(fetch), "the page fetches nothing: {fetch}");
    }
    let mut hostile = report.clone();
    hostile.at_risk.push(super::AtRisk {
        member_id: "<img src=x onerror=alert(1)>".into(),
        last_active: "\"'&".into(),
    });
    let page = super::html::page(&hostile);
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(page.contains("&quot;&#39;&amp;"));
    assert!(!page.contains("<img"));
}

/// The page in headless Chromium: it renders (a screenshot of it) and says nothing on its
/// console. Chromium comes from Debian (`.ci/run` installs it); without it this test fails under
/// CI and says so elsewhere.
#[test]
fn the_html_page_renders_in_headless_chromium_without_console_messages() {
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have Chromium (apt-get install chromium)"
        );
        eprintln!("no Chromium here: the page was not rendered");
        return;
    };
    let dir = std::env::temp_dir().join(format!("kith-html-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let page = dir.join("engagement.html");
    let shot = dir.join("engagement.png");
    std::fs::write(&page, super::html::page(&places_report())).expect("write the page");
    let output = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2400",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run Chromium");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        png.len() > 20_000,
        "a page with content, not a blank one: {} bytes",
        png.len()
    );
    assert!(
        !stderr.lines().any(|line| line.contains("CONSOLE")),
        "console messages: {stderr}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// A Python with DuckDB: `KITH_DUCKDB_PYTHON`, else the one `.ci/run` installs under
/// `$KITH_TOOLS/venv`.
fn duckdb_python() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("KITH_DUCKDB_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(
                std::env::var("KITH_TOOLS").unwrap_or_else(|_| "/var/tmp/kith-tools".into()),
            )
            .join("venv/bin/python")
        });
    std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}

/// The figures `analytics/engagement.sql` computes in DuckDB over `events` written as Parquet,
/// run by `analytics/engagement.py` as an analyst would run it.
fn duckdb_figures(
    python: &std::path::Path,
    events: &[Exported],
    scope: &Scope,
) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("kith-parquet-{}", uuid::Uuid::new_v4()));
    let mut partitions = crate::events::columnar::Partitions::create(&dir).expect("a directory");
    for event in events {
        partitions.write(event).expect("write");
    }
    partitions.finish().expect("finish");
    let runner = concat!(env!("CARGO_MANIFEST_DIR"), "/../../analytics/engagement.py");
    let mut command = std::process::Command::new(python);
    command
        .arg(runner)
        .arg(&dir)
        .args(["--community", &scope.community])
        .args(["--from", &scope.from.to_rfc3339()])
        .args(["--to", &scope.to.to_rfc3339()])
        .args(["--silent-days", &scope.silent_days.to_string()])
        .arg("--json");
    if let Some(cohort) = &scope.cohort {
        command.args(["--cohort", cohort]);
    }
    let output = command.output().expect("run DuckDB");
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON row")
}

/// The fields of the report that say what it is about rather than hold a figure.
const DESCRIBING: [&str; 5] = ["definitions", "community", "cohort", "from", "to"];

#[test]
fn the_duckdb_sql_over_the_parquet_export_gives_the_reports_figures() {
    let Some(python) = duckdb_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have DuckDB (pip install duckdb into $KITH_TOOLS/venv)"
        );
        eprintln!("no DuckDB here: the SQL was not run");
        return;
    };
    let histories = [
        (history(), scope(None)),
        (history(), scope(Some(COHORT))),
        (places_history(), fortnight()),
        joining_history(),
    ];
    let mut shown = std::collections::BTreeSet::new();
    for (events, scope) in histories {
        let report = serde_json::to_value(engagement(&events, &scope)).expect("json");
        let sql = duckdb_figures(&python, &events, &scope);
        let Some(figures) = report.as_object() else {
            panic!("the report is an object");
        };
        // Every figure, lists and all; only what describes the report is not the SQL's.
        let mut compared = 0;
        for (figure, ours) in figures {
            if DESCRIBING.contains(&figure.as_str()) {
                continue;
            }
            let theirs = &sql[figure];
            assert!(
                same(ours, theirs),
                "{figure} over {} to {}: report {ours}, SQL {theirs}",
                scope.from,
                scope.to
            );
            compared += 1;
        }
        assert_eq!(compared, 30, "a figure was added: compare it here");
        for (figure, value) in figures {
            let empty = value.is_null()
                || value.as_f64() == Some(0.0)
                || value.as_array().is_some_and(Vec::is_empty);
            if !empty && !DESCRIBING.contains(&figure.as_str()) {
                shown.insert(figure.clone());
            }
        }
    }
    // Each figure was something other than zero or nothing in at least one history, so each
    // comparison above could have failed.
    assert_eq!(shown.len(), 30, "{shown:?}");
}

/// Whether a report figure and the SQL's are the same: numbers as numbers, times as instants
/// (the report writes RFC 3339 as chrono does, the SQL with microseconds), the rest exactly.
fn same(ours: &serde_json::Value, theirs: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (ours, theirs) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| same(x, y)))
        }
        (Value::String(a), Value::String(b)) if a.contains('T') && b.contains('T') => {
            match (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        _ => ours == theirs,
    }
}
