use super::*;
use crate::history::Mark;

const MINUTE: u32 = 29_400_000; // a minute number in 2025

fn summary(minute: u32, p50_ms: u32, sent: u16, lost: u16) -> MinuteSummary {
    MinuteSummary {
        minute,
        p10_us: p50_ms * 900,
        p50_us: p50_ms * 1_000,
        p90_us: p50_ms * 1_100,
        sent,
        lost,
        marks: 0,
    }
}

/// The summary as the packed RTTs bring it back.
fn packed(s: MinuteSummary) -> MinuteSummary {
    MinuteSummary {
        p10_us: decode(encode(s.p10_us)),
        p50_us: decode(encode(s.p50_us)),
        p90_us: decode(encode(s.p90_us)),
        ..s
    }
}

#[test]
fn rings_have_their_resolution_span_and_closing_minutes() {
    let cases = [
        (Ring::Minutes, 1, 60, 60),
        (Ring::FiveMinutes, 5, 72, 6 * 60),
        (Ring::QuarterHours, 15, 672, 7 * 24 * 60),
    ];
    for (ring, step, slots, span) in cases {
        assert_eq!(
            (ring.step_minutes(), ring.slots()),
            (step, slots),
            "{ring:?}"
        );
        assert_eq!(ring.step_minutes() * ring.slots(), span, "{ring:?}");
    }
    // Minute 14 of an hour closes a five-minute window and a quarter; 9 only the former.
    let hour = MINUTE / 60 * 60;
    let closes = [
        (hour + 14, vec![Ring::FiveMinutes, Ring::QuarterHours]),
        (hour + 9, vec![Ring::FiveMinutes]),
        (hour + 10, vec![]),
        (hour + 59, vec![Ring::FiveMinutes, Ring::QuarterHours]),
    ];
    for (minute, want) in closes {
        assert_eq!(Ring::closed_by(minute), want, "minute {}", minute - hour);
    }
}

#[test]
fn blocks_sit_at_their_window_modulo_the_ring_and_slots_are_16_byte_aligned() {
    let g = Geometry {
        ring: Ring::FiveMinutes,
        series: 3,
    };
    assert_eq!(g.block_bytes(), 16 + 3 * 16);
    assert_eq!(g.file_bytes(), 64 + 72 * 64);
    let first = MINUTE / 5 * 5;
    let index = u64::from(first / 5 % 72);
    assert_eq!(g.block_offset(first), 64 + index * 64);
    // Six hours later the same block is reused.
    assert_eq!(g.block_offset(first + 6 * 60), g.block_offset(first));
    assert_eq!(g.slot_offset(first, 2), g.block_offset(first) + 16 + 32);
    for column in 0..3 {
        assert_eq!(g.slot_offset(first, column) % 16, 0);
    }
}

#[test]
fn a_slot_round_trips_and_is_refused_when_stale_or_damaged() {
    let mut s = summary(MINUTE, 23, 60, 2);
    s.marks = Mark::Down as u8 | Mark::NotRunning as u8;
    let bytes = encode_slot(&s);
    assert_eq!(decode_slot(&bytes, MINUTE), Some(packed(s)));
    // The slot of another window (a ring's lap ago) is not this one.
    assert_eq!(decode_slot(&bytes, MINUTE + 60), None);
    // Any damaged byte is caught by the check byte.
    for i in 0..SLOT_BYTES {
        let mut damaged = bytes;
        damaged[i] ^= 0x5a;
        assert_eq!(decode_slot(&damaged, MINUTE), None, "byte {i}");
    }
    // Zeroes (a file extended, never written) hold nothing.
    assert_eq!(decode_slot(&[0; SLOT_BYTES], MINUTE), None);
}

#[test]
fn a_block_holds_every_column_and_a_torn_one_loses_only_the_slots_not_written() {
    let old: Vec<Option<MinuteSummary>> = (0..4)
        .map(|c| Some(summary(MINUTE, 10 + c, 60, 0)))
        .collect();
    let old_block = encode_block(MINUTE, &old);
    let next = MINUTE + 60; // the same block a lap later
    let new: Vec<Option<MinuteSummary>> = vec![
        Some(summary(next, 5, 60, 1)),
        None,
        Some(summary(next, 7, 30, 30)),
        Some(summary(next, 8, 60, 0)),
    ];
    let new_block = encode_block(next, &new);
    assert_eq!(new_block.len(), BLOCK_HEADER_BYTES + 4 * SLOT_BYTES);
    assert_eq!(block_first_minute(&new_block), Some(next));
    let read = decode_block(&new_block, next);
    assert_eq!(read[0], Some(packed(new[0].unwrap())));
    assert_eq!(read[1].map(|s| (s.sent, s.marks)), Some((0, 0)), "empty");
    // Torn after the header and two slots: the first two are new, the rest read as missing
    // for the new window (and as nothing of the old one either, when asked by the new).
    let torn_at = BLOCK_HEADER_BYTES + 2 * SLOT_BYTES;
    let mut torn = old_block.clone();
    torn[..torn_at].copy_from_slice(&new_block[..torn_at]);
    let read = decode_block(&torn, next);
    assert!(read[0].is_some() && read[1].is_some());
    assert_eq!((read[2], read[3]), (None, None));
    // Torn inside a slot: that slot alone is lost.
    let mut torn = old_block;
    let mid = BLOCK_HEADER_BYTES + 2 * SLOT_BYTES + 6;
    torn[..mid].copy_from_slice(&new_block[..mid]);
    let read = decode_block(&torn, next);
    assert_eq!(
        read.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![true, true, false, false]
    );
    // A block cut short (a truncated file) gives what it holds.
    assert_eq!(decode_block(&new_block[..torn_at], next).len(), 2);
}

#[test]
fn a_window_consolidates_its_minutes_per_column() {
    let first = MINUTE / 15 * 15;
    let minutes: Vec<Vec<Option<MinuteSummary>>> = (0..15)
        .map(|m| {
            let blk = encode_block(
                first + m,
                &[
                    Some(summary(first + m, 10 + m, 60, u16::from(m == 3))),
                    None,
                ],
            );
            decode_block(&blk, first + m)
        })
        .collect();
    let window = consolidate_window(first, &minutes, 2);
    let w = window[0].unwrap();
    assert_eq!(w.minute, first);
    assert_eq!((w.sent, w.lost), (900, 1));
    assert_eq!(w.p10_us, decode(encode(10 * 900)));
    assert_eq!(w.p90_us, decode(encode(24 * 1_100)));
    assert_eq!(w.p50_us, decode(encode(17_000)));
    assert_eq!(window[1], None, "a column with nothing stays empty");
}

#[test]
fn file_headers_name_their_ring_shape_and_table() {
    let g = Geometry {
        ring: Ring::QuarterHours,
        series: 10_004,
    };
    let header = encode_file_header(g, 77);
    assert_eq!(check_file_header(&header, g, 77), Ok(()));
    assert_eq!(check_file_header(&header, g, 78), Err(LayoutError::Table));
    let other = Geometry {
        ring: Ring::FiveMinutes,
        ..g
    };
    assert!(matches!(
        check_file_header(&header, other, 77),
        Err(LayoutError::Shape {
            found_step: 15,
            want_step: 5,
            ..
        })
    ));
    let fewer = Geometry { series: 3, ..g };
    assert!(matches!(
        check_file_header(&header, fewer, 77),
        Err(LayoutError::Shape {
            found_series: 10_004,
            want_series: 3,
            ..
        })
    ));
    let mut old = header;
    old[8] = 1;
    assert_eq!(
        check_file_header(&old, g, 77),
        Err(LayoutError::Version { found: 1 })
    );
    assert_eq!(
        check_file_header(b"TKHIST\0\0", g, 77),
        Err(LayoutError::Magic("ring file"))
    );
}

#[test]
fn the_series_table_round_trips_and_refuses_damage() {
    let mut table = SeriesTable {
        keys: vec![
            "target 10.0.0.1 shared".into(),
            "tunnel vpn-1 1.2.3.4".into(),
        ],
        not_running: vec![],
    };
    table.add_not_running(MINUTE - 30, MINUTE - 1, MINUTE);
    let bytes = table.encode();
    assert_eq!(SeriesTable::decode(&bytes), Ok(table.clone()));
    let mut damaged = bytes.clone();
    damaged[14] ^= 1;
    assert_eq!(
        SeriesTable::decode(&damaged),
        Err(LayoutError::Damaged("checksum mismatch"))
    );
    assert_eq!(
        SeriesTable::decode(&bytes[..bytes.len() - 3]),
        Err(LayoutError::Damaged("checksum mismatch"))
    );
    assert_eq!(
        SeriesTable::decode(b"TKHIST\0\0\x01\0........"),
        Err(LayoutError::Magic("series table"))
    );
    // The hash follows the keys, not the spans.
    let mut later = table.clone();
    later.add_not_running(MINUTE + 5, MINUTE + 6, MINUTE + 7);
    assert_eq!(later.hash(), table.hash());
    later.keys.swap(0, 1);
    assert_ne!(later.hash(), table.hash());
}

#[test]
fn not_running_spans_mark_the_windows_they_touch_and_age_out() {
    let mut table = SeriesTable::default();
    table.add_not_running(MINUTE, MINUTE + 9, MINUTE + 10);
    table.add_not_running(MINUTE + 5, MINUTE + 4, MINUTE + 10); // empty: ignored
    assert_eq!(table.not_running.len(), 1);
    let cases = [
        (MINUTE - 1, 1, false),
        (MINUTE, 1, true),
        (MINUTE + 9, 1, true),
        (MINUTE + 10, 1, false),
        (MINUTE - 14, 15, true),
        (MINUTE - 15, 15, false),
    ];
    for (first, step, want) in cases {
        assert_eq!(table.was_not_running(first, step), want, "{first} +{step}");
    }
    table.add_not_running(
        MINUTE + 20,
        MINUTE + 20,
        MINUTE + 10 + NOT_RUNNING_KEPT_MINUTES,
    );
    assert_eq!(table.not_running, vec![(MINUTE + 20, MINUTE + 20)]);
    for i in 0..NOT_RUNNING_MAX_SPANS as u32 + 5 {
        table.add_not_running(MINUTE + 30 + i, MINUTE + 30 + i, MINUTE + 2_000);
    }
    assert_eq!(table.not_running.len(), NOT_RUNNING_MAX_SPANS);
    assert_eq!(table.not_running[0].0, MINUTE + 35, "the oldest went");
}

#[test]
fn a_block_moves_to_another_tables_columns_by_identity() {
    let old = SeriesTable {
        keys: vec!["a".into(), "b".into(), "c".into()],
        not_running: vec![],
    };
    let next: Vec<String> = vec!["c".into(), "new".into(), "a".into()];
    let columns = old.columns_for(&next);
    assert_eq!(columns, vec![Some(2), None, Some(0)]);
    let slots: Vec<Option<MinuteSummary>> = (0..3)
        .map(|c| Some(summary(MINUTE, 10 + c, 60, 0)))
        .collect();
    let moved = remap_block(&encode_block(MINUTE, &slots), &columns).unwrap();
    let read = decode_block(&moved, MINUTE);
    assert_eq!(read.len(), 3);
    assert_eq!(read[0], Some(packed(slots[2].unwrap())));
    assert_eq!(
        read[1].map(|s| s.sent),
        Some(0),
        "a new series starts empty"
    );
    assert_eq!(read[2], Some(packed(slots[0].unwrap())));
    // A block never written (zeroes) has no whole header: nothing to move.
    assert_eq!(remap_block(&[0; 64], &columns), None);
}
