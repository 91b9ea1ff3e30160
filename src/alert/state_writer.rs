//! Writes the state file from a thread of its own, so that a slow disk can delay a save but
//! never the monitor. Saves that pile up while one is being written coalesce: only the
//! latest state is written next. A save that fails (a full disk, a read-only remount) is
//! retried with backoff until one succeeds, always with the latest state: a page sent
//! while the disk was full must still be on disk before the next restart, or its RESOLVED
//! is never sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info};

use crate::alert::state_file::{SavedState, StateStore};
use crate::clock::Clock;
use crate::types::Timestamp;

/// The first wait before a failed save is tried again; it doubles up to [`LAST_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// The longest wait between two tries of a failing save.
pub const LAST_RETRY: Duration = Duration::from_secs(15);

/// Whether the state reaches the disk: what `/health`, `/status` and the metrics say.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaveHealth {
    /// When the first of the saves failing now failed; `None` while saves succeed.
    pub unsaved_since: Option<Timestamp>,
    /// What the last failed save said, while saves fail.
    pub last_error: Option<String>,
    /// Failed saves since start.
    pub failures: u64,
}

impl SaveHealth {
    /// The line `/health` adds while the state cannot be saved (the status code stays the
    /// verdict's: SiteScope pages on tunnels, the alert `StateNotSaved` on the disk).
    pub fn health_line(&self) -> Option<String> {
        let since = self.unsaved_since?;
        Some(format!(
            "STATE NOT SAVED since {since}: {}; a restart now would forget the pages sent since",
            self.last_error.as_deref().unwrap_or("the save fails")
        ))
    }
}

#[derive(Default)]
struct Slot {
    pending: Option<SavedState>,
    submitted: u64,
    written: u64,
    closed: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
    failures: AtomicU64,
}

/// A handle on the writer thread; clones share it. The thread ends with the last handle.
#[derive(Clone)]
pub struct StateWriter {
    store: StateStore,
    shared: Arc<Shared>,
    health: watch::Receiver<SaveHealth>,
    _owner: Arc<Owner>,
}

/// Closes the slot when the last handle goes, so that the thread ends.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.slot.lock() {
            slot.closed = true;
        }
        self.0.wake.notify_all();
    }
}

impl StateWriter {
    /// Starts the writer thread for `store`; `clock` dates the failures.
    pub fn start(store: StateStore, clock: Clock) -> StateWriter {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            wake: Condvar::new(),
            failures: AtomicU64::new(0),
        });
        let (health_tx, health) = watch::channel(SaveHealth::default());
        let thread_shared = shared.clone();
        let thread_store = store.clone();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                Writer {
                    store: &thread_store,
                    shared: &thread_shared,
                    clock,
                    health: health_tx,
                }
                .run()
            })
            .expect("a thread can be started at start-up");
        StateWriter {
            store,
            _owner: Arc::new(Owner(shared.clone())),
            shared,
            health,
        }
    }

    /// Queues `state` to be written; returns at once.
    pub fn submit(&self, state: SavedState) {
        let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.pending = Some(state);
        slot.submitted += 1;
        drop(slot);
        self.shared.wake.notify_all();
    }

    /// Waits until everything submitted so far is on disk (or has failed), at most `limit`;
    /// returns whether it got there.
    pub fn flush(&self, limit: Duration) -> bool {
        let slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        let target = slot.submitted;
        let (slot, _) = self
            .shared
            .wake
            .wait_timeout_while(slot, limit, |s| s.written < target)
            .unwrap_or_else(|p| p.into_inner());
        slot.written >= target
    }

    /// Returns how many writes have failed since start.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Returns whether saves succeed now, and since when they fail.
    pub fn health(&self) -> watch::Receiver<SaveHealth> {
        self.health.clone()
    }

    /// Returns the store written to.
    pub fn store(&self) -> &StateStore {
        &self.store
    }
}

/// The writer thread's side.
struct Writer<'a> {
    store: &'a StateStore,
    shared: &'a Shared,
    clock: Clock,
    health: watch::Sender<SaveHealth>,
}

impl Writer<'_> {
    fn run(&self) {
        // The state whose save failed, with its sequence number, and when to try again.
        let mut failed: Option<(SavedState, u64)> = None;
        let mut retry_at = Instant::now();
        let mut backoff = FIRST_RETRY;
        loop {
            let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            // While saves fail, a newer state waits for the retry too: trying the disk at
            // every change would only fill the log.
            loop {
                if slot.closed {
                    break;
                }
                match &failed {
                    None if slot.pending.is_some() => break,
                    None => {
                        slot = self
                            .shared
                            .wake
                            .wait(slot)
                            .unwrap_or_else(|p| p.into_inner())
                    }
                    Some(_) => {
                        let now = Instant::now();
                        if now >= retry_at {
                            break;
                        }
                        slot = self
                            .shared
                            .wake
                            .wait_timeout(slot, retry_at - now)
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                }
            }
            let closing = slot.closed;
            let (state, seq) = match (slot.pending.take(), failed.take()) {
                (Some(state), _) => (state, slot.submitted),
                (None, Some(retry)) => retry,
                (None, None) => return,
            };
            drop(slot);
            match self.store.save(&state) {
                Ok(()) => {
                    backoff = FIRST_RETRY;
                    self.saved();
                }
                Err(e) => {
                    self.failed(&e);
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(LAST_RETRY);
                    failed = Some((state, seq));
                }
            }
            let mut slot = self.shared.slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.written = slot.written.max(seq);
            drop(slot);
            self.shared.wake.notify_all();
            if closing && failed.is_some() {
                // One last try was made at shutdown; there is no one left to wait for more.
                return;
            }
        }
    }

    fn failed(&self, e: &std::io::Error) {
        let failures = self.shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.clock.now();
        let first = self.health.borrow().unsaved_since.is_none();
        if first {
            // Once per episode: the retries are counted in the metric, not logged.
            error!(path = %self.store.path().display(), error = %e, "cannot save the alert state; retrying with backoff until it succeeds (pages already queued stay in memory)");
        }
        self.health.send_modify(|h| {
            h.unsaved_since.get_or_insert(now);
            h.last_error = Some(e.to_string());
            h.failures = failures;
        });
    }

    fn saved(&self) {
        let since = self.health.borrow().unsaved_since;
        if let Some(since) = since {
            info!(path = %self.store.path().display(), %since, failures = self.shared.failures.load(Ordering::Relaxed), "the alert state is saved again");
            self.health.send_modify(|h| {
                h.unsaved_since = None;
                h.last_error = None;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::state_file::{Loaded, VERSION};
    use crate::types::Timestamp;

    fn state(n: u64) -> SavedState {
        SavedState {
            version: VERSION,
            saved_at: Some(Timestamp::from_secs(n)),
            ..SavedState::default()
        }
    }

    #[test]
    fn the_latest_state_reaches_the_disk_and_flush_waits_for_it() {
        let dir = std::env::temp_dir().join(format!("tk-writer-{}", std::process::id()));
        let store = StateStore::open(&dir).unwrap();
        let writer = StateWriter::start(store.clone(), Clock::start());
        for n in 1..=50 {
            writer.submit(state(n));
        }
        assert!(writer.flush(Duration::from_secs(10)));
        match store.load(Timestamp::from_secs(0)) {
            Loaded::State(s) => assert_eq!(s.saved_at, Some(Timestamp::from_secs(50))),
            other => panic!("expected the saved state, got {other:?}"),
        }
        assert_eq!(writer.failures(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_save_is_retried_with_the_latest_state_until_it_succeeds() {
        let dir = std::env::temp_dir().join(format!("tk-writer-retry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = StateStore::open(&dir).unwrap();
        // A directory where the file goes: every save fails until it is gone.
        let blocker = store.path().join("blocker");
        std::fs::create_dir_all(&blocker).unwrap();
        let writer = StateWriter::start(store.clone(), Clock::start());
        writer.submit(state(1));
        assert!(writer.flush(Duration::from_secs(5)));
        let health = writer.health().borrow().clone();
        assert!(health.unsaved_since.is_some(), "{health:?}");
        assert!(health
            .health_line()
            .unwrap()
            .starts_with("STATE NOT SAVED since "));
        writer.submit(state(2));
        std::fs::remove_dir_all(store.path()).unwrap();
        // No further submit: the retry alone must bring the latest state to the disk.
        let start = Instant::now();
        while writer.health().borrow().unsaved_since.is_some()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(writer.health().borrow().unsaved_since, None, "healed");
        match store.load(Timestamp::from_secs(0)) {
            Loaded::State(s) => assert_eq!(s.saved_at, Some(Timestamp::from_secs(2))),
            other => panic!("expected the saved state, got {other:?}"),
        }
        assert!(writer.failures() >= 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
