//! Each tunnel's last path-MTU measurement and what it means, pure: a **black hole**
//! (packets of the expected size vanish without ICMP while smaller ones pass) pages as
//! `MtuBlackHole`; a path narrower than expected whose routers say so ("fragmentation
//! needed") is only an advisory, since hosts then learn the MTU by themselves.

use serde::Serialize;

use crate::config::Config;
use crate::health::advice::Advisory;
use crate::messages::{MtuLimitFound, PathMtuReading};
use crate::types::{Timestamp, TunnelId};

pub use crate::config::{MTU_MAX_BYTES as MAX_BYTES, MTU_MIN_BYTES as MIN_BYTES};

/// The advisory code of a path narrower than expected whose routers say so.
pub const NARROW_CODE: &str = "path_mtu_below_expected";

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
            MtuLimitFound::FragNeeded | MtuLimitFound::Reply | MtuLimitFound::Local => {
                MtuVerdict::Narrow { bytes, expected }
            }
        }
    }
}

/// The last measurement of every tunnel.
#[derive(Clone, Debug, Default)]
pub struct PathMtus {
    /// Each tunnel, whether it was measured since start, and its last reading.
    tunnels: Vec<(TunnelId, bool, Option<TunnelPathMtu>)>,
}

impl PathMtus {
    /// Knows nothing yet of `config`'s tunnels.
    pub fn new(config: &Config) -> Self {
        Self {
            tunnels: config.tunnel_ids().map(|id| (id, false, None)).collect(),
        }
    }

    /// Records a measurement made at `now`; `None` (not even small probes came back)
    /// forgets the last one, which says nothing of a dead tunnel.
    pub fn handle(&mut self, tunnel: TunnelId, reading: Option<PathMtuReading>, now: Timestamp) {
        if let Some((_, measured, slot)) = self.tunnels.iter_mut().find(|(id, _, _)| *id == tunnel)
        {
            *measured = true;
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
            .find(|(id, _, _)| *id == tunnel)
            .and_then(|(_, _, m)| m.as_ref())
    }

    /// Returns whether a measurement of the tunnel finished since start.
    pub fn measured(&self, tunnel: TunnelId) -> bool {
        self.tunnels
            .iter()
            .any(|(id, measured, _)| *id == tunnel && *measured)
    }

    /// Returns what a tunnel's last measurement means, if it has one.
    pub fn verdict(&self, tunnel: TunnelId) -> Option<MtuVerdict> {
        self.get(tunnel).map(|m| MtuVerdict::of(&m.reading))
    }

    /// Returns an advisory for every tunnel narrower than expected whose ICMP works.
    pub fn advisories(&self, config: &Config) -> Vec<Advisory> {
        config
            .tunnel_ids()
            .filter_map(|id| {
                let MtuVerdict::Narrow { bytes, expected } = self.verdict(id)? else {
                    return None;
                };
                let local = self
                    .get(id)
                    .is_some_and(|m| m.reading.found == MtuLimitFound::Local);
                let why = if local {
                    "this instance will not send larger packets (its interface or route MTU is smaller), so nothing larger can be measured"
                } else {
                    "routers say so (\"fragmentation needed\"), so hosts adapt, but every large packet costs a round trip"
                };
                Some(Advisory {
                    code: NARROW_CODE,
                    vpn: config.connections[id.connection].name.to_string(),
                    tunnel: config.tunnel(id).name.to_string(),
                    message: format!(
                        "the path MTU is {bytes} bytes, under the {expected} expected; {why}: clamp TCP MSS to {} or lower `mtu` for this tunnel",
                        bytes.saturating_sub(40)
                    ),
                    id,
                })
            })
            .collect()
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

    #[test]
    fn a_narrow_path_with_working_icmp_is_an_advisory_and_a_black_hole_is_not() {
        let config = Config::parse(
            "[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [\"10.0.0.1\"]\n[[vpn.tunnel]]\nname = \"b\"\ntargets = [\"10.0.0.2\"]\n",
            "t",
        )
        .unwrap();
        let a = TunnelId {
            connection: 0,
            tunnel: 0,
        };
        let b = TunnelId {
            connection: 0,
            tunnel: 1,
        };
        let mut mtus = PathMtus::new(&config);
        assert!(!mtus.measured(a));
        let now = Timestamp::from_millis(5);
        mtus.handle(a, Some(reading(1300, MtuLimitFound::FragNeeded)), now);
        mtus.handle(b, Some(reading(1300, MtuLimitFound::Silent)), now);
        let advisories = mtus.advisories(&config);
        assert_eq!(advisories.len(), 1, "{advisories:?}");
        assert_eq!(
            (advisories[0].code, advisories[0].tunnel.as_str()),
            (NARROW_CODE, "a")
        );
        assert!(
            advisories[0].message.contains("1300 bytes, under the 1446"),
            "{}",
            advisories[0].message
        );
        // A dead path forgets the reading but stays measured.
        mtus.handle(a, None, now);
        assert!(mtus.measured(a) && mtus.get(a).is_none());
        assert!(mtus.advisories(&config).is_empty());
    }
}
