use super::*;
use crate::messages::{
    ApiConnectionState, ApiTunnelStatus, ConnectionReading, MaintenanceReading, MaintenanceResult,
    Telemetry, TunnelOptionsReading, TunnelReading,
};
use crate::types::{OutsideIp, Severity, TargetId, VpnConnectionId};

/// The outage rule's conditions with SharedTargetsDown's, maintenance's and
/// ConnectionNotFound's (what `conditions()` gave before the policy became a table); `_unavailable` is the control plane rule's business now.
fn conditions(
    config: &Config,
    model: &HealthModel,
    control: Option<&ControlPlane>,
    flaps: &FlapTracker,
    _unavailable: Option<(Timestamp, String)>,
    now: Timestamp,
) -> Conditions {
    let history = crate::history::History::new(&std::sync::Arc::new(config.clone()));
    let sinks = crate::alert::sink_health::SinksHealth::new(config);
    let path_mtu = crate::health::path_mtu::PathMtus::new(config);
    let inputs = Inputs {
        config,
        model,
        control,
        flaps,
        path_mtu: &path_mtu,
        history: &history,
        sinks: &sinks,
        maintenance: &crate::maintenance::MaintenanceTracker::new(config),
        state_save: None,
        now,
    };
    let mut out = rule(&inputs);
    out.extend(crate::alert::policy::shared_targets_down::rule(&inputs));
    out.extend(crate::alert::policy::maintenance_pending::rule(&inputs));
    out.extend(crate::alert::policy::connection_not_found::rule(&inputs));
    out
}

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
