//! The ring files of the history in `state_dir` (layout: `tunnelkeeper_core::history::ring`):
//! opened at start for the config's series, adopting what a file from another config holds
//! by identity (its blocks rewritten once into the new columns, aside and renamed), setting
//! aside with a warning what cannot be read. Steady state is one `pwrite` of one block per
//! closed minute (and one per coarser window closing), and a page reads one series with one
//! small `pread` per point. A `history.bin` left by the build before (one snapshot of
//! the last six hours) is carried over into the rings once, then removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use tracing::{info, warn};

use crate::history::chart::RingSource;
use crate::history::disk::FILE_NAME as OLD_FILE_NAME;
use crate::history::ring::{
    check_file_header, consolidate_window, decode_block, decode_slot, encode_block,
    encode_block_header, encode_file_header, encode_slots, remap_block, Geometry, Ring,
    SeriesTable, FILE_HEADER_BYTES, SLOT_BYTES, TABLE_FILE_NAME,
};
use crate::history::MinuteSummary;

/// Columns consolidated at a time: 16 KB of each minute block read.
const CHUNK_COLUMNS: usize = 1_024;

/// What opening the store found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Series of this config found in the files (by identity).
    pub series_adopted: usize,
    /// Series in the files that match nothing of this config.
    pub series_dropped: usize,
    /// The last minute written before this start, if any.
    pub last_written: Option<u32>,
    /// Minutes of the hour before the start the minute ring holds.
    pub minutes_last_hour: u32,
}

/// The open ring files and the series table they were written for.
#[derive(Debug)]
pub struct RingStore {
    dir: PathBuf,
    table: SeriesTable,
    files: Vec<(Ring, File)>,
}

impl RingStore {
    /// Opens (or creates) the rings in `dir` for the series `keys` at a start in
    /// `now_minute`, and notes the minutes since the last one written as "daemon not
    /// running".
    pub fn open(dir: &Path, keys: Vec<String>, now_minute: u32) -> io::Result<(RingStore, Opened)> {
        Self::open_for(dir, keys, now_minute, true)
    }

    /// Reopens the rings in `dir` for the series of a reloaded config (the daemon kept
    /// running: nothing is marked).
    pub fn refit(dir: &Path, keys: Vec<String>, now_minute: u32) -> io::Result<RingStore> {
        Self::open_for(dir, keys, now_minute, false).map(|(store, _)| store)
    }

    fn open_for(
        dir: &Path,
        keys: Vec<String>,
        now_minute: u32,
        start: bool,
    ) -> io::Result<(RingStore, Opened)> {
        let table_path = dir.join(TABLE_FILE_NAME);
        let old = match fs::read(&table_path) {
            Ok(bytes) => match SeriesTable::decode(&bytes) {
                Ok(table) => Some(table),
                Err(e) => {
                    set_aside(&table_path, &e.to_string());
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut table = SeriesTable {
            keys,
            not_running: old
                .as_ref()
                .map(|t| t.not_running.clone())
                .unwrap_or_default(),
        };
        let columns = old.as_ref().map(|o| o.columns_for(&table.keys));
        let adopted = columns.iter().flatten().filter(|c| c.is_some()).count();
        let opened_series = old.as_ref().map_or(0, |o| o.keys.len());
        finish_or_undo_refit(dir, old.as_ref());
        let geometry = |ring| Geometry {
            ring,
            series: table.keys.len() as u32,
        };
        let files = match (&old, &columns) {
            (Some(old), Some(columns)) if old.keys != table.keys => {
                // Each ring rewritten aside, then the new table renamed in (the commit
                // point: a start after a crash before it drops the rewrites, one after it
                // finishes them), then the rings renamed over.
                let mut rewritten = Vec::new();
                for ring in Ring::ALL {
                    let path = dir.join(ring.file_name());
                    rewritten.push(rewrite_aside(
                        &path,
                        old,
                        columns,
                        geometry(ring),
                        table.hash(),
                    )?);
                }
                write_aside_and_rename(&table_path, &table.encode())?;
                (Ring::ALL.into_iter().zip(rewritten))
                    .map(|(ring, tmp)| {
                        let path = dir.join(ring.file_name());
                        rename_synced(&tmp, &path)?;
                        Ok((ring, OpenOptions::new().read(true).write(true).open(path)?))
                    })
                    .collect::<io::Result<Vec<_>>>()?
            }
            (Some(old), _) => (Ring::ALL.into_iter())
                .map(|ring| {
                    let path = dir.join(ring.file_name());
                    Ok((ring, open_checked(&path, geometry(ring), old.hash())?))
                })
                .collect::<io::Result<Vec<_>>>()?,
            _ => (Ring::ALL.into_iter())
                .map(|ring| {
                    let path = dir.join(ring.file_name());
                    if path.exists() {
                        set_aside(&path, "no series table says what its columns hold");
                    }
                    Ok((ring, create(&path, geometry(ring), table.hash())?))
                })
                .collect::<io::Result<Vec<_>>>()?,
        };
        let mut store = RingStore {
            dir: dir.to_path_buf(),
            table: SeriesTable {
                keys: table.keys.clone(),
                not_running: Vec::new(),
            },
            files,
        };
        let mut opened = Opened {
            series_adopted: adopted,
            series_dropped: opened_series.saturating_sub(adopted),
            last_written: None,
            minutes_last_hour: 0,
        };
        let old_file = dir.join(OLD_FILE_NAME);
        let mut carried = false;
        if old.is_none() && start {
            if let Some((adopted, dropped)) = store.carry_over(&old_file)? {
                (opened.series_adopted, opened.series_dropped) = (adopted, dropped);
                carried = true;
            }
        }
        opened.last_written = store.last_written(now_minute);
        opened.minutes_last_hour = store.minutes_held(now_minute.saturating_sub(60), now_minute);
        match opened.last_written {
            Some(last) if start => table.add_not_running(last + 1, now_minute, now_minute),
            _ => table.add_not_running(1, 0, now_minute), // only forgets old spans
        }
        write_aside_and_rename(&table_path, &table.encode())?;
        if carried {
            // Only now: the table that says what the rings' columns hold is on disk.
            fs::remove_file(&old_file)?;
        }
        store.table = table;
        Ok((store, opened))
    }

    /// Returns the series table (keys, not-running spans).
    pub fn table(&self) -> &SeriesTable {
        &self.table
    }

    fn file(&self, ring: Ring) -> &File {
        &self
            .files
            .iter()
            .find(|(r, _)| *r == ring)
            .expect("every ring is open")
            .1
    }

    fn geometry(&self, ring: Ring) -> Geometry {
        Geometry {
            ring,
            series: self.table.keys.len() as u32,
        }
    }

    /// Writes the block of the window starting at `first` (one `pwrite`).
    pub fn write_block(
        &self,
        ring: Ring,
        first: u32,
        slots: &[Option<MinuteSummary>],
    ) -> io::Result<()> {
        let g = self.geometry(ring);
        self.file(ring)
            .write_all_at(&encode_block(first, slots), g.block_offset(first))
    }

    /// Reads every column of the window starting at `first` (`None` per column torn,
    /// damaged or of another window).
    pub fn read_block(&self, ring: Ring, first: u32) -> Vec<Option<MinuteSummary>> {
        let g = self.geometry(ring);
        let mut bytes = vec![0u8; g.block_bytes() as usize];
        let read = read_at_most(self.file(ring), &mut bytes, g.block_offset(first));
        decode_block(&bytes[..read], first)
    }

    /// Reads one series (column `column`) at the windows starting at `firsts`: one small
    /// read per point.
    pub fn read_series(
        &self,
        ring: Ring,
        column: u32,
        firsts: &[u32],
    ) -> Vec<Option<MinuteSummary>> {
        let (g, file) = (self.geometry(ring), self.file(ring));
        (firsts.iter())
            .map(|&first| {
                let mut slot = [0u8; SLOT_BYTES];
                let read = read_at_most(file, &mut slot, g.slot_offset(first, column));
                // An empty slot (a column with nothing that minute) reads as nothing.
                decode_slot(&slot[..read], first).filter(|s| s.sent > 0 || s.marks != 0)
            })
            .collect()
    }

    /// Returns the column of the series `key`.
    pub fn column_of(&self, key: &str) -> Option<u32> {
        self.table
            .keys
            .iter()
            .position(|k| k == key)
            .map(|c| c as u32)
    }

    /// Writes the closed `minute`'s block, and the block of each coarser window it
    /// closes ([`RingStore::close_windows`]); returns the rings written.
    pub fn close_minute(
        &self,
        minute: u32,
        slots: &[Option<MinuteSummary>],
    ) -> io::Result<Vec<Ring>> {
        self.write_block(Ring::Minutes, minute, slots)?;
        let mut written = vec![Ring::Minutes];
        written.extend(self.close_windows(minute)?);
        Ok(written)
    }

    /// Writes the block of each coarser window ending with `minute`, consolidated from
    /// that window's minute blocks; returns the rings written. Done a chunk of columns at
    /// a time: a fifteen-minute window of 10,000 series read whole was 6 MB, which the
    /// allocator kept once used.
    pub fn close_windows(&self, minute: u32) -> io::Result<Vec<Ring>> {
        let columns = self.table.keys.len();
        let mut written = Vec::new();
        for ring in Ring::closed_by(minute) {
            let first = minute + 1 - ring.step_minutes();
            let g = self.geometry(ring);
            let file = self.file(ring);
            for start in (0..columns).step_by(CHUNK_COLUMNS) {
                let chunk = start..(start + CHUNK_COLUMNS).min(columns);
                let minutes: Vec<Vec<Option<MinuteSummary>>> = (first..=minute)
                    .map(|m| self.read_columns(Ring::Minutes, m, chunk.clone()))
                    .collect();
                let window = consolidate_window(first, &minutes, chunk.len());
                file.write_all_at(
                    &encode_slots(first, &window),
                    g.slot_offset(first, start as u32),
                )?;
            }
            file.write_all_at(&encode_block_header(first, columns), g.block_offset(first))?;
            written.push(ring);
        }
        Ok(written)
    }

    /// Reads the slots of `columns` in the block of the window starting at `first`.
    fn read_columns(
        &self,
        ring: Ring,
        first: u32,
        columns: std::ops::Range<usize>,
    ) -> Vec<Option<MinuteSummary>> {
        let g = self.geometry(ring);
        let mut bytes = vec![0u8; columns.len() * SLOT_BYTES];
        let offset = g.slot_offset(first, columns.start as u32);
        let read = read_at_most(self.file(ring), &mut bytes, offset);
        (bytes[..read].chunks_exact(SLOT_BYTES))
            .map(|slot| decode_slot(slot, first))
            .collect()
    }

    /// Flushes the rings written to the disk (data only: their size never changes).
    pub fn sync(&self, rings: &[Ring]) -> io::Result<()> {
        rings.iter().try_for_each(|&r| self.file(r).sync_data())
    }

    /// The minutes whose blocks the minute ring holds.
    fn minute_blocks(&self) -> Vec<u32> {
        let g = self.geometry(Ring::Minutes);
        let file = self.file(Ring::Minutes);
        (0..Ring::Minutes.slots())
            .filter_map(|i| {
                let mut header = [0u8; 16];
                let offset = FILE_HEADER_BYTES as u64 + u64::from(i) * g.block_bytes();
                let read = read_at_most(file, &mut header, offset);
                crate::history::ring::block_first_minute(&header[..read])
            })
            .collect()
    }

    /// The newest minute block written at or before `now_minute`.
    pub fn last_written(&self, now_minute: u32) -> Option<u32> {
        (self.minute_blocks().into_iter())
            .filter(|&m| m <= now_minute)
            .max()
    }

    /// How many minutes in `from..to` the minute ring holds.
    fn minutes_held(&self, from: u32, to: u32) -> u32 {
        (self.minute_blocks().into_iter())
            .filter(|m| (from..to).contains(m))
            .count() as u32
    }

    /// Writes the minutes and windows of `history.bin` (the build before's snapshot) into
    /// the new rings, the quarter-hour ring consolidated from the windows (the caller
    /// removes it once the table is written); returns the series adopted and dropped. One
    /// that cannot be read is set aside.
    fn carry_over(&self, path: &Path) -> io::Result<Option<(usize, usize)>> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                set_aside(path, &e.to_string());
                return Ok(None);
            }
        };
        let saved = match crate::history::disk::decode(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                set_aside(path, &e.to_string());
                return Ok(None);
            }
        };
        let columns = self.table.keys.len();
        let mut minutes: BTreeMap<u32, Vec<Option<MinuteSummary>>> = BTreeMap::new();
        let mut windows: BTreeMap<u32, Vec<Option<MinuteSummary>>> = BTreeMap::new();
        let mut adopted = 0;
        for series in &saved.series {
            let Some(column) = self.column_of(&series.key) else {
                continue;
            };
            adopted += 1;
            for (blocks, summaries) in [
                (&mut minutes, &series.minutes),
                (&mut windows, &series.windows),
            ] {
                for s in summaries {
                    blocks
                        .entry(s.minute)
                        .or_insert_with(|| vec![None; columns])[column as usize] = Some(*s);
                }
            }
        }
        for (minute, slots) in &minutes {
            self.write_block(Ring::Minutes, *minute, slots)?;
        }
        let mut quarters: BTreeMap<u32, Vec<Vec<Option<MinuteSummary>>>> = BTreeMap::new();
        for (first, slots) in &windows {
            self.write_block(Ring::FiveMinutes, *first, slots)?;
            let quarter = first / 15 * 15;
            quarters.entry(quarter).or_default().push(slots.clone());
        }
        for (first, parts) in &quarters {
            self.write_block(
                Ring::QuarterHours,
                *first,
                &consolidate_window(*first, parts, columns),
            )?;
        }
        self.sync(&Ring::ALL)?;
        info!(path = %path.display(), series_adopted = adopted, minutes = minutes.len(), "the history of the build before was carried over into the ring files");
        Ok(Some((adopted, saved.series.len() - adopted)))
    }

    /// Opens the rings in `dir` read-only (a test's way to make every write fail).
    #[cfg(test)]
    pub(crate) fn open_read_only(dir: &Path) -> io::Result<RingStore> {
        let table = SeriesTable::decode(&fs::read(dir.join(TABLE_FILE_NAME))?)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let files = (Ring::ALL.into_iter())
            .map(|ring| Ok((ring, File::open(dir.join(ring.file_name()))?)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(RingStore {
            dir: dir.to_path_buf(),
            table,
            files,
        })
    }

    /// The directory the rings are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The page's charts read the store one slot per point (`history::chart::points`).
impl RingSource for RingStore {
    fn read(&self, ring: Ring, key: &str, firsts: &[u32]) -> Vec<Option<MinuteSummary>> {
        match self.column_of(key) {
            Some(column) => self.read_series(ring, column, firsts),
            None => vec![None; firsts.len()],
        }
    }

    fn not_running(&self) -> Vec<(u32, u32)> {
        self.table.not_running.clone()
    }
}

/// Reads as much of `buf` as the file holds there (a truncated file reads short).
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

/// Opens a ring file written for `table_hash` in this shape; one that is not is set
/// aside and a new one made. A file cut short is extended (its lost blocks read as empty).
fn open_checked(path: &Path, geometry: Geometry, table_hash: u64) -> io::Result<File> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create(path, geometry, table_hash),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; FILE_HEADER_BYTES];
    let read = read_at_most(&file, &mut header, 0);
    if let Err(e) = check_file_header(&header[..read], geometry, table_hash) {
        drop(file);
        set_aside(path, &e.to_string());
        return create(path, geometry, table_hash);
    }
    if file.metadata()?.len() < geometry.file_bytes() {
        file.set_len(geometry.file_bytes())?;
    }
    Ok(file)
}

/// Makes an empty ring file (sparse: blocks cost disk once written).
fn create(path: &Path, geometry: Geometry, table_hash: u64) -> io::Result<File> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = File::create(&tmp)?;
    file.write_all(&encode_file_header(geometry, table_hash))?;
    file.set_len(geometry.file_bytes())?;
    file.sync_all()?;
    drop(file);
    rename_synced(&tmp, path)?;
    OpenOptions::new().read(true).write(true).open(path)
}

/// Rewrites a ring file of the `old` table into the columns of the new one, aside
/// (`.tmp`, synced); returns where. One that cannot be read is set aside and an empty
/// one made aside instead.
fn rewrite_aside(
    path: &Path,
    old: &SeriesTable,
    columns: &[Option<u32>],
    geometry: Geometry,
    table_hash: u64,
) -> io::Result<PathBuf> {
    let old_geometry = Geometry {
        series: old.keys.len() as u32,
        ..geometry
    };
    let source = match File::open(path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let source = source.filter(|source| {
        let mut header = [0u8; FILE_HEADER_BYTES];
        let read = read_at_most(source, &mut header, 0);
        match check_file_header(&header[..read], old_geometry, old.hash()) {
            Ok(()) => true,
            Err(e) => {
                set_aside(path, &e.to_string());
                false
            }
        }
    });
    let tmp = aside_path(path);
    let mut out = File::create(&tmp)?;
    out.write_all(&encode_file_header(geometry, table_hash))?;
    out.set_len(geometry.file_bytes())?;
    if let Some(source) = source {
        let mut block = vec![0u8; old_geometry.block_bytes() as usize];
        for index in 0..geometry.ring.slots() {
            let offset = FILE_HEADER_BYTES as u64 + u64::from(index) * old_geometry.block_bytes();
            let read = read_at_most(&source, &mut block, offset);
            if let Some(moved) = remap_block(&block[..read], columns) {
                let at = FILE_HEADER_BYTES as u64 + u64::from(index) * geometry.block_bytes();
                out.write_all_at(&moved, at)?;
            }
        }
    }
    out.sync_all()?;
    Ok(tmp)
}

/// A ring rewritten aside by a refit that did not finish: renamed in when the table
/// that was committed is the one it was written for, removed when not (the refit died
/// before its commit, and the old rings and table stand).
fn finish_or_undo_refit(dir: &Path, table: Option<&SeriesTable>) {
    for ring in Ring::ALL {
        let path = dir.join(ring.file_name());
        let tmp = aside_path(&path);
        let Ok(file) = File::open(&tmp) else {
            continue;
        };
        let mut header = [0u8; FILE_HEADER_BYTES];
        let read = read_at_most(&file, &mut header, 0);
        let whole = table.is_some_and(|t| {
            let geometry = Geometry {
                ring,
                series: t.keys.len() as u32,
            };
            let complete = file
                .metadata()
                .is_ok_and(|m| m.len() == geometry.file_bytes());
            complete && check_file_header(&header[..read], geometry, t.hash()).is_ok()
        });
        drop(file);
        let done = if whole {
            rename_synced(&tmp, &path).map(|()| "finished")
        } else {
            fs::remove_file(&tmp).map(|()| "undone")
        };
        match done {
            Ok(what) => {
                info!(path = %path.display(), "a refit of the history files cut short was {what}")
            }
            Err(e) => {
                warn!(path = %tmp.display(), error = %e, "a history file left aside cannot be cleared")
            }
        }
    }
}

fn aside_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.tmp", path.display()))
}

fn set_aside(path: &Path, why: &str) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let moved_to = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    match fs::rename(path, &moved_to) {
        Ok(()) => {
            warn!(path = %path.display(), moved_to = %moved_to.display(), error = why, "a history file cannot be read: set aside")
        }
        Err(e) => {
            warn!(path = %path.display(), error = why, rename_error = %e, "a history file cannot be read nor moved aside")
        }
    }
}

fn rename_synced(tmp: &Path, path: &Path) -> io::Result<()> {
    fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes `bytes` aside and renames it over `path`: a crash leaves one or the other.
pub fn write_aside_and_rename(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    rename_synced(&tmp, path)
}

#[cfg(test)]
mod tests;
