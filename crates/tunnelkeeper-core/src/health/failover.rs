//! Failovers, detected and measured, pure: a virtual private gateway sends traffic to the
//! shared datacenter targets over one tunnel at a time, so when that tunnel fails the
//! shared targets stop answering until BGP moves the route to another tunnel (within its
//! hold time, about 30 s at AWS). While another tunnel's pinned targets answer, that loss
//! is a failover in progress, not an unreachable VPN.
//!
//! An episode starts when every shared target's latest probe was lost and ends at the
//! first reply from one of them. It was a failover when some tunnel's pinned targets were
//! lost during it (the tunnel traffic left) and some tunnel's pinned targets answered
//! throughout (there was a path to move to); the time from the first loss to the first
//! reply (both taken when those probes were sent) is how long the shared hosts were cut off. A loss with no tunnel lost is the
//! hosts themselves (or a firewall), and one during which no tunnel answered was an
//! outage: neither is a failover.

use std::collections::VecDeque;

use crate::types::{Timestamp, TunnelId};

/// How many completed failovers are kept for `/status`.
pub const RECENT: usize = 20;

/// One completed failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// When the shared targets stopped answering (the first lost probe was sent).
    pub lost_at: Timestamp,
    /// When they answered again, over another tunnel (the answered probe was sent).
    pub restored_at: Timestamp,
    /// The tunnels whose pinned targets were lost meanwhile: those traffic moved away from.
    pub from: Vec<TunnelId>,
}

impl Failover {
    /// How long the shared targets were cut off, in seconds.
    pub fn seconds(&self) -> f64 {
        self.restored_at.since(self.lost_at).as_secs_f64()
    }
}

/// What the tracker needs to know of the world after one probe result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// Since when every shared target's latest probe was lost (the latest of their loss
    /// streaks' starts), or `None` when some shared target's latest probe did not fail.
    pub shared_lost_since: Option<Timestamp>,
    /// Whether some shared target's latest probe was a reply.
    pub shared_replied: bool,
    /// Tunnels whose every pinned target's latest probe was lost.
    pub tunnels_lost: Vec<TunnelId>,
    /// How many tunnels have a pinned target whose latest probe was a reply.
    pub tunnels_answering: usize,
}

/// A loss of the shared targets in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Episode {
    lost_at: Timestamp,
    tunnels_lost: Vec<TunnelId>,
    /// Some moment of it had no tunnel answering: an outage, not a failover.
    no_path_seen: bool,
}

/// Follows the shared targets' losses and keeps the failovers it recognised.
#[derive(Clone, Debug, Default)]
pub struct FailoverTracker {
    episode: Option<Episode>,
    recent: VecDeque<Failover>,
    /// Completed and not yet taken by the shell (log, histogram).
    fresh: Vec<Failover>,
}

impl FailoverTracker {
    /// Takes in the world after a probe result; `now` is when that probe was sent (the
    /// moment the path worked, or did not). Returns the failover it completed, if this
    /// result ended one.
    pub fn observe(&mut self, obs: &Observation, now: Timestamp) -> Option<Failover> {
        if let Some(lost_at) = obs.shared_lost_since {
            let episode = self.episode.get_or_insert(Episode {
                lost_at,
                tunnels_lost: Vec::new(),
                no_path_seen: false,
            });
            for t in &obs.tunnels_lost {
                if !episode.tunnels_lost.contains(t) {
                    episode.tunnels_lost.push(*t);
                }
            }
            episode.no_path_seen |= obs.tunnels_answering == 0;
            return None;
        }
        // A silent target (no result at all) neither starts nor ends anything: only a
        // reply says the hosts are back.
        if !obs.shared_replied {
            return None;
        }
        let episode = self.episode.take()?;
        let mut from = episode.tunnels_lost;
        for t in &obs.tunnels_lost {
            if !from.contains(t) {
                from.push(*t);
            }
        }
        if episode.no_path_seen || from.is_empty() || obs.tunnels_answering == 0 {
            return None;
        }
        from.sort_by_key(|t| (t.connection, t.tunnel));
        let failover = Failover {
            lost_at: episode.lost_at,
            restored_at: now,
            from,
        };
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(failover.clone());
        self.fresh.push(failover.clone());
        Some(failover)
    }

    /// Since when the shared targets have been lost while some tunnel answered (a failover
    /// in progress, as far as anyone can tell yet).
    pub fn in_progress(&self) -> Option<Timestamp> {
        self.episode
            .as_ref()
            .filter(|e| !e.no_path_seen)
            .map(|e| e.lost_at)
    }

    /// The recent failovers, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &Failover> {
        self.recent.iter()
    }

    /// The latest failover away from `tunnel`.
    pub fn latest_from(&self, tunnel: TunnelId) -> Option<&Failover> {
        self.recent.iter().rev().find(|f| f.from.contains(&tunnel))
    }

    /// Hands out the failovers completed since the last call (for the log and metrics).
    pub fn take_fresh(&mut self) -> Vec<Failover> {
        std::mem::take(&mut self.fresh)
    }

    /// Keeps what `old` knew across a reload, its tunnels renumbered by `map` (a tunnel
    /// no longer configured drops out of `from`; a failover left with none is forgotten).
    pub fn adopt(&mut self, old: &FailoverTracker, map: impl Fn(TunnelId) -> Option<TunnelId>) {
        self.recent = old
            .recent
            .iter()
            .filter_map(|f| {
                let from: Vec<TunnelId> = f.from.iter().filter_map(|t| map(*t)).collect();
                (!from.is_empty()).then(|| Failover { from, ..f.clone() })
            })
            .collect();
        // An episode in progress starts over: the loss is still measured from the next
        // result, rather than against tunnels that changed.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: TunnelId = TunnelId {
        connection: 0,
        tunnel: 0,
    };
    const T2: TunnelId = TunnelId {
        connection: 0,
        tunnel: 1,
    };

    fn ms(ms: u64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + ms)
    }

    fn lost(since: u64, tunnels_lost: &[TunnelId], answering: usize) -> Observation {
        Observation {
            shared_lost_since: Some(ms(since)),
            shared_replied: false,
            tunnels_lost: tunnels_lost.to_vec(),
            tunnels_answering: answering,
        }
    }

    fn replied(tunnels_lost: &[TunnelId], answering: usize) -> Observation {
        Observation {
            shared_lost_since: None,
            shared_replied: true,
            tunnels_lost: tunnels_lost.to_vec(),
            tunnels_answering: answering,
        }
    }

    /// Each row: the observations in order (with their times), and the failover the last
    /// one completes (its lost_at, restored_at in ms and the tunnels it left), if any.
    #[test]
    fn failovers_are_recognised_and_measured() {
        type Row = (
            &'static str,
            Vec<(u64, Observation)>,
            Option<(u64, u64, Vec<TunnelId>)>,
        );
        let rows: Vec<Row> = vec![
            (
                "the active tunnel fails, the route moves to the other within 9.6 s",
                vec![
                    (1_000, lost(1_000, &[], 2)),
                    (1_400, lost(1_000, &[T1], 1)),
                    (5_000, lost(1_000, &[T1], 1)),
                    (10_600, replied(&[T1], 1)),
                ],
                Some((1_000, 10_600, vec![T1])),
            ),
            (
                "the tunnel's loss seen only at the reply still counts",
                vec![(0, lost(0, &[], 2)), (3_000, replied(&[T1], 1))],
                Some((0, 3_000, vec![T1])),
            ),
            (
                "hosts that stop answering while no tunnel is lost: not a failover",
                vec![(0, lost(0, &[], 2)), (90_000, replied(&[], 2))],
                None,
            ),
            (
                "a total outage (no tunnel answering at one moment) and its recovery: not a failover",
                vec![
                    (0, lost(0, &[T1], 1)),
                    (2_000, lost(0, &[T1, T2], 0)),
                    (30_000, replied(&[T1], 1)),
                ],
                None,
            ),
            (
                "a silent shared target neither ends nor measures anything",
                vec![
                    (0, lost(0, &[T1], 1)),
                    (3_000, Observation::default()),
                    (8_000, replied(&[T1], 1)),
                ],
                Some((0, 8_000, vec![T1])),
            ),
            (
                "a reply with no loss before it is nothing",
                vec![(0, replied(&[], 2))],
                None,
            ),
        ];
        for (name, observations, want) in rows {
            let mut tracker = FailoverTracker::default();
            let mut last = None;
            for (at, obs) in &observations {
                last = tracker.observe(obs, ms(*at));
            }
            let got = last.map(|f| {
                (
                    f.lost_at.as_millis() - 1_000_000,
                    f.restored_at.as_millis() - 1_000_000,
                    f.from,
                )
            });
            assert_eq!(got, want, "{name}");
            assert_eq!(
                tracker.recent().count(),
                usize::from(want.is_some()),
                "{name}"
            );
            assert_eq!(
                tracker.take_fresh().len(),
                usize::from(want.is_some()),
                "{name}"
            );
            assert!(tracker.take_fresh().is_empty(), "{name}: taken once");
        }
    }

    #[test]
    fn a_failover_is_in_progress_until_the_shared_targets_answer_and_keeps_its_tunnel() {
        let mut tracker = FailoverTracker::default();
        assert_eq!(tracker.in_progress(), None);
        tracker.observe(&lost(0, &[T1], 1), ms(500));
        assert_eq!(tracker.in_progress(), Some(ms(0)));
        let f = tracker.observe(&replied(&[T1], 1), ms(9_600)).unwrap();
        assert_eq!(f.seconds(), 9.6);
        assert_eq!(tracker.in_progress(), None);
        assert_eq!(tracker.latest_from(T1), Some(&f));
        assert_eq!(tracker.latest_from(T2), None);
        // A reload that drops tunnel 1 forgets it; one that keeps it keeps the failover.
        let mut kept = FailoverTracker::default();
        kept.adopt(&tracker, Some);
        assert_eq!(kept.latest_from(T1), Some(&f));
        let mut dropped = FailoverTracker::default();
        dropped.adopt(&tracker, |_| None);
        assert_eq!(dropped.recent().count(), 0);
        // No outage in progress counts as a failover in progress.
        let mut outage = FailoverTracker::default();
        outage.observe(&lost(0, &[T1, T2], 0), ms(500));
        assert_eq!(outage.in_progress(), None);
    }

    #[test]
    fn only_the_recent_failovers_are_kept() {
        let mut tracker = FailoverTracker::default();
        for i in 0..(RECENT as u64 + 5) {
            tracker.observe(&lost(i * 100_000, &[T1], 1), ms(i * 100_000 + 1));
            tracker.observe(&replied(&[T1], 1), ms(i * 100_000 + 5_000));
        }
        assert_eq!(tracker.recent().count(), RECENT);
        assert_eq!(tracker.recent().next().unwrap().lost_at, ms(500_000));
    }
}
