use std::time::Duration;

use super::*;

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(10_000 + s)
}

fn details(summary: &str) -> Details {
    Details {
        summary: summary.into(),
        reason: format!("{summary} (reason)"),
        vpn_id: Some("vpn-0123456789abcdef0".into()),
        severity: None,
        since: None,
        cause: None,
    }
}

fn tunnel_down(tunnel: &str) -> AlertKey {
    AlertKey::tunnel(AlertClass::TunnelDown, "dc", tunnel)
}

fn active(keys: &[AlertKey]) -> Conditions {
    keys.iter()
        .map(|k| (k.clone(), Condition::Active(details(&k.to_string()))))
        .collect()
}

fn engine(rules: AlertRules) -> AlertEngine {
    AlertEngine::new(rules, Vec::new())
}

/// Drains notifications as (status, key, repeat) triples.
fn drain(e: &mut AlertEngine) -> Vec<(NotificationStatus, String, bool)> {
    std::iter::from_fn(|| e.poll_notification())
        .map(|n| (n.status, n.key.to_string(), n.repeat))
        .collect()
}

use crate::config::AlertRules;
use crate::types::AlertClass;
use crate::types::Severity;
use NotificationStatus::{Firing, Resolved};

#[test]
fn with_for_zero_a_condition_fires_at_once_and_resolves_when_it_clears() {
    let mut e = engine(AlertRules::default());
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "TunnelDown/dc/dc-a".into(), false)]
    );
    e.evaluate(&active(&[a.clone()]), t(1));
    assert_eq!(drain(&mut e), vec![], "no second page while it fires");
    e.evaluate(&Conditions::new(), t(5));
    let n = e.poll_notification().unwrap();
    assert_eq!(
        (n.status, n.starts_at, n.ends_at),
        (Resolved, t(0), Some(t(5)))
    );
    assert!(e.alerts().next().is_none());
}

#[test]
fn for_holds_an_alert_pending_and_a_shorter_blip_pages_nobody() {
    let rules = AlertRules {
        for_: Duration::from_secs(10),
        ..AlertRules::default()
    };
    let mut e = engine(rules);
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    e.evaluate(&active(&[a.clone()]), t(9));
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.views(t(9))[0].state, "pending");
    assert_eq!(e.poll_timeout(t(9)), Some(t(10)));
    e.evaluate(&Conditions::new(), t(9));
    assert_eq!(
        drain(&mut e),
        vec![],
        "a blip shorter than `for`: no page, no resolved"
    );
    e.evaluate(&active(&[a.clone()]), t(20));
    e.evaluate(&active(&[a.clone()]), t(30));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "TunnelDown/dc/dc-a".into(), false)]
    );
}

#[test]
fn repeat_interval_renotifies_while_firing() {
    let rules = AlertRules {
        repeat_interval: Duration::from_secs(3600),
        // Only the repeat here: escalation_tests has the re-send as critical.
        escalate_after: Duration::ZERO,
        ..AlertRules::default()
    };
    let mut e = engine(rules);
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    drain(&mut e);
    e.evaluate(&active(&[a.clone()]), t(3599));
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.poll_timeout(t(3599)), Some(t(3600)));
    e.evaluate(&active(&[a.clone()]), t(3600));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "TunnelDown/dc/dc-a".into(), true)]
    );
}

#[test]
fn keep_firing_for_rides_out_flaps_without_new_pages() {
    let rules = AlertRules {
        keep_firing_for: Duration::from_secs(30),
        ..AlertRules::default()
    };
    let mut e = engine(rules);
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    assert_eq!(drain(&mut e).len(), 1);
    e.evaluate(&Conditions::new(), t(10));
    e.evaluate(&active(&[a.clone()]), t(20));
    e.evaluate(&Conditions::new(), t(25));
    assert_eq!(
        drain(&mut e),
        vec![],
        "cleared for less than keep_firing_for each time"
    );
    e.evaluate(&Conditions::new(), t(54));
    assert_eq!(drain(&mut e), vec![]);
    e.evaluate(&Conditions::new(), t(55));
    assert_eq!(
        drain(&mut e),
        vec![(Resolved, "TunnelDown/dc/dc-a".into(), false)]
    );
}

#[test]
fn send_resolved_false_stays_quiet_on_clearing() {
    let mut e = engine(AlertRules {
        send_resolved: false,
        ..AlertRules::default()
    });
    e.evaluate(&active(&[tunnel_down("dc-a")]), t(0));
    drain(&mut e);
    e.evaluate(&Conditions::new(), t(1));
    assert_eq!(drain(&mut e), vec![]);
}

#[test]
fn unknown_conditions_hold_an_alert_in_its_state() {
    let mut e = engine(AlertRules::default());
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    drain(&mut e);
    let unknown: Conditions = [(a.clone(), Condition::Unknown)].into();
    e.evaluate(&unknown, t(60));
    assert_eq!(
        drain(&mut e),
        vec![],
        "not resolved while unknown (e.g. after a restart)"
    );
    assert_eq!(e.views(t(60))[0].state, "firing");
}

#[test]
fn vpn_unreachable_inhibits_connection_and_tunnel_alerts() {
    let mut e = engine(AlertRules::default());
    let vpn = AlertKey::global(AlertClass::VpnUnreachable);
    let conn = AlertKey::connection(AlertClass::ConnectionDown, "dc");
    let keys = [
        vpn.clone(),
        conn.clone(),
        tunnel_down("dc-a"),
        tunnel_down("dc-b"),
    ];
    e.evaluate(&active(&keys), t(0));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "VpnUnreachable".into(), false)]
    );
    let views = e.views(t(0));
    assert_eq!(views.iter().filter(|v| v.state == "inhibited").count(), 3);
    // The bigger outage ends but the connection stays down: its page goes out now.
    e.evaluate(&active(&keys[1..]), t(10));
    assert_eq!(
        drain(&mut e),
        vec![
            (Resolved, "VpnUnreachable".into(), false),
            (Firing, "ConnectionDown/dc".into(), false)
        ]
    );
    // And the connection's tunnels stay inhibited by it.
    assert_eq!(
        e.views(t(10))
            .iter()
            .filter(|v| v.state == "inhibited")
            .count(),
        2
    );
    // Everything clears: only what was notified gets a resolved.
    e.evaluate(&Conditions::new(), t(20));
    assert_eq!(
        drain(&mut e),
        vec![(Resolved, "ConnectionDown/dc".into(), false)]
    );
}

#[test]
fn connection_down_inhibits_only_its_own_tunnels() {
    let mut e = engine(AlertRules::default());
    let conn = AlertKey::connection(AlertClass::ConnectionDown, "dc");
    let other = AlertKey::tunnel(AlertClass::TunnelDown, "dc2", "dc2-a");
    e.evaluate(&active(&[conn, tunnel_down("dc-a"), other]), t(0));
    let mut keys: Vec<String> = drain(&mut e).into_iter().map(|(_, k, _)| k).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "ConnectionDown/dc".to_string(),
            "TunnelDown/dc2/dc2-a".to_string()
        ]
    );
}

#[test]
fn a_tunnel_already_paged_gets_its_resolved_even_if_inhibited_later() {
    let mut e = engine(AlertRules::default());
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    assert_eq!(drain(&mut e).len(), 1);
    let conn = AlertKey::connection(AlertClass::ConnectionDown, "dc");
    e.evaluate(&active(&[a.clone(), conn.clone()]), t(1));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "ConnectionDown/dc".into(), false)]
    );
    e.evaluate(&Conditions::new(), t(2));
    let mut got = drain(&mut e);
    got.sort();
    assert_eq!(
        got,
        vec![
            (Resolved, "ConnectionDown/dc".into(), false),
            (Resolved, "TunnelDown/dc/dc-a".into(), false)
        ]
    );
}

#[test]
fn flapping_inhibits_the_tunnels_down_pages() {
    let mut e = engine(AlertRules::default());
    let flap = AlertKey::tunnel(AlertClass::TunnelFlapping, "dc", "dc-a");
    e.evaluate(&active(&[flap.clone(), tunnel_down("dc-a")]), t(0));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "TunnelFlapping/dc/dc-a".into(), false)]
    );
    e.evaluate(&active(&[flap.clone()]), t(3));
    e.evaluate(&active(&[flap.clone(), tunnel_down("dc-a")]), t(6));
    assert_eq!(drain(&mut e), vec![]);
}

#[test]
fn silences_mute_matching_alerts_until_they_end() {
    let silence = Silence {
        class: Some(AlertClass::TunnelDown),
        vpn: Some("dc".into()),
        tunnel: Some("dc-a".into()),
        starts: Some(t(100)),
        ends: t(200),
        comment: "AWS maintenance".into(),
    };
    let mut e = AlertEngine::new(AlertRules::default(), vec![silence]);
    let a = tunnel_down("dc-a");
    let b = tunnel_down("dc-b");
    // Before the window: pages.
    e.evaluate(&active(&[a.clone()]), t(50));
    assert_eq!(drain(&mut e).len(), 1);
    e.evaluate(&Conditions::new(), t(60));
    drain(&mut e);
    // Inside it: dc-a is silent, dc-b is not.
    e.evaluate(&active(&[a.clone(), b.clone()]), t(150));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "TunnelDown/dc/dc-b".into(), false)]
    );
    let view = e
        .views(t(150))
        .into_iter()
        .find(|v| v.tunnel.as_deref() == Some("dc-a"))
        .unwrap();
    assert_eq!(view.state, "silenced");
    assert!(view.muted_by.unwrap().contains("AWS maintenance"));
    assert_eq!(e.poll_timeout(t(150)), Some(t(200)));
    // The window ends with dc-a still down: now it pages.
    e.evaluate(&active(&[a.clone(), b.clone()]), t(200));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "TunnelDown/dc/dc-a".into(), false)]
    );
}

#[test]
fn an_alert_silenced_throughout_never_sends_a_resolved() {
    let silence = Silence {
        class: None,
        vpn: None,
        tunnel: None,
        starts: None,
        ends: t(1000),
        comment: String::new(),
    };
    let mut e = AlertEngine::new(AlertRules::default(), vec![silence]);
    e.evaluate(&active(&[tunnel_down("dc-a")]), t(0));
    e.evaluate(&Conditions::new(), t(10));
    assert_eq!(drain(&mut e), vec![]);
}

#[test]
fn restored_firing_alerts_do_not_page_again() {
    let mut first = engine(AlertRules::default());
    let a = tunnel_down("dc-a");
    first.evaluate(&active(&[a.clone()]), t(0));
    assert_eq!(drain(&mut first).len(), 1);
    let saved: Vec<Alert> = first.alerts().cloned().collect();
    let json = serde_json::to_string(&saved).unwrap();

    let mut second = engine(AlertRules::default());
    second.restore(serde_json::from_str(&json).unwrap());
    second.evaluate(&active(&[a.clone()]), t(30));
    assert_eq!(drain(&mut second), vec![]);
    second.evaluate(&Conditions::new(), t(40));
    assert_eq!(
        drain(&mut second),
        vec![(Resolved, "TunnelDown/dc/dc-a".into(), false)]
    );
}

#[test]
fn group_wait_lets_a_bigger_outage_detected_a_moment_later_inhibit_the_smaller() {
    let rules = AlertRules {
        group_wait: Duration::from_secs(1),
        ..AlertRules::default()
    };
    let mut e = engine(rules);
    let a = tunnel_down("dc-a");
    e.evaluate(&active(&[a.clone()]), t(0));
    assert_eq!(drain(&mut e), vec![]);
    assert_eq!(e.poll_timeout(t(0)), Some(t(1)));
    let vpn = AlertKey::global(AlertClass::VpnUnreachable);
    e.evaluate(
        &active(&[a.clone(), vpn.clone()]),
        t(0).plus(Duration::from_millis(400)),
    );
    e.evaluate(&active(&[a.clone(), vpn.clone()]), t(2));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "VpnUnreachable".into(), false)]
    );
    // Alone, a tunnel alert waits just group_wait.
    let mut e = engine(AlertRules {
        group_wait: Duration::from_secs(1),
        ..AlertRules::default()
    });
    e.evaluate(&active(&[a.clone()]), t(0));
    e.evaluate(&active(&[a.clone()]), t(1));
    assert_eq!(drain(&mut e).len(), 1);
}

#[test]
fn group_wait_keeps_tunnels_coming_back_after_a_bigger_outage_quiet() {
    let rules = AlertRules {
        group_wait: Duration::from_secs(1),
        ..AlertRules::default()
    };
    let mut e = engine(rules);
    let vpn = AlertKey::global(AlertClass::VpnUnreachable);
    let (a, b) = (tunnel_down("dc-a"), tunnel_down("dc-b"));
    e.evaluate(&active(&[vpn.clone(), a.clone(), b.clone()]), t(0));
    e.evaluate(&active(&[vpn.clone(), a.clone(), b.clone()]), t(5));
    assert_eq!(
        drain(&mut e),
        vec![(Firing, "VpnUnreachable".into(), false)]
    );
    // Tunnel A comes back first: the outage is over, B is down for half a second more.
    e.evaluate(&active(&[b.clone()]), t(10));
    e.evaluate(&Conditions::new(), t(10).plus(Duration::from_millis(500)));
    assert_eq!(
        drain(&mut e),
        vec![(Resolved, "VpnUnreachable".into(), false)]
    );
}

#[test]
fn severities_follow_the_class() {
    assert_eq!(AlertClass::ConnectionDown.severity(), Severity::Critical);
    assert_eq!(AlertClass::VpnUnreachable.severity(), Severity::Critical);
    for c in [
        AlertClass::TunnelDown,
        AlertClass::TunnelFlapping,
        AlertClass::ControlPlaneUnavailable,
    ] {
        assert_eq!(c.severity(), Severity::Warning);
    }
    assert!(Severity::Critical > Severity::Warning);
}
