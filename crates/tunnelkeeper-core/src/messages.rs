//! What crosses the channels between tasks: probe outcomes from the pingers, EC2 readings
//! from the poller, delivery reports from the sinks. Every task imports this module and it
//! imports none of them, so no task module depends on another.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::types::{OutsideIp, TargetId, Timestamp, TunnelId, VpnConnectionId};

/// What the pingers and the EC2 poller tell the monitor, with times of type `I`: the
/// runtime's instants on the channel, the core's [`Timestamp`]s once the shell has read
/// them against its clock ([`Observation::at_time`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Observation<I = Timestamp> {
    /// One probe finished.
    Probe {
        /// Which target.
        target: TargetId,
        /// Its sequence number.
        seq: u16,
        /// When the outcome was known.
        at: I,
        /// What happened.
        outcome: ProbeOutcome,
        /// How long after its scheduled time the request went out.
        send_delay: Duration,
    },
    /// A reply arrived for another request than the one waited for (a late reply to an
    /// earlier, timed-out request); it is not counted as a reply.
    StrayReply {
        /// Which target.
        target: TargetId,
    },
    /// The pinger moved to a fresh socket after consecutive timeouts.
    SocketReopened {
        /// Which target.
        target: TargetId,
        /// Whether the new socket could be opened.
        ok: bool,
    },
    /// The EC2 poller finished a call.
    Ec2 {
        /// When.
        at: I,
        /// What came of it.
        result: PollResult,
    },
    /// When the EC2 poller's next call goes out (sent after every call): an answer is
    /// due by then plus the call timeout, and staleness is judged against that.
    Ec2NextCall {
        /// When the next call starts.
        at: I,
    },
    /// The maintenance poller asked EC2 about one tunnel (`GetVpnTunnelReplacementStatus`).
    Maintenance {
        /// When.
        at: I,
        /// Which tunnel.
        tunnel: TunnelId,
        /// What came of it.
        result: MaintenanceResult,
    },
    /// A sink finished a delivery.
    Delivery(DeliveryReport),
    /// A reply came after the adaptive timeout gave its request up but within the
    /// configured `timeout`: the request was late, not lost, and counts as answered.
    LateReply {
        /// Which target.
        target: TargetId,
        /// The sequence number it answers.
        seq: u16,
        /// When the pinger saw it.
        at: I,
        /// Its round-trip time.
        rtt: Duration,
    },
    /// The timeout a pinger gives its requests changed (sent at start and on changes).
    TimeoutInForce {
        /// Which target.
        target: TargetId,
        /// The timeout now in force and where it comes from.
        timeout: TimeoutInForce,
    },
    /// A path-MTU measurement of a tunnel finished.
    PathMtu {
        /// Which tunnel.
        tunnel: TunnelId,
        /// When.
        at: I,
        /// What it found; `None` when not even the smallest probe came back (the tunnel's
        /// down verdict comes from the keepalive pings).
        reading: Option<PathMtuReading>,
    },
    /// Ticks were skipped because the task fell behind its schedule.
    ScheduleSlip {
        /// Which target.
        target: TargetId,
        /// How many sends were skipped.
        missed: u64,
    },
    /// AWS answered a `ReplaceVpnTunnel` call the core asked for (its `ReplaceTunnel`
    /// event).
    TunnelReplaceAnswered {
        /// When.
        at: I,
        /// Which tunnel.
        tunnel: TunnelId,
        /// `None` when AWS accepted it, else its error's kind and text.
        error: Option<(AwsErrorKind, String)>,
    },
    /// A `FilterLogEvents` call for a tunnel's AWS tunnel logs finished.
    TunnelLogs {
        /// Which tunnel.
        tunnel: TunnelId,
        /// When.
        at: I,
        /// What it read, or why not.
        result: TunnelLogResult,
    },
    /// Whether the state file is being written (sent by the shell when it changes): the
    /// first of the saves failing now, and what the last one said; `None` once one
    /// succeeds.
    StateSave(Option<SaveFailure<I>>),
    /// A TCP target's connect reached the host: what it found of the service. Sent just
    /// before the probe's own [`Observation::Probe`], which carries the handshake or the
    /// reset as a reply (the host answered either way).
    TcpService {
        /// Which target.
        target: TargetId,
        /// When.
        at: I,
        /// Open (with the MSS) or refused.
        answer: ServiceAnswer,
    },
}

/// What a TCP connect that reached its host found of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ServiceAnswer {
    /// The handshake completed; `mss` is the connection's `TCP_MAXSEG` when it could be
    /// read.
    Open {
        /// The maximum segment size in bytes.
        mss: Option<u32>,
    },
    /// The host reset the connect (RST, or an ICMP port unreachable): the path works, the
    /// service does not listen or a host firewall rejects it.
    Refused,
}

/// What a logs call brought back.
#[derive(Clone, Debug, PartialEq)]
pub enum TunnelLogResult {
    /// The events read (oldest first), and the latest CloudWatch event time among them.
    Events {
        events: Vec<crate::tunnel_log::TunnelLogEvent>,
        latest: Option<Timestamp>,
    },
    /// The call failed.
    Failed { kind: AwsErrorKind, message: String },
}

impl<I> Observation<I> {
    /// Re-addresses a pinger's message to its target's id in another config.
    pub fn set_target(&mut self, id: TargetId) {
        match self {
            Observation::Probe { target, .. }
            | Observation::StrayReply { target }
            | Observation::SocketReopened { target, .. }
            | Observation::LateReply { target, .. }
            | Observation::TimeoutInForce { target, .. }
            | Observation::ScheduleSlip { target, .. }
            | Observation::TcpService { target, .. } => *target = id,
            Observation::Ec2 { .. }
            | Observation::Ec2NextCall { .. }
            | Observation::Maintenance { .. }
            | Observation::PathMtu { .. }
            | Observation::TunnelReplaceAnswered { .. }
            | Observation::TunnelLogs { .. }
            | Observation::Delivery(_)
            | Observation::StateSave(_) => {}
        }
    }

    /// Turns every time this observation carries into another clock's.
    pub fn at_time<J>(self, mut time: impl FnMut(I) -> J) -> Observation<J> {
        match self {
            Observation::Probe {
                target,
                seq,
                at,
                outcome,
                send_delay,
            } => Observation::Probe {
                target,
                seq,
                at: time(at),
                outcome,
                send_delay,
            },
            Observation::StrayReply { target } => Observation::StrayReply { target },
            Observation::StateSave(failure) => {
                Observation::StateSave(failure.map(|f| SaveFailure {
                    since: time(f.since),
                    error: f.error,
                }))
            }
            Observation::SocketReopened { target, ok } => {
                Observation::SocketReopened { target, ok }
            }
            Observation::Ec2 { at, result } => Observation::Ec2 {
                at: time(at),
                result,
            },
            Observation::Ec2NextCall { at } => Observation::Ec2NextCall { at: time(at) },
            Observation::Maintenance { at, tunnel, result } => Observation::Maintenance {
                at: time(at),
                tunnel,
                result,
            },
            Observation::Delivery(report) => Observation::Delivery(report),
            Observation::LateReply {
                target,
                seq,
                at,
                rtt,
            } => Observation::LateReply {
                target,
                seq,
                at: time(at),
                rtt,
            },
            Observation::TimeoutInForce { target, timeout } => {
                Observation::TimeoutInForce { target, timeout }
            }
            Observation::PathMtu {
                tunnel,
                at,
                reading,
            } => Observation::PathMtu {
                tunnel,
                at: time(at),
                reading,
            },
            Observation::ScheduleSlip { target, missed } => {
                Observation::ScheduleSlip { target, missed }
            }
            Observation::TunnelReplaceAnswered { at, tunnel, error } => {
                Observation::TunnelReplaceAnswered {
                    at: time(at),
                    tunnel,
                    error,
                }
            }
            Observation::TunnelLogs { tunnel, at, result } => Observation::TunnelLogs {
                tunnel,
                at: time(at),
                result,
            },
            Observation::TcpService { target, at, answer } => Observation::TcpService {
                target,
                at: time(at),
                answer,
            },
        }
    }
}

/// The timeout a target's requests get, and why that one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TimeoutInForce {
    /// How long a request waits before it counts as lost.
    #[serde(rename = "timeout_seconds", serialize_with = "seconds")]
    pub timeout: Duration,
    /// Where that figure comes from.
    #[serde(rename = "timeout_mode")]
    pub mode: TimeoutMode,
}

/// Where a target's timeout comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutMode {
    /// The configured `timeout` (`adaptive_timeout = false`).
    Fixed,
    /// The configured `timeout`, until enough replies came to learn the target's RTT.
    Learning,
    /// Learned from the target's recent RTTs.
    Adaptive,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// How a path-MTU measurement found its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtuLimitFound {
    /// The largest size probed (1500 bytes) came back: nothing on the path is smaller.
    Reply,
    /// A router answered "fragmentation needed and DF set" with its next-hop MTU.
    FragNeeded,
    /// Larger packets vanished without an ICMP error while smaller ones came back.
    Silent,
    /// This host would not send larger packets: its interface or route MTU is smaller
    /// (`EMSGSIZE`).
    Local,
}

impl MtuLimitFound {
    /// Returns `reply`, `frag_needed` or `silent`.
    pub fn label(self) -> &'static str {
        match self {
            MtuLimitFound::Reply => "reply",
            MtuLimitFound::FragNeeded => "frag_needed",
            MtuLimitFound::Silent => "silent",
            MtuLimitFound::Local => "local",
        }
    }
}

/// One path-MTU measurement through a tunnel, to one of its pinned targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathMtuReading {
    /// The largest IP packet, in bytes, that crossed with DF set (or the MTU a router
    /// gave in its "fragmentation needed").
    pub bytes: u32,
    /// How the limit was found.
    pub found: MtuLimitFound,
    /// The size that should cross (`[mtu] expected` or the tunnel's `mtu`).
    pub expected: u32,
    /// The target probed.
    pub target: std::net::Ipv4Addr,
    /// The router that sent "fragmentation needed", if one did.
    pub router: Option<IpAddr>,
    /// How many probes the measurement took.
    pub probes: u32,
}

/// What became of one echo request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The echo reply came back after `rtt`.
    Reply {
        /// Round-trip time.
        rtt: Duration,
    },
    /// No reply within the timeout.
    Timeout {
        /// The timeout that ran out.
        after: Duration,
    },
    /// A router answered with an ICMP error instead of the target's reply.
    IcmpError {
        /// Who sent the error.
        from: IpAddr,
        /// What kind of error.
        kind: IcmpErrorKind,
    },
    /// The request could not be sent at all (no route, socket error).
    SendFailed {
        /// What the OS said.
        error: String,
    },
}

impl ProbeOutcome {
    /// Returns a bounded label for metrics: `reply`, `timeout`, `unreachable`,
    /// `time_exceeded`, `frag_needed`, `icmp_other` or `send_failed`.
    pub fn kind_label(&self) -> &'static str {
        match self {
            ProbeOutcome::Reply { .. } => "reply",
            ProbeOutcome::Timeout { .. } => "timeout",
            ProbeOutcome::IcmpError { kind, .. } => kind.label(),
            ProbeOutcome::SendFailed { .. } => "send_failed",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Reply { rtt } => write!(f, "reply in {rtt:?}"),
            ProbeOutcome::Timeout { after } => {
                write!(f, "no reply within {}", humantime::format_duration(*after))
            }
            ProbeOutcome::IcmpError { from, kind } => write!(f, "{kind} (ICMP from {from})"),
            ProbeOutcome::SendFailed { error } => write!(f, "send failed: {error}"),
        }
    }
}

/// Says why the OS refused to send an echo request, in words that point at the cause.
pub fn send_error_text(error: &std::io::Error) -> String {
    match error.raw_os_error() {
        Some(1) => "this instance's own firewall refused it (EPERM: an iptables/nftables OUTPUT rule drops ICMP to this address)".into(),
        Some(13) => "not allowed to send to this address (EACCES: a broadcast address, or this user is outside net.ipv4.ping_group_range)".into(),
        Some(101) => "no route from this instance to the address (ENETUNREACH: check the VPC route table and the instance's routes)".into(),
        Some(113) => "no route to the host (EHOSTUNREACH: a local route or neighbour lookup failed)".into(),
        Some(105) => "the ICMP socket's send buffer is full (ENOBUFS: too many probes at once for this instance)".into(),
        _ => format!("the OS refused: {error}"),
    }
}

/// The ICMP errors a router may send back in place of an echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpErrorKind {
    /// Destination unreachable, with its code (0 net, 1 host, 3 port, 13 prohibited...).
    Unreachable {
        /// The ICMP code.
        code: u8,
    },
    /// TTL exceeded in transit (a routing loop, often).
    TimeExceeded,
    /// Destination unreachable, fragmentation needed and DF set (code 4), with the
    /// next-hop MTU the router gave (0 when it gave none).
    FragmentationNeeded {
        /// The next-hop MTU in bytes.
        mtu: u32,
    },
    /// Any other ICMP type.
    Other {
        /// The ICMP type.
        icmp_type: u8,
        /// The ICMP code.
        code: u8,
    },
}

impl IcmpErrorKind {
    fn label(self) -> &'static str {
        match self {
            IcmpErrorKind::Unreachable { .. } => "unreachable",
            IcmpErrorKind::TimeExceeded => "time_exceeded",
            IcmpErrorKind::FragmentationNeeded { .. } => "frag_needed",
            IcmpErrorKind::Other { .. } => "icmp_other",
        }
    }
}

impl fmt::Display for IcmpErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IcmpErrorKind::Unreachable { code } => {
                let what = match code {
                    0 => "network unreachable",
                    1 => "host unreachable",
                    3 => "port unreachable",
                    9 | 10 | 13 => "administratively prohibited",
                    _ => "destination unreachable",
                };
                write!(f, "{what} (code {code})")
            }
            IcmpErrorKind::TimeExceeded => f.write_str("TTL exceeded in transit"),
            IcmpErrorKind::FragmentationNeeded { mtu } => {
                write!(f, "fragmentation needed and DF set (mtu = {mtu})")
            }
            IcmpErrorKind::Other { icmp_type, code } => {
                write!(f, "ICMP type {icmp_type} code {code}")
            }
        }
    }
}

/// What one poll produced.
#[derive(Clone, Debug, PartialEq)]
pub enum PollResult {
    /// A good answer, one reading per polled connection.
    Answer(Vec<ConnectionReading>),
    /// A failed call.
    Failed {
        /// Its kind.
        kind: AwsErrorKind,
        /// What the SDK said (no response body: it may hold secrets).
        message: String,
    },
}

/// Why an AWS call failed, in bounded kinds for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsErrorKind {
    /// `RequestLimitExceeded`.
    Throttled,
    /// HTTP 5xx.
    ServerError,
    /// No answer in time.
    Timeout,
    /// Credentials missing, expired or not allowed.
    Auth,
    /// An answer the SDK could not read.
    Unparsable,
    /// A configured connection id does not exist.
    NotFound,
    /// Could not connect.
    Network,
    /// Anything else.
    Other,
}

impl AwsErrorKind {
    /// Every kind, for creating metric series at zero.
    pub const ALL: [AwsErrorKind; 8] = [
        AwsErrorKind::Throttled,
        AwsErrorKind::ServerError,
        AwsErrorKind::Timeout,
        AwsErrorKind::Auth,
        AwsErrorKind::Unparsable,
        AwsErrorKind::NotFound,
        AwsErrorKind::Network,
        AwsErrorKind::Other,
    ];

    /// Returns the metric label.
    pub fn label(self) -> &'static str {
        match self {
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::ServerError => "server_error",
            AwsErrorKind::Timeout => "timeout",
            AwsErrorKind::Auth => "auth",
            AwsErrorKind::Unparsable => "unparsable",
            AwsErrorKind::NotFound => "not_found",
            AwsErrorKind::Network => "network",
            AwsErrorKind::Other => "other",
        }
    }
}

/// The state EC2 gives a VPN connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiConnectionState {
    /// In service.
    Available,
    /// Being created.
    Pending,
    /// Being deleted.
    Deleting,
    /// Deleted.
    Deleted,
    /// A value this build does not know: never taken for up.
    Unknown(String),
    /// The connection was not in the answer at all.
    Missing,
}

/// The status EC2 telemetry gives a tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiTunnelStatus {
    /// `UP`.
    Up,
    /// `DOWN`.
    Down,
    /// A value this build does not know: never taken for up.
    Unknown(String),
    /// No status in the telemetry.
    Missing,
}

/// One configured connection as EC2 described it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionReading {
    /// Position of the connection in the config.
    #[serde(skip)]
    pub connection: usize,
    /// Its id.
    pub id: VpnConnectionId,
    /// Its state.
    pub state: ApiConnectionState,
    /// True for static routing (no BGP: accepted routes mean nothing).
    pub static_routes_only: bool,
    /// Per configured tunnel, in config order.
    pub tunnels: Vec<TunnelReading>,
    /// The outside IPs EC2 listed for this connection.
    pub listed_outside_ips: Vec<String>,
}

/// One configured tunnel as EC2 described it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TunnelReading {
    /// The configured outside IP it was joined on.
    pub outside_ip: Option<OutsideIp>,
    /// VgwTelemetry for that outside IP, if listed.
    pub telemetry: Option<Telemetry>,
    /// TunnelOptions for that outside IP, if listed.
    pub options: Option<TunnelOptionsReading>,
}

/// The telemetry fields tunnelkeeper uses.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Telemetry {
    /// UP/DOWN.
    pub status: ApiTunnelStatus,
    /// AWS's text, on error.
    pub status_message: Option<String>,
    /// When IKE/IPsec/BGP last changed.
    pub last_status_change: Option<Timestamp>,
    /// BGP routes accepted.
    pub accepted_route_count: Option<i32>,
}

/// The tunnel options that decide how a dropped tunnel comes back.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TunnelOptionsReading {
    /// `add` (default: wait for the customer gateway) or `start`.
    pub startup_action: Option<String>,
    /// `clear` (default), `none` or `restart`.
    pub dpd_timeout_action: Option<String>,
    /// Dead peer detection timeout.
    pub dpd_timeout_seconds: Option<i32>,
    /// IKE versions allowed.
    pub ike_versions: Vec<String>,
    /// `LogOptions.CloudWatchLogOptions.LogEnabled`: tunnel (IKE) logs to CloudWatch Logs.
    pub log_enabled: Option<bool>,
    /// `LogOptions.CloudWatchLogOptions.BgpLogEnabled`: BGP logs to CloudWatch Logs.
    pub bgp_log_enabled: Option<bool>,
    /// `LogOptions.CloudWatchLogOptions.LogGroupArn`: where the tunnel logs go.
    pub log_group_arn: Option<String>,
}

impl TunnelOptionsReading {
    /// The tunnel's `StartupAction`, AWS's default `add` when EC2 does not say.
    pub fn startup_action(&self) -> &str {
        self.startup_action.as_deref().unwrap_or("add")
    }

    /// True with `StartupAction=add`: after a drop or a replacement AWS waits for the
    /// customer gateway to start IKE.
    pub fn startup_add(&self) -> bool {
        self.startup_action() == "add"
    }

    /// True when a dropped tunnel stays down until the datacenter sends traffic:
    /// `StartupAction=add` with `DpdTimeoutAction=clear` (both AWS's defaults).
    pub fn waits_for_datacenter(&self) -> bool {
        self.startup_add() && self.dpd_timeout_action.as_deref().unwrap_or("clear") == "clear"
    }
}

/// What one `GetVpnTunnelReplacementStatus` call produced.
#[derive(Clone, Debug, PartialEq)]
pub enum MaintenanceResult {
    /// A good answer.
    Reading(MaintenanceReading),
    /// A failed call.
    Failed {
        /// Its kind.
        kind: AwsErrorKind,
        /// What the SDK said.
        message: String,
    },
}

/// AWS's maintenance details for one tunnel endpoint (`MaintenanceDetails`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MaintenanceReading {
    /// AWS's text for pending maintenance (`PendingMaintenance`), absent when none.
    pub pending: Option<String>,
    /// When AWS applies the pending maintenance by itself (`MaintenanceAutoAppliedAfter`).
    pub auto_apply_after: Option<Timestamp>,
    /// When maintenance was last applied (`LastMaintenanceApplied`): the endpoint was
    /// replaced then.
    pub last_applied: Option<Timestamp>,
}

impl MaintenanceReading {
    /// Returns the pending text when maintenance is pending (AWS may send an empty or
    /// "None" text when nothing is).
    pub fn pending_text(&self) -> Option<&str> {
        self.pending
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("none"))
    }
}

/// What became of one delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryReport {
    /// The outbox id.
    pub id: u64,
    /// The sink index.
    pub sink: usize,
    /// `Ok`, or the failure's kind label and message.
    pub result: Result<(), (&'static str, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_point_at_their_cause() {
        let text = |code| send_error_text(&std::io::Error::from_raw_os_error(code));
        assert!(text(1).starts_with("this instance's own firewall refused it (EPERM"));
        assert!(text(101).contains("ENETUNREACH"));
        assert!(!text(1).contains("os error"), "{}", text(1));
        assert!(text(22).starts_with("the OS refused: "), "{}", text(22));
    }
}

/// State saves failing: since when, and what the last one said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaveFailure<I = Timestamp> {
    /// When the first of the failing saves failed.
    pub since: I,
    /// What the last failed save said (the OS error).
    pub error: String,
}
