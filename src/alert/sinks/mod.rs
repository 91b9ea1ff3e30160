//! Notification sinks: what a page says (pure formatting for SNS subjects, messages and
//! attributes, and Alertmanager alerts) and the workers that deliver it: the log, an SNS
//! topic, and Alertmanager's `/api/v2/alerts`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::alert::engine::{Notification, NotificationStatus};
use crate::metrics::Metrics;
use crate::types::Timestamp;
use crate::daemon::monitor::Observation;
use crate::alert::outbox::Delivery;

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
}

impl PageContext {
    /// Builds the context from this machine.
    pub fn from_machine(runbook_url: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        Self {
            host,
            runbook_url: runbook_url.to_string(),
        }
    }

    /// Returns the runbook section for an alert.
    pub fn runbook(&self, n: &Notification) -> String {
        format!(
            "{}#{}",
            self.runbook_url,
            n.key.class.name().to_ascii_lowercase()
        )
    }
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

/// Returns the message: lines a person on a phone understands, then every field as JSON.
pub fn message(n: &Notification, ctx: &PageContext) -> String {
    let reason: String = n.details.reason.chars().take(MAX_REASON_CHARS).collect();
    let vpn_id = n
        .details
        .vpn_id
        .as_deref()
        .map(|id| format!(" ({id})"))
        .unwrap_or_default();
    let mut where_ = Vec::new();
    if let Some(t) = &n.key.tunnel {
        where_.push(format!("tunnel {t}"));
    }
    if let Some(v) = &n.key.vpn {
        where_.push(format!("VPN connection {v}{vpn_id}"));
    }
    if where_.is_empty() {
        where_.push("the whole VPN to the datacenter".into());
    }
    let mut text = match n.status {
        NotificationStatus::Firing => format!(
            "{}: {} - {}.\nWhere: {}, seen from {}.\nSince: {}{}.\nWhat to do: Contact the NOC; follow the runbook: {}\nReason: {}\n",
            n.severity.label().to_ascii_uppercase(),
            n.key.class,
            n.details.summary,
            where_.join(", "),
            ctx.host,
            n.starts_at,
            if n.repeat { format!(" (still firing, {} so far)", duration_text(n.created_at.since(n.starts_at))) } else { String::new() },
            ctx.runbook(n),
            reason
        ),
        NotificationStatus::Resolved => {
            let end = n.ends_at.unwrap_or(n.created_at);
            format!(
                "RESOLVED: {} - {}.\nWhere: {}, seen from {}.\nFrom {} to {} ({}).\nNothing to do; the runbook: {}\nLast reason: {}\n",
                n.key.class,
                n.details.summary,
                where_.join(", "),
                ctx.host,
                n.starts_at,
                end,
                duration_text(end.since(n.starts_at)),
                ctx.runbook(n),
                reason
            )
        }
    };
    let details = json!({
        "alert": n.key.class.name(),
        "severity": n.severity.label(),
        "status": status_label(n),
        "repeat": n.repeat,
        "vpn": n.key.vpn,
        "vpn_id": n.details.vpn_id,
        "tunnel": n.key.tunnel,
        "summary": n.details.summary,
        "reason": reason,
        "starts_at": n.starts_at,
        "ends_at": n.ends_at,
        "created_at": n.created_at,
        "host": ctx.host,
        "runbook": ctx.runbook(n),
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
    }
}

/// Returns the message attributes subscribers filter on: `severity`, `alert`, `vpn_id`,
/// `tunnel` and `state`. SNS refuses empty values, so absent ones read `none`.
pub fn attributes(n: &Notification) -> Vec<(&'static str, String)> {
    vec![
        ("severity", n.severity.label().to_string()),
        ("alert", n.key.class.name().to_string()),
        (
            "vpn_id",
            n.details
                .vpn_id
                .clone()
                .or_else(|| n.key.vpn.clone())
                .unwrap_or_else(|| "none".into()),
        ),
        (
            "tunnel",
            n.key.tunnel.clone().unwrap_or_else(|| "none".into()),
        ),
        ("state", status_label(n).to_string()),
    ]
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryReport {
    /// The outbox id.
    pub id: u64,
    /// The sink index.
    pub sink: usize,
    /// `Ok`, or the failure's kind label and message.
    pub result: Result<(), (&'static str, String)>,
}

/// Delivers one notification somewhere.
pub trait Deliver: Send + 'static {
    /// Delivers, or says why not.
    fn deliver(
        &mut self,
        n: &Notification,
    ) -> impl std::future::Future<Output = Result<(), (&'static str, String)>> + Send;
}

/// Writes notifications to the daemon's log.
pub struct LogSink {
    /// Runbook and host.
    pub ctx: PageContext,
}

impl Deliver for LogSink {
    async fn deliver(&mut self, n: &Notification) -> Result<(), (&'static str, String)> {
        let subject = subject(n);
        match n.status {
            NotificationStatus::Firing => warn!(
                alert = n.key.class.name(),
                severity = n.severity.label(),
                key = %n.key,
                since = %n.starts_at,
                reason = %n.details.reason,
                runbook = %self.ctx.runbook(n),
                "ALERT {subject}"
            ),
            NotificationStatus::Resolved => {
                info!(alert = n.key.class.name(), key = %n.key, "ALERT {subject}")
            }
        }
        Ok(())
    }
}

/// Publishes notifications to an SNS standard topic.
pub struct SnsSink {
    /// The SDK client.
    pub client: aws_sdk_sns::Client,
    /// The topic.
    pub topic_arn: String,
    /// Runbook and host.
    pub ctx: PageContext,
}

impl Deliver for SnsSink {
    async fn deliver(&mut self, n: &Notification) -> Result<(), (&'static str, String)> {
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject(n))
            .message(message(n, &self.ctx));
        for (name, value) in attributes(n) {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| ("other", e.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let (kind, message) = crate::aws::classify(&err);
                Err((kind.label(), message))
            }
        }
    }
}

/// Runs one sink: takes deliveries, reports what became of each.
pub async fn run_sink<D: Deliver>(
    index: usize,
    mut sink: D,
    mut deliveries: mpsc::Receiver<Delivery>,
    reports: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    loop {
        let delivery = tokio::select! {
            _ = cancel.cancelled() => return,
            d = deliveries.recv() => match d { Some(d) => d, None => return },
        };
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sink.deliver(&delivery.notification) => r,
        };
        let report = DeliveryReport {
            id: delivery.id,
            sink: index,
            result,
        };
        if reports.send(Observation::Delivery(report)).await.is_err() {
            return;
        }
    }
}

/// An alert as Alertmanager receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct AmAlert {
    /// The notification it comes from (its latest).
    pub notification: Notification,
    /// When it resolved, if it has.
    pub resolved_at: Option<Timestamp>,
}

/// How often firing alerts are sent again, as Alertmanager expects of its clients.
pub const AM_RESEND: Duration = Duration::from_secs(60);

/// Builds the `/api/v2/alerts` body. Labels carry nothing instance-specific, so that the
/// alerts of several tunnelkeepers watching the same VPN deduplicate in Alertmanager.
pub fn alertmanager_body(
    alerts: &[AmAlert],
    ctx: &PageContext,
    now: Timestamp,
) -> serde_json::Value {
    let items: Vec<serde_json::Value> = alerts
        .iter()
        .map(|a| {
            let n = &a.notification;
            let mut labels = serde_json::Map::new();
            labels.insert("alertname".into(), json!(n.key.class.name()));
            labels.insert("severity".into(), json!(n.severity.label()));
            labels.insert("service".into(), json!("tunnelkeeper"));
            if let Some(v) = &n.key.vpn {
                labels.insert("vpn".into(), json!(v));
            }
            if let Some(id) = &n.details.vpn_id {
                labels.insert("vpn_id".into(), json!(id));
            }
            if let Some(t) = &n.key.tunnel {
                labels.insert("tunnel".into(), json!(t));
            }
            // A firing alert that is not re-sent expires on its own after four resends.
            let ends = a.resolved_at.unwrap_or(now.plus(AM_RESEND * 4));
            json!({
                "labels": labels,
                "annotations": {
                    "summary": n.details.summary,
                    "description": n.details.reason,
                    "runbook_url": ctx.runbook(n),
                },
                "startsAt": n.starts_at,
                "endsAt": ends,
            })
        })
        .collect();
    serde_json::Value::Array(items)
}

/// Keeps Alertmanager in step with the alerts: posts on every change and every
/// [`AM_RESEND`].
pub struct AlertmanagerSink {
    /// Base URL (`http://host:9093`).
    pub url: String,
    /// Runbook and host.
    pub ctx: PageContext,
    /// The alerts to hold firing (and recently resolved).
    pub alerts: watch::Receiver<Vec<AmAlert>>,
    /// Outcome counters.
    pub metrics: Arc<Metrics>,
    /// The sink's label in metrics.
    pub label: String,
    /// Stops the task.
    pub cancel: CancellationToken,
}

impl AlertmanagerSink {
    /// Runs until cancelled.
    pub async fn run(mut self) {
        let mut resend = tokio::time::interval(AM_RESEND);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_soon = false;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                changed = self.alerts.changed() => if changed.is_err() { return },
                _ = resend.tick() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)), if retry_soon => {}
            }
            let alerts = self.alerts.borrow_and_update().clone();
            if alerts.is_empty() {
                retry_soon = false;
                continue;
            }
            let now = Timestamp::from_millis(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64,
            );
            let body = alertmanager_body(&alerts, &self.ctx, now).to_string();
            match post_json(&self.url, "/api/v2/alerts", body).await {
                Ok(()) => {
                    retry_soon = false;
                    self.metrics.notification(&self.label, "delivered");
                }
                Err(e) => {
                    retry_soon = true;
                    self.metrics.notification(&self.label, "failed");
                    warn!(url = %self.url, error = %e, "Alertmanager did not take the alerts; retrying in 5 s");
                }
            }
        }
    }
}

/// POSTs JSON over plain HTTP/1.1 and checks for a 2xx answer.
async fn post_json(base: &str, path: &str, body: String) -> Result<(), String> {
    use http_body_util::{BodyExt, Full};
    let authority = base
        .strip_prefix("http://")
        .ok_or("only http:// is supported")?
        .trim_end_matches('/');
    let (authority, prefix) = match authority.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (authority, String::new()),
    };
    let call = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("connect {authority}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::post(format!("{prefix}{path}"))
            .header("host", authority)
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&text)))
        }
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::engine::{AlertClass, AlertKey, Details};

    fn note(class: AlertClass, status: NotificationStatus, summary: &str) -> Notification {
        Notification {
            key: AlertKey::connection(class, "dc-primary"),
            severity: class.severity(),
            status,
            repeat: false,
            details: Details {
                summary: summary.into(),
                reason: "both tunnels down (dc-primary-a down: x; dc-primary-b down: y)".into(),
                vpn_id: Some("vpn-0123456789abcdef0".into()),
            },
            starts_at: Timestamp::from_secs(1_795_000_000),
            ends_at: (status == NotificationStatus::Resolved)
                .then(|| Timestamp::from_secs(1_795_000_750)),
            created_at: Timestamp::from_secs(1_795_000_750),
        }
    }

    fn ctx() -> PageContext {
        PageContext {
            host: "ip-10-0-1-5".into(),
            runbook_url: "https://wiki.example/tunnelkeeper".into(),
        }
    }

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
        assert_eq!(lines[3], "What to do: Contact the NOC; follow the runbook: https://wiki.example/tunnelkeeper#connectiondown");
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
    fn attributes_support_filter_policies() {
        let a = attributes(&note(
            AlertClass::ConnectionDown,
            NotificationStatus::Resolved,
            "x",
        ));
        assert_eq!(
            a,
            vec![
                ("severity", "critical".to_string()),
                ("alert", "ConnectionDown".to_string()),
                ("vpn_id", "vpn-0123456789abcdef0".to_string()),
                ("tunnel", "none".to_string()),
                ("state", "resolved".to_string()),
            ]
        );
    }

    #[test]
    fn alertmanager_alerts_carry_no_instance_labels() {
        let firing = AmAlert {
            notification: note(
                AlertClass::ConnectionDown,
                NotificationStatus::Firing,
                "both tunnels down",
            ),
            resolved_at: None,
        };
        let body = alertmanager_body(&[firing], &ctx(), Timestamp::from_secs(1_795_000_800));
        let labels = &body[0]["labels"];
        assert_eq!(labels["alertname"], "ConnectionDown");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["vpn_id"], "vpn-0123456789abcdef0");
        assert!(labels.get("instance").is_none() && !labels.to_string().contains("ip-10-0-1-5"));
        assert_eq!(
            body[0]["endsAt"], "2026-11-18T11:24:00.000Z",
            "now + 4 resends"
        );
    }
}
