//! TCP targets in the tunnel lab: a listener in the datacenter namespace on tunnel 1's
//! pinned address, which is tunnel 1's only target. The host dropping ICMP changes nothing
//! (the TCP target and the tunnel stay up); the port closed (the host resets the SYNs)
//! pages `ServiceDown` with the tunnel up; the SYNs dropped in the tunnel take the target
//! and, as it is the tunnel's only target, the tunnel down. The MSS read from the listener
//! follows the listener's link (1300 bytes gives at most 1260), and an MSS over the
//! measured path MTU less 40 is the `tcp_mss_over_path_mtu` advisory; a router rejecting
//! the SYNs with "administratively prohibited" is a loss naming it. Tunnel 2 keeps its
//! ICMP target throughout (raw sockets). Needs root, iproute2, nftables, util-linux,
//! procps and python3 (the listener): `#[ignore]`d by default.

mod common;
#[path = "support/netlab.rs"]
mod netlab;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{binary, need_tool, temp_dir, write_temp, Daemon};
use netlab::{need_lab, Lab, PINNED_A, PINNED_B};
use serde_json::Value;

const PORT: u16 = 5432;

/// A listener in the datacenter namespace that accepts and closes; killed on drop.
struct Listener(Child);

impl Listener {
    fn start(lab: &Lab) -> Listener {
        let script = format!(
            "import socket\n\
             s = socket.socket()\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{PINNED_A}', {PORT}))\n\
             s.listen(128)\n\
             while True:\n    c, _ = s.accept()\n    c.close()\n"
        );
        let child = lab
            .exec(&lab.dc, "python3")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the listener");
        Listener(child)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(lab: &Lab, ns: &str, args: &[&str]) {
    let out = lab.exec(ns, args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One nftables table `name` in namespace `ns` with one chain on `hook` holding `rule`.
fn nft_rule(lab: &Lab, ns: &str, name: &str, hook: &str, rule: &str) {
    sh(lab, ns, &["nft", "add", "table", "inet", name]);
    sh(
        lab,
        ns,
        &[
            "nft",
            &format!(
                "add chain inet {name} c {{ type filter hook {hook} priority 0; policy accept; }}"
            ),
        ],
    );
    sh(lab, ns, &["nft", &format!("add rule inet {name} c {rule}")]);
}

fn nft_delete(lab: &Lab, ns: &str, name: &str) {
    sh(lab, ns, &["nft", "delete", "table", "inet", name]);
}

fn status(daemon: &Daemon) -> Value {
    serde_json::from_str(&daemon.get("/status").1).unwrap()
}

fn tunnel(s: &Value, i: usize) -> &Value {
    &s["connections"][0]["tunnels"][i]
}

/// Waits until `check` holds on `/status`.
fn wait_status(daemon: &Daemon, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let (_, body) = daemon.wait_for("/status", limit, |_, b| {
        serde_json::from_str::<Value>(b).is_ok_and(|s| check(&s))
    });
    serde_json::from_str(&body).unwrap()
}

fn service_down(s: &Value) -> bool {
    s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["alert"] == "ServiceDown" && a["state"] == "firing")
}

fn mss(s: &Value) -> Option<u64> {
    tunnel(s, 0)["targets"][0]["service"]["mss_bytes"].as_u64()
}

#[test]
#[ignore = "needs root, iproute2, nftables, util-linux, procps and python3 (the tunnel lab)"]
fn tcp_targets_in_the_lab_ride_out_icmp_drops_page_refusals_and_fall_with_their_syns() {
    need_lab();
    need_tool("python3", "python3");
    let lab = Lab::new();
    let listener = Listener::start(&lab);
    let config = write_temp(
        "lab-tcp.toml",
        &format!(
            r#"
[probe]
interval = "1s"
timeout = "300ms"
tcp_interval = "1s"
down_after = 3
up_after = 2
socket = "raw"
[mtu]
interval = "10s"
[alerts]
for = "0s"
[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  targets = ["{PINNED_A}:{PORT}"]
  [[vpn.tunnel]]
  name = "dc-b"
  targets = ["{PINNED_B}"]
"#
        ),
    );
    let state = temp_dir("lab-tcp-state");
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

    // Open, over a full path: the MSS of a 1500-byte link (1460, less 12 with timestamps).
    let s = wait_status(&daemon, Duration::from_secs(20), |s| {
        tunnel(s, 0)["state"] == "up" && tunnel(s, 1)["state"] == "up" && mss(s).is_some()
    });
    let full = mss(&s).unwrap();
    assert!((1400..=1460).contains(&full), "{full}");
    assert_eq!(tunnel(&s, 0)["targets"][0]["service"]["state"], "open");
    assert!(
        tunnel(&s, 0)["targets"][0]["rtt_last_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    // The listener's own link narrowed to 1300 bytes: it advertises 1260 at most.
    sh(&lab, &lab.dc, &["ip", "link", "set", "d-t1", "mtu", "1300"]);
    let s = wait_status(&daemon, Duration::from_secs(10), |s| {
        mss(s).is_some_and(|m| m <= 1260)
    });
    assert!(mss(&s).unwrap() >= 1200, "{:?}", mss(&s));
    assert_eq!(tunnel(&s, 0)["tcp_mss"]["bytes"], mss(&s).unwrap());
    sh(&lab, &lab.dc, &["ip", "link", "set", "d-t1", "mtu", "1500"]);

    // The router's onward link narrowed instead, with nobody clamping: connects still get
    // the full MSS, which the measured path MTU cannot carry.
    lab.narrow_onward_link(1, 1300);
    let s = wait_status(&daemon, Duration::from_secs(30), |s| {
        tunnel(s, 0)["path_mtu"]["bytes"] == 1300
            && s["advisories"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["code"] == "tcp_mss_over_path_mtu" && a["tunnel"] == "dc-a")
    });
    assert!(mss(&s).unwrap() > 1260, "{:?}", mss(&s));
    lab.narrow_onward_link(1, 1500);

    // The host drops ICMP: ping fails, the TCP target and its tunnel stay up.
    nft_rule(
        &lab,
        &lab.dc,
        "noicmp",
        "input",
        &format!("ip daddr {PINNED_A} icmp type echo-request drop"),
    );
    let ping = lab
        .exec(&lab.vpc, "ping")
        .args(["-c", "2", "-W", "1", PINNED_A])
        .output()
        .unwrap();
    assert!(!ping.status.success(), "ICMP to {PINNED_A} still answered");
    std::thread::sleep(Duration::from_secs(5));
    let s = status(&daemon);
    assert_eq!(tunnel(&s, 0)["state"], "up", "{}", tunnel(&s, 0));
    assert_eq!(tunnel(&s, 0)["targets"][0]["consecutive_lost"], 0);

    // The port closed: the host resets the SYNs. ServiceDown, the tunnel up.
    drop(listener);
    let s = wait_status(&daemon, Duration::from_secs(15), service_down);
    assert_eq!(tunnel(&s, 0)["state"], "up", "{}", tunnel(&s, 0));
    assert_eq!(tunnel(&s, 0)["targets"][0]["service"]["state"], "refused");
    let alert = s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "ServiceDown")
        .unwrap()
        .clone();
    assert_eq!(alert["tunnel"], "dc-a");
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("{PINNED_A}:{PORT}")),
        "{alert}"
    );
    assert_eq!(s["vpn"]["state"], "ok");

    // The SYNs dropped in the tunnel: the target is down, and with it its tunnel (its
    // only target), while tunnel 2's ICMP target keeps the VPN reachable.
    nft_delete(&lab, &lab.dc, "noicmp");
    lab.blackhole(1);
    let s = wait_status(&daemon, Duration::from_secs(15), |s| {
        tunnel(s, 0)["state"] == "down"
    });
    assert_eq!(tunnel(&s, 0)["targets"][0]["state"], "down");
    assert_eq!(tunnel(&s, 1)["state"], "up");
    assert!(
        tunnel(&s, 0)["targets"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no reply"),
        "{}",
        tunnel(&s, 0)["targets"][0]
    );
    lab.mend(1);

    // The tunnel's router rejects the SYNs with "administratively prohibited": a loss
    // that names the router, read from the connect's error queue.
    lab.reject(1, "admin-prohibited");
    let s = wait_status(&daemon, Duration::from_secs(15), |s| {
        tunnel(s, 0)["targets"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("prohibited"))
    });
    let reason = tunnel(&s, 0)["targets"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("ICMP from 10.1.1.2"), "{reason}");
    assert!(tunnel(&s, 0)["targets"][0]["icmp_errors"].as_u64().unwrap() > 0);
    lab.mend(1);

    // Back: the host resets again, so the target (and the tunnel) is up, the service not.
    let s = wait_status(&daemon, Duration::from_secs(15), |s| {
        tunnel(s, 0)["state"] == "up"
    });
    assert_eq!(tunnel(&s, 0)["targets"][0]["service"]["state"], "refused");
}
