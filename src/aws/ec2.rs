//! The EC2 poller: one `DescribeVpnConnections` call per interval for every configured
//! connection id, turned into [`ConnectionReading`]s (secrets dropped on receipt) and sent
//! to the monitor; failures back off with jitter and are reported by kind.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{TelemetryStatus, VpnConnection, VpnState};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::Config;
use crate::jitter::Jitter;
use crate::messages::AwsErrorKind;
use crate::messages::{
    ApiConnectionState, ApiTunnelStatus, ConnectionReading, Observation, PollResult, Telemetry,
    TunnelOptionsReading, TunnelReading,
};
use crate::types::{Timestamp, VpnConnectionId};

/// Turns EC2's answer into readings for the configured connections. Only the fields
/// tunnelkeeper uses are copied: `CustomerGatewayConfiguration` and the tunnels'
/// pre-shared keys are never read, and the SDK output is dropped by the caller.
pub fn read_answer(config: &Config, answer: &[VpnConnection]) -> Vec<ConnectionReading> {
    config
        .connections
        .iter()
        .enumerate()
        .filter_map(|(ci, spec)| spec.id.as_ref().map(|id| (ci, spec, id)))
        .map(|(ci, spec, id)| {
            let found = answer
                .iter()
                .find(|c| c.vpn_connection_id() == Some(id.as_str()));
            let Some(c) = found else {
                return ConnectionReading {
                    connection: ci,
                    id: id.clone(),
                    state: ApiConnectionState::Missing,
                    static_routes_only: false,
                    tunnels: spec
                        .tunnels
                        .iter()
                        .map(|t| TunnelReading {
                            outside_ip: t.outside_ip,
                            ..Default::default()
                        })
                        .collect(),
                    listed_outside_ips: Vec::new(),
                };
            };
            let state = match c.state() {
                Some(VpnState::Available) => ApiConnectionState::Available,
                Some(VpnState::Pending) => ApiConnectionState::Pending,
                Some(VpnState::Deleting) => ApiConnectionState::Deleting,
                Some(VpnState::Deleted) => ApiConnectionState::Deleted,
                Some(other) => ApiConnectionState::Unknown(other.as_str().to_string()),
                None => ApiConnectionState::Unknown("(none)".into()),
            };
            let options = c.options();
            let tunnel_options = options.map(|o| o.tunnel_options()).unwrap_or_default();
            let listed_outside_ips = c
                .vgw_telemetry()
                .iter()
                .filter_map(|t| t.outside_ip_address().map(str::to_string))
                .collect();
            // Joined by outside IP, never by position: AWS promises no order.
            let tunnels = spec
                .tunnels
                .iter()
                .map(|t| {
                    let ip = t.outside_ip.map(|ip| ip.0);
                    let same_ip = |s: Option<&str>| {
                        ip.is_some() && s.and_then(|s| s.parse::<Ipv4Addr>().ok()) == ip
                    };
                    let telemetry = c
                        .vgw_telemetry()
                        .iter()
                        .find(|v| same_ip(v.outside_ip_address()))
                        .map(|v| Telemetry {
                            status: match v.status() {
                                Some(TelemetryStatus::Up) => ApiTunnelStatus::Up,
                                Some(TelemetryStatus::Down) => ApiTunnelStatus::Down,
                                Some(other) => ApiTunnelStatus::Unknown(other.as_str().to_string()),
                                None => ApiTunnelStatus::Missing,
                            },
                            status_message: v.status_message().map(str::to_string),
                            last_status_change: v
                                .last_status_change()
                                .and_then(|d| u64::try_from(d.to_millis().ok()?).ok())
                                .map(Timestamp::from_millis),
                            accepted_route_count: v.accepted_route_count(),
                        });
                    let options = tunnel_options
                        .iter()
                        .find(|o| same_ip(o.outside_ip_address()))
                        .map(|o| TunnelOptionsReading {
                            startup_action: o.startup_action().map(str::to_string),
                            dpd_timeout_action: o.dpd_timeout_action().map(str::to_string),
                            dpd_timeout_seconds: o.dpd_timeout_seconds(),
                            ike_versions: o
                                .ike_versions()
                                .iter()
                                .filter_map(|v| v.value().map(str::to_string))
                                .collect(),
                        });
                    TunnelReading {
                        outside_ip: t.outside_ip,
                        telemetry,
                        options,
                    }
                })
                .collect();
            ConnectionReading {
                connection: ci,
                id: id.clone(),
                state,
                static_routes_only: options
                    .and_then(|o| o.static_routes_only())
                    .unwrap_or(false),
                tunnels,
                listed_outside_ips,
            }
        })
        .collect()
}

/// Polls EC2 until cancelled.
pub struct Ec2Poller {
    /// The SDK client, pointed at the configured endpoint.
    pub client: aws_sdk_ec2::Client,
    /// The running config.
    pub config: Arc<Config>,
    /// Cadence of the calls.
    pub interval: Duration,
    /// Where results go.
    pub observations: mpsc::Sender<Observation>,
    /// Stops the task.
    pub cancel: CancellationToken,
    /// Beats after every call, for the watchdog.
    pub heartbeat: crate::liveness::Heartbeat,
}

/// The longest wait between two calls while failing, in poll intervals.
const MAX_BACKOFF_INTERVALS: u32 = 4;

impl Ec2Poller {
    /// Runs the poll loop.
    pub async fn run(self) {
        let ids: Vec<VpnConnectionId> = self
            .config
            .connections
            .iter()
            .filter_map(|c| c.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let mut jitter = Jitter::seeded();
        let mut failures: u32 = 0;
        loop {
            let result = self.poll(&ids).await;
            self.heartbeat.beat();
            let at = Instant::now();
            let delay = match &result {
                PollResult::Answer(_) => {
                    failures = 0;
                    self.interval
                }
                PollResult::Failed { kind, message } => {
                    failures = failures.saturating_add(1);
                    warn!(kind = kind.label(), %message, failures, "EC2 DescribeVpnConnections failed");
                    self.interval
                        * 2u32
                            .saturating_pow(failures.min(8))
                            .min(MAX_BACKOFF_INTERVALS)
                }
            };
            if self
                .observations
                .send(Observation::Ec2 { at, result })
                .await
                .is_err()
            {
                return;
            }
            // Up to a tenth longer, never shorter, so that instances do not poll in step.
            let delay = delay + jitter.fraction_of(delay / 10);
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn poll(&self, ids: &[VpnConnectionId]) -> PollResult {
        let request = self
            .client
            .describe_vpn_connections()
            .set_vpn_connection_ids(Some(ids.iter().map(|id| id.to_string()).collect()));
        let outcome = tokio::select! {
            _ = self.cancel.cancelled() => return PollResult::Failed { kind: AwsErrorKind::Other, message: "cancelled".into() },
            outcome = request.send() => outcome,
        };
        match outcome {
            Ok(output) => {
                let readings = read_answer(&self.config, output.vpn_connections());
                debug!(connections = readings.len(), "EC2 answer read");
                // `output` (with the customer gateway configuration) is dropped here.
                PollResult::Answer(readings)
            }
            Err(err) => {
                let (kind, message) = crate::aws::classify(&err);
                PollResult::Failed { kind, message }
            }
        }
    }
}
