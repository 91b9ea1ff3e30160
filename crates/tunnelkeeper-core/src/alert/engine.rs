//! The alert engine, pure and sans-IO, with Alertmanager's semantics: `for` (pending before
//! firing), `keep_firing_for`, `repeat_interval`, resolved notifications, inhibition and
//! silences. Conditions come in with the time; notifications come out through
//! [`AlertEngine::poll_notification`]. Nothing here reads a clock or sends anything.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::view::AlertView;
use crate::config::AlertRules;
use crate::config::ReloadMapping;
use crate::config::Silence;
use crate::types::AlertClass;
use crate::types::Severity;
use crate::types::Timestamp;

/// What an alert is about: its class and, where it applies, the connection and tunnel.
/// The stable key of an alert across restarts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AlertKey {
    pub class: AlertClass,
    /// The connection's name, for connection and tunnel alerts.
    pub vpn: Option<String>,
    /// The tunnel's name, for tunnel alerts.
    pub tunnel: Option<String>,
    /// The target (`address:port`), for alerts about one service (`ServiceDown`); absent
    /// from state files written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl AlertKey {
    /// Builds a VPN-wide key.
    pub fn global(class: AlertClass) -> Self {
        Self {
            class,
            vpn: None,
            tunnel: None,
            target: None,
        }
    }

    /// Builds a connection key.
    pub fn connection(class: AlertClass, vpn: &str) -> Self {
        Self {
            class,
            vpn: Some(vpn.into()),
            tunnel: None,
            target: None,
        }
    }

    /// Builds a tunnel key.
    pub fn tunnel(class: AlertClass, vpn: &str, tunnel: &str) -> Self {
        Self {
            class,
            vpn: Some(vpn.into()),
            tunnel: Some(tunnel.into()),
            target: None,
        }
    }

    /// Builds the key of one target's alert: its tunnel's when it is pinned, the VPN's
    /// when shared.
    pub fn target(class: AlertClass, place: Option<(&str, &str)>, target: &str) -> Self {
        Self {
            class,
            vpn: place.map(|(v, _)| v.into()),
            tunnel: place.map(|(_, t)| t.into()),
            target: Some(target.into()),
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
        if let Some(t) = &self.target {
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
    /// The severity the situation calls for, where it depends on it (ConnectionDown is a
    /// warning while another connection carries traffic); `None` pages at the class's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// When the situation began, where it is an outage: the first lost probe, or AWS's
    /// last status change when only AWS saw it. Pages say it as `Since:` and a RESOLVED
    /// measures the outage from it; it survives restarts with the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Why, where it is a tunnel's outage and the evidence tells (AWS's tunnel logs,
    /// maintenance, EC2's status, ICMP errors, MTU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::health::cause::Cause>,
}

/// Every condition at one evaluation; keys absent here are false.
pub type Conditions = BTreeMap<AlertKey, Condition>;

/// Whether a silence mutes an alert at `now`.
fn silences(silence: &Silence, key: &AlertKey, now: Timestamp) -> bool {
    silence.starts.is_none_or(|s| s <= now)
        && now < silence.ends
        && silence.class.is_none_or(|c| c == key.class)
        && silence
            .vpn
            .as_ref()
            .is_none_or(|v| key.vpn.as_ref() == Some(v))
        && silence
            .tunnel
            .as_ref()
            .is_none_or(|t| key.tunnel.as_ref() == Some(t))
}

/// Whether a notification announces or clears an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// The alert fires (first time or repeat).
    Firing,
    /// The alert has cleared.
    Resolved,
    /// A test page (`tunnelkeeper test-page`) that proves the pager path: it says so and
    /// asks for nothing. Never made by the engine.
    Test,
}

/// Something to tell the sinks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub key: AlertKey,
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
        /// When it was re-sent as critical, having been a warning for `escalate_after`
        /// (`None` until then): from then on it pages, repeats and resolves as critical.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        escalated_at: Option<Timestamp>,
    },
}

/// One alert the engine tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub key: AlertKey,
    pub state: AlertState,
    /// The latest details.
    pub details: Details,
}

impl Alert {
    /// Returns whether the alert was escalated to critical.
    pub fn escalated(&self) -> bool {
        matches!(
            self.state,
            AlertState::Firing {
                escalated_at: Some(_),
                ..
            }
        )
    }
}

/// Decides the severity an alert of a class pages at, from its situation's
/// (`Details::severity`): the pager's is `AlertsConfig::severity`, with the config's word.
pub type SeverityOf<'a> = &'a dyn Fn(AlertClass, Option<Severity>) -> Severity;

/// The severity a class has when nothing but the situation decides.
fn own_severity(class: AlertClass, situation: Option<Severity>) -> Severity {
    situation.unwrap_or(class.severity())
}

/// The engine: alert states and the queue of notifications to hand out.
#[derive(Clone, Debug)]
pub struct AlertEngine {
    rules: AlertRules,
    silences: Vec<Silence>,
    alerts: BTreeMap<AlertKey, Alert>,
    /// Notifications made and not yet taken by [`AlertEngine::poll_notification`].
    ready: VecDeque<Notification>,
    /// After something recovers, first pages wait until then (`release_wait`): nothing
    /// pages in the instant a tunnel or connection comes back, when the picture is still
    /// settling.
    settle_until: Option<Timestamp>,
}

impl AlertEngine {
    /// Starts with no alerts.
    pub fn new(rules: AlertRules, silences: Vec<Silence>) -> Self {
        Self {
            rules,
            silences,
            alerts: BTreeMap::new(),
            ready: VecDeque::new(),
            settle_until: None,
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

    /// Renames alerts whose connection or tunnel was renamed (a reload): the alert goes
    /// on under its new key, with its state, so a rename neither resolves nor re-pages it.
    pub fn rekey(&mut self, mapping: &ReloadMapping) {
        self.alerts = std::mem::take(&mut self.alerts)
            .into_values()
            .map(|mut a| {
                if let Some(vpn) = &a.key.vpn {
                    if let Some((v, t)) = mapping.renamed(vpn, a.key.tunnel.as_deref()) {
                        a.key.vpn = Some(v.to_string());
                        a.key.tunnel = t.map(str::to_string);
                    }
                }
                (a.key.clone(), a)
            })
            .collect();
    }

    /// Applies the conditions as of `now` and queues the notifications they call for, at
    /// the class's or the situation's severity.
    pub fn evaluate(&mut self, conditions: &Conditions, now: Timestamp) {
        self.evaluate_with(conditions, now, &own_severity);
    }

    /// Applies the conditions as of `now` and queues the notifications they call for, each
    /// at the severity `severity_of` decides; a warning of a class that escalates
    /// (`policy::escalates`) firing for `escalate_after` is re-sent once as critical.
    pub fn evaluate_with(
        &mut self,
        conditions: &Conditions,
        now: Timestamp,
        severity_of: SeverityOf<'_>,
    ) {
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
            // The outage began at the earliest time any evaluation saw (one before a restart
            // included): a later first loss does not move it.
            let since = match (alert.details.since, details.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            alert.details = details.clone();
            alert.details.since = since;
            match &mut alert.state {
                AlertState::Pending { active_since } => {
                    if now.since(*active_since) >= self.rules.for_ {
                        alert.state = AlertState::Firing {
                            fired_at: now,
                            last_notified: None,
                            cleared_at: None,
                            visible_since: None,
                            escalated_at: None,
                        };
                    }
                }
                AlertState::Firing { cleared_at, .. } => *cleared_at = None,
            }
        }
        // Cleared conditions: a pending alert goes quietly; a firing one resolves,
        // after keep_firing_for if set.
        let mut resolved = Vec::new();
        let mut recovered = false;
        self.alerts.retain(|key, alert| {
            if conditions.contains_key(key) {
                return true;
            }
            match &mut alert.state {
                AlertState::Pending { .. } => {
                    recovered = true;
                    false
                }
                AlertState::Firing {
                    cleared_at,
                    last_notified,
                    fired_at,
                    escalated_at,
                    ..
                } => {
                    recovered |= cleared_at.is_none();
                    let cleared = *cleared_at.get_or_insert(now);
                    if now.since(cleared) < self.rules.keep_firing_for {
                        return true;
                    }
                    if last_notified.is_some() {
                        // The RESOLVED goes where the last FIRING went: to the critical
                        // sinks too once it was escalated.
                        let severity = if escalated_at.is_some() {
                            Severity::Critical
                        } else {
                            severity_of(key.class, alert.details.severity)
                        };
                        resolved.push((
                            alert.key.clone(),
                            alert.details.clone(),
                            *fired_at,
                            severity,
                        ));
                    }
                    false
                }
            }
        });
        if recovered && !self.rules.release_wait.is_zero() {
            self.settle_until = Some(now.plus(self.rules.release_wait));
        }
        if self.rules.send_resolved {
            for (key, details, fired_at, severity) in resolved {
                self.ready.push_back(Notification {
                    severity,
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
        self.notify_due(conditions, now, severity_of);
    }

    /// Queues the pages of firing alerts that are due (first page, repeat, escalation)
    /// and neither inhibited nor silenced.
    fn notify_due(&mut self, conditions: &Conditions, now: Timestamp, severity_of: SeverityOf<'_>) {
        let due: Vec<AlertKey> = self
            .alerts
            .values()
            .filter(|a| match a.state {
                AlertState::Firing {
                    last_notified: None,
                    visible_since,
                    fired_at,
                    ..
                } => self
                    .first_page_at(fired_at, visible_since)
                    .is_some_and(|t| now >= t),
                AlertState::Firing {
                    last_notified: Some(t),
                    ..
                } => {
                    now.since(t) >= self.rules.repeat_interval
                        || self.escalation_at(a, severity_of).is_some_and(|e| now >= e)
                }
                AlertState::Pending { .. } => false,
            })
            .filter(|a| self.muted_by(&a.key, now).is_none())
            // A condition nobody can see right now (just restarted) pages nothing, repeats included.
            .filter(|a| !matches!(conditions.get(&a.key), Some(Condition::Unknown)))
            .map(|a| a.key.clone())
            .collect();
        for key in due {
            let escalate = self
                .alerts
                .get(&key)
                .and_then(|a| self.escalation_at(a, severity_of));
            let alert = self.alerts.get_mut(&key).expect("collected from the map");
            let decided = severity_of(key.class, alert.details.severity);
            let AlertState::Firing {
                fired_at,
                last_notified,
                escalated_at,
                ..
            } = &mut alert.state
            else {
                continue;
            };
            // A first page due past the escalation time goes out as critical at once.
            if escalate.is_some_and(|e| now >= e) {
                *escalated_at = Some(now);
            }
            let severity = if escalated_at.is_some() {
                Severity::Critical
            } else {
                decided
            };
            let repeat = last_notified.is_some();
            *last_notified = Some(now);
            self.ready.push_back(Notification {
                severity,
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

    /// When a firing alert is due to be re-sent as critical: `escalate_after` after it
    /// started firing, if it pages as a warning, its class escalates and it was not
    /// escalated yet. `fired_at` is saved with the alert, so a restart keeps the clock.
    fn escalation_at(&self, alert: &Alert, severity_of: SeverityOf<'_>) -> Option<Timestamp> {
        let AlertState::Firing {
            fired_at,
            escalated_at: None,
            ..
        } = alert.state
        else {
            return None;
        };
        let warning = severity_of(alert.key.class, alert.details.severity) == Severity::Warning;
        (warning
            && !self.rules.escalate_after.is_zero()
            && crate::alert::policy::escalates(alert.key.class))
        .then(|| fired_at.plus(self.rules.escalate_after))
    }

    /// When a firing alert that is visible since `visible_since` may have its first page:
    /// `group_wait` after it became visible, at least `release_wait` when it was muted at
    /// first (the bigger outage that muted it has just cleared, and its own tunnel may be a
    /// moment behind), and never before the picture settles after a recovery.
    pub fn first_page_at(
        &self,
        fired_at: Timestamp,
        visible_since: Option<Timestamp>,
    ) -> Option<Timestamp> {
        let visible = visible_since?;
        let wait = if visible > fired_at {
            self.rules.group_wait.max(self.rules.release_wait)
        } else {
            self.rules.group_wait
        };
        let at = visible.plus(wait);
        Some(self.settle_until.map_or(at, |s| at.max(s)))
    }

    /// Returns what mutes an alert now: an inhibiting alert or a silence.
    pub fn muted_by(&self, key: &AlertKey, now: Timestamp) -> Option<String> {
        if let Some(by) = self.inhibited_by(key) {
            return Some(format!("inhibited by {by}"));
        }
        self.silences
            .iter()
            .find(|s| silences(s, key, now))
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
        let tunnel_level = key.class == AlertClass::TunnelDown;
        if (tunnel_level || key.class == AlertClass::ConnectionDown) && firing(&vpn_unreachable) {
            return self.alerts.get_key_value(&vpn_unreachable).map(|(k, _)| k);
        }
        if tunnel_level {
            if let Some(vpn) = &key.vpn {
                let connection_down = AlertKey::connection(AlertClass::ConnectionDown, vpn);
                if firing(&connection_down) {
                    return self.alerts.get_key_value(&connection_down).map(|(k, _)| k);
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
        self.ready.pop_front()
    }

    /// Returns when `evaluate` must run again even if no condition changes: a pending alert
    /// reaching `for`, a cleared one ending `keep_firing_for`, a repeat, a silence ending.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        self.poll_timeout_with(now, &own_severity)
    }

    /// [`AlertEngine::poll_timeout`], with escalations decided at `severity_of`'s severities.
    pub fn poll_timeout_with(
        &self,
        now: Timestamp,
        severity_of: SeverityOf<'_>,
    ) -> Option<Timestamp> {
        let escalations = self
            .alerts
            .values()
            .filter(|a| {
                matches!(
                    a.state,
                    AlertState::Firing {
                        last_notified: Some(_),
                        ..
                    }
                )
            })
            .filter_map(|a| self.escalation_at(a, severity_of));
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
                fired_at,
                ..
            } => self.first_page_at(fired_at, visible_since),
        });
        // Deadlines already past (under an unknown condition, say) are not wake-ups.
        let alerts = alerts.chain(escalations).filter(|t| *t > now);
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
        self.views_with(now, &own_severity)
    }

    /// Returns every alert as /status shows it, at `severity_of`'s severities (critical
    /// once escalated).
    pub fn views_with(&self, now: Timestamp, severity_of: SeverityOf<'_>) -> Vec<AlertView> {
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
                    severity: if a.escalated() {
                        Severity::Critical
                    } else {
                        severity_of(a.key.class, a.details.severity)
                    },
                    situation: a.details.severity,
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
mod tests;

#[cfg(test)]
mod escalation_tests;
