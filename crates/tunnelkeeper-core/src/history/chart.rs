//! A chart's points from the rings on disk ([`super::ring`]) and the minutes still in
//! memory: the open minute and the closed ones the saver has not written yet. A coarse
//! window still filling (or closed but not yet written) is consolidated from its minutes,
//! so the last point is never behind; every point the daemon was not running in carries
//! [`Mark::NotRunning`]. Pure: the shell's store reads the slots.

use super::ring::Ring;
use super::{consolidated, minute_of, Mark, MinuteSummary};
use crate::types::Timestamp;

/// Where a chart's stored slots come from (the ring files, read one slot per point).
pub trait RingSource {
    /// Reads the slots of series `key` in `ring` at the windows starting at `firsts`
    /// (`None`: missing, torn or of another window).
    fn read(&self, ring: Ring, key: &str, firsts: &[u32]) -> Vec<Option<MinuteSummary>>;

    /// Returns the spans of minutes (inclusive) the daemon was not running.
    fn not_running(&self) -> Vec<(u32, u32)>;
}

/// No ring files (none could be opened, or a test without disk): only the minutes in
/// memory show.
pub struct NoRings;

impl RingSource for NoRings {
    fn read(&self, _: Ring, _: &str, firsts: &[u32]) -> Vec<Option<MinuteSummary>> {
        vec![None; firsts.len()]
    }

    fn not_running(&self) -> Vec<(u32, u32)> {
        Vec::new()
    }
}

/// Returns the points of `ring` ending with the window of `now`, oldest first, for the
/// series `key`; `live` holds its minutes not on disk yet (they win over the disk).
/// Windows without data are empty summaries with their `minute` set.
pub fn points(
    ring: Ring,
    now: Timestamp,
    key: &str,
    live: &[MinuteSummary],
    source: &dyn RingSource,
) -> Vec<MinuteSummary> {
    let now_minute = minute_of(now);
    let step = ring.step_minutes();
    let last = now_minute / step;
    let firsts: Vec<u32> = (last.saturating_sub(ring.slots() - 1)..=last)
        .map(|index| index * step)
        .collect();
    let stored = source.read(ring, key, &firsts);
    let gaps = source.not_running();
    // The minute ring spans the last hour: windows in it can be rebuilt from minutes.
    let fine_from = now_minute.saturating_sub(Ring::Minutes.slots() - 1);
    (firsts.iter().zip(stored))
        .map(|(&first, stored)| {
            let in_live = live.iter().any(|m| m.minute / step == first / step);
            let rebuild = ring != Ring::Minutes
                && (in_live || (stored.is_none() && first + step > fine_from));
            let mut point = if ring == Ring::Minutes {
                live.iter().find(|m| m.minute == first).copied().or(stored)
            } else if rebuild {
                from_minutes(first, step, fine_from, key, live, source).or(stored)
            } else {
                stored
            }
            .unwrap_or_default();
            point.minute = first;
            let down = (gaps.iter()).any(|&(from, to)| from < first + step && to >= first);
            if down {
                point.marks |= Mark::NotRunning as u8;
            }
            point
        })
        .collect()
}

/// Consolidates the window at `first` from its minutes still in the minute ring or live.
fn from_minutes(
    first: u32,
    step: u32,
    fine_from: u32,
    key: &str,
    live: &[MinuteSummary],
    source: &dyn RingSource,
) -> Option<MinuteSummary> {
    let minutes: Vec<u32> = (first.max(fine_from)..first + step).collect();
    let stored = source.read(Ring::Minutes, key, &minutes);
    let held: Vec<MinuteSummary> = (minutes.iter().zip(stored))
        .filter_map(|(&m, s)| live.iter().find(|l| l.minute == m).copied().or(s))
        .filter(|s| s.sent > 0 || s.marks != 0)
        .collect();
    (!held.is_empty()).then(|| consolidated(first, &held))
}

#[cfg(test)]
mod tests;
