//! The outage log, pure: what one ended outage or failover was ([`OutageRecord`]), how
//! the core builds records as verdicts change ([`OutageTracker`]), how records are
//! written, read back, pruned and filtered ([`log`]), and what one outage's incident
//! bundle holds ([`bundle`]). The shell only appends lines to a file and serves them.

pub mod bundle;
pub mod log;
mod tracker;

pub use tracker::OutageTracker;

use serde::{Deserialize, Serialize};

use crate::alert::engine::NotificationStatus;
use crate::types::{AlertClass, Severity, Timestamp};

/// The version of the record's JSON form (`/outages`, the log file, the bundle); a reader
/// skips records of a version it does not know.
pub const RECORD_VERSION: u32 = 1;

/// What was out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageKind {
    /// One tunnel was down.
    Tunnel,
    /// Every tunnel of a connection was down.
    Connection,
    /// No working path to the datacenter (the VPN was critical).
    Vpn,
    /// Traffic to the shared targets moved to another tunnel (a short loss, not an
    /// outage of the VPN).
    Failover,
}

impl OutageKind {
    /// Returns the kind as its JSON form has it.
    pub fn label(self) -> &'static str {
        match self {
            OutageKind::Tunnel => "tunnel",
            OutageKind::Connection => "connection",
            OutageKind::Vpn => "vpn",
            OutageKind::Failover => "failover",
        }
    }
}

/// Which plane saw a tunnel down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plane {
    /// The pings through its pinned targets.
    Data,
    /// What AWS said of IKE/IPsec on it.
    Control,
}

/// One page that went out during an outage: one notification, every sink it went to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSent {
    pub class: AlertClass,
    pub severity: Severity,
    pub status: NotificationStatus,
    /// The connection and tunnel the alert names, if any.
    pub vpn: Option<String>,
    pub tunnel: Option<String>,
    /// When the notification was made.
    pub at: Timestamp,
    /// The sinks (by config name) it was handed to.
    pub sinks: Vec<String>,
}

/// How the shared datacenter targets fared during an outage: probes sent and lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedLoss {
    pub sent: u64,
    pub lost: u64,
}

/// One ended outage or failover, as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutageRecord {
    /// [`RECORD_VERSION`] when written.
    pub version: u32,
    /// Stable: made from what was out and when it began, so the same outage seen twice
    /// (a restart within it) has one id. URL-safe.
    pub id: String,
    pub kind: OutageKind,
    /// The connection's name (tunnel and connection outages).
    pub connection: Option<String>,
    /// The tunnels that were down during it (for a failover, those traffic left).
    pub tunnels: Vec<String>,
    pub started_at: Timestamp,
    pub ended_at: Timestamp,
    pub seconds: f64,
    /// The planes that saw a tunnel down during it.
    pub planes: Vec<Plane>,
    /// Why it counted as an outage, as first said.
    pub reason: String,
    /// Why it broke, as the evidence told while it lasted (the last cause known: AWS's
    /// tunnel logs, maintenance, EC2's status, an ICMP error, MTU), in the page's words.
    #[serde(default)]
    pub cause: Option<String>,
    pub pages: Vec<PageSent>,
    pub shared_targets: SharedLoss,
}

impl OutageRecord {
    /// Returns whether it concerns the tunnel named `tunnel`.
    pub fn involves_tunnel(&self, tunnel: &str) -> bool {
        self.tunnels.iter().any(|t| t == tunnel)
    }
}

/// Builds the stable id of an outage of `kind` of `what` (a tunnel or connection name,
/// empty for the VPN) that began at `started_at` (its number is the system clock's time, as
/// shown): `tunnel-1764817200000-5f1c2a9e`.
pub fn outage_id(kind: OutageKind, what: &str, started_at: Timestamp) -> String {
    // FNV-1a: stable across builds and platforms (std's hasher is not), short, URL-safe.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in what.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{}-{}-{hash:08x}", kind.label(), started_at.wall_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_tell_apart_what_was_out() {
        let t = Timestamp::from_secs(1_764_817_200);
        let a = outage_id(OutageKind::Tunnel, "dc-a", t);
        assert_eq!(a, outage_id(OutageKind::Tunnel, "dc-a", t));
        // A fixed value: the id must not change between builds (links to it are kept).
        assert_eq!(a, "tunnel-1764817200000-fef6dbb2");
        assert_ne!(a, outage_id(OutageKind::Tunnel, "dc-b", t));
        assert_ne!(a, outage_id(OutageKind::Connection, "dc-a", t));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
