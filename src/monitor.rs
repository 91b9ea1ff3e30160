//! The monitor task: the single owner of the health model and the per-target stats. It
//! applies observations from the pingers with their time, keeps the metrics current and
//! publishes a fresh [`Snapshot`] for every reader.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, TargetScope};
use crate::health::{HealthModel, Verdict, VpnState};
use crate::metrics::Metrics;
use crate::model::{Clock, TargetId, TunnelId};
use crate::pinger::Observation;
use crate::snapshot::{Meta, Snapshot};
use crate::stats::TargetStats;

/// How often counters reach `/status` when no verdict changes (verdict changes publish at once).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How many queued observations one wake-up applies before publishing.
const BATCH: usize = 1024;

/// Owns the model; fed by pingers; read through snapshots.
pub struct Monitor {
    config: Arc<Config>,
    model: HealthModel,
    stats: Vec<TargetStats>,
    metrics: Arc<Metrics>,
    clock: Clock,
    meta: Meta,
    snapshots: watch::Sender<Arc<Snapshot>>,
    last_vpn_token: &'static str,
}

impl Monitor {
    /// Builds the monitor and the first (STARTING) snapshot.
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        clock: Clock,
        icmp_socket: &'static str,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let model = HealthModel::new(&config);
        let stats = vec![TargetStats::default(); config.targets.len()];
        let meta = Meta {
            started_at: clock.now(),
            icmp_socket,
        };
        let first = Snapshot::build(&config, &model, &stats, meta, clock.now());
        let (snapshots, rx) = watch::channel(Arc::new(first));
        (
            Self {
                config,
                model,
                stats,
                metrics,
                clock,
                meta,
                snapshots,
                last_vpn_token: VpnState::Starting.token(),
            },
            rx,
        )
    }

    /// Runs until cancelled or until every pinger is gone.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                received = observations.recv() => {
                    let Some(first) = received else { break };
                    let mut changed = self.apply(first);
                    for _ in 0..BATCH {
                        match observations.try_recv() {
                            Ok(next) => changed |= self.apply(next),
                            Err(_) => break,
                        }
                    }
                    if changed {
                        self.publish();
                        dirty = false;
                    } else {
                        dirty = true;
                    }
                }
                _ = tick.tick() => {
                    if dirty {
                        self.publish();
                        dirty = false;
                    }
                }
            }
        }
    }

    /// Applies one observation; returns true when a verdict changed.
    fn apply(&mut self, observation: Observation) -> bool {
        match observation {
            Observation::Probe {
                target,
                outcome,
                at,
                ..
            } => {
                let now = self.clock.at(at);
                self.stats[target.0].record(&outcome);
                let before = self.model.target(target).verdict.clone();
                let changed = self.model.handle_probe(target, &outcome, now);
                let health = self.model.target(target);
                self.metrics
                    .record_probe(target, &outcome, health.consecutive_lost);
                if before != health.verdict {
                    self.metrics.set_target(target, &health.verdict);
                    self.log_target(target);
                }
                if changed {
                    self.after_change(target);
                }
                changed
            }
            Observation::StrayReply { .. } => {
                self.metrics.stray_reply();
                false
            }
            Observation::SocketReopened { target, ok } => {
                if ok {
                    self.metrics.socket_reopened();
                    info!(target = %self.config.targets[target.0].name, "moved to a fresh ICMP socket after consecutive timeouts");
                }
                false
            }
            Observation::ScheduleSlip { missed, .. } => {
                self.metrics.schedule_slipped(missed);
                false
            }
        }
    }

    fn log_target(&self, target: TargetId) {
        let spec = &self.config.targets[target.0];
        match &self.model.target(target).verdict {
            Verdict::Up { since } => {
                info!(target = %spec.name, address = %spec.address, state = "up", %since, "target state changed")
            }
            Verdict::Down { since, reason } => {
                info!(target = %spec.name, address = %spec.address, state = "down", %since, %reason, "target state changed")
            }
            Verdict::Unknown { reason } => {
                info!(target = %spec.name, address = %spec.address, state = "unknown", %reason, "target state changed")
            }
        }
    }

    /// Refreshes the state gauges after a verdict change and logs what changed at the top.
    fn after_change(&mut self, target: TargetId) {
        if let TargetScope::Pinned(tunnel) = self.config.targets[target.0].scope {
            self.refresh_tunnel(tunnel);
        }
        let vpn = self.model.vpn();
        self.metrics.set_vpn(vpn);
        if vpn.token() == self.last_vpn_token {
            return;
        }
        self.last_vpn_token = vpn.token();
        match vpn {
            VpnState::Critical { reason, .. } => warn!(state = "CRITICAL", %reason, "VPN state"),
            VpnState::Degraded { reason, .. } => warn!(state = "DEGRADED", %reason, "VPN state"),
            VpnState::Ok { .. } => info!(state = "OK", "VPN state"),
            VpnState::Starting => {}
        }
    }

    fn refresh_tunnel(&self, id: TunnelId) {
        let t = self.model.tunnel(id);
        self.metrics
            .set_tunnel(id, &t.verdict, &t.data_plane, &t.control_plane);
        self.metrics
            .set_connection(id.connection, self.model.connection(id.connection));
    }

    fn publish(&self) {
        let snapshot = Snapshot::build(
            &self.config,
            &self.model,
            &self.stats,
            self.meta,
            self.clock.now(),
        );
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}
