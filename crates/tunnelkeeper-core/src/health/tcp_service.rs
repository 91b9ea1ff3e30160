//! What TCP targets say beyond reachability, pure: whether the service answers (a refused
//! connect reaches the host, so the target stays up for its tunnel while `ServiceDown`
//! names the service), and the MSS each tunnel's connects got, which an IPsec path needs
//! clamped to its path MTU less 40 bytes of IP and TCP headers.

use serde::Serialize;

use crate::config::{Config, TargetScope};
use crate::health::advice::Advisory;
use crate::health::path_mtu::PathMtus;
use crate::health::HealthModel;
use crate::messages::ServiceAnswer;
use crate::types::{Timestamp, TunnelId};

/// The advisory code of a tunnel whose connects get an MSS its path MTU cannot carry.
pub const MSS_CODE: &str = "tcp_mss_over_path_mtu";
/// IPv4 and TCP headers without options: what a segment adds to its MSS on the wire.
pub const TCP_IP_HEADERS: u32 = 40;

/// One TCP target's service: its last answer and how long it has held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceHealth {
    /// The last answer (`None` before the first connect that reached the host).
    pub last: Option<ServiceAnswer>,
    /// Since when the service has answered this way.
    pub since: Option<Timestamp>,
    /// Refused connects in a row.
    pub refused_in_a_row: u32,
    /// The last MSS a completed handshake got, and when.
    pub mss: Option<(u32, Timestamp)>,
}

impl ServiceHealth {
    /// Takes one answer; returns true when the service changed between open and refused.
    pub fn handle(&mut self, answer: ServiceAnswer, at: Timestamp) -> bool {
        let changed = !matches!(
            (self.last, answer),
            (Some(ServiceAnswer::Open { .. }), ServiceAnswer::Open { .. })
                | (Some(ServiceAnswer::Refused), ServiceAnswer::Refused)
        );
        if changed {
            self.since = Some(at);
        }
        match answer {
            ServiceAnswer::Open { mss } => {
                self.refused_in_a_row = 0;
                if let Some(bytes) = mss {
                    self.mss = Some((bytes, at));
                }
            }
            ServiceAnswer::Refused => {
                self.refused_in_a_row = self.refused_in_a_row.saturating_add(1)
            }
        }
        self.last = Some(answer);
        changed
    }

    /// Returns whether the service counts as down: `down_after` refused connects in a
    /// row, the same streak a target needs to count as down.
    pub fn is_down(&self, down_after: u32) -> bool {
        self.refused_in_a_row >= down_after
    }
}

/// The MSS a tunnel's connects got: the latest among its pinned TCP targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelMss {
    /// The maximum segment size in bytes.
    pub bytes: u32,
    /// The target (`address:port`) whose connect read it.
    pub target: String,
    /// When.
    pub measured_at: Timestamp,
}

/// Returns the latest MSS read through `tunnel`, if a pinned TCP target completed a
/// handshake.
pub fn tunnel_mss(config: &Config, model: &HealthModel, tunnel: TunnelId) -> Option<TunnelMss> {
    config
        .targets
        .iter()
        .filter(|t| t.scope == TargetScope::Pinned(tunnel) && t.tcp_port.is_some())
        .filter_map(|t| {
            let (bytes, at) = model.target(t.id).service.mss?;
            Some(TunnelMss {
                bytes,
                target: t.endpoint().to_string(),
                measured_at: at,
            })
        })
        .max_by_key(|m| m.measured_at)
}

/// Returns an advisory for every tunnel whose connects got an MSS over its measured path
/// MTU less 40: full-size segments will not cross unless something fragments them or
/// PMTU discovery works end to end, the classic missing MSS clamp on an IPsec tunnel.
pub fn mss_advisories(config: &Config, model: &HealthModel, path_mtu: &PathMtus) -> Vec<Advisory> {
    config
        .tunnel_ids()
        .filter_map(|id| {
            let mss = tunnel_mss(config, model, id)?;
            let path = path_mtu.get(id)?.reading.bytes;
            let fits = path.saturating_sub(TCP_IP_HEADERS);
            (mss.bytes > fits).then(|| Advisory {
                code: MSS_CODE,
                vpn: config.connections[id.connection].name.to_string(),
                tunnel: config.tunnel(id).name.to_string(),
                message: format!(
                    "TCP connects to {} get an MSS of {} bytes, but the path MTU is {path} bytes, which carries segments of {fits}: clamp the MSS to {fits} on the customer gateway (or the VPC side), or large transfers stall",
                    mss.target, mss.bytes
                ),
                id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::messages::{MtuLimitFound, PathMtuReading};
    use crate::types::TargetId;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + s * 1000)
    }

    #[test]
    fn refused_streaks_and_mss_follow_the_answers() {
        use ServiceAnswer::{Open, Refused};
        // (answer, refused in a row after it, down with down_after 2, changed kind)
        let steps = [
            (Open { mss: Some(1460) }, 0, false, true),
            (Open { mss: None }, 0, false, false),
            (Refused, 1, false, true),
            (Refused, 2, true, false),
            (Refused, 3, true, false),
            (Open { mss: Some(1260) }, 0, false, true),
        ];
        let mut s = ServiceHealth::default();
        for (i, (answer, streak, down, changed)) in steps.into_iter().enumerate() {
            assert_eq!(s.handle(answer, at(i as u64)), changed, "step {i}");
            assert_eq!(s.refused_in_a_row, streak, "step {i}");
            assert_eq!(s.is_down(2), down, "step {i}");
        }
        // The MSS of an open answer without one is kept from the last that had one.
        assert_eq!(s.mss, Some((1260, at(5))));
        assert_eq!(s.since, Some(at(5)));
    }

    const CONFIG: &str = r#"
[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "a"
  targets = ["172.16.1.10", "172.16.1.11:22"]
  [[vpn.tunnel]]
  name = "b"
  targets = ["172.16.2.10"]
"#;

    fn reading(bytes: u32) -> PathMtuReading {
        PathMtuReading {
            bytes,
            found: MtuLimitFound::FragNeeded,
            expected: 1446,
            target: "172.16.1.10".parse().unwrap(),
            router: None,
            probes: 7,
        }
    }

    #[test]
    fn an_mss_over_the_path_mtu_less_40_is_advised_per_tunnel() {
        let config = Config::parse(CONFIG, "test").unwrap();
        let a = TunnelId {
            connection: 0,
            tunnel: 0,
        };
        let tcp = TargetId(1);
        assert_eq!(config.targets[1].tcp_port, Some(22));
        // (MSS read, path MTU measured, advisory expected)
        let cases = [
            (Some(1260), Some(1300), false),
            (Some(1261), Some(1300), true),
            (Some(1460), Some(1300), true),
            (Some(1460), None, false),
            (None, Some(1300), false),
        ];
        for (mss, path, advised) in cases {
            let mut model = HealthModel::new(&config);
            if let Some(bytes) = mss {
                model.handle_service(tcp, ServiceAnswer::Open { mss: Some(bytes) }, at(1));
            }
            let mut mtus = PathMtus::new(&config);
            if let Some(bytes) = path {
                mtus.handle(a, Some(reading(bytes)), at(2));
            }
            let found = mss_advisories(&config, &model, &mtus);
            assert_eq!(!found.is_empty(), advised, "{mss:?} over {path:?}");
            if advised {
                assert_eq!(found[0].code, MSS_CODE);
                assert_eq!(found[0].tunnel, "a");
                assert!(
                    found[0].message.contains("172.16.1.11:22"),
                    "{}",
                    found[0].message
                );
            }
            assert_eq!(
                tunnel_mss(&config, &model, a).map(|m| m.bytes),
                mss,
                "the tunnel's MSS"
            );
        }
    }
}
