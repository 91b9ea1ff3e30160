//! Prometheus metrics: every series is created at start (at zero) from the config, and the
//! monitor task updates them as results and verdicts come in.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::alert::engine::{AlertClass, AlertView};
use crate::aws::AwsErrorKind;
use crate::config::{Config, TargetScope};
use crate::health::control_plane::TunnelReading;
use crate::health::{ConnectionState, ProbeOutcome, Verdict, VpnState};
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
struct TargetCounters {
    /// `vpn="…",tunnel="…",target="…",address="…"`, escaped.
    labels: String,
    sent: AtomicU64,
    replies: AtomicU64,
    /// By [`LOSS_REASONS`].
    lost: [AtomicU64; 3],
    /// Per bucket of [`RTT_BUCKETS`], not cumulative; above the last one only in the count.
    rtt_buckets: [AtomicU64; RTT_BUCKETS.len()],
    rtt_count: AtomicU64,
    rtt_sum: AtomicF64,
    last_rtt: AtomicF64,
    consecutive_lost: AtomicU64,
    up: AtomicU64,
}

/// An f64 in an atomic; only the monitor task writes it.
#[derive(Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn add(&self, v: f64) {
        self.set(self.get() + v);
    }
}

impl TargetCounters {
    fn new(labels: &[(&str, &str)]) -> Self {
        let labels = labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            labels,
            sent: AtomicU64::new(0),
            replies: AtomicU64::new(0),
            lost: Default::default(),
            rtt_buckets: Default::default(),
            rtt_count: AtomicU64::new(0),
            rtt_sum: AtomicF64::default(),
            last_rtt: AtomicF64::default(),
            consecutive_lost: AtomicU64::new(0),
            up: AtomicU64::new(0),
        }
    }

    fn observe_rtt(&self, seconds: f64) {
        if let Some(i) = RTT_BUCKETS.iter().position(|&le| seconds <= le) {
            self.rtt_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.rtt_sum.add(seconds);
        self.rtt_count.fetch_add(1, Ordering::Relaxed);
        self.last_rtt.set(seconds);
    }
}

/// Escapes a label value for the text format: backslash, double quote and newline.
fn escape_label_value(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// Writes a counter family whose value for `targets[i]` is `values[i]`.
fn write_values(
    out: &mut dyn std::fmt::Write,
    name: &str,
    help: &str,
    targets: &[TargetCounters],
    values: &[u64],
) {
    let mut values = values.iter();
    write_family(out, name, "counter", help, targets, |out, t| {
        let value = values.next().copied().unwrap_or_default();
        let _ = writeln!(out, "{name}{{{}}} {value}", t.labels);
    });
}

/// How much rendered text `/metrics` hands on at a time.
pub const RENDER_CHUNK: usize = 256 * 1024;

/// Collects rendered text and hands it on in pieces of about [`RENDER_CHUNK`] bytes.
struct Chunks<F: FnMut(String) -> bool> {
    buf: String,
    sink: F,
    /// The sink refused a piece (the client went away): the rest is not rendered.
    closed: bool,
}

impl<F: FnMut(String) -> bool> Chunks<F> {
    fn flush(&mut self) {
        if self.closed || self.buf.is_empty() {
            return;
        }
        let piece = std::mem::replace(&mut self.buf, String::with_capacity(RENDER_CHUNK + 4096));
        self.closed = !(self.sink)(piece);
    }
}

impl<F: FnMut(String) -> bool> std::fmt::Write for Chunks<F> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.closed {
            return Err(std::fmt::Error);
        }
        self.buf.push_str(s);
        if self.buf.len() >= RENDER_CHUNK && self.buf.ends_with('\n') {
            self.flush();
        }
        Ok(())
    }
}

/// Writes one family of per-target samples: HELP, TYPE, then a line per target.
fn write_family(
    out: &mut dyn std::fmt::Write,
    name: &str,
    kind: &str,
    help: &str,
    targets: &[TargetCounters],
    mut sample: impl FnMut(&mut dyn std::fmt::Write, &TargetCounters),
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for t in targets {
        sample(out, t);
    }
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
    aws: Option<AwsSeries>,
    alerts_firing: IntGaugeVec,
    notifications: IntCounterVec,
    outbox_length: IntGauge,
    outbox_dropped: IntCounter,
    state_save_failures: IntCounter,
}

/// Series that exist only with `[aws]`.
struct AwsSeries {
    ec2_requests: IntCounterVec,
    ec2_last_success: Gauge,
    ec2_answer_age: Gauge,
    control_plane_stale: IntGauge,
    accepted_routes: IntGaugeVec,
    waits_for_datacenter: IntGaugeVec,
    cloudwatch_requests: IntCounterVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
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
        let reload_successful = register(
            &registry,
            IntGauge::new(
                "tunnelkeeper_config_last_reload_successful",
                "1 when the last config reload worked, 0 when it was refused.",
            )
            .unwrap(),
        );
        let reload_success_time = register(
            &registry,
            Gauge::new(
                "tunnelkeeper_config_last_reload_success_timestamp_seconds",
                "When the running config was loaded, as a Unix time.",
            )
            .unwrap(),
        );
        let tunnel_state = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_state",
                    "1 for the tunnel's current state (both planes combined).",
                ),
                &["vpn", "tunnel", "state"],
            )
            .unwrap(),
        );
        let tunnel_plane_state = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_plane_state",
                    "1 for the current state of each plane: data (pings) and control (AWS).",
                ),
                &["vpn", "tunnel", "plane", "state"],
            )
            .unwrap(),
        );
        let tunnel_up = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_up",
                    "1 when the tunnel counts as up, else 0.",
                ),
                &["vpn", "tunnel"],
            )
            .unwrap(),
        );
        let connection_state = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_connection_state",
                    "1 for the VPN connection's current state.",
                ),
                &["vpn", "state"],
            )
            .unwrap(),
        );
        let vpn_state = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_vpn_state",
                    "1 for the whole VPN's current state, as /health reports it.",
                ),
                &["state"],
            )
            .unwrap(),
        );
        let send_delay = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tunnelkeeper_probe_send_delay_seconds",
                    "How long after its scheduled time each echo request went out.",
                )
                .buckets(SEND_DELAY_BUCKETS.to_vec()),
            )
            .unwrap(),
        );
        let stray_replies = register(&registry, IntCounter::new(
            "tunnelkeeper_probe_stray_replies_total",
            "Replies that matched no request waiting for them (late replies to timed-out requests).",
        ).unwrap());
        let socket_reopens = register(
            &registry,
            IntCounter::new(
                "tunnelkeeper_icmp_socket_reopens_total",
                "Fresh ICMP sockets taken by pingers after consecutive timeouts.",
            )
            .unwrap(),
        );
        let schedule_slips = register(
            &registry,
            IntCounter::new(
                "tunnelkeeper_probe_schedule_slips_total",
                "Echo requests skipped because a pinger fell behind its schedule.",
            )
            .unwrap(),
        );
        let socket_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_icmp_socket_info",
                    "The ICMP socket type in use (dgram or raw).",
                ),
                &["type"],
            )
            .unwrap(),
        );
        socket_info.with_label_values(&[socket_type]).set(1);
        let buffer = register(
            &registry,
            IntGauge::new(
                "tunnelkeeper_icmp_receive_buffer_bytes",
                "Receive buffer of the ICMP socket as granted by the kernel.",
            )
            .unwrap(),
        );
        buffer.set(receive_buffer as i64);
        let build = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_build_info",
                    "Always 1; the labels tell the version.",
                ),
                &["version"],
            )
            .unwrap(),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let targets_configured = register(
            &registry,
            IntGauge::new(
                "tunnelkeeper_targets_configured",
                "Probe targets in the running config.",
            )
            .unwrap(),
        );
        targets_configured.set(config.targets.len() as i64);
        let warnings = register(
            &registry,
            IntGauge::new(
                "tunnelkeeper_config_warnings",
                "Warnings the running config raised (see the log and /status).",
            )
            .unwrap(),
        );
        warnings.set(config.warnings.len() as i64);

        let targets = config
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
                    ("target", t.name.as_str()),
                    ("tunnel", tunnel),
                    ("vpn", vpn),
                ])
            })
            .collect();

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

        let aws = config.aws.as_ref().map(|_| {
            let ec2_requests = register(&registry, IntCounterVec::new(
                Opts::new("tunnelkeeper_ec2_requests_total", "DescribeVpnConnections calls by outcome: ok or the kind of failure."),
                &["outcome"],
            ).unwrap());
            let cloudwatch_requests = register(&registry, IntCounterVec::new(
                Opts::new("tunnelkeeper_cloudwatch_requests_total", "PutMetricData calls by outcome: ok or the kind of failure."),
                &["outcome"],
            ).unwrap());
            for outcome in std::iter::once("ok").chain(AwsErrorKind::ALL.iter().map(|k| k.label())) {
                ec2_requests.with_label_values(&[outcome]);
                if config.aws.as_ref().is_some_and(|a| a.cloudwatch_namespace.is_some()) {
                    cloudwatch_requests.with_label_values(&[outcome]);
                }
            }
            let accepted_routes = register(&registry, IntGaugeVec::new(
                Opts::new("tunnelkeeper_tunnel_accepted_routes", "BGP routes AWS accepted on the tunnel (EC2 telemetry); -1 when not reported."),
                &["vpn", "tunnel"],
            ).unwrap());
            let waits_for_datacenter = register(&registry, IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_recovery_needs_datacenter",
                    "1 when the tunnel options (StartupAction=add, DpdTimeoutAction=clear) leave a dropped tunnel down until the datacenter sends traffic.",
                ),
                &["vpn", "tunnel"],
            ).unwrap());
            for c in config.connections.iter().filter(|c| c.id.is_some()) {
                for t in &c.tunnels {
                    accepted_routes.with_label_values(&[c.name.as_str(), t.name.as_str()]).set(-1);
                    waits_for_datacenter.with_label_values(&[c.name.as_str(), t.name.as_str()]).set(0);
                }
            }
            AwsSeries {
                ec2_requests,
                ec2_last_success: register(&registry, Gauge::new(
                    "tunnelkeeper_ec2_last_success_timestamp_seconds",
                    "When DescribeVpnConnections last answered, as a Unix time (0: never).",
                ).unwrap()),
                ec2_answer_age: register(&registry, Gauge::new(
                    "tunnelkeeper_ec2_answer_age_seconds",
                    "Age of the last good EC2 answer (-1: none yet).",
                ).unwrap()),
                control_plane_stale: register(&registry, IntGauge::new(
                    "tunnelkeeper_control_plane_stale",
                    "1 when the last good EC2 answer is older than three poll intervals.",
                ).unwrap()),
                accepted_routes,
                waits_for_datacenter,
                cloudwatch_requests,
            }
        });
        if let Some(a) = &aws {
            a.ec2_answer_age.set(-1.0);
        }

        let alerts_firing = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_alerts_firing",
                    "Alerts firing now, by class (inhibited and silenced ones included).",
                ),
                &["alert", "severity"],
            )
            .unwrap(),
        );
        for class in AlertClass::ALL {
            alerts_firing
                .with_label_values(&[class.name(), class.severity().label()])
                .set(0);
        }
        let notifications = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "tunnelkeeper_notifications_total",
                    "Notification deliveries by sink and outcome (delivered or failed).",
                ),
                &["sink", "outcome"],
            )
            .unwrap(),
        );
        for (i, sink) in config.alerts.sinks.iter().enumerate() {
            for outcome in ["delivered", "failed"] {
                notifications
                    .with_label_values(&[format!("{}[{i}]", sink.kind.label()).as_str(), outcome]);
            }
        }
        let outbox_length = register(
            &registry,
            IntGauge::new(
                "tunnelkeeper_outbox_length",
                "Notifications waiting for delivery.",
            )
            .unwrap(),
        );
        let outbox_dropped = register(
            &registry,
            IntCounter::new(
                "tunnelkeeper_outbox_dropped_total",
                "Notifications dropped because the outbox was full.",
            )
            .unwrap(),
        );
        let state_save_failures = register(
            &registry,
            IntCounter::new(
                "tunnelkeeper_state_save_failures_total",
                "Failed writes of the alert state file.",
            )
            .unwrap(),
        );

        let metrics = Self {
            reload_successful,
            reload_success_time,
            alerts_firing,
            notifications,
            outbox_length,
            outbox_dropped,
            state_save_failures,
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
        for (ci, c) in config.connections.iter().enumerate() {
            for ti in 0..c.tunnels.len() {
                let unknown = Verdict::Unknown {
                    reason: String::new(),
                };
                metrics.set_tunnel(
                    TunnelId {
                        connection: ci,
                        tunnel: ti,
                    },
                    &unknown,
                    &unknown,
                    &unknown,
                );
            }
            metrics.set_connection(
                ci,
                &ConnectionState::Unknown {
                    reason: String::new(),
                },
            );
        }
        metrics.set_vpn(&VpnState::Starting);
        metrics.set_reload(reload);
        metrics
    }

    /// Sets the reload gauges.
    pub fn set_reload(&self, status: ReloadStatus) {
        self.reload_successful.set(i64::from(status.successful));
        self.reload_success_time
            .set(status.last_success.as_millis() as f64 / 1000.0);
    }

    /// Starts a target's counters where an earlier generation left them (after a reload).
    pub fn seed(&self, target: TargetId, stats: &crate::probe::stats::StatsSummary) {
        let Some(s) = self.targets.get(target.0) else {
            return;
        };
        s.sent.fetch_add(stats.sent, Ordering::Relaxed);
        s.replies.fetch_add(stats.received, Ordering::Relaxed);
        s.lost[0].fetch_add(stats.timeouts, Ordering::Relaxed);
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

    /// Counts one EC2 call by outcome.
    pub fn ec2_request(&self, outcome: &str) {
        if let Some(a) = &self.aws {
            a.ec2_requests.with_label_values(&[outcome]).inc();
        }
    }

    /// Records a good EC2 answer.
    pub fn ec2_success(&self, at: Timestamp) {
        if let Some(a) = &self.aws {
            a.ec2_last_success.set(at.as_millis() as f64 / 1000.0);
        }
    }

    /// Sets the age of the last good EC2 answer.
    pub fn set_ec2_answer_age(&self, age: Option<f64>) {
        if let Some(a) = &self.aws {
            a.ec2_answer_age.set(age.unwrap_or(-1.0));
        }
    }

    /// Sets whether the control plane is stale.
    pub fn set_control_plane_stale(&self, stale: bool) {
        if let Some(a) = &self.aws {
            a.control_plane_stale.set(i64::from(stale));
        }
    }

    /// Sets a tunnel's EC2-reported figures.
    pub fn set_tunnel_aws(&self, id: TunnelId, reading: &TunnelReading) {
        let Some(a) = &self.aws else { return };
        let (vpn, tunnel) = &self.tunnel_labels[id.connection][id.tunnel];
        let routes = reading
            .telemetry
            .as_ref()
            .and_then(|t| t.accepted_route_count)
            .map_or(-1, i64::from);
        a.accepted_routes
            .with_label_values(&[vpn.as_str(), tunnel.as_str()])
            .set(routes);
        let waits = reading
            .options
            .as_ref()
            .is_some_and(|o| o.waits_for_datacenter());
        a.waits_for_datacenter
            .with_label_values(&[vpn.as_str(), tunnel.as_str()])
            .set(i64::from(waits));
    }

    /// Counts one CloudWatch call by outcome.
    pub fn cloudwatch_put(&self, outcome: &str) {
        if let Some(a) = &self.aws {
            a.cloudwatch_requests.with_label_values(&[outcome]).inc();
        }
    }

    /// Sets the firing-alert gauges from the engine's views.
    pub fn set_alerts(&self, views: &[AlertView]) {
        for class in AlertClass::ALL {
            let n = views
                .iter()
                .filter(|v| v.alert == class && v.state != "pending")
                .count();
            self.alerts_firing
                .with_label_values(&[class.name(), class.severity().label()])
                .set(n as i64);
        }
    }

    /// Counts one delivery outcome of a sink.
    pub fn notification(&self, sink: &str, outcome: &str) {
        self.notifications.with_label_values(&[sink, outcome]).inc();
    }

    /// Sets the outbox figures.
    pub fn set_outbox(&self, length: usize, dropped_total: u64) {
        self.outbox_length.set(length as i64);
        let seen = self.outbox_dropped.get();
        if dropped_total > seen {
            self.outbox_dropped.inc_by(dropped_total - seen);
        }
    }

    /// Counts a failed state write.
    pub fn state_save_failed(&self) {
        self.state_save_failures.inc();
    }

    /// Records how late after its scheduled time a request went out.
    pub fn record_send_delay(&self, delay: std::time::Duration) {
        self.send_delay.observe(delay.as_secs_f64());
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> Vec<u8> {
        let mut text = String::new();
        self.render_to(|chunk| {
            text.push_str(&chunk);
            true
        });
        text.into_bytes()
    }

    /// Renders every metric in the Prometheus text format, handing the text to `sink` in
    /// pieces of about [`RENDER_CHUNK`] bytes, so that a scrape of 10,000 targets (about
    /// 30 MB) never sits in memory whole. Stops early when `sink` returns false; returns
    /// whether every piece was taken.
    pub fn render_to(&self, sink: impl FnMut(String) -> bool) -> bool {
        let mut registry = Vec::with_capacity(64 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut registry)
            .expect("text encoding into a Vec cannot fail");
        let mut out = Chunks {
            buf: String::from_utf8(registry).expect("the text format is UTF-8"),
            sink,
            closed: false,
        };
        self.render_targets(&mut out);
        out.flush();
        !out.closed
    }

    /// Writes the per-target families.
    fn render_targets(&self, out: &mut dyn std::fmt::Write) {
        let targets = &self.targets[..];
        if targets.is_empty() {
            return;
        }
        let counter =
            |out: &mut dyn std::fmt::Write, name: &str, t: &TargetCounters, v: &AtomicU64| {
                let _ = writeln!(out, "{name}{{{}}} {}", t.labels, v.load(Ordering::Relaxed));
            };
        // The outcome counters of each target are read together, answers before requests,
        // so that a scrape shows every request with its answer (at most the one in flight
        // between the two reads differs), never more answers than requests.
        let mut replies = Vec::with_capacity(targets.len());
        let mut lost = Vec::with_capacity(targets.len());
        let mut sent = Vec::with_capacity(targets.len());
        for t in targets {
            replies.push(t.replies.load(Ordering::Acquire));
            lost.push(t.lost.each_ref().map(|l| l.load(Ordering::Acquire)));
            sent.push(t.sent.load(Ordering::Relaxed));
        }
        write_values(
            out,
            "tunnelkeeper_probe_sent_total",
            "Echo requests whose outcome is known.",
            targets,
            &sent,
        );
        write_values(
            out,
            "tunnelkeeper_probe_replies_total",
            "Echo replies received within the timeout.",
            targets,
            &replies,
        );
        let mut i = 0;
        write_family(
            out,
            "tunnelkeeper_probe_lost_total",
            "counter",
            "Echo requests without a reply, by reason.",
            targets,
            |out, t| {
                for (reason, n) in LOSS_REASONS.iter().zip(lost[i]) {
                    let _ = writeln!(
                        out,
                        "tunnelkeeper_probe_lost_total{{{},reason=\"{reason}\"}} {n}",
                        t.labels
                    );
                }
                i += 1;
            },
        );
        write_family(
            out,
            "tunnelkeeper_probe_rtt_seconds",
            "histogram",
            "Round-trip time of echo replies.",
            targets,
            |out, t| {
                let name = "tunnelkeeper_probe_rtt_seconds";
                let mut cumulative = 0;
                for (le, n) in RTT_BUCKETS.iter().zip(&t.rtt_buckets) {
                    cumulative += n.load(Ordering::Relaxed);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{{},le=\"{le}\"}} {cumulative}",
                        t.labels
                    );
                }
                // Read last and never below the buckets, so the histogram stays monotonic
                // while the monitor writes.
                let count = t.rtt_count.load(Ordering::Relaxed).max(cumulative);
                let _ = writeln!(out, "{name}_bucket{{{},le=\"+Inf\"}} {count}", t.labels);
                let _ = writeln!(out, "{name}_sum{{{}}} {}", t.labels, t.rtt_sum.get());
                let _ = writeln!(out, "{name}_count{{{}}} {count}", t.labels);
            },
        );
        write_family(
            out,
            "tunnelkeeper_probe_last_rtt_seconds",
            "gauge",
            "Round-trip time of the last echo reply.",
            targets,
            |out, t| {
                let _ = writeln!(
                    out,
                    "tunnelkeeper_probe_last_rtt_seconds{{{}}} {}",
                    t.labels,
                    t.last_rtt.get()
                );
            },
        );
        write_family(
            out,
            "tunnelkeeper_probe_consecutive_lost",
            "gauge",
            "Echo requests lost in a row.",
            targets,
            |out, t| {
                counter(
                    out,
                    "tunnelkeeper_probe_consecutive_lost",
                    t,
                    &t.consecutive_lost,
                )
            },
        );
        write_family(
            out,
            "tunnelkeeper_target_up",
            "gauge",
            "1 when the target counts as up, else 0.",
            targets,
            |out, t| counter(out, "tunnelkeeper_target_up", t, &t.up),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn metrics() -> Metrics {
        let config = Config::parse(
            r#"
            [[vpn]]
            name = "dc"
              [[vpn.tunnel]]
              name = "dc-a"
              targets = ["172.16.1.10"]
              [[vpn.tunnel]]
              name = "dc-b"
              targets = ["172.16.2.10"]
            "#,
            "test",
        )
        .unwrap();
        let reload = ReloadStatus {
            successful: true,
            last_success: Timestamp::from_millis(0),
        };
        Metrics::new(&config, "raw", 0, reload)
    }

    fn lines_of(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn per_target_families_count_every_outcome() {
        let m = metrics();
        let reply = |ms| ProbeOutcome::Reply {
            rtt: Duration::from_micros(ms),
        };
        m.record_probe(TargetId(0), &reply(80), 0);
        m.record_probe(TargetId(0), &reply(3_000), 0);
        m.record_probe(TargetId(0), &reply(9_000_000), 0);
        let timeout = ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        };
        m.record_probe(TargetId(0), &timeout, 1);
        m.set_target(
            TargetId(0),
            &Verdict::Up {
                since: Timestamp::from_millis(0),
            },
        );
        let text = String::from_utf8(m.render()).unwrap();
        let labels = r#"address="172.16.1.10",target="172.16.1.10",tunnel="dc-a",vpn="dc""#;
        for line in [
            format!("tunnelkeeper_probe_sent_total{{{labels}}} 4"),
            format!("tunnelkeeper_probe_replies_total{{{labels}}} 3"),
            format!("tunnelkeeper_probe_lost_total{{{labels},reason=\"timeout\"}} 1"),
            format!("tunnelkeeper_probe_lost_total{{{labels},reason=\"icmp_error\"}} 0"),
            format!("tunnelkeeper_probe_consecutive_lost{{{labels}}} 1"),
            format!("tunnelkeeper_target_up{{{labels}}} 1"),
            format!("tunnelkeeper_probe_last_rtt_seconds{{{labels}}} 9"),
            "tunnelkeeper_probe_sent_total{address=\"172.16.2.10\",target=\"172.16.2.10\",tunnel=\"dc-b\",vpn=\"dc\"} 0".to_string(),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing in\n{text}");
        }
        // Cumulative buckets; the 9 s reply is above the last bucket, in +Inf only.
        let buckets = lines_of(
            &text,
            &format!("tunnelkeeper_probe_rtt_seconds_bucket{{{labels}"),
        );
        let counts: Vec<&str> = buckets
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(
            counts,
            ["1", "1", "1", "1", "1", "2", "2", "2", "2", "2", "2", "2", "2", "2", "3"]
        );
        assert!(buckets[0].contains("le=\"0.0001\"") && buckets[14].contains("le=\"+Inf\""));
        assert!(text.contains(&format!(
            "tunnelkeeper_probe_rtt_seconds_count{{{labels}}} 3\n"
        )));
        let sum = lines_of(
            &text,
            "tunnelkeeper_probe_rtt_seconds_sum{address=\"172.16.1.10\"",
        );
        let sum: f64 = sum[0].rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 9.00308).abs() < 1e-9, "{sum}");
        // One HELP and TYPE per family.
        assert_eq!(
            lines_of(&text, "# TYPE tunnelkeeper_probe_rtt_seconds ").len(),
            1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value("plain"), "plain");
        assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn send_delays_land_in_their_histogram() {
        let m = metrics();
        m.record_send_delay(Duration::from_micros(300));
        m.record_send_delay(Duration::from_millis(30));
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("tunnelkeeper_probe_send_delay_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("tunnelkeeper_probe_send_delay_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("tunnelkeeper_probe_send_delay_seconds_count 2\n"));
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;

    #[test]
    fn large_renders_come_in_pieces_and_stop_when_the_client_goes() {
        let mut toml = String::new();
        for i in 0..3000 {
            toml.push_str(&format!(
                "[[target]]\naddress = \"127.1.{}.{}\"\n",
                i / 250,
                i % 250 + 1
            ));
        }
        let config = Config::parse(&toml, "test").unwrap();
        let reload = ReloadStatus {
            successful: true,
            last_success: Timestamp::from_millis(0),
        };
        let m = Metrics::new(&config, "raw", 0, reload);
        let mut pieces = Vec::new();
        assert!(m.render_to(|piece| {
            pieces.push(piece);
            true
        }));
        assert!(pieces.len() > 4, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() < RENDER_CHUNK + 1024));
        assert!(pieces.iter().all(|p| p.ends_with('\n')));
        assert_eq!(pieces.concat().into_bytes(), m.render());

        let mut calls = 0;
        let complete = m.render_to(|_| {
            calls += 1;
            false
        });
        assert_eq!(calls, 1, "a refused piece ends the render");
        assert!(!complete);
    }
}
