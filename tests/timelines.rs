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
//! target has not been judged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use tunnelkeeper::alert::outbox::Delivery;
use tunnelkeeper::alert::router::{Alerting, SinkHandle};
use tunnelkeeper::alert::state_file::{Loaded, StateStore};
use tunnelkeeper::alert::state_writer::StateWriter;
use tunnelkeeper::config::Config;
use tunnelkeeper::daemon::monitor::{Carry, Hooks, Monitor, MonitorSetup};
use tunnelkeeper::daemon::systemd::Notifier;
use tunnelkeeper::liveness::Heartbeat;
use tunnelkeeper::messages::{
    ApiConnectionState, ApiTunnelStatus, AwsErrorKind, ConnectionReading, DeliveryReport,
    Observation, PollResult, ProbeOutcome, Telemetry, TunnelReading,
};
use tunnelkeeper::metrics::{Metrics, ReloadStatus};
use tunnelkeeper::snapshot::{Meta, Snapshot};
use tunnelkeeper::types::{Clock, OutsideIp, TargetId, Timestamp, VpnConnectionId};

const POLL: Duration = Duration::from_secs(10);
const STEP: Duration = Duration::from_millis(100);
const TUNNELS: [&str; 2] = ["dc-a", "dc-b"];
const OUTSIDE: [&str; 2] = ["52.2.144.13", "52.2.144.14"];
/// How long the daemon takes to see a loss: `down_after` (3) lost probes at 1 s, and a step.
const DETECTION_LAG: Duration = Duration::from_millis(3100);
/// How long the daemon takes to see a recovery: `up_after` (2) replies at 1 s, and a step.
const RECOVERY_LAG: Duration = Duration::from_millis(3100);

fn config_text(for_: &str, state_dir: &str) -> String {
    format!(
        r#"
state_dir = "{state_dir}"
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
enum Event {
    /// The pinned target of tunnel `0` or `1` stops (false) or starts (true) answering.
    Pings(usize, bool),
    /// EC2's telemetry says the tunnel is UP (true) or DOWN (false) from the next poll on.
    Aws(usize, bool),
    /// The shared target (a datacenter host behind whichever tunnel is active) stops
    /// (false) or starts (true) answering.
    Shared(bool),
    /// EC2 calls fail (true) or work again (false).
    Ec2Fails(bool),
    /// The daemon restarts (state file kept).
    Restart,
    /// SIGHUP with the same config.
    Reload,
}

/// One page a sink received.
#[derive(Clone, Debug, PartialEq)]
struct Page {
    at: Duration,
    alert: String,
    status: &'static str,
    repeat: bool,
}

impl Page {
    fn line(&self) -> String {
        format!("{} {}", self.status, self.alert)
    }
}

/// The scripted truth of the world.
#[derive(Clone, Copy, Debug, PartialEq)]
struct World {
    pings: [bool; 2],
    aws_up: [bool; 2],
    /// What EC2 said at its last answer: AWS's view reaches anyone only through a poll.
    aws_said_up: [bool; 2],
    /// Whether the shared host itself answers.
    shared: bool,
    ec2_fails: bool,
}

impl World {
    /// Whether the tunnel is down as far as anyone could know.
    fn tunnel_down(&self, t: usize) -> bool {
        !self.pings[t] || !self.aws_said_up[t]
    }

    /// Whether the shared host answers: it rides whichever tunnel carries traffic.
    fn shared_answers(&self) -> bool {
        self.shared && (self.pings[0] || self.pings[1])
    }

    /// Whether the outage an alert is about is on.
    fn outage(&self, alert: &str) -> bool {
        let both = self.tunnel_down(0) && self.tunnel_down(1);
        match tunnel_of(alert) {
            Some(t) => self.tunnel_down(t),
            None if alert.starts_with("VpnUnreachable") => both || !self.shared_answers(),
            None => both,
        }
    }
}

struct Running {
    tx: mpsc::Sender<Observation>,
    cancel: CancellationToken,
    monitor: JoinHandle<(Carry, Alerting)>,
    deliveries: mpsc::Receiver<Delivery>,
}

struct Harness {
    config: Arc<Config>,
    writer: StateWriter,
    clock: Clock,
    started: Timestamp,
    snapshots: watch::Sender<Arc<Snapshot>>,
    snapshot_rx: watch::Receiver<Arc<Snapshot>>,
    running: Option<Running>,
    world: World,
    elapsed: Duration,
    pages: Vec<Page>,
    /// Per step: the tunnel and connection verdict labels after the step.
    seen: Vec<(Duration, [&'static str; 2], &'static str, &'static str)>,
    /// The world after every change, with its time.
    truth: Vec<(Duration, World)>,
    dir: std::path::PathBuf,
    seq: u16,
}

impl Harness {
    fn new(for_: &str) -> Harness {
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
        let writer = StateWriter::start(StateStore::open(&dir).unwrap());
        let clock = Clock::start();
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
        let mut h = Harness {
            config: Arc::new(config),
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
    fn start(&mut self, previous: Option<(Carry, Alerting)>) {
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
        let (carry, alerting) = match previous {
            None => {
                let saved = match self.writer.store().load(now) {
                    Loaded::State(s) => Some(s),
                    Loaded::Fresh => None,
                    Loaded::Corrupt { error, .. } => panic!("corrupt state: {error}"),
                };
                let a = Alerting::new(
                    config.clone(),
                    saved,
                    self.writer.clone(),
                    sinks,
                    metrics.clone(),
                    now,
                );
                (None, a)
            }
            Some((carry, old)) => {
                let a = Alerting::resume(
                    old,
                    config.clone(),
                    self.writer.clone(),
                    sinks,
                    metrics.clone(),
                    now,
                );
                (Some(carry), a)
            }
        };
        let (first_round, _) = watch::channel(false);
        let monitor = Monitor::new(MonitorSetup {
            config: config.clone(),
            metrics,
            alerting,
            clock: self.clock,
            meta: meta(self.started),
            snapshots: self.snapshots.clone(),
            carry,
            hooks: Hooks {
                notifier: Arc::new(Notifier::from_env()),
                pingers: Heartbeat::new(),
                alert_loop: Heartbeat::new(),
                first_round,
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

    async fn stop(&mut self) -> (Carry, Alerting) {
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

    async fn apply(&mut self, event: Event) {
        match event {
            Event::Pings(t, ok) => self.world.pings[t] = ok,
            Event::Aws(t, up) => self.world.aws_up[t] = up,
            Event::Shared(ok) => self.world.shared = ok,
            Event::Ec2Fails(fails) => self.world.ec2_fails = fails,
            Event::Restart => {
                let _ = self.stop().await;
                self.start(None);
            }
            Event::Reload => {
                let previous = self.stop().await;
                self.start(Some(previous));
            }
        }
        self.note_world();
    }

    fn note_world(&mut self) {
        if self.truth.last().map(|(_, w)| *w) != Some(self.world) {
            self.truth.push((self.elapsed, self.world));
        }
    }

    fn ec2_answer(&self) -> PollResult {
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
    async fn run_for(&mut self, d: Duration) {
        let steps = d.as_millis() / STEP.as_millis();
        for _ in 0..steps {
            self.step().await;
        }
    }

    async fn step(&mut self) {
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

    fn record(&mut self, d: &Delivery) {
        let n = &d.notification;
        self.pages.push(Page {
            at: self.elapsed,
            alert: n.key.to_string(),
            status: match n.status {
                tunnelkeeper::alert::engine::NotificationStatus::Firing => "FIRING",
                tunnelkeeper::alert::engine::NotificationStatus::Resolved => "RESOLVED",
            },
            repeat: n.repeat,
        });
    }

    async fn play(&mut self, rows: &[(u64, Event)]) {
        for (at, event) in rows {
            let at = Duration::from_secs(*at);
            if at > self.elapsed {
                self.run_for(at - self.elapsed).await;
            }
            self.apply(*event).await;
        }
    }

    fn lines(&self) -> Vec<String> {
        self.pages.iter().map(Page::line).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn meta(started_at: Timestamp) -> Meta {
    Meta {
        started_at,
        icmp_socket: "raw",
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Plays a timeline from a healthy start (60 s to settle) and returns the page lines.
async fn pages_of(for_: &str, rows: &[(u64, Event)], then: u64) -> Vec<String> {
    let mut h = Harness::new(for_);
    h.run_for(Duration::from_secs(60)).await;
    let rows: Vec<(u64, Event)> = rows.iter().map(|(t, e)| (t + 60, *e)).collect();
    h.play(&rows).await;
    h.run_for(Duration::from_secs(then)).await;
    h.lines()
}

use Event::*;

const DOWN_A: &str = "TunnelDown/dc/dc-a";

#[tokio::test(start_paused = true)]
async fn data_first_then_control_is_one_outage_one_page() {
    let pages = pages_of(
        "0s",
        &[
            (0, Pings(0, false)),
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
async fn a_restart_mid_outage_whose_first_ec2_call_fails_holds_the_alert() {
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
        vec![format!("FIRING {DOWN_A}"), format!("RESOLVED {DOWN_A}")]
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
async fn a_shared_target_only_outage_is_the_vpn_unreachable_and_nothing_else() {
    let pages = pages_of("0s", &[(0, Shared(false)), (30, Shared(true))], 30).await;
    assert_eq!(
        pages,
        vec![
            "FIRING VpnUnreachable".to_string(),
            "RESOLVED VpnUnreachable".to_string()
        ]
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
        1 => Just(Restart),
        1 => Just(Reload),
    ]
}

fn timeline() -> impl Strategy<Value = (bool, Vec<(u64, Event)>)> {
    (
        any::<bool>(),
        prop::collection::vec((1..40u64, event()), 1..12),
    )
}

/// The tunnel an alert is about, if it is about one.
fn tunnel_of(alert: &str) -> Option<usize> {
    TUNNELS
        .iter()
        .position(|t| alert.ends_with(&format!("/{t}")))
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
                    "{} resolved at {:?} while its outage was on ({w:?}): {:?}",
                    p.alert, p.at, h.pages
                );
            }
            other => unreachable!("{other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn random_timelines_keep_the_pager_honest((long_for, rows) in timeline()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let for_ = if long_for { Duration::from_secs(5) } else { Duration::ZERO };
            let mut h = Harness::new(if long_for { "5s" } else { "0s" });
            h.run_for(Duration::from_secs(60)).await;
            for (gap, e) in &rows {
                h.run_for(Duration::from_secs(*gap)).await;
                h.apply(*e).await;
            }
            // Everything heals, and the story ends.
            for e in [Pings(0, true), Pings(1, true), Aws(0, true), Aws(1, true), Shared(true), Ec2Fails(false)] {
                h.apply(e).await;
            }
            h.run_for(Duration::from_secs(90)).await;
            check_invariants(&h, for_, &h.truth);
            // Healed, nothing is left firing.
            let mut open: BTreeMap<&str, &str> = BTreeMap::new();
            for p in &h.pages {
                open.insert(&p.alert, p.status);
            }
            let left: Vec<_> = open.iter().filter(|(_, s)| **s == "FIRING").collect();
            assert!(left.is_empty(), "still firing after healing: {left:?} in {:?}", h.pages);
        });
    }
}
