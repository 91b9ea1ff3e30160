//! Alerting with the real binary: pages at the SNS double (subject, message, attributes),
//! retries until delivered, nothing lost and nothing twice across `kill -9` restarts, and a
//! corrupt or unusable state directory handled as promised. Outages are made through the
//! EC2 double (AWS reports tunnels DOWN): tests send no traffic off loopback.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{aws_env, dc_config, run_cli, temp_dir, write_temp, AwsDouble, Daemon, VPN_ID as ID};
use serde_json::Value;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:noc-page";

fn config(double: &AwsDouble, alerts: &str) -> String {
    let rest = format!(
        "[alerts]\n{alerts}\n[[alerts.sink]]\nkind = \"sns\"\ntopic_arn = \"{TOPIC}\"\n\
         [[alerts.sink]]\nkind = \"log\"\n"
    );
    dc_config(double, "", ["127.0.2.1", "127.0.2.2"], &rest)
}

fn ec2(double: &AwsDouble, a: &str, b: &str) {
    double.set_tunnels(ID, a, b);
}

fn start(double: &AwsDouble, state_dir: &Path, alerts: &str) -> Daemon {
    let path = write_temp("alerting.toml", &config(double, alerts));
    Daemon::start(
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
        ],
        &aws_env(),
    )
}

/// Publishes the double accepted.
fn pages(double: &AwsDouble) -> Vec<Value> {
    double
        .requests("sns")
        .into_iter()
        .filter(|r| r["failed"].is_null())
        .collect()
}

fn wait_pages(double: &AwsDouble, count: usize, limit: Duration) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let p = pages(double);
        if p.len() >= count || start.elapsed() > limit {
            return p;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn attribute(page: &Value, name: &str) -> String {
    let params = page["params"].as_object().unwrap();
    let entry = params
        .iter()
        .find(|(k, v)| {
            k.starts_with("MessageAttributes.entry.")
                && k.ends_with(".Name")
                && v.as_str() == Some(name)
        })
        .map(|(k, _)| k.trim_end_matches(".Name").to_string())
        .unwrap_or_else(|| panic!("no attribute {name} in {params:?}"));
    params[&format!("{entry}.Value.StringValue")]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn both_tunnels_down_pages_once_critical_then_resolved() {
    let double = AwsDouble::start();
    // AWS says both tunnels of the only connection are DOWN; the pinned targets (loopback
    // here) still answer, so the VPN is not unreachable by the pings' word, and the
    // connection, the last path, pages as critical.
    ec2(&double, "DOWN", "DOWN");
    let daemon = start(&double, &temp_dir("state"), "");
    let first = wait_pages(&double, 1, Duration::from_secs(8));
    assert_eq!(first.len(), 1, "one page");
    let page = &first[0]["params"];
    assert_eq!(page["TopicArn"], TOPIC);
    let subject = page["Subject"].as_str().unwrap();
    assert_eq!(subject, "[CRITICAL] ConnectionDown dc: both tunnels down");
    let message = page["Message"].as_str().unwrap();
    assert!(
        message.starts_with("CRITICAL: ConnectionDown - both tunnels down.\n"),
        "{message}"
    );
    assert!(
        message.contains("What to do: as a warning, watch it"),
        "{message}"
    );
    assert!(
        message.contains("\"alert\": \"ConnectionDown\""),
        "{message}"
    );
    assert_eq!(attribute(&first[0], "severity"), "critical");
    assert_eq!(attribute(&first[0], "alert"), "ConnectionDown");
    assert_eq!(attribute(&first[0], "state"), "firing");

    // The tunnel alerts are inhibited, and say so on /status; no VpnUnreachable.
    let status: Value = serde_json::from_str(&daemon.get("/status").1).unwrap();
    let states: Vec<(String, String)> = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alert"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("ConnectionDown".into(), "firing".into())),
        "{states:?}"
    );
    assert!(
        !states.iter().any(|(a, _)| a == "VpnUnreachable"),
        "{states:?}"
    );
    assert_eq!(
        states
            .iter()
            .filter(|(a, s)| a == "TunnelDown" && s == "inhibited")
            .count(),
        2,
        "{states:?}"
    );
    // A critical alert fires: `tunnelkeeper status` says so with exit code 2, though the
    // VPN itself is only DEGRADED.
    assert_eq!(status["vpn"]["state"], "degraded");
    assert_eq!(
        tunnelkeeper::cli::status::exit_code(&daemon.get("/status").1),
        2
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics
        .contains("tunnelkeeper_alerts_firing{alert=\"ConnectionDown\",severity=\"critical\",tunnel=\"\",vpn=\"dc\"} 1"));
    assert!(metrics.contains(
        "tunnelkeeper_notifications_total{outcome=\"delivered\",sink=\"sns:noc-page\"} 1"
    ));

    ec2(&double, "UP", "UP");
    let all = wait_pages(&double, 2, Duration::from_secs(8));
    assert_eq!(all.len(), 2, "one resolved page");
    assert!(all[1]["params"]["Subject"]
        .as_str()
        .unwrap()
        .starts_with("[RESOLVED] ConnectionDown"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pages(&double).len(), 2, "nothing more");
    assert!(
        daemon.log().contains("ALERT [CRITICAL] ConnectionDown"),
        "the log sink got it too"
    );
}

#[test]
fn one_tunnel_down_pages_a_warning_with_tunnel_attributes() {
    let double = AwsDouble::start();
    ec2(&double, "UP", "DOWN");
    let _daemon = start(&double, &temp_dir("state"), "");
    let got = wait_pages(&double, 1, Duration::from_secs(8));
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["params"]["Subject"],
        "[WARNING] TunnelDown dc-b: AWS reports DOWN: IPSEC IS DOWN"
    );
    assert_eq!(attribute(&got[0], "tunnel"), "dc-b");
    assert_eq!(attribute(&got[0], "vpn_id"), ID);
    assert_eq!(attribute(&got[0], "severity"), "warning");
}

#[test]
fn a_throttled_page_is_retried_with_backoff_until_delivered() {
    let double = AwsDouble::start();
    double.fail("sns", "throttle", Some(2));
    ec2(&double, "DOWN", "DOWN");
    let daemon = start(&double, &temp_dir("state"), "");
    // Tries at 0 s, ~1 s and ~3 s (1 s, then 2 s, plus up to half again of jitter).
    let got = wait_pages(&double, 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "delivered in the end; log:\n{}", daemon.log());
    let tries = double.requests("sns");
    assert_eq!(tries.len(), 3, "{tries:?}");
    assert_eq!(tries[0]["failed"], "throttle");
    let gaps: Vec<u64> = tries
        .windows(2)
        .map(|w| w[1]["at_ms"].as_u64().unwrap() - w[0]["at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        gaps[0] >= 900 && gaps[1] >= 1900 && gaps[1] > gaps[0],
        "backoff grows: {gaps:?}"
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics
        .contains("tunnelkeeper_notifications_total{outcome=\"failed\",sink=\"sns:noc-page\"} 2"));
}

#[test]
fn a_page_not_delivered_before_kill_9_is_delivered_once_after_restart() {
    let double = AwsDouble::start();
    double.fail("sns", "server_error", None);
    ec2(&double, "DOWN", "DOWN");
    let state = temp_dir("state");
    let mut daemon = start(&double, &state, "");
    let start_wait = Instant::now();
    while double.requests("sns").is_empty() && start_wait.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!double.requests("sns").is_empty(), "the page was tried");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let saved = std::fs::read_to_string(state.join("state.json")).unwrap();
    assert!(saved.contains("ConnectionDown"), "{saved}");

    double.fail("sns", "none", None);
    let _daemon = start(&double, &state, "");
    let got = wait_pages(&double, 1, Duration::from_secs(8));
    assert_eq!(got.len(), 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pages(&double).len(),
        1,
        "exactly one page: {:?}",
        pages(&double)
    );
}

#[test]
fn a_restart_while_an_alert_fires_does_not_page_again() {
    let double = AwsDouble::start();
    ec2(&double, "DOWN", "DOWN");
    let state = temp_dir("state");
    let mut daemon = start(&double, &state, "");
    assert_eq!(wait_pages(&double, 1, Duration::from_secs(8)).len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let daemon = start(&double, &state, "");
    // Long enough for the first EC2 answer and an evaluation.
    daemon.wait_for("/status", Duration::from_secs(8), |_, b| {
        b.contains("\"state\": \"firing\"")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pages(&double).len(), 1, "no second page");
    assert!(daemon.log().contains("alert state restored"));

    // And the resolved page still comes when it clears.
    ec2(&double, "UP", "UP");
    let all = wait_pages(&double, 2, Duration::from_secs(8));
    assert!(all[1]["params"]["Subject"]
        .as_str()
        .unwrap()
        .starts_with("[RESOLVED]"));
}

#[test]
fn a_garbage_state_file_is_moved_aside_and_the_daemon_starts() {
    let double = AwsDouble::start();
    ec2(&double, "UP", "UP");
    let state = temp_dir("state");
    std::fs::write(state.join("state.json"), b"\x00\x01 this is not json").unwrap();
    let daemon = start(&double, &state, "");
    daemon.wait_for("/-/healthy", Duration::from_secs(5), |s, _| s == 200);
    let log = daemon.log();
    assert!(log.contains("THE ALERT STATE FILE IS CORRUPT"), "{log}");
    let moved: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        })
        .collect();
    assert_eq!(moved.len(), 1, "kept for a look, not deleted");
}

#[test]
fn an_unwritable_state_dir_is_a_clear_error_at_start() {
    let blocker = write_temp("not-a-dir", "a file");
    let dir = blocker.join("state");
    let (code, _, err) = run_cli(&[
        "run",
        "--state-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("state_dir {}: cannot be created", dir.display())),
        "{err}"
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_to_start() {
    let dir = temp_dir("shared-state");
    let first = Daemon::start(&["run", "--state-dir", dir.to_str().unwrap()], &[]);
    let (code, _, err) = run_cli(&[
        "run",
        "--state-dir",
        dir.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "state_dir {}: is in use: another tunnelkeeper (pid {}) holds tunnelkeeper.lock",
            dir.display(),
            first.child.id()
        )),
        "{err}"
    );
    // The first one is unharmed and its state file is its own.
    let (status, _) = first.get("/-/healthy");
    assert_eq!(status, 200);
}

#[test]
fn silences_keep_matching_alerts_quiet() {
    let double = AwsDouble::start();
    ec2(&double, "UP", "DOWN");
    let silence = "[[alerts.silence]]\nalert = \"TunnelDown\"\ntunnel = \"dc-b\"\nends = \"2099-01-01T00:00:00Z\"\ncomment = \"maintenance\"";
    let daemon = start(&double, &temp_dir("state"), silence);
    daemon.wait_for("/status", Duration::from_secs(8), |_, b| {
        b.contains("\"state\": \"silenced\"")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(pages(&double).is_empty());
}

#[test]
fn failing_pages_show_on_health_status_and_the_page_and_go_out_through_the_other_sinks() {
    let double = AwsDouble::start();
    double.fail("sns", "server_error", None);
    ec2(&double, "UP", "DOWN");
    let daemon = start(&double, &temp_dir("state"), "");
    // TunnelDown for dc-b fails at SNS: 1, 2 and 4 s apart, then the sink counts as failing.
    let (status, health) = daemon.wait_for("/health", Duration::from_secs(20), |_, b| {
        b.contains("paging: sns:noc-page FAILING since")
    });
    assert_eq!(
        status, 200,
        "failing pages leave the status code alone: {health}"
    );
    assert!(health.starts_with("TUNNELKEEPER DEGRADED"), "{health}");
    let (_, body) = daemon.get("/status");
    let json: Value = serde_json::from_str(&body).unwrap();
    let sns = &json["sinks"][0];
    assert_eq!(sns["name"], "sns:noc-page");
    assert_eq!(sns["ok"], false);
    assert!(sns["consecutive_failures"].as_u64().unwrap() >= 3, "{sns}");
    assert_eq!(json["sinks"][1]["ok"], true, "the log sink works");
    let (_, page) = daemon.get("/");
    assert!(
        page.contains(r#"id="paging-failing""#),
        "the NOC page says so"
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("tunnelkeeper_sink_up{sink=\"sns:noc-page\"} 0"));
    let (_, stdout, _) = run_cli(&["status", "--addr", &daemon.addr.to_string()]);
    assert!(
        stdout.contains("pages to sink sns:noc-page fail since"),
        "{stdout}"
    );
    // The log sink got NotificationsFailing; SNS was never asked to carry it.
    wait_log(&daemon, "ALERT [WARNING] NotificationsFailing");
    assert!(double
        .requests("sns")
        .iter()
        .all(|r| !r.to_string().contains("NotificationsFailing")));

    // SNS works again: the queued page goes out, then the alert resolves.
    double.fail("sns", "none", None);
    let got = wait_pages(&double, 1, Duration::from_secs(60));
    assert!(!got.is_empty(), "the page waited in the outbox");
    daemon.wait_for("/health", Duration::from_secs(10), |_, b| {
        !b.contains("paging:")
    });
    wait_log(&daemon, "ALERT [RESOLVED] NotificationsFailing");
}

fn wait_log(daemon: &Daemon, line: &str) {
    let start = Instant::now();
    while !daemon.log().contains(line) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no {line} in the log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
