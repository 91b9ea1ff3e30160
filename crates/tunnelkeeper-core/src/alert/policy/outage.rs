//! Turns the health model's verdicts into alert conditions, pure and sans-IO: which alerts'
//! conditions hold, which are unknown (an alert then keeps its state), and flap counting.

use std::collections::VecDeque;
use std::time::Duration;

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::alert::policy::paths;
use crate::alert::policy::Inputs;
use crate::config::{Config, ReloadMapping};
use crate::health::maintenance::MaintenancePhase;
use crate::health::{ConnectionState, ControlPlane, HealthModel, Verdict, VpnState};
use crate::types::{AlertClass, Severity};
use crate::types::{Timestamp, TunnelId};

/// Counts each tunnel's changes between up and down within a sliding window.
#[derive(Clone, Debug)]
pub struct FlapTracker {
    window: Duration,
    threshold: usize,
    tunnels: Vec<(TunnelId, Option<bool>, VecDeque<Timestamp>)>,
}

impl FlapTracker {
    /// Tracks every tunnel of `config`: `threshold` changes within `window` is flapping.
    pub fn new(config: &Config, threshold: u32, window: Duration) -> Self {
        let tunnels = config
            .tunnel_ids()
            .map(|id| (id, None, VecDeque::new()))
            .collect();
        Self {
            window,
            threshold: threshold as usize,
            tunnels,
        }
    }

    /// Records the tunnels' current verdicts; unknown verdicts are not changes.
    pub fn update(&mut self, model: &HealthModel, now: Timestamp) {
        for (id, last, changes) in &mut self.tunnels {
            let up = match &model.tunnel(*id).verdict {
                Verdict::Up { .. } => Some(true),
                Verdict::Down { .. } => Some(false),
                Verdict::Unknown { .. } => None,
            };
            if let Some(up) = up {
                if last.is_some_and(|l| l != up) {
                    changes.push_back(now);
                }
                *last = Some(up);
            }
            while changes.front().is_some_and(|t| now.since(*t) > self.window) {
                changes.pop_front();
            }
        }
    }

    /// Takes over the change history of the tunnels `old` tracked that the new config
    /// still has (paired by `mapping`).
    pub fn adopt(&mut self, old: &FlapTracker, mapping: &ReloadMapping) {
        for (id, last, changes) in &mut self.tunnels {
            let Some(old_id) = mapping.old_tunnel(*id) else {
                continue;
            };
            if let Some((_, old_last, old_changes)) =
                old.tunnels.iter().find(|(oid, _, _)| *oid == old_id)
            {
                *last = *old_last;
                *changes = old_changes.clone();
            }
        }
    }

    /// Returns how many changes a tunnel made within the window, if that is flapping.
    pub fn flapping(&self, id: TunnelId) -> Option<usize> {
        self.tunnels
            .iter()
            .find(|(t, _, _)| *t == id)
            .map(|(_, _, changes)| changes.len())
            .filter(|n| *n >= self.threshold)
    }

    /// Returns the window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// An active condition with what its page says.
pub(super) fn active(
    summary: impl Into<String>,
    reason: impl Into<String>,
    vpn_id: Option<String>,
) -> Condition {
    Condition::Active(Details {
        summary: summary.into(),
        reason: reason.into(),
        vpn_id,
        severity: None,
        since: None,
        cause: None,
    })
}

/// Keeps the first clause of a reason, for a summary line.
fn short(reason: &str) -> String {
    let cut = reason.find([';', '(']).unwrap_or(reason.len());
    let s = reason[..cut].trim();
    let s = if s.is_empty() { reason.trim() } else { s };
    s.chars().take(80).collect()
}

/// Says when the replacement happened and how it is known.
fn replacement_text(phase: MaintenancePhase) -> String {
    match phase.replaced_at() {
        (at, true) => format!("AWS applied maintenance to this tunnel at {at}"),
        (at, false) => format!(
            "maintenance was pending and past its auto-apply time when the tunnel dropped at {at}"
        ),
    }
}

/// Calls out `StartupAction=add`, with which AWS waits for the customer gateway after a
/// replacement.
pub(super) fn startup_add_text(startup_add: bool) -> &'static str {
    if startup_add {
        "; StartupAction=add: after a replacement AWS waits for the customer gateway to start IKE, so send traffic from the datacenter or restart IKE on the customer gateway"
    } else {
        ""
    }
}

/// One tunnel's conditions (`TunnelDown`, `TunnelDownAfterMaintenance`, `TunnelFlapping`),
/// added to `out`. Returns whether its alerts hold while it counts as up, and if so whether
/// for a lost latest probe (which holds the VPN's alert too) rather than AWS's word.
fn tunnel_conditions(
    (config, model, control, flaps): (&Config, &HealthModel, Option<&ControlPlane>, &FlapTracker),
    id: TunnelId,
    vpn_id: &Option<String>,
    now: Timestamp,
    out: &mut Conditions,
) -> Option<bool> {
    let vpn = config.connections[id.connection].name.as_str();
    let t = config.tunnel(id);
    let mut held = None;
    let tunnel = model.tunnel(id);
    let key = AlertKey::tunnel(AlertClass::TunnelDown, vpn, t.name.as_str());
    let maintenance_key =
        AlertKey::tunnel(AlertClass::TunnelDownAfterMaintenance, vpn, t.name.as_str());
    let down = tunnel.verdict.is_down();
    match &tunnel.verdict {
        Verdict::Down { reason, since } => {
            let summary = if tunnel.control_plane.is_up() {
                "AWS reports UP but pinned targets are unreachable".to_string()
            } else {
                short(reason)
            };
            let grace = config.alerts.maintenance_grace;
            let phase = control.and_then(|cp| cp.maintenance_phase(id, *since, now, grace));
            let startup_add = control
                .and_then(|cp| cp.tunnel_reading(id))
                .and_then(|r| r.options.as_ref())
                .is_some_and(|o| o.startup_add());
            match phase {
                Some(p @ MaintenancePhase::Grace { until, .. }) => {
                    out.insert(key, Condition::Unknown);
                    out.insert(
                        maintenance_key,
                        active(
                            "down after AWS tunnel endpoint replacement",
                            format!(
                                "AWS tunnel endpoint replacement: {}; {reason}; pages as TunnelDown if still down at {until}{}",
                                replacement_text(p),
                                startup_add_text(startup_add)
                            ),
                            vpn_id.clone(),
                        ),
                    );
                }
                Some(p @ MaintenancePhase::Overdue { .. }) => {
                    out.insert(maintenance_key, Condition::Unknown);
                    out.insert(
                        key,
                        active(
                            format!(
                                "still down {} after AWS tunnel endpoint replacement",
                                humantime::format_duration(grace)
                            ),
                            format!(
                                "{reason}; still down {} after the AWS tunnel endpoint replacement ({}){}",
                                humantime::format_duration(grace),
                                replacement_text(p),
                                startup_add_text(startup_add)
                            ),
                            vpn_id.clone(),
                        ),
                    );
                }
                None => {
                    let mut reason = reason.clone();
                    if let Some(text) = paths::failover_text(model, id, *since) {
                        reason.push_str("; ");
                        reason.push_str(&text);
                    }
                    out.insert(key, active(summary, reason, vpn_id.clone()));
                }
            }
        }
        Verdict::Unknown { .. } => {
            out.insert(key, Condition::Unknown);
            out.insert(maintenance_key, Condition::Unknown);
        }
        Verdict::Up { .. } => {
            // EC2 never having answered holds nothing: the data plane decides
            // alone (EC2 may never answer, for want of a route or a permission).
            // Only AWS's own last word on this tunnel, DOWN before it went quiet,
            // holds this tunnel's and its connection's alert: pings never said
            // that outage began, so they cannot say it ended. The VPN's alert is
            // the pings' alone.
            // Likewise, for the seconds before the first EC2 call of this process
            // comes back (an answer or an error), right after a restart or reload.
            let aws_said_down_then_quiet = matches!(tunnel.control_plane, Verdict::Unknown { .. })
                && control.is_some_and(|cp| {
                    cp.polls(id)
                        && (!cp.has_reported() || (cp.is_stale() && cp.last_answer_said_down(id)))
                });
            // Nor is it over while the latest probe through the tunnel was lost:
            // a recovery is announced on a reply, never between two losses.
            let last_probe_lost = !t.targets.is_empty()
                && t.targets
                    .iter()
                    .all(|target| model.target(*target).consecutive_lost > 0);
            if aws_said_down_then_quiet || last_probe_lost {
                held = Some(last_probe_lost);
                out.insert(key, Condition::Unknown);
                out.insert(maintenance_key, Condition::Unknown);
            }
        }
    }
    let flap_key = AlertKey::tunnel(AlertClass::TunnelFlapping, vpn, t.name.as_str());
    // A flapping alert starts only while the tunnel is down: the threshold is often
    // crossed by a recovery, and nothing may page in the instant a tunnel comes back.
    match (flaps.flapping(id), down) {
        (Some(changes), true) => {
            out.insert(
                flap_key,
                active(
                    format!(
                        "changed state {changes} times in {}",
                        humantime::format_duration(flaps.window())
                    ),
                    format!(
                        "tunnel {} went up and down {changes} times within {}",
                        t.name,
                        humantime::format_duration(flaps.window())
                    ),
                    vpn_id.clone(),
                ),
            );
        }
        // Flapping but up right now, or calm again but still down: a flapping alert
        // holds (no page at a recovery, no "resolved" mid-outage), none starts.
        (Some(_), false) | (None, true) => {
            out.insert(flap_key, Condition::Unknown);
        }
        (None, false) => {}
    }
    held
}

/// `ConnectionDown` for connection `ci`: a warning while another connection carries
/// traffic, critical when it was the last path; held while one of its tunnels' alerts is.
fn connection_down(
    config: &Config,
    model: &HealthModel,
    ci: usize,
    connection_held: bool,
) -> (AlertKey, Option<Condition>) {
    let c = &config.connections[ci];
    let vpn = c.name.as_str();
    let vpn_id = c.id.as_ref().map(|id| id.to_string());
    let key = AlertKey::connection(AlertClass::ConnectionDown, vpn);
    match model.connection(ci) {
        ConnectionState::Down { reason, .. } => {
            let summary = if c.tunnels.len() == 2 {
                "both tunnels down".to_string()
            } else {
                short(reason)
            };
            // The City's rule: with another connection still carrying traffic this
            // usually heals by itself; it is critical once it was the last one.
            let last_path = !(0..config.connections.len()).any(|other| {
                other != ci
                    && matches!(
                        model.connection(other),
                        ConnectionState::Healthy { .. } | ConnectionState::Degraded { .. }
                    )
            });
            let mut condition = active(summary, reason.clone(), vpn_id.clone());
            if let Condition::Active(d) = &mut condition {
                d.severity = Some(if last_path {
                    Severity::Critical
                } else {
                    Severity::Warning
                });
                if !last_path {
                    d.reason
                        .push_str("; another connection still carries traffic to the datacenter");
                }
            }
            return (key, Some(condition));
        }
        ConnectionState::Unknown { .. } => {
            return (key, Some(Condition::Unknown));
        }
        ConnectionState::Healthy { .. } | ConnectionState::Degraded { .. } => {
            if connection_held {
                return (key, Some(Condition::Unknown));
            }
        }
    }
    (key, None)
}

/// Derives every alert condition from the model. `control_unavailable` is since when EC2
/// has been failing, with the last error, once that has lasted longer than the limit.
///
/// One continuous outage of a tunnel is one `TunnelDown`, whichever plane saw it first and
/// whatever the planes do meanwhile: the reason says which plane, the identity does not.
/// Details never carry counters or elapsed times, so a steady outage changes nothing.
///
/// A tunnel that went down with an AWS endpoint replacement pages as
/// `TunnelDownAfterMaintenance` (at the configured severity) for `maintenance_grace`, its
/// `TunnelDown` held; still down after the grace, `TunnelDown` pages (saying why) and the
/// maintenance alert is held until the outage ends.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let Inputs {
        config,
        model,
        control,
        flaps,
        now,
        ..
    } = *inputs;
    let mut out = Conditions::new();
    // Whether some tunnel's latest probe was lost while it counts as up: the VPN's alert
    // holds too, rather than resolve between two losses.
    let mut any_held = false;
    for (ci, c) in config.connections.iter().enumerate() {
        let mut connection_held = false;
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        for ti in 0..c.tunnels.len() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let world = (config, model, control, flaps);
            if let Some(probe_lost) = tunnel_conditions(world, id, &vpn_id, now, &mut out) {
                connection_held = true;
                any_held |= probe_lost;
            }
        }
        let (key, condition) = connection_down(config, model, ci, connection_held);
        if let Some(condition) = condition {
            out.insert(key, condition);
        }
    }
    let key = AlertKey::global(AlertClass::VpnUnreachable);
    match model.vpn() {
        VpnState::Critical { reason, .. } => {
            out.insert(
                key,
                active("no working path to the datacenter", reason.clone(), None),
            );
        }
        VpnState::Starting => {
            out.insert(key, Condition::Unknown);
        }
        VpnState::Ok { .. } | VpnState::Degraded { .. } => {
            // As for a tunnel: no recovery between two losses. While every shared target's
            // latest probe was lost, the path may be gone another way (the connection came
            // back as the datacenter hosts went), not yet counted down.
            let shared: Vec<_> = config
                .targets
                .iter()
                .filter(|t| t.scope == crate::config::TargetScope::Shared)
                .collect();
            let shared_losing = !shared.is_empty()
                && shared
                    .iter()
                    .all(|t| model.target(t.id).consecutive_lost > 0);
            if any_held || shared_losing {
                out.insert(key, Condition::Unknown);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
