//! The health model: pure and sans-IO. Probe results and control-plane readings come in
//! with the time they were made; verdicts for targets, tunnels, connections and the VPN
//! come out. Nothing here reads a clock or touches a socket.

use std::time::Duration;

use crate::config::{Config, ProbeSettings, ReloadMapping, TargetScope};
use crate::health::failover::{FailoverTracker, Observation};
use crate::health::tcp_service::ServiceHealth;
use crate::health::verdict::{settle, Settle};
use crate::health::ConnectionState;
use crate::health::Verdict;
use crate::health::VpnState;
use crate::messages::{ProbeOutcome, ServiceAnswer};
use crate::types::{TargetId, Timestamp, TunnelId};

/// One target's hysteresis: streaks of replies and losses against `up_after`/`down_after`.
#[derive(Clone, Debug)]
pub struct TargetHealth {
    pub verdict: Verdict,
    /// Replies in a row.
    pub consecutive_replies: u32,
    /// Lost probes in a row.
    pub consecutive_lost: u32,
    /// Whether it has had a verdict other than unknown at least once.
    pub judged: bool,
    /// When its last probe result came.
    pub last_result: Option<Timestamp>,
    /// When its last reply came: what a down target's page says it waits since.
    pub last_reply: Option<Timestamp>,
    streak_since: Option<Timestamp>,
    /// When the first lost probe of the current loss streak was sent (its result's time
    /// less the timeout it waited): where a failover's measurement starts.
    loss_sent: Option<Timestamp>,
    down_after: u32,
    up_after: u32,
    /// Silence after which its verdict becomes unknown: three intervals without a result
    /// means its pinger is stuck or gone, and its last verdict is no longer true.
    silent_after: Duration,
    /// A TCP target's service (default and unused for ICMP targets).
    pub service: ServiceHealth,
}

impl TargetHealth {
    fn new(probe: &ProbeSettings) -> Self {
        Self {
            verdict: Verdict::unknown("waiting for the first probe results"),
            consecutive_replies: 0,
            consecutive_lost: 0,
            judged: false,
            last_result: None,
            last_reply: None,
            streak_since: None,
            loss_sent: None,
            down_after: probe.down_after,
            up_after: probe.up_after,
            silent_after: probe.interval * 3,
            service: ServiceHealth::default(),
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
            if !replied {
                self.loss_sent = Some(sent_at(outcome, now));
            }
        }
        *streak = streak.saturating_add(1);
        *other = 0;
        self.last_result = Some(now);
        if replied {
            self.last_reply = Some(now);
        }
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
                    reason: loss_reason(self.down_after, outcome),
                })
            }
            // Still down: keep the reason current (a timeout may turn into an ICMP error).
            (Verdict::Down { .. }, false) => Some(Verdict::Down {
                since,
                reason: loss_reason(self.down_after, outcome),
            }),
            (Verdict::Up { .. } | Verdict::Down { .. } | Verdict::Unknown { .. }, _) => None,
        };
        let changed = next.is_some_and(|v| settle(&mut self.verdict, v));
        self.judged |= !matches!(self.verdict, Verdict::Unknown { .. });
        changed
    }

    /// Makes the verdict unknown when no result came for too long; returns true if it did.
    fn handle_timeout(&mut self, now: Timestamp) -> bool {
        let Some(last) = self.last_result else {
            return false;
        };
        if now.since(last) <= self.silent_after || matches!(self.verdict, Verdict::Unknown { .. }) {
            return false;
        }
        self.verdict = Verdict::Unknown {
            reason: format!("no probe result since {last}"),
        };
        self.consecutive_lost = 0;
        self.consecutive_replies = 0;
        true
    }
}

/// When the probe whose outcome came at `now` was sent: a timeout waited `after`, a reply
/// took `rtt`; an ICMP error or a failed send came (about) at once.
fn sent_at(outcome: &ProbeOutcome, now: Timestamp) -> Timestamp {
    let took = match outcome {
        ProbeOutcome::Reply { rtt } => *rtt,
        ProbeOutcome::Timeout { after } => *after,
        ProbeOutcome::IcmpError { .. } | ProbeOutcome::SendFailed { .. } => Duration::ZERO,
    };
    Timestamp::from_millis(now.as_millis().saturating_sub(took.as_millis() as u64))
}

/// Says why a target is down without counting: a count would change the reason with every
/// probe, and with it the alert's details, the state file and the log.
fn loss_reason(down_after: u32, last: &ProbeOutcome) -> String {
    format!("{down_after} or more probes lost in a row, last: {last}")
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
    failovers: FailoverTracker,
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
            .map(|t| TargetHealth::new(&t.probe))
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
            failovers: FailoverTracker::default(),
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
        let changed = if before == health.verdict {
            false
        } else {
            let since = health.verdict_since().unwrap_or(now);
            self.propagate(target, since) | changed
        };
        // Measured between the probes' sending times: when the path was lost and back.
        let observation = self.failover_observation();
        self.failovers.observe(&observation, sent_at(outcome, now));
        changed
    }

    /// Applies what a TCP target's connect found of its service; returns true when it
    /// changed between open and refused. The target's own verdict comes from the probe.
    pub fn handle_service(
        &mut self,
        target: TargetId,
        answer: ServiceAnswer,
        now: Timestamp,
    ) -> bool {
        self.targets
            .get_mut(target.0)
            .is_some_and(|t| t.service.handle(answer, now))
    }

    /// What the failover tracker needs: the shared targets' and each tunnel's latest probes.
    fn failover_observation(&self) -> Observation {
        let shared: Vec<&TargetHealth> = (0..self.targets.len())
            .filter(|&i| self.scopes[i] == TargetScope::Shared)
            .map(|i| &self.targets[i])
            .collect();
        if shared.is_empty() {
            return Observation::default();
        }
        let shared_lost_since = shared
            .iter()
            .all(|t| t.consecutive_lost > 0)
            .then(|| shared.iter().filter_map(|t| t.loss_sent).max())
            .flatten();
        let mut observation = Observation {
            shared_lost_since,
            shared_replied: shared.iter().any(|t| t.consecutive_replies > 0),
            ..Observation::default()
        };
        for (ci, tunnels) in self.tunnel_targets.iter().enumerate() {
            for (ti, ids) in tunnels.iter().enumerate() {
                if ids.is_empty() {
                    continue;
                }
                if ids.iter().all(|id| self.targets[id.0].consecutive_lost > 0) {
                    observation.tunnels_lost.push(TunnelId {
                        connection: ci,
                        tunnel: ti,
                    });
                }
                if ids
                    .iter()
                    .any(|id| self.targets[id.0].consecutive_replies > 0)
                {
                    observation.tunnels_answering += 1;
                }
            }
        }
        observation
    }

    /// The failovers seen (the shared targets' route moving to another tunnel).
    pub fn failovers(&self) -> &FailoverTracker {
        &self.failovers
    }

    /// Hands out the failovers completed since the last call, for the log and metrics.
    pub fn take_fresh_failovers(&mut self) -> Vec<crate::health::failover::Failover> {
        self.failovers.take_fresh()
    }

    /// Returns true when every target has a result within its last three intervals.
    pub fn every_target_reported_since(&self, now: Timestamp) -> bool {
        self.targets.iter().all(|t| {
            t.last_result
                .is_some_and(|l| now.since(l) <= t.silent_after)
        })
    }

    /// Makes every target that has been silent for three intervals unknown (its pinger is
    /// stuck or gone); returns the targets that went unknown.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<TargetId> {
        let mut silent = Vec::new();
        for i in 0..self.targets.len() {
            if self.targets[i].handle_timeout(now) {
                silent.push(TargetId(i));
                self.propagate(TargetId(i), now);
            }
        }
        silent
    }

    /// Carries a target's new verdict up to its tunnel (or the VPN, for a shared target).
    fn propagate(&mut self, target: TargetId, since: Timestamp) -> bool {
        match self.scopes[target.0] {
            TargetScope::Pinned(tunnel) => {
                let data = self.data_plane(tunnel, since);
                let slot = &mut self.tunnels[tunnel.connection][tunnel.tunnel];
                settle(&mut slot.data_plane, data);
                self.recompute_tunnel(tunnel, since)
            }
            TargetScope::Shared => self.recompute_vpn(since),
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
        let shared_up = shared
            .iter()
            .filter(|&&i| self.targets[i].verdict.is_up())
            .count();
        let tunnels: Vec<&TunnelHealth> = self.tunnels.iter().flatten().collect();
        let tunnels_up = tunnels.iter().filter(|t| t.verdict.is_up()).count();
        // Pings through a tunnel's pinned targets are the proof that it carries traffic;
        // a shared target only shows the one tunnel its route uses right now.
        let pinned_answering = tunnels.iter().filter(|t| t.data_plane.is_up()).count();
        let mut paths = format!("{tunnels_up} of {} tunnels up", tunnels.len());
        if !shared.is_empty() {
            paths.push_str(&format!(
                ", {shared_up} of {} shared targets answer",
                shared.len()
            ));
        }

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
        // OK is a promise about every target: until each has been judged once, the best
        // the VPN can be is STARTING.
        let every_target_judged = self.targets.iter().all(|t| t.judged);

        // No path: nothing answers, neither a tunnel's pinned targets nor a shared target,
        // and what is judged says so (every connection down, or every shared target).
        let no_path =
            pinned_answering == 0 && shared_up == 0 && (all_connections_down || all_shared_down);
        let next = if no_path {
            VpnState::Critical {
                since,
                reason: format!(
                    "no working path to the datacenter ({paths}): {}",
                    problems.join("; ")
                ),
            }
        } else if all_shared_down && pinned_answering > 0 {
            VpnState::Degraded {
                since,
                reason: format!(
                    "the VPN carries traffic but the shared targets do not answer ({paths}; {pinned_answering} tunnels' pinned targets answer): a failover in progress, or these hosts do not answer; {}",
                    problems.join("; ")
                ),
            }
        } else if !problems.is_empty() {
            VpnState::Degraded {
                since,
                reason: format!("{paths}: {}", problems.join("; ")),
            }
        } else if every_target_judged {
            VpnState::Ok { since }
        } else {
            VpnState::Starting
        };
        settle(&mut self.vpn, next)
    }

    /// Takes over what `old` (built for `old_config`) knew of the targets, tunnels and
    /// connections that `config` still has (paired by `mapping`: by identity, so a renamed
    /// tunnel keeps its outage), then recomputes every verdict above the targets. A verdict
    /// that keeps its kind keeps its `since`: a reload that leaves a tunnel alone leaves
    /// its state alone.
    pub fn adopt(
        &mut self,
        old: &HealthModel,
        (old_config, config): (&Config, &Config),
        mapping: &ReloadMapping,
        now: Timestamp,
    ) {
        for &(new, old_id) in &mapping.targets {
            let probe = config.targets[new.0].probe;
            self.targets[new.0] = TargetHealth {
                down_after: probe.down_after,
                up_after: probe.up_after,
                silent_after: probe.interval * 3,
                ..old.targets[old_id.0].clone()
            };
        }
        for &(new, old_index) in &mapping.connections {
            self.connections[new] = old.connections[old_index].clone();
        }
        for &(id, o) in &mapping.tunnels {
            let polled = config.aws.is_some() && config.connections[id.connection].id.is_some();
            let old_polled =
                old_config.aws.is_some() && old_config.connections[o.connection].id.is_some();
            let kept_control = self.tunnels[id.connection][id.tunnel].control_plane.clone();
            self.tunnels[id.connection][id.tunnel] = old.tunnels[o.connection][o.tunnel].clone();
            // AWS's view only carries over while the tunnel is still polled the same way.
            if !(polled && old_polled && config.tunnel(id).outside_ip.is_some()) {
                self.tunnels[id.connection][id.tunnel].control_plane = kept_control;
            }
        }
        self.vpn = old.vpn.clone();
        let tunnel_ids: Vec<TunnelId> = config.tunnel_ids().collect();
        self.failovers.adopt(&old.failovers, |old_id| {
            mapping
                .tunnels
                .iter()
                .find(|(_, o)| *o == old_id)
                .map(|(new, _)| *new)
        });
        for id in tunnel_ids.iter().copied() {
            let data = self.data_plane(id, now);
            settle(&mut self.tunnels[id.connection][id.tunnel].data_plane, data);
            self.recompute_tunnel(id, now);
        }
        if tunnel_ids.is_empty() {
            self.recompute_vpn(now);
        }
    }

    /// Moves the start of a tunnel's outage back to `since`, and its connection's with it:
    /// an outage that began before a restart, known from the alert saved then. Nothing
    /// moves unless the tunnel is down and `since` is earlier.
    pub fn backdate_outage(&mut self, id: TunnelId, since: Timestamp) {
        let verdict = &mut self.tunnels[id.connection][id.tunnel].verdict;
        let Verdict::Down { since: start, .. } = verdict else {
            return;
        };
        if since >= *start {
            return;
        }
        *start = since;
        match &mut self.connections[id.connection] {
            ConnectionState::Down { since: start, .. }
            | ConnectionState::Degraded { since: start, .. } => *start = (*start).min(since),
            ConnectionState::Healthy { .. } | ConnectionState::Unknown { .. } => {}
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
mod tests;
