//! The log's file through restarts, torn writes and unreadable files.

use super::*;
use tunnelkeeper_core::outage::{OutageKind, SharedLoss, RECORD_VERSION};

const FLUSH: Duration = Duration::from_secs(5);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tk-outages-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn record(id: &str, end: u64) -> OutageRecord {
    OutageRecord {
        version: RECORD_VERSION,
        id: id.to_string(),
        kind: OutageKind::Tunnel,
        connection: Some("dc".into()),
        tunnels: vec!["dc-a".into()],
        started_at: Timestamp::from_secs(end - 60),
        ended_at: Timestamp::from_secs(end),
        seconds: 60.0,
        planes: Vec::new(),
        reason: "lost".into(),
        cause: None,
        pages: Vec::new(),
        shared_targets: SharedLoss::default(),
    }
}

fn ids(log: &OutageLog) -> Vec<String> {
    log.records().iter().map(|r| r.id.clone()).collect()
}

const NOW: Timestamp = Timestamp::from_secs(1_800_000_000);

#[test]
fn records_survive_a_restart() {
    let dir = temp_dir("restart");
    let log = OutageLog::open(&dir, NOW);
    assert!(log.records().is_empty());
    log.record(record("a", 1_799_999_000));
    log.record(record("b", 1_799_999_500));
    assert!(log.flush(FLUSH));
    assert_eq!(ids(&log), ["a", "b"]);
    drop(log);
    let again = OutageLog::open(&dir, NOW);
    assert_eq!(ids(&again), ["a", "b"]);
}

#[test]
fn a_torn_last_line_is_skipped_and_the_next_append_is_whole() {
    let dir = temp_dir("torn");
    let whole = encode_line(&record("a", 1_799_999_000));
    let torn = encode_line(&record("b", 1_799_999_500));
    fs::write(
        dir.join(FILE_NAME),
        format!("{whole}{}", &torn[..torn.len() / 2]),
    )
    .unwrap();
    let log = OutageLog::open(&dir, NOW);
    assert_eq!(ids(&log), ["a"]);
    log.record(record("c", 1_799_999_900));
    assert!(log.flush(FLUSH));
    drop(log);
    let again = OutageLog::open(&dir, NOW);
    assert_eq!(
        ids(&again),
        ["a", "c"],
        "the append after a torn line must not join it"
    );
}

#[test]
fn a_file_that_cannot_be_read_is_set_aside_not_fatal() {
    let dir = temp_dir("unreadable");
    // A directory where the file should be: reading it fails.
    fs::create_dir_all(dir.join(FILE_NAME)).unwrap();
    let log = OutageLog::open(&dir, NOW);
    assert!(log.records().is_empty());
    assert!(dir
        .join(format!("outages.jsonl.corrupt-{}", NOW.as_millis()))
        .exists());
    log.record(record("a", 1_799_999_000));
    assert!(log.flush(FLUSH));
    assert_eq!(ids(&OutageLog::open(&dir, NOW)), ["a"]);
}

#[test]
fn records_past_the_retention_are_dropped_from_the_file() {
    let dir = temp_dir("retention");
    let old = encode_line(&record("old", 1_000_000_000));
    let new = encode_line(&record("new", 1_799_999_000));
    fs::write(dir.join(FILE_NAME), format!("{old}{new}")).unwrap();
    let log = OutageLog::open(&dir, NOW);
    assert_eq!(ids(&log), ["new"]);
    let text = fs::read_to_string(dir.join(FILE_NAME)).unwrap();
    assert_eq!(text, new, "the file was rewritten without the old record");
}
