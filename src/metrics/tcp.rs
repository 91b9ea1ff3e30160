//! The TCP targets' series: each tunnel's MSS (`TCP_MAXSEG` of the latest handshake of a
//! pinned TCP target) and each TCP target's refused streak with its `down_after`, the
//! signal behind `ServiceDown`.

use prometheus::{IntGaugeVec, Opts, Registry};

use super::register;
use crate::config::{Config, TargetScope};
use crate::health::tcp_service;
use crate::health::HealthModel;

pub(super) struct TcpSeries {
    mss: IntGaugeVec,
    refused: IntGaugeVec,
    down_after: IntGaugeVec,
}

/// The `vpn`, `tunnel` and `target` labels of a target.
fn target_labels(config: &Config, t: &crate::config::TargetSpec) -> [String; 3] {
    let (vpn, tunnel) = match t.scope {
        TargetScope::Pinned(id) => (
            config.connections[id.connection].name.to_string(),
            config.tunnel(id).name.to_string(),
        ),
        TargetScope::Shared => (String::new(), String::new()),
    };
    [vpn, tunnel, t.name.to_string()]
}

impl TcpSeries {
    /// Registers the series, at zero for every tunnel with a pinned TCP target and every
    /// TCP target.
    pub(super) fn new(registry: &Registry, config: &Config) -> Self {
        let mss = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tcp_mss_bytes",
                    "The MSS (TCP_MAXSEG, bytes) of the latest completed handshake of a TCP target pinned to the tunnel; 0 before one. Over the path MTU less 40 is the missing MSS clamp.",
                ),
                &["vpn", "tunnel"],
            )
            .unwrap(),
        );
        let refused = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tcp_service_refused_in_a_row",
                    "Connects to a TCP target refused in a row (the host reset them); down_after or more is ServiceDown.",
                ),
                &["vpn", "tunnel", "target"],
            )
            .unwrap(),
        );
        let down_after = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tcp_service_down_after",
                    "The target's down_after: tunnelkeeper_tcp_service_refused_in_a_row at or above it is ServiceDown (Prometheus rules compare the two, whatever the config says).",
                ),
                &["vpn", "tunnel", "target"],
            )
            .unwrap(),
        );
        let series = Self {
            mss,
            refused,
            down_after,
        };
        for t in config.targets.iter().filter(|t| t.tcp_port.is_some()) {
            let labels = target_labels(config, t);
            series.refused.with_label_values(&labels).set(0);
            series
                .down_after
                .with_label_values(&labels)
                .set(i64::from(t.probe.down_after));
            let [vpn, tunnel, _] = &labels;
            if !tunnel.is_empty() {
                series.mss.with_label_values(&[vpn, tunnel]).set(0);
            }
        }
        series
    }
}

impl super::Metrics {
    /// Sets the TCP series from the model.
    pub fn set_tcp(&self, config: &Config, model: &HealthModel) {
        for t in config.targets.iter().filter(|t| t.tcp_port.is_some()) {
            let refused = model.target(t.id).service.refused_in_a_row;
            self.tcp
                .refused
                .with_label_values(&target_labels(config, t))
                .set(i64::from(refused));
        }
        for id in config.tunnel_ids() {
            if let Some(mss) = tcp_service::tunnel_mss(config, model, id) {
                let (vpn, tunnel) = &self.tunnel_labels[id.connection][id.tunnel];
                self.tcp
                    .mss
                    .with_label_values(&[vpn.as_str(), tunnel.as_str()])
                    .set(i64::from(mss.bytes));
            }
        }
    }
}
