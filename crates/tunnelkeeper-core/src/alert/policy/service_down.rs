//! `ServiceDown` (warning): a TCP target's host answers, its service does not. A refused
//! connect is a reset from the host itself, so the path and the tunnel work and the target
//! stays up for the tunnel's verdict; what is down is the service at `address:port` (or a
//! host firewall rejecting it). One alert per service, keyed by its tunnel when pinned.

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::alert::policy::Inputs;
use crate::config::TargetScope;
use crate::health::Verdict;
use crate::types::AlertClass;

/// Active for each TCP target refused `down_after` connects in a row while its host is
/// reached; unknown (held as it is) while its host does not answer at all, since nothing
/// is known of the service then (the outage rules speak for the path).
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let mut out = Conditions::new();
    for t in inputs
        .config
        .targets
        .iter()
        .filter(|t| t.tcp_port.is_some())
    {
        let health = inputs.model.target(t.id);
        let service = &health.service;
        let endpoint = t.endpoint().to_string();
        let place = match t.scope {
            TargetScope::Pinned(id) => Some((
                inputs.config.connections[id.connection].name.as_str(),
                inputs.config.tunnel(id).name.as_str(),
            )),
            TargetScope::Shared => None,
        };
        let vpn_id = match t.scope {
            TargetScope::Pinned(id) => inputs.config.connections[id.connection]
                .id
                .as_ref()
                .map(|id| id.to_string()),
            TargetScope::Shared => None,
        };
        let key = AlertKey::target(AlertClass::ServiceDown, place, &endpoint);
        let condition = match &health.verdict {
            Verdict::Up { .. } if service.is_down(t.probe.down_after) => {
                Condition::Active(Details {
                    summary: format!("service {endpoint} ({}) refuses connections", t.name),
                    reason: format!(
                        "{} TCP connects in a row to {endpoint} were refused (reset by the host): the host and the path answer, the service does not listen or a firewall on the host rejects it",
                        service.refused_in_a_row
                    ),
                    vpn_id,
                    severity: None,
                    since: service.since,
                    cause: None,
                })
            }
            Verdict::Down { .. } | Verdict::Unknown { .. } if service.refused_in_a_row > 0 => {
                Condition::Unknown
            }
            Verdict::Up { .. } | Verdict::Down { .. } | Verdict::Unknown { .. } => continue,
        };
        out.insert(key, condition);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::policy::{FlapTracker, Inputs};
    use crate::alert::sink_health::SinksHealth;
    use crate::config::Config;
    use crate::health::path_mtu::PathMtus;
    use crate::health::HealthModel;
    use crate::history::History;
    use crate::messages::{ProbeOutcome, ServiceAnswer};
    use crate::types::{TargetId, Timestamp};
    use std::time::Duration;

    const CONFIG: &str = r#"
[probe]
down_after = 3
[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "a"
  targets = ["172.16.1.11:22"]
  [[vpn.tunnel]]
  name = "b"
  targets = ["172.16.2.10"]
[[target]]
address = "10.20.0.5"
tcp_port = 5432
"#;

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Open,
        Refused,
        Lost,
    }

    /// Runs `steps` for target `target` and returns the ServiceDown condition, if any.
    fn condition_after(target: usize, steps: &[Step]) -> (Option<Condition>, Option<AlertKey>) {
        let config = Config::parse(CONFIG, "test").unwrap();
        let mut model = HealthModel::new(&config);
        let id = TargetId(target);
        let rtt = Duration::from_millis(2);
        for (i, step) in steps.iter().enumerate() {
            let at = Timestamp::from_millis(1_000_000 + i as u64 * 5000);
            let outcome = match step {
                Step::Open => {
                    model.handle_service(id, ServiceAnswer::Open { mss: Some(1460) }, at);
                    ProbeOutcome::Reply { rtt }
                }
                Step::Refused => {
                    model.handle_service(id, ServiceAnswer::Refused, at);
                    ProbeOutcome::Reply { rtt }
                }
                Step::Lost => ProbeOutcome::Timeout {
                    after: Duration::from_secs(1),
                },
            };
            model.handle_probe(id, &outcome, at);
        }
        let history = History::new(&std::sync::Arc::new(config.clone()));
        let flaps = FlapTracker::new(&config, 4, Duration::from_secs(120));
        let mtus = PathMtus::new(&config);
        let sinks = SinksHealth::new(&config);
        let maintenance = crate::maintenance::MaintenanceTracker::new(&config);
        let found = rule(&Inputs {
            config: &config,
            model: &model,
            control: None,
            flaps: &flaps,
            path_mtu: &mtus,
            history: &history,
            sinks: &sinks,
            maintenance: &maintenance,
            state_save: None,
            now: Timestamp::from_millis(2_000_000),
        });
        assert!(found.len() <= 1);
        let key = found.keys().next().cloned();
        (found.into_values().next(), key)
    }

    #[test]
    fn refused_connects_make_service_down_once_down_after_in_a_row() {
        use Step::*;
        // (steps, expected: None = no alert, Some(true) = active, Some(false) = unknown)
        let cases: [(&[Step], Option<bool>); 8] = [
            (&[Open, Open], None),
            (&[Open, Refused, Refused], None),
            (&[Open, Refused, Refused, Refused], Some(true)),
            (&[Refused, Refused, Refused, Refused], Some(true)),
            (&[Refused, Refused, Refused, Open], None),
            (&[Refused, Refused, Open, Refused, Refused], None),
            // The host went silent: nothing is known of the service, the alert holds.
            (&[Refused, Refused, Refused, Lost, Lost, Lost], Some(false)),
            (&[Open, Lost, Lost, Lost], None),
        ];
        for (steps, want) in cases {
            let (condition, _) = condition_after(0, steps);
            let got = condition.map(|c| matches!(c, Condition::Active(_)));
            assert_eq!(got, want, "{steps:?}");
        }
    }

    #[test]
    fn the_alert_names_the_service_and_its_tunnel_or_none_when_shared() {
        use Step::*;
        let refused = [Refused, Refused, Refused];
        let (condition, key) = condition_after(0, &refused);
        let key = key.unwrap();
        assert_eq!(key.tunnel.as_deref(), Some("a"));
        assert_eq!(key.target.as_deref(), Some("172.16.1.11:22"));
        let Some(Condition::Active(details)) = condition else {
            panic!("not active")
        };
        assert!(
            details.summary.contains("172.16.1.11:22"),
            "{}",
            details.summary
        );
        assert!(details.since.is_some());
        let (_, key) = condition_after(2, &refused);
        let key = key.unwrap();
        assert_eq!((key.vpn, key.tunnel), (None, None));
        assert_eq!(key.target.as_deref(), Some("10.20.0.5:5432"));
    }
}
