//! The alert policy as a table: one rule per alert class (or per family of classes that
//! share their reasoning), each a file here, all with one signature: what holds now, from
//! the same [`Inputs`]. The pager runs every rule at each evaluation. Severity is not
//! decided here but once, where a notification leaves the pager: the class's own, or the
//! situation's (`Details::severity`), under the config's `[alerts.severity]`.

pub mod brownout;
pub mod connection_not_found;
pub mod control_plane;
pub mod maintenance_apply;
pub mod maintenance_pending;
pub mod mtu_black_hole;
pub mod outage;
pub mod paging;
pub mod paths;
pub mod service_down;
pub mod shared_targets_down;
pub mod state_not_saved;

use crate::alert::engine::Conditions;
use crate::alert::sink_health::SinksHealth;
use crate::config::Config;
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::PathMtus;
use crate::health::HealthModel;
use crate::history::History;
use crate::maintenance::MaintenanceTracker;
use crate::types::{AlertClass, Timestamp};

pub use outage::FlapTracker;

/// What every rule reads.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub model: &'a HealthModel,
    /// What EC2 said, where it is asked.
    pub control: Option<&'a ControlPlane>,
    pub flaps: &'a FlapTracker,
    pub path_mtu: &'a PathMtus,
    /// The smoke charts' series and the brownout windows.
    pub history: &'a History,
    /// Whether each sink takes its pages.
    pub sinks: &'a SinksHealth,
    /// The maintenance decisions and replacements under way.
    pub maintenance: &'a MaintenanceTracker,
    /// Since when the state file cannot be written, if it cannot.
    pub state_save: Option<&'a state_not_saved::SaveFailure>,
    pub now: Timestamp,
}

/// A rule: the conditions of its classes' alerts (keys absent are false; `Unknown` keeps an
/// alert as it is).
pub type Rule = fn(&Inputs<'_>) -> Conditions;

/// Every rule, with the classes it decides.
pub const RULES: [(&[AlertClass], Rule); 11] = [
    (
        &[
            AlertClass::TunnelDown,
            AlertClass::TunnelDownAfterMaintenance,
            AlertClass::TunnelFlapping,
            AlertClass::ConnectionDown,
            AlertClass::VpnUnreachable,
        ],
        outage::rule,
    ),
    (
        &[AlertClass::ConnectionNotFound],
        connection_not_found::rule,
    ),
    (
        &[AlertClass::TunnelMaintenancePending],
        maintenance_pending::rule,
    ),
    (&[AlertClass::SharedTargetsDown], shared_targets_down::rule),
    (&[AlertClass::ControlPlaneUnavailable], control_plane::rule),
    (&[AlertClass::MtuBlackHole], mtu_black_hole::rule),
    (
        &[AlertClass::TunnelLossy, AlertClass::TunnelSlow],
        brownout::rule,
    ),
    (&[AlertClass::NotificationsFailing], paging::rule),
    (
        &[
            AlertClass::MaintenanceReplacing,
            AlertClass::MaintenanceReplaceFailed,
            AlertClass::MaintenanceBlocked,
        ],
        maintenance_apply::rule,
    ),
    (&[AlertClass::StateNotSaved], state_not_saved::rule),
    (&[AlertClass::ServiceDown], service_down::rule),
];

/// The classes whose warning is re-sent as critical once it has lasted `escalate_after`
/// (the City's rule): a path down while another carries traffic usually heals within
/// minutes (an endpoint replacement, a rekey); one that does not is worth a call. The
/// brownouts, the control plane and the pager's own health stay warnings: time does not
/// make them an outage.
pub const ESCALATING: [AlertClass; 3] = [
    AlertClass::TunnelDown,
    AlertClass::ConnectionDown,
    AlertClass::SharedTargetsDown,
];

/// Returns whether a lasting warning of `class` is re-sent as critical.
pub fn escalates(class: AlertClass) -> bool {
    ESCALATING.contains(&class)
}

/// Runs every rule.
pub fn conditions(inputs: &Inputs<'_>) -> Conditions {
    let mut out = Conditions::new();
    for (classes, rule) in RULES {
        let found = rule(inputs);
        debug_assert!(found.keys().all(|k| classes.contains(&k.class)));
        out.extend(found);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::RULES;
    use crate::types::AlertClass;

    #[test]
    fn every_alert_class_has_exactly_one_rule() {
        for class in AlertClass::ALL {
            let rules = RULES.iter().filter(|(c, _)| c.contains(&class)).count();
            assert_eq!(rules, 1, "{class} is decided by {rules} rules");
        }
    }
}
