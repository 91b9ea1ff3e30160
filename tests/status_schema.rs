//! `/status` against its documented schema (docs/status.schema.json), checked by an
//! independent validator (python3-jsonschema) on real output: the embedded default
//! without AWS, and a daemon polling the AWS double with a tunnel down, maintenance
//! pending, advisories and alerts, and one that refused a reload, so that every optional
//! part is present once.

mod common;
#[path = "support/ec2_daemon.rs"]
mod ec2_daemon;

use std::time::Duration;

use common::{AwsDouble, Daemon};
use ec2_daemon::*;
use serde_json::{json, Value};

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.schema.json");

/// Validates `body` against docs/status.schema.json; panics with every error.
fn validate(body: &str) {
    common::validate_against_schema(SCHEMA, body, "/status");
}

#[test]
#[ignore = "needs python3-jsonschema"]
fn status_matches_its_schema_with_and_without_aws() {
    common::need_jsonschema();
    // The schema refuses what it does not know: a sample with an extra key must fail.
    let daemon = Daemon::start(&["run"], &common::aws_env());
    let status = wait_json(&daemon, Duration::from_secs(10), |j| {
        j["vpn"]["state"] == "ok"
    });
    assert!(status["control_plane"].is_null());
    let body = status.to_string();
    validate(&body);
    let mut extra: Value = serde_json::from_str(&body).unwrap();
    extra["connections"][0]["tunnels"][0]["surprise"] = json!(1);
    let refused = std::panic::catch_unwind(|| validate(&extra.to_string()));
    assert!(refused.is_err(), "the schema let an unknown key through");
    drop(daemon);

    let double = AwsDouble::start();
    let mut a = tunnel("52.2.144.13", "UP", "");
    // Two weeks from today: pending maintenance past its auto-apply time means something
    // else, and the test must not change when a fixed date passes.
    let auto = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() + Duration::from_secs(14 * 86_400),
    )
    .to_string();
    a["maintenance"] = json!({ "pending": "Pending", "auto_apply_after": auto });
    let mut b = tunnel("52.2.144.14", "DOWN", "IPSEC IS DOWN");
    b["dpd_timeout_seconds"] = json!(10);
    b["maintenance"] = json!({ "last_applied": "2026-10-01T02:00:00.000Z" });
    double.set_connections(&connection(a, b));
    let daemon = start(&double, "");
    let json = wait_json(&daemon, Duration::from_secs(10), |j| {
        j["connections"][0]["tunnels"][1]["maintenance"]["checked_at"].is_string()
            && j["alerts"].as_array().is_some_and(|a| a.len() >= 2)
            && j["advisories"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert!(json["control_plane"].is_object());
    assert!(json["connections"][0]["tunnels"][1]["aws"]["telemetry"].is_object());
    validate(&json.to_string());
    drop(daemon);

    // A refused reload fills the reload key's error.
    let path = common::write_temp(
        "refused.toml",
        "[[vpn]]\nname = \"lab\"\n[[vpn.tunnel]]\nname = \"lab-a\"\ntargets = [\"127.0.8.1\"]\n",
    );
    let daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);
    std::fs::write(&path, "[[vpn]]\nname = 1\n").unwrap();
    let addr = daemon.addr.to_string();
    assert_eq!(common::run_cli(&["reload", "--addr", &addr]).0, 1);
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        j["reload"]["ok"] == false
    });
    assert!(json["reload"]["error"].is_string() && json["reload"]["last_attempt"].is_string());
    validate(&json.to_string());
}

/// Every alert class the daemon can raise is a value the schema allows for `alert` (a new
/// class once went out on /status before the schema knew it; no run happened to fire it).
#[test]
fn the_schema_names_every_alert_class() {
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(SCHEMA).unwrap()).unwrap();
    let allowed: Vec<&str> = schema["$defs"]["alert"]["properties"]["alert"]["enum"]
        .as_array()
        .expect("$defs.alert.properties.alert.enum")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let classes: Vec<&str> = tunnelkeeper::types::AlertClass::ALL
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(allowed, classes);
}
