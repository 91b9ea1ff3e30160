//! The history's rings on disk, round-robin like an RRD: one file per resolution (a
//! minute for the last hour, five minutes for six hours, fifteen minutes for seven days),
//! each a header and a fixed number of blocks. A block holds one time slot of every
//! series, in series order, so closing a minute is ONE contiguous write at
//! `(index mod slots) * block_bytes`, and a coarser ring gets its block when its window
//! closes, consolidated from the minute blocks ([`consolidate_window`]).
//!
//! Every slot is 16 bytes and carries the first minute it covers and a check byte, and
//! blocks and the header are multiples of 16 bytes: a slot never straddles a sector, so a
//! torn write leaves each slot either old (its minute is not the one asked for: missing)
//! or new; the check byte also catches a damaged slot. Nothing else is lost, and a page
//! reads one series with one small read per point at a stride, never a whole block.
//!
//! Which series a column holds is the series table's ([`SeriesTable`], written aside and
//! renamed when the series set changes); each ring file names the table it was written
//! for by its hash, so a ring left from another table is never read with the wrong
//! columns. The table also keeps the spans the daemon was not running. Pure layout: the
//! shell does the reads and writes.

use super::{consolidated, decode, encode, MinuteSummary};

/// Bytes of one slot on disk.
pub const SLOT_BYTES: usize = 16;
/// Bytes of a block's header: its first minute, its series count, a check.
pub const BLOCK_HEADER_BYTES: usize = 16;
/// Bytes of a ring file's header (padded, so blocks stay 16-byte aligned).
pub const FILE_HEADER_BYTES: usize = 64;
/// The ring files' layout version.
pub const VERSION: u16 = 2;
/// How far back the spans the daemon was not running are kept (the longest ring).
pub const NOT_RUNNING_KEPT_MINUTES: u32 = 7 * 24 * 60;
/// At most this many not-running spans are kept (a daemon restarted in a loop).
pub const NOT_RUNNING_MAX_SPANS: usize = 1_000;
const RING_MAGIC: &[u8; 8] = b"TKRING\0\0";
const TABLE_MAGIC: &[u8; 8] = b"TKSERIES";
/// The series table's file name inside `state_dir`.
pub const TABLE_FILE_NAME: &str = "history.series";

/// One resolution of the history on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ring {
    /// A minute a slot, the last hour.
    Minutes,
    /// Five minutes a slot, the last six hours.
    FiveMinutes,
    /// Fifteen minutes a slot, the last seven days.
    QuarterHours,
}

impl Ring {
    /// Every ring, finest first.
    pub const ALL: [Ring; 3] = [Ring::Minutes, Ring::FiveMinutes, Ring::QuarterHours];

    /// Returns the minutes one slot covers.
    pub fn step_minutes(self) -> u32 {
        match self {
            Ring::Minutes => 1,
            Ring::FiveMinutes => 5,
            Ring::QuarterHours => 15,
        }
    }

    /// Returns how many slots (blocks) the ring holds.
    pub fn slots(self) -> u32 {
        match self {
            Ring::Minutes => 60,
            Ring::FiveMinutes => 72,
            Ring::QuarterHours => 672,
        }
    }

    /// Returns the file's name inside `state_dir`.
    pub fn file_name(self) -> &'static str {
        match self {
            Ring::Minutes => "history-1m.ring",
            Ring::FiveMinutes => "history-5m.ring",
            Ring::QuarterHours => "history-15m.ring",
        }
    }

    /// Returns the coarser rings whose window ends with `minute` (a block is due).
    pub fn closed_by(minute: u32) -> Vec<Ring> {
        (Ring::ALL.into_iter())
            .filter(|r| *r != Ring::Minutes && (minute + 1).is_multiple_of(r.step_minutes()))
            .collect()
    }
}

/// Where things are in one ring file holding `series` columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The ring.
    pub ring: Ring,
    /// Its columns.
    pub series: u32,
}

impl Geometry {
    /// Returns the bytes of one block.
    pub fn block_bytes(&self) -> u64 {
        BLOCK_HEADER_BYTES as u64 + u64::from(self.series) * SLOT_BYTES as u64
    }

    /// Returns the file's whole size.
    pub fn file_bytes(&self) -> u64 {
        FILE_HEADER_BYTES as u64 + u64::from(self.ring.slots()) * self.block_bytes()
    }

    /// Returns the offset of the block of the window starting at `first`.
    pub fn block_offset(&self, first: u32) -> u64 {
        let index = first / self.ring.step_minutes() % self.ring.slots();
        FILE_HEADER_BYTES as u64 + u64::from(index) * self.block_bytes()
    }

    /// Returns the offset of `column`'s slot in the block of the window starting at `first`.
    pub fn slot_offset(&self, first: u32, column: u32) -> u64 {
        self.block_offset(first) + BLOCK_HEADER_BYTES as u64 + u64::from(column) * SLOT_BYTES as u64
    }
}

/// Why a ring file or series table cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not the file it should be.
    #[error("not a tunnelkeeper {0} (bad magic)")]
    Magic(&'static str),
    /// Another layout version.
    #[error("layout version {found}, this build reads version {VERSION}")]
    Version {
        /// The version found.
        found: u16,
    },
    /// A ring file of another resolution or size.
    #[error("ring file for {found_step} min × {found_slots} slots, {found_series} series; expected {want_step} min × {want_slots} slots, {want_series} series")]
    Shape {
        /// Found step, slots, series.
        found_step: u16,
        /// Found slots.
        found_slots: u32,
        /// Found series.
        found_series: u32,
        /// Wanted step.
        want_step: u16,
        /// Wanted slots.
        want_slots: u32,
        /// Wanted series.
        want_series: u32,
    },
    /// A ring file written for another series table.
    #[error("ring file written for another series table")]
    Table,
    /// Too short, a bad checksum or a bad length.
    #[error("series table damaged: {0}")]
    Damaged(&'static str),
}

/// Encodes a ring file's header.
pub fn encode_file_header(geometry: Geometry, table_hash: u64) -> [u8; FILE_HEADER_BYTES] {
    let mut out = [0u8; FILE_HEADER_BYTES];
    out[..8].copy_from_slice(RING_MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out[10..12].copy_from_slice(&(geometry.ring.step_minutes() as u16).to_le_bytes());
    out[12..16].copy_from_slice(&geometry.ring.slots().to_le_bytes());
    out[16..20].copy_from_slice(&geometry.series.to_le_bytes());
    out[20..28].copy_from_slice(&table_hash.to_le_bytes());
    out
}

/// Checks a ring file's header against what this build and this table expect.
pub fn check_file_header(
    bytes: &[u8],
    geometry: Geometry,
    table_hash: u64,
) -> Result<(), LayoutError> {
    if bytes.len() < FILE_HEADER_BYTES || &bytes[..8] != RING_MAGIC {
        return Err(LayoutError::Magic("ring file"));
    }
    let found = u16::from_le_bytes([bytes[8], bytes[9]]);
    if found != VERSION {
        return Err(LayoutError::Version { found });
    }
    let (step, slots, series) = (
        u16::from_le_bytes([bytes[10], bytes[11]]),
        le_u32(&bytes[12..16]),
        le_u32(&bytes[16..20]),
    );
    let want_step = geometry.ring.step_minutes() as u16;
    if (step, slots, series) != (want_step, geometry.ring.slots(), geometry.series) {
        return Err(LayoutError::Shape {
            found_step: step,
            found_slots: slots,
            found_series: series,
            want_step,
            want_slots: geometry.ring.slots(),
            want_series: geometry.series,
        });
    }
    if u64::from_le_bytes(bytes[20..28].try_into().unwrap_or_default()) != table_hash {
        return Err(LayoutError::Table);
    }
    Ok(())
}

/// Encodes one slot: the first minute it covers, RTTs packed as in memory, counts, marks
/// and a check byte over the rest.
pub fn encode_slot(s: &MinuteSummary) -> [u8; SLOT_BYTES] {
    let mut out = [0u8; SLOT_BYTES];
    out[..4].copy_from_slice(&s.minute.to_le_bytes());
    let fields = [
        encode(s.p10_us),
        encode(s.p50_us),
        encode(s.p90_us),
        s.sent,
        s.lost,
    ];
    for (i, field) in fields.iter().enumerate() {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&field.to_le_bytes());
    }
    out[14] = s.marks;
    out[15] = check_byte(&out[..15]);
    out
}

/// Decodes a slot when it holds the window starting at `first` and is whole.
pub fn decode_slot(bytes: &[u8], first: u32) -> Option<MinuteSummary> {
    if bytes.len() < SLOT_BYTES || check_byte(&bytes[..15]) != bytes[15] {
        return None;
    }
    if le_u32(&bytes[..4]) != first || first == 0 {
        return None;
    }
    let field = |i: usize| u16::from_le_bytes([bytes[4 + 2 * i], bytes[5 + 2 * i]]);
    Some(MinuteSummary {
        minute: first,
        p10_us: decode(field(0)),
        p50_us: decode(field(1)),
        p90_us: decode(field(2)),
        sent: field(3),
        lost: field(4),
        marks: bytes[14],
    })
}

/// Encodes the block of the window starting at `first`: `slots` in column order (a
/// column with nothing is written as an empty slot of that window, so an old one left
/// there cannot show).
pub fn encode_block(first: u32, slots: &[Option<MinuteSummary>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK_HEADER_BYTES + slots.len() * SLOT_BYTES);
    out.extend_from_slice(&encode_block_header(first, slots.len()));
    out.extend_from_slice(&encode_slots(first, slots));
    out
}

/// Encodes a block's header: its first minute, its series count, a check.
pub fn encode_block_header(first: u32, series: usize) -> [u8; BLOCK_HEADER_BYTES] {
    let mut out = [0u8; BLOCK_HEADER_BYTES];
    out[..4].copy_from_slice(&first.to_le_bytes());
    out[4..8].copy_from_slice(&(series as u32).to_le_bytes());
    let check = fnv1a(&out[..8]);
    out[8..].copy_from_slice(&check.to_le_bytes());
    out
}

/// Encodes consecutive slots of the window starting at `first` (a part of a block's
/// body; `None` is an empty slot of that window).
pub fn encode_slots(first: u32, slots: &[Option<MinuteSummary>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slots.len() * SLOT_BYTES);
    for slot in slots {
        let empty = MinuteSummary {
            minute: first,
            ..MinuteSummary::default()
        };
        let mut summary = slot.unwrap_or(empty);
        summary.minute = first;
        out.extend_from_slice(&encode_slot(&summary));
    }
    out
}

/// Returns the first minute a block's header names, when the header is whole.
pub fn block_first_minute(bytes: &[u8]) -> Option<u32> {
    let header = bytes.get(..BLOCK_HEADER_BYTES)?;
    let first = le_u32(&header[..4]);
    (fnv1a(&header[..8]).to_le_bytes() == header[8..16] && first != 0).then_some(first)
}

/// Decodes every column of a block read for the window starting at `first`: a column
/// whose slot is torn, damaged or of another window is `None`.
pub fn decode_block(bytes: &[u8], first: u32) -> Vec<Option<MinuteSummary>> {
    let body = bytes.get(BLOCK_HEADER_BYTES..).unwrap_or_default();
    (body.chunks_exact(SLOT_BYTES))
        .map(|slot| decode_slot(slot, first))
        .collect()
}

/// Consolidates a coarse window per column from its minutes' blocks (decoded with
/// [`decode_block`]): the spread seen (lowest p10, highest p90), the median of the
/// medians, summed counts, every mark; a column with no minute is `None`.
pub fn consolidate_window(
    first: u32,
    minutes: &[Vec<Option<MinuteSummary>>],
    columns: usize,
) -> Vec<Option<MinuteSummary>> {
    (0..columns)
        .map(|column| {
            let held: Vec<MinuteSummary> = (minutes.iter())
                .filter_map(|block| block.get(column).copied().flatten())
                .filter(|m| m.sent > 0 || m.marks != 0)
                .collect();
            (!held.is_empty()).then(|| consolidated(first, &held))
        })
        .collect()
}

/// Which series each column holds, and when the daemon was not running.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesTable {
    /// The series' identities ([`super::disk::series_keys`]), in column order.
    pub keys: Vec<String>,
    /// Spans of minutes (first, last; inclusive) the daemon was not running.
    pub not_running: Vec<(u32, u32)>,
}

impl SeriesTable {
    /// Returns the hash a ring file written for this table carries.
    pub fn hash(&self) -> u64 {
        let mut bytes = Vec::new();
        for key in &self.keys {
            bytes.extend_from_slice(&(key.len() as u32).to_le_bytes());
            bytes.extend_from_slice(key.as_bytes());
        }
        fnv1a(&bytes)
    }

    /// Notes that the daemon was not running from `first` to `last` (inclusive), and
    /// forgets spans older than the longest ring as of `now_minute` (and the oldest past
    /// [`NOT_RUNNING_MAX_SPANS`]).
    pub fn add_not_running(&mut self, first: u32, last: u32, now_minute: u32) {
        if first <= last {
            self.not_running.push((first, last));
        }
        let oldest = now_minute.saturating_sub(NOT_RUNNING_KEPT_MINUTES);
        self.not_running.retain(|&(_, last)| last >= oldest);
        let excess = self.not_running.len().saturating_sub(NOT_RUNNING_MAX_SPANS);
        self.not_running.drain(..excess);
    }

    /// Returns whether the daemon was not running in any minute of `first..first + step`.
    pub fn was_not_running(&self, first: u32, step: u32) -> bool {
        let last = first + step - 1;
        (self.not_running.iter()).any(|&(from, to)| from <= last && to >= first)
    }

    /// For each column of `next`, the column of this table holding the same series.
    pub fn columns_for(&self, next: &[String]) -> Vec<Option<u32>> {
        let mut by_key = std::collections::HashMap::new();
        for (column, key) in self.keys.iter().enumerate() {
            by_key.entry(key.as_str()).or_insert(column as u32);
        }
        next.iter()
            .map(|k| by_key.get(k.as_str()).copied())
            .collect()
    }

    /// Encodes the table (magic, version, keys, spans, FNV-1a 64 checksum).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(TABLE_MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for key in &self.keys {
            let key = &key.as_bytes()[..key.len().min(u16::MAX as usize)];
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
        }
        out.extend_from_slice(&(self.not_running.len() as u32).to_le_bytes());
        for (first, last) in &self.not_running {
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        }
        let checksum = fnv1a(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Decodes a table; any damage is an error.
    pub fn decode(bytes: &[u8]) -> Result<SeriesTable, LayoutError> {
        if bytes.len() < TABLE_MAGIC.len() + 2 + 8 || &bytes[..8] != TABLE_MAGIC {
            return Err(LayoutError::Magic("series table"));
        }
        let found = u16::from_le_bytes([bytes[8], bytes[9]]);
        if found != VERSION {
            return Err(LayoutError::Version { found });
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        if fnv1a(body).to_le_bytes() != tail {
            return Err(LayoutError::Damaged("checksum mismatch"));
        }
        let mut at = 10;
        let mut take = |n: usize| -> Result<&[u8], LayoutError> {
            let got = body
                .get(at..at + n)
                .ok_or(LayoutError::Damaged("runs past its end"))?;
            at += n;
            Ok(got)
        };
        let count = le_u32(take(4)?);
        let mut table = SeriesTable::default();
        for _ in 0..count {
            let len = u16::from_le_bytes(take(2)?.try_into().unwrap_or_default());
            let key = std::str::from_utf8(take(usize::from(len))?)
                .map_err(|_| LayoutError::Damaged("a key is not UTF-8"))?;
            table.keys.push(key.to_owned());
        }
        for _ in 0..le_u32(take(4)?) {
            let first = le_u32(take(4)?);
            table.not_running.push((first, le_u32(take(4)?)));
        }
        if at != body.len() {
            return Err(LayoutError::Damaged("bytes left over"));
        }
        Ok(table)
    }
}

/// Rewrites a block of an old layout into the columns of a new one (`columns` from
/// [`SeriesTable::columns_for`]); slot bytes move unchanged, a new column gets an empty
/// slot of the block's window. `None` when the old block's header is not whole.
pub fn remap_block(old: &[u8], columns: &[Option<u32>]) -> Option<Vec<u8>> {
    let first = block_first_minute(old)?;
    let slots: Vec<Option<MinuteSummary>> = decode_block(old, first);
    let moved: Vec<Option<MinuteSummary>> = (columns.iter())
        .map(|c| c.and_then(|c| slots.get(c as usize).copied().flatten()))
        .collect();
    Some(encode_block(first, &moved))
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default())
}

fn check_byte(bytes: &[u8]) -> u8 {
    let hash = fnv1a(bytes);
    (hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 32)) as u8
}

/// FNV-1a, 64 bits: enough to tell a torn or damaged record, with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
