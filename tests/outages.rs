//! The outage log through the real daemon: an outage that AWS reports (through the
//! double) is recorded when it ends, served by `/outages` with its filters, shown on the
//! NOC page, kept across a restart with its minutes, and matches docs/outages.schema.json.

mod common;
#[path = "support/ec2_daemon.rs"]
mod ec2_daemon;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{aws_env, minute_now, wait_past_minute, write_temp, AwsDouble, Daemon, VPN_ID};
use serde_json::Value;

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/outages.schema.json");

fn start(double: &AwsDouble, state: &Path) -> Daemon {
    let path = write_temp("aws.toml", &ec2_daemon::config(double, ""));
    Daemon::start(
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &aws_env(),
    )
}

fn outages(daemon: &Daemon, query: &str) -> Value {
    let (status, body) = daemon.get(&format!("/outages{query}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Has EC2 report dc's tunnels as AWS would after a change now: LastStatusChange is the
/// time of the change (what the outage's record starts from).
fn change_tunnels(double: &AwsDouble, a: &str, b: &str) {
    let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    double.set_tunnels_changed_at(VPN_ID, a, b, &now);
}

/// Takes tunnel dc-a down by AWS's word and back up; returns the record of its outage.
fn record_an_outage(double: &AwsDouble, daemon: &Daemon) -> Value {
    change_tunnels(double, "DOWN", "UP");
    ec2_daemon::wait_json(daemon, Duration::from_secs(20), |j| {
        j["connections"][0]["tunnels"][0]["state"] == "down"
    });
    change_tunnels(double, "UP", "UP");
    let (_, body) = daemon.wait_for("/outages", Duration::from_secs(20), |_, b| {
        serde_json::from_str::<Value>(b)
            .is_ok_and(|j| j["outages"].as_array().is_some_and(|a| !a.is_empty()))
    });
    let json: Value = serde_json::from_str(&body).unwrap();
    json["outages"][0].clone()
}

#[test]
fn an_outage_is_recorded_served_and_kept_across_a_restart() {
    let double = AwsDouble::start();
    double.set_tunnels(VPN_ID, "UP", "UP");
    let state = common::temp_dir("outages");
    let mut daemon = start(&double, &state);
    let record = record_an_outage(&double, &daemon);
    assert_eq!(record["kind"], "tunnel", "{record}");
    assert_eq!(record["tunnels"], serde_json::json!(["dc-a"]));
    assert_eq!(record["planes"], serde_json::json!(["control"]), "{record}");
    assert!(
        record["reason"].as_str().unwrap().contains("IPSEC IS DOWN"),
        "{record}"
    );
    assert!(record["seconds"].as_f64().unwrap() > 0.0, "{record}");
    let id = record["id"].as_str().unwrap().to_string();

    // Filters.
    assert_eq!(
        outages(&daemon, "?tunnel=dc-a")["outages"][0]["id"],
        id.as_str()
    );
    assert_eq!(
        outages(&daemon, "?tunnel=dc-b")["outages"],
        serde_json::json!([])
    );
    assert_eq!(
        outages(&daemon, "?since=2099-01-01T00:00:00Z")["outages"],
        serde_json::json!([])
    );
    let (status, body) = daemon.get("/outages?since=last-night");
    assert_eq!(status, 400);
    assert!(body.contains("since=\"last-night\""), "{body}");
    // The incident bundle: the record, its pages, the minutes of dc-a and its sibling.
    let (status, body) = daemon.get(&format!("/outages/{id}"));
    assert_eq!(status, 200, "{body}");
    let bundle: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(bundle["outage"], record);
    assert_eq!(bundle["pages"], record["pages"]);
    let tunnels: Vec<(&str, &str)> = bundle["tunnels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["tunnel"].as_str().unwrap(), t["role"].as_str().unwrap()))
        .collect();
    assert_eq!(tunnels, [("dc-a", "outage"), ("dc-b", "sibling")], "{body}");
    let sent: u64 = bundle["tunnels"][0]["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sent"].as_u64().unwrap())
        .sum();
    assert!(sent > 0, "the minutes of the pings through dc-a: {body}");
    let (status, csv) = daemon.get(&format!("/outages/{id}?format=csv"));
    assert_eq!(status, 200, "{csv}");
    assert!(
        csv.starts_with("connection,tunnel,role,at,minutes,sent,lost,"),
        "{csv}"
    );
    assert!(csv.contains("\ndc,dc-b,sibling,"), "{csv}");
    assert_eq!(daemon.get(&format!("/outages/{id}?format=xml")).0, 400);
    assert_eq!(daemon.get("/outages/tunnel-1-deadbeef").0, 404);
    let addr = daemon.addr.to_string();
    let (code, out, err) = common::run_cli(&["outages", "--addr", &addr]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("{id}  ")), "{out}");
    let (code, out, err) = common::run_cli(&["outages", "--addr", &addr, "--export", &id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["outage"]["id"],
        id.as_str()
    );
    let (code, out, _) = common::run_cli(&["outages", "--addr", &addr, "--export", &id, "--csv"]);
    assert_eq!(code, 0);
    // The same document but for the minutes still being filled (a probe may land between
    // the two reads).
    let live = newest_minute(&csv);
    assert_eq!(closed_lines(&out, &live), closed_lines(&csv, &live));
    assert!(closed_lines(&csv, &live).len() > 1, "{csv}");
    let (code, _, err) = common::run_cli(&["outages", "--addr", &addr, "--export", "nope"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/outages/nope: no such outage"), "{err}");
    let (_, page) = daemon.get("/");
    assert!(page.contains("Recent outages"), "{page}");
    assert!(page.contains(&format!("/outages/{id}")), "{page}");
    let (_, target) = daemon.get("/target/127.0.1.1");
    assert!(target.contains("Recent outages of tunnel dc-a"), "{target}");
    assert!(target.contains(&format!("/outages/{id}")), "{target}");

    // A restart reads the log back, and the outage's minutes: once the minute it ended in
    // has closed, the bundle after the restart reads from the ring files what the one
    // before read (partly from memory). The minute still open at the stop is not kept.
    wait_past_minute(minute_now());
    let open = minute_start(minute_now());
    let before = rows_before(&bundle_of(&daemon, &id), &open);
    assert!(daemon.stop("TERM", Duration::from_secs(10)).success());
    let daemon = start(&double, &state);
    let after = outages(&daemon, "");
    assert_eq!(after["outages"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["outages"][0], record, "the same record, to the byte");
    let sent: u64 = before.iter().map(|row| row["sent"].as_u64().unwrap()).sum();
    assert!(sent > 0, "dc-a's minutes before {open}: {before:?}");
    let restored = rows_before(&bundle_of(&daemon, &id), &open);
    assert_eq!(restored, before, "dc-a's minutes before {open}");
    let (_, target) = daemon.get("/target/127.0.1.1");
    assert!(target.contains(&format!("/outages/{id}")), "{target}");
}

/// The newest `at` of a bundle's CSV rows.
fn newest_minute(csv: &str) -> String {
    let at = |line: &str| line.split(',').nth(3).unwrap_or_default().to_string();
    csv.lines().skip(1).map(at).max().unwrap_or_default()
}

/// The CSV's lines but the rows at or after `live`.
fn closed_lines<'a>(csv: &'a str, live: &str) -> Vec<&'a str> {
    let before = |line: &&str| line.split(',').nth(3).is_some_and(|at| at < live);
    let mut lines = csv.lines();
    lines
        .next()
        .into_iter()
        .chain(lines.filter(before))
        .collect()
}

/// The start of `minute` as the bundle writes its rows' `at`.
fn minute_start(minute: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(minute * 60);
    humantime::format_rfc3339_millis(at).to_string()
}

fn bundle_of(daemon: &Daemon, id: &str) -> Value {
    let (status, body) = daemon.get(&format!("/outages/{id}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The outage tunnel's rows of `bundle` before `open` (the minute being filled), those
/// with pings in them.
fn rows_before(bundle: &Value, open: &str) -> Vec<Value> {
    let rows = bundle["tunnels"][0]["minutes"].as_array().unwrap();
    rows.iter()
        .filter(|r| r["at"].as_str().unwrap() < open && r["sent"].as_u64() > Some(0))
        .cloned()
        .collect()
}

#[test]
fn a_killed_daemon_keeps_the_outages_it_had_recorded() {
    let double = AwsDouble::start();
    double.set_tunnels(VPN_ID, "UP", "UP");
    let state = common::temp_dir("outages-kill");
    let mut daemon = start(&double, &state);
    let record = record_an_outage(&double, &daemon);
    // SIGKILL at once, no shutdown path: a record /outages shows is already on disk.
    daemon.stop("KILL", Duration::from_secs(5));
    let daemon = start(&double, &state);
    assert_eq!(outages(&daemon, "")["outages"][0]["id"], record["id"]);
}

/// Validates `body` against docs/outages.schema.json; panics with every error.
fn validate(body: &str) {
    common::validate_against_schema(SCHEMA, body, "/outages");
}

#[test]
#[ignore = "needs python3-jsonschema"]
fn outages_match_their_schema() {
    common::need_jsonschema();
    let double = AwsDouble::start();
    double.set_tunnels(VPN_ID, "UP", "UP");
    let daemon = start(&double, &common::temp_dir("outages-schema"));
    record_an_outage(&double, &daemon);
    let body = daemon.get("/outages").1;
    validate(&body);
    // The schema refuses what it does not know.
    let mut extra: Value = serde_json::from_str(&body).unwrap();
    extra["outages"][0]["surprise"] = serde_json::json!(1);
    assert!(std::panic::catch_unwind(|| validate(&extra.to_string())).is_err());
}
