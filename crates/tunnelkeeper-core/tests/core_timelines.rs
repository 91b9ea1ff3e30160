//! Random timelines through the core alone (no runtime): tunnels that lose their pings,
//! AWS saying a tunnel is down, EC2 failing, reloads that rename the tunnels mid-outage.
//! Whatever happens, every alert's notifications alternate firing and resolved, each
//! tunnel page follows a real outage, and a healthy world ends with nothing firing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use tunnelkeeper_core::alert::engine::NotificationStatus;
use tunnelkeeper_core::config::Config;
use tunnelkeeper_core::history::History;
use tunnelkeeper_core::jitter::Jitter;
use tunnelkeeper_core::machine::{Core, Event};
use tunnelkeeper_core::messages::{
    ApiConnectionState, ApiTunnelStatus, AwsErrorKind, ConnectionReading, DeliveryReport,
    Observation, PollResult, ProbeOutcome, Telemetry, TunnelReading,
};
use tunnelkeeper_core::types::{OutsideIp, TargetId, Timestamp, VpnConnectionId};

const OUTSIDE: [&str; 2] = ["52.2.144.13", "52.2.144.14"];

fn config_text(names: [&str; 2]) -> String {
    format!(
        r#"
[probe]
down_after = 3
[aws]
region = "us-east-1"
poll_interval = "10s"
[alerts]
for = "5s"
[[alerts.sink]]
kind = "log"
[[vpn]]
id = "vpn-0123456789abcdef0"
name = "dc"
  [[vpn.tunnel]]
  name = "{}"
  outside_ip = "{}"
  targets = ["172.16.1.10"]
  [[vpn.tunnel]]
  name = "{}"
  outside_ip = "{}"
  targets = ["172.16.2.10"]
"#,
        names[0], OUTSIDE[0], names[1], OUTSIDE[1]
    )
}

/// One change to the world, at a second of the timeline.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// Tunnel `t`'s pinned target answers or not.
    Pings(usize, bool),
    /// AWS says tunnel `t` is up or down.
    Aws(usize, bool),
    /// EC2 answers or fails.
    Ec2Fails(bool),
    /// The config is reloaded with the tunnels renamed (same outside IPs).
    Rename,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        4 => (0..2usize, any::<bool>()).prop_map(|(t, ok)| Change::Pings(t, ok)),
        2 => (0..2usize, any::<bool>()).prop_map(|(t, up)| Change::Aws(t, up)),
        1 => any::<bool>().prop_map(Change::Ec2Fails),
        1 => Just(Change::Rename),
    ]
}

#[derive(Clone, Copy, Debug)]
struct World {
    pings: [bool; 2],
    aws_up: [bool; 2],
    /// What EC2's last answer said (the daemon knows AWS's word only at a poll).
    aws_said_up: [bool; 2],
    ec2_fails: bool,
}

struct Run {
    core: Core,
    world: World,
    generation: usize,
    /// Every notification handed to a sink: (second, tunnel index or None, class, status, repeat).
    pages: Vec<(u64, Option<usize>, String, NotificationStatus, bool)>,
    /// The world at each second.
    seen: Vec<World>,
}

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(1_800_000_000 + s)
}

fn names(generation: usize) -> [String; 2] {
    if generation == 0 {
        ["dc-a".into(), "dc-b".into()]
    } else {
        [format!("dc-a-{generation}"), format!("dc-b-{generation}")]
    }
}

impl Run {
    fn new() -> Self {
        let config = Arc::new(Config::parse(&config_text(["dc-a", "dc-b"]), "t").unwrap());
        let history = History::shared(&config);
        Run {
            core: Core::new(config, None, history, Jitter::from_seed(11), t(0)),
            world: World {
                pings: [true; 2],
                aws_up: [true; 2],
                aws_said_up: [true; 2],
                ec2_fails: false,
            },
            generation: 0,
            pages: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn apply(&mut self, change: Change, s: u64) {
        match change {
            Change::Pings(i, ok) => self.world.pings[i] = ok,
            Change::Aws(i, up) => self.world.aws_up[i] = up,
            Change::Ec2Fails(fails) => self.world.ec2_fails = fails,
            Change::Rename => {
                self.generation += 1;
                let n = names(self.generation);
                let text = config_text([&n[0], &n[1]]);
                let config = Arc::new(Config::parse(&text, "t").unwrap());
                let core = std::mem::replace(&mut self.core, Run::new().core);
                self.core = core.reload(config, t(s));
            }
        }
    }

    fn ec2(&self) -> PollResult {
        if self.world.ec2_fails {
            return PollResult::Failed {
                kind: AwsErrorKind::Throttled,
                message: "RequestLimitExceeded".into(),
            };
        }
        let tunnels = (0..2)
            .map(|i| TunnelReading {
                outside_ip: Some(OutsideIp(OUTSIDE[i].parse().unwrap())),
                telemetry: Some(Telemetry {
                    status: if self.world.aws_up[i] {
                        ApiTunnelStatus::Up
                    } else {
                        ApiTunnelStatus::Down
                    },
                    status_message: None,
                    last_status_change: None,
                    accepted_route_count: Some(1),
                }),
                options: None,
            })
            .collect();
        PollResult::Answer(vec![ConnectionReading {
            connection: 0,
            id: VpnConnectionId::new("vpn-0123456789abcdef0"),
            state: ApiConnectionState::Available,
            static_routes_only: false,
            tunnels,
            listed_outside_ips: OUTSIDE.iter().map(|s| s.to_string()).collect(),
        }])
    }

    fn second(&mut self, s: u64) {
        for i in 0..2 {
            let outcome = if self.world.pings[i] {
                ProbeOutcome::Reply {
                    rtt: Duration::from_millis(20),
                }
            } else {
                ProbeOutcome::Timeout {
                    after: Duration::from_secs(1),
                }
            };
            self.core.handle_observation(Observation::Probe {
                target: TargetId(i),
                seq: s as u16,
                at: t(s),
                outcome,
                send_delay: Duration::ZERO,
            });
        }
        if s.is_multiple_of(10) {
            if !self.world.ec2_fails {
                self.world.aws_said_up = self.world.aws_up;
            }
            let result = self.ec2();
            self.core
                .handle_observation(Observation::Ec2 { at: t(s), result });
        }
        self.core.handle_timeout(t(s));
        self.seen.push(self.world);
        self.drain(s);
    }

    /// Takes every event; deliveries are recorded and acknowledged.
    fn drain(&mut self, s: u64) {
        while let Some(event) = self.core.poll_event() {
            let Event::Deliver(d) = event else { continue };
            let n = &d.notification;
            let tunnel = n
                .key
                .tunnel
                .as_deref()
                .map(|name| usize::from(!name.starts_with("dc-a")));
            self.pages
                .push((s, tunnel, n.key.class.to_string(), n.status, n.repeat));
            self.core
                .handle_observation(Observation::Delivery(DeliveryReport {
                    id: d.id,
                    sink: d.sink,
                    result: Ok(()),
                }));
        }
    }
}

fn check(run: &Run) -> Result<(), TestCaseError> {
    // Per alert (class and tunnel, whatever the tunnel is called now): firing, resolved,
    // firing... never two firings in a row nor a resolve of nothing.
    let mut firing: BTreeMap<(String, Option<usize>), bool> = BTreeMap::new();
    for (s, tunnel, class, status, repeat) in &run.pages {
        let was = firing.entry((class.clone(), *tunnel)).or_default();
        match status {
            NotificationStatus::Firing if *repeat => {
                prop_assert!(*was, "a repeat of nothing at {s}: {:?}", run.pages)
            }
            NotificationStatus::Firing => {
                prop_assert!(!*was, "{class} paged twice at {s}: {:?}", run.pages);
                *was = true;
            }
            NotificationStatus::Resolved => {
                prop_assert!(*was, "{class} resolved unpaged at {s}: {:?}", run.pages);
                *was = false;
            }
            NotificationStatus::Test => prop_assert!(false, "the engine made a test page"),
        }
        // A tunnel page follows a real outage of that tunnel within the last 20 s.
        if let (Some(i), "TunnelDown", NotificationStatus::Firing, false) =
            (tunnel, class.as_str(), status, repeat)
        {
            let from = s.saturating_sub(20) as usize;
            let real = run.seen[from..=*s as usize]
                .iter()
                .any(|w| !w.pings[*i] || !w.aws_said_up[*i]);
            prop_assert!(
                real,
                "TunnelDown {i} at {s} without an outage: {:?}",
                run.pages
            );
        }
    }
    Ok(())
}

/// A tunnel's RESOLVED follows a real recovery: its pings answered, and AWS's last answer
/// said up (or EC2 did not answer), at some second of the last 20.
fn check_recoveries(run: &Run) -> Result<(), TestCaseError> {
    for (s, tunnel, class, status, _) in &run.pages {
        if let (Some(i), "TunnelDown", NotificationStatus::Resolved) =
            (tunnel, class.as_str(), status)
        {
            let from = s.saturating_sub(20) as usize;
            let real = run.seen[from..=*s as usize]
                .iter()
                .any(|w| w.pings[*i] && (w.aws_said_up[*i] || w.ec2_fails));
            prop_assert!(
                real,
                "TunnelDown {i} resolved at {s} while down: {:?}",
                run.pages
            );
        }
    }
    Ok(())
}

fn check_quiet_end(run: &Run) -> Result<(), TestCaseError> {
    let mut firing: BTreeMap<(String, Option<usize>), bool> = BTreeMap::new();
    for (_, tunnel, class, status, repeat) in &run.pages {
        if !*repeat {
            firing.insert(
                (class.clone(), *tunnel),
                *status == NotificationStatus::Firing,
            );
        }
    }
    let still: Vec<_> = firing.iter().filter(|(_, f)| **f).collect();
    prop_assert!(
        still.is_empty(),
        "still firing in a healthy world: {still:?}; pages {:?}",
        run.pages
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_alert_fires_and_resolves_in_turn_and_a_healthy_world_ends_quiet(
        changes in prop::collection::vec((0..300u64, change()), 0..12)
    ) {
        let mut run = Run::new();
        let mut changes = changes;
        changes.sort_by_key(|(s, _)| *s);
        let mut next = changes.into_iter().peekable();
        for s in 0..300 {
            while let Some((_, change)) = next.next_if(|(at, _)| *at == s) {
                run.apply(change, s);
            }
            run.second(s);
        }
        // Then a healthy world, EC2 answering, for two minutes.
        run.world = World {
            pings: [true; 2],
            aws_up: [true; 2],
            aws_said_up: run.world.aws_said_up,
            ec2_fails: false,
        };
        for s in 300..420 {
            run.second(s);
        }
        check(&run)?;
        check_recoveries(&run)?;
        check_quiet_end(&run)?;
    }
}
