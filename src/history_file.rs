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
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::history::disk::{
    decode, encode_header, encode_series, file_order_keys, Checksum, CHECKSUM_BYTES, FILE_NAME,
};
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

/// Series copied under one hold of the lock: about 1.8 MB of rings, a few ms of memcpy.
const CHUNK_SERIES: usize = 1_024;

fn save(path: &Path, history: &SharedHistory, clock: &Clock) {
    match write_aside_and_rename(path, |file| stream(file, history, clock)) {
        Ok(bytes) => debug!(path = %path.display(), bytes, "history saved"),
        Err(e) => error!(path = %path.display(), error = %e, "the history cannot be saved"),
    }
}

/// Writes the file a chunk of series at a time: the lock is held only to copy a chunk,
/// and no more than a chunk is ever held in memory (a whole copy and its encoding were
/// 35 MB at 10,000 targets, kept by the allocator once used). A reload between two
/// chunks reorders the series: that save is given up, the next one comes a minute later.
fn stream(file: &mut File, history: &SharedHistory, clock: &Clock) -> std::io::Result<usize> {
    let lock = || history.lock().unwrap_or_else(|p| p.into_inner());
    let (config, count, saved_at) = {
        let history = lock();
        (
            history.config().clone(),
            history.series_count(),
            clock.now(),
        )
    };
    let keys = file_order_keys(&config);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let mut checksum = Checksum::default();
    let mut piece = Vec::with_capacity(64 * 1024);
    let mut written = 0;
    let mut put = |piece: &mut Vec<u8>, out: &mut std::io::BufWriter<&mut File>| {
        checksum.update(piece);
        written += piece.len();
        let result = out.write_all(piece);
        piece.clear();
        result
    };
    encode_header(saved_at, count, &mut piece);
    put(&mut piece, &mut out)?;
    for first in (0..count).step_by(CHUNK_SERIES) {
        let chunk = lock().rings_of(first..(first + CHUNK_SERIES).min(count));
        if !Arc::ptr_eq(chunk.config(), &config) {
            return Err(std::io::Error::other(
                "a reload changed the series during the save (the next save writes them)",
            ));
        }
        for (key, rings) in keys[first..].iter().zip(chunk.rings()) {
            encode_series(key, rings, &mut piece);
            put(&mut piece, &mut out)?;
        }
    }
    out.write_all(&checksum.finish())?;
    out.flush()?;
    Ok(written + CHECKSUM_BYTES)
}

/// Writes the file aside with `write` and renames it over the old one: a crash leaves one
/// or the other. A failed write removes what it left aside.
fn write_aside_and_rename(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        let bytes = write(&mut file)?;
        file.sync_all()?;
        Ok(bytes)
    })();
    let bytes = match result {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(bytes)
}
