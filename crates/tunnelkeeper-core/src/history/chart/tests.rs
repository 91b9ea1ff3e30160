use std::collections::HashMap;

use super::*;

const HOUR: u32 = 29_400_000 / 60 * 60; // a minute starting an hour (and every window)

#[derive(Default)]
struct Rings {
    slots: HashMap<(Ring, u32), MinuteSummary>,
    gaps: Vec<(u32, u32)>,
}

impl Rings {
    fn put(&mut self, ring: Ring, s: MinuteSummary) {
        self.slots.insert((ring, s.minute), s);
    }
}

impl RingSource for Rings {
    fn read(&self, ring: Ring, key: &str, firsts: &[u32]) -> Vec<Option<MinuteSummary>> {
        assert_eq!(key, "target 10.0.0.1 shared");
        (firsts.iter())
            .map(|f| self.slots.get(&(ring, *f)).copied())
            .collect()
    }

    fn not_running(&self) -> Vec<(u32, u32)> {
        self.gaps.clone()
    }
}

fn minute(m: u32, ms: u32) -> MinuteSummary {
    MinuteSummary {
        minute: m,
        p10_us: ms * 1_000 - 500,
        p50_us: ms * 1_000,
        p90_us: ms * 1_000 + 500,
        sent: 60,
        lost: 1,
        marks: 0,
    }
}

fn at(m: u32, secs: u64) -> Timestamp {
    Timestamp::from_secs(u64::from(m) * 60 + secs)
}

fn chart(ring: Ring, now: Timestamp, live: &[MinuteSummary], rings: &Rings) -> Vec<MinuteSummary> {
    points(ring, now, "target 10.0.0.1 shared", live, rings)
}

#[test]
fn the_hour_shows_stored_minutes_and_the_live_ones_last() {
    let mut rings = Rings::default();
    rings.put(Ring::Minutes, minute(HOUR + 10, 5));
    rings.put(Ring::Minutes, minute(HOUR + 11, 6));
    // Minute 11 was written, then the daemon re-counted a late reply: live wins.
    let live = [minute(HOUR + 11, 7), minute(HOUR + 12, 8)];
    let got = chart(Ring::Minutes, at(HOUR + 12, 30), &live, &rings);
    assert_eq!(got.len(), 60);
    assert_eq!(got[59].minute, HOUR + 12);
    let medians: Vec<u32> = got[56..].iter().map(|p| p.p50_us / 1_000).collect();
    assert_eq!(medians, vec![0, 5, 7, 8]);
    assert_eq!(got[0].minute, HOUR + 12 - 59);
}

#[test]
fn coarse_windows_not_written_yet_are_built_from_their_minutes() {
    let mut rings = Rings::default();
    // Window 0-4 written; window 5-9 closed but its block not written yet; minutes 10
    // and 11 stored, 12 open (live).
    rings.put(
        Ring::FiveMinutes,
        MinuteSummary {
            minute: HOUR,
            ..minute(HOUR, 4)
        },
    );
    for m in 5..12 {
        rings.put(Ring::Minutes, minute(HOUR + m, 10 + m));
    }
    let live = [minute(HOUR + 12, 40)];
    let got = chart(Ring::FiveMinutes, at(HOUR + 12, 1), &live, &rings);
    assert_eq!(got.len(), 72);
    let last3: Vec<(u32, u32, u16)> = (got[69..].iter())
        .map(|p| (p.minute - HOUR, p.p50_us / 1_000, p.sent))
        .collect();
    assert_eq!(last3, vec![(0, 4, 60), (5, 17, 300), (10, 21, 180)]);
    assert_eq!(
        got[71].p90_us, 40_500,
        "the open minute's spread counts at once"
    );
    // Past the minute ring's hour a missing window stays empty (no minutes to build from).
    assert_eq!(got[50].sent, 0);
}

#[test]
fn seven_days_read_their_quarters_and_mark_where_the_daemon_was_not_running() {
    let mut rings = Rings::default();
    let day_ago = HOUR - 24 * 60;
    rings.put(
        Ring::QuarterHours,
        MinuteSummary {
            minute: day_ago,
            ..minute(day_ago, 9)
        },
    );
    // Down from minute 20 of the hour a day ago to minute 31 (inclusive).
    rings.gaps = vec![(day_ago + 20, day_ago + 31)];
    let got = chart(Ring::QuarterHours, at(HOUR, 0), &[], &rings);
    assert_eq!(got.len(), 672);
    assert_eq!(got[671].minute, HOUR);
    let from = got.iter().position(|p| p.minute == day_ago).unwrap();
    assert_eq!(got[from].p50_us, 9_000);
    let marked: Vec<u32> = (got.iter())
        .filter(|p| p.has(Mark::NotRunning))
        .map(|p| p.minute - day_ago)
        .collect();
    assert_eq!(
        marked,
        vec![15, 30],
        "the quarters the span touches, no more"
    );
}
