//! Table and scenario tests of the control-plane tracker, with made-up times.

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

fn two_connections() -> Config {
    Config::parse(
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
        [[vpn]]
        id = "vpn-0aaaaaaaaaaaaaaaa"
        name = "old"
          [[vpn.tunnel]]
          name = "old-a"
          outside_ip = "34.193.10.21"
          targets = ["172.16.3.10"]
        "#,
        "t",
    )
    .unwrap()
}

fn up(ip: &str) -> TunnelReading {
    TunnelReading {
        outside_ip: Some(OutsideIp(ip.parse().unwrap())),
        telemetry: telemetry(ApiTunnelStatus::Up, "", Some(3)),
        options: None,
    }
}

/// What the poller reads when EC2 knows `dc` (tunnel b DOWN) but not `old`.
fn partial_answer() -> Vec<ConnectionReading> {
    let mut b = up("52.2.144.14");
    b.telemetry = telemetry(ApiTunnelStatus::Down, "IPSEC IS DOWN", Some(0));
    vec![
        ConnectionReading {
            connection: 0,
            id: VpnConnectionId::new("vpn-0123456789abcdef0"),
            state: ApiConnectionState::Available,
            static_routes_only: false,
            tunnels: vec![up("52.2.144.13"), b],
            listed_outside_ips: vec!["52.2.144.13".into(), "52.2.144.14".into()],
        },
        ConnectionReading {
            connection: 1,
            id: VpnConnectionId::new("vpn-0aaaaaaaaaaaaaaaa"),
            state: ApiConnectionState::Missing,
            static_routes_only: false,
            tunnels: vec![TunnelReading {
                outside_ip: Some(OutsideIp("34.193.10.21".parse().unwrap())),
                ..Default::default()
            }],
            listed_outside_ips: Vec::new(),
        },
    ]
}

#[test]
fn an_unknown_connection_blinds_only_itself() {
    let config = two_connections();
    let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
    let verdicts = cp.handle_reading(partial_answer(), Timestamp::from_secs(0));
    let of = |connection, tunnel| {
        verdicts
            .iter()
            .find(|(id, _)| *id == TunnelId { connection, tunnel })
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(of(0, 0).is_up());
    assert!(
        matches!(of(0, 1), Verdict::Down { reason, .. } if reason.contains("IPSEC IS DOWN")),
        "AWS's DOWN of a known tunnel gets through"
    );
    assert_eq!(of(1, 0).label(), "unknown");
    assert_eq!(cp.not_found(0), None);
    assert_eq!(cp.not_found(1), Some("missing"));
    let status = cp.status(Timestamp::from_secs(1));
    assert_eq!(
        status.connections_not_found,
        vec![ConnectionNotFound {
            vpn: "old".into(),
            vpn_id: VpnConnectionId::new("vpn-0aaaaaaaaaaaaaaaa"),
            state: "missing",
        }]
    );
    assert!(
        status.problems[0]
            .starts_with("connection old (vpn-0aaaaaaaaaaaaaaaa) is not in EC2's answer"),
        "{:?}",
        status.problems
    );
}

#[test]
fn staleness_is_judged_against_when_an_answer_was_due() {
    let config = two_connections();
    let t = Timestamp::from_secs;
    // Interval 10 s, limit 30 s, call timeout 10 s.
    let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
    cp.handle_reading(partial_answer(), t(0));
    cp.handle_next_call(t(10));
    cp.handle_error(AwsErrorKind::Throttled, "x".into(), t(10));
    // The poller cut its backoff to try again before the limit, at 28 s: its answer
    // is awaited until 38 s, so the answer is not stale at 31 s...
    cp.handle_next_call(t(28));
    assert_eq!(cp.handle_timeout(t(31)), None);
    // ...and a slow good answer at 35 s keeps it fresh.
    cp.handle_reading(partial_answer(), t(35));
    cp.handle_next_call(t(45));
    assert_eq!(cp.handle_timeout(t(60)), None);
    assert!(!cp.is_stale());
    // Throttled at 45 s, retried at 63 s: throttled again, next call after the limit
    // (65 s): stale right at the limit, not one backoff later.
    cp.handle_error(AwsErrorKind::Throttled, "x".into(), t(45));
    cp.handle_next_call(t(63));
    cp.handle_error(AwsErrorKind::Throttled, "x".into(), t(63));
    cp.handle_next_call(t(103));
    assert_eq!(cp.handle_timeout(t(65)), None);
    assert!(cp.handle_timeout(Timestamp::from_millis(65_001)).is_some());
    assert!(cp.is_stale());
    // A poller that says nothing (stuck): the answer due is missed, stale at the limit.
    let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
    cp.handle_reading(partial_answer(), t(0));
    cp.handle_next_call(t(10));
    assert_eq!(cp.handle_timeout(t(30)), None);
    assert!(cp.handle_timeout(Timestamp::from_millis(30_001)).is_some());
}

#[test]
fn maintenance_details_explain_an_outage_and_survive_a_reload() {
    use crate::messages::{MaintenanceReading, MaintenanceResult};
    let config = two_connections();
    let t = Timestamp::from_secs;
    let b = TunnelId {
        connection: 0,
        tunnel: 1,
    };
    let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
    cp.handle_maintenance(
        b,
        MaintenanceResult::Reading(MaintenanceReading {
            pending: None,
            auto_apply_after: None,
            last_applied: Some(t(1_000)),
        }),
        t(1_010),
    );
    cp.handle_maintenance(
        b,
        MaintenanceResult::Failed {
            kind: AwsErrorKind::Throttled,
            message: "x".into(),
        },
        t(1_020),
    );
    assert_eq!(
        cp.maintenance(b).unwrap().reading.last_applied,
        Some(t(1_000)),
        "a failed check keeps the last good details"
    );
    assert_eq!(cp.status(t(1_020)).maintenance_errors["throttled"], 1);
    let grace = Duration::from_secs(1_800);
    assert!(matches!(
        cp.maintenance_phase(b, t(1_005), t(1_100), grace),
        Some(MaintenancePhase::Grace { .. })
    ));
    assert_eq!(
        cp.maintenance_phase(
            TunnelId {
                connection: 0,
                tunnel: 0
            },
            t(1_005),
            t(1_100),
            grace
        ),
        None
    );
    // A reload that moves the connection keeps its tunnels' details.
    let moved = Config::parse(
        r#"
        [aws]
        poll_interval = "10s"
        [[vpn]]
        id = "vpn-0aaaaaaaaaaaaaaaa"
        name = "old"
          [[vpn.tunnel]]
          name = "old-a"
          outside_ip = "34.193.10.21"
          targets = ["172.16.3.10"]
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
    let mut next = ControlPlane::new(&moved, Duration::from_secs(30));
    next.adopt(&cp, &moved);
    let moved_b = TunnelId {
        connection: 1,
        tunnel: 1,
    };
    assert_eq!(
        next.maintenance(moved_b).unwrap().reading.last_applied,
        Some(t(1_000))
    );
}
