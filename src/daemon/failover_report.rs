//! Reports the failovers the model measured: one log line each and the
//! `tunnelkeeper_failover_seconds` histogram. The detection and the measurement are the
//! core's (`health::failover`); this only shows them.

use tracing::warn;

use crate::config::Config;
use crate::health::HealthModel;
use crate::metrics::Metrics;

/// Logs and counts every failover completed since the last call.
pub fn report(model: &mut HealthModel, config: &Config, metrics: &Metrics) {
    for f in model.take_fresh_failovers() {
        metrics.failover(f.seconds());
        let from: Vec<String> = f
            .from
            .iter()
            .map(|id| {
                format!(
                    "{}/{}",
                    config.connections[id.connection].name,
                    config.tunnel(*id).name
                )
            })
            .collect();
        warn!(
            seconds = format!("{:.1}", f.seconds()),
            from = %from.join(", "),
            lost_at = %f.lost_at,
            restored_at = %f.restored_at,
            "failover: the shared targets answer again over another tunnel"
        );
    }
}
