use proptest::prelude::*;

use super::*;
use crate::config::maintenance::{Window, Windows, Zone};

const MIN: u64 = 60;
/// 2026-07-05 00:00 UTC, a Sunday.
const SUNDAY: u64 = 1_783_209_600;

fn config(apply: ApplyMode, window: &str) -> MaintenanceConfig {
    MaintenanceConfig {
        apply,
        windows: Windows {
            windows: vec![Window::parse(window).unwrap()],
            zone: Zone::get("UTC").unwrap(),
        },
        sibling_healthy_for: Duration::from_secs(30 * MIN),
        max_concurrent: 1,
        recovery_timeout: Duration::from_secs(10 * MIN),
    }
}

fn healthy(for_min: u64, now: u64) -> Health {
    Health::Healthy {
        since: Timestamp::from_secs(now - for_min * MIN),
    }
}

fn tunnel(name: &str, pending: bool, health: Health) -> TunnelFacts {
    TunnelFacts {
        name: name.into(),
        pending: pending.then_some(Pending {
            auto_apply_after: None,
            fresh: true,
        }),
        health,
        progress: Progress::Idle,
        not_callable: None,
    }
}

fn connection(name: &str, tunnels: Vec<TunnelFacts>) -> ConnectionFacts {
    ConnectionFacts {
        name: name.into(),
        tunnels,
        firing: Vec::new(),
    }
}

fn down() -> Health {
    Health::Unhealthy {
        why: "is down".into(),
    }
}

/// Two connections, a pending on `dc-a`; everything else healthy for an hour.
fn vpn(now: u64) -> Vec<ConnectionFacts> {
    vec![
        connection(
            "dc",
            vec![
                tunnel("dc-a", true, healthy(60, now)),
                tunnel("dc-b", false, healthy(60, now)),
            ],
        ),
        connection(
            "dc2",
            vec![
                tunnel("dc2-a", false, healthy(60, now)),
                tunnel("dc2-b", false, healthy(60, now)),
            ],
        ),
    ]
}

fn blockers(d: &Decision) -> Vec<String> {
    match d {
        Decision::Wait { blocked_by, .. } => blocked_by.iter().map(|b| b.to_string()).collect(),
        other => vec![format!("{other:?}")],
    }
}

#[test]
fn pending_maintenance_is_applied_only_when_everything_else_is_safe() {
    let now = SUNDAY + 3 * 3600;
    let t = Timestamp::from_secs(now);
    let safe = config(ApplyMode::WhenSafe, "Sun 02:00-05:00");
    type Change = fn(&mut Vec<ConnectionFacts>, &mut MaintenanceConfig);
    let cases: [(&str, Change, &[&str]); 10] = [
        ("all healthy", |_, _| {}, &["Apply"]),
        (
            "never",
            |_, c| c.apply = ApplyMode::Never,
            &["[maintenance] apply is \"never\""],
        ),
        (
            "dry run",
            |_, c| c.apply = ApplyMode::DryRun,
            &["WouldApply"],
        ),
        (
            "outside",
            |_, c| c.windows.windows = vec![Window::parse("Mon 02:00-05:00").unwrap()],
            &["outside the maintenance windows (next at 2026-07-06T02:00:00Z)"],
        ),
        (
            "sibling down",
            |v, _| v[0].tunnels[1].health = down(),
            &["dc-b is down"],
        ),
        (
            "sibling healthy too briefly",
            |v, _| v[0].tunnels[1].health = healthy(12, SUNDAY + 3 * 3600),
            &["dc-b has been healthy for 12m only, 30m needed"],
        ),
        (
            "other connection gone",
            |v, _| {
                v[1].tunnels[0].health = down();
                v[1].tunnels[1].health = down();
            },
            &["connection dc2 has no healthy tunnel (dc2-a is down; dc2-b is down)"],
        ),
        (
            "alerts",
            |v, _| v[0].firing = vec!["TunnelLossy".into()],
            &["alerts fire for the connection: TunnelLossy"],
        ),
        (
            "another replacing",
            |v, _| {
                v[1].tunnels[1].progress = Progress::Replacing {
                    since: Timestamp::from_secs(SUNDAY),
                }
            },
            &["dc2-b is being replaced"],
        ),
        (
            "no outside ip",
            |v, _| v[0].tunnels[0].not_callable = Some("no outside_ip".into()),
            &["no outside_ip"],
        ),
    ];
    for (what, change, expected) in cases {
        let (mut v, mut c) = (vpn(now), safe.clone());
        change(&mut v, &mut c);
        let d = decide(t, &c, &v);
        assert_eq!(blockers(&d[0][0]), expected, "{what}");
    }
    // One of the other connection's tunnels is enough.
    let mut v = vpn(now);
    v[1].tunnels[0].health = down();
    assert_eq!(decide(t, &safe, &v)[0][0], Decision::Apply);
}

#[test]
fn one_tunnel_at_a_time_and_never_both_of_a_connection() {
    let now = SUNDAY + 3 * 3600;
    let t = Timestamp::from_secs(now);
    let mut c = config(ApplyMode::WhenSafe, "Sun 02:00-05:00");
    let mut v = vpn(now);
    for conn in &mut v {
        for tun in &mut conn.tunnels {
            tun.pending = Some(Pending {
                auto_apply_after: None,
                fresh: true,
            });
        }
    }
    let d = decide(t, &c, &v);
    assert_eq!(d[0][0], Decision::Apply);
    assert_eq!(blockers(&d[0][1]), ["dc-a is being replaced"]);
    assert_eq!(blockers(&d[1][0]), ["dc-a is being replaced"]);
    // Two at once: one per connection.
    c.max_concurrent = 2;
    let d = decide(t, &c, &v);
    assert_eq!((&d[0][0], &d[1][0]), (&Decision::Apply, &Decision::Apply));
    assert_eq!(blockers(&d[0][1]), ["dc-a is being replaced"]);
    // A stale reading after the daemon's own call waits for AWS.
    v[0].tunnels[0].pending = Some(Pending {
        auto_apply_after: None,
        fresh: false,
    });
    assert_eq!(
        blockers(&decide(t, &c, &v)[0][0]),
        ["AWS has not been asked again since the last replacement"]
    );
}

/// Healthy for so many minutes before the property's `now` (set in the test), or down.
fn arb_health() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![(0u64..120).prop_map(Some), Just(None)]
}

fn arb_progress() -> impl Strategy<Value = Progress> {
    prop_oneof![
        6 => Just(Progress::Idle),
        1 => Just(Progress::Replacing { since: Timestamp::from_secs(SUNDAY) }),
        1 => Just(Progress::Failed { since: Timestamp::from_secs(SUNDAY), why: "not back".into() }),
    ]
}

fn arb_vpn() -> impl Strategy<Value = Vec<ConnectionFacts>> {
    let arb_tunnel = (any::<bool>(), arb_health(), arb_progress());
    // Health is filled in against `NOW` below.
    prop::collection::vec((prop::collection::vec(arb_tunnel, 2), any::<bool>()), 1..=2).prop_map(
        |conns| {
            conns
                .into_iter()
                .enumerate()
                .map(|(ci, (tunnels, alerts))| ConnectionFacts {
                    name: format!("c{ci}"),
                    firing: if alerts {
                        vec!["TunnelDown".into()]
                    } else {
                        vec![]
                    },
                    tunnels: tunnels
                        .into_iter()
                        .enumerate()
                        .map(|(ti, (pending, health, progress))| TunnelFacts {
                            name: format!("c{ci}-t{ti}"),
                            pending: pending.then_some(Pending {
                                auto_apply_after: None,
                                fresh: true,
                            }),
                            health: match health {
                                Some(minutes) => Health::Healthy {
                                    since: Timestamp::from_secs(NOW - minutes * MIN),
                                },
                                None => down(),
                            },
                            progress,
                            not_callable: None,
                        })
                        .collect(),
                })
                .collect()
        },
    )
}

/// The property's time: a Sunday at 04:00 UTC.
const NOW: u64 = SUNDAY + 7 * 86_400 + 4 * 3600;

fn arb_mode() -> impl Strategy<Value = ApplyMode> {
    prop_oneof![
        Just(ApplyMode::Never),
        Just(ApplyMode::DryRun),
        Just(ApplyMode::WhenSafe)
    ]
}

proptest! {
    #[test]
    fn decisions_are_never_unsafe(
        vpn in arb_vpn(),
        mode in arb_mode(),
        max_concurrent in 1u32..=3,
        // Windows around NOW (Sunday 04:00 UTC): open, open, closed, closed (it ends as
        // NOW begins), closed (it opens a minute later).
        window in prop_oneof![
            Just("Sun 02:00-05:00"),
            Just("daily 00:00-24:00"),
            Just("Sat 12:00-13:00"),
            Just("Sun 03:00-04:00"),
            Just("Sun 04:01-05:00"),
        ],
    ) {
        let now = Timestamp::from_secs(NOW);
        let mut c = config(mode, window);
        c.max_concurrent = max_concurrent;
        let d = decide(now, &c, &vpn);
        let mut under_way = 0;
        for (ci, row) in d.iter().enumerate() {
            let mut in_connection = 0;
            for (ti, decision) in row.iter().enumerate() {
                let going = matches!(decision, Decision::Apply | Decision::InProgress | Decision::WouldApply);
                under_way += usize::from(going);
                in_connection += usize::from(going);
                if matches!(decision, Decision::Apply | Decision::WouldApply) {
                    // Never outside a window, never in never or dry-run mode (for a call).
                    prop_assert!(c.windows.open_until(now).is_some());
                    prop_assert!(mode != ApplyMode::Never);
                    prop_assert!(*decision == Decision::Apply || mode == ApplyMode::DryRun);
                    prop_assert!(mode != ApplyMode::DryRun || *decision == Decision::WouldApply);
                    // Never while a sibling is down or the connection alerts.
                    for (si, sibling) in vpn[ci].tunnels.iter().enumerate() {
                        if si != ti {
                            let long_enough = matches!(sibling.health, Health::Healthy { since } if now.since(since) >= c.sibling_healthy_for);
                            prop_assert!(long_enough, "sibling {} not healthy long enough", sibling.name);
                        }
                    }
                    prop_assert!(vpn[ci].firing.is_empty());
                    prop_assert!(vpn[ci].tunnels[ti].pending.is_some());
                }
            }
            // Never two tunnels of a connection at once (new ones; both under way can only
            // be what the property's random start gave).
            let started_here = row.iter().filter(|x| matches!(x, Decision::Apply | Decision::WouldApply)).count();
            prop_assert!(started_here == 0 || in_connection == 1);
        }
        let started = d.iter().flatten().filter(|x| matches!(x, Decision::Apply | Decision::WouldApply)).count();
        prop_assert!(started == 0 || under_way <= max_concurrent as usize);
    }
}
