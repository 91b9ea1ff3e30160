//! The ring files through restarts, torn and cut blocks, damaged files and a changed
//! series set.

use super::*;

const MINUTE: u32 = 29_400_000 / 60 * 60; // the start of an hour (and of every window)

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tk-rings-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn summary(minute: u32, ms: u32, sent: u16) -> MinuteSummary {
    MinuteSummary {
        minute,
        p10_us: ms * 1_000,
        p50_us: ms * 1_000,
        p90_us: ms * 1_000,
        sent,
        lost: 0,
        marks: 0,
    }
}

/// Closes the first quarter hour: column c's minute m has a median of (c + 1) × 10 + m ms.
fn fill_quarter(store: &RingStore, columns: u32) {
    for m in 0..15 {
        let slots: Vec<Option<MinuteSummary>> = (0..columns)
            .map(|c| Some(summary(MINUTE + m, (c + 1) * 10 + m, 60)))
            .collect();
        let written = store.close_minute(MINUTE + m, &slots).unwrap();
        store.sync(&written).unwrap();
    }
}

fn medians(store: &RingStore, ring: Ring, column: u32, firsts: &[u32]) -> Vec<Option<u32>> {
    (store.read_series(ring, column, firsts).into_iter())
        .map(|s| s.filter(|s| s.sent > 0).map(|s| (s.p50_us + 500) / 1_000))
        .collect()
}

#[test]
fn closed_minutes_fill_every_ring_and_a_restart_reads_them_back() {
    let dir = temp_dir("restart");
    let (store, opened) = RingStore::open(&dir, keys(&["a", "b"]), MINUTE).unwrap();
    assert_eq!(opened.last_written, None);
    fill_quarter(&store, 2);
    assert_eq!(
        medians(
            &store,
            Ring::Minutes,
            1,
            &[MINUTE, MINUTE + 14, MINUTE + 15]
        ),
        vec![Some(20), Some(34), None]
    );
    assert_eq!(
        medians(
            &store,
            Ring::FiveMinutes,
            0,
            &[MINUTE, MINUTE + 5, MINUTE + 10]
        ),
        vec![Some(12), Some(17), Some(22)]
    );
    assert_eq!(
        medians(&store, Ring::QuarterHours, 1, &[MINUTE]),
        vec![Some(27)]
    );
    assert_eq!(
        store.read_series(Ring::QuarterHours, 1, &[MINUTE])[0].map(|s| s.sent),
        Some(15 * 60)
    );
    drop(store);

    // Restarted 20 minutes later: the minutes come back, the gap is "not running".
    let (store, opened) = RingStore::open(&dir, keys(&["a", "b"]), MINUTE + 34).unwrap();
    assert_eq!(opened.last_written, Some(MINUTE + 14));
    assert_eq!((opened.series_adopted, opened.series_dropped), (2, 0));
    assert_eq!(
        medians(&store, Ring::QuarterHours, 0, &[MINUTE]),
        vec![Some(17)]
    );
    assert!(store.table().was_not_running(MINUTE + 15, 1));
    assert!(store.table().was_not_running(MINUTE + 34, 1));
    assert!(!store.table().was_not_running(MINUTE + 14, 1));
    // A ring's lap later the slot holds another window: the old one does not show.
    assert_eq!(
        medians(&store, Ring::Minutes, 0, &[MINUTE + 60]),
        vec![None]
    );
}

#[test]
fn a_torn_or_cut_block_loses_only_its_own_slots() {
    let dir = temp_dir("torn");
    let (store, _) = RingStore::open(&dir, keys(&["a", "b", "c"]), MINUTE).unwrap();
    fill_quarter(&store, 3);
    // A kill -9 in the middle of writing the block of minute 3 an hour later: the header
    // and the first slot made it, the rest is the old block.
    let next: Vec<Option<MinuteSummary>> = (0..3)
        .map(|c| Some(summary(MINUTE + 63, 90 + c, 60)))
        .collect();
    let block = encode_block(MINUTE + 63, &next);
    let g = Geometry {
        ring: Ring::Minutes,
        series: 3,
    };
    let half = 16 + SLOT_BYTES + 5;
    store
        .file(Ring::Minutes)
        .write_all_at(&block[..half], g.block_offset(MINUTE + 63))
        .unwrap();
    assert_eq!(
        (0..3)
            .map(|c| medians(&store, Ring::Minutes, c, &[MINUTE + 63])[0])
            .collect::<Vec<_>>(),
        vec![Some(90), None, None]
    );
    assert_eq!(
        medians(&store, Ring::Minutes, 2, &[MINUTE + 2, MINUTE + 4]),
        vec![Some(32), Some(34)]
    );
    drop(store);

    // The file cut in the middle of minute 14's block: a restart keeps everything before.
    let path = dir.join(Ring::Minutes.file_name());
    let cut = g.slot_offset(MINUTE + 14, 1) + 3;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let (store, opened) = RingStore::open(&dir, keys(&["a", "b", "c"]), MINUTE + 16).unwrap();
    assert_eq!(
        opened.last_written,
        Some(MINUTE + 14),
        "its header is whole"
    );
    assert_eq!(
        (0..3)
            .map(|c| medians(&store, Ring::Minutes, c, &[MINUTE + 14])[0])
            .collect::<Vec<_>>(),
        vec![Some(24), None, None]
    );
    assert_eq!(
        medians(&store, Ring::Minutes, 1, &[MINUTE + 13]),
        vec![Some(33)]
    );
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        g.file_bytes(),
        "extended again"
    );
}

#[test]
fn rings_from_another_config_are_adopted_by_identity() {
    let dir = temp_dir("other-config");
    let (store, _) = RingStore::open(&dir, keys(&["a", "b", "c"]), MINUTE).unwrap();
    fill_quarter(&store, 3);
    drop(store);
    // "b" went, "new" came, the order changed.
    let (store, opened) = RingStore::open(&dir, keys(&["c", "new", "a"]), MINUTE + 16).unwrap();
    assert_eq!((opened.series_adopted, opened.series_dropped), (2, 1));
    assert_eq!(store.table().keys, keys(&["c", "new", "a"]));
    assert_eq!(
        medians(&store, Ring::Minutes, 0, &[MINUTE + 3]),
        vec![Some(33)]
    );
    assert_eq!(medians(&store, Ring::Minutes, 1, &[MINUTE + 3]), vec![None]);
    assert_eq!(
        medians(&store, Ring::Minutes, 2, &[MINUTE + 3]),
        vec![Some(13)]
    );
    assert_eq!(
        medians(&store, Ring::QuarterHours, 0, &[MINUTE]),
        vec![Some(37)]
    );
    assert_eq!(
        medians(&store, Ring::FiveMinutes, 2, &[MINUTE + 10]),
        vec![Some(22)]
    );
    assert_eq!(store.column_of("a"), Some(2));
    let g = Geometry {
        ring: Ring::QuarterHours,
        series: 3,
    };
    let size = fs::metadata(dir.join(Ring::QuarterHours.file_name()))
        .unwrap()
        .len();
    assert_eq!(size, g.file_bytes());
}

/// Leaves `dir` as a refit from `old` to `new` killed at `step`: after the rings were
/// written aside (0) or after the new table was renamed in (1).
fn refit_cut_short(dir: &Path, old: &[&str], new: &[&str], step: u8) {
    let (old, new) = (
        SeriesTable {
            keys: keys(old),
            not_running: Vec::new(),
        },
        SeriesTable {
            keys: keys(new),
            not_running: Vec::new(),
        },
    );
    let columns = old.columns_for(&new.keys);
    for ring in Ring::ALL {
        let geometry = Geometry {
            ring,
            series: new.keys.len() as u32,
        };
        rewrite_aside(
            &dir.join(ring.file_name()),
            &old,
            &columns,
            geometry,
            new.hash(),
        )
        .unwrap();
    }
    if step == 1 {
        write_aside_and_rename(&dir.join(TABLE_FILE_NAME), &new.encode()).unwrap();
    }
}

#[test]
fn a_refit_cut_short_is_undone_before_its_commit_and_finished_after_it() {
    for (step, want_keys, column_of_b) in [(0, ["a", "b"], 1), (1, ["b", "a"], 0)] {
        let dir = temp_dir(&format!("refit-cut-{step}"));
        let (store, _) = RingStore::open(&dir, keys(&["a", "b"]), MINUTE).unwrap();
        fill_quarter(&store, 2);
        drop(store);
        refit_cut_short(&dir, &["a", "b"], &["b", "a"], step);
        let table = SeriesTable::decode(&fs::read(dir.join(TABLE_FILE_NAME)).unwrap()).unwrap();
        let (store, opened) = RingStore::open(&dir, table.keys.clone(), MINUTE + 16).unwrap();
        assert_eq!(store.table().keys, keys(&want_keys), "step {step}");
        assert_eq!(opened.series_adopted, 2, "step {step}");
        // Every minute of "b" (medians 20 + m) is where the table says, in every ring.
        let minutes: Vec<u32> = (0..15).map(|m| MINUTE + m).collect();
        let want: Vec<Option<u32>> = (0..15).map(|m| Some(20 + m)).collect();
        assert_eq!(
            medians(&store, Ring::Minutes, column_of_b, &minutes),
            want,
            "step {step}"
        );
        assert_eq!(
            medians(&store, Ring::QuarterHours, column_of_b, &[MINUTE]),
            vec![Some(27)],
            "step {step}"
        );
        let left: Vec<String> = (fs::read_dir(&dir).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") || n.contains("corrupt"))
            .collect();
        assert!(left.is_empty(), "step {step}: {left:?}");
    }
}

#[test]
fn files_that_cannot_be_read_are_set_aside_and_the_rings_start_empty() {
    let dir = temp_dir("damaged");
    let (store, _) = RingStore::open(&dir, keys(&["a"]), MINUTE).unwrap();
    fill_quarter(&store, 1);
    drop(store);
    // A five-minute ring from another build: set aside, the others kept.
    let five = dir.join(Ring::FiveMinutes.file_name());
    let mut bytes = fs::read(&five).unwrap();
    bytes[8] = 9; // version
    fs::write(&five, &bytes).unwrap();
    let (store, _) = RingStore::open(&dir, keys(&["a"]), MINUTE + 16).unwrap();
    assert_eq!(medians(&store, Ring::FiveMinutes, 0, &[MINUTE]), vec![None]);
    assert_eq!(medians(&store, Ring::Minutes, 0, &[MINUTE]), vec![Some(10)]);
    drop(store);
    let aside = |prefix: &str| {
        fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name().into_string().unwrap();
                name.starts_with(prefix) && name.contains(".corrupt-")
            })
            .count()
    };
    assert_eq!(aside(Ring::FiveMinutes.file_name()), 1);
    // A damaged series table: nothing can say what the columns hold, so all start empty.
    let table = dir.join(TABLE_FILE_NAME);
    let mut bytes = fs::read(&table).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&table, &bytes).unwrap();
    let (store, opened) = RingStore::open(&dir, keys(&["a"]), MINUTE + 17).unwrap();
    assert_eq!(opened.last_written, None);
    assert_eq!(medians(&store, Ring::Minutes, 0, &[MINUTE]), vec![None]);
    assert_eq!(aside(TABLE_FILE_NAME), 1);
    assert_eq!(aside(Ring::Minutes.file_name()), 1);
}

#[test]
fn a_chart_reads_its_points_from_the_files() {
    use crate::history::chart::points;
    use crate::history::Mark;
    use crate::types::Timestamp;
    let dir = temp_dir("chart");
    let (store, _) = RingStore::open(&dir, keys(&["a", "b"]), MINUTE).unwrap();
    fill_quarter(&store, 2);
    drop(store);
    let (store, _) = RingStore::open(&dir, keys(&["b", "a"]), MINUTE + 20).unwrap();
    let now = Timestamp::from_secs(u64::from(MINUTE + 20) * 60 + 5);
    let week = points(Ring::QuarterHours, now, "a", &[], &store);
    assert_eq!(week.len(), 672);
    let quarter = week.iter().find(|p| p.minute == MINUTE).unwrap();
    assert_eq!(((quarter.p50_us + 500) / 1_000, quarter.sent), (17, 900));
    assert!(week[671].has(Mark::NotRunning), "the start's minute");
    let hour = points(Ring::Minutes, now, "b", &[], &store);
    let back: Vec<u32> = (hour.iter())
        .filter(|p| p.sent > 0)
        .map(|p| (p.p50_us + 500) / 1_000)
        .collect();
    assert_eq!(back, (20..35).collect::<Vec<u32>>());
    let not_running: Vec<u32> = (hour.iter())
        .filter(|p| p.has(Mark::NotRunning))
        .map(|p| p.minute - MINUTE)
        .collect();
    assert_eq!(
        not_running,
        vec![15, 16, 17, 18, 19, 20],
        "the gap since the last minute written (a first start has none)"
    );
    assert_eq!(points(Ring::Minutes, now, "gone", &[], &store)[0].sent, 0);
}

#[test]
fn windows_are_consolidated_a_chunk_of_columns_at_a_time_into_the_right_columns() {
    let dir = temp_dir("chunks");
    let names: Vec<String> = (0..2_500).map(|c| format!("s{c}")).collect();
    let (store, _) = RingStore::open(&dir, names, MINUTE).unwrap();
    fill_quarter(&store, 2_500);
    for column in [0, 1_023, 1_024, 2_048, 2_499] {
        // Minutes 0..5 of column c: medians (c + 1) × 10 + m ms; the window's is the third
        // (as packed: 11 bits of mantissa).
        let packed = |ms: u32| {
            Some((crate::history::decode(crate::history::encode(ms * 1_000)) + 500) / 1_000)
        };
        let five = medians(&store, Ring::FiveMinutes, column, &[MINUTE]);
        assert_eq!(five, vec![packed((column + 1) * 10 + 2)], "column {column}");
        let quarter = medians(&store, Ring::QuarterHours, column, &[MINUTE]);
        assert_eq!(
            quarter,
            vec![packed((column + 1) * 10 + 7)],
            "column {column}"
        );
    }
    let _ = fs::remove_dir_all(&dir);
}
