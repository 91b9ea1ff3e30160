//! What the core's events do in the world: log lines, metrics, systemd's status line and
//! readiness, deliveries handed to the sink workers, Alertmanager's alert sets, and
//! writes of the state file. One arm per event; nothing here decides anything.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::alert::sinks::{AmAlert, SinkHandle};
use crate::alert::state_writer::StateWriter;
use crate::config::{Config, TargetScope};
use crate::daemon::systemd::Notifier;
use crate::health::{Verdict, VpnState};
use crate::liveness::Heartbeat;
use crate::metrics::Metrics;
use crate::outage_log::OutageLog;
use crate::snapshot::AlertView;
use crate::types::{TargetId, Timestamp, TunnelId};
use tunnelkeeper_core::alert::policy::state_not_saved::SaveFailure;
use tunnelkeeper_core::config::maintenance::ApplyMode;
use tunnelkeeper_core::machine::{AwsEvent, Core, Event};
use tunnelkeeper_core::maintenance::TunnelPlan;

/// How the monitor reaches the world outside the core.
pub struct Hooks {
    /// systemd notifications (STATUS=).
    pub notifier: Arc<Notifier>,
    /// Beats while every target has a recent probe result: the pingers make progress.
    pub pingers: Heartbeat,
    /// Beats on every tick: the alert loop makes progress.
    pub alert_loop: Heartbeat,
    /// Set once every target has reported its first probe.
    pub first_round: watch::Sender<bool>,
    /// Each sink's worker, by sink index.
    pub sinks: Vec<SinkHandle>,
    /// Writes the state file off the monitor's thread.
    pub writer: StateWriter,
    /// Keeps ended outages (in `state_dir`, off the monitor's thread).
    pub outages: Arc<OutageLog>,
    /// Calls `ReplaceVpnTunnel` when `[maintenance]` asks (with AWS configured).
    pub replacer: Option<crate::aws::replace::TunnelReplacer>,
    /// The tunnel logs reader's requests (`None` without AWS).
    pub tunnel_logs:
        Option<tokio::sync::mpsc::Sender<tunnelkeeper_core::health::tunnel_log_book::LogFetch>>,
}

/// Turns events into IO.
pub struct Effects {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    /// What the core was last told of the state saves (since when they fail).
    told_state_save: Option<Option<Timestamp>>,
}

impl Effects {
    /// Acts for `config`, writing to `metrics`.
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>, hooks: Hooks) -> Self {
        Self {
            config,
            metrics,
            hooks,
            told_state_save: None,
        }
    }

    /// Returns the metrics written to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Acts on one event; returns true when readers should see a new snapshot at once.
    pub fn act(&mut self, event: Event, core: &mut Core) -> bool {
        match event {
            Event::Started => {
                self.show_all(core);
                true
            }
            Event::ProbeRecorded {
                target,
                outcome,
                consecutive_lost,
                send_delay,
            } => {
                self.metrics.record_send_delay(send_delay);
                self.metrics
                    .record_probe(target, &outcome, consecutive_lost);
                false
            }
            Event::StrayReply { .. } => {
                self.metrics.stray_reply();
                false
            }
            Event::SocketReopened { target, ok } => {
                if ok {
                    self.metrics.socket_reopened();
                    info!(target = %self.config.targets[target.0].name, "moved to a fresh ICMP socket after consecutive timeouts");
                }
                false
            }
            Event::ScheduleSlipped { missed, .. } => {
                self.metrics.schedule_slipped(missed);
                false
            }
            Event::TimeoutChanged { .. } => false,
            Event::TargetChanged { target, verdict } => {
                self.metrics.set_target(target, &verdict);
                self.log_target(target, &verdict);
                true
            }
            Event::TargetSilent { target } => {
                let t = &self.config.targets[target.0];
                warn!(target = %t.name, address = %t.address, "no probe result for three intervals: its verdict is unknown until results come again");
                true
            }
            Event::TunnelChanged { tunnel } => {
                let t = core.model().tunnel(tunnel);
                self.metrics
                    .set_tunnel(tunnel, &t.verdict, &t.data_plane, &t.control_plane);
                self.metrics.set_connection(
                    tunnel.connection,
                    core.model().connection(tunnel.connection),
                );
                true
            }
            Event::StatusLine { line, vpn } => {
                self.metrics.set_vpn(core.model().vpn());
                self.hooks.notifier.notify(&format!("STATUS={line}"));
                if let Some(vpn) = vpn {
                    log_vpn(&vpn);
                }
                true
            }
            Event::Failover(f) => {
                self.log_failover(&f);
                true
            }
            Event::FirstRound => {
                self.hooks.first_round.send_replace(true);
                false
            }
            Event::Deliver(delivery) => {
                let id = delivery.id;
                match self.hooks.sinks.get(delivery.sink) {
                    Some(SinkHandle::Outbox(tx)) if tx.try_send(delivery).is_ok() => {}
                    Some(_) | None => core.delivery_refused(id),
                }
                false
            }
            Event::AlertmanagerAlerts { sink, alerts } => {
                if let Some(SinkHandle::Alertmanager(tx)) = self.hooks.sinks.get(sink) {
                    let alerts = alerts
                        .into_iter()
                        .map(|notification| AmAlert { notification })
                        .collect();
                    tx.send_replace(alerts);
                }
                false
            }
            Event::DeliveryDropped { sink, key } => {
                error!(sink, %key, "notification for a sink that no longer takes it: dropped");
                false
            }
            Event::DeliveryReported { sink, failure } => {
                match failure {
                    None => self.metrics.notification(&sink, "delivered"),
                    Some((kind, message, retry_at)) => {
                        self.metrics.notification(&sink, "failed");
                        let retry_at =
                            retry_at.map_or_else(|| "never".to_string(), |t| t.to_string());
                        warn!(%sink, %kind, %message, %retry_at, "notification not delivered; will retry");
                    }
                }
                true
            }
            Event::OutboxOverflowed => {
                error!(
                    capacity = crate::alert::outbox::CAPACITY,
                    "outbox full: the oldest undelivered notification was dropped"
                );
                false
            }
            Event::PathMtuMeasured { tunnel, reading } => {
                self.metrics.set_path_mtu(tunnel, reading.as_ref());
                false
            }
            Event::SaveState(state) => {
                self.hooks.writer.submit(state);
                false
            }
            Event::OutageRecorded(record) => {
                self.record_outage(record);
                false
            }
            Event::Aws(event) => self.act_on_aws(event, core),
            Event::ReplaceTunnel { tunnel } => self.replace_tunnel(tunnel),
            Event::MaintenancePlanChanged {
                tunnel,
                plan,
                mode,
                ended,
            } => self.show_maintenance_plan(tunnel, &plan, mode, ended),
            Event::FetchTunnelLogs(fetch) => {
                self.fetch_tunnel_logs(fetch);
                false
            }
            Event::CauseChanged { tunnel, cause } => {
                match cause {
                    Some(cause) => {
                        info!(tunnel = %self.tunnel_name(tunnel), cause = %cause.line(), runbook = cause.kind.runbook_heading(), "outage cause")
                    }
                    None => debug!(tunnel = %self.tunnel_name(tunnel), "outage cause cleared"),
                }
                true
            }
        }
    }

    /// Counts and logs a failover of the shared targets' traffic.
    fn log_failover(&self, f: &tunnelkeeper_core::health::failover::Failover) {
        self.metrics.failover(f.seconds());
        let from: Vec<String> = f.from.iter().map(|id| self.tunnel_name(*id)).collect();
        warn!(
            seconds = format!("{:.1}", f.seconds()),
            from = %from.join(", "),
            lost_at = %f.lost_at,
            restored_at = %f.restored_at,
            "failover: the shared targets answer again over another tunnel"
        );
    }

    /// Logs an ended outage and hands it to the outage log.
    fn record_outage(&self, record: tunnelkeeper_core::outage::OutageRecord) {
        info!(
            id = %record.id,
            kind = record.kind.label(),
            tunnels = %record.tunnels.join(", "),
            started_at = %record.started_at,
            ended_at = %record.ended_at,
            seconds = format!("{:.1}", record.seconds),
            cause = record.cause.as_deref().unwrap_or("none known"),
            "outage recorded"
        );
        self.hooks.outages.record(record);
    }

    /// Hands a logs call to the tunnel logs reader.
    fn fetch_tunnel_logs(&self, fetch: tunnelkeeper_core::health::tunnel_log_book::LogFetch) {
        let tunnel = fetch.tunnel;
        let sent = self
            .hooks
            .tunnel_logs
            .as_ref()
            .is_some_and(|tx| tx.try_send(fetch).is_ok());
        if !sent {
            // The core gives the call up after a while and asks again.
            warn!(tunnel = %self.tunnel_name(tunnel), "tunnel logs: the reader takes no request");
        }
    }

    /// Asks AWS to replace a tunnel (`[maintenance]` found a safe moment).
    fn replace_tunnel(&mut self, tunnel: TunnelId) -> bool {
        self.metrics.maintenance_started();
        match &self.hooks.replacer {
            Some(replacer) => replacer.replace(tunnel),
            // No AWS: the config refuses `when-safe` without [aws]; say it anyway.
            None => {
                error!(tunnel = %self.config.tunnel(tunnel).name, "ReplaceVpnTunnel asked for without AWS configured")
            }
        }
        true
    }

    /// Shows and logs a tunnel's maintenance plan; counts a replacement that ended.
    fn show_maintenance_plan(
        &mut self,
        tunnel: TunnelId,
        plan: &TunnelPlan,
        mode: ApplyMode,
        ended: bool,
    ) -> bool {
        self.metrics.set_maintenance(tunnel, plan);
        if let (true, Some(outcome)) = (ended, &plan.outcome) {
            self.metrics.maintenance_outcome(outcome);
        }
        crate::daemon::maintenance_log::log_plan(&self.config, tunnel, plan, mode);
        true
    }

    fn tunnel_name(&self, id: TunnelId) -> String {
        format!(
            "{}/{}",
            self.config.connections[id.connection].name,
            self.config.tunnel(id).name
        )
    }

    /// The control plane's events: EC2's answers, failures, problems, staleness and
    /// maintenance checks.
    fn act_on_aws(&mut self, event: AwsEvent, core: &Core) -> bool {
        match event {
            AwsEvent::Ec2Answered { at, readings } => {
                self.metrics.ec2_request("ok");
                self.metrics.ec2_success(at);
                for r in &readings {
                    for (ti, t) in r.tunnels.iter().enumerate() {
                        let id = TunnelId {
                            connection: r.connection,
                            tunnel: ti,
                        };
                        self.metrics.set_tunnel_aws(id, t);
                    }
                }
                if let Some(control) = core.control() {
                    self.metrics.set_control_plane(control);
                }
                self.metrics.set_control_plane_stale(false);
                true
            }
            AwsEvent::Ec2Failed { kind } => {
                self.metrics.ec2_request(kind.label());
                false
            }
            AwsEvent::ControlProblem { problem, gone } => {
                // Logged when they appear and when they go, not on every answer.
                if gone {
                    info!(%problem, "EC2 control plane problem gone");
                } else {
                    warn!(%problem, "EC2 control plane problem");
                }
                false
            }
            AwsEvent::ControlPlaneStale => {
                warn!("EC2 answers are stale (the answers due within three poll intervals did not come): control plane of every polled tunnel is unknown");
                self.metrics.set_control_plane_stale(true);
                true
            }
            AwsEvent::ControlPlaneChanged { tunnel, verdict } => {
                self.log_control_plane(tunnel, &verdict);
                true
            }
            AwsEvent::MaintenanceChecked { result, .. } => {
                self.metrics.ec2_maintenance_request(&result);
                if let Some(control) = core.control() {
                    self.metrics.set_control_plane(control);
                }
                true
            }
        }
    }

    /// Sets every state gauge from the core's model.
    fn show_all(&self, core: &Core) {
        let model = core.model();
        for t in &self.config.targets {
            self.metrics.set_target(t.id, &model.target(t.id).verdict);
        }
        for id in self.config.tunnel_ids() {
            let t = model.tunnel(id);
            self.metrics
                .set_tunnel(id, &t.verdict, &t.data_plane, &t.control_plane);
            self.metrics
                .set_connection(id.connection, model.connection(id.connection));
        }
        self.metrics.set_vpn(model.vpn());
    }

    /// Beats the heartbeats: the alert loop on every tick, the pingers while they all
    /// make progress (one stuck pinger must starve the watchdog).
    pub fn beat(&self, pingers_progressing: bool) {
        self.hooks.alert_loop.beat();
        if pingers_progressing {
            self.hooks.pingers.beat();
        }
    }

    /// Sets the gauges read from the core as a whole (at every snapshot).
    pub fn refresh(&self, core: &Core, now: Timestamp, alerts: &[AlertView], outbox_dropped: u64) {
        let firing: Vec<AlertView> = alerts
            .iter()
            .filter(|v| v.state != "pending")
            .cloned()
            .collect();
        self.metrics.set_alerts(&firing);
        self.metrics
            .set_outbox(core.outbox_counts().0, outbox_dropped);
        self.metrics
            .set_state_save_failures(self.hooks.writer.failures());
        self.metrics
            .set_state_unsaved_since(self.hooks.writer.health().borrow().unsaved_since);
        self.metrics.set_sinks(core.sink_health());
        if let Some(control) = core.control() {
            self.metrics
                .set_ec2_answer_age(control.status(now).answer_age_seconds);
        }
    }

    /// Returns whether the state file is being written, when that changed since the core
    /// was last told (the first call tells a new core).
    pub fn state_save_change(&mut self) -> Option<Option<SaveFailure>> {
        let health = self.hooks.writer.health().borrow().clone();
        let failure = health.unsaved_since.map(|since| SaveFailure {
            since,
            error: health.last_error.clone().unwrap_or_default(),
        });
        let since = failure.as_ref().map(|f| f.since);
        if self.told_state_save == Some(since) {
            return None;
        }
        self.told_state_save = Some(since);
        Some(failure)
    }

    /// Waits for the state file to reach the disk (shutdown, reload).
    pub fn flush_state(&self) {
        if !self.hooks.writer.flush(Duration::from_secs(2)) {
            error!(path = %self.hooks.writer.store().path().display(), "the alert state did not reach the disk within 2 s");
        }
    }

    fn log_target(&self, target: TargetId, verdict: &Verdict) {
        let spec = &self.config.targets[target.0];
        // Which tunnel the target rides: the first thing a reader of the log wants.
        let tunnel = match spec.scope {
            TargetScope::Pinned(id) => self.config.tunnel(id).name.to_string(),
            TargetScope::Shared => "shared".to_string(),
        };
        let (name, address) = (&spec.name, &spec.address);
        match verdict {
            Verdict::Up { since } => {
                info!(%tunnel, target = %name, %address, state = "up", %since, "target state changed")
            }
            Verdict::Down { since, reason } => {
                info!(%tunnel, target = %name, %address, state = "down", %since, %reason, "target state changed")
            }
            Verdict::Unknown { reason } => {
                info!(%tunnel, target = %name, %address, state = "unknown", %reason, "target state changed")
            }
        }
    }

    fn log_control_plane(&self, id: TunnelId, verdict: &Verdict) {
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
        match verdict {
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
}

fn log_vpn(vpn: &VpnState) {
    match vpn {
        VpnState::Critical { reason, .. } => warn!(state = "CRITICAL", %reason, "VPN state"),
        VpnState::Degraded { reason, .. } => warn!(state = "DEGRADED", %reason, "VPN state"),
        VpnState::Ok { .. } => info!(state = "OK", "VPN state"),
        VpnState::Starting => {}
    }
}
