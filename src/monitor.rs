//! The monitor task: the single owner of the health model, the control-plane tracker and
//! the per-target stats. It applies observations from the pingers and the EC2 poller with
//! their time, keeps the metrics current and publishes a fresh [`Snapshot`] for readers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::alerting::Alerting;
use crate::config::{Config, TargetScope};
use crate::control::ControlPlane;
use crate::ec2::PollResult;
use crate::health::{HealthModel, ProbeOutcome, Verdict, VpnState};
use crate::metrics::Metrics;
use crate::model::{Clock, TargetId, TunnelId};
use crate::sinks::DeliveryReport;
use crate::snapshot::{Meta, Snapshot};
use crate::stats::TargetStats;

/// What the pingers and the EC2 poller tell the monitor.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// One probe finished.
    Probe {
        /// Which target.
        target: TargetId,
        /// Its sequence number.
        seq: u16,
        /// When the outcome was known.
        at: Instant,
        /// What happened.
        outcome: ProbeOutcome,
    },
    /// A reply arrived for another request than the one waited for (a late reply to an
    /// earlier, timed-out request); it is not counted as a reply.
    StrayReply {
        /// Which target.
        target: TargetId,
    },
    /// The pinger moved to a fresh socket after consecutive timeouts.
    SocketReopened {
        /// Which target.
        target: TargetId,
        /// Whether the new socket could be opened.
        ok: bool,
    },
    /// The EC2 poller finished a call.
    Ec2 {
        /// When.
        at: Instant,
        /// What came of it.
        result: PollResult,
    },
    /// A sink finished a delivery.
    Delivery(DeliveryReport),
    /// Ticks were skipped because the task fell behind its schedule.
    ScheduleSlip {
        /// Which target.
        target: TargetId,
        /// How many sends were skipped.
        missed: u64,
    },
}

/// How often counters reach `/status` when no verdict changes (verdict changes publish at once).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How many queued observations one wake-up applies before publishing.
const BATCH: usize = 1024;

/// Owns the model; fed by pingers and the poller; read through snapshots.
pub struct Monitor {
    config: Arc<Config>,
    model: HealthModel,
    control: Option<ControlPlane>,
    alerting: Alerting,
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
        alerting: Alerting,
        clock: Clock,
        icmp_socket: &'static str,
    ) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let model = HealthModel::new(&config);
        let control = config
            .aws
            .as_ref()
            .map(|aws| ControlPlane::new(&config, aws.stale_after()));
        let stats = vec![TargetStats::default(); config.targets.len()];
        let meta = Meta {
            started_at: clock.now(),
            icmp_socket,
        };
        let mut first =
            Snapshot::build(&config, &model, control.as_ref(), &stats, meta, clock.now());
        first.alerts = alerting.views(clock.now());
        let (snapshots, rx) = watch::channel(Arc::new(first));
        (
            Self {
                config,
                model,
                control,
                alerting,
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

    /// Runs until cancelled or until every sender is gone.
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
                        // Pages go out the moment a verdict changes, not at the next tick.
                        self.evaluate_alerts();
                        self.publish();
                        dirty = false;
                    } else {
                        dirty = true;
                    }
                }
                _ = tick.tick() => {
                    let now = self.clock.now();
                    let changed = self.handle_timeout(now);
                    // Timers (for, repeat, silences, retries) and time-based conditions.
                    self.evaluate_alerts();
                    if changed || dirty {
                        self.publish();
                        dirty = false;
                    }
                }
            }
        }
        self.alerting.flush(self.clock.now());
    }

    /// Applies one observation; returns true when a verdict changed.
    fn apply(&mut self, observation: Observation) -> bool {
        match observation {
            Observation::Probe {
                target,
                outcome,
                at,
                ..
            } => self.apply_probe(target, &outcome, at),
            Observation::Ec2 { at, result } => self.apply_ec2(result, at),
            Observation::Delivery(report) => {
                self.alerting.delivery_report(report, self.clock.now());
                self.alerting.dispatch(self.clock.now());
                true
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

    fn apply_probe(&mut self, target: TargetId, outcome: &ProbeOutcome, at: Instant) -> bool {
        let now = self.clock.at(at);
        self.stats[target.0].record(outcome);
        let before = self.model.target(target).verdict.clone();
        let changed = self.model.handle_probe(target, outcome, now);
        let health = self.model.target(target);
        self.metrics
            .record_probe(target, outcome, health.consecutive_lost);
        if before != health.verdict {
            self.metrics.set_target(target, &health.verdict);
            self.log_target(target);
        }
        if changed {
            if let TargetScope::Pinned(tunnel) = self.config.targets[target.0].scope {
                self.refresh_tunnel(tunnel);
            }
            self.refresh_vpn();
        }
        changed
    }

    fn apply_ec2(&mut self, result: PollResult, at: Instant) -> bool {
        let now = self.clock.at(at);
        let Some(control) = self.control.as_mut() else {
            return false;
        };
        match result {
            PollResult::Answer(readings) => {
                self.metrics.ec2_request("ok");
                self.metrics.ec2_success(now);
                for r in &readings {
                    for (ti, t) in r.tunnels.iter().enumerate() {
                        let id = TunnelId {
                            connection: r.connection,
                            tunnel: ti,
                        };
                        self.metrics.set_tunnel_aws(id, t);
                    }
                }
                let verdicts = control.handle_reading(readings, now);
                for problem in &control.status(now).problems {
                    warn!(%problem, "EC2 control plane problem");
                }
                self.metrics.set_control_plane_stale(false);
                self.apply_control_verdicts(verdicts, now)
            }
            PollResult::Failed { kind, message } => {
                self.metrics.ec2_request(kind.label());
                control.handle_error(kind, message, now);
                false
            }
        }
    }

    /// Ages the control plane; returns true when a verdict changed.
    fn handle_timeout(&mut self, now: crate::model::Timestamp) -> bool {
        let Some(control) = self.control.as_mut() else {
            return false;
        };
        self.metrics
            .set_ec2_answer_age(control.status(now).answer_age_seconds);
        match control.handle_timeout(now) {
            Some(verdicts) => {
                warn!(
                    "EC2 answers are stale (older than three poll intervals): control plane of every polled tunnel is unknown"
                );
                self.metrics.set_control_plane_stale(true);
                self.apply_control_verdicts(verdicts, now)
            }
            None => false,
        }
    }

    fn apply_control_verdicts(
        &mut self,
        verdicts: Vec<(TunnelId, Verdict)>,
        now: crate::model::Timestamp,
    ) -> bool {
        let mut changed = false;
        for (id, verdict) in verdicts {
            let before = self.model.tunnel(id).control_plane.label();
            if self.model.handle_control_plane(id, verdict, now) {
                changed = true;
            }
            let after = &self.model.tunnel(id).control_plane;
            if before != after.label() {
                let tunnel = &self.config.tunnel(id).name;
                match after {
                    Verdict::Down { reason, .. } => {
                        warn!(%tunnel, state = "down", %reason, "control plane changed")
                    }
                    Verdict::Up { .. } => info!(%tunnel, state = "up", "control plane changed"),
                    Verdict::Unknown { reason } => {
                        info!(%tunnel, state = "unknown", %reason, "control plane changed")
                    }
                }
            }
            self.refresh_tunnel(id);
        }
        if changed {
            self.refresh_vpn();
        }
        changed
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

    /// Refreshes the VPN gauge and logs when the VPN verdict changes kind.
    fn refresh_vpn(&mut self) {
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

    fn evaluate_alerts(&mut self) {
        let targets_known = self
            .config
            .targets
            .iter()
            .all(|t| !matches!(self.model.target(t.id).verdict, Verdict::Unknown { .. }));
        let control_known = self.control.as_ref().is_none_or(|c| c.has_reported());
        self.alerting.evaluate(
            &self.model,
            self.control.as_ref(),
            self.clock.now(),
            targets_known && control_known,
        );
    }

    fn publish(&self) {
        let now = self.clock.now();
        let mut snapshot = Snapshot::build(
            &self.config,
            &self.model,
            self.control.as_ref(),
            &self.stats,
            self.meta,
            now,
        );
        snapshot.alerts = self.alerting.views(now);
        snapshot.outbox_length = self.alerting.outbox_len();
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}
