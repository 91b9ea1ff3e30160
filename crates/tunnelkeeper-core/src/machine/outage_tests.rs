//! Timelines through the whole core that end outages and failovers, and the records they
//! leave.

use std::sync::Arc;
use std::time::Duration;

use crate::alert::engine::NotificationStatus;
use crate::alert::saved::SavedState;
use crate::config::Config;
use crate::history::History;
use crate::jitter::Jitter;
use crate::machine::{Core, Event};
use crate::messages::{DeliveryReport, Observation, ProbeOutcome};
use crate::outage::{OutageKind, OutageRecord, Plane};
use crate::types::{AlertClass, TargetId, Timestamp};

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
    [[target]]
    address = "10.20.0.5"
    [alerts]
    for = "0s"
    group_wait = "0s"
      [[alerts.sink]]
      kind = "log"
      name = "ops-log"
"#;

const A: TargetId = TargetId(0);
const B: TargetId = TargetId(1);
const SHARED: TargetId = TargetId(2);

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_000_000 + s)
}

fn new_core(saved: Option<SavedState>, at: Timestamp) -> Core {
    let config = Arc::new(Config::parse(CONFIG, "test").unwrap());
    let history = History::shared(&config);
    Core::new(config, saved, history, Jitter::from_seed(7), at)
}

fn probe(core: &mut Core, target: TargetId, ok: bool, at: Timestamp) {
    let outcome = if ok {
        ProbeOutcome::Reply {
            rtt: Duration::from_millis(5),
        }
    } else {
        ProbeOutcome::Timeout {
            after: Duration::ZERO,
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

/// What one second of a timeline leaves: records, and the last saved state.
#[derive(Default)]
struct Seen {
    records: Vec<OutageRecord>,
    saved: Option<SavedState>,
}

/// Runs seconds `range`; `up(target, second)` says whether a target answers.
fn run(core: &mut Core, range: std::ops::Range<u64>, up: impl Fn(TargetId, u64) -> bool) -> Seen {
    let mut seen = Seen::default();
    for s in range {
        for target in [A, B, SHARED] {
            probe(core, target, up(target, s), t(s));
        }
        core.handle_timeout(t(s));
        while let Some(e) = core.poll_event() {
            match e {
                Event::OutageRecorded(r) => seen.records.push(r),
                Event::SaveState(state) => seen.saved = Some(state),
                Event::Deliver(d) => {
                    core.handle_observation(Observation::Delivery(DeliveryReport {
                        id: d.id,
                        sink: d.sink,
                        result: Ok(()),
                    }))
                }
                _ => {}
            }
        }
    }
    seen
}

#[test]
fn a_tunnel_outage_is_recorded_when_it_ends_with_its_pages() {
    let mut core = new_core(None, t(0));
    let seen = run(&mut core, 0..40, |target, s| {
        target != A || !(10..20).contains(&s)
    });
    let tunnel: Vec<&OutageRecord> = seen
        .records
        .iter()
        .filter(|r| r.kind == OutageKind::Tunnel)
        .collect();
    assert_eq!(tunnel.len(), 1, "{:#?}", seen.records);
    let r = tunnel[0];
    assert_eq!(r.tunnels, ["dc-a"]);
    assert_eq!(r.connection.as_deref(), Some("dc"));
    assert_eq!(r.started_at, t(10), "the first lost probe");
    assert_eq!(
        r.ended_at,
        t(20),
        "the first reply of the streak that brought it up"
    );
    assert_eq!(r.seconds, 10.0);
    assert_eq!(r.planes, [Plane::Data]);
    assert!(r.reason.contains("probes lost"), "{}", r.reason);
    let pages: Vec<(AlertClass, NotificationStatus, &[String])> = r
        .pages
        .iter()
        .map(|p| (p.class, p.status, p.sinks.as_slice()))
        .collect();
    let sinks = ["ops-log".to_string()];
    assert_eq!(
        pages,
        [
            (
                AlertClass::TunnelDown,
                NotificationStatus::Firing,
                &sinks[..]
            ),
            (
                AlertClass::TunnelDown,
                NotificationStatus::Resolved,
                &sinks[..]
            ),
        ],
        "the firing page and the resolve that came with its end"
    );
    assert_eq!(
        r.shared_targets.lost, 0,
        "the shared target answered throughout"
    );
    // Counted from when the outage was declared (the third lost probe, 12 s) until it
    // was over (the second reply, 21 s): seconds 12 to 20.
    assert_eq!(r.shared_targets.sent, 9, "{:?}", r.shared_targets);
    // Nothing else was out: the other tunnel carried the connection.
    assert_eq!(seen.records.len(), 1, "{:#?}", seen.records);
    assert_eq!(r.cause, None, "plain timeouts tell no why");
}

#[test]
fn a_tunnel_outage_keeps_its_cause_after_the_tunnel_is_back() {
    let mut core = new_core(None, t(0));
    let mut records = Vec::new();
    for s in 0..40 {
        for target in [A, B, SHARED] {
            let outcome = if target == A && (10..20).contains(&s) {
                ProbeOutcome::IcmpError {
                    from: "10.1.1.2".parse().unwrap(),
                    kind: crate::messages::IcmpErrorKind::Unreachable { code: 1 },
                }
            } else {
                ProbeOutcome::Reply {
                    rtt: Duration::from_millis(5),
                }
            };
            core.handle_observation(Observation::Probe {
                target,
                seq: 0,
                at: t(s),
                outcome,
                send_delay: Duration::ZERO,
            });
        }
        core.handle_timeout(t(s));
        while let Some(e) = core.poll_event() {
            if let Event::OutageRecorded(r) = e {
                records.push(r);
            }
        }
    }
    assert_eq!(records.len(), 1, "{records:#?}");
    let cause = records[0].cause.as_deref().unwrap_or("none");
    assert!(
        cause.contains("10.1.1.2"),
        "the router that answered: {cause}"
    );
}

#[test]
fn a_connection_and_vpn_outage_each_leave_a_record_with_the_shared_loss() {
    let mut core = new_core(None, t(0));
    let seen = run(&mut core, 0..40, |_, s| !(10..20).contains(&s));
    let mut kinds: Vec<OutageKind> = seen.records.iter().map(|r| r.kind).collect();
    kinds.sort_by_key(|k| k.label());
    assert_eq!(
        kinds,
        [
            OutageKind::Connection,
            OutageKind::Tunnel,
            OutageKind::Tunnel,
            OutageKind::Vpn
        ],
        "{:#?}",
        seen.records
    );
    let connection = seen
        .records
        .iter()
        .find(|r| r.kind == OutageKind::Connection)
        .unwrap();
    assert_eq!(connection.tunnels, ["dc-a", "dc-b"]);
    assert!(
        connection.shared_targets.lost > 0,
        "{:?}",
        connection.shared_targets
    );
    let vpn = seen
        .records
        .iter()
        .find(|r| r.kind == OutageKind::Vpn)
        .unwrap();
    assert!(
        vpn.pages
            .iter()
            .any(|p| p.class == AlertClass::VpnUnreachable),
        "{:?}",
        vpn.pages
    );
    let ids: std::collections::BTreeSet<&str> =
        seen.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "every record has its own id");
}

#[test]
fn a_failover_is_recorded_with_the_tunnel_traffic_left() {
    let mut core = new_core(None, t(0));
    // Tunnel A fails for good at 10 s; the shared target is lost until 15 s, when traffic
    // has moved to B.
    let seen = run(&mut core, 0..25, |target, s| match target {
        A => s < 10,
        SHARED => !(10..15).contains(&s),
        _ => true,
    });
    let failovers: Vec<&OutageRecord> = seen
        .records
        .iter()
        .filter(|r| r.kind == OutageKind::Failover)
        .collect();
    assert_eq!(failovers.len(), 1, "{:#?}", seen.records);
    let f = failovers[0];
    assert_eq!(f.tunnels, ["dc-a"]);
    // Both ends are when the probes were sent: the reply took 5 ms.
    assert_eq!(f.started_at, t(10));
    assert_eq!(f.ended_at, Timestamp::from_millis(t(15).as_millis() - 5));
    assert_eq!(f.shared_targets.lost, 5, "{:?}", f.shared_targets);
    assert!(f.id.starts_with("failover-"), "{}", f.id);
}

#[test]
fn an_outage_across_a_restart_keeps_its_start_and_its_id() {
    let mut before = new_core(None, t(0));
    let seen = run(&mut before, 0..30, |target, s| target != A || s < 10);
    assert!(seen.records.is_empty(), "still down: {:#?}", seen.records);
    let saved = seen.saved.expect("the firing alert was saved");
    let mut after = new_core(Some(saved), t(100));
    let seen = run(&mut after, 100..130, |target, s| target != A || s >= 120);
    let r = seen
        .records
        .iter()
        .find(|r| r.kind == OutageKind::Tunnel)
        .unwrap_or_else(|| panic!("{:#?}", seen.records));
    assert_eq!((r.started_at, r.ended_at), (t(10), t(120)));
    assert_eq!(
        r.id,
        crate::outage::outage_id(OutageKind::Tunnel, "dc/203.0.113.10", t(10))
    );
}

#[test]
fn a_reload_during_an_outage_keeps_it_open() {
    let mut core = new_core(None, t(0));
    let seen = run(&mut core, 0..20, |target, s| target != A || s < 10);
    assert!(seen.records.is_empty());
    // The tunnel renamed: the same tunnel by its outside IP.
    let renamed = CONFIG.replace("\"dc-a\"", "\"dc-east\"");
    let config = Arc::new(Config::parse(&renamed, "test").unwrap());
    let mut core = core.reload(config, t(20));
    // Both names of the renamed tunnel are one tunnel: the record says the new one.
    let seen = run(&mut core, 20..40, |target, s| target != A || s >= 30);
    let r = seen
        .records
        .iter()
        .find(|r| r.kind == OutageKind::Tunnel)
        .unwrap_or_else(|| panic!("{:#?}", seen.records));
    assert_eq!((r.started_at, r.ended_at), (t(10), t(30)));
    assert_eq!(r.tunnels, ["dc-east"]);
}

#[test]
fn a_bundle_holds_the_minutes_of_the_tunnel_and_its_sibling() {
    use crate::outage::bundle::{build, minutes_csv, MARGIN};
    let mut core = new_core(None, t(0));
    let seen = run(&mut core, 0..40, |target, s| {
        target != A || !(10..20).contains(&s)
    });
    let record = &seen.records[0];
    let history = core.history().lock().unwrap();
    let chart = |connection: &str, tunnel: &str, range| {
        let live = history.tunnel_live(connection, tunnel)?;
        Some(live.points(range, t(40), &crate::history::chart::NoRings))
    };
    let bundle = build(record, history.config(), t(40), &chart);
    assert_eq!(bundle.outage, *record);
    assert_eq!(bundle.pages, record.pages);
    assert_eq!(
        bundle.from,
        Timestamp::from_millis(t(10).as_millis() - MARGIN.as_millis() as u64)
    );
    assert_eq!(bundle.to, t(40), "not past now");
    let roles: Vec<(&str, &str)> = bundle
        .tunnels
        .iter()
        .map(|t| (t.tunnel.as_str(), t.role))
        .collect();
    assert_eq!(roles, [("dc-a", "outage"), ("dc-b", "sibling")]);
    let lost = |i: usize| -> u32 {
        bundle.tunnels[i]
            .minutes
            .iter()
            .map(|m| u32::from(m.lost))
            .sum()
    };
    assert_eq!((lost(0), lost(1)), (10, 0));
    let sent: u32 = bundle.tunnels[0]
        .minutes
        .iter()
        .map(|m| u32::from(m.sent))
        .sum();
    assert_eq!(sent, 40);
    assert!(bundle.tunnels[0]
        .minutes
        .iter()
        .any(|m| m.marks.contains(&"down")));
    // 31 minutes of window at one row a minute (the minute of the start included).
    assert!(
        bundle.tunnels[0].minutes.len() >= 30,
        "{}",
        bundle.tunnels[0].minutes.len()
    );
    assert!(bundle.note.is_none());
    let csv = minutes_csv(&bundle);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("connection,tunnel,role,at,minutes,sent,lost,rtt_p10_ms,rtt_p50_ms,rtt_p90_ms,marks")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        bundle
            .tunnels
            .iter()
            .map(|t| t.minutes.len())
            .sum::<usize>()
    );
    assert!(
        rows.iter()
            // The minute it went down (10 of 20 probes lost) and came back up.
            .any(|r| r.starts_with("dc,dc-a,outage,")
                && r.ends_with(",1,20,10,5.000,5.000,5.000,down up")),
        "{csv}"
    );
}
