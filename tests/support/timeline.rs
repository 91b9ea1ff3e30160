//! The timeline harness: the real monitor, health model, alert engine and router on paused
//! time, driven by (time, event) rows; the harness plays the pingers and the EC2 poller,
//! acks every delivery, and restarts or reloads the monitor the way the daemon does.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tunnelkeeper::alert::outbox::Delivery;
use tunnelkeeper::alert::sinks::SinkHandle;
use tunnelkeeper::alert::state_file::{Loaded, StateStore};
use tunnelkeeper::alert::state_writer::StateWriter;
use tunnelkeeper::clock::Clock;
use tunnelkeeper::config::Config;
use tunnelkeeper::daemon::effects::Hooks;
use tunnelkeeper::daemon::monitor::{Monitor, MonitorSetup};
use tunnelkeeper::daemon::systemd::Notifier;
use tunnelkeeper::liveness::Heartbeat;
use tunnelkeeper::messages::{
    ApiConnectionState, ApiTunnelStatus, AwsErrorKind, ConnectionReading, DeliveryReport,
    Observation, PollResult, ProbeOutcome, Telemetry, TunnelReading,
};
use tunnelkeeper::metrics::{Metrics, ReloadStatus};
use tunnelkeeper::snapshot::{Meta, Snapshot};
use tunnelkeeper::types::{OutsideIp, TargetId, Timestamp, VpnConnectionId};
use tunnelkeeper_core::jitter::Jitter;
use tunnelkeeper_core::machine::Core;

pub const POLL: Duration = Duration::from_secs(10);
pub const STEP: Duration = Duration::from_millis(100);
pub const TUNNELS: [&str; 2] = ["dc-a", "dc-b"];
pub const OUTSIDE: [&str; 2] = ["52.2.144.13", "52.2.144.14"];
/// How long the daemon takes to see a loss: `down_after` (3) lost probes at 1 s, and a step.
pub const DETECTION_LAG: Duration = Duration::from_millis(3100);
/// How long the daemon takes to see a recovery: `up_after` (2) replies at 1 s, and a step.
pub const RECOVERY_LAG: Duration = Duration::from_millis(3100);

pub fn config_text(for_: &str, state_dir: &str) -> String {
    format!(
        r#"
state_dir = "{state_dir}"
# The harness plays the pingers at one result per second (no confirmation bursts): it
# judges with the down_after its lags are worked out for.
[probe]
down_after = 3
[aws]
region = "us-east-1"
poll_interval = "10s"
[alerts]
for = "{for_}"
[[alerts.sink]]
kind = "log"
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
[[target]]
name = "dc-db"
address = "10.20.0.5"
"#
    )
}

/// What happens at a row of a timeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// The pinned target of tunnel `0` or `1` stops (false) or starts (true) answering.
    Pings(usize, bool),
    /// EC2's telemetry says the tunnel is UP (true) or DOWN (false) from the next poll on.
    Aws(usize, bool),
    /// The shared target (a datacenter host behind whichever tunnel is active) stops
    /// (false) or starts (true) answering.
    Shared(bool),
    /// EC2 calls fail (true) or work again (false).
    Ec2Fails(bool),
    /// The datacenter's route to the shared host moves to tunnel `0` or `1` (a failover:
    /// the virtual private gateway sends that traffic over one tunnel at a time).
    RouteTo(usize),
    /// The daemon restarts (state file kept).
    Restart,
    /// SIGHUP with the same config.
    Reload,
}

/// One page a sink received.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub at: Duration,
    pub alert: String,
    pub status: &'static str,
    pub repeat: bool,
}

impl Page {
    pub fn line(&self) -> String {
        format!("{} {}", self.status, self.alert)
    }
}

/// The scripted truth of the world.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct World {
    pub pings: [bool; 2],
    pub aws_up: [bool; 2],
    /// What EC2 said at its last answer: AWS's view reaches anyone only through a poll.
    pub aws_said_up: [bool; 2],
    /// Whether the shared host itself answers.
    pub shared: bool,
    /// The tunnel the shared host's traffic takes.
    pub route: usize,
    ec2_fails: bool,
}

impl World {
    /// Whether the tunnel is down as far as anyone could know.
    pub fn tunnel_down(&self, t: usize) -> bool {
        !self.pings[t] || !self.aws_said_up[t]
    }

    /// Whether the shared host answers: it rides the tunnel its route takes.
    pub fn shared_answers(&self) -> bool {
        self.shared && self.pings[self.route]
    }

    /// Whether the outage an alert is about is on. `SharedLost` (no alert) is the shared
    /// host not answering, whatever the tunnels do: the failover grace counts from it.
    pub fn outage(&self, alert: &str) -> bool {
        let both = self.tunnel_down(0) && self.tunnel_down(1);
        let pinned_answer = self.pings[0] || self.pings[1];
        match tunnel_of(alert) {
            Some(t) => self.tunnel_down(t),
            // Unreachable only when no tunnel's pinned targets answer.
            None if alert.starts_with("VpnUnreachable") => !pinned_answer,
            None if alert.starts_with("SharedTargetsDown") => {
                !self.shared_answers() && pinned_answer
            }
            None if alert.starts_with("SharedLost") => !self.shared_answers(),
            None => both,
        }
    }
}

pub struct Running {
    pub tx: mpsc::Sender<Observation>,
    pub cancel: CancellationToken,
    pub monitor: JoinHandle<Core>,
    pub deliveries: mpsc::Receiver<Delivery>,
}

pub struct Harness {
    pub config: Arc<Config>,
    pub writer: StateWriter,
    pub clock: Clock,
    pub started: Timestamp,
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    pub snapshot_rx: watch::Receiver<Arc<Snapshot>>,
    /// The smoke-chart history, kept across generations as the daemon keeps it.
    pub history: tunnelkeeper::history::SharedHistory,
    pub running: Option<Running>,
    pub world: World,
    pub elapsed: Duration,
    pub pages: Vec<Page>,
    /// Per step: the tunnel and connection verdict labels after the step.
    pub seen: Vec<(Duration, [&'static str; 2], &'static str, &'static str)>,
    /// The world after every change, with its time.
    pub truth: Vec<(Duration, World)>,
    pub dir: std::path::PathBuf,
    pub seq: u16,
}

impl Harness {
    pub fn new(for_: &str) -> Harness {
        let dir = std::env::temp_dir().join(format!(
            "tk-timeline-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        let config = Config::parse(&config_text(for_, &dir.display().to_string()), "timeline")
            .expect("the timeline config is valid");
        let addresses: Vec<String> = config
            .targets
            .iter()
            .map(|t| t.address.to_string())
            .collect();
        assert_eq!(
            addresses,
            ["172.16.1.10", "172.16.2.10", "10.20.0.5"],
            "target ids the harness plays"
        );
        let clock = Clock::start();
        let writer = StateWriter::start(StateStore::open(&dir).unwrap(), clock);
        let started = clock.now();
        let placeholder = Snapshot::build(
            &config,
            &tunnelkeeper::health::HealthModel::new(&config),
            None,
            &vec![Default::default(); config.targets.len()],
            meta(started),
            started,
        );
        let (snapshots, snapshot_rx) = watch::channel(Arc::new(placeholder));
        let config = Arc::new(config);
        let history = tunnelkeeper::history::History::shared(&config);
        let mut h = Harness {
            history,
            config,
            writer,
            clock,
            started,
            snapshots,
            snapshot_rx,
            running: None,
            world: World {
                pings: [true; 2],
                aws_up: [true; 2],
                aws_said_up: [true; 2],
                shared: true,
                route: 0,
                ec2_fails: false,
            },
            truth: Vec::new(),
            elapsed: Duration::ZERO,
            pages: Vec::new(),
            seen: Vec::new(),
            dir,
            seq: 0,
        };
        h.truth.push((Duration::ZERO, h.world));
        h.start(None);
        h
    }

    /// Starts a generation: from disk (`previous` None) or from the one a reload ended.
    pub fn start(&mut self, previous: Option<Core>) {
        let config = self.config.clone();
        let metrics = Arc::new(Metrics::new(
            &config,
            "raw",
            0,
            ReloadStatus {
                successful: true,
                last_success: self.clock.now(),
            },
        ));
        let (deliveries_tx, deliveries) = mpsc::channel(1024);
        let sinks = vec![SinkHandle::Outbox(deliveries_tx)];
        let now = self.clock.now();
        let core = match previous {
            None => {
                let saved = match self.writer.store().load(now) {
                    Loaded::State(s) => Some(s),
                    Loaded::Fresh => None,
                    Loaded::Corrupt { error, .. } => panic!("corrupt state: {error}"),
                };
                Core::new(
                    config.clone(),
                    saved,
                    self.history.clone(),
                    Jitter::from_seed(1),
                    now,
                )
            }
            Some(core) => core.reload(config.clone(), now),
        };
        let (first_round, _) = watch::channel(false);
        let monitor = Monitor::new(MonitorSetup {
            core,
            metrics,
            clock: self.clock,
            meta: meta(self.started),
            snapshots: self.snapshots.clone(),
            hooks: Hooks {
                notifier: Arc::new(Notifier::from_env()),
                pingers: Heartbeat::new(),
                alert_loop: Heartbeat::new(),
                first_round,
                sinks,
                writer: self.writer.clone(),
                outages: Arc::new(tunnelkeeper::outage_log::OutageLog::in_memory(Vec::new())),
                replacer: None,
                tunnel_logs: None,
            },
        });
        let (tx, rx) = mpsc::channel(4096);
        let cancel = CancellationToken::new();
        let monitor = tokio::spawn(monitor.run(rx, cancel.clone()));
        self.running = Some(Running {
            tx,
            cancel,
            monitor,
            deliveries,
        });
    }

    pub async fn stop(&mut self) -> Core {
        let Running {
            tx,
            cancel,
            monitor,
            mut deliveries,
        } = self.running.take().expect("running");
        cancel.cancel();
        // Like the daemon's tasks, the harness lets go of its sender when the generation
        // ends; deliveries it took but had not acked yet are acked first.
        while let Ok(d) = deliveries.try_recv() {
            self.record(&d);
            let _ = tx
                .send(Observation::Delivery(DeliveryReport {
                    id: d.id,
                    sink: d.sink,
                    result: Ok(()),
                }))
                .await;
        }
        drop(tx);
        monitor.await.expect("the monitor ends cleanly")
    }

    pub async fn apply(&mut self, event: Event) {
        match event {
            Event::Pings(t, ok) => self.world.pings[t] = ok,
            Event::Aws(t, up) => self.world.aws_up[t] = up,
            Event::Shared(ok) => self.world.shared = ok,
            Event::Ec2Fails(fails) => self.world.ec2_fails = fails,
            Event::RouteTo(t) => self.world.route = t,
            Event::Restart => {
                let _ = self.stop().await;
                self.start(None);
                // A restarted daemon whose EC2 calls fail never hears AWS's last word: the
                // pings decide alone until EC2 answers again.
                if self.world.ec2_fails {
                    self.world.aws_said_up = [true; 2];
                }
            }
            Event::Reload => {
                let previous = self.stop().await;
                self.start(Some(previous));
            }
        }
        self.note_world();
    }

    /// Makes EC2 fail from the first poll on (no route to it, or no permission): it never
    /// answers unless an `Ec2Fails(false)` comes.
    pub fn ec2_never_answers(&mut self) {
        assert_eq!(self.elapsed, Duration::ZERO, "before the first poll");
        self.world.ec2_fails = true;
        self.truth = vec![(Duration::ZERO, self.world)];
    }

    pub fn note_world(&mut self) {
        if self.truth.last().map(|(_, w)| *w) != Some(self.world) {
            self.truth.push((self.elapsed, self.world));
        }
    }

    pub fn ec2_answer(&self) -> PollResult {
        if self.world.ec2_fails {
            return PollResult::Failed {
                kind: AwsErrorKind::Throttled,
                message: "RequestLimitExceeded".into(),
            };
        }
        let tunnels = (0..2)
            .map(|t| TunnelReading {
                outside_ip: Some(OutsideIp(OUTSIDE[t].parse().unwrap())),
                telemetry: Some(Telemetry {
                    status: if self.world.aws_up[t] {
                        ApiTunnelStatus::Up
                    } else {
                        ApiTunnelStatus::Down
                    },
                    status_message: (!self.world.aws_up[t]).then(|| "IPSEC IS DOWN".into()),
                    last_status_change: Some(Timestamp::from_secs(1_795_000_000)),
                    accepted_route_count: Some(if self.world.aws_up[t] { 1 } else { 0 }),
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

    /// Runs the world for `d`, one step at a time.
    pub async fn run_for(&mut self, d: Duration) {
        let steps = d.as_millis() / STEP.as_millis();
        for _ in 0..steps {
            self.step().await;
        }
    }

    pub async fn step(&mut self) {
        tokio::time::advance(STEP).await;
        self.elapsed += STEP;
        let ms = self.elapsed.as_millis();
        let tx = self.running.as_ref().unwrap().tx.clone();
        // Each target's probe finishes once a second; a lost one after its 1 s timeout.
        if ms.is_multiple_of(1000) {
            self.seq = self.seq.wrapping_add(1);
            for t in 0..3 {
                let answers = match t {
                    0 | 1 => self.world.pings[t],
                    _ => self.world.shared_answers(),
                };
                let outcome = if answers {
                    ProbeOutcome::Reply {
                        rtt: Duration::from_millis(12),
                    }
                } else {
                    ProbeOutcome::Timeout {
                        after: Duration::from_secs(1),
                    }
                };
                let _ = tx
                    .send(Observation::Probe {
                        target: TargetId(t),
                        seq: self.seq,
                        at: tokio::time::Instant::now(),
                        outcome,
                        send_delay: Duration::ZERO,
                    })
                    .await;
            }
        }
        if ms % POLL.as_millis() == 5000 {
            if !self.world.ec2_fails {
                self.world.aws_said_up = self.world.aws_up;
                self.note_world();
            }
            let _ = tx
                .send(Observation::Ec2 {
                    at: tokio::time::Instant::now(),
                    result: self.ec2_answer(),
                })
                .await;
        }
        // Let the monitor run, then take what the sink got and ack it.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let running = self.running.as_mut().unwrap();
        let mut taken = Vec::new();
        while let Ok(d) = running.deliveries.try_recv() {
            taken.push(d);
        }
        for d in taken {
            self.record(&d);
            let _ = tx
                .send(Observation::Delivery(DeliveryReport {
                    id: d.id,
                    sink: d.sink,
                    result: Ok(()),
                }))
                .await;
        }
        let snap = self.snapshot_rx.borrow().clone();
        let c = &snap.connections[0];
        self.seen.push((
            self.elapsed,
            [c.tunnels[0].state.label(), c.tunnels[1].state.label()],
            c.state.label(),
            snap.vpn.token(),
        ));
        if snap.vpn.token() == "OK" {
            for t in snap.connections.iter().flat_map(|c| &c.tunnels) {
                for target in &t.targets {
                    assert_ne!(
                        target.state.label(),
                        "unknown",
                        "/health said OK at {:?} while {} was not judged",
                        self.elapsed,
                        target.name
                    );
                }
            }
        }
    }

    pub fn record(&mut self, d: &Delivery) {
        let n = &d.notification;
        self.pages.push(Page {
            at: self.elapsed,
            alert: n.key.to_string(),
            status: match n.status {
                tunnelkeeper::alert::engine::NotificationStatus::Firing => "FIRING",
                tunnelkeeper::alert::engine::NotificationStatus::Resolved => "RESOLVED",
                tunnelkeeper::alert::engine::NotificationStatus::Test => "TEST",
            },
            repeat: n.repeat,
        });
    }

    pub async fn play(&mut self, rows: &[(u64, Event)]) {
        for (at, event) in rows {
            let at = Duration::from_secs(*at);
            if at > self.elapsed {
                self.run_for(at - self.elapsed).await;
            }
            self.apply(*event).await;
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.pages.iter().map(Page::line).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn meta(started_at: Timestamp) -> Meta {
    Meta {
        started_at,
        icmp_socket: "raw",
    }
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Plays a timeline from a healthy start (60 s to settle) and returns the page lines.
pub async fn pages_of(for_: &str, rows: &[(u64, Event)], then: u64) -> Vec<String> {
    let mut h = Harness::new(for_);
    h.run_for(Duration::from_secs(60)).await;
    let rows: Vec<(u64, Event)> = rows.iter().map(|(t, e)| (t + 60, *e)).collect();
    h.play(&rows).await;
    h.run_for(Duration::from_secs(then)).await;
    h.lines()
}

/// The tunnel an alert is about, if it is about one.
pub fn tunnel_of(alert: &str) -> Option<usize> {
    TUNNELS
        .iter()
        .position(|t| alert.ends_with(&format!("/{t}")))
}
