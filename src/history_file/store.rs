//! The ring files of the history in `state_dir` (layout: `tunnelkeeper_core::history::ring`):
//! opened at start for the config's series, adopting what a file from another config holds
//! by identity (its blocks rewritten once into the new columns, aside and renamed), setting
//! aside with a warning what cannot be read. Steady state is one `pwrite` of one block per
//! closed minute (and one per coarser window closing), and a page reads one series with one
//! small `pread` per point. Not yet wired into the daemon (see `history_file`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::history::chart::RingSource;
use crate::history::ring::{
    check_file_header, consolidate_window, decode_block, decode_slot, encode_block,
    encode_file_header, remap_block, Geometry, Ring, SeriesTable, FILE_HEADER_BYTES, SLOT_BYTES,
    TABLE_FILE_NAME,
};
use crate::history::MinuteSummary;

/// What opening the store found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Series of this config found in the files (by identity).
    pub series_adopted: usize,
    /// Series in the files that match nothing of this config.
    pub series_dropped: usize,
    /// The last minute written before this start, if any.
    pub last_written: Option<u32>,
}

/// The open ring files and the series table they were written for.
#[derive(Debug)]
pub struct RingStore {
    dir: PathBuf,
    table: SeriesTable,
    files: Vec<(Ring, File)>,
}

impl RingStore {
    /// Opens (or creates) the rings in `dir` for the series `keys` at `now_minute`, and
    /// notes the minutes since the last one written as "daemon not running".
    pub fn open(dir: &Path, keys: Vec<String>, now_minute: u32) -> io::Result<(RingStore, Opened)> {
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
        let mut files = Vec::new();
        for ring in Ring::ALL {
            let path = dir.join(ring.file_name());
            let geometry = Geometry {
                ring,
                series: table.keys.len() as u32,
            };
            let file = match (&old, &columns) {
                (Some(old), Some(columns)) if old.keys != table.keys => {
                    rewrite(&path, old, columns, geometry, table.hash())?
                }
                (Some(old), _) => open_checked(&path, geometry, old.hash())?,
                _ => {
                    if path.exists() {
                        set_aside(&path, "no series table says what its columns hold");
                    }
                    create(&path, geometry, table.hash())?
                }
            };
            files.push((ring, file));
        }
        let mut store = RingStore {
            dir: dir.to_path_buf(),
            table: SeriesTable::default(),
            files,
        };
        let last_written = store.last_written(now_minute);
        if let Some(last) = last_written {
            table.add_not_running(last + 1, now_minute, now_minute);
        } else {
            table.add_not_running(now_minute, now_minute, now_minute);
        }
        write_aside_and_rename(&table_path, &table.encode())?;
        store.table = table;
        let opened = Opened {
            series_adopted: adopted,
            series_dropped: opened_series.saturating_sub(adopted),
            last_written,
        };
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
                decode_slot(&slot[..read], first)
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
    /// closes, consolidated from that window's minute blocks; returns the rings written.
    pub fn close_minute(
        &self,
        minute: u32,
        slots: &[Option<MinuteSummary>],
    ) -> io::Result<Vec<Ring>> {
        self.write_block(Ring::Minutes, minute, slots)?;
        let mut written = vec![Ring::Minutes];
        for ring in Ring::closed_by(minute) {
            let first = minute + 1 - ring.step_minutes();
            let minutes: Vec<Vec<Option<MinuteSummary>>> = (first..=minute)
                .map(|m| self.read_block(Ring::Minutes, m))
                .collect();
            let window = consolidate_window(first, &minutes, slots.len());
            self.write_block(ring, first, &window)?;
            written.push(ring);
        }
        Ok(written)
    }

    /// Flushes the rings written to the disk (data only: their size never changes).
    pub fn sync(&self, rings: &[Ring]) -> io::Result<()> {
        rings.iter().try_for_each(|&r| self.file(r).sync_data())
    }

    /// The newest minute block written at or before `now_minute`.
    fn last_written(&self, now_minute: u32) -> Option<u32> {
        let g = self.geometry(Ring::Minutes);
        let file = self.file(Ring::Minutes);
        (0..Ring::Minutes.slots())
            .filter_map(|i| {
                let mut header = [0u8; 16];
                let offset = FILE_HEADER_BYTES as u64 + u64::from(i) * g.block_bytes();
                let read = read_at_most(file, &mut header, offset);
                crate::history::ring::block_first_minute(&header[..read])
            })
            .filter(|&m| m <= now_minute)
            .max()
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

/// Rewrites a ring file of the `old` table into the columns of the new one (once, when
/// the series set changed), aside and renamed; an unreadable one is set aside.
fn rewrite(
    path: &Path,
    old: &SeriesTable,
    columns: &[Option<u32>],
    geometry: Geometry,
    table_hash: u64,
) -> io::Result<File> {
    let old_geometry = Geometry {
        series: old.keys.len() as u32,
        ..geometry
    };
    let source = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return create(path, geometry, table_hash),
        Err(e) => return Err(e),
    };
    let mut header = [0u8; FILE_HEADER_BYTES];
    let read = read_at_most(&source, &mut header, 0);
    if let Err(e) = check_file_header(&header[..read], old_geometry, old.hash()) {
        set_aside(path, &e.to_string());
        return create(path, geometry, table_hash);
    }
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut out = File::create(&tmp)?;
    out.write_all(&encode_file_header(geometry, table_hash))?;
    out.set_len(geometry.file_bytes())?;
    let mut block = vec![0u8; old_geometry.block_bytes() as usize];
    for index in 0..geometry.ring.slots() {
        let offset = FILE_HEADER_BYTES as u64 + u64::from(index) * old_geometry.block_bytes();
        let read = read_at_most(&source, &mut block, offset);
        if let Some(moved) = remap_block(&block[..read], columns) {
            let at = FILE_HEADER_BYTES as u64 + u64::from(index) * geometry.block_bytes();
            out.write_all_at(&moved, at)?;
        }
    }
    out.sync_all()?;
    drop(out);
    rename_synced(&tmp, path)?;
    OpenOptions::new().read(true).write(true).open(path)
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
