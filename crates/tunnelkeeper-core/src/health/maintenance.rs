//! AWS tunnel endpoint maintenance, pure and sans-IO: what `GetVpnTunnelReplacementStatus`
//! last said of each tunnel, and whether a tunnel's outage is explained by an endpoint
//! replacement (and for how much longer it is given the benefit of the doubt).

use std::time::Duration;

use serde::Serialize;

use crate::messages::MaintenanceReading;
use crate::types::Timestamp;

/// What the last good `GetVpnTunnelReplacementStatus` answer said of one tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelMaintenance {
    /// AWS's maintenance details.
    #[serde(flatten)]
    pub reading: MaintenanceReading,
    /// When AWS said so.
    pub checked_at: Timestamp,
}

/// How an outage relates to an endpoint replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaintenancePhase {
    /// The tunnel went down with the replacement and the grace has not run out: it pages
    /// as `TunnelDownAfterMaintenance`, at the configured severity.
    Grace {
        /// When the replacement happened (`LastMaintenanceApplied`), or when the tunnel
        /// dropped after AWS's auto-apply time had passed.
        replaced_at: Timestamp,
        /// When the grace ends.
        until: Timestamp,
        /// True when AWS has confirmed the replacement (`LastMaintenanceApplied`), false
        /// when it is inferred from pending maintenance past its auto-apply time.
        confirmed: bool,
    },
    /// Still down after the grace: a normal `TunnelDown` (that says why).
    Overdue {
        /// As above.
        replaced_at: Timestamp,
        /// As above.
        confirmed: bool,
    },
}

impl MaintenancePhase {
    /// Returns when the replacement happened and whether AWS confirmed it.
    pub fn replaced_at(self) -> (Timestamp, bool) {
        match self {
            MaintenancePhase::Grace {
                replaced_at,
                confirmed,
                ..
            }
            | MaintenancePhase::Overdue {
                replaced_at,
                confirmed,
            } => (replaced_at, confirmed),
        }
    }
}

/// Decides whether an outage that began at `down_since` is explained by AWS maintenance.
///
/// It is when AWS applied maintenance (`LastMaintenanceApplied`) no more than `grace`
/// before or after the tunnel went down; or when maintenance was pending and its
/// auto-apply time had passed when the tunnel dropped (AWS is probably replacing the
/// endpoint right now; its next answer confirms it). The grace runs from the replacement
/// (or, inferred, from the drop).
pub fn phase(
    m: &TunnelMaintenance,
    down_since: Timestamp,
    now: Timestamp,
    grace: Duration,
) -> Option<MaintenancePhase> {
    let r = &m.reading;
    let confirmed = r
        .last_applied
        .filter(|a| down_since.plus(grace) >= *a && down_since <= a.plus(grace));
    let (replaced_at, confirmed) = match confirmed {
        Some(a) => (a, true),
        None => {
            let auto = r.auto_apply_after?;
            if r.pending_text().is_none() || auto > down_since {
                return None;
            }
            (down_since, false)
        }
    };
    let until = replaced_at.plus(grace);
    Some(if now < until {
        MaintenancePhase::Grace {
            replaced_at,
            until,
            confirmed,
        }
    } else {
        MaintenancePhase::Overdue {
            replaced_at,
            confirmed,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pending: Option<&str>, auto: Option<u64>, applied: Option<u64>) -> TunnelMaintenance {
        TunnelMaintenance {
            reading: MaintenanceReading {
                pending: pending.map(str::to_string),
                auto_apply_after: auto.map(Timestamp::from_secs),
                last_applied: applied.map(Timestamp::from_secs),
            },
            checked_at: Timestamp::from_secs(0),
        }
    }

    const GRACE: Duration = Duration::from_secs(1800);

    #[test]
    fn an_outage_is_explained_by_a_replacement_only_around_it() {
        let t = Timestamp::from_secs;
        // (maintenance, down since, now, expected)
        let cases = [
            // Applied at 10 000, down at 10 005: grace until 11 800.
            (
                m(None, None, Some(10_000)),
                10_005,
                10_100,
                Some(MaintenancePhase::Grace {
                    replaced_at: t(10_000),
                    until: t(11_800),
                    confirmed: true,
                }),
            ),
            (
                m(None, None, Some(10_000)),
                10_005,
                11_800,
                Some(MaintenancePhase::Overdue {
                    replaced_at: t(10_000),
                    confirmed: true,
                }),
            ),
            // Down a little before AWS stamped the replacement.
            (
                m(None, None, Some(10_000)),
                9_990,
                10_100,
                Some(MaintenancePhase::Grace {
                    replaced_at: t(10_000),
                    until: t(11_800),
                    confirmed: true,
                }),
            ),
            // Down hours before or after the replacement: unrelated.
            (m(None, None, Some(10_000)), 1_000, 10_100, None),
            (m(None, None, Some(10_000)), 20_000, 20_100, None),
            // Pending, auto-apply time passed before the drop: inferred, grace from the drop.
            (
                m(Some("Pending"), Some(9_000), None),
                10_000,
                10_100,
                Some(MaintenancePhase::Grace {
                    replaced_at: t(10_000),
                    until: t(11_800),
                    confirmed: false,
                }),
            ),
            // Pending but not due yet: a real outage.
            (m(Some("Pending"), Some(50_000), None), 10_000, 10_100, None),
            // "None" pending text: nothing pending.
            (m(Some("None"), Some(9_000), None), 10_000, 10_100, None),
            (m(None, None, None), 10_000, 10_100, None),
        ];
        for (i, (maint, down, now, expected)) in cases.into_iter().enumerate() {
            assert_eq!(phase(&maint, t(down), t(now), GRACE), expected, "case {i}");
        }
    }
}
