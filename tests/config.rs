//! Config parsing and validation: the shipped files parse, and every kind of bad input
//! gets a message naming the key, the value and the rule, with the line where known.

mod common;

use std::time::{Duration, SystemTime};

use tunnelkeeper::config::{Config, ConfigError, SocketKind, TargetScope, EMBEDDED_DEFAULT};

/// A fixed wall-clock time, so that no test depends on the day it runs.
fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

fn error_of(text: &str) -> String {
    match Config::parse(text, "test.toml") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn assert_contains(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
    }
}

const TWO_TUNNELS: &str = r#"
[[vpn]]
id = "vpn-0123456789abcdef0"
name = "dc-primary"
  [[vpn.tunnel]]
  name = "dc-primary-a"
  outside_ip = "52.2.144.13"
  targets = ["172.16.1.10"]
  [[vpn.tunnel]]
  name = "dc-primary-b"
  outside_ip = "52.2.144.14"
  targets = ["172.16.2.10"]
"#;

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml")).unwrap()
}

/// The example with its commented-out `[[alerts.silence]]` block uncommented.
fn example_with_its_silence() -> String {
    let mut out = String::new();
    let mut in_block = false;
    let mut uncommented = 0;
    for line in example().lines() {
        let trimmed = line.trim_start();
        if trimmed == "# [[alerts.silence]]" {
            in_block = true;
        } else if trimmed.is_empty() {
            in_block = false;
        }
        if in_block {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(indent);
            out.push_str(trimmed.strip_prefix("# ").unwrap_or_else(|| {
                panic!("the example's silence block has an uncommented line: {line:?}")
            }));
            uncommented += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(
        uncommented, 7,
        "the example keeps one commented [[alerts.silence]] with six keys"
    );
    out
}

#[test]
fn the_example_config_parses_with_every_key() {
    // As shipped: no silence, so nothing in it can go stale, whatever the date.
    let config = Config::parse(&example(), "config/example.toml").unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config.alerts.silences.is_empty());
    // With its example silence uncommented, checked against a clock before the window ends.
    let config = Config::parse_at(
        &example_with_its_silence(),
        "config/example.toml",
        at("2026-11-30T00:00:00Z"),
    )
    .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let [silence] = &config.alerts.silences[..] else {
        panic!("one silence: {:?}", config.alerts.silences);
    };
    assert_eq!(silence.vpn.as_deref(), Some("dc-primary"));
    assert_eq!(silence.tunnel.as_deref(), Some("dc-primary-a"));
    assert_eq!(format!("{:?}", silence.class), "Some(TunnelDown)");
    assert_eq!(
        silence.starts.map(|t| t.to_string()).as_deref(),
        Some("2026-12-01T02:00:00Z")
    );
    assert_eq!(silence.ends.to_string(), "2026-12-01T06:00:00Z");
    assert_eq!(silence.comment, "AWS endpoint maintenance on dc-primary-a");
    assert_eq!(config.connections.len(), 2);
    assert_eq!(config.listen.to_string(), "0.0.0.0:9478");
    assert_eq!(config.socket, SocketKind::Auto);
    let overridden = config
        .targets
        .iter()
        .find(|t| t.name.as_str() == "cgw-a-mgmt")
        .unwrap();
    assert_eq!(overridden.probe.interval, Duration::from_secs(5));
    assert_eq!(overridden.probe.timeout, Duration::from_secs(1));
    let shared = config
        .targets
        .iter()
        .filter(|t| t.scope == TargetScope::Shared)
        .count();
    assert_eq!(shared, 2);
    let names: Vec<&str> = config
        .alerts
        .sinks
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["noc-pager", "log", "alertmanager:127.0.0.1:9093"]);
    assert_eq!(config.alerts.severity_overrides.len(), 0);
    assert_eq!(
        config.alerts.rules.escalate_after,
        Duration::from_secs(15 * 60)
    );
}

#[test]
fn severities_per_class_and_sink_names_are_checked() {
    let e = error_of(&format!(
        "{TWO_TUNNELS}[alerts.severity]\nTunnelDwn = \"critical\"\nConnectionDown = \"loud\"\n[[alerts.sink]]\nkind = \"log\"\n[[alerts.sink]]\nkind = \"log\"\n"
    ));
    assert_contains(
        &e,
        &[
            "alerts.severity.TunnelDwn: \"TunnelDwn\" is not an alert; use one of TunnelDown",
            "alerts.severity.ConnectionDown: \"loud\" is not a severity",
            "alerts.sink[1].name: \"log\" is also the name of alerts.sink[0]",
        ],
    );
}

#[test]
fn the_embedded_default_is_valid_and_pings_loopback_only() {
    let config = Config::parse(EMBEDDED_DEFAULT, "default").unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:9478");
    assert_eq!(config.connections.len(), 1);
    assert_eq!(config.connections[0].name.as_str(), "local");
    assert!(
        config.connections[0].id.is_none(),
        "the default must not name an AWS connection"
    );
    assert!(config.targets.iter().all(|t| t.address.is_loopback()));
    assert!(config.warnings.is_empty());
}

#[test]
fn defaults_apply_where_keys_are_absent() {
    let config = Config::parse(TWO_TUNNELS, "t").unwrap();
    let p = config.targets[0].probe;
    assert_eq!(
        (
            p.interval,
            p.timeout,
            p.payload_bytes,
            p.down_after,
            p.up_after
        ),
        (Duration::from_secs(1), Duration::from_secs(1), 56, 5, 2)
    );
    assert_eq!(
        config.summary(),
        "1 connection(s), 2 tunnel(s), 2 pinned and 0 shared target(s), HTTP on 0.0.0.0:9478"
    );
}

#[test]
fn an_empty_config_is_an_error() {
    assert_contains(&error_of(""), &["nothing to watch"]);
    assert_contains(
        &error_of("[probe]\ninterval = \"1s\"\n"),
        &["nothing to watch"],
    );
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let e = error_of(&format!("{TWO_TUNNELS}\n[probe]\nintreval = \"1s\"\n"));
    assert_contains(
        &e,
        &[
            "test.toml",
            "line 15",
            "unknown field `intreval`",
            "expected one of",
            "interval",
        ],
    );
}

#[test]
fn check_config_reports_a_misspelt_table_with_a_suggestion_and_the_value_errors_after_it() {
    let path = common::write_temp(
        "misspelt.toml",
        "[probe]\ninterval = 1\n\n[[vpn]]\nid = \"vpn-12\"\nname = \"dc\"\n\n  [[vpn.tunnels]]\n  name = \"dc-a\"\n  targets = [\"172.16.1.10\"]\n",
    );
    let (code, stdout, stderr) = common::run_cli(&["check-config", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let told = |line: &str, words: &[&str]| {
        lines
            .iter()
            .any(|l| l.trim_start().starts_with(line) && words.iter().all(|w| l.contains(w)))
    };
    assert!(told("line 2,", &["probe.interval", "duration"]), "{stderr}");
    assert!(told("line 5,", &["vpn[0].id", "\"vpn-12\""]), "{stderr}");
    assert!(
        told(
            "line 8,",
            &["unknown field `tunnels`", "did you mean `tunnel`?"]
        ),
        "{stderr}"
    );
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}

#[test]
fn wrong_types_are_errors_with_their_line() {
    let e = error_of(&format!("[probe]\ndown_after = \"3\"\n{TWO_TUNNELS}"));
    assert_contains(&e, &["line 2", "invalid type: string \"3\", expected u32"]);
}

#[test]
fn every_type_error_is_reported_in_one_run_with_key_expectation_and_example() {
    let text = format!(
        "[probe]\ninterval = 1\ndown_after = \"3\"\ntimeout = \"2x\"\n{}\n[http]\nlisten = \"nope\"\n[alerts]\nflap_changes = 0\nsend_resolved = \"yes\"\n",
        TWO_TUNNELS.replace("name = \"dc-primary-b\"", "name = 7")
    );
    let e = error_of(&text);
    assert_contains(
        &e,
        &[
            "line 2, column 12: probe.interval: invalid type: integer `1`, expected a string; interval takes a duration in quotes, for example interval = \"1s\"",
            "line 3, column 14: probe.down_after: invalid type: string \"3\", expected u32; down_after takes a whole number of probes, for example down_after = 3",
            "line 4",
            "probe.timeout: \"2x\" is not a duration",
            "vpn[0].tunnel[1].name: invalid type: integer `7`",
            "http.listen",
            "listen takes an address and port in quotes, for example listen = \"0.0.0.0:9478\"",
            "alerts.send_resolved",
            // A value rule, found in the same run once the types are read.
            "alerts.flap_changes",
        ],
    );
    assert!(
        e.contains("8 problem(s)") || e.contains("7 problem(s)"),
        "{e}"
    );
    // The blanked values are not reported again as missing.
    assert!(!e.contains("missing"), "{e}");
}

#[test]
fn a_table_missing_its_required_key_does_not_hide_or_misname_the_next_ones_problems() {
    let e = error_of(&format!(
        "{TWO_TUNNELS}[[target]]\nname = \"a\"\n[[target]]\naddress = \"10.0.0.1\"\ninterval = \"50ms\"\n"
    ));
    assert_contains(
        &e,
        &[
            "target[0]: missing field `address`",
            // The second table keeps its own index, and its problem is told.
            "target[1].interval: 50ms is out of range",
        ],
    );
    // A sibling key that merely shares a prefix is not swallowed with a blanked one.
    let e = error_of(&format!(
        "[probe]\ntimeout = 1\ntimeout_rtt_multiplier = 0\n{TWO_TUNNELS}"
    ));
    assert_contains(&e, &["probe.timeout:", "probe.timeout_rtt_multiplier"]);
}

#[test]
fn a_bad_ip_address_is_named_with_its_line() {
    let text = TWO_TUNNELS.replace("172.16.2.10", "300.1.1.1");
    let e = error_of(&text);
    assert_contains(&e, &["line 12", "300.1.1.1 is not an IPv4 address"]);
    let text = TWO_TUNNELS.replace("\"52.2.144.13\"", "\"52.2.144\"");
    assert_contains(
        &error_of(&text),
        &["line 7", "52.2.144 is not an IPv4 address"],
    );
}

#[test]
fn ipv6_targets_are_refused_because_a_vgw_carries_ipv4_only() {
    let text = TWO_TUNNELS.replace("172.16.2.10", "fd00::10");
    assert_contains(
        &error_of(&text),
        &["fd00::10 is an IPv6 address", "IPv4 only"],
    );
}

#[test]
fn a_duplicate_tunnel_name_is_an_error() {
    let text = TWO_TUNNELS.replace("name = \"dc-primary-b\"", "name = \"dc-primary-a\"");
    assert_contains(
        &error_of(&text),
        &[
            "line 10",
            "vpn[0].tunnel[1].name",
            "tunnel name dc-primary-a is already used by vpn[0].tunnel[0].name",
        ],
    );
}

#[test]
fn a_duplicate_outside_ip_is_an_error() {
    let text = TWO_TUNNELS.replace("52.2.144.14", "52.2.144.13");
    assert_contains(
        &error_of(&text),
        &[
            "line 11",
            "vpn[0].tunnel[1].outside_ip",
            "outside IP 52.2.144.13 is already used",
        ],
    );
}

#[test]
fn a_target_listed_twice_is_an_error() {
    let text = format!("{TWO_TUNNELS}\n[[target]]\naddress = \"172.16.1.10\"\n");
    assert_contains(
        &error_of(&text),
        &[
            "line 15",
            "target[0]",
            "target address 172.16.1.10 is already used by vpn[0].tunnel[0].targets[0]",
        ],
    );
    let text = TWO_TUNNELS.replace("[\"172.16.2.10\"]", "[\"172.16.2.10\", \"172.16.2.10\"]");
    assert_contains(
        &error_of(&text),
        &[
            "line 12",
            "vpn[0].tunnel[1].targets[1]",
            "already used by vpn[0].tunnel[1].targets[0]",
        ],
    );
}

#[test]
fn a_timeout_longer_than_the_interval_is_an_error() {
    let e = error_of(&format!(
        "[probe]\ninterval = \"1s\"\ntimeout = \"2s\"\n{TWO_TUNNELS}"
    ));
    assert_contains(
        &e,
        &[
            "line 3",
            "probe.timeout",
            "2s is longer than probe.interval 1s",
        ],
    );
    // An override on one target is checked against that target's interval.
    let text = TWO_TUNNELS.replace(
        "[\"172.16.2.10\"]",
        "[{ address = \"172.16.2.10\", interval = \"500ms\" }]",
    );
    assert_contains(
        &error_of(&text),
        &[
            "vpn[0].tunnel[1].targets[0].interval",
            "500ms is shorter than the timeout 1s this inherits from [probe] or the default",
        ],
    );
    // The key the user did not write is never the one blamed.
    assert!(!error_of(&text).contains("targets[0].timeout: "));
}

#[test]
fn zero_down_after_is_an_error() {
    let e = error_of(&format!("[probe]\ndown_after = 0\n{TWO_TUNNELS}"));
    assert_contains(
        &e,
        &[
            "line 2, column 14",
            "probe.down_after",
            "0 is out of range: it must be between 1 and 1000",
        ],
    );
}

#[test]
fn an_interval_under_100ms_is_an_error() {
    let e = error_of(&format!(
        "[probe]\ninterval = \"50ms\"\ntimeout = \"10ms\"\n{TWO_TUNNELS}"
    ));
    assert_contains(
        &e,
        &[
            "line 2",
            "probe.interval",
            "50ms is out of range",
            "between 100ms and 1h",
        ],
    );
}

#[test]
fn a_bad_duration_is_explained() {
    let e = error_of(&format!(
        "[probe]\ninterval = \"one second\"\n{TWO_TUNNELS}"
    ));
    assert_contains(
        &e,
        &["line 2", "\"one second\" is not a duration", "\"500ms\""],
    );
}

#[test]
fn a_payload_over_the_tunnel_mtu_is_an_error() {
    let e = error_of(&format!("[probe]\npayload_bytes = 1500\n{TWO_TUNNELS}"));
    assert_contains(
        &e,
        &["probe.payload_bytes", "1500 exceeds 1418", "MTU of 1446"],
    );
}

#[test]
fn a_bad_connection_id_is_an_error() {
    let text = TWO_TUNNELS.replace("vpn-0123456789abcdef0", "vpn-xyz");
    assert_contains(
        &error_of(&text),
        &[
            "line 3",
            "vpn[0].id",
            "\"vpn-xyz\" is not a VPN connection id",
        ],
    );
}

#[test]
fn more_than_two_tunnels_is_an_error_and_one_is_a_warning() {
    let text = format!("{TWO_TUNNELS}  [[vpn.tunnel]]\n  name = \"dc-primary-c\"\n");
    assert_contains(&error_of(&text), &["vpn[0].tunnel", "3 tunnels listed"]);
    let one = "[[vpn]]\nname = \"x\"\n[[vpn.tunnel]]\nname = \"x-a\"\ntargets = [\"10.0.0.1\"]\n";
    let config = Config::parse(one, "t").unwrap();
    assert_contains(
        &config.warnings.join("\n"),
        &["vpn[0] (x) lists one tunnel"],
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = TWO_TUNNELS
        .replace("52.2.144.14", "52.2.144.13")
        .replace("name = \"dc-primary-b\"", "name = \"dc-primary-a\"");
    match Config::parse(&text, "t") {
        Err(ConfigError::Invalid { problems, .. }) => {
            assert_eq!(problems.len(), 2);
            assert!(problems[0].position < problems[1].position);
        }
        other => panic!("expected two problems, got {other:?}"),
    }
}

#[test]
fn a_missing_file_names_the_path() {
    let e = Config::load(std::path::Path::new("/nonexistent/tk.toml")).unwrap_err();
    assert_contains(&e.to_string(), &["cannot read config /nonexistent/tk.toml"]);
}

#[test]
fn the_shipped_iam_policy_grants_exactly_the_calls_the_daemon_makes() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/iam-policy.json"
    ))
    .unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut actions: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["Action"]
                .as_str()
                .expect("one action per statement")
                .to_string()
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            "cloudwatch:PutMetricData",
            "ec2:DescribeVpnConnections",
            "ec2:GetVpnTunnelReplacementStatus",
            "logs:FilterLogEvents",
            "sns:Publish"
        ]
    );
    let maintenance = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "ec2:GetVpnTunnelReplacementStatus")
        .unwrap();
    assert!(
        maintenance["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().contains(":vpn-connection/vpn-")),
        "GetVpnTunnelReplacementStatus is limited to the connections"
    );
    let put = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "cloudwatch:PutMetricData")
        .unwrap();
    assert_eq!(
        put["Condition"]["StringEquals"]["cloudwatch:namespace"], "Tunnelkeeper",
        "PutMetricData is limited to the namespace"
    );
    let sources = [
        "src/aws/ec2.rs",
        "src/aws/cloudwatch.rs",
        "src/aws/maintenance.rs",
    ]
    .map(|f| {
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + f).unwrap()
    });
    assert!(sources[0].contains(".describe_vpn_connections()"));
    assert!(sources[1].contains(".put_metric_data()"));
    assert!(sources[2].contains(".get_vpn_tunnel_replacement_status()"));
}

#[test]
fn aws_settings_are_validated() {
    let base = "[[vpn]]\nid = \"vpn-0123456789abcdef0\"\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\noutside_ip = \"52.2.144.13\"\ntargets = [\"10.0.0.1\"]\n[[vpn.tunnel]]\nname = \"b\"\ntargets = [\"10.0.0.2\"]\n";
    let e = error_of(&format!("[aws]\npoll_interval = \"2s\"\nendpoint_url = \"localhost:4566\"\ncloudwatch_namespace = \"AWS/VPN\"\n{base}"));
    assert_contains(&e, &[
        "line 2, column 17: aws.poll_interval: 2s is out of range: it must be between 5s and 1h",
        "aws.endpoint_url: \"localhost:4566\" is not an http:// or https:// URL",
        "aws.cloudwatch_namespace: \"AWS/VPN\" is not usable",
        "vpn[0].tunnel[1].outside_ip: missing: tunnel b belongs to a connection with an `id`",
    ]);
    let config = Config::parse(
        &format!(
            "[aws]\nregion = \"eu-west-1\"\n{}",
            base.replace(
                "name = \"b\"\n",
                "name = \"b\"\noutside_ip = \"52.2.144.14\"\n"
            )
        ),
        "t",
    )
    .unwrap();
    let aws = config.aws.unwrap();
    assert_eq!(aws.poll_interval, Duration::from_secs(60));
    assert_eq!(aws.stale_after(), Duration::from_secs(180));
    assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(aws.cloudwatch_namespace, None);
    assert_eq!(aws.maintenance_interval, Duration::from_secs(900));
    assert_eq!(config.alerts.maintenance_grace, Duration::from_secs(1800));
    assert_eq!(
        format!("{:?}", config.alerts.maintenance_severity),
        "Info",
        "info by default"
    );
}

#[test]
fn maintenance_settings_are_validated() {
    let e = error_of(&format!(
        "{TWO_TUNNELS}\n[aws]\nmaintenance_interval = \"30s\"\n[alerts]\nmaintenance_grace = \"2d\"\nmaintenance_severity = \"page\"\n[[alerts.sink]]\nkind = \"log\"\nmin_severity = \"debug\"\n"
    ));
    assert_contains(
        &e,
        &[
            "aws.maintenance_interval: 30s is out of range: it must be between 1m and 1day",
            "alerts.maintenance_grace: 2days is out of range",
            "alerts.maintenance_severity: \"page\" is not a severity: use \"info\", \"warning\" or \"critical\"",
            "alerts.sink[0].min_severity: \"debug\" is not a severity",
        ],
    );
    let config = Config::parse(
        &format!(
            "{TWO_TUNNELS}\n[aws]\nmaintenance_interval = \"1h\"\n[alerts]\nmaintenance_grace = \"10m\"\nmaintenance_severity = \"critical\"\n[[alerts.sink]]\nkind = \"log\"\nmin_severity = \"info\"\n"
        ),
        "t",
    )
    .unwrap();
    assert_eq!(
        config.aws.unwrap().maintenance_interval,
        Duration::from_secs(3600)
    );
    assert_eq!(config.alerts.maintenance_grace, Duration::from_secs(600));
    assert_eq!(
        format!("{:?}", config.alerts.maintenance_severity),
        "Critical"
    );
    assert_eq!(format!("{:?}", config.alerts.sinks[0].min_severity), "Info");
}

#[test]
fn alert_settings_that_would_silently_do_nothing_are_refused() {
    let e = error_of(&format!("{TWO_TUNNELS}\n[alerts]\nsink = []\n"));
    assert_contains(&e, &["alerts.sink: an empty list: alerts would go nowhere"]);
    let silence = "[[alerts.silence]]\nvpn = \"dc-primary\"\ntunnel = \"dc-other\"\nends = \"2099-01-01T00:00:00Z\"\n";
    let e = error_of(&format!("{TWO_TUNNELS}\n[alerts]\n{silence}"));
    assert_contains(
        &e,
        &[
            "alerts.silence[0].tunnel",
            "\"dc-other\" is not the name of a [[vpn.tunnel]]",
        ],
    );
    // A silence that has ended warns; the same one checked before its end does not.
    let silence = "[[alerts.silence]]\nvpn = \"dc-primary\"\nends = \"2026-12-01T06:00:00Z\"\n";
    let text = format!("{TWO_TUNNELS}\n[aws]\n[alerts]\n{silence}");
    let config = Config::parse_at(&text, "t", at("2026-12-01T06:00:00Z")).unwrap();
    assert_eq!(
        config.warnings,
        ["alerts.silence[0] ended at 2026-12-01T06:00:00Z: it silences nothing"]
    );
    let config = Config::parse_at(&text, "t", at("2026-12-01T05:59:59Z")).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let config = Config::parse(TWO_TUNNELS, "t").unwrap();
    assert_contains(
        &config.warnings.join("\n"),
        &["there is no [aws] table: EC2 is not asked"],
    );
}

#[test]
fn mtu_probing_is_on_by_default_with_pinned_targets_and_a_tunnel_may_expect_less() {
    let config = Config::parse(TWO_TUNNELS, "t").unwrap();
    assert!(config.mtu.enabled);
    assert_eq!(config.mtu.interval, Duration::from_secs(60));
    assert_eq!(config.mtu.expected, 1446);
    assert_eq!(config.connections[0].tunnels[1].expected_mtu, 1446);

    let example = Config::parse(&example(), "config/example.toml").unwrap();
    let expected: Vec<u32> = example
        .connections
        .iter()
        .flat_map(|c| c.tunnels.iter().map(|t| t.expected_mtu))
        .collect();
    assert_eq!(expected, vec![1446, 1446, 1446, 1406]);

    // Nothing pinned: nothing to probe, and off.
    let shared_only = "[[target]]\naddress = \"10.0.0.1\"\n";
    assert!(!Config::parse(shared_only, "t").unwrap().mtu.enabled);
    let config = Config::parse(
        &format!("[mtu]\nenabled = false\ninterval = \"10s\"\nexpected = 1400\n{TWO_TUNNELS}"),
        "t",
    )
    .unwrap();
    assert_eq!(
        (config.mtu.enabled, config.mtu.interval, config.mtu.expected),
        (false, Duration::from_secs(10), 1400)
    );
    assert_eq!(config.connections[0].tunnels[0].expected_mtu, 1400);
}

#[test]
fn mtu_settings_out_of_range_are_errors_naming_the_key() {
    let e = error_of(&format!(
        "[mtu]\ninterval = \"5s\"\nexpected = 9000\n{}",
        TWO_TUNNELS.replace(
            "name = \"dc-primary-b\"\n",
            "name = \"dc-primary-b\"\n  mtu = 500\n"
        )
    ));
    assert_contains(
        &e,
        &[
            "line 2, column 12: mtu.interval: 5s is out of range: it must be between 10s and 1day",
            "line 3, column 12: mtu.expected: 9000 is out of range: the IP packet size that should cross a tunnel must be between 576 and 1500 bytes",
            "vpn[0].tunnel[1].mtu: 500 is out of range",
        ],
    );
    assert_contains(
        &error_of(&format!("[mtu]\nsize = 1\n{TWO_TUNNELS}")),
        &["size"],
    );
}

#[test]
fn brownout_settings_default_parse_and_name_what_is_wrong() {
    let config = Config::parse(TWO_TUNNELS, "t").unwrap();
    assert_eq!(config.alerts.lossy.window, Duration::from_secs(300));
    assert_eq!(config.alerts.lossy.threshold.0, 0.05);
    assert_eq!(config.alerts.slow.window, Duration::from_secs(300));
    assert_eq!(config.alerts.slow.factor.0, 3.0);
    let text = format!(
        "[alerts.lossy]\nwindow = \"30s\"\nthreshold = \"7.5%\"\n[alerts.slow]\nwindow = \"2m\"\nfactor = 4.0\n{TWO_TUNNELS}"
    );
    let config = Config::parse(&text, "t").unwrap();
    assert_eq!(config.alerts.lossy.window, Duration::from_secs(30));
    assert_eq!(config.alerts.lossy.threshold.0, 0.075);
    assert_eq!(config.alerts.slow.window, Duration::from_secs(120));
    assert_eq!(config.alerts.slow.factor.0, 4.0);
    for (table, want) in [
        (
            "[alerts.lossy]\nthreshold = \"60%\"\n",
            vec![
                "line 2",
                "alerts.lossy.threshold",
                "60% is out of range",
                "between 0.1% and 50%",
            ],
        ),
        (
            "[alerts.lossy]\nthreshold = \"0.05\"\n",
            vec![
                "alerts.lossy.threshold",
                "\"0.05\" is not a percentage",
                "\"5%\"",
            ],
        ),
        (
            "[alerts.lossy]\nwindow = \"5s\"\n",
            vec![
                "alerts.lossy.window",
                "5s is out of range",
                "between 10s and 1h",
            ],
        ),
        (
            "[alerts.slow]\nfactor = 1.2\n",
            vec![
                "line 2",
                "alerts.slow.factor",
                "1.2 is out of range",
                "between 2 and 100",
            ],
        ),
        (
            "[alerts.slow]\nwindow = \"2h\"\n",
            vec!["alerts.slow.window", "2h is out of range"],
        ),
        (
            "[alerts.slow]\nfactor = \"3\"\n",
            vec!["alerts.slow.factor", "a number", "3.0"],
        ),
        ("[alerts.lossy]\nlimit = \"5%\"\n", vec!["limit"]),
    ] {
        let e = error_of(&format!("{table}{TWO_TUNNELS}"));
        assert_contains(&e, &want);
    }
}

#[test]
fn failover_grace_defaults_to_a_minute_and_is_bounded() {
    let config = Config::parse(TWO_TUNNELS, "t").unwrap();
    assert_eq!(config.alerts.failover_grace, Duration::from_secs(60));
    let e = error_of(&format!(
        "{TWO_TUNNELS}\n[alerts]\nfailover_grace = \"2h\"\n"
    ));
    assert_contains(
        &e,
        &["alerts.failover_grace: 2h is out of range: it must be between 0s and 1h"],
    );
    let e = error_of(&format!("{TWO_TUNNELS}\n[alerts]\nfailover_grace = 30\n"));
    assert_contains(
        &e,
        &["alerts.failover_grace: invalid type: integer `30`, expected a string; failover_grace takes a duration in quotes"],
    );
    let config = Config::parse(
        &format!("{TWO_TUNNELS}\n[alerts]\nfailover_grace = \"20s\"\n"),
        "t",
    )
    .unwrap();
    assert_eq!(config.alerts.failover_grace, Duration::from_secs(20));
}
