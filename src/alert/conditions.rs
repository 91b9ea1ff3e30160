//! Turns the health model's verdicts into alert conditions, pure and sans-IO: which alerts'
//! conditions hold, which are unknown (an alert then keeps its state), and flap counting.

use std::collections::VecDeque;
use std::time::Duration;

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::config::Config;
use crate::health::{ConnectionState, ControlPlane, HealthModel, Verdict, VpnState};
use crate::types::AlertClass;
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

    /// Takes over the change history of the tunnels `old` tracked that `config` still has.
    pub fn adopt(&mut self, old: &FlapTracker, old_config: &Config, config: &Config) {
        let name = |c: &Config, id: TunnelId| {
            (
                c.connections[id.connection].name.to_string(),
                c.tunnel(id).name.to_string(),
            )
        };
        for (id, last, changes) in &mut self.tunnels {
            let wanted = name(config, *id);
            if let Some((_, old_last, old_changes)) = old
                .tunnels
                .iter()
                .find(|(oid, _, _)| name(old_config, *oid) == wanted)
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
fn active(
    summary: impl Into<String>,
    reason: impl Into<String>,
    vpn_id: Option<String>,
) -> Condition {
    Condition::Active(Details {
        summary: summary.into(),
        reason: reason.into(),
        vpn_id,
    })
}

/// Keeps the first clause of a reason, for a summary line.
fn short(reason: &str) -> String {
    let cut = reason.find([';', '(']).unwrap_or(reason.len());
    let s = reason[..cut].trim();
    let s = if s.is_empty() { reason.trim() } else { s };
    s.chars().take(80).collect()
}

/// Derives every alert condition from the model. `control_unavailable` is since when EC2
/// has been failing, with the last error, once that has lasted longer than the limit.
///
/// One continuous outage of a tunnel is one `TunnelDown`, whichever plane saw it first and
/// whatever the planes do meanwhile: the reason says which plane, the identity does not.
/// Details never carry counters or elapsed times, so a steady outage changes nothing.
pub fn conditions(
    config: &Config,
    model: &HealthModel,
    control: Option<&ControlPlane>,
    flaps: &FlapTracker,
    control_unavailable: Option<(Timestamp, String)>,
) -> Conditions {
    let mut out = Conditions::new();
    // Whether some tunnel's end is not known because AWS is silent: the alerts above it
    // hold too, rather than resolve on a half-known picture.
    let mut any_held = false;
    for (ci, c) in config.connections.iter().enumerate() {
        let mut connection_held = false;
        let vpn = c.name.as_str();
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        for (ti, t) in c.tunnels.iter().enumerate() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let tunnel = model.tunnel(id);
            let key = AlertKey::tunnel(AlertClass::TunnelDown, vpn, t.name.as_str());
            let down = tunnel.verdict.is_down();
            match &tunnel.verdict {
                Verdict::Down { reason, .. } => {
                    let summary = if tunnel.control_plane.is_up() {
                        "AWS reports UP but pinned targets are unreachable".to_string()
                    } else {
                        short(reason)
                    };
                    out.insert(key, active(summary, reason.clone(), vpn_id.clone()));
                }
                Verdict::Unknown { .. } => {
                    out.insert(key, Condition::Unknown);
                }
                Verdict::Up { .. } => {
                    // Pings pass, but AWS has not answered since a restart, or went quiet
                    // after saying DOWN: whether an outage is over is not known yet, so an
                    // alert holds (a new one does not start).
                    let aws_silent = matches!(tunnel.control_plane, Verdict::Unknown { .. })
                        && control.is_some_and(|cp| {
                            cp.polls(id)
                                && (!cp.has_succeeded()
                                    || (cp.is_stale() && cp.last_answer_said_down(id)))
                        });
                    // Nor is it over while the latest probe through the tunnel was lost:
                    // a recovery is announced on a reply, never between two losses.
                    let last_probe_lost = !t.targets.is_empty()
                        && t.targets
                            .iter()
                            .all(|target| model.target(*target).consecutive_lost > 0);
                    if aws_silent || last_probe_lost {
                        connection_held = true;
                        out.insert(key, Condition::Unknown);
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
        }
        let key = AlertKey::connection(AlertClass::ConnectionDown, vpn);
        match model.connection(ci) {
            ConnectionState::Down { reason, .. } => {
                let summary = if c.tunnels.len() == 2 {
                    "both tunnels down".to_string()
                } else {
                    short(reason)
                };
                out.insert(key, active(summary, reason.clone(), vpn_id.clone()));
            }
            ConnectionState::Unknown { .. } => {
                out.insert(key, Condition::Unknown);
            }
            ConnectionState::Healthy { .. } | ConnectionState::Degraded { .. } => {
                if connection_held {
                    out.insert(key, Condition::Unknown);
                }
            }
        }
        any_held |= connection_held;
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
            if any_held {
                out.insert(key, Condition::Unknown);
            }
        }
    }
    if let Some((since, error)) = control_unavailable {
        out.insert(
            AlertKey::global(AlertClass::ControlPlaneUnavailable),
            active(
                format!("EC2 API failing since {since}"),
                format!("DescribeVpnConnections has failed since {since}; last error: {error}"),
                None,
            ),
        );
    }
    out
}
