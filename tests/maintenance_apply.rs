//! `[maintenance] apply` against the AWS double, which records `ReplaceVpnTunnel` calls
//! and, like AWS, takes the tunnel down while its endpoint is replaced: exactly one call
//! when the sibling was healthy long enough, none while it is down, a page when the
//! replaced tunnel is not back in time, and a dry run that shows its decision and calls
//! nothing.

mod common;
#[path = "support/ec2_daemon.rs"]
mod ec2_daemon;

use std::time::{Duration, Instant};

use common::{AwsDouble, Daemon, VPN_ID as ID};
use ec2_daemon::*;
use serde_json::{json, Value};

/// The `[maintenance]` table of these tests: always inside a window, short waits.
fn maintenance(apply: &str, recovery: &str) -> String {
    format!(
        "\n[maintenance]\napply = \"{apply}\"\nwindow = \"daily 00:00-24:00\"\ntimezone = \"Europe/Paris\"\nsibling_healthy_for = \"10s\"\nrecovery_timeout = \"{recovery}\"\n"
    )
}

/// dc-a with pending maintenance, dc-b `b_status`; both `StartupAction=add`.
fn world(double: &AwsDouble, b_status: &str) {
    let auto = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() + Duration::from_secs(20 * 3600),
    )
    .to_string();
    let mut a = tunnel("52.2.144.13", "UP", "");
    a["maintenance"] = json!({ "pending": "Pending", "auto_apply_after": auto });
    a["startup_action"] = json!("add");
    let mut b = tunnel("52.2.144.14", b_status, "");
    b["startup_action"] = json!("add");
    double.set_connections(&connection(a, b));
}

fn start_with(double: &AwsDouble, apply: &str) -> Daemon {
    start_recovering_within(double, apply, "10s")
}

fn start_recovering_within(double: &AwsDouble, apply: &str, recovery: &str) -> Daemon {
    let text = format!("{}{}", config(double, ""), maintenance(apply, recovery));
    let path = common::write_temp("maintenance.toml", &text);
    let mut env = common::aws_env();
    env.push(("RUST_LOG", "info"));
    Daemon::start(&["run", "--config", path.to_str().unwrap()], &env)
}

fn plan(json: &Value, tunnel: usize) -> &Value {
    &json["connections"][0]["tunnels"][tunnel]["maintenance_plan"]
}

fn alert<'a>(json: &'a Value, class: &str) -> Option<&'a Value> {
    json["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == class && a["tunnel"] == "dc-a")
}

#[test]
fn pending_maintenance_is_applied_once_when_the_other_tunnel_was_healthy_long_enough() {
    let double = AwsDouble::start();
    world(&double, "UP");
    let daemon = start_recovering_within(&double, "when-safe", "40s");
    let started = Instant::now();
    let json = wait_json(&daemon, Duration::from_secs(30), |j| {
        plan(j, 0)["progress"]["state"] == "replacing"
    });
    // Not before dc-b had been healthy (pings and EC2) for sibling_healthy_for.
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert!(plan(&json, 0)["applied_at"].is_string(), "{json}");
    assert_eq!(plan(&json, 0)["startup_add"], true);
    // A few polls more: still one call, for dc-a, with the maintenance applied.
    std::thread::sleep(Duration::from_secs(6));
    let calls = double.requests("ec2_replace");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let p = &calls[0]["params"];
    assert_eq!(p["VpnConnectionId"], ID);
    assert_eq!(p["VpnTunnelOutsideIpAddress"], "52.2.144.13");
    assert_eq!(p["ApplyPendingMaintenance"], "true");
    let json = status(&daemon);
    let page = alert(&json, "MaintenanceReplacing").expect("the replacement's page");
    assert_eq!(page["severity"], "info");
    assert!(
        page["reason"]
            .as_str()
            .unwrap()
            .contains("the datacenter must send traffic into the tunnel"),
        "{page}"
    );
    assert_eq!(plan(&json, 1)["decision"], "idle");
    let (_, metrics) = daemon.get("/metrics");
    for line in [
        "tunnelkeeper_maintenance_replacements_total{result=\"started\"} 1",
        "tunnelkeeper_tunnel_maintenance_decision{decision=\"in_progress\",tunnel=\"dc-a\",vpn=\"dc\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(daemon
        .log()
        .contains("maintenance: tunnel endpoint replacement started"));
    // AWS brings it back (the datacenter started IKE): the replacement is over.
    let mut a = tunnel("52.2.144.13", "UP", "");
    a["last_status_change"] =
        json!(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
    double.set_connections(&connection(a, tunnel("52.2.144.14", "UP", "")));
    let json = wait_json(&daemon, Duration::from_secs(20), |j| {
        plan(j, 0)["outcome"]["result"] == "recovered"
    });
    assert!(alert(&json, "MaintenanceReplaceFailed").is_none(), "{json}");
    assert_eq!(double.requests("ec2_replace").len(), 1);
}

#[test]
fn nothing_is_replaced_while_the_other_tunnel_is_down() {
    let double = AwsDouble::start();
    world(&double, "DOWN");
    let daemon = start_with(&double, "when-safe");
    let started = Instant::now();
    // Longer than sibling_healthy_for: dc-a has been healthy long enough by then.
    let json = wait_json(&daemon, Duration::from_secs(25), |j| {
        plan(j, 0)["decision"] == "wait" && started.elapsed() > Duration::from_secs(14)
    });
    assert!(double.requests("ec2_replace").is_empty());
    let blocked = plan(&json, 0)["blocked_by"].as_array().unwrap().clone();
    assert!(
        blocked.iter().any(|b| b["kind"] == "not_healthy"
            && b["text"].as_str().unwrap().starts_with("dc-b is down")),
        "{blocked:?}"
    );
    // AWS applies it within 20 hours by itself: the page says what blocked it.
    let page = alert(&json, "MaintenanceBlocked").expect("a blocked page");
    assert_eq!(page["severity"], "warning");
    assert!(
        page["reason"]
            .as_str()
            .unwrap()
            .contains("Blocked by: dc-b is down"),
        "{page}"
    );
}

#[test]
fn a_replaced_tunnel_not_back_within_the_timeout_pages() {
    let double = AwsDouble::start();
    world(&double, "UP");
    let daemon = start_with(&double, "when-safe");
    // The double keeps dc-a down after the call, as AWS does with StartupAction=add
    // while the datacenter sends nothing.
    let json = wait_json(&daemon, Duration::from_secs(45), |j| {
        alert(j, "MaintenanceReplaceFailed").is_some_and(|a| a["state"] == "firing")
    });
    let page = alert(&json, "MaintenanceReplaceFailed").unwrap();
    assert_eq!(page["severity"], "warning");
    assert!(
        page["reason"]
            .as_str()
            .unwrap()
            .contains("not back up on both planes 10s after ReplaceVpnTunnel"),
        "{page}"
    );
    assert_eq!(plan(&json, 0)["progress"]["state"], "failed");
    assert_eq!(double.requests("ec2_replace").len(), 1);
}

#[test]
fn dry_run_shows_the_decision_and_calls_nothing() {
    let double = AwsDouble::start();
    world(&double, "UP");
    let daemon = start_with(&double, "dry-run");
    let json = wait_json(&daemon, Duration::from_secs(30), |j| {
        plan(j, 0)["decision"] == "would_apply"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(double.requests("ec2_replace").is_empty());
    assert_eq!(plan(&json, 0)["progress"]["state"], "idle");
    assert!(alert(&json, "MaintenanceReplacing").is_none());
    assert!(
        daemon
            .log()
            .contains("would call ReplaceVpnTunnel now (dry-run: nothing is called)"),
        "{}",
        daemon.log()
    );
}
