//! Newtypes shared across modules: names, addresses and the daemon's notion of time.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name that the config layer has already validated.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// Returns the name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// The AWS id of a Site-to-Site VPN connection, such as `vpn-0123456789abcdef0`.
    VpnConnectionId
);
name_type!(
    /// The operator's name for a VPN connection, such as `dc-primary`.
    ConnectionName
);
name_type!(
    /// The operator's name for one tunnel of a connection, such as `dc-primary-a`.
    TunnelName
);
name_type!(
    /// The operator's name for a probe target (its address when none is given).
    TargetName
);

/// The AWS-side outside IP address of a tunnel, the key that joins EC2 telemetry to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OutsideIp(pub Ipv4Addr);

impl fmt::Display for OutsideIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What makes a connection the same connection across configs: its AWS id, or its name
/// when it has none (connections that are only pinged).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionId {
    /// An AWS Site-to-Site VPN connection.
    Aws(VpnConnectionId),
    /// A connection without an AWS id, known by its name.
    Named(ConnectionName),
}

/// Index of a target in the validated config, stable for the daemon's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TargetId(pub usize);

/// Index of a tunnel: the connection's position and the tunnel's position within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TunnelId {
    /// Position of the connection in the config.
    pub connection: usize,
    /// Position of the tunnel within its connection.
    pub tunnel: usize,
}

/// A point in time as milliseconds since the Unix epoch, on the daemon's clock.
///
/// The pure core never reads a clock: every input carries one of these. The daemon derives
/// them from a monotonic clock anchored to the wall clock at start, so durations between
/// timestamps never jump with NTP adjustments. Where a time meets the world (shown,
/// serialized, sent, or read from AWS, a file or a user) it is converted with the
/// [`WallShift`] the daemon last saw: see [`Timestamp::wall_millis`] and
/// [`Timestamp::from_wall_millis`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// Builds a timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Builds a timestamp from whole seconds since the Unix epoch (handy in tests).
    pub const fn from_secs(s: u64) -> Self {
        Self(s * 1000)
    }

    /// Returns milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Returns the time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Returns this timestamp moved forward by `d`.
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_millis() as u64))
    }

    /// Returns the system clock's time of this moment: the timestamp moved by the shift
    /// the daemon last saw ([`WallShift::current`]); itself until the clock is stepped.
    pub fn wall_millis(self) -> u64 {
        WallShift::current().wall_millis(self)
    }

    /// Returns the timestamp of a system-clock time (from AWS, a file, a user, another
    /// process): the inverse of [`Timestamp::wall_millis`].
    pub fn from_wall_millis(ms: u64) -> Timestamp {
        WallShift::current().from_wall_millis(ms)
    }

    /// Returns the system clock's time of this moment (see [`Timestamp::wall_millis`]).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.wall_millis())
    }

    /// Returns the timestamp of a system-clock time; `None` before 1970.
    pub fn from_system_time(t: SystemTime) -> Option<Timestamp> {
        let ms = t.duration_since(UNIX_EPOCH).ok()?.as_millis();
        Some(Timestamp::from_wall_millis(
            u64::try_from(ms).unwrap_or(u64::MAX),
        ))
    }
}

/// How far the system clock is from the daemon's: zero unless the system clock was
/// stepped after start (an instance that boots before NTP settles is ordinary on EC2).
///
/// The core's decisions never need it: timers and durations stay on the daemon's
/// monotonic clock. It only converts at the edges, so it is the one process-wide value of
/// the core: the daemon's clock watch sets it ([`WallShift::set_current`]) when it sees a
/// step, and every view, page, file and metric reads it when it shows or writes a time.
/// Tests of the core never set it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WallShift {
    /// The system clock minus the daemon's, in milliseconds (negative: the system clock
    /// went back since start).
    pub ms: i64,
}

static CURRENT_WALL_SHIFT_MS: AtomicI64 = AtomicI64::new(0);

impl WallShift {
    /// No shift: the daemon's clock is the system clock.
    pub const NONE: WallShift = WallShift { ms: 0 };

    /// Returns the shift last set for this process.
    pub fn current() -> WallShift {
        WallShift {
            ms: CURRENT_WALL_SHIFT_MS.load(Ordering::Relaxed),
        }
    }

    /// Makes this the shift every time shown or written from now on is converted with.
    pub fn set_current(self) {
        CURRENT_WALL_SHIFT_MS.store(self.ms, Ordering::Relaxed);
    }

    /// Returns the system clock's milliseconds for a timestamp.
    pub fn wall_millis(self, at: Timestamp) -> u64 {
        (at.0 as i64).saturating_add(self.ms).max(0) as u64
    }

    /// Returns the timestamp of the system clock's milliseconds.
    pub fn from_wall_millis(self, ms: u64) -> Timestamp {
        Timestamp((ms as i64).saturating_sub(self.ms).max(0) as u64)
    }

    /// Formats a timestamp as the system clock's RFC 3339 time, to the millisecond.
    pub fn rfc3339(self, at: Timestamp) -> String {
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(self.wall_millis(at)))
            .to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_seconds(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.to_system_time()))
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = humantime::parse_rfc3339_weak(&text).map_err(serde::de::Error::custom)?;
        Timestamp::from_system_time(t)
            .ok_or_else(|| serde::de::Error::custom(format!("{text} is before 1970")))
    }
}

/// The kinds of alert, each with a fixed severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertClass {
    /// A tunnel is down, whichever plane saw it first: one outage is one alert, whatever
    /// the planes do during it. (Releases before 0.2 split off `DataPlaneDead` for "AWS
    /// says UP, pinned targets unreachable"; a state file naming it loads as this class.)
    #[serde(alias = "DataPlaneDead")]
    TunnelDown,
    /// Both tunnels of one connection are down.
    ConnectionDown,
    /// No working path to the datacenter.
    VpnUnreachable,
    /// A tunnel changed state too often within the flap window.
    TunnelFlapping,
    /// The EC2 API has failed for longer than the limit.
    ControlPlaneUnavailable,
    /// A configured connection id is unknown to EC2 (deleted, replaced, another account or
    /// Region): the config no longer matches AWS.
    ConnectionNotFound,
    /// AWS announced maintenance (a tunnel endpoint replacement) for a tunnel.
    TunnelMaintenancePending,
    /// A tunnel went down with AWS's endpoint replacement: paged at the configured
    /// `maintenance_severity` during the grace, after which a tunnel still down pages as
    /// `TunnelDown`.
    TunnelDownAfterMaintenance,
    /// Packets of the expected size vanish in a tunnel without an ICMP "fragmentation
    /// needed" while smaller ones cross: a path-MTU black hole.
    MtuBlackHole,
    /// Pages to a sink have failed several times in a row: the pager itself is broken
    /// there. Sent through the sinks that still work.
    NotificationsFailing,
    /// A tunnel that is up loses more than `[alerts.lossy] threshold` of its pinned
    /// targets' probes over the window: a brownout, not an outage.
    TunnelLossy,
    /// A tunnel's median RTT over `[alerts.slow] window` is more than `factor` times its
    /// own long-run baseline.
    TunnelSlow,
    /// Shared datacenter targets have not answered for longer than `failover_grace` while
    /// another tunnel's pinned targets answer: the VPN carries traffic, these hosts do not
    /// answer (a firewall change, the hosts themselves, or a route that never moved).
    SharedTargetsDown,
    /// The daemon asked AWS to replace a tunnel's endpoint (`[maintenance] apply =
    /// "when-safe"`): firing is "replacement started", resolved is "finished".
    MaintenanceReplacing,
    /// A tunnel the daemon had replaced is not back up on both planes within
    /// `[maintenance] recovery_timeout`, or the `ReplaceVpnTunnel` call failed.
    MaintenanceReplaceFailed,
    /// AWS applies a tunnel's pending maintenance within a day and no safe moment came:
    /// says what blocked it.
    MaintenanceBlocked,
    /// The alert state (alerts and outbox) has not reached the state file for a minute: a
    /// restart now would forget the pages sent since, and never send their RESOLVED.
    StateNotSaved,
    /// A TCP target's host answers but its service refuses connections (RST) for
    /// `down_after` connects in a row: the tunnel carries traffic, the service is down or
    /// a firewall rejects it.
    ServiceDown,
}

impl AlertClass {
    /// Every class, for metrics at zero and for config validation.
    pub const ALL: [AlertClass; 18] = [
        AlertClass::TunnelDown,
        AlertClass::ConnectionDown,
        AlertClass::VpnUnreachable,
        AlertClass::TunnelFlapping,
        AlertClass::ControlPlaneUnavailable,
        AlertClass::ConnectionNotFound,
        AlertClass::TunnelMaintenancePending,
        AlertClass::TunnelDownAfterMaintenance,
        AlertClass::MtuBlackHole,
        AlertClass::NotificationsFailing,
        AlertClass::TunnelLossy,
        AlertClass::TunnelSlow,
        AlertClass::SharedTargetsDown,
        AlertClass::MaintenanceReplacing,
        AlertClass::MaintenanceReplaceFailed,
        AlertClass::MaintenanceBlocked,
        AlertClass::StateNotSaved,
        AlertClass::ServiceDown,
    ];

    /// Returns the class's default severity (the config may choose another for
    /// `TunnelDownAfterMaintenance`: see `AlertsConfig::severity`).
    pub fn severity(self) -> Severity {
        match self {
            AlertClass::ConnectionDown | AlertClass::VpnUnreachable => Severity::Critical,
            AlertClass::TunnelDown
            | AlertClass::TunnelFlapping
            | AlertClass::ControlPlaneUnavailable
            | AlertClass::ConnectionNotFound
            | AlertClass::MtuBlackHole
            | AlertClass::NotificationsFailing
            | AlertClass::TunnelLossy
            | AlertClass::TunnelSlow
            | AlertClass::SharedTargetsDown
            | AlertClass::MaintenanceReplaceFailed
            | AlertClass::MaintenanceBlocked
            | AlertClass::StateNotSaved
            | AlertClass::ServiceDown => Severity::Warning,
            AlertClass::TunnelMaintenancePending
            | AlertClass::TunnelDownAfterMaintenance
            | AlertClass::MaintenanceReplacing => Severity::Info,
        }
    }

    /// Returns the class name, as in pages and labels.
    pub fn name(self) -> &'static str {
        match self {
            AlertClass::TunnelDown => "TunnelDown",
            AlertClass::ConnectionDown => "ConnectionDown",
            AlertClass::VpnUnreachable => "VpnUnreachable",
            AlertClass::TunnelFlapping => "TunnelFlapping",
            AlertClass::ControlPlaneUnavailable => "ControlPlaneUnavailable",
            AlertClass::ConnectionNotFound => "ConnectionNotFound",
            AlertClass::TunnelMaintenancePending => "TunnelMaintenancePending",
            AlertClass::TunnelDownAfterMaintenance => "TunnelDownAfterMaintenance",
            AlertClass::MtuBlackHole => "MtuBlackHole",
            AlertClass::NotificationsFailing => "NotificationsFailing",
            AlertClass::TunnelLossy => "TunnelLossy",
            AlertClass::TunnelSlow => "TunnelSlow",
            AlertClass::SharedTargetsDown => "SharedTargetsDown",
            AlertClass::MaintenanceReplacing => "MaintenanceReplacing",
            AlertClass::MaintenanceReplaceFailed => "MaintenanceReplaceFailed",
            AlertClass::MaintenanceBlocked => "MaintenanceBlocked",
            AlertClass::StateNotSaved => "StateNotSaved",
            AlertClass::ServiceDown => "ServiceDown",
        }
    }

    /// Parses a class name.
    pub fn parse(name: &str) -> Option<AlertClass> {
        AlertClass::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for AlertClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing, nothing to do now (announced AWS maintenance). Below every sink's
    /// default `min_severity`, so it reaches a sink only where one asks for `info`.
    Info,
    /// Redundancy lost or something to look at in hours.
    Warning,
    /// The datacenter is (partly) cut off: act now.
    Critical,
}

impl Severity {
    /// Returns `info`, `warning` or `critical`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_converts_both_ways_and_never_below_the_epoch() {
        let back_an_hour = WallShift { ms: -3_600_000 };
        let at = Timestamp::from_secs(4_600);
        assert_eq!(back_an_hour.wall_millis(at), 1_000_000);
        assert_eq!(back_an_hour.from_wall_millis(1_000_000), at);
        assert_eq!(back_an_hour.rfc3339(at), "1970-01-01T00:16:40.000Z");
        assert_eq!(WallShift::NONE.wall_millis(at), at.as_millis());
        assert_eq!(
            WallShift { ms: -5_000_000 }.wall_millis(Timestamp::from_secs(1)),
            0
        );
        assert_eq!(
            WallShift { ms: 5_000 }.from_wall_millis(1_000),
            Timestamp::from_millis(0)
        );
    }

    #[test]
    fn every_alert_class_has_a_runbook_section() {
        let runbook = include_str!("../../../docs/runbook.md");
        for class in AlertClass::ALL {
            assert!(
                runbook.contains(&format!("\n## {}\n", class.name())),
                "docs/runbook.md has no section for {class}: its pages would link nowhere"
            );
            assert_eq!(AlertClass::parse(class.name()), Some(class));
        }
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }
}
