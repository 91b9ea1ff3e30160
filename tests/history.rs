//! The smoke charts' history through the real daemon: minutes recorded before a restart
//! (a `kill -9`, so the periodic save is what keeps them) are read back and shown by
//! `/status` and the NOC page with the "daemon not running" mark; a daemon killed again and
//! again while it writes the file always leaves one that reads.
//!
//! `TUNNELKEEPER_HISTORY_SAVE_SECS` (test-only) saves every second instead of every minute.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{write_temp, Daemon};
use serde_json::Value;
use tunnelkeeper::history::disk::{decode, FILE_NAME};

const SAVE_EVERY_SECOND: (&str, &str) = ("TUNNELKEEPER_HISTORY_SAVE_SECS", "1");

/// The embedded default (tunnels local-a and local-b, targets 127.0.0.1 and .2).
fn start_default(state: &Path) -> Daemon {
    Daemon::start(
        &["run", "--state-dir", state.to_str().unwrap()],
        &[SAVE_EVERY_SECOND],
    )
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

fn status(daemon: &Daemon) -> Value {
    let (code, body) = daemon.get("/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn minutes_recorded_before_a_kill_are_shown_after_the_restart() {
    let state = common::temp_dir("history");
    let mut daemon = start_default(&state);
    daemon.wait_for("/health", Duration::from_secs(10), |_, b| {
        b.contains("tunnel local-a: up") && b.contains("tunnel local-b: up")
    });
    assert!(
        status(&daemon)["history_restored"].is_null(),
        "nothing to read at the first start"
    );
    // A minute closes once the next one has a probe; the save after it keeps it.
    let first = minute_now();
    while minute_now() == first {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop("KILL", Duration::from_secs(5));
    assert!(state.join(FILE_NAME).exists(), "no history file was saved");

    let daemon = start_default(&state);
    let json = status(&daemon);
    let restored = &json["history_restored"];
    assert_eq!(restored["series_adopted"], 4, "{restored}");
    assert_eq!(restored["series_dropped"], 0, "{restored}");
    assert!(
        restored["minutes_restored"].as_u64().unwrap() >= 1,
        "{restored}"
    );
    assert!(
        restored["minutes_not_running"].as_u64().unwrap() >= 1,
        "{restored}"
    );
    let (code, page) = daemon.get("/");
    assert_eq!(code, 200);
    let minutes = restored["minutes_restored"].as_u64().unwrap();
    assert!(
        page.contains(&format!(
            "it read back {minutes} minute(s) of the last hour"
        )),
        "{page}"
    );
    // Each tunnel's chart: the restart is marked, and the minute before it has its smoke.
    assert_eq!(
        page.matches(r#"<text class="mark stopped""#).count(),
        2,
        "{page}"
    );
    assert!(page.contains(r#"class="smoke""#), "{page}");
    assert!(!daemon.log().contains("set aside"), "{}", daemon.log());
}

#[test]
fn a_daemon_killed_while_it_writes_leaves_a_history_that_reads() {
    // Many targets make the file big (about 1.7 KB a series) and its write long enough to
    // be caught: kill -9 the moment a write is seen under way.
    let targets: String = (0..2_000)
        .map(|i| {
            format!(
                "[[target]]\naddress = \"127.0.{}.{}\"\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let config = write_temp(
        "history-kill.toml",
        &format!("[probe]\ninterval = \"10s\"\n{targets}"),
    );
    let state = common::temp_dir("history-kill");
    let file = state.join(FILE_NAME);
    let aside = state.join(format!("{FILE_NAME}.tmp"));
    let mut whole = 0;
    let mut caught = 0;
    for round in 0..6 {
        let mut daemon = Daemon::start(
            &[
                "run",
                "--config",
                config.to_str().unwrap(),
                "--state-dir",
                state.to_str().unwrap(),
            ],
            &[SAVE_EVERY_SECOND],
        );
        // Under way: the file written aside exists, or the file is shorter than a whole one.
        let start = Instant::now();
        let mid_write = loop {
            let len = std::fs::metadata(&file).map_or(0, |m| m.len());
            if aside.exists() || (whole > 0 && len < whole) {
                break true;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break false;
            }
            std::hint::spin_loop();
        };
        caught += usize::from(mid_write);
        daemon.stop("KILL", Duration::from_secs(5));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let saved = decode(&bytes).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(saved.series.len(), 2_000, "round {round}");
        whole = bytes.len() as u64;
    }
    assert!(caught >= 3, "only {caught} kills came mid-write");
    let daemon = Daemon::start(
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[SAVE_EVERY_SECOND],
    );
    let restored = &status(&daemon)["history_restored"];
    assert_eq!(restored["series_adopted"], 2_000, "{restored}");
    assert!(!daemon.log().contains("set aside"), "{}", daemon.log());
    drop(daemon);
    let _ = std::fs::remove_dir_all(&state); // 3.5 MB
}

#[test]
fn a_history_file_that_cannot_be_read_is_set_aside_and_the_daemon_runs() {
    let state = common::temp_dir("history-bad");
    std::fs::write(state.join(FILE_NAME), b"TKHIST\0\0 torn").unwrap();
    let daemon = start_default(&state);
    daemon.wait_for("/health", Duration::from_secs(10), |_, b| {
        b.contains("tunnel local-a: up")
    });
    assert!(status(&daemon)["history_restored"].is_null());
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("history.bin.corrupt-")),
        "{names:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("the history file cannot be read: set aside"),
        "{log}"
    );
    assert!(log.contains("too short for a history file"), "{log}");
}
