//! The daemon's clock: the runtime's monotonic instants turned into the core's
//! [`Timestamp`]s, anchored to the wall clock once at start. Every duration and timer
//! stays on that monotonic scale, whatever NTP does to the system clock. What is shown or
//! leaves the process follows the system clock: [`StepWatch`] notices a step and sets the
//! process's [`WallShift`], which every view, page, file and metric converts with;
//! Alertmanager's `startsAt` and `endsAt` take one exact reading per post, so that a step
//! can never make an `endsAt` earlier than its `startsAt`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::types::Timestamp;
pub use crate::types::WallShift;

/// Converts the runtime's monotonic instants into [`Timestamp`]s.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: tokio::time::Instant,
    /// The same moment on std's monotonic clock, which tokio's paused time in tests does
    /// not move: [`Clock::wall_shift`] compares the system clock with it, so a test that
    /// jumps tokio's clock ahead is not a step of the system clock.
    start_std: std::time::Instant,
    start_wall_ms: u64,
}

impl Clock {
    /// Anchors the monotonic clock to the wall clock now.
    pub fn start() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            start: tokio::time::Instant::now(),
            start_std: std::time::Instant::now(),
            start_wall_ms: wall.as_millis() as u64,
        }
    }

    /// Returns the timestamp of a monotonic instant.
    pub fn at(&self, instant: tokio::time::Instant) -> Timestamp {
        let elapsed = instant.saturating_duration_since(self.start);
        Timestamp::from_millis(self.start_wall_ms + elapsed.as_millis() as u64)
    }

    /// Returns the timestamp of the present moment.
    pub fn now(&self) -> Timestamp {
        self.at(tokio::time::Instant::now())
    }

    /// Returns how far the wall clock is now from the anchored one: zero unless the system
    /// clock was stepped (or slewed) since start.
    pub fn wall_shift(&self) -> WallShift {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        let monotonic = self.start_wall_ms + self.start_std.elapsed().as_millis() as u64;
        WallShift {
            ms: wall - monotonic as i64,
        }
    }

    /// Returns the monotonic instant of a timestamp (for sleeping until it).
    pub fn instant_of(&self, at: Timestamp) -> tokio::time::Instant {
        let elapsed = at.as_millis().saturating_sub(self.start_wall_ms);
        self.start + std::time::Duration::from_millis(elapsed)
    }
}

/// A change of the wall clock against the monotonic one this large is a step, and logged.
pub const STEP: Duration = Duration::from_secs(2);

/// Logs each step of the system clock once: remembers the shift last reported. (The
/// monitor makes a reported shift the process's, [`WallShift::set_current`]; this stays
/// pure so that its tests touch no process-wide value.)
#[derive(Debug, Default)]
pub struct StepWatch {
    reported: WallShift,
}

impl StepWatch {
    /// Looks at the present shift; returns it (and logs it) when it moved by more than
    /// [`STEP`] since the last report.
    pub fn observe(&mut self, shift: WallShift) -> Option<WallShift> {
        if shift.ms.abs_diff(self.reported.ms) <= STEP.as_millis() as u64 {
            return None;
        }
        let step_ms = shift.ms - self.reported.ms;
        self.reported = shift;
        warn!(
            step_ms,
            wall_minus_monotonic_ms = shift.ms,
            "the system clock was stepped: timers keep the monotonic clock; times shown and sent follow the system clock"
        );
        Some(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_is_reported_once() {
        let mut watch = StepWatch::default();
        let shifts = [0, 150, -1_900, -3_600_000, -3_600_400, -3_599_000, 0, 10];
        let reported: Vec<bool> = shifts
            .iter()
            .map(|&ms| watch.observe(WallShift { ms }).is_some())
            .collect();
        assert_eq!(
            reported,
            [false, false, false, true, false, false, true, false]
        );
    }
}
