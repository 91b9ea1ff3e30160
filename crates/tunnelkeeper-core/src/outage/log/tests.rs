//! Table tests of the log's file form, retention and filters.

use super::*;
use crate::outage::{OutageKind, Plane, SharedLoss};

fn record(id: &str, tunnel: &str, start: u64, end: u64) -> OutageRecord {
    OutageRecord {
        version: RECORD_VERSION,
        id: id.to_string(),
        kind: OutageKind::Tunnel,
        connection: Some("dc".into()),
        tunnels: vec![tunnel.to_string()],
        started_at: Timestamp::from_secs(start),
        ended_at: Timestamp::from_secs(end),
        seconds: (end - start) as f64,
        planes: vec![Plane::Data],
        reason: "3 or more probes lost in a row".into(),
        cause: Some("AWS: Peer is not responsive - Declaring peer dead (DPD, 03:12:41Z)".into()),
        pages: Vec::new(),
        shared_targets: SharedLoss { sent: 4, lost: 1 },
    }
}

#[test]
fn a_record_reads_back_as_written() {
    let r = record("a", "dc-a", 100, 160);
    let text = encode_line(&r);
    assert!(text.ends_with('\n') && !text[..text.len() - 1].contains('\n'));
    let decoded = decode(&text);
    assert_eq!(decoded.records, vec![r]);
    assert!(decoded.skipped.is_empty() && !decoded.torn_end);
}

#[test]
fn reading_skips_what_it_cannot_read_and_keeps_the_rest() {
    let a = encode_line(&record("a", "dc-a", 100, 160));
    let b = encode_line(&record("b", "dc-b", 200, 260));
    let newer =
        encode_line(&record("c", "dc-a", 300, 360)).replace("\"version\":1", "\"version\":9");
    // (what, file text, ids read, lines skipped, torn end)
    type Case<'a> = (&'a str, String, Vec<&'a str>, Vec<usize>, bool);
    let cases: Vec<Case> = vec![
        ("empty file", String::new(), vec![], vec![], false),
        (
            "two records",
            format!("{a}{b}"),
            vec!["a", "b"],
            vec![],
            false,
        ),
        // A crash during an append: the last line is cut short, with no newline.
        (
            "torn last line",
            format!("{a}{}", &b[..b.len() / 2]),
            vec!["a"],
            vec![2],
            true,
        ),
        (
            "garbage line between",
            format!("{a}not json\n{b}"),
            vec!["a", "b"],
            vec![2],
            false,
        ),
        (
            "unknown version",
            format!("{a}{newer}"),
            vec!["a"],
            vec![2],
            false,
        ),
        ("blank lines", format!("\n{a}\n"), vec!["a"], vec![], false),
        (
            "same id twice: the last wins",
            format!("{a}{a}"),
            vec!["a"],
            vec![],
            false,
        ),
    ];
    for (name, text, ids, skipped, torn) in cases {
        let d = decode(&text);
        let got: Vec<&str> = d.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(got, ids, "{name}");
        let lines: Vec<usize> = d.skipped.iter().map(|s| s.0).collect();
        assert_eq!(lines, skipped, "{name}");
        assert_eq!(d.torn_end, torn, "{name}");
    }
}

#[test]
fn pruning_keeps_ninety_days_and_the_newest_within_the_bounds() {
    let day = 24 * 3600;
    let now = Timestamp::from_secs(200 * day);
    let mut records = vec![
        record("old", "dc-a", 100 * day, 100 * day + 60),
        record("edge", "dc-a", 110 * day - 60, 110 * day),
        record("new", "dc-a", 199 * day, 199 * day + 60),
    ];
    assert_eq!(prune(&mut records, now), 1);
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["edge", "new"]);

    let mut many: Vec<OutageRecord> = (0..MAX_RECORDS as u64 + 10)
        .map(|i| record(&format!("r{i}"), "dc-a", 199 * day + i, 199 * day + i + 1))
        .collect();
    assert_eq!(prune(&mut many, now), 10);
    assert_eq!(many.len(), MAX_RECORDS);
    assert_eq!(many[0].id, "r10", "the oldest go first");

    let mut big: Vec<OutageRecord> = (0..100u64)
        .map(|i| {
            let mut r = record(&format!("b{i}"), "dc-a", 199 * day + i, 199 * day + i + 1);
            r.reason = "x".repeat(100 * 1024);
            r
        })
        .collect();
    prune(&mut big, now);
    let bytes: usize = big.iter().map(|r| encode_line(r).len()).sum();
    assert!(
        bytes <= MAX_BYTES && bytes > MAX_BYTES - 110 * 1024,
        "{bytes}"
    );
    assert_eq!(big.last().unwrap().id, "b99");
}

#[test]
fn the_file_is_rewritten_only_past_the_slack() {
    assert!(!should_rewrite(10, 10));
    assert!(!should_rewrite(10 + REWRITE_SLACK, 10));
    assert!(should_rewrite(11 + REWRITE_SLACK, 10));
}

#[test]
fn filters_read_from_the_query_or_say_what_is_wrong() {
    let t = |s: &str| {
        Some(Timestamp::from_millis(
            humantime::parse_rfc3339(s)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        ))
    };
    let ok: Vec<(&str, Option<Timestamp>, Option<&str>)> = vec![
        ("", None, None),
        (
            "since=2026-12-04T03:00:00Z",
            t("2026-12-04T03:00:00Z"),
            None,
        ),
        (
            "since=2026-12-04T03%3A00%3A00Z",
            t("2026-12-04T03:00:00Z"),
            None,
        ),
        (
            "tunnel=dc-a&since=2026-12-04T03:00:00Z",
            t("2026-12-04T03:00:00Z"),
            Some("dc-a"),
        ),
        ("tunnel=dc%20a", None, Some("dc a")),
    ];
    for (query, since, tunnel) in ok {
        let f = OutageFilter::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(f.since, since, "{query}");
        assert_eq!(f.tunnel.as_deref(), tunnel, "{query}");
    }
    let bad = [
        ("since=yesterday", "since"),
        ("since=", "since"),
        ("tunnel=", "tunnel"),
        ("tunel=dc-a", "tunel"),
        ("tunnel=%zz", "tunnel"),
    ];
    for (query, key) in bad {
        let e = OutageFilter::parse(query).expect_err(query);
        assert_eq!(e.key, key, "{query}");
        assert!(e.to_string().starts_with(&format!("{key}=")), "{e}");
    }
}

#[test]
fn filters_keep_what_matches_newest_first() {
    let records = vec![
        record("a", "dc-a", 100, 160),
        record("b", "dc-b", 200, 260),
        record("c", "dc-a", 300, 360),
    ];
    let ids = |f: &OutageFilter| -> Vec<String> {
        f.apply(&records).iter().map(|r| r.id.clone()).collect()
    };
    assert_eq!(ids(&OutageFilter::default()), ["c", "b", "a"]);
    let since = OutageFilter {
        since: Some(Timestamp::from_secs(260)),
        tunnel: None,
    };
    assert_eq!(ids(&since), ["c", "b"]);
    let tunnel = OutageFilter {
        since: None,
        tunnel: Some("dc-a".into()),
    };
    assert_eq!(ids(&tunnel), ["c", "a"]);
}
