//! The health model: pure and sans-IO. Probe results and control-plane readings come in
//! with the time they were made; verdicts for targets, tunnels, connections and the VPN
//! come out. Nothing here reads a clock or touches a socket.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, TargetScope};
use crate::types::{TargetId, Timestamp, TunnelId};

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
    /// `time_exceeded`, `icmp_other` or `send_failed`.
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
            IcmpErrorKind::Other { icmp_type, code } => {
                write!(f, "ICMP type {icmp_type} code {code}")
            }
        }
    }
}

/// The verdict on a target, a plane of a tunnel, or a tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
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
    fn unknown(reason: &str) -> Self {
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectionState {
    /// No tunnel has a verdict yet.
    Unknown {
        /// Why.
        reason: String,
    },
    /// Every tunnel with a verdict is up.
    Healthy {
        /// Since when.
        since: Timestamp,
    },
    /// Some tunnel is down and another works: redundancy lost.
    Degraded {
        /// Since when.
        since: Timestamp,
        /// Which tunnels are down and why.
        reason: String,
    },
    /// Every tunnel is down.
    Down {
        /// Since when.
        since: Timestamp,
        /// Why.
        reason: String,
    },
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VpnState {
    /// No verdict yet: the first probes are still out.
    Starting,
    /// Every connection healthy and every shared target reachable.
    Ok {
        /// Since when.
        since: Timestamp,
    },
    /// Something is down but a path to the datacenter still works.
    Degraded {
        /// Since when.
        since: Timestamp,
        /// What is down.
        reason: String,
    },
    /// No working path to the datacenter.
    Critical {
        /// Since when.
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

/// The states the model holds share one rule: a state that keeps its kind keeps its
/// `since`, so a changed reason never resets how long something has been down.
trait Settle: Sized {
    fn since(&self) -> Option<Timestamp>;
    fn with_since(self, since: Timestamp) -> Self;
    fn same_kind(&self, other: &Self) -> bool;
}

/// Moves `slot` to `next`, keeping `since` when the kind stays; tells whether the kind changed.
fn settle<S: Settle + PartialEq>(slot: &mut S, next: S) -> bool {
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
    fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
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
    fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
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
    fn same_kind(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// One target's hysteresis: streaks of replies and losses against `up_after`/`down_after`.
#[derive(Clone, Debug)]
pub struct TargetHealth {
    /// The current verdict.
    pub verdict: Verdict,
    /// Replies in a row.
    pub consecutive_replies: u32,
    /// Lost probes in a row.
    pub consecutive_lost: u32,
    streak_since: Option<Timestamp>,
    down_after: u32,
    up_after: u32,
}

impl TargetHealth {
    fn new(down_after: u32, up_after: u32) -> Self {
        Self {
            verdict: Verdict::unknown("waiting for the first probe results"),
            consecutive_replies: 0,
            consecutive_lost: 0,
            streak_since: None,
            down_after,
            up_after,
        }
    }

    /// Applies one probe outcome; returns true when the verdict changed kind.
    fn handle(&mut self, outcome: &ProbeOutcome, now: Timestamp) -> bool {
        let replied = matches!(outcome, ProbeOutcome::Reply { .. });
        let (streak, other) = if replied {
            (&mut self.consecutive_replies, &mut self.consecutive_lost)
        } else {
            (&mut self.consecutive_lost, &mut self.consecutive_replies)
        };
        if *streak == 0 {
            self.streak_since = Some(now);
        }
        *streak = streak.saturating_add(1);
        *other = 0;
        let since = self.streak_since.unwrap_or(now);

        let next = match (&self.verdict, replied) {
            // Nothing to protect before the first verdict: one reply shows the path works.
            (Verdict::Unknown { .. }, true) => Some(Verdict::Up { since }),
            (Verdict::Down { .. }, true) if self.consecutive_replies >= self.up_after => {
                Some(Verdict::Up { since })
            }
            (Verdict::Unknown { .. } | Verdict::Up { .. }, false)
                if self.consecutive_lost >= self.down_after =>
            {
                Some(Verdict::Down {
                    since,
                    reason: loss_reason(self.consecutive_lost, outcome),
                })
            }
            // Still down: keep the reason current (a timeout may turn into an ICMP error).
            (Verdict::Down { .. }, false) => Some(Verdict::Down {
                since,
                reason: loss_reason(self.consecutive_lost, outcome),
            }),
            (Verdict::Up { .. } | Verdict::Down { .. } | Verdict::Unknown { .. }, _) => None,
        };
        next.is_some_and(|v| settle(&mut self.verdict, v))
    }
}

fn loss_reason(lost: u32, last: &ProbeOutcome) -> String {
    format!("{lost} probe(s) lost in a row, last: {last}")
}

/// One tunnel: its two planes and the verdict that combines them.
#[derive(Clone, Debug)]
pub struct TunnelHealth {
    /// What the pings through its pinned targets say.
    pub data_plane: Verdict,
    /// What AWS says of IKE/IPsec on it (EC2 telemetry; unknown without AWS).
    pub control_plane: Verdict,
    /// The combined verdict.
    pub verdict: Verdict,
}

/// The whole model: every target, tunnel and connection, and the VPN verdict.
#[derive(Clone, Debug)]
pub struct HealthModel {
    targets: Vec<TargetHealth>,
    scopes: Vec<TargetScope>,
    tunnel_targets: Vec<Vec<Vec<TargetId>>>,
    tunnels: Vec<Vec<TunnelHealth>>,
    connections: Vec<ConnectionState>,
    vpn: VpnState,
    names: Names,
}

/// Names used in reasons, copied from the config once.
#[derive(Clone, Debug)]
struct Names {
    targets: Vec<String>,
    tunnels: Vec<Vec<String>>,
    connections: Vec<String>,
}

impl HealthModel {
    /// Builds the model for a config, with every verdict unknown.
    pub fn new(config: &Config) -> Self {
        let targets = config
            .targets
            .iter()
            .map(|t| TargetHealth::new(t.probe.down_after, t.probe.up_after))
            .collect();
        let tunnel_targets: Vec<Vec<Vec<TargetId>>> = config
            .connections
            .iter()
            .map(|c| c.tunnels.iter().map(|t| t.targets.clone()).collect())
            .collect();
        let tunnels = config
            .connections
            .iter()
            .map(|c| {
                c.tunnels
                    .iter()
                    .map(|t| {
                        let data_plane = if t.targets.is_empty() {
                            Verdict::unknown("no pinned targets")
                        } else {
                            Verdict::unknown("waiting for the first probe results")
                        };
                        let control_plane = match (&config.aws, &c.id) {
                            (None, _) => Verdict::unknown("not polled: no [aws] configured"),
                            (Some(_), None) => {
                                Verdict::unknown("not polled: the connection has no id")
                            }
                            (Some(_), Some(_)) => {
                                Verdict::unknown("waiting for the first EC2 answer")
                            }
                        };
                        TunnelHealth {
                            verdict: data_plane.clone(),
                            data_plane,
                            control_plane,
                        }
                    })
                    .collect()
            })
            .collect();
        let connections = config
            .connections
            .iter()
            .map(|_| ConnectionState::Unknown {
                reason: "no tunnel verdict yet".into(),
            })
            .collect();
        Self {
            targets,
            scopes: config.targets.iter().map(|t| t.scope).collect(),
            tunnel_targets,
            tunnels,
            connections,
            vpn: VpnState::Starting,
            names: Names {
                targets: config.targets.iter().map(|t| t.name.to_string()).collect(),
                tunnels: config
                    .connections
                    .iter()
                    .map(|c| c.tunnels.iter().map(|t| t.name.to_string()).collect())
                    .collect(),
                connections: config
                    .connections
                    .iter()
                    .map(|c| c.name.to_string())
                    .collect(),
            },
        }
    }

    /// Applies a probe result; returns true when any verdict changed kind.
    pub fn handle_probe(
        &mut self,
        target: TargetId,
        outcome: &ProbeOutcome,
        now: Timestamp,
    ) -> bool {
        let Some(health) = self.targets.get_mut(target.0) else {
            return false;
        };
        let before = health.verdict.clone();
        let changed = health.handle(outcome, now);
        if before == health.verdict {
            return false;
        }
        let since = health.verdict_since().unwrap_or(now);
        match self.scopes[target.0] {
            TargetScope::Pinned(tunnel) => {
                let data = self.data_plane(tunnel, since);
                let slot = &mut self.tunnels[tunnel.connection][tunnel.tunnel];
                settle(&mut slot.data_plane, data);
                self.recompute_tunnel(tunnel, since) | changed
            }
            TargetScope::Shared => self.recompute_vpn(since) | changed,
        }
    }

    /// Sets what AWS says about a tunnel's IKE/IPsec state; returns true when any verdict
    /// changed kind. The EC2 poller is what feeds this.
    pub fn handle_control_plane(
        &mut self,
        tunnel: TunnelId,
        verdict: Verdict,
        now: Timestamp,
    ) -> bool {
        let Some(slot) = self
            .tunnels
            .get_mut(tunnel.connection)
            .and_then(|c| c.get_mut(tunnel.tunnel))
        else {
            return false;
        };
        let since = match &verdict {
            Verdict::Up { since } | Verdict::Down { since, .. } => *since,
            Verdict::Unknown { .. } => now,
        };
        let before = slot.control_plane.clone();
        settle(&mut slot.control_plane, verdict);
        if before == slot.control_plane {
            return false;
        }
        self.recompute_tunnel(tunnel, since)
    }

    fn data_plane(&self, tunnel: TunnelId, since: Timestamp) -> Verdict {
        let ids = &self.tunnel_targets[tunnel.connection][tunnel.tunnel];
        if ids.is_empty() {
            return Verdict::unknown("no pinned targets");
        }
        let verdicts: Vec<&Verdict> = ids.iter().map(|id| &self.targets[id.0].verdict).collect();
        if verdicts.iter().any(|v| v.is_up()) {
            Verdict::Up { since }
        } else if verdicts.iter().all(|v| v.is_down()) {
            let detail = ids
                .iter()
                .map(|id| match &self.targets[id.0].verdict {
                    Verdict::Down { reason, .. } => {
                        format!("{}: {reason}", self.names.targets[id.0])
                    }
                    Verdict::Up { .. } | Verdict::Unknown { .. } => String::new(),
                })
                .collect::<Vec<_>>()
                .join("; ");
            Verdict::Down {
                since,
                reason: format!("pinned targets unreachable ({detail})"),
            }
        } else {
            Verdict::unknown("waiting for the first probe results")
        }
    }

    fn recompute_tunnel(&mut self, tunnel: TunnelId, since: Timestamp) -> bool {
        let slot = &mut self.tunnels[tunnel.connection][tunnel.tunnel];
        let next = combine_planes(&slot.data_plane, &slot.control_plane, since);
        let changed = settle(&mut slot.verdict, next);
        self.recompute_connection(tunnel.connection, since) | changed
    }

    fn recompute_connection(&mut self, connection: usize, since: Timestamp) -> bool {
        let tunnels = &self.tunnels[connection];
        let names = &self.names.tunnels[connection];
        let down: Vec<String> = tunnels
            .iter()
            .zip(names)
            .filter_map(|(t, name)| match &t.verdict {
                Verdict::Down { reason, .. } => Some(format!("{name} down: {reason}")),
                Verdict::Up { .. } | Verdict::Unknown { .. } => None,
            })
            .collect();
        let up = tunnels.iter().filter(|t| t.verdict.is_up()).count();
        let next = if !tunnels.is_empty() && down.len() == tunnels.len() {
            ConnectionState::Down {
                since,
                reason: if tunnels.len() == 2 {
                    format!("both tunnels down ({})", down.join("; "))
                } else {
                    down.join("; ")
                },
            }
        } else if !down.is_empty() {
            ConnectionState::Degraded {
                since,
                reason: format!("redundancy lost: {}", down.join("; ")),
            }
        } else if up > 0 {
            ConnectionState::Healthy { since }
        } else {
            ConnectionState::Unknown {
                reason: "no tunnel verdict yet".into(),
            }
        };
        let changed = settle(&mut self.connections[connection], next);
        self.recompute_vpn(since) | changed
    }

    fn recompute_vpn(&mut self, since: Timestamp) -> bool {
        let shared: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.scopes[i] == TargetScope::Shared)
            .collect();
        let all_connections_down = !self.connections.is_empty()
            && self
                .connections
                .iter()
                .all(|c| matches!(c, ConnectionState::Down { .. }));
        let all_shared_down =
            !shared.is_empty() && shared.iter().all(|&i| self.targets[i].verdict.is_down());

        let mut problems: Vec<String> = Vec::new();
        for (c, name) in self.connections.iter().zip(&self.names.connections) {
            match c {
                ConnectionState::Degraded { reason, .. } => {
                    problems.push(format!("{name} degraded, {reason}"))
                }
                ConnectionState::Down { reason, .. } => {
                    problems.push(format!("{name} down, {reason}"))
                }
                ConnectionState::Healthy { .. } | ConnectionState::Unknown { .. } => {}
            }
        }
        for &i in &shared {
            if let Verdict::Down { reason, .. } = &self.targets[i].verdict {
                problems.push(format!(
                    "shared target {} unreachable: {reason}",
                    self.names.targets[i]
                ));
            }
        }
        let anything_known = self
            .connections
            .iter()
            .any(|c| !matches!(c, ConnectionState::Unknown { .. }))
            || shared
                .iter()
                .any(|&i| !matches!(self.targets[i].verdict, Verdict::Unknown { .. }));

        let next = if all_connections_down {
            VpnState::Critical {
                since,
                reason: format!("every connection down: {}", problems.join("; ")),
            }
        } else if all_shared_down {
            VpnState::Critical {
                since,
                reason: format!("every shared target unreachable: {}", problems.join("; ")),
            }
        } else if !problems.is_empty() {
            VpnState::Degraded {
                since,
                reason: problems.join("; "),
            }
        } else if anything_known {
            VpnState::Ok { since }
        } else {
            VpnState::Starting
        };
        settle(&mut self.vpn, next)
    }

    /// Takes over what `old` (built for `old_config`) knew of the targets, tunnels and
    /// connections that `config` still has, then recomputes every verdict above the
    /// targets. A verdict that keeps its kind keeps its `since`: a reload that leaves a
    /// tunnel alone leaves its state alone.
    pub fn adopt(
        &mut self,
        old: &HealthModel,
        old_config: &Config,
        config: &Config,
        now: Timestamp,
    ) {
        for (new, old_index) in crate::config::target_mapping(old_config, config) {
            let probe = config.targets[new].probe;
            self.targets[new] = TargetHealth {
                down_after: probe.down_after,
                up_after: probe.up_after,
                ..old.targets[old_index].clone()
            };
        }
        let mut tunnel_ids = Vec::new();
        for (ci, c) in config.connections.iter().enumerate() {
            let old_ci = old_config.connections.iter().position(|o| o.name == c.name);
            if let Some(oci) = old_ci {
                self.connections[ci] = old.connections[oci].clone();
            }
            for (ti, t) in c.tunnels.iter().enumerate() {
                let id = TunnelId {
                    connection: ci,
                    tunnel: ti,
                };
                tunnel_ids.push(id);
                let old_t = old_ci.and_then(|oci| {
                    old_config.connections[oci]
                        .tunnels
                        .iter()
                        .position(|o| o.name == t.name)
                        .map(|oti| (oci, oti))
                });
                if let Some((oci, oti)) = old_t {
                    let polled = config.aws.is_some() && c.id.is_some();
                    let old_polled =
                        old_config.aws.is_some() && old_config.connections[oci].id.is_some();
                    let kept_control = self.tunnels[ci][ti].control_plane.clone();
                    self.tunnels[ci][ti] = old.tunnels[oci][oti].clone();
                    // AWS's view only carries over while the tunnel is still polled the same way.
                    if !(polled
                        && old_polled
                        && c.id == old_config.connections[oci].id
                        && t.outside_ip == old_config.connections[oci].tunnels[oti].outside_ip)
                    {
                        self.tunnels[ci][ti].control_plane = kept_control;
                    }
                }
            }
        }
        self.vpn = old.vpn.clone();
        for id in tunnel_ids.iter().copied() {
            let data = self.data_plane(id, now);
            settle(&mut self.tunnels[id.connection][id.tunnel].data_plane, data);
            self.recompute_tunnel(id, now);
        }
        if tunnel_ids.is_empty() {
            self.recompute_vpn(now);
        }
    }

    /// Returns the VPN verdict.
    pub fn vpn(&self) -> &VpnState {
        &self.vpn
    }

    /// Returns a connection's verdict.
    pub fn connection(&self, index: usize) -> &ConnectionState {
        &self.connections[index]
    }

    /// Returns a tunnel's planes and verdict.
    pub fn tunnel(&self, id: TunnelId) -> &TunnelHealth {
        &self.tunnels[id.connection][id.tunnel]
    }

    /// Returns a target's hysteresis state.
    pub fn target(&self, id: TargetId) -> &TargetHealth {
        &self.targets[id.0]
    }
}

impl TargetHealth {
    fn verdict_since(&self) -> Option<Timestamp> {
        self.verdict.since()
    }
}

/// Combines a tunnel's data plane (pings) and control plane (AWS) into its verdict.
pub fn combine_planes(data: &Verdict, control: &Verdict, since: Timestamp) -> Verdict {
    match (control, data) {
        // The control plane words its own reasons ("AWS reports DOWN: ...", "BGP up with
        // zero accepted routes").
        (Verdict::Down { reason, .. }, _) => Verdict::Down {
            since,
            reason: reason.clone(),
        },
        (Verdict::Up { .. }, Verdict::Down { reason, .. }) => Verdict::Down {
            since,
            reason: format!("data plane dead: AWS reports UP but {reason}"),
        },
        (Verdict::Unknown { .. }, Verdict::Down { reason, .. }) => Verdict::Down {
            since,
            reason: reason.clone(),
        },
        (Verdict::Up { .. } | Verdict::Unknown { .. }, Verdict::Up { .. })
        | (Verdict::Up { .. }, Verdict::Unknown { .. }) => Verdict::Up { since },
        (Verdict::Unknown { .. }, Verdict::Unknown { reason }) => Verdict::Unknown {
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        [probe]
        down_after = 3
        up_after = 2
        [[vpn]]
        name = "dc"
          [[vpn.tunnel]]
          name = "dc-a"
          targets = ["172.16.1.10"]
          [[vpn.tunnel]]
          name = "dc-b"
          targets = ["172.16.2.10"]
        [[target]]
        name = "db"
        address = "10.20.0.5"
    "#;
    const A: TargetId = TargetId(0);
    const B: TargetId = TargetId(1);
    const DB: TargetId = TargetId(2);
    const TUNNEL_A: TunnelId = TunnelId {
        connection: 0,
        tunnel: 0,
    };

    fn model() -> HealthModel {
        HealthModel::new(&Config::parse(CONFIG, "test").unwrap())
    }

    fn ok() -> ProbeOutcome {
        ProbeOutcome::Reply {
            rtt: Duration::from_millis(5),
        }
    }

    fn lost() -> ProbeOutcome {
        ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        }
    }

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(1_000 + s)
    }

    /// Feeds `outcome` to `target` at each second in `seconds`.
    fn feed(
        m: &mut HealthModel,
        target: TargetId,
        outcome: ProbeOutcome,
        seconds: std::ops::Range<u64>,
    ) {
        for s in seconds {
            m.handle_probe(target, &outcome, t(s));
        }
    }

    fn healthy() -> HealthModel {
        let mut m = model();
        for target in [A, B, DB] {
            feed(&mut m, target, ok(), 0..1);
        }
        m
    }

    #[test]
    fn everything_is_unknown_before_the_first_probe() {
        let m = model();
        assert_eq!(m.vpn(), &VpnState::Starting);
        assert!(matches!(m.connection(0), ConnectionState::Unknown { .. }));
        assert!(matches!(
            m.tunnel(TUNNEL_A).verdict,
            Verdict::Unknown { .. }
        ));
        assert!(matches!(m.target(A).verdict, Verdict::Unknown { .. }));
    }

    #[test]
    fn first_reply_makes_a_target_up() {
        let mut m = model();
        assert!(m.handle_probe(A, &ok(), t(0)));
        assert_eq!(m.target(A).verdict, Verdict::Up { since: t(0) });
        assert_eq!(m.tunnel(TUNNEL_A).verdict, Verdict::Up { since: t(0) });
        assert_eq!(m.connection(0), &ConnectionState::Healthy { since: t(0) });
        assert_eq!(m.vpn(), &VpnState::Ok { since: t(0) });
    }

    #[test]
    fn hysteresis_table() {
        // (outcomes as r=reply l=lost, expected verdict label after the last one)
        let cases = [
            ("", "unknown"),
            ("l", "unknown"),
            ("ll", "unknown"),
            ("lll", "down"),
            ("r", "up"),
            ("rl", "up"),
            ("rll", "up"),
            ("rlll", "down"),
            ("rlllr", "down"),
            ("rlllrr", "up"),
            ("rlllrlr", "down"),
            ("rlllrlrr", "up"),
            ("rlrlrlrl", "up"),
        ];
        for (script, expected) in cases {
            let mut m = model();
            for (i, c) in script.chars().enumerate() {
                let outcome = if c == 'r' { ok() } else { lost() };
                m.handle_probe(A, &outcome, t(i as u64));
            }
            assert_eq!(m.target(A).verdict.label(), expected, "script {script:?}");
        }
    }

    #[test]
    fn down_since_is_the_first_lost_probe_of_the_streak() {
        let mut m = healthy();
        feed(&mut m, A, lost(), 10..13);
        match &m.target(A).verdict {
            Verdict::Down { since, reason } => {
                assert_eq!(*since, t(10));
                assert!(reason.contains("3 probe(s) lost in a row"), "{reason}");
                assert!(reason.contains("no reply within 1s"), "{reason}");
            }
            other => panic!("expected down, got {other:?}"),
        }
        // More losses keep the since and refresh the count.
        feed(&mut m, A, lost(), 13..15);
        assert!(
            matches!(&m.target(A).verdict, Verdict::Down { since, reason } if *since == t(10) && reason.contains("5 probe(s)"))
        );
    }

    #[test]
    fn one_tunnel_down_makes_the_vpn_degraded() {
        let mut m = healthy();
        feed(&mut m, A, lost(), 10..13);
        assert!(
            matches!(&m.tunnel(TUNNEL_A).verdict, Verdict::Down { reason, .. } if reason.starts_with("pinned targets unreachable"))
        );
        assert!(matches!(m.connection(0), ConnectionState::Degraded { .. }));
        match m.vpn() {
            VpnState::Degraded { since, reason } => {
                assert_eq!(*since, t(10));
                assert!(reason.contains("dc-a down"), "{reason}");
            }
            other => panic!("expected degraded, got {other:?}"),
        }
    }

    #[test]
    fn both_tunnels_down_makes_the_vpn_critical_and_recovery_makes_it_ok() {
        let mut m = healthy();
        feed(&mut m, A, lost(), 10..13);
        feed(&mut m, B, lost(), 11..14);
        assert!(
            matches!(m.connection(0), ConnectionState::Down { reason, .. } if reason.starts_with("both tunnels down"))
        );
        assert!(
            matches!(m.vpn(), VpnState::Critical { since, reason } if *since == t(11) && reason.starts_with("every connection down"))
        );
        assert_eq!(m.vpn().token(), "CRITICAL");

        // One reply is not enough to come back (up_after = 2)...
        feed(&mut m, A, ok(), 20..21);
        assert_eq!(m.vpn().token(), "CRITICAL");
        // ...two are: one tunnel back is DEGRADED, both back is OK.
        feed(&mut m, A, ok(), 21..22);
        assert_eq!(m.vpn().token(), "DEGRADED");
        feed(&mut m, B, ok(), 22..24);
        assert_eq!(m.vpn(), &VpnState::Ok { since: t(22) });
    }

    #[test]
    fn every_shared_target_down_is_critical_even_with_tunnels_up() {
        let mut m = healthy();
        feed(&mut m, DB, lost(), 10..13);
        assert!(
            matches!(m.vpn(), VpnState::Critical { reason, .. } if reason.starts_with("every shared target unreachable"))
        );
        feed(&mut m, DB, ok(), 20..22);
        assert_eq!(m.vpn().token(), "OK");
    }

    #[test]
    fn handle_probe_reports_only_kind_changes() {
        let mut m = healthy();
        assert!(!m.handle_probe(A, &ok(), t(5)));
        assert!(!m.handle_probe(A, &lost(), t(6)));
        assert!(!m.handle_probe(A, &lost(), t(7)));
        assert!(m.handle_probe(A, &lost(), t(8)));
        assert!(!m.handle_probe(A, &lost(), t(9)));
    }

    #[test]
    fn icmp_errors_count_as_loss_with_their_reason() {
        let mut m = healthy();
        let err = ProbeOutcome::IcmpError {
            from: "10.1.1.2".parse().unwrap(),
            kind: IcmpErrorKind::Unreachable { code: 1 },
        };
        feed(&mut m, A, err, 10..13);
        assert!(
            matches!(&m.target(A).verdict, Verdict::Down { reason, .. } if reason.contains("host unreachable (code 1) (ICMP from 10.1.1.2)"))
        );
    }

    #[test]
    fn control_and_data_plane_combinations() {
        let up = Verdict::Up { since: t(0) };
        let down = |r: &str| Verdict::Down {
            since: t(0),
            reason: r.into(),
        };
        let unknown = Verdict::unknown("n/a");
        let cases = [
            // (control, data, expected label, reason prefix)
            (&up, &up, "up", ""),
            (&up, &unknown, "up", ""),
            (&unknown, &up, "up", ""),
            (&unknown, &unknown, "unknown", ""),
            (
                &down("AWS reports DOWN: phase 1 down"),
                &up,
                "down",
                "AWS reports DOWN: phase 1 down",
            ),
            (
                &down("AWS reports DOWN: x"),
                &unknown,
                "down",
                "AWS reports DOWN",
            ),
            (
                &down("AWS reports DOWN: x"),
                &down("pinned targets unreachable"),
                "down",
                "AWS reports DOWN",
            ),
            (
                &down("BGP up with zero accepted routes"),
                &up,
                "down",
                "BGP up with zero accepted routes",
            ),
            (
                &up,
                &down("pinned targets unreachable"),
                "down",
                "data plane dead",
            ),
            (
                &unknown,
                &down("pinned targets unreachable"),
                "down",
                "pinned targets unreachable",
            ),
        ];
        for (control, data, label, prefix) in cases {
            let v = combine_planes(data, control, t(1));
            assert_eq!(v.label(), label, "control {control:?} data {data:?}");
            if let Verdict::Down { reason, .. } = &v {
                assert!(
                    reason.starts_with(prefix),
                    "{reason} should start with {prefix}"
                );
            }
        }
    }

    #[test]
    fn control_plane_down_takes_the_tunnel_down_while_pings_pass() {
        let mut m = healthy();
        let changed = m.handle_control_plane(
            TUNNEL_A,
            Verdict::Down {
                since: t(30),
                reason: "AWS reports DOWN: IPSEC IS DOWN".into(),
            },
            t(31),
        );
        assert!(changed);
        assert!(
            matches!(&m.tunnel(TUNNEL_A).verdict, Verdict::Down { reason, .. } if reason == "AWS reports DOWN: IPSEC IS DOWN")
        );
        assert_eq!(m.vpn().token(), "DEGRADED");
    }

    #[test]
    fn adopting_keeps_unchanged_tunnels_and_their_since() {
        let mut old = healthy();
        feed(&mut old, A, lost(), 10..13);
        let old_config = Config::parse(CONFIG, "test").unwrap();
        // The new config drops the shared target and adds a second connection.
        let new_text = CONFIG.replace("[[target]]\n        name = \"db\"\n        address = \"10.20.0.5\"", "")
            + "[[vpn]]\nname = \"dc2\"\n[[vpn.tunnel]]\nname = \"dc2-a\"\ntargets = [\"172.16.3.10\"]\n";
        let new_config = Config::parse(&new_text, "test").unwrap();
        assert_eq!(new_config.targets.len(), 3);
        let mut m = HealthModel::new(&new_config);
        m.adopt(&old, &old_config, &new_config, t(20));
        assert_eq!(m.target(A).verdict, old.target(A).verdict);
        assert_eq!(m.target(A).consecutive_lost, 3);
        assert!(
            matches!(&m.tunnel(TUNNEL_A).verdict, Verdict::Down { since, .. } if *since == t(10))
        );
        assert!(
            matches!(m.connection(0), ConnectionState::Degraded { since, .. } if *since == t(10))
        );
        assert!(
            matches!(m.target(TargetId(2)).verdict, Verdict::Unknown { .. }),
            "the new target starts unknown"
        );
        assert!(
            matches!(m.vpn(), VpnState::Degraded { since, .. } if *since == t(10)),
            "{:?}",
            m.vpn()
        );
    }

    #[test]
    fn a_tunnel_without_pinned_targets_stays_unknown_and_does_not_block_ok() {
        let config = Config::parse(
            r#"
            [[vpn]]
            name = "dc"
              [[vpn.tunnel]]
              name = "dc-a"
              targets = ["172.16.1.10"]
              [[vpn.tunnel]]
              name = "dc-b"
            "#,
            "test",
        )
        .unwrap();
        assert_eq!(config.warnings.len(), 1);
        let mut m = HealthModel::new(&config);
        m.handle_probe(A, &ok(), t(0));
        assert!(
            matches!(&m.tunnel(TunnelId { connection: 0, tunnel: 1 }).verdict, Verdict::Unknown { reason } if reason == "no pinned targets")
        );
        assert_eq!(m.vpn().token(), "OK");
    }
}
