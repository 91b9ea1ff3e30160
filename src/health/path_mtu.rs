//! Each tunnel's last path-MTU measurement and what it means, pure: a **black hole**
//! (packets of the expected size vanish without ICMP while smaller ones pass) pages as
//! `MtuBlackHole`; a path narrower than expected whose routers say so ("fragmentation
//! needed") is only an advisory, since hosts then learn the MTU by themselves.

use serde::Serialize;

use crate::config::Config;
use crate::messages::{MtuLimitFound, PathMtuReading};
use crate::types::{Timestamp, TunnelId};

/// A tunnel's last measurement and when it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelPathMtu {
    /// What it found.
    #[serde(flatten)]
    pub reading: PathMtuReading,
    /// When.
    pub measured_at: Timestamp,
}

/// What a measurement means for the tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtuVerdict {
    /// The expected size crosses.
    Fine,
    /// Packets over `bytes` vanish without ICMP; `expected` should cross.
    BlackHole { bytes: u32, expected: u32 },
    /// The path takes `bytes` only, less than `expected`, and says so with ICMP.
    Narrow { bytes: u32, expected: u32 },
}

impl MtuVerdict {
    /// Judges one reading.
    pub fn of(reading: &PathMtuReading) -> Self {
        let (bytes, expected) = (reading.bytes, reading.expected);
        if bytes >= expected {
            return MtuVerdict::Fine;
        }
        match reading.found {
            MtuLimitFound::Silent => MtuVerdict::BlackHole { bytes, expected },
            MtuLimitFound::FragNeeded | MtuLimitFound::Reply => {
                MtuVerdict::Narrow { bytes, expected }
            }
        }
    }
}

/// The last measurement of every tunnel.
#[derive(Clone, Debug, Default)]
pub struct PathMtus {
    tunnels: Vec<(TunnelId, Option<TunnelPathMtu>)>,
}

impl PathMtus {
    /// Knows nothing yet of `config`'s tunnels.
    pub fn new(config: &Config) -> Self {
        Self {
            tunnels: config.tunnel_ids().map(|id| (id, None)).collect(),
        }
    }

    /// Records a measurement made at `now`; `None` (not even small probes came back)
    /// forgets the last one, which says nothing of a dead tunnel.
    pub fn handle(&mut self, tunnel: TunnelId, reading: Option<PathMtuReading>, now: Timestamp) {
        if let Some((_, slot)) = self.tunnels.iter_mut().find(|(id, _)| *id == tunnel) {
            *slot = reading.map(|reading| TunnelPathMtu {
                reading,
                measured_at: now,
            });
        }
    }

    /// Returns a tunnel's last measurement.
    pub fn get(&self, tunnel: TunnelId) -> Option<&TunnelPathMtu> {
        self.tunnels
            .iter()
            .find(|(id, _)| *id == tunnel)
            .and_then(|(_, m)| m.as_ref())
    }

    /// Returns what a tunnel's last measurement means, if it has one.
    pub fn verdict(&self, tunnel: TunnelId) -> Option<MtuVerdict> {
        self.get(tunnel).map(|m| MtuVerdict::of(&m.reading))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn reading(bytes: u32, found: MtuLimitFound) -> PathMtuReading {
        PathMtuReading {
            bytes,
            found,
            expected: 1446,
            target: Ipv4Addr::new(172, 16, 1, 10),
            router: None,
            probes: 3,
        }
    }

    #[test]
    fn only_a_silent_limit_under_the_expected_size_is_a_black_hole() {
        use MtuLimitFound::*;
        let cases = [
            (1500, Reply, MtuVerdict::Fine),
            (1446, Silent, MtuVerdict::Fine),
            (1446, FragNeeded, MtuVerdict::Fine),
            (
                1300,
                Silent,
                MtuVerdict::BlackHole {
                    bytes: 1300,
                    expected: 1446,
                },
            ),
            (
                1300,
                FragNeeded,
                MtuVerdict::Narrow {
                    bytes: 1300,
                    expected: 1446,
                },
            ),
        ];
        for (bytes, found, verdict) in cases {
            assert_eq!(
                MtuVerdict::of(&reading(bytes, found)),
                verdict,
                "{bytes} {found:?}"
            );
        }
    }
}
