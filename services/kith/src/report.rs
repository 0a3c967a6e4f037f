//! `kith report engagement`: a community's (or one cohort's) engagement over a period, computed
//! from the raw events under definitions that are written down here and printed with the report.
//! The same events and definitions always give the same bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::events::{Decoder, Exported, ReadArgs, Take, Window};

mod html;
mod places;
mod tidy;
pub(crate) use places::Places;

/// The definitions, versioned: a change to any of them is a new version.
pub(crate) const DEFINITIONS: &str = "engagement definitions v2
- times are the events' recorded times, days are UTC days; the period is [from, to)
- activity: writing a message (a thread or a reply), reacting, or moving a read cursor
- active members: members with any activity in the period
- DAU: the mean, over the period's days, of the members active that day
- WAU: the mean, over the period's days, of the members active in the 7 days ending that day
- MAU: the members active in the 30 days ending on the period's last day
- stickiness: DAU / MAU
- posts: threads started (and direct messages); replies: messages in a thread after its first
- time to first reply: for each thread started in the period, from its first message to the
  first message in it by someone else, up to the period's end; median and p90 by nearest rank
  over the threads that got one, in seconds; threads without one are counted apart
- participation (Gini): over the active members, of the messages each wrote; 0 when all wrote
  alike, towards 1 when one member wrote everything
- at risk: members active in the period of the same length just before this one, with no
  activity in the last N days of this one (N = --silent-days, 14 by default)
- retention by join week: members who joined the community in each week (Monday to Sunday,
  UTC) of the period, and the share of them active in that week and each later week that
  starts before the period's end
- speaking share by week: for each week (Monday to Sunday, UTC) that starts in the period, the
  share of the period's active members who wrote a message in it
- facilitator response time: for each thread started in the period in a cohort's conversation
  by someone not facilitating that cohort, from its first message to the first message in it by
  one of the cohort's facilitators at that moment; median and p90 by nearest rank, in seconds;
  threads without one are counted apart
- sessions: those starting in the period and not cancelled; a session's seats are the members
  seated in its cohort when it starts
- RSVP yes rate: over those sessions' seats, the share whose last answer was yes
- attendance rate: over the seats of those sessions with attendance recorded, the share
  recorded present
- waitlist: the members waiting at the period's end; time on the waitlist, for promotions in
  the period, from joining the waitlist to the seat; median and p90 by nearest rank, in seconds
";

/// What the report is about.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) community: String,
    /// One cohort's conversation only.
    pub(crate) cohort: Option<String>,
    pub(crate) from: DateTime<Utc>,
    pub(crate) to: DateTime<Utc>,
    /// Days without activity that make an earlier-active member at risk.
    pub(crate) silent_days: i64,
    /// The definitions' parameters (the defaults, or an analyst's file).
    pub(crate) rules: Rules,
    /// Where they came from, as printed.
    pub(crate) rules_source: Option<String>,
}

/// What counts as activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Activity {
    /// Writing a message.
    Write,
    /// Reacting to one.
    React,
    /// Moving a read cursor.
    Read,
}

/// The parameters of the definitions an analyst may set (`--definitions FILE`, JSON); what the
/// file leaves out keeps its default.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Rules {
    /// What counts as activity (default: all three).
    pub(crate) activity: BTreeSet<Activity>,
    /// The days in WAU's window (default 7).
    pub(crate) wau_days: i64,
    /// The days in MAU's window (default 30).
    pub(crate) mau_days: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            activity: [Activity::Write, Activity::React, Activity::Read].into(),
            wau_days: 7,
            mau_days: 30,
        }
    }
}

impl Rules {
    /// Reads and checks `path`; the error names the file and what is wrong.
    pub(crate) fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let where_ = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("--definitions {where_}: {err}"))?;
        let rules: Self = serde_json::from_str(&text).map_err(|err| {
            anyhow::anyhow!(
                "--definitions {where_}: {err} (expected a JSON object with activity: [\"write\", \"react\", \"read\"], wau_days, mau_days)"
            )
        })?;
        if rules.activity.is_empty() {
            anyhow::bail!(
                "--definitions {where_}: activity must name at least one of write, react, read"
            );
        }
        for (field, days) in [("wau_days", rules.wau_days), ("mau_days", rules.mau_days)] {
            if !(1..=365).contains(&days) {
                anyhow::bail!("--definitions {where_}: {field} must be 1 to 365, got {days}");
            }
        }
        Ok(rules)
    }

    /// The text printed with the report: the versioned definitions, then what differs from
    /// their defaults.
    fn text(&self, source: Option<&str>) -> String {
        let mut out = DEFINITIONS.to_owned();
        let defaults = Self::default();
        if *self == defaults {
            return out;
        }
        out.push_str(&format!(
            "overridden by {}:\n",
            source.unwrap_or("the caller")
        ));
        if self.activity != defaults.activity {
            let names: Vec<&str> = self
                .activity
                .iter()
                .map(|a| match a {
                    Activity::Write => "writing a message",
                    Activity::React => "reacting",
                    Activity::Read => "moving a read cursor",
                })
                .collect();
            out.push_str(&format!("- activity: {} only\n", names.join(", ")));
        }
        if self.wau_days != defaults.wau_days {
            out.push_str(&format!(
                "- WAU: the members active in the {} ending that day\n",
                days(self.wau_days)
            ));
        }
        if self.mau_days != defaults.mau_days {
            out.push_str(&format!(
                "- MAU: the members active in the {} ending on the period's last day\n",
                days(self.mau_days)
            ));
        }
        out
    }
}

/// A member active before who has gone quiet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct AtRisk {
    pub(crate) member_id: String,
    pub(crate) last_active: String,
}

/// The members who joined in one week, and the share of them active in it and each week after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct JoinWeek {
    /// Its Monday.
    pub(crate) week: String,
    pub(crate) joined: usize,
    pub(crate) active_share: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Engagement {
    pub(crate) definitions: String,
    pub(crate) community: String,
    pub(crate) cohort: Option<String>,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) active_members: usize,
    pub(crate) dau: f64,
    pub(crate) wau: f64,
    pub(crate) mau: usize,
    pub(crate) stickiness: f64,
    pub(crate) posts: u64,
    pub(crate) replies: u64,
    pub(crate) reactions: u64,
    pub(crate) first_reply_median_seconds: Option<i64>,
    pub(crate) first_reply_p90_seconds: Option<i64>,
    pub(crate) threads_answered: usize,
    pub(crate) threads_unanswered: usize,
    pub(crate) participation_gini: f64,
    /// Active members on each day of the period.
    pub(crate) daily_active: Vec<Day>,
    /// Messages each active member wrote, most first (ties by id).
    pub(crate) voices: Vec<Voice>,
    pub(crate) speaking_share: Vec<SpeakingWeek>,
    pub(crate) facilitator_response_median_seconds: Option<i64>,
    pub(crate) facilitator_response_p90_seconds: Option<i64>,
    pub(crate) threads_answered_by_facilitator: usize,
    pub(crate) threads_awaiting_facilitator: usize,
    #[serde(flatten)]
    pub(crate) places: Places,
    pub(crate) at_risk: Vec<AtRisk>,
    pub(crate) retention: Vec<JoinWeek>,
}

/// A thread seen in the history: when and by whom it started, and its first reply by another.
struct Thread {
    started: DateTime<Utc>,
    author: String,
    first_reply: Option<DateTime<Utc>>,
    /// Started by someone not facilitating its cohort: when a facilitator first answered.
    awaits_facilitator: bool,
    facilitator_reply: Option<DateTime<Utc>>,
}

/// The members active on one day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Day {
    pub(crate) day: String,
    pub(crate) active: usize,
}

/// What one active member wrote in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Voice {
    pub(crate) member_id: String,
    pub(crate) messages: u64,
}

/// A week's share of the period's active members who wrote in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SpeakingWeek {
    /// Its Monday.
    pub(crate) week: String,
    pub(crate) share: f64,
}

fn text<'a>(event: &'a serde_json::Value, field: &str) -> &'a str {
    event[field].as_str().unwrap_or_default()
}

/// The report's running state: what it keeps of each event as the events go by in recorded
/// order, so that a history of any length streams through it (no event is held).
#[derive(Default)]
pub(crate) struct Tally {
    /// Which conversations are in scope, from how each started.
    conversations: HashSet<String>,
    // Keyed by day in order; who within a day in no order (the figures sort what they list).
    activity: BTreeMap<NaiveDate, HashSet<String>>,
    written: HashMap<String, u64>,
    threads: HashMap<String, Thread>,
    last_active: HashMap<String, DateTime<Utc>>,
    joined: BTreeMap<NaiveDate, HashSet<String>>,
    spoke: BTreeMap<NaiveDate, HashSet<String>>,
    places: places::Tracker,
    posts: u64,
    replies: u64,
    reactions: u64,
}

impl Tally {
    /// Takes in one event; those at or after the period's end change nothing.
    pub(crate) fn take(&mut self, record: &Exported, scope: &Scope) {
        if record.recorded_at >= scope.to {
            return;
        }
        let Self {
            conversations,
            activity,
            written,
            threads,
            last_active,
            joined,
            spoke,
            places,
            posts,
            replies,
            reactions,
        } = self;
        let in_period = |at: DateTime<Utc>| at >= scope.from && at < scope.to;
        let e = &record.event;
        let at = record.recorded_at;
        places.take(record, scope);
        match record.event_type.as_str() {
            "kith.messaging.v1.ConversationStarted" => {
                let cohort_matches = scope
                    .cohort
                    .as_deref()
                    .is_none_or(|cohort| text(e, "cohort_id") == cohort);
                if text(e, "community_id") == scope.community && cohort_matches {
                    conversations.insert(text(e, "conversation_id").to_owned());
                }
            }
            "kith.messaging.v1.MessagePosted" => {
                if !conversations.contains(text(e, "conversation_id")) {
                    return;
                }
                let author = text(e, "author_id").to_owned();
                let (message, thread) = (text(e, "message_id"), text(e, "thread_id"));
                let reply = !thread.is_empty() && thread != message;
                let conversation = text(e, "conversation_id");
                let facilitating = places.facilitates(conversation, &author);
                if reply {
                    if let Some(started) = threads.get_mut(thread) {
                        if started.first_reply.is_none() && started.author != author {
                            started.first_reply = Some(at);
                        }
                        if started.awaits_facilitator
                            && started.facilitator_reply.is_none()
                            && facilitating
                        {
                            started.facilitator_reply = Some(at);
                        }
                    }
                } else if !thread.is_empty() {
                    threads.insert(
                        thread.to_owned(),
                        Thread {
                            started: at,
                            author: author.clone(),
                            first_reply: None,
                            awaits_facilitator: !facilitating && places.is_cohort(conversation),
                            facilitator_reply: None,
                        },
                    );
                }
                if in_period(at) {
                    spoke
                        .entry(monday(at.date_naive()))
                        .or_default()
                        .insert(author.clone());
                }
                if in_period(at) {
                    if reply {
                        *replies += 1;
                    } else {
                        *posts += 1;
                    }
                    *written.entry(author.clone()).or_default() += 1;
                }
                if scope.rules.activity.contains(&Activity::Write) {
                    last_active.insert(author.clone(), at);
                    activity.entry(at.date_naive()).or_default().insert(author);
                }
            }
            "kith.messaging.v1.ReactionAdded" => {
                if !conversations.contains(text(e, "conversation_id")) {
                    return;
                }
                if in_period(at) {
                    *reactions += 1;
                }
                if scope.rules.activity.contains(&Activity::React) {
                    let member = text(e, "member_id").to_owned();
                    last_active.insert(member.clone(), at);
                    activity.entry(at.date_naive()).or_default().insert(member);
                }
            }
            "kith.messaging.v1.ReadCursorMoved" => {
                if !conversations.contains(text(e, "conversation_id"))
                    || !scope.rules.activity.contains(&Activity::Read)
                {
                    return;
                }
                let member = text(e, "member_id").to_owned();
                last_active.insert(member.clone(), at);
                activity.entry(at.date_naive()).or_default().insert(member);
            }
            "kith.membership.v1.MemberJoined"
                if text(e, "community_id") == scope.community && in_period(at) =>
            {
                joined
                    .entry(monday(at.date_naive()))
                    .or_default()
                    .insert(text(e, "member_id").to_owned());
            }
            _ => {}
        }
    }

    /// The figures, once every event up to the period's end was taken.
    pub(crate) fn finish(self, scope: &Scope) -> Engagement {
        let Self {
            conversations: _,
            activity,
            written,
            threads,
            last_active,
            joined,
            spoke,
            places,
            posts,
            replies,
            reactions,
        } = self;
        let in_period = |at: DateTime<Utc>| at >= scope.from && at < scope.to;
        let first_day = scope.from.date_naive();
        let last_day = (scope.to - Duration::nanoseconds(1)).date_naive();
        let active_between = |from: NaiveDate, to: NaiveDate| -> BTreeSet<&String> {
            activity
                .range(from..=to)
                .flat_map(|(_, members)| members.iter())
                .collect()
        };
        let days: Vec<NaiveDate> = first_day
            .iter_days()
            .take_while(|d| *d <= last_day)
            .collect();
        let active = active_between(first_day, last_day);
        let mean = |values: Vec<usize>| -> f64 {
            if values.is_empty() {
                0.0
            } else {
                values.iter().sum::<usize>() as f64 / values.len() as f64
            }
        };
        let dau = mean(days.iter().map(|d| active_between(*d, *d).len()).collect());
        let wau = mean(
            days.iter()
                .map(|d| active_between(*d - Duration::days(scope.rules.wau_days - 1), *d).len())
                .collect(),
        );
        let mau = active_between(
            last_day - Duration::days(scope.rules.mau_days - 1),
            last_day,
        )
        .len();

        let mut waits: Vec<i64> = Vec::new();
        let mut unanswered = 0;
        for thread in threads.values().filter(|t| in_period(t.started)) {
            match thread.first_reply {
                Some(reply) => waits.push((reply - thread.started).num_seconds()),
                None => unanswered += 1,
            }
        }
        waits.sort_unstable();
        let mut facilitator_waits: Vec<i64> = Vec::new();
        let mut awaiting = 0;
        for thread in threads
            .values()
            .filter(|t| t.awaits_facilitator && in_period(t.started))
        {
            match thread.facilitator_reply {
                Some(reply) => facilitator_waits.push((reply - thread.started).num_seconds()),
                None => awaiting += 1,
            }
        }
        facilitator_waits.sort_unstable();
        let speaking_share = monday(first_day)
            .iter_weeks()
            .skip_while(|week| *week < first_day)
            .take_while(|week| *week <= last_day)
            .map(|week| {
                let wrote = spoke.get(&week).map_or(0, |members| {
                    members.iter().filter(|m| active.contains(m)).count()
                });
                SpeakingWeek {
                    week: week.to_string(),
                    share: if active.is_empty() {
                        0.0
                    } else {
                        round(wrote as f64 / active.len() as f64)
                    },
                }
            })
            .collect();
        let daily_active = days
            .iter()
            .map(|d| Day {
                day: d.to_string(),
                active: active_between(*d, *d).len(),
            })
            .collect();
        let mut voices: Vec<Voice> = active
            .iter()
            .map(|member| Voice {
                member_id: (*member).clone(),
                messages: written.get(*member).copied().unwrap_or(0),
            })
            .collect();
        voices.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.member_id.cmp(&b.member_id))
        });
        let counts: Vec<u64> = active
            .iter()
            .map(|member| written.get(*member).copied().unwrap_or(0))
            .collect();
        let length = scope.to - scope.from;
        let quiet_since = scope.to - Duration::days(scope.silent_days);
        let before = active_between(
            (scope.from - length).date_naive(),
            (scope.from - Duration::nanoseconds(1)).date_naive(),
        );
        let at_risk = before
            .into_iter()
            .filter_map(|member| {
                let last = last_active.get(member)?;
                (*last < quiet_since).then(|| AtRisk {
                    member_id: member.clone(),
                    last_active: last.to_rfc3339(),
                })
            })
            .collect();
        let retention = joined
            .iter()
            .map(|(week, members)| {
                let active_share = week
                    .iter_weeks()
                    .take_while(|start| *start <= last_day)
                    .map(|start| {
                        let seen = active_between(start, start + Duration::days(6));
                        let kept = members.iter().filter(|m| seen.contains(m)).count();
                        round(kept as f64 / members.len() as f64)
                    })
                    .collect();
                JoinWeek {
                    week: week.to_string(),
                    joined: members.len(),
                    active_share,
                }
            })
            .collect();
        Engagement {
            definitions: scope.rules.text(scope.rules_source.as_deref()),
            community: scope.community.clone(),
            cohort: scope.cohort.clone(),
            from: scope.from.to_rfc3339(),
            to: scope.to.to_rfc3339(),
            active_members: active.len(),
            dau: round(dau),
            wau: round(wau),
            mau,
            stickiness: if mau == 0 {
                0.0
            } else {
                round(dau / mau as f64)
            },
            posts,
            replies,
            reactions,
            first_reply_median_seconds: nearest_rank(&waits, 0.5),
            first_reply_p90_seconds: nearest_rank(&waits, 0.9),
            threads_answered: waits.len(),
            threads_unanswered: unanswered,
            participation_gini: round(gini(&counts)),
            daily_active,
            voices,
            speaking_share,
            facilitator_response_median_seconds: nearest_rank(&facilitator_waits, 0.5),
            facilitator_response_p90_seconds: nearest_rank(&facilitator_waits, 0.9),
            threads_answered_by_facilitator: facilitator_waits.len(),
            threads_awaiting_facilitator: awaiting,
            places: places.figures(scope),
            at_risk,
            retention,
        }
    }
}

/// The report fed straight from a reader, with progress on stderr: no event is held.
pub(crate) struct Replay<'s> {
    tally: Tally,
    scope: &'s Scope,
    progress: indicatif::ProgressBar,
    pub(crate) events: u64,
}

impl<'s> Replay<'s> {
    pub(crate) fn new(scope: &'s Scope) -> Self {
        Self {
            tally: Tally::default(),
            scope,
            progress: crate::events::progress_of("replaying", 0),
            events: 0,
        }
    }

    pub(crate) fn finish(self) -> Engagement {
        self.progress.finish_and_clear();
        self.tally.finish(self.scope)
    }
}

impl Take for Replay<'_> {
    fn expect(&self, total: u64) {
        self.progress.set_length(total);
    }

    fn take(&mut self, record: Exported) -> anyhow::Result<()> {
        self.tally.take(&record, self.scope);
        self.events += 1;
        self.progress.inc(1);
        Ok(())
    }
}

/// Computes the report from events in recorded order, all of them up to the period's end (a
/// conversation started before the period still belongs to its community).
#[cfg(test)]
pub(crate) fn engagement(events: &[Exported], scope: &Scope) -> Engagement {
    let mut tally = Tally::default();
    for record in events {
        tally.take(record, scope);
    }
    tally.finish(scope)
}

fn days(n: i64) -> String {
    if n == 1 {
        "day".to_owned()
    } else {
        format!("{n} days")
    }
}

/// The Monday of `day`'s week.
fn monday(day: NaiveDate) -> NaiveDate {
    use chrono::Datelike;
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Rounded to 4 decimals, so that the printed figures do not depend on summation order.
fn round(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// The nearest-rank percentile `p` of sorted `values`: the smallest value with at least p of
/// them at or below it.
fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

/// The Gini coefficient of `values` (mean absolute difference over twice the mean).
fn gini(values: &[u64]) -> f64 {
    let n = values.len();
    let total: u64 = values.iter().sum();
    if n == 0 || total == 0 {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    // Σ (2i - n - 1) x_i over i = 1..n, divided by n Σ x.
    let weighted: i128 = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| (2 * (i as i128 + 1) - n as i128 - 1) * i128::from(*x))
        .sum();
    weighted as f64 / (n as f64 * total as f64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned text, then the definitions.
    Table,
    /// One JSON object, the definitions included.
    Json,
    /// One self-contained page (no script, nothing fetched when viewed): key figures, activity
    /// over time, participation, the retention heat map, members at risk, the definitions.
    Html,
    /// Tidy rows `section,key,metric,value` (`summary` for the single figures; a week or a
    /// member as the key of the others), the definitions in the last row.
    Csv,
    /// The same rows as CSV in one Parquet file, the value a number (`value`) or text
    /// (`text`); with --output FILE, or stdout when it is not a terminal.
    Parquet,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Report {
    /// A community's (or one cohort's) engagement over a period: active members, posts,
    /// replies, reactions, time to first reply and facilitator response, participation and
    /// weekly speaking share, sessions (RSVP, attendance), the waitlist, members at risk and
    /// retention by join week; as a table, JSON, CSV or a self-contained HTML page.
    Engagement(EngagementArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct EngagementArgs {
    #[command(flatten)]
    read: ReadArgs,
    /// The community's id.
    #[arg(long)]
    community: String,
    /// Only this cohort's conversation.
    #[arg(long)]
    cohort: Option<String>,
    /// The period's start (RFC 3339).
    #[arg(long)]
    from: DateTime<Utc>,
    /// The period's end, excluded (RFC 3339).
    #[arg(long)]
    to: DateTime<Utc>,
    /// Days without activity after which a member active in the previous period is at risk.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(i64).range(1..=365))]
    silent_days: i64,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// A JSON file overriding the definitions' parameters, e.g.
    /// {"activity": ["write"], "wau_days": 7, "mau_days": 28}; printed with the report.
    #[arg(long, value_name = "FILE")]
    definitions: Option<std::path::PathBuf>,
    /// File to write; standard output when absent or `-`.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

pub(crate) async fn run(report: Report) -> anyhow::Result<()> {
    let Report::Engagement(args) = report;
    if args.from >= args.to {
        anyhow::bail!("--from ({}) must be before --to ({})", args.from, args.to);
    }
    for (flag, id) in [
        ("--community", Some(&args.community)),
        ("--cohort", args.cohort.as_ref()),
    ] {
        if let Some(id) = id
            && id.parse::<uuid::Uuid>().is_err()
        {
            anyhow::bail!("{flag} must be a UUID, got {id:?}");
        }
    }
    // Checked before anything is read: a mistake in the file is reported at once.
    let rules = match &args.definitions {
        Some(path) => Rules::from_file(path)?,
        None => Rules::default(),
    };
    let out = output(args.output.as_deref(), args.format)?;
    let written = replay_into(&args, rules, out).await;
    // A report that failed leaves no file behind that could pass for one.
    if written.is_err()
        && let Some(path) = args.output.as_deref()
        && path != std::path::Path::new("-")
    {
        let _ = std::fs::remove_file(path);
    }
    written
}

/// Replays the history into the report and writes it to `out`.
async fn replay_into(
    args: &EngagementArgs,
    rules: Rules,
    mut out: Box<dyn std::io::Write + Send>,
) -> anyhow::Result<()> {
    let decoder = Decoder::new()?;
    let window = Window {
        from: None,
        to: Some(args.to),
    };
    let scope = Scope {
        community: args.community.clone(),
        cohort: args.cohort.clone(),
        from: args.from,
        to: args.to,
        silent_days: args.silent_days,
        rules,
        rules_source: args
            .definitions
            .as_ref()
            .map(|path| path.display().to_string()),
    };
    let mut replay = Replay::new(&scope);
    let started = std::time::Instant::now();
    let read = crate::events::read(&args.read, window, &decoder, None, &mut replay).await?;
    let (events, seconds) = (replay.events, started.elapsed().as_secs_f64());
    let report = replay.finish();
    // On stderr, so that the report itself stays the same bytes for the same events.
    eprintln!(
        "replayed {events} events from {} in {seconds:.1}s ({:.0} events/s)",
        if read.is_empty() {
            "no service (none has events yet)".to_owned()
        } else {
            read.join(", ")
        },
        events as f64 / seconds.max(1e-9)
    );
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Table => write!(out, "{}", table(&report))?,
        Format::Csv => write!(out, "{}", tidy::csv(&report)?)?,
        Format::Html => write!(out, "{}", html::page(&report))?,
        Format::Parquet => tidy::parquet(&report, &mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// Where the report goes: the file named, or stdout. Opened before anything is read, so a path
/// that cannot be written is reported at once; Parquet is not written to a terminal.
fn output(
    path: Option<&std::path::Path>,
    format: Format,
) -> anyhow::Result<Box<dyn std::io::Write + Send>> {
    use anyhow::Context;
    use std::io::IsTerminal;
    match path {
        Some(path) if path != std::path::Path::new("-") => Ok(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("--output {}", path.display()))?,
        ))),
        _ if format == Format::Parquet && std::io::stdout().is_terminal() => anyhow::bail!(
            "--format parquet is binary: name a file with --output FILE, or redirect stdout"
        ),
        _ => Ok(Box::new(std::io::BufWriter::new(std::io::stdout()))),
    }
}

fn table(r: &Engagement) -> String {
    let optional = |v: Option<i64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let rows = [
        ("community", r.community.clone()),
        (
            "cohort",
            r.cohort.clone().unwrap_or_else(|| "all".to_owned()),
        ),
        ("period", format!("{} .. {}", r.from, r.to)),
        ("active members", r.active_members.to_string()),
        ("DAU (mean)", format!("{:.2}", r.dau)),
        ("WAU (mean)", format!("{:.2}", r.wau)),
        ("MAU", r.mau.to_string()),
        ("stickiness", format!("{:.2}", r.stickiness)),
        ("posts", r.posts.to_string()),
        ("replies", r.replies.to_string()),
        ("reactions", r.reactions.to_string()),
        (
            "first reply, median s",
            optional(r.first_reply_median_seconds),
        ),
        ("first reply, p90 s", optional(r.first_reply_p90_seconds)),
        ("threads answered", r.threads_answered.to_string()),
        ("threads unanswered", r.threads_unanswered.to_string()),
        (
            "participation (Gini)",
            format!("{:.2}", r.participation_gini),
        ),
        (
            "facilitator reply, median s",
            optional(r.facilitator_response_median_seconds),
        ),
        (
            "facilitator reply, p90 s",
            optional(r.facilitator_response_p90_seconds),
        ),
        (
            "threads a facilitator answered",
            r.threads_answered_by_facilitator.to_string(),
        ),
        (
            "threads awaiting a facilitator",
            r.threads_awaiting_facilitator.to_string(),
        ),
        ("sessions", r.places.sessions.to_string()),
        ("RSVP yes rate", format!("{:.2}", r.places.rsvp_yes_rate)),
        (
            "attendance rate",
            format!(
                "{:.2} ({} sessions recorded)",
                r.places.attendance_rate, r.places.sessions_with_attendance
            ),
        ),
        ("waitlist at end", r.places.waitlist_at_end.to_string()),
        (
            "waitlist wait, median s",
            optional(r.places.waitlist_wait_median_seconds),
        ),
        (
            "waitlist wait, p90 s",
            optional(r.places.waitlist_wait_p90_seconds),
        ),
        ("promoted", r.places.promoted.to_string()),
    ];
    let mut out = String::new();
    for (name, value) in rows {
        out.push_str(&format!("{name:<32}{value}\n"));
    }
    out.push_str("\nspeaking share by week\n");
    for week in &r.speaking_share {
        out.push_str(&format!("  {}  {:.2}\n", week.week, week.share));
    }
    out.push_str(&format!("\nat risk ({})\n", r.at_risk.len()));
    for member in &r.at_risk {
        out.push_str(&format!(
            "  {}  last active {}\n",
            member.member_id, member.last_active
        ));
    }
    out.push_str("\nretention by join week (share active in weeks 0, 1, ...)\n");
    for week in &r.retention {
        let shares: Vec<String> = week
            .active_share
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect();
        out.push_str(&format!(
            "  {}  joined {:>3}  {}\n",
            week.week,
            week.joined,
            shares.join(" ")
        ));
    }
    out.push('\n');
    out.push_str(&r.definitions);
    out
}

#[cfg(test)]
mod tests;
