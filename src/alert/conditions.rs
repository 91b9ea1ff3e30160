//! Turns the health model's verdicts into alert conditions, pure and sans-IO: which alerts'
//! conditions hold, which are unknown (an alert then keeps its state), and flap counting.

use std::collections::VecDeque;
use std::time::Duration;

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::config::Config;
use crate::health::{ConnectionState, HealthModel, Verdict, VpnState};
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

/// Derives every alert condition from the model as of `now`. `control_unavailable` is how
/// long EC2 has been failing, with the last error, when it has been for longer than the limit.
pub fn conditions(
    config: &Config,
    model: &HealthModel,
    flaps: &FlapTracker,
    control_unavailable: Option<(Duration, String)>,
) -> Conditions {
    let mut out = Conditions::new();
    for (ci, c) in config.connections.iter().enumerate() {
        let vpn = c.name.as_str();
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        for (ti, t) in c.tunnels.iter().enumerate() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let tunnel = model.tunnel(id);
            let down_key = AlertKey::tunnel(AlertClass::TunnelDown, vpn, t.name.as_str());
            let dead_key = AlertKey::tunnel(AlertClass::DataPlaneDead, vpn, t.name.as_str());
            match &tunnel.verdict {
                Verdict::Down { reason, .. } => {
                    let dead = tunnel.control_plane.is_up() && tunnel.data_plane.is_down();
                    if !dead
                        && matches!(tunnel.control_plane, Verdict::Unknown { .. })
                        && tunnel.data_plane.is_down()
                    {
                        // AWS's view went stale: whether it still says UP is unknown, so a
                        // DataPlaneDead alert holds (and inhibits the TunnelDown below).
                        out.insert(dead_key.clone(), Condition::Unknown);
                    }
                    let key = if dead { dead_key } else { down_key };
                    let summary = if dead {
                        "AWS reports UP but pinned targets are unreachable".to_string()
                    } else {
                        short(reason)
                    };
                    out.insert(key, active(summary, reason.clone(), vpn_id.clone()));
                }
                Verdict::Unknown { .. } => {
                    out.insert(down_key, Condition::Unknown);
                    out.insert(dead_key, Condition::Unknown);
                }
                Verdict::Up { .. } => {}
            }
            if let Some(changes) = flaps.flapping(id) {
                out.insert(
                    AlertKey::tunnel(AlertClass::TunnelFlapping, vpn, t.name.as_str()),
                    active(
                        format!(
                            "changed state {changes} times in {}",
                            humantime::format_duration(flaps.window())
                        ),
                        format!(
                            "tunnel {} went up and down {changes} times within {}; now {}",
                            t.name,
                            humantime::format_duration(flaps.window()),
                            tunnel.verdict.label()
                        ),
                        vpn_id.clone(),
                    ),
                );
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
            ConnectionState::Healthy { .. } | ConnectionState::Degraded { .. } => {}
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
        VpnState::Ok { .. } | VpnState::Degraded { .. } => {}
    }
    if let Some((failing_for, error)) = control_unavailable {
        out.insert(
            AlertKey::global(AlertClass::ControlPlaneUnavailable),
            active(
                format!(
                    "EC2 API failing for {}",
                    humantime::format_duration(Duration::from_secs(failing_for.as_secs()))
                ),
                format!(
                    "DescribeVpnConnections has failed for {}; last error: {error}",
                    humantime::format_duration(Duration::from_secs(failing_for.as_secs()))
                ),
                None,
            ),
        );
    }
    out
}
