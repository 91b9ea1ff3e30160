//! The smoke charts' history through the real daemon: minutes recorded before a restart
//! (a `kill -9`, so the periodic write is what keeps them) are read back from the ring
//! files and shown by `/status` and the NOC page with the "daemon not running" mark; a
//! daemon killed again and again while it refits its ring files to another config always
//! leaves a history that reads; a `history.bin` of the build before is carried over.
//!
//! `TUNNELKEEPER_HISTORY_SAVE_SECS` (test-only) writes every second instead of every minute.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{minute_now, wait_past_minute, write_temp, Daemon};
use serde_json::Value;
use tunnelkeeper::history::ring::{Ring, TABLE_FILE_NAME};
use tunnelkeeper::history::{decode, encode, MinuteSummary};
use tunnelkeeper::history_file::store::RingStore;

const SAVE_EVERY_SECOND: (&str, &str) = ("TUNNELKEEPER_HISTORY_SAVE_SECS", "1");

/// The embedded default (tunnels local-a and local-b, targets 127.0.0.1 and .2).
fn start_default(state: &Path) -> Daemon {
    Daemon::start(
        &["run", "--state-dir", state.to_str().unwrap()],
        &[SAVE_EVERY_SECOND],
    )
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
    wait_past_minute(minute_now());
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop("KILL", Duration::from_secs(5));
    for name in [TABLE_FILE_NAME, Ring::Minutes.file_name()] {
        assert!(state.join(name).exists(), "no {name} was written");
    }

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
    // Each tunnel's chart: the restart is marked (a point per minute it spans, one or
    // two here), and the minute before it has its smoke, on every range.
    let stopped = page.matches(r#"<text class="mark stopped""#).count();
    assert!((2..=4).contains(&stopped), "{stopped}: {page}");
    assert!(page.contains(r#"class="smoke""#), "{page}");
    for range in ["6h", "7d"] {
        let (code, page) = daemon.get(&format!("/?range={range}"));
        assert_eq!(code, 200);
        assert!(page.contains(r#"class="smoke""#), "{range}: {page}");
        assert!(
            page.contains(r#"<text class="mark stopped""#),
            "{range}: {page}"
        );
    }
    assert!(!daemon.log().contains("set aside"), "{}", daemon.log());
}

const TARGETS: usize = 2_000;

fn address(i: usize) -> String {
    format!("127.0.{}.{}", i / 250, i % 250 + 1)
}

/// A config of shared targets in the order of `indexes`, at a 10 s interval.
fn targets_config(name: &str, indexes: impl Iterator<Item = usize>) -> std::path::PathBuf {
    let targets: String = indexes
        .map(|i| format!("[[target]]\naddress = \"{}\"\n", address(i)))
        .collect();
    write_temp(name, &format!("[probe]\ninterval = \"10s\"\n{targets}"))
}

#[test]
fn a_daemon_killed_while_it_refits_its_rings_leaves_a_history_that_reads() {
    // Ring files of 2,000 targets with five minutes each (target i's median: i % 50 + 1 ms),
    // then starts alternating between two orders of them: each start rewrites the files
    // (about 25 MB), and is killed -9 the moment a file rewritten aside is seen.
    let forward = targets_config("refit-forward.toml", 0..TARGETS);
    let backward = targets_config("refit-backward.toml", (0..TARGETS).rev());
    let state = common::temp_dir("history-refit");
    let keys: Vec<String> = (0..TARGETS)
        .map(|i| format!("target {} shared", address(i)))
        .collect();
    let last = minute_now() as u32 - 1;
    let (store, _) = RingStore::open(&state, keys, last - 5).unwrap();
    for minute in last - 4..=last {
        let slots: Vec<Option<MinuteSummary>> = (0..TARGETS as u32)
            .map(|i| {
                Some(MinuteSummary {
                    minute,
                    p10_us: (i % 50 + 1) * 1_000,
                    p50_us: (i % 50 + 1) * 1_000,
                    p90_us: (i % 50 + 1) * 1_000,
                    sent: 6,
                    lost: 0,
                    marks: 0,
                })
            })
            .collect();
        store.close_minute(minute, &slots).unwrap();
    }
    drop(store);
    let asides: Vec<_> = (Ring::ALL.iter())
        .map(|r| state.join(format!("{}.tmp", r.file_name())))
        .collect();
    let mut caught = 0;
    for round in 0..8 {
        let config = if round % 2 == 0 { &backward } else { &forward };
        let mut child = std::process::Command::new(common::binary())
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(&state)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("TUNNELKEEPER_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !asides.iter().any(|a| a.exists()) && start.elapsed() < Duration::from_secs(10) {
            std::hint::spin_loop();
        }
        caught += usize::from(asides.iter().any(|a| a.exists()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(caught >= 4, "only {caught} kills came mid-rewrite");
    let daemon = Daemon::start(
        &[
            "run",
            "--config",
            forward.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[SAVE_EVERY_SECOND],
    );
    let restored = &status(&daemon)["history_restored"];
    assert_eq!(restored["series_adopted"], TARGETS, "{restored}");
    assert_eq!(restored["minutes_restored"], 5, "{restored}");
    assert!(!daemon.log().contains("set aside"), "{}", daemon.log());
    drop(daemon);
    // Every target's minutes came through in its own column.
    let keys: Vec<String> = (0..TARGETS)
        .map(|i| format!("target {} shared", address(i)))
        .collect();
    let (store, _) = RingStore::open(&state, keys, last + 1).unwrap();
    let minutes: Vec<u32> = (last - 4..=last).collect();
    for i in 0..TARGETS {
        let got: Vec<Option<u32>> = (store.read_series(Ring::Minutes, i as u32, &minutes))
            .into_iter()
            .map(|s| s.map(|s| s.p50_us))
            .collect();
        // RTTs are kept to 11 bits of mantissa (33 ms reads back as 32.992).
        let want = decode(encode((i as u32 % 50 + 1) * 1_000));
        assert_eq!(got, vec![Some(want); 5], "target {i}");
    }
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_history_file_that_cannot_be_read_is_set_aside_and_the_daemon_runs() {
    let state = common::temp_dir("history-bad");
    std::fs::write(
        state.join(TABLE_FILE_NAME),
        b"TKSERIES\x02\x00 torn and cut short",
    )
    .unwrap();
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
        names
            .iter()
            .any(|n| n.starts_with("history.series.corrupt-")),
        "{names:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("a history file cannot be read: set aside"),
        "{log}"
    );
    assert!(log.contains("series table damaged"), "{log}");
}

#[test]
fn a_history_bin_of_the_build_before_is_carried_over_into_the_rings() {
    use tunnelkeeper::config::{Config, EMBEDDED_DEFAULT};
    use tunnelkeeper::history::disk::{
        encode as encode_v1, file_order_keys, SavedHistory, SavedSeries, FILE_NAME,
    };
    use tunnelkeeper::types::Timestamp;
    let state = common::temp_dir("history-carry");
    // Saved a minute ago: its last ten minutes at 7 ms, and a five-minute window at 9 ms
    // an hour before.
    let config = Config::parse(EMBEDDED_DEFAULT, "default").unwrap();
    let saved_minute = minute_now() as u32 - 1;
    let minute = |m: u32, ms: u32| MinuteSummary {
        minute: m,
        p10_us: ms * 1_000,
        p50_us: ms * 1_000,
        p90_us: ms * 1_000,
        sent: 60,
        lost: 0,
        marks: 0,
    };
    let series = file_order_keys(&config)
        .into_iter()
        .map(|key| SavedSeries {
            key,
            minutes: (saved_minute - 9..=saved_minute)
                .map(|m| minute(m, 7))
                .collect(),
            windows: vec![minute((saved_minute - 60) / 5 * 5, 9)],
        })
        .collect();
    let saved_at = Timestamp::from_wall_millis(u64::from(saved_minute) * 60_000 + 59_000);
    let bytes = encode_v1(&SavedHistory { saved_at, series });
    std::fs::write(state.join(FILE_NAME), bytes).unwrap();

    let daemon = start_default(&state);
    let restored = &status(&daemon)["history_restored"];
    assert_eq!(restored["series_adopted"], 4, "{restored}");
    assert_eq!(restored["minutes_restored"], 10, "{restored}");
    assert!(
        !state.join(FILE_NAME).exists(),
        "carried over, then removed"
    );
    assert!(
        daemon.log().contains("carried over into the ring files"),
        "{}",
        daemon.log()
    );
    for range in ["1h", "6h", "7d"] {
        let (code, page) = daemon.get(&format!("/?range={range}"));
        assert_eq!(code, 200);
        assert!(page.contains(r#"class="smoke""#), "{range}: {page}");
    }
    drop(daemon);
    let _ = std::fs::remove_dir_all(&state);
}
