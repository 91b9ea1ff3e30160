//! The daemon against the local AWS double: EC2 tunnel status joins the health model,
//! failures back off and go stale (never down), secrets never leak, and CloudWatch gets
//! its figures and heartbeat in the protocol the pinned SDK speaks.

mod common;

use std::time::Duration;

use common::{aws_env, dc_config, write_temp, AwsDouble, Daemon, VPN_ID as ID};
use serde_json::{json, Value};

const PSK: &str = "tk-TOP-SECRET-psk-8f3a9c";

fn config(double: &AwsDouble, extra: &str) -> String {
    let aws = format!("region = \"us-east-1\"\n{extra}");
    dc_config(double, &aws, ["127.0.1.1", "127.0.1.2"], "")
}

fn tunnel(ip: &str, status: &str, message: &str) -> Value {
    json!({
        "outside_ip": ip, "status": status, "status_message": message,
        "last_status_change": "2026-11-01T08:00:00.000Z", "accepted_route_count": 2,
        "startup_action": "start", "dpd_timeout_action": "restart", "dpd_timeout_seconds": 30,
        "ike_versions": ["ikev2"], "pre_shared_key": PSK,
    })
}

fn connection(a: Value, b: Value) -> Value {
    json!([{
        "id": ID,
        "customer_gateway_configuration": format!("<vpn_connection><ike><pre_shared_key>{PSK}</pre_shared_key></ike></vpn_connection>"),
        "tunnels": [a, b],
    }])
}

fn start(double: &AwsDouble, extra: &str) -> Daemon {
    let path = write_temp("aws.toml", &config(double, extra));
    let mut env = aws_env();
    env.push(("RUST_LOG", "trace"));
    Daemon::start(&["run", "--config", path.to_str().unwrap()], &env)
}

fn status(daemon: &Daemon) -> Value {
    serde_json::from_str(&daemon.get("/status").1).unwrap()
}

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
    assert_eq!(requests[0]["params"]["VpnConnectionId.1"], ID);
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

    // Good answer at 0 s, throttled at ~5 s, next try only after 2 intervals (~15 s): the
    // answer is older than 3 intervals from ~15 s on.
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

    // Calls so far: the first, the throttled one at ~5 s, and at most one more; without
    // backoff there would have been four.
    let calls = double.requests("ec2").len();
    assert!((2..=3).contains(&calls), "{calls} calls in ~17 s");
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("tunnelkeeper_ec2_requests_total{outcome=\"throttled\"}"));
    assert!(metrics.contains("tunnelkeeper_control_plane_stale 1"));
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
        j["control_plane"]["errors"]["not_found"] == 1
    });
    assert!(json["control_plane"]["last_error"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
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

fn wait_json(daemon: &Daemon, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let (_, body) = daemon.wait_for("/status", limit, |_, b| {
        serde_json::from_str::<Value>(b).is_ok_and(|j| check(&j))
    });
    serde_json::from_str(&body).unwrap()
}

#[test]
fn without_aws_nothing_aws_starts() {
    let daemon = Daemon::start(&[], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    let json = status(&daemon);
    assert!(json.get("control_plane").is_none());
    let (_, metrics) = daemon.get("/metrics");
    assert!(!metrics.contains("tunnelkeeper_ec2_"));
    assert!(!daemon.log().contains("AWS configured"));
}
