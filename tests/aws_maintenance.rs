//! AWS maintenance and advice against the local AWS double: GetVpnTunnelReplacementStatus
//! on /status, metrics, the command line and pages; failing checks backed off; a tunnel
//! down during maintenance paging at the maintenance severity, then escalating; advisories
//! that never page.

mod common;
#[path = "support/ec2_daemon.rs"]
mod ec2_daemon;

use std::time::Duration;

use common::{aws_env, dc_config, write_temp, AwsDouble, Daemon, VPN_ID as ID};
use ec2_daemon::*;
use serde_json::{json, Value};

/// An RFC 3339 time `secs` from now (negative: in the past), as EC2 writes them.
fn from_now(secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if secs >= 0 {
        now + Duration::from_secs(secs as u64)
    } else {
        now - Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_millis(t).to_string()
}

fn alert<'a>(json: &'a Value, class: &str, tunnel: &str) -> Option<&'a Value> {
    json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == class && a["tunnel"] == tunnel)
}

#[test]
fn aws_maintenance_shows_on_status_metrics_and_the_command_line_and_pages_at_info() {
    let double = AwsDouble::start();
    // Two weeks ahead of today, in whole seconds: the test must not change when a fixed
    // date passes (maintenance past its auto-apply time means something else).
    let auto_at = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(14 * 86_400),
    )
    .to_string();
    let auto = auto_at.replace('Z', ".000Z");
    let auto_unix = humantime::parse_rfc3339(&auto_at)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let auto = auto.as_str();
    let mut a = tunnel("52.2.144.13", "UP", "");
    a["maintenance"] = json!({ "pending": "Pending", "auto_apply_after": auto });
    let mut b = tunnel("52.2.144.14", "UP", "");
    b["maintenance"] = json!({ "last_applied": "2026-10-01T02:00:00.000Z" });
    double.set_connections(&connection(a, b));
    let daemon = start(&double, "");
    // Once at start, one call per tunnel, soon after the first DescribeVpnConnections.
    let json = wait_json(&daemon, Duration::from_secs(8), |j| {
        j["connections"][0]["tunnels"][1]["maintenance"]["checked_at"].is_string()
            && alert(j, "TunnelMaintenancePending", "dc-a").is_some()
    });
    let m = &json["connections"][0]["tunnels"][0]["maintenance"];
    assert_eq!(m["pending"], "Pending");
    assert_eq!(m["auto_apply_after"], auto);
    assert_eq!(
        json["connections"][0]["tunnels"][1]["maintenance"]["last_applied"],
        "2026-10-01T02:00:00.000Z"
    );
    let page = alert(&json, "TunnelMaintenancePending", "dc-a").unwrap();
    assert_eq!(page["severity"], "info");
    assert_eq!(page["state"], "firing");
    assert_eq!(
        page["summary"],
        format!("AWS maintenance pending, applied automatically after {auto_at}")
    );
    assert!(alert(&json, "TunnelMaintenancePending", "dc-b").is_none());

    let calls = double.requests("ec2_maintenance");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let asked: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| {
            (
                c["params"]["VpnConnectionId"].as_str().unwrap(),
                c["params"]["VpnTunnelOutsideIpAddress"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(asked, [(ID, "52.2.144.13"), (ID, "52.2.144.14")]);
    assert!(
        calls[1]["at_ms"].as_f64().unwrap() - calls[0]["at_ms"].as_f64().unwrap() >= 900.0,
        "spread out"
    );

    let (_, metrics) = daemon.get("/metrics");
    let auto_line = format!(
        "tunnelkeeper_tunnel_maintenance_auto_apply_timestamp_seconds{{tunnel=\"dc-a\",vpn=\"dc\"}} {auto_unix}"
    );
    for line in [
        "tunnelkeeper_tunnel_maintenance_pending{tunnel=\"dc-a\",vpn=\"dc\"} 1",
        "tunnelkeeper_tunnel_maintenance_pending{tunnel=\"dc-b\",vpn=\"dc\"} 0",
        auto_line.as_str(),
        "tunnelkeeper_tunnel_maintenance_auto_apply_timestamp_seconds{tunnel=\"dc-b\",vpn=\"dc\"} 0",
        "tunnelkeeper_tunnel_maintenance_last_applied_timestamp_seconds{tunnel=\"dc-b\",vpn=\"dc\"} 1790820000",
        "tunnelkeeper_ec2_maintenance_requests_total{outcome=\"ok\"} 2",
        "tunnelkeeper_alerts_firing{alert=\"TunnelMaintenancePending\",severity=\"info\",tunnel=\"dc-a\",vpn=\"dc\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    let (_, health) = daemon.get("/health");
    assert!(
        health.contains(&format!("maintenance: tunnel dc-a: AWS endpoint replacement pending (Pending), applied automatically after {auto_at}")),
        "{health}"
    );
    let (code, table, _) = common::run_cli(&["status", "--addr", &daemon.addr.to_string()]);
    assert_eq!(code, 0);
    assert!(
        table.contains(&format!(
            "dc-a               Pending                  {auto_at} -"
        )),
        "{table}"
    );
    // Info reaches no sink by default (min_severity warning): nothing in the log.
    assert!(!daemon.log().contains("ALERT [INFO]"));
}

#[test]
fn maintenance_checks_that_fail_are_counted_and_back_off() {
    let double = AwsDouble::start();
    double.set_connections(&connection(
        tunnel("52.2.144.13", "UP", ""),
        tunnel("52.2.144.14", "UP", ""),
    ));
    double.fail("ec2_maintenance", "throttle", None);
    let daemon = start(&double, "maintenance_interval = \"60s\"");
    let json = wait_json(&daemon, Duration::from_secs(8), |j| {
        j["control_plane"]["maintenance_errors"]["throttled"] == 1
    });
    assert!(json["control_plane"]["maintenance_last_error"]
        .as_str()
        .unwrap()
        .starts_with("throttled"));
    // Backing off (2 x 30 s): no second call for a while; DescribeVpnConnections goes on.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(double.requests("ec2_maintenance").len(), 1);
    assert!(double.requests("ec2").len() >= 2);
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains("tunnelkeeper_ec2_maintenance_requests_total{outcome=\"throttled\"} 1")
    );
    assert!(daemon
        .log()
        .contains("EC2 GetVpnTunnelReplacementStatus failed"));
}

#[test]
fn a_tunnel_down_during_aws_maintenance_pages_at_the_maintenance_severity_then_escalates() {
    let double = AwsDouble::start();
    // Maintenance pending on dc-b, past its auto-apply time: AWS may replace the endpoint
    // any moment now.
    let maintenance = json!({ "pending": "Pending", "auto_apply_after": from_now(-3600) });
    let mut b = tunnel("52.2.144.14", "UP", "");
    b["maintenance"] = maintenance.clone();
    b["startup_action"] = json!("add");
    double.set_connections(&connection(tunnel("52.2.144.13", "UP", ""), b));
    let extra = "[alerts]\nmaintenance_grace = \"12s\"\n[[alerts.sink]]\nkind = \"log\"\nmin_severity = \"info\"\n";
    let path = write_temp(
        "aws.toml",
        &dc_config(
            &double,
            "region = \"us-east-1\"",
            ["127.0.1.1", "127.0.1.2"],
            extra,
        ),
    );
    let daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &aws_env());
    wait_json(&daemon, Duration::from_secs(8), |j| {
        j["connections"][0]["tunnels"][1]["maintenance"]["pending"] == "Pending"
    });

    // AWS replaces dc-b's endpoint: EC2 says DOWN.
    let mut down = tunnel("52.2.144.14", "DOWN", "IPSEC IS DOWN");
    down["last_status_change"] = json!(from_now(0));
    down["maintenance"] = maintenance;
    down["startup_action"] = json!("add");
    double.set_connections(&connection(tunnel("52.2.144.13", "UP", ""), down));
    let json = wait_json(&daemon, Duration::from_secs(8), |j| {
        alert(j, "TunnelDownAfterMaintenance", "dc-b").is_some_and(|a| a["state"] == "firing")
    });
    let page = alert(&json, "TunnelDownAfterMaintenance", "dc-b").unwrap();
    assert_eq!(page["severity"], "info");
    assert_eq!(
        page["summary"],
        "down after AWS tunnel endpoint replacement"
    );
    let reason = page["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("AWS tunnel endpoint replacement: maintenance was pending"),
        "{reason}"
    );
    assert!(reason.contains("StartupAction=add: after a replacement AWS waits for the customer gateway to start IKE"), "{reason}");
    assert!(
        alert(&json, "TunnelDown", "dc-b").is_none(),
        "no TunnelDown page during the grace: {json}"
    );
    assert!(daemon.log().contains(
        "ALERT [INFO] TunnelDownAfterMaintenance dc-b: down after AWS tunnel endpoint replacement"
    ));

    // Still down after the grace: TunnelDown at its own severity, saying why.
    let json = wait_json(&daemon, Duration::from_secs(16), |j| {
        alert(j, "TunnelDown", "dc-b").is_some_and(|a| a["state"] == "firing")
    });
    let page = alert(&json, "TunnelDown", "dc-b").unwrap();
    assert_eq!(page["severity"], "warning");
    assert_eq!(
        page["summary"],
        "still down 12s after AWS tunnel endpoint replacement"
    );
    assert!(daemon.log().contains(
        "ALERT [WARNING] TunnelDown dc-b: still down 12s after AWS tunnel endpoint replacement"
    ));
    assert_eq!(
        alert(&json, "TunnelDownAfterMaintenance", "dc-b").unwrap()["state"],
        "firing",
        "held until the outage ends"
    );
}

#[test]
fn advisories_cover_tunnel_options_and_route_health_without_paging() {
    let double = AwsDouble::start();
    let mut a = tunnel("52.2.144.13", "UP", "");
    a["log_enabled"] = json!(true);
    a["bgp_log_enabled"] = json!(true);
    a["accepted_route_count"] = json!(95);
    let mut b = tunnel("52.2.144.14", "UP", "");
    b["dpd_timeout_seconds"] = json!(10);
    b["ike_versions"] = json!(["ikev1", "ikev2"]);
    b["accepted_route_count"] = json!(95);
    double.set_connections(&connection(a.clone(), b.clone()));
    let daemon = start(&double, "");
    let codes = |j: &Value, tunnel: &str| -> Vec<String> {
        let mut c: Vec<String> = j["advisories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["tunnel"] == tunnel)
            .map(|a| a["code"].as_str().unwrap().to_string())
            .collect();
        c.sort();
        c
    };
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["advisories"].is_array()
    });
    assert_eq!(
        codes(&json, "dc-a"),
        ["routes_near_limit", "tunnel_options_differ"]
    );
    assert_eq!(
        codes(&json, "dc-b"),
        [
            "dpd_timeout_short",
            "ikev1_startup_start",
            "routes_near_limit",
            "tunnel_logging_off",
            "tunnel_options_differ"
        ]
    );
    // Tunnel b loses routes: a drop from its recent maximum, and the tunnels disagree.
    b["accepted_route_count"] = json!(60);
    double.set_connections(&connection(a, b));
    let json = wait_json(&daemon, Duration::from_secs(7), |j| {
        codes(j, "dc-b").contains(&"routes_dropped".to_string())
    });
    assert!(codes(&json, "dc-a").contains(&"routes_asymmetric".to_string()));
    let dropped = json["advisories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["code"] == "routes_dropped")
        .unwrap();
    assert!(
        dropped["message"]
            .as_str()
            .unwrap()
            .contains("60 BGP routes on this tunnel, down from 95"),
        "{dropped}"
    );
    assert!(
        json["alerts"].as_array().unwrap().is_empty(),
        "advice never pages"
    );
    let (_, metrics) = daemon.get("/metrics");
    for line in [
        "tunnelkeeper_tunnel_advisory{code=\"routes_dropped\",tunnel=\"dc-b\",vpn=\"dc\"} 1",
        "tunnelkeeper_tunnel_advisory{code=\"routes_dropped\",tunnel=\"dc-a\",vpn=\"dc\"} 0",
        "tunnelkeeper_tunnel_advisory{code=\"dpd_timeout_short\",tunnel=\"dc-b\",vpn=\"dc\"} 1",
        "tunnelkeeper_tunnel_advisory{code=\"routes_near_limit\",tunnel=\"dc-b\",vpn=\"dc\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing");
    }
}

#[test]
#[ignore = "needs promtool (prometheus)"]
fn metrics_with_aws_pass_promtool_check_metrics() {
    use std::io::Write;
    common::need_tool("promtool", "prometheus");
    let double = AwsDouble::start();
    let mut a = tunnel("52.2.144.13", "UP", "");
    a["maintenance"] = json!({ "pending": "Pending", "auto_apply_after": from_now(14 * 86_400) });
    double.set_connections(&connection(a, tunnel("52.2.144.14", "UP", "")));
    let daemon = start(&double, "cloudwatch_namespace = \"Tunnelkeeper\"");
    wait_json(&daemon, Duration::from_secs(8), |j| {
        j["connections"][0]["tunnels"][1]["maintenance"].is_object()
    });
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("tunnelkeeper_tunnel_advisory{"));
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool said:\n{said}"
    );
}
