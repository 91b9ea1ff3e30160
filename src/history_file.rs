//! The smoke charts' history on disk: the ring files in `state_dir` ([`store`]), opened
//! at start for the config's series (adopting what the files hold by identity, carrying
//! over a `history.bin` of the build before), and written by a thread of its own once a
//! minute, so that a slow disk never holds up the monitor: it holds the history's lock
//! only to copy the minutes closed since ([`History::closed_minutes`]) and, once they are
//! on disk, to drop them. Pages read the files one series at a time through [`Rings`].
//!
//! [`History::closed_minutes`]: crate::history::History::closed_minutes

pub mod store;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

use tracing::{debug, error, info};

use crate::clock::Clock;
use crate::history::chart::RingSource;
use crate::history::disk::{file_order_keys, tunnel_key, ClosedMinutes, Restored};
use crate::history::ring::Ring;
use crate::history::{minute_of, MinuteSummary, SharedHistory};
use crate::types::Timestamp;
use store::RingStore;

/// Test-only: the seconds between saves instead of 60 (the integration tests restart the
/// daemon without waiting a minute).
pub const SAVE_SECS_ENV: &str = "TUNNELKEEPER_HISTORY_SAVE_SECS";
/// How often the closed minutes are written.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// The ring files as the pages read them: `None` when they could not be opened (the
/// charts then show what memory holds, the last minutes).
#[derive(Clone, Debug, Default)]
pub struct Rings(Arc<RwLock<Option<RingStore>>>);

impl Rings {
    fn store(&self) -> std::sync::RwLockReadGuard<'_, Option<RingStore>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl RingSource for Rings {
    fn read(&self, ring: Ring, key: &str, firsts: &[u32]) -> Vec<Option<MinuteSummary>> {
        match self.store().as_ref() {
            Some(store) => store.read(ring, key, firsts),
            None => vec![None; firsts.len()],
        }
    }

    fn not_running(&self) -> Vec<(u32, u32)> {
        (self.store().as_ref()).map_or_else(Vec::new, RingStore::not_running)
    }
}

/// Opens the ring files in `dir` for `history`'s series at start: notes what was read
/// back in the history (for `/status` and the page) and teaches each tunnel's RTT
/// baseline its last hour. A file that cannot be read is set aside with a warning; a
/// directory where the files cannot be made leaves the charts to memory, never fatal.
pub fn open(dir: &Path, history: &SharedHistory, now: Timestamp) -> Rings {
    let config = history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .config()
        .clone();
    let start = minute_of(now);
    let (store, opened) = match RingStore::open(dir, file_order_keys(&config), start) {
        Ok(opened) => opened,
        Err(e) => {
            error!(dir = %dir.display(), error = %e, "the history's ring files cannot be opened: the charts show only what this run records");
            return Rings::default();
        }
    };
    if let Some(last) = opened.last_written {
        let restored = Restored {
            saved_at: Timestamp::from_wall_millis((u64::from(last) + 1) * 60_000),
            series_adopted: opened.series_adopted,
            series_dropped: opened.series_dropped,
            minutes_restored: opened.minutes_last_hour,
            minutes_not_running: start.saturating_sub(last).max(1),
        };
        info!(
            dir = %dir.display(),
            written_until = %restored.saved_at,
            series_adopted = restored.series_adopted,
            series_dropped = restored.series_dropped,
            minutes_restored = restored.minutes_restored,
            minutes_not_running = restored.minutes_not_running,
            "history read"
        );
        let hour: Vec<u32> = (start.saturating_sub(Ring::Minutes.slots())..start).collect();
        let mut history = history.lock().unwrap_or_else(|p| p.into_inner());
        for id in config.tunnel_ids() {
            let minutes: Vec<MinuteSummary> =
                (store.read(Ring::Minutes, &tunnel_key(&config, id), &hour))
                    .into_iter()
                    .flatten()
                    .collect();
            history.learn_restored(id, &minutes, now);
        }
        history.set_restored(restored);
    }
    Rings(Arc::new(RwLock::new(Some(store))))
}

/// The thread that writes the closed minutes; dropping every handle stops it after a
/// last write.
#[derive(Clone)]
pub struct HistorySaver {
    requests: mpsc::Sender<mpsc::Sender<()>>,
}

impl HistorySaver {
    /// Starts writing `history`'s closed minutes into `rings` every [`SAVE_EVERY`] (or
    /// [`SAVE_SECS_ENV`]).
    pub fn start(dir: &Path, history: SharedHistory, rings: Rings, clock: Clock) -> HistorySaver {
        let every = std::env::var(SAVE_SECS_ENV)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(SAVE_EVERY, Duration::from_secs);
        let mut saver = Saver::new(dir, history, rings, clock.now());
        let (requests, rx) = mpsc::channel::<mpsc::Sender<()>>();
        std::thread::Builder::new()
            .name("history-saver".into())
            .spawn(move || loop {
                let done = match rx.recv_timeout(every) {
                    Ok(done) => Some(done),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        saver.save(clock.now());
                        return;
                    }
                };
                saver.save(clock.now());
                if let Some(done) = done {
                    let _ = done.send(());
                }
            })
            .expect("a thread can be started at start-up");
        HistorySaver { requests }
    }

    /// Writes now and waits for it, at most `limit` (at shutdown: a clean restart loses
    /// no closed minute); returns whether it got there.
    pub fn save_now(&self, limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        self.requests.send(tx).is_ok() && rx.recv_timeout(limit).is_ok()
    }
}

struct Saver {
    dir: PathBuf,
    history: SharedHistory,
    rings: Rings,
    /// The last minute whose ending windows (five and fifteen minutes) were written.
    windows_through: u32,
    /// The config whose series the files' columns are (after a refit, or found so).
    fitted_to: Option<Arc<crate::config::Config>>,
}

impl Saver {
    fn new(dir: &Path, history: SharedHistory, rings: Rings, now: Timestamp) -> Saver {
        let last_written = (rings.store().as_ref()).and_then(|s| s.last_written(minute_of(now)));
        Saver {
            dir: dir.to_path_buf(),
            history,
            rings,
            windows_through: last_written.unwrap_or(minute_of(now).saturating_sub(1)),
            fitted_to: None,
        }
    }

    /// Writes the minutes closed before `now`'s, and the windows they end.
    fn save(&mut self, now: Timestamp) {
        let closed = {
            let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            history.closed_minutes(now)
        };
        match self.write(&closed, now) {
            Ok(Some(last)) => {
                let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
                history.forget_through(last);
                debug!(minutes = closed.blocks.len(), "history written");
            }
            Ok(None) => {}
            // Kept in memory (up to an hour) and written with the next minute.
            Err(e) => {
                error!(dir = %self.dir.display(), error = %e, "the history cannot be written")
            }
        }
    }

    /// Writes `closed` into the rings (first refitting them to its config's series after
    /// a reload); returns the last minute written.
    fn write(&mut self, closed: &ClosedMinutes, now: Timestamp) -> std::io::Result<Option<u32>> {
        let last = closed.blocks.last().map(|(minute, _)| *minute);
        if !(self.fitted_to.as_ref()).is_some_and(|c| Arc::ptr_eq(c, &closed.config)) {
            let keys = file_order_keys(&closed.config);
            let stale = (self.rings.store().as_ref()).is_some_and(|s| s.table().keys != keys);
            if stale {
                let refitted = RingStore::refit(&self.dir, keys, minute_of(now))?;
                *self.rings.0.write().unwrap_or_else(|p| p.into_inner()) = Some(refitted);
                info!(dir = %self.dir.display(), "history files refitted to the reloaded config's series");
            }
            self.fitted_to = Some(closed.config.clone());
        }
        let store = self.rings.store();
        let Some(store) = store.as_ref() else {
            return Ok(None);
        };
        let mut written = Vec::new();
        for (minute, slots) in &closed.blocks {
            store.write_block(Ring::Minutes, *minute, slots)?;
            written = vec![Ring::Minutes];
        }
        // Every window that ended since the last write, even one whose last minute had
        // nothing (no block); only the last hour's can be consolidated.
        let now_minute = minute_of(now);
        let from = (self.windows_through + 1).max(now_minute.saturating_sub(Ring::Minutes.slots()));
        for minute in from..now_minute {
            for ring in store.close_windows(minute)? {
                if !written.contains(&ring) {
                    written.push(ring);
                }
            }
        }
        self.windows_through = now_minute.saturating_sub(1);
        store.sync(&written)?;
        Ok(last)
    }
}

#[cfg(test)]
mod tests;
