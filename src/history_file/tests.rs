//! The saver and the start through the ring files: closed minutes leave memory once
//! written, a reload refits the files by identity, a start reads them back.

use std::time::Duration;

use super::*;
use crate::config::{Config, ReloadMapping};
use crate::history::History;
use crate::messages::ProbeOutcome;
use crate::types::TargetId;

const M: u32 = 29_400_000 / 60 * 60; // the start of an hour

fn at(minute: u32, secs: u64) -> Timestamp {
    Timestamp::from_secs(u64::from(minute) * 60 + secs)
}

fn config(addresses: &[&str]) -> Arc<Config> {
    let text: String = (addresses.iter())
        .map(|a| format!("[[target]]\naddress = \"{a}\"\n"))
        .collect();
    Arc::new(Config::parse(&text, "t").unwrap())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tk-saver-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Replies of `ms` to every target of the history's config in `minute`.
fn record_minute(history: &SharedHistory, minute: u32, ms: u64) {
    let mut history = history.lock().unwrap();
    for t in 0..history.config().targets.len() {
        let reply = ProbeOutcome::Reply {
            rtt: Duration::from_millis(ms),
        };
        history.record(TargetId(t), &reply, at(minute, 5));
    }
}

fn medians(rings: &Rings, key: &str, minutes: std::ops::Range<u32>) -> Vec<Option<u32>> {
    let firsts: Vec<u32> = minutes.collect();
    (rings.read(Ring::Minutes, key, &firsts).into_iter())
        .map(|s| s.map(|s| s.p50_us / 1_000))
        .collect()
}

#[test]
fn written_minutes_leave_memory_a_reload_refits_the_files_and_a_start_reads_them() {
    let dir = temp_dir("refit");
    let a = config(&["10.0.0.1", "10.0.0.2"]);
    let history = History::shared(&a);
    let rings = open(&dir, &history, at(M, 0));
    assert!(
        history.lock().unwrap().restored().is_none(),
        "a first start"
    );
    let mut saver = Saver::new(&dir, history.clone(), rings.clone(), at(M, 0));
    for m in 0..3 {
        record_minute(&history, M + m, 5 + u64::from(m));
    }
    saver.save(at(M + 3, 1));
    let kept = "target 10.0.0.2 shared";
    assert_eq!(medians(&rings, kept, M..M + 3), [Some(5), Some(6), Some(7)]);
    let live = history
        .lock()
        .unwrap()
        .target_live("10.0.0.2".parse().unwrap(), None);
    assert_eq!(live.unwrap().minutes, [], "on disk, so no longer in memory");

    // A reload: 10.0.0.1 goes, 10.0.0.3 comes first. The next write refits the files.
    let b = config(&["10.0.0.3", "10.0.0.2"]);
    history
        .lock()
        .unwrap()
        .reshape(&b, &ReloadMapping::between(&a, &b));
    record_minute(&history, M + 3, 9);
    saver.save(at(M + 4, 1));
    assert_eq!(
        rings.store().as_ref().unwrap().table().keys,
        file_order_keys(&b)
    );
    let all = [Some(5), Some(6), Some(7), Some(9)];
    assert_eq!(medians(&rings, kept, M..M + 4), all);
    let new = "target 10.0.0.3 shared";
    assert_eq!(medians(&rings, new, M..M + 4), [None, None, None, Some(9)]);
    assert_eq!(medians(&rings, "target 10.0.0.1 shared", M..M + 1), [None]);
    assert!(rings.not_running().is_empty(), "a reload is no stop");

    // A start two minutes after the last one written.
    let history = History::shared(&b);
    let rings = open(&dir, &history, at(M + 6, 0));
    let restored = history.lock().unwrap().restored().cloned().unwrap();
    assert_eq!(
        (
            restored.series_adopted,
            restored.series_dropped,
            restored.minutes_restored,
            restored.minutes_not_running
        ),
        (2, 0, 4, 3)
    );
    assert_eq!(restored.saved_at, at(M + 4, 0));
    assert_eq!(rings.not_running(), [(M + 4, M + 6)]);
    assert_eq!(medians(&rings, kept, M..M + 4), all);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn minutes_that_cannot_be_written_stay_in_memory_for_the_next_write() {
    let dir = temp_dir("unwritable");
    let a = config(&["10.0.0.1"]);
    let history = History::shared(&a);
    let rings = open(&dir, &history, at(M, 0));
    let mut saver = Saver::new(&dir, history.clone(), rings.clone(), at(M, 0));
    record_minute(&history, M, 5);
    // The files cannot take a write: the store holds them read-only.
    let read_only = RingStore::open_read_only(&dir).unwrap();
    let writable = rings.0.write().unwrap().replace(read_only);
    saver.save(at(M + 1, 1));
    let live = history
        .lock()
        .unwrap()
        .target_live("10.0.0.1".parse().unwrap(), None);
    assert_eq!(live.unwrap().minutes.len(), 1, "kept for the next write");
    *rings.0.write().unwrap() = writable;
    saver.save(at(M + 2, 1));
    assert_eq!(
        medians(&rings, "target 10.0.0.1 shared", M..M + 1),
        [Some(5)]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_window_is_written_when_it_ends_even_if_its_last_minute_had_nothing() {
    let dir = temp_dir("window-gap");
    let a = config(&["10.0.0.1"]);
    let history = History::shared(&a);
    let rings = open(&dir, &history, at(M, 0));
    let mut saver = Saver::new(&dir, history.clone(), rings.clone(), at(M, 0));
    // Minutes 0 to 3 of a five-minute window, then nothing (the window's last minute has
    // no block), and the first write comes two minutes after the window ended.
    for m in 0..4 {
        record_minute(&history, M + m, 10 + u64::from(m));
    }
    saver.save(at(M + 6, 1));
    let key = "target 10.0.0.1 shared";
    let window = rings.read(Ring::FiveMinutes, key, &[M]);
    let window = window[0].expect("the window was written");
    assert_eq!(
        (window.sent, window.p10_us, window.p90_us),
        (4, 10_000, 13_000)
    );
    assert_eq!(
        rings.read(Ring::QuarterHours, key, &[M]),
        [None],
        "not ended yet"
    );
    saver.save(at(M + 15, 1));
    let quarter = rings.read(Ring::QuarterHours, key, &[M])[0].expect("written at its end");
    assert_eq!(quarter.sent, 4);
    let _ = std::fs::remove_dir_all(&dir);
}
