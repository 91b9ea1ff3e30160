//! Brownouts in the tunnel lab: 10 % random loss on tunnel 1 (nftables `numgen random`)
//! for a 30 s `[alerts.lossy]` window pages one `TunnelLossy` for that tunnel only, never
//! `TunnelDown`, while `/health` stays OK (a lossy tunnel still reaches the datacenter);
//! once the loss is removed the alert resolves. Needs root and iproute2, nftables,
//! util-linux and procps.

mod common;
#[path = "support/netlab.rs"]
mod netlab;

use std::time::{Duration, Instant};

use common::{binary, temp_dir, write_temp, Daemon};
use netlab::{need_lab, Lab, PINNED_A, PINNED_B};
use serde_json::Value;

const FIRED: &str = "[WARNING] TunnelLossy dc-a";
const RESOLVED: &str = "[RESOLVED] TunnelLossy dc-a";

fn start(lab: &Lab) -> Daemon {
    let config = write_temp(
        "brownout.toml",
        &format!(
            r#"
[probe]
interval = "200ms"
timeout = "160ms"

[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  targets = ["{PINNED_A}"]
  [[vpn.tunnel]]
  name = "dc-b"
  targets = ["{PINNED_B}"]

[alerts]
flap_changes = 1000
  [alerts.lossy]
  window = "30s"
  threshold = "5%"
  [[alerts.sink]]
  kind = "log"
"#
        ),
    );
    let state = temp_dir("brownout-state");
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
    let daemon = Daemon::spawn(command, Some(lab.reach()));
    daemon.wait_for("/health", Duration::from_secs(15), |status, body| {
        status == 200 && body.starts_with("TUNNELKEEPER OK")
    });
    daemon
}

fn brownout(daemon: &Daemon, tunnel: usize) -> Value {
    let status: Value = serde_json::from_str(&daemon.get("/status").1).unwrap();
    status["connections"][0]["tunnels"][tunnel]["brownout"].clone()
}

/// Returns a tunnel's brownout reading once its loss window is judged (the two tunnels'
/// windows started with their first probes, a moment apart).
fn judged(daemon: &Daemon, tunnel: usize) -> Value {
    let start = Instant::now();
    loop {
        let reading = brownout(daemon, tunnel);
        if reading["window_loss_ratio"].is_f64() || start.elapsed() > Duration::from_secs(3) {
            return reading;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the log holds `line`, asserting at every poll that `/health` is OK.
fn wait_in_log_while_ok(daemon: &Daemon, line: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if daemon.log().contains(line) {
            return start.elapsed();
        }
        let (status, body) = daemon.get("/health");
        assert!(
            status == 200 && body.starts_with("TUNNELKEEPER OK"),
            "a lossy tunnel is still a working path: {body}"
        );
        assert!(
            start.elapsed() < limit,
            "no {line:?} within {limit:?}; dc-a brownout {}\n{}",
            brownout(daemon, 0),
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs root and iproute2, nftables, util-linux, procps (network namespaces)"]
fn ten_percent_loss_on_one_tunnel_pages_tunnel_lossy_for_it_alone_and_resolves() {
    need_lab();
    let lab = Lab::new();
    let daemon = start(&lab);
    lab.loss(1, 10);
    // The window is judged once it spans 30 s: the page comes at about 30 s.
    let fired = wait_in_log_while_ok(&daemon, FIRED, Duration::from_secs(45));
    let reading = judged(&daemon, 0);
    let ratio = reading["window_loss_ratio"].as_f64().unwrap();
    assert!((0.05..0.2).contains(&ratio), "{reading}");
    assert!(
        reading["window_probes"].as_u64().unwrap() >= 100,
        "{reading}"
    );
    let sibling = judged(&daemon, 1);
    assert!(
        sibling["window_loss_ratio"].as_f64().unwrap() < 0.025,
        "{sibling}"
    );
    lab.mend(1);
    // Under 2.5 % once the lossy probes have left the 30 s window.
    let resolved = wait_in_log_while_ok(&daemon, RESOLVED, Duration::from_secs(40));
    eprintln!("TunnelLossy fired after {fired:?} of loss, resolved {resolved:?} after it ended");
    let log = daemon.log();
    assert_eq!(log.matches(FIRED).count(), 1, "one page:\n{log}");
    assert!(
        !log.contains("TunnelLossy dc-b"),
        "the clean tunnel does not page:\n{log}"
    );
    assert!(
        !log.contains("TunnelDown"),
        "10 % loss is no outage:\n{log}"
    );
    let metrics = daemon.get("/metrics").1;
    assert!(
        metrics.contains("tunnelkeeper_tunnel_window_loss_ratio{tunnel=\"dc-a\",vpn=\"dc\"}"),
        "{metrics}"
    );
}
