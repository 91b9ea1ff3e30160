//! What the core remembers between maintenance decisions, per tunnel: the replacement of
//! the daemon's under way (and its last result), when the tunnel was last lossy, and the
//! last decision (so that only changes are told). It builds the decision's facts from the
//! core's stores and turns the decision into what the core must do.

use serde::Serialize;

use crate::config::maintenance::ApplyMode;
use crate::config::Config;
use crate::health::control_plane::ControlPlane;
use crate::health::{HealthModel, Verdict};
use crate::history::brownout::loss_level;
use crate::history::brownout::Level;
use crate::history::History;
use crate::maintenance::decide::{
    decide, ConnectionFacts, Decision, Health, Pending, Progress, TunnelFacts,
};
use crate::types::{AlertClass, Timestamp, TunnelId};

/// How the daemon's last replacement of a tunnel ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Back up on both planes at `at`.
    Recovered { at: Timestamp },
    /// Not back within `recovery_timeout`, or the call failed.
    Failed { at: Timestamp, why: String },
}

/// Everything shown of one tunnel's maintenance (`/status`, the NOC page).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelPlan {
    /// Whether AWS announced maintenance for it.
    pub pending: bool,
    /// `MaintenanceAutoAppliedAfter`.
    pub auto_apply_after: Option<Timestamp>,
    /// What the daemon decided last.
    #[serde(flatten)]
    pub decision: Decision,
    /// The daemon's replacement of it.
    pub progress: Progress,
    /// When the daemon last asked AWS to replace it.
    pub applied_at: Option<Timestamp>,
    /// How that ended, once it has.
    pub outcome: Option<Outcome>,
    /// Whether AWS waits for the customer gateway to start IKE after a replacement
    /// (`StartupAction=add`).
    pub startup_add: bool,
}

impl TunnelPlan {
    fn new() -> Self {
        Self {
            pending: false,
            auto_apply_after: None,
            decision: Decision::Idle,
            progress: Progress::Idle,
            applied_at: None,
            outcome: None,
            startup_add: false,
        }
    }
}

/// What a decision asks of the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Call `ReplaceVpnTunnel` for the tunnel.
    Replace(TunnelId),
    /// A tunnel's plan changed (worth a log line); `ended` when a replacement's outcome
    /// is new with it.
    Changed { tunnel: TunnelId, ended: bool },
}

/// The per-tunnel records, indexed like the config's connections and tunnels.
#[derive(Clone, Debug)]
pub struct MaintenanceTracker {
    plans: Vec<Vec<TunnelPlan>>,
    last_lossy: Vec<Vec<Option<Timestamp>>>,
}

/// The alert classes that do not stop a replacement: maintenance's own.
const NOT_BLOCKING: [AlertClass; 4] = [
    AlertClass::TunnelMaintenancePending,
    AlertClass::MaintenanceBlocked,
    AlertClass::MaintenanceReplacing,
    AlertClass::TunnelDownAfterMaintenance,
];

/// The core's stores the facts are read from.
pub struct Stores<'a> {
    pub config: &'a Config,
    pub model: &'a HealthModel,
    pub history: &'a History,
    pub control: Option<&'a ControlPlane>,
    /// The firing alerts: class and connection (`None`: VPN-wide).
    pub alerts: &'a [(AlertClass, Option<String>)],
}

impl MaintenanceTracker {
    /// Starts with nothing under way.
    pub fn new(config: &Config) -> Self {
        Self {
            plans: config
                .connections
                .iter()
                .map(|c| c.tunnels.iter().map(|_| TunnelPlan::new()).collect())
                .collect(),
            last_lossy: config
                .connections
                .iter()
                .map(|c| vec![None; c.tunnels.len()])
                .collect(),
        }
    }

    /// Takes over what an older tracker knew of the tunnels a reloaded config keeps
    /// (`(new, old)` pairs).
    pub fn adopt(&mut self, old: &MaintenanceTracker, tunnels: &[(TunnelId, TunnelId)]) {
        for &(new, was) in tunnels {
            if let Some(plan) = old.plan(was) {
                self.plans[new.connection][new.tunnel] = plan.clone();
                self.last_lossy[new.connection][new.tunnel] =
                    old.last_lossy[was.connection][was.tunnel];
            }
        }
    }

    /// Returns a tunnel's plan.
    pub fn plan(&self, id: TunnelId) -> Option<&TunnelPlan> {
        self.plans.get(id.connection)?.get(id.tunnel)
    }

    /// Returns every tunnel's plan, by connection.
    pub fn plans(&self) -> &[Vec<TunnelPlan>] {
        &self.plans
    }

    /// Takes the answer to a `ReplaceVpnTunnel` call: an error ends the replacement as
    /// failed (nothing was replaced; it may be tried again after `recovery_timeout`).
    pub fn call_answered(&mut self, id: TunnelId, error: Option<String>, at: Timestamp) {
        let Some(plan) = self
            .plans
            .get_mut(id.connection)
            .and_then(|c| c.get_mut(id.tunnel))
        else {
            return;
        };
        if let (Some(why), Progress::Replacing { .. }) = (error, &plan.progress) {
            let why = format!("ReplaceVpnTunnel failed: {why}");
            plan.progress = Progress::Failed {
                since: at,
                why: why.clone(),
            };
            plan.outcome = Some(Outcome::Failed { at, why });
        }
    }

    /// Decides anew at `now`: follows the replacements under way, then decides for every
    /// tunnel; returns what the core must do.
    pub fn update(&mut self, now: Timestamp, stores: &Stores<'_>) -> Vec<Step> {
        let config = stores.config;
        let mut steps = Vec::new();
        for id in config.tunnel_ids() {
            let before = self.plans[id.connection][id.tunnel].clone();
            self.follow(id, now, stores);
            self.note_loss(id, now, stores);
            let plan = &mut self.plans[id.connection][id.tunnel];
            let reading = stores.control.and_then(|c| c.maintenance(id));
            let pending = reading.filter(|m| m.reading.pending_text().is_some());
            plan.pending = pending.is_some();
            plan.auto_apply_after = pending.and_then(|m| m.reading.auto_apply_after);
            plan.startup_add = stores
                .control
                .and_then(|c| c.tunnel_reading(id))
                .and_then(|r| r.options.as_ref())
                .is_none_or(|o| o.startup_add());
            if *plan != before {
                let ended = plan.outcome.is_some() && plan.outcome != before.outcome;
                steps.push(Step::Changed { tunnel: id, ended });
            }
        }
        let facts = self.facts(now, stores);
        let decisions = decide(now, &config.maintenance, &facts);
        for id in config.tunnel_ids() {
            let decision = decisions[id.connection][id.tunnel].clone();
            let plan = &mut self.plans[id.connection][id.tunnel];
            if decision == Decision::Apply {
                plan.progress = Progress::Replacing { since: now };
                plan.applied_at = Some(now);
                plan.outcome = None;
                steps.push(Step::Replace(id));
            }
            if plan.decision != decision {
                plan.decision = decision;
                if !steps
                    .iter()
                    .any(|s| matches!(s, Step::Changed { tunnel, .. } if *tunnel == id))
                {
                    steps.push(Step::Changed {
                        tunnel: id,
                        ended: false,
                    });
                }
            }
        }
        steps
    }

    /// Moves a replacement under way on: recovered once the tunnel is back up on both
    /// planes after the call, failed when not within `recovery_timeout`.
    fn follow(&mut self, id: TunnelId, now: Timestamp, stores: &Stores<'_>) {
        let plan = &mut self.plans[id.connection][id.tunnel];
        let Some(started) = plan.applied_at else {
            return;
        };
        let tunnel = stores.model.tunnel(id);
        let up_after = |v: &Verdict| matches!(v, Verdict::Up { since } if *since >= started);
        let is_up = |v: &Verdict| matches!(v, Verdict::Up { .. });
        // AWS's own word that the replacement is done, asked after the call.
        let aws_done = stores
            .control
            .and_then(|c| c.maintenance(id))
            .is_some_and(|m| {
                m.checked_at > started
                    && m.reading.pending_text().is_none()
                    && m.reading.last_applied.is_some_and(|a| a >= started)
            });
        // Back: up on both planes now, and EC2 saw it come up after the call (its
        // telemetry moves when the new endpoint's IKE is up) or AWS says the maintenance
        // is applied. The pings need not have failed: AWS may replace an endpoint while
        // the VGW routes through the other tunnel.
        let back = is_up(&tunnel.data_plane)
            && is_up(&tunnel.control_plane)
            && (up_after(&tunnel.control_plane) || aws_done);
        let timeout = stores.config.maintenance.recovery_timeout;
        match plan.progress.clone() {
            Progress::Idle => {}
            Progress::Replacing { since } => {
                if back {
                    plan.progress = Progress::Idle;
                    plan.outcome = Some(Outcome::Recovered { at: now });
                } else if now.since(since) >= timeout {
                    let why = format!(
                        "not back up on both planes {} after ReplaceVpnTunnel",
                        humantime::format_duration(timeout)
                    );
                    plan.progress = Progress::Failed {
                        since: now,
                        why: why.clone(),
                    };
                    plan.outcome = Some(Outcome::Failed { at: now, why });
                }
            }
            Progress::Failed { since, .. } => {
                let call_failed = !matches!(plan.outcome, Some(Outcome::Failed { ref why, .. }) if why.starts_with("not back"));
                if back && !call_failed {
                    plan.progress = Progress::Idle;
                    plan.outcome = Some(Outcome::Recovered { at: now });
                } else if call_failed && now.since(since) >= timeout {
                    // Nothing was replaced: the tunnel may be tried again.
                    plan.progress = Progress::Idle;
                }
            }
        }
    }

    fn note_loss(&mut self, id: TunnelId, now: Timestamp, stores: &Stores<'_>) {
        let lossy = &stores.config.alerts.lossy;
        let above = stores
            .history
            .window(id)
            .and_then(|w| w.loss(now, lossy.window))
            .is_some_and(|l| loss_level(l.ratio(), lossy) == Level::Above);
        if above {
            self.last_lossy[id.connection][id.tunnel] = Some(now);
        }
    }

    fn facts(&self, now: Timestamp, stores: &Stores<'_>) -> Vec<ConnectionFacts> {
        let config = stores.config;
        let vpn_wide: Vec<String> = firing(stores.alerts, None);
        config
            .connections
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let mut alerts = vpn_wide.clone();
                alerts.extend(firing(stores.alerts, Some(c.name.as_str())));
                alerts.sort();
                alerts.dedup();
                ConnectionFacts {
                    name: c.name.to_string(),
                    firing: alerts,
                    tunnels: c
                        .tunnels
                        .iter()
                        .enumerate()
                        .map(|(ti, t)| {
                            let id = TunnelId {
                                connection: ci,
                                tunnel: ti,
                            };
                            let plan = &self.plans[ci][ti];
                            let reading = stores.control.and_then(|cp| cp.maintenance(id));
                            TunnelFacts {
                                name: t.name.to_string(),
                                pending: reading
                                    .filter(|m| m.reading.pending_text().is_some())
                                    .map(|m| Pending {
                                        auto_apply_after: m.reading.auto_apply_after,
                                        fresh: plan.applied_at.is_none_or(|a| m.checked_at > a),
                                    }),
                                health: self.health(id, now, stores),
                                progress: plan.progress.clone(),
                                not_callable: match (&c.id, t.outside_ip) {
                                    (None, _) => Some(format!("connection {} has no id", c.name)),
                                    (_, None) => {
                                        Some(format!("tunnel {} has no outside_ip", t.name))
                                    }
                                    (Some(_), Some(_)) => None,
                                },
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn health(&self, id: TunnelId, _now: Timestamp, stores: &Stores<'_>) -> Health {
        let t = stores.model.tunnel(id);
        let since = |plane: &str, v: &Verdict| match v {
            Verdict::Up { since } => Ok(*since),
            Verdict::Down { .. } => Err(format!("is down by {plane}")),
            Verdict::Unknown { .. } => Err(format!("is not known up by {plane}")),
        };
        match (
            since("its pings", &t.data_plane),
            since("EC2", &t.control_plane),
        ) {
            (Ok(a), Ok(b)) => {
                let lossy = self.last_lossy[id.connection][id.tunnel];
                Health::Healthy {
                    since: a.max(b).max(lossy.unwrap_or(a)),
                }
            }
            // A plane that says down explains more than one that does not know.
            (Err(a), Err(b)) if b.contains("down") && !a.contains("down") => {
                Health::Unhealthy { why: b }
            }
            (Err(why), _) | (_, Err(why)) => Health::Unhealthy { why },
        }
    }

    /// Returns whether the daemon may call for anything at all (`when-safe`).
    pub fn calls(config: &Config) -> bool {
        config.maintenance.apply == ApplyMode::WhenSafe
    }
}

/// The firing alerts of a connection (`None`: of the whole VPN) that stop a replacement.
fn firing(alerts: &[(AlertClass, Option<String>)], vpn: Option<&str>) -> Vec<String> {
    alerts
        .iter()
        .filter(|(class, on)| on.as_deref() == vpn && !NOT_BLOCKING.contains(class))
        .map(|(class, _)| class.name().to_string())
        .collect()
}
