//! The path-MTU series: per probed tunnel, the largest IP packet that crossed at the last
//! measurement and how its limit was found.

use prometheus::{IntGaugeVec, Opts, Registry};

use super::register;
use crate::config::Config;
use crate::messages::{MtuLimitFound, PathMtuReading};
use crate::types::TunnelId;

const FOUND: [MtuLimitFound; 4] = [
    MtuLimitFound::Reply,
    MtuLimitFound::FragNeeded,
    MtuLimitFound::Silent,
    MtuLimitFound::Local,
];

pub(super) struct PathMtuSeries {
    bytes: IntGaugeVec,
    found: IntGaugeVec,
    expected: IntGaugeVec,
}

impl PathMtuSeries {
    /// Registers the series, at zero for every tunnel that is probed.
    pub(super) fn new(
        registry: &Registry,
        config: &Config,
        labels: &[Vec<(String, String)>],
    ) -> Self {
        let bytes = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_path_mtu_bytes",
                    "The largest IP packet (bytes, DF set) that crossed the tunnel at the last path-MTU measurement; 0 before the first or while nothing comes back.",
                ),
                &["vpn", "tunnel"],
            )
            .unwrap(),
        );
        let found = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_path_mtu_found",
                    "1 for how the last path-MTU measurement found its limit: reply (1500 bytes crossed), frag_needed (a router said so), silent (larger packets vanished without ICMP) or local (this host's own MTU).",
                ),
                &["vpn", "tunnel", "found"],
            )
            .unwrap(),
        );
        let expected = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_path_mtu_expected_bytes",
                    "The IP packet size (bytes) that should cross the tunnel with DF set: [mtu] expected or the tunnel's mtu.",
                ),
                &["vpn", "tunnel"],
            )
            .unwrap(),
        );
        let series = Self {
            bytes,
            found,
            expected,
        };
        if config.mtu.enabled {
            for id in config.tunnel_ids() {
                let tunnel = config.tunnel(id);
                if !tunnel.targets.is_empty() {
                    let (vpn, name) = &labels[id.connection][id.tunnel];
                    series
                        .expected
                        .with_label_values(&[vpn.as_str(), name.as_str()])
                        .set(i64::from(tunnel.expected_mtu));
                    series.set(&labels[id.connection][id.tunnel], None);
                }
            }
        }
        series
    }

    pub(super) fn set(&self, (vpn, tunnel): &(String, String), reading: Option<&PathMtuReading>) {
        self.bytes
            .with_label_values(&[vpn.as_str(), tunnel.as_str()])
            .set(reading.map_or(0, |r| i64::from(r.bytes)));
        for found in FOUND {
            self.found
                .with_label_values(&[vpn.as_str(), tunnel.as_str(), found.label()])
                .set(i64::from(reading.is_some_and(|r| r.found == found)));
        }
    }
}

impl super::Metrics {
    /// Sets a tunnel's path-MTU gauges from its last measurement.
    pub fn set_path_mtu(&self, id: TunnelId, reading: Option<&PathMtuReading>) {
        self.path_mtu
            .set(&self.tunnel_labels[id.connection][id.tunnel], reading);
    }
}
