//! TCP targets: a target with a `tcp_port` is probed by a TCP connect to that port instead
//! of an ICMP echo. Written as `tcp_port = 5432` in a target table, or as
//! `"172.16.1.11:22"` in a tunnel's `targets` list. Its identity is its address and port,
//! so one host may be an ICMP target and several TCP targets at once.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::raw::{parse_v4, V4};
use super::TargetSpec;

/// The interval of a TCP target that sets none: a connect every 5 s is a light load for
/// the service (a handshake and a close) and still keeps an idle tunnel busy.
pub const DEFAULT_TCP_INTERVAL: Duration = Duration::from_secs(5);

/// What a target is probed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// ICMP echo.
    Icmp,
    /// TCP connect to this port.
    Tcp(u16),
}

impl Proto {
    /// Returns `icmp` or `tcp`, the `proto` label of target metrics.
    pub fn label(self) -> &'static str {
        match self {
            Proto::Icmp => "icmp",
            Proto::Tcp(_) => "tcp",
        }
    }
}

/// Where a probe goes: an address, and a port for TCP. Displays as `address` or
/// `address:port`, the form a pinned TCP target is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: Ipv4Addr,
    pub tcp_port: Option<u16>,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tcp_port {
            Some(port) => write!(f, "{}:{port}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

impl TargetSpec {
    /// Returns where this target's probes go.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address,
            tcp_port: self.tcp_port,
        }
    }

    /// Returns how this target is probed.
    pub fn proto(&self) -> Proto {
        self.tcp_port.map_or(Proto::Icmp, Proto::Tcp)
    }
}

/// Splits a pinned target string, `"ADDRESS"` or `"ADDRESS:PORT"`, into its address and
/// its TCP port (range-checked later, with the other values).
pub(super) fn split_pinned(s: &str) -> Result<(V4, Option<u16>), String> {
    let Some((address, port)) = s.rsplit_once(':').filter(|_| s.matches(':').count() == 1) else {
        return parse_v4(s).map(|a| (a, None));
    };
    let address = parse_v4(address)?;
    match port.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok((address, Some(p as u16))),
        _ => Err(format!(
            "{s}: {port:?} is not a TCP port; write \"ADDRESS:PORT\" with a port from 1 to 65535"
        )),
    }
}

/// Returns the port of a `tcp_port` value, or the message that names the bound.
pub(super) fn check_port(port: i64) -> Result<u16, String> {
    match u16::try_from(port) {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(format!(
            "{port} is out of range: a TCP port is between 1 and 65535"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_strings_split_into_address_and_port() {
        /// The address and port expected, or a fragment of the error.
        type Want<'a> = Result<(&'a str, Option<u16>), &'a str>;
        let cases: [(&str, Want); 7] = [
            ("172.16.1.10", Ok(("172.16.1.10", None))),
            ("172.16.1.11:22", Ok(("172.16.1.11", Some(22)))),
            ("172.16.1.11:65535", Ok(("172.16.1.11", Some(65535)))),
            ("172.16.1.11:0", Err("is not a TCP port")),
            ("172.16.1.11:65536", Err("is not a TCP port")),
            ("172.16.1.11:ssh", Err("is not a TCP port")),
            ("::1", Err("IPv6")),
        ];
        for (input, want) in cases {
            let got = split_pinned(input).map(|(V4(a), p)| (a, p));
            match want {
                Ok((a, p)) => assert_eq!(got.unwrap(), (a.parse().unwrap(), p), "{input}"),
                Err(fragment) => {
                    let e = got.err().unwrap_or_else(|| panic!("{input} accepted"));
                    assert!(e.contains(fragment), "{input}: {e}");
                }
            }
        }
    }

    #[test]
    fn ports_outside_1_to_65535_name_the_bound() {
        assert_eq!(check_port(5432), Ok(5432));
        for bad in [0, -1, 65536] {
            assert!(check_port(bad).unwrap_err().contains("between 1 and 65535"));
        }
    }

    fn error_of(text: &str) -> String {
        match crate::config::Config::parse(text, "test.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const BASE: &str = r#"
[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "a"
  targets = ["172.16.1.10", "172.16.1.10:22", { address = "172.16.1.11", tcp_port = 5432, interval = "2s" }]
  [[vpn.tunnel]]
  name = "b"
  targets = ["172.16.2.10"]
[[target]]
address = "10.20.0.5"
tcp_port = 443
"#;

    #[test]
    fn tcp_targets_parse_in_both_forms_with_their_own_default_interval() {
        let config = crate::config::Config::parse(BASE, "test.toml").unwrap();
        let t = &config.targets;
        // (name, proto, interval): ICMP keeps [probe]'s 1 s, TCP gets 5 s unless it says.
        let want = [
            ("172.16.1.10", Proto::Icmp, 1),
            ("172.16.1.10:22", Proto::Tcp(22), 5),
            ("172.16.1.11:5432", Proto::Tcp(5432), 2),
            ("172.16.2.10", Proto::Icmp, 1),
            ("10.20.0.5:443", Proto::Tcp(443), 5),
        ];
        assert_eq!(t.len(), want.len());
        for (spec, (name, proto, secs)) in t.iter().zip(want) {
            assert_eq!(spec.name.as_str(), name);
            assert_eq!(spec.proto(), proto, "{name}");
            assert_eq!(spec.probe.interval, Duration::from_secs(secs), "{name}");
        }
        let with_interval = BASE.replace("[[vpn]]", "[probe]\ntcp_interval = \"10s\"\n[[vpn]]");
        let config = crate::config::Config::parse(&with_interval, "test.toml").unwrap();
        assert_eq!(config.targets[1].probe.interval, Duration::from_secs(10));
        assert_eq!(config.targets[0].probe.interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_ports_and_duplicates_are_errors_with_key_value_and_line() {
        let cases = [
            (
                BASE.replace("tcp_port = 443", "tcp_port = 70000"),
                vec![
                    "line 12",
                    "target[0].tcp_port",
                    "70000 is out of range",
                    "between 1 and 65535",
                ],
            ),
            (
                BASE.replace("tcp_port = 443", "tcp_port = 0"),
                vec!["line 12", "target[0].tcp_port", "0 is out of range"],
            ),
            (
                BASE.replace("\"172.16.1.10:22\"", "\"172.16.1.10:99999\""),
                vec!["line 6", "\"99999\" is not a TCP port", "1 to 65535"],
            ),
            (
                BASE.replace("\"172.16.2.10\"", "\"172.16.1.10:22\""),
                vec![
                    "line 9",
                    "vpn[0].tunnel[1].targets[0]",
                    "TCP target 172.16.1.10:22 is already used by vpn[0].tunnel[0].targets[1]",
                ],
            ),
            (
                BASE.replace(
                    "[[vpn]]",
                    "[probe]\ntcp_interval = \"500ms\"\ntimeout = \"1s\"\n[[vpn]]",
                ),
                vec!["probe.tcp_interval", "shorter than probe.timeout"],
            ),
        ];
        for (text, needles) in cases {
            let e = error_of(&text);
            for n in needles {
                assert!(e.contains(n), "{n:?} not in:\n{e}");
            }
        }
    }

    #[test]
    fn a_reload_keeps_a_tcp_target_by_address_and_port() {
        use crate::config::{Config, ReloadMapping};
        use crate::types::TargetId;
        let old = Config::parse(BASE, "old.toml").unwrap();
        // Reordered, and 172.16.1.10:22 moved to port 23: only the unchanged ones map.
        let text = BASE.replace(
            r#"targets = ["172.16.1.10", "172.16.1.10:22","#,
            r#"targets = ["172.16.1.10:23", "172.16.1.10","#,
        );
        let new = Config::parse(&text, "new.toml").unwrap();
        let mut kept = ReloadMapping::between(&old, &new).targets;
        kept.sort();
        // new 1 = old 0 (ICMP), 2..4 unchanged; new 0 (port 23) is a new target.
        let want: Vec<(TargetId, TargetId)> = [(1, 0), (2, 2), (3, 3), (4, 4)]
            .into_iter()
            .map(|(n, o)| (TargetId(n), TargetId(o)))
            .collect();
        assert_eq!(kept, want);
    }
}
