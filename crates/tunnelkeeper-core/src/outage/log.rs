//! The outage log's file form and the rules over it, pure: one JSON record per line
//! (appended, so a crash tears at most the last line, which reading skips), kept for
//! [`RETENTION`] and within [`MAX_RECORDS`] and [`MAX_BYTES`]; and the filters of
//! `GET /outages`.

use std::fmt;
use std::time::Duration;

use crate::outage::{OutageRecord, RECORD_VERSION};
use crate::types::Timestamp;

/// How long an outage is kept after it ended.
pub const RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// The most records kept.
pub const MAX_RECORDS: usize = 5_000;
/// The most bytes the kept records take in the file.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// The most pages one record lists (a long outage repeats its pages; the first ones say
/// who was told).
pub const MAX_PAGES: usize = 64;
/// Lines of dropped records the file may hold before it is written anew (so pruning does
/// not rewrite the file at every append).
pub const REWRITE_SLACK: usize = 64;

/// Encodes one record as its line, newline included.
pub fn encode_line(record: &OutageRecord) -> String {
    let mut line = serde_json::to_string(record).expect("a record always serializes");
    line.push('\n');
    line
}

/// What reading a log file found.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// The records, oldest first, one per id.
    pub records: Vec<OutageRecord>,
    /// Lines that are not a record: (line number from 1, why). A torn last line is one.
    pub skipped: Vec<(usize, String)>,
    /// How many lines the file holds (records or not).
    pub lines: usize,
    /// Whether the file ends within a line (a torn append): it must be rewritten before
    /// the next append, or that append would join the torn line.
    pub torn_end: bool,
}

/// Reads a log file's text; never fails: what it cannot read is listed in `skipped`.
pub fn decode(text: &str) -> Decoded {
    let mut decoded = Decoded {
        torn_end: !text.is_empty() && !text.ends_with('\n'),
        ..Decoded::default()
    };
    for (i, line) in text.lines().enumerate() {
        decoded.lines += 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<OutageRecord>(line) {
            Ok(record) if record.version == RECORD_VERSION => {
                // One per id: the later line wins.
                decoded.records.retain(|r| r.id != record.id);
                decoded.records.push(record);
            }
            Ok(record) => decoded.skipped.push((
                i + 1,
                format!("record version {} is not known", record.version),
            )),
            Err(e) => decoded.skipped.push((i + 1, e.to_string())),
        }
    }
    decoded.records.sort_by_key(|r| (r.ended_at, r.started_at));
    decoded
}

/// Drops the records that ended more than [`RETENTION`] before `now`, then the oldest
/// beyond [`MAX_RECORDS`] or [`MAX_BYTES`]; `records` is oldest first. Returns how many
/// it dropped.
pub fn prune(records: &mut Vec<OutageRecord>, now: Timestamp) -> usize {
    let before = records.len();
    records.retain(|r| now.since(r.ended_at) <= RETENTION);
    let mut bytes = 0;
    let mut keep = 0;
    for record in records.iter().rev() {
        bytes += encode_line(record).len();
        if keep == MAX_RECORDS || bytes > MAX_BYTES {
            break;
        }
        keep += 1;
    }
    records.drain(..records.len() - keep);
    before - records.len()
}

/// Whether the file, holding `lines` lines, must be written anew to hold only the `kept`
/// records.
pub fn should_rewrite(lines: usize, kept: usize) -> bool {
    lines > kept + REWRITE_SLACK
}

/// The filters of `GET /outages`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutageFilter {
    /// Only outages that ended at or after this time.
    pub since: Option<Timestamp>,
    /// Only outages of (or involving) the tunnel of this name.
    pub tunnel: Option<String>,
}

/// A filter that cannot be read: which key, what it held, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub key: String,
    pub value: String,
    pub why: &'static str,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}: {}", self.key, self.value, self.why)
    }
}

impl std::error::Error for FilterError {}

impl OutageFilter {
    /// Reads a query string (`since=2026-12-04T03:00:00Z&tunnel=dc-a`, percent-encoded or
    /// not).
    pub fn parse(query: &str) -> Result<Self, FilterError> {
        let mut filter = OutageFilter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| FilterError {
                key: key.to_string(),
                value: value.to_string(),
                why: "is not valid percent-encoded UTF-8",
            })?;
            let error = |why| FilterError {
                key: key.to_string(),
                value: value.clone(),
                why,
            };
            match key {
                "since" => {
                    let time = humantime::parse_rfc3339_weak(&value)
                        .map_err(|_| error("is not an RFC 3339 time (2026-12-04T03:00:00Z)"))?;
                    filter.since = Some(
                        Timestamp::from_system_time(time).ok_or_else(|| error("is before 1970"))?,
                    );
                }
                "tunnel" if value.is_empty() => return Err(error("is empty")),
                "tunnel" => filter.tunnel = Some(value),
                _ => return Err(error("is not a filter (since, tunnel)")),
            }
        }
        Ok(filter)
    }

    /// Returns the records that pass, newest first; `records` is oldest first.
    pub fn apply<'a>(&self, records: &'a [OutageRecord]) -> Vec<&'a OutageRecord> {
        let mut out: Vec<&OutageRecord> = records
            .iter()
            .filter(|r| self.since.is_none_or(|s| r.ended_at >= s))
            .filter(|r| self.tunnel.as_deref().is_none_or(|t| r.involves_tunnel(t)))
            .collect();
        out.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
        out
    }
}

/// Decodes `%XX` escapes and `+` (a space, in a query); `None` when malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
