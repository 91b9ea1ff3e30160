use std::time::Duration;

use super::*;
use crate::history::{Range, FINE_SLOTS};
use crate::messages::ProbeOutcome;
use crate::types::{TargetId, TunnelId};

const T0: u64 = 1_700_000_040; // the start of a minute

fn at(secs: u64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn reply(ms: u64) -> ProbeOutcome {
    ProbeOutcome::Reply {
        rtt: Duration::from_millis(ms),
    }
}

/// Two tunnels with outside IPs, each with pinned targets, in the order given.
fn config(tunnels: &[(&str, &str, &str)]) -> Arc<Config> {
    let mut toml = String::from("[[vpn]]\nid = \"vpn-0123456789abcdef0\"\nname = \"dc\"\n");
    for (name, outside_ip, targets) in tunnels {
        toml.push_str(&format!(
            "[[vpn.tunnel]]\nname = \"{name}\"\noutside_ip = \"{outside_ip}\"\ntargets = [{targets}]\n"
        ));
    }
    Arc::new(Config::parse(&toml, "t").unwrap())
}

fn first() -> Arc<Config> {
    config(&[
        ("a", "52.0.0.1", "\"10.0.0.1\", \"10.0.0.2\""),
        ("b", "52.0.0.2", "\"10.0.1.1\""),
    ])
}

/// Three minutes of replies to every target of `history`'s config (RTT = target index + 1 ms).
fn recorded(config: &Arc<Config>) -> History {
    let mut history = History::new(config);
    for minute in 0..3u64 {
        for t in 0..config.targets.len() {
            history.record(TargetId(t), &reply(t as u64 + 1), at(minute * 60 + 5));
        }
    }
    history
}

fn target_named(config: &Config, address: &str) -> TargetId {
    config
        .targets
        .iter()
        .find(|t| t.address.to_string() == address)
        .unwrap()
        .id
}

#[test]
fn a_saved_history_comes_back_as_it_was_written() {
    let config = first();
    let saved = recorded(&config).rings().into_saved(at(150));
    assert_eq!(saved.series.len(), 3 + 2);
    let bytes = encode(&saved);
    assert_eq!(decode(&bytes), Ok(saved.clone()));
    // The open minute (2) is not saved; minutes 0 and 1 are.
    let held: Vec<u32> = (saved.series[0].rings.fine.iter())
        .filter(|s| s.sent > 0)
        .map(|s| u32::from(s.minute))
        .collect();
    let m0 = (T0 / 60) as u32 as u16 as u32;
    assert_eq!(held, vec![m0, m0 + 1]);
}

/// Whether an error is the one a case expects.
type Expected = fn(&DecodeError) -> bool;

#[test]
fn a_damaged_file_is_an_error_naming_what_is_wrong() {
    let bytes = encode(&recorded(&first()).rings().into_saved(at(150)));
    let mut other_version = bytes.clone();
    other_version[8] = 9;
    let mut flipped = bytes.clone();
    flipped[200] ^= 1;
    let mut extra = bytes.clone();
    extra.insert(100, 0);
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        ("empty", Vec::new(), |e| {
            matches!(e, DecodeError::TooShort(0))
        }),
        ("header only", bytes[..20].to_vec(), |e| {
            matches!(e, DecodeError::TooShort(20))
        }),
        ("truncated", bytes[..bytes.len() - 100].to_vec(), |e| {
            matches!(e, DecodeError::Checksum)
        }),
        ("cut by one", bytes[..bytes.len() - 1].to_vec(), |e| {
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
        ("a byte too many", extra, |e| {
            matches!(e, DecodeError::Checksum)
        }),
    ];
    for (what, bytes, expected) in cases {
        let error = decode(&bytes).expect_err(what);
        assert!(expected(&error), "{what}: {error}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn a_length_that_does_not_match_the_series_is_an_error_even_with_a_good_checksum() {
    let saved = recorded(&first()).rings().into_saved(at(150));
    // One series more than written (the bytes run out), one fewer (bytes are left over).
    for count in [6u32, 4] {
        let mut bytes = encode(&saved);
        bytes.truncate(bytes.len() - CHECKSUM_BYTES);
        bytes[18..22].copy_from_slice(&count.to_le_bytes());
        let checksum = fnv1a(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(decode(&bytes), Err(DecodeError::Length(count)));
    }
}

#[test]
fn series_are_adopted_by_identity_not_position_or_name() {
    let old = first();
    let saved = recorded(&old).rings().into_saved(at(150));
    let saved = decode(&encode(&saved)).unwrap();
    // Tunnels swapped and renamed, targets reordered, one target gone, one new.
    let new = config(&[
        ("b-renamed", "52.0.0.2", "\"10.0.1.9\", \"10.0.1.1\""),
        ("a-renamed", "52.0.0.1", "\"10.0.0.2\""),
    ]);
    let mut history = History::new(&new);
    // Saved in minute 2 (its open minute is not saved), not running in 3, started in 4.
    let now = at(4 * 60 + 1);
    let restored = history.adopt(saved, now);
    assert_eq!(
        (restored.series_adopted, restored.series_dropped),
        (4, 1),
        "10.0.0.1 is gone; both tunnels and two targets stay"
    );
    assert_eq!(restored.minutes_restored, 2);
    assert_eq!(restored.minutes_not_running, 2);
    assert_eq!(history.restored(), Some(&restored));
    let hour = |s: Option<&Series>| s.unwrap().points(Range::Hour, now);
    let points = hour(history.target(target_named(&new, "10.0.0.2")));
    // 10.0.0.2 was target 1 of the old config: 2 ms.
    assert_eq!(points[FINE_SLOTS - 5].p50_us, 2_000);
    assert_eq!(points[FINE_SLOTS - 4].p50_us, 2_000);
    let points = hour(history.target(target_named(&new, "10.0.1.1")));
    assert_eq!(points[FINE_SLOTS - 5].p50_us, 3_000);
    let new_target = hour(history.target(target_named(&new, "10.0.1.9")));
    assert!(new_target.iter().all(|p| p.sent == 0 && p.marks == 0));
    let tunnel_a = TunnelId {
        connection: 0,
        tunnel: 1,
    };
    let points = hour(history.tunnel(tunnel_a));
    assert_eq!(
        (points[FINE_SLOTS - 5].sent, points[FINE_SLOTS - 4].sent),
        (2, 2)
    );
    // Not running from the minute after the save to the start, on both rings.
    for p in &points[FINE_SLOTS - 2..] {
        assert!(p.has(Mark::NotRunning) && p.sent == 0, "{p:?}");
    }
    assert!(!points[FINE_SLOTS - 3].has(Mark::NotRunning));
    let six = history
        .tunnel(tunnel_a)
        .unwrap()
        .points(Range::SixHours, now);
    assert!(six.iter().any(|p| p.has(Mark::NotRunning)));
    assert!(six.iter().any(|p| p.sent == 2 || p.sent == 4));
}

#[test]
fn a_file_too_old_or_from_the_future_brings_nothing_back() {
    for saved_at in [at(0), at(10 * 60 * 60)] {
        let saved = recorded(&first()).rings().into_saved(saved_at);
        let now = at(6 * 60 * 60 + 120);
        let mut history = History::new(&first());
        let restored = history.adopt(saved, if saved_at == at(0) { now } else { at(180) });
        assert_eq!((restored.series_adopted, restored.series_dropped), (0, 5));
        let points = history
            .target(TargetId(0))
            .unwrap()
            .points(Range::Hour, now);
        assert!(points.iter().all(|p| p.sent == 0 && p.marks == 0));
    }
}

#[test]
fn a_restart_within_the_minute_marks_the_start_minute() {
    let saved = recorded(&first()).rings().into_saved(at(150));
    let mut history = History::new(&first());
    let restored = history.adopt(saved, at(170));
    assert_eq!(restored.minutes_not_running, 1);
    let points = history
        .target(TargetId(0))
        .unwrap()
        .points(Range::Hour, at(170));
    assert!(points[FINE_SLOTS - 1].has(Mark::NotRunning));
    assert!(!points[FINE_SLOTS - 2].has(Mark::NotRunning));
    assert_eq!(points[FINE_SLOTS - 2].sent, 1);
}

#[test]
fn a_reload_keeps_what_was_restored() {
    let saved = recorded(&first()).rings().into_saved(at(150));
    let mut history = History::new(&first());
    let restored = history.adopt(saved, at(170));
    let new = config(&[("b", "52.0.0.2", "\"10.0.1.1\"")]);
    let mapping = crate::config::ReloadMapping::between(history.config(), &new);
    history.reshape(&new, &mapping);
    assert_eq!(history.restored(), Some(&restored));
    let points = history
        .target(TargetId(0))
        .unwrap()
        .points(Range::Hour, at(170));
    assert_eq!(
        points[FINE_SLOTS - 2].p50_us,
        3_000,
        "10.0.1.1 kept its minutes"
    );
}

#[test]
fn a_series_takes_its_key_and_1_716_bytes_on_disk() {
    // README quotes this: bytes per series, and so per target and per tunnel.
    let saved = recorded(&first()).rings().into_saved(at(150));
    let keys: usize = saved.series.iter().map(|s| 2 + s.key.len()).sum();
    let bytes = encode(&saved).len();
    assert_eq!(bytes, HEADER_BYTES + CHECKSUM_BYTES + keys + 5 * 1_716);
    assert_eq!((FINE_SLOTS + COARSE_SLOTS) * SLOT_BYTES, 1_716);
    let key = &saved.series[0].key;
    assert_eq!(
        key,
        "target 10.0.0.1 on aws \"vpn-0123456789abcdef0\" ip 52.0.0.1"
    );
}

#[test]
fn a_save_streamed_in_chunks_is_the_file_encoded_whole() {
    let history = recorded(&first());
    let count = history.series_count();
    assert_eq!(count, 3 + 2, "three targets and two tunnels");
    let whole = encode(&history.rings().into_saved(at(150)));
    // As the saver writes it: the header, chunks of two series, the checksum.
    let keys = file_order_keys(history.config());
    let mut streamed = Vec::new();
    encode_header(at(150), count, &mut streamed);
    for first in (0..count).step_by(2) {
        let chunk = history.rings_of(first..(first + 2).min(count));
        assert_eq!(chunk.rings().len(), 2.min(count - first));
        for (key, rings) in keys[first..].iter().zip(chunk.rings()) {
            encode_series(key, rings, &mut streamed);
        }
    }
    let mut checksum = Checksum::default();
    checksum.update(&streamed[..streamed.len() / 2]);
    checksum.update(&streamed[streamed.len() / 2..]);
    streamed.extend_from_slice(&checksum.finish());
    assert_eq!(streamed, whole);
    assert_eq!(
        decode(&streamed).unwrap(),
        history.rings().into_saved(at(150))
    );
}
