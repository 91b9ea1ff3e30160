//! `[alerts.lossy]` and `[alerts.slow]`: when a tunnel that is up pages for sustained loss
//! (`TunnelLossy`) or for a median RTT far above its own baseline (`TunnelSlow`).

use std::time::Duration;

/// A share between 0 and 1 (a loss ratio, a multiple's fraction), comparable for config
/// equality on reload (bit for bit: a value read twice from the same text is equal).
#[derive(Clone, Copy, Debug, PartialOrd)]
pub struct Ratio(pub f64);

impl PartialEq for Ratio {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Ratio {}

/// `[alerts.lossy]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossySettings {
    /// The window the loss is measured over (all probes of the tunnel's pinned targets).
    pub window: Duration,
    /// The loss that fires `TunnelLossy` when exceeded; it resolves below half of it.
    pub threshold: Ratio,
}

impl LossySettings {
    /// The shortest window accepted: under it a handful of probes make a percentage.
    pub const MIN_WINDOW: Duration = Duration::from_secs(10);
    /// The longest window accepted.
    pub const MAX_WINDOW: Duration = Duration::from_secs(3600);
    /// The smallest threshold accepted, in percent.
    pub const MIN_THRESHOLD_PERCENT: f64 = 0.1;
    /// The largest threshold accepted, in percent: past it the tunnel is down, not lossy.
    pub const MAX_THRESHOLD_PERCENT: f64 = 50.0;
}

impl Default for LossySettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            threshold: Ratio(0.05),
        }
    }
}

/// `[alerts.slow]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlowSettings {
    /// The window the median RTT is taken over.
    pub window: Duration,
    /// The multiple of the tunnel's baseline that fires `TunnelSlow` when exceeded; it
    /// resolves below `factor / 1.5` times the baseline.
    pub factor: Ratio,
}

impl SlowSettings {
    /// The smallest factor accepted: its resolve level (`factor / 1.5`) must stay above
    /// the baseline itself.
    pub const MIN_FACTOR: f64 = 2.0;
    /// The largest factor accepted.
    pub const MAX_FACTOR: f64 = 100.0;
    /// What the factor is divided by to give the level under which `TunnelSlow` resolves.
    pub const RESOLVE_DIVISOR: f64 = 1.5;

    /// Returns the multiple of the baseline under which `TunnelSlow` resolves.
    pub fn resolve_factor(&self) -> f64 {
        self.factor.0 / Self::RESOLVE_DIVISOR
    }
}

impl Default for SlowSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            factor: Ratio(3.0),
        }
    }
}
