use std::time::Duration;

use super::*;
use crate::health::{ConnectionState, Verdict, VpnState};
use crate::messages::{IcmpErrorKind, ProbeOutcome};

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
    // OK is a promise about every target: not before each has been judged.
    assert_eq!(m.vpn(), &VpnState::Starting);
    m.handle_probe(B, &ok(), t(1));
    assert_eq!(m.vpn(), &VpnState::Starting);
    m.handle_probe(DB, &ok(), t(2));
    assert_eq!(m.vpn(), &VpnState::Ok { since: t(2) });
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
            assert!(
                reason.contains("3 or more probes lost in a row"),
                "{reason}"
            );
            assert!(reason.contains("no reply within 1s"), "{reason}");
        }
        other => panic!("expected down, got {other:?}"),
    }
    // More losses keep the since and the very same verdict: nothing in it counts.
    let before = m.target(A).verdict.clone();
    feed(&mut m, A, lost(), 13..15);
    assert_eq!(m.target(A).verdict, before);
    assert_eq!(m.target(A).consecutive_lost, 5);
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
    // The shared host still answering (some other way) is a path.
    assert_eq!(m.vpn().token(), "DEGRADED");
    feed(&mut m, DB, lost(), 11..14);
    assert!(
        matches!(m.vpn(), VpnState::Critical { since, reason } if *since == t(11) && reason.starts_with("no working path to the datacenter (0 of 2 tunnels up, 0 of 1 shared targets answer)"))
    );
    assert_eq!(m.vpn().token(), "CRITICAL");

    // One reply is not enough to come back (up_after = 2)...
    feed(&mut m, A, ok(), 20..21);
    assert_eq!(m.vpn().token(), "CRITICAL");
    // ...two are: one tunnel back is DEGRADED, both back is OK.
    feed(&mut m, A, ok(), 21..22);
    assert_eq!(m.vpn().token(), "DEGRADED");
    feed(&mut m, B, ok(), 22..24);
    feed(&mut m, DB, ok(), 22..24);
    assert_eq!(m.vpn(), &VpnState::Ok { since: t(22) });
}

#[test]
fn shared_targets_down_while_pinned_targets_answer_is_degraded_not_critical() {
    let mut m = healthy();
    feed(&mut m, DB, lost(), 10..13);
    assert!(
        matches!(m.vpn(), VpnState::Degraded { reason, .. } if reason.starts_with("the VPN carries traffic but the shared targets do not answer (2 of 2 tunnels up, 0 of 1 shared targets answer; 2 tunnels' pinned targets answer)")),
        "{:?}",
        m.vpn()
    );
    feed(&mut m, DB, ok(), 20..22);
    assert_eq!(m.vpn().token(), "OK");
}

/// The VPN verdict, row by row: what each tunnel's pinned target and the shared target
/// did (each fed three probes, `down_after` = 3), and the token that follows.
#[test]
fn the_vpn_is_critical_only_when_nothing_answers() {
    // (name, A's pinned target, B's pinned target, shared target, token)
    let rows: [(&str, bool, bool, bool, &str); 6] = [
        ("everything answers", true, true, true, "OK"),
        (
            "one tunnel down: redundancy lost",
            false,
            true,
            true,
            "DEGRADED",
        ),
        (
            "failover: a tunnel down, the shared host lost",
            false,
            true,
            false,
            "DEGRADED",
        ),
        (
            "the shared host stops answering ping",
            true,
            true,
            false,
            "DEGRADED",
        ),
        (
            "both tunnels down, the shared host answers another way",
            false,
            false,
            true,
            "DEGRADED",
        ),
        ("nothing answers", false, false, false, "CRITICAL"),
    ];
    for (name, a, b, db, token) in rows {
        let mut m = healthy();
        for (target, answers) in [(A, a), (B, b), (DB, db)] {
            feed(&mut m, target, if answers { ok() } else { lost() }, 10..13);
        }
        assert_eq!(m.vpn().token(), token, "{name}: {:?}", m.vpn());
    }
}

#[test]
fn a_failover_is_measured_from_the_shared_hosts_first_loss_to_their_first_reply() {
    let mut m = healthy();
    // Tunnel A fails at 9 s; the shared host, routed through it, goes with it (the lost
    // probe sent at 9 s times out at 10 s); the route moves to B, and the probe sent at
    // 19 s answers in 5 ms.
    feed(&mut m, A, lost(), 10..30);
    feed(&mut m, DB, lost(), 10..20);
    feed(&mut m, B, ok(), 10..30);
    assert_eq!(m.vpn().token(), "DEGRADED");
    assert_eq!(m.failovers().in_progress(), Some(t(9)));
    m.handle_probe(DB, &ok(), t(19).plus(Duration::from_millis(5)));
    let f = m
        .failovers()
        .latest_from(TUNNEL_A)
        .expect("a failover")
        .clone();
    // Between the probes' sending times: lost from 9 s, back at 19 s.
    assert_eq!((f.lost_at, f.restored_at), (t(9), t(19)));
    assert_eq!(f.seconds(), 10.0);
    assert_eq!(m.take_fresh_failovers(), vec![f]);
    assert!(m.take_fresh_failovers().is_empty());
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
    let new_text = CONFIG.replace("[[target]]\n    name = \"db\"\n    address = \"10.20.0.5\"", "")
        + "[[vpn]]\nname = \"dc2\"\n[[vpn.tunnel]]\nname = \"dc2-a\"\ntargets = [\"172.16.3.10\"]\n";
    let new_config = Config::parse(&new_text, "test").unwrap();
    assert_eq!(new_config.targets.len(), 3);
    let mut m = HealthModel::new(&new_config);
    let mapping = crate::config::ReloadMapping::between(&old_config, &new_config);
    m.adopt(&old, (&old_config, &new_config), &mapping, t(20));
    assert_eq!(m.target(A).verdict, old.target(A).verdict);
    assert_eq!(m.target(A).consecutive_lost, 3);
    assert!(matches!(&m.tunnel(TUNNEL_A).verdict, Verdict::Down { since, .. } if *since == t(10)));
    assert!(matches!(m.connection(0), ConnectionState::Degraded { since, .. } if *since == t(10)));
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

#[test]
fn a_target_silent_for_three_intervals_becomes_unknown_and_its_tunnel_with_it() {
    let mut m = healthy();
    // Results at 0 s; the interval is 1 s: still fine at 3 s, silent past it.
    assert!(m.handle_timeout(t(3)).is_empty());
    assert_eq!(
        m.handle_timeout(Timestamp::from_millis(t(3).as_millis() + 1)),
        [A, B, DB]
    );
    assert!(
        matches!(&m.target(A).verdict, Verdict::Unknown { reason } if reason.starts_with("no probe result since"))
    );
    assert!(matches!(
        m.tunnel(TUNNEL_A).verdict,
        Verdict::Unknown { .. }
    ));
    assert!(!m.every_target_reported_since(t(4)));
    // Said once: a second look changes nothing, and the next result brings it back.
    assert!(m.handle_timeout(t(5)).is_empty());
    m.handle_probe(A, &ok(), t(6));
    assert!(m.target(A).verdict.is_up());
}
