//! Timelines of a tunnel outage with AWS's tunnel logs: the page carries the cause the
//! logs tell, waits for a logs call under way at most `[aws.tunnel_logs] wait`, and goes at
//! once, without a cause, when the call fails.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::alert::outbox::Delivery;
use crate::health::tunnel_log_book::LogFetch;
use crate::messages::{AwsErrorKind, DeliveryReport};
use crate::tunnel_log::{parse, CauseKind};

const CONFIG: &str = r#"
    [probe]
    down_after = 3
    up_after = 2
    [aws]
    region = "eu-west-1"
      [aws.tunnel_logs]
      log_group = "/vpn/tunnels"
    [[vpn]]
    name = "dc"
    id = "vpn-0123456789abcdef0"
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
const DC_A: TunnelId = TunnelId {
    connection: 0,
    tunnel: 0,
};
const DC_B: TunnelId = TunnelId {
    connection: 0,
    tunnel: 1,
};

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_000_000 + s)
}

fn core() -> Core {
    let config = Arc::new(Config::parse(CONFIG, "test").unwrap());
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

#[derive(Default)]
struct Seen {
    fetches: Vec<LogFetch>,
    pages: Vec<(Timestamp, Delivery)>,
    causes: Vec<(TunnelId, Option<CauseKind>)>,
}

fn drain(core: &mut Core, at: Timestamp, seen: &mut Seen) {
    while let Some(e) = core.poll_event() {
        match e {
            Event::FetchTunnelLogs(f) => seen.fetches.push(f),
            Event::CauseChanged { tunnel, cause } => {
                seen.causes.push((tunnel, cause.map(|c| c.kind)))
            }
            Event::Deliver(d) => {
                core.handle_observation(Observation::Delivery(DeliveryReport {
                    id: d.id,
                    sink: d.sink,
                    result: Ok(()),
                }));
                seen.pages.push((at, d));
            }
            _ => {}
        }
    }
}

/// Seconds `range` pass with both tunnels probed; A's probes are lost from `a_lost_from`.
fn run(core: &mut Core, range: std::ops::Range<u64>, a_lost_from: u64, seen: &mut Seen) {
    for s in range {
        probe(core, A, s < a_lost_from, t(s));
        probe(core, B, true, t(s));
        core.handle_timeout(t(s));
        drain(core, t(s), seen);
    }
}

fn logs(core: &mut Core, tunnel: TunnelId, at: Timestamp, messages: &[&str]) {
    let events: Vec<_> = messages.iter().map(|m| parse(m, at).unwrap()).collect();
    let result = TunnelLogResult::Events {
        latest: events.last().map(|e| e.at),
        events,
    };
    core.handle_observation(Observation::TunnelLogs { tunnel, at, result });
}

fn line(ip: &str, detail: &str) -> String {
    format!("{{\"VpnLogCreationTimestamp\":\"{}\",\"TunnelOutsideIPAddress\":\"{ip}\",\"TunnelIKEPhase1State\":\"Down\",\"TunnelIKEPhase2State\":\"Down\",\"VpnLogDetail\":\"{detail}\"}}", t(11))
}

fn firing_page(seen: &Seen) -> &(Timestamp, Delivery) {
    seen.pages
        .iter()
        .find(|(_, d)| d.notification.key.class == AlertClass::TunnelDown)
        .expect("a TunnelDown page")
}

#[test]
fn the_page_waits_for_the_logs_call_under_way_and_carries_its_tunnels_cause() {
    let mut core = core();
    let mut seen = Seen::default();
    run(&mut core, 0..13, 10, &mut seen);
    // A is down at 12 s: its logs are asked for, B's are not.
    assert_eq!(seen.fetches.len(), 1, "{:?}", seen.fetches);
    assert_eq!(seen.fetches[0].tunnel, DC_A);
    assert_eq!(seen.fetches[0].outside_ip, "203.0.113.10");
    assert_eq!(seen.fetches[0].log_group, "/vpn/tunnels");
    // The page waits for them.
    assert!(seen.pages.is_empty(), "{:?}", seen.pages);
    // B's logs tell of a PSK mismatch; A's of DPD.
    logs(
        &mut core,
        DC_B,
        t(13),
        &[&line(
            "203.0.113.20",
            "AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key",
        )],
    );
    drain(&mut core, t(13), &mut seen);
    assert!(
        seen.pages.is_empty(),
        "B's logs release A's page: {:?}",
        seen.pages
    );
    logs(
        &mut core,
        DC_A,
        t(14),
        &[&line(
            "203.0.113.10",
            "Peer is not responsive - Declaring peer dead",
        )],
    );
    drain(&mut core, t(14), &mut seen);
    let (at, page) = firing_page(&seen);
    assert_eq!(*at, t(14));
    let cause = page.notification.details.cause.as_ref().expect("a cause");
    assert_eq!(cause.kind, CauseKind::Dpd);
    assert_eq!(cause.text, "Peer is not responsive - Declaring peer dead");
    assert_eq!(seen.causes, [(DC_A, Some(CauseKind::Dpd))]);
}

#[test]
fn a_failing_logs_call_lets_the_page_go_at_once_without_a_cause() {
    let mut core = core();
    let mut seen = Seen::default();
    run(&mut core, 0..13, 10, &mut seen);
    assert!(seen.pages.is_empty());
    core.handle_observation(Observation::TunnelLogs {
        tunnel: DC_A,
        at: t(13),
        result: TunnelLogResult::Failed {
            kind: AwsErrorKind::Throttled,
            message: "ThrottlingException".into(),
        },
    });
    drain(&mut core, t(13), &mut seen);
    let (at, page) = firing_page(&seen);
    assert_eq!(*at, t(13));
    assert_eq!(page.notification.details.cause, None);
}

#[test]
fn a_slow_logs_call_holds_the_page_no_longer_than_wait() {
    let mut core = core();
    let mut seen = Seen::default();
    // The call went out at 12 s and never answers: the page goes at 22 s (wait = 10 s).
    run(&mut core, 0..22, 10, &mut seen);
    assert!(seen.pages.is_empty(), "{:?}", seen.pages);
    run(&mut core, 22..23, 10, &mut seen);
    let (at, page) = firing_page(&seen);
    assert_eq!(*at, t(22));
    assert_eq!(page.notification.details.cause, None);
    // The answer after the page: the cause is known (for /status and the log line).
    logs(
        &mut core,
        DC_A,
        t(30),
        &[&line("203.0.113.10", "No Proposal Match Found by AWS")],
    );
    drain(&mut core, t(30), &mut seen);
    assert_eq!(seen.causes, [(DC_A, Some(CauseKind::ProposalMismatch))]);
}
