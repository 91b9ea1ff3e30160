//! What the AWS-double tests share: a dc config polled through the double, EC2 answers
//! built as JSON, and a daemon started against them.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use super::common::{aws_env, dc_config, write_temp, AwsDouble, Daemon, VPN_ID as ID};

pub const PSK: &str = "tk-TOP-SECRET-psk-8f3a9c";

pub fn config(double: &AwsDouble, extra: &str) -> String {
    let aws = format!("region = \"us-east-1\"\n{extra}");
    dc_config(double, &aws, ["127.0.1.1", "127.0.1.2"], "")
}

pub fn tunnel(ip: &str, status: &str, message: &str) -> Value {
    json!({
        "outside_ip": ip, "status": status, "status_message": message,
        "last_status_change": "2026-11-01T08:00:00.000Z", "accepted_route_count": 2,
        "startup_action": "start", "dpd_timeout_action": "restart", "dpd_timeout_seconds": 30,
        "ike_versions": ["ikev2"], "pre_shared_key": PSK,
    })
}

pub fn connection(a: Value, b: Value) -> Value {
    json!([{
        "id": ID,
        "customer_gateway_configuration": format!("<vpn_connection><ike><pre_shared_key>{PSK}</pre_shared_key></ike></vpn_connection>"),
        "tunnels": [a, b],
    }])
}

pub fn start(double: &AwsDouble, extra: &str) -> Daemon {
    let path = write_temp("aws.toml", &config(double, extra));
    let mut env = aws_env();
    env.push(("RUST_LOG", "trace"));
    Daemon::start(&["run", "--config", path.to_str().unwrap()], &env)
}

pub fn status(daemon: &Daemon) -> Value {
    serde_json::from_str(&daemon.get("/status").1).unwrap()
}

pub fn wait_json(daemon: &Daemon, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let (_, body) = daemon.wait_for("/status", limit, |_, b| {
        serde_json::from_str::<Value>(b).is_ok_and(|j| check(&j))
    });
    serde_json::from_str(&body).unwrap()
}
