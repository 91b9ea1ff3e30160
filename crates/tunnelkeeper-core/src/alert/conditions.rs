//! Turns the health model's verdicts into alert conditions, pure and sans-IO: which alerts'
//! conditions hold, which are unknown (an alert then keeps its state), and flap counting.

use std::collections::VecDeque;
use std::time::Duration;

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::alert::paths;
use crate::config::Config;
use crate::health::maintenance::MaintenancePhase;
use crate::health::{ConnectionState, ControlPlane, HealthModel, Verdict, VpnState};
use crate::types::{AlertClass, Severity};
use crate::types::{Timestamp, TunnelId};

/// Counts each tunnel's changes between up and down within a sliding window.
#[derive(Clone, Debug)]
pub struct FlapTracker {
    window: Duration,
    threshold: usize,
    tunnels: Vec<(TunnelId, Option<bool>, VecDeque<Timestamp>)>,
}

impl FlapTracker {
    /// Tracks every tunnel of `config`: `threshold` changes within `window` is flapping.
    pub fn new(config: &Config, threshold: u32, window: Duration) -> Self {
        let tunnels = config
            .tunnel_ids()
            .map(|id| (id, None, VecDeque::new()))
            .collect();
        Self {
            window,
            threshold: threshold as usize,
            tunnels,
        }
    }

    /// Records the tunnels' current verdicts; unknown verdicts are not changes.
    pub fn update(&mut self, model: &HealthModel, now: Timestamp) {
        for (id, last, changes) in &mut self.tunnels {
            let up = match &model.tunnel(*id).verdict {
                Verdict::Up { .. } => Some(true),
                Verdict::Down { .. } => Some(false),
                Verdict::Unknown { .. } => None,
            };
            if let Some(up) = up {
                if last.is_some_and(|l| l != up) {
                    changes.push_back(now);
                }
                *last = Some(up);
            }
            while changes.front().is_some_and(|t| now.since(*t) > self.window) {
                changes.pop_front();
            }
        }
    }

    /// Takes over the change history of the tunnels `old` tracked that `config` still has.
    pub fn adopt(&mut self, old: &FlapTracker, old_config: &Config, config: &Config) {
        let name = |c: &Config, id: TunnelId| {
            (
                c.connections[id.connection].name.to_string(),
                c.tunnel(id).name.to_string(),
            )
        };
        for (id, last, changes) in &mut self.tunnels {
            let wanted = name(config, *id);
            if let Some((_, old_last, old_changes)) = old
                .tunnels
                .iter()
                .find(|(oid, _, _)| name(old_config, *oid) == wanted)
            {
                *last = *old_last;
                *changes = old_changes.clone();
            }
        }
    }

    /// Returns how many changes a tunnel made within the window, if that is flapping.
    pub fn flapping(&self, id: TunnelId) -> Option<usize> {
        self.tunnels
            .iter()
            .find(|(t, _, _)| *t == id)
            .map(|(_, _, changes)| changes.len())
            .filter(|n| *n >= self.threshold)
    }

    /// Returns the window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

/// An active condition with what its page says.
fn active(
    summary: impl Into<String>,
    reason: impl Into<String>,
    vpn_id: Option<String>,
) -> Condition {
    Condition::Active(Details {
        summary: summary.into(),
        reason: reason.into(),
        vpn_id,
        severity: None,
    })
}

/// Keeps the first clause of a reason, for a summary line.
fn short(reason: &str) -> String {
    let cut = reason.find([';', '(']).unwrap_or(reason.len());
    let s = reason[..cut].trim();
    let s = if s.is_empty() { reason.trim() } else { s };
    s.chars().take(80).collect()
}

/// Says when the replacement happened and how it is known.
fn replacement_text(phase: MaintenancePhase) -> String {
    match phase.replaced_at() {
        (at, true) => format!("AWS applied maintenance to this tunnel at {at}"),
        (at, false) => format!(
            "maintenance was pending and past its auto-apply time when the tunnel dropped at {at}"
        ),
    }
}

/// Calls out `StartupAction=add`, with which AWS waits for the customer gateway after a
/// replacement.
fn startup_add_text(startup_add: bool) -> &'static str {
    if startup_add {
        "; StartupAction=add: after a replacement AWS waits for the customer gateway to start IKE, so send traffic from the datacenter or restart IKE on the customer gateway"
    } else {
        ""
    }
}

/// Derives every alert condition from the model. `control_unavailable` is since when EC2
/// has been failing, with the last error, once that has lasted longer than the limit.
///
/// One continuous outage of a tunnel is one `TunnelDown`, whichever plane saw it first and
/// whatever the planes do meanwhile: the reason says which plane, the identity does not.
/// Details never carry counters or elapsed times, so a steady outage changes nothing.
///
/// A tunnel that went down with an AWS endpoint replacement pages as
/// `TunnelDownAfterMaintenance` (at the configured severity) for `maintenance_grace`, its
/// `TunnelDown` held; still down after the grace, `TunnelDown` pages (saying why) and the
/// maintenance alert is held until the outage ends.
pub fn conditions(
    config: &Config,
    model: &HealthModel,
    control: Option<&ControlPlane>,
    flaps: &FlapTracker,
    control_unavailable: Option<(Timestamp, String)>,
    now: Timestamp,
) -> Conditions {
    let mut out = Conditions::new();
    // Whether some tunnel's latest probe was lost while it counts as up: the VPN's alert
    // holds too, rather than resolve between two losses.
    let mut any_held = false;
    for (ci, c) in config.connections.iter().enumerate() {
        let mut connection_held = false;
        let vpn = c.name.as_str();
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        for (ti, t) in c.tunnels.iter().enumerate() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let tunnel = model.tunnel(id);
            let key = AlertKey::tunnel(AlertClass::TunnelDown, vpn, t.name.as_str());
            let maintenance_key =
                AlertKey::tunnel(AlertClass::TunnelDownAfterMaintenance, vpn, t.name.as_str());
            let down = tunnel.verdict.is_down();
            match &tunnel.verdict {
                Verdict::Down { reason, since } => {
                    let summary = if tunnel.control_plane.is_up() {
                        "AWS reports UP but pinned targets are unreachable".to_string()
                    } else {
                        short(reason)
                    };
                    let grace = config.alerts.maintenance_grace;
                    let phase = control.and_then(|cp| cp.maintenance_phase(id, *since, now, grace));
                    let startup_add = control
                        .and_then(|cp| cp.tunnel_reading(id))
                        .and_then(|r| r.options.as_ref())
                        .is_some_and(|o| o.startup_action.as_deref().unwrap_or("add") == "add");
                    match phase {
                        Some(p @ MaintenancePhase::Grace { until, .. }) => {
                            out.insert(key, Condition::Unknown);
                            out.insert(
                                maintenance_key,
                                active(
                                    "down after AWS tunnel endpoint replacement",
                                    format!(
                                        "AWS tunnel endpoint replacement: {}; {reason}; pages as TunnelDown if still down at {until}{}",
                                        replacement_text(p),
                                        startup_add_text(startup_add)
                                    ),
                                    vpn_id.clone(),
                                ),
                            );
                        }
                        Some(p @ MaintenancePhase::Overdue { .. }) => {
                            out.insert(maintenance_key, Condition::Unknown);
                            out.insert(
                                key,
                                active(
                                    format!(
                                        "still down {} after AWS tunnel endpoint replacement",
                                        humantime::format_duration(grace)
                                    ),
                                    format!(
                                        "{reason}; still down {} after the AWS tunnel endpoint replacement ({}){}",
                                        humantime::format_duration(grace),
                                        replacement_text(p),
                                        startup_add_text(startup_add)
                                    ),
                                    vpn_id.clone(),
                                ),
                            );
                        }
                        None => {
                            let mut reason = reason.clone();
                            if let Some(text) = paths::failover_text(model, id, *since) {
                                reason.push_str("; ");
                                reason.push_str(&text);
                            }
                            out.insert(key, active(summary, reason, vpn_id.clone()));
                        }
                    }
                }
                Verdict::Unknown { .. } => {
                    out.insert(key, Condition::Unknown);
                    out.insert(maintenance_key, Condition::Unknown);
                }
                Verdict::Up { .. } => {
                    // EC2 never having answered holds nothing: the data plane decides
                    // alone (EC2 may never answer, for want of a route or a permission).
                    // Only AWS's own last word on this tunnel, DOWN before it went quiet,
                    // holds this tunnel's and its connection's alert: pings never said
                    // that outage began, so they cannot say it ended. The VPN's alert is
                    // the pings' alone.
                    // Likewise, for the seconds before the first EC2 call of this process
                    // comes back (an answer or an error), right after a restart or reload.
                    let aws_said_down_then_quiet =
                        matches!(tunnel.control_plane, Verdict::Unknown { .. })
                            && control.is_some_and(|cp| {
                                cp.polls(id)
                                    && (!cp.has_reported()
                                        || (cp.is_stale() && cp.last_answer_said_down(id)))
                            });
                    // Nor is it over while the latest probe through the tunnel was lost:
                    // a recovery is announced on a reply, never between two losses.
                    let last_probe_lost = !t.targets.is_empty()
                        && t.targets
                            .iter()
                            .all(|target| model.target(*target).consecutive_lost > 0);
                    if aws_said_down_then_quiet || last_probe_lost {
                        connection_held = true;
                        any_held |= last_probe_lost;
                        out.insert(key, Condition::Unknown);
                        out.insert(maintenance_key, Condition::Unknown);
                    }
                }
            }
            let flap_key = AlertKey::tunnel(AlertClass::TunnelFlapping, vpn, t.name.as_str());
            // A flapping alert starts only while the tunnel is down: the threshold is often
            // crossed by a recovery, and nothing may page in the instant a tunnel comes back.
            match (flaps.flapping(id), down) {
                (Some(changes), true) => {
                    out.insert(
                        flap_key,
                        active(
                            format!(
                                "changed state {changes} times in {}",
                                humantime::format_duration(flaps.window())
                            ),
                            format!(
                                "tunnel {} went up and down {changes} times within {}",
                                t.name,
                                humantime::format_duration(flaps.window())
                            ),
                            vpn_id.clone(),
                        ),
                    );
                }
                // Flapping but up right now, or calm again but still down: a flapping alert
                // holds (no page at a recovery, no "resolved" mid-outage), none starts.
                (Some(_), false) | (None, true) => {
                    out.insert(flap_key, Condition::Unknown);
                }
                (None, false) => {}
            }
        }
        if let Some((state, id)) = control.and_then(|cp| cp.not_found(ci)).zip(c.id.as_ref()) {
            out.insert(
                AlertKey::connection(AlertClass::ConnectionNotFound, vpn),
                active(
                    format!("{id} not found in EC2"),
                    match state {
                        "missing" => format!(
                            "EC2 does not know connection {vpn} ({id}): deleted or replaced (a new customer gateway means a new connection), or in another account or Region; the config no longer matches AWS, and its tunnels' control plane is unknown"
                        ),
                        other => format!(
                            "connection {vpn} ({id}) is {other} in EC2; the config no longer matches AWS, and its tunnels' control plane is unknown"
                        ),
                    },
                    vpn_id.clone(),
                ),
            );
        }
        for (ti, t) in c.tunnels.iter().enumerate() {
            let id = TunnelId {
                connection: ci,
                tunnel: ti,
            };
            let pending = control
                .and_then(|cp| cp.maintenance(id))
                .filter(|m| m.reading.pending_text().is_some());
            if let Some(m) = pending {
                let when = m
                    .reading
                    .auto_apply_after
                    .map_or("at a time AWS has not given".to_string(), |t| {
                        format!("after {t}")
                    });
                out.insert(
                    AlertKey::tunnel(AlertClass::TunnelMaintenancePending, vpn, t.name.as_str()),
                    active(
                        format!("AWS maintenance pending, applied automatically {when}"),
                        format!(
                            "AWS announced tunnel endpoint maintenance ({}); AWS applies it by itself {when} (MaintenanceAutoAppliedAfter), and the tunnel goes down while its endpoint is replaced. Apply it earlier at a quiet time with ReplaceVpnTunnel (tunnel endpoint lifecycle control){}",
                            m.reading.pending_text().unwrap_or_default(),
                            startup_add_text(
                                control
                                    .and_then(|cp| cp.tunnel_reading(id))
                                    .and_then(|r| r.options.as_ref())
                                    .is_some_and(|o| {
                                        o.startup_action.as_deref().unwrap_or("add") == "add"
                                    })
                            )
                        ),
                        vpn_id.clone(),
                    ),
                );
            }
        }
        let key = AlertKey::connection(AlertClass::ConnectionDown, vpn);
        match model.connection(ci) {
            ConnectionState::Down { reason, .. } => {
                let summary = if c.tunnels.len() == 2 {
                    "both tunnels down".to_string()
                } else {
                    short(reason)
                };
                // The City's rule: with another connection still carrying traffic this
                // usually heals by itself; it is critical once it was the last one.
                let last_path = !(0..config.connections.len()).any(|other| {
                    other != ci
                        && matches!(
                            model.connection(other),
                            ConnectionState::Healthy { .. } | ConnectionState::Degraded { .. }
                        )
                });
                let mut condition = active(summary, reason.clone(), vpn_id.clone());
                if let Condition::Active(d) = &mut condition {
                    d.severity = Some(if last_path {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    });
                    if !last_path {
                        d.reason.push_str(
                            "; another connection still carries traffic to the datacenter",
                        );
                    }
                }
                out.insert(key, condition);
            }
            ConnectionState::Unknown { .. } => {
                out.insert(key, Condition::Unknown);
            }
            ConnectionState::Healthy { .. } | ConnectionState::Degraded { .. } => {
                if connection_held {
                    out.insert(key, Condition::Unknown);
                }
            }
        }
    }
    let key = AlertKey::global(AlertClass::VpnUnreachable);
    match model.vpn() {
        VpnState::Critical { reason, .. } => {
            out.insert(
                key,
                active("no working path to the datacenter", reason.clone(), None),
            );
        }
        VpnState::Starting => {
            out.insert(key, Condition::Unknown);
        }
        VpnState::Ok { .. } | VpnState::Degraded { .. } => {
            // As for a tunnel: no recovery between two losses. While every shared target's
            // latest probe was lost, the path may be gone another way (the connection came
            // back as the datacenter hosts went), not yet counted down.
            let shared: Vec<_> = config
                .targets
                .iter()
                .filter(|t| t.scope == crate::config::TargetScope::Shared)
                .collect();
            let shared_losing = !shared.is_empty()
                && shared
                    .iter()
                    .all(|t| model.target(t.id).consecutive_lost > 0);
            if any_held || shared_losing {
                out.insert(key, Condition::Unknown);
            }
        }
    }
    if let Some((key, condition)) = paths::shared_targets_down(config, model, now) {
        out.insert(key, condition);
    }
    if let Some((since, error)) = control_unavailable {
        out.insert(
            AlertKey::global(AlertClass::ControlPlaneUnavailable),
            paths::control_plane_unavailable(control, since, &error),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{
        ApiConnectionState, ApiTunnelStatus, ConnectionReading, MaintenanceReading,
        MaintenanceResult, Telemetry, TunnelOptionsReading, TunnelReading,
    };
    use crate::types::{OutsideIp, Severity, TargetId, VpnConnectionId};

    const CONFIG: &str = r#"
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
        [[vpn]]
        id = "vpn-0aaaaaaaaaaaaaaaa"
        name = "old"
          [[vpn.tunnel]]
          name = "old-a"
          outside_ip = "34.193.10.21"
          targets = ["172.16.3.10"]
        [alerts]
        maintenance_grace = "30m"
        maintenance_severity = "warning"
    "#;

    const A: TunnelId = TunnelId {
        connection: 0,
        tunnel: 0,
    };
    const B: TunnelId = TunnelId {
        connection: 0,
        tunnel: 1,
    };

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    /// EC2 says dc-b went DOWN at `b_down` (StartupAction=add) and does not know `old`.
    fn world(b_down: u64) -> (Config, HealthModel, ControlPlane) {
        let config = Config::parse(CONFIG, "t").unwrap();
        let mut model = HealthModel::new(&config);
        let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
        let tunnel = |ip: &str, up: bool| TunnelReading {
            outside_ip: Some(OutsideIp(ip.parse().unwrap())),
            telemetry: Some(Telemetry {
                status: if up {
                    ApiTunnelStatus::Up
                } else {
                    ApiTunnelStatus::Down
                },
                status_message: (!up).then(|| "IPSEC IS DOWN".into()),
                last_status_change: Some(t(if up { 1 } else { b_down })),
                accepted_route_count: Some(if up { 2 } else { 0 }),
            }),
            options: Some(TunnelOptionsReading {
                startup_action: Some("add".into()),
                ..Default::default()
            }),
        };
        let reading = vec![
            ConnectionReading {
                connection: 0,
                id: VpnConnectionId::new("vpn-0123456789abcdef0"),
                state: ApiConnectionState::Available,
                static_routes_only: false,
                tunnels: vec![tunnel("52.2.144.13", true), tunnel("52.2.144.14", false)],
                listed_outside_ips: Vec::new(),
            },
            ConnectionReading {
                connection: 1,
                id: VpnConnectionId::new("vpn-0aaaaaaaaaaaaaaaa"),
                state: ApiConnectionState::Missing,
                static_routes_only: false,
                tunnels: vec![TunnelReading::default()],
                listed_outside_ips: Vec::new(),
            },
        ];
        for (id, v) in cp.handle_reading(reading, t(b_down)) {
            model.handle_control_plane(id, v, t(b_down));
        }
        (config, model, cp)
    }

    fn maintenance(cp: &mut ControlPlane, id: TunnelId, reading: MaintenanceReading) {
        cp.handle_maintenance(id, MaintenanceResult::Reading(reading), t(0));
    }

    fn at(config: &Config, model: &HealthModel, cp: &ControlPlane, now: u64) -> Conditions {
        let flaps = FlapTracker::new(config, 4, Duration::from_secs(120));
        conditions(config, model, Some(cp), &flaps, None, t(now))
    }

    fn details(c: &Conditions, key: &AlertKey) -> Details {
        match c.get(key) {
            Some(Condition::Active(d)) => d.clone(),
            other => panic!("{key} is {other:?}"),
        }
    }

    #[test]
    fn a_tunnel_down_with_an_endpoint_replacement_pages_as_maintenance_then_escalates() {
        let (config, model, mut cp) = world(10_005);
        maintenance(
            &mut cp,
            B,
            MaintenanceReading {
                last_applied: Some(t(10_000)),
                ..Default::default()
            },
        );
        let down = AlertKey::tunnel(AlertClass::TunnelDown, "dc", "dc-b");
        let after = AlertKey::tunnel(AlertClass::TunnelDownAfterMaintenance, "dc", "dc-b");

        let during = at(&config, &model, &cp, 10_100);
        let d = details(&during, &after);
        assert_eq!(d.summary, "down after AWS tunnel endpoint replacement");
        assert!(d.reason.starts_with("AWS tunnel endpoint replacement: AWS applied maintenance to this tunnel at 1970-01-01T02:46:40Z; AWS reports DOWN: IPSEC IS DOWN"), "{}", d.reason);
        assert!(d.reason.contains("StartupAction=add: after a replacement AWS waits for the customer gateway to start IKE"), "{}", d.reason);
        assert_eq!(
            during.get(&down),
            Some(&Condition::Unknown),
            "TunnelDown held, not started"
        );
        assert_eq!(
            config
                .alerts
                .severity(AlertClass::TunnelDownAfterMaintenance, None),
            Severity::Warning
        );

        // Still down when the grace (from the replacement) runs out: TunnelDown pages.
        let later = at(&config, &model, &cp, 11_800);
        let d = details(&later, &down);
        assert_eq!(
            d.summary,
            "still down 30m after AWS tunnel endpoint replacement"
        );
        assert!(d.reason.contains("StartupAction=add"), "{}", d.reason);
        assert_eq!(
            later.get(&after),
            Some(&Condition::Unknown),
            "held until the outage ends"
        );
    }

    #[test]
    fn an_outage_without_maintenance_is_a_plain_tunnel_down() {
        let (config, model, mut cp) = world(10_005);
        // Maintenance long ago says nothing of today's outage.
        maintenance(
            &mut cp,
            B,
            MaintenanceReading {
                last_applied: Some(t(1_000)),
                ..Default::default()
            },
        );
        let c = at(&config, &model, &cp, 10_100);
        let d = details(&c, &AlertKey::tunnel(AlertClass::TunnelDown, "dc", "dc-b"));
        assert_eq!(d.summary, "AWS reports DOWN: IPSEC IS DOWN");
        assert!(!c.contains_key(&AlertKey::tunnel(
            AlertClass::TunnelDownAfterMaintenance,
            "dc",
            "dc-b"
        )));
    }

    #[test]
    fn pending_maintenance_and_an_unknown_connection_have_their_alerts() {
        let (config, model, mut cp) = world(10_005);
        maintenance(
            &mut cp,
            A,
            MaintenanceReading {
                pending: Some("Pending".into()),
                auto_apply_after: Some(t(1_800_000_000)),
                ..Default::default()
            },
        );
        let c = at(&config, &model, &cp, 10_100);
        let d = details(
            &c,
            &AlertKey::tunnel(AlertClass::TunnelMaintenancePending, "dc", "dc-a"),
        );
        assert_eq!(
            d.summary,
            "AWS maintenance pending, applied automatically after 2027-01-15T08:00:00Z"
        );
        assert!(d.reason.contains("ReplaceVpnTunnel"), "{}", d.reason);
        let d = details(
            &c,
            &AlertKey::connection(AlertClass::ConnectionNotFound, "old"),
        );
        assert_eq!(d.summary, "vpn-0aaaaaaaaaaaaaaaa not found in EC2");
        assert!(
            d.reason.contains("the config no longer matches AWS"),
            "{}",
            d.reason
        );
        assert!(!c.contains_key(&AlertKey::connection(AlertClass::ConnectionNotFound, "dc")));
        assert_eq!(
            AlertClass::TunnelMaintenancePending.severity(),
            crate::types::Severity::Info
        );
    }

    #[test]
    fn connection_down_is_a_warning_while_another_connection_carries_traffic() {
        let config = Config::parse(
            r#"
            [probe]
            down_after = 3
            [[vpn]]
            name = "one"
              [[vpn.tunnel]]
              name = "one-a"
              targets = ["172.16.1.10"]
              [[vpn.tunnel]]
              name = "one-b"
              targets = ["172.16.2.10"]
            [[vpn]]
            name = "two"
              [[vpn.tunnel]]
              name = "two-a"
              targets = ["172.16.3.10"]
              [[vpn.tunnel]]
              name = "two-b"
              targets = ["172.16.4.10"]
            "#,
            "t",
        )
        .unwrap();
        let mut model = HealthModel::new(&config);
        let reply = crate::messages::ProbeOutcome::Reply {
            rtt: Duration::from_millis(5),
        };
        let lost = crate::messages::ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        };
        let flaps = FlapTracker::new(&config, 4, Duration::from_secs(120));
        let severity = |model: &HealthModel, vpn: &str| {
            let c = conditions(&config, model, None, &flaps, None, t(10));
            let d = details(&c, &AlertKey::connection(AlertClass::ConnectionDown, vpn));
            (
                config
                    .alerts
                    .severity(AlertClass::ConnectionDown, d.severity),
                d.reason,
            )
        };
        for target in 0..4 {
            model.handle_probe(TargetId(target), &reply, t(0));
        }
        // Connection one drops; two still carries traffic.
        for s in 1..=3 {
            for target in [0, 1] {
                model.handle_probe(TargetId(target), &lost, t(s));
            }
        }
        let (one, reason) = severity(&model, "one");
        assert_eq!(one, Severity::Warning, "{reason}");
        assert!(
            reason.contains("another connection still carries traffic"),
            "{reason}"
        );
        // Then two drops: it was the last one.
        for s in 4..=6 {
            for target in [2, 3] {
                model.handle_probe(TargetId(target), &lost, t(s));
            }
        }
        assert_eq!(severity(&model, "two").0, Severity::Critical);
        assert_eq!(severity(&model, "one").0, Severity::Critical);
        // The config's word for the class wins over the situation.
        let mut strict = config.clone();
        strict
            .alerts
            .severity_overrides
            .insert(AlertClass::ConnectionDown, Severity::Info);
        assert_eq!(
            strict
                .alerts
                .severity(AlertClass::ConnectionDown, Some(Severity::Critical)),
            Severity::Info
        );
    }

    #[test]
    fn with_ec2_never_answering_the_pings_fire_and_resolve_every_alert() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let mut model = HealthModel::new(&config);
        let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
        let flaps = FlapTracker::new(&config, 4, Duration::from_secs(120));
        let reply = crate::messages::ProbeOutcome::Reply {
            rtt: Duration::from_millis(5),
        };
        let lost = crate::messages::ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        };
        cp.handle_error(
            crate::messages::AwsErrorKind::Timeout,
            "no answer within the timeout".into(),
            t(0),
        );
        let all = |model: &mut HealthModel, a: bool, b: bool, s: u64| {
            for (target, up) in [(0, a), (1, b), (2, true)] {
                model.handle_probe(TargetId(target), if up { &reply } else { &lost }, t(s));
            }
        };
        let keys = |c: &Conditions| -> Vec<(String, &'static str)> {
            c.iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        match v {
                            Condition::Active(_) => "active",
                            Condition::Unknown => "unknown",
                        },
                    )
                })
                .collect()
        };
        for s in 0..5 {
            all(&mut model, true, true, s);
        }
        // Both tunnels of dc down (old-a still carries traffic): pages, whatever EC2 does.
        for s in 5..10 {
            all(&mut model, false, false, s);
        }
        let during = conditions(&config, &model, Some(&cp), &flaps, None, t(10));
        assert_eq!(
            keys(&during),
            vec![
                ("TunnelDown/dc/dc-a".to_string(), "active"),
                ("TunnelDown/dc/dc-b".to_string(), "active"),
                ("ConnectionDown/dc".to_string(), "active"),
                ("TunnelFlapping/dc/dc-a".to_string(), "unknown"),
                ("TunnelFlapping/dc/dc-b".to_string(), "unknown"),
            ]
        );
        // Back: everything resolves, though EC2 has still never answered.
        for s in 10..13 {
            all(&mut model, true, true, s);
        }
        let after = conditions(&config, &model, Some(&cp), &flaps, None, t(13));
        assert_eq!(keys(&after), vec![]);
    }
}
