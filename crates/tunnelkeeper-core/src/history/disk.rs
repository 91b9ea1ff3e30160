//! The history's file form (`history.bin` in `state_dir`) and its adoption at start.
//!
//! The shell copies the rings out under the lock a chunk of series at a time
//! ([`History::rings_of`], a memcpy), and encodes and writes each chunk with no lock held
//! ([`encode_header`], [`encode_series`], [`Checksum`]), so that a save never holds a
//! second copy of every series (17 MB at 10,000 targets). Only closed minutes are saved:
//! the open minute is still changing, and leaving it out keeps the copy cheap; a restart
//! loses at most it and the minutes since the last save.
//!
//! Layout, little-endian: the magic `TKHIST\0\0`, the version (u16), when it was saved (ms
//! since the epoch, u64), the number of series (u32); per series its key (u16 length and
//! UTF-8) and its [`FINE_SLOTS`] then [`COARSE_SLOTS`] slots of [`SLOT_BYTES`] each; last,
//! an FNV-1a 64 checksum of everything before it. A series is known by its identity (see
//! [`series_keys`]), not its position, so a file from another config is adopted by the
//! same rules as a reload ([`crate::config::ReloadMapping`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{minute_of, History, Mark, Series, Slot, COARSE_MINUTES, COARSE_SLOTS, FINE_SLOTS};
use crate::config::{tunnel_identity, Config, TargetScope};
use crate::types::Timestamp;

/// The file's name inside `state_dir`.
pub const FILE_NAME: &str = "history.bin";
/// The layout version this build writes and reads.
pub const VERSION: u16 = 1;
const MAGIC: &[u8; 8] = b"TKHIST\0\0";
/// Bytes of one slot on disk: six u16 and the marks.
pub const SLOT_BYTES: usize = 13;
const HEADER_BYTES: usize = MAGIC.len() + 2 + 8 + 4;
/// Bytes of the checksum that ends the file.
pub const CHECKSUM_BYTES: usize = 8;

/// Why a file is not a history this build can read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a header and a checksum.
    #[error("{0} bytes is too short for a history file")]
    TooShort(usize),
    /// Not a history file.
    #[error("not a tunnelkeeper history file (bad magic)")]
    Magic,
    /// Written by another layout version.
    #[error("history file version {found}, this build reads version {VERSION}")]
    Version {
        /// The version found.
        found: u16,
    },
    /// The checksum does not match: torn or damaged.
    #[error("history file checksum mismatch (torn or damaged)")]
    Checksum,
    /// The series run past the end, or bytes are left over.
    #[error("history file length does not match its {0} series")]
    Length(u32),
    /// A key that is not UTF-8.
    #[error("history file series {0} has a key that is not UTF-8")]
    Key(usize),
}

/// The closed rings of one series, copied out of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rings {
    fine: [Slot; FINE_SLOTS],
    coarse: [Slot; COARSE_SLOTS],
}

impl Rings {
    fn of(series: &Series) -> Rings {
        Rings {
            fine: series.fine,
            coarse: series.coarse,
        }
    }
}

/// The rings of consecutive series in file order (every target, then every tunnel of
/// every connection), from `first`, with the config that orders them.
#[derive(Debug)]
pub struct RingsCopy {
    config: Arc<Config>,
    first: usize,
    rings: Vec<Rings>,
}

/// One series as saved: its identity and its rings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSeries {
    /// Its identity ([`series_keys`]).
    pub key: String,
    rings: Rings,
}

/// A history as saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedHistory {
    /// When it was copied out.
    pub saved_at: Timestamp,
    /// Its series.
    pub series: Vec<SavedSeries>,
}

impl RingsCopy {
    /// Names each series by its identity (no lock needed: the copy owns its config).
    pub fn into_saved(self, saved_at: Timestamp) -> SavedHistory {
        let series = (file_order_keys(&self.config).into_iter().skip(self.first))
            .zip(self.rings)
            .map(|(key, rings)| SavedSeries { key, rings })
            .collect();
        SavedHistory { saved_at, series }
    }

    /// Returns the config that orders the series.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Returns each series' rings, in file order from the first copied.
    pub fn rings(&self) -> &[Rings] {
        &self.rings
    }
}

/// Every series' identity in file order: targets, then every tunnel of every connection.
pub fn file_order_keys(config: &Config) -> Vec<String> {
    let (targets, tunnels) = series_keys(config);
    targets
        .into_iter()
        .chain(tunnels.into_iter().flatten())
        .collect()
}

/// What a start adopted from the file: `/status` and the page show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// When the file was saved.
    pub saved_at: Timestamp,
    /// Series of the current config that got their minutes back.
    pub series_adopted: usize,
    /// Saved series that match nothing in the current config (dropped).
    pub series_dropped: usize,
    /// Minutes of the last hour that came back (the most any series got).
    pub minutes_restored: u32,
    /// Minutes marked "daemon not running": from the one after the save to the start.
    pub minutes_not_running: u32,
}

/// The identity of every series of `config`: per target, then per connection per tunnel.
/// A tunnel is its connection (AWS id, or name) and its outside IP (or name); a target is
/// its address and its tunnel's identity (or "shared").
pub fn series_keys(config: &Config) -> (Vec<String>, Vec<Vec<String>>) {
    let targets = (config.targets.iter())
        .map(|t| match t.scope {
            TargetScope::Shared => format!("target {} shared", t.address),
            TargetScope::Pinned(id) => {
                format!("target {} on {}", t.address, tunnel_identity(config, id))
            }
        })
        .collect();
    let tunnels = (config.connections.iter().enumerate())
        .map(|(c, connection)| {
            (0..connection.tunnels.len())
                .map(|t| {
                    let id = crate::types::TunnelId {
                        connection: c,
                        tunnel: t,
                    };
                    format!("tunnel {}", tunnel_identity(config, id))
                })
                .collect()
        })
        .collect();
    (targets, tunnels)
}

impl History {
    /// Copies the closed rings of every series (a memcpy: the caller holds the lock).
    pub fn rings(&self) -> RingsCopy {
        self.rings_of(0..self.series_count())
    }

    /// Returns how many series the file holds: every target and every tunnel.
    pub fn series_count(&self) -> usize {
        self.targets.len() + self.tunnels.iter().map(Vec::len).sum::<usize>()
    }

    /// Copies the closed rings of the series `range` (file order; cut at the end).
    pub fn rings_of(&self, range: std::ops::Range<usize>) -> RingsCopy {
        let all = self.targets.iter().chain(self.tunnels.iter().flatten());
        RingsCopy {
            config: self.config.clone(),
            first: range.start,
            rings: all
                .skip(range.start)
                .take(range.len())
                .map(Rings::of)
                .collect(),
        }
    }

    /// Takes the saved minutes into the series of the same identity, marks the minutes
    /// from the one after the save to `now`'s as "daemon not running", and drops what
    /// matches nothing. A file saved in the future or longer ago than the coarse ring
    /// spans brings nothing back.
    pub fn adopt(&mut self, saved: SavedHistory, now: Timestamp) -> Restored {
        let (start, last_saved) = (minute_of(now), minute_of(saved.saved_at));
        let span = COARSE_SLOTS as u32 * COARSE_MINUTES;
        let mut restored = Restored {
            saved_at: saved.saved_at,
            series_adopted: 0,
            series_dropped: saved.series.len(),
            minutes_restored: 0,
            minutes_not_running: 0,
        };
        if last_saved > start || start - last_saved >= span {
            self.restored = Some(restored.clone());
            return restored;
        }
        let (target_keys, tunnel_keys) = series_keys(&self.config);
        let mut by_key: HashMap<String, &mut Series> = HashMap::new();
        for (key, series) in target_keys.into_iter().zip(self.targets.iter_mut()) {
            by_key.entry(key).or_insert(series);
        }
        let tunnels = self.tunnels.iter_mut().flatten();
        for (key, series) in tunnel_keys.into_iter().flatten().zip(tunnels) {
            by_key.entry(key).or_insert(series);
        }
        for saved_series in saved.series {
            let Some(series) = by_key.remove(&saved_series.key) else {
                continue;
            };
            series.fine = saved_series.rings.fine;
            series.coarse = saved_series.rings.coarse;
            let held = (start.saturating_sub(FINE_SLOTS as u32)..start)
                .filter(|&m| series.fine_at(m).is_some_and(|s| s.sent > 0))
                .count() as u32;
            restored.minutes_restored = restored.minutes_restored.max(held);
            for minute in last_saved + 1..start {
                series.mark_closed(minute, Mark::NotRunning);
            }
            series.mark(Mark::NotRunning, now);
            restored.series_adopted += 1;
            restored.series_dropped -= 1;
        }
        restored.minutes_not_running = (start - last_saved).max(1);
        self.restored = Some(restored.clone());
        restored
    }

    /// Returns what the start adopted from the file, if one was read.
    pub fn restored(&self) -> Option<&Restored> {
        self.restored.as_ref()
    }
}

impl Series {
    /// Sets `mark` on a closed minute, in the fine ring (when it spans it) and its
    /// coarse window, making an empty slot when the minute holds nothing.
    fn mark_closed(&mut self, minute: u32, mark: Mark) {
        let bits = mark as u8;
        let fine = &mut self.fine[minute as usize % FINE_SLOTS];
        if fine.unpack(minute).is_some() {
            fine.marks |= bits;
        } else {
            *fine = Slot {
                minute: minute as u16,
                marks: bits,
                ..Slot::default()
            };
        }
        let first = minute / COARSE_MINUTES * COARSE_MINUTES;
        let coarse = &mut self.coarse[(first / COARSE_MINUTES) as usize % COARSE_SLOTS];
        if coarse.unpack(first).is_some() {
            coarse.marks |= bits;
        } else {
            *coarse = Slot {
                minute: first as u16,
                marks: bits,
                ..Slot::default()
            };
        }
    }
}

/// Encodes a saved history in the file form, in one piece (the saver streams the same
/// bytes: [`encode_header`], [`encode_series`] per series, then the [`Checksum`]).
pub fn encode(saved: &SavedHistory) -> Vec<u8> {
    let per_series = 2 + (FINE_SLOTS + COARSE_SLOTS) * SLOT_BYTES;
    let keys: usize = saved.series.iter().map(|s| s.key.len()).sum();
    let mut out =
        Vec::with_capacity(HEADER_BYTES + saved.series.len() * per_series + keys + CHECKSUM_BYTES);
    encode_header(saved.saved_at, saved.series.len(), &mut out);
    for series in &saved.series {
        encode_series(&series.key, &series.rings, &mut out);
    }
    let mut checksum = Checksum::default();
    checksum.update(&out);
    out.extend_from_slice(&checksum.finish());
    out
}

/// Appends the file's header: magic, version, when it was saved, the number of series.
pub fn encode_header(saved_at: Timestamp, series: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&saved_at.as_millis().to_le_bytes());
    out.extend_from_slice(&(series as u32).to_le_bytes());
}

/// Appends one series: its key, then its fine and coarse slots.
pub fn encode_series(key: &str, rings: &Rings, out: &mut Vec<u8>) {
    // Keys are short (an address and a tunnel's identity); a longer one is cut.
    let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    for slot in rings.fine.iter().chain(&rings.coarse) {
        for field in [
            slot.minute,
            slot.p10,
            slot.p50,
            slot.p90,
            slot.sent,
            slot.lost,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.push(slot.marks);
    }
}

/// The file's checksum (FNV-1a, 64 bits) taken over the bytes as they are written.
#[derive(Clone, Copy, Debug)]
pub struct Checksum(u64);

impl Default for Checksum {
    fn default() -> Self {
        Checksum(FNV_OFFSET)
    }
}

impl Checksum {
    /// Takes in the next bytes of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = bytes.iter().fold(self.0, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME)
        });
    }

    /// Returns the bytes that end the file.
    pub fn finish(self) -> [u8; CHECKSUM_BYTES] {
        self.0.to_le_bytes()
    }
}

/// Decodes the file form; any damage is an error, never a partial history.
pub fn decode(bytes: &[u8]) -> Result<SavedHistory, DecodeError> {
    if bytes.len() < HEADER_BYTES + CHECKSUM_BYTES {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(DecodeError::Magic);
    }
    let mut reader = Reader {
        bytes: &bytes[..bytes.len() - CHECKSUM_BYTES],
        at: MAGIC.len(),
    };
    let found = reader.u16().unwrap_or_default();
    if found != VERSION {
        return Err(DecodeError::Version { found });
    }
    let (body, tail) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if fnv1a(body).to_le_bytes() != tail {
        return Err(DecodeError::Checksum);
    }
    let saved_at = Timestamp::from_millis(reader.u64().unwrap_or_default());
    let count = reader.u32().unwrap_or_default();
    let length = DecodeError::Length(count);
    let mut series = Vec::new();
    for index in 0..count as usize {
        let key_len = usize::from(reader.u16().ok_or(length.clone())?);
        let key = reader.take(key_len).ok_or(length.clone())?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| DecodeError::Key(index))?;
        let mut slots = [Slot::default(); FINE_SLOTS + COARSE_SLOTS];
        for slot in &mut slots {
            *slot = reader.slot().ok_or(length.clone())?;
        }
        let mut rings = Rings {
            fine: [Slot::default(); FINE_SLOTS],
            coarse: [Slot::default(); COARSE_SLOTS],
        };
        rings.fine.copy_from_slice(&slots[..FINE_SLOTS]);
        rings.coarse.copy_from_slice(&slots[FINE_SLOTS..]);
        series.push(SavedSeries { key, rings });
    }
    if reader.at != reader.bytes.len() {
        return Err(length);
    }
    Ok(SavedHistory { saved_at, series })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(taken)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        Some(u64::from_le_bytes(b.try_into().ok()?))
    }

    fn slot(&mut self) -> Option<Slot> {
        Some(Slot {
            minute: self.u16()?,
            p10: self.u16()?,
            p50: self.u16()?,
            p90: self.u16()?,
            sent: self.u16()?,
            lost: self.u16()?,
            marks: *self.take(1)?.first()?,
        })
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a, 64 bits: enough to tell a torn or damaged file, with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut checksum = Checksum::default();
    checksum.update(bytes);
    checksum.0
}

#[cfg(test)]
mod tests;
