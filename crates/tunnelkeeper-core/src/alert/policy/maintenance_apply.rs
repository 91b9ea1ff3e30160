//! The daemon's own maintenance replacements (`[maintenance] apply`):
//! `MaintenanceReplacing` (info) while a replacement it asked for is under way (firing
//! says "started", resolved "finished"), `MaintenanceReplaceFailed` (warning) when the
//! tunnel is not back within `recovery_timeout` or the call failed, and
//! `MaintenanceBlocked` (warning) when AWS applies pending maintenance within a day and no
//! safe moment came, with what blocked it.

use std::time::Duration;

use crate::alert::engine::{AlertKey, Conditions};
use crate::alert::policy::outage::active;
use crate::alert::policy::Inputs;
use crate::config::maintenance::ApplyMode;
use crate::maintenance::{Decision, Progress};
use crate::types::{AlertClass, TunnelId};

/// How long before AWS's auto-apply time a blocked replacement pages.
pub const BLOCKED_WARNING: Duration = Duration::from_secs(24 * 3600);

/// What the datacenter must do after a replacement with `StartupAction=add`.
pub fn datacenter_text(startup_add: bool) -> &'static str {
    if startup_add {
        " With StartupAction=add AWS does not start IKE on the new endpoint: the customer gateway must. The daemon's pings from the VPC are not enough; the datacenter must send traffic into the tunnel (the SiteScope check, or a ping from the customer gateway's side to the tunnel's pinned target) or restart IKE for this tunnel on the customer gateway."
    } else {
        " With StartupAction=start AWS starts IKE itself; nothing is needed from the datacenter."
    }
}

/// Active per tunnel as described in the module's doc.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let mut out = Conditions::new();
    let config = inputs.config;
    let mode = config.maintenance.apply;
    for (ci, c) in config.connections.iter().enumerate() {
        let vpn = c.name.as_str();
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        for (ti, t) in c.tunnels.iter().enumerate() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let Some(plan) = inputs.maintenance.plan(id) else {
                continue;
            };
            let key = |class| AlertKey::tunnel(class, vpn, t.name.as_str());
            match &plan.progress {
                Progress::Replacing { since } => {
                    out.insert(
                        key(AlertClass::MaintenanceReplacing),
                        active(
                            "AWS maintenance being applied: tunnel endpoint replacement started",
                            format!(
                                "tunnelkeeper called ReplaceVpnTunnel (ApplyPendingMaintenance) at {since}, a safe moment in a maintenance window; the tunnel goes down while AWS replaces its endpoint and must be back up on both planes within {}.{}",
                                humantime::format_duration(config.maintenance.recovery_timeout),
                                datacenter_text(plan.startup_add)
                            ),
                            vpn_id.clone(),
                        ),
                    );
                }
                Progress::Failed { since, why } => {
                    out.insert(
                        key(AlertClass::MaintenanceReplaceFailed),
                        active(
                            "tunnel endpoint replacement failed",
                            format!(
                                "The endpoint replacement tunnelkeeper asked for failed at {since}: {why}. No other tunnel is replaced until this one is back up on both planes.{}",
                                datacenter_text(plan.startup_add)
                            ),
                            vpn_id.clone(),
                        ),
                    );
                }
                Progress::Idle => {}
            }
            let Decision::Wait { blocked_by, .. } = &plan.decision else {
                continue;
            };
            let due_soon = plan
                .auto_apply_after
                .is_some_and(|auto| auto <= inputs.now.plus(BLOCKED_WARNING));
            if mode != ApplyMode::Never && plan.pending && due_soon {
                let auto = plan.auto_apply_after.expect("due_soon has it");
                let why = blocked_by
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                out.insert(
                    key(AlertClass::MaintenanceBlocked),
                    active(
                        format!("AWS maintenance not applied yet, AWS applies it after {auto}"),
                        format!(
                            "No safe moment came to apply this tunnel's pending maintenance, and AWS applies it by itself after {auto} (MaintenanceAutoAppliedAfter), whatever the other tunnels do. Blocked by: {why}. Fix what blocks it, or apply it by hand at a quiet time (aws ec2 replace-vpn-tunnel --apply-pending-maintenance).{}",
                            datacenter_text(plan.startup_add)
                        ),
                        vpn_id.clone(),
                    ),
                );
            }
        }
    }
    out
}
