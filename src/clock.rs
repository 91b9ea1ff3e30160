//! The daemon's clock: the runtime's monotonic instants turned into the core's
//! [`Timestamp`]s, anchored to the wall clock once at start.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::Timestamp;

/// Converts the runtime's monotonic instants into [`Timestamp`]s.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: tokio::time::Instant,
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

    /// Returns the monotonic instant of a timestamp (for sleeping until it).
    pub fn instant_of(&self, at: Timestamp) -> tokio::time::Instant {
        let elapsed = at.as_millis().saturating_sub(self.start_wall_ms);
        self.start + std::time::Duration::from_millis(elapsed)
    }
}
