//! The EC2 poller: one `DescribeVpnConnections` call per interval for every configured
//! connection id, turned into [`ConnectionReading`]s (secrets dropped on receipt) and sent
//! to the monitor; failures back off with jitter and are reported by kind. It runs the
//! maintenance poller ([`crate::aws::maintenance`]) beside it and tells it what EC2 knows.
//!
//! The ids go in a `vpn-connection-id` filter, not the `VpnConnectionId` list: EC2 fails a
//! whole list call with `InvalidVpnConnectionID.NotFound` when one id is unknown, while a
//! filter returns the connections that exist, so one deleted or foreign id blinds only
//! itself (it reads as missing).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, TelemetryStatus, VpnConnection, VpnState};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::aws::maintenance::{Ec2Update, MaintenancePoller};
use crate::config::Config;
use crate::jitter::Jitter;
use crate::messages::AwsErrorKind;
use crate::messages::{
    ApiConnectionState, ApiTunnelStatus, ConnectionReading, Observation, PollResult, Telemetry,
    TunnelOptionsReading, TunnelReading,
};
use crate::types::{Timestamp, TunnelId, VpnConnectionId};

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
                                .map(Timestamp::from_wall_millis),
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
                            log_enabled: o
                                .log_options()
                                .and_then(|l| l.cloud_watch_log_options())
                                .and_then(|c| c.log_enabled()),
                            bgp_log_enabled: o
                                .log_options()
                                .and_then(|l| l.cloud_watch_log_options())
                                .and_then(|c| c.bgp_log_enabled()),
                            log_group_arn: o
                                .log_options()
                                .and_then(|l| l.cloud_watch_log_options())
                                .and_then(|c| c.log_group_arn())
                                .map(str::to_string),
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

/// Returns how long to wait before the next call, jitter included (up to a tenth more, so
/// that instances do not poll in step).
///
/// After a good answer: one interval. While failing, with a good answer still fresh
/// (`until_stale` left before it goes stale), never so long that the answer goes stale
/// before the poller has tried again: waits of one interval or more while there is room
/// for another try after this one, and a last try at the staleness limit itself (its
/// answer is awaited: staleness is judged against when the answer was due). With nothing
/// fresh to save: 2, then 4 intervals.
pub fn next_delay(
    interval: Duration,
    failures: u32,
    jitter: &mut Jitter,
    until_stale: Option<Duration>,
) -> Duration {
    let backoff = if failures == 0 {
        interval
    } else {
        interval
            * 2u32
                .saturating_pow(failures.min(8))
                .min(MAX_BACKOFF_INTERVALS)
    };
    let delay = backoff + jitter.fraction_of(backoff / 10);
    match until_stale {
        // Room for this try and one more at the limit.
        Some(left) if left >= interval + interval / 2 => delay.clamp(interval, left - interval / 2),
        // The last try before the limit, at the limit (the try before left half an
        // interval for it, less the time that call took).
        Some(left) if left >= interval / 4 => delay.min(left),
        // Too late to save the answer: back off in full.
        Some(_) | None => delay,
    }
}

impl Ec2Poller {
    /// Runs the poll loop, and the maintenance poller beside it, until cancelled.
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
        let (updates, updates_rx) = mpsc::unbounded_channel();
        let maintenance = self.config.aws.as_ref().map(|aws| MaintenancePoller {
            client: self.client.clone(),
            config: self.config.clone(),
            interval: aws.maintenance_interval,
            observations: self.observations.clone(),
            cancel: self.cancel.clone(),
            updates: updates_rx,
        });
        let maintenance = async move {
            if let Some(m) = maintenance {
                m.run().await;
            }
        };
        tokio::join!(self.poll_loop(&ids, updates), maintenance);
    }

    async fn poll_loop(&self, ids: &[VpnConnectionId], updates: mpsc::UnboundedSender<Ec2Update>) {
        let mut jitter = Jitter::seeded();
        let mut failures: u32 = 0;
        let stale_after = self
            .config
            .aws
            .as_ref()
            .map_or(self.interval * 3, |a| a.stale_after());
        let mut last_success: Option<Instant> = None;
        let mut previous: Option<Vec<ConnectionReading>> = None;
        loop {
            let result = self.poll(ids).await;
            self.heartbeat.beat();
            let at = Instant::now();
            match &result {
                PollResult::Answer(readings) => {
                    failures = 0;
                    last_success = Some(at);
                    let _ = updates.send(Ec2Update {
                        found: Some(
                            readings
                                .iter()
                                .filter(|r| r.state != ApiConnectionState::Missing)
                                .map(|r| r.connection)
                                .collect(),
                        ),
                        check_now: changed_tunnels(previous.as_deref(), readings),
                    });
                    previous = Some(readings.clone());
                }
                PollResult::Failed { kind, message } => {
                    failures = failures.saturating_add(1);
                    warn!(kind = kind.label(), %message, failures, "EC2 DescribeVpnConnections failed");
                    let _ = updates.send(Ec2Update {
                        found: None,
                        check_now: Vec::new(),
                    });
                }
            }
            let until_stale = last_success.map(|s| (s + stale_after).saturating_duration_since(at));
            let delay = next_delay(self.interval, failures, &mut jitter, until_stale);
            if self
                .observations
                .send(Observation::Ec2 { at, result })
                .await
                .is_err()
            {
                return;
            }
            // From the end of the call, so that a last try lands at the limit exactly.
            let next = at + delay;
            if self
                .observations
                .send(Observation::Ec2NextCall { at: next })
                .await
                .is_err()
            {
                return;
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    async fn poll(&self, ids: &[VpnConnectionId]) -> PollResult {
        let filter = Filter::builder()
            .name("vpn-connection-id")
            .set_values(Some(ids.iter().map(|id| id.to_string()).collect()))
            .build();
        let request = self.client.describe_vpn_connections().filters(filter);
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

/// Tunnels whose telemetry went DOWN or changed (`LastStatusChange` moved) since the
/// previous answer: an endpoint replacement shows there first, so their maintenance
/// details are worth asking for at once.
fn changed_tunnels(
    previous: Option<&[ConnectionReading]>,
    now: &[ConnectionReading],
) -> Vec<TunnelId> {
    let Some(previous) = previous else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in now {
        let Some(before) = previous.iter().find(|p| p.connection == c.connection) else {
            continue;
        };
        for (ti, t) in c.tunnels.iter().enumerate() {
            let (Some(new), Some(old)) = (
                t.telemetry.as_ref(),
                before.tunnels.get(ti).and_then(|b| b.telemetry.as_ref()),
            ) else {
                continue;
            };
            let went_down =
                new.status == ApiTunnelStatus::Down && old.status != ApiTunnelStatus::Down;
            if went_down || new.last_status_change != old.last_status_change {
                out.push(TunnelId {
                    connection: c.connection,
                    tunnel: ti,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_never_outlasts_the_staleness_limit() {
        let i = Duration::from_secs(10);
        let mut j = Jitter::from_seed(7);
        // A good answer: one interval, plus at most a tenth.
        for _ in 0..100 {
            let d = next_delay(i, 0, &mut j, Some(i * 3));
            assert!(d >= i && d < i + i / 10, "{d:?}");
        }
        // Two failures in a row, the first 1.05 intervals after the last good answer: the
        // tries land before and at the limit (3 intervals), not 2 and 4 intervals later.
        let first = Duration::from_millis(10_500);
        let second = first + next_delay(i, 1, &mut j, Some(i * 3 - first));
        assert!(second >= first + i && second <= i * 3 - i / 2, "{second:?}");
        let third = second + next_delay(i, 2, &mut j, Some(i * 3 - second));
        assert_eq!(third, i * 3, "the last try is at the limit");
        // Also when the second call took a moment.
        let second = second + Duration::from_millis(40);
        let third = second + next_delay(i, 2, &mut j, Some(i * 3 - second));
        assert_eq!(third, i * 3, "the last try is at the limit");
        // Nothing fresh to save (no answer yet, or too late): the full backoff, capped.
        let d = next_delay(i, 1, &mut j, None);
        assert!(d >= i * 2 && d < i * 2 + i / 5);
        let d = next_delay(i, 5, &mut j, Some(Duration::from_secs(2)));
        assert!(d >= i * 4 && d < i * 4 + i * 2 / 5, "{d:?}");
    }
}
