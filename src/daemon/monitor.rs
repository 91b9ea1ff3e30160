//! The monitor task: the single owner of the health model, the control-plane tracker and
//! the per-target stats. It applies observations from the pingers and the EC2 poller with
//! their time, keeps the metrics current and publishes a fresh [`Snapshot`] for readers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::alert::router::Alerting;
use crate::clock::Clock;
use crate::config::{Config, TargetScope};
use crate::daemon::systemd::Notifier;
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::PathMtus;
use crate::health::{HealthModel, Verdict, VpnState};
use crate::history::{History, SharedHistory};
use crate::liveness::Heartbeat;
use crate::messages::PollResult;
use crate::messages::{Observation, ProbeOutcome};
use crate::metrics::Metrics;
use crate::probe::stats::TargetStats;
use crate::snapshot::{Meta, Snapshot};
use crate::types::{TargetId, TunnelId};

/// How often counters reach `/status` when no verdict changes (verdict changes publish at once).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// How long a stopping monitor waits for the sinks' last delivery reports.
const DRAIN_REPORTS: Duration = Duration::from_secs(2);
/// How many queued observations one wake-up applies before publishing.
const BATCH: usize = 1024;

/// What survives a config reload: the model and the stats, to be adopted by the next
/// monitor for every target and tunnel that is still configured.
pub struct Carry {
    /// The config they were built for.
    pub config: Arc<Config>,
    pub model: HealthModel,
    /// Per-target stats, indexed like `config.targets`.
    pub stats: Vec<TargetStats>,
    /// What EC2 was doing (answer age, failure streak), if polled.
    pub control: Option<ControlPlane>,
    /// The last STATUS= line, so that a reload does not log the VPN state again.
    pub last_status: String,
}

/// How the monitor tells the outside world about itself.
pub struct Hooks {
    /// systemd notifications (STATUS=).
    pub notifier: Arc<Notifier>,
    /// Beats while every target has a recent probe result: the pingers make progress.
    pub pingers: Heartbeat,
    /// Beats on every tick: the alert loop makes progress.
    pub alert_loop: Heartbeat,
    /// Set once every target has reported its first probe.
    pub first_round: watch::Sender<bool>,
}

/// Everything a monitor is built from.
pub struct MonitorSetup {
    pub config: Arc<Config>,
    /// This generation's metrics.
    pub metrics: Arc<Metrics>,
    /// Alerting, with its state.
    pub alerting: Alerting,
    pub clock: Clock,
    /// Start time and socket type.
    pub meta: Meta,
    /// Where snapshots go (shared by every generation).
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    /// The previous generation's model and stats, after a reload.
    pub carry: Option<Carry>,
    /// Notifications and heartbeats.
    pub hooks: Hooks,
    /// The latency history (shared by every generation; reshaped to this config).
    pub history: SharedHistory,
}

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
    hooks: Hooks,
    last_status: String,
    history: SharedHistory,
    /// Each tunnel's last path-MTU measurement (measured again within an interval after
    /// a reload, so not carried).
    path_mtu: PathMtus,
}

impl Monitor {
    /// Builds the monitor, adopting what a previous generation knew, and publishes a
    /// first snapshot.
    pub fn new(setup: MonitorSetup) -> Self {
        let MonitorSetup {
            config,
            metrics,
            alerting,
            clock,
            meta,
            snapshots,
            carry,
            hooks,
            history,
        } = setup;
        lock(&history).reshape(&config);
        let now = clock.now();
        let mut model = HealthModel::new(&config);
        let mut stats = vec![TargetStats::default(); config.targets.len()];
        let mut control = config
            .aws
            .as_ref()
            .map(|aws| ControlPlane::new(&config, aws.stale_after()));
        let last_status = carry
            .as_ref()
            .map(|c| c.last_status.clone())
            .unwrap_or_default();
        if let Some(carry) = carry {
            model.adopt(&carry.model, &carry.config, &config, now);
            for (new, old) in crate::config::target_mapping(&carry.config, &config) {
                stats[new] = carry.stats[old].clone();
            }
            if let (Some(new), Some(old)) = (control.as_mut(), carry.control.as_ref()) {
                new.adopt(old, &config);
            }
        }
        let monitor = Self {
            path_mtu: PathMtus::new(&config),
            config,
            model,
            control,
            alerting,
            stats,
            metrics,
            clock,
            meta,
            snapshots,
            hooks,
            last_status,
            history,
        };
        for t in &monitor.config.targets {
            let stats = &monitor.stats[t.id.0];
            if stats.summary_sent() > 0 {
                monitor.metrics.seed(t.id, &stats.summary());
            }
        }
        monitor.refresh_all_gauges();
        monitor.publish();
        monitor
    }

    /// Runs until cancelled or until every sender is gone; hands back what a reload keeps.
    pub async fn run(
        mut self,
        mut observations: mpsc::Receiver<Observation>,
        cancel: CancellationToken,
    ) -> (Carry, Alerting) {
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
                    self.hooks.alert_loop.beat();
                    let now = self.clock.now();
                    // The pingers make progress when every one of them does, not when any
                    // result arrives: one stuck pinger must starve the watchdog.
                    if self.model.every_target_reported_since(now) {
                        self.hooks.pingers.beat();
                    }
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
        // Reports of deliveries that finished (or finish now, within their grace) must
        // reach the outbox before it is handed on, or the next generation sends them again.
        // Every sender goes when its task ends, which closes the channel.
        let drain_until = Instant::now() + DRAIN_REPORTS;
        loop {
            let next = tokio::time::timeout_at(drain_until, observations.recv()).await;
            match next {
                Ok(Some(Observation::Delivery(report))) => {
                    self.alerting.delivery_report(report, self.clock.now());
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.alerting.flush(self.clock.now());
        let carry = Carry {
            config: self.config,
            model: self.model,
            stats: self.stats,
            control: self.control,
            last_status: self.last_status,
        };
        (carry, self.alerting)
    }

    /// Applies one observation; returns true when a verdict changed.
    fn apply(&mut self, observation: Observation) -> bool {
        match observation {
            Observation::Probe {
                target,
                outcome,
                at,
                send_delay,
                ..
            } => {
                self.metrics.record_send_delay(send_delay);
                self.apply_probe(target, &outcome, at)
            }
            Observation::Ec2 { at, result } => self.apply_ec2(result, at),
            Observation::Ec2NextCall { at } => {
                if let Some(control) = self.control.as_mut() {
                    control.handle_next_call(self.clock.at(at));
                }
                false
            }
            Observation::Maintenance { at, tunnel, result } => {
                self.apply_maintenance(tunnel, result, at)
            }
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
            Observation::PathMtu {
                tunnel,
                at,
                reading,
            } => {
                self.metrics.set_path_mtu(tunnel, reading.as_ref());
                let before = self.path_mtu.verdict(tunnel);
                self.path_mtu.handle(tunnel, reading, self.clock.at(at));
                // A snapshot per measurement costs a walk over every target: only a new
                // verdict (a black hole found or gone) is worth one before the next tick.
                before != self.path_mtu.verdict(tunnel)
            }
            Observation::ScheduleSlip { missed, .. } => {
                self.metrics.schedule_slipped(missed);
                false
            }
            Observation::LateReply {
                target, at, rtt, ..
            } => self.apply_late_reply(target, rtt, at),
            Observation::TimeoutInForce { target, timeout } => {
                if let Some(stats) = self.stats.get_mut(target.0) {
                    stats.set_timeout(timeout);
                }
                false
            }
        }
    }

    /// A reply after the adaptive timeout but within the configured one: the request was
    /// late, not lost. The stats re-count it as answered and the model takes it as a reply
    /// (the loss streak ends); the metrics' counters, which never go down, keep the timeout.
    fn apply_late_reply(&mut self, target: TargetId, rtt: Duration, at: Instant) -> bool {
        let Some(stats) = self.stats.get_mut(target.0) else {
            return false;
        };
        stats.record_late(rtt);
        let now = self.clock.at(at);
        let before = self.model.target(target).verdict.clone();
        let changed = self
            .model
            .handle_probe(target, &ProbeOutcome::Reply { rtt }, now);
        {
            let mut history = lock(&self.history);
            history.record_late(target, rtt, now);
            history.note_target(target, self.model.target(target).verdict.label(), now);
        }
        self.after_target_change(target, &before, changed)
    }

    fn apply_probe(&mut self, target: TargetId, outcome: &ProbeOutcome, at: Instant) -> bool {
        let now = self.clock.at(at);
        let first = self.stats[target.0].summary_sent() == 0;
        self.stats[target.0].record(outcome);
        let before = self.model.target(target).verdict.clone();
        let changed = self.model.handle_probe(target, outcome, now);
        let health = self.model.target(target);
        {
            let mut history = lock(&self.history);
            history.record(target, outcome, now);
            history.note_target(target, health.verdict.label(), now);
        }
        self.metrics
            .record_probe(target, outcome, health.consecutive_lost);
        let changed = self.after_target_change(target, &before, changed);
        // Ready only once the verdict this round makes is in place (systemd hears STATUS=
        // before READY=1).
        if first
            && !*self.hooks.first_round.borrow()
            && self.stats.iter().all(|s| s.summary_sent() > 0)
        {
            self.hooks.first_round.send_replace(true);
        }
        changed
    }

    /// Logs, sets gauges and refreshes the tunnel and VPN views after a target's result.
    fn after_target_change(&mut self, target: TargetId, before: &Verdict, changed: bool) -> bool {
        crate::daemon::failover_report::report(&mut self.model, &self.config, &self.metrics);
        let health = self.model.target(target);
        // A reworded reason is not a change: log and set gauges only when the kind moves.
        if before.label() != health.verdict.label() {
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
                let before = control.problems().to_vec();
                let verdicts = control.handle_reading(readings, now);
                // Logged when they appear and when they go, not on every answer.
                for problem in control.problems().iter().filter(|p| !before.contains(p)) {
                    warn!(%problem, "EC2 control plane problem");
                }
                for problem in before.iter().filter(|p| !control.problems().contains(p)) {
                    info!(%problem, "EC2 control plane problem gone");
                }
                self.metrics.set_control_plane(control);
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

    /// Takes a maintenance check of one tunnel; returns true when what AWS says changed
    /// (alerts are then evaluated at once).
    fn apply_maintenance(
        &mut self,
        tunnel: TunnelId,
        result: crate::messages::MaintenanceResult,
        at: Instant,
    ) -> bool {
        let now = self.clock.at(at);
        let Some(control) = self.control.as_mut() else {
            return false;
        };
        self.metrics.ec2_maintenance_request(&result);
        let before = control.maintenance(tunnel).map(|m| m.reading.clone());
        control.handle_maintenance(tunnel, result, now);
        self.metrics.set_control_plane(control);
        let after = control.maintenance(tunnel).map(|m| &m.reading);
        before.as_ref() != after
    }

    /// Ages the targets' results and the control plane; returns true when a verdict changed.
    fn handle_timeout(&mut self, now: crate::types::Timestamp) -> bool {
        let silent_changed = self.handle_silent_targets(now);
        self.handle_control_timeout(now) | silent_changed
    }

    /// Makes targets whose pinger went quiet unknown, loudly.
    fn handle_silent_targets(&mut self, now: crate::types::Timestamp) -> bool {
        let silent = self.model.handle_timeout(now);
        for id in &silent {
            let t = &self.config.targets[id.0];
            warn!(target = %t.name, address = %t.address, "no probe result for three intervals: its verdict is unknown until results come again");
            lock(&self.history).note_target(t.id, "unknown", now);
            self.metrics
                .set_target(t.id, &self.model.target(t.id).verdict);
            if let TargetScope::Pinned(tunnel) = t.scope {
                self.refresh_tunnel(tunnel);
            }
        }
        if silent.is_empty() {
            return false;
        }
        self.refresh_vpn();
        true
    }

    /// Ages the control plane; returns true when a verdict changed.
    fn handle_control_timeout(&mut self, now: crate::types::Timestamp) -> bool {
        let Some(control) = self.control.as_mut() else {
            return false;
        };
        self.metrics
            .set_ec2_answer_age(control.status(now).answer_age_seconds);
        match control.handle_timeout(now) {
            Some(verdicts) => {
                warn!(
                    "EC2 answers are stale (the answers due within three poll intervals did not come): control plane of every polled tunnel is unknown"
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
        now: crate::types::Timestamp,
    ) -> bool {
        let mut changed = false;
        for (id, verdict) in verdicts {
            let before = self.model.tunnel(id).control_plane.label();
            if self.model.handle_control_plane(id, verdict, now) {
                changed = true;
            }
            let after = &self.model.tunnel(id).control_plane;
            if before != after.label() {
                let spec = self.config.tunnel(id);
                let tunnel = &spec.name;
                let outside_ip = spec
                    .outside_ip
                    .as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string);
                let vpn_id = self.config.connections[id.connection]
                    .id
                    .as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string);
                match after {
                    Verdict::Down { reason, .. } => {
                        warn!(%tunnel, %vpn_id, %outside_ip, state = "down", %reason, "control plane changed")
                    }
                    Verdict::Up { .. } => {
                        info!(%tunnel, %vpn_id, %outside_ip, state = "up", "control plane changed")
                    }
                    Verdict::Unknown { reason } => {
                        info!(%tunnel, %vpn_id, %outside_ip, state = "unknown", %reason, "control plane changed")
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
        // Which tunnel the target rides: the first thing a reader of the log wants.
        let tunnel = match spec.scope {
            crate::config::TargetScope::Pinned(id) => self.config.tunnel(id).name.to_string(),
            crate::config::TargetScope::Shared => "shared".to_string(),
        };
        match &self.model.target(target).verdict {
            Verdict::Up { since } => {
                info!(%tunnel, target = %spec.name, address = %spec.address, state = "up", %since, "target state changed")
            }
            Verdict::Down { since, reason } => {
                info!(%tunnel, target = %spec.name, address = %spec.address, state = "down", %since, %reason, "target state changed")
            }
            Verdict::Unknown { reason } => {
                info!(%tunnel, target = %spec.name, address = %spec.address, state = "unknown", %reason, "target state changed")
            }
        }
    }

    /// Refreshes the VPN gauge and logs when the VPN verdict changes kind.
    fn refresh_vpn(&mut self) {
        let vpn = self.model.vpn();
        self.metrics.set_vpn(vpn);
        // systemd's STATUS= line, e.g. "OK: 4/4 tunnels up".
        let tunnels: Vec<&Verdict> = self
            .config
            .tunnel_ids()
            .map(|id| &self.model.tunnel(id).verdict)
            .collect();
        let up = tunnels.iter().filter(|v| v.is_up()).count();
        let status = format!("{}: {up}/{} tunnels up", vpn.token(), tunnels.len());
        if status == self.last_status {
            return;
        }
        let token_changed = !self.last_status.starts_with(&format!("{}:", vpn.token()));
        self.last_status = status;
        self.hooks
            .notifier
            .notify(&format!("STATUS={}", self.last_status));
        if !token_changed {
            return;
        }
        match vpn {
            VpnState::Critical { reason, .. } => warn!(state = "CRITICAL", %reason, "VPN state"),
            VpnState::Degraded { reason, .. } => warn!(state = "DEGRADED", %reason, "VPN state"),
            VpnState::Ok { .. } => info!(state = "OK", "VPN state"),
            VpnState::Starting => {}
        }
    }

    /// Sets every state gauge from the model (at start, and after a reload).
    fn refresh_all_gauges(&self) {
        for id in self.config.tunnel_ids() {
            self.refresh_tunnel(id);
        }
        for t in &self.config.targets {
            self.metrics
                .set_target(t.id, &self.model.target(t.id).verdict);
        }
        self.metrics.set_vpn(self.model.vpn());
    }

    fn refresh_tunnel(&self, id: TunnelId) {
        let t = self.model.tunnel(id);
        // Every path that can change a tunnel's verdict comes here: the smoke chart's marks.
        lock(&self.history).note_tunnel(id, t.verdict.label(), self.clock.now());
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
        // Restored alerts wait for a *good* EC2 answer where EC2 is polled at all: a failed
        // first call says nothing about the tunnels.
        let polled = self.config.connections.iter().any(|c| c.id.is_some());
        let control_known = !polled || self.control.as_ref().is_none_or(|c| c.has_succeeded());
        self.alerting.evaluate(
            &self.model,
            self.control.as_ref(),
            &self.path_mtu,
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
        for id in self.config.tunnel_ids() {
            snapshot.connections[id.connection].tunnels[id.tunnel].path_mtu =
                self.path_mtu.get(id).cloned();
        }
        snapshot
            .advisories
            .extend(self.path_mtu.advisories(&self.config));
        snapshot.alerts = self.alerting.views(now);
        snapshot.outbox_length = self.alerting.outbox_len();
        snapshot.metrics = Some(self.metrics.clone());
        snapshot.history = Some(self.history.clone());
        self.snapshots.send_replace(Arc::new(snapshot));
    }
}

/// Locks the history; a panic elsewhere while it was held leaves numbers worth showing.
fn lock(history: &SharedHistory) -> std::sync::MutexGuard<'_, History> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}
