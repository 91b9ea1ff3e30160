//! Timelines of pending AWS maintenance through the whole core: when the core asks for
//! `ReplaceVpnTunnel`, what it pages, and what it shows, with made-up times.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::alert::engine::NotificationStatus;
use crate::maintenance::tracker::Outcome;
use crate::maintenance::{Blocker, Decision};
use crate::messages::{
    ApiConnectionState, ApiTunnelStatus, ConnectionReading, DeliveryReport, MaintenanceReading,
    Telemetry, TunnelOptionsReading, TunnelReading,
};
use crate::types::{OutsideIp, VpnConnectionId};

const A: TunnelId = TunnelId {
    connection: 0,
    tunnel: 0,
};

fn config(apply: &str) -> Arc<Config> {
    let text = format!(
        r#"
    [probe]
    down_after = 3
    up_after = 2
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
    [alerts]
    for = "0s"
    group_wait = "0s"
      [[alerts.sink]]
      kind = "log"
      min_severity = "info"
    [maintenance]
    apply = "{apply}"
    window = "daily 00:00-24:00"
    sibling_healthy_for = "2m"
    recovery_timeout = "2m"
"#
    );
    Arc::new(Config::parse(&text, "test").unwrap())
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_000_000 + s)
}

/// What each tunnel does at one second: `(pings answer, EC2 says UP, since when by EC2)`.
type Plane = (bool, bool, u64);

struct World {
    core: Core,
    replaced: Vec<(TunnelId, u64)>,
    pages: Vec<(AlertClass, NotificationStatus, String)>,
    plans: Vec<(TunnelId, Decision, Option<Outcome>)>,
}

impl World {
    fn new(apply: &str) -> Self {
        let config = config(apply);
        let history = History::shared(&config);
        let core = Core::new(config, None, history, Jitter::from_seed(7), t(0));
        Self {
            core,
            replaced: Vec::new(),
            pages: Vec::new(),
            plans: Vec::new(),
        }
    }

    fn maintenance(&mut self, s: u64, pending: bool, last_applied: Option<u64>) {
        let reading = MaintenanceReading {
            pending: pending.then(|| "Pending replacement".into()),
            auto_apply_after: Some(t(s + 20 * 3600)),
            last_applied: last_applied.map(t),
        };
        self.core.handle_observation(Observation::Maintenance {
            at: t(s),
            tunnel: A,
            result: crate::messages::MaintenanceResult::Reading(reading),
        });
    }

    /// One second of the world.
    fn second(&mut self, s: u64, a: Plane, b: Plane) {
        for (target, up) in [(TargetId(0), a.0), (TargetId(1), b.0)] {
            let outcome = if up {
                ProbeOutcome::Reply {
                    rtt: Duration::from_millis(5),
                }
            } else {
                ProbeOutcome::Timeout {
                    after: Duration::from_secs(1),
                }
            };
            self.core.handle_observation(Observation::Probe {
                target,
                seq: 0,
                at: t(s),
                outcome,
                send_delay: Duration::ZERO,
            });
        }
        if s.is_multiple_of(10) {
            let tunnel = |ip: &str, (_, up, since): Plane| TunnelReading {
                outside_ip: Some(OutsideIp(ip.parse().unwrap())),
                telemetry: Some(Telemetry {
                    status: if up {
                        ApiTunnelStatus::Up
                    } else {
                        ApiTunnelStatus::Down
                    },
                    status_message: None,
                    last_status_change: Some(t(since)),
                    accepted_route_count: Some(1),
                }),
                options: Some(TunnelOptionsReading {
                    startup_action: Some("add".into()),
                    ..Default::default()
                }),
            };
            let reading = ConnectionReading {
                connection: 0,
                id: VpnConnectionId::new("vpn-0123456789abcdef0"),
                state: ApiConnectionState::Available,
                static_routes_only: false,
                tunnels: vec![tunnel("52.2.144.13", a), tunnel("52.2.144.14", b)],
                listed_outside_ips: Vec::new(),
            };
            self.core.handle_observation(Observation::Ec2 {
                at: t(s),
                result: PollResult::Answer(vec![reading]),
            });
        }
        self.core.handle_timeout(t(s));
        while let Some(event) = self.core.poll_event() {
            match event {
                Event::ReplaceTunnel { tunnel } => {
                    self.replaced.push((tunnel, s));
                    self.core
                        .handle_observation(Observation::TunnelReplaceAnswered {
                            at: t(s),
                            tunnel,
                            error: None,
                        });
                }
                Event::Deliver(d) => {
                    let n = &d.notification;
                    self.pages
                        .push((n.key.class, n.status, n.details.reason.clone()));
                    self.core
                        .handle_observation(Observation::Delivery(DeliveryReport {
                            id: d.id,
                            sink: d.sink,
                            result: Ok(()),
                        }));
                }
                Event::MaintenancePlanChanged { tunnel, plan, .. } => {
                    self.plans.push((tunnel, plan.decision, plan.outcome))
                }
                _ => {}
            }
        }
    }

    fn pages_of(&self, class: AlertClass) -> Vec<NotificationStatus> {
        self.pages
            .iter()
            .filter(|p| p.0 == class)
            .map(|p| p.1)
            .collect()
    }
}

const UP: Plane = (true, true, 0);

#[test]
fn pending_maintenance_is_applied_once_when_the_sibling_was_healthy_long_enough() {
    let mut w = World::new("when-safe");
    w.second(0, UP, UP);
    w.maintenance(1, true, None);
    for s in 1..130 {
        w.second(s, UP, UP);
    }
    // dc-b healthy for 2 minutes (both planes up since second 0, the pings from 1 or 2).
    assert_eq!(w.replaced.len(), 1, "{:?}", w.replaced);
    let (tunnel, at) = w.replaced[0];
    assert_eq!(tunnel, A);
    assert!((120..=125).contains(&at), "replaced at {at}");
    assert_eq!(
        w.pages_of(AlertClass::MaintenanceReplacing),
        [NotificationStatus::Firing]
    );
    let started = w
        .pages
        .iter()
        .find(|p| p.0 == AlertClass::MaintenanceReplacing)
        .unwrap();
    assert!(
        started.2.contains("the datacenter must send traffic"),
        "{}",
        started.2
    );
    // The tunnel goes down with the replacement and comes back at 190; AWS says applied.
    for s in 130..190 {
        w.second(s, (false, false, 131), UP);
    }
    w.maintenance(185, false, Some(at + 10));
    for s in 190..240 {
        w.second(s, (true, true, 190), UP);
    }
    assert_eq!(w.replaced.len(), 1, "one call only: {:?}", w.replaced);
    assert_eq!(
        w.pages_of(AlertClass::MaintenanceReplacing),
        [NotificationStatus::Firing, NotificationStatus::Resolved]
    );
    assert!(w.pages_of(AlertClass::MaintenanceReplaceFailed).is_empty());
    let plan = w.core.maintenance().plan(A).unwrap();
    assert!(
        matches!(plan.outcome, Some(Outcome::Recovered { .. })),
        "{plan:?}"
    );
    assert_eq!(plan.decision, Decision::Idle);
}

#[test]
fn nothing_is_replaced_while_the_sibling_is_down_and_aws_near_its_date_pages_why() {
    let mut w = World::new("when-safe");
    w.second(0, UP, (false, false, 0));
    w.maintenance(1, true, None);
    for s in 1..400 {
        w.second(s, UP, (false, false, 0));
    }
    assert!(w.replaced.is_empty(), "{:?}", w.replaced);
    let plan = w.core.maintenance().plan(A).unwrap();
    let Decision::Wait { blocked_by, .. } = &plan.decision else {
        panic!("{plan:?}")
    };
    assert!(
        blocked_by
            .iter()
            .any(|b| matches!(b, Blocker::NotHealthy { tunnel, .. } if tunnel == "dc-b")),
        "{blocked_by:?}"
    );
    // AWS applies it within 20 hours: the blocked page says by what.
    let blocked = w
        .pages
        .iter()
        .find(|p| p.0 == AlertClass::MaintenanceBlocked);
    assert!(
        blocked.is_some_and(|p| p.2.contains("Blocked by: dc-b is down")),
        "{:?}",
        w.pages
    );
}

#[test]
fn a_replaced_tunnel_not_back_in_time_pages_and_stops_further_replacements() {
    let mut w = World::new("when-safe");
    w.second(0, UP, UP);
    w.maintenance(1, true, None);
    for s in 1..130 {
        w.second(s, UP, UP);
    }
    assert_eq!(w.replaced.len(), 1);
    let at = w.replaced[0].1;
    for s in 130..(at + 130) {
        w.second(s, (false, false, 131), UP);
    }
    assert_eq!(
        w.pages_of(AlertClass::MaintenanceReplaceFailed),
        [NotificationStatus::Firing]
    );
    let failed = w
        .pages
        .iter()
        .find(|p| p.0 == AlertClass::MaintenanceReplaceFailed)
        .unwrap();
    assert!(
        failed.2.contains("not back up on both planes 2m"),
        "{}",
        failed.2
    );
    assert_eq!(w.replaced.len(), 1);
}

#[test]
fn dry_run_shows_the_decision_and_calls_nothing() {
    let mut w = World::new("dry-run");
    w.second(0, UP, UP);
    w.maintenance(1, true, None);
    for s in 1..200 {
        w.second(s, UP, UP);
    }
    assert!(w.replaced.is_empty());
    assert_eq!(
        w.core.maintenance().plan(A).unwrap().decision,
        Decision::WouldApply
    );
    assert!(w
        .plans
        .iter()
        .any(|(id, d, _)| *id == A && *d == Decision::WouldApply));
    assert!(w.pages_of(AlertClass::MaintenanceReplacing).is_empty());
}
