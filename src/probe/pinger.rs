//! The pinger task: one per target, sending echo requests on a splayed schedule and
//! reporting each outcome to the monitor. The ICMP socket sits behind the [`Prober`] seam
//! so that tests can drive the loop with a fake.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::config::ProbeSettings;
use crate::messages::{IcmpErrorKind, Observation, ProbeOutcome, ServiceAnswer, TimeoutInForce};
use crate::probe::confirm::{worth_reporting, AdaptiveTimeout, Confirmer, NextSend};
use crate::types::TargetId;

/// What the socket layer reports for one echo request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Echo {
    /// An echo reply carrying sequence number `seq`.
    Reply {
        /// The sequence number in the reply.
        seq: u16,
        /// Round-trip time.
        rtt: Duration,
    },
    /// An ICMP error quoting the request with sequence number `seq`.
    IcmpError {
        /// The sequence number quoted in the error.
        seq: u16,
        /// The router that sent it.
        from: IpAddr,
        /// What kind of error.
        kind: IcmpErrorKind,
    },
    /// Nothing came back in time.
    Timeout,
    /// The request could not be sent.
    SendFailed(String),
}

/// Sends echo requests to one target; the seam between the pinger loop and the socket.
pub trait Prober: Send + 'static {
    /// Sends echo request `seq` and waits at most `timeout` for what comes back.
    fn probe(&mut self, seq: u16, timeout: Duration) -> impl Future<Output = Echo> + Send;

    /// Moves this target to a fresh socket (a new ICMP identifier), so that a flow wedged
    /// in a stateful firewall or NAT on the way is left behind.
    fn reopen(&mut self) -> impl Future<Output = Result<(), String>> + Send;

    /// Replies that came for requests already given up as timed out, since last asked.
    fn late_replies(&mut self) -> u32 {
        0
    }

    /// Replies to requests given up as timed out, since last asked: their sequence numbers
    /// and round-trip times. The pinger counts those within the configured timeout as
    /// answered (an adaptive timeout gave up on them early) and the rest as strays.
    fn late_answers(&mut self) -> Vec<(u16, Duration)> {
        Vec::new()
    }

    /// What the last probe found of a TCP service, if it reached the host (ICMP probers
    /// have none).
    fn take_service_answer(&mut self) -> Option<ServiceAnswer> {
        None
    }
}

/// Timeouts in a row before the first socket re-open; each further re-open in the same
/// streak waits twice as long, up to [`REOPEN_MAX`], so a long outage does not churn sockets.
pub const REOPEN_AFTER: u32 = 5;
/// The longest streak of timeouts between two re-opens.
pub const REOPEN_MAX: u32 = 320;

/// Where a pinger's results go: its target's id in the running config and the running
/// monitor's channel. A reload re-points a pinger whose target did not change instead of
/// restarting it, so its schedule, sequence numbers and socket go on.
#[derive(Clone, Debug)]
pub struct PingerRoute {
    pub target: TargetId,
    pub observations: mpsc::Sender<Observation>,
}

/// Everything a pinger task needs besides its prober.
pub struct PingerTask {
    pub route: watch::Receiver<PingerRoute>,
    pub settings: ProbeSettings,
    /// Delay before the first probe, so that targets spread over the interval.
    pub splay: Duration,
    pub cancel: CancellationToken,
}

/// Sends start on multiples of this, so that with many targets the runtime wakes once per
/// slot for several sends rather than every millisecond for one or two: most of the CPU a
/// thousand targets cost was the workers parking and waking (see BENCHMARKS.md).
pub const SEND_SLOT: Duration = Duration::from_millis(10);

/// Returns the start offset of target `index` of `count`, spreading them over `interval`
/// in [`SEND_SLOT`] steps.
pub fn splay(index: usize, count: usize, interval: Duration) -> Duration {
    if count == 0 {
        return Duration::ZERO;
    }
    let nanos = interval.as_nanos() * index as u128 / count as u128;
    let slot = SEND_SLOT.as_nanos();
    Duration::from_nanos((nanos / slot * slot) as u64)
}

impl PingerTask {
    /// Runs until cancelled or until the monitor is gone.
    pub async fn run<P: Prober>(self, mut prober: P) {
        let PingerTask {
            route,
            settings,
            splay,
            cancel,
        } = self;
        let mut seq: u16 = 0;
        // `next` is the interval's schedule; `send_at` is `next` or a confirmation's time.
        let mut next = Instant::now() + splay;
        let mut send_at = next;
        let mut timeouts_in_a_row: u32 = 0;
        let mut reopen_at = REOPEN_AFTER;
        let mut adaptive = AdaptiveTimeout::new(&settings);
        let mut confirmer = Confirmer::new(&settings);
        let mut reported: Option<TimeoutInForce> = None;

        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(send_at) => {}
            }
            let sent = Instant::now();
            let send_delay = sent.saturating_duration_since(send_at);
            let in_force = adaptive.in_force();
            let echo = tokio::select! {
                _ = cancel.cancelled() => return,
                echo = prober.probe(seq, in_force.timeout) => echo,
            };
            let target = route.borrow().target;
            let mut messages = Vec::with_capacity(2);
            if worth_reporting(reported, in_force) {
                messages.push(Observation::TimeoutInForce {
                    target,
                    timeout: in_force,
                });
                reported = Some(in_force);
            }
            for _ in 0..prober.late_replies() {
                debug!(target_id = target.0, "late reply to a timed-out request");
                messages.push(Observation::StrayReply { target });
            }
            let answered_late = take_late_answers(
                prober.late_answers(),
                &settings,
                &mut adaptive,
                target,
                &mut messages,
            );
            let outcome = outcome_of(echo, seq, in_force.timeout, target, &mut messages);
            trace!(target_id = target.0, seq, %outcome, "probe done");
            let reply_rtt = match outcome {
                ProbeOutcome::Reply { rtt } => Some(rtt),
                ProbeOutcome::Timeout { .. }
                | ProbeOutcome::IcmpError { .. }
                | ProbeOutcome::SendFailed { .. } => None,
            };

            if matches!(outcome, ProbeOutcome::Timeout { .. }) {
                timeouts_in_a_row += 1;
            } else {
                timeouts_in_a_row = 0;
                reopen_at = REOPEN_AFTER;
            }
            // Before the probe's outcome, so that the service is current when it is judged.
            if let Some(answer) = prober.take_service_answer() {
                messages.push(Observation::TcpService {
                    target,
                    at: Instant::now(),
                    answer,
                });
            }
            messages.push(Observation::Probe {
                target,
                seq,
                at: Instant::now(),
                outcome,
                send_delay,
            });
            if timeouts_in_a_row >= reopen_at {
                let result = prober.reopen().await;
                if let Err(error) = &result {
                    warn!(target_id = target.0, %error, "could not open a fresh ICMP socket");
                }
                messages.push(Observation::SocketReopened {
                    target,
                    ok: result.is_ok(),
                });
                timeouts_in_a_row = 0;
                reopen_at = (reopen_at * 2).min(REOPEN_MAX);
            }

            if let Some(rtt) = reply_rtt {
                adaptive.observe(rtt);
            }

            seq = seq.wrapping_add(1);
            if !confirmer.confirming() {
                next += settings.interval;
                // A probe that ran its full timeout ends about when the next one is due
                // (the timeout may equal the interval): that one goes out at once. Only a
                // whole interval of lag skips sends, so the schedule never runs to catch up.
                let now = Instant::now();
                if now >= next + settings.interval {
                    let behind = now - next;
                    let missed = (behind.as_nanos() / settings.interval.as_nanos()) as u64;
                    next += settings.interval * missed as u32;
                    messages.push(Observation::ScheduleSlip { target, missed });
                }
            }
            // A late reply to an earlier request shows the path alive: it ends a burst too.
            let lost = reply_rtt.is_none() && !answered_late;
            send_at = match confirmer.after_probe(lost, sent, in_force.timeout, next) {
                NextSend::Confirm(at) => at,
                NextSend::Scheduled => next,
            };
            if !send_all(&route, target, messages).await {
                return;
            }
        }
    }
}

/// Takes the replies that came after their requests were given up: within the configured
/// timeout they were late, not lost (reported, and fed to the timeout estimate); later
/// still they are strays. Returns true when one was late.
fn take_late_answers(
    answers: Vec<(u16, Duration)>,
    settings: &ProbeSettings,
    adaptive: &mut AdaptiveTimeout,
    target: TargetId,
    messages: &mut Vec<Observation>,
) -> bool {
    let mut answered_late = false;
    for (late_seq, rtt) in answers {
        if rtt <= settings.timeout {
            trace!(target_id = target.0, seq = late_seq, ?rtt, "late reply");
            adaptive.observe(rtt);
            answered_late = true;
            messages.push(Observation::LateReply {
                target,
                seq: late_seq,
                at: Instant::now(),
                rtt,
            });
        } else {
            debug!(target_id = target.0, "late reply to a timed-out request");
            messages.push(Observation::StrayReply { target });
        }
    }
    answered_late
}

/// Turns what the socket brought back for request `seq` into the probe's outcome; an
/// answer to another request is a stray, and this request timed out.
fn outcome_of(
    echo: Echo,
    seq: u16,
    timeout: Duration,
    target: TargetId,
    messages: &mut Vec<Observation>,
) -> ProbeOutcome {
    match echo {
        Echo::Reply { seq: got, rtt } if got == seq => ProbeOutcome::Reply { rtt },
        Echo::IcmpError {
            seq: got,
            from,
            kind,
        } if got == seq => ProbeOutcome::IcmpError { from, kind },
        Echo::Reply { seq: got, .. } | Echo::IcmpError { seq: got, .. } => {
            debug!(
                target_id = target.0,
                expected = seq,
                got,
                "stray reply ignored"
            );
            messages.push(Observation::StrayReply { target });
            ProbeOutcome::Timeout { after: timeout }
        }
        Echo::Timeout => ProbeOutcome::Timeout { after: timeout },
        Echo::SendFailed(error) => ProbeOutcome::SendFailed { error },
    }
}

/// Sends a probe's messages to the monitor its route points at now; returns false when no
/// monitor takes them any more (the pinger then ends).
async fn send_all(
    route: &watch::Receiver<PingerRoute>,
    target: TargetId,
    mut messages: Vec<Observation>,
) -> bool {
    let (routed_to, mut observations) = {
        let r = route.borrow();
        (r.target, r.observations.clone())
    };
    if routed_to != target {
        // Re-pointed mid-probe: the result belongs to the new config's id.
        for m in &mut messages {
            m.set_target(routed_to);
        }
    }
    for message in messages {
        let mut message = Some(message);
        while let Some(m) = message.take() {
            if let Err(failed) = observations.send(m).await {
                // The monitor went: a reload may have re-pointed this pinger already.
                let next = route.borrow().observations.clone();
                if next.same_channel(&observations) {
                    return false;
                }
                observations = next;
                message = Some(failed.0);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
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
        let (_route_tx, route) = watch::channel(PingerRoute {
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
        let (route_tx, route) = watch::channel(PingerRoute {
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
        route_tx.send_replace(PingerRoute {
            target: TargetId(7),
            observations: new_tx,
        });
        drop(old_rx);
        let next = new_rx.recv().await.unwrap();
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
        let (_route_tx, route) = watch::channel(PingerRoute {
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
                // Learning until the tenth reply.
                (8000, 800),
                (9000, 800),
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
        let timeouts: Vec<TimeoutInForce> = seen
            .iter()
            .filter_map(|o| match o {
                Observation::TimeoutInForce { timeout, .. } => Some(*timeout),
                _ => None,
            })
            .collect();
        use crate::messages::TimeoutMode;
        assert_eq!(
            timeouts,
            [
                TimeoutInForce {
                    timeout: Duration::from_millis(800),
                    mode: TimeoutMode::Learning
                },
                TimeoutInForce {
                    timeout: Duration::from_millis(100),
                    mode: TimeoutMode::Adaptive
                }
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_timeout_without_fast_confirm_keeps_the_old_schedule() {
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let (_route_tx, route) = watch::channel(PingerRoute {
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
}
