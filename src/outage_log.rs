//! The outage log on disk: `outages.jsonl` in `state_dir`, one record per line, appended
//! and fsynced by a thread of its own so that a slow disk never holds up the monitor. The
//! records (oldest first) are kept in memory too, for `/outages` and the NOC page. What
//! the file form is, what is kept and what a torn line means are the core's
//! (`tunnelkeeper_core::outage::log`); this module only reads, appends and renames.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{error, info, warn};

use tunnelkeeper_core::outage::log::{decode, encode_line, prune, should_rewrite};
use tunnelkeeper_core::outage::OutageRecord;

use crate::types::Timestamp;

/// The log's file name inside `state_dir`.
pub const FILE_NAME: &str = "outages.jsonl";

/// What the writer thread is asked to do.
enum Request {
    Record(Box<OutageRecord>),
    /// Answer once everything asked before is on disk.
    Flush(mpsc::Sender<()>),
}

/// The outage log: its records in memory, and the thread that writes them.
pub struct OutageLog {
    records: Arc<RwLock<Arc<Vec<OutageRecord>>>>,
    requests: mpsc::Sender<Request>,
}

impl OutageLog {
    /// Reads the log in `dir` (what it cannot read is skipped with a warning, or set
    /// aside when the file cannot be read at all) and starts its writer thread.
    pub fn open(dir: &Path, now: Timestamp) -> OutageLog {
        let path = dir.join(FILE_NAME);
        let (records, lines) = load(&path, now);
        info!(path = %path.display(), outages = records.len(), "outage log read");
        Self::start(Some(path), records, lines)
    }

    /// A log kept in memory only (tests of the HTTP routes).
    pub fn in_memory(records: Vec<OutageRecord>) -> OutageLog {
        let lines = records.len();
        Self::start(None, records, lines)
    }

    fn start(path: Option<PathBuf>, records: Vec<OutageRecord>, lines: usize) -> OutageLog {
        let records = Arc::new(RwLock::new(Arc::new(records)));
        let (requests, rx) = mpsc::channel();
        let shared = records.clone();
        std::thread::Builder::new()
            .name("outage-log".into())
            .spawn(move || write_loop(path.as_deref(), &shared, lines, &rx))
            .expect("a thread can be started at start-up");
        OutageLog { records, requests }
    }

    /// Queues an ended outage to be kept; returns at once.
    pub fn record(&self, record: OutageRecord) {
        if self
            .requests
            .send(Request::Record(Box::new(record)))
            .is_err()
        {
            error!("the outage log's writer has stopped: an outage record is lost");
        }
    }

    /// Returns the records, oldest first.
    pub fn records(&self) -> Arc<Vec<OutageRecord>> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until every record queued so far is written (or failed), at most `limit`;
    /// returns whether it got there.
    pub fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        self.requests.send(Request::Flush(tx)).is_ok() && rx.recv_timeout(limit).is_ok()
    }
}

/// Reads the file: the records kept, and how many lines the file holds afterwards.
fn load(path: &Path, now: Timestamp) -> (Vec<OutageRecord>, usize) {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), 0),
        Err(e) => {
            let moved_to = set_aside(path, now);
            error!(path = %path.display(), moved_to = %moved_to.display(), error = %e, "the outage log cannot be read: set aside, starting an empty one");
            return (Vec::new(), 0);
        }
    };
    // Bytes that are not UTF-8 spoil their line only.
    let decoded = decode(&String::from_utf8_lossy(&bytes));
    for (line, why) in &decoded.skipped {
        warn!(path = %path.display(), line, %why, "outage log: a line that is not a record is skipped (a torn write is the last line)");
    }
    let mut records = decoded.records;
    let pruned = prune(&mut records, now);
    let clean = decoded.skipped.is_empty() && !decoded.torn_end && pruned == 0;
    if clean {
        return (records, decoded.lines);
    }
    // A torn last line must go before the next append would join it.
    match rewrite(path, &records) {
        Ok(()) => {
            let lines = records.len();
            (records, lines)
        }
        Err(e) => {
            let moved_to = set_aside(path, now);
            error!(path = %path.display(), moved_to = %moved_to.display(), error = %e, "the outage log cannot be rewritten: set aside");
            (records, 0)
        }
    }
}

/// Moves an unusable file aside, named for when.
fn set_aside(path: &Path, now: Timestamp) -> PathBuf {
    let moved_to = path.with_extension(format!("jsonl.corrupt-{}", now.as_millis()));
    if let Err(e) = fs::rename(path, &moved_to) {
        error!(path = %path.display(), error = %e, "the outage log cannot be moved aside");
    }
    moved_to
}

fn write_loop(
    path: Option<&Path>,
    shared: &RwLock<Arc<Vec<OutageRecord>>>,
    mut lines: usize,
    requests: &mpsc::Receiver<Request>,
) {
    while let Ok(request) = requests.recv() {
        let record = match request {
            Request::Record(record) => *record,
            Request::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let line = encode_line(&record);
        // Pruned as of the newest record's end: no clock read here.
        let now = record.ended_at;
        let mut records = Vec::clone(&shared.read().unwrap_or_else(|p| p.into_inner()));
        records.retain(|r| r.id != record.id);
        records.push(record);
        prune(&mut records, now);
        let kept = records.len();
        if let Some(path) = path {
            match append(path, &line) {
                Ok(()) => lines += 1,
                Err(e) => {
                    error!(path = %path.display(), error = %e, "an outage record cannot be written to the log")
                }
            }
            if should_rewrite(lines, kept) {
                match rewrite(path, &records) {
                    Ok(()) => lines = kept,
                    Err(e) => {
                        error!(path = %path.display(), error = %e, "the outage log cannot be pruned")
                    }
                }
            }
        }
        // Shown once on disk: what /outages lists survives a kill -9.
        *shared.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(records);
    }
}

/// Appends one line and waits until it is on disk.
fn append(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_data()
}

/// Writes the whole log aside and renames it over the file: a crash leaves the old file
/// or the new, never half of one.
fn rewrite(path: &Path, records: &[OutageRecord]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    let mut file = File::create(&tmp)?;
    let text: String = records.iter().map(encode_line).collect();
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
