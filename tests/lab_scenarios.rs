//! Verdicts and pages that hold in real deployments, in the tunnel lab: each scenario is a
//! timeline of what breaks, with the pages the NOC expects written out. EC2 that never
//! answers (no route to it, or AccessDenied) pages its own warning and holds nothing back;
//! a failover of the active tunnel (the shared host's route moving to the other tunnel) is
//! never a critical, and is measured; datacenter hosts that stop answering ping while the
//! tunnels carry traffic are a warning after the grace; a total outage pages the critical
//! first; a tunnel renamed mid-outage keeps its page, and a restart mid-outage keeps when
//! the outage began. Needs root and iproute2, nftables, util-linux and procps: every test is
//! `#[ignore]`d by default.

mod common;
#[path = "support/netlab.rs"]
mod netlab;

use std::time::{Duration, Instant};

use common::{aws_double_binary, aws_env, binary, temp_dir, write_temp, AwsDouble, Daemon};
use netlab::{need_lab, Lab, PINNED_A, PINNED_B, SHARED};
use serde_json::Value;

const ID: &str = "vpn-0123456789abcdef0";

struct Scenario {
    lab: Lab,
    double: AwsDouble,
    daemon: Daemon,
    /// The config file and the state directory, for reloads and restarts.
    config: std::path::PathBuf,
    state: std::path::PathBuf,
}

/// Starts the double and the daemon in a fresh lab (the connection polled in EC2 when
/// `with_ec2`), with `ec2_failure` (a fail mode of the double) in force from the start, and
/// waits for OK.
fn setup(alerts: &str, with_ec2: bool, ec2_failure: Option<&str>) -> Scenario {
    let lab = Lab::new();
    let mut command = lab.exec(&lab.vpc, aws_double_binary().to_str().unwrap());
    command.args(["--listen", "0.0.0.0:0"]);
    let double = AwsDouble::start_reachable(command, Some(lab.reach()));
    double.set_tunnels(ID, "UP", "UP");
    if let Some(mode) = ec2_failure {
        double.fail("ec2", mode, None);
    }
    let id = if with_ec2 {
        format!("id = \"{ID}\"")
    } else {
        String::new()
    };
    let config = write_temp(
        "scenario.toml",
        &format!(
            r#"
[probe]
interval = "1s"
timeout = "1s"
down_after = 3
up_after = 2
socket = "raw"

[aws]
region = "us-east-1"
poll_interval = "5s"
endpoint_url = "http://127.0.0.1:{port}"

[[vpn]]
{id}
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  outside_ip = "52.2.144.13"
  targets = ["{PINNED_A}"]
  [[vpn.tunnel]]
  name = "dc-b"
  outside_ip = "52.2.144.14"
  targets = ["{PINNED_B}"]

[[target]]
name = "shared-db"
address = "{SHARED}"

[alerts]
{alerts}
[[alerts.sink]]
kind = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:noc-page"
[[alerts.sink]]
kind = "log"
"#,
            port = double.addr.port()
        ),
    );
    let state = temp_dir("scenario-state");
    let daemon = start_daemon(&lab, &config, &state);
    daemon.wait_for("/health", Duration::from_secs(15), |status, body| {
        status == 200 && body.starts_with("TUNNELKEEPER OK")
    });
    Scenario {
        lab,
        double,
        daemon,
        config,
        state,
    }
}

/// Starts the daemon in the lab's VPC on `config` and `state`.
fn start_daemon(lab: &Lab, config: &std::path::Path, state: &std::path::Path) -> Daemon {
    let mut command = lab.exec(&lab.vpc, binary());
    command.args([
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    command.env("RUST_LOG", "info");
    for (k, v) in aws_env() {
        command.env(k, v);
    }
    Daemon::spawn(command, Some(lab.reach()))
}

/// Checks a `/status` body against docs/status.schema.json with python3-jsonschema, as
/// tests/status_schema.rs does (here with a failover in it).
fn validate_status(body: &str) {
    use std::io::Write as _;
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(sys.stdin)))\n\
        for e in errors: print('/'.join(str(p) for p in e.absolute_path) + ': ' + e.message)\n\
        sys.exit(1 if errors else 0)\n";
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/status.schema.json"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with python3-jsonschema) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "/status does not match docs/status.schema.json:\n{}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Scenario {
    /// The pages the SNS double accepted, as (subject, message).
    fn pages(&self) -> Vec<(String, String)> {
        self.double
            .requests("sns")
            .into_iter()
            .filter(|r| r["failed"].is_null())
            .map(|r| {
                (
                    r["params"]["Subject"].as_str().unwrap_or("").to_string(),
                    r["params"]["Message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn subjects(&self) -> Vec<String> {
        self.pages().into_iter().map(|(s, _)| s).collect()
    }

    /// Waits for `count` pages, watching `/health` meanwhile; returns the subjects and
    /// every /health status seen.
    fn wait_pages(&self, count: usize, limit: Duration) -> (Vec<String>, Vec<u16>) {
        let start = Instant::now();
        let mut statuses = Vec::new();
        loop {
            statuses.push(self.daemon.get("/health").0);
            let subjects = self.subjects();
            if subjects.len() >= count || start.elapsed() > limit {
                return (subjects, statuses);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.daemon.get("/status").1).unwrap()
    }

    /// Watches `/health` for `d`; returns every status seen.
    fn watch_health(&self, d: Duration) -> Vec<u16> {
        let start = Instant::now();
        let mut statuses = Vec::new();
        while start.elapsed() < d {
            statuses.push(self.daemon.get("/health").0);
            std::thread::sleep(Duration::from_millis(100));
        }
        statuses
    }
}

/// A tunnel outage and its recovery, with EC2 silent: the NOC gets the EC2 warning (with
/// its cause), the tunnel's page, and the tunnel's RESOLVED.
fn outage_and_recovery_with_ec2_silent(s: &Scenario, cause: &str) {
    let (subjects, _) = s.wait_pages(1, Duration::from_secs(20));
    assert_eq!(
        subjects,
        vec![format!(
            "[WARNING] ControlPlaneUnavailable VPN: EC2 API unavailable: {cause}"
        )],
        "log:\n{}",
        s.daemon.log()
    );
    s.lab.blackhole(1);
    let (subjects, statuses) = s.wait_pages(2, Duration::from_secs(10));
    assert!(
        subjects[1].starts_with("[WARNING] TunnelDown dc-a: pinned targets unreachable"),
        "{subjects:?}"
    );
    s.lab.mend(1);
    let (subjects, more) = s.wait_pages(3, Duration::from_secs(10));
    assert_eq!(subjects.len(), 3, "{subjects:?}; log:\n{}", s.daemon.log());
    assert!(
        subjects[2].starts_with("[RESOLVED] TunnelDown dc-a"),
        "{subjects:?}"
    );
    assert!(
        statuses.iter().chain(&more).all(|st| *st == 200),
        "/health stayed 200"
    );
    // Nothing more: no VpnUnreachable, no hold of anything.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.subjects(), subjects);
    let alerts = s.status()["alerts"].clone();
    let left: Vec<&str> = alerts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec!["ControlPlaneUnavailable"], "{alerts}");
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn ec2_unreachable_from_the_start_holds_no_page_and_no_resolved() {
    need_lab();
    // No route to EC2: its calls never come back (the double hangs), from the start.
    let s = setup(
        "control_plane_unavailable_after = \"2s\"",
        true,
        Some("hang"),
    );
    outage_and_recovery_with_ec2_silent(&s, "EC2 does not answer in time");
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn ec2_access_denied_is_a_warning_naming_the_action_and_the_pings_decide() {
    need_lab();
    let s = setup(
        "control_plane_unavailable_after = \"2s\"",
        true,
        Some("access_denied"),
    );
    outage_and_recovery_with_ec2_silent(&s, "access denied");
    let (_, message) = s.pages().remove(0);
    assert!(
        message.contains("access denied: the role may not call ec2:DescribeVpnConnections"),
        "{message}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_failover_of_the_active_tunnel_is_measured_and_never_critical() {
    need_lab();
    let s = setup("failover_grace = \"20s\"", false, None);
    // Tunnel 1 carries the shared host's traffic. It fails whole; ~8 s later BGP moves the
    // route to tunnel 2.
    s.lab.cut(1);
    let mut statuses = s.watch_health(Duration::from_secs(8));
    s.lab.route_shared_via(2);
    statuses.extend(s.watch_health(Duration::from_secs(6)));
    let status = s.status();
    let failovers = status["failovers"].as_array().unwrap().clone();
    assert_eq!(failovers.len(), 1, "{status}");
    let seconds = failovers[0]["seconds"].as_f64().unwrap();
    eprintln!("failover measured: {seconds} s ({})", failovers[0]);
    // Measured between the sending of the first lost probe and of the first answered one
    // (over tunnel 2): the 8 s between the cut and the route's move, to within a probe
    // interval.
    assert!((7.0..=9.0).contains(&seconds), "{}", failovers[0]);
    assert_eq!(failovers[0]["from"][0]["tunnel"], "dc-a");
    validate_status(&s.daemon.get("/status").1);
    assert!(
        s.daemon
            .log()
            .contains("failover: the shared targets answer again"),
        "{}",
        s.daemon.log()
    );
    // Tunnel 1 comes back; the route stays on tunnel 2.
    s.lab.mend(1);
    let (subjects, more) = s.wait_pages(2, Duration::from_secs(10));
    statuses.extend(more);
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects[0].starts_with("[WARNING] TunnelDown dc-a: pinned targets unreachable"),
        "{subjects:?}"
    );
    assert!(
        subjects[1].starts_with("[RESOLVED] TunnelDown dc-a"),
        "{subjects:?}"
    );
    let (_, resolved) = &s.pages()[1];
    assert!(
        resolved.contains("traffic to the shared hosts moved to another tunnel after"),
        "{resolved}"
    );
    assert!(
        statuses.iter().all(|st| *st == 200),
        "/health was never 503: {statuses:?}"
    );
    let (_, metrics) = s.daemon.get("/metrics");
    assert!(
        metrics.contains("tunnelkeeper_failover_seconds_count 1"),
        "{metrics}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn datacenter_hosts_that_stop_answering_ping_are_a_warning_after_the_grace() {
    need_lab();
    let s = setup("failover_grace = \"10s\"", false, None);
    s.lab.shared_drops_icmp(true);
    // Within the grace: nothing pages, /health says DEGRADED (200).
    let statuses = s.watch_health(Duration::from_secs(8));
    assert!(s.subjects().is_empty(), "{:?}", s.subjects());
    let (subjects, more) = s.wait_pages(1, Duration::from_secs(10));
    assert_eq!(
        subjects,
        vec![
            "[WARNING] SharedTargetsDown VPN: 1 shared target(s) do not answer; the VPN carries traffic"
                .to_string()
        ]
    );
    let (_, message) = &s.pages()[0];
    assert!(
        message.contains("these hosts do not answer") && message.contains(SHARED),
        "{message}"
    );
    let (status, body) = s.daemon.get("/health");
    assert_eq!(status, 200);
    assert!(body.starts_with("TUNNELKEEPER DEGRADED"), "{body}");
    assert!(
        statuses.iter().chain(&more).all(|st| *st == 200),
        "never 503"
    );
    s.lab.shared_drops_icmp(false);
    let (subjects, _) = s.wait_pages(2, Duration::from_secs(10));
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects[1].starts_with("[RESOLVED] SharedTargetsDown"),
        "{subjects:?}"
    );
    assert!(
        !subjects.iter().any(|s| s.starts_with("[CRITICAL]")),
        "{subjects:?}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_total_outage_pages_the_critical_first() {
    need_lab();
    // group_wait covers the second or two in which the tunnels are seen going one by one.
    let s = setup("group_wait = \"3s\"", false, None);
    s.lab.cut(1);
    s.lab.cut(2);
    let (subjects, _) = s.wait_pages(1, Duration::from_secs(15));
    assert!(
        subjects[0].starts_with("[CRITICAL] VpnUnreachable VPN: no working path"),
        "the first page: {subjects:?}"
    );
    let (status, body) = s.daemon.get("/health");
    assert_eq!(status, 503);
    assert!(
        body.starts_with("TUNNELKEEPER CRITICAL")
            && body.contains("(0 of 2 tunnels up, 0 of 1 shared targets answer)"),
        "{body}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(s.subjects(), subjects, "nothing more while it lasts");
    s.lab.mend(1);
    s.lab.mend(2);
    let (subjects, _) = s.wait_pages(2, Duration::from_secs(10));
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects[1].starts_with("[RESOLVED] VpnUnreachable"),
        "{subjects:?}"
    );
}

/// The `since` of tunnel dc-a on `/status`.
fn tunnel_a_since(s: &Scenario) -> String {
    s.status()["connections"][0]["tunnels"][0]["since"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_tunnel_renamed_during_its_outage_keeps_its_page_and_resolves_once() {
    need_lab();
    let s = setup("", true, None);
    s.lab.blackhole(1);
    let (subjects, _) = s.wait_pages(1, Duration::from_secs(10));
    assert!(
        subjects[0].starts_with("[WARNING] TunnelDown dc-a"),
        "{subjects:?}"
    );
    let since = tunnel_a_since(&s);
    // Same outside IP, new name, the tunnels listed the other way round: the same tunnel.
    let text = std::fs::read_to_string(&s.config).unwrap();
    let a = text.find("  [[vpn.tunnel]]\n  name = \"dc-a\"").unwrap();
    let b = text.find("  [[vpn.tunnel]]\n  name = \"dc-b\"").unwrap();
    let end = text.find("\n[[target]]").unwrap();
    let (tunnel_a, tunnel_b) = (&text[a..b], &text[b..end]);
    let renamed = format!(
        "{}{}{}{}",
        &text[..a],
        tunnel_b,
        tunnel_a.replace("dc-a", "dc-primary"),
        &text[end..]
    );
    std::fs::write(&s.config, renamed).unwrap();
    let pid = s.daemon.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    s.daemon
        .wait_for("/status", Duration::from_secs(10), |_, b| {
            b.contains("dc-primary")
        });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        s.subjects(),
        subjects,
        "no RESOLVED at the rename, no second page; log:\n{}",
        s.daemon.log()
    );
    let tunnel = s.status()["connections"][0]["tunnels"][1].clone();
    assert_eq!(tunnel["name"], "dc-primary");
    assert_eq!(tunnel["state"], "down");
    assert_eq!(
        tunnel["since"].as_str().unwrap(),
        since,
        "the outage's start kept"
    );
    assert!(s.daemon.log().contains("renamed to dc-primary of dc"));
    s.lab.mend(1);
    let (subjects, _) = s.wait_pages(2, Duration::from_secs(10));
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects[1].starts_with("[RESOLVED] TunnelDown dc-primary"),
        "{subjects:?}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_restart_during_an_outage_keeps_when_it_began_and_pages_once() {
    need_lab();
    let mut s = setup("", true, None);
    s.lab.blackhole(1);
    let (subjects, _) = s.wait_pages(1, Duration::from_secs(10));
    assert!(
        subjects[0].starts_with("[WARNING] TunnelDown dc-a"),
        "{subjects:?}"
    );
    let since = tunnel_a_since(&s);
    s.daemon.stop("TERM", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    s.daemon = start_daemon(&s.lab, &s.config, &s.state);
    s.daemon
        .wait_for("/status", Duration::from_secs(15), |_, b| {
            serde_json::from_str::<Value>(b)
                .is_ok_and(|j| j["connections"][0]["tunnels"][0]["state"] == "down")
        });
    assert_eq!(
        tunnel_a_since(&s),
        since,
        "down since the first lost probe before the restart, not the restart"
    );
    let health = s.daemon.get("/health").1;
    assert!(
        health.contains(&format!("tunnel dc-a: down since {}", &since[..19]))
            || health.contains(&since[..19]),
        "{health}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.subjects(), subjects, "no second page after the restart");
    s.lab.mend(1);
    let (subjects, _) = s.wait_pages(2, Duration::from_secs(10));
    assert!(
        subjects[1].starts_with("[RESOLVED] TunnelDown dc-a"),
        "{subjects:?}"
    );
    let (_, messages) = s
        .pages()
        .into_iter()
        .unzip::<_, _, Vec<String>, Vec<String>>();
    assert!(
        messages[1].contains(&format!("From {}", &since[..19])),
        "the RESOLVED measures from the outage's start: {}",
        messages[1]
    );
}
