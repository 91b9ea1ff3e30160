//! The verdicts the health model holds, and the one rule they share: a state that keeps
//! its kind keeps its `since`, so a changed reason never resets how long something has
//! been down.

use serde::Serialize;

use crate::types::Timestamp;

/// The verdict on a target, a plane of a tunnel, or a tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not known yet, or not knowable (no pinned targets, no AWS).
    Unknown {
        /// Why it is not known.
        reason: String,
    },
    /// Working since `since`.
    Up {
        /// When it started working.
        since: Timestamp,
    },
    /// Not working since `since`, for `reason`.
    Down {
        /// When it stopped working.
        since: Timestamp,
        /// Why it counts as down.
        reason: String,
    },
}

impl Verdict {
    pub(crate) fn unknown(reason: &str) -> Self {
        Verdict::Unknown {
            reason: reason.to_string(),
        }
    }

    /// Returns `up`, `down` or `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Unknown { .. } => "unknown",
            Verdict::Up { .. } => "up",
            Verdict::Down { .. } => "down",
        }
    }

    /// Returns true when down.
    pub fn is_down(&self) -> bool {
        matches!(self, Verdict::Down { .. })
    }

    /// Returns true when up.
    pub fn is_up(&self) -> bool {
        matches!(self, Verdict::Up { .. })
    }
}

/// The verdict on a VPN connection (its tunnels taken together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// No tunnel has a verdict yet.
    Unknown { reason: String },
    /// Every tunnel with a verdict is up.
    Healthy { since: Timestamp },
    /// Some tunnel is down and another works: redundancy lost.
    Degraded {
        since: Timestamp,
        /// Which tunnels are down and why.
        reason: String,
    },
    /// Every tunnel is down.
    Down { since: Timestamp, reason: String },
}

impl ConnectionState {
    /// Returns `unknown`, `healthy`, `degraded` or `down`.
    pub fn label(&self) -> &'static str {
        match self {
            ConnectionState::Unknown { .. } => "unknown",
            ConnectionState::Healthy { .. } => "healthy",
            ConnectionState::Degraded { .. } => "degraded",
            ConnectionState::Down { .. } => "down",
        }
    }
}

/// The verdict on the VPN as a whole: the path from the VPC to the datacenter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VpnState {
    /// No verdict yet: the first probes are still out.
    Starting,
    /// Every connection healthy and every shared target reachable.
    Ok { since: Timestamp },
    /// Something is down but a path to the datacenter still works.
    Degraded {
        since: Timestamp,
        /// What is down.
        reason: String,
    },
    /// No working path to the datacenter.
    Critical {
        since: Timestamp,
        /// Why no path works.
        reason: String,
    },
}

impl VpnState {
    /// Returns the token `/health` prints: `STARTING`, `OK`, `DEGRADED` or `CRITICAL`.
    pub fn token(&self) -> &'static str {
        match self {
            VpnState::Starting => "STARTING",
            VpnState::Ok { .. } => "OK",
            VpnState::Degraded { .. } => "DEGRADED",
            VpnState::Critical { .. } => "CRITICAL",
        }
    }
}

/// How every verdict reads in `/status`: the same three keys whatever the state (`since`
/// and `reason` are null where they do not apply), so that scripts find them.
#[derive(Serialize)]
struct StateFields<'a> {
    state: &'static str,
    since: Option<Timestamp>,
    reason: Option<&'a str>,
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (since, reason) = match self {
            Verdict::Unknown { reason } => (None, Some(reason.as_str())),
            Verdict::Up { since } => (Some(*since), None),
            Verdict::Down { since, reason } => (Some(*since), Some(reason.as_str())),
        };
        StateFields {
            state: self.label(),
            since,
            reason,
        }
        .serialize(s)
    }
}

impl Serialize for ConnectionState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (since, reason) = match self {
            ConnectionState::Unknown { reason } => (None, Some(reason.as_str())),
            ConnectionState::Healthy { since } => (Some(*since), None),
            ConnectionState::Degraded { since, reason }
            | ConnectionState::Down { since, reason } => (Some(*since), Some(reason.as_str())),
        };
        StateFields {
            state: self.label(),
            since,
            reason,
        }
        .serialize(s)
    }
}

impl Serialize for VpnState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (since, reason) = match self {
            VpnState::Starting => (None, None),
            VpnState::Ok { since } => (Some(*since), None),
            VpnState::Degraded { since, reason } | VpnState::Critical { since, reason } => {
                (Some(*since), Some(reason.as_str()))
            }
        };
        StateFields {
            state: match self {
                VpnState::Starting => "starting",
                VpnState::Ok { .. } => "ok",
                VpnState::Degraded { .. } => "degraded",
                VpnState::Critical { .. } => "critical",
            },
            since,
            reason,
        }
        .serialize(s)
    }
}

/// The states the model holds share one rule: a state that keeps its kind keeps its
/// `since`, so a changed reason never resets how long something has been down.
pub(super) trait Settle: Sized {
    fn since(&self) -> Option<Timestamp>;
    fn with_since(self, since: Timestamp) -> Self;
    fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Moves `slot` to `next`, keeping `since` when the kind stays; tells whether the kind changed.
pub(super) fn settle<S: Settle + PartialEq>(slot: &mut S, next: S) -> bool {
    if slot.same_kind(&next) {
        let next = match slot.since() {
            Some(since) => next.with_since(since),
            None => next,
        };
        *slot = next;
        false
    } else {
        *slot = next;
        true
    }
}

impl Settle for Verdict {
    fn since(&self) -> Option<Timestamp> {
        match self {
            Verdict::Unknown { .. } => None,
            Verdict::Up { since } | Verdict::Down { since, .. } => Some(*since),
        }
    }
    fn with_since(self, new: Timestamp) -> Self {
        match self {
            Verdict::Unknown { reason } => Verdict::Unknown { reason },
            Verdict::Up { .. } => Verdict::Up { since: new },
            Verdict::Down { reason, .. } => Verdict::Down { since: new, reason },
        }
    }
}

impl Settle for ConnectionState {
    fn since(&self) -> Option<Timestamp> {
        match self {
            ConnectionState::Unknown { .. } => None,
            ConnectionState::Healthy { since }
            | ConnectionState::Degraded { since, .. }
            | ConnectionState::Down { since, .. } => Some(*since),
        }
    }
    fn with_since(self, new: Timestamp) -> Self {
        match self {
            ConnectionState::Unknown { reason } => ConnectionState::Unknown { reason },
            ConnectionState::Healthy { .. } => ConnectionState::Healthy { since: new },
            ConnectionState::Degraded { reason, .. } => {
                ConnectionState::Degraded { since: new, reason }
            }
            ConnectionState::Down { reason, .. } => ConnectionState::Down { since: new, reason },
        }
    }
}

impl Settle for VpnState {
    fn since(&self) -> Option<Timestamp> {
        match self {
            VpnState::Starting => None,
            VpnState::Ok { since }
            | VpnState::Degraded { since, .. }
            | VpnState::Critical { since, .. } => Some(*since),
        }
    }
    fn with_since(self, new: Timestamp) -> Self {
        match self {
            VpnState::Starting => VpnState::Starting,
            VpnState::Ok { .. } => VpnState::Ok { since: new },
            VpnState::Degraded { reason, .. } => VpnState::Degraded { since: new, reason },
            VpnState::Critical { reason, .. } => VpnState::Critical { since: new, reason },
        }
    }
}
