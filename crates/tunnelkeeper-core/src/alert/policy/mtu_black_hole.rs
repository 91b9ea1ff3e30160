//! The `MtuBlackHole` condition, pure: for each tunnel whose path MTU is measured, active
//! while its last measurement found packets of the expected size vanishing without ICMP
//! as smaller ones crossed. A narrower path whose routers say so is an advisory
//! (`health::path_mtu`), never a page: hosts learn that MTU by themselves.

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::config::Config;
use crate::health::path_mtu::{MtuVerdict, PathMtus};
use crate::types::AlertClass;

/// Returns the condition of every tunnel whose path MTU is measured: unknown until its
/// first measurement (an alert restored from disk keeps its state until then).
/// The policy's rule: [`black_holes`] of the tunnels measured.
pub fn rule(inputs: &crate::alert::policy::Inputs<'_>) -> Conditions {
    black_holes(inputs.config, inputs.path_mtu)
}

/// Active for each tunnel whose last measurement found a black hole.
pub fn black_holes(config: &Config, path_mtu: &PathMtus) -> Conditions {
    let mut out = Conditions::new();
    if !config.mtu.enabled {
        return out;
    }
    for id in config.tunnel_ids() {
        let connection = &config.connections[id.connection];
        let tunnel = config.tunnel(id);
        if tunnel.targets.is_empty() {
            continue;
        }
        let key = AlertKey::tunnel(
            AlertClass::MtuBlackHole,
            connection.name.as_str(),
            tunnel.name.as_str(),
        );
        if !path_mtu.measured(id) {
            out.insert(key, Condition::Unknown);
            continue;
        }
        let Some(measured) = path_mtu.get(id) else {
            // Not even small probes came back (the tunnel is down, or a loss burst): that
            // says nothing of its MTU, so a firing black hole holds rather than resolves.
            out.insert(key, Condition::Unknown);
            continue;
        };
        if let MtuVerdict::BlackHole { bytes, expected } = MtuVerdict::of(&measured.reading) {
            let summary =
                format!("packets over {bytes} bytes vanish without ICMP; expected {expected}");
            let reason = format!(
                "{summary}: DF probes of up to {bytes} bytes to {} come back, larger ones are dropped and no router sends \"fragmentation needed\". Small pings pass while large transfers hang: clamp TCP MSS, clear DF before encryption, or let ICMP type 3 code 4 through",
                measured.reading.target
            );
            out.insert(
                key,
                Condition::Active(Details {
                    summary,
                    reason,
                    vpn_id: connection.id.as_ref().map(|id| id.to_string()),
                    severity: None,
                    since: None,
                    cause: None,
                }),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{MtuLimitFound, PathMtuReading};
    use crate::types::{Timestamp, TunnelId};

    const TWO_TUNNELS: &str = r#"
[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  targets = ["172.16.1.10"]
  [[vpn.tunnel]]
  name = "dc-b"
  targets = ["172.16.2.10"]
"#;

    fn tunnel(t: usize) -> TunnelId {
        TunnelId {
            connection: 0,
            tunnel: t,
        }
    }

    fn reading(bytes: u32, found: MtuLimitFound) -> Option<PathMtuReading> {
        Some(PathMtuReading {
            bytes,
            found,
            expected: 1446,
            target: "172.16.1.10".parse().unwrap(),
            router: None,
            probes: 10,
        })
    }

    fn key(t: &str) -> AlertKey {
        AlertKey::tunnel(AlertClass::MtuBlackHole, "dc", t)
    }

    #[test]
    fn a_silent_limit_under_the_expected_size_is_a_black_hole_with_the_limit_in_its_reason() {
        let config = Config::parse(TWO_TUNNELS, "t").unwrap();
        let mut mtus = PathMtus::new(&config);
        let now = Timestamp::from_millis(0);
        let c = black_holes(&config, &mtus);
        assert_eq!(
            c.get(&key("dc-a")),
            Some(&Condition::Unknown),
            "not measured yet"
        );
        mtus.handle(tunnel(0), reading(1300, MtuLimitFound::Silent), now);
        mtus.handle(tunnel(1), reading(1500, MtuLimitFound::Reply), now);
        let c = black_holes(&config, &mtus);
        let Some(Condition::Active(d)) = c.get(&key("dc-a")) else {
            panic!("{c:?}");
        };
        assert_eq!(
            d.summary,
            "packets over 1300 bytes vanish without ICMP; expected 1446"
        );
        assert!(d.reason.contains("172.16.1.10"), "{}", d.reason);
        assert_eq!(c.get(&key("dc-b")), None, "the full tunnel has no alert");

        // Nothing came back (the tunnel is down): that says nothing of its MTU, so a
        // firing black hole holds instead of resolving mid-outage.
        mtus.handle(tunnel(0), None, now);
        assert_eq!(
            black_holes(&config, &mtus).get(&key("dc-a")),
            Some(&Condition::Unknown)
        );
        for next in [
            reading(1300, MtuLimitFound::FragNeeded),
            reading(1446, MtuLimitFound::Silent),
        ] {
            mtus.handle(tunnel(0), next.clone(), now);
            assert_eq!(
                black_holes(&config, &mtus).get(&key("dc-a")),
                None,
                "{next:?}"
            );
        }
    }

    #[test]
    fn nothing_is_judged_where_nothing_is_probed() {
        let off = format!("[mtu]\nenabled = false\n{TWO_TUNNELS}");
        let config = Config::parse(&off, "t").unwrap();
        assert!(black_holes(&config, &PathMtus::new(&config)).is_empty());
    }
}
