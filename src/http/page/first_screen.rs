//! The NOC page's first screen: the banner's word is the worst of the VPN verdict and the
//! firing alerts (a CRITICAL page must never sit under a DEGRADED banner); what fires
//! comes next, above the connections, with since when and what to do; and each reason is
//! written once (a repeat points up, a long one folds), because in a total outage the same
//! reason otherwise fills the screen five times over.

use std::fmt::Write as _;

use super::{escape, look, vpn_look, when, Look, BAD, WARN};
use crate::alert::runbook::what_to_do;
use crate::health::VpnState;
use crate::snapshot::{AlertView, Snapshot};
use crate::types::{AlertClass, Severity, Timestamp};

/// Reasons longer than this (or of several lines) show their first line, the rest folded.
const FOLD_AFTER_CHARS: usize = 120;
/// Shorter reasons are never taken as already said inside a longer one ("timeout" would
/// match too much).
const SAME_REASON_MIN_CHARS: usize = 12;

/// The reasons the page has shown so far, top to bottom.
#[derive(Default)]
pub struct Reasons {
    shown: Vec<String>,
}

impl Reasons {
    /// Returns the reason as HTML: folded when long, or a pointer up when the page has
    /// already said it (the same text, or a longer reason containing it).
    pub fn html(&mut self, reason: &str) -> String {
        let reason = reason.trim();
        let said = self.shown.iter().any(|r| {
            r == reason || (reason.chars().count() >= SAME_REASON_MIN_CHARS && r.contains(reason))
        });
        if said {
            return r#"<span class="again">(reason above)</span>"#.into();
        }
        self.shown.push(reason.to_string());
        fold(reason)
    }
}

/// A reason as HTML: as it is when short, else its first line with the rest folded.
pub fn fold(reason: &str) -> String {
    let (first, rest) = match reason.split_once('\n') {
        Some((first, rest)) => (first.trim_end(), rest.trim()),
        None => (reason, ""),
    };
    if rest.is_empty() && first.chars().count() <= FOLD_AFTER_CHARS {
        return format!(r#"<span class="reason">{}</span>"#, escape(first));
    }
    let head: String = first.chars().take(FOLD_AFTER_CHARS).collect();
    let body = if rest.is_empty() {
        escape(reason)
    } else {
        escape(reason).replace('\n', "<br>")
    };
    format!(
        r#"<details class="reason"><summary>{}{}</summary><p>{body}</p></details>"#,
        escape(&head),
        if head.len() < reason.len() {
            " …"
        } else {
            ""
        }
    )
}

/// The alerts that page now: firing, neither inhibited nor silenced.
fn firing(alerts: &[AlertView]) -> Vec<&AlertView> {
    let mut firing: Vec<&AlertView> = alerts.iter().filter(|a| a.state == "firing").collect();
    firing.sort_by_key(|a| (std::cmp::Reverse(a.severity), a.since));
    firing
}

/// The banner's look: the worse of the VPN verdict's and the worst firing alert's, and
/// the alert that made it worse, if one did.
pub fn banner_look(s: &Snapshot) -> (Look, Option<&AlertView>) {
    let verdict = vpn_look(&s.vpn);
    let rank = |v: &VpnState| match v {
        VpnState::Starting | VpnState::Ok { .. } => 0,
        VpnState::Degraded { .. } => 1,
        VpnState::Critical { .. } => 2,
    };
    let worst = firing(&s.alerts).into_iter().next();
    let alert_rank = worst.map_or(0, |a| match a.severity {
        Severity::Critical => 2,
        Severity::Warning => 1,
        Severity::Info => 0,
    });
    match worst {
        Some(a) if alert_rank > rank(&s.vpn) => {
            let l = if alert_rank == 2 {
                look(BAD, "CRITICAL")
            } else {
                look(WARN, "DEGRADED")
            };
            (l, Some(a))
        }
        _ => (verdict, None),
    }
}

/// Where an alert is: its tunnel, its connection, or the whole VPN.
fn place(a: &AlertView) -> String {
    match (&a.vpn, &a.tunnel) {
        (_, Some(t)) => escape(t),
        (Some(v), None) => escape(v),
        (None, None) => "VPN".into(),
    }
}

/// The runbook section of a class, linked when it is a web address.
pub fn runbook_link(runbook_url: &str, class: AlertClass) -> String {
    let section = format!("{runbook_url}#{}", class.name().to_ascii_lowercase());
    // Only web addresses become links: the default is a path in the source tree.
    if section.starts_with("https://") || section.starts_with("http://") {
        format!(r#"<a href="{0}">{0}</a>"#, escape(&section))
    } else {
        escape(&section)
    }
}

/// The first sentence of a text, and the rest.
fn first_sentence(text: &str) -> (&str, &str) {
    match text.find(". ") {
        Some(i) => (&text[..=i], text[i + 1..].trim()),
        None => (text, ""),
    }
}

/// What fires now, worst first: class, place, summary, since when, the first step of what
/// to do, and (folded) the reason, the rest of what to do and the runbook section.
pub fn firing_section(out: &mut String, now: Timestamp, s: &Snapshot, reasons: &mut Reasons) {
    let firing = firing(&s.alerts);
    out.push_str(r#"<section id="firing"><h2>Firing now</h2>"#);
    if firing.is_empty() {
        out.push_str("<p>No alert fires.</p></section>");
        return;
    }
    out.push_str(r#"<ol class="firing">"#);
    for a in firing {
        let class = match a.severity {
            Severity::Critical => BAD,
            Severity::Warning => WARN,
            Severity::Info => "none",
        };
        let todo = what_to_do(a.alert).unwrap_or_else(|| "see the runbook".into());
        let (step, more) = first_sentence(&todo);
        let _ = write!(
            out,
            r#"<li class="{class}"><span class="badge {class}">{severity}</span> <b class="alert">{name}</b> {place}: {summary} <span class="since">since {since}</span><p class="todo"><b>What to do:</b> {step}</p><details><summary>details</summary><p>{reason}</p>{more}<p>Runbook: {runbook}</p></details></li>"#,
            severity = a.severity.label().to_ascii_uppercase(),
            name = a.alert.name(),
            place = place(a),
            summary = escape(&a.summary),
            since = when(now, a.since),
            step = escape(step),
            reason = reasons.html(&a.reason),
            more = if more.is_empty() {
                String::new()
            } else {
                format!("<p>{}</p>", escape(more))
            },
            runbook = runbook_link(&s.runbook_url, a.alert),
        );
    }
    out.push_str("</ol></section>");
}

/// What the control plane's state is while EC2 is unavailable: the alert's summary, so
/// that the tunnels say what the page's alert says (not "waiting for the first answer").
pub fn control_plane_alert(s: &Snapshot) -> Option<&AlertView> {
    s.alerts
        .iter()
        .find(|a| a.alert == AlertClass::ControlPlaneUnavailable && a.state != "pending")
}
