//! What a notification says (a "page" to the NOC): SNS subjects, messages and attributes,
//! and the runbook link, pure functions of a notification. (Not the NOC web page: that is
//! the daemon's `http/page/`.)

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::alert::engine::{Notification, NotificationStatus};
use crate::alert::runbook::{what_to_do, what_to_do_for_cause};
use crate::config::Config;
use crate::types::Timestamp;

/// SNS email subjects must stay under 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 99;
/// Reasons are cut to this length in messages (SNS allows 256 KiB; phones do not).
const MAX_REASON_CHARS: usize = 4000;

/// What a page needs to know beyond the notification.
#[derive(Clone, Debug)]
pub struct PageContext {
    /// The instance the daemon runs on.
    pub host: String,
    /// The runbook's location.
    pub runbook_url: String,
    /// The configured outside IPs, by connection and tunnel name.
    pub outside_ips: BTreeMap<(String, String), String>,
}

impl PageContext {
    /// Builds the context from this machine and the config.
    pub fn from_machine(config: &Config) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        let outside_ips = config
            .connections
            .iter()
            .flat_map(|c| {
                c.tunnels.iter().filter_map(|t| {
                    let ip = t.outside_ip.as_ref()?;
                    Some(((c.name.to_string(), t.name.to_string()), ip.to_string()))
                })
            })
            .collect();
        Self {
            host,
            runbook_url: config.alerts.runbook_url.clone(),
            outside_ips,
        }
    }

    /// Returns the runbook section for an alert: its cause's where one is known, else its
    /// class's.
    pub fn runbook(&self, n: &Notification) -> String {
        let section = match &n.details.cause {
            Some(cause) => cause.kind.runbook_section(),
            None => n.key.class.name().to_ascii_lowercase(),
        };
        format!("{}#{section}", self.runbook_url)
    }

    /// Returns the outside IP of the alert's tunnel, when configured.
    pub fn outside_ip(&self, n: &Notification) -> Option<&str> {
        let key = (n.key.vpn.clone()?, n.key.tunnel.clone()?);
        self.outside_ips.get(&key).map(String::as_str)
    }

    /// Says where the alert is: tunnel (with its outside IP), connection (with its AWS
    /// id), or the whole VPN.
    pub fn place(&self, n: &Notification) -> String {
        let mut where_ = Vec::new();
        if let Some(t) = &n.key.tunnel {
            match self.outside_ip(n) {
                Some(ip) => where_.push(format!("tunnel {t} (outside IP {ip})")),
                None => where_.push(format!("tunnel {t}")),
            }
        }
        if let Some(v) = &n.key.vpn {
            match &n.details.vpn_id {
                Some(id) => where_.push(format!("VPN connection {v} ({id})")),
                None => where_.push(format!("VPN connection {v}")),
            }
        }
        if where_.is_empty() {
            where_.push("the whole VPN to the datacenter".into());
        }
        where_.join(", ")
    }
}

/// Returns how long an outage lasted, as pages print it: `12m 30s`.
pub fn outage_text(n: &Notification) -> String {
    duration_text(n.ends_at.unwrap_or(n.created_at).since(outage_start(n)))
}

/// Returns when what a notification is about began: the outage's start where it is one,
/// else when the alert fired.
pub fn outage_start(n: &Notification) -> Timestamp {
    n.details.since.unwrap_or(n.starts_at).min(n.starts_at)
}

fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn place(n: &Notification) -> String {
    match (&n.key.vpn, &n.key.tunnel) {
        (_, Some(t)) => t.clone(),
        (Some(v), None) => v.clone(),
        (None, None) => "VPN".into(),
    }
}

/// Returns the email subject: `[CRITICAL] ConnectionDown dc-primary: both tunnels down`,
/// under 100 characters, with no control characters.
pub fn subject(n: &Notification) -> String {
    let tag = match n.status {
        NotificationStatus::Resolved => "RESOLVED".to_string(),
        NotificationStatus::Firing => n.severity.label().to_ascii_uppercase(),
        NotificationStatus::Test => return clean(&format!("[TEST] {}", n.details.summary)),
    };
    let text = clean(&format!(
        "[{tag}] {} {}: {}",
        n.key.class,
        place(n),
        n.details.summary
    ));
    if text.chars().count() <= MAX_SUBJECT_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_SUBJECT_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

fn duration_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// Returns what to do: the runbook's paragraph for the page's cause where one is known,
/// else for its class.
pub fn action(n: &Notification) -> String {
    n.details
        .cause
        .as_ref()
        .and_then(|c| what_to_do_for_cause(c.kind))
        .or_else(|| what_to_do(n.key.class))
        .unwrap_or_else(|| "see the runbook".into())
}

/// Returns the page's cause as it prints after `Cause: `, when one is known.
pub fn cause_line(n: &Notification) -> Option<String> {
    n.details.cause.as_ref().map(|c| clean(&c.line()))
}

/// Returns the message: lines a person on a phone understands, then every field as JSON.
pub fn message(n: &Notification, ctx: &PageContext) -> String {
    let reason: String = n.details.reason.chars().take(MAX_REASON_CHARS).collect();
    let action = action(n);
    let cause = match cause_line(n) {
        Some(line) => format!("Cause: {line}\n"),
        None => String::new(),
    };
    let mut text = match n.status {
        NotificationStatus::Firing => format!(
            "{}: {} - {}.\nWhere: {}, seen from {}.\nSince: {}{}.\n{cause}What to do: {action}\nRunbook: {}\nReason: {}\n",
            n.severity.label().to_ascii_uppercase(),
            n.key.class,
            n.details.summary,
            ctx.place(n),
            ctx.host,
            outage_start(n),
            if n.repeat { format!(" (still firing, {} so far)", duration_text(n.created_at.since(outage_start(n)))) } else { String::new() },
            ctx.runbook(n),
            reason
        ),
        NotificationStatus::Test => format!(
            "[TEST] {}.\nSent by `tunnelkeeper test-page` at {} to prove the pager path; nothing is wrong.\n",
            n.details.summary, n.created_at
        ),
        NotificationStatus::Resolved => format!(
            "RESOLVED: {} - {}.\nWhere: {}, seen from {}.\nFrom {} to {} ({}).\n{cause}Nothing to do; the runbook: {}\nLast reason: {}\n",
            n.key.class,
            n.details.summary,
            ctx.place(n),
            ctx.host,
            outage_start(n),
            n.ends_at.unwrap_or(n.created_at),
            outage_text(n),
            ctx.runbook(n),
            reason
        ),
    };
    let details = json!({
        "alert": n.key.class.name(),
        "severity": n.severity.label(),
        "status": status_label(n),
        "repeat": n.repeat,
        "vpn": n.key.vpn,
        "vpn_id": n.details.vpn_id,
        "tunnel": n.key.tunnel,
        "outside_ip": ctx.outside_ip(n),
        "summary": n.details.summary,
        "reason": reason,
        "starts_at": n.starts_at,
        "outage_since": n.details.since,
        "ends_at": n.ends_at,
        "created_at": n.created_at,
        "host": ctx.host,
        "runbook": ctx.runbook(n),
        "what_to_do": action,
        "cause": n.details.cause,
    });
    text.push_str("\n--- details (JSON) ---\n");
    text.push_str(&serde_json::to_string_pretty(&details).unwrap_or_default());
    text.push('\n');
    text
}

fn status_label(n: &Notification) -> &'static str {
    match n.status {
        NotificationStatus::Firing => "firing",
        NotificationStatus::Resolved => "resolved",
        NotificationStatus::Test => "test",
    }
}

/// Returns the test page `tunnelkeeper test-page` sends through every sink:
/// "[TEST] tunnelkeeper test page from <host>: no action needed".
pub fn test_page(host: &str, now: crate::types::Timestamp) -> Notification {
    Notification {
        key: crate::alert::engine::AlertKey::global(crate::types::AlertClass::NotificationsFailing),
        severity: crate::types::Severity::Info,
        status: NotificationStatus::Test,
        repeat: false,
        details: crate::alert::engine::Details {
            summary: format!("tunnelkeeper test page from {host}: no action needed"),
            reason: "a test page; nothing is wrong".into(),
            vpn_id: None,
            severity: None,
            since: None,
            cause: None,
        },
        starts_at: now,
        ends_at: None,
        created_at: now,
    }
}

/// Returns the message attributes subscribers filter on: `severity`, `alert`, `vpn_id`
/// (the AWS id only), `vpn` (the connection's name), `tunnel` and `state`. SNS refuses empty values, so absent ones read `none`.
pub fn attributes(n: &Notification) -> Vec<(&'static str, String)> {
    vec![
        ("notification_id", notification_id(n)),
        ("severity", n.severity.label().to_string()),
        ("alert", n.key.class.name().to_string()),
        (
            "vpn_id",
            // An AWS id or nothing: a filter on `vpn-...` must never meet a name.
            n.details.vpn_id.clone().unwrap_or_else(|| "none".into()),
        ),
        ("vpn", n.key.vpn.clone().unwrap_or_else(|| "none".into())),
        (
            "tunnel",
            n.key.tunnel.clone().unwrap_or_else(|| "none".into()),
        ),
        ("state", status_label(n).to_string()),
    ]
}

/// Names one notification the same across retries and restarts (its alert, when it
/// started firing, firing or resolved, and when it was made, all kept in the outbox), so
/// that a receiver can drop the duplicate that at-least-once delivery allows.
pub fn notification_id(n: &Notification) -> String {
    let status = match n.status {
        NotificationStatus::Firing => "firing",
        NotificationStatus::Resolved => "resolved",
        NotificationStatus::Test => "test",
    };
    stable_hash(&format!(
        "{}|{}|{status}|{}",
        n.key,
        n.starts_at.as_millis(),
        n.created_at.as_millis()
    ))
}

/// Names an alert's firing episode (its key and when it started firing): the same on every
/// re-post to Alertmanager and after a restart.
pub fn alert_id(n: &Notification) -> String {
    stable_hash(&format!("{}|{}", n.key, n.starts_at.as_millis()))
}

/// FNV-1a, 64 bits, as 16 hex digits: stable across builds and platforms, unlike std's
/// hasher.
fn stable_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Sample notifications and context, for the tests of this crate and of the sinks.
#[doc(hidden)]
pub mod fixtures {
    use super::*;
    use crate::alert::engine::{AlertKey, Details};
    use crate::types::{AlertClass, Timestamp};

    /// A notification about connection `dc-primary`, as the sinks' tests page it.
    pub fn note(class: AlertClass, status: NotificationStatus, summary: &str) -> Notification {
        Notification {
            key: AlertKey::connection(class, "dc-primary"),
            severity: class.severity(),
            status,
            repeat: false,
            details: Details {
                summary: summary.into(),
                reason: "both tunnels down (dc-primary-a down: x; dc-primary-b down: y)".into(),
                vpn_id: Some("vpn-0123456789abcdef0".into()),
                severity: None,
                since: None,
                cause: None,
            },
            starts_at: Timestamp::from_secs(1_795_000_000),
            ends_at: (status == NotificationStatus::Resolved)
                .then(|| Timestamp::from_secs(1_795_000_750)),
            created_at: Timestamp::from_secs(1_795_000_750),
        }
    }

    pub fn ctx() -> PageContext {
        PageContext {
            host: "ip-10-0-1-5".into(),
            runbook_url: "https://wiki.example/tunnelkeeper".into(),
            outside_ips: [(
                ("dc-primary".to_string(), "dc-primary-a".to_string()),
                "203.0.113.10".to_string(),
            )]
            .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ctx, note};
    use super::*;
    use crate::alert::engine::AlertKey;
    use crate::types::AlertClass;

    #[test]
    fn subjects_say_severity_alert_place_and_summary() {
        let firing = note(
            AlertClass::ConnectionDown,
            NotificationStatus::Firing,
            "both tunnels down",
        );
        assert_eq!(
            subject(&firing),
            "[CRITICAL] ConnectionDown dc-primary: both tunnels down"
        );
        let resolved = note(
            AlertClass::ConnectionDown,
            NotificationStatus::Resolved,
            "both tunnels down",
        );
        assert_eq!(
            subject(&resolved),
            "[RESOLVED] ConnectionDown dc-primary: both tunnels down"
        );
    }

    #[test]
    fn subjects_stay_under_100_characters_without_control_characters() {
        let long = note(
            AlertClass::TunnelDown,
            NotificationStatus::Firing,
            &format!("line\nbreak\t{}", "x".repeat(200)),
        );
        let s = subject(&long);
        assert!(s.chars().count() < 100, "{}", s.len());
        assert!(!s.chars().any(char::is_control), "{s:?}");
        assert!(s.ends_with("..."));
        let unicode = note(
            AlertClass::TunnelDown,
            NotificationStatus::Firing,
            &"é".repeat(200),
        );
        assert!(subject(&unicode).chars().count() < 100);
    }

    #[test]
    fn messages_open_with_what_where_since_and_what_to_do_then_json() {
        let m = message(
            &note(
                AlertClass::ConnectionDown,
                NotificationStatus::Firing,
                "both tunnels down",
            ),
            &ctx(),
        );
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], "CRITICAL: ConnectionDown - both tunnels down.");
        assert_eq!(
            lines[1],
            "Where: VPN connection dc-primary (vpn-0123456789abcdef0), seen from ip-10-0-1-5."
        );
        assert_eq!(lines[2], "Since: 2026-11-18T11:06:40Z.");
        assert!(
            lines[3].starts_with("What to do: as a warning, watch it"),
            "{}",
            lines[3]
        );
        assert_eq!(
            lines[4],
            "Runbook: https://wiki.example/tunnelkeeper#connectiondown"
        );
        let json_start =
            m.find("--- details (JSON) ---\n").unwrap() + "--- details (JSON) ---\n".len();
        let details: serde_json::Value = serde_json::from_str(&m[json_start..]).unwrap();
        assert_eq!(details["alert"], "ConnectionDown");
        assert_eq!(details["vpn_id"], "vpn-0123456789abcdef0");
        assert_eq!(details["status"], "firing");
        let r = message(
            &note(
                AlertClass::ConnectionDown,
                NotificationStatus::Resolved,
                "both tunnels down",
            ),
            &ctx(),
        );
        assert!(r.starts_with("RESOLVED: ConnectionDown"), "{r}");
        assert!(r.contains("(12m 30s)"), "{r}");
    }

    #[test]
    fn tunnel_pages_name_the_outside_ip_and_resolved_ones_the_outage() {
        let mut n = note(AlertClass::TunnelDown, NotificationStatus::Resolved, "x");
        n.key = AlertKey::tunnel(AlertClass::TunnelDown, "dc-primary", "dc-primary-a");
        let m = message(&n, &ctx());
        assert!(m.contains("Where: tunnel dc-primary-a (outside IP 203.0.113.10), VPN connection dc-primary (vpn-0123456789abcdef0), seen from ip-10-0-1-5."), "{m}");
        assert!(m.contains("\"outside_ip\": \"203.0.113.10\""), "{m}");
        assert_eq!(outage_text(&n), "12m 30s");
        n.key = AlertKey::tunnel(AlertClass::TunnelDown, "dc-primary", "dc-primary-b");
        assert!(message(&n, &ctx()).contains("Where: tunnel dc-primary-b, VPN"));
    }

    #[test]
    fn a_page_with_a_cause_says_it_and_takes_the_causes_runbook_section() {
        use crate::health::cause::{Cause, CauseSource};
        use crate::tunnel_log::CauseKind;
        let mut n = note(
            AlertClass::TunnelDown,
            NotificationStatus::Firing,
            "tunnel down",
        );
        n.key = AlertKey::tunnel(AlertClass::TunnelDown, "dc-primary", "dc-primary-a");
        let without = message(&n, &ctx());
        assert!(!without.contains("Cause:"), "{without}");
        assert!(
            without.contains("Runbook: https://wiki.example/tunnelkeeper#tunneldown"),
            "{without}"
        );
        n.details.cause = Some(Cause {
            kind: CauseKind::PskMismatch,
            source: CauseSource::TunnelLogs,
            text: "AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key"
                .into(),
            at: Timestamp::from_secs(1_796_613_161),
        });
        let m = message(&n, &ctx());
        assert!(m.contains("\nCause: AWS: AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key (IKE, pre-shared key, 03:12:41Z)\nWhat to do: compare the tunnel's pre-shared key"), "{m}");
        assert!(
            m.contains("Runbook: https://wiki.example/tunnelkeeper#cause-psk-mismatch"),
            "{m}"
        );
        assert!(m.contains("\"kind\": \"psk_mismatch\""), "{m}");
    }

    #[test]
    fn attributes_support_filter_policies() {
        let a = attributes(&note(
            AlertClass::ConnectionDown,
            NotificationStatus::Resolved,
            "x",
        ));
        assert_eq!(
            a,
            vec![
                ("notification_id", "8d091eca986d5f64".to_string()),
                ("severity", "critical".to_string()),
                ("alert", "ConnectionDown".to_string()),
                ("vpn_id", "vpn-0123456789abcdef0".to_string()),
                ("vpn", "dc-primary".to_string()),
                ("tunnel", "none".to_string()),
                ("state", "resolved".to_string()),
            ]
        );
    }

    #[test]
    fn the_vpn_id_attribute_never_carries_a_name() {
        let mut n = note(AlertClass::ConnectionDown, NotificationStatus::Firing, "x");
        n.details.vpn_id = None;
        let a = attributes(&n);
        assert!(a.contains(&("vpn_id", "none".to_string())), "{a:?}");
        assert!(a.contains(&("vpn", "dc-primary".to_string())), "{a:?}");
    }
}
