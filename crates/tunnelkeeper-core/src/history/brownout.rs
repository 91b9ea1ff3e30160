//! Brownouts, pure: per tunnel, a sliding window of its pinned targets' probe outcomes
//! (for the loss and median RTT over `[alerts.lossy]`/`[alerts.slow]` windows) and a
//! long-run RTT baseline learnt from the tunnel's per-minute medians.
//!
//! Why these choices:
//! - The windows keep raw outcomes, not the history's per-minute summaries: a window is as
//!   short as 10 s and slides by the probe, which whole minutes cannot give. The median is
//!   taken with the history's own nearest-rank percentile on its packed RTTs, so there is
//!   no third percentile code here.
//! - The baseline is an average of the per-minute medians the history already closes (a
//!   running mean for the first [`BASELINE_MEMORY_MINUTES`], then an EWMA with that
//!   memory). A mean of medians is steady under loss bursts and jitter, needs one number
//!   per tunnel instead of an hour of samples, and moves with slow drifts (a reroute a
//!   little longer) while a one-off slow minute barely shifts it.
//! - The baseline must not learn the slowness it detects: a minute whose median, or the
//!   window median, is above the resolve level (`factor / 1.5` times the baseline) is not
//!   learnt. So while `TunnelSlow` fires, or hovers in its hysteresis band, the baseline
//!   stays frozen at what the tunnel was before.
//! - An outage belongs to `TunnelDown`: when the tunnel goes down its window is emptied
//!   and probes are not counted until it is up again, so the outage's losses never turn
//!   into a `TunnelLossy` after it. A fresh window says nothing until it spans the whole
//!   window length.

use std::collections::VecDeque;

use serde::Serialize;

use super::{decode, encode, minute_of, nearest_rank, MinuteSummary, Series};
use crate::config::brownout::{LossySettings, SlowSettings};
use crate::messages::ProbeOutcome;
use crate::types::{Timestamp, TunnelId};

/// Probes a loss window needs before it says anything (at 5 % one loss in 20 is 5 %).
pub const MIN_LOSS_PROBES: usize = 20;
/// Replies a median window needs before it says anything.
pub const MIN_RTT_REPLIES: usize = 10;
/// Replies a minute needs before its median teaches the baseline.
pub const MIN_MINUTE_REPLIES: u16 = 5;
/// Minutes learnt before the baseline is trusted (`TunnelSlow` judged).
pub const MIN_BASELINE_MINUTES: u32 = 5;
/// The baseline's memory: a running mean up to this many minutes, then an EWMA with
/// `alpha = 1 / BASELINE_MEMORY_MINUTES`.
pub const BASELINE_MEMORY_MINUTES: u32 = 30;
/// The most outcomes a window keeps (100 ms probes to two targets for five minutes fit):
/// past it the oldest go, which only shortens a window nobody configures that busy.
pub const MAX_SAMPLES: usize = 8_192;

/// One probe outcome in a window: when, and its packed RTT (`None`: lost).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at_ms: u64,
    rtt: Option<u16>,
}

/// The long-run RTT of a tunnel, µs.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Baseline {
    us: f64,
    minutes: u32,
}

/// One tunnel's window and baseline.
#[derive(Clone, Debug, Default)]
pub struct TunnelWindow {
    samples: VecDeque<Sample>,
    /// When the window started filling (first outcome since start or since an outage).
    filling_since: Option<Timestamp>,
    /// The tunnel is down: outcomes are not counted.
    down: bool,
    baseline: Option<Baseline>,
    /// The last minute whose median was considered for the baseline.
    learnt_through: u32,
}

/// Loss over the lossy window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WindowLoss {
    /// Probes in the window.
    pub probes: usize,
    /// Of which lost.
    pub lost: usize,
}

impl WindowLoss {
    /// Returns the lost share, 0.0 to 1.0.
    pub fn ratio(&self) -> f64 {
        self.lost as f64 / self.probes.max(1) as f64
    }
}

/// What `/status` shows of a tunnel's brownout numbers; `None` where the window is not
/// full yet (or the baseline not learnt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BrownoutReading {
    /// Lost share of the pinned targets' probes over `[alerts.lossy] window`.
    pub window_loss_ratio: Option<f64>,
    /// Probes the loss window holds (0 while it is not full).
    pub window_probes: usize,
    /// Median RTT over `[alerts.slow] window`, seconds.
    pub window_rtt_median_seconds: Option<f64>,
    /// The tunnel's long-run median RTT, seconds.
    pub rtt_baseline_seconds: Option<f64>,
}

/// Where a reading stands against a threshold with hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Past the firing threshold.
    Above,
    /// Between the resolve level and the firing threshold: an alert keeps its state.
    Between,
    /// Under the resolve level.
    Below,
}

/// Judges a loss ratio: above the threshold fires, under half of it resolves.
pub fn loss_level(ratio: f64, settings: &LossySettings) -> Level {
    let threshold = settings.threshold.0;
    if ratio > threshold {
        Level::Above
    } else if ratio < threshold / 2.0 {
        Level::Below
    } else {
        Level::Between
    }
}

/// Judges a median RTT against the baseline: over `factor` times fires, under
/// `factor / 1.5` times resolves.
pub fn slow_level(median_us: u32, baseline_us: u32, settings: &SlowSettings) -> Level {
    let (median, baseline) = (f64::from(median_us), f64::from(baseline_us));
    if median > settings.factor.0 * baseline {
        Level::Above
    } else if median < settings.resolve_factor() * baseline {
        Level::Below
    } else {
        Level::Between
    }
}

impl TunnelWindow {
    /// Records one outcome of a pinned target at `at`; `series` is the tunnel's history
    /// (already holding it), whose closed minutes teach the baseline.
    pub fn record(
        &mut self,
        outcome: &ProbeOutcome,
        at: Timestamp,
        series: &Series,
        lossy: &LossySettings,
        slow: &SlowSettings,
    ) {
        self.learn(at, series, slow);
        if self.down {
            return;
        }
        let rtt = match outcome {
            ProbeOutcome::Reply { rtt } => {
                Some(encode(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX)))
            }
            ProbeOutcome::Timeout { .. }
            | ProbeOutcome::IcmpError { .. }
            | ProbeOutcome::SendFailed { .. } => None,
        };
        self.filling_since.get_or_insert(at);
        self.samples.push_back(Sample {
            at_ms: at.as_millis(),
            rtt,
        });
        let keep_ms = lossy.window.max(slow.window).as_millis() as u64;
        let oldest = at.as_millis().saturating_sub(keep_ms);
        while self
            .samples
            .front()
            .is_some_and(|s| s.at_ms < oldest || self.samples.len() > MAX_SAMPLES)
        {
            self.samples.pop_front();
        }
    }

    /// Re-counts the latest loss as a reply that came late (as the history does).
    pub fn record_late(&mut self, rtt: std::time::Duration) {
        if let Some(s) = self.samples.iter_mut().rev().find(|s| s.rtt.is_none()) {
            s.rtt = Some(encode(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX)));
        }
    }

    /// Notes the tunnel's verdict label: going down empties the window, which starts
    /// filling again once the tunnel is no longer down.
    pub fn note_state(&mut self, label: &str) {
        let down = label == "down";
        if down && !self.down {
            self.samples.clear();
            self.filling_since = None;
        }
        self.down = down;
    }

    /// Teaches the baseline the medians of the minutes `series` closed since the last
    /// call (while they are in memory: the saver calls this before it takes them).
    pub(super) fn learn(&mut self, at: Timestamp, series: &Series, slow: &SlowSettings) {
        self.learn_minutes(at, &series.unwritten, slow);
    }

    /// Teaches the baseline the medians of `minutes` (oldest first) closed before `at`'s
    /// minute and after the last one learnt, within the last hour.
    pub(super) fn learn_minutes(
        &mut self,
        at: Timestamp,
        minutes: &[MinuteSummary],
        slow: &SlowSettings,
    ) {
        let current = minute_of(at);
        if self.learnt_through.saturating_add(1) >= current {
            return; // this minute's closed ones are learnt (nearly every call)
        }
        let first = self
            .learnt_through
            .saturating_add(1)
            .max(current.saturating_sub(super::FINE_SLOTS as u32));
        for summary in minutes
            .iter()
            .filter(|s| (first..current).contains(&s.minute))
        {
            if summary.sent.saturating_sub(summary.lost) < MIN_MINUTE_REPLIES {
                continue;
            }
            let median = f64::from(summary.p50_us);
            match self.baseline {
                None => {
                    self.baseline = Some(Baseline {
                        us: median,
                        minutes: 1,
                    })
                }
                Some(b) => {
                    // Frozen while slow (or in the band under it): learning the slowness
                    // would raise the bar it is measured against.
                    let resolve = slow.resolve_factor() * b.us;
                    let window_slow = self
                        .median_us(at, slow.window)
                        .is_some_and(|m| f64::from(m) > resolve);
                    if median > resolve || window_slow {
                        continue;
                    }
                    let n = (b.minutes + 1).min(BASELINE_MEMORY_MINUTES);
                    self.baseline = Some(Baseline {
                        us: b.us + (median - b.us) / f64::from(n),
                        minutes: b.minutes + 1,
                    });
                }
            }
        }
        self.learnt_through = self.learnt_through.max(current.saturating_sub(1));
    }

    /// Returns whether the window has been filling for all of `window` by `now`.
    fn spans(&self, now: Timestamp, window: std::time::Duration) -> bool {
        self.filling_since.is_some_and(|t| now.since(t) >= window)
    }

    fn in_window(
        &self,
        now: Timestamp,
        window: std::time::Duration,
    ) -> impl Iterator<Item = &Sample> {
        let from = now.as_millis().saturating_sub(window.as_millis() as u64);
        self.samples.iter().filter(move |s| s.at_ms > from)
    }

    /// Returns the loss over the last `window`, once the window spans it with enough
    /// probes.
    pub fn loss(&self, now: Timestamp, window: std::time::Duration) -> Option<WindowLoss> {
        if !self.spans(now, window) {
            return None;
        }
        let (probes, lost) = self.in_window(now, window).fold((0, 0), |(p, l), s| {
            (p + 1, l + usize::from(s.rtt.is_none()))
        });
        (probes >= MIN_LOSS_PROBES).then_some(WindowLoss { probes, lost })
    }

    /// Returns the median RTT over the last `window` in µs, once the window spans it with
    /// enough replies.
    pub fn median_us(&self, now: Timestamp, window: std::time::Duration) -> Option<u32> {
        if !self.spans(now, window) {
            return None;
        }
        let mut rtts: Vec<u16> = self.in_window(now, window).filter_map(|s| s.rtt).collect();
        (rtts.len() >= MIN_RTT_REPLIES).then(|| decode(nearest_rank(&mut rtts, 50)))
    }

    /// Returns the baseline in µs once it has learnt [`MIN_BASELINE_MINUTES`].
    pub fn baseline_us(&self) -> Option<u32> {
        self.baseline
            .filter(|b| b.minutes >= MIN_BASELINE_MINUTES)
            .map(|b| b.us.round() as u32)
    }

    /// Returns what `/status` shows.
    pub fn reading(
        &self,
        now: Timestamp,
        lossy: &LossySettings,
        slow: &SlowSettings,
    ) -> BrownoutReading {
        let loss = self.loss(now, lossy.window);
        BrownoutReading {
            window_loss_ratio: loss.map(|l| l.ratio()),
            window_probes: loss.map_or(0, |l| l.probes),
            window_rtt_median_seconds: self
                .median_us(now, slow.window)
                .map(|us| f64::from(us) / 1e6),
            rtt_baseline_seconds: self.baseline_us().map(|us| f64::from(us) / 1e6),
        }
    }
}

impl super::History {
    /// Feeds a tunnel's window (its series already holds the outcome).
    pub(super) fn record_window(&mut self, id: TunnelId, outcome: &ProbeOutcome, at: Timestamp) {
        let alerts = &self.config.alerts;
        let series = &self.tunnels[id.connection][id.tunnel];
        self.windows[id.connection][id.tunnel].record(
            outcome,
            at,
            series,
            &alerts.lossy,
            &alerts.slow,
        );
    }

    /// Returns a tunnel's brownout window.
    pub fn window(&self, tunnel: TunnelId) -> Option<&TunnelWindow> {
        self.windows.get(tunnel.connection)?.get(tunnel.tunnel)
    }

    /// Returns what `/status` shows of a tunnel's brownout numbers as of `now`.
    pub fn brownout(&self, tunnel: TunnelId, now: Timestamp) -> BrownoutReading {
        let alerts = &self.config.alerts;
        self.window(tunnel)
            .map(|w| w.reading(now, &alerts.lossy, &alerts.slow))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::history::History;
    use crate::types::TargetId;

    const T0_MS: u64 = 1_700_000_040_000;
    const A: TunnelId = TunnelId {
        connection: 0,
        tunnel: 0,
    };

    fn config(extra_target: &str) -> Arc<Config> {
        let text = format!(
            "[alerts.lossy]\nwindow = \"30s\"\n[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [{extra_target}\"10.0.0.1\"]\n"
        );
        Arc::new(Config::parse(&text, "t").unwrap())
    }

    fn feed(history: &mut History, target: TargetId, from_s: u64, secs: u64, lost: bool) {
        for s in from_s..from_s + secs {
            let outcome = if lost {
                ProbeOutcome::Timeout {
                    after: Duration::from_millis(900),
                }
            } else {
                ProbeOutcome::Reply {
                    rtt: Duration::from_millis(10),
                }
            };
            history.record(target, &outcome, Timestamp::from_millis(T0_MS + s * 1000));
        }
    }

    #[test]
    fn a_late_reply_is_no_loss_in_the_window() {
        let mut history = History::new(&config(""));
        feed(&mut history, TargetId(0), 0, 25, false);
        feed(&mut history, TargetId(0), 25, 1, true);
        let now = Timestamp::from_millis(T0_MS + 26_000);
        let lost = |h: &History| h.window(A).unwrap().loss(now, Duration::from_secs(25));
        assert_eq!(lost(&history).map(|l| l.lost), Some(1));
        history.record_late(TargetId(0), Duration::from_millis(950), now);
        assert_eq!(lost(&history).map(|l| l.lost), Some(0));
    }

    #[test]
    fn a_reload_keeps_the_window_of_a_tunnel_that_stays() {
        let mut history = History::new(&config(""));
        feed(&mut history, TargetId(0), 0, 30, false);
        let now = Timestamp::from_millis(T0_MS + 30_000);
        let next = config("\"10.0.0.9\", ");
        let mapping = crate::config::ReloadMapping::between(history.config(), &next);
        history.reshape(&next, &mapping);
        assert_eq!(
            history.brownout(A, now).window_probes,
            29,
            "{:?}",
            history.brownout(A, now)
        );
        assert_eq!(history.brownout(A, now).window_loss_ratio, Some(0.0));
    }

    #[test]
    fn a_window_keeps_no_more_than_its_cap() {
        let config = config("");
        let series = Series::default();
        let mut window = TunnelWindow::default();
        let reply = ProbeOutcome::Reply {
            rtt: Duration::from_millis(1),
        };
        for ms in 0..(MAX_SAMPLES as u64 + 100) {
            let at = Timestamp::from_millis(T0_MS + ms);
            window.record(
                &reply,
                at,
                &series,
                &config.alerts.lossy,
                &config.alerts.slow,
            );
        }
        assert_eq!(window.samples.len(), MAX_SAMPLES);
    }
}
