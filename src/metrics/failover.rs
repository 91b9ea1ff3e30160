//! The failover series: how long the shared datacenter targets were cut off each time the
//! route to them moved to another tunnel (measured by the core's failover tracker).

use prometheus::{Histogram, HistogramOpts, Registry};

use super::{register, Metrics};

/// Seconds: AWS moves a route within its BGP hold time (about 30 s), and a static route
/// or DPD-based failover can take longer.
const FAILOVER_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0,
];

/// Registers the histogram (empty until the first failover).
pub(super) fn histogram(registry: &Registry) -> Histogram {
    register(
        registry,
        Histogram::with_opts(
            HistogramOpts::new(
                "tunnelkeeper_failover_seconds",
                "How long the shared targets were lost at each failover: from the sending of their first lost probe after the active tunnel failed to the sending of their first answered one, over another tunnel.",
            )
            .buckets(FAILOVER_BUCKETS.to_vec()),
        )
        .unwrap(),
    )
}

impl Metrics {
    /// Counts one failover that cut the shared targets off for `seconds`.
    pub fn failover(&self, seconds: f64) {
        self.failover_seconds.observe(seconds);
    }
}
