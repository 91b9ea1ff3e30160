//! The log lines of the maintenance decisions: one per change of a tunnel's plan, at INFO
//! for what goes as planned and WARN for a failed replacement.

use tracing::{info, warn};

use crate::config::Config;
use crate::types::TunnelId;
use tunnelkeeper_core::config::maintenance::ApplyMode;
use tunnelkeeper_core::maintenance::tracker::{Outcome, TunnelPlan};
use tunnelkeeper_core::maintenance::{Decision, Progress};

/// Logs a tunnel's new maintenance plan.
pub fn log_plan(config: &Config, id: TunnelId, plan: &TunnelPlan, mode: ApplyMode) {
    let vpn = &config.connections[id.connection].name;
    let tunnel = &config.tunnel(id).name;
    let mode = mode.label();
    match (&plan.progress, &plan.decision) {
        (Progress::Failed { since, why }, _) => {
            warn!(%vpn, %tunnel, mode, %since, %why, "maintenance: tunnel endpoint replacement failed")
        }
        (Progress::Replacing { since }, _) => {
            info!(%vpn, %tunnel, mode, %since, startup_add = plan.startup_add, "maintenance: tunnel endpoint replacement started (ReplaceVpnTunnel)")
        }
        (Progress::Idle, Decision::Apply) => {}
        (Progress::Idle, Decision::WouldApply) => {
            info!(%vpn, %tunnel, mode, "maintenance: a safe moment: would call ReplaceVpnTunnel now (dry-run: nothing is called)")
        }
        (
            Progress::Idle,
            Decision::Wait {
                blocked_by,
                next_window,
            },
        ) => {
            let blocked_by = blocked_by
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            let next_window = next_window.map_or_else(|| "-".into(), |t| t.to_string());
            info!(%vpn, %tunnel, mode, %blocked_by, %next_window, "maintenance: pending, waiting")
        }
        (Progress::Idle, Decision::Idle | Decision::InProgress) => {
            if let Some(Outcome::Recovered { at }) = &plan.outcome {
                info!(%vpn, %tunnel, mode, %at, "maintenance: tunnel endpoint replaced, back up on both planes");
            }
        }
    }
}
