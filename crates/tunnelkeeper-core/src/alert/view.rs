//! How one alert looks to readers (`/status`, the NOC page, the metrics).

use serde::Serialize;

use crate::types::{AlertClass, Severity, Timestamp};

/// How an alert shows on /status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertView {
    /// The class name.
    pub alert: AlertClass,
    /// Severity.
    pub severity: Severity,
    /// The severity its situation calls for, if it depends on one (before the config's).
    #[serde(skip)]
    pub situation: Option<Severity>,
    /// Connection, if any.
    pub vpn: Option<String>,
    /// Tunnel, if any.
    pub tunnel: Option<String>,
    /// `pending`, `firing`, `inhibited` or `silenced`.
    pub state: &'static str,
    /// Since when (pending: condition start; others: firing start).
    pub since: Timestamp,
    /// The summary line.
    pub summary: String,
    /// The reason.
    pub reason: String,
    /// What inhibits or silences it.
    pub muted_by: Option<String>,
}
