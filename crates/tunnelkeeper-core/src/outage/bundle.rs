//! The incident bundle of one outage, pure: its record, the pages sent, and the
//! per-minute history of its tunnels and their siblings (the other tunnels of their
//! connections) from half an hour before it began to half an hour after it ended, as one
//! JSON document, and the minutes as CSV. The minutes come from the history (the ring
//! files and the minutes in memory, read by the caller): per minute while the window is
//! within the last hour, per five minutes within the last six hours, per fifteen within
//! the last seven days.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::history::{Mark, MinuteSummary, Range};
use crate::outage::{OutageRecord, PageSent};
use crate::types::Timestamp;

/// The version of the bundle's form.
pub const BUNDLE_VERSION: u32 = 1;

/// How far the minutes reach before the start and after the end.
pub const MARGIN: Duration = Duration::from_secs(30 * 60);

/// What a support case or a post-mortem needs of one outage.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IncidentBundle {
    pub bundle_version: u32,
    pub outage: OutageRecord,
    /// The window the minutes cover.
    pub from: Timestamp,
    pub to: Timestamp,
    /// Each tunnel involved and its siblings, with their minutes in the window.
    pub tunnels: Vec<TunnelMinutes>,
    pub pages: Vec<PageSent>,
    /// Why minutes are missing, when they are.
    pub note: Option<String>,
}

/// One tunnel's minutes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TunnelMinutes {
    pub connection: String,
    pub tunnel: String,
    /// Whether the tunnel was out in the outage (`outage`) or is a sibling (`sibling`).
    pub role: &'static str,
    pub minutes: Vec<MinuteRow>,
}

/// One point of a tunnel's history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MinuteRow {
    /// The first minute it covers.
    pub at: Timestamp,
    /// How many minutes it covers (1; 5 past the last hour; 15 past six hours).
    pub minutes: u32,
    pub sent: u16,
    pub lost: u16,
    pub rtt_p10_ms: Option<f64>,
    pub rtt_p50_ms: Option<f64>,
    pub rtt_p90_ms: Option<f64>,
    /// The state changes in it: `down`, `up`, `unknown`, `not_running` (the daemon was not).
    pub marks: Vec<&'static str>,
}

/// Reads a tunnel's points (by connection and tunnel name) in a range, from the history.
pub type TunnelChart<'a> = dyn Fn(&str, &str, Range) -> Option<Vec<MinuteSummary>> + 'a;

/// Builds the bundle of `record` as of `now`; `chart` reads a tunnel's points (by
/// connection and tunnel name) in a range, from the history.
pub fn build(
    record: &OutageRecord,
    config: &Config,
    now: Timestamp,
    chart: &TunnelChart<'_>,
) -> IncidentBundle {
    let from = Timestamp::from_millis(
        record
            .started_at
            .as_millis()
            .saturating_sub(MARGIN.as_millis() as u64),
    );
    let to = record.ended_at.plus(MARGIN).min(now);
    // The finest range that reaches back to the window's start.
    let range = [Range::Hour, Range::SixHours, Range::Week]
        .into_iter()
        .find(|r| {
            let span = u64::from(r.step_minutes()) * (r.points() as u64 - 1) * 60;
            now.since(from) < Duration::from_secs(span)
        })
        .unwrap_or(Range::Week);
    let mut tunnels = Vec::new();
    for c in &config.connections {
        let involved = c.tunnels.iter().any(|t| {
            record.involves_tunnel(t.name.as_str())
                && record
                    .connection
                    .as_deref()
                    .is_none_or(|name| name == c.name.as_str())
        });
        if !involved {
            continue;
        }
        for t in &c.tunnels {
            let minutes = chart(c.name.as_str(), t.name.as_str(), range)
                .map(|points| rows(&points, range, from, to))
                .unwrap_or_default();
            tunnels.push(TunnelMinutes {
                connection: c.name.to_string(),
                tunnel: t.name.to_string(),
                role: if record.involves_tunnel(t.name.as_str()) {
                    "outage"
                } else {
                    "sibling"
                },
                minutes,
            });
        }
    }
    let note = tunnels
        .iter()
        .all(|t| t.minutes.iter().all(|m| m.sent == 0))
        .then(|| "no minutes: the history holds the last seven days the daemon ran".into());
    IncidentBundle {
        bundle_version: BUNDLE_VERSION,
        outage: record.clone(),
        from,
        to,
        tunnels,
        pages: record.pages.clone(),
        note,
    }
}

fn rows(points: &[MinuteSummary], range: Range, from: Timestamp, to: Timestamp) -> Vec<MinuteRow> {
    let step = range.step_minutes();
    let ms = |us: u32| f64::from(us) / 1000.0;
    points
        .iter()
        .filter(|p| {
            let start = u64::from(p.minute) * 60;
            let end = start + u64::from(step) * 60;
            end > from.wall_millis() / 1000 && start <= to.wall_millis() / 1000
        })
        .map(|p| MinuteRow {
            at: p.start(),
            minutes: step,
            sent: p.sent,
            lost: p.lost,
            rtt_p10_ms: p.has_rtt().then(|| ms(p.p10_us)),
            rtt_p50_ms: p.has_rtt().then(|| ms(p.p50_us)),
            rtt_p90_ms: p.has_rtt().then(|| ms(p.p90_us)),
            marks: Mark::ALL
                .iter()
                .filter(|m| p.has(**m))
                .map(|m| match m {
                    Mark::Down => "down",
                    Mark::Up => "up",
                    Mark::Unknown => "unknown",
                    Mark::NotRunning => "not_running",
                })
                .collect(),
        })
        .collect()
}

/// The bundle's minutes as CSV, one row per tunnel and point, with a header.
pub fn minutes_csv(bundle: &IncidentBundle) -> String {
    let mut out = String::from(
        "connection,tunnel,role,at,minutes,sent,lost,rtt_p10_ms,rtt_p50_ms,rtt_p90_ms,marks\n",
    );
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    for t in &bundle.tunnels {
        for m in &t.minutes {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&t.connection),
                csv_field(&t.tunnel),
                t.role,
                m.at,
                m.minutes,
                m.sent,
                m.lost,
                opt(m.rtt_p10_ms),
                opt(m.rtt_p50_ms),
                opt(m.rtt_p90_ms),
                m.marks.join(" ")
            );
        }
    }
    out
}

/// Quotes a field that holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}
