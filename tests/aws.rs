//! The daemon against the local AWS double: EC2 tunnel status joins the health model,
//! failures back off and go stale (never down), secrets never leak, and CloudWatch gets
//! its figures and heartbeat in the protocol the pinned SDK speaks.

mod common;
#[path = "support/ec2_daemon.rs"]
mod ec2_daemon;

use std::time::Duration;

use common::{aws_env, dc_config, write_temp, AwsDouble, Daemon, VPN_ID as ID};
use ec2_daemon::*;
use serde_json::{json, Value};

#[test]
fn a_tunnel_turning_down_in_ec2_shows_on_health_within_one_poll() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    let daemon = start(&double, "");
    daemon.wait_for("/health", Duration::from_secs(5), |s, b| {
        s == 200 && b.contains("tunnel dc-b: up") && b.contains("control plane up")
    });

    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "DOWN", "IPSEC IS DOWN"),
    ));
    // One poll interval (5 s) plus its jitter (at most a tenth) and a margin.
    let (_, body) = daemon.wait_for("/health", Duration::from_secs(7), |_, b| {
        b.starts_with("TUNNELKEEPER DEGRADED")
    });
    assert!(body.contains("tunnel dc-b: down since 2026-11-01T08:00:00Z: AWS reports DOWN: IPSEC IS DOWN (data plane up, control plane down)"), "{body}");

    let json = status(&daemon);
    let b = &json["connections"][0]["tunnels"][1];
    assert_eq!(b["control_plane"]["state"], "down");
    assert_eq!(b["aws"]["telemetry"]["status_message"], "IPSEC IS DOWN");
    assert_eq!(b["aws"]["options"]["startup_action"], "start");
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("tunnelkeeper_tunnel_plane_state{plane=\"control\",state=\"down\",tunnel=\"dc-b\",vpn=\"dc\"} 1"));
    assert!(metrics.contains("tunnelkeeper_tunnel_accepted_routes{tunnel=\"dc-a\",vpn=\"dc\"} 2"));
}

#[test]
fn one_call_per_interval_covers_every_connection() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    let daemon = start(&double, "");
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane up")
    });
    let requests = double.requests("ec2");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["params"]["Filter.1.Name"], "vpn-connection-id");
    assert_eq!(requests[0]["params"]["Filter.1.Value.1"], ID);
    assert_eq!(requests[0]["params"]["Action"], "DescribeVpnConnections");
}

#[test]
fn telemetry_listed_in_reverse_order_still_joins_the_right_tunnel() {
    let double = AwsDouble::start();
    let mut answer = connection(
        tunnel("52.2.144.13", "DOWN", "PHASE 1 DOWN"),
        tunnel("52.2.144.14", "UP", ""),
    );
    answer[0]["telemetry_reversed"] = json!(true);
    double.set_connections(&answer);
    let daemon = start(&double, "");
    let (_, body) = daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane down")
    });
    assert!(
        body.contains(
            "tunnel dc-a: down since 2026-11-01T08:00:00Z: AWS reports DOWN: PHASE 1 DOWN"
        ),
        "{body}"
    );
    assert!(body.contains("tunnel dc-b: up"), "{body}");
}

#[test]
fn throttling_backs_off_and_a_stale_answer_is_unknown_not_down() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    let daemon = start(&double, "");
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane up")
    });
    double.fail("ec2", "throttle", None);

    // Good answer at 0 s, throttled at ~5 s, ~12.5 s and at the 15 s limit itself (the
    // poller never waits past the limit while the answer is fresh): stale just after.
    let (status, body) = daemon.wait_for("/health", Duration::from_secs(20), |_, b| {
        b.contains("control plane: stale")
    });
    assert_eq!(
        status, 200,
        "an API outage says nothing of the tunnels: {body}"
    );
    assert!(body.starts_with("TUNNELKEEPER OK"), "{body}");
    assert!(body.contains("tunnel dc-a: up since"), "{body}");
    assert!(body.contains("control plane unknown"), "{body}");

    let json = status_after(&daemon);
    assert_eq!(json["control_plane"]["stale"], true);
    assert!(
        json["control_plane"]["errors"]["throttled"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let reason = json["connections"][0]["tunnels"][0]["control_plane"]["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.starts_with("stale: no EC2 answer for") && reason.contains("throttled"),
        "{reason}"
    );

    // Calls so far: the first and three throttled ones. Stale, the poller backs off in
    // full (4 intervals): no call in the next 8 s.
    let calls = double.requests("ec2").len();
    assert!((3..=4).contains(&calls), "{calls} calls until stale");
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        double.requests("ec2").len(),
        calls,
        "backing off once stale"
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("tunnelkeeper_ec2_requests_total{outcome=\"throttled\"}"));
    assert!(metrics.contains("tunnelkeeper_control_plane_stale 1"));
}

#[test]
fn two_throttled_calls_in_a_row_leave_the_answer_fresh() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    let daemon = start(&double, "");
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane up")
    });
    double.fail("ec2", "throttle", Some(2));
    // With a backoff of 2 then 4 intervals the answer (limit 15 s) would go stale; the
    // third try comes at the limit and its answer is awaited.
    let until = std::time::Instant::now() + Duration::from_secs(22);
    while std::time::Instant::now() < until {
        let json = status(&daemon);
        assert_eq!(
            json["control_plane"]["stale"], false,
            "went stale after two throttled calls: {json}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let json = status(&daemon);
    assert_eq!(json["control_plane"]["errors"]["throttled"], 2);
    assert!(json["control_plane"]["next_answer_due"].is_string());
    let calls = double.requests("ec2");
    assert!(calls.len() >= 4, "{}", calls.len());
    assert!(calls
        .iter()
        .take(3)
        .skip(1)
        .all(|c| c["failed"] == "throttle"));
}

fn status_after(daemon: &Daemon) -> Value {
    status(daemon)
}

#[test]
fn garbage_and_5xx_answers_are_counted_and_the_last_good_answer_kept() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "DOWN", "IPSEC IS DOWN"),
    ));
    let daemon = start(&double, "");
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane down")
    });
    double.fail("ec2", "garbage", Some(1));
    let json = wait_json(&daemon, Duration::from_secs(8), |j| {
        j["control_plane"]["errors"]["unparsable"] == 1
    });
    assert_eq!(
        json["connections"][0]["tunnels"][1]["control_plane"]["state"], "down",
        "last good answer kept"
    );
    assert!(json["control_plane"]["last_error"]
        .as_str()
        .unwrap()
        .starts_with("unparsable"));
}

#[test]
fn an_answer_that_hangs_times_out() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    double.fail("ec2", "hang", Some(1));
    let daemon = start(&double, "");
    // The call timeout is the poll interval (5 s) here.
    wait_json(&daemon, Duration::from_secs(9), |j| {
        j["control_plane"]["errors"]["timeout"] == 1
    });
}

#[test]
fn a_malformed_timestamp_fails_the_call_without_crashing() {
    let double = AwsDouble::start();
    let mut bad = tunnel("52.2.144.14", "UP", "");
    bad["last_status_change"] = json!("yesterday-ish");
    double.set_connections(&connection(tunnel("52.2.144.13", "UP", ""), bad));
    let daemon = start(&double, "");
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["control_plane"]["errors"]["unparsable"] == 1
    });
    assert_eq!(
        json["connections"][0]["tunnels"][0]["control_plane"]["state"],
        "unknown"
    );
    assert_eq!(daemon.get("/-/healthy").0, 200);
}

#[test]
fn missing_connections_and_unknown_outside_ips_are_problems_not_up() {
    let double = AwsDouble::start();
    // EC2 knows the connection but lists other outside IPs for tunnel b.
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.99", "UP", ""),
    ));
    let daemon = start(&double, "");
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["control_plane"]["last_success"].is_string()
    });
    let problems = json["control_plane"]["problems"].to_string();
    assert!(
        problems.contains(
            "lists no tunnel with outside IP 52.2.144.14 (it lists 52.2.144.13, 52.2.144.99)"
        ),
        "{problems}"
    );
    assert_eq!(
        json["connections"][0]["tunnels"][1]["control_plane"]["state"],
        "unknown"
    );
    assert!(daemon.log().contains("EC2 control plane problem"));

    let mut deleted = connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    );
    deleted[0]["state"] = json!("deleted");
    double.set_connections(&deleted);
    let json = wait_json(&daemon, Duration::from_secs(7), |j| {
        j["control_plane"]["problems"]
            .to_string()
            .contains("is deleted in EC2")
    });
    assert_eq!(
        json["connections"][0]["tunnels"][0]["control_plane"]["state"],
        "unknown"
    );
    assert_eq!(
        json["connections"][0]["tunnels"][0]["state"], "up",
        "pings still pass"
    );
}

#[test]
fn a_connection_id_ec2_does_not_know_is_reported() {
    let double = AwsDouble::start();
    double.set_connections(&json!([]));
    let daemon = start(&double, "");
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["control_plane"]["last_success"].is_string()
    });
    assert_eq!(
        json["control_plane"]["errors"]["not_found"], 0,
        "no failed call"
    );
    assert_eq!(
        json["control_plane"]["connections_not_found"],
        json!([{ "vpn": "dc", "vpn_id": ID, "state": "missing" }])
    );
}

#[test]
fn an_unknown_connection_id_next_to_known_ones_blinds_only_itself() {
    let double = AwsDouble::start();
    // EC2 knows dc (tunnel b DOWN) and not `old`: a list call would fail as a whole
    // (InvalidVpnConnectionID.NotFound); the filter answers what exists.
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "DOWN", "IPSEC IS DOWN"),
    ));
    let old = "vpn-0aaaaaaaaaaaaaaaa";
    let rest = format!(
        "[[vpn]]\nid = \"{old}\"\nname = \"old\"\n  [[vpn.tunnel]]\n  name = \"old-a\"\n  outside_ip = \"34.193.10.21\"\n  targets = [\"127.0.1.3\"]\n"
    );
    let config = dc_config(
        &double,
        "region = \"us-east-1\"",
        ["127.0.1.1", "127.0.1.2"],
        &rest,
    );
    let path = write_temp("aws.toml", &config);
    let daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &aws_env());
    let (_, body) = daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane down")
    });
    assert!(
        body.contains(
            "tunnel dc-b: down since 2026-11-01T08:00:00Z: AWS reports DOWN: IPSEC IS DOWN"
        ),
        "AWS's DOWN for a known tunnel reaches /health: {body}"
    );
    assert!(
        body.contains(&format!(
            "control plane problem: connection old ({old}) is not in EC2's answer"
        )),
        "{body}"
    );
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["alert"] == "ConnectionNotFound")
    });
    assert_eq!(
        json["control_plane"]["connections_not_found"],
        json!([{ "vpn": "old", "vpn_id": old, "state": "missing" }])
    );
    assert_eq!(json["control_plane"]["errors"]["not_found"], 0);
    assert_eq!(
        json["connections"][1]["tunnels"][0]["control_plane"]["state"],
        "unknown"
    );
    let alert = json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "ConnectionNotFound")
        .unwrap();
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["vpn"], "old");
    assert_eq!(alert["state"], "firing");
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains(&format!(
        "tunnelkeeper_connection_not_found{{vpn=\"old\",vpn_id=\"{old}\"}} 1"
    )));
    assert!(metrics.contains(&format!(
        "tunnelkeeper_connection_not_found{{vpn=\"dc\",vpn_id=\"{ID}\"}} 0"
    )));
    let log = daemon.log();
    assert!(
        log.contains("EC2 control plane problem") && log.contains(old),
        "{log}"
    );
    assert!(
        log.contains("ALERT [WARNING] ConnectionNotFound old"),
        "{log}"
    );
    // One call, with a filter: never the list that fails as a whole.
    let call = &double.requests("ec2")[0]["params"];
    assert_eq!(call["Filter.1.Name"], "vpn-connection-id");
    assert_eq!(call["Filter.1.Value.1"], ID);
    assert_eq!(call["Filter.1.Value.2"], old);
    assert!(call.get("VpnConnectionId.1").is_none(), "{call}");
}

#[test]
fn tunnel_options_that_wait_for_the_datacenter_are_a_warning_and_a_metric() {
    let double = AwsDouble::start();
    let mut passive = tunnel("52.2.144.14", "UP", "");
    passive["startup_action"] = json!("add");
    passive["dpd_timeout_action"] = json!("clear");
    double.set_connections(&connection(tunnel("52.2.144.13", "UP", ""), passive));
    let daemon = start(&double, "");
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["warnings"].to_string().contains("StartupAction=add")
    });
    assert!(json["warnings"].to_string().contains("tunnel dc-b"));
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics
        .contains("tunnelkeeper_tunnel_recovery_needs_datacenter{tunnel=\"dc-b\",vpn=\"dc\"} 1"));
    assert!(metrics
        .contains("tunnelkeeper_tunnel_recovery_needs_datacenter{tunnel=\"dc-a\",vpn=\"dc\"} 0"));
}

#[test]
fn bgp_up_with_zero_accepted_routes_is_its_own_reason() {
    let double = AwsDouble::start();
    let mut no_routes = tunnel("52.2.144.14", "UP", "");
    no_routes["accepted_route_count"] = json!(0);
    double.set_connections(&connection(tunnel("52.2.144.13", "UP", ""), no_routes));
    let daemon = start(&double, "");
    let (_, body) = daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane down")
    });
    assert!(
        body.contains(
            "tunnel dc-b: down since 2026-11-01T08:00:00Z: BGP up with zero accepted routes"
        ),
        "{body}"
    );
}

#[test]
fn the_pre_shared_key_appears_nowhere() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "DOWN", "x"),
    ));
    let daemon = start(
        &double,
        "cloudwatch_namespace = \"Tunnelkeeper\"\ncloudwatch_interval = \"1s\"",
    );
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("control plane down")
    });
    std::thread::sleep(Duration::from_millis(1500));
    // The planted key really went out in the answer...
    assert_eq!(double.requests("ec2").len(), 1);
    // ...and comes back nowhere, though the daemon logs at TRACE.
    let log = daemon.log();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the test must run with verbose logs"
    );
    for (what, text) in [
        ("log", log),
        ("/status", daemon.get("/status").1),
        ("/metrics", daemon.get("/metrics").1),
        ("/health", daemon.get("/health").1),
    ] {
        assert!(!text.contains(PSK), "the pre-shared key leaked into {what}");
        assert!(
            !text.contains("pre_shared_key"),
            "the customer gateway configuration leaked into {what}"
        );
    }
    let published = double
        .requests("cloudwatch")
        .iter()
        .map(Value::to_string)
        .collect::<String>();
    assert!(!published.contains(PSK));
}

#[test]
fn cloudwatch_gets_figures_and_a_heartbeat_in_rpc_v2_cbor() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "DOWN", "x"),
    ));
    double.fail("cloudwatch", "server_error", Some(1));
    let daemon = start(
        &double,
        "cloudwatch_namespace = \"Tunnelkeeper\"\ncloudwatch_interval = \"2s\"",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let calls = loop {
        let calls = double.requests("cloudwatch");
        if calls.len() >= 3 || std::time::Instant::now() > deadline {
            break calls;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(calls.len() >= 3, "{calls:?}");
    assert_eq!(calls[0]["protocol"], "rpc-v2-cbor");
    assert_eq!(calls[0]["action"], "PutMetricData");
    // The first call failed with a 5xx and was retried.
    let last = &calls[calls.len() - 1]["body"];
    assert_eq!(last["Namespace"], "Tunnelkeeper");
    let data = last["MetricData"].as_array().unwrap();
    let find = |name: &str, tunnel: Option<&str>| {
        data.iter().find(|d| {
            d["MetricName"] == name
                && tunnel.is_none_or(|t| {
                    d["Dimensions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["Name"] == "TunnelName" && x["Value"] == t)
                })
        })
    };
    assert_eq!(find("Heartbeat", None).unwrap()["Value"], 1.0);
    assert_eq!(find("TunnelUp", Some("dc-a")).unwrap()["Value"], 1.0);
    assert_eq!(
        find("TunnelUp", Some("dc-b")).unwrap()["Value"],
        0.0,
        "AWS says dc-b is down"
    );
    assert_eq!(find("HealthyTunnels", None).unwrap()["Value"], 1.0);
    assert_eq!(find("PacketLoss", Some("dc-a")).unwrap()["Unit"], "Percent");
    let dims = find("TunnelUp", Some("dc-a")).unwrap()["Dimensions"].to_string();
    assert!(dims.contains(ID), "{dims}");
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains("tunnelkeeper_cloudwatch_requests_total{outcome=\"server_error\"} 1"),
        "{metrics}"
    );
}

#[test]
fn without_aws_nothing_aws_starts() {
    let daemon = Daemon::start(&[], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    let json = status(&daemon);
    assert!(json["control_plane"].is_null());
    // The EC2 series exist from the start all the same, saying "never answered".
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("tunnelkeeper_ec2_requests_total{outcome=\"ok\"} 0"));
    assert!(metrics.contains("tunnelkeeper_ec2_last_success_timestamp_seconds 0"));
    assert!(metrics.contains("tunnelkeeper_ec2_answer_age_seconds -1"));
    assert!(!daemon.log().contains("AWS configured"));
}

#[test]
fn ec2_denying_access_from_the_start_is_control_plane_unavailable_naming_the_action() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    double.fail("ec2", "access_denied", None);
    let text = dc_config(
        &double,
        "region = \"us-east-1\"",
        ["127.0.1.1", "127.0.1.2"],
        "[alerts]\ncontrol_plane_unavailable_after = \"2s\"\n",
    );
    let path = write_temp("denied.toml", &text);
    let daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &aws_env());
    let json = wait_json(&daemon, Duration::from_secs(15), |j| {
        j["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["alert"] == "ControlPlaneUnavailable" && a["state"] == "firing")
    });
    let alert = json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "ControlPlaneUnavailable")
        .unwrap();
    assert_eq!(alert["severity"], "warning");
    assert_eq!(
        alert["summary"],
        "EC2 API unavailable: access denied",
        "{}\n{}",
        json["control_plane"],
        daemon.log()
    );
    let reason = alert["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("access denied: the role may not call ec2:DescribeVpnConnections"),
        "{reason}"
    );
    assert!(reason.contains("the pings decide alone"), "{reason}");
    // The pings decide alone: the tunnels are up by their word, the VPN OK, no other alert.
    assert_eq!(json["vpn"]["state"], "ok");
    assert_eq!(json["alerts"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(
        json["control_plane"]["errors"]["auth"]
            .as_u64()
            .map(|n| n > 0),
        Some(true)
    );
}
