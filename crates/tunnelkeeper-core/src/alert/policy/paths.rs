//! The conditions about paths to the datacenter beyond single tunnels, pure: shared targets
//! that do not answer while the VPN carries traffic (`SharedTargetsDown`, after the
//! failover grace), what a tunnel's page says of the failover its outage caused, and the
//! EC2 API being unavailable (`ControlPlaneUnavailable`, with its cause).

use crate::alert::engine::{AlertKey, Condition, Details};
use crate::config::{Config, TargetScope};
use crate::health::{ControlPlane, HealthModel, Verdict, VpnState};
use crate::types::{AlertClass, Timestamp, TunnelId};

/// `SharedTargetsDown`: shared targets down for longer than `failover_grace` while the VPN
/// is not unreachable. Within the grace the loss is a failover in progress and nothing
/// starts; while the VPN is unreachable the alert holds (VpnUnreachable says more).
pub fn shared_targets_down(
    config: &Config,
    model: &HealthModel,
    now: Timestamp,
) -> Option<(AlertKey, Condition)> {
    let key = AlertKey::global(AlertClass::SharedTargetsDown);
    let grace = config.alerts.failover_grace;
    let mut within_grace = false;
    let mut down: Vec<String> = Vec::new();
    for t in config
        .targets
        .iter()
        .filter(|t| t.scope == TargetScope::Shared)
    {
        if let Verdict::Down { since, reason } = &model.target(t.id).verdict {
            if now.since(*since) >= grace {
                down.push(format!(
                    "{} ({}) since {since}: {reason}",
                    t.name, t.address
                ));
            } else {
                within_grace = true;
            }
        }
    }
    if down.is_empty() {
        // Lost within the grace: a failover in progress starts nothing, and an alert
        // already firing (a restart counts the grace again) holds.
        return within_grace.then_some((key, Condition::Unknown));
    }
    match model.vpn() {
        VpnState::Critical { .. } | VpnState::Starting => Some((key, Condition::Unknown)),
        VpnState::Ok { .. } | VpnState::Degraded { .. } => {
            let answering = config
                .tunnel_ids()
                .filter(|id| model.tunnel(*id).data_plane.is_up())
                .count();
            let carries = if answering > 0 {
                format!(
                    "{answering} of {} tunnels' pinned targets answer",
                    config.tunnel_ids().count()
                )
            } else {
                "other shared targets answer".to_string()
            };
            Some((
                key,
                Condition::Active(Details {
                    summary: format!(
                        "{} shared target(s) do not answer; the VPN carries traffic",
                        down.len()
                    ),
                    reason: format!(
                        "the VPN carries traffic ({carries}), these hosts do not answer for longer than the failover grace ({}): {}",
                        humantime::format_duration(grace),
                        down.join("; ")
                    ),
                    vpn_id: None,
                    severity: None,
                    since: None,
                    cause: None,
                }),
            ))
        }
    }
}

/// What the page of a tunnel down since `since` says of the failover its outage caused:
/// how long the shared hosts were cut off before their route moved to another tunnel.
pub fn failover_text(model: &HealthModel, tunnel: TunnelId, since: Timestamp) -> Option<String> {
    let f = model
        .failovers()
        .latest_from(tunnel)
        .filter(|f| f.restored_at >= since)?;
    Some(format!(
        "traffic to the shared hosts moved to another tunnel after {:.1} s (lost at {}, answering again at {})",
        f.seconds(),
        f.lost_at,
        f.restored_at
    ))
}

/// `ControlPlaneUnavailable`: EC2 failing since `since`, with the cause. The data plane
/// decides alone meanwhile, which the reason says, so that nobody waits for EC2.
pub fn control_plane_unavailable(
    control: Option<&ControlPlane>,
    since: Timestamp,
    error: &str,
) -> Condition {
    let cause = control
        .and_then(|cp| cp.failure_cause())
        .unwrap_or_else(|| format!("EC2 calls fail ({error})"));
    let short: String = cause
        .split([':', '('])
        .next()
        .unwrap_or(&cause)
        .trim()
        .chars()
        .take(80)
        .collect();
    Condition::Active(Details {
        summary: format!("EC2 API unavailable: {short}"),
        reason: format!(
            "{cause}; DescribeVpnConnections has failed since {since} (last error: {error}); the tunnels' control plane is unknown and the pings decide alone: data plane alerts still fire and resolve"
        ),
        vpn_id: None,
        severity: None,
        since: None,
        cause: None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::messages::{AwsErrorKind, ProbeOutcome};
    use crate::types::TargetId;

    const CONFIG: &str = r#"
        [probe]
        down_after = 3
        [alerts]
        failover_grace = "60s"
        [[vpn]]
        name = "dc"
          [[vpn.tunnel]]
          name = "dc-a"
          targets = ["172.16.1.10"]
          [[vpn.tunnel]]
          name = "dc-b"
          targets = ["172.16.2.10"]
        [[target]]
        name = "db"
        address = "172.16.9.10"
    "#;
    const A: TargetId = TargetId(0);
    const B: TargetId = TargetId(1);
    const DB: TargetId = TargetId(2);
    const TUNNEL_A: TunnelId = TunnelId {
        connection: 0,
        tunnel: 0,
    };

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(1_000 + s)
    }

    fn feed(m: &mut HealthModel, target: TargetId, reply: bool, seconds: std::ops::Range<u64>) {
        let outcome = if reply {
            ProbeOutcome::Reply {
                rtt: Duration::from_millis(5),
            }
        } else {
            ProbeOutcome::Timeout {
                after: Duration::from_secs(1),
            }
        };
        for s in seconds {
            m.handle_probe(target, &outcome, t(s));
        }
    }

    /// Each row: which targets answer from 10 s on (all answered before), the time asked,
    /// and whether SharedTargetsDown is absent, held or active.
    #[test]
    fn shared_targets_down_pages_only_after_the_grace_and_only_while_the_vpn_carries_traffic() {
        // (name, A answers, B answers, DB answers, at, expected)
        let rows: [(&str, bool, bool, bool, u64, &str); 6] = [
            ("all well", true, true, true, 200, "absent"),
            (
                "hosts lost 29 s: a failover in progress: one firing holds, none starts",
                true,
                true,
                false,
                39,
                "held",
            ),
            (
                "hosts lost 30 s after a tunnel went: still the grace",
                false,
                true,
                false,
                69,
                "held",
            ),
            (
                "hosts lost past the grace, tunnels answer",
                true,
                true,
                false,
                71,
                "active",
            ),
            (
                "a failover that never completes pages too",
                false,
                true,
                false,
                71,
                "active",
            ),
            (
                "nothing answers: VpnUnreachable speaks, this holds",
                false,
                false,
                false,
                71,
                "held",
            ),
        ];
        let config = Config::parse(CONFIG, "t").unwrap();
        for (name, a, b, db, at, want) in rows {
            let mut m = HealthModel::new(&config);
            for target in [A, B, DB] {
                feed(&mut m, target, true, 0..10);
            }
            for (target, answers) in [(A, a), (B, b), (DB, db)] {
                feed(&mut m, target, answers, 10..at + 1);
            }
            let got = match shared_targets_down(&config, &m, t(at)) {
                None => "absent",
                Some((_, Condition::Unknown)) => "held",
                Some((_, Condition::Active(d))) => {
                    assert!(
                        d.reason.starts_with("the VPN carries traffic (")
                            && d.reason.contains("these hosts do not answer")
                            && d.reason.contains("db (172.16.9.10) since"),
                        "{name}: {}",
                        d.reason
                    );
                    "active"
                }
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_tunnel_page_says_how_long_the_failover_it_caused_took() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let mut m = HealthModel::new(&config);
        for target in [A, B, DB] {
            feed(&mut m, target, true, 0..10);
        }
        feed(&mut m, A, false, 10..40);
        feed(&mut m, B, true, 10..40);
        feed(&mut m, DB, false, 10..19);
        let since = match &m.tunnel(TUNNEL_A).verdict {
            Verdict::Down { since, .. } => *since,
            other => panic!("{other:?}"),
        };
        assert_eq!(failover_text(&m, TUNNEL_A, since), None, "not yet moved");
        feed(&mut m, DB, true, 19..21);
        let text = failover_text(&m, TUNNEL_A, since).expect("measured");
        assert!(
            // Lost from the probe sent at 9 s (timing out at 10 s) to the reply to the one
            // sent at 19 s: between the probes' sending times.
            text.starts_with("traffic to the shared hosts moved to another tunnel after 10.0 s"),
            "{text}"
        );
        // A later outage of the same tunnel is not about that failover.
        assert_eq!(failover_text(&m, TUNNEL_A, t(100)), None);
    }

    #[test]
    fn control_plane_unavailable_names_its_cause_and_says_the_pings_decide() {
        let config = Config::parse(
            "[aws]\n[[vpn]]\nid = \"vpn-0123456789abcdef0\"\nname = \"dc\"\n  [[vpn.tunnel]]\n  name = \"dc-a\"\n  outside_ip = \"52.2.144.13\"\n  targets = [\"172.16.1.10\"]\n",
            "t",
        )
        .unwrap();
        let mut cp = ControlPlane::new(&config, Duration::from_secs(30));
        cp.handle_error(
            AwsErrorKind::Auth,
            "HTTP 403 UnauthorizedOperation: User: arn:aws:sts::1:assumed-role/t/i is not authorized to perform: ec2:DescribeVpnConnections because no identity-based policy allows the ec2:DescribeVpnConnections action".into(),
            t(0),
        );
        let Condition::Active(d) = control_plane_unavailable(Some(&cp), t(0), "auth: ...") else {
            panic!("inactive");
        };
        assert_eq!(d.summary, "EC2 API unavailable: access denied");
        assert!(
            d.reason
                .starts_with("access denied: the role may not call ec2:DescribeVpnConnections"),
            "{}",
            d.reason
        );
        assert!(d
            .reason
            .contains("data plane alerts still fire and resolve"));
    }
}
