//! The EC2 and CloudWatch series. They exist from the start whether `[aws]` is configured
//! or not: without it they stay at "never answered", which an `absent()` rule would
//! otherwise misread.

use prometheus::{Gauge, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{control_plane, register};
use crate::config::Config;
use crate::messages::{AwsErrorKind, TunnelReading};
use crate::types::{Timestamp, TunnelId};

pub(super) struct AwsSeries {
    pub(super) ec2_requests: IntCounterVec,
    ec2_last_success: Gauge,
    ec2_answer_age: Gauge,
    control_plane_stale: IntGauge,
    accepted_routes: IntGaugeVec,
    waits_for_datacenter: IntGaugeVec,
    pub(super) cloudwatch_requests: IntCounterVec,
    pub(super) control: control_plane::ControlPlaneSeries,
}

impl AwsSeries {
    /// Registers the series with their starting values.
    pub(super) fn new(registry: &Registry, config: &Config) -> Self {
        let ec2_requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tunnelkeeper_ec2_requests_total",
                    "DescribeVpnConnections calls by outcome: ok or the kind of failure.",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        let cloudwatch_requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "tunnelkeeper_cloudwatch_requests_total",
                    "PutMetricData calls by outcome: ok or the kind of failure.",
                ),
                &["outcome"],
            )
            .unwrap(),
        );
        for outcome in std::iter::once("ok").chain(AwsErrorKind::ALL.iter().map(|k| k.label())) {
            ec2_requests.with_label_values(&[outcome]);
            if config
                .aws
                .as_ref()
                .is_some_and(|a| a.cloudwatch_namespace.is_some())
            {
                cloudwatch_requests.with_label_values(&[outcome]);
            }
        }
        let accepted_routes = register(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "tunnelkeeper_tunnel_accepted_routes",
                    "BGP routes AWS accepted on the tunnel (EC2 telemetry); -1 when not reported.",
                ),
                &["vpn", "tunnel"],
            )
            .unwrap(),
        );
        let waits_for_datacenter = register(registry, IntGaugeVec::new(
            Opts::new(
                "tunnelkeeper_tunnel_recovery_needs_datacenter",
                "1 when the tunnel options (StartupAction=add, DpdTimeoutAction=clear) leave a dropped tunnel down until the datacenter sends traffic.",
            ),
            &["vpn", "tunnel"],
        ).unwrap());
        for c in config.connections.iter().filter(|c| c.id.is_some()) {
            for t in &c.tunnels {
                accepted_routes
                    .with_label_values(&[c.name.as_str(), t.name.as_str()])
                    .set(-1);
                waits_for_datacenter
                    .with_label_values(&[c.name.as_str(), t.name.as_str()])
                    .set(0);
            }
        }
        let series = AwsSeries {
            ec2_requests,
            ec2_last_success: register(
                registry,
                Gauge::new(
                    "tunnelkeeper_ec2_last_success_timestamp_seconds",
                    "When DescribeVpnConnections last answered, as a Unix time (0: never).",
                )
                .unwrap(),
            ),
            ec2_answer_age: register(
                registry,
                Gauge::new(
                    "tunnelkeeper_ec2_answer_age_seconds",
                    "Age of the last good EC2 answer (-1: none yet).",
                )
                .unwrap(),
            ),
            control_plane_stale: register(
                registry,
                IntGauge::new(
                    "tunnelkeeper_control_plane_stale",
                    "1 when the last good EC2 answer is older than three poll intervals.",
                )
                .unwrap(),
            ),
            accepted_routes,
            waits_for_datacenter,
            cloudwatch_requests,
            control: control_plane::ControlPlaneSeries::new(registry, config),
        };
        series.ec2_answer_age.set(-1.0);
        series
    }
}

impl super::Metrics {
    /// Counts one EC2 call by outcome.
    pub fn ec2_request(&self, outcome: &str) {
        self.aws.ec2_requests.with_label_values(&[outcome]).inc();
    }

    /// Records a good EC2 answer.
    pub fn ec2_success(&self, at: Timestamp) {
        self.aws
            .ec2_last_success
            .set(at.wall_millis() as f64 / 1000.0);
    }

    /// Sets the age of the last good EC2 answer.
    pub fn set_ec2_answer_age(&self, age: Option<f64>) {
        self.aws.ec2_answer_age.set(age.unwrap_or(-1.0));
    }

    /// Sets whether the control plane is stale.
    pub fn set_control_plane_stale(&self, stale: bool) {
        self.aws.control_plane_stale.set(i64::from(stale));
    }

    /// Sets a tunnel's EC2-reported figures.
    pub fn set_tunnel_aws(&self, id: TunnelId, reading: &TunnelReading) {
        let a = &self.aws;
        let (vpn, tunnel) = &self.tunnel_labels[id.connection][id.tunnel];
        let routes = reading
            .telemetry
            .as_ref()
            .and_then(|t| t.accepted_route_count)
            .map_or(-1, i64::from);
        a.accepted_routes
            .with_label_values(&[vpn.as_str(), tunnel.as_str()])
            .set(routes);
        let waits = reading
            .options
            .as_ref()
            .is_some_and(|o| o.waits_for_datacenter());
        a.waits_for_datacenter
            .with_label_values(&[vpn.as_str(), tunnel.as_str()])
            .set(i64::from(waits));
    }

    /// Counts one CloudWatch call by outcome.
    pub fn cloudwatch_put(&self, outcome: &str) {
        self.aws
            .cloudwatch_requests
            .with_label_values(&[outcome])
            .inc();
    }
}
