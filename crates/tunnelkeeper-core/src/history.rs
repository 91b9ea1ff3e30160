//! Latency history for the NOC page's smoke charts: per target and per tunnel, per-minute
//! summaries (RTT p10, median and p90, probes sent and lost, state change marks). Memory
//! holds only the minute being filled and the closed minutes the saver has not written
//! yet ([`History::closed_minutes`], [`History::forget_through`]); the rings of the last
//! hour, six hours and seven days are files in `state_dir` ([`ring`]), read back one
//! series at a time when a page asks ([`chart`], [`Live::points`]). Pure bookkeeping fed
//! by the monitor with the probe's time; it lives across reloads (reshaped to the new
//! config). Each tunnel also keeps its brownout window and RTT baseline ([`brownout`]),
//! fed by the same calls. Minutes are numbered on the system clock (see
//! [`crate::types::WallShift`]), so the files read right after a restart or a clock step.

pub mod brownout;
pub mod chart;
pub mod disk;
pub mod ring;

use std::sync::{Arc, Mutex};

use crate::config::{Config, ReloadMapping, TargetScope};
use crate::messages::ProbeOutcome;
use crate::types::{TargetId, Timestamp, TunnelId};

use chart::RingSource;
use ring::Ring;

/// Points of the hour chart: one per minute.
pub const FINE_SLOTS: usize = 60;
/// Points of the six-hour chart: one per [`COARSE_MINUTES`].
pub const COARSE_SLOTS: usize = 72;
/// Minutes one point of the six-hour chart covers.
pub const COARSE_MINUTES: u32 = 5;
/// RTT samples kept for the open minute: a minute at the shortest interval (100 ms).
/// Past it the samples of that minute are thinned (every other one kept), so a busy
/// series never grows its buffer beyond this.
pub const MAX_SAMPLES_PER_MINUTE: usize = 600;
/// Closed minutes a series keeps while the saver cannot write them (a full or hung
/// disk): an hour, the finest chart; older ones go, so memory stays bounded.
pub const MAX_UNWRITTEN_MINUTES: usize = FINE_SLOTS;

/// The history the monitor writes and the page reads (briefly locked by both, never
/// across an `.await` or a disk read).
pub type SharedHistory = Arc<Mutex<History>>;

/// A state change in a minute, as bits of [`MinuteSummary::marks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// Went down.
    Down = 1,
    /// Came up.
    Up = 2,
    /// Became unknown (no results).
    Unknown = 4,
    /// The daemon was not running (between the last minute written and a start).
    NotRunning = 8,
}

impl Mark {
    /// Returns every mark, in bit order.
    pub const ALL: [Mark; 4] = [Mark::Down, Mark::Up, Mark::Unknown, Mark::NotRunning];

    /// Returns the mark for a verdict label (`down`, `up`, `unknown`).
    pub fn for_label(label: &str) -> Mark {
        match label {
            "down" => Mark::Down,
            "up" => Mark::Up,
            _ => Mark::Unknown,
        }
    }
}

/// What one minute (or one coarse window) held. RTTs in microseconds; `minute` is the
/// first minute since the Unix epoch it covers, on the system clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MinuteSummary {
    /// First minute (since the epoch) covered.
    pub minute: u32,
    /// 10th percentile RTT, µs (meaningless when nothing was received).
    pub p10_us: u32,
    /// Median RTT, µs.
    pub p50_us: u32,
    /// 90th percentile RTT, µs.
    pub p90_us: u32,
    /// Probes with an outcome.
    pub sent: u16,
    /// Probes lost (timeouts, ICMP errors, send failures).
    pub lost: u16,
    /// [`Mark`] bits.
    pub marks: u8,
}

impl MinuteSummary {
    /// Returns whether any reply came in.
    pub fn has_rtt(&self) -> bool {
        self.sent > self.lost
    }

    /// Returns the lost share, 0.0 to 1.0 (0.0 when nothing was sent).
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            f64::from(self.lost) / f64::from(self.sent)
        }
    }

    /// Returns whether `mark` is set.
    pub fn has(&self, mark: Mark) -> bool {
        self.marks & mark as u8 != 0
    }

    /// Returns when the point starts, as a daemon timestamp.
    pub fn start(&self) -> Timestamp {
        Timestamp::from_wall_millis(u64::from(self.minute) * 60_000)
    }
}

/// Which chart range to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// The last hour, per minute.
    Hour,
    /// The last six hours, per five minutes.
    SixHours,
    /// The last seven days, per fifteen minutes (read from disk only).
    Week,
}

impl Range {
    /// Returns the ring the range is drawn from.
    pub fn ring(self) -> Ring {
        match self {
            Range::Hour => Ring::Minutes,
            Range::SixHours => Ring::FiveMinutes,
            Range::Week => Ring::QuarterHours,
        }
    }

    /// Returns the minutes one point covers.
    pub fn step_minutes(self) -> u32 {
        self.ring().step_minutes()
    }

    /// Returns how many points the range holds.
    pub fn points(self) -> usize {
        self.ring().slots() as usize
    }
}

/// The minute being filled.
#[derive(Clone, Debug, Default)]
struct OpenMinute {
    minute: u32,
    /// RTTs in the [`encode`]d form (it keeps their order).
    rtts: Vec<u16>,
    /// Keep one sample in `1 << thinning` once the buffer filled up.
    thinning: u8,
    replies_seen: u32,
    sent: u16,
    lost: u16,
    marks: u8,
}

impl OpenMinute {
    fn summary(&self) -> MinuteSummary {
        let mut rtts = self.rtts.clone();
        let (p10_us, p50_us, p90_us) = if rtts.is_empty() {
            (0, 0, 0)
        } else {
            (
                decode(nearest_rank(&mut rtts, 10)),
                decode(nearest_rank(&mut rtts, 50)),
                decode(nearest_rank(&mut rtts, 90)),
            )
        };
        MinuteSummary {
            minute: self.minute,
            p10_us,
            p50_us,
            p90_us,
            sent: self.sent,
            lost: self.lost,
            marks: self.marks,
        }
    }

    fn is_empty(&self) -> bool {
        self.sent == 0 && self.marks == 0
    }
}

/// One series: a target, or a tunnel (its pinned targets' probes together). It holds
/// the open minute and the closed ones not yet written to disk, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Series {
    open: OpenMinute,
    unwritten: Vec<MinuteSummary>,
    /// The state last noted, so that only changes are marked.
    state: Option<Mark>,
}

/// Returns the minute of `at` on the system clock.
pub fn minute_of(at: Timestamp) -> u32 {
    u32::try_from(at.wall_millis() / 60_000).unwrap_or(u32::MAX)
}

impl Series {
    /// Records one probe outcome at `at`.
    pub fn record(&mut self, outcome: &ProbeOutcome, at: Timestamp) {
        self.roll(minute_of(at));
        let open = &mut self.open;
        open.sent = open.sent.saturating_add(1);
        match outcome {
            ProbeOutcome::Reply { rtt } => {
                let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
                open.replies_seen += 1;
                if open.replies_seen.is_multiple_of(1 << open.thinning.min(31)) {
                    if open.rtts.len() == MAX_SAMPLES_PER_MINUTE {
                        // Thin what is kept to every other sample and keep fewer from now on.
                        let mut i = 0;
                        open.rtts.retain(|_| {
                            i += 1;
                            i % 2 == 0
                        });
                        open.thinning += 1;
                    }
                    open.rtts.push(encode(us));
                }
            }
            ProbeOutcome::Timeout { .. }
            | ProbeOutcome::IcmpError { .. }
            | ProbeOutcome::SendFailed { .. } => open.lost = open.lost.saturating_add(1),
        }
    }

    /// Re-counts a loss of the open minute as a reply: its reply came late, within the
    /// configured timeout. A loss in a minute already closed stays there.
    pub fn record_late(&mut self, rtt: std::time::Duration, at: Timestamp) {
        self.roll(minute_of(at));
        if self.open.lost == 0 {
            return;
        }
        self.open.lost -= 1;
        self.open.sent = self.open.sent.saturating_sub(1);
        self.record(&ProbeOutcome::Reply { rtt }, at);
    }

    /// Marks a state change at `at`.
    pub fn mark(&mut self, mark: Mark, at: Timestamp) {
        self.roll(minute_of(at));
        self.open.marks |= mark as u8;
    }

    /// Notes the state at `at`, marking it when it differs from the last one noted (the
    /// first state noted is where the history starts, not a change).
    pub fn note_state(&mut self, state: Mark, at: Timestamp) {
        if self.state.is_some_and(|last| last != state) {
            self.mark(state, at);
        }
        self.state = Some(state);
    }

    /// Closes the open minute when `minute` is a later one.
    fn roll(&mut self, minute: u32) {
        if minute <= self.open.minute {
            return;
        }
        if !self.open.is_empty() {
            if self.unwritten.len() == MAX_UNWRITTEN_MINUTES {
                self.unwritten.remove(0);
            }
            self.unwritten.push(self.open.summary());
        }
        let mut rtts = std::mem::take(&mut self.open.rtts);
        rtts.clear();
        self.open = OpenMinute {
            minute,
            rtts,
            ..OpenMinute::default()
        };
    }

    /// Returns the closed minute `minute`, while it is in memory.
    fn closed_at(&self, minute: u32) -> Option<MinuteSummary> {
        self.unwritten.iter().find(|s| s.minute == minute).copied()
    }

    /// Returns the minutes in memory, oldest first: the closed ones not yet written and
    /// the open one as it stands.
    pub fn live(&self) -> Vec<MinuteSummary> {
        let mut live = self.unwritten.clone();
        if !self.open.is_empty() {
            live.push(self.open.summary());
        }
        live
    }
}

/// What a chart needs from memory: the series' identity (its key in the ring files) and
/// its minutes not on disk yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The series' identity ([`disk::series_keys`]).
    pub key: String,
    /// Its minutes in memory, oldest first.
    pub minutes: Vec<MinuteSummary>,
}

impl Live {
    /// Returns the points of `range` ending with the minute of `now`, oldest first: the
    /// minutes in memory over what `source` read from disk (see [`chart::points`]).
    pub fn points(
        &self,
        range: Range,
        now: Timestamp,
        source: &dyn RingSource,
    ) -> Vec<MinuteSummary> {
        chart::points(range.ring(), now, &self.key, &self.minutes, source)
    }
}

/// Consolidates minutes into one point starting at `first`: the median of the minutes'
/// medians, the lowest p10 and the highest p90 (the whole spread seen), summed probes
/// and losses, every mark.
pub(crate) fn consolidated(first: u32, minutes: &[MinuteSummary]) -> MinuteSummary {
    let with_rtt: Vec<&MinuteSummary> = minutes.iter().filter(|s| s.has_rtt()).collect();
    let mut medians: Vec<u32> = with_rtt.iter().map(|s| s.p50_us).collect();
    MinuteSummary {
        minute: first,
        p10_us: with_rtt.iter().map(|s| s.p10_us).min().unwrap_or(0),
        p50_us: if medians.is_empty() {
            0
        } else {
            nearest_rank(&mut medians, 50)
        },
        p90_us: with_rtt.iter().map(|s| s.p90_us).max().unwrap_or(0),
        sent: minutes
            .iter()
            .fold(0u16, |sum, s| sum.saturating_add(s.sent)),
        lost: minutes
            .iter()
            .fold(0u16, |sum, s| sum.saturating_add(s.lost)),
        marks: minutes.iter().fold(0, |bits, s| bits | s.marks),
    }
}

/// Packs µs into 16 bits as a small float: exact below 2,048 µs, then 11 bits of
/// mantissa (within 0.05 %) up to hours. Order-preserving, so percentiles can be taken
/// on the packed values.
pub fn encode(us: u32) -> u16 {
    if us < 2_048 {
        return us as u16;
    }
    let exponent = 31 - us.leading_zeros() - 10; // 1 for 2,048..4,095
    let mantissa = (us >> (exponent - 1)) - 2_048;
    ((exponent << 11) | mantissa) as u16
}

/// Unpacks [`encode`]: the value rounded down to its 11-bit mantissa.
pub fn decode(packed: u16) -> u32 {
    let (exponent, mantissa) = (u32::from(packed >> 11), u32::from(packed & 0x7ff));
    if exponent == 0 {
        mantissa
    } else {
        (2_048 + mantissa) << (exponent - 1)
    }
}

/// Returns the nearest-rank percentile of `samples` (not empty).
fn nearest_rank<T: Ord + Copy + Default>(samples: &mut [T], pct: usize) -> T {
    crate::quantile::nearest_rank(samples, pct).unwrap_or_default()
}

/// Every series of one config: one per target, one per tunnel.
#[derive(Debug)]
pub struct History {
    config: Arc<Config>,
    targets: Vec<Series>,
    tunnels: Vec<Vec<Series>>,
    /// Per tunnel, as `tunnels`.
    windows: Vec<Vec<brownout::TunnelWindow>>,
    /// What the start read back from the ring files.
    restored: Option<disk::Restored>,
}

impl History {
    /// Builds empty history for `config`.
    pub fn new(config: &Arc<Config>) -> Self {
        Self {
            config: config.clone(),
            targets: vec![Series::default(); config.targets.len()],
            tunnels: config
                .connections
                .iter()
                .map(|c| vec![Series::default(); c.tunnels.len()])
                .collect(),
            windows: (config.connections.iter())
                .map(|c| vec![brownout::TunnelWindow::default(); c.tunnels.len()])
                .collect(),
            restored: None,
        }
    }

    /// Builds a shared, empty history for `config`.
    pub fn shared(config: &Arc<Config>) -> SharedHistory {
        Arc::new(Mutex::new(Self::new(config)))
    }

    /// Fits the history to a reloaded config: targets and tunnels that stay keep their
    /// series (paired by `mapping`, as every store pairs them), new ones start empty.
    pub fn reshape(&mut self, config: &Arc<Config>, mapping: &ReloadMapping) {
        if Arc::ptr_eq(&self.config, config) {
            return;
        }
        let mut next = History::new(config);
        for &(new, old) in &mapping.targets {
            next.targets[new.0] = std::mem::take(&mut self.targets[old.0]);
        }
        for &(new, old) in &mapping.tunnels {
            next.tunnels[new.connection][new.tunnel] =
                std::mem::take(&mut self.tunnels[old.connection][old.tunnel]);
            next.windows[new.connection][new.tunnel] =
                std::mem::take(&mut self.windows[old.connection][old.tunnel]);
        }
        next.restored = self.restored.take();
        *self = next;
    }

    /// Records a probe outcome of `target` at `at`, in its series and its tunnel's.
    pub fn record(&mut self, target: TargetId, outcome: &ProbeOutcome, at: Timestamp) {
        let Some(series) = self.targets.get_mut(target.0) else {
            return;
        };
        series.record(outcome, at);
        if let Some(TargetScope::Pinned(id)) = self.config.targets.get(target.0).map(|t| t.scope) {
            self.tunnels[id.connection][id.tunnel].record(outcome, at);
            self.record_window(id, outcome, at);
        }
    }

    /// Re-counts a loss of `target` (and its tunnel) as a late reply.
    pub fn record_late(&mut self, target: TargetId, rtt: std::time::Duration, at: Timestamp) {
        let Some(series) = self.targets.get_mut(target.0) else {
            return;
        };
        series.record_late(rtt, at);
        if let Some(TargetScope::Pinned(id)) = self.config.targets.get(target.0).map(|t| t.scope) {
            self.tunnels[id.connection][id.tunnel].record_late(rtt, at);
            self.windows[id.connection][id.tunnel].record_late(rtt);
        }
    }

    /// Notes a target's state (its verdict label), marking changes.
    pub fn note_target(&mut self, target: TargetId, label: &str, at: Timestamp) {
        if let Some(series) = self.targets.get_mut(target.0) {
            series.note_state(Mark::for_label(label), at);
        }
    }

    /// Notes a tunnel's state (its verdict label), marking changes.
    pub fn note_tunnel(&mut self, tunnel: TunnelId, label: &str, at: Timestamp) {
        if let Some(series) = self
            .tunnels
            .get_mut(tunnel.connection)
            .and_then(|c| c.get_mut(tunnel.tunnel))
        {
            series.note_state(Mark::for_label(label), at);
            self.windows[tunnel.connection][tunnel.tunnel].note_state(label);
        }
    }

    /// Returns a target's series.
    pub fn target(&self, target: TargetId) -> Option<&Series> {
        self.targets.get(target.0)
    }

    /// Returns a tunnel's series.
    pub fn tunnel(&self, tunnel: TunnelId) -> Option<&Series> {
        self.tunnels
            .get(tunnel.connection)
            .and_then(|c| c.get(tunnel.tunnel))
    }

    /// Copies what the chart of the tunnel so named needs (by name: a reader's snapshot
    /// may come from the config before a reload).
    pub fn tunnel_live(&self, connection: &str, tunnel: &str) -> Option<Live> {
        let ci = self
            .config
            .connections
            .iter()
            .position(|c| c.name.as_str() == connection)?;
        let ti = self.config.connections[ci]
            .tunnels
            .iter()
            .position(|t| t.name.as_str() == tunnel)?;
        let id = TunnelId {
            connection: ci,
            tunnel: ti,
        };
        Some(Live {
            key: disk::tunnel_key(&self.config, id),
            minutes: self.tunnels.get(ci)?.get(ti)?.live(),
        })
    }

    /// Copies what the chart of the target at `address` needs, pinned to the tunnel so
    /// named or shared (`None`).
    pub fn target_live(
        &self,
        address: std::net::Ipv4Addr,
        tunnel: Option<(&str, &str)>,
    ) -> Option<Live> {
        let spec = self.config.targets.iter().find(|t| {
            t.address == address
                && match (t.scope, tunnel) {
                    (TargetScope::Shared, None) => true,
                    (TargetScope::Pinned(id), Some((connection, name))) => {
                        self.config.connections[id.connection].name.as_str() == connection
                            && self.config.tunnel(id).name.as_str() == name
                    }
                    _ => false,
                }
        })?;
        Some(Live {
            key: disk::target_key(&self.config, spec),
            minutes: self.targets.get(spec.id.0)?.live(),
        })
    }

    /// Returns the config the history is shaped for.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T0: u64 = 1_700_000_040; // the start of a minute (28,333,334 × 60 s)

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(T0 + secs)
    }

    fn reply(ms: u64) -> ProbeOutcome {
        ProbeOutcome::Reply {
            rtt: Duration::from_millis(ms),
        }
    }

    /// A series' chart with no ring files: what memory holds.
    fn chart_of(s: &Series, range: Range, now: Timestamp) -> Vec<MinuteSummary> {
        chart::points(range.ring(), now, "k", &s.live(), &chart::NoRings)
    }

    fn lost() -> ProbeOutcome {
        ProbeOutcome::Timeout {
            after: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_minute_summarises_its_replies_losses_and_marks() {
        let mut s = Series::default();
        for i in 0..10u64 {
            s.record(&reply(i + 1), at(i));
        }
        s.record(&lost(), at(20));
        s.record(&lost(), at(21));
        s.mark(Mark::Down, at(22));
        s.record(&reply(50), at(60)); // the next minute closes this one
        let points = chart_of(&s, Range::Hour, at(60));
        assert_eq!(points.len(), FINE_SLOTS);
        let closed = points[FINE_SLOTS - 2];
        assert_eq!(closed.minute, (T0 / 60) as u32);
        assert_eq!(
            (closed.p10_us, closed.p50_us, closed.p90_us),
            (1_000, 5_000, 9_000)
        );
        assert_eq!((closed.sent, closed.lost), (12, 2));
        assert!(closed.has(Mark::Down) && !closed.has(Mark::Up));
        let open = points[FINE_SLOTS - 1];
        assert_eq!((open.p50_us, open.sent, open.lost), (50_000, 1, 0));
    }

    #[test]
    fn a_late_reply_turns_a_loss_of_the_open_minute_into_a_reply() {
        let mut s = Series::default();
        s.record(&reply(5), at(0));
        s.record(&lost(), at(1));
        s.record_late(Duration::from_millis(150), at(1));
        let open = chart_of(&s, Range::Hour, at(2))[FINE_SLOTS - 1];
        assert_eq!((open.sent, open.lost), (2, 0));
        assert!(open.p90_us > 149_000, "{open:?}");
        // A loss in a closed minute stays; nothing is counted twice.
        s.record(&lost(), at(59));
        s.record_late(Duration::from_millis(150), at(61));
        let points = chart_of(&s, Range::Hour, at(61));
        assert_eq!(points[FINE_SLOTS - 2].lost, 1);
        assert_eq!(points[FINE_SLOTS - 1].sent, 0);
    }

    #[test]
    fn only_changes_of_state_are_marked() {
        let mut s = Series::default();
        s.note_state(Mark::Unknown, at(0));
        s.note_state(Mark::Unknown, at(1));
        assert_eq!(s.open.marks, 0, "the first state is no change");
        s.note_state(Mark::Up, at(2));
        s.note_state(Mark::Up, at(3));
        assert_eq!(s.open.marks, Mark::Up as u8);
        s.note_state(Mark::Down, at(4));
        assert_eq!(s.open.marks, Mark::Up as u8 | Mark::Down as u8);
    }

    #[test]
    fn minutes_without_results_are_gaps_and_old_minutes_leave_the_hour() {
        let mut s = Series::default();
        s.record(&reply(3), at(0));
        s.record(&reply(4), at(5 * 60));
        let points = chart_of(&s, Range::Hour, at(5 * 60));
        let with_data: Vec<usize> = (0..FINE_SLOTS).filter(|&i| points[i].sent > 0).collect();
        assert_eq!(with_data, vec![FINE_SLOTS - 6, FINE_SLOTS - 1]);
        // An hour later the slot of minute 0 is reused; the first sample must not show.
        s.record(&reply(7), at(60 * 60));
        let points = chart_of(&s, Range::Hour, at(60 * 60));
        assert_eq!(points.iter().filter(|p| p.sent > 0).count(), 2);
        assert_eq!(points[FINE_SLOTS - 1].p50_us, 7_000);
        assert_eq!(points[0].minute, (T0 / 60) as u32 + 1);
    }

    #[test]
    fn six_hours_consolidate_five_minutes_per_point() {
        let mut s = Series::default();
        // Minutes 0..5 of a window: medians 10, 20, 30, 40, 50 ms; one loss in minute 2.
        let window_start = (T0 / 60 / 5 + 1) * 5 * 60 - T0;
        for m in 0..5u64 {
            s.record(&reply(10 * (m + 1)), at(window_start + m * 60));
        }
        s.record(&lost(), at(window_start + 2 * 60 + 1));
        s.mark(Mark::Up, at(window_start + 3 * 60));
        s.record(&reply(1), at(window_start + 5 * 60));
        let points = chart_of(&s, Range::SixHours, at(window_start + 5 * 60));
        assert_eq!(points.len(), COARSE_SLOTS);
        let window = points[COARSE_SLOTS - 2];
        assert_eq!(u64::from(window.minute) * 60, T0 + window_start);
        assert_eq!(
            (window.p10_us, window.p50_us, window.p90_us),
            (10_000, 30_000, 50_000)
        );
        assert_eq!((window.sent, window.lost), (6, 1));
        assert!(window.has(Mark::Up));
        // The running window shows its open minute at once.
        assert_eq!(points[COARSE_SLOTS - 1].p50_us, 1_000);
    }

    #[test]
    fn a_busy_minute_keeps_a_bounded_spread_preserving_sample() {
        let mut s = Series::default();
        // 100 ms interval for a minute and more: 0.0 to 99.9 ms, evenly.
        for i in 0..1_000u64 {
            s.record(
                &ProbeOutcome::Reply {
                    rtt: Duration::from_micros(i * 100),
                },
                Timestamp::from_millis(T0 * 1000 + i * 50),
            );
        }
        assert!(s.open.rtts.len() <= MAX_SAMPLES_PER_MINUTE);
        let p = chart_of(&s, Range::Hour, at(59))[FINE_SLOTS - 1];
        assert_eq!(p.sent, 1_000);
        let near = |got: u32, want: u32| got.abs_diff(want) <= 1_000;
        assert!(near(p.p10_us, 10_000), "{p:?}");
        assert!(near(p.p50_us, 50_000), "{p:?}");
        assert!(near(p.p90_us, 90_000), "{p:?}");
    }

    #[test]
    fn a_reload_keeps_the_series_of_targets_and_tunnels_that_stay() {
        let toml = |extra: &str| {
            format!(
                "[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [{extra}\"10.0.0.1\"]\n\
                 [[vpn.tunnel]]\nname = \"b\"\ntargets = [\"10.0.0.2\"]\n"
            )
        };
        let old = Arc::new(Config::parse(&toml(""), "t").unwrap());
        let mut history = History::new(&old);
        history.record(TargetId(0), &reply(5), at(0));
        let b = TunnelId {
            connection: 0,
            tunnel: 1,
        };
        history.note_tunnel(b, "up", at(0));
        history.note_tunnel(b, "down", at(0));
        let new = Arc::new(Config::parse(&toml("\"10.0.0.9\", "), "t").unwrap());
        let mapping = ReloadMapping::between(history.config(), &new);
        history.reshape(&new, &mapping);
        let sent = |s: Option<&Series>| chart_of(s.unwrap(), Range::Hour, at(1))[FINE_SLOTS - 1];
        assert_eq!(sent(history.target(TargetId(0))).sent, 0, "10.0.0.9 is new");
        assert_eq!(sent(history.target(TargetId(1))).sent, 1, "10.0.0.1 kept");
        let a = TunnelId {
            connection: 0,
            tunnel: 0,
        };
        assert_eq!(sent(history.tunnel(a)).sent, 1);
        assert!(sent(history.tunnel(b)).has(Mark::Down));
    }

    #[test]
    fn a_series_holds_a_few_dozen_bytes_besides_its_open_minute() {
        // The rings are on disk; memory holds the open minute (2 bytes a reply) and the
        // closed minutes not yet written (usually one, 20 bytes).
        assert!(
            std::mem::size_of::<Series>() <= 80,
            "{}",
            std::mem::size_of::<Series>()
        );
    }

    #[test]
    fn packed_rtts_keep_their_order_and_are_within_a_twentieth_of_a_percent() {
        let mut last = 0;
        for us in (0..5_000).chain((5_000..u32::MAX - 1_000_000).step_by(999_983)) {
            let packed = encode(us);
            assert!(packed >= last, "{us}");
            last = packed;
            let back = decode(packed);
            assert!(
                back <= us && us - back <= us / 2_048,
                "{us} came back as {back}"
            );
        }
        for exact in [0, 1, 2_047, 2_048, 4_096, 5_000, 9_000, 50_000] {
            assert_eq!(decode(encode(exact)), exact);
        }
    }
}
