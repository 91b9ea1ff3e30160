//! Writes the state file from a thread of its own, so that a slow disk can delay a save but
//! never the monitor. Saves that pile up while one is being written coalesce: only the
//! latest state is written next.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing::error;

use crate::alert::state_file::{SavedState, StateStore};

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
    /// Starts the writer thread for `store`.
    pub fn start(store: StateStore) -> StateWriter {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            wake: Condvar::new(),
            failures: AtomicU64::new(0),
        });
        let thread_shared = shared.clone();
        let thread_store = store.clone();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || write_loop(&thread_store, &thread_shared))
            .expect("a thread can be started at start-up");
        StateWriter {
            store,
            _owner: Arc::new(Owner(shared.clone())),
            shared,
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

    /// Returns the store written to.
    pub fn store(&self) -> &StateStore {
        &self.store
    }
}

fn write_loop(store: &StateStore, shared: &Shared) {
    loop {
        let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        while slot.pending.is_none() && !slot.closed {
            slot = shared.wake.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
        let Some(state) = slot.pending.take() else {
            return;
        };
        let seq = slot.submitted;
        drop(slot);
        if let Err(e) = store.save(&state) {
            shared.failures.fetch_add(1, Ordering::Relaxed);
            error!(path = %store.path().display(), error = %e, "cannot save the alert state; pages already queued stay in memory");
        }
        let mut slot = shared.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.written = seq;
        drop(slot);
        shared.wake.notify_all();
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
        let writer = StateWriter::start(store.clone());
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
}
