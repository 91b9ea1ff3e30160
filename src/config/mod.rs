//! The TOML configuration: typed raw structs, validation with key paths and positions, and
//! the embedded default that runs with no file at all.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::alert::engine::{AlertClass, AlertRules, Severity, Silence};
use crate::types::{
    ConnectionName, OutsideIp, TargetId, TargetName, Timestamp, TunnelId, TunnelName,
    VpnConnectionId,
};

/// The commented config that runs when no file is given (also what `print-config` prints).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// The largest ICMP payload that crosses a VPN tunnel unfragmented: MTU 1446 less the IPv4
/// (20) and ICMP (8) headers. A VGW does no path-MTU discovery, so bigger probes only measure
/// fragmentation.
pub const MAX_PAYLOAD_BYTES: u32 = 1446 - 20 - 8;
/// The shortest probe interval accepted; faster probing buys nothing on a VPN.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest probe interval accepted; slower leaves an idle AWS tunnel to drop.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// The most consecutive results `down_after`/`up_after` may ask for.
pub const MAX_STREAK: u32 = 1000;

/// A validated configuration: every reference resolved, every bound checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the HTTP endpoint listens.
    pub listen: SocketAddr,
    /// Which kind of ICMP socket to open.
    pub socket: SocketKind,
    /// The VPN connections, in config order.
    pub connections: Vec<ConnectionSpec>,
    /// Every probe target, pinned and shared; `targets[i].id == TargetId(i)`.
    pub targets: Vec<TargetSpec>,
    /// AWS settings; absent means nothing AWS starts.
    pub aws: Option<AwsConfig>,
    /// Where the alert state and the outbox live.
    pub state_dir: PathBuf,
    /// Alert rules, silences and sinks.
    pub alerts: AlertsConfig,
    /// Things that are allowed but probably not what the operator meant.
    pub warnings: Vec<String>,
}

/// One Site-to-Site VPN connection.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectionSpec {
    /// The AWS connection id, absent for connections that are only pinged (labs, defaults).
    pub id: Option<VpnConnectionId>,
    /// The operator's name for it.
    pub name: ConnectionName,
    /// Its tunnels (two on AWS).
    pub tunnels: Vec<TunnelSpec>,
}

/// One IPsec tunnel of a connection.
#[derive(Clone, Debug, PartialEq)]
pub struct TunnelSpec {
    /// The operator's name for it, unique across the config.
    pub name: TunnelName,
    /// The AWS outside IP, which joins EC2 telemetry to this tunnel.
    pub outside_ip: Option<OutsideIp>,
    /// Targets routed through this tunnel only.
    pub targets: Vec<TargetId>,
}

/// Whether a target rides one tunnel or whichever tunnel the VGW uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetScope {
    /// Reached only through this tunnel (the datacenter advertises it on that tunnel alone).
    Pinned(TunnelId),
    /// Reached through whichever tunnel carries traffic.
    Shared,
}

/// One address to ping, with the probe settings that apply to it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetSpec {
    /// Its index in [`Config::targets`].
    pub id: TargetId,
    /// Its name (the address when none is given).
    pub name: TargetName,
    /// Its IPv4 address (a VGW carries no IPv6).
    pub address: Ipv4Addr,
    /// Pinned to a tunnel, or shared.
    pub scope: TargetScope,
    /// The probe settings after defaults and overrides.
    pub probe: ProbeSettings,
}

/// How one target is probed and judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeSettings {
    /// Time between two echo requests.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long a request waits for its reply.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// ICMP payload size in bytes.
    pub payload_bytes: u32,
    /// Consecutive lost probes before the target counts as down.
    pub down_after: u32,
    /// Consecutive replies before a down target counts as up again.
    pub up_after: u32,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            payload_bytes: 56,
            down_after: 3,
            up_after: 2,
        }
    }
}

/// The alert engine's settings and where notifications go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertsConfig {
    /// `for`, `keep_firing_for`, `repeat_interval`, `send_resolved`.
    pub rules: AlertRules,
    /// State changes within `flap_window` that make a tunnel flapping.
    pub flap_changes: u32,
    /// The window for `flap_changes`.
    pub flap_window: Duration,
    /// How long the EC2 API may fail before `ControlPlaneUnavailable`.
    pub control_plane_unavailable_after: Duration,
    /// Where the runbook lives; pages name `<runbook_url>#<alert>`.
    pub runbook_url: String,
    /// Maintenance windows.
    pub silences: Vec<Silence>,
    /// Where notifications go.
    pub sinks: Vec<SinkConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules: AlertRules::default(),
            flap_changes: 4,
            flap_window: Duration::from_secs(120),
            control_plane_unavailable_after: Duration::from_secs(600),
            runbook_url: DEFAULT_RUNBOOK.into(),
            silences: Vec::new(),
            sinks: vec![SinkConfig {
                kind: SinkKind::Log,
                min_severity: Severity::Warning,
            }],
        }
    }
}

/// The runbook shipped with tunnelkeeper.
pub const DEFAULT_RUNBOOK: &str = "docs/runbook.md";
/// Where the state lives unless `state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tunnelkeeper";

/// One notification sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// Where to.
    pub kind: SinkKind,
    /// The least severity it gets.
    pub min_severity: Severity,
}

/// The kinds of sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkKind {
    /// The daemon's log (WARN for firing, INFO for resolved).
    Log,
    /// An SNS standard topic (the NOC's pager).
    Sns {
        /// The topic.
        topic_arn: String,
    },
    /// A Prometheus Alertmanager (`/api/v2/alerts`).
    Alertmanager {
        /// Its base URL.
        url: String,
    },
}

impl SinkKind {
    /// Returns what the sink is, kind and destination: `sns:<arn>`, `log`,
    /// `alertmanager:<url>`. Undelivered notifications follow their sink by it.
    pub fn identity(&self) -> String {
        match self {
            SinkKind::Log => "log".into(),
            SinkKind::Sns { topic_arn } => format!("sns:{topic_arn}"),
            SinkKind::Alertmanager { url } => format!("alertmanager:{url}"),
        }
    }

    /// Returns `log`, `sns` or `alertmanager`.
    pub fn label(&self) -> &'static str {
        match self {
            SinkKind::Log => "log",
            SinkKind::Sns { .. } => "sns",
            SinkKind::Alertmanager { .. } => "alertmanager",
        }
    }
}

/// What the daemon asks of AWS: EC2 tunnel status and CloudWatch figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsConfig {
    /// The region; `None` leaves it to the SDK's chain (AWS_REGION, profile, IMDS).
    pub region: Option<String>,
    /// Time between two `DescribeVpnConnections` calls (jittered, never shorter).
    pub poll_interval: Duration,
    /// One endpoint for every AWS service the daemon calls (tests, private endpoints).
    pub endpoint_url: Option<String>,
    /// Where figures and the heartbeat go in CloudWatch; `None` publishes nothing.
    pub cloudwatch_namespace: Option<String>,
    /// Time between two `PutMetricData` calls.
    pub cloudwatch_interval: Duration,
}

/// The shortest EC2 poll interval: the account's EC2 API bucket is shared with everyone.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);

impl AwsConfig {
    /// Returns how long a last good EC2 answer stays usable: three poll intervals.
    pub fn stale_after(&self) -> Duration {
        self.poll_interval * 3
    }
}

/// Which ICMP socket the pingers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketKind {
    /// Unprivileged DGRAM if `ping_group_range` allows it, else RAW.
    #[default]
    Auto,
    /// Unprivileged DGRAM only.
    Dgram,
    /// RAW only (needs `CAP_NET_RAW`).
    Raw,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {origin}: {source}")]
    Read {
        /// The file path.
        origin: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the schema (toml's message has the position).
    #[error("{origin}: {message}")]
    Parse {
        /// The file path or `<embedded default>`.
        origin: String,
        /// The parser's message, with line, column and the offending line.
        message: String,
    },
    /// The TOML parsed but breaks one or more rules.
    #[error("{origin}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file path or `<embedded default>`.
        origin: String,
        /// Every rule broken, in file order.
        problems: Vec<Problem>,
    },
}

/// One broken rule, with the key path and, where known, the position in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Line and column (1-based) of the offending value.
    pub position: Option<(usize, usize)>,
    /// The key path, such as `vpn[1].tunnel[0].targets`.
    pub key: String,
    /// What is wrong, with the value and the rule.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.position {
            write!(f, "line {line}, column {col}: ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Config::parse(&text, &origin)
    }

    /// Returns the embedded default config.
    pub fn embedded_default() -> Config {
        let mut config = Config::parse(EMBEDDED_DEFAULT, "<embedded default>")
            .expect("the embedded default config is valid (a unit test checks it)");
        // A per-user directory: the default must run without root and without setup.
        config.state_dir = std::env::temp_dir().join(format!("tunnelkeeper-{}", current_uid()));
        config
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut v = Validator {
            text,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let config = v.validate(raw);
        if v.problems.is_empty() {
            Ok(Config {
                warnings: v.warnings,
                ..config
            })
        } else {
            v.problems.sort_by_key(|p| p.position);
            Err(ConfigError::Invalid {
                origin: origin.to_string(),
                problems: v.problems,
            })
        }
    }

    /// Returns a one-line summary, as `check-config` prints it.
    pub fn summary(&self) -> String {
        let tunnels: usize = self.connections.iter().map(|c| c.tunnels.len()).sum();
        let shared = self
            .targets
            .iter()
            .filter(|t| t.scope == TargetScope::Shared)
            .count();
        format!(
            "{} connection(s), {} tunnel(s), {} pinned and {} shared target(s), HTTP on {}",
            self.connections.len(),
            tunnels,
            self.targets.len() - shared,
            shared,
            self.listen
        )
    }

    /// Returns the tunnel spec for an id.
    pub fn tunnel(&self, id: TunnelId) -> &TunnelSpec {
        &self.connections[id.connection].tunnels[id.tunnel]
    }
}

// ---------------------------------------------------------------------------------------
// Raw structs: exactly what the TOML may hold.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    probe: RawProbe,
    #[serde(default)]
    vpn: Vec<RawVpn>,
    #[serde(default)]
    target: Vec<Spanned<RawTarget>>,
    aws: Option<Spanned<RawAws>>,
    state_dir: Option<Spanned<String>>,
    alerts: Option<RawAlerts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(rename = "for")]
    for_: Option<Spanned<HumanDuration>>,
    keep_firing_for: Option<Spanned<HumanDuration>>,
    group_wait: Option<Spanned<HumanDuration>>,
    repeat_interval: Option<Spanned<HumanDuration>>,
    send_resolved: Option<bool>,
    flap_changes: Option<Spanned<u32>>,
    flap_window: Option<Spanned<HumanDuration>>,
    control_plane_unavailable_after: Option<Spanned<HumanDuration>>,
    runbook_url: Option<String>,
    #[serde(default)]
    silence: Vec<Spanned<RawSilence>>,
    sink: Option<Vec<Spanned<RawSink>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSilence {
    alert: Option<Spanned<String>>,
    vpn: Option<Spanned<String>>,
    tunnel: Option<Spanned<String>>,
    starts: Option<Spanned<String>>,
    ends: Spanned<String>,
    #[serde(default)]
    comment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    kind: Spanned<String>,
    topic_arn: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    min_severity: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    region: Option<Spanned<String>>,
    poll_interval: Option<Spanned<HumanDuration>>,
    endpoint_url: Option<Spanned<String>>,
    cloudwatch_namespace: Option<Spanned<String>>,
    cloudwatch_interval: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<SocketAddr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
    payload_bytes: Option<Spanned<u32>>,
    socket: Option<SocketKind>,
    down_after: Option<Spanned<u32>>,
    up_after: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVpn {
    id: Option<Spanned<String>>,
    name: Spanned<String>,
    #[serde(default)]
    tunnel: Vec<RawTunnel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    name: Spanned<String>,
    outside_ip: Option<Spanned<V4>>,
    #[serde(default)]
    targets: Vec<Spanned<RawPinned>>,
}

/// A target table: `[[target]]` entries, and pinned targets written as inline tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Option<Spanned<String>>,
    address: Spanned<V4>,
    interval: Option<Spanned<HumanDuration>>,
    timeout: Option<Spanned<HumanDuration>>,
    payload_bytes: Option<Spanned<u32>>,
    down_after: Option<Spanned<u32>>,
    up_after: Option<Spanned<u32>>,
}

/// A pinned target: a bare address string or an inline table with overrides.
struct RawPinned(RawTarget);

impl<'de> Deserialize<'de> for RawPinned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PinnedVisitor;
        impl<'de> Visitor<'de> for PinnedVisitor {
            type Value = RawPinned;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IPv4 address string or a table with `address`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawPinned, E> {
                let address = parse_v4(s).map_err(E::custom)?;
                Ok(RawPinned(RawTarget {
                    name: None,
                    address: Spanned::new(0..0, address),
                    interval: None,
                    timeout: None,
                    payload_bytes: None,
                    down_after: None,
                    up_after: None,
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
struct V4(Ipv4Addr);

fn parse_v4(s: &str) -> Result<V4, String> {
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
struct HumanDuration(Duration);

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

// ---------------------------------------------------------------------------------------
// Validation.

struct Validator<'a> {
    text: &'a str,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

/// Probe fields as written, before defaults apply.
struct ProbeFields<'r> {
    interval: Option<&'r Spanned<HumanDuration>>,
    timeout: Option<&'r Spanned<HumanDuration>>,
    payload_bytes: Option<&'r Spanned<u32>>,
    down_after: Option<&'r Spanned<u32>>,
    up_after: Option<&'r Spanned<u32>>,
}

impl<'a> Validator<'a> {
    fn position(&self, span: std::ops::Range<usize>) -> Option<(usize, usize)> {
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Some((line, col))
    }

    fn problem(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: String) {
        let position = span.and_then(|s| self.position(s));
        self.problems.push(Problem {
            position,
            key: key.to_string(),
            message,
        });
    }

    fn name(&mut self, key: &str, name: &Spanned<String>) -> String {
        let value = name.get_ref();
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            self.problem(
                Some(name.span()),
                key,
                format!(
                    "{value:?} is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.'"
                ),
            );
        }
        value.clone()
    }

    fn validate(&mut self, raw: RawConfig) -> Config {
        let defaults = self.probe_settings(
            "probe",
            ProbeSettings::default(),
            ProbeFields {
                interval: raw.probe.interval.as_ref(),
                timeout: raw.probe.timeout.as_ref(),
                payload_bytes: raw.probe.payload_bytes.as_ref(),
                down_after: raw.probe.down_after.as_ref(),
                up_after: raw.probe.up_after.as_ref(),
            },
        );

        let mut targets: Vec<TargetSpec> = Vec::new();
        let mut connections = Vec::new();
        // Each map remembers the key path that first used a value, for duplicate messages.
        let mut connection_names: HashMap<String, String> = HashMap::new();
        let mut connection_ids: HashMap<String, String> = HashMap::new();
        let mut tunnel_names: HashMap<String, String> = HashMap::new();
        let mut outside_ips: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut addresses: HashMap<Ipv4Addr, String> = HashMap::new();
        let mut target_names: HashMap<String, String> = HashMap::new();

        for (ci, vpn) in raw.vpn.iter().enumerate() {
            let vkey = format!("vpn[{ci}]");
            let name = self.name(&format!("{vkey}.name"), &vpn.name);
            self.unique(
                &mut connection_names,
                name.clone(),
                &vpn.name.span(),
                &format!("{vkey}.name"),
                "connection name",
            );
            let id = vpn.id.as_ref().map(|id| {
                let key = format!("{vkey}.id");
                if !is_vpn_connection_id(id.get_ref()) {
                    self.problem(
                        Some(id.span()),
                        &key,
                        format!("{:?} is not a VPN connection id: expected \"vpn-\" and 8 or 17 hex digits", id.get_ref()),
                    );
                }
                self.unique(&mut connection_ids, id.get_ref().clone(), &id.span(), &key, "connection id");
                VpnConnectionId::new(id.get_ref().clone())
            });
            match vpn.tunnel.len() {
                0 => self.problem(
                    Some(vpn.name.span()),
                    &format!("{vkey}.tunnel"),
                    "a connection needs its tunnels: add one or two [[vpn.tunnel]] tables".into(),
                ),
                1 => self.warnings.push(format!(
                    "{vkey} ({name}) lists one tunnel; an AWS Site-to-Site VPN connection has two, and the other goes unwatched"
                )),
                2 => {}
                n => self.problem(
                    Some(vpn.name.span()),
                    &format!("{vkey}.tunnel"),
                    format!("{n} tunnels listed; an AWS Site-to-Site VPN connection has exactly two"),
                ),
            }
            let mut tunnels = Vec::new();
            for (ti, tunnel) in vpn.tunnel.iter().enumerate() {
                let tkey = format!("{vkey}.tunnel[{ti}]");
                let tname = self.name(&format!("{tkey}.name"), &tunnel.name);
                self.unique(
                    &mut tunnel_names,
                    tname.clone(),
                    &tunnel.name.span(),
                    &format!("{tkey}.name"),
                    "tunnel name",
                );
                let outside_ip = tunnel.outside_ip.as_ref().map(|ip| {
                    let V4(addr) = *ip.get_ref();
                    self.unique(
                        &mut outside_ips,
                        addr,
                        &ip.span(),
                        &format!("{tkey}.outside_ip"),
                        "outside IP",
                    );
                    OutsideIp(addr)
                });
                if tunnel.targets.is_empty() {
                    self.warnings.push(format!(
                        "{tkey} ({tname}) has no pinned targets: its data plane stays unknown"
                    ));
                }
                let tunnel_id = TunnelId {
                    connection: ci,
                    tunnel: ti,
                };
                let mut ids = Vec::new();
                for (xi, pinned) in tunnel.targets.iter().enumerate() {
                    let key = format!("{tkey}.targets[{xi}]");
                    let spec = self.target(
                        &key,
                        &pinned.get_ref().0,
                        pinned.span(),
                        TargetScope::Pinned(tunnel_id),
                        &defaults,
                        targets.len(),
                        (&mut addresses, &mut target_names),
                    );
                    ids.push(spec.id);
                    targets.push(spec);
                }
                tunnels.push(TunnelSpec {
                    name: TunnelName::new(tname),
                    outside_ip,
                    targets: ids,
                });
            }
            connections.push(ConnectionSpec {
                id,
                name: ConnectionName::new(name),
                tunnels,
            });
        }
        for (i, shared) in raw.target.iter().enumerate() {
            let key = format!("target[{i}]");
            let spec = self.target(
                &key,
                shared.get_ref(),
                shared.span(),
                TargetScope::Shared,
                &defaults,
                targets.len(),
                (&mut addresses, &mut target_names),
            );
            targets.push(spec);
        }
        if targets.is_empty() && self.problems.is_empty() {
            self.problem(
                None,
                "vpn",
                "nothing to watch: add a [[vpn]] with [[vpn.tunnel]] targets, or a [[target]]"
                    .into(),
            );
        }

        let aws = raw.aws.as_ref().map(|a| self.aws(a, &connections));
        if aws.is_none() && connections.iter().any(|c| c.id.is_some()) {
            self.warnings.push(
                "connections have an `id` but there is no [aws] table: EC2 is not asked about them"
                    .into(),
            );
        }
        let alerts = match &raw.alerts {
            Some(a) => self.alerts(a, &connections, aws.is_some()),
            None => AlertsConfig::default(),
        };
        let state_dir = match &raw.state_dir {
            Some(d) if d.get_ref().is_empty() => {
                self.problem(
                    Some(d.span()),
                    "state_dir",
                    "an empty path: give a directory such as \"/var/lib/tunnelkeeper\"".into(),
                );
                PathBuf::from(DEFAULT_STATE_DIR)
            }
            Some(d) => PathBuf::from(d.get_ref()),
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };

        Config {
            aws,
            alerts,
            state_dir,
            listen: raw
                .http
                .listen
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9478))),
            socket: raw.probe.socket.unwrap_or_default(),
            connections,
            targets,
            warnings: Vec::new(),
        }
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<HumanDuration>>,
        default: Duration,
        min: Duration,
        max: Duration,
    ) -> Duration {
        let Some(v) = value else { return default };
        let d = v.get_ref().0;
        if d < min || d > max {
            self.problem(
                Some(v.span()),
                key,
                format!(
                    "{} is out of range: it must be between {} and {}",
                    humantime::format_duration(d),
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            );
        }
        d
    }

    fn alerts(
        &mut self,
        raw: &RawAlerts,
        connections: &[ConnectionSpec],
        has_aws: bool,
    ) -> AlertsConfig {
        let defaults = AlertsConfig::default();
        let day = Duration::from_secs(86_400);
        let rules = AlertRules {
            for_: self.duration(
                "alerts.for",
                raw.for_.as_ref(),
                defaults.rules.for_,
                Duration::ZERO,
                day,
            ),
            keep_firing_for: self.duration(
                "alerts.keep_firing_for",
                raw.keep_firing_for.as_ref(),
                defaults.rules.keep_firing_for,
                Duration::ZERO,
                day,
            ),
            group_wait: self.duration(
                "alerts.group_wait",
                raw.group_wait.as_ref(),
                defaults.rules.group_wait,
                Duration::ZERO,
                Duration::from_secs(300),
            ),
            repeat_interval: self.duration(
                "alerts.repeat_interval",
                raw.repeat_interval.as_ref(),
                defaults.rules.repeat_interval,
                Duration::from_secs(60),
                day * 7,
            ),
            send_resolved: raw.send_resolved.unwrap_or(defaults.rules.send_resolved),
        };
        let flap_changes = raw
            .flap_changes
            .as_ref()
            .map_or(defaults.flap_changes, |v| {
                let n = *v.get_ref();
                if !(2..=1000).contains(&n) {
                    self.problem(
                        Some(v.span()),
                        "alerts.flap_changes",
                        format!("{n} is out of range: it must be between 2 and 1000"),
                    );
                }
                n
            });
        let flap_window = self.duration(
            "alerts.flap_window",
            raw.flap_window.as_ref(),
            defaults.flap_window,
            Duration::from_secs(1),
            day,
        );
        let control_plane_unavailable_after = self.duration(
            "alerts.control_plane_unavailable_after",
            raw.control_plane_unavailable_after.as_ref(),
            defaults.control_plane_unavailable_after,
            Duration::from_secs(1),
            day,
        );
        let mut silences = Vec::new();
        for (i, s) in raw.silence.iter().enumerate() {
            let key = format!("alerts.silence[{i}]");
            let raw_s = s.get_ref();
            let class = raw_s.alert.as_ref().and_then(|a| {
                let c = AlertClass::parse(a.get_ref());
                if c.is_none() {
                    let names: Vec<&str> = AlertClass::ALL.iter().map(|c| c.name()).collect();
                    self.problem(
                        Some(a.span()),
                        &format!("{key}.alert"),
                        format!(
                            "{:?} is not an alert; use one of {}",
                            a.get_ref(),
                            names.join(", ")
                        ),
                    );
                }
                c
            });
            if let Some(v) = &raw_s.vpn {
                if !connections.iter().any(|c| c.name.as_str() == v.get_ref()) {
                    self.problem(
                        Some(v.span()),
                        &format!("{key}.vpn"),
                        format!("{:?} is not the name of a [[vpn]]", v.get_ref()),
                    );
                }
            }
            if let Some(t) = &raw_s.tunnel {
                if !connections
                    .iter()
                    .flat_map(|c| &c.tunnels)
                    .any(|x| x.name.as_str() == t.get_ref())
                {
                    self.problem(
                        Some(t.span()),
                        &format!("{key}.tunnel"),
                        format!("{:?} is not the name of a [[vpn.tunnel]]", t.get_ref()),
                    );
                }
            }
            if let (Some(v), Some(t)) = (&raw_s.vpn, &raw_s.tunnel) {
                let in_vpn = connections
                    .iter()
                    .filter(|c| c.name.as_str() == v.get_ref())
                    .flat_map(|c| &c.tunnels)
                    .any(|x| x.name.as_str() == t.get_ref());
                if !in_vpn {
                    self.problem(
                        Some(t.span()),
                        &format!("{key}.tunnel"),
                        format!(
                            "{:?} is not a tunnel of vpn {:?}: the silence would never match",
                            t.get_ref(),
                            v.get_ref()
                        ),
                    );
                }
            }
            let mut time =
                |field: &str, v: &Spanned<String>| match humantime::parse_rfc3339_weak(v.get_ref())
                {
                    Ok(t) => Some(Timestamp::from_millis(
                        t.duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_millis() as u64)
                            .unwrap_or(0),
                    )),
                    Err(_) => {
                        self.problem(
                            Some(v.span()),
                            &format!("{key}.{field}"),
                            format!(
                                "{:?} is not a time: write it as \"2026-12-01T06:00:00Z\"",
                                v.get_ref()
                            ),
                        );
                        None
                    }
                };
            let starts = raw_s.starts.as_ref().and_then(|v| time("starts", v));
            let ends = time("ends", &raw_s.ends);
            if let (Some(st), Some(en)) = (starts, ends) {
                if en <= st {
                    self.problem(
                        Some(raw_s.ends.span()),
                        &format!("{key}.ends"),
                        format!("{en} is not after starts {st}"),
                    );
                }
            }
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            if ends.is_some_and(|e| e.as_millis() <= now_ms) {
                self.warnings.push(format!(
                    "{key} ended at {}: it silences nothing",
                    ends.unwrap_or(Timestamp::from_millis(0))
                ));
            }
            silences.push(Silence {
                class,
                vpn: raw_s.vpn.as_ref().map(|v| v.get_ref().clone()),
                tunnel: raw_s.tunnel.as_ref().map(|v| v.get_ref().clone()),
                starts,
                ends: ends.unwrap_or(Timestamp::from_millis(0)),
                comment: raw_s.comment.clone(),
            });
        }
        if raw.sink.as_ref().is_some_and(|s| s.is_empty()) {
            self.problem(
                None,
                "alerts.sink",
                "an empty list: alerts would go nowhere; remove the key to log them, or add a sink"
                    .into(),
            );
        }
        let sinks = match &raw.sink {
            None => defaults.sinks,
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| self.sink(i, s, has_aws))
                .collect(),
        };
        AlertsConfig {
            rules,
            flap_changes,
            flap_window,
            control_plane_unavailable_after,
            runbook_url: raw.runbook_url.clone().unwrap_or(defaults.runbook_url),
            silences,
            sinks,
        }
    }

    fn sink(&mut self, i: usize, raw: &Spanned<RawSink>, has_aws: bool) -> Option<SinkConfig> {
        let key = format!("alerts.sink[{i}]");
        let s = raw.get_ref();
        let min_severity = match s.min_severity.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None | Some((_, "warning")) => Severity::Warning,
            Some((_, "critical")) => Severity::Critical,
            Some((v, other)) => {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.min_severity"),
                    format!("{other:?} is not a severity: use \"warning\" or \"critical\""),
                );
                Severity::Warning
            }
        };
        let unexpected = |this: &mut Self, field: &str, v: &Option<Spanned<String>>, kind: &str| {
            if let Some(v) = v {
                this.problem(
                    Some(v.span()),
                    &format!("{key}.{field}"),
                    format!("not used by a {kind} sink"),
                );
            }
        };
        let kind = match s.kind.get_ref().as_str() {
            "log" => {
                unexpected(self, "topic_arn", &s.topic_arn, "log");
                unexpected(self, "url", &s.url, "log");
                SinkKind::Log
            }
            "sns" => {
                unexpected(self, "url", &s.url, "sns");
                let Some(arn) = &s.topic_arn else {
                    self.problem(
                        Some(s.kind.span()),
                        &format!("{key}.topic_arn"),
                        "missing: an sns sink needs the topic's ARN".into(),
                    );
                    return None;
                };
                let parts: Vec<&str> = arn.get_ref().split(':').collect();
                if parts.len() != 6
                    || parts[0] != "arn"
                    || parts[2] != "sns"
                    || parts[5].is_empty()
                    || parts[5].ends_with(".fifo")
                {
                    self.problem(
                        Some(arn.span()),
                        &format!("{key}.topic_arn"),
                        format!("{:?} is not the ARN of a standard SNS topic (arn:aws:sns:REGION:ACCOUNT:NAME; FIFO topics cannot page)", arn.get_ref()),
                    );
                }
                if !has_aws {
                    self.problem(
                        Some(s.kind.span()),
                        &format!("{key}.kind"),
                        "an sns sink needs an [aws] table (region and credentials come from it)"
                            .into(),
                    );
                }
                SinkKind::Sns {
                    topic_arn: arn.get_ref().clone(),
                }
            }
            "alertmanager" => {
                unexpected(self, "topic_arn", &s.topic_arn, "alertmanager");
                let Some(url) = &s.url else {
                    self.problem(
                        Some(s.kind.span()),
                        &format!("{key}.url"),
                        "missing: an alertmanager sink needs its base URL".into(),
                    );
                    return None;
                };
                let rest = url.get_ref().strip_prefix("http://");
                if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                    self.problem(
                        Some(url.span()),
                        &format!("{key}.url"),
                        format!("{:?} is not an http:// URL", url.get_ref()),
                    );
                }
                SinkKind::Alertmanager {
                    url: url.get_ref().trim_end_matches('/').to_string(),
                }
            }
            other => {
                self.problem(
                    Some(s.kind.span()),
                    &format!("{key}.kind"),
                    format!(
                        "{other:?} is not a sink kind: use \"sns\", \"log\" or \"alertmanager\""
                    ),
                );
                return None;
            }
        };
        Some(SinkConfig { kind, min_severity })
    }

    fn aws(&mut self, raw: &Spanned<RawAws>, connections: &[ConnectionSpec]) -> AwsConfig {
        let a = raw.get_ref();
        let region = a.region.as_ref().map(|r| {
            let value = r.get_ref();
            if value.is_empty()
                || !value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                self.problem(
                    Some(r.span()),
                    "aws.region",
                    format!("{value:?} is not an AWS region name such as \"us-east-1\""),
                );
            }
            value.clone()
        });
        let poll_interval = a.poll_interval.as_ref().map_or(Duration::from_secs(60), |p| {
            let d = p.get_ref().0;
            if d < MIN_POLL_INTERVAL || d > MAX_INTERVAL {
                self.problem(
                    Some(p.span()),
                    "aws.poll_interval",
                    format!(
                        "{} is out of range: it must be between {} and {} (EC2 API calls share one rate limit per account and Region)",
                        humantime::format_duration(d),
                        humantime::format_duration(MIN_POLL_INTERVAL),
                        humantime::format_duration(MAX_INTERVAL)
                    ),
                );
            }
            d
        });
        let endpoint_url = a.endpoint_url.as_ref().map(|u| {
            let value = u.get_ref();
            let rest = value
                .strip_prefix("http://")
                .or_else(|| value.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
                self.problem(
                    Some(u.span()),
                    "aws.endpoint_url",
                    format!("{value:?} is not an http:// or https:// URL"),
                );
            }
            value.clone()
        });
        let cloudwatch_namespace = a.cloudwatch_namespace.as_ref().map(|n| {
            let value = n.get_ref();
            if value.is_empty() || value.len() > 255 || value.starts_with("AWS/") {
                self.problem(
                    Some(n.span()),
                    "aws.cloudwatch_namespace",
                    format!("{value:?} is not usable: 1 to 255 characters, and \"AWS/\" is reserved for AWS"),
                );
            }
            value.clone()
        });
        let cloudwatch_interval =
            a.cloudwatch_interval
                .as_ref()
                .map_or(Duration::from_secs(60), |p| {
                    let d = p.get_ref().0;
                    if d < Duration::from_secs(1) || d > MAX_INTERVAL {
                        self.problem(
                            Some(p.span()),
                            "aws.cloudwatch_interval",
                            format!(
                                "{} is out of range: it must be between 1s and 1h",
                                humantime::format_duration(d)
                            ),
                        );
                    }
                    d
                });
        let polled: Vec<&ConnectionSpec> = connections.iter().filter(|c| c.id.is_some()).collect();
        if polled.is_empty() {
            self.warnings.push(
                "[aws] is set but no [[vpn]] has an `id`: there is nothing to ask EC2 about".into(),
            );
        }
        for (ci, c) in connections.iter().enumerate() {
            if c.id.is_none() {
                if !polled.is_empty() {
                    self.warnings.push(format!("vpn[{ci}] ({}) has no `id`: its tunnels are only pinged, never looked up in EC2", c.name));
                }
                continue;
            }
            for (ti, t) in c.tunnels.iter().enumerate() {
                if t.outside_ip.is_none() {
                    self.problem(
                        None,
                        &format!("vpn[{ci}].tunnel[{ti}].outside_ip"),
                        format!("missing: tunnel {} belongs to a connection with an `id`, and EC2 telemetry is joined to tunnels by outside IP", t.name),
                    );
                }
            }
        }
        AwsConfig {
            region,
            poll_interval,
            endpoint_url,
            cloudwatch_namespace,
            cloudwatch_interval,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn target(
        &mut self,
        key: &str,
        raw: &RawTarget,
        entry_span: std::ops::Range<usize>,
        scope: TargetScope,
        defaults: &ProbeSettings,
        index: usize,
        (addresses, names): (&mut HashMap<Ipv4Addr, String>, &mut HashMap<String, String>),
    ) -> TargetSpec {
        // A bare address string has no span of its own: use the list entry's.
        let address_span = if raw.address.span().is_empty() {
            entry_span.clone()
        } else {
            raw.address.span()
        };
        let V4(address) = *raw.address.get_ref();
        let address_is_new = self.unique(addresses, address, &address_span, key, "target address");
        let name = match &raw.name {
            Some(n) => self.name(&format!("{key}.name"), n),
            None => address.to_string(),
        };
        let name_span = raw.name.as_ref().map_or(address_span, |n| n.span());
        // A name taken from a duplicate address is the same mistake: report it once.
        if raw.name.is_some() || address_is_new {
            self.unique(names, name.clone(), &name_span, key, "target name");
        }
        let probe = self.probe_settings(
            key,
            *defaults,
            ProbeFields {
                interval: raw.interval.as_ref(),
                timeout: raw.timeout.as_ref(),
                payload_bytes: raw.payload_bytes.as_ref(),
                down_after: raw.down_after.as_ref(),
                up_after: raw.up_after.as_ref(),
            },
        );
        TargetSpec {
            id: TargetId(index),
            name: TargetName::new(name),
            address,
            scope,
            probe,
        }
    }

    fn probe_settings(
        &mut self,
        key: &str,
        base: ProbeSettings,
        f: ProbeFields<'_>,
    ) -> ProbeSettings {
        let mut s = base;
        if let Some(v) = f.interval {
            s.interval = v.get_ref().0;
            if s.interval < MIN_INTERVAL || s.interval > MAX_INTERVAL {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.interval"),
                    format!(
                        "{} is out of range: the interval must be between {} and {}",
                        humantime::format_duration(s.interval),
                        humantime::format_duration(MIN_INTERVAL),
                        humantime::format_duration(MAX_INTERVAL)
                    ),
                );
            }
        }
        if let Some(v) = f.timeout {
            s.timeout = v.get_ref().0;
            if s.timeout.is_zero() {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.timeout"),
                    "0s: the timeout must be longer than zero".into(),
                );
            }
        }
        if (f.timeout.is_some() || f.interval.is_some()) && s.timeout > s.interval {
            let span = f.timeout.or(f.interval).map(|v| v.span());
            self.problem(
                span,
                &format!("{key}.timeout"),
                format!(
                    "{} is longer than the interval {}: a probe must end before the next one starts",
                    humantime::format_duration(s.timeout),
                    humantime::format_duration(s.interval)
                ),
            );
        }
        if let Some(v) = f.payload_bytes {
            s.payload_bytes = *v.get_ref();
            if s.payload_bytes > MAX_PAYLOAD_BYTES {
                self.problem(
                    Some(v.span()),
                    &format!("{key}.payload_bytes"),
                    format!(
                        "{} exceeds {MAX_PAYLOAD_BYTES}, the most that fits the tunnel MTU of 1446 bytes without fragmenting",
                        s.payload_bytes
                    ),
                );
            }
        }
        for (field, value, slot) in [
            ("down_after", f.down_after, &mut s.down_after),
            ("up_after", f.up_after, &mut s.up_after),
        ] {
            if let Some(v) = value {
                *slot = *v.get_ref();
                if *slot == 0 || *slot > MAX_STREAK {
                    self.problems.push(Problem {
                        position: self.position(v.span()),
                        key: format!("{key}.{field}"),
                        message: format!(
                            "{} is out of range: it must be between 1 and {MAX_STREAK}",
                            *slot
                        ),
                    });
                }
            }
        }
        s
    }

    fn unique<K: std::hash::Hash + Eq + fmt::Display + Clone>(
        &mut self,
        seen: &mut HashMap<K, String>,
        value: K,
        span: &std::ops::Range<usize>,
        key: &str,
        what: &str,
    ) -> bool {
        if let Some(first) = seen.get(&value) {
            let message = format!("{what} {value} is already used by {first}");
            self.problem(Some(span.clone()), key, message);
            false
        } else {
            seen.insert(value, key.to_string());
            true
        }
    }
}

/// Pairs each target of `new` with the same target in `old`: same address, same tunnel
/// (by connection and tunnel name) or both shared. Returns (new index, old index).
pub fn target_mapping(old: &Config, new: &Config) -> Vec<(usize, usize)> {
    let key = |config: &Config, i: usize| {
        let t = &config.targets[i];
        let place = match t.scope {
            TargetScope::Pinned(id) => Some((
                config.connections[id.connection].name.to_string(),
                config.tunnel(id).name.to_string(),
            )),
            TargetScope::Shared => None,
        };
        (t.address, place)
    };
    let old_keys: std::collections::HashMap<_, usize> =
        (0..old.targets.len()).map(|i| (key(old, i), i)).collect();
    (0..new.targets.len())
        .filter_map(|i| old_keys.get(&key(new, i)).map(|&o| (i, o)))
        .collect()
}

fn current_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn is_vpn_connection_id(id: &str) -> bool {
    id.strip_prefix("vpn-").is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

/// Serializes durations the way they are written in the config.
mod humantime_serde {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}
