//! Exactly what the TOML may hold: serde structs that keep spans for error positions.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) probe: RawProbe,
    #[serde(default)]
    pub(super) vpn: Vec<RawVpn>,
    #[serde(default)]
    pub(super) target: Vec<Spanned<RawTarget>>,
    pub(super) aws: Option<Spanned<RawAws>>,
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) alerts: Option<RawAlerts>,
    pub(super) mtu: Option<Spanned<RawMtu>>,
    pub(super) maintenance: Option<Spanned<RawMaintenance>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    pub(super) apply: Option<Spanned<String>>,
    pub(super) window: Option<Spanned<RawWindows>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) sibling_healthy_for: Option<Spanned<HumanDuration>>,
    pub(super) max_concurrent: Option<Spanned<u32>>,
    pub(super) recovery_timeout: Option<Spanned<HumanDuration>>,
}

/// One window or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawWindows {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMtu {
    pub(super) enabled: Option<bool>,
    pub(super) interval: Option<Spanned<HumanDuration>>,
    pub(super) expected: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(rename = "for")]
    pub(super) for_: Option<Spanned<HumanDuration>>,
    pub(super) keep_firing_for: Option<Spanned<HumanDuration>>,
    pub(super) group_wait: Option<Spanned<HumanDuration>>,
    pub(super) repeat_interval: Option<Spanned<HumanDuration>>,
    pub(super) send_resolved: Option<bool>,
    pub(super) escalate_after: Option<Spanned<HumanDuration>>,
    pub(super) flap_changes: Option<Spanned<u32>>,
    pub(super) flap_window: Option<Spanned<HumanDuration>>,
    pub(super) control_plane_unavailable_after: Option<Spanned<HumanDuration>>,
    pub(super) maintenance_grace: Option<Spanned<HumanDuration>>,
    pub(super) failover_grace: Option<Spanned<HumanDuration>>,
    pub(super) maintenance_severity: Option<Spanned<String>>,
    pub(super) severity: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    pub(super) runbook_url: Option<Spanned<String>>,
    pub(super) lossy: Option<Spanned<RawLossy>>,
    pub(super) slow: Option<Spanned<RawSlow>>,
    #[serde(default)]
    pub(super) silence: Vec<Spanned<RawSilence>>,
    pub(super) sink: Option<Vec<Spanned<RawSink>>>,
}

/// `[alerts.lossy]`: `TunnelLossy`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLossy {
    pub(super) window: Option<Spanned<HumanDuration>>,
    pub(super) threshold: Option<Spanned<String>>,
}

/// `[alerts.slow]`: `TunnelSlow`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlow {
    pub(super) window: Option<Spanned<HumanDuration>>,
    pub(super) factor: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSilence {
    pub(super) alert: Option<Spanned<String>>,
    pub(super) vpn: Option<Spanned<String>>,
    pub(super) tunnel: Option<Spanned<String>>,
    pub(super) starts: Option<Spanned<String>>,
    pub(super) ends: Spanned<String>,
    #[serde(default)]
    pub(super) comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub(super) kind: Spanned<String>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) topic_arn: Option<Spanned<String>>,
    pub(super) url: Option<Spanned<String>>,
    pub(super) min_severity: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAws {
    pub(super) region: Option<Spanned<String>>,
    pub(super) poll_interval: Option<Spanned<HumanDuration>>,
    pub(super) endpoint_url: Option<Spanned<String>>,
    pub(super) cloudwatch_namespace: Option<Spanned<String>>,
    pub(super) cloudwatch_interval: Option<Spanned<HumanDuration>>,
    pub(super) maintenance_interval: Option<Spanned<HumanDuration>>,
    pub(super) tunnel_logs: Option<RawTunnelLogs>,
}

/// `[aws.tunnel_logs]`: reading AWS's tunnel activity logs for the cause of an outage.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnelLogs {
    pub(super) enabled: Option<bool>,
    pub(super) log_group: Option<Spanned<String>>,
    pub(super) wait: Option<Spanned<HumanDuration>>,
    pub(super) interval: Option<Spanned<HumanDuration>>,
    pub(super) linger: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<SocketAddr>,
    pub(super) enable_lifecycle: Option<bool>,
    pub(super) tls_server_config: Option<Spanned<RawTls>>,
    pub(super) basic_auth_users: Option<std::collections::BTreeMap<String, Spanned<String>>>,
}

/// exporter-toolkit's `tls_server_config`, the keys this daemon supports.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) client_ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub(super) interval: Option<Spanned<HumanDuration>>,
    pub(super) timeout: Option<Spanned<HumanDuration>>,
    pub(super) payload_bytes: Option<Spanned<u32>>,
    pub(super) socket: Option<SocketKind>,
    pub(super) down_after: Option<Spanned<u32>>,
    pub(super) up_after: Option<Spanned<u32>>,
    pub(super) adaptive_timeout: Option<bool>,
    pub(super) timeout_floor: Option<Spanned<HumanDuration>>,
    pub(super) timeout_rtt_multiplier: Option<Spanned<u32>>,
    pub(super) fast_confirm: Option<bool>,
    /// The interval of TCP targets that set none (`tcp.rs`).
    pub(super) tcp_interval: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVpn {
    pub(super) id: Option<Spanned<String>>,
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) tunnel: Vec<RawTunnel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub(super) name: Spanned<String>,
    pub(super) outside_ip: Option<Spanned<V4>>,
    #[serde(default)]
    pub(super) targets: Vec<Spanned<RawPinned>>,
    pub(super) mtu: Option<Spanned<u32>>,
}

/// A target table: `[[target]]` entries, and pinned targets written as inline tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) name: Option<Spanned<String>>,
    pub(super) address: Spanned<V4>,
    pub(super) interval: Option<Spanned<HumanDuration>>,
    pub(super) timeout: Option<Spanned<HumanDuration>>,
    pub(super) payload_bytes: Option<Spanned<u32>>,
    pub(super) down_after: Option<Spanned<u32>>,
    pub(super) up_after: Option<Spanned<u32>>,
    /// Probe this port by TCP connect instead of ICMP (`tcp.rs`); a wider integer than
    /// a port so that 70000 is a range error naming the bound, not a type error.
    pub(super) tcp_port: Option<Spanned<i64>>,
}

/// A pinned target: a bare address string (`"172.16.1.10"`, or `"172.16.1.11:22"` for a
/// TCP target) or an inline table with overrides.
pub(super) struct RawPinned(pub(super) RawTarget);

impl<'de> Deserialize<'de> for RawPinned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PinnedVisitor;
        impl<'de> Visitor<'de> for PinnedVisitor {
            type Value = RawPinned;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "an IPv4 address string (\"ADDRESS\" or \"ADDRESS:PORT\") or a table with `address`",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPinned, E> {
                let (address, tcp_port) = super::tcp::split_pinned(s).map_err(E::custom)?;
                Ok(RawPinned(RawTarget {
                    name: None,
                    address: Spanned::new(0..0, address),
                    interval: None,
                    timeout: None,
                    payload_bytes: None,
                    down_after: None,
                    up_after: None,
                    tcp_port: tcp_port.map(|p| Spanned::new(0..0, i64::from(p))),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawPinned, A::Error> {
                RawTarget::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawPinned)
            }
        }
        d.deserialize_any(PinnedVisitor)
    }
}

/// An IPv4 address whose parse error says what was expected.
#[derive(Clone, Copy)]
pub(super) struct V4(pub(super) Ipv4Addr);

pub(super) fn parse_v4(s: &str) -> Result<V4, String> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(V4(a)),
        Ok(IpAddr::V6(_)) => Err(format!(
            "{s} is an IPv6 address; a virtual private gateway carries IPv4 only"
        )),
        Err(_) => Err(format!("{s} is not an IPv4 address")),
    }
}

impl<'de> Deserialize<'de> for V4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_v4(&s).map_err(de::Error::custom)
    }
}

/// A duration written the humantime way: `"1s"`, `"500ms"`, `"1m 30s"`.
#[derive(Clone, Copy)]
pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "{s:?} is not a duration ({e}); write e.g. \"1s\", \"500ms\", \"2m\""
                ))
            })
    }
}
