//! The alert engine, pure and sans-IO, with Alertmanager's semantics: `for` (pending before
//! firing), `keep_firing_for`, `repeat_interval`, resolved notifications, inhibition and
//! silences. Conditions come in with the time; notifications come out through
//! [`AlertEngine::poll_notification`]. Nothing here reads a clock or sends anything.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::Timestamp;

/// The kinds of alert, each with a fixed severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertClass {
    /// A tunnel is down (either plane).
    TunnelDown,
    /// AWS says a tunnel is up but its pinned targets are unreachable.
    DataPlaneDead,
    /// Both tunnels of one connection are down.
    ConnectionDown,
    /// No working path to the datacenter.
    VpnUnreachable,
    /// A tunnel changed state too often within the flap window.
    TunnelFlapping,
    /// The EC2 API has failed for longer than the limit.
    ControlPlaneUnavailable,
}

impl AlertClass {
    /// Every class, for metrics at zero and for config validation.
    pub const ALL: [AlertClass; 6] = [
        AlertClass::TunnelDown,
        AlertClass::DataPlaneDead,
        AlertClass::ConnectionDown,
        AlertClass::VpnUnreachable,
        AlertClass::TunnelFlapping,
        AlertClass::ControlPlaneUnavailable,
    ];

    /// Returns the class's severity.
    pub fn severity(self) -> Severity {
        match self {
            AlertClass::ConnectionDown | AlertClass::VpnUnreachable => Severity::Critical,
            AlertClass::TunnelDown
            | AlertClass::DataPlaneDead
            | AlertClass::TunnelFlapping
            | AlertClass::ControlPlaneUnavailable => Severity::Warning,
        }
    }

    /// Returns the class name, as in pages and labels.
    pub fn name(self) -> &'static str {
        match self {
            AlertClass::TunnelDown => "TunnelDown",
            AlertClass::DataPlaneDead => "DataPlaneDead",
            AlertClass::ConnectionDown => "ConnectionDown",
            AlertClass::VpnUnreachable => "VpnUnreachable",
            AlertClass::TunnelFlapping => "TunnelFlapping",
            AlertClass::ControlPlaneUnavailable => "ControlPlaneUnavailable",
        }
    }

    /// Parses a class name.
    pub fn parse(name: &str) -> Option<AlertClass> {
        AlertClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for AlertClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Redundancy lost or something to look at in hours.
    Warning,
    /// The datacenter is (partly) cut off: act now.
    Critical,
}

impl Severity {
    /// Returns `warning` or `critical`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about: its class and, where it applies, the connection and tunnel.
/// The stable key of an alert across restarts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    /// The class.
    pub class: AlertClass,
    /// The connection's name, for connection and tunnel alerts.
    pub vpn: Option<String>,
    /// The tunnel's name, for tunnel alerts.
    pub tunnel: Option<String>,
}

impl AlertKey {
    /// Builds a VPN-wide key.
    pub fn global(class: AlertClass) -> Self {
        Self {
            class,
            vpn: None,
            tunnel: None,
        }
    }

    /// Builds a connection key.
    pub fn connection(class: AlertClass, vpn: &str) -> Self {
        Self {
            class,
            vpn: Some(vpn.into()),
            tunnel: None,
        }
    }

    /// Builds a tunnel key.
    pub fn tunnel(class: AlertClass, vpn: &str, tunnel: &str) -> Self {
        Self {
            class,
            vpn: Some(vpn.into()),
            tunnel: Some(tunnel.into()),
        }
    }
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.class)?;
        if let Some(v) = &self.vpn {
            write!(f, "/{v}")?;
        }
        if let Some(t) = &self.tunnel {
            write!(f, "/{t}")?;
        }
        Ok(())
    }
}

/// What is known of one alert condition at one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// True, with what to say about it.
    Active(Details),
    /// Not knowable right now (e.g. just restarted): an alert keeps its state.
    Unknown,
}

/// What a page says about the condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// One short line: "both tunnels down".
    pub summary: String,
    /// The full reason from the health model.
    pub reason: String,
    /// The AWS connection id, when configured.
    pub vpn_id: Option<String>,
}

/// Every condition at one evaluation; keys absent here are false.
pub type Conditions = BTreeMap<AlertKey, Condition>;

/// A configured silence: matching alerts are not notified while it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    /// Only this class, if set.
    pub class: Option<AlertClass>,
    /// Only this connection, if set.
    pub vpn: Option<String>,
    /// Only this tunnel, if set.
    pub tunnel: Option<String>,
    /// From when (always, if unset).
    pub starts: Option<Timestamp>,
    /// Until when.
    pub ends: Timestamp,
    /// Why (shown on /status).
    pub comment: String,
}

impl Silence {
    fn matches(&self, key: &AlertKey, now: Timestamp) -> bool {
        self.starts.is_none_or(|s| s <= now)
            && now < self.ends
            && self.class.is_none_or(|c| c == key.class)
            && self
                .vpn
                .as_ref()
                .is_none_or(|v| key.vpn.as_ref() == Some(v))
            && self
                .tunnel
                .as_ref()
                .is_none_or(|t| key.tunnel.as_ref() == Some(t))
    }
}

/// The engine's timing rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRules {
    /// How long a condition must hold before the alert fires.
    pub for_: Duration,
    /// How long a firing alert keeps firing after its condition clears.
    pub keep_firing_for: Duration,
    /// How long a newly firing alert waits before its first notification, so that a bigger
    /// outage detected a moment later can still inhibit it.
    pub group_wait: Duration,
    /// How often a still-firing alert is notified again.
    pub repeat_interval: Duration,
    /// Whether clearing sends a resolved notification.
    pub send_resolved: bool,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            for_: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            group_wait: Duration::ZERO,
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
        }
    }
}

/// Whether a notification announces or clears an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// The alert fires (first time or repeat).
    Firing,
    /// The alert has cleared.
    Resolved,
}

/// Something to tell the sinks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Which alert.
    pub key: AlertKey,
    /// Its severity.
    pub severity: Severity,
    /// Firing or resolved.
    pub status: NotificationStatus,
    /// True for a repeat of a still-firing alert.
    pub repeat: bool,
    /// What to say.
    pub details: Details,
    /// When the alert started firing.
    pub starts_at: Timestamp,
    /// When it cleared (resolved notifications).
    pub ends_at: Option<Timestamp>,
    /// When this notification was made.
    pub created_at: Timestamp,
}

/// The life of one alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, not yet for `for`.
    Pending {
        /// Since when the condition holds.
        active_since: Timestamp,
    },
    /// The alert fires.
    Firing {
        /// When it started firing.
        fired_at: Timestamp,
        /// When a notification last went out for it; `None` while inhibited or silenced
        /// since it fired.
        last_notified: Option<Timestamp>,
        /// When its condition cleared, while `keep_firing_for` holds it.
        cleared_at: Option<Timestamp>,
        /// Since when it has been neither inhibited nor silenced; its first page waits
        /// `group_wait` from then (so tunnels coming back one by one after a bigger outage
        /// do not page on the way).
        #[serde(default)]
        visible_since: Option<Timestamp>,
    },
}

/// One alert the engine tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Which alert.
    pub key: AlertKey,
    /// Where it stands.
    pub state: AlertState,
    /// The latest details.
    pub details: Details,
}

/// How an alert shows on /status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertView {
    /// The class name.
    pub alert: AlertClass,
    /// Severity.
    pub severity: Severity,
    /// Connection, if any.
    pub vpn: Option<String>,
    /// Tunnel, if any.
    pub tunnel: Option<String>,
    /// `pending`, `firing`, `inhibited` or `silenced`.
    pub state: &'static str,
    /// Since when (pending: condition start; others: firing start).
    pub since: Timestamp,
    /// The summary line.
    pub summary: String,
    /// The reason.
    pub reason: String,
    /// What inhibits or silences it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub muted_by: Option<String>,
}

/// The engine: alert states and the queue of notifications to hand out.
#[derive(Clone, Debug)]
pub struct AlertEngine {
    rules: AlertRules,
    silences: Vec<Silence>,
    alerts: BTreeMap<AlertKey, Alert>,
    outbox: VecDeque<Notification>,
}

impl AlertEngine {
    /// Starts with no alerts.
    pub fn new(rules: AlertRules, silences: Vec<Silence>) -> Self {
        Self {
            rules,
            silences,
            alerts: BTreeMap::new(),
            outbox: VecDeque::new(),
        }
    }

    /// Restores alerts saved by an earlier run (so that a firing alert does not page again).
    pub fn restore(&mut self, alerts: Vec<Alert>) {
        // A pending alert never paged, and nobody watched its condition while the daemon
        // was down: it starts over (`for` counts again from the next evaluation).
        self.alerts = alerts
            .into_iter()
            .filter(|a| matches!(a.state, AlertState::Firing { .. }))
            .map(|a| (a.key.clone(), a))
            .collect();
    }

    /// Returns the alerts, for saving.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Replaces the timing rules and silences (config reload).
    pub fn set_rules(&mut self, rules: AlertRules, silences: Vec<Silence>) {
        self.rules = rules;
        self.silences = silences;
    }

    /// Applies the conditions as of `now` and queues the notifications they call for.
    pub fn evaluate(&mut self, conditions: &Conditions, now: Timestamp) {
        // New and continuing conditions.
        for (key, condition) in conditions {
            let Condition::Active(details) = condition else {
                continue;
            };
            let alert = self.alerts.entry(key.clone()).or_insert_with(|| Alert {
                key: key.clone(),
                state: AlertState::Pending { active_since: now },
                details: details.clone(),
            });
            alert.details = details.clone();
            match &mut alert.state {
                AlertState::Pending { active_since } => {
                    if now.since(*active_since) >= self.rules.for_ {
                        alert.state = AlertState::Firing {
                            fired_at: now,
                            last_notified: None,
                            cleared_at: None,
                            visible_since: None,
                        };
                    }
                }
                AlertState::Firing { cleared_at, .. } => *cleared_at = None,
            }
        }
        // Cleared conditions: a pending alert goes quietly; a firing one resolves,
        // after keep_firing_for if set.
        let mut resolved = Vec::new();
        self.alerts.retain(|key, alert| {
            if conditions.contains_key(key) {
                return true;
            }
            match &mut alert.state {
                AlertState::Pending { .. } => false,
                AlertState::Firing {
                    cleared_at,
                    last_notified,
                    fired_at,
                    ..
                } => {
                    let cleared = *cleared_at.get_or_insert(now);
                    if now.since(cleared) < self.rules.keep_firing_for {
                        return true;
                    }
                    if last_notified.is_some() {
                        resolved.push((alert.key.clone(), alert.details.clone(), *fired_at));
                    }
                    false
                }
            }
        });
        if self.rules.send_resolved {
            for (key, details, fired_at) in resolved {
                self.outbox.push_back(Notification {
                    severity: key.class.severity(),
                    key,
                    status: NotificationStatus::Resolved,
                    repeat: false,
                    details,
                    starts_at: fired_at,
                    ends_at: Some(now),
                    created_at: now,
                });
            }
        }
        // Track how long each firing alert has been visible (neither inhibited nor silenced).
        let muted: Vec<(AlertKey, bool)> = self
            .alerts
            .keys()
            .map(|k| (k.clone(), self.muted_by(k, now).is_some()))
            .collect();
        for (key, is_muted) in muted {
            if let Some(Alert {
                state: AlertState::Firing { visible_since, .. },
                ..
            }) = self.alerts.get_mut(&key)
            {
                if is_muted {
                    *visible_since = None;
                } else {
                    visible_since.get_or_insert(now);
                }
            }
        }
        // Notify firing alerts that are due and neither inhibited nor silenced.
        let due: Vec<AlertKey> = self
            .alerts
            .values()
            .filter(|a| match a.state {
                AlertState::Firing {
                    last_notified: None,
                    visible_since,
                    ..
                } => visible_since.is_some_and(|v| now.since(v) >= self.rules.group_wait),
                AlertState::Firing {
                    last_notified: Some(t),
                    ..
                } => now.since(t) >= self.rules.repeat_interval,
                AlertState::Pending { .. } => false,
            })
            .filter(|a| self.muted_by(&a.key, now).is_none())
            // A condition nobody can see right now (just restarted) pages nothing, repeats included.
            .filter(|a| !matches!(conditions.get(&a.key), Some(Condition::Unknown)))
            .map(|a| a.key.clone())
            .collect();
        for key in due {
            let alert = self.alerts.get_mut(&key).expect("collected from the map");
            let AlertState::Firing {
                fired_at,
                last_notified,
                ..
            } = &mut alert.state
            else {
                continue;
            };
            let repeat = last_notified.is_some();
            *last_notified = Some(now);
            self.outbox.push_back(Notification {
                severity: key.class.severity(),
                key,
                status: NotificationStatus::Firing,
                repeat,
                details: alert.details.clone(),
                starts_at: *fired_at,
                ends_at: None,
                created_at: now,
            });
        }
    }

    /// Returns what mutes an alert now: an inhibiting alert or a silence.
    pub fn muted_by(&self, key: &AlertKey, now: Timestamp) -> Option<String> {
        if let Some(by) = self.inhibited_by(key) {
            return Some(format!("inhibited by {by}"));
        }
        self.silences
            .iter()
            .find(|s| s.matches(key, now))
            .map(|s| format!("silenced until {}: {}", s.ends, s.comment))
    }

    /// A bigger outage silences the smaller alerts it explains.
    fn inhibited_by(&self, key: &AlertKey) -> Option<&AlertKey> {
        let firing = |k: &AlertKey| {
            matches!(
                self.alerts.get(k),
                Some(Alert {
                    state: AlertState::Firing { .. },
                    ..
                })
            )
        };
        let vpn_unreachable = AlertKey::global(AlertClass::VpnUnreachable);
        let tunnel_level = matches!(
            key.class,
            AlertClass::TunnelDown | AlertClass::DataPlaneDead
        );
        if (tunnel_level || key.class == AlertClass::ConnectionDown) && firing(&vpn_unreachable) {
            return self.alerts.get_key_value(&vpn_unreachable).map(|(k, _)| k);
        }
        if tunnel_level {
            if let Some(vpn) = &key.vpn {
                let connection_down = AlertKey::connection(AlertClass::ConnectionDown, vpn);
                if firing(&connection_down) {
                    return self.alerts.get_key_value(&connection_down).map(|(k, _)| k);
                }
                if let (AlertClass::TunnelDown, Some(tunnel)) = (key.class, &key.tunnel) {
                    // The same tunnel's more specific alert already said it.
                    let dead = AlertKey::tunnel(AlertClass::DataPlaneDead, vpn, tunnel);
                    if firing(&dead) {
                        return self.alerts.get_key_value(&dead).map(|(k, _)| k);
                    }
                }
                if let Some(tunnel) = &key.tunnel {
                    // A flapping tunnel would otherwise page on every flap.
                    let flapping = AlertKey::tunnel(AlertClass::TunnelFlapping, vpn, tunnel);
                    if firing(&flapping) {
                        return self.alerts.get_key_value(&flapping).map(|(k, _)| k);
                    }
                }
            }
        }
        None
    }

    /// Takes the next notification to deliver.
    pub fn poll_notification(&mut self) -> Option<Notification> {
        self.outbox.pop_front()
    }

    /// Returns when `evaluate` must run again even if no condition changes: a pending alert
    /// reaching `for`, a cleared one ending `keep_firing_for`, a repeat, a silence ending.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        let alerts = self.alerts.values().filter_map(|a| match a.state {
            AlertState::Pending { active_since } => Some(active_since.plus(self.rules.for_)),
            AlertState::Firing {
                cleared_at: Some(c),
                ..
            } => Some(c.plus(self.rules.keep_firing_for)),
            AlertState::Firing {
                last_notified: Some(t),
                ..
            } => Some(t.plus(self.rules.repeat_interval)),
            AlertState::Firing {
                last_notified: None,
                visible_since,
                ..
            } => visible_since.map(|v| v.plus(self.rules.group_wait)),
        });
        // Deadlines already past (under an unknown condition, say) are not wake-ups.
        let alerts = alerts.filter(|t| *t > now);
        let silences = self
            .silences
            .iter()
            .flat_map(|s| [s.starts, Some(s.ends)])
            .flatten()
            .filter(|t| *t > now);
        alerts.chain(silences).min()
    }

    /// Returns every alert as /status shows it.
    pub fn views(&self, now: Timestamp) -> Vec<AlertView> {
        self.alerts
            .values()
            .map(|a| {
                let muted_by = self.muted_by(&a.key, now);
                let (state, since) = match a.state {
                    AlertState::Pending { active_since } => ("pending", active_since),
                    AlertState::Firing { fired_at, .. } => match &muted_by {
                        Some(m) if m.starts_with("inhibited") => ("inhibited", fired_at),
                        Some(_) => ("silenced", fired_at),
                        None => ("firing", fired_at),
                    },
                };
                AlertView {
                    alert: a.key.class,
                    severity: a.key.class.severity(),
                    vpn: a.key.vpn.clone(),
                    tunnel: a.key.tunnel.clone(),
                    state,
                    since,
                    summary: a.details.summary.clone(),
                    reason: a.details.reason.clone(),
                    muted_by: if state == "pending" { None } else { muted_by },
                }
            })
            .collect()
    }

    /// Returns the firing alerts that are neither inhibited nor silenced.
    pub fn visible_firing(&self, now: Timestamp) -> Vec<&Alert> {
        self.alerts
            .values()
            .filter(|a| {
                matches!(a.state, AlertState::Firing { .. }) && self.muted_by(&a.key, now).is_none()
            })
            .collect()
    }
}

#[cfg(test)]
// Tests build condition sets from owned keys for readability.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(10_000 + s)
    }

    fn details(summary: &str) -> Details {
        Details {
            summary: summary.into(),
            reason: format!("{summary} (reason)"),
            vpn_id: Some("vpn-0123456789abcdef0".into()),
        }
    }

    fn tunnel_down(tunnel: &str) -> AlertKey {
        AlertKey::tunnel(AlertClass::TunnelDown, "dc", tunnel)
    }

    fn active(keys: &[AlertKey]) -> Conditions {
        keys.iter()
            .map(|k| (k.clone(), Condition::Active(details(&k.to_string()))))
            .collect()
    }

    fn engine(rules: AlertRules) -> AlertEngine {
        AlertEngine::new(rules, Vec::new())
    }

    /// Drains notifications as (status, key, repeat) triples.
    fn drain(e: &mut AlertEngine) -> Vec<(NotificationStatus, String, bool)> {
        std::iter::from_fn(|| e.poll_notification())
            .map(|n| (n.status, n.key.to_string(), n.repeat))
            .collect()
    }

    use NotificationStatus::{Firing, Resolved};

    #[test]
    fn with_for_zero_a_condition_fires_at_once_and_resolves_when_it_clears() {
        let mut e = engine(AlertRules::default());
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "TunnelDown/dc/dc-a".into(), false)]
        );
        e.evaluate(&active(&[a.clone()]), t(1));
        assert_eq!(drain(&mut e), vec![], "no second page while it fires");
        e.evaluate(&Conditions::new(), t(5));
        let n = e.poll_notification().unwrap();
        assert_eq!(
            (n.status, n.starts_at, n.ends_at),
            (Resolved, t(0), Some(t(5)))
        );
        assert!(e.alerts().next().is_none());
    }

    #[test]
    fn for_holds_an_alert_pending_and_a_shorter_blip_pages_nobody() {
        let rules = AlertRules {
            for_: Duration::from_secs(10),
            ..AlertRules::default()
        };
        let mut e = engine(rules);
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        e.evaluate(&active(&[a.clone()]), t(9));
        assert_eq!(drain(&mut e), vec![]);
        assert_eq!(e.views(t(9))[0].state, "pending");
        assert_eq!(e.poll_timeout(t(9)), Some(t(10)));
        e.evaluate(&Conditions::new(), t(9));
        assert_eq!(
            drain(&mut e),
            vec![],
            "a blip shorter than `for`: no page, no resolved"
        );
        e.evaluate(&active(&[a.clone()]), t(20));
        e.evaluate(&active(&[a.clone()]), t(30));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "TunnelDown/dc/dc-a".into(), false)]
        );
    }

    #[test]
    fn repeat_interval_renotifies_while_firing() {
        let rules = AlertRules {
            repeat_interval: Duration::from_secs(3600),
            ..AlertRules::default()
        };
        let mut e = engine(rules);
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        drain(&mut e);
        e.evaluate(&active(&[a.clone()]), t(3599));
        assert_eq!(drain(&mut e), vec![]);
        assert_eq!(e.poll_timeout(t(3599)), Some(t(3600)));
        e.evaluate(&active(&[a.clone()]), t(3600));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "TunnelDown/dc/dc-a".into(), true)]
        );
    }

    #[test]
    fn keep_firing_for_rides_out_flaps_without_new_pages() {
        let rules = AlertRules {
            keep_firing_for: Duration::from_secs(30),
            ..AlertRules::default()
        };
        let mut e = engine(rules);
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        assert_eq!(drain(&mut e).len(), 1);
        e.evaluate(&Conditions::new(), t(10));
        e.evaluate(&active(&[a.clone()]), t(20));
        e.evaluate(&Conditions::new(), t(25));
        assert_eq!(
            drain(&mut e),
            vec![],
            "cleared for less than keep_firing_for each time"
        );
        e.evaluate(&Conditions::new(), t(54));
        assert_eq!(drain(&mut e), vec![]);
        e.evaluate(&Conditions::new(), t(55));
        assert_eq!(
            drain(&mut e),
            vec![(Resolved, "TunnelDown/dc/dc-a".into(), false)]
        );
    }

    #[test]
    fn send_resolved_false_stays_quiet_on_clearing() {
        let mut e = engine(AlertRules {
            send_resolved: false,
            ..AlertRules::default()
        });
        e.evaluate(&active(&[tunnel_down("dc-a")]), t(0));
        drain(&mut e);
        e.evaluate(&Conditions::new(), t(1));
        assert_eq!(drain(&mut e), vec![]);
    }

    #[test]
    fn unknown_conditions_hold_an_alert_in_its_state() {
        let mut e = engine(AlertRules::default());
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        drain(&mut e);
        let unknown: Conditions = [(a.clone(), Condition::Unknown)].into();
        e.evaluate(&unknown, t(60));
        assert_eq!(
            drain(&mut e),
            vec![],
            "not resolved while unknown (e.g. after a restart)"
        );
        assert_eq!(e.views(t(60))[0].state, "firing");
    }

    #[test]
    fn vpn_unreachable_inhibits_connection_and_tunnel_alerts() {
        let mut e = engine(AlertRules::default());
        let vpn = AlertKey::global(AlertClass::VpnUnreachable);
        let conn = AlertKey::connection(AlertClass::ConnectionDown, "dc");
        let keys = [
            vpn.clone(),
            conn.clone(),
            tunnel_down("dc-a"),
            tunnel_down("dc-b"),
        ];
        e.evaluate(&active(&keys), t(0));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "VpnUnreachable".into(), false)]
        );
        let views = e.views(t(0));
        assert_eq!(views.iter().filter(|v| v.state == "inhibited").count(), 3);
        // The bigger outage ends but the connection stays down: its page goes out now.
        e.evaluate(&active(&keys[1..]), t(10));
        assert_eq!(
            drain(&mut e),
            vec![
                (Resolved, "VpnUnreachable".into(), false),
                (Firing, "ConnectionDown/dc".into(), false)
            ]
        );
        // And the connection's tunnels stay inhibited by it.
        assert_eq!(
            e.views(t(10))
                .iter()
                .filter(|v| v.state == "inhibited")
                .count(),
            2
        );
        // Everything clears: only what was notified gets a resolved.
        e.evaluate(&Conditions::new(), t(20));
        assert_eq!(
            drain(&mut e),
            vec![(Resolved, "ConnectionDown/dc".into(), false)]
        );
    }

    #[test]
    fn connection_down_inhibits_only_its_own_tunnels() {
        let mut e = engine(AlertRules::default());
        let conn = AlertKey::connection(AlertClass::ConnectionDown, "dc");
        let other = AlertKey::tunnel(AlertClass::TunnelDown, "dc2", "dc2-a");
        e.evaluate(&active(&[conn, tunnel_down("dc-a"), other]), t(0));
        let mut keys: Vec<String> = drain(&mut e).into_iter().map(|(_, k, _)| k).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                "ConnectionDown/dc".to_string(),
                "TunnelDown/dc2/dc2-a".to_string()
            ]
        );
    }

    #[test]
    fn a_tunnel_already_paged_gets_its_resolved_even_if_inhibited_later() {
        let mut e = engine(AlertRules::default());
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        assert_eq!(drain(&mut e).len(), 1);
        let conn = AlertKey::connection(AlertClass::ConnectionDown, "dc");
        e.evaluate(&active(&[a.clone(), conn.clone()]), t(1));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "ConnectionDown/dc".into(), false)]
        );
        e.evaluate(&Conditions::new(), t(2));
        let mut got = drain(&mut e);
        got.sort();
        assert_eq!(
            got,
            vec![
                (Resolved, "ConnectionDown/dc".into(), false),
                (Resolved, "TunnelDown/dc/dc-a".into(), false)
            ]
        );
    }

    #[test]
    fn flapping_inhibits_the_tunnels_down_pages() {
        let mut e = engine(AlertRules::default());
        let flap = AlertKey::tunnel(AlertClass::TunnelFlapping, "dc", "dc-a");
        e.evaluate(&active(&[flap.clone(), tunnel_down("dc-a")]), t(0));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "TunnelFlapping/dc/dc-a".into(), false)]
        );
        e.evaluate(&active(&[flap.clone()]), t(3));
        e.evaluate(&active(&[flap.clone(), tunnel_down("dc-a")]), t(6));
        assert_eq!(drain(&mut e), vec![]);
    }

    #[test]
    fn silences_mute_matching_alerts_until_they_end() {
        let silence = Silence {
            class: Some(AlertClass::TunnelDown),
            vpn: Some("dc".into()),
            tunnel: Some("dc-a".into()),
            starts: Some(t(100)),
            ends: t(200),
            comment: "AWS maintenance".into(),
        };
        let mut e = AlertEngine::new(AlertRules::default(), vec![silence]);
        let a = tunnel_down("dc-a");
        let b = tunnel_down("dc-b");
        // Before the window: pages.
        e.evaluate(&active(&[a.clone()]), t(50));
        assert_eq!(drain(&mut e).len(), 1);
        e.evaluate(&Conditions::new(), t(60));
        drain(&mut e);
        // Inside it: dc-a is silent, dc-b is not.
        e.evaluate(&active(&[a.clone(), b.clone()]), t(150));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "TunnelDown/dc/dc-b".into(), false)]
        );
        let view = e
            .views(t(150))
            .into_iter()
            .find(|v| v.tunnel.as_deref() == Some("dc-a"))
            .unwrap();
        assert_eq!(view.state, "silenced");
        assert!(view.muted_by.unwrap().contains("AWS maintenance"));
        assert_eq!(e.poll_timeout(t(150)), Some(t(200)));
        // The window ends with dc-a still down: now it pages.
        e.evaluate(&active(&[a.clone(), b.clone()]), t(200));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "TunnelDown/dc/dc-a".into(), false)]
        );
    }

    #[test]
    fn an_alert_silenced_throughout_never_sends_a_resolved() {
        let silence = Silence {
            class: None,
            vpn: None,
            tunnel: None,
            starts: None,
            ends: t(1000),
            comment: String::new(),
        };
        let mut e = AlertEngine::new(AlertRules::default(), vec![silence]);
        e.evaluate(&active(&[tunnel_down("dc-a")]), t(0));
        e.evaluate(&Conditions::new(), t(10));
        assert_eq!(drain(&mut e), vec![]);
    }

    #[test]
    fn restored_firing_alerts_do_not_page_again() {
        let mut first = engine(AlertRules::default());
        let a = tunnel_down("dc-a");
        first.evaluate(&active(&[a.clone()]), t(0));
        assert_eq!(drain(&mut first).len(), 1);
        let saved: Vec<Alert> = first.alerts().cloned().collect();
        let json = serde_json::to_string(&saved).unwrap();

        let mut second = engine(AlertRules::default());
        second.restore(serde_json::from_str(&json).unwrap());
        second.evaluate(&active(&[a.clone()]), t(30));
        assert_eq!(drain(&mut second), vec![]);
        second.evaluate(&Conditions::new(), t(40));
        assert_eq!(
            drain(&mut second),
            vec![(Resolved, "TunnelDown/dc/dc-a".into(), false)]
        );
    }

    #[test]
    fn group_wait_lets_a_bigger_outage_detected_a_moment_later_inhibit_the_smaller() {
        let rules = AlertRules {
            group_wait: Duration::from_secs(1),
            ..AlertRules::default()
        };
        let mut e = engine(rules);
        let a = tunnel_down("dc-a");
        e.evaluate(&active(&[a.clone()]), t(0));
        assert_eq!(drain(&mut e), vec![]);
        assert_eq!(e.poll_timeout(t(0)), Some(t(1)));
        let vpn = AlertKey::global(AlertClass::VpnUnreachable);
        e.evaluate(
            &active(&[a.clone(), vpn.clone()]),
            t(0).plus(Duration::from_millis(400)),
        );
        e.evaluate(&active(&[a.clone(), vpn.clone()]), t(2));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "VpnUnreachable".into(), false)]
        );
        // Alone, a tunnel alert waits just group_wait.
        let mut e = engine(AlertRules {
            group_wait: Duration::from_secs(1),
            ..AlertRules::default()
        });
        e.evaluate(&active(&[a.clone()]), t(0));
        e.evaluate(&active(&[a.clone()]), t(1));
        assert_eq!(drain(&mut e).len(), 1);
    }

    #[test]
    fn group_wait_keeps_tunnels_coming_back_after_a_bigger_outage_quiet() {
        let rules = AlertRules {
            group_wait: Duration::from_secs(1),
            ..AlertRules::default()
        };
        let mut e = engine(rules);
        let vpn = AlertKey::global(AlertClass::VpnUnreachable);
        let (a, b) = (tunnel_down("dc-a"), tunnel_down("dc-b"));
        e.evaluate(&active(&[vpn.clone(), a.clone(), b.clone()]), t(0));
        e.evaluate(&active(&[vpn.clone(), a.clone(), b.clone()]), t(5));
        assert_eq!(
            drain(&mut e),
            vec![(Firing, "VpnUnreachable".into(), false)]
        );
        // Tunnel A comes back first: the outage is over, B is down for half a second more.
        e.evaluate(&active(&[b.clone()]), t(10));
        e.evaluate(&Conditions::new(), t(10).plus(Duration::from_millis(500)));
        assert_eq!(
            drain(&mut e),
            vec![(Resolved, "VpnUnreachable".into(), false)]
        );
    }

    #[test]
    fn severities_follow_the_class() {
        assert_eq!(AlertClass::ConnectionDown.severity(), Severity::Critical);
        assert_eq!(AlertClass::VpnUnreachable.severity(), Severity::Critical);
        for c in [
            AlertClass::TunnelDown,
            AlertClass::DataPlaneDead,
            AlertClass::TunnelFlapping,
            AlertClass::ControlPlaneUnavailable,
        ] {
            assert_eq!(c.severity(), Severity::Warning);
        }
        assert!(Severity::Critical > Severity::Warning);
    }
}
