//! The immutable picture of the daemon's state that readers get: `/health` text (rendered
//! once per snapshot, so the SiteScope check only copies bytes) and the `/status` JSON.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use std::sync::Arc;

use serde::Serialize;

use crate::metrics::Metrics;
pub use tunnelkeeper_core::alert::sink_health::SinkHealth;
pub use tunnelkeeper_core::alert::view::AlertView;

use crate::config::{Config, TargetScope};
use crate::health::advice::Advisory;
use crate::health::control_plane::{ControlPlane, ControlPlaneStatus};
use crate::health::maintenance::TunnelMaintenance;
use crate::health::{ConnectionState, HealthModel, Verdict, VpnState};
use crate::messages::TunnelReading;
use crate::probe::stats::{StatsSummary, TargetStats};
use crate::types::{
    ConnectionName, OutsideIp, TargetId, TargetName, Timestamp, TunnelId, TunnelName,
    VpnConnectionId,
};

/// The version of `/status` that docs/status.schema.json describes.
pub const STATUS_SCHEMA_VERSION: u32 = 1;

/// Everything `/health` and `/status` show, as of `generated_at`.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    /// The version of the `/status` layout (docs/status.schema.json); it changes only when
    /// a key changes meaning or goes away.
    pub schema_version: u32,
    /// The VPN verdict.
    pub vpn: VpnState,
    /// When this snapshot was taken.
    pub generated_at: Timestamp,
    /// When the daemon started.
    pub started_at: Timestamp,
    /// The ICMP socket type in use.
    pub icmp_socket: &'static str,
    /// Every connection with its tunnels and their pinned targets.
    pub connections: Vec<ConnectionSnapshot>,
    /// Shared targets.
    pub shared_targets: Vec<TargetSnapshot>,
    /// What EC2 said, when `[aws]` is configured (null without).
    pub control_plane: Option<ControlPlaneStatus>,
    /// Active, pending, inhibited and silenced alerts.
    pub alerts: Vec<AlertView>,
    /// Notifications waiting for delivery.
    pub outbox_length: usize,
    /// Whether each sink takes its pages (in config order).
    pub sinks: Vec<SinkHealth>,
    /// Config warnings, and tunnel options that leave a dropped tunnel down.
    pub warnings: Vec<String>,
    /// Advice from EC2's answers (tunnel options, route health), each with a stable code;
    /// none of it pages.
    pub advisories: Vec<Advisory>,
    /// Recent failovers, oldest first.
    pub failovers: Vec<FailoverView>,
    /// The rendered `/health` page.
    #[serde(skip)]
    pub health: HealthPage,
    /// The metrics of the generation that made this snapshot (they change on reload).
    #[serde(skip)]
    pub metrics: Option<Arc<Metrics>>,
    /// The latency history the NOC page charts (it lives across reloads).
    #[serde(skip)]
    pub history: Option<crate::history::SharedHistory>,
    /// Where the runbook lives (`[alerts] runbook_url`), for the NOC page's alert links.
    #[serde(skip)]
    pub runbook_url: String,
}

/// The `/health` answer: status code and plain-text body.
#[derive(Clone, Debug, Default)]
pub struct HealthPage {
    /// 200 for OK and DEGRADED, 503 for CRITICAL and STARTING.
    pub status: u16,
    /// First line `TUNNELKEEPER <TOKEN>`, then one line per connection, tunnel and shared
    /// target (past [`HEALTH_TARGET_LINES`] shared targets, a count and the ones not up).
    /// Shared, not copied, by every request.
    pub body: bytes::Bytes,
}

/// A connection in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionSnapshot {
    /// Its name.
    pub name: ConnectionName,
    /// Its AWS id, if configured.
    pub id: Option<VpnConnectionId>,
    /// Its verdict.
    #[serde(flatten)]
    pub state: ConnectionState,
    /// Its tunnels.
    pub tunnels: Vec<TunnelSnapshot>,
}

/// A tunnel in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct TunnelSnapshot {
    /// Its name.
    pub name: TunnelName,
    /// Its AWS outside IP, if configured.
    pub outside_ip: Option<OutsideIp>,
    /// The combined verdict.
    #[serde(flatten)]
    pub state: Verdict,
    /// What the pings say.
    pub data_plane: Verdict,
    /// What AWS says.
    pub control_plane: Verdict,
    /// The EC2 telemetry and options behind it, from the last good answer.
    pub aws: Option<TunnelReading>,
    /// AWS's maintenance details (`GetVpnTunnelReplacementStatus`), from the last check.
    pub maintenance: Option<TunnelMaintenance>,
    /// What the daemon decides about pending maintenance (`[maintenance]`), and its last
    /// replacement of the tunnel.
    pub maintenance_plan: Option<tunnelkeeper_core::maintenance::TunnelPlan>,
    /// The last path-MTU measurement (`[mtu]`), if one found anything.
    pub path_mtu: Option<crate::health::path_mtu::TunnelPathMtu>,
    /// The latest MSS a pinned TCP target's handshake got through it.
    pub tcp_mss: Option<crate::health::tcp_service::TunnelMss>,
    /// Loss and median RTT over the brownout windows, and the RTT baseline.
    pub brownout: crate::history::brownout::BrownoutReading,
    /// Its pinned targets.
    pub targets: Vec<TargetSnapshot>,
    /// Why it is down, when the evidence tells (AWS's tunnel logs, maintenance, EC2's
    /// status, ICMP errors, MTU); `null` while up or unknown.
    pub cause: Option<crate::health::cause::Cause>,
    /// Where its AWS tunnel logs are read from, and the last call's failure.
    pub tunnel_logs: tunnelkeeper_core::health::tunnel_log_book::TunnelLogsReading,
}

/// A target in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct TargetSnapshot {
    /// Its name.
    pub name: TargetName,
    /// Its address.
    pub address: Ipv4Addr,
    /// Its verdict.
    #[serde(flatten)]
    pub state: Verdict,
    /// Lost probes in a row.
    pub consecutive_lost: u32,
    /// Counters, loss and RTT.
    #[serde(flatten)]
    pub stats: StatsSummary,
    /// `icmp` or `tcp`.
    pub proto: &'static str,
    /// A TCP target's port.
    pub tcp_port: Option<u16>,
    /// A TCP target's service, once a connect reached the host.
    pub service: Option<ServiceSnapshot>,
    /// When its last reply came (the NOC page's "no reply for"; not on /status).
    #[serde(skip)]
    pub last_reply: Option<Timestamp>,
}

/// A TCP target's service in `/status`.
#[derive(Clone, Debug, Serialize)]
pub struct ServiceSnapshot {
    /// `open` or `refused`.
    pub state: &'static str,
    /// Since when.
    pub since: Option<Timestamp>,
    /// Refused connects in a row.
    pub refused_in_a_row: u32,
    /// `TCP_MAXSEG` of the last completed handshake.
    pub mss_bytes: Option<u32>,
}

impl ServiceSnapshot {
    fn of(service: &crate::health::tcp_service::ServiceHealth) -> Option<Self> {
        let state = match service.last? {
            crate::messages::ServiceAnswer::Open { .. } => "open",
            crate::messages::ServiceAnswer::Refused => "refused",
        };
        Some(Self {
            state,
            since: service.since,
            refused_in_a_row: service.refused_in_a_row,
            mss_bytes: service.mss.map(|(bytes, _)| bytes),
        })
    }
}

/// What the snapshot needs besides the model.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// When the daemon started.
    pub started_at: Timestamp,
    /// The ICMP socket type in use.
    pub icmp_socket: &'static str,
}

impl Snapshot {
    /// Takes a snapshot of the model and the stats at `now`.
    pub fn build(
        config: &Config,
        model: &HealthModel,
        control: Option<&ControlPlane>,
        stats: &[TargetStats],
        meta: Meta,
        now: Timestamp,
    ) -> Self {
        let mut warnings = config.warnings.clone();
        let target = |id: TargetId| {
            let spec = &config.targets[id.0];
            let health = model.target(id);
            TargetSnapshot {
                name: spec.name.clone(),
                address: spec.address,
                state: health.verdict.clone(),
                consecutive_lost: health.consecutive_lost,
                stats: stats[id.0].summary(),
                proto: spec.proto().label(),
                tcp_port: spec.tcp_port,
                service: ServiceSnapshot::of(&health.service),
                last_reply: health.last_reply,
            }
        };
        let connections = config
            .connections
            .iter()
            .enumerate()
            .map(|(ci, c)| ConnectionSnapshot {
                name: c.name.clone(),
                id: c.id.clone(),
                state: model.connection(ci).clone(),
                tunnels: c
                    .tunnels
                    .iter()
                    .enumerate()
                    .map(|(ti, t)| {
                        let id = TunnelId {
                            connection: ci,
                            tunnel: ti,
                        };
                        let h = model.tunnel(id);
                        let aws = control.and_then(|cp| cp.tunnel_reading(id)).cloned();
                        let waits = aws
                            .as_ref()
                            .and_then(|r| r.options.as_ref())
                            .is_some_and(|o| o.waits_for_datacenter());
                        if waits {
                            warnings.push(format!(
                                "tunnel {}: StartupAction=add with DpdTimeoutAction=clear, so after a drop AWS \
                                 leaves it down until the datacenter sends traffic; consider \
                                 StartupAction=start or DpdTimeoutAction=restart",
                                t.name
                            ));
                        }
                        TunnelSnapshot {
                            aws,
                            maintenance: control.and_then(|cp| cp.maintenance(id)).cloned(),
                            maintenance_plan: None,
                            path_mtu: None,
                            tcp_mss: None,
                            brownout: Default::default(),
                            name: t.name.clone(),
                            outside_ip: t.outside_ip,
                            state: h.verdict.clone(),
                            data_plane: h.data_plane.clone(),
                            control_plane: h.control_plane.clone(),
                            targets: t.targets.iter().map(|&id| target(id)).collect(),
                            cause: None,
                            tunnel_logs: Default::default(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let shared_targets = config
            .targets
            .iter()
            .filter(|t| t.scope == TargetScope::Shared)
            .map(|t| target(t.id))
            .collect();
        let mut snapshot = Snapshot {
            schema_version: STATUS_SCHEMA_VERSION,
            vpn: model.vpn().clone(),
            generated_at: now,
            started_at: meta.started_at,
            icmp_socket: meta.icmp_socket,
            connections,
            shared_targets,
            control_plane: control.map(|cp| cp.status(now)),
            alerts: Vec::new(),
            outbox_length: 0,
            sinks: Vec::new(),
            warnings,
            advisories: control
                .map(|cp| cp.advisories().to_vec())
                .unwrap_or_default(),
            failovers: model
                .failovers()
                .recent()
                .map(|f| FailoverView::new(config, f))
                .collect(),
            health: HealthPage::default(),
            metrics: None,
            history: None,
            runbook_url: config.alerts.runbook_url.clone(),
        };
        snapshot.health = render_health(&snapshot);
        snapshot
    }
}

impl Snapshot {
    /// Adds what is known of the sinks, with a `paging:` line on `/health` for each one
    /// failing (the status code and first line stay the tunnels').
    pub fn set_sinks(&mut self, sinks: &[SinkHealth]) {
        self.sinks = sinks.to_vec();
        let lines = paging_lines(sinks);
        if lines.is_empty() {
            return;
        }
        let mut body = self.health.body.to_vec();
        body.extend_from_slice(lines.as_bytes());
        self.health.body = bytes::Bytes::from(body);
    }
}

/// One line per failing sink: `paging: sns:noc-page FAILING since T (4 in a row): error`.
pub fn paging_lines(sinks: &[SinkHealth]) -> String {
    let mut out = String::new();
    for s in sinks.iter().filter(|s| !s.ok) {
        let _ = writeln!(
            out,
            "paging: {} FAILING since {} ({} deliveries in a row failed): {}",
            s.name,
            s.failing_since.map_or("-".to_string(), |t| t.to_string()),
            s.consecutive_failures,
            s.error.as_deref().unwrap_or("no error text")
        );
    }
    out
}

/// One failover as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverView {
    /// When the shared targets stopped answering.
    pub lost_at: Timestamp,
    /// When they answered again, over another tunnel.
    pub restored_at: Timestamp,
    /// How long they were lost, in seconds.
    pub seconds: f64,
    /// The tunnels traffic moved away from.
    pub from: Vec<FailoverTunnel>,
}

/// A tunnel by its connection's and its own name.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverTunnel {
    pub vpn: String,
    pub tunnel: String,
}

impl FailoverView {
    /// Names the failover's tunnels from the config.
    pub fn new(config: &Config, f: &crate::health::failover::Failover) -> Self {
        Self {
            lost_at: f.lost_at,
            restored_at: f.restored_at,
            seconds: (f.seconds() * 1000.0).round() / 1000.0,
            from: f
                .from
                .iter()
                .map(|id| FailoverTunnel {
                    vpn: config.connections[id.connection].name.to_string(),
                    tunnel: config.tunnel(*id).name.to_string(),
                })
                .collect(),
        }
    }
}

/// Shared targets listed one per line on `/health`; past that, the page counts them and
/// lists only those not up (up to this many), so that a site probing thousands of hosts
/// does not send SiteScope (and every load balancer check) a page per host.
pub const HEALTH_TARGET_LINES: usize = 32;

/// Renders the SiteScope page: a stable token on the first line (with the reason when not
/// OK), then a line per connection, tunnel and shared target.
fn render_health(s: &Snapshot) -> HealthPage {
    let mut body = String::with_capacity(256);
    let status = match &s.vpn {
        VpnState::Starting => {
            body.push_str("TUNNELKEEPER STARTING: waiting for the first probe results\n");
            503
        }
        VpnState::Ok { since } => {
            let _ = writeln!(body, "TUNNELKEEPER OK since {since}");
            200
        }
        VpnState::Degraded { since, reason } => {
            let _ = writeln!(
                body,
                "TUNNELKEEPER DEGRADED since {since}: {}",
                one_line(reason)
            );
            200
        }
        VpnState::Critical { since, reason } => {
            let _ = writeln!(
                body,
                "TUNNELKEEPER CRITICAL since {since}: {}",
                one_line(reason)
            );
            503
        }
    };
    for c in &s.connections {
        let id =
            c.id.as_ref()
                .map(|id| format!(" ({id})"))
                .unwrap_or_default();
        let _ = match &c.state {
            ConnectionState::Unknown { reason } => {
                writeln!(body, "connection {}{id}: unknown: {reason}", c.name)
            }
            ConnectionState::Healthy { since } => {
                writeln!(body, "connection {}{id}: healthy since {since}", c.name)
            }
            ConnectionState::Degraded { since, reason } => {
                writeln!(
                    body,
                    "connection {}{id}: degraded since {since}: {}",
                    c.name,
                    one_line(reason)
                )
            }
            ConnectionState::Down { since, reason } => {
                writeln!(
                    body,
                    "connection {}{id}: down since {since}: {}",
                    c.name,
                    one_line(reason)
                )
            }
        };
        for t in &c.tunnels {
            let _ = writeln!(
                body,
                "  tunnel {}: {} (data plane {}, control plane {})",
                t.name,
                verdict_text(&t.state),
                t.data_plane.label(),
                t.control_plane.label()
            );
        }
    }
    if let Some(cp) = &s.control_plane {
        if cp.stale {
            let _ = writeln!(
                body,
                "control plane: stale (no EC2 answer for {:.0}s)",
                cp.answer_age_seconds.unwrap_or(0.0)
            );
        }
        for problem in &cp.problems {
            let _ = writeln!(body, "control plane problem: {}", one_line(problem));
        }
    }
    for t in s.connections.iter().flat_map(|c| &c.tunnels) {
        let Some(m) = &t.maintenance else { continue };
        if let Some(text) = m.reading.pending_text() {
            let when = m.reading.auto_apply_after.map_or(String::new(), |a| {
                format!(", applied automatically after {a}")
            });
            let _ = writeln!(
                body,
                "maintenance: tunnel {}: AWS endpoint replacement pending ({}){when}",
                t.name,
                one_line(text)
            );
        }
    }
    let listed: Vec<&TargetSnapshot> = if s.shared_targets.len() <= HEALTH_TARGET_LINES {
        s.shared_targets.iter().collect()
    } else {
        let not_up: Vec<&TargetSnapshot> = s
            .shared_targets
            .iter()
            .filter(|t| !t.state.is_up())
            .collect();
        let _ = writeln!(
            body,
            "shared targets: {} of {} up",
            s.shared_targets.len() - not_up.len(),
            s.shared_targets.len()
        );
        not_up
    };
    for t in listed.iter().take(HEALTH_TARGET_LINES) {
        let _ = writeln!(
            body,
            "shared target {} ({}): {}",
            t.name,
            t.address,
            verdict_text(&t.state)
        );
    }
    if listed.len() > HEALTH_TARGET_LINES {
        let _ = writeln!(
            body,
            "... and {} more not up (see /status)",
            listed.len() - HEALTH_TARGET_LINES
        );
    }
    HealthPage {
        status,
        body: body.into(),
    }
}

fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Unknown { reason } => format!("unknown: {reason}"),
        Verdict::Up { since } => format!("up since {since}"),
        Verdict::Down { since, reason } => format!("down since {since}: {}", one_line(reason)),
    }
}

/// Keeps a reason on one line, so that every state stays one line of the page.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn page(shared: usize) -> String {
        let mut toml = String::new();
        for i in 0..shared {
            toml.push_str(&format!("[[target]]\naddress = \"127.1.0.{}\"\n", i + 1));
        }
        let config = Config::parse(&toml, "test").unwrap();
        let model = HealthModel::new(&config);
        let stats = vec![TargetStats::default(); config.targets.len()];
        let meta = Meta {
            started_at: Timestamp::from_millis(0),
            icmp_socket: "raw",
        };
        let snapshot = Snapshot::build(
            &config,
            &model,
            None,
            &stats,
            meta,
            Timestamp::from_millis(0),
        );
        String::from_utf8(snapshot.health.body.to_vec()).unwrap()
    }

    #[test]
    fn health_lists_a_few_shared_targets_one_per_line() {
        let body = page(3);
        assert!(body.starts_with("TUNNELKEEPER STARTING"), "{body}");
        assert!(
            body.contains("shared target 127.1.0.3 (127.1.0.3): "),
            "{body}"
        );
        assert!(!body.contains("shared targets:"), "{body}");
    }

    #[test]
    fn health_counts_many_shared_targets_and_lists_only_those_not_up() {
        let body = page(HEALTH_TARGET_LINES + 8);
        assert!(body.contains("shared targets: 0 of 40 up\n"), "{body}");
        assert_eq!(
            body.lines()
                .filter(|l| l.starts_with("shared target "))
                .count(),
            HEALTH_TARGET_LINES
        );
        assert!(
            body.ends_with("... and 8 more not up (see /status)\n"),
            "{body}"
        );
    }
}
