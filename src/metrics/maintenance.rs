//! The maintenance series: per tunnel, what the daemon decides about AWS's pending
//! maintenance (`[maintenance] apply`), and a count of the replacements it asked for and
//! how they ended.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{register, Metrics};
use crate::config::Config;
use tunnelkeeper_core::maintenance::tracker::{Outcome, TunnelPlan};
use tunnelkeeper_core::maintenance::Decision;
use tunnelkeeper_core::types::TunnelId;

/// Every decision label, for series at zero.
const DECISIONS: [&str; 5] = ["idle", "apply", "would_apply", "wait", "in_progress"];
/// Every replacement result label.
const RESULTS: [&str; 3] = ["started", "recovered", "failed"];

pub(super) struct MaintenanceSeries {
    decision: IntGaugeVec,
    replacements: IntCounterVec,
}

fn decision_label(d: &Decision) -> &'static str {
    match d {
        Decision::Idle => "idle",
        Decision::Apply => "apply",
        Decision::WouldApply => "would_apply",
        Decision::Wait { .. } => "wait",
        Decision::InProgress => "in_progress",
    }
}

impl MaintenanceSeries {
    /// Registers the series, every tunnel `idle` and every count at zero.
    pub(super) fn new(
        registry: &Registry,
        config: &Config,
        labels: &[Vec<(String, String)>],
    ) -> Self {
        let decision = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_maintenance_decision",
                    "1 for what the daemon decides about the tunnel's pending AWS maintenance: idle (nothing pending), apply (ReplaceVpnTunnel now), would_apply (dry-run), wait (blocked: see /status), in_progress (a replacement it asked for is under way or failed).",
                ),
                &["vpn", "tunnel", "decision"],
            )
            .unwrap(),
        );
        let replacements = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tunnelkeeper_maintenance_replacements_total",
                    "Tunnel endpoint replacements the daemon asked AWS for (started), and how they ended (recovered: back up on both planes; failed: not back within recovery_timeout, or the call failed).",
                ),
                &["result"],
            )
            .unwrap(),
        );
        for result in RESULTS {
            replacements.with_label_values(&[result]);
        }
        let series = Self {
            decision,
            replacements,
        };
        for id in config.tunnel_ids() {
            series.set(&labels[id.connection][id.tunnel], &Decision::Idle);
        }
        series
    }

    fn set(&self, (vpn, tunnel): &(String, String), decision: &Decision) {
        let now = decision_label(decision);
        for d in DECISIONS {
            self.decision
                .with_label_values(&[vpn.as_str(), tunnel.as_str(), d])
                .set(i64::from(d == now));
        }
    }
}

impl Metrics {
    /// Shows a tunnel's maintenance decision.
    pub fn set_maintenance(&self, id: TunnelId, plan: &TunnelPlan) {
        let labels = &self.tunnel_labels[id.connection][id.tunnel];
        self.maintenance.set(labels, &plan.decision);
    }

    /// Counts a replacement asked for.
    pub fn maintenance_started(&self) {
        self.maintenance
            .replacements
            .with_label_values(&["started"])
            .inc();
    }

    /// Counts how a replacement ended.
    pub fn maintenance_outcome(&self, outcome: &Outcome) {
        let label = match outcome {
            Outcome::Recovered { .. } => "recovered",
            Outcome::Failed { .. } => "failed",
        };
        self.maintenance
            .replacements
            .with_label_values(&[label])
            .inc();
    }
}
