//! The CloudWatch publisher: every interval, one batched `PutMetricData` with per-tunnel
//! `TunnelUp`, `PacketLoss` and `RttMillis`, per-connection `HealthyTunnels`, and a
//! `Heartbeat` of 1 (an alarm on missing heartbeats pages when the daemon itself dies).
//! It reads snapshots, so a slow or failing CloudWatch never holds up probing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::jitter::Jitter;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// One figure to publish, before it becomes an SDK type.
#[derive(Clone, Debug, PartialEq)]
pub struct Datum {
    /// Metric name.
    pub name: &'static str,
    /// Dimensions as (name, value).
    pub dimensions: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
}

/// The units used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A plain number.
    Count,
    /// Percent.
    Percent,
    /// Milliseconds.
    Milliseconds,
}

/// Builds the figures for one publish; `previous` holds each tunnel's (sent, received)
/// totals from the last one, so loss covers just the interval.
pub fn figures(snapshot: &Snapshot, previous: &mut HashMap<String, (u64, u64)>) -> Vec<Datum> {
    let mut out = Vec::new();
    for c in &snapshot.connections {
        let vpn_id =
            c.id.as_ref()
                .map_or_else(|| c.name.to_string(), |id| id.to_string());
        let mut healthy = 0.0;
        for t in &c.tunnels {
            let dims = vec![
                ("VpnId", vpn_id.clone()),
                ("TunnelName", t.name.to_string()),
            ];
            let up = t.state.is_up();
            if up {
                healthy += 1.0;
            }
            out.push(Datum {
                name: "TunnelUp",
                dimensions: dims.clone(),
                value: f64::from(u8::from(up)),
                unit: Unit::Count,
            });
            let sent: u64 = t.targets.iter().map(|x| x.stats.sent).sum();
            let received: u64 = t.targets.iter().map(|x| x.stats.replies).sum();
            let (last_sent, last_received) = previous
                .insert(t.name.to_string(), (sent, received))
                .unwrap_or((0, 0));
            let d_sent = sent.saturating_sub(last_sent);
            if d_sent > 0 {
                let d_received = received.saturating_sub(last_received).min(d_sent);
                let loss = 100.0 * (d_sent - d_received) as f64 / d_sent as f64;
                out.push(Datum {
                    name: "PacketLoss",
                    dimensions: dims.clone(),
                    value: loss,
                    unit: Unit::Percent,
                });
            }
            let mut rtts: Vec<f64> = t
                .targets
                .iter()
                .filter_map(|x| x.stats.rtt_p50_seconds)
                .collect();
            if !rtts.is_empty() {
                rtts.sort_by(f64::total_cmp);
                let median = rtts[rtts.len() / 2];
                out.push(Datum {
                    name: "RttMillis",
                    dimensions: dims,
                    value: median * 1000.0,
                    unit: Unit::Milliseconds,
                });
            }
        }
        out.push(Datum {
            name: "HealthyTunnels",
            dimensions: vec![("VpnId", vpn_id)],
            value: healthy,
            unit: Unit::Count,
        });
    }
    out.push(Datum {
        name: "Heartbeat",
        dimensions: Vec::new(),
        value: 1.0,
        unit: Unit::Count,
    });
    out
}

fn to_sdk(d: &Datum, at: aws_sdk_cloudwatch::primitives::DateTime) -> MetricDatum {
    let unit = match d.unit {
        Unit::Count => StandardUnit::Count,
        Unit::Percent => StandardUnit::Percent,
        Unit::Milliseconds => StandardUnit::Milliseconds,
    };
    let mut b = MetricDatum::builder()
        .metric_name(d.name)
        .value(d.value)
        .unit(unit)
        .timestamp(at);
    for (name, value) in &d.dimensions {
        b = b.dimensions(Dimension::builder().name(*name).value(value).build());
    }
    b.build()
}

/// Publishes until cancelled.
pub struct CloudWatchPublisher {
    /// The SDK client.
    pub client: aws_sdk_cloudwatch::Client,
    /// The namespace.
    pub namespace: String,
    /// Cadence.
    pub interval: Duration,
    /// Where figures come from.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// Outcome counters.
    pub metrics: Arc<Metrics>,
    /// Stops the task.
    pub cancel: CancellationToken,
}

/// PutMetricData takes at most this many data per call.
const MAX_DATA_PER_CALL: usize = 1000;
/// Attempts per batch before it is given up (the next interval brings fresh figures).
const ATTEMPTS: u32 = 3;

impl CloudWatchPublisher {
    /// Runs the publish loop: the first heartbeat goes out at once.
    pub async fn run(self) {
        let mut previous = HashMap::new();
        let mut jitter = Jitter::seeded();
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let snapshot = self.snapshots.borrow().clone();
            let data = figures(&snapshot, &mut previous);
            let at = aws_sdk_cloudwatch::primitives::DateTime::from(
                snapshot.generated_at.to_system_time(),
            );
            let sdk: Vec<MetricDatum> = data.iter().map(|d| to_sdk(d, at)).collect();
            for chunk in sdk.chunks(MAX_DATA_PER_CALL) {
                self.publish(chunk, &mut jitter).await;
            }
        }
    }

    async fn publish(&self, data: &[MetricDatum], jitter: &mut Jitter) {
        let mut backoff = Duration::from_secs(1).min(self.interval / 4);
        for attempt in 1..=ATTEMPTS {
            let call = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(data.to_vec()))
                .send();
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return,
                result = call => result,
            };
            match result {
                Ok(_) => {
                    self.metrics.cloudwatch_put("ok");
                    debug!(data = data.len(), "CloudWatch figures published");
                    return;
                }
                Err(err) => {
                    let (kind, message) = crate::aws::classify(&err);
                    self.metrics.cloudwatch_put(kind.label());
                    warn!(kind = kind.label(), %message, attempt, "CloudWatch PutMetricData failed");
                }
            }
            if attempt < ATTEMPTS {
                let wait = backoff + jitter.fraction_of(backoff);
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff *= 2;
            }
        }
    }
}
