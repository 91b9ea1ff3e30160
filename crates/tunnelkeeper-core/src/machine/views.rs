//! What the core shows its readers: read-only views of its state, for `/status`, the
//! NOC page, metrics and the watchdog. Nothing here changes the core.

use std::sync::Arc;

use super::Core;
use crate::alert::view::AlertView;
use crate::config::Config;
use crate::health::control_plane::ControlPlane;
use crate::health::path_mtu::PathMtus;
use crate::health::HealthModel;
use crate::history::SharedHistory;
use crate::maintenance::MaintenanceTracker;
use crate::probe::stats::TargetStats;
use crate::types::{Timestamp, TunnelId};

impl Core {
    /// Returns the maintenance decisions and replacements under way.
    pub fn maintenance(&self) -> &MaintenanceTracker {
        &self.maintenance
    }

    /// Returns the config this core runs.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Returns the health model.
    pub fn model(&self) -> &HealthModel {
        &self.model
    }

    /// Returns the control-plane tracker, when EC2 is configured.
    pub fn control(&self) -> Option<&ControlPlane> {
        self.control.as_ref()
    }

    /// Returns the per-target counters, indexed like `config.targets`.
    pub fn stats(&self) -> &[TargetStats] {
        &self.stats
    }

    /// Returns each tunnel's last path-MTU measurement.
    pub fn path_mtu(&self) -> &PathMtus {
        &self.path_mtu
    }

    /// Returns the cause of a tunnel's outage, while it is down and the evidence tells.
    pub fn tunnel_cause(&self, id: TunnelId) -> Option<&crate::health::cause::Cause> {
        let c = self.config.connections.get(id.connection)?;
        let t = c.tunnels.get(id.tunnel)?;
        self.pager.causes().cause(c.name.as_str(), t.name.as_str())
    }

    /// Returns what `/status` shows of a tunnel's AWS tunnel log reading.
    pub fn tunnel_logs_reading(
        &self,
        id: TunnelId,
    ) -> crate::health::tunnel_log_book::TunnelLogsReading {
        self.logs.reading(id)
    }

    /// Returns the smoke charts' series.
    pub fn history(&self) -> &SharedHistory {
        &self.history
    }

    /// Returns every alert as readers see it.
    pub fn alert_views(&self) -> Vec<AlertView> {
        self.pager.views(self.now)
    }

    /// Returns whether each sink takes its pages, in config order.
    pub fn sink_health(&self) -> &[crate::alert::sink_health::SinkHealth] {
        self.pager.sink_health()
    }

    /// Returns how many deliveries wait, and how many were dropped for lack of room.
    pub fn outbox_counts(&self) -> (usize, u64) {
        self.pager.outbox_counts()
    }

    /// Returns the latest time the core was given.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Returns whether every target has reported since `now` minus its silence limit (the
    /// pingers make progress).
    pub fn pingers_progressing(&self, now: Timestamp) -> bool {
        self.model.every_target_reported_since(now)
    }
}
