//! The maintenance poller: `GetVpnTunnelReplacementStatus` for every polled tunnel with an
//! outside IP, one call per tunnel, spread over `[aws] maintenance_interval`; once at start,
//! soon after the first `DescribeVpnConnections`; and out of turn for a tunnel whose EC2
//! telemetry just went DOWN or changed (an endpoint replacement shows there first).
//! Failures back off like the EC2 poller's and are reported by kind.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::primitives::DateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::aws::ec2::next_delay;
use crate::config::Config;
use crate::jitter::Jitter;
use crate::messages::{MaintenanceReading, MaintenanceResult, Observation};
use crate::types::{Timestamp, TunnelId};

/// What the EC2 poll loop tells the maintenance poller after each call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ec2Update {
    /// The connections (by position in the config) EC2 knows, after a good answer; `None`
    /// after a failed call (nothing learnt).
    pub found: Option<Vec<usize>>,
    /// Tunnels to check out of turn.
    pub check_now: Vec<TunnelId>,
}

/// Time between the calls of the first round, at start.
const START_SPACING: Duration = Duration::from_secs(1);
/// How soon an out-of-turn check follows the EC2 answer that asked for it.
const NUDGE_DELAY: Duration = Duration::from_secs(2);
/// A tunnel is checked out of turn at most this often.
const MIN_RECHECK: Duration = Duration::from_secs(60);

/// Polls `GetVpnTunnelReplacementStatus` until cancelled.
pub struct MaintenancePoller {
    /// The SDK client.
    pub client: aws_sdk_ec2::Client,
    /// The running config.
    pub config: Arc<Config>,
    /// A round: every tunnel is asked once per interval.
    pub interval: Duration,
    /// Where results go.
    pub observations: mpsc::Sender<Observation>,
    /// Stops the task.
    pub cancel: CancellationToken,
    /// What the EC2 poll loop learnt.
    pub updates: mpsc::UnboundedReceiver<Ec2Update>,
}

/// One tunnel's place in the schedule.
struct Slot {
    id: TunnelId,
    vpn_id: String,
    outside_ip: String,
    /// Its turn in the round.
    regular: Instant,
    /// An out-of-turn check, if one was asked for.
    urgent: Option<Instant>,
    last_checked: Option<Instant>,
    checked_once: bool,
}

impl Slot {
    fn due(&self) -> Instant {
        self.urgent.map_or(self.regular, |u| u.min(self.regular))
    }
}

impl MaintenancePoller {
    /// Runs the schedule.
    pub async fn run(mut self) {
        let mut slots: Vec<Slot> = self
            .config
            .tunnel_ids()
            .filter_map(|id| {
                let vpn_id = self.config.connections[id.connection].id.as_ref()?;
                let ip = self.config.tunnel(id).outside_ip?;
                Some(Slot {
                    id,
                    vpn_id: vpn_id.to_string(),
                    outside_ip: ip.to_string(),
                    regular: Instant::now(),
                    urgent: None,
                    last_checked: None,
                    checked_once: false,
                })
            })
            .collect();
        if slots.is_empty() {
            return;
        }
        // Once at start, soon after the first DescribeVpnConnections.
        let first = tokio::select! {
            _ = self.cancel.cancelled() => return,
            first = self.updates.recv() => first,
        };
        let Some(first) = first else { return };
        let mut found = first.found;
        let start = Instant::now();
        let n = slots.len() as u32;
        for (k, slot) in slots.iter_mut().enumerate() {
            slot.regular = start + START_SPACING * k as u32;
        }
        // After the first round, the calls are spread evenly over the interval.
        let spacing = self.interval / n;
        let spread_from = start + START_SPACING * n;
        let mut jitter = Jitter::seeded();
        let mut failures: u32 = 0;
        let mut not_before = start;
        loop {
            let exists = |slot: &Slot| {
                found
                    .as_ref()
                    .is_none_or(|f| f.contains(&slot.id.connection))
            };
            let next = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| exists(s))
                .min_by_key(|(_, s)| s.due())
                .map(|(i, s)| (i, s.due().max(not_before)));
            let wake = async {
                match next {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                update = self.updates.recv() => {
                    let Some(update) = update else { return };
                    if update.found.is_some() {
                        found = update.found;
                    }
                    let now = Instant::now();
                    for id in update.check_now {
                        if let Some(slot) = slots.iter_mut().find(|s| s.id == id) {
                            let earliest = slot.last_checked.map_or(now, |t| t + MIN_RECHECK);
                            slot.urgent = Some((now + NUDGE_DELAY).max(earliest));
                        }
                    }
                    continue;
                }
                _ = wake => {}
            }
            let Some((i, _)) = next else { continue };
            let result = self.check(&slots[i]).await;
            let at = Instant::now();
            let slot = &mut slots[i];
            slot.last_checked = Some(at);
            let delay = match &result {
                MaintenanceResult::Reading(reading) => {
                    failures = 0;
                    debug!(tunnel = %self.config.tunnel(slot.id).name, ?reading, "maintenance details read");
                    if slot.urgent.is_some_and(|u| u <= at) {
                        slot.urgent = None;
                    }
                    if slot.regular <= at {
                        slot.regular = if slot.checked_once {
                            (slot.regular + self.interval).max(at + spacing)
                        } else {
                            spread_from + spacing * (i as u32 + 1)
                        };
                        slot.checked_once = true;
                    }
                    Duration::ZERO
                }
                MaintenanceResult::Failed { kind, message } => {
                    failures = failures.saturating_add(1);
                    warn!(kind = kind.label(), %message, failures, tunnel = %self.config.tunnel(slot.id).name, "EC2 GetVpnTunnelReplacementStatus failed");
                    // The tunnel stays due: it is asked again first, after the backoff.
                    next_delay(spacing, failures, &mut jitter, None)
                }
            };
            not_before = at + delay;
            let observation = Observation::Maintenance {
                at,
                tunnel: slot.id,
                result,
            };
            if self.observations.send(observation).await.is_err() {
                return;
            }
        }
    }

    async fn check(&self, slot: &Slot) -> MaintenanceResult {
        let request = self
            .client
            .get_vpn_tunnel_replacement_status()
            .vpn_connection_id(&slot.vpn_id)
            .vpn_tunnel_outside_ip_address(&slot.outside_ip);
        let outcome = tokio::select! {
            _ = self.cancel.cancelled() => return MaintenanceResult::Failed { kind: crate::messages::AwsErrorKind::Other, message: "cancelled".into() },
            outcome = request.send() => outcome,
        };
        match outcome {
            Ok(output) => {
                let d = output.maintenance_details();
                MaintenanceResult::Reading(MaintenanceReading {
                    pending: d.and_then(|d| d.pending_maintenance()).map(str::to_string),
                    auto_apply_after: d
                        .and_then(|d| d.maintenance_auto_applied_after())
                        .and_then(timestamp),
                    last_applied: d
                        .and_then(|d| d.last_maintenance_applied())
                        .and_then(timestamp),
                })
            }
            Err(err) => {
                let (kind, message) = crate::aws::classify(&err);
                MaintenanceResult::Failed { kind, message }
            }
        }
    }
}

fn timestamp(d: &DateTime) -> Option<Timestamp> {
    u64::try_from(d.to_millis().ok()?)
        .ok()
        .map(Timestamp::from_wall_millis)
}
