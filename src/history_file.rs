//! The smoke charts' history on disk: `history.bin` in `state_dir`, read and adopted once
//! at start, and saved by a thread of its own once a minute, so that a slow disk never
//! holds up the monitor (it holds the history's lock only to copy the rings). Each save is
//! written aside, fsynced, renamed over the file and the directory fsynced: a crash, even
//! a `kill -9` mid-write, leaves the old file or the new one. The file form and what is
//! adopted are the core's (`tunnelkeeper_core::history::disk`).

pub mod store;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::history::disk::{decode, encode, FILE_NAME};
use crate::history::SharedHistory;
use crate::types::Timestamp;

/// Test-only: the seconds between saves instead of 60 (the integration tests restart the
/// daemon without waiting a minute). Not for production: each save rewrites the file.
pub const SAVE_SECS_ENV: &str = "TUNNELKEEPER_HISTORY_SAVE_SECS";
/// How often the history is saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// Reads the file in `dir`, if there is one, into `history`. A file that cannot be read
/// or decoded is renamed aside (`history.bin.corrupt-MS`) with a warning: the daemon
/// starts with empty charts, never fails for it.
pub fn restore(dir: &Path, history: &SharedHistory, now: Timestamp) {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return set_aside(&path, now, &e.to_string()),
    };
    let saved = match decode(&bytes) {
        Ok(saved) => saved,
        Err(e) => return set_aside(&path, now, &e.to_string()),
    };
    let restored = history
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .adopt(saved, now);
    info!(
        path = %path.display(),
        saved_at = %restored.saved_at,
        series_adopted = restored.series_adopted,
        series_dropped = restored.series_dropped,
        minutes_restored = restored.minutes_restored,
        minutes_not_running = restored.minutes_not_running,
        "history read"
    );
}

fn set_aside(path: &Path, now: Timestamp, why: &str) {
    let moved_to = PathBuf::from(format!("{}.corrupt-{}", path.display(), now.as_millis()));
    match fs::rename(path, &moved_to) {
        Ok(()) => {
            warn!(path = %path.display(), moved_to = %moved_to.display(), error = why, "the history file cannot be read: set aside, the charts start empty")
        }
        Err(e) => {
            error!(path = %path.display(), error = why, rename_error = %e, "the history file cannot be read nor moved aside: the charts start empty")
        }
    }
}

/// The thread that saves the history; dropping every handle stops it after a last save.
#[derive(Clone)]
pub struct HistorySaver {
    requests: mpsc::Sender<mpsc::Sender<()>>,
}

impl HistorySaver {
    /// Starts saving `history` to `dir` every [`SAVE_EVERY`] (or [`SAVE_SECS_ENV`]).
    pub fn start(dir: &Path, history: SharedHistory, clock: Clock) -> HistorySaver {
        let every = std::env::var(SAVE_SECS_ENV)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(SAVE_EVERY, Duration::from_secs);
        let path = dir.join(FILE_NAME);
        let (requests, rx) = mpsc::channel::<mpsc::Sender<()>>();
        std::thread::Builder::new()
            .name("history-saver".into())
            .spawn(move || loop {
                let done = match rx.recv_timeout(every) {
                    Ok(done) => Some(done),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        save(&path, &history, &clock);
                        return;
                    }
                };
                save(&path, &history, &clock);
                if let Some(done) = done {
                    let _ = done.send(());
                }
            })
            .expect("a thread can be started at start-up");
        HistorySaver { requests }
    }

    /// Saves now and waits for it, at most `limit` (at shutdown: a clean restart loses
    /// no closed minute); returns whether it got there.
    pub fn save_now(&self, limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        self.requests.send(tx).is_ok() && rx.recv_timeout(limit).is_ok()
    }
}

fn save(path: &Path, history: &SharedHistory, clock: &Clock) {
    // Only the copy is made under the lock; keys, encoding and IO come after.
    let (rings, saved_at) = {
        let history = history.lock().unwrap_or_else(|p| p.into_inner());
        (history.rings(), clock.now())
    };
    let bytes = encode(&rings.into_saved(saved_at));
    match write_aside_and_rename(path, &bytes) {
        Ok(()) => debug!(path = %path.display(), bytes = bytes.len(), "history saved"),
        Err(e) => error!(path = %path.display(), error = %e, "the history cannot be saved"),
    }
}

/// Writes the file aside and renames it over the old one: a crash leaves one or the other.
fn write_aside_and_rename(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
