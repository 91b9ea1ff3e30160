//! Fast detection, pure: the adaptive timeout a target's recent round-trip times call for,
//! and the rule that answers a lost probe with a burst of confirmations instead of waiting
//! for the next intervals. The pinger feeds both with outcomes and times; nothing here
//! reads a clock or touches a socket.

use std::collections::VecDeque;
use std::time::Duration;

use std::ops::Add;

use crate::config::ProbeSettings;
use crate::messages::{TimeoutInForce, TimeoutMode};
use crate::quantile::nearest_rank;

/// How many recent replies the adaptive timeout looks at.
pub const RTT_WINDOW: usize = 100;
/// Replies needed before the timeout adapts: fewer say little about the tail.
pub const MIN_RTT_SAMPLES: usize = 10;
/// The percentile of the window the timeout is a multiple of: with 100 replies it is the
/// second highest, so one outlier does not stretch every timeout after it.
pub const RTT_PERCENTILE: usize = 99;
/// While fewer than [`MIN_RTT_SAMPLES`] replies are in, the timeout is this many times the
/// steady-state multiple of the highest RTT seen, but no longer than leaves room for a
/// whole burst of confirmations within the interval (and never under the steady-state
/// multiple itself): a first estimate wide enough for RTTs the first replies did not show,
/// and short enough that fast confirm works from the second probe after a start (waiting
/// the whole `timeout` left no room, and the first ten seconds after a start took
/// `down_after` intervals to see an outage). A reply that comes after it is still a reply
/// (late, not lost), so a too-short first estimate costs confirmations, never a page.
pub const LEARNING_MARGIN: u32 = 2;

/// A target's timeout, learned from its recent round-trip times.
#[derive(Clone, Debug)]
pub struct AdaptiveTimeout {
    enabled: bool,
    configured: Duration,
    floor: Duration,
    multiplier: u32,
    /// The probe interval and `down_after`: what room a burst of confirmations needs.
    interval: Duration,
    down_after: u32,
    /// Recent RTTs in microseconds, oldest first.
    rtts: VecDeque<u32>,
    in_force: TimeoutInForce,
}

impl AdaptiveTimeout {
    /// Starts with the configured timeout, `learning` when adaptive timeouts are on.
    pub fn new(settings: &ProbeSettings) -> Self {
        let mode = if settings.adaptive_timeout {
            TimeoutMode::Learning
        } else {
            TimeoutMode::Fixed
        };
        Self {
            enabled: settings.adaptive_timeout,
            configured: settings.timeout,
            floor: settings.timeout_floor,
            multiplier: settings.timeout_rtt_multiplier,
            interval: settings.interval,
            down_after: settings.down_after,
            rtts: VecDeque::with_capacity(RTT_WINDOW),
            in_force: TimeoutInForce {
                timeout: settings.timeout,
                mode,
            },
        }
    }

    /// Takes in one reply's round-trip time (late replies included: they are what shows
    /// the timeout too short).
    pub fn observe(&mut self, rtt: Duration) {
        if !self.enabled {
            return;
        }
        if self.rtts.len() == RTT_WINDOW {
            self.rtts.pop_front();
        }
        self.rtts
            .push_back(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
        if self.rtts.len() < MIN_RTT_SAMPLES {
            let highest = self.rtts.iter().copied().max().unwrap_or(u32::MAX);
            let multiple = Duration::from_micros(u64::from(highest)) * self.multiplier;
            let lowest = multiple.max(self.floor);
            let room = (self.interval / self.down_after.max(1)).max(lowest);
            let first = (multiple * LEARNING_MARGIN).clamp(lowest, room);
            self.in_force = TimeoutInForce {
                timeout: first.min(self.configured),
                mode: TimeoutMode::Learning,
            };
            return;
        }
        let mut sorted = [0u32; RTT_WINDOW];
        let samples = &mut sorted[..self.rtts.len()];
        for (slot, rtt) in samples.iter_mut().zip(&self.rtts) {
            *slot = *rtt;
        }
        let Some(high) = nearest_rank(samples, RTT_PERCENTILE) else {
            return;
        };
        let learned = Duration::from_micros(u64::from(high)) * self.multiplier;
        self.in_force = TimeoutInForce {
            timeout: learned.max(self.floor).min(self.configured),
            mode: TimeoutMode::Adaptive,
        };
    }

    /// Returns the timeout the next request gets.
    pub fn in_force(&self) -> TimeoutInForce {
        self.in_force
    }
}

/// Whether a change of timeout is worth telling the monitor: the mode changed, or the
/// timeout moved by more than an eighth (RTT jitter alone would otherwise send one message
/// per reply).
pub fn worth_reporting(before: Option<TimeoutInForce>, now: TimeoutInForce) -> bool {
    match before {
        None => true,
        Some(before) => {
            before.mode != now.mode || before.timeout.abs_diff(now.timeout) > before.timeout / 8
        }
    }
}

/// When the pinger sends next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextSend<I> {
    /// A confirmation probe, at this time.
    Confirm(I),
    /// The next scheduled probe.
    Scheduled,
}

/// The fast-confirm rule of one target: a lost probe is followed at once by up to
/// `down_after - 1` confirmations, one timeout apart; the first reply ends the burst, and
/// the health model counts the losses in a row over the burst as it does over intervals.
/// After a burst that found nothing, the target's next bursts wait for a reply: a dead
/// tunnel is probed at the interval, not at the burst's pace.
#[derive(Clone, Debug)]
pub struct Confirmer {
    confirmations: u32,
    /// Confirmations sent in the burst under way, if one is.
    burst: Option<u32>,
    /// Whether the next loss may start a burst.
    armed: bool,
}

impl Confirmer {
    /// Builds the rule for a target's settings (no confirmations when fast confirm is off).
    pub fn new(settings: &ProbeSettings) -> Self {
        Self {
            confirmations: if settings.fast_confirm {
                settings.down_after.saturating_sub(1)
            } else {
                0
            },
            burst: None,
            armed: true,
        }
    }

    /// Decides what follows a probe sent at `sent` that waited at most `timeout`:
    /// `lost` says it got no reply (a late reply to an earlier request counts as a reply
    /// here). A confirmation is only sent when it can end before `next_scheduled`, so the
    /// interval's schedule never moves.
    pub fn after_probe<I>(
        &mut self,
        lost: bool,
        sent: I,
        timeout: Duration,
        next_scheduled: I,
    ) -> NextSend<I>
    where
        I: Copy + Ord + Add<Duration, Output = I>,
    {
        if !lost {
            self.burst = None;
            self.armed = true;
            return NextSend::Scheduled;
        }
        let sent_so_far = match self.burst {
            Some(n) => n,
            None if self.armed => 0,
            None => return NextSend::Scheduled,
        };
        let at = sent + timeout;
        if sent_so_far >= self.confirmations || at + timeout > next_scheduled {
            if self.burst.is_some() {
                // Spent (or out of room): no more bursts until a reply.
                self.burst = None;
                self.armed = false;
            }
            return NextSend::Scheduled;
        }
        self.burst = Some(sent_so_far + 1);
        NextSend::Confirm(at)
    }

    /// Returns true while a burst is under way.
    pub fn confirming(&self) -> bool {
        self.burst.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn settings() -> ProbeSettings {
        ProbeSettings::default()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_timeout_is_a_multiple_of_the_high_percentile_between_floor_and_configured() {
        // (RTTs fed, timeout in force): floor 100 ms, ×4, configured 1 s.
        let cases: [(&[u64], u64, TimeoutMode); 10] = [
            (&[], 1000, TimeoutMode::Learning),
            // The first estimate: twice the multiple of the highest RTT so far.
            (&[5; 9], 100, TimeoutMode::Learning),
            // ... but no longer than leaves room for a burst: 1 s / down_after 5.
            (&[5, 30, 5], 200, TimeoutMode::Learning),
            (&[5, 20], 160, TimeoutMode::Learning),
            // ... nor shorter than the steady-state multiple.
            (&[100], 400, TimeoutMode::Learning),
            (&[300], 1000, TimeoutMode::Learning),
            (&[5; 10], 100, TimeoutMode::Adaptive),
            (&[40; 20], 160, TimeoutMode::Adaptive),
            (&[400; 20], 1000, TimeoutMode::Adaptive),
            // One outlier in a hundred is not the 99th percentile.
            (&[10; 99], 100, TimeoutMode::Adaptive),
        ];
        for (rtts, want, mode) in cases {
            let mut adaptive = AdaptiveTimeout::new(&settings());
            for rtt in rtts {
                adaptive.observe(ms(*rtt));
            }
            assert_eq!(adaptive.in_force().timeout, ms(want), "{rtts:?}");
            assert_eq!(adaptive.in_force().mode, mode, "{rtts:?}");
        }
        let mut adaptive = AdaptiveTimeout::new(&settings());
        for _ in 0..99 {
            adaptive.observe(ms(10));
        }
        adaptive.observe(ms(200));
        assert_eq!(adaptive.in_force().timeout, ms(100), "one outlier");
        adaptive.observe(ms(200));
        assert_eq!(
            adaptive.in_force().timeout,
            ms(800),
            "two are the 99th percentile"
        );
    }

    #[test]
    fn the_estimate_forgets_rtts_older_than_the_window() {
        let mut adaptive = AdaptiveTimeout::new(&settings());
        for _ in 0..RTT_WINDOW {
            adaptive.observe(ms(200));
        }
        assert_eq!(adaptive.in_force().timeout, ms(800));
        for _ in 0..RTT_WINDOW - 1 {
            adaptive.observe(ms(5));
        }
        assert_eq!(adaptive.in_force().timeout, ms(100));
    }

    #[test]
    fn a_fixed_timeout_stays_fixed() {
        let fixed = ProbeSettings {
            adaptive_timeout: false,
            ..settings()
        };
        let mut adaptive = AdaptiveTimeout::new(&fixed);
        for _ in 0..50 {
            adaptive.observe(ms(1));
        }
        assert_eq!(
            adaptive.in_force(),
            TimeoutInForce {
                timeout: ms(1000),
                mode: TimeoutMode::Fixed
            }
        );
    }

    #[test]
    fn small_moves_of_the_timeout_are_not_reported() {
        let at = |t: u64, mode| TimeoutInForce {
            timeout: ms(t),
            mode,
        };
        use TimeoutMode::{Adaptive, Learning};
        assert!(worth_reporting(None, at(1000, Learning)));
        assert!(worth_reporting(
            Some(at(1000, Learning)),
            at(1000, Adaptive)
        ));
        assert!(!worth_reporting(Some(at(100, Adaptive)), at(112, Adaptive)));
        assert!(worth_reporting(Some(at(100, Adaptive)), at(113, Adaptive)));
        assert!(worth_reporting(Some(at(100, Adaptive)), at(87, Adaptive)));
    }

    /// Runs the rule over a script of outcomes (true = lost), each probe taking its whole
    /// timeout when lost and 1 ms when answered; returns the send times in ms.
    fn schedule(settings: &ProbeSettings, timeout: u64, lost: &[bool]) -> Vec<u64> {
        let start = Instant::now();
        let mut confirmer = Confirmer::new(settings);
        let mut sends = Vec::new();
        let mut scheduled = start;
        let mut send = start;
        for &lost in lost {
            sends.push((send - start).as_millis() as u64);
            if !confirmer.confirming() {
                scheduled += settings.interval;
            }
            match confirmer.after_probe(lost, send, ms(timeout), scheduled) {
                NextSend::Confirm(at) => send = at,
                NextSend::Scheduled => send = scheduled,
            }
        }
        sends
    }

    #[test]
    fn a_loss_is_confirmed_by_a_burst_one_timeout_apart() {
        let s = settings();
        let t = 100;
        // Steady state: one probe per interval.
        assert_eq!(schedule(&s, t, &[false; 3]), [0, 1000, 2000]);
        // A blackhole: the loss at 1 s brings down_after - 1 = 4 confirmations, then the
        // dead target is probed at the interval again.
        assert_eq!(
            schedule(&s, t, &[false, true, true, true, true, true, true, true]),
            [0, 1000, 1100, 1200, 1300, 1400, 2000, 3000]
        );
        // The first reply ends the burst; the next loss starts a new one.
        assert_eq!(
            schedule(&s, t, &[true, true, false, false, true, false]),
            [0, 100, 200, 1000, 2000, 2100]
        );
        // Only a reply re-arms the burst.
        let mut lost = vec![true; 7];
        lost.extend([false, true, true]);
        assert_eq!(
            schedule(&s, t, &lost),
            [0, 100, 200, 300, 400, 1000, 2000, 3000, 4000, 4100]
        );
    }

    /// A target answering in `rtt_ms` from a start, blackholed from probe `first_lost` on:
    /// how long from the first lost probe's send until the `down_after`-th loss in a row
    /// is given up (when the health model calls it down).
    fn detection_after_start(s: &ProbeSettings, rtt_ms: u64, first_lost: usize) -> u64 {
        let start = Instant::now();
        let mut adaptive = AdaptiveTimeout::new(s);
        let mut confirmer = Confirmer::new(s);
        let (mut scheduled, mut send) = (start, start);
        let mut lost_in_row = 0;
        let mut first_loss = None;
        for probe in 0.. {
            let lost = probe >= first_lost;
            let timeout = adaptive.in_force().timeout;
            if !confirmer.confirming() {
                scheduled += s.interval;
            }
            if lost {
                let since = *first_loss.get_or_insert(send);
                lost_in_row += 1;
                if lost_in_row == s.down_after {
                    return (send + timeout - since).as_millis() as u64;
                }
            } else {
                adaptive.observe(ms(rtt_ms));
            }
            match confirmer.after_probe(lost, send, timeout, scheduled) {
                NextSend::Confirm(at) => send = at,
                NextSend::Scheduled => send = scheduled,
            }
        }
        unreachable!()
    }

    #[test]
    fn an_outage_in_the_first_seconds_after_a_start_is_seen_as_fast_as_later() {
        let s = settings();
        // Steady state: the first loss and its four confirmations, 100 ms each.
        let steady = detection_after_start(&s, 5, 200);
        assert_eq!(steady, 500);
        // From the second probe after a start on (one reply in), the same. Only an outage
        // that is there before the first reply waits the configured timeout.
        let after_start: Vec<u64> = (1..=10)
            .map(|first_lost| detection_after_start(&s, 5, first_lost))
            .collect();
        assert_eq!(after_start, [500; 10]);
        assert_eq!(detection_after_start(&s, 5, 0), 5000);
        // A target 40 ms away: 1 s until its tenth reply (timeout 200 ms, the room a burst
        // needs), 800 ms after (160 ms); both within the README's 1.5 s bound.
        assert_eq!(detection_after_start(&s, 40, 3), 1000);
        assert_eq!(detection_after_start(&s, 40, 12), 800);
    }

    #[test]
    fn no_burst_without_fast_confirm_or_room_before_the_next_interval() {
        let off = ProbeSettings {
            fast_confirm: false,
            ..settings()
        };
        assert_eq!(schedule(&off, 100, &[true; 3]), [0, 1000, 2000]);
        // A timeout still at the configured 1 s leaves no room for a confirmation.
        assert_eq!(schedule(&settings(), 1000, &[true; 3]), [0, 1000, 2000]);
        // 300 ms: two confirmations fit (ending at 600 and 900 ms); a third would end at
        // 1200 ms, after the next scheduled probe.
        assert_eq!(
            schedule(&settings(), 300, &[true; 5]),
            [0, 300, 600, 1000, 2000]
        );
        let one = ProbeSettings {
            down_after: 1,
            ..settings()
        };
        assert_eq!(schedule(&one, 100, &[true; 2]), [0, 1000]);
    }
}
