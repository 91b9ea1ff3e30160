//! The "Recent outages" table: the newest outages of the log (every one on the overview,
//! a tunnel's own on its targets' pages), each linking to its record.

use std::fmt::Write as _;

use super::{age, escape};
use crate::types::Timestamp;
use tunnelkeeper_core::outage::{OutageKind, OutageRecord, Plane};

/// How many outages the table shows.
pub const RECENT_ROWS: usize = 20;

/// Renders the table of the newest [`RECENT_ROWS`] of `records` (oldest first) that
/// `keep` lets through; `heading` names what they are of.
pub fn recent_outages(
    out: &mut String,
    now: Timestamp,
    records: &[OutageRecord],
    heading: &str,
    keep: impl Fn(&OutageRecord) -> bool,
) {
    let rows: Vec<&OutageRecord> = records
        .iter()
        .rev()
        .filter(|r| keep(r))
        .take(RECENT_ROWS)
        .collect();
    let _ = write!(
        out,
        r#"<section class="outages"><h2>{}</h2>"#,
        escape(heading)
    );
    if rows.is_empty() {
        out.push_str(r#"<p class="legend">None in the log (kept 90 days).</p></section>"#);
        return;
    }
    out.push_str(
        r#"<div class="scroll"><table><thead><tr><th>began</th><th>lasted</th><th>what</th><th>seen by</th><th>why</th><th>pages</th><th>shared targets lost</th></tr></thead><tbody>"#,
    );
    for r in rows {
        let what = match r.kind {
            OutageKind::Tunnel => format!("tunnel {}", r.tunnels.join(", ")),
            OutageKind::Connection => {
                format!("connection {}", r.connection.as_deref().unwrap_or("?"))
            }
            OutageKind::Vpn => "the VPN".to_string(),
            OutageKind::Failover => format!("failover from {}", r.tunnels.join(", ")),
        };
        let planes: Vec<&str> = r
            .planes
            .iter()
            .map(|p| match p {
                Plane::Data => "pings",
                Plane::Control => "AWS",
            })
            .collect();
        let shared = match r.shared_targets.sent {
            0 => "–".to_string(),
            sent => format!("{} of {sent} probes", r.shared_targets.lost),
        };
        let _ = write!(
            out,
            r#"<tr><td><a href="/outages/{id}"><time datetime="{start}">{start}</time></a> ({ago} ago)</td><td>{lasted}</td><td>{what}</td><td>{planes}</td><td>{why}</td><td>{pages}</td><td>{shared}</td></tr>"#,
            id = escape(&r.id),
            start = r.started_at,
            ago = age(now, r.started_at),
            lasted = lasted(r.seconds),
            what = escape(&what),
            planes = planes.join(", "),
            why = match &r.cause {
                Some(cause) => format!(
                    "{}<br><small>Cause: {}</small>",
                    escape(&r.reason),
                    escape(cause)
                ),
                None => escape(&r.reason),
            },
            pages = r.pages.len(),
        );
    }
    out.push_str("</tbody></table></div></section>");
}

/// A duration as the table says it: `45 s`, `12 min 5 s`, `3 h 2 min`.
fn lasted(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
    }
}
