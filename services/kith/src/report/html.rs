//! The engagement report as one self-contained HTML page for a host: inline CSS and SVG, no
//! script and nothing fetched when it is viewed, so it opens anywhere, offline, and prints.

use std::fmt::Write;

use super::Engagement;

/// Text made safe for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn seconds(value: Option<i64>) -> String {
    match value {
        None => "–".to_owned(),
        Some(s) if s < 120 => format!("{s} s"),
        Some(s) if s < 2 * 3600 => format!("{:.0} min", s as f64 / 60.0),
        Some(s) if s < 2 * 86_400 => format!("{:.1} h", s as f64 / 3600.0),
        Some(s) => format!("{:.1} d", s as f64 / 86_400.0),
    }
}

fn percent(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

const STYLE: &str = "
body { font: 15px/1.45 system-ui, sans-serif; color: #1d2330; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.1rem; margin-top: 2rem; border-bottom: 1px solid #dde1ea; padding-bottom: 0.3rem; }
.muted { color: #667085; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: 0.7rem; }
.card { border: 1px solid #dde1ea; border-radius: 8px; padding: 0.6rem 0.8rem; }
.card b { display: block; font-size: 1.35rem; }
table { border-collapse: collapse; }
td, th { padding: 0.25rem 0.6rem; text-align: left; }
th { font-weight: 600; color: #475467; }
td.cell { text-align: center; min-width: 3.2rem; }
pre { background: #f6f7f9; padding: 0.8rem; white-space: pre-wrap; font-size: 12px; }
svg text { font: 11px system-ui, sans-serif; fill: #475467; }
";

/// A bar chart of `values` with `labels` under every `every`-th bar.
fn bars(values: &[(String, f64)], every: usize, unit: &str) -> String {
    let (width, height, bottom) = (900.0, 180.0, 24.0);
    let top = values
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let step = width / values.len().max(1) as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {width} {}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        height + bottom,
        esc(unit)
    );
    for (i, (label, value)) in values.iter().enumerate() {
        let h = value / top * height;
        let x = i as f64 * step;
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4f6bed\"><title>{}: {value} {}</title></rect>",
            x + step * 0.1,
            height - h,
            step * 0.8,
            esc(label),
            esc(unit)
        );
        if i % every.max(1) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\">{}</text>",
                x + step * 0.1,
                height + 16.0,
                esc(label)
            );
        }
    }
    let _ = write!(
        svg,
        "<text x=\"{width}\" y=\"12\" text-anchor=\"end\">highest: {top} {}</text></svg>",
        esc(unit)
    );
    svg
}

/// The page.
pub(crate) fn page(r: &Engagement) -> String {
    let mut out = String::new();
    let scope = match &r.cohort {
        Some(cohort) => format!("cohort {}", esc(cohort)),
        None => "every cohort".to_owned(),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Engagement of community {community}</title><style>{STYLE}</style></head><body>\
         <h1>Engagement</h1><p class=\"muted\">Community {community}, {scope}, from {from} to {to} \
         (the end excluded). Every figure follows the definitions at the foot of the page.</p>",
        community = esc(&r.community),
        from = esc(&r.from),
        to = esc(&r.to),
    );
    let cards = [
        ("active members", r.active_members.to_string()),
        (
            "DAU / WAU / MAU",
            format!("{:.1} / {:.1} / {}", r.dau, r.wau, r.mau),
        ),
        ("stickiness (DAU/MAU)", percent(r.stickiness)),
        (
            "posts · replies · reactions",
            format!("{} · {} · {}", r.posts, r.replies, r.reactions),
        ),
        (
            "first reply, median (p90)",
            format!(
                "{} ({})",
                seconds(r.first_reply_median_seconds),
                seconds(r.first_reply_p90_seconds)
            ),
        ),
        (
            "facilitator reply, median (p90)",
            format!(
                "{} ({})",
                seconds(r.facilitator_response_median_seconds),
                seconds(r.facilitator_response_p90_seconds)
            ),
        ),
        (
            "threads awaiting a facilitator",
            r.threads_awaiting_facilitator.to_string(),
        ),
        ("sessions", r.places.sessions.to_string()),
        ("RSVP yes", percent(r.places.rsvp_yes_rate)),
        (
            "attendance",
            // A rate over no recorded session is not 0%: nobody has taken attendance yet.
            if r.places.sessions_with_attendance == 0 {
                "not recorded".to_owned()
            } else {
                percent(r.places.attendance_rate)
            },
        ),
        (
            "waitlist now · median wait",
            format!(
                "{} · {}",
                r.places.waitlist_at_end,
                seconds(r.places.waitlist_wait_median_seconds)
            ),
        ),
        (
            "participation (Gini)",
            format!("{:.2}", r.participation_gini),
        ),
    ];
    out.push_str("<div class=\"cards\">");
    for (name, value) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><span class=\"muted\">{}</span><b>{}</b></div>",
            esc(name),
            esc(&value)
        );
    }
    out.push_str("</div>");

    out.push_str("<h2>Activity over time</h2><p class=\"muted\">Members active each day.</p>");
    let daily: Vec<(String, f64)> = r
        .daily_active
        .iter()
        .map(|d| (d.day.clone(), d.active as f64))
        .collect();
    let every = daily.len().div_ceil(10);
    out.push_str(&bars(&daily, every, "members"));

    out.push_str(
        "<h2>Participation</h2><p class=\"muted\">Messages each active member wrote, most first; \
         one tall bar and many short ones is a group that listens to one voice.</p>",
    );
    let voices: Vec<(String, f64)> = r
        .voices
        .iter()
        .map(|v| (v.member_id.chars().take(8).collect(), v.messages as f64))
        .collect();
    out.push_str(&bars(&voices, voices.len().div_ceil(12), "messages"));
    out.push_str("<table><tr><th>week</th><th>share of active members who wrote</th></tr>");
    for week in &r.speaking_share {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&week.week),
            percent(week.share)
        );
    }
    out.push_str("</table>");

    out.push_str(
        "<h2>Retention by join week</h2><p class=\"muted\">Of the members who joined in a week, \
         the share active in that week (0) and each one after.</p><table><tr><th>joined in week \
         of</th><th>members</th>",
    );
    let widest = r
        .retention
        .iter()
        .map(|w| w.active_share.len())
        .max()
        .unwrap_or(0);
    for i in 0..widest {
        let _ = write!(out, "<th>{i}</th>");
    }
    out.push_str("</tr>");
    if r.retention.is_empty() {
        out.push_str("<tr><td class=\"muted\">no one joined in this period</td></tr>");
    }
    for week in &r.retention {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td>",
            esc(&week.week),
            week.joined
        );
        for share in &week.active_share {
            let text = if *share > 0.6 { "#fff" } else { "#1d2330" };
            let _ = write!(
                out,
                "<td class=\"cell\" style=\"background: rgba(79, 107, 237, {share:.2}); color: {text}\">{}</td>",
                percent(*share)
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");

    let _ = write!(
        out,
        "<h2>At risk ({})</h2><p class=\"muted\">Active in the period before this one, silent \
         since.</p><table><tr><th>member</th><th>last active</th></tr>",
        r.at_risk.len()
    );
    if r.at_risk.is_empty() {
        out.push_str("<tr><td class=\"muted\">no one</td></tr>");
    }
    for member in &r.at_risk {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(&member.member_id),
            esc(&member.last_active)
        );
    }
    out.push_str("</table>");
    let _ = writeln!(
        out,
        "<h2>Definitions</h2><pre>{}</pre></body></html>",
        esc(&r.definitions)
    );
    out
}
