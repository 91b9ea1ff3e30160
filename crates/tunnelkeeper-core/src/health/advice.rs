//! Advice that prevents outages, pure and sans-IO: tunnel options that keep a tunnel down
//! longer than needed, and route health from `AcceptedRouteCount`. Each finding is a
//! `/status` advisory with a stable code and a metric; none of them pages.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::messages::{ApiConnectionState, ApiTunnelStatus, ConnectionReading};
use crate::messages::{TunnelOptionsReading, TunnelReading};
use crate::types::{Timestamp, TunnelId};

/// The shortest DPD timeout worth having: shorter ones clear tunnels on a blip.
pub const MIN_DPD_TIMEOUT_SECONDS: i32 = 30;
/// A virtual private gateway accepts at most this many BGP routes per connection, and the
/// limit cannot be raised.
pub const VGW_ROUTE_LIMIT: i32 = 100;
/// Accepted routes at which the limit is close enough to say so.
pub const ROUTES_NEAR_LIMIT: i32 = 90;
/// How far back "the tunnel's recent maximum" of accepted routes looks.
pub const ROUTE_WINDOW: Duration = Duration::from_secs(3600);

/// The stable codes of every advisory, for metrics at zero and for the docs.
pub const CODES: [&str; 8] = [
    "dpd_timeout_short",
    "recovery_needs_datacenter",
    "ikev1_startup_start",
    "tunnel_logging_off",
    "tunnel_options_differ",
    "routes_dropped",
    "routes_asymmetric",
    "routes_near_limit",
];

/// One piece of advice about one tunnel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Advisory {
    /// One of [`CODES`].
    pub code: &'static str,
    /// The connection's name.
    pub vpn: String,
    /// The tunnel's name.
    pub tunnel: String,
    /// What is wrong and what to change.
    pub message: String,
    /// Which tunnel, for the metric.
    #[serde(skip)]
    pub id: TunnelId,
}

/// Accepted route counts of each tunnel over the last [`ROUTE_WINDOW`], while it was UP.
#[derive(Clone, Debug, Default)]
pub struct RouteHistory {
    tunnels: Vec<(TunnelId, VecDeque<(Timestamp, i32)>)>,
}

impl RouteHistory {
    /// Records the counts of a good EC2 answer (tunnels that are UP with BGP only: a
    /// down tunnel has no routes, and that is the down verdict's business).
    pub fn record(&mut self, readings: &[ConnectionReading], now: Timestamp) {
        for c in readings {
            for (ti, t) in c.tunnels.iter().enumerate() {
                let id = TunnelId {
                    connection: c.connection,
                    tunnel: ti,
                };
                let Some(count) = bgp_routes_while_up(c, t) else {
                    continue;
                };
                let pos = match self.tunnels.iter().position(|(t, _)| *t == id) {
                    Some(p) => p,
                    None => {
                        self.tunnels.push((id, VecDeque::new()));
                        self.tunnels.len() - 1
                    }
                };
                let history = &mut self.tunnels[pos].1;
                history.push_back((now, count));
                while history
                    .front()
                    .is_some_and(|(t, _)| now.since(*t) > ROUTE_WINDOW)
                {
                    history.pop_front();
                }
            }
        }
    }

    /// Returns the most routes the tunnel accepted within the window.
    pub fn recent_max(&self, id: TunnelId, now: Timestamp) -> Option<i32> {
        self.tunnels
            .iter()
            .find(|(t, _)| *t == id)?
            .1
            .iter()
            .filter(|(t, _)| now.since(*t) <= ROUTE_WINDOW)
            .map(|(_, n)| *n)
            .max()
    }

    /// Keeps only the tunnels `keep` maps to a new position (a reload).
    pub fn remap(&mut self, keep: impl Fn(TunnelId) -> Option<TunnelId>) {
        self.tunnels = std::mem::take(&mut self.tunnels)
            .into_iter()
            .filter_map(|(id, h)| keep(id).map(|new| (new, h)))
            .collect();
    }
}

/// The accepted routes of a tunnel that is UP on a BGP connection.
fn bgp_routes_while_up(c: &ConnectionReading, t: &TunnelReading) -> Option<i32> {
    if c.static_routes_only || c.state != ApiConnectionState::Available {
        return None;
    }
    let tel = t.telemetry.as_ref()?;
    match tel.status {
        ApiTunnelStatus::Up => tel.accepted_route_count,
        ApiTunnelStatus::Down | ApiTunnelStatus::Unknown(_) | ApiTunnelStatus::Missing => None,
    }
}

/// Returns every advisory for the connections of one EC2 answer. `names` gives each
/// connection's name and its tunnels' names, by position in the config.
pub fn advisories(
    readings: &[ConnectionReading],
    names: &dyn Fn(TunnelId) -> (String, String),
    routes: &RouteHistory,
    now: Timestamp,
) -> Vec<Advisory> {
    let mut out = Vec::new();
    for c in readings {
        let mut push = |ti: usize, code: &'static str, message: String| {
            let id = TunnelId {
                connection: c.connection,
                tunnel: ti,
            };
            let (vpn, tunnel) = names(id);
            out.push(Advisory {
                code,
                vpn,
                tunnel,
                message,
                id,
            });
        };
        for (ti, t) in c.tunnels.iter().enumerate() {
            if let Some(o) = &t.options {
                for (code, message) in option_findings(o, c.static_routes_only) {
                    push(ti, code, message);
                }
            }
            let id = TunnelId {
                connection: c.connection,
                tunnel: ti,
            };
            if let Some(count) = bgp_routes_while_up(c, t) {
                if let Some(max) = routes.recent_max(id, now).filter(|m| count < *m) {
                    push(ti, "routes_dropped", format!(
                        "AWS accepts {count} BGP routes on this tunnel, down from {max} within the last hour: the customer gateway withdrew routes, or a prefix filter or the route limit dropped them"
                    ));
                }
                if count >= ROUTES_NEAR_LIMIT {
                    push(ti, "routes_near_limit", format!(
                        "AWS accepts {count} BGP routes on this tunnel; a virtual private gateway takes at most {VGW_ROUTE_LIMIT} per connection and the limit cannot be raised: summarise the datacenter's prefixes before routes are dropped"
                    ));
                }
            }
        }
        if let [a, b] = &c.tunnels[..] {
            if let (Some(na), Some(nb)) = (bgp_routes_while_up(c, a), bgp_routes_while_up(c, b)) {
                if na != nb {
                    for (ti, mine, other) in [(0, na, nb), (1, nb, na)] {
                        push(ti, "routes_asymmetric", format!(
                            "AWS accepts {mine} BGP routes on this tunnel and {other} on the other tunnel of the connection: traffic to some prefixes can only use one tunnel (asymmetric routing risk); advertise the same prefixes on both"
                        ));
                    }
                }
            }
            if let (Some(oa), Some(ob)) = (&a.options, &b.options) {
                let differ = option_differences(oa, ob);
                if !differ.is_empty() {
                    for ti in 0..2 {
                        push(ti, "tunnel_options_differ", format!(
                            "the two tunnels of this connection have different options ({}): after a failover the other tunnel behaves differently; give both the same options",
                            differ.join(", ")
                        ));
                    }
                }
            }
        }
    }
    out
}

/// What is wrong with one tunnel's options.
fn option_findings(
    o: &TunnelOptionsReading,
    static_routes_only: bool,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(dpd) = o
        .dpd_timeout_seconds
        .filter(|s| *s < MIN_DPD_TIMEOUT_SECONDS)
    {
        out.push(("dpd_timeout_short", format!(
            "DpdTimeoutSeconds is {dpd}: under {MIN_DPD_TIMEOUT_SECONDS} s a short loss on the internet path clears the tunnel; use 30 or more"
        )));
    }
    if o.waits_for_datacenter() {
        out.push(("recovery_needs_datacenter", "StartupAction=add with DpdTimeoutAction=clear: after a drop AWS leaves the tunnel down until the datacenter sends traffic; use StartupAction=start (IKEv2) or DpdTimeoutAction=restart".into()));
    }
    let ikev1 = o
        .ike_versions
        .iter()
        .any(|v| v.eq_ignore_ascii_case("ikev1"));
    if o.startup_action.as_deref() == Some("start") && ikev1 {
        out.push(("ikev1_startup_start", "StartupAction=start with IKEv1 allowed: AWS starts IKE only with IKEv2, so a tunnel that negotiates IKEv1 still waits for the customer gateway; allow IKEv2 only".into()));
    }
    let mut off = Vec::new();
    if o.log_enabled != Some(true) {
        off.push("LogEnabled");
    }
    if !static_routes_only && o.bgp_log_enabled != Some(true) {
        off.push("BgpLogEnabled");
    }
    if !off.is_empty() {
        out.push(("tunnel_logging_off", format!(
            "tunnel logging to CloudWatch Logs is off ({} in LogOptions.CloudWatchLogOptions): enable tunnel logs: pages will not say why; the next IKE or BGP failure leaves no AWS-side log to explain it",
            off.join(", ")
        )));
    }
    out
}

/// Names the options in which two tunnels differ.
fn option_differences(a: &TunnelOptionsReading, b: &TunnelOptionsReading) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.startup_action() != b.startup_action() {
        out.push("StartupAction");
    }
    if a.dpd_timeout_action.as_deref().unwrap_or("clear")
        != b.dpd_timeout_action.as_deref().unwrap_or("clear")
    {
        out.push("DpdTimeoutAction");
    }
    if a.dpd_timeout_seconds.unwrap_or(30) != b.dpd_timeout_seconds.unwrap_or(30) {
        out.push("DpdTimeoutSeconds");
    }
    let versions = |o: &TunnelOptionsReading| {
        let mut v: Vec<String> = o
            .ike_versions
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        v.sort();
        v
    };
    if versions(a) != versions(b) {
        out.push("IkeVersions");
    }
    if a.log_enabled.unwrap_or(false) != b.log_enabled.unwrap_or(false)
        || a.bgp_log_enabled.unwrap_or(false) != b.bgp_log_enabled.unwrap_or(false)
    {
        out.push("LogOptions");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Telemetry;
    use crate::types::{OutsideIp, VpnConnectionId};

    fn good() -> TunnelOptionsReading {
        TunnelOptionsReading {
            startup_action: Some("start".into()),
            dpd_timeout_action: Some("restart".into()),
            dpd_timeout_seconds: Some(30),
            ike_versions: vec!["ikev2".into()],
            log_enabled: Some(true),
            bgp_log_enabled: Some(true),
            log_group_arn: None,
        }
    }

    fn connection(
        a: (TunnelOptionsReading, &str, Option<i32>),
        b: (TunnelOptionsReading, &str, Option<i32>),
    ) -> ConnectionReading {
        let tunnel = |(o, status, routes): (TunnelOptionsReading, &str, Option<i32>), ip: &str| {
            TunnelReading {
                outside_ip: Some(OutsideIp(ip.parse().unwrap())),
                telemetry: Some(Telemetry {
                    status: if status == "UP" {
                        ApiTunnelStatus::Up
                    } else {
                        ApiTunnelStatus::Down
                    },
                    status_message: None,
                    last_status_change: None,
                    accepted_route_count: routes,
                }),
                options: Some(o),
            }
        };
        ConnectionReading {
            connection: 0,
            id: VpnConnectionId::new("vpn-0123456789abcdef0"),
            state: ApiConnectionState::Available,
            static_routes_only: false,
            tunnels: vec![tunnel(a, "52.2.144.13"), tunnel(b, "52.2.144.14")],
            listed_outside_ips: Vec::new(),
        }
    }

    fn codes(
        c: &ConnectionReading,
        routes: &RouteHistory,
        now: Timestamp,
    ) -> Vec<(usize, &'static str)> {
        let names = |id: TunnelId| ("dc".to_string(), format!("t{}", id.tunnel));
        let mut out: Vec<(usize, &'static str)> =
            advisories(std::slice::from_ref(c), &names, routes, now)
                .iter()
                .map(|a| (a.id.tunnel, a.code))
                .collect();
        out.sort();
        out
    }

    #[test]
    fn each_tunnel_option_finding_has_its_code() {
        let none = RouteHistory::default();
        let now = Timestamp::from_secs(0);
        assert_eq!(
            codes(
                &connection((good(), "UP", Some(5)), (good(), "UP", Some(5))),
                &none,
                now
            ),
            vec![]
        );
        type Change = fn(&mut TunnelOptionsReading);
        let cases: [(Change, &[&str]); 6] = [
            (
                |o| o.dpd_timeout_seconds = Some(10),
                &["dpd_timeout_short", "tunnel_options_differ"],
            ),
            (
                |o| {
                    o.startup_action = Some("add".into());
                    o.dpd_timeout_action = Some("clear".into());
                },
                &["recovery_needs_datacenter", "tunnel_options_differ"],
            ),
            (
                |o| o.ike_versions = vec!["ikev1".into(), "ikev2".into()],
                &["ikev1_startup_start", "tunnel_options_differ"],
            ),
            (
                |o| o.log_enabled = None,
                &["tunnel_logging_off", "tunnel_options_differ"],
            ),
            (
                |o| o.bgp_log_enabled = Some(false),
                &["tunnel_logging_off", "tunnel_options_differ"],
            ),
            // Defaults when AWS omits them: add + clear, no logs.
            (
                |o| *o = TunnelOptionsReading::default(),
                &[
                    "recovery_needs_datacenter",
                    "tunnel_logging_off",
                    "tunnel_options_differ",
                ],
            ),
        ];
        for (i, (change, expected)) in cases.into_iter().enumerate() {
            let mut b = good();
            change(&mut b);
            let found = codes(
                &connection((good(), "UP", Some(5)), (b, "UP", Some(5))),
                &none,
                now,
            );
            let on_b: Vec<&str> = found
                .iter()
                .filter(|(t, _)| *t == 1)
                .map(|(_, c)| *c)
                .collect();
            assert_eq!(on_b, expected, "case {i}");
            assert_eq!(
                found
                    .iter()
                    .filter(|(t, _)| *t == 0)
                    .map(|(_, c)| *c)
                    .collect::<Vec<_>>(),
                vec!["tunnel_options_differ"],
                "case {i}: the good tunnel hears only of the difference"
            );
        }
    }

    #[test]
    fn route_health_drop_asymmetry_and_the_limit() {
        let t = Timestamp::from_secs;
        let mut history = RouteHistory::default();
        let steady = connection((good(), "UP", Some(50)), (good(), "UP", Some(50)));
        history.record(std::slice::from_ref(&steady), t(0));
        assert_eq!(codes(&steady, &history, t(0)), vec![]);
        // Tunnel 1 loses routes: a drop from its recent maximum, and the tunnels disagree.
        let dropped = connection((good(), "UP", Some(50)), (good(), "UP", Some(40)));
        history.record(std::slice::from_ref(&dropped), t(60));
        assert_eq!(
            codes(&dropped, &history, t(60)),
            vec![
                (0, "routes_asymmetric"),
                (1, "routes_asymmetric"),
                (1, "routes_dropped")
            ]
        );
        // An hour later the old maximum has aged out of the window.
        let later = connection((good(), "UP", Some(40)), (good(), "UP", Some(40)));
        history.record(std::slice::from_ref(&later), t(3700));
        assert_eq!(codes(&later, &history, t(3700)), vec![]);
        // A down tunnel's zero routes are not a drop nor an asymmetry.
        let down = connection((good(), "UP", Some(40)), (good(), "DOWN", Some(0)));
        history.record(std::slice::from_ref(&down), t(3760));
        assert_eq!(codes(&down, &history, t(3760)), vec![]);
        let near = connection((good(), "UP", Some(95)), (good(), "UP", Some(95)));
        history.record(std::slice::from_ref(&near), t(3800));
        assert_eq!(
            codes(&near, &history, t(3800)),
            vec![(0, "routes_near_limit"), (1, "routes_near_limit")]
        );
    }
}
