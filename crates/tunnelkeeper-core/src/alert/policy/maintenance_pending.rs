//! `TunnelMaintenancePending`: AWS announced a tunnel endpoint replacement (info), with
//! when AWS applies it by itself.

use crate::alert::engine::{AlertKey, Conditions};
use crate::alert::policy::outage::{active, startup_add_text};
use crate::alert::policy::Inputs;
use crate::types::{AlertClass, TunnelId};

/// Active for each tunnel with pending maintenance in EC2's last answer.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let mut out = Conditions::new();
    let control = inputs.control;
    for (ci, c) in inputs.config.connections.iter().enumerate() {
        let vpn = c.name.as_str();
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        for (ti, t) in c.tunnels.iter().enumerate() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let pending = control
                .and_then(|cp| cp.maintenance(id))
                .filter(|m| m.reading.pending_text().is_some());
            if let Some(m) = pending {
                let when = m
                    .reading
                    .auto_apply_after
                    .map_or("at a time AWS has not given".to_string(), |t| {
                        format!("after {t}")
                    });
                out.insert(
                AlertKey::tunnel(AlertClass::TunnelMaintenancePending, vpn, t.name.as_str()),
                active(
                    format!("AWS maintenance pending, applied automatically {when}"),
                    format!(
                        "AWS announced tunnel endpoint maintenance ({}); AWS applies it by itself {when} (MaintenanceAutoAppliedAfter), and the tunnel goes down while its endpoint is replaced. Apply it earlier at a quiet time with ReplaceVpnTunnel (tunnel endpoint lifecycle control){}",
                        m.reading.pending_text().unwrap_or_default(),
                        startup_add_text(
                            control
                                .and_then(|cp| cp.tunnel_reading(id))
                                .and_then(|r| r.options.as_ref())
                                .is_some_and(|o| o.startup_add())
                        )
                    ),
                    vpn_id.clone(),
                ),
            );
            }
        }
    }
    out
}
