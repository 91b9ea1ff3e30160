//! Path-MTU probing through each tunnel: every `[mtu] interval`, DF echoes of growing and
//! shrinking sizes to one pinned target on a socket of their own (so the keepalive pings
//! are never delayed), searching for the largest IP packet that crosses. The search is
//! pure ([`MtuSearch`]); the task around it only sends and waits.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::messages::{IcmpErrorKind, MtuLimitFound, Observation, PathMtuReading};
use crate::probe::pinger::Echo;
use crate::types::TunnelId;

pub use tunnelkeeper_core::health::path_mtu::{MAX_BYTES, MIN_BYTES};
/// The most probes one measurement sends: the expected size, the smallest, and a binary
/// search over the 925 sizes between (10 halvings), each lost size sent twice, stay
/// within it. A full path takes 7, a black hole at 1300 bytes 17.
pub const MAX_PROBES: u32 = 24;

/// What one DF probe of a given size came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeProbe {
    /// The echo reply came back.
    Reply,
    /// A router said "fragmentation needed" with next-hop MTU `mtu` (0: it gave none).
    FragNeeded { mtu: u32, router: IpAddr },
    /// This host would not send it (`EMSGSIZE`): over its own MTU, `mtu` if known.
    LocalLimit { mtu: Option<u32> },
    /// Nothing came back, or an error that says nothing of the size.
    Lost,
}

/// One measurement's binary search for the largest size that crosses.
#[derive(Clone, Debug)]
pub struct MtuSearch {
    expected: u32,
    /// The largest size that came back (0: none yet).
    passed: u32,
    /// The smallest size that did not (one over [`MAX_BYTES`]: none yet).
    failed: u32,
    /// A router that said "fragmentation needed" without an MTU.
    router: Option<IpAddr>,
    /// Whether this host refused a size itself.
    local: bool,
    /// A size lost once, sent again before it counts: one lost packet on a lossy tunnel
    /// must not read as a black hole.
    retry: Option<u32>,
    probes: u32,
    outcome: Option<Option<(u32, MtuLimitFound, Option<IpAddr>)>>,
}

impl MtuSearch {
    /// Starts a search that probes `expected` bytes first.
    pub fn new(expected: u32) -> Self {
        Self {
            expected: expected.clamp(MIN_BYTES, MAX_BYTES),
            passed: 0,
            failed: MAX_BYTES + 1,
            router: None,
            local: false,
            retry: None,
            probes: 0,
            outcome: None,
        }
    }

    /// Returns the size to probe next, or `None` when the search is over.
    pub fn next_size(&self) -> Option<u32> {
        if self.outcome.is_some() {
            return None;
        }
        Some(if let Some(size) = self.retry {
            size
        } else if self.probes == 0 {
            self.expected
        } else if self.passed == 0 {
            MIN_BYTES
        } else {
            (self.passed + self.failed) / 2
        })
    }

    /// Records what probing `size` bytes came to.
    pub fn record(&mut self, size: u32, result: SizeProbe) {
        self.probes += 1;
        let retried = self.retry.take() == Some(size);
        match result {
            SizeProbe::Lost if !retried && self.probes < MAX_PROBES => {
                self.retry = Some(size);
                return;
            }
            SizeProbe::Reply => self.passed = self.passed.max(size),
            // The router told the MTU: no need to search for it.
            SizeProbe::FragNeeded { mtu, router } if mtu >= MIN_BYTES && mtu < size => {
                self.outcome = Some(Some((mtu, MtuLimitFound::FragNeeded, Some(router))));
                return;
            }
            SizeProbe::FragNeeded { router, .. } => {
                self.router = Some(router);
                self.failed = self.failed.min(size);
            }
            // The kernel said which MTU it knows: no need to search for it either.
            SizeProbe::LocalLimit { mtu: Some(mtu) } if mtu >= MIN_BYTES && mtu < size => {
                self.outcome = Some(Some((mtu, MtuLimitFound::Local, None)));
                return;
            }
            SizeProbe::LocalLimit { .. } => {
                self.local = true;
                self.failed = self.failed.min(size);
            }
            SizeProbe::Lost if size <= MIN_BYTES => {
                self.outcome = Some(None);
                return;
            }
            SizeProbe::Lost => self.failed = self.failed.min(size),
        }
        let settled = self.passed > 0 && self.failed - self.passed <= 1;
        if settled || self.probes >= MAX_PROBES {
            self.outcome = Some((self.passed > 0).then(|| {
                let found = match (self.failed > MAX_BYTES, self.router, self.local) {
                    (true, _, _) => MtuLimitFound::Reply,
                    (false, Some(_), _) => MtuLimitFound::FragNeeded,
                    (false, None, true) => MtuLimitFound::Local,
                    (false, None, false) => MtuLimitFound::Silent,
                };
                (self.passed, found, self.router)
            }));
        }
    }

    /// Returns the reading once the search is over (`None` inside when not even the
    /// smallest size came back), to `target`.
    pub fn reading(&self, target: Ipv4Addr) -> Option<Option<PathMtuReading>> {
        let outcome = self.outcome?;
        Some(outcome.map(|(bytes, found, router)| PathMtuReading {
            bytes,
            found,
            expected: self.expected,
            target,
            router,
            probes: self.probes,
        }))
    }
}

/// Sends DF echoes of a given size; the seam between the task and the socket.
pub trait SizedProber: Send + 'static {
    /// Sends echo request `seq` as an IP packet of `bytes` bytes and waits at most
    /// `timeout` for what comes back.
    fn probe_size(
        &mut self,
        seq: u16,
        bytes: u32,
        timeout: Duration,
    ) -> impl std::future::Future<Output = SizeProbe> + Send;
}

impl SizedProber for crate::probe::icmp::EchoProber {
    async fn probe_size(&mut self, seq: u16, bytes: u32, timeout: Duration) -> SizeProbe {
        use crate::probe::pinger::Prober;
        self.set_packet_bytes(bytes);
        let echo = self.probe(seq, timeout).await;
        // A size probe's late reply means nothing to the search: drop it, or it piles up.
        let _ = self.late_answers();
        if let Some(mtu) = self.take_local_limit() {
            return SizeProbe::LocalLimit { mtu };
        }
        size_probe(echo, seq)
    }
}

/// What an echo says of the size it was sent at.
fn size_probe(echo: Echo, seq: u16) -> SizeProbe {
    match echo {
        Echo::Reply { seq: got, .. } if got == seq => SizeProbe::Reply,
        Echo::IcmpError {
            seq: got,
            from,
            kind: IcmpErrorKind::FragmentationNeeded { mtu },
        } if got == seq => SizeProbe::FragNeeded { mtu, router: from },
        other => {
            debug!(seq, ?other, "path-MTU probe lost");
            SizeProbe::Lost
        }
    }
}

/// Runs one measurement to `target`: the search, probe by probe.
pub async fn measure<P: SizedProber>(
    prober: &mut P,
    seq: &mut u16,
    target: Ipv4Addr,
    expected: u32,
    timeout: Duration,
) -> Option<PathMtuReading> {
    let mut search = MtuSearch::new(expected);
    while let Some(size) = search.next_size() {
        *seq = seq.wrapping_add(1);
        let result = prober.probe_size(*seq, size, timeout).await;
        search.record(size, result);
    }
    search.reading(target).flatten()
}

/// Measures one tunnel's path MTU every interval until cancelled.
pub struct MtuTask {
    /// The tunnel.
    pub tunnel: TunnelId,
    /// The pinned target probed.
    pub target: Ipv4Addr,
    /// The size that should cross.
    pub expected: u32,
    /// Between two measurements.
    pub interval: Duration,
    /// How long each probe waits.
    pub timeout: Duration,
    /// Delay before the first measurement, so tunnels spread over the interval.
    pub splay: Duration,
    /// Where the readings go.
    pub observations: mpsc::Sender<Observation>,
    /// Stops the task.
    pub cancel: CancellationToken,
}

impl MtuTask {
    /// Runs until cancelled or until the monitor is gone.
    pub async fn run<P: SizedProber>(self, mut prober: P) {
        let mut next = Instant::now() + self.splay;
        let mut seq: u16 = 0;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            next += self.interval;
            let reading = tokio::select! {
                _ = self.cancel.cancelled() => return,
                r = measure(&mut prober, &mut seq, self.target, self.expected, self.timeout) => r,
            };
            let observation = Observation::PathMtu {
                tunnel: self.tunnel,
                at: Instant::now(),
                reading,
            };
            if self.observations.send(observation).await.is_err() {
                return;
            }
            // A measurement longer than the interval delays the next, not piles up.
            next = next.max(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 1, 2));
    const TARGET: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 10);

    /// A path whose narrowest hop is `mtu` bytes; over it, packets are dropped silently
    /// or answered with "fragmentation needed" (`icmp`); nothing crosses when `dead`.
    #[derive(Clone, Copy)]
    struct Path {
        mtu: u32,
        icmp: bool,
        dead: bool,
    }

    impl SizedProber for Path {
        async fn probe_size(&mut self, seq: u16, bytes: u32, _: Duration) -> SizeProbe {
            let echo = match (self.dead, bytes <= self.mtu, self.icmp) {
                (true, _, _) | (false, false, false) => Echo::Timeout,
                (false, true, _) => Echo::Reply {
                    seq,
                    rtt: Duration::from_millis(1),
                },
                (false, false, true) => Echo::IcmpError {
                    seq,
                    from: ROUTER,
                    kind: IcmpErrorKind::FragmentationNeeded { mtu: self.mtu },
                },
            };
            size_probe(echo, seq)
        }
    }

    fn run(path: Path, expected: u32) -> Option<PathMtuReading> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut prober = path;
        rt.block_on(measure(
            &mut prober,
            &mut 0,
            TARGET,
            expected,
            Duration::from_secs(1),
        ))
    }

    #[test]
    fn the_search_finds_every_silent_limit_exactly_within_the_probe_budget() {
        for mtu in MIN_BYTES..=MAX_BYTES {
            for expected in [1446, 1300, MIN_BYTES, MAX_BYTES] {
                let path = Path {
                    mtu,
                    icmp: false,
                    dead: false,
                };
                let r = run(path, expected).expect("measured");
                assert_eq!(r.bytes, mtu, "expected {expected}");
                let found = if mtu == MAX_BYTES {
                    MtuLimitFound::Reply
                } else {
                    MtuLimitFound::Silent
                };
                assert_eq!(r.found, found, "mtu {mtu}");
                assert!(r.probes <= MAX_PROBES, "mtu {mtu}: {} probes", r.probes);
                assert_eq!(r.router, None);
            }
        }
    }

    #[test]
    fn fragmentation_needed_ends_the_search_at_once() {
        let path = Path {
            mtu: 1300,
            icmp: true,
            dead: false,
        };
        let r = run(path, 1446).unwrap();
        assert_eq!(
            (r.bytes, r.found, r.router, r.probes),
            (1300, MtuLimitFound::FragNeeded, Some(ROUTER), 1)
        );
    }

    #[test]
    fn a_full_path_is_found_by_reply_and_a_dead_one_gives_no_reading() {
        let full = Path {
            mtu: 9000,
            icmp: true,
            dead: false,
        };
        let r = run(full, 1446).unwrap();
        assert_eq!((r.bytes, r.found), (MAX_BYTES, MtuLimitFound::Reply));
        assert!(r.probes <= 7, "{} probes above 1446", r.probes);
        let dead = Path {
            mtu: 1500,
            icmp: false,
            dead: true,
        };
        assert_eq!(run(dead, 1446), None);
    }

    #[test]
    fn a_frag_needed_without_a_usable_mtu_narrows_the_search_and_names_the_router() {
        let mut search = MtuSearch::new(1446);
        let mut sizes = Vec::new();
        while let Some(size) = search.next_size() {
            sizes.push(size);
            let result = if size <= 1000 {
                SizeProbe::Reply
            } else {
                SizeProbe::FragNeeded {
                    mtu: 0,
                    router: ROUTER,
                }
            };
            search.record(size, result);
        }
        let r = search.reading(TARGET).unwrap().unwrap();
        assert_eq!(
            (r.bytes, r.found, r.router),
            (1000, MtuLimitFound::FragNeeded, Some(ROUTER))
        );
        assert_eq!(&sizes[..2], &[1446, MIN_BYTES], "{sizes:?}");
    }

    #[test]
    fn one_lost_probe_on_a_lossy_path_is_sent_again_not_taken_for_a_black_hole() {
        // A full path that loses every third packet, the first one included.
        struct Lossy(u32);
        impl SizedProber for Lossy {
            async fn probe_size(&mut self, _: u16, _: u32, _: Duration) -> SizeProbe {
                self.0 += 1;
                if self.0 % 3 == 1 {
                    SizeProbe::Lost
                } else {
                    SizeProbe::Reply
                }
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt
            .block_on(measure(
                &mut Lossy(0),
                &mut 0,
                TARGET,
                1446,
                Duration::from_secs(1),
            ))
            .unwrap();
        assert_eq!(
            (r.bytes, r.found),
            (MAX_BYTES, MtuLimitFound::Reply),
            "{r:?}"
        );
    }

    #[test]
    fn a_size_this_host_refuses_is_its_own_limit_not_a_black_hole() {
        // The kernel said its MTU (DGRAM): that ends the search.
        let mut search = MtuSearch::new(1446);
        search.record(1446, SizeProbe::LocalLimit { mtu: Some(1400) });
        let r = search.reading(TARGET).unwrap().unwrap();
        assert_eq!(
            (r.bytes, r.found, r.probes),
            (1400, MtuLimitFound::Local, 1)
        );
        // It did not (raw): the search finds the limit, and says whose it is.
        let mut search = MtuSearch::new(1446);
        while let Some(size) = search.next_size() {
            let result = if size <= 1380 {
                SizeProbe::Reply
            } else {
                SizeProbe::LocalLimit { mtu: None }
            };
            search.record(size, result);
        }
        let r = search.reading(TARGET).unwrap().unwrap();
        assert_eq!((r.bytes, r.found), (1380, MtuLimitFound::Local));
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_measures_every_interval_and_reports_to_the_monitor() {
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let task = MtuTask {
            tunnel: TunnelId {
                connection: 0,
                tunnel: 1,
            },
            target: TARGET,
            expected: 1446,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            splay: Duration::ZERO,
            observations: tx,
            cancel: cancel.clone(),
        };
        let path = Path {
            mtu: 1300,
            icmp: false,
            dead: false,
        };
        let handle = tokio::spawn(task.run(path));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..3 {
            match rx.recv().await.unwrap() {
                Observation::PathMtu {
                    tunnel,
                    at: when,
                    reading,
                } => {
                    assert_eq!(tunnel.tunnel, 1);
                    assert_eq!(reading.unwrap().bytes, 1300);
                    at.push((when - start).as_secs());
                }
                other => panic!("{other:?}"),
            }
        }
        // Measurements start an interval apart, however long each one takes.
        assert_eq!(at[1] - at[0], 10, "{at:?}");
        assert_eq!(at[2] - at[1], 10, "{at:?}");
        cancel.cancel();
        handle.await.unwrap();
    }
}
