//! Prometheus metrics: every series is created at start (at zero) from the config, and the
//! monitor task updates them as results and verdicts come in.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::config::{Config, TargetScope};
use crate::health::{ConnectionState, Verdict, VpnState};
use crate::messages::ProbeOutcome;
use crate::types::{TargetId, Timestamp, TunnelId};

/// RTT histogram buckets in seconds: from loopback (tens of µs) to a slow tunnel.
const RTT_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const VERDICT_STATES: &[&str] = &["up", "down", "unknown"];
const CONNECTION_STATES: &[&str] = &["healthy", "degraded", "down", "unknown"];
const VPN_STATES: &[&str] = &["starting", "ok", "degraded", "critical"];
const LOSS_REASONS: &[&str] = &["timeout", "icmp_error", "send_failed"];

/// Buckets of the send-delay histogram: how late after its scheduled time a request left.
const SEND_DELAY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// One target's probe figures, kept in atomics that the monitor writes and `/metrics`
/// reads, and rendered straight to text. With thousands of targets the prometheus crate's
/// way (a child per label set per family, each holding its label strings, and a full copy
/// of every series on each gather) costs kilobytes per target and hundreds of
/// milliseconds per scrape.
/// Why the HTTP server closed a connection on accept.
#[derive(Clone, Copy, Debug)]
pub enum RefusedBecause {
    /// The peer address already held `MAX_PER_PEER` connections.
    PerPeer,
    /// The server already held `MAX_CONNECTIONS`.
    Total,
}

/// Connections refused on accept, by [`RefusedBecause`]: process-wide, since the server
/// outlives every config generation.
static HTTP_REFUSED: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Counts a connection the HTTP server closed on accept.
pub fn http_connection_refused(because: RefusedBecause) {
    HTTP_REFUSED[because as usize].fetch_add(1, Ordering::Relaxed);
}

/// Whether the last config reload worked, and when one last did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReloadStatus {
    /// False when the last reload was refused.
    pub successful: bool,
    /// When the running config was loaded.
    pub last_success: Timestamp,
}

/// Every metric the daemon exports.
pub struct Metrics {
    reload_successful: IntGauge,
    reload_success_time: Gauge,
    registry: Registry,
    targets: Vec<TargetCounters>,
    send_delay: Histogram,
    failover_seconds: Histogram,
    tunnel_state: IntGaugeVec,
    tunnel_plane_state: IntGaugeVec,
    tunnel_up: IntGaugeVec,
    connection_state: IntGaugeVec,
    vpn_state: IntGaugeVec,
    tunnel_labels: Vec<Vec<(String, String)>>,
    connection_labels: Vec<String>,
    stray_replies: IntCounter,
    socket_reopens: IntCounter,
    schedule_slips: IntCounter,
    aws: aws::AwsSeries,
    alerts_firing: IntGaugeVec,
    /// The label values of the alerts `alerts_firing` holds now.
    alerts_shown: std::sync::Mutex<std::collections::BTreeSet<[String; 4]>>,
    notifications: IntCounterVec,
    sink_up: IntGaugeVec,
    outbox_length: IntGauge,
    outbox_dropped: IntCounter,
    state_save_failures: IntCounter,
    state_unsaved_since: IntGauge,
    path_mtu: path_mtu::PathMtuSeries,
    brownout: brownout::BrownoutSeries,
    maintenance: maintenance::MaintenanceSeries,
    tcp: tcp::TcpSeries,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("a valid metric"))
}

fn int_counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        registry,
        IntCounter::new(name, help).expect("a valid metric"),
    )
}

fn int_gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric"),
    )
}

fn int_counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric"),
    )
}

/// Registers the gauges that only describe: socket, build, runbook, tunnels' AWS names,
/// target and warning counts.
fn register_info(registry: &Registry, config: &Config, socket_type: &str, receive_buffer: usize) {
    let socket_info = int_gauge_vec(
        registry,
        "tunnelkeeper_icmp_socket_info",
        "The ICMP socket type in use (dgram or raw).",
        &["type"],
    );
    socket_info.with_label_values(&[socket_type]).set(1);
    let buffer = int_gauge(
        registry,
        "tunnelkeeper_icmp_receive_buffer_bytes",
        "Receive buffer of the ICMP socket as granted by the kernel.",
    );
    buffer.set(receive_buffer as i64);
    let build = int_gauge_vec(
        registry,
        "tunnelkeeper_build_info",
        "Always 1; the labels tell the version.",
        &["version"],
    );
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    let runbook = int_gauge_vec(registry, "tunnelkeeper_runbook_info", "Always 1; url is where pages point (alerts.runbook_url); the Prometheus rules read it for their runbook_url.", &["url"]);
    runbook
        .with_label_values(&[config.alerts.runbook_url.as_str()])
        .set(1);
    let tunnel_info = int_gauge_vec(registry, "tunnelkeeper_tunnel_info", "Always 1; joins a tunnel's vpn and tunnel labels to its AWS connection id and outside IP (empty when not configured).", &["vpn", "tunnel", "vpn_id", "outside_ip"]);
    for c in &config.connections {
        let vpn_id = c.id.as_ref().map(ToString::to_string).unwrap_or_default();
        for t in &c.tunnels {
            let ip = t
                .outside_ip
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            tunnel_info
                .with_label_values(&[c.name.as_str(), t.name.as_str(), &vpn_id, &ip])
                .set(1);
        }
    }
    let targets_configured = int_gauge(
        registry,
        "tunnelkeeper_targets_configured",
        "Probe targets in the running config.",
    );
    targets_configured.set(config.targets.len() as i64);
    let warnings = int_gauge(
        registry,
        "tunnelkeeper_config_warnings",
        "Warnings the running config raised (see the log and /status).",
    );
    warnings.set(config.warnings.len() as i64);
}

/// How late each echo request went out.
fn send_delay_histogram(registry: &Registry) -> Histogram {
    register(
        registry,
        Histogram::with_opts(
            HistogramOpts::new(
                "tunnelkeeper_probe_send_delay_seconds",
                "How long after its scheduled time each echo request went out.",
            )
            .buckets(SEND_DELAY_BUCKETS.to_vec()),
        )
        .unwrap(),
    )
}

/// The (vpn, tunnel) labels of every tunnel, and the vpn label of every connection.
#[allow(clippy::type_complexity)]
fn labels(config: &Config) -> (Vec<Vec<(String, String)>>, Vec<String>) {
    let tunnel_labels: Vec<Vec<(String, String)>> = config
        .connections
        .iter()
        .map(|c| {
            c.tunnels
                .iter()
                .map(|t| (c.name.to_string(), t.name.to_string()))
                .collect()
        })
        .collect();
    let connection_labels: Vec<String> = config
        .connections
        .iter()
        .map(|c| c.name.to_string())
        .collect();

    (tunnel_labels, connection_labels)
}

/// Each target's counters, labelled with where it rides.
fn target_counters(config: &Config) -> Vec<TargetCounters> {
    config
        .targets
        .iter()
        .map(|t| {
            let (vpn, tunnel) = match t.scope {
                TargetScope::Pinned(id) => (
                    config.connections[id.connection].name.as_str(),
                    config.tunnel(id).name.as_str(),
                ),
                TargetScope::Shared => ("", ""),
            };
            // In the prometheus crate's order (by name), like every other family.
            TargetCounters::new(&[
                ("address", &t.address.to_string()),
                ("proto", t.proto().label()),
                ("target", t.name.as_str()),
                ("tunnel", tunnel),
                ("vpn", vpn),
            ])
        })
        .collect()
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("targets", &self.targets.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates every series for `config`, at zero.
    pub fn new(
        config: &Config,
        socket_type: &str,
        receive_buffer: usize,
        reload: ReloadStatus,
    ) -> Self {
        let registry = Registry::new();
        let reload_successful = int_gauge(
            &registry,
            "tunnelkeeper_config_last_reload_successful",
            "1 when the last config reload worked, 0 when it was refused.",
        );
        let reload_success_time = register(
            &registry,
            Gauge::new(
                "tunnelkeeper_config_last_reload_success_timestamp_seconds",
                "When the running config was loaded, as a Unix time.",
            )
            .unwrap(),
        );
        let tunnel_state = int_gauge_vec(
            &registry,
            "tunnelkeeper_tunnel_state",
            "1 for the tunnel's current state (both planes combined).",
            &["vpn", "tunnel", "state"],
        );
        let tunnel_plane_state = int_gauge_vec(
            &registry,
            "tunnelkeeper_tunnel_plane_state",
            "1 for the current state of each plane: data (pings) and control (AWS).",
            &["vpn", "tunnel", "plane", "state"],
        );
        let tunnel_up = int_gauge_vec(
            &registry,
            "tunnelkeeper_tunnel_up",
            "1 when the tunnel counts as up, else 0.",
            &["vpn", "tunnel"],
        );
        let connection_state = int_gauge_vec(
            &registry,
            "tunnelkeeper_connection_state",
            "1 for the VPN connection's current state.",
            &["vpn", "state"],
        );
        let vpn_state = int_gauge_vec(
            &registry,
            "tunnelkeeper_vpn_state",
            "1 for the whole VPN's current state, as /health reports it.",
            &["state"],
        );
        let send_delay = send_delay_histogram(&registry);
        let stray_replies = int_counter(&registry, "tunnelkeeper_probe_stray_replies_total", "Replies that matched no request waiting for them (late replies to timed-out requests).");
        let socket_reopens = int_counter(
            &registry,
            "tunnelkeeper_icmp_socket_reopens_total",
            "Fresh ICMP sockets taken by pingers after consecutive timeouts.",
        );
        let schedule_slips = int_counter(
            &registry,
            "tunnelkeeper_probe_schedule_slips_total",
            "Echo requests skipped because a pinger fell behind its schedule.",
        );
        register_info(&registry, config, socket_type, receive_buffer);

        let targets = target_counters(config);
        let (tunnel_labels, connection_labels) = labels(config);

        let aws = aws::AwsSeries::new(&registry, config);

        let alerts_firing = int_gauge_vec(&registry, "tunnelkeeper_alerts_firing", "1 for each alert firing now (inhibited and silenced ones included), like Prometheus's ALERTS; vpn and tunnel are empty for VPN-wide alerts.", &["alert", "severity", "vpn", "tunnel"]);
        let notifications = int_counter_vec(
            &registry,
            "tunnelkeeper_notifications_total",
            "Notification deliveries by sink and outcome (delivered or failed).",
            &["sink", "outcome"],
        );
        let sink_up = int_gauge_vec(
            &registry,
            "tunnelkeeper_sink_up",
            "1 while the sink takes its pages, 0 once several deliveries in a row failed (NotificationsFailing).",
            &["sink"],
        );
        for sink in &config.alerts.sinks {
            for outcome in ["delivered", "failed"] {
                notifications.with_label_values(&[sink.name.as_str(), outcome]);
            }
            sink_up.with_label_values(&[sink.name.as_str()]).set(1);
        }
        let outbox_length = int_gauge(
            &registry,
            "tunnelkeeper_outbox_length",
            "Notifications waiting for delivery.",
        );
        let outbox_dropped = int_counter(
            &registry,
            "tunnelkeeper_outbox_dropped_total",
            "Notifications dropped because the outbox was full.",
        );
        let state_save_failures = int_counter(
            &registry,
            "tunnelkeeper_state_save_failures_total",
            "Failed writes of the alert state file.",
        );
        let state_unsaved_since = int_gauge(
            &registry,
            "tunnelkeeper_state_unsaved_since_seconds",
            "Unix time of the first of the state saves failing now (each is retried with backoff); 0 while saves succeed.",
        );

        let path_mtu = path_mtu::PathMtuSeries::new(&registry, config, &tunnel_labels);
        let brownout = brownout::BrownoutSeries::new(&registry, config, &tunnel_labels);
        let failover_seconds = failover::histogram(&registry);
        let maintenance = maintenance::MaintenanceSeries::new(&registry, config, &tunnel_labels);
        let tcp = tcp::TcpSeries::new(&registry, config);
        let metrics = Self {
            maintenance,
            tcp,
            path_mtu,
            brownout,
            failover_seconds,
            reload_successful,
            reload_success_time,
            alerts_firing,
            alerts_shown: Default::default(),
            notifications,
            sink_up,
            outbox_length,
            outbox_dropped,
            state_save_failures,
            state_unsaved_since,
            aws,
            registry,
            targets,
            send_delay,
            tunnel_state,
            tunnel_plane_state,
            tunnel_up,
            connection_state,
            vpn_state,
            tunnel_labels,
            connection_labels,
            stray_replies,
            socket_reopens,
            schedule_slips,
        };
        metrics.set_all_unknown(config);
        metrics.set_vpn(&VpnState::Starting);
        metrics.set_reload(reload);
        metrics
    }

    /// Sets every tunnel and connection to unknown and the VPN to starting.
    fn set_all_unknown(&self, config: &Config) {
        for (ci, c) in config.connections.iter().enumerate() {
            for ti in 0..c.tunnels.len() {
                let unknown = Verdict::Unknown {
                    reason: String::new(),
                };
                self.set_tunnel(
                    TunnelId {
                        connection: ci,
                        tunnel: ti,
                    },
                    &unknown,
                    &unknown,
                    &unknown,
                );
            }
            self.set_connection(
                ci,
                &ConnectionState::Unknown {
                    reason: String::new(),
                },
            );
        }
    }

    /// Sets the reload gauges.
    pub fn set_reload(&self, status: ReloadStatus) {
        self.reload_successful.set(i64::from(status.successful));
        self.reload_success_time
            .set(status.last_success.wall_millis() as f64 / 1000.0);
    }

    /// Takes over the process-wide counters of the generation a reload ended, so that a
    /// reload never resets a `_total` (Prometheus would read it as a counter reset).
    /// Per-target counters are seeded from the carried stats instead ([`Metrics::seed`]);
    /// the send-delay histogram starts over (a histogram cannot be added to).
    pub fn carry_counters(&self, old: &Metrics) {
        let families = old.registry.gather();
        for family in &families {
            if family.get_field_type() != prometheus::proto::MetricType::COUNTER {
                continue;
            }
            let Some(new) = self
                .counter_vecs()
                .into_iter()
                .find(|(n, _)| *n == family.name())
            else {
                continue;
            };
            for m in family.get_metric() {
                let labels: std::collections::HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                if let Ok(c) = new.1.get_metric_with(&labels) {
                    c.inc_by(m.get_counter().get_value() as u64);
                }
            }
        }
        for (new, old) in [
            (&self.stray_replies, &old.stray_replies),
            (&self.socket_reopens, &old.socket_reopens),
            (&self.schedule_slips, &old.schedule_slips),
            (&self.outbox_dropped, &old.outbox_dropped),
        ] {
            new.inc_by(old.get());
        }
    }

    /// The labelled counters, by family name.
    fn counter_vecs(&self) -> Vec<(&'static str, &IntCounterVec)> {
        vec![
            ("tunnelkeeper_notifications_total", &self.notifications),
            ("tunnelkeeper_ec2_requests_total", &self.aws.ec2_requests),
            (
                "tunnelkeeper_cloudwatch_requests_total",
                &self.aws.cloudwatch_requests,
            ),
            (
                "tunnelkeeper_ec2_maintenance_requests_total",
                &self.aws.control.maintenance_requests,
            ),
        ]
    }

    /// Starts a target's counters where an earlier generation left them (after a reload).
    pub fn seed(&self, target: TargetId, stats: &crate::probe::stats::StatsSummary) {
        let Some(s) = self.targets.get(target.0) else {
            return;
        };
        // As the wire saw them: late replies stay timeouts, so that no counter goes back
        // across a reload.
        s.sent.fetch_add(stats.sent, Ordering::Relaxed);
        s.replies
            .fetch_add(stats.replies - stats.late_replies, Ordering::Relaxed);
        s.lost[0].fetch_add(stats.timeouts + stats.late_replies, Ordering::Relaxed);
        s.lost[1].fetch_add(stats.icmp_errors, Ordering::Relaxed);
        s.lost[2].fetch_add(stats.send_failures, Ordering::Relaxed);
        if let Some(rtt) = stats.rtt_last_seconds {
            s.last_rtt.set(rtt);
        }
    }

    /// Counts one probe outcome of a target.
    pub fn record_probe(&self, target: TargetId, outcome: &ProbeOutcome, consecutive_lost: u32) {
        let Some(s) = self.targets.get(target.0) else {
            return;
        };
        let counter = match outcome {
            ProbeOutcome::Reply { rtt } => {
                s.observe_rtt(rtt.as_secs_f64());
                &s.replies
            }
            ProbeOutcome::Timeout { .. } => &s.lost[0],
            ProbeOutcome::IcmpError { .. } => &s.lost[1],
            ProbeOutcome::SendFailed { .. } => &s.lost[2],
        };
        // Sent first, and the answer released after it: a scrape reads the answers first
        // (acquiring), so it never shows more answers than requests.
        s.sent.fetch_add(1, Ordering::Relaxed);
        counter.fetch_add(1, Ordering::Release);
        s.consecutive_lost
            .store(u64::from(consecutive_lost), Ordering::Relaxed);
    }

    /// Sets a target's up gauge.
    pub fn set_target(&self, target: TargetId, verdict: &Verdict) {
        if let Some(s) = self.targets.get(target.0) {
            s.up.store(u64::from(verdict.is_up()), Ordering::Relaxed);
        }
    }

    /// Sets a tunnel's state gauges.
    pub fn set_tunnel(&self, id: TunnelId, verdict: &Verdict, data: &Verdict, control: &Verdict) {
        let (vpn, tunnel) = &self.tunnel_labels[id.connection][id.tunnel];
        for state in VERDICT_STATES {
            self.tunnel_state
                .with_label_values(&[vpn.as_str(), tunnel.as_str(), state])
                .set(i64::from(verdict.label() == *state));
            for (plane, v) in [("data", data), ("control", control)] {
                self.tunnel_plane_state
                    .with_label_values(&[vpn.as_str(), tunnel.as_str(), plane, state])
                    .set(i64::from(v.label() == *state));
            }
        }
        self.tunnel_up
            .with_label_values(&[vpn.as_str(), tunnel.as_str()])
            .set(i64::from(verdict.is_up()));
    }

    /// Sets a connection's state gauges.
    pub fn set_connection(&self, index: usize, state: &ConnectionState) {
        let vpn = &self.connection_labels[index];
        for s in CONNECTION_STATES {
            self.connection_state
                .with_label_values(&[vpn.as_str(), s])
                .set(i64::from(state.label() == *s));
        }
    }

    /// Sets the VPN state gauges.
    pub fn set_vpn(&self, state: &VpnState) {
        let current = state.token().to_ascii_lowercase();
        for s in VPN_STATES {
            self.vpn_state
                .with_label_values(&[s])
                .set(i64::from(current == *s));
        }
    }

    /// Counts a reply that matched no waiting request.
    pub fn stray_reply(&self) {
        self.stray_replies.inc();
    }

    /// Counts a socket re-open.
    pub fn socket_reopened(&self) {
        self.socket_reopens.inc();
    }

    /// Counts skipped sends.
    pub fn schedule_slipped(&self, missed: u64) {
        self.schedule_slips.inc_by(missed);
    }

    /// Shows one series for each alert past pending (inhibited and silenced ones
    /// included) and drops the series of alerts that are gone.
    pub fn set_alerts(&self, firing: &[tunnelkeeper_core::alert::view::AlertView]) {
        let now: std::collections::BTreeSet<[String; 4]> = firing
            .iter()
            .map(|a| {
                [
                    a.alert.name().to_string(),
                    a.severity.label().to_string(),
                    a.vpn.clone().unwrap_or_default(),
                    a.tunnel.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let mut shown = self.alerts_shown.lock().unwrap_or_else(|e| e.into_inner());
        for gone in shown.difference(&now) {
            let labels: Vec<&str> = gone.iter().map(String::as_str).collect();
            let _ = self.alerts_firing.remove_label_values(&labels);
        }
        for labels in &now {
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.alerts_firing.with_label_values(&labels).set(1);
        }
        *shown = now;
    }

    /// Counts one delivery outcome of a sink.
    pub fn notification(&self, sink: &str, outcome: &str) {
        self.notifications.with_label_values(&[sink, outcome]).inc();
    }

    /// Sets whether each sink takes its pages.
    pub fn set_sinks(&self, sinks: &[tunnelkeeper_core::alert::sink_health::SinkHealth]) {
        for s in sinks {
            self.sink_up
                .with_label_values(&[s.name.as_str()])
                .set(i64::from(s.ok));
        }
    }

    /// Sets the outbox figures.
    pub fn set_outbox(&self, length: usize, dropped_total: u64) {
        self.outbox_length.set(length as i64);
        let seen = self.outbox_dropped.get();
        if dropped_total > seen {
            self.outbox_dropped.inc_by(dropped_total - seen);
        }
    }

    /// Brings the failed-state-write counter up to the writer's total.
    pub fn set_state_save_failures(&self, total: u64) {
        let seen = self.state_save_failures.get();
        if total > seen {
            self.state_save_failures.inc_by(total - seen);
        }
    }

    /// Sets when the state saves began to fail (`None`: they succeed).
    pub fn set_state_unsaved_since(&self, since: Option<crate::types::Timestamp>) {
        self.state_unsaved_since
            .set(since.map_or(0, |t| (t.wall_millis() / 1000) as i64));
    }

    /// Records how late after its scheduled time a request went out.
    pub fn record_send_delay(&self, delay: std::time::Duration) {
        self.send_delay.observe(delay.as_secs_f64());
    }
}

mod aws;
mod brownout;
mod control_plane;
mod failover;
mod maintenance;
mod path_mtu;
mod render;
mod tcp;

use render::TargetCounters;
pub use render::RENDER_CHUNK;
#[cfg(test)]
mod tests;
