//! The one percentile every view uses: nearest rank, as SmokePing and `ping`'s summaries
//! take it (no interpolation between samples).

/// Returns the nearest-rank `pct` percentile of `samples` (reordered in place), `None` when
/// there are none.
pub fn nearest_rank<T: Ord + Copy>(samples: &mut [T], pct: usize) -> Option<T> {
    if samples.is_empty() {
        return None;
    }
    let rank = (pct * samples.len()).div_ceil(100).max(1) - 1;
    Some(*samples.select_nth_unstable(rank).1)
}

#[cfg(test)]
mod tests {
    use super::nearest_rank;

    #[test]
    fn nearest_rank_takes_the_sample_at_the_rank_without_interpolating() {
        let cases: [(&[u32], usize, Option<u32>); 6] = [
            (&[], 50, None),
            (&[7], 99, Some(7)),
            (&[3, 1, 2], 50, Some(2)),
            (&[1, 2, 3, 4], 50, Some(2)),
            (&[1, 2, 3, 4], 51, Some(3)),
            (&[5, 1, 9, 3, 7, 2, 8, 4, 6, 10], 90, Some(9)),
        ];
        for (samples, pct, want) in cases {
            assert_eq!(
                nearest_rank(&mut samples.to_vec(), pct),
                want,
                "{samples:?} p{pct}"
            );
        }
        // With 100 samples the 99th percentile is the second highest.
        let mut hundred: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&mut hundred, 99), Some(99));
    }
}
