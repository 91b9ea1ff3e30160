//! The decision, a pure function of the time, the tunnels' facts and `[maintenance]`:
//! for every tunnel, apply its pending maintenance now, wait (and for what), or follow a
//! replacement under way.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::maintenance::{ApplyMode, MaintenanceConfig};
use crate::types::Timestamp;

/// Whether a tunnel carries traffic well enough for another to be taken down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Up on both planes (pings and EC2) with no loss above the lossy threshold, since.
    Healthy { since: Timestamp },
    /// Not so, and why.
    Unhealthy { why: String },
}

/// Where a tunnel's replacement by the daemon stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Progress {
    /// No replacement of the daemon's under way.
    Idle,
    /// `ReplaceVpnTunnel` was asked at `since`; the tunnel is not back yet.
    Replacing { since: Timestamp },
    /// Not back up on both planes within `recovery_timeout`, or the call failed.
    Failed { since: Timestamp, why: String },
}

/// AWS's pending maintenance on a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    /// `MaintenanceAutoAppliedAfter`.
    pub auto_apply_after: Option<Timestamp>,
    /// False while the last reading predates the daemon's last call for this tunnel: what
    /// it says may be what the call already applied.
    pub fresh: bool,
}

/// One tunnel's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelFacts {
    /// Its name.
    pub name: String,
    /// Pending maintenance, if any.
    pub pending: Option<Pending>,
    /// Its health now.
    pub health: Health,
    /// The daemon's replacement of it.
    pub progress: Progress,
    /// Why the daemon cannot call `ReplaceVpnTunnel` for it (no connection id or outside
    /// IP), if it cannot.
    pub not_callable: Option<String>,
}

/// One connection's facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionFacts {
    /// Its name.
    pub name: String,
    /// Its tunnels.
    pub tunnels: Vec<TunnelFacts>,
    /// The alerts firing for it or its tunnels (other than the maintenance ones).
    pub firing: Vec<String>,
}

/// What stops a pending replacement now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// `apply = "never"`.
    ApplyNever,
    /// Outside every window.
    OutsideWindow { next_window: Option<Timestamp> },
    /// A tunnel that must carry the traffic is not healthy (long enough).
    NotHealthy { tunnel: String, why: String },
    /// Another tunnel of the VGW is being replaced (`max_concurrent`, one per connection).
    OtherReplacing { tunnel: String },
    /// Alerts fire for the connection.
    AlertsFiring { alerts: Vec<String> },
    /// The daemon cannot call for this tunnel.
    NotCallable { why: String },
    /// AWS has not answered since the daemon's last call for this tunnel.
    AwaitingAws,
}

impl Blocker {
    /// Returns a bounded label: `apply_never`, `outside_window`, `not_healthy`,
    /// `other_replacing`, `alerts_firing`, `not_callable` or `awaiting_aws`.
    pub fn kind(&self) -> &'static str {
        match self {
            Blocker::ApplyNever => "apply_never",
            Blocker::OutsideWindow { .. } => "outside_window",
            Blocker::NotHealthy { .. } => "not_healthy",
            Blocker::OtherReplacing { .. } => "other_replacing",
            Blocker::AlertsFiring { .. } => "alerts_firing",
            Blocker::NotCallable { .. } => "not_callable",
            Blocker::AwaitingAws => "awaiting_aws",
        }
    }
}

/// Serialized as its kind and its text, for `/status` readers.
impl Serialize for Blocker {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Blocker", 2)?;
        out.serialize_field("kind", self.kind())?;
        out.serialize_field("text", &self.to_string())?;
        out.end()
    }
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::ApplyNever => f.write_str("[maintenance] apply is \"never\""),
            Blocker::OutsideWindow {
                next_window: Some(t),
            } => {
                write!(f, "outside the maintenance windows (next at {t})")
            }
            Blocker::OutsideWindow { next_window: None } => {
                f.write_str("outside the maintenance windows (none configured)")
            }
            Blocker::NotHealthy { tunnel, why } => write!(f, "{tunnel} {why}"),
            Blocker::OtherReplacing { tunnel } => write!(f, "{tunnel} is being replaced"),
            Blocker::AlertsFiring { alerts } => {
                write!(f, "alerts fire for the connection: {}", alerts.join(", "))
            }
            Blocker::NotCallable { why } => f.write_str(why),
            Blocker::AwaitingAws => {
                f.write_str("AWS has not been asked again since the last replacement")
            }
        }
    }
}

/// What to do about one tunnel now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing pending, nothing under way.
    Idle,
    /// Call `ReplaceVpnTunnel` now (`when-safe`).
    Apply,
    /// It would be applied now (`dry-run`): nothing is called.
    WouldApply,
    /// Pending, and not now.
    Wait {
        blocked_by: Vec<Blocker>,
        next_window: Option<Timestamp>,
    },
    /// A replacement of the daemon's is under way or failed: see its progress.
    InProgress,
}

/// Decides, for every tunnel (by connection, in config order), what to do now.
pub fn decide(
    now: Timestamp,
    config: &MaintenanceConfig,
    connections: &[ConnectionFacts],
) -> Vec<Vec<Decision>> {
    let open = config.windows.open_until(now).is_some();
    let next_window = config.windows.next_open(now);
    // Tunnels taken: those under way, then those chosen in this round, in config order.
    let mut taken: Vec<(usize, String)> = connections
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| {
            c.tunnels
                .iter()
                .filter(|t| t.progress != Progress::Idle)
                .map(move |t| (ci, t.name.clone()))
        })
        .collect();
    let mut out = Vec::with_capacity(connections.len());
    for (ci, c) in connections.iter().enumerate() {
        let mut row = Vec::with_capacity(c.tunnels.len());
        for t in &c.tunnels {
            if t.progress != Progress::Idle {
                row.push(Decision::InProgress);
                continue;
            }
            let Some(pending) = t.pending else {
                row.push(Decision::Idle);
                continue;
            };
            let mut blocked_by = Vec::new();
            if config.apply == ApplyMode::Never {
                blocked_by.push(Blocker::ApplyNever);
            }
            if !open {
                blocked_by.push(Blocker::OutsideWindow { next_window });
            }
            if let Some(why) = &t.not_callable {
                blocked_by.push(Blocker::NotCallable { why: why.clone() });
            }
            if !pending.fresh {
                blocked_by.push(Blocker::AwaitingAws);
            }
            blocked_by.extend(carriers_blockers(now, config, connections, ci, &t.name));
            if !c.firing.is_empty() {
                blocked_by.push(Blocker::AlertsFiring {
                    alerts: c.firing.clone(),
                });
            }
            let busy: Vec<&(usize, String)> = taken
                .iter()
                .filter(|(tci, _)| *tci == ci)
                .chain(
                    (taken.len() >= config.max_concurrent as usize)
                        .then_some(taken.iter())
                        .into_iter()
                        .flatten(),
                )
                .collect();
            if let Some((_, other)) = busy.first() {
                blocked_by.push(Blocker::OtherReplacing {
                    tunnel: other.clone(),
                });
            }
            if blocked_by.is_empty() {
                taken.push((ci, t.name.clone()));
                row.push(match config.apply {
                    ApplyMode::WhenSafe => Decision::Apply,
                    ApplyMode::DryRun | ApplyMode::Never => Decision::WouldApply,
                });
            } else {
                row.push(Decision::Wait {
                    blocked_by,
                    next_window,
                });
            }
        }
        out.push(row);
    }
    out
}

/// What stops the tunnels that carry the traffic meanwhile from doing so: the sibling
/// tunnels of the connection, and at least one tunnel of every other connection, each
/// healthy for `sibling_healthy_for`.
fn carriers_blockers(
    now: Timestamp,
    config: &MaintenanceConfig,
    connections: &[ConnectionFacts],
    ci: usize,
    name: &str,
) -> Vec<Blocker> {
    let need = config.sibling_healthy_for;
    let judge = |t: &TunnelFacts| -> Result<(), String> {
        match &t.health {
            Health::Healthy { since } if now.since(*since) >= need => Ok(()),
            Health::Healthy { since } => Err(format!(
                "has been healthy for {} only, {} needed",
                short(now.since(*since)),
                short(need)
            )),
            Health::Unhealthy { why } => Err(why.clone()),
        }
    };
    let mut out = Vec::new();
    for t in connections[ci].tunnels.iter().filter(|t| t.name != name) {
        if let Err(why) = judge(t) {
            out.push(Blocker::NotHealthy {
                tunnel: t.name.clone(),
                why,
            });
        }
    }
    for (oi, other) in connections.iter().enumerate() {
        if oi == ci || other.tunnels.is_empty() {
            continue;
        }
        let verdicts: Vec<Result<(), String>> = other.tunnels.iter().map(judge).collect();
        if verdicts.iter().all(Result::is_err) {
            let why = other
                .tunnels
                .iter()
                .zip(&verdicts)
                .map(|(t, v)| format!("{} {}", t.name, v.clone().err().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("; ");
            out.push(Blocker::NotHealthy {
                tunnel: format!("connection {}", other.name),
                why: format!("has no healthy tunnel ({why})"),
            });
        }
    }
    out
}

/// A duration to the second, as a person writes it.
fn short(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
#[path = "decide/tests.rs"]
mod tests;
