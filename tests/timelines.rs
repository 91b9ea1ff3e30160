//! Outages as they really unfold, through the real monitor, health model, alert engine and
//! router, on paused time: a timeline is rows of (time, event) such as "pinned target of a
//! stops answering", "EC2 says a DOWN", "EC2 calls fail", "restart", "reload", and the
//! result is the pages each sink received. The harness plays the pingers (one result per
//! target per second) and the EC2 poller (one answer per poll interval), acks every
//! delivery, and restarts or reloads the monitor the way the daemon does.
//!
//! Table tests pin the stories the NOC cares about; a property test runs random timelines
//! and checks, per alert: pages alternate firing/resolved starting with firing; no resolved
//! page while the tunnel is down; no firing page unless the tunnel has been down for `for`;
//! no page in the instant a tunnel or connection recovers; `/health` never says OK while a
//! target has not been judged; no VpnUnreachable while a tunnel's pinned targets answer
//! (the shared host's route moves between tunnels at random); SharedTargetsDown only after
//! the failover grace; and, even when EC2 never answers, every alert resolves once the
//! world is healthy.

#[path = "support/timeline.rs"]
mod timeline;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use timeline::*;
use Event::*;

const DOWN_A: &str = "TunnelDown/dc/dc-a";

#[tokio::test(start_paused = true)]
async fn data_first_then_control_is_one_outage_one_page() {
    let pages = pages_of(
        "0s",
        &[
            (0, Pings(0, false)),
            // The shared host's route leaves the failed tunnel.
            (8, RouteTo(1)),
            (10, Aws(0, false)),
            (60, Pings(0, true)),
            (70, Aws(0, true)),
        ],
        60,
    )
    .await;
    assert_eq!(
        pages,
        vec![format!("FIRING {DOWN_A}"), format!("RESOLVED {DOWN_A}")]
    );
}

#[tokio::test(start_paused = true)]
async fn control_first_then_data_and_recovery_in_either_order() {
    for (recover_first, recover_second) in [
        (Pings(0, true), Aws(0, true)),
        (Aws(0, true), Pings(0, true)),
    ] {
        let pages = pages_of(
            "0s",
            &[
                (0, Aws(0, false)),
                (20, Pings(0, false)),
                (60, recover_first),
                (75, recover_second),
            ],
            60,
        )
        .await;
        assert_eq!(
            pages,
            vec![format!("FIRING {DOWN_A}"), format!("RESOLVED {DOWN_A}")],
            "recovering with {recover_first:?} first"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_control_plane_during_an_outage_resolves_nothing() {
    // AWS says DOWN while pings pass; then EC2 calls fail long enough for the answer to go
    // stale, then come back still saying DOWN, then the tunnel recovers.
    let pages = pages_of(
        "0s",
        &[
            (0, Aws(0, false)),
            (20, Ec2Fails(true)),
            (80, Ec2Fails(false)),
            (120, Aws(0, true)),
        ],
        40,
    )
    .await;
    assert_eq!(
        pages,
        vec![format!("FIRING {DOWN_A}"), format!("RESOLVED {DOWN_A}")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_mid_outage_whose_ec2_calls_fail_lets_the_pings_decide() {
    // AWS says DOWN while pings pass; EC2 fails from before a restart: the restarted daemon
    // never heard AWS's DOWN, and the pings, which pass, decide alone. EC2 saying DOWN
    // again when it answers is an outage of its own.
    let pages = pages_of(
        "0s",
        &[
            (0, Aws(0, false)),
            (20, Ec2Fails(true)),
            (30, Restart),
            (100, Ec2Fails(false)),
            (130, Aws(0, true)),
        ],
        40,
    )
    .await;
    assert_eq!(
        pages,
        vec![
            format!("FIRING {DOWN_A}"),
            format!("RESOLVED {DOWN_A}"),
            format!("FIRING {DOWN_A}"),
            format!("RESOLVED {DOWN_A}")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_during_a_pending_for_keeps_the_wait_and_the_since() {
    let mut h = Harness::new("20s");
    h.run_for(Duration::from_secs(60)).await;
    h.play(&[(60, Pings(0, false)), (68, Reload)]).await;
    h.run_for(Duration::from_secs(40)).await;
    let firing: Vec<&Page> = h.pages.iter().filter(|p| p.status == "FIRING").collect();
    assert_eq!(firing.len(), 1, "{:?}", h.pages);
    // Down after 3 lost probes (about 63 s), firing 20 s later: not 20 s after the reload.
    let at = firing[0].at.as_secs_f64();
    assert!(
        (82.0..=85.0).contains(&at),
        "paged at {at} s: {:?}",
        h.pages
    );
}

#[tokio::test(start_paused = true)]
async fn both_tunnels_page_once_for_the_connection_and_recover_quietly() {
    let pages = pages_of(
        "0s",
        &[
            (0, Pings(0, false)),
            (0, Pings(1, false)),
            (60, Pings(0, true)),
            (60, Pings(1, true)),
        ],
        60,
    )
    .await;
    // Both tunnels dropping together is the connection down and the VPN unreachable: the
    // biggest outage pages, the tunnels it explains do not.
    assert!(
        pages.contains(&"FIRING VpnUnreachable".to_string()),
        "{pages:?}"
    );
    assert!(
        !pages.iter().any(|p| p.starts_with("FIRING TunnelDown")),
        "{pages:?}"
    );
    assert_eq!(
        pages.last().map(String::as_str),
        Some("RESOLVED VpnUnreachable"),
        "{pages:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn shared_hosts_that_stop_answering_page_shared_targets_down_after_the_grace_only() {
    // 30 s is within the failover grace (60 s): nothing pages.
    let pages = pages_of("0s", &[(0, Shared(false)), (30, Shared(true))], 30).await;
    assert_eq!(pages, Vec::<String>::new());
    // 90 s: a warning, never the VPN unreachable (the tunnels' pinned targets answer).
    let pages = pages_of("0s", &[(0, Shared(false)), (90, Shared(true))], 30).await;
    assert_eq!(
        pages,
        vec![
            "FIRING SharedTargetsDown".to_string(),
            "RESOLVED SharedTargetsDown".to_string()
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failover_pages_the_tunnel_only_and_is_measured() {
    let mut h = Harness::new("0s");
    h.run_for(Duration::from_secs(60)).await;
    // Tunnel a (which carries the shared host's traffic) fails; the route moves to b 8 s
    // later; a comes back a minute after.
    h.play(&[
        (60, Pings(0, false)),
        (68, RouteTo(1)),
        (120, Pings(0, true)),
    ])
    .await;
    h.run_for(Duration::from_secs(30)).await;
    assert_eq!(
        h.lines(),
        vec![format!("FIRING {DOWN_A}"), format!("RESOLVED {DOWN_A}")]
    );
    assert!(
        h.seen.iter().all(|s| s.3 != "CRITICAL"),
        "/health said CRITICAL during a failover"
    );
    let snap = h.snapshot_rx.borrow().clone();
    assert_eq!(snap.failovers.len(), 1, "{:?}", snap.failovers);
    let f = &snap.failovers[0];
    // Lost from the first probe after the break (61 s) to the first reply over b (69 s).
    assert!((7.0..=9.0).contains(&f.seconds), "{f:?}");
    assert_eq!(f.from[0].tunnel, "dc-a");
}

#[tokio::test(start_paused = true)]
async fn with_ec2_never_answering_an_outage_pages_and_resolves() {
    let mut h = Harness::new("0s");
    h.ec2_never_answers();
    h.run_for(Duration::from_secs(60)).await;
    h.play(&[(60, Pings(0, false)), (90, Pings(0, true))]).await;
    h.run_for(Duration::from_secs(30)).await;
    assert_eq!(
        h.lines(),
        vec![format!("FIRING {DOWN_A}"), format!("RESOLVED {DOWN_A}")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_flapping_tunnel_pages_flapping_once_and_never_as_it_comes_back() {
    // Down 5 s, up 5 s, five times over.
    let mut rows = Vec::new();
    for i in 0..5 {
        rows.push((i * 10, Pings(0, false)));
        rows.push((i * 10 + 5, Pings(0, true)));
    }
    let mut h = Harness::new("0s");
    h.run_for(Duration::from_secs(60)).await;
    let rows: Vec<(u64, Event)> = rows.iter().map(|(t, e)| (t + 60, *e)).collect();
    h.play(&rows).await;
    h.run_for(Duration::from_secs(150)).await;
    let flapping: Vec<&Page> = h
        .pages
        .iter()
        .filter(|p| p.alert.starts_with("TunnelFlapping"))
        .collect();
    assert_eq!(
        flapping.iter().map(|p| p.status).collect::<Vec<_>>(),
        ["FIRING", "RESOLVED"],
        "{:?}",
        h.pages
    );
    let tunnel_down = h
        .pages
        .iter()
        .filter(|p| p.line() == format!("FIRING {DOWN_A}"))
        .count();
    assert!(
        tunnel_down <= 2,
        "the flapping alert took over: {:?}",
        h.pages
    );
    // The flapping page came while the tunnel was down, not as it came back.
    let at = flapping[0].at;
    let seen = h.seen.iter().find(|s| s.0 == at).unwrap();
    assert_eq!(seen.1[0], "down", "{:?}", h.pages);
}

#[tokio::test(start_paused = true)]
async fn a_steady_outage_writes_nothing_after_its_page() {
    let mut h = Harness::new("0s");
    h.run_for(Duration::from_secs(60)).await;
    h.play(&[(60, Pings(0, false))]).await;
    h.run_for(Duration::from_secs(10)).await;
    let path = h.writer.store().path();
    assert!(h.writer.flush(Duration::from_secs(5)));
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    h.run_for(Duration::from_secs(30)).await;
    assert!(h.writer.flush(Duration::from_secs(5)));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the state file changed"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        before
    );
}

// Random timelines.

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..2usize, any::<bool>()).prop_map(|(t, ok)| Pings(t, ok)),
        3 => (0..2usize, any::<bool>()).prop_map(|(t, up)| Aws(t, up)),
        2 => any::<bool>().prop_map(Shared),
        1 => any::<bool>().prop_map(Ec2Fails),
        2 => (0..2usize).prop_map(RouteTo),
        1 => Just(Restart),
        1 => Just(Reload),
    ]
}

/// A `for`, whether EC2 never answers (no route to it, no permission), and the rows.
fn timeline() -> impl Strategy<Value = (bool, bool, Vec<(u64, Event)>)> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((1..40u64, event()), 1..12),
    )
}

/// The tunnels whose recovery an alert must not fire with: its own, or both.
fn tunnels_of(alert: &str) -> Vec<usize> {
    tunnel_of(alert).map_or(vec![0, 1], |t| vec![t])
}

fn check_invariants(h: &Harness, for_: Duration, truth: &[(Duration, World)]) {
    let world_at = |t: Duration| {
        truth
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map(|(_, w)| *w)
            .unwrap()
    };
    // The outages an alert is about, as (start, end), end None while it lasts.
    let outages = |alert: &str| {
        let mut out: Vec<(Duration, Option<Duration>)> = Vec::new();
        for (at, w) in truth {
            match (w.outage(alert), out.last_mut()) {
                (true, Some((_, None))) => {}
                (true, _) => out.push((*at, None)),
                (false, Some((_, end @ None))) => *end = Some(*at),
                (false, _) => {}
            }
        }
        out
    };
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &h.pages {
        // Control-plane availability is not about a tunnel.
        if p.alert.starts_with("ControlPlaneUnavailable") {
            continue;
        }
        let prev = last.insert(&p.alert, p.status);
        let tunnels = tunnels_of(&p.alert);
        let w = world_at(p.at);
        match p.status {
            "FIRING" if !p.repeat => {
                // Shared hosts lost while the VPN carries traffic page only after the
                // failover grace (60 s): the first lost probe follows the loss within 1 s.
                if p.alert == "SharedTargetsDown" {
                    assert!(
                        outages("SharedLost").iter().any(|(s, e)| {
                            *s + Duration::from_secs(59) <= p.at
                                && e.is_none_or(|e| e + RECOVERY_LAG >= p.at)
                        }),
                        "SharedTargetsDown fired at {:?} within the failover grace: {:?}",
                        p.at,
                        h.pages
                    );
                }
                assert_ne!(
                    prev,
                    Some("FIRING"),
                    "{} fired twice: {:?}",
                    p.alert,
                    h.pages
                );
                // The outage the alert is about has lasted at least `for`, and was still
                // on, or ended less than the time the daemon needs to see a recovery
                // (up_after replies and a timeout) ago.
                assert!(
                    outages(&p.alert).iter().any(|(s, e)| {
                        *s <= p.at
                            && e.is_none_or(|e| e + RECOVERY_LAG >= p.at)
                            && e.map_or(p.at, |e| e.min(p.at)).saturating_sub(*s) >= for_
                    }),
                    "{} fired at {:?} without an outage of {:?}: {:?}",
                    p.alert,
                    p.at,
                    for_,
                    h.pages
                );
                // Not in the instant a tunnel or the connection came back.
                let step = h.seen.iter().position(|s| s.0 == p.at).unwrap();
                if step > 0 {
                    let (before, after) = (&h.seen[step - 1], &h.seen[step]);
                    for t in &tunnels {
                        assert!(
                            !(before.1[*t] == "down" && after.1[*t] == "up"),
                            "{} fired in the instant tunnel {} recovered: {:?}",
                            p.alert,
                            TUNNELS[*t],
                            h.pages
                        );
                    }
                    assert!(
                        !(before.2 == "down" && after.2 != "down"),
                        "{} fired in the instant the connection recovered: {:?}",
                        p.alert,
                        h.pages
                    );
                }
            }
            "FIRING" => {}
            "RESOLVED" => {
                assert_eq!(
                    prev,
                    Some("FIRING"),
                    "{} resolved before firing: {:?}",
                    p.alert,
                    h.pages
                );
                // An outage younger than the time it takes to see it (down_after lost
                // probes) is not known yet: the old one may resolve meanwhile.
                let known_outage = outages(&p.alert)
                    .iter()
                    .any(|(s, e)| *s + DETECTION_LAG <= p.at && e.is_none_or(|e| e > p.at));
                assert!(
                    !known_outage,
                    "{} resolved at {:?} while its outage was on ({w:?}; outages {:?}): {:?}",
                    p.alert,
                    p.at,
                    outages(&p.alert),
                    h.pages
                );
            }
            other => unreachable!("{other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn random_timelines_keep_the_pager_honest((long_for, ec2_never, rows) in timeline()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let for_ = if long_for { Duration::from_secs(5) } else { Duration::ZERO };
            let mut h = Harness::new(if long_for { "5s" } else { "0s" });
            if ec2_never {
                h.ec2_never_answers();
            }
            h.run_for(Duration::from_secs(60)).await;
            for (gap, e) in &rows {
                if ec2_never && matches!(e, Ec2Fails(_)) {
                    continue;
                }
                h.run_for(Duration::from_secs(*gap)).await;
                h.apply(*e).await;
            }
            // Everything heals (but an EC2 that never answered still does not), and the
            // story ends.
            for e in [Pings(0, true), Pings(1, true), Aws(0, true), Aws(1, true), Shared(true)] {
                h.apply(e).await;
            }
            if !ec2_never {
                h.apply(Ec2Fails(false)).await;
            }
            h.run_for(Duration::from_secs(90)).await;
            check_invariants(&h, for_, &h.truth);
            // Healed, nothing is left firing.
            let mut open: BTreeMap<&str, &str> = BTreeMap::new();
            for p in &h.pages {
                open.insert(&p.alert, p.status);
            }
            // (EC2 that never answers is still unavailable: that alert may fire on.)
            let left: Vec<_> = open
                .iter()
                .filter(|(a, s)| **s == "FIRING" && !(ec2_never && a.starts_with("ControlPlaneUnavailable")))
                .collect();
            assert!(left.is_empty(), "still firing after healing: {left:?} in {:?}", h.pages);
        });
    }
}
