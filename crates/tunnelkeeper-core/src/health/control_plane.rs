//! The control plane, pure and sans-IO: what EC2 says of each tunnel, turned into a
//! verdict per tunnel, with staleness when answers stop coming; AWS's maintenance details
//! per tunnel; and the advisories (tunnel options, route health) drawn from the answers.
//! The EC2 pollers feed it readings (already stripped of everything secret); it never
//! touches the SDK or a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::health::advice::{self, Advisory, RouteHistory};
use crate::health::maintenance::{self, MaintenancePhase, TunnelMaintenance};
use crate::health::Verdict;
use crate::messages::ApiConnectionState;
use crate::messages::ApiTunnelStatus;
use crate::messages::AwsErrorKind;
use crate::messages::ConnectionReading;
use crate::messages::MaintenanceResult;
use crate::messages::TunnelReading;
use crate::types::{OutsideIp, Timestamp, TunnelId, VpnConnectionId};

/// What `/status` shows of the control plane as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ControlPlaneStatus {
    /// When the last good answer came.
    pub last_success: Option<Timestamp>,
    /// How old it is, in seconds.
    pub answer_age_seconds: Option<f64>,
    /// When the next answer is due: the poller's next call plus the call timeout.
    pub next_answer_due: Option<Timestamp>,
    /// True when the answers due did not come within the staleness limit (tunnels'
    /// control plane is then unknown).
    pub stale: bool,
    /// Failed calls by kind since start.
    pub errors: BTreeMap<&'static str, u64>,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
    /// Connection-level problems: missing, deleted, unknown outside IPs.
    pub problems: Vec<String>,
    /// Configured connections EC2 does not know (or is deleting): the config no longer
    /// matches AWS.
    pub connections_not_found: Vec<ConnectionNotFound>,
    /// Failed `GetVpnTunnelReplacementStatus` calls by kind since start.
    pub maintenance_errors: BTreeMap<&'static str, u64>,
    /// The last failure of a maintenance check, if any since the last success.
    pub maintenance_last_error: Option<String>,
}

/// A configured connection EC2 does not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionNotFound {
    /// The operator's name for it.
    pub vpn: String,
    /// The configured id.
    pub vpn_id: VpnConnectionId,
    /// What EC2 said: `missing` (not in the answer), `deleted` or `deleting`.
    pub state: &'static str,
}

/// A tunnel EC2 is asked about.
#[derive(Clone, Debug)]
struct PolledTunnel {
    id: TunnelId,
    name: String,
    vpn: String,
    vpn_id: VpnConnectionId,
    outside_ip: Option<OutsideIp>,
}

/// Tracks EC2 answers and turns them into per-tunnel control-plane verdicts.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    stale_after: Duration,
    call_timeout: Duration,
    tunnels: Vec<PolledTunnel>,
    /// Every connection's name, by position in the config.
    connection_names: Vec<String>,
    last_reading: Vec<ConnectionReading>,
    last_success: Option<Timestamp>,
    /// Until when an answer is awaited from a call the poller made (or will make) before
    /// the staleness limit: staleness waits for it.
    awaited_until: Option<Timestamp>,
    next_call: Option<Timestamp>,
    stale: bool,
    errors: BTreeMap<&'static str, u64>,
    last_error: Option<String>,
    /// The last failure's kind and message, for the cause ControlPlaneUnavailable names.
    last_failure: Option<(AwsErrorKind, String)>,
    failing_since: Option<Timestamp>,
    problems: Vec<String>,
    maintenance: Vec<((VpnConnectionId, OutsideIp), TunnelMaintenance)>,
    maintenance_errors: BTreeMap<&'static str, u64>,
    maintenance_last_error: Option<String>,
    routes: RouteHistory,
    advisories: Vec<Advisory>,
}

impl ControlPlane {
    /// Starts with no answer, for the polled connections of `config` (those with an id).
    pub fn new(config: &Config, stale_after: Duration) -> Self {
        let tunnels = config
            .tunnel_ids()
            .filter_map(|id| {
                let c = &config.connections[id.connection];
                let t = config.tunnel(id);
                Some(PolledTunnel {
                    id,
                    name: t.name.to_string(),
                    vpn: c.name.to_string(),
                    vpn_id: c.id.clone()?,
                    outside_ip: t.outside_ip,
                })
            })
            .collect();
        Self {
            stale_after,
            call_timeout: config
                .aws
                .as_ref()
                .map_or(Duration::from_secs(10), |a| a.call_timeout()),
            tunnels,
            connection_names: config
                .connections
                .iter()
                .map(|c| c.name.to_string())
                .collect(),
            last_reading: Vec::new(),
            last_success: None,
            awaited_until: None,
            next_call: None,
            stale: false,
            errors: AwsErrorKind::ALL.iter().map(|k| (k.label(), 0)).collect(),
            last_error: None,
            last_failure: None,
            failing_since: None,
            problems: Vec::new(),
            maintenance: Vec::new(),
            maintenance_errors: AwsErrorKind::ALL.iter().map(|k| (k.label(), 0)).collect(),
            maintenance_last_error: None,
            routes: RouteHistory::default(),
            advisories: Vec::new(),
        }
    }

    /// Takes a good answer; returns the verdict for every polled tunnel.
    pub fn handle_reading(
        &mut self,
        reading: Vec<ConnectionReading>,
        now: Timestamp,
    ) -> Vec<(TunnelId, Verdict)> {
        self.last_success = Some(now);
        self.stale = false;
        self.last_error = None;
        self.last_failure = None;
        self.failing_since = None;
        self.problems = reading
            .iter()
            .flat_map(|c| connection_problems(c, self.connection_name(c.connection)))
            .collect();
        let verdicts = reading
            .iter()
            .flat_map(|c| {
                c.tunnels.iter().enumerate().map(move |(ti, t)| {
                    (
                        TunnelId {
                            connection: c.connection,
                            tunnel: ti,
                        },
                        tunnel_verdict(c, t, now),
                    )
                })
            })
            .collect();
        self.routes.record(&reading, now);
        self.last_reading = reading;
        self.refresh_advisories(now);
        verdicts
    }

    fn refresh_advisories(&mut self, now: Timestamp) {
        let names = |id: TunnelId| {
            self.tunnels
                .iter()
                .find(|t| t.id == id)
                .map(|t| (t.vpn.clone(), t.name.clone()))
                .unwrap_or_default()
        };
        self.advisories = advice::advisories(&self.last_reading, &names, &self.routes, now);
    }

    fn connection_name(&self, connection: usize) -> &str {
        self.connection_names
            .get(connection)
            .map_or("", String::as_str)
    }

    /// Counts a failed call. Verdicts stay as they were until the answer goes stale.
    pub fn handle_error(&mut self, kind: AwsErrorKind, message: String, now: Timestamp) {
        *self.errors.entry(kind.label()).or_default() += 1;
        self.failing_since.get_or_insert(now);
        self.last_error = Some(format!("{}: {message}", kind.label()));
        self.last_failure = Some((kind, message));
    }

    /// Says why EC2 fails, for people (no route, no answer in time, access denied with the
    /// missing action, ...), while it fails.
    pub fn failure_cause(&self) -> Option<String> {
        let (kind, message) = self.last_failure.as_ref()?;
        Some(crate::health::ec2_cause::describe(*kind, message))
    }

    /// Takes the poller's word on when its next call goes out. An answer from a call made
    /// before the staleness limit is awaited until the call's timeout, even past the limit;
    /// a call after the limit cannot keep the answer fresh.
    pub fn handle_next_call(&mut self, at: Timestamp) {
        self.next_call = Some(at);
        let limit = self.last_success.map(|s| s.plus(self.stale_after));
        self.awaited_until = limit
            .filter(|l| at <= *l)
            .map(|_| at.plus(self.call_timeout));
    }

    /// Checks whether the answers due have come; returns unknown verdicts for every polled
    /// tunnel when the last answer has just gone stale (never "down": an API outage says
    /// nothing of the tunnels).
    ///
    /// Stale means: the last good answer is older than the limit, and no call the poller
    /// made before the limit can still answer in time.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Option<Vec<(TunnelId, Verdict)>> {
        if self.stale {
            return None;
        }
        let age = match self.last_success {
            Some(t) => now.since(t),
            None => return None,
        };
        if age <= self.stale_after || self.awaited_until.is_some_and(|t| now <= t) {
            return None;
        }
        self.stale = true;
        let reason = format!(
            "stale: no EC2 answer for {}; the answers due since did not come (last error: {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            self.last_error.as_deref().unwrap_or("none")
        );
        Some(
            self.tunnels
                .iter()
                .map(|t| {
                    (
                        t.id,
                        Verdict::Unknown {
                            reason: reason.clone(),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Takes a maintenance check of one tunnel.
    pub fn handle_maintenance(&mut self, id: TunnelId, result: MaintenanceResult, now: Timestamp) {
        match result {
            MaintenanceResult::Reading(reading) => {
                self.maintenance_last_error = None;
                let Some(key) = self.key(id) else { return };
                let entry = TunnelMaintenance {
                    reading,
                    checked_at: now,
                };
                match self.maintenance.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, m)) => *m = entry,
                    None => self.maintenance.push((key, entry)),
                }
            }
            MaintenanceResult::Failed { kind, message } => {
                *self.maintenance_errors.entry(kind.label()).or_default() += 1;
                self.maintenance_last_error = Some(format!("{}: {message}", kind.label()));
            }
        }
    }

    fn key(&self, id: TunnelId) -> Option<(VpnConnectionId, OutsideIp)> {
        let t = self.tunnels.iter().find(|t| t.id == id)?;
        Some((t.vpn_id.clone(), t.outside_ip?))
    }

    /// Returns what AWS last said of a tunnel's maintenance.
    pub fn maintenance(&self, id: TunnelId) -> Option<&TunnelMaintenance> {
        let key = self.key(id)?;
        self.maintenance
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, m)| m)
    }

    /// Returns whether a tunnel down since `down_since` went down with an AWS endpoint
    /// replacement, and whether the grace has run out.
    pub fn maintenance_phase(
        &self,
        id: TunnelId,
        down_since: Timestamp,
        now: Timestamp,
        grace: Duration,
    ) -> Option<MaintenancePhase> {
        maintenance::phase(self.maintenance(id)?, down_since, now, grace)
    }

    /// Returns the connection-level problems of the last good answer.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Returns the advisories drawn from the last good answer.
    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Returns why EC2 does not know a configured connection, from the last good answer:
    /// `missing`, `deleted` or `deleting`.
    pub fn not_found(&self, connection: usize) -> Option<&'static str> {
        let c = self
            .last_reading
            .iter()
            .find(|c| c.connection == connection)?;
        match c.state {
            ApiConnectionState::Missing => Some("missing"),
            ApiConnectionState::Deleted => Some("deleted"),
            ApiConnectionState::Deleting => Some("deleting"),
            ApiConnectionState::Available
            | ApiConnectionState::Pending
            | ApiConnectionState::Unknown(_) => None,
        }
    }

    /// Returns the reading of a tunnel from the last good answer.
    pub fn tunnel_reading(&self, id: TunnelId) -> Option<&TunnelReading> {
        self.last_reading
            .iter()
            .find(|c| c.connection == id.connection)
            .and_then(|c| c.tunnels.get(id.tunnel))
    }

    /// Returns true when EC2 is asked about this tunnel.
    pub fn polls(&self, id: TunnelId) -> bool {
        self.tunnels.iter().any(|t| t.id == id)
    }

    /// Returns true when the last good answer said the tunnel is down: while that answer
    /// is stale, a tunnel whose pings pass may still be down in AWS's eyes.
    pub fn last_answer_said_down(&self, id: TunnelId) -> bool {
        self.last_reading
            .iter()
            .find(|c| c.connection == id.connection)
            .and_then(|c| c.tunnels.get(id.tunnel).map(|t| (c, t)))
            .is_some_and(|(c, t)| tunnel_verdict(c, t, Timestamp::from_millis(0)).is_down())
    }

    /// Returns the status for `/status`.
    pub fn status(&self, now: Timestamp) -> ControlPlaneStatus {
        let connections_not_found = self
            .last_reading
            .iter()
            .filter_map(|c| {
                Some(ConnectionNotFound {
                    state: self.not_found(c.connection)?,
                    vpn: self.connection_name(c.connection).to_string(),
                    vpn_id: c.id.clone(),
                })
            })
            .collect();
        ControlPlaneStatus {
            last_success: self.last_success,
            answer_age_seconds: self.last_success.map(|t| now.since(t).as_secs_f64()),
            next_answer_due: self.next_call.map(|t| t.plus(self.call_timeout)),
            stale: self.stale,
            errors: self.errors.clone(),
            last_error: self.last_error.clone(),
            problems: self.problems.clone(),
            connections_not_found,
            maintenance_errors: self.maintenance_errors.clone(),
            maintenance_last_error: self.maintenance_last_error.clone(),
        }
    }

    /// Returns how long calls have failed without a success in between, with the last error.
    pub fn failing_for(&self, now: Timestamp) -> Option<(Duration, String)> {
        let since = self.failing_since?;
        Some((
            now.since(since),
            self.last_error.clone().unwrap_or_default(),
        ))
    }

    /// Returns true once a call has succeeded.
    pub fn has_succeeded(&self) -> bool {
        self.last_success.is_some()
    }

    /// Takes over what `old` knew: EC2's health (staleness and failure streaks go on after
    /// a reload), the last answer for every connection `config` still polls with the
    /// same tunnels, moved to its new position, and the maintenance details and route
    /// history of the tunnels still configured.
    pub fn adopt(&mut self, old: &ControlPlane, config: &Config) {
        self.last_reading = old
            .last_reading
            .iter()
            .filter_map(|r| {
                let (ci, c) = config
                    .connections
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.id.as_ref() == Some(&r.id))?;
                let same_tunnels = c.tunnels.len() == r.tunnels.len()
                    && c.tunnels
                        .iter()
                        .zip(&r.tunnels)
                        .all(|(t, read)| t.outside_ip == read.outside_ip);
                same_tunnels.then(|| ConnectionReading {
                    connection: ci,
                    ..r.clone()
                })
            })
            .collect();
        self.last_success = old.last_success;
        self.stale = old.stale;
        self.errors = old.errors.clone();
        self.last_error = old.last_error.clone();
        self.last_failure = old.last_failure.clone();
        self.failing_since = old.failing_since;
        self.problems = self
            .last_reading
            .iter()
            .flat_map(|c| connection_problems(c, self.connection_name(c.connection)))
            .collect();
        let still = |key: &(VpnConnectionId, OutsideIp)| {
            self.tunnels
                .iter()
                .any(|t| t.vpn_id == key.0 && t.outside_ip == Some(key.1))
        };
        self.maintenance = old
            .maintenance
            .iter()
            .filter(|(k, _)| still(k))
            .cloned()
            .collect();
        self.maintenance_errors = old.maintenance_errors.clone();
        self.maintenance_last_error = old.maintenance_last_error.clone();
        let mut routes = old.routes.clone();
        routes.remap(|old_id| {
            let k = old.key(old_id)?;
            self.tunnels
                .iter()
                .find(|t| t.vpn_id == k.0 && t.outside_ip == Some(k.1))
                .map(|t| t.id)
        });
        self.routes = routes;
        if let Some(at) = self.last_success {
            self.refresh_advisories(at);
        }
    }

    /// Returns true once a call has succeeded or failed.
    pub fn has_reported(&self) -> bool {
        self.last_success.is_some() || self.failing_since.is_some()
    }

    /// Returns whether the last answer is stale.
    pub fn is_stale(&self) -> bool {
        self.stale
    }
}

fn connection_problems(c: &ConnectionReading, name: &str) -> Vec<String> {
    let mut problems = Vec::new();
    match &c.state {
        ApiConnectionState::Available => {}
        ApiConnectionState::Missing => problems.push(format!(
            "connection {name} ({}) is not in EC2's answer: deleted or replaced, or in another account or Region; the config no longer matches AWS",
            c.id
        )),
        ApiConnectionState::Deleting | ApiConnectionState::Deleted => problems.push(format!(
            "connection {name} ({}) is {} in EC2; the config no longer matches AWS",
            c.id,
            state_text(&c.state)
        )),
        ApiConnectionState::Pending => {
            problems.push(format!("connection {} is still pending in EC2", c.id))
        }
        ApiConnectionState::Unknown(s) => problems.push(format!(
            "connection {} has a state this build does not know: {s}",
            c.id
        )),
    }
    if c.state == ApiConnectionState::Available {
        for t in &c.tunnels {
            if let (Some(ip), None) = (t.outside_ip, &t.telemetry) {
                problems.push(format!(
                    "connection {} lists no tunnel with outside IP {ip} (it lists {})",
                    c.id,
                    if c.listed_outside_ips.is_empty() {
                        "none".to_string()
                    } else {
                        c.listed_outside_ips.join(", ")
                    }
                ));
            }
        }
    }
    problems
}

fn state_text(state: &ApiConnectionState) -> &str {
    match state {
        ApiConnectionState::Available => "available",
        ApiConnectionState::Pending => "pending",
        ApiConnectionState::Deleting => "deleting",
        ApiConnectionState::Deleted => "deleted",
        ApiConnectionState::Unknown(s) => s,
        ApiConnectionState::Missing => "missing",
    }
}

/// Decides one tunnel's control-plane verdict from its connection and telemetry.
pub fn tunnel_verdict(c: &ConnectionReading, t: &TunnelReading, now: Timestamp) -> Verdict {
    match &c.state {
        ApiConnectionState::Available => {}
        ApiConnectionState::Missing
        | ApiConnectionState::Pending
        | ApiConnectionState::Deleting
        | ApiConnectionState::Deleted
        | ApiConnectionState::Unknown(_) => {
            return Verdict::Unknown {
                reason: format!("connection {} is {} in EC2", c.id, state_text(&c.state)),
            }
        }
    }
    let Some(telemetry) = &t.telemetry else {
        let ip = t
            .outside_ip
            .map_or("(none configured)".to_string(), |ip| ip.to_string());
        return Verdict::Unknown {
            reason: format!("EC2 lists no tunnel with outside IP {ip}"),
        };
    };
    let since = telemetry.last_status_change.unwrap_or(now);
    match &telemetry.status {
        ApiTunnelStatus::Up if !c.static_routes_only && telemetry.accepted_route_count == Some(0) => Verdict::Down {
            since,
            reason: "BGP up with zero accepted routes: AWS has no route to the datacenter through this tunnel".into(),
        },
        ApiTunnelStatus::Up => Verdict::Up { since },
        ApiTunnelStatus::Down => Verdict::Down {
            since,
            reason: format!(
                "AWS reports DOWN: {}",
                telemetry.status_message.as_deref().filter(|m| !m.is_empty()).unwrap_or("no status message")
            ),
        },
        ApiTunnelStatus::Unknown(s) => Verdict::Unknown {
            reason: format!("AWS reports a tunnel status this build does not know: {s}"),
        },
        ApiTunnelStatus::Missing => Verdict::Unknown {
            reason: "AWS telemetry has no status for this tunnel".into(),
        },
    }
}

#[cfg(test)]
mod tests;
