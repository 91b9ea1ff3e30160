//! Timelines through the whole core, from probe results to notifications, with made-up
//! times and no runtime.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::alert::engine::NotificationStatus;
use crate::alert::outbox::Delivery;
use crate::messages::DeliveryReport;
use crate::types::AlertClass;

const CONFIG: &str = r#"
    [probe]
    down_after = 3
    up_after = 2
    [[vpn]]
    name = "dc"
      [[vpn.tunnel]]
      name = "dc-a"
      outside_ip = "203.0.113.10"
      targets = ["172.16.1.10"]
      [[vpn.tunnel]]
      name = "dc-b"
      outside_ip = "203.0.113.20"
      targets = ["172.16.2.10"]
    [alerts]
    for = "0s"
    group_wait = "0s"
      [[alerts.sink]]
      kind = "log"
"#;

const A: TargetId = TargetId(0);
const B: TargetId = TargetId(1);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_000_000 + s)
}

fn config(text: &str) -> Arc<Config> {
    Arc::new(Config::parse(text, "test").unwrap())
}

fn core(text: &str) -> Core {
    let config = config(text);
    let history = History::shared(&config);
    Core::new(config, None, history, Jitter::from_seed(7), t(0))
}

fn probe(core: &mut Core, target: TargetId, ok: bool, at: Timestamp) {
    let outcome = if ok {
        ProbeOutcome::Reply {
            rtt: Duration::from_millis(5),
        }
    } else {
        ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        }
    };
    core.handle_observation(Observation::Probe {
        target,
        seq: 0,
        at,
        outcome,
        send_delay: Duration::ZERO,
    });
}

/// Drains the events and returns the deliveries among them.
fn deliveries(core: &mut Core) -> Vec<Delivery> {
    std::iter::from_fn(|| core.poll_event())
        .filter_map(|e| match e {
            Event::Deliver(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// Both tunnels answer from second `from` for `seconds` seconds; tunnel A's probes are
/// lost in `a_lost`. Returns every delivery on the way, each reported delivered.
fn run(
    core: &mut Core,
    seconds: std::ops::Range<u64>,
    a_lost: std::ops::Range<u64>,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for s in seconds {
        probe(core, A, !a_lost.contains(&s), t(s));
        probe(core, B, true, t(s));
        core.handle_timeout(t(s));
        for d in deliveries(core) {
            core.handle_observation(Observation::Delivery(DeliveryReport {
                id: d.id,
                sink: d.sink,
                result: Ok(()),
            }));
            out.push(d);
        }
    }
    out
}

fn said(d: &[Delivery]) -> Vec<(AlertClass, NotificationStatus, Option<String>)> {
    d.iter()
        .map(|d| {
            let n = &d.notification;
            (n.key.class, n.status, n.key.tunnel.clone())
        })
        .collect()
}

#[test]
fn a_tunnel_outage_pages_once_and_resolves_once_with_its_length() {
    let mut core = core(CONFIG);
    let pages = run(&mut core, 0..30, 10..20);
    assert_eq!(
        said(&pages),
        [
            (
                AlertClass::TunnelDown,
                NotificationStatus::Firing,
                Some("dc-a".into())
            ),
            (
                AlertClass::TunnelDown,
                NotificationStatus::Resolved,
                Some("dc-a".into())
            ),
        ]
    );
    // The third lost probe makes the outage; the second reply ends it.
    assert_eq!(pages[0].notification.created_at, t(12));
    assert_eq!(pages[1].notification.ends_at, Some(t(21)));
}

#[test]
fn the_events_say_what_changed_without_the_shell_comparing_states() {
    let mut core = core(CONFIG);
    let _ = std::iter::from_fn(|| core.poll_event()).count();
    for s in 0..3 {
        probe(&mut core, A, false, t(s));
    }
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    let changed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::TargetChanged { target, verdict } => Some((*target, verdict.label())),
            _ => None,
        })
        .collect();
    assert_eq!(changed, [(A, "down")], "{events:?}");
    assert!(events.contains(&Event::TunnelChanged {
        tunnel: TunnelId {
            connection: 0,
            tunnel: 0
        }
    }));
    let probes = events
        .iter()
        .filter(|e| matches!(e, Event::ProbeRecorded { .. }))
        .count();
    assert_eq!(probes, 3);
}

#[test]
fn a_tunnel_renamed_during_its_outage_keeps_its_alert() {
    let mut core = core(CONFIG);
    let mut pages = run(&mut core, 0..15, 10..100);
    assert_eq!(said(&pages).len(), 1, "{:?}", said(&pages));
    // Same outside IP, new name, and the tunnels listed the other way round.
    let renamed = CONFIG
        .replace("name = \"dc-a\"", "name = \"dc-primary\"")
        .replace("name = \"dc-b\"", "name = \"dc-secondary\"");
    let (first, second) = renamed.split_at(renamed.find("[[vpn.tunnel]]").unwrap());
    let tunnels_end = second.find("    [alerts]").unwrap();
    let (tunnels, rest) = second.split_at(tunnels_end);
    let split = tunnels[1..].find("[[vpn.tunnel]]").unwrap() + 1;
    let swapped = format!("{first}{}{}{rest}", &tunnels[split..], &tunnels[..split]);
    let mut core = core.reload(config(&swapped), t(15));
    let a = core
        .config()
        .targets
        .iter()
        .find(|t| t.address.to_string() == "172.16.1.10")
        .unwrap()
        .id;
    let b = core
        .config()
        .targets
        .iter()
        .find(|t| t.address.to_string() == "172.16.2.10")
        .unwrap()
        .id;
    assert_eq!(
        core.config()
            .tunnel(TunnelId {
                connection: 0,
                tunnel: 1
            })
            .name
            .as_str(),
        "dc-primary"
    );
    let mut after = Vec::new();
    for s in 15..40 {
        probe(&mut core, a, s >= 30, t(s));
        probe(&mut core, b, true, t(s));
        core.handle_timeout(t(s));
        after.extend(deliveries(&mut core));
    }
    assert_eq!(
        said(&after),
        [(
            AlertClass::TunnelDown,
            NotificationStatus::Resolved,
            Some("dc-primary".into())
        )],
        "no false RESOLVED at the rename, no second page, one RESOLVED at the end"
    );
    pages.extend(after);
    // The outage is the outage from before the rename.
    assert_eq!(
        pages[1].notification.starts_at,
        pages[0].notification.starts_at
    );
}

#[test]
fn a_failed_delivery_is_tried_again_when_the_core_says_to_wake() {
    let mut core = core(CONFIG);
    let mut first = None;
    for s in 0..13 {
        probe(&mut core, A, s < 10, t(s));
        probe(&mut core, B, true, t(s));
        core.handle_timeout(t(s));
        first = first.or(deliveries(&mut core).pop());
    }
    let first = first.expect("a page");
    core.handle_observation(Observation::Delivery(DeliveryReport {
        id: first.id,
        sink: first.sink,
        result: Err(("network", "connection refused".into())),
    }));
    let events: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::DeliveryReported {
            failure: Some(_),
            ..
        }
    )));
    assert!(
        events.iter().any(|e| matches!(e, Event::SaveState(_))),
        "the retry is saved"
    );
    let wake = core.poll_timeout().unwrap();
    assert!(wake <= t(12).plus(COARSE_TICK), "{wake} vs {}", t(12));
    // Woken when told, until the retry is due (first backoff 1 s, with jitter).
    let mut again = Vec::new();
    let mut now = t(12);
    while again.is_empty() && now < t(20) {
        now = core
            .poll_timeout()
            .unwrap()
            .max(now.plus(Duration::from_millis(1)));
        core.handle_timeout(now);
        again = deliveries(&mut core);
    }
    assert_eq!(again.len(), 1, "{:?}", said(&again));
    assert_eq!(again[0].id, first.id);
    assert_eq!(again[0].attempts, 2, "the second try");
}

#[test]
fn a_page_says_when_the_outage_began_not_when_the_alert_fired() {
    let mut core = core(&CONFIG.replace("for = \"0s\"", "for = \"45s\""));
    let pages = run(&mut core, 0..140, 10..88);
    let said = |d: &Delivery| {
        crate::alert::wording::message(&d.notification, &crate::alert::wording::fixtures::ctx())
    };
    assert_eq!(
        pages.len(),
        2,
        "{:?}",
        pages.iter().map(said).collect::<Vec<_>>()
    );
    // Down at the third lost probe (12 s), which the first lost probe (10 s) began; paged
    // 45 s later.
    assert_eq!(pages[0].notification.created_at, t(57));
    assert_eq!(pages[0].notification.details.since, Some(t(10)));
    assert!(
        said(&pages[0]).contains(&format!("Since: {}.", t(10))),
        "{}",
        said(&pages[0])
    );
    // Up at the second reply (89 s): 79 s from the first lost probe.
    assert_eq!(
        crate::alert::wording::outage_text(&pages[1].notification),
        "1m 19s"
    );
}

#[test]
fn a_restart_mid_outage_keeps_when_the_outage_began() {
    let mut before = core(CONFIG);
    let mut saved = None;
    for s in 0..30 {
        probe(&mut before, A, s < 10, t(s));
        probe(&mut before, B, true, t(s));
        before.handle_timeout(t(s));
        // The page goes out before the restart; the state file holds the firing alert.
        while let Some(e) = before.poll_event() {
            match e {
                Event::SaveState(state) => saved = Some(state),
                Event::Deliver(d) => {
                    before.handle_observation(Observation::Delivery(DeliveryReport {
                        id: d.id,
                        sink: d.sink,
                        result: Ok(()),
                    }))
                }
                _ => {}
            }
        }
    }
    let saved = saved.expect("the firing alert was saved");
    // The daemon is away from 30 s to 100 s; the tunnel is still down when it is back.
    let config = config(CONFIG);
    let history = History::shared(&config);
    let mut after = Core::new(config, Some(saved), history, Jitter::from_seed(3), t(100));
    let mut pages = Vec::new();
    for s in 100..130 {
        probe(&mut after, A, s >= 120, t(s));
        probe(&mut after, B, true, t(s));
        after.handle_timeout(t(s));
        for d in deliveries(&mut after) {
            after.handle_observation(Observation::Delivery(DeliveryReport {
                id: d.id,
                sink: d.sink,
                result: Ok(()),
            }));
            pages.push(d);
        }
        if s == 110 {
            let tunnel = &after
                .model()
                .tunnel(TunnelId {
                    connection: 0,
                    tunnel: 0,
                })
                .verdict;
            assert!(
                matches!(tunnel, Verdict::Down { since, .. } if *since == t(10)),
                "down since the first lost probe before the restart, not the restart: {tunnel:?}"
            );
        }
    }
    assert_eq!(
        said(&pages),
        [(
            AlertClass::TunnelDown,
            NotificationStatus::Resolved,
            Some("dc-a".into())
        )]
    );
    assert_eq!(pages[0].notification.details.since, Some(t(10)));
    assert_eq!(
        crate::alert::wording::outage_text(&pages[0].notification),
        "1m 51s"
    );
}

#[test]
fn a_sink_that_keeps_failing_is_paged_through_the_others_and_resolves_when_it_works() {
    let two_sinks = CONFIG.replace(
        "      [[alerts.sink]]\n      kind = \"log\"\n",
        "      [[alerts.sink]]\n      kind = \"log\"\n      [[alerts.sink]]\n      kind = \"alertmanager\"\n      url = \"http://127.0.0.1:9093\"\n      [[alerts.sink]]\n      kind = \"log\"\n      name = \"second-log\"\n",
    );
    let mut core = core(&two_sinks);
    let mut said = Vec::new();
    // Tunnel A goes down at 10 s; every delivery to sink 2 fails until 40 s.
    for s in 0..60 {
        probe(&mut core, A, !(10..30).contains(&s), t(s));
        probe(&mut core, B, true, t(s));
        core.handle_timeout(t(s));
        for d in deliveries(&mut core) {
            let fails = d.sink == 2 && s < 40;
            said.push((s, d.sink, d.notification.key.class, d.notification.status));
            core.handle_observation(Observation::Delivery(DeliveryReport {
                id: d.id,
                sink: d.sink,
                result: if fails {
                    Err(("network", "connection refused".into()))
                } else {
                    Ok(())
                },
            }));
        }
    }
    let failing: Vec<_> = said
        .iter()
        .filter(|(_, _, class, _)| *class == AlertClass::NotificationsFailing)
        .collect();
    assert_eq!(
        failing
            .iter()
            .map(|(_, sink, _, status)| (*sink, *status))
            .collect::<Vec<_>>(),
        [
            (0, NotificationStatus::Firing),
            (0, NotificationStatus::Resolved)
        ],
        "to the log sink only, never to the failing one: {said:?}"
    );
    let health = &core.sink_health()[2];
    assert!(health.ok && health.consecutive_failures == 0, "{health:?}");
    assert!(core.sink_health()[2].last_failure.is_some());
}

#[test]
fn inputs_do_not_push_the_next_wake_away() {
    let mut core = core(CONFIG);
    core.handle_timeout(t(0));
    let wake = core.poll_timeout().unwrap();
    // Probe results every half second, for three seconds.
    for half in 0..6 {
        let at = t(0).plus(Duration::from_millis(500 * half));
        probe(&mut core, A, true, at);
        assert!(core.poll_timeout().unwrap() <= wake, "at {at}");
    }
}

#[test]
fn the_first_round_is_said_once_every_target_reported() {
    let mut core = core(CONFIG);
    probe(&mut core, A, true, t(0));
    let early: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert!(!early.contains(&Event::FirstRound));
    probe(&mut core, B, true, t(0));
    probe(&mut core, B, true, t(1));
    let later: Vec<Event> = std::iter::from_fn(|| core.poll_event()).collect();
    assert_eq!(later.iter().filter(|e| **e == Event::FirstRound).count(), 1);
}

#[test]
fn the_event_queue_gives_back_a_bursts_room_once_drained() {
    // The first round at many targets changes every target's verdict in one evaluation.
    let targets: Vec<String> = (1..=400)
        .map(|i| format!("\"10.0.{}.{}\"", i / 200, i % 200 + 1))
        .collect();
    let text = format!(
        "[probe]\nup_after = 1\n[[vpn]]\nname = \"dc\"\n  [[vpn.tunnel]]\n  name = \"dc-a\"\n  targets = [{}]\n",
        targets.join(", ")
    );
    let mut core = core(&text);
    for i in 0..targets.len() {
        probe(&mut core, TargetId(i), true, t(1));
    }
    let drained = std::iter::from_fn(|| core.poll_event()).count();
    assert!(drained >= targets.len(), "{drained} events");
    assert!(
        core.events.capacity() <= IDLE_EVENT_CAPACITY,
        "{} slots kept",
        core.events.capacity()
    );
}
