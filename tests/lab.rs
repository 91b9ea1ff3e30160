//! End-to-end scenarios in the tunnel lab: the real daemon inside a `vpc` namespace, two
//! tunnel routers and a datacenter namespace, the AWS double (EC2 and SNS) inside the vpc,
//! tunnels broken with nftables, routes and links. Each scenario asserts on `/health`,
//! `/status` and the pages the SNS double received. Needs root (network namespaces) and
//! iproute2, nftables, util-linux and procps: every test is `#[ignore]`d by default, and run
//! with `--include-ignored` it fails, saying why, where the lab cannot run.

mod common;
#[path = "support/netlab.rs"]
mod netlab;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    aws_double_binary, aws_env, binary, temp_dir, unprivileged_binary, write_temp, AwsDouble,
    Daemon,
};
use netlab::{need_lab, Lab, PINNED_A, PINNED_B, SHARED};
use serde_json::Value;

const ID: &str = "vpn-0123456789abcdef0";
const INTERVAL_S: f64 = 1.0;
const DOWN_AFTER: f64 = 3.0;
const TIMEOUT_S: f64 = 1.0;
/// The detection bound the issue sets: interval × down_after + timeout + 1 s.
const BOUND: Duration =
    Duration::from_millis(((INTERVAL_S * DOWN_AFTER + TIMEOUT_S + 1.0) * 1000.0) as u64);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Root with a raw ICMP socket.
    RawRoot,
    /// User nobody with DGRAM ICMP (ping_group_range set in the namespace).
    DgramUnprivileged,
}

struct Scenario {
    lab: Lab,
    double: AwsDouble,
    daemon: Daemon,
    config: PathBuf,
    state: PathBuf,
    mode: Mode,
}

fn config_text(double_port: u16, mode: Mode, alerts: &str, ec2: bool) -> String {
    // Without an id the connection is only pinged: AWS's view stays unknown, and a
    // blackholed tunnel is plain TunnelDown (with AWS saying UP it is the same TunnelDown,
    // its summary saying that AWS reports UP).
    let id = if ec2 {
        format!("id = \"{ID}\"")
    } else {
        String::new()
    };
    let socket = match mode {
        Mode::RawRoot => "raw",
        Mode::DgramUnprivileged => "dgram",
    };
    format!(
        r#"
[probe]
interval = "1s"
timeout = "1s"
down_after = 3
up_after = 2
socket = "{socket}"

[aws]
region = "us-east-1"
poll_interval = "5s"
endpoint_url = "http://127.0.0.1:{double_port}"

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
"#
    )
}

fn ec2(double: &AwsDouble, a: &str, b: &str) {
    double.set_tunnels(ID, a, b);
}

fn setup(mode: Mode, alerts: &str) -> Scenario {
    setup_with(mode, alerts, false)
}

/// A scenario whose connection is also looked up in the EC2 double.
fn setup_with_ec2(alerts: &str) -> Scenario {
    setup_with(Mode::RawRoot, alerts, true)
}

fn setup_with(mode: Mode, alerts: &str, with_ec2: bool) -> Scenario {
    setup_in(Lab::new(), mode, alerts, with_ec2, "")
}

/// A scenario in a lab prepared by the caller, with `extra` appended to the config.
fn setup_in(lab: Lab, mode: Mode, alerts: &str, with_ec2: bool, extra: &str) -> Scenario {
    let mut command = lab.exec(&lab.vpc, aws_double_binary().to_str().unwrap());
    command.args(["--listen", "0.0.0.0:0"]);
    let double = AwsDouble::start_reachable(command, Some(lab.reach()));
    ec2(&double, "UP", "UP");
    let config = write_temp(
        "lab.toml",
        &(config_text(double.addr.port(), mode, alerts, with_ec2) + extra),
    );
    let state = temp_dir("lab-state");
    let daemon = start_daemon(&lab, &config, &state, mode);
    let s = Scenario {
        lab,
        double,
        daemon,
        config,
        state,
        mode,
    };
    s.daemon
        .wait_for("/health", Duration::from_secs(10), |status, body| {
            status == 200 && body.starts_with("TUNNELKEEPER OK")
        });
    let plane = if with_ec2 {
        "control plane up"
    } else {
        "control plane unknown"
    };
    s.daemon
        .wait_for("/health", Duration::from_secs(10), |_, body| {
            body.contains("tunnel dc-b: up") && body.contains(plane)
        });
    s
}

fn start_daemon(
    lab: &Lab,
    config: &std::path::Path,
    state: &std::path::Path,
    mode: Mode,
) -> Daemon {
    let mut command = match mode {
        Mode::RawRoot => lab.exec(&lab.vpc, binary()),
        Mode::DgramUnprivileged => {
            lab.allow_unprivileged_ping();
            let bin = unprivileged_binary();
            for path in [bin.parent().unwrap(), state] {
                Command::new("chown")
                    .args(["-R", "65534:65534", path.to_str().unwrap()])
                    .status()
                    .unwrap();
            }
            let mut c = lab.exec(&lab.vpc, "setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                bin.to_str().unwrap(),
            ]);
            c
        }
    };
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

impl Scenario {
    /// Publishes the SNS double accepted, as (subject, alert attribute).
    fn pages(&self) -> Vec<String> {
        self.double
            .requests("sns")
            .into_iter()
            .filter(|r| r["failed"].is_null())
            .map(|r| r["params"]["Subject"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn wait_pages(&self, count: usize, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let p = self.pages();
            if p.len() >= count || start.elapsed() > limit {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn health(&self) -> (u16, String) {
        self.daemon.get("/health")
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.daemon.get("/status").1).unwrap()
    }

    /// Waits until `check` holds on /health; returns how long that took.
    fn wait_health(&self, limit: Duration, check: impl Fn(u16, &str) -> bool) -> Duration {
        let start = Instant::now();
        self.daemon.wait_for("/health", limit, check);
        start.elapsed()
    }
}

fn firing(pages: &[String], alert: &str) -> usize {
    pages
        .iter()
        .filter(|s| !s.starts_with("[RESOLVED]") && s.contains(&format!(" {alert} ")))
        .count()
}

/// Breaks tunnel A, measures the time to the page and to /health turning, mends it and
/// waits for the resolved page. Returns (page latency, health latency).
fn break_and_mend_a(s: &Scenario, pages_before: usize) -> (Duration, Duration) {
    let broke = Instant::now();
    s.lab.blackhole(1);
    let mut health_at = None;
    let mut page_at = None;
    while (health_at.is_none() || page_at.is_none()) && broke.elapsed() < BOUND * 3 {
        if health_at.is_none() && s.health().1.starts_with("TUNNELKEEPER DEGRADED") {
            health_at = Some(broke.elapsed());
        }
        if page_at.is_none() && s.pages().len() > pages_before {
            page_at = Some(broke.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let (health_at, page_at) = (
        health_at.expect("/health never turned DEGRADED"),
        page_at.expect("no page"),
    );
    eprintln!("break -> /health {health_at:?}, -> page {page_at:?}");
    let pages = s.pages();
    assert_eq!(pages.len(), pages_before + 1, "one page: {pages:?}");
    assert!(
        pages[pages_before].starts_with("[WARNING] TunnelDown dc-a: pinned targets unreachable"),
        "{pages:?}"
    );
    s.lab.mend(1);
    let pages = s.wait_pages(pages_before + 2, Duration::from_secs(8));
    assert_eq!(
        pages.len(),
        pages_before + 2,
        "one resolved page: {pages:?}"
    );
    assert!(
        pages[pages_before + 1].starts_with("[RESOLVED] TunnelDown dc-a"),
        "{pages:?}"
    );
    s.wait_health(Duration::from_secs(5), |st, b| {
        st == 200 && b.starts_with("TUNNELKEEPER OK")
    });
    (page_at, health_at)
}

fn blackhole_one_tunnel(mode: Mode) -> (String, String) {
    let s = setup(mode, "");
    let (page, health) = break_and_mend_a(&s, 0);
    assert!(page <= BOUND, "page after {page:?}, bound {BOUND:?}");
    assert!(health <= BOUND, "/health after {health:?}, bound {BOUND:?}");
    // The socket type really is the one asked for.
    let socket = s.status()["icmp_socket"].as_str().unwrap().to_string();
    assert_eq!(
        socket,
        if mode == Mode::RawRoot {
            "raw"
        } else {
            "dgram"
        }
    );
    if mode == Mode::DgramUnprivileged {
        let pid = s.daemon.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.contains("65534")),
            "runs as nobody"
        );
    }
    let pages = s.pages();
    (
        pages.join("\n"),
        s.health()
            .1
            .lines()
            .next()
            .unwrap()
            .split(" since")
            .next()
            .unwrap()
            .to_string(),
    )
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn all_healthy_for_a_while_is_ok_without_pages() {
    need_lab();
    let s = setup(Mode::RawRoot, "");
    std::thread::sleep(Duration::from_secs(6));
    let (status, body) = s.health();
    assert_eq!(status, 200);
    assert!(body.starts_with("TUNNELKEEPER OK"), "{body}");
    assert!(
        body.contains(&format!("shared target shared-db ({SHARED}): up")),
        "{body}"
    );
    assert!(s.pages().is_empty(), "{:?}", s.pages());
    assert_eq!(s.status()["alerts"].as_array().unwrap().len(), 0);
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_blackholed_tunnel_pages_once_within_the_bound_as_root_with_raw_icmp() {
    need_lab();
    blackhole_one_tunnel(Mode::RawRoot);
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn unprivileged_dgram_icmp_gives_the_same_results_as_raw_root() {
    need_lab();
    let (raw_pages, raw_health) = blackhole_one_tunnel(Mode::RawRoot);
    let (dgram_pages, dgram_health) = blackhole_one_tunnel(Mode::DgramUnprivileged);
    assert_eq!(raw_pages, dgram_pages);
    assert_eq!(raw_health, dgram_health);
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn both_tunnels_blackholed_is_critical_with_exactly_one_critical_page() {
    need_lab();
    // A moment of group_wait lets the connection's verdict inhibit the first tunnel's page.
    let s = setup(Mode::RawRoot, "group_wait = \"1s\"");
    // Both tunnels cut whole, the shared host's route with them: nothing answers.
    s.lab.cut(1);
    s.lab.cut(2);
    s.wait_health(BOUND * 2, |st, b| {
        st == 503 && b.starts_with("TUNNELKEEPER CRITICAL")
    });
    let pages = s.wait_pages(1, BOUND);
    std::thread::sleep(Duration::from_secs(3));
    let pages_now = s.pages();
    assert_eq!(pages_now, pages, "nothing more; log:\n{}", s.daemon.log());
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].starts_with("[CRITICAL] VpnUnreachable")
            || pages[0].starts_with("[CRITICAL] ConnectionDown"),
        "{pages:?}"
    );
    let inhibited = s.status()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "inhibited")
        .count();
    assert!(
        inhibited >= 2,
        "the tunnel alerts are inhibited: {}",
        s.status()["alerts"]
    );

    s.lab.mend(1);
    s.lab.mend(2);
    let pages = s.wait_pages(2, Duration::from_secs(8));
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].starts_with("[RESOLVED]"), "{pages:?}");
    s.wait_health(Duration::from_secs(5), |st, b| {
        st == 200 && b.starts_with("TUNNELKEEPER OK")
    });
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn thirty_percent_loss_does_not_flood_the_noc() {
    need_lab();
    let s = setup(Mode::RawRoot, "keep_firing_for = \"1m\"");
    s.lab.loss(1, 30);
    std::thread::sleep(Duration::from_secs(30));
    let pages = s.pages();
    let sent: u64 = s.status()["connections"][0]["tunnels"][0]["targets"][0]["sent"]
        .as_u64()
        .unwrap();
    assert!(sent >= 25, "probing went on: {sent}");
    for alert in [
        "TunnelDown",
        "TunnelFlapping",
        "ConnectionDown",
        "VpnUnreachable",
    ] {
        assert!(
            firing(&pages, alert) <= 1,
            "{alert} paged more than once: {pages:?}"
        );
    }
    assert!(pages.len() <= 3, "{pages:?}");
    let loss = s.status()["connections"][0]["tunnels"][0]["targets"][0]["recent_loss_percent"]
        .as_f64()
        .unwrap();
    assert!(
        (3.0..=60.0).contains(&loss),
        "the loss shows on /status: {loss}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_flapping_tunnel_pages_one_tunnel_flapping_not_dozens() {
    need_lab();
    let s = setup(Mode::RawRoot, "");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        s.lab.blackhole(1);
        std::thread::sleep(Duration::from_secs(5));
        s.lab.mend(1);
        std::thread::sleep(Duration::from_secs(5));
    }
    let pages = s.pages();
    assert_eq!(firing(&pages, "TunnelFlapping"), 1, "{pages:?}");
    assert!(
        firing(&pages, "TunnelDown") <= 2,
        "the flaps stopped paging once flapping fired: {pages:?}"
    );
    assert!(pages.len() <= 5, "{pages:?}");
    let alerts = s.status()["alerts"].to_string();
    assert!(alerts.contains("TunnelFlapping"), "{alerts}");
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn aws_down_while_pings_pass_and_aws_up_while_pings_fail() {
    need_lab();
    let s = setup_with_ec2("");
    ec2(&s.double, "DOWN", "UP");
    // One poll interval (5 s, plus up to a tenth of jitter).
    let pages = s.wait_pages(1, Duration::from_secs(8));
    assert_eq!(
        pages,
        vec!["[WARNING] TunnelDown dc-a: AWS reports DOWN: IPSEC IS DOWN".to_string()]
    );
    let (_, body) = s.health();
    assert!(body.contains("tunnel dc-a: down since 2026-11-01T08:00:00Z: AWS reports DOWN: IPSEC IS DOWN (data plane up, control plane down)"), "{body}");
    ec2(&s.double, "UP", "UP");
    s.wait_pages(2, Duration::from_secs(8));

    // AWS says UP, but the datacenter stops answering through tunnel B.
    s.lab.blackhole(2);
    let pages = s.wait_pages(3, Duration::from_secs(8));
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(
        pages[2].starts_with(
            "[WARNING] TunnelDown dc-b: AWS reports UP but pinned targets are unreachable"
        ),
        "{pages:?}"
    );
    let (_, body) = s.health();
    assert!(
        body.contains("tunnel dc-b: down since") && body.contains("data plane dead"),
        "{body}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_real_outage_pings_first_then_aws_then_recovery_is_one_page_and_one_resolved() {
    need_lab();
    let s = setup_with_ec2("");
    // The way tunnels drop in production: the pings fail first...
    s.lab.blackhole(1);
    let pages = s.wait_pages(1, BOUND);
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].starts_with("[WARNING] TunnelDown dc-a: AWS reports UP but pinned targets"),
        "{pages:?}"
    );
    // ...EC2's telemetry says DOWN some 10 s later...
    std::thread::sleep(Duration::from_secs(10));
    ec2(&s.double, "DOWN", "UP");
    s.wait_health(Duration::from_secs(8), |_, b| {
        b.contains("AWS reports DOWN")
    });
    // ...and a poll later still nothing new: the outage keeps its one alert.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(s.pages(), pages, "no page while the planes change");
    // Both recover, the data plane first: still down in AWS's eyes, so no resolved yet.
    s.lab.mend(1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(s.pages(), pages, "no resolved page while AWS says DOWN");
    ec2(&s.double, "UP", "UP");
    let pages = s.wait_pages(2, Duration::from_secs(10));
    assert!(
        pages[1].starts_with("[RESOLVED] TunnelDown dc-a"),
        "{pages:?}"
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(s.pages().len(), 2, "{:?}", s.pages());
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn ec2_throttling_keeps_probing_and_paging_and_goes_stale_not_down() {
    need_lab();
    let s = setup_with_ec2("");
    s.double.fail("ec2", "throttle", None);
    s.lab.blackhole(1);
    let pages = s.wait_pages(1, BOUND);
    assert_eq!(
        pages.len(),
        1,
        "paging goes on: {pages:?}; log:\n{}",
        s.daemon.log()
    );
    // AWS's last good answer says UP: the dead tunnel is TunnelDown, saying so.
    assert!(
        pages[0].starts_with("[WARNING] TunnelDown dc-a: AWS reports UP"),
        "{pages:?}"
    );
    s.wait_health(Duration::from_secs(25), |_, b| {
        b.contains("control plane: stale")
    });
    let (status, body) = s.health();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("tunnel dc-b: up") && body.contains("control plane unknown"),
        "{body}"
    );
    let cp = &s.status()["control_plane"];
    assert_eq!(cp["stale"], true);
    assert!(cp["errors"]["throttled"].as_u64().unwrap() >= 1);
    let sent = s.status()["connections"][0]["tunnels"][1]["targets"][0]["sent"]
        .as_u64()
        .unwrap();
    assert!(sent >= 15, "probing went on: {sent}");
    // Going stale changed AWS's view to unknown: no new page for the same dead tunnel.
    assert_eq!(s.pages().len(), 1, "{:?}", s.pages());
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn sns_down_during_an_outage_then_kill_9_pages_once_after_restart() {
    need_lab();
    let mut s = setup(Mode::RawRoot, "");
    s.double.fail("sns", "server_error", None);
    s.lab.blackhole(1);
    let start = Instant::now();
    while s.double.requests("sns").is_empty() && start.elapsed() < BOUND * 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!s.double.requests("sns").is_empty(), "the page was tried");
    s.daemon.child.kill().unwrap();
    s.daemon.child.wait().unwrap();
    s.double.fail("sns", "none", None);
    s.daemon = start_daemon(&s.lab, &s.config, &s.state, s.mode);
    let pages = s.wait_pages(1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(5));
    let pages_now = s.pages();
    assert_eq!(pages_now, pages, "no duplicate");
    assert_eq!(pages.len(), 1, "{pages:?}");
    assert!(
        pages[0].starts_with("[WARNING] TunnelDown dc-a"),
        "{pages:?}"
    );
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn a_link_taken_down_and_brought_back_with_its_routes() {
    need_lab();
    let s = setup(Mode::RawRoot, "");
    s.lab.link_down(2);
    s.wait_health(BOUND * 2, |_, b| {
        b.starts_with("TUNNELKEEPER DEGRADED") && b.contains("dc-b down")
    });
    s.lab.link_up(2);
    s.wait_health(Duration::from_secs(8), |st, b| {
        st == 200 && b.starts_with("TUNNELKEEPER OK")
    });
    let pages = s.wait_pages(2, Duration::from_secs(5));
    assert_eq!(pages.len(), 2, "{pages:?}");
}

/// Repeated breaks of tunnel A: time from the break to the page at the SNS double and to
/// `/health` turning, printed as p50/max (BENCHMARKS.md records a run).
#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn detection_latency_over_repeated_breaks() {
    need_lab();
    let runs: usize = std::env::var("TK_LAB_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // Breaking the same tunnel again and again is flapping; here it must page every time.
    let s = setup(Mode::RawRoot, "flap_changes = 1000");
    let mut page = Vec::new();
    let mut health = Vec::new();
    for i in 0..runs {
        // Break at different phases of the probe schedule.
        std::thread::sleep(Duration::from_millis(1000 + 237 * i as u64 % 1000));
        let (p, h) = break_and_mend_a(&s, 2 * i);
        page.push(p);
        health.push(h);
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], *v.last().unwrap())
    };
    let (page_p50, page_max) = stats(&mut page);
    let (health_p50, health_max) = stats(&mut health);
    let table = format!(
        "| path | runs | p50 | max | bound |\n|---|---|---|---|---|\n| break → page at the SNS double | {runs} | {:.2} s | {:.2} s | {:.1} s |\n| break → /health DEGRADED | {runs} | {:.2} s | {:.2} s | {:.1} s |\n",
        page_p50.as_secs_f64(),
        page_max.as_secs_f64(),
        BOUND.as_secs_f64(),
        health_p50.as_secs_f64(),
        health_max.as_secs_f64(),
        BOUND.as_secs_f64()
    );
    println!("\ndetection latency (interval 1s, down_after 3, timeout 1s):\n{table}");
    if let Ok(path) = std::env::var("TK_LAB_LATENCY_OUT") {
        std::fs::write(path, &table).unwrap();
    }
    assert!(page_max <= BOUND && health_max <= BOUND, "{table}");
}

/// The data-plane scenarios: ICMP errors in both socket modes, and path MTU.
#[path = "lab_data_plane/mod.rs"]
mod data_plane;
