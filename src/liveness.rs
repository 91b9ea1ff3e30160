//! Progress signals that every task writes and the watchdog and `/-/healthy` read, so that
//! a stuck or dead loop is seen. It sits below the tasks, like the metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Progress of one loop: the time of its last beat.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Starts as if it had just beaten.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records progress now.
    pub fn beat(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns how long since the last beat.
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

/// A loop the watchdog watches, with how long it may stay silent.
#[derive(Clone, Debug)]
pub struct Watched {
    /// Its name, for the log.
    pub name: &'static str,
    pub heartbeat: Heartbeat,
    /// The longest silence that is still progress.
    pub max_silence: Duration,
}

/// Returns the first loop silent for too long, if any (pure: silences are passed in).
pub fn stalled(loops: &[(&'static str, Duration, Duration)]) -> Option<&'static str> {
    loops
        .iter()
        .find(|(_, silence, max)| silence > max)
        .map(|(name, _, _)| *name)
}
