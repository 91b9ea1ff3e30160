use std::time::Duration;

use super::*;
use crate::history::MAX_UNWRITTEN_MINUTES;
use crate::messages::ProbeOutcome;
use crate::types::TargetId;

const T0: u64 = 1_700_000_040; // the start of a minute
const M0: u32 = (T0 / 60) as u32;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn reply(ms: u64) -> ProbeOutcome {
    ProbeOutcome::Reply {
        rtt: Duration::from_millis(ms),
    }
}

/// Two tunnels with outside IPs, each with pinned targets, and a shared target.
fn config() -> Arc<Config> {
    let toml = "[[vpn]]\nid = \"vpn-0123456789abcdef0\"\nname = \"dc\"\n\
        [[vpn.tunnel]]\nname = \"a\"\noutside_ip = \"52.0.0.1\"\ntargets = [\"10.0.0.1\", \"10.0.0.2\"]\n\
        [[vpn.tunnel]]\nname = \"b\"\noutside_ip = \"52.0.0.2\"\ntargets = [\"10.0.1.1\"]\n\
        [[target]]\naddress = \"10.9.9.9\"\n";
    Arc::new(Config::parse(toml, "t").unwrap())
}

#[test]
fn series_are_known_by_address_and_tunnel_identity_in_file_order() {
    let keys = file_order_keys(&config());
    assert_eq!(
        keys,
        [
            r#"target 10.0.0.1 on aws "vpn-0123456789abcdef0" ip 52.0.0.1"#,
            r#"target 10.0.0.2 on aws "vpn-0123456789abcdef0" ip 52.0.0.1"#,
            r#"target 10.0.1.1 on aws "vpn-0123456789abcdef0" ip 52.0.0.2"#,
            "target 10.9.9.9 shared",
            r#"tunnel aws "vpn-0123456789abcdef0" ip 52.0.0.1"#,
            r#"tunnel aws "vpn-0123456789abcdef0" ip 52.0.0.2"#,
        ]
    );
}

#[test]
fn the_saver_takes_every_closed_minute_in_file_order_and_keeps_them_until_written() {
    let config = config();
    let mut history = History::new(&config);
    // Minute 0: every target; minute 1: only 10.0.0.1, whose minute is still open.
    for t in 0..4 {
        history.record(TargetId(t), &reply(t as u64 + 1), at(5));
    }
    history.record(TargetId(0), &reply(9), at(65));
    let taken = history.closed_minutes(at(70));
    assert_eq!(taken.blocks.len(), 1, "the open minute is not taken");
    let (minute, slots) = &taken.blocks[0];
    assert_eq!(*minute, M0);
    let medians: Vec<Option<u32>> = slots.iter().map(|s| s.map(|s| s.p50_us)).collect();
    assert_eq!(
        medians,
        [
            Some(1_000),
            Some(2_000),
            Some(3_000),
            Some(4_000),
            Some(1_000), // tunnel a: its targets' probes together (nearest rank)
            Some(3_000),
        ]
    );
    // Not written yet (the write failed): taken again, with the minute closed since.
    let again = history.closed_minutes(at(125));
    let minutes: Vec<u32> = again.blocks.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        minutes,
        [M0, M0 + 1],
        "minute 1 closed though no probe came after it"
    );
    assert_eq!(again.blocks[1].1[0].map(|s| s.p50_us), Some(9_000));
    assert_eq!(again.blocks[1].1[1], None);
    history.forget_through(M0 + 1);
    assert!(history.closed_minutes(at(130)).blocks.is_empty());
    // The chart still has them until the page reads the disk: here the live minutes only.
    let live = history.target_live("10.0.0.1".parse().unwrap(), Some(("dc", "a")));
    assert_eq!(live.unwrap().minutes, Vec::new());
}

#[test]
fn unwritten_minutes_are_bounded_when_the_disk_never_takes_them() {
    let mut history = History::new(&config());
    let hours = 3 * 60;
    for m in 0..hours {
        history.record(TargetId(0), &reply(1), at(m * 60));
    }
    let taken = history.closed_minutes(at(hours * 60));
    assert_eq!(taken.blocks.len(), MAX_UNWRITTEN_MINUTES);
    assert_eq!(
        taken.blocks[0].0,
        M0 + hours as u32 - MAX_UNWRITTEN_MINUTES as u32
    );
}

#[test]
fn a_tunnels_baseline_learns_minutes_the_saver_takes_and_those_read_back() {
    let mut history = History::new(&config());
    let a = TunnelId {
        connection: 0,
        tunnel: 0,
    };
    // Six minutes of replies at 20 ms; the saver takes each right after it closes, before
    // the tunnel's next probe would have taught it.
    for m in 0..6u64 {
        for s in 0..10 {
            history.record(TargetId(0), &reply(20), at(m * 60 + s));
        }
        let taken = history.closed_minutes(at((m + 1) * 60));
        history.forget_through(taken.blocks.last().map_or(0, |b| b.0));
    }
    let now = at(6 * 60 + 1);
    let learnt = history.brownout(a, now).rtt_baseline_seconds;
    assert_eq!(learnt, Some(0.02));
    // A new start: the minutes read back from disk teach it at once.
    let mut restarted = History::new(&config());
    let minutes: Vec<MinuteSummary> = (0..6)
        .map(|m| MinuteSummary {
            minute: M0 + m,
            p10_us: 30_000,
            p50_us: 30_000,
            p90_us: 30_000,
            sent: 10,
            lost: 0,
            marks: 0,
        })
        .collect();
    restarted.learn_restored(a, &minutes, now);
    assert_eq!(restarted.brownout(a, now).rtt_baseline_seconds, Some(0.03));
}

fn encode_v1(saved_ms: u64, series: &[(&str, &[MinuteSummary], &[MinuteSummary])]) -> Vec<u8> {
    encode(&SavedHistory {
        saved_at: Timestamp::from_wall_millis(saved_ms),
        series: (series.iter())
            .map(|(key, minutes, windows)| SavedSeries {
                key: key.to_string(),
                minutes: minutes.to_vec(),
                windows: windows.to_vec(),
            })
            .collect(),
    })
}

fn summary(minute: u32, ms: u32) -> MinuteSummary {
    MinuteSummary {
        minute,
        p10_us: ms * 1_000,
        p50_us: ms * 1_000,
        p90_us: ms * 1_000,
        sent: 60,
        lost: 1,
        marks: 0,
    }
}

#[test]
fn a_snapshot_file_of_the_build_before_reads_back_with_whole_minute_numbers() {
    let saved_ms = u64::from(M0 + 100) * 60_000 + 30_000;
    // Minutes of the hour before the save, one from 2 h before (its slot was reused: stale),
    // and windows of the six hours before.
    let minutes = [
        summary(M0 + 41, 5),
        summary(M0 + 99, 6),
        summary(M0 + 100, 7),
    ];
    let stale = [summary(M0 + 100 - 120, 1)];
    let window = |back: u32| ((M0 + 100) / COARSE_STEP - back) * COARSE_STEP;
    let windows = [summary(window(40), 8), summary(window(1), 9)];
    let bytes = encode_v1(
        saved_ms,
        &[("tunnel x", &minutes, &windows), ("target y", &stale, &[])],
    );
    let saved = decode(&bytes).unwrap();
    assert_eq!(saved.saved_at.wall_millis(), saved_ms);
    assert_eq!(saved.series[0].key, "tunnel x");
    assert_eq!(saved.series[0].minutes, minutes);
    assert_eq!(saved.series[0].windows, windows);
    assert_eq!(saved.series[1].minutes, [], "a stale slot is no minute");
}

/// Whether an error is the one a case expects.
type Expected = fn(&DecodeError) -> bool;

#[test]
fn a_damaged_snapshot_file_is_an_error_naming_what_is_wrong() {
    let minutes = [summary(M0, 5), summary(M0 + 1, 6)];
    let bytes = encode_v1(u64::from(M0 + 2) * 60_000, &[("tunnel x", &minutes, &[])]);
    let mut other_version = bytes.clone();
    other_version[8] = 9;
    let mut flipped = bytes.clone();
    flipped[200] ^= 1;
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("empty", Vec::new(), |e| {
            matches!(e, DecodeError::TooShort(0))
        }),
        ("truncated", bytes[..bytes.len() - 100].to_vec(), |e| {
            matches!(e, DecodeError::Checksum)
        }),
        ("other version", other_version, |e| {
            matches!(e, DecodeError::Version { found: 9 })
        }),
        (
            "not ours",
            b"{\"json\": true, \"a\": 123456789}".to_vec(),
            |e| matches!(e, DecodeError::Magic),
        ),
        ("a flipped bit", flipped, |e| {
            matches!(e, DecodeError::Checksum)
        }),
    ];
    for (what, bytes, expected) in cases {
        let error = decode(&bytes).expect_err(what);
        assert!(expected(&error), "{what}: {error}");
    }
    // A count that does not match the series, under a good checksum.
    for count in [2u32, 0] {
        let mut bytes = bytes.clone();
        bytes.truncate(bytes.len() - CHECKSUM_BYTES);
        bytes[18..22].copy_from_slice(&count.to_le_bytes());
        let checksum = fnv1a(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::Length(count)));
    }
}
