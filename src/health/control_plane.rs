//! The control plane, pure and sans-IO: what EC2 says of each tunnel, turned into a
//! verdict per tunnel, with staleness when answers stop coming. The EC2 poller feeds it
//! readings (already stripped of everything secret); it never touches the SDK or a clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::Config;
use crate::health::Verdict;
use crate::messages::ApiConnectionState;
use crate::messages::ApiTunnelStatus;
use crate::messages::AwsErrorKind;
use crate::messages::ConnectionReading;
use crate::messages::TunnelReading;
use crate::types::{Timestamp, TunnelId};

/// What `/status` shows of the control plane as a whole.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ControlPlaneStatus {
    /// When the last good answer came.
    pub last_success: Option<Timestamp>,
    /// How old it is, in seconds.
    pub answer_age_seconds: Option<f64>,
    /// True when older than three poll intervals (tunnels' control plane is then unknown).
    pub stale: bool,
    /// Failed calls by kind since start.
    pub errors: BTreeMap<&'static str, u64>,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
    /// Connection-level problems: missing, deleted, unknown outside IPs.
    pub problems: Vec<String>,
}

/// Tracks EC2 answers and turns them into per-tunnel control-plane verdicts.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    stale_after: Duration,
    tunnels: Vec<(TunnelId, String)>,
    last_reading: Vec<ConnectionReading>,
    last_success: Option<Timestamp>,
    stale: bool,
    errors: BTreeMap<&'static str, u64>,
    last_error: Option<String>,
    failing_since: Option<Timestamp>,
    problems: Vec<String>,
}

impl ControlPlane {
    /// Starts with no answer, for the polled connections of `config` (those with an id).
    pub fn new(config: &Config, stale_after: Duration) -> Self {
        let tunnels = config
            .tunnel_ids()
            .filter(|id| config.connections[id.connection].id.is_some())
            .map(|id| (id, config.tunnel(id).name.to_string()))
            .collect();
        Self {
            stale_after,
            tunnels,
            last_reading: Vec::new(),
            last_success: None,
            stale: false,
            errors: AwsErrorKind::ALL.iter().map(|k| (k.label(), 0)).collect(),
            last_error: None,
            failing_since: None,
            problems: Vec::new(),
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
        self.failing_since = None;
        self.problems = reading.iter().flat_map(connection_problems).collect();
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
        self.last_reading = reading;
        verdicts
    }

    /// Counts a failed call. Verdicts stay as they were until the answer goes stale.
    pub fn handle_error(&mut self, kind: AwsErrorKind, message: String, now: Timestamp) {
        *self.errors.entry(kind.label()).or_default() += 1;
        self.failing_since.get_or_insert(now);
        self.last_error = Some(format!("{}: {message}", kind.label()));
    }

    /// Checks the age of the last answer; returns unknown verdicts for every polled tunnel
    /// when it has just gone stale (never "down": an API outage says nothing of the tunnels).
    pub fn handle_timeout(&mut self, now: Timestamp) -> Option<Vec<(TunnelId, Verdict)>> {
        if self.stale {
            return None;
        }
        let age = match self.last_success {
            Some(t) => now.since(t),
            None => return None,
        };
        if age <= self.stale_after {
            return None;
        }
        self.stale = true;
        let reason = format!(
            "stale: no EC2 answer for {} (last error: {})",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            self.last_error.as_deref().unwrap_or("none")
        );
        Some(
            self.tunnels
                .iter()
                .map(|(id, _)| {
                    (
                        *id,
                        Verdict::Unknown {
                            reason: reason.clone(),
                        },
                    )
                })
                .collect(),
        )
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
        self.tunnels.iter().any(|(t, _)| *t == id)
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
        ControlPlaneStatus {
            last_success: self.last_success,
            answer_age_seconds: self.last_success.map(|t| now.since(t).as_secs_f64()),
            stale: self.stale,
            errors: self.errors.clone(),
            last_error: self.last_error.clone(),
            problems: self.problems.clone(),
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
    /// a reload) and the last answer for every connection `config` still polls with the
    /// same tunnels, moved to its new position.
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
        self.failing_since = old.failing_since;
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

fn connection_problems(c: &ConnectionReading) -> Vec<String> {
    let mut problems = Vec::new();
    match &c.state {
        ApiConnectionState::Available => {}
        ApiConnectionState::Missing => {
            problems.push(format!("connection {} is not in EC2's answer", c.id))
        }
        ApiConnectionState::Deleting | ApiConnectionState::Deleted => problems.push(format!(
            "connection {} is {} in EC2",
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
mod tests {
    use super::*;
    use crate::messages::{
        ApiConnectionState, ApiTunnelStatus, ConnectionReading, Telemetry, TunnelOptionsReading,
        TunnelReading,
    };
    use crate::types::{OutsideIp, VpnConnectionId};

    fn reading(
        state: ApiConnectionState,
        telemetry: Option<Telemetry>,
        static_routes_only: bool,
    ) -> (ConnectionReading, TunnelReading) {
        let t = TunnelReading {
            outside_ip: Some(OutsideIp("52.2.144.13".parse().unwrap())),
            telemetry,
            options: None,
        };
        let c = ConnectionReading {
            connection: 0,
            id: VpnConnectionId::new("vpn-0123456789abcdef0"),
            state,
            static_routes_only,
            tunnels: vec![t.clone()],
            listed_outside_ips: vec!["52.2.144.99".into()],
        };
        (c, t)
    }

    fn telemetry(status: ApiTunnelStatus, message: &str, routes: Option<i32>) -> Option<Telemetry> {
        Some(Telemetry {
            status,
            status_message: Some(message.into()),
            last_status_change: Some(Timestamp::from_secs(100)),
            accepted_route_count: routes,
        })
    }

    #[test]
    fn tunnel_verdict_table() {
        use ApiConnectionState as C;
        use ApiTunnelStatus as S;
        let now = Timestamp::from_secs(500);
        let cases = [
            // (connection state, telemetry, static, expected label, reason fragment)
            (C::Available, telemetry(S::Up, "", Some(3)), false, "up", ""),
            (C::Available, telemetry(S::Up, "", Some(0)), true, "up", ""),
            (
                C::Available,
                telemetry(S::Up, "", Some(0)),
                false,
                "down",
                "BGP up with zero accepted routes",
            ),
            (C::Available, telemetry(S::Up, "", None), false, "up", ""),
            (
                C::Available,
                telemetry(S::Down, "IPSEC IS DOWN", Some(0)),
                false,
                "down",
                "AWS reports DOWN: IPSEC IS DOWN",
            ),
            (
                C::Available,
                telemetry(S::Down, "", None),
                false,
                "down",
                "AWS reports DOWN: no status message",
            ),
            (
                C::Available,
                telemetry(S::Unknown("DEGRADED".into()), "", Some(1)),
                false,
                "unknown",
                "does not know: DEGRADED",
            ),
            (
                C::Available,
                telemetry(S::Missing, "", Some(1)),
                false,
                "unknown",
                "no status",
            ),
            (
                C::Available,
                None,
                false,
                "unknown",
                "no tunnel with outside IP 52.2.144.13",
            ),
            (
                C::Deleted,
                telemetry(S::Up, "", Some(1)),
                false,
                "unknown",
                "is deleted in EC2",
            ),
            (
                C::Deleting,
                telemetry(S::Up, "", Some(1)),
                false,
                "unknown",
                "is deleting in EC2",
            ),
            (
                C::Pending,
                telemetry(S::Up, "", Some(1)),
                false,
                "unknown",
                "is pending",
            ),
            (C::Missing, None, false, "unknown", "is missing"),
            (
                C::Unknown("frozen".into()),
                telemetry(S::Up, "", Some(1)),
                false,
                "unknown",
                "frozen",
            ),
        ];
        for (state, tel, static_only, label, fragment) in cases {
            let (c, t) = reading(state.clone(), tel.clone(), static_only);
            let v = tunnel_verdict(&c, &t, now);
            assert_eq!(v.label(), label, "{state:?} {tel:?}");
            let reason = match &v {
                Verdict::Up { since } => {
                    assert_eq!(
                        *since,
                        Timestamp::from_secs(100),
                        "since comes from LastStatusChange"
                    );
                    String::new()
                }
                Verdict::Down { reason, .. } | Verdict::Unknown { reason } => reason.clone(),
            };
            assert!(reason.contains(fragment), "{reason:?} lacks {fragment:?}");
        }
    }

    #[test]
    fn the_default_tunnel_options_wait_for_the_datacenter() {
        let mut o = TunnelOptionsReading::default();
        assert!(o.waits_for_datacenter());
        o.startup_action = Some("start".into());
        assert!(!o.waits_for_datacenter());
        o.startup_action = Some("add".into());
        o.dpd_timeout_action = Some("restart".into());
        assert!(!o.waits_for_datacenter());
    }

    #[test]
    fn answers_go_stale_after_three_intervals_and_become_unknown_not_down() {
        let config = Config::parse(
            r#"
            [aws]
            poll_interval = "10s"
            [[vpn]]
            id = "vpn-0123456789abcdef0"
            name = "dc"
              [[vpn.tunnel]]
              name = "dc-a"
              outside_ip = "52.2.144.13"
              targets = ["172.16.1.10"]
              [[vpn.tunnel]]
              name = "dc-b"
              outside_ip = "52.2.144.14"
              targets = ["172.16.2.10"]
            "#,
            "t",
        )
        .unwrap();
        let mut cp = ControlPlane::new(&config, config.aws.as_ref().unwrap().stale_after());
        assert_eq!(
            cp.handle_timeout(Timestamp::from_secs(1000)),
            None,
            "no answer yet: nothing goes stale"
        );
        let (c, _) = reading(
            ApiConnectionState::Available,
            telemetry(ApiTunnelStatus::Down, "x", None),
            false,
        );
        let verdicts = cp.handle_reading(vec![c], Timestamp::from_secs(0));
        assert_eq!(verdicts.len(), 1);
        cp.handle_error(
            AwsErrorKind::Throttled,
            "RequestLimitExceeded".into(),
            Timestamp::from_secs(5),
        );
        assert_eq!(cp.handle_timeout(Timestamp::from_secs(30)), None);
        let stale = cp
            .handle_timeout(Timestamp::from_secs(31))
            .expect("stale after 30 s");
        assert_eq!(stale.len(), 2);
        for (_, v) in &stale {
            assert!(
                matches!(v, Verdict::Unknown { reason } if reason.starts_with("stale") && reason.contains("throttled")),
                "{v:?}"
            );
        }
        assert_eq!(
            cp.handle_timeout(Timestamp::from_secs(40)),
            None,
            "reported once"
        );
        let status = cp.status(Timestamp::from_secs(40));
        assert!(status.stale);
        assert_eq!(status.errors["throttled"], 1);
        assert_eq!(
            cp.failing_for(Timestamp::from_secs(40)).unwrap().0,
            Duration::from_secs(35)
        );
    }
}
