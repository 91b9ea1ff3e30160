//! The brownout series: per tunnel with pinned targets, the loss and median RTT over the
//! `[alerts.lossy]`/`[alerts.slow]` windows and the RTT baseline (`TunnelLossy`,
//! `TunnelSlow`). NaN while a window is not full: "no value" is not 0 % loss.

use prometheus::{GaugeVec, Opts, Registry};

use super::register;
use crate::config::Config;
use crate::history::brownout::BrownoutReading;
use crate::types::TunnelId;

pub(super) struct BrownoutSeries {
    loss: GaugeVec,
    median: GaugeVec,
    baseline: GaugeVec,
}

impl BrownoutSeries {
    /// Registers the series, NaN for every tunnel with pinned targets.
    pub(super) fn new(
        registry: &Registry,
        config: &Config,
        labels: &[Vec<(String, String)>],
    ) -> Self {
        let gauge = |name: &str, help: &str| {
            register(
                registry,
                GaugeVec::new(Opts::new(name, help), &["vpn", "tunnel"]).unwrap(),
            )
        };
        let series = Self {
            loss: gauge(
                "tunnelkeeper_tunnel_window_loss_ratio",
                "Lost share (0 to 1) of the tunnel's pinned targets' probes over [alerts.lossy] window; NaN until the window is full (after a start or an outage).",
            ),
            median: gauge(
                "tunnelkeeper_tunnel_window_rtt_median_seconds",
                "Median RTT of the tunnel's pinned targets over [alerts.slow] window; NaN until the window is full.",
            ),
            baseline: gauge(
                "tunnelkeeper_tunnel_rtt_baseline_seconds",
                "The tunnel's long-run RTT (EWMA of its per-minute medians, frozen while slow) that TunnelSlow compares with; NaN until five minutes are learnt.",
            ),
        };
        for id in config.tunnel_ids() {
            if !config.tunnel(id).targets.is_empty() {
                series.set(
                    &labels[id.connection][id.tunnel],
                    &BrownoutReading::default(),
                );
            }
        }
        series
    }

    fn set(&self, (vpn, tunnel): &(String, String), reading: &BrownoutReading) {
        let labels = [vpn.as_str(), tunnel.as_str()];
        for (gauge, value) in [
            (&self.loss, reading.window_loss_ratio),
            (&self.median, reading.window_rtt_median_seconds),
            (&self.baseline, reading.rtt_baseline_seconds),
        ] {
            gauge
                .with_label_values(&labels)
                .set(value.unwrap_or(f64::NAN));
        }
    }
}

impl super::Metrics {
    /// Sets a tunnel's brownout gauges.
    pub fn set_brownout(&self, id: TunnelId, reading: &BrownoutReading) {
        if let Some(labels) = self
            .tunnel_labels
            .get(id.connection)
            .and_then(|c| c.get(id.tunnel))
        {
            self.brownout.set(labels, reading);
        }
    }
}
