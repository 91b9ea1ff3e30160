//! What the history hands to disk and takes back, pure: the series' identities (the ring
//! files' columns, [`series_keys`]), the closed minutes the saver writes
//! ([`History::closed_minutes`], then [`History::forget_through`] once they are on disk),
//! what a start read back ([`Restored`]), and the form of `history.bin`, the snapshot file
//! of the build before the ring files, read once to carry its minutes over ([`decode`]).
//!
//! A series is known by its identity, not its position or name, so files from another
//! config are adopted by the same rules as a reload ([`crate::config::ReloadMapping`]).
//!
//! `history.bin` (version 1), little-endian: the magic `TKHIST\0\0`, the version (u16),
//! when it was saved (ms since the epoch, u64), the number of series (u32); per series its
//! key (u16 length and UTF-8) and 60 minute then 72 five-minute slots of [`SLOT_BYTES`]
//! each (the minute's low 16 bits, p10, p50, p90 packed, sent, lost: u16; marks: u8);
//! last, an FNV-1a 64 checksum of everything before it.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use super::{decode as unpack_rtt, encode as pack_rtt, minute_of, History, MinuteSummary};
use crate::config::{tunnel_identity, Config, TargetScope, TargetSpec};
use crate::types::{Timestamp, TunnelId};

/// The old snapshot file's name inside `state_dir`.
pub const FILE_NAME: &str = "history.bin";
/// The snapshot file's layout version.
pub const VERSION: u16 = 1;
const MAGIC: &[u8; 8] = b"TKHIST\0\0";
/// Bytes of one slot in the snapshot file: six u16 and the marks.
pub const SLOT_BYTES: usize = 13;
const HEADER_BYTES: usize = MAGIC.len() + 2 + 8 + 4;
/// Bytes of the checksum that ends the snapshot file.
pub const CHECKSUM_BYTES: usize = 8;
const FINE: u32 = 60;
const COARSE: u32 = 72;
const COARSE_STEP: u32 = 5;

/// The identity of a target's series: its address and its tunnel's identity (or
/// "shared").
pub fn target_key(config: &Config, target: &TargetSpec) -> String {
    match target.scope {
        TargetScope::Shared => format!("target {} shared", target.address),
        TargetScope::Pinned(id) => {
            format!(
                "target {} on {}",
                target.address,
                tunnel_identity(config, id)
            )
        }
    }
}

/// The identity of a tunnel's series: its connection (AWS id, or name) and its outside
/// IP (or name).
pub fn tunnel_key(config: &Config, id: TunnelId) -> String {
    format!("tunnel {}", tunnel_identity(config, id))
}

/// The identity of every series of `config`: per target, then per connection per tunnel.
pub fn series_keys(config: &Config) -> (Vec<String>, Vec<Vec<String>>) {
    let targets = (config.targets.iter())
        .map(|t| target_key(config, t))
        .collect();
    let tunnels = (config.connections.iter().enumerate())
        .map(|(c, connection)| {
            (0..connection.tunnels.len())
                .map(|t| {
                    tunnel_key(
                        config,
                        TunnelId {
                            connection: c,
                            tunnel: t,
                        },
                    )
                })
                .collect()
        })
        .collect();
    (targets, tunnels)
}

/// Every series' identity in file order (the ring files' columns): targets, then every
/// tunnel of every connection.
pub fn file_order_keys(config: &Config) -> Vec<String> {
    let (targets, tunnels) = series_keys(config);
    targets
        .into_iter()
        .chain(tunnels.into_iter().flatten())
        .collect()
}

/// The closed minutes not yet on disk, as blocks of the ring files.
#[derive(Clone, Debug)]
pub struct ClosedMinutes {
    /// The config whose series order the blocks follow ([`file_order_keys`]).
    pub config: Arc<Config>,
    /// Per closed minute, oldest first: each series' summary in file order (`None`:
    /// nothing that minute).
    pub blocks: Vec<(u32, Vec<Option<MinuteSummary>>)>,
}

/// What a start read back from `state_dir`: `/status` and the page show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restored {
    /// When the last minute read back ended.
    pub saved_at: Timestamp,
    /// Series of the current config found in the files.
    pub series_adopted: usize,
    /// Series in the files that match nothing in the current config (dropped).
    pub series_dropped: usize,
    /// Minutes of the last hour that came back.
    pub minutes_restored: u32,
    /// Minutes marked "daemon not running": from the one after the last written to the
    /// start's.
    pub minutes_not_running: u32,
}

impl History {
    /// Returns how many series there are: every target and every tunnel.
    pub fn series_count(&self) -> usize {
        self.targets.len() + self.tunnels.iter().map(Vec::len).sum::<usize>()
    }

    fn series_in_file_order(&self) -> impl Iterator<Item = &super::Series> {
        self.targets.iter().chain(self.tunnels.iter().flatten())
    }

    /// Closes every minute before `now`'s (a series with no probe since does not wait
    /// for one), lets the tunnels' baselines learn them, and copies the closed minutes
    /// not yet on disk. They stay in memory until [`History::forget_through`]: a write
    /// that fails loses nothing.
    pub fn closed_minutes(&mut self, now: Timestamp) -> ClosedMinutes {
        let minute = minute_of(now);
        for series in self
            .targets
            .iter_mut()
            .chain(self.tunnels.iter_mut().flatten())
        {
            series.roll(minute);
        }
        let slow = &self.config.alerts.slow;
        for (windows, series) in self.windows.iter_mut().zip(&self.tunnels) {
            for (window, series) in windows.iter_mut().zip(series) {
                window.learn(now, series, slow);
            }
        }
        let minutes: BTreeSet<u32> = (self.series_in_file_order())
            .flat_map(|s| s.unwritten.iter().map(|m| m.minute))
            .collect();
        let blocks = (minutes.into_iter())
            .map(|m| {
                let slots = self.series_in_file_order().map(|s| s.closed_at(m));
                (m, slots.collect())
            })
            .collect();
        ClosedMinutes {
            config: self.config.clone(),
            blocks,
        }
    }

    /// Drops the closed minutes up to `minute` (inclusive): they are on disk.
    pub fn forget_through(&mut self, minute: u32) {
        for series in self
            .targets
            .iter_mut()
            .chain(self.tunnels.iter_mut().flatten())
        {
            series.unwritten.retain(|m| m.minute > minute);
        }
    }

    /// Teaches a tunnel's RTT baseline the minutes read back from disk at start.
    pub fn learn_restored(&mut self, tunnel: TunnelId, minutes: &[MinuteSummary], now: Timestamp) {
        let slow = &self.config.alerts.slow;
        if let Some(window) =
            (self.windows.get_mut(tunnel.connection)).and_then(|c| c.get_mut(tunnel.tunnel))
        {
            window.learn_minutes(now, minutes, slow);
        }
    }

    /// Notes what the start read back (kept across reloads).
    pub fn set_restored(&mut self, restored: Restored) {
        self.restored = Some(restored);
    }

    /// Returns what the start read back, if anything was there.
    pub fn restored(&self) -> Option<&Restored> {
        self.restored.as_ref()
    }
}

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

/// One series of the snapshot file: its identity, its minutes of the hour before the
/// save and its five-minute windows of the six hours before it (empty slots left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSeries {
    /// Its identity ([`series_keys`]).
    pub key: String,
    /// Minutes, oldest first.
    pub minutes: Vec<MinuteSummary>,
    /// Five-minute windows, oldest first.
    pub windows: Vec<MinuteSummary>,
}

/// A snapshot file's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedHistory {
    /// When it was saved.
    pub saved_at: Timestamp,
    /// Its series.
    pub series: Vec<SavedSeries>,
}

/// Decodes the snapshot file; any damage is an error, never a partial history. A slot
/// kept only the low 16 bits of its minute: it is read as the one of that number in the
/// hour (or six) before the save, and an empty or stale slot is left out.
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
    let saved_ms = reader.u64().unwrap_or_default();
    let saved_at = Timestamp::from_wall_millis(saved_ms);
    let last = u32::try_from(saved_ms / 60_000).unwrap_or(u32::MAX);
    let count = reader.u32().unwrap_or_default();
    let length = DecodeError::Length(count);
    let mut series = Vec::new();
    for index in 0..count as usize {
        let key_len = usize::from(reader.u16().ok_or(length.clone())?);
        let key = reader.take(key_len).ok_or(length.clone())?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| DecodeError::Key(index))?;
        let mut slots = Vec::with_capacity((FINE + COARSE) as usize);
        for _ in 0..FINE + COARSE {
            slots.push(reader.slot().ok_or(length.clone())?);
        }
        let minutes = (last.saturating_sub(FINE - 1)..=last)
            .filter_map(|m| slots[(m % FINE) as usize].unpack(m))
            .collect();
        let last_window = last / COARSE_STEP;
        let windows = (last_window.saturating_sub(COARSE - 1)..=last_window)
            .filter_map(|w| slots[(FINE + w % COARSE) as usize].unpack(w * COARSE_STEP))
            .collect();
        series.push(SavedSeries {
            key,
            minutes,
            windows,
        });
    }
    if reader.at != reader.bytes.len() {
        return Err(length);
    }
    Ok(SavedHistory { saved_at, series })
}

/// Encodes a snapshot file as the build before wrote it (minutes and windows older than
/// their ring are left out): for tests, and tools that make one.
pub fn encode(saved: &SavedHistory) -> Vec<u8> {
    let saved_ms = saved.saved_at.wall_millis();
    let last = u32::try_from(saved_ms / 60_000).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&saved_ms.to_le_bytes());
    out.extend_from_slice(&(saved.series.len() as u32).to_le_bytes());
    for series in &saved.series {
        let key = &series.key.as_bytes()[..series.key.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        let mut slots = vec![[0u8; SLOT_BYTES]; (FINE + COARSE) as usize];
        let minutes = (series.minutes.iter()).filter(|m| m.minute + FINE > last);
        for m in minutes {
            slots[(m.minute % FINE) as usize] = Slot::pack(m);
        }
        let windows = (series.windows.iter()).filter(|w| w.minute + COARSE * COARSE_STEP > last);
        for w in windows {
            slots[(FINE + w.minute / COARSE_STEP % COARSE) as usize] = Slot::pack(w);
        }
        out.extend(slots.concat());
    }
    let checksum = fnv1a(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// A slot of the snapshot file as stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Slot {
    minute: u16,
    p10: u16,
    p50: u16,
    p90: u16,
    sent: u16,
    lost: u16,
    marks: u8,
}

impl Slot {
    /// Returns the bytes of `s` in the file.
    fn pack(s: &MinuteSummary) -> [u8; SLOT_BYTES] {
        let mut out = [0u8; SLOT_BYTES];
        let fields = [
            s.minute as u16,
            pack_rtt(s.p10_us),
            pack_rtt(s.p50_us),
            pack_rtt(s.p90_us),
            s.sent,
            s.lost,
        ];
        for (i, field) in fields.iter().enumerate() {
            out[2 * i..2 * i + 2].copy_from_slice(&field.to_le_bytes());
        }
        out[12] = s.marks;
        out
    }

    /// Returns the summary when the slot holds `minute`.
    fn unpack(&self, minute: u32) -> Option<MinuteSummary> {
        let holds = self.minute == minute as u16 && (self.sent > 0 || self.marks != 0);
        holds.then(|| MinuteSummary {
            minute,
            p10_us: unpack_rtt(self.p10),
            p50_us: unpack_rtt(self.p50),
            p90_us: unpack_rtt(self.p90),
            sent: self.sent,
            lost: self.lost,
            marks: self.marks,
        })
    }
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

/// FNV-1a, 64 bits: enough to tell a torn or damaged file, with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
