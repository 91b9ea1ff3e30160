//! The TOML configuration: typed raw structs, validation with key paths and positions, and
//! the embedded default that runs with no file at all.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub mod brownout;
pub mod diff;
mod diff_keys;
pub mod maintenance;
mod mapping;
mod raw;
pub mod tcp;
mod type_errors;
mod validate;

pub(crate) use mapping::tunnel_identity;
pub use mapping::ReloadMapping;

use raw::*;
use validate::Validator;

use crate::types::{
    AlertClass, ConnectionName, OutsideIp, Severity, TargetId, TargetName, Timestamp, TunnelId,
    TunnelName, VpnConnectionId,
};

/// The commented config that runs when no file is given (also what `print-config` prints).
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../../config/default.toml");

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
    /// Whether `POST /-/reload` works (off by default, as in Prometheus and Alertmanager:
    /// the TCP peer says nothing about who asks). SIGHUP always reloads.
    pub enable_lifecycle: bool,
    /// TLS for the HTTP endpoint (then plain HTTP is not served); read at start and on
    /// every reload.
    pub tls: Option<TlsFiles>,
    /// Basic-auth users and their bcrypt hashes; when any is set every route asks.
    pub basic_auth_users: std::collections::BTreeMap<String, String>,
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
    /// True when the config did not say (`state_dir` is then the default, and a user who
    /// cannot write it gets a directory of their own: see [`user_state_dirs`]).
    pub state_dir_is_default: bool,
    /// Alert rules, silences and sinks.
    pub alerts: AlertsConfig,
    /// Path-MTU probing through the tunnels.
    pub mtu: MtuConfig,
    /// `[maintenance]`: applying AWS's pending tunnel maintenance at a safe moment.
    pub maintenance: maintenance::MaintenanceConfig,
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

impl crate::types::ConnectionId {
    /// Returns the identity of a configured connection.
    pub fn of(c: &ConnectionSpec) -> Self {
        match &c.id {
            Some(id) => Self::Aws(id.clone()),
            None => Self::Named(c.name.clone()),
        }
    }
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
    /// The IP packet size in bytes that should cross it with DF set (`mtu`, or
    /// `[mtu] expected`).
    pub expected_mtu: u32,
}

/// The smallest path MTU searched: every IPv4 host must accept 576-byte packets.
pub const MTU_MIN_BYTES: u32 = 576;
/// The largest path MTU searched: EC2 caps VPN traffic at 1500 bytes.
pub const MTU_MAX_BYTES: u32 = 1500;

/// The `[mtu]` table: DF probes through each tunnel to find its path MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MtuConfig {
    /// Whether tunnels with pinned targets are probed (default: when any has one).
    pub enabled: bool,
    /// Between two measurements of a tunnel.
    pub interval: Duration,
    /// The IP packet size in bytes that should cross every tunnel (AWS's best case).
    pub expected: u32,
}

impl MtuConfig {
    /// The default interval.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
    /// The shortest interval allowed.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
    /// The default expected size: AWS's largest inner MTU (AES-GCM, no NAT-T).
    pub const DEFAULT_EXPECTED: u32 = 1446;
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
    /// Probed by a TCP connect to this port instead of ICMP (see [`tcp`]).
    pub tcp_port: Option<u16>,
}

/// The files of `[http.tls_server_config]`, by exporter-toolkit's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
}

/// How one target is probed and judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
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
    /// Whether a request waits only as long as the target's recent RTTs call for
    /// (never longer than `timeout`) rather than the whole `timeout`.
    pub adaptive_timeout: bool,
    /// The shortest adaptive timeout.
    #[serde(with = "humantime_serde")]
    pub timeout_floor: Duration,
    /// The adaptive timeout is this many times the target's high RTT percentile.
    pub timeout_rtt_multiplier: u32,
    /// Whether a lost probe is confirmed at once by a burst of up to `down_after - 1`
    /// more, instead of by the next intervals' probes.
    pub fast_confirm: bool,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            payload_bytes: 56,
            down_after: 5,
            up_after: 2,
            adaptive_timeout: true,
            timeout_floor: Duration::from_millis(100),
            timeout_rtt_multiplier: 4,
            fast_confirm: true,
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
    /// How long after AWS applied maintenance to a tunnel (an endpoint replacement) its
    /// outage pages as `TunnelDownAfterMaintenance` rather than `TunnelDown`.
    pub maintenance_grace: Duration,
    /// How long the shared datacenter targets may be lost while another tunnel's pinned
    /// targets answer before `SharedTargetsDown`: AWS moves the route to another tunnel
    /// within its BGP hold time, and until then the loss is a failover in progress.
    pub failover_grace: Duration,
    /// The severity of `TunnelDownAfterMaintenance`.
    pub maintenance_severity: Severity,
    /// Severities the config sets for whole classes (`[alerts.severity]`), over the
    /// class's own and over the situation's.
    pub severity_overrides: BTreeMap<AlertClass, Severity>,
    /// Where the runbook lives; pages name `<runbook_url>#<alert>`.
    pub runbook_url: String,
    /// `[alerts.lossy]`: when `TunnelLossy` fires.
    pub lossy: brownout::LossySettings,
    /// `[alerts.slow]`: when `TunnelSlow` fires.
    pub slow: brownout::SlowSettings,
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
            maintenance_grace: Duration::from_secs(30 * 60),
            failover_grace: Duration::from_secs(60),
            maintenance_severity: Severity::Info,
            severity_overrides: BTreeMap::new(),
            runbook_url: DEFAULT_RUNBOOK.into(),
            lossy: brownout::LossySettings::default(),
            slow: brownout::SlowSettings::default(),
            silences: Vec::new(),
            sinks: vec![SinkConfig {
                name: "log".into(),
                kind: SinkKind::Log,
                min_severity: Severity::Warning,
            }],
        }
    }
}

impl AlertsConfig {
    /// Returns the severity an alert of `class` pages at: the config's for the class if
    /// it sets one, else the one its situation calls for (`situation`, from the alert's
    /// details), else the class's own; `maintenance_severity` is the own of
    /// `TunnelDownAfterMaintenance`.
    pub fn severity(&self, class: AlertClass, situation: Option<Severity>) -> Severity {
        if let Some(s) = self.severity_overrides.get(&class) {
            return *s;
        }
        if let Some(s) = situation {
            return s;
        }
        match class {
            AlertClass::TunnelDownAfterMaintenance => self.maintenance_severity,
            _ => class.severity(),
        }
    }
}

/// The runbook shipped with tunnelkeeper.
pub const DEFAULT_RUNBOOK: &str = "docs/runbook.md";
/// Where a user who cannot write [`DEFAULT_STATE_DIR`] keeps the state when the config
/// does not say, in order: `$XDG_STATE_HOME/tunnelkeeper`, `~/.local/state/tunnelkeeper`,
/// a directory of their own under the temp dir.
pub fn user_state_dirs() -> Vec<PathBuf> {
    let from_env = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut dirs: Vec<PathBuf> = [
        from_env("XDG_STATE_HOME"),
        from_env("HOME").map(|h| h.join(".local/state")),
    ]
    .into_iter()
    .flatten()
    .map(|d| d.join("tunnelkeeper"))
    .collect();
    dirs.push(std::env::temp_dir().join(format!("tunnelkeeper-{}", current_uid())));
    dirs
}

/// Where the state lives unless `state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tunnelkeeper";

/// One notification sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// What metrics and logs call it (`name`, or one made from kind and destination), so
    /// that reordering the sinks keeps their series.
    pub name: String,
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

    /// Returns the name a sink gets when the config gives none: `log`, `sns:<topic name>`,
    /// `alertmanager:<host:port>`.
    pub fn default_name(&self) -> String {
        match self {
            SinkKind::Log => "log".into(),
            SinkKind::Sns { topic_arn } => {
                format!("sns:{}", topic_arn.rsplit(':').next().unwrap_or(topic_arn))
            }
            SinkKind::Alertmanager { url } => match split_url(url) {
                Ok((_, authority, _)) => format!("alertmanager:{authority}"),
                Err(_) => format!("alertmanager:{url}"),
            },
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
    /// Time between two rounds of `GetVpnTunnelReplacementStatus` (one call per tunnel,
    /// spread over the round).
    pub maintenance_interval: Duration,
    /// `[aws.tunnel_logs]`: where and how often AWS's tunnel logs are read.
    pub tunnel_logs: TunnelLogsConfig,
}

/// `[aws.tunnel_logs]`: AWS's tunnel activity logs (CloudWatch Logs) read for the cause of
/// an outage, only while a tunnel is not up or for `linger` after it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelLogsConfig {
    /// `Some(false)` never reads them; `None` (the default) reads them for every tunnel
    /// whose log group is known (here or from EC2's tunnel options).
    pub enabled: Option<bool>,
    /// The log group to read for every tunnel; wins over the one EC2 names.
    pub log_group: Option<String>,
    /// How long a page waits for a logs call already under way for its tunnel.
    pub wait: Duration,
    /// Between two calls for one tunnel while it is read.
    pub interval: Duration,
    /// How long after a tunnel changed its logs are still read.
    pub linger: Duration,
}

impl Default for TunnelLogsConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            log_group: None,
            wait: Self::DEFAULT_WAIT,
            interval: Self::DEFAULT_INTERVAL,
            linger: Self::DEFAULT_LINGER,
        }
    }
}

impl TunnelLogsConfig {
    /// The default page wait.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
    /// The default interval between two calls for a tunnel.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    /// The default time a changed tunnel's logs are still read.
    pub const DEFAULT_LINGER: Duration = Duration::from_secs(300);

    /// Returns the log group to read for a tunnel, given the one EC2 names, when logs are
    /// read at all.
    pub fn group_for(&self, from_ec2: Option<&str>) -> Option<String> {
        if self.enabled == Some(false) {
            return None;
        }
        self.log_group
            .clone()
            .or_else(|| from_ec2.map(str::to_string))
    }
}

/// The shortest EC2 poll interval: the account's EC2 API bucket is shared with everyone.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// The shortest round of maintenance checks: AWS announces maintenance days ahead.
pub const MIN_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

impl AwsConfig {
    /// Returns how long a last good EC2 answer stays usable: three poll intervals, that is
    /// two answers due and missed.
    pub fn stale_after(&self) -> Duration {
        self.poll_interval * 3
    }

    /// Returns how long one AWS call may take, at most.
    pub fn call_timeout(&self) -> Duration {
        self.poll_interval.min(Duration::from_secs(10))
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
        Self::parse_at(text, origin, std::time::SystemTime::now())
    }

    /// Parses and validates config text as of `now` (which decides, e.g., whether a
    /// silence has already ended); `origin` names it in errors.
    pub fn parse_at(
        text: &str,
        origin: &str,
        now: std::time::SystemTime,
    ) -> Result<Config, ConfigError> {
        // Syntax first: past a syntax error nothing else can be read.
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(ConfigError::Parse {
                origin: origin.to_string(),
                message: e.to_string().trim_end().to_string(),
            });
        }
        let typed = type_errors::read_all(text);
        let invalid = |problems: Vec<Problem>| ConfigError::Invalid {
            origin: origin.to_string(),
            problems,
        };
        let Some(raw) = typed.raw else {
            return Err(invalid(typed.problems));
        };
        let mut v = Validator {
            text: &typed.text,
            now,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let config = v.validate(raw);
        // A value blanked for its type is absent to the validator: its "missing" is the
        // same mistake, told once.
        let mut problems = typed.problems;
        let blanked: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
        problems.extend(
            v.problems
                .into_iter()
                .map(|p| type_errors::reindex(p, &blanked))
                .filter(|p| !typed.meant.contains(&p.key))
                .filter(|p| {
                    !blanked.iter().any(|b| {
                        p.key == *b
                            || p.key.starts_with(&format!("{b}."))
                            || p.key.starts_with(&format!("{b}["))
                            || b.starts_with(&format!("{}[", p.key))
                    })
                }),
        );
        if problems.is_empty() {
            Ok(Config {
                warnings: v.warnings,
                ..config
            })
        } else {
            problems.sort_by_key(|p| p.position);
            Err(invalid(problems))
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

    /// Returns whether EC2 is asked about any connection: `[aws]` is set and some
    /// connection has an AWS id.
    pub fn polls_ec2(&self) -> bool {
        self.aws.is_some() && self.connections.iter().any(|c| c.id.is_some())
    }

    /// Returns the id of every tunnel, connection by connection.
    pub fn tunnel_ids(&self) -> impl Iterator<Item = TunnelId> + '_ {
        self.connections
            .iter()
            .enumerate()
            .flat_map(|(connection, c)| {
                (0..c.tunnels.len()).map(move |tunnel| TunnelId { connection, tunnel })
            })
    }
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

/// Serializes durations the way they are written in the config.
mod humantime_serde {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

/// A configured silence: matching alerts are not notified while it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    /// Only this class, if set.
    pub class: Option<AlertClass>,
    /// Only this connection, if set.
    pub vpn: Option<String>,
    /// Only this tunnel, if set.
    pub tunnel: Option<String>,
    /// From when (always, if unset).
    pub starts: Option<Timestamp>,
    /// Until when.
    pub ends: Timestamp,
    /// Why (shown on /status).
    pub comment: String,
}

/// The engine's timing rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRules {
    /// How long a condition must hold before the alert fires.
    pub for_: Duration,
    /// How long a firing alert keeps firing after its condition clears.
    pub keep_firing_for: Duration,
    /// How long a newly firing alert waits before its first notification, so that a bigger
    /// outage detected a moment later can still inhibit it.
    pub group_wait: Duration,
    /// How often a still-firing alert is notified again.
    pub repeat_interval: Duration,
    /// Whether clearing sends a resolved notification.
    pub send_resolved: bool,
    /// How long an alert that a bigger outage kept quiet waits before its first page once
    /// that outage clears: long enough for a target to be judged up again (`up_after`
    /// intervals and a timeout), so that a tunnel coming back a moment after its neighbour
    /// never pages in the instant the connection recovers. Derived from the probe
    /// settings, not configured.
    pub release_wait: Duration,
    /// How long a warning of an escalating class (`policy::ESCALATING`) fires before it
    /// is re-sent as critical; zero never escalates.
    pub escalate_after: Duration,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self {
            for_: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            group_wait: Duration::ZERO,
            repeat_interval: Duration::from_secs(4 * 3600),
            send_resolved: true,
            release_wait: Duration::ZERO,
            escalate_after: Duration::from_secs(15 * 60),
        }
    }
}

/// Splits `http://host:port/prefix` (or `https://`) into TLS or not, the authority and the
/// path prefix.
pub fn split_url(base: &str) -> Result<(bool, &str, &str), String> {
    let (tls, rest) = match (base.strip_prefix("http://"), base.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return Err(format!("{base}: not an http:// or https:// URL")),
    };
    let rest = rest.trim_end_matches('/');
    Ok(match rest.find('/') {
        Some(i) => (tls, &rest[..i], &rest[i..]),
        None => (tls, rest, ""),
    })
}
