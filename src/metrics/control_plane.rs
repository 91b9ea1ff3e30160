//! The control-plane series (meaningful with `[aws]`): AWS maintenance per tunnel,
//! connections EC2 does not know, and the advisories on tunnel options and routes.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::register;
use crate::config::Config;
use crate::health::advice::CODES;
use crate::health::ControlPlane;
use crate::messages::{AwsErrorKind, MaintenanceResult};
use crate::types::TunnelId;

pub(super) struct ControlPlaneSeries {
    pub(super) maintenance_requests: IntCounterVec,
    maintenance_pending: IntGaugeVec,
    maintenance_auto_apply: GaugeVec,
    maintenance_last_applied: GaugeVec,
    connection_not_found: IntGaugeVec,
    advisory: IntGaugeVec,
    /// Every polled tunnel with its `vpn` and `tunnel` labels.
    tunnels: Vec<(TunnelId, String, String)>,
    /// Every polled connection: position, `vpn` and `vpn_id` labels.
    connections: Vec<(usize, String, String)>,
}

impl ControlPlaneSeries {
    /// Registers the series, every one at zero.
    pub(super) fn new(registry: &Registry, config: &Config) -> Self {
        let tunnel_gauge = |name: &str, help: &str| {
            register(
                registry,
                IntGaugeVec::new(Opts::new(name, help), &["vpn", "tunnel"]).unwrap(),
            )
        };
        let tunnel_time = |name: &str, help: &str| {
            register(
                registry,
                GaugeVec::new(Opts::new(name, help), &["vpn", "tunnel"]).unwrap(),
            )
        };
        let maintenance_requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tunnelkeeper_ec2_maintenance_requests_total",
                    "GetVpnTunnelReplacementStatus calls by outcome: ok or the kind of failure.",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        for outcome in std::iter::once("ok").chain(AwsErrorKind::ALL.iter().map(|k| k.label())) {
            maintenance_requests.with_label_values(&[outcome]);
        }
        let maintenance_pending = tunnel_gauge(
            "tunnelkeeper_tunnel_maintenance_pending",
            "1 when AWS announced maintenance (a tunnel endpoint replacement) for the tunnel.",
        );
        let maintenance_auto_apply = tunnel_time(
            "tunnelkeeper_tunnel_maintenance_auto_apply_timestamp_seconds",
            "When AWS applies the pending maintenance by itself, as a Unix time (0: none pending).",
        );
        let maintenance_last_applied = tunnel_time(
            "tunnelkeeper_tunnel_maintenance_last_applied_timestamp_seconds",
            "When AWS last applied maintenance to the tunnel (replaced its endpoint), as a Unix time (0: never, as far as AWS says).",
        );
        let connection_not_found = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_connection_not_found",
                    "1 when EC2 does not know the configured connection id (missing, deleted or deleting): the config no longer matches AWS.",
                ),
                &["vpn", "vpn_id"],
            )
            .unwrap(),
        );
        let advisory = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_advisory",
                    "1 while an advisory (see /status) holds for the tunnel: tunnel options or route health.",
                ),
                &["vpn", "tunnel", "code"],
            )
            .unwrap(),
        );
        let mut tunnels = Vec::new();
        let mut connections = Vec::new();
        for (ci, c) in config.connections.iter().enumerate() {
            let Some(id) = &c.id else { continue };
            connection_not_found
                .with_label_values(&[c.name.as_str(), id.as_str()])
                .set(0);
            connections.push((ci, c.name.to_string(), id.to_string()));
            for (ti, t) in c.tunnels.iter().enumerate() {
                let labels = [c.name.as_str(), t.name.as_str()];
                maintenance_pending.with_label_values(&labels).set(0);
                maintenance_auto_apply.with_label_values(&labels).set(0.0);
                maintenance_last_applied.with_label_values(&labels).set(0.0);
                for code in CODES {
                    advisory
                        .with_label_values(&[c.name.as_str(), t.name.as_str(), code])
                        .set(0);
                }
                tunnels.push((
                    TunnelId {
                        connection: ci,
                        tunnel: ti,
                    },
                    c.name.to_string(),
                    t.name.to_string(),
                ));
            }
        }
        Self {
            maintenance_requests,
            maintenance_pending,
            maintenance_auto_apply,
            maintenance_last_applied,
            connection_not_found,
            advisory,
            tunnels,
            connections,
        }
    }
}

impl super::Metrics {
    /// Counts one `GetVpnTunnelReplacementStatus` call by outcome.
    pub fn ec2_maintenance_request(&self, result: &MaintenanceResult) {
        let a = &self.aws;
        let outcome = match result {
            MaintenanceResult::Reading(_) => "ok",
            MaintenanceResult::Failed { kind, .. } => kind.label(),
        };
        a.control
            .maintenance_requests
            .with_label_values(&[outcome])
            .inc();
    }

    /// Sets the maintenance, not-found and advisory gauges from the control-plane tracker.
    pub fn set_control_plane(&self, control: &ControlPlane) {
        let a = &self.aws;
        let s = &a.control;
        for (id, vpn, tunnel) in &s.tunnels {
            let labels = [vpn.as_str(), tunnel.as_str()];
            let m = control.maintenance(*id).map(|m| &m.reading);
            let seconds = |t: Option<crate::types::Timestamp>| {
                t.map_or(0.0, |t| t.wall_millis() as f64 / 1000.0)
            };
            s.maintenance_pending
                .with_label_values(&labels)
                .set(i64::from(m.is_some_and(|m| m.pending_text().is_some())));
            s.maintenance_auto_apply
                .with_label_values(&labels)
                .set(seconds(
                    m.filter(|m| m.pending_text().is_some())
                        .and_then(|m| m.auto_apply_after),
                ));
            s.maintenance_last_applied
                .with_label_values(&labels)
                .set(seconds(m.and_then(|m| m.last_applied)));
            for code in CODES {
                let on = control
                    .advisories()
                    .iter()
                    .any(|adv| adv.id == *id && adv.code == code);
                s.advisory
                    .with_label_values(&[vpn.as_str(), tunnel.as_str(), code])
                    .set(i64::from(on));
            }
        }
        for (ci, vpn, vpn_id) in &s.connections {
            s.connection_not_found
                .with_label_values(&[vpn.as_str(), vpn_id.as_str()])
                .set(i64::from(control.not_found(*ci).is_some()));
        }
    }
}
