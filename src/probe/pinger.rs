//! The pinger task: one per target, sending echo requests on a splayed schedule and
//! reporting each outcome to the monitor. The ICMP socket sits behind the [`Prober`] seam
//! so that tests can drive the loop with a fake.

use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
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

/// A pinger's route, shared with the pool that re-points it on a reload and read by the
/// pinger after each probe. A mutex, not a `watch` channel: nobody waits for a change, and
/// the channel's eight `Notify`s were 360 bytes a target.
#[derive(Clone, Debug)]
pub struct RouteCell(Arc<Mutex<PingerRoute>>);

impl RouteCell {
    /// Holds `route`.
    pub fn new(route: PingerRoute) -> Self {
        RouteCell(Arc::new(Mutex::new(route)))
    }

    /// Returns the route now.
    pub fn get(&self) -> PingerRoute {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Returns the target the route points at now.
    pub fn target(&self) -> TargetId {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).target
    }

    /// Re-points the route.
    pub fn replace(&self, route: PingerRoute) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = route;
    }
}

/// Everything a pinger task needs besides its prober.
pub struct PingerTask {
    pub route: RouteCell,
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
    ///
    /// An async block that uses `self` and `prober` where they were captured, rather than an
    /// async fn that moves them into locals: the generator keeps an argument's slot beside
    /// the local it was moved to, and every target has one of these tasks for its life.
    // Not an async fn, on purpose (above): clippy's rewrite would bring the copies back.
    #[allow(clippy::manual_async_fn)]
    pub fn run<P: Prober>(self, mut prober: P) -> impl Future<Output = ()> + Send {
        async move {
            let PingerTask {
                ref route,
                ref settings,
                splay,
                ref cancel,
            } = self;
            let mut seq: u16 = 0;
            // `next` is the interval's schedule; `send_at` is `next` or a confirmation's time.
            let mut next = Instant::now() + splay;
            let mut send_at = next;
            let mut timeouts_in_a_row: u32 = 0;
            let mut reopen_at = REOPEN_AFTER;
            let mut adaptive = AdaptiveTimeout::new(settings);
            let mut confirmer = Confirmer::new(settings);
            let mut reported: Option<TimeoutInForce> = None;

            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(send_at) => {}
                }
                let sent = Instant::now();
                let send_delay = sent.saturating_duration_since(send_at);
                let in_force = adaptive.in_force();
                // Boxed: the probe's future lives only while a request is out, and inline it
                // would make every pinger's task (one per target, asleep most of the time)
                // hundreds of bytes larger for its whole life.
                let probe = Box::pin(prober.probe(seq, in_force.timeout));
                let echo = tokio::select! {
                    _ = cancel.cancelled() => return,
                    echo = probe => echo,
                };
                let target = route.target();
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
                    settings,
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
                // Boxed for the same reason as the probe: inline, the send's future (728
                // bytes, a message and the channel's wait) would be the task's largest state.
                if !Box::pin(send_all(route, target, messages)).await {
                    return;
                }
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
async fn send_all(route: &RouteCell, target: TargetId, mut messages: Vec<Observation>) -> bool {
    let PingerRoute {
        target: routed_to,
        mut observations,
    } = route.get();
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
                let next = route.get().observations;
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
mod tests;
