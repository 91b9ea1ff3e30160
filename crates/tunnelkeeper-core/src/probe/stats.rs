//! Per-target counters and a window of recent results, for `/status` (loss and RTT
//! percentiles). Pure bookkeeping: the monitor task owns one per target.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::messages::{ProbeOutcome, TimeoutInForce};

/// How many recent probes the loss and RTT percentiles look at.
pub const WINDOW: usize = 100;

/// Marks a lost probe in the window (RTTs are stored in microseconds).
const LOST: u32 = u32::MAX;

/// Counters and recent results of one target.
#[derive(Clone, Debug, Default)]
pub struct TargetStats {
    sent: u64,
    replies: u64,
    timeouts: u64,
    icmp_errors: u64,
    send_failures: u64,
    /// Replies re-counted from timeouts (late, within the configured timeout).
    late_replies: u64,
    last_rtt: Option<Duration>,
    recent: VecDeque<u32>,
    timeout: Option<TimeoutInForce>,
}

/// What `/status` shows of a target's numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsSummary {
    /// Echo requests whose outcome is known.
    pub sent: u64,
    /// Echo replies received in time (`tunnelkeeper_probe_replies_total`).
    pub replies: u64,
    /// Requests without a reply in time.
    pub timeouts: u64,
    /// Requests answered by an ICMP error.
    pub icmp_errors: u64,
    /// Requests that could not be sent.
    pub send_failures: u64,
    /// Replies that came after the adaptive timeout but within the configured one: counted
    /// in `replies` here, while the metrics (which cannot take a timeout back) keep them in
    /// `tunnelkeeper_probe_lost_total{reason="timeout"}`.
    pub late_replies: u64,
    /// How many of the recent window were lost, in percent.
    pub recent_loss_percent: f64,
    /// How many probes the recent window holds.
    pub recent_probes: usize,
    /// The last round-trip time in seconds.
    pub rtt_last_seconds: Option<f64>,
    /// Median round-trip time over the recent window, in seconds.
    pub rtt_p50_seconds: Option<f64>,
    /// 99th percentile round-trip time over the recent window, in seconds.
    pub rtt_p99_seconds: Option<f64>,
    /// The timeout the target's requests get now, in seconds (null before its pinger said).
    pub timeout_seconds: Option<f64>,
    /// Where it comes from: the configured one (`fixed`, or `learning` until enough replies
    /// came) or `adaptive`.
    pub timeout_mode: Option<crate::messages::TimeoutMode>,
}

impl TargetStats {
    /// Records one probe outcome.
    pub fn record(&mut self, outcome: &ProbeOutcome) {
        self.sent += 1;
        let sample = match outcome {
            ProbeOutcome::Reply { rtt } => {
                self.replies += 1;
                self.last_rtt = Some(*rtt);
                u32::try_from(rtt.as_micros()).unwrap_or(LOST - 1)
            }
            ProbeOutcome::Timeout { .. } => {
                self.timeouts += 1;
                LOST
            }
            ProbeOutcome::IcmpError { .. } => {
                self.icmp_errors += 1;
                LOST
            }
            ProbeOutcome::SendFailed { .. } => {
                self.send_failures += 1;
                LOST
            }
        };
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        } else if self.recent.capacity() == 0 {
            // The window fills within WINDOW probes and stays full: its exact size at once,
            // not the 128 slots that growing by doubling ends at (and the freed smaller
            // buffers on the way), one per target.
            self.recent.reserve_exact(WINDOW);
        }
        self.recent.push_back(sample);
    }

    /// Re-counts a request given up at the adaptive timeout as answered, its reply having
    /// come within the configured timeout: the latest loss in the window becomes its RTT.
    pub fn record_late(&mut self, rtt: Duration) {
        let Some(slot) = self.recent.iter_mut().rev().find(|s| **s == LOST) else {
            return;
        };
        *slot = u32::try_from(rtt.as_micros()).unwrap_or(LOST - 1);
        self.timeouts = self.timeouts.saturating_sub(1);
        self.replies += 1;
        self.late_replies += 1;
        self.last_rtt = Some(rtt);
    }

    /// Records the timeout the target's pinger now uses.
    pub fn set_timeout(&mut self, timeout: TimeoutInForce) {
        self.timeout = Some(timeout);
    }

    /// Returns how many probes have an outcome (cheap, unlike [`TargetStats::summary`]).
    pub fn summary_sent(&self) -> u64 {
        self.sent
    }

    /// Summarizes the counters and the recent window.
    pub fn summary(&self) -> StatsSummary {
        let mut rtts: Vec<u32> = self.recent.iter().copied().filter(|&s| s != LOST).collect();
        let lost = self.recent.len() - rtts.len();
        let recent_loss_percent = if self.recent.is_empty() {
            0.0
        } else {
            100.0 * lost as f64 / self.recent.len() as f64
        };
        StatsSummary {
            sent: self.sent,
            replies: self.replies,
            timeouts: self.timeouts,
            icmp_errors: self.icmp_errors,
            send_failures: self.send_failures,
            late_replies: self.late_replies,
            recent_loss_percent,
            recent_probes: self.recent.len(),
            rtt_last_seconds: self.last_rtt.map(|d| d.as_secs_f64()),
            rtt_p50_seconds: percentile(&mut rtts, 50),
            rtt_p99_seconds: percentile(&mut rtts, 99),
            timeout_seconds: self.timeout.map(|t| t.timeout.as_secs_f64()),
            timeout_mode: self.timeout.map(|t| t.mode),
        }
    }
}

/// Returns the nearest-rank percentile of microsecond samples, in seconds.
fn percentile(samples: &mut [u32], pct: usize) -> Option<f64> {
    crate::quantile::nearest_rank(samples, pct).map(|us| f64::from(us) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(us: u64) -> ProbeOutcome {
        ProbeOutcome::Reply {
            rtt: Duration::from_micros(us),
        }
    }

    #[test]
    fn loss_and_percentiles_cover_the_recent_window_only() {
        let mut stats = TargetStats::default();
        for _ in 0..WINDOW {
            stats.record(&ProbeOutcome::Timeout {
                after: Duration::from_secs(1),
            });
        }
        assert_eq!(stats.summary().recent_loss_percent, 100.0);
        for i in 1..=WINDOW as u64 {
            stats.record(&reply(i * 10));
        }
        let s = stats.summary();
        assert_eq!(s.sent, 2 * WINDOW as u64);
        assert_eq!(s.replies, WINDOW as u64);
        assert_eq!(s.timeouts, WINDOW as u64);
        assert_eq!(s.recent_loss_percent, 0.0);
        assert_eq!(s.rtt_p50_seconds, Some(500e-6));
        assert_eq!(s.rtt_p99_seconds, Some(990e-6));
        assert_eq!(s.rtt_last_seconds, Some(1000e-6));
    }

    #[test]
    fn the_window_holds_no_more_room_than_its_probes() {
        let mut stats = TargetStats::default();
        for i in 0..3 * WINDOW as u64 {
            stats.record(&reply(i));
        }
        assert_eq!(stats.summary().recent_probes, WINDOW);
        // VecDeque may round up, but not to the next power of two as doubling does.
        assert!(stats.recent.capacity() < 128, "{}", stats.recent.capacity());
    }

    #[test]
    fn a_late_reply_turns_the_latest_loss_into_an_answer() {
        let mut stats = TargetStats::default();
        stats.record(&reply(1000));
        stats.record(&ProbeOutcome::Timeout {
            after: Duration::from_millis(100),
        });
        stats.record(&ProbeOutcome::Timeout {
            after: Duration::from_millis(100),
        });
        stats.record_late(Duration::from_millis(150));
        let s = stats.summary();
        assert_eq!((s.sent, s.replies, s.timeouts), (3, 2, 1));
        assert_eq!(s.recent_loss_percent, 100.0 / 3.0);
        assert_eq!(s.rtt_p99_seconds, Some(0.15));
        assert_eq!(s.rtt_last_seconds, Some(0.15));
    }

    #[test]
    fn no_replies_means_no_rtt() {
        let mut stats = TargetStats::default();
        stats.record(&ProbeOutcome::SendFailed {
            error: "no route".into(),
        });
        let s = stats.summary();
        assert_eq!(s.send_failures, 1);
        assert_eq!(s.rtt_p50_seconds, None);
        assert_eq!(s.recent_loss_percent, 100.0);
    }
}
