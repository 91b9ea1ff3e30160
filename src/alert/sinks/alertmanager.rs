//! The Alertmanager sink: keeps `/api/v2/alerts` in step with the alert set, re-posting
//! firing alerts on a timer as Alertmanager expects of its clients.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::alert::engine::Notification;
use crate::alert::wording::{alert_id, PageContext};
use crate::clock::{Clock, WallShift};
use crate::metrics::Metrics;
use crate::types::Timestamp;

/// An alert as Alertmanager receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct AmAlert {
    /// The notification it comes from (its latest).
    pub notification: Notification,
}

/// How often firing alerts are sent again, as Alertmanager expects of its clients.
pub const AM_RESEND: Duration = Duration::from_secs(10);
/// How far ahead each post sets `endsAt`: an alert that no instance re-posts for this long
/// ends in Alertmanager. That is how alerts resolve there (no instance ever posts an
/// explicit resolve, which would flip an alert that another instance still sees firing):
/// within this time of the last instance that saw the condition clearing it. Four resends,
/// so that three lost posts in a row do not end an alert.
pub const AM_LAPSE: Duration = Duration::from_secs(40);

/// Builds the `/api/v2/alerts` body. Labels carry nothing instance-specific, so that the
/// alerts of several tunnelkeepers watching the same VPN deduplicate in Alertmanager.
/// `now` and the alerts' times are the daemon's (anchored) clock; `shift`, read at the same
/// moment as `now`, moves both `startsAt` and `endsAt` to the wall clock, so that
/// `startsAt` <= `endsAt` whatever the system clock did since start.
pub fn alertmanager_body(
    alerts: &[AmAlert],
    ctx: &PageContext,
    now: Timestamp,
    shift: WallShift,
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
            // Two services of one tunnel are two alerts to Alertmanager too.
            if let Some(t) = &n.key.target {
                labels.insert("target".into(), json!(t));
            }
            // A test page is marked so that routes can tell it apart; it ends by itself
            // within AM_LAPSE, as it is never re-posted.
            if n.status == crate::alert::engine::NotificationStatus::Test {
                labels.insert("test".into(), json!("true"));
            }
            // Alertmanager takes strings only: absent annotations are left out.
            let mut annotations = serde_json::Map::new();
            annotations.insert("summary".into(), json!(n.details.summary));
            annotations.insert("description".into(), json!(n.details.reason));
            annotations.insert("runbook_url".into(), json!(ctx.runbook(n)));
            annotations.insert("notification_id".into(), json!(alert_id(n)));
            if let Some(action) = crate::alert::runbook::what_to_do(n.key.class) {
                annotations.insert("what_to_do".into(), json!(action));
            }
            if let Some(ip) = ctx.outside_ip(n) {
                annotations.insert("outside_ip".into(), json!(ip));
            }
            json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": shift.rfc3339(crate::alert::wording::outage_start(n).min(now)),
                "endsAt": shift.rfc3339(now.plus(AM_LAPSE)),
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
    /// The daemon's clock, which the alerts' times are on.
    pub clock: Clock,
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
            // One reading for both ends of every alert.
            let now = self.clock.now();
            let shift = self.clock.wall_shift();
            let body = alertmanager_body(&alerts, &self.ctx, now, shift).to_string();
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

/// Posts one test alert (`tunnelkeeper test-page`): labelled `test="true"`, ending
/// within [`AM_LAPSE`]; returns Alertmanager's refusal, if any.
pub async fn post_test_alert(
    url: &str,
    test: Notification,
    ctx: &PageContext,
    now: Timestamp,
) -> Result<(), String> {
    // The test page's times are wall times already.
    let body =
        alertmanager_body(&[AmAlert { notification: test }], ctx, now, WallShift::NONE).to_string();
    post_json(url, "/api/v2/alerts", body).await
}

/// POSTs the alerts and checks for a 2xx answer.
async fn post_json(base: &str, path: &str, body: String) -> Result<(), String> {
    let options = crate::http_client::CallOptions::default();
    let answer =
        crate::http_client::call(base, path, Some(body), Duration::from_secs(10), &options).await?;
    if (200..300).contains(&answer.status) {
        Ok(())
    } else {
        Err(crate::aws::sdk::http_error_text(
            answer.status,
            "",
            &String::from_utf8_lossy(&answer.body),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::engine::NotificationStatus;
    use crate::alert::wording::fixtures::{ctx, note};
    use crate::types::AlertClass;

    #[test]
    fn alertmanager_alerts_carry_no_instance_labels() {
        let firing = AmAlert {
            notification: note(
                AlertClass::ConnectionDown,
                NotificationStatus::Firing,
                "both tunnels down",
            ),
        };
        let body = alertmanager_body(
            &[firing],
            &ctx(),
            Timestamp::from_secs(1_795_000_800),
            WallShift::NONE,
        );
        let labels = &body[0]["labels"];
        assert_eq!(labels["alertname"], "ConnectionDown");
        assert_eq!(labels["severity"], "critical");
        assert_eq!(labels["vpn_id"], "vpn-0123456789abcdef0");
        assert!(labels.get("instance").is_none() && !labels.to_string().contains("ip-10-0-1-5"));
        assert_eq!(
            body[0]["endsAt"], "2026-11-18T11:20:40.000Z",
            "now + AM_LAPSE: it ends by itself unless re-posted"
        );
        // The same episode has the same id in every post and after a restart.
        let again = alertmanager_body(
            &[AmAlert {
                notification: note(
                    AlertClass::ConnectionDown,
                    NotificationStatus::Firing,
                    "reworded",
                ),
            }],
            &ctx(),
            Timestamp::from_secs(1_795_000_900),
            WallShift::NONE,
        );
        assert_eq!(
            body[0]["annotations"]["notification_id"],
            again[0]["annotations"]["notification_id"]
        );
    }

    #[test]
    fn a_clock_stepped_back_after_start_keeps_starts_before_ends() {
        let firing = AmAlert {
            notification: note(
                AlertClass::ConnectionDown,
                NotificationStatus::Firing,
                "both tunnels down",
            ),
        };
        let started = crate::alert::wording::outage_start(&firing.notification);
        // The clock was an hour fast at start and NTP stepped it back since.
        let now = started.plus(Duration::from_secs(120));
        let body = alertmanager_body(&[firing], &ctx(), now, WallShift { ms: -3_600_000 });
        let wall = |at: Timestamp| {
            json!(WallShift::NONE.rfc3339(Timestamp::from_millis(at.as_millis() - 3_600_000)))
        };
        assert_eq!(body[0]["startsAt"], wall(started), "on the wall clock");
        assert_eq!(body[0]["endsAt"], wall(now.plus(AM_LAPSE)), "{body}");
        // The same format throughout: the strings order as the times do.
        assert!(body[0]["startsAt"].as_str() <= body[0]["endsAt"].as_str());
    }
}
