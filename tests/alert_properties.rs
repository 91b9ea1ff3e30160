//! Properties of the alert engine over random sequences of conditions and times: no alert
//! fires twice without a resolve between, every fired alert is resolved once everything is
//! healthy, and an inhibited alert never reaches a sink. A lasting warning is
//! re-sent as critical once, and its RESOLVED goes where that went.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use tunnelkeeper::alert::engine::{
    AlertEngine, AlertKey, Condition, Conditions, Details, NotificationStatus,
};
use tunnelkeeper::alert::policy::escalates;
use tunnelkeeper::config::AlertRules;
use tunnelkeeper::types::{AlertClass, Severity, Timestamp};

fn universe() -> Vec<AlertKey> {
    vec![
        AlertKey::global(AlertClass::VpnUnreachable),
        AlertKey::connection(AlertClass::ConnectionDown, "dc"),
        AlertKey::connection(AlertClass::ConnectionDown, "dc2"),
        AlertKey::tunnel(AlertClass::TunnelDown, "dc", "dc-a"),
        AlertKey::tunnel(AlertClass::TunnelDown, "dc", "dc-b"),
        AlertKey::tunnel(AlertClass::TunnelDown, "dc2", "dc2-a"),
        AlertKey::tunnel(AlertClass::TunnelFlapping, "dc", "dc-a"),
        AlertKey::global(AlertClass::ControlPlaneUnavailable),
    ]
}

/// One step: which conditions hold (bit mask), which are unknown, and the time that passed.
fn steps() -> impl Strategy<Value = Vec<(u16, u16, u64)>> {
    prop::collection::vec(
        (
            any::<u16>(),
            prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
            0u64..90,
        ),
        1..60,
    )
}

fn rules() -> impl Strategy<Value = AlertRules> {
    (
        prop_oneof![Just(0u64), Just(5), Just(30)],
        prop_oneof![Just(0u64), Just(10)],
        prop_oneof![Just(60u64), Just(86_400)],
    )
        .prop_map(|(f, k, r)| AlertRules {
            for_: Duration::from_secs(f),
            keep_firing_for: Duration::from_secs(k),
            group_wait: Duration::from_secs(k / 10),
            repeat_interval: Duration::from_secs(r),
            send_resolved: true,
            release_wait: Duration::from_secs(k / 20),
            escalate_after: Duration::from_secs(r / 4),
        })
}

fn conditions(active: u16, unknown: u16) -> Conditions {
    universe()
        .into_iter()
        .enumerate()
        .filter_map(|(i, key)| {
            let details = Details {
                summary: key.to_string(),
                reason: String::new(),
                vpn_id: None,
                severity: None,
                since: None,
                cause: None,
            };
            if active & (1 << i) != 0 {
                Some((key, Condition::Active(details)))
            } else if unknown & (1 << i) != 0 {
                Some((key, Condition::Unknown))
            } else {
                None
            }
        })
        .collect()
}

/// What would inhibit `key`, if firing.
fn inhibitors(key: &AlertKey) -> Vec<AlertKey> {
    let mut out = Vec::new();
    let tunnel_level = key.class == AlertClass::TunnelDown;
    if tunnel_level || key.class == AlertClass::ConnectionDown {
        out.push(AlertKey::global(AlertClass::VpnUnreachable));
    }
    if tunnel_level {
        let vpn = key.vpn.as_deref().unwrap();
        out.push(AlertKey::connection(AlertClass::ConnectionDown, vpn));
        out.push(AlertKey::tunnel(
            AlertClass::TunnelFlapping,
            vpn,
            key.tunnel.as_deref().unwrap(),
        ));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn alerts_fire_once_resolve_when_healthy_and_inhibited_ones_stay_quiet(rules in rules(), steps in steps()) {
        let mut engine = AlertEngine::new(rules.clone(), Vec::new());
        let mut now = Timestamp::from_secs(1_000_000);
        let mut open: BTreeSet<AlertKey> = BTreeSet::new();
        let mut last_firing: BTreeMap<AlertKey, Timestamp> = BTreeMap::new();
        let mut escalated: BTreeSet<AlertKey> = BTreeSet::new();

        let mut check = |engine: &mut AlertEngine, now: Timestamp, open: &mut BTreeSet<AlertKey>, escalated: &mut BTreeSet<AlertKey>| -> Result<(), TestCaseError> {
            let firing: BTreeSet<AlertKey> = engine
                .views(now)
                .into_iter()
                .filter(|v| v.state != "pending")
                .map(|v| AlertKey { class: v.alert, vpn: v.vpn, tunnel: v.tunnel, target: None })
                .collect();
            while let Some(n) = engine.poll_notification() {
                match n.status {
                    NotificationStatus::Firing if !n.repeat => {
                        prop_assert!(open.insert(n.key.clone()), "{} fired twice without a resolve", n.key);
                        // A first page due past escalate_after goes out as critical at once.
                        if n.severity == Severity::Critical && n.key.class.severity() == Severity::Warning {
                            prop_assert!(now.since(n.starts_at) >= rules.escalate_after, "{} escalated too soon", n.key);
                            escalated.insert(n.key.clone());
                        }
                        for by in inhibitors(&n.key) {
                            prop_assert!(!firing.contains(&by), "{} reached a sink while {by} fires", n.key);
                        }
                    }
                    NotificationStatus::Firing => {
                        prop_assert!(open.contains(&n.key), "a repeat of {} that never fired", n.key);
                        let escalation = n.severity == Severity::Critical
                            && n.key.class.severity() == Severity::Warning;
                        if escalation && escalated.insert(n.key.clone()) {
                            // The one re-send as critical: due escalate_after into the firing.
                            prop_assert!(escalates(n.key.class), "{} escalated", n.key);
                            prop_assert!(now.since(n.starts_at) >= rules.escalate_after, "{} escalated too soon", n.key);
                        } else if let Some(t) = last_firing.get(&n.key) {
                            prop_assert!(now.since(*t) >= rules.repeat_interval, "{} repeated too soon", n.key);
                        }
                        for by in inhibitors(&n.key) {
                            prop_assert!(!firing.contains(&by), "{} repeated while {by} fires", n.key);
                        }
                    }
                    NotificationStatus::Resolved => {
                        prop_assert!(open.remove(&n.key), "{} resolved without having fired", n.key);
                        // The RESOLVED goes where the escalated FIRING went.
                        prop_assert_eq!(escalated.remove(&n.key), n.severity == Severity::Critical && n.key.class.severity() == Severity::Warning, "{}'s RESOLVED severity", n.key);
                    }
                    NotificationStatus::Test => prop_assert!(false, "the engine made a test page"),
                }
                if n.status == NotificationStatus::Firing {
                    last_firing.insert(n.key.clone(), now);
                }
            }
            Ok(())
        };

        for (active, unknown, dt) in steps {
            now = now.plus(Duration::from_secs(dt));
            engine.evaluate(&conditions(active, unknown), now);
            check(&mut engine, now, &mut open, &mut escalated)?;
        }
        // Everything healthy, for longer than keep_firing_for: every page is closed.
        for _ in 0..3 {
            now = now.plus(Duration::from_secs(60));
            engine.evaluate(&Conditions::new(), now);
            check(&mut engine, now, &mut open, &mut escalated)?;
        }
        prop_assert!(open.is_empty(), "left open: {open:?}");
        prop_assert_eq!(engine.alerts().count(), 0);
    }
}
