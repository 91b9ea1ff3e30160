use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;

/// Late replies as (sequence number, round-trip time).
type LateAnswers = Vec<(u16, Duration)>;

/// A scripted prober: each call pops the next answer; records calls.
#[derive(Clone, Default)]
struct FakeProber {
    script: Arc<Mutex<VecDeque<Echo>>>,
    probes: Arc<Mutex<Vec<u16>>>,
    reopens: Arc<Mutex<u32>>,
    late: Arc<Mutex<u32>>,
    /// What each call of `late_answers` returns, in turn.
    late_answers: Arc<Mutex<VecDeque<LateAnswers>>>,
    /// When each request went out and the timeout it was given.
    sends: Arc<Mutex<Vec<(Instant, Duration)>>>,
}

impl FakeProber {
    fn new(script: Vec<Echo>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into())),
            ..Self::default()
        }
    }
}

impl Prober for FakeProber {
    async fn probe(&mut self, seq: u16, timeout: Duration) -> Echo {
        self.probes.lock().unwrap().push(seq);
        self.sends.lock().unwrap().push((Instant::now(), timeout));
        let next = self.script.lock().unwrap().pop_front();
        match next {
            Some(Echo::Timeout) | None => {
                tokio::time::sleep(timeout).await;
                Echo::Timeout
            }
            Some(echo) => echo,
        }
    }
    async fn reopen(&mut self) -> Result<(), String> {
        *self.reopens.lock().unwrap() += 1;
        Ok(())
    }
    fn late_replies(&mut self) -> u32 {
        std::mem::take(&mut *self.late.lock().unwrap())
    }
    fn late_answers(&mut self) -> Vec<(u16, Duration)> {
        self.late_answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_default()
    }
}

fn settings() -> ProbeSettings {
    ProbeSettings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(800),
        ..ProbeSettings::default()
    }
}

fn reply(seq: u16) -> Echo {
    Echo::Reply {
        seq,
        rtt: Duration::from_millis(3),
    }
}

/// Runs the pinger against `prober` for `probes` outcomes and returns every observation.
async fn run(prober: FakeProber, probes: usize) -> Vec<Observation> {
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let (_route_tx, route) = route_channel(PingerRoute {
        target: TargetId(0),
        observations: tx,
    });
    let task = PingerTask {
        route,
        settings: settings(),
        splay: Duration::ZERO,
        cancel: cancel.clone(),
    };
    let handle = tokio::spawn(task.run(prober));
    let mut seen = Vec::new();
    let mut outcomes = 0;
    while outcomes < probes {
        let obs = rx.recv().await.expect("pinger alive");
        if matches!(obs, Observation::Probe { .. }) {
            outcomes += 1;
        }
        seen.push(obs);
    }
    cancel.cancel();
    handle.await.unwrap();
    seen
}

fn outcomes(seen: &[Observation]) -> Vec<(u16, &'static str)> {
    seen.iter()
        .filter_map(|o| match o {
            Observation::Probe { seq, outcome, .. } => Some((*seq, outcome.kind_label())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_repointed_pinger_goes_on_with_its_sequence_at_the_new_monitor() {
    let (old_tx, mut old_rx) = mpsc::channel(64);
    let (route_tx, route) = route_channel(PingerRoute {
        target: TargetId(3),
        observations: old_tx,
    });
    let cancel = CancellationToken::new();
    let task = PingerTask {
        route,
        settings: settings(),
        splay: Duration::ZERO,
        cancel: cancel.clone(),
    };
    let handle = tokio::spawn(task.run(FakeProber::new(vec![reply(0), reply(1), reply(2)])));
    let mut first = old_rx.recv().await.unwrap();
    if matches!(first, Observation::TimeoutInForce { .. }) {
        first = old_rx.recv().await.unwrap();
    }
    assert!(matches!(
        first,
        Observation::Probe {
            target: TargetId(3),
            seq: 0,
            ..
        }
    ));
    // A reload: the target is now the config's eighth, and a new monitor listens.
    let (new_tx, mut new_rx) = mpsc::channel(64);
    route_tx.replace(PingerRoute {
        target: TargetId(7),
        observations: new_tx,
    });
    drop(old_rx);
    let mut next = new_rx.recv().await.unwrap();
    // The first reply sets the learning timeout's first estimate: told before the probe.
    if matches!(next, Observation::TimeoutInForce { .. }) {
        next = new_rx.recv().await.unwrap();
    }
    assert!(
        matches!(
            next,
            Observation::Probe {
                target: TargetId(7),
                seq: 1,
                ..
            }
        ),
        "{next:?}"
    );
    cancel.cancel();
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_is_reported_as_a_timeout() {
    let prober = FakeProber::new(vec![reply(0), Echo::Timeout, reply(2)]);
    let seen = run(prober, 3).await;
    assert_eq!(
        outcomes(&seen),
        vec![(0, "reply"), (1, "timeout"), (2, "reply")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_reply_is_not_counted_for_a_later_sequence() {
    // Request 1 times out; its reply then turns up while request 2 waits.
    let prober = FakeProber::new(vec![reply(0), Echo::Timeout, reply(1), reply(3)]);
    let seen = run(prober, 4).await;
    assert_eq!(
        outcomes(&seen),
        vec![(0, "reply"), (1, "timeout"), (2, "timeout"), (3, "reply")]
    );
    assert!(seen.contains(&Observation::StrayReply {
        target: TargetId(0)
    }));
}

#[tokio::test(start_paused = true)]
async fn late_replies_the_socket_saw_are_reported_as_strays() {
    let prober = FakeProber::new(vec![Echo::Timeout, reply(1)]);
    *prober.late.lock().unwrap() = 1;
    let seen = run(prober, 2).await;
    let strays = seen
        .iter()
        .filter(|o| matches!(o, Observation::StrayReply { .. }))
        .count();
    assert_eq!(strays, 1);
    assert_eq!(outcomes(&seen), vec![(0, "timeout"), (1, "reply")]);
}

#[tokio::test(start_paused = true)]
async fn icmp_errors_are_told_apart_from_timeouts() {
    let from: IpAddr = "10.1.1.2".parse().unwrap();
    let kind = IcmpErrorKind::Unreachable { code: 1 };
    let prober = FakeProber::new(vec![Echo::IcmpError { seq: 0, from, kind }]);
    let seen = run(prober, 1).await;
    assert_eq!(outcomes(&seen), vec![(0, "unreachable")]);
}

#[tokio::test(start_paused = true)]
async fn socket_reopens_after_consecutive_timeouts_then_backs_off() {
    let prober = FakeProber::new(vec![]);
    let reopens = prober.reopens.clone();
    let seen = run(prober.clone(), REOPEN_AFTER as usize + 1).await;
    assert_eq!(
        *reopens.lock().unwrap(),
        1,
        "one re-open after {REOPEN_AFTER} timeouts"
    );
    assert!(seen.contains(&Observation::SocketReopened {
        target: TargetId(0),
        ok: true
    }));

    // The next re-open in the same outage waits twice as long.
    let prober = FakeProber::new(vec![]);
    let reopens = prober.reopens.clone();
    run(prober, (REOPEN_AFTER * 3 - 1) as usize).await;
    assert_eq!(*reopens.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reply_resets_the_timeout_streak() {
    let mut script = vec![Echo::Timeout; REOPEN_AFTER as usize - 1];
    script.push(reply(REOPEN_AFTER as u16 - 1));
    script.extend(vec![Echo::Timeout; REOPEN_AFTER as usize - 1]);
    script.push(reply(2 * REOPEN_AFTER as u16 - 1));
    let prober = FakeProber::new(script);
    let reopens = prober.reopens.clone();
    run(prober, 2 * REOPEN_AFTER as usize).await;
    assert_eq!(*reopens.lock().unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn probes_follow_the_interval_with_increasing_sequence_numbers() {
    let prober = FakeProber::new(vec![reply(0), reply(1), reply(2)]);
    let calls = prober.probes.clone();
    let start = Instant::now();
    let seen = run(prober, 3).await;
    assert_eq!(*calls.lock().unwrap(), vec![0, 1, 2]);
    let times: Vec<Duration> = seen
        .iter()
        .filter_map(|o| match o {
            Observation::Probe { at, .. } => Some(*at - start),
            _ => None,
        })
        .collect();
    assert_eq!(
        times,
        vec![
            Duration::ZERO,
            Duration::from_secs(1),
            Duration::from_secs(2)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn timeouts_as_long_as_the_interval_keep_the_schedule() {
    let prober = FakeProber::new(vec![]);
    let task_settings = ProbeSettings {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        ..ProbeSettings::default()
    };
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let (_route_tx, route) = route_channel(PingerRoute {
        target: TargetId(0),
        observations: tx,
    });
    let task = PingerTask {
        route,
        settings: task_settings,
        splay: Duration::ZERO,
        cancel: cancel.clone(),
    };
    let handle = tokio::spawn(task.run(prober));
    let mut lost_at = Vec::new();
    while lost_at.len() < 3 {
        match rx.recv().await.unwrap() {
            Observation::Probe { at, .. } => lost_at.push(at - start),
            Observation::ScheduleSlip { .. } => panic!("no tick may be skipped"),
            _ => {}
        }
    }
    cancel.cancel();
    handle.await.unwrap();
    // Three losses known after 3 s, not 5: down_after 3 means about 3 intervals.
    assert_eq!(
        lost_at,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(3)
        ]
    );
}

/// Ten replies of 3 ms teach the adaptive timeout its floor of 100 ms.
fn ten_replies() -> Vec<Echo> {
    (0..10).map(reply).collect()
}

/// Send times relative to `start` in ms, and the timeouts given, from probe `from` on.
fn sends_from(prober: &FakeProber, start: Instant, from: usize) -> Vec<(u64, u64)> {
    prober.sends.lock().unwrap()[from..]
        .iter()
        .map(|(at, t)| ((*at - start).as_millis() as u64, t.as_millis() as u64))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_blackhole_is_confirmed_by_a_burst_at_the_adaptive_timeout() {
    let prober = FakeProber::new(ten_replies());
    let start = Instant::now();
    // 10 replies, the lost probe at 10 s, its 4 confirmations, and two intervals more.
    let seen = run(prober.clone(), 17).await;
    assert_eq!(
        sends_from(&prober, start, 8),
        [
            // Learning until the tenth reply: the first estimate (2 x 4 x 3 ms) is
            // under the floor.
            (8000, 100),
            (9000, 100),
            (10000, 100),
            (10100, 100),
            (10200, 100),
            (10300, 100),
            (10400, 100),
            (11000, 100),
            (12000, 100)
        ],
        "one probe per interval, a burst one adaptive timeout apart after the loss"
    );
    let lost_at: Vec<u64> = seen
        .iter()
        .filter_map(|o| match o {
            Observation::Probe {
                at,
                outcome: ProbeOutcome::Timeout { after },
                ..
            } => {
                assert_eq!(*after, Duration::from_millis(100));
                Some((*at - start).as_millis() as u64)
            }
            _ => None,
        })
        .collect();
    // down_after = 5 losses in a row known 0.5 s after the first lost send, not 5 s.
    assert_eq!(lost_at[..5], [10100, 10200, 10300, 10400, 10500]);
    use crate::messages::TimeoutMode::{Adaptive, Learning};
    let timeouts: Vec<(u64, _)> = seen
        .iter()
        .filter_map(|o| match o {
            Observation::TimeoutInForce { timeout: t, .. } => {
                Some((t.timeout.as_millis() as u64, t.mode))
            }
            _ => None,
        })
        .collect();
    // The configured timeout, the first estimate from the first reply, the learned one.
    assert_eq!(
        timeouts,
        [(800, Learning), (100, Learning), (100, Adaptive)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_fixed_timeout_without_fast_confirm_keeps_the_old_schedule() {
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let (_route_tx, route) = route_channel(PingerRoute {
        target: TargetId(0),
        observations: tx,
    });
    let prober = FakeProber::new(ten_replies());
    let start = Instant::now();
    let task = PingerTask {
        route,
        settings: ProbeSettings {
            adaptive_timeout: false,
            fast_confirm: false,
            ..settings()
        },
        splay: Duration::ZERO,
        cancel: cancel.clone(),
    };
    let handle = tokio::spawn(task.run(prober.clone()));
    let mut probes = 0;
    while probes < 13 {
        if let Observation::Probe { .. } = rx.recv().await.unwrap() {
            probes += 1;
        }
    }
    cancel.cancel();
    handle.await.unwrap();
    assert_eq!(
        sends_from(&prober, start, 9),
        [(9000, 800), (10000, 800), (11000, 800), (12000, 800)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_reply_after_the_adaptive_timeout_is_late_not_lost_and_ends_the_burst() {
    let prober = FakeProber::new(ten_replies());
    {
        let mut late = prober.late_answers.lock().unwrap();
        // Asked once after each probe: request 10 (sent at 10 s, given up at 10.1 s)
        // is answered after 150 ms, seen when its first confirmation gives up.
        late.extend(vec![Vec::new(); 11]);
        late.push_back(vec![(10, Duration::from_millis(150))]);
        // A reply after the configured 800 ms is a stray, as before.
        late.push_back(vec![(11, Duration::from_millis(900))]);
    }
    let start = Instant::now();
    let seen = run(prober.clone(), 14).await;
    assert_eq!(
        sends_from(&prober, start, 10),
        [(10000, 100), (10100, 100), (11000, 600), (12000, 600)],
        "the late reply ended the burst (the next probe waits for the interval) and, the \
         highest of 11 RTTs, set the timeout to 4 × 150 ms"
    );
    let late: Vec<&Observation> = seen
        .iter()
        .filter(|o| matches!(o, Observation::LateReply { .. }))
        .collect();
    assert_eq!(late.len(), 1, "{late:?}");
    assert!(matches!(
        late[0],
        Observation::LateReply { seq: 10, rtt, .. } if *rtt == Duration::from_millis(150)
    ));
    let strays = seen
        .iter()
        .filter(|o| matches!(o, Observation::StrayReply { .. }))
        .count();
    assert_eq!(strays, 1);
    // The late reply came before the confirmation's outcome, in the order they happened.
    let late_index = seen
        .iter()
        .position(|o| matches!(o, Observation::LateReply { .. }));
    let confirmation_index = seen
        .iter()
        .position(|o| matches!(o, Observation::Probe { seq: 11, .. }));
    assert!(late_index < confirmation_index);
}

#[test]
fn splay_spreads_targets_over_the_interval() {
    let i = Duration::from_secs(1);
    assert_eq!(splay(0, 4, i), Duration::ZERO);
    assert_eq!(splay(1, 4, i), Duration::from_millis(250));
    assert_eq!(splay(3, 4, i), Duration::from_millis(750));
    // A thousand targets share a hundred slots, ten to a slot.
    let offsets: Vec<Duration> = (0..1000).map(|k| splay(k, 1000, i)).collect();
    assert_eq!(offsets[9], Duration::ZERO);
    assert_eq!(offsets[10], Duration::from_millis(10));
    assert_eq!(offsets[999], Duration::from_millis(990));
    let mut distinct = offsets.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 100);
}

/// A prober whose probe holds a buffer across its await, as a socket's future can.
struct BulkyProber;

impl Prober for BulkyProber {
    async fn probe(&mut self, seq: u16, timeout: Duration) -> Echo {
        let buffer = [seq as u8; 2048];
        tokio::time::sleep(timeout).await;
        Echo::Reply {
            seq: u16::from(buffer[usize::from(seq) % 2048]),
            rtt: timeout,
        }
    }
    async fn reopen(&mut self) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn a_pinger_task_stays_small_whatever_its_probe_holds() {
    // Every target has one of these futures for the daemon's life: at 10,000 targets each
    // of its bytes is 10 kB. The probe's and the send's futures live only while a request
    // is out, so they are boxed rather than kept inline (the send's was 728 bytes).
    let (observations, _rx) = mpsc::channel(1);
    let (_route_tx, route) = route_channel(PingerRoute {
        target: TargetId(0),
        observations,
    });
    let task = PingerTask {
        route,
        settings: settings(),
        splay: Duration::ZERO,
        cancel: CancellationToken::new(),
    };
    let size = std::mem::size_of_val(&task.run(BulkyProber));
    assert!(size <= 720, "a pinger's future is {size} bytes");
}

/// A route and the pool's handle on it.
fn route_channel(route: PingerRoute) -> (RouteCell, RouteCell) {
    let cell = RouteCell::new(route);
    (cell.clone(), cell)
}
