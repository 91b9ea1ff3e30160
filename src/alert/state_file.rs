//! The state file: the alert engine's alerts and the outbox, saved atomically (temporary
//! file, fsync, rename, fsync of the directory) in `state_dir`, so that after a restart,
//! even a `kill -9` mid-outage, a page already sent is not sent again and a page not yet
//! delivered still is. A corrupt file is moved aside, loudly, and the daemon starts clean.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::alert::saved::{SavedState, VERSION};
use crate::types::Timestamp;

/// The file name inside `state_dir`.
pub const FILE_NAME: &str = "state.json";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("state_dir {dir}: {what}: {os_error} ({})", hint(what))]
pub struct StateDirError {
    pub dir: PathBuf,
    /// What failed.
    pub what: &'static str,
    /// What the OS said (in the message, not as a source, so that it is said once).
    pub os_error: std::io::Error,
}

/// What loading found.
#[derive(Debug)]
pub enum Loaded {
    /// No state file: a first start.
    Fresh,
    /// The saved state.
    State(SavedState),
    /// The file was unreadable; it was moved to `moved_to`.
    Corrupt {
        /// Why it could not be used.
        error: String,
        /// Where it went.
        moved_to: PathBuf,
    },
}

/// The lock file inside `state_dir`: whoever holds it is the directory's one writer.
pub const LOCK_NAME: &str = "tunnelkeeper.lock";

fn hint(what: &str) -> &'static str {
    if what == "is in use" {
        "stop the other daemon, or give this one another state_dir"
    } else {
        "set state_dir to a directory this user can write"
    }
}

/// Counts saves, for unique temporary names.
static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Takes the directory's lock, or says who holds it. Two daemons on one state directory
/// would load each other's alerts and outbox and send each other's pages.
fn lock(dir: &Path) -> Result<File, StateDirError> {
    let path = dir.join(LOCK_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|os_error| StateDirError {
            dir: dir.to_path_buf(),
            what: "its lock file cannot be opened",
            os_error,
        })?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .and_then(|()| file.sync_all())
                .map_err(|os_error| StateDirError {
                    dir: dir.to_path_buf(),
                    what: "its lock file cannot be written",
                    os_error,
                })?;
            Ok(file)
        }
        Err(fs::TryLockError::WouldBlock) => {
            let holder = fs::read_to_string(&path).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "another process".to_string(),
                pid => format!("another tunnelkeeper (pid {pid})"),
            };
            Err(StateDirError {
                dir: dir.to_path_buf(),
                what: "is in use",
                os_error: std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!(
                        "{holder} holds {LOCK_NAME}; every daemon needs a state_dir of its own"
                    ),
                ),
            })
        }
        Err(fs::TryLockError::Error(os_error)) => Err(StateDirError {
            dir: dir.to_path_buf(),
            what: "its lock cannot be taken",
            os_error,
        }),
    }
}

/// Removes the temporary files a crash mid-save left (the lock is held: no other writer can
/// be writing one), so that they do not pile up across crashes.
fn sweep_temporaries(dir: &Path) {
    let prefix = format!(".{FILE_NAME}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a temporary state file an earlier run left")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a temporary state file an earlier run left")
                }
            }
        }
    }
}

/// The state file in its directory, locked for this process.
#[derive(Clone, Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// Held (with its exclusive lock) for as long as any clone lives.
    _lock: Arc<File>,
}

impl StateStore {
    /// Creates the directory if needed and checks that it is writable.
    pub fn open(dir: &Path) -> Result<StateStore, StateDirError> {
        let err = |what, os_error| StateDirError {
            dir: dir.to_path_buf(),
            what,
            os_error,
        };
        fs::create_dir_all(dir).map_err(|e| err("cannot be created", e))?;
        let probe = dir.join(format!(".write-test-{}", std::process::id()));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"ok").and_then(|()| f.sync_all()))
            .map_err(|e| err("is not writable", e))?;
        let _ = fs::remove_file(&probe);
        let lock = lock(dir)?;
        sweep_temporaries(dir);
        Ok(StateStore {
            dir: dir.to_path_buf(),
            _lock: Arc::new(lock),
        })
    }

    /// Returns the state directory (locked for this process).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Returns the state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Loads the saved state; moves an unreadable file aside.
    pub fn load(&self, now: Timestamp) -> Loaded {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Fresh,
            Err(e) => return self.move_aside(format!("cannot read it: {e}"), now),
        };
        match serde_json::from_slice::<SavedState>(&text) {
            Ok(state) if state.version == VERSION => Loaded::State(state),
            Ok(state) => self.move_aside(
                format!("format version {} is not {VERSION}", state.version),
                now,
            ),
            Err(e) => self.move_aside(format!("not a valid state file: {e}"), now),
        }
    }

    fn move_aside(&self, error: String, now: Timestamp) -> Loaded {
        let moved_to = self
            .dir
            .join(format!("{FILE_NAME}.corrupt-{}", now.as_millis()));
        if let Err(e) = fs::rename(self.path(), &moved_to) {
            return Loaded::Corrupt {
                error: format!("{error}; moving it aside failed too: {e}"),
                moved_to: self.path(),
            };
        }
        Loaded::Corrupt { error, moved_to }
    }

    /// Writes the state atomically: a reader (or a restart) sees the old file or the new
    /// one, never a mix.
    pub fn save(&self, state: &SavedState) -> std::io::Result<()> {
        // A name of its own: a second writer (which the lock keeps out) or a crashed earlier
        // run can never leave half a file where this one renames from.
        let tmp = self.dir.join(format!(
            ".{FILE_NAME}.tmp-{}-{}",
            std::process::id(),
            SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&json)?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, self.path()));
        if let Err(e) = written {
            // A full disk leaves a file of 0 bytes at each try: it would be one more file
            // for every retry, in the very directory that is out of space.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // The rename itself is durable only once the directory is synced.
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::engine::Alert;
    use crate::alert::engine::{AlertKey, AlertState, Details};
    use crate::alert::outbox::Outbox;
    use crate::types::AlertClass;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tk-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let store = StateStore::open(&temp_dir("roundtrip")).unwrap();
        assert!(matches!(store.load(Timestamp::from_secs(1)), Loaded::Fresh));
        let state = SavedState {
            version: VERSION,
            saved_at: Some(Timestamp::from_millis(1_700_000_000_123)),
            alerts: vec![Alert {
                key: AlertKey::tunnel(AlertClass::TunnelDown, "dc", "dc-a"),
                state: AlertState::Firing {
                    fired_at: Timestamp::from_millis(1_700_000_000_456),
                    last_notified: Some(Timestamp::from_secs(1_700_000_001)),
                    cleared_at: None,
                    visible_since: None,
                    escalated_at: Some(Timestamp::from_secs(1_700_000_900)),
                },
                details: Details {
                    summary: "s".into(),
                    reason: "r".into(),
                    vpn_id: Some("vpn-1".into()),
                    severity: None,
                    since: None,
                    cause: None,
                },
            }],
            outbox: Outbox::default(),
        };
        store.save(&state).unwrap();
        match store.load(Timestamp::from_secs(2)) {
            Loaded::State(loaded) => assert_eq!(loaded, state),
            other => panic!("{other:?}"),
        }
    }

    fn temporaries(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn a_failed_save_leaves_no_temporary_file_and_open_sweeps_old_ones() {
        let dir = temp_dir("tmpfiles");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".state.json.tmp-1-7"), b"").unwrap();
        let store = StateStore::open(&dir).unwrap();
        assert_eq!(temporaries(&dir), Vec::<String>::new(), "swept at open");
        // A directory where the file goes makes the rename fail after the temporary file
        // was written, as a full disk makes the write fail after it was created.
        fs::create_dir_all(store.path().join("blocker")).unwrap();
        assert!(store.save(&SavedState::default()).is_err());
        assert_eq!(
            temporaries(&dir),
            Vec::<String>::new(),
            "removed on failure"
        );
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = temp_dir("corrupt");
        let store = StateStore::open(&dir).unwrap();
        fs::write(store.path(), b"{ not json").unwrap();
        match store.load(Timestamp::from_secs(7)) {
            Loaded::Corrupt { error, moved_to } => {
                assert!(error.contains("not a valid state file"), "{error}");
                assert_eq!(moved_to, dir.join("state.json.corrupt-7000"));
                assert!(moved_to.exists());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.load(Timestamp::from_secs(8)), Loaded::Fresh));
    }

    #[test]
    fn a_locked_directory_is_refused_until_its_holder_goes() {
        let dir = temp_dir("locked");
        let first = StateStore::open(&dir).unwrap();
        let err = StateStore::open(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "is in use: another tunnelkeeper (pid {})",
                std::process::id()
            )),
            "{err}"
        );
        drop(first);
        assert!(StateStore::open(&dir).is_ok());
    }

    #[test]
    fn an_unusable_directory_is_a_clear_error() {
        let blocker = temp_dir("blocker");
        fs::write(&blocker, b"a file, not a directory").unwrap();
        let err = StateStore::open(&blocker.join("sub"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("state_dir {}", blocker.join("sub").display())),
            "{err}"
        );
        assert!(err.contains("cannot be created"), "{err}");
    }
}
