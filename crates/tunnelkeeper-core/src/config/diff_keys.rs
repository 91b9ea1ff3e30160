//! Which keys of a table a reload changed, for the reload's log line: "[alerts] changed:
//! escalate_after, sink" rather than "[alerts] changed", so that whoever reads the journal
//! after a reload knows what it did without diffing files.

use super::{AlertsConfig, AwsConfig, Config, MtuConfig};

/// The keys of `[alerts]` that differ, by their names in the file.
fn alerts_keys(a: &AlertsConfig, b: &AlertsConfig) -> Vec<&'static str> {
    let (r, s) = (&a.rules, &b.rules);
    [
        ("for", r.for_ != s.for_),
        ("keep_firing_for", r.keep_firing_for != s.keep_firing_for),
        ("group_wait", r.group_wait != s.group_wait),
        ("repeat_interval", r.repeat_interval != s.repeat_interval),
        ("send_resolved", r.send_resolved != s.send_resolved),
        ("escalate_after", r.escalate_after != s.escalate_after),
        ("flap_changes", a.flap_changes != b.flap_changes),
        ("flap_window", a.flap_window != b.flap_window),
        (
            "control_plane_unavailable_after",
            a.control_plane_unavailable_after != b.control_plane_unavailable_after,
        ),
        (
            "maintenance_grace",
            a.maintenance_grace != b.maintenance_grace,
        ),
        ("failover_grace", a.failover_grace != b.failover_grace),
        (
            "maintenance_severity",
            a.maintenance_severity != b.maintenance_severity,
        ),
        ("severity", a.severity_overrides != b.severity_overrides),
        ("runbook_url", a.runbook_url != b.runbook_url),
        ("lossy", a.lossy != b.lossy),
        ("slow", a.slow != b.slow),
        ("silence", a.silences != b.silences),
        ("sink", a.sinks != b.sinks),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// The keys of `[aws]` that differ; the whole table when it was added or removed.
fn aws_keys(a: Option<&AwsConfig>, b: Option<&AwsConfig>) -> Vec<&'static str> {
    let (Some(a), Some(b)) = (a, b) else {
        return match (a, b) {
            (None, Some(_)) => vec!["(table added)"],
            (Some(_), None) => vec!["(table removed)"],
            _ => Vec::new(),
        };
    };
    [
        ("region", a.region != b.region),
        ("poll_interval", a.poll_interval != b.poll_interval),
        ("endpoint_url", a.endpoint_url != b.endpoint_url),
        (
            "cloudwatch_namespace",
            a.cloudwatch_namespace != b.cloudwatch_namespace,
        ),
        (
            "cloudwatch_interval",
            a.cloudwatch_interval != b.cloudwatch_interval,
        ),
        (
            "maintenance_interval",
            a.maintenance_interval != b.maintenance_interval,
        ),
        ("tunnel_logs", a.tunnel_logs != b.tunnel_logs),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// The keys of `[mtu]` that differ.
fn mtu_keys(a: &MtuConfig, b: &MtuConfig) -> Vec<&'static str> {
    [
        ("enabled", a.enabled != b.enabled),
        ("interval", a.interval != b.interval),
        ("expected", a.expected != b.expected),
    ]
    .into_iter()
    .filter_map(|(key, changed)| changed.then_some(key))
    .collect()
}

/// One line per table that changed, naming its keys that did. A table that differs in a
/// key this file does not list yet still gets its line, saying so.
pub fn table_changes(old: &Config, new: &Config) -> Vec<String> {
    let tables = [
        (
            "[aws]",
            old.aws != new.aws,
            aws_keys(old.aws.as_ref(), new.aws.as_ref()),
        ),
        (
            "[alerts]",
            old.alerts != new.alerts,
            alerts_keys(&old.alerts, &new.alerts),
        ),
        ("[mtu]", old.mtu != new.mtu, mtu_keys(&old.mtu, &new.mtu)),
    ];
    tables
        .into_iter()
        .filter(|(_, changed, _)| *changed)
        .map(|(table, _, keys)| {
            if keys.is_empty() {
                format!("{table} changed: a key not named here")
            } else {
                format!("{table} changed: {}", keys.join(", "))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"dc-a\"\n\
                        targets = [\"172.16.1.10\"]\n";

    #[test]
    fn a_reload_line_names_the_keys_that_changed() {
        let old = Config::parse(&format!("{BASE}[alerts]\nfor = \"0s\"\n"), "old").unwrap();
        let new = Config::parse(
            &format!(
                "{BASE}[alerts]\nfor = \"0s\"\nescalate_after = \"5m\"\n\
                 [[alerts.sink]]\nkind = \"log\"\nmin_severity = \"info\"\n\
                 [mtu]\nexpected = 1400\n"
            ),
            "new",
        )
        .unwrap();
        assert_eq!(
            table_changes(&old, &new),
            [
                "[alerts] changed: escalate_after, sink",
                "[mtu] changed: expected"
            ]
        );
        assert!(table_changes(&old, &old).is_empty());
    }
}
