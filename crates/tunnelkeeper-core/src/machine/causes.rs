//! Each down tunnel's cause, gathered from the stores that hold the evidence (the model,
//! the control plane, the path-MTU readings, the tunnel log book), and how it reaches the
//! pages: outage conditions carry it, and a page whose tunnel's logs are being read waits
//! for them, at most `[aws.tunnel_logs] wait` from the call's start.
//!
//! Why a page waits only for a call already under way: the core asks for the logs the
//! moment a tunnel changes, so by the time an outage pages (after `down_after` probes and
//! the rule's `for`) that call has nearly always answered; a page never waits for a call
//! not yet made, a failed call releases it at once, and a slow one releases it at `wait`.

use std::collections::BTreeMap;

use crate::alert::engine::{Condition, Conditions, Notification, NotificationStatus};
use crate::config::Config;
use crate::health::cause::{choose, Cause, CauseSource, Evidence};
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::{MtuVerdict, PathMtus};
use crate::health::tunnel_log_book::TunnelLogBook;
use crate::health::{HealthModel, Verdict};
use crate::messages::ApiTunnelStatus;
use crate::types::{AlertClass, Timestamp, TunnelId};

/// A tunnel by the names alert keys use: (connection, tunnel).
type TunnelNames = (String, String);

/// The causes and page holds of the moment, by tunnel name.
#[derive(Clone, Debug, Default)]
pub struct OutageCauses {
    causes: BTreeMap<TunnelNames, Cause>,
    /// Pages of these tunnels wait until then for a logs call under way.
    holds: BTreeMap<TunnelNames, Timestamp>,
}

impl OutageCauses {
    /// Gathers every down tunnel's cause and every hold.
    pub fn gather(
        config: &Config,
        (model, control, path_mtu): (&HealthModel, Option<&ControlPlane>, &PathMtus),
        logs: &TunnelLogBook,
    ) -> Self {
        let mut out = Self::default();
        for id in config.tunnel_ids() {
            let names = (
                config.connections[id.connection].name.to_string(),
                config.tunnel(id).name.to_string(),
            );
            if let Some(cause) = tunnel_cause(id, (model, control, path_mtu), logs) {
                out.causes.insert(names.clone(), cause);
            }
            if let Some(started) = logs.in_flight_since(id) {
                out.holds.insert(names, started.plus(logs.wait()));
            }
        }
        out
    }

    /// Puts each tunnel outage's cause into its condition.
    pub fn fill(&self, conditions: &mut Conditions) {
        for (key, condition) in conditions.iter_mut() {
            let Condition::Active(details) = condition else {
                continue;
            };
            if !is_outage(key.class) {
                continue;
            }
            if let (Some(vpn), Some(tunnel)) = (&key.vpn, &key.tunnel) {
                details.cause = self.causes.get(&(vpn.clone(), tunnel.clone())).cloned();
            }
        }
    }

    /// Returns until when a new page waits for its tunnel's logs: a firing outage page
    /// whose tunnel has a call under way, unless it already has a cause the logs cannot
    /// beat (the logs' own, or maintenance).
    pub fn hold(&self, n: &Notification, now: Timestamp) -> Option<Timestamp> {
        let settled = n.details.cause.as_ref().is_some_and(|c| {
            matches!(c.source, CauseSource::TunnelLogs | CauseSource::Maintenance)
        });
        if n.status != NotificationStatus::Firing || settled || !is_outage(n.key.class) {
            return None;
        }
        let until = *self
            .holds
            .get(&(n.key.vpn.clone()?, n.key.tunnel.clone()?))?;
        (until > now).then_some(until)
    }

    /// Returns a tunnel's cause, by its names.
    pub fn cause(&self, vpn: &str, tunnel: &str) -> Option<&Cause> {
        self.causes.get(&(vpn.to_string(), tunnel.to_string()))
    }
}

fn is_outage(class: AlertClass) -> bool {
    matches!(
        class,
        AlertClass::TunnelDown | AlertClass::TunnelDownAfterMaintenance
    )
}

/// Returns the cause of a tunnel's outage, `None` while it is not down.
pub fn tunnel_cause(
    id: TunnelId,
    (model, control, path_mtu): (&HealthModel, Option<&ControlPlane>, &PathMtus),
    logs: &TunnelLogBook,
) -> Option<Cause> {
    let tunnel = model.tunnel(id);
    let Verdict::Down { since, .. } = &tunnel.verdict else {
        return None;
    };
    let events = logs.events(id);
    let maintenance = control.and_then(|c| {
        // Only a replacement the outage began with: one from last month explains nothing.
        let phase = c.maintenance_phase(id, *since, *since, std::time::Duration::MAX)?;
        let (replaced, confirmed) = phase.replaced_at();
        let text = if confirmed {
            "AWS replaced the tunnel endpoint (LastMaintenanceApplied)"
        } else {
            "pending AWS maintenance passed its auto-apply time"
        };
        Some((text.to_string(), replaced))
    });
    let aws_status = control.and_then(|c| {
        let t = c.tunnel_reading(id)?.telemetry.as_ref()?;
        let message = t
            .status_message
            .as_deref()
            .filter(|m| !m.trim().is_empty())?;
        (t.status == ApiTunnelStatus::Down)
            .then(|| (message.to_string(), t.last_status_change.unwrap_or(*since)))
    });
    let icmp_error = match &tunnel.data_plane {
        Verdict::Down { since, reason } if reason.contains("ICMP from") => {
            Some((reason.clone(), *since))
        }
        _ => None,
    };
    let mtu = path_mtu.get(id).and_then(|m| match path_mtu.verdict(id)? {
        MtuVerdict::BlackHole { bytes, expected } => Some((
            format!("packets over {bytes} bytes vanish without ICMP ({expected} should cross)"),
            m.measured_at,
        )),
        MtuVerdict::Fine | MtuVerdict::Narrow { .. } => None,
    });
    choose(&Evidence {
        since: Some(*since),
        logs: &events,
        maintenance,
        aws_status,
        icmp_error,
        mtu,
    })
}
