//! TCP targets through the real binary on loopback: a listener answers (the target is up
//! with the handshake's RTT and the MSS in `/status` and `/metrics`), a closed port is
//! refused (the host answers: the target and its tunnel stay up, and `ServiceDown` names
//! the service), and `tunnelkeeper status` shows both with their ports.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{run_cli, write_temp, Daemon};

/// A port on `ip` that nothing listens on (bound, then closed).
fn closed_port(ip: &str) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_listener_is_up_with_rtt_and_mss_and_a_closed_port_pages_service_down_with_the_tunnel_up() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    // Accept and drop, as a service would after a health check's close.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let closed = closed_port("127.0.0.6");
    let config = format!(
        r#"
[probe]
timeout = "150ms"
tcp_interval = "200ms"
down_after = 2
[alerts]
for = "0s"
[[vpn]]
name = "lab"
  [[vpn.tunnel]]
  name = "lab-a"
  targets = ["127.0.0.1:{open}"]
  [[vpn.tunnel]]
  name = "lab-b"
  targets = [{{ address = "127.0.0.6", tcp_port = {closed}, name = "registry-db" }}]
"#
    );
    let path = write_temp("tcp.toml", &config);
    let daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);

    let service_down = format!("127.0.0.6:{closed}");
    let (_, body) = daemon.wait_for("/status", Duration::from_secs(10), |_, b| {
        b.contains("\"ServiceDown\"") && b.contains("\"mss_bytes\":")
    });
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tunnels = &status["connections"][0]["tunnels"];
    let (a, b) = (&tunnels[0], &tunnels[1]);
    assert_eq!(a["state"], "up", "{a}");
    assert_eq!(b["state"], "up", "a refused connect reaches the host: {b}");
    let open_target = &a["targets"][0];
    assert_eq!(open_target["proto"], "tcp");
    assert_eq!(open_target["tcp_port"], open);
    assert_eq!(open_target["service"]["state"], "open");
    let rtt = open_target["rtt_last_seconds"].as_f64().unwrap();
    assert!(rtt > 0.0 && rtt < 0.1, "{rtt}");
    let mss = open_target["service"]["mss_bytes"].as_u64().unwrap();
    assert!(mss > 1000, "loopback's MSS: {mss}");
    assert_eq!(a["tcp_mss"]["bytes"], mss);
    assert_eq!(a["tcp_mss"]["target"], format!("127.0.0.1:{open}"));
    let refused = &b["targets"][0];
    assert_eq!(refused["state"], "up", "{refused}");
    assert_eq!(refused["service"]["state"], "refused");
    assert_eq!(refused["recent_loss_percent"], 0.0, "a reset is no loss");
    let alert = status["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["alert"] == "ServiceDown")
        .unwrap();
    assert_eq!(alert["tunnel"], "lab-b");
    assert_eq!(alert["severity"], "warning");
    assert!(
        alert["summary"].as_str().unwrap().contains(&service_down),
        "{alert}"
    );
    assert_eq!(status["vpn"]["state"], "ok", "{}", status["vpn"]);

    let (_, metrics) = daemon.get("/metrics");
    assert!(
        metrics.contains(&format!(
            "tunnelkeeper_tcp_mss_bytes{{tunnel=\"lab-a\",vpn=\"lab\"}} {mss}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "tunnelkeeper_probe_sent_total{{address=\"127.0.0.1\",proto=\"tcp\",target=\"127.0.0.1:{open}\""
    )));
    assert!(metrics.lines().any(|l| l
        .starts_with("tunnelkeeper_tcp_service_refused_in_a_row{target=\"registry-db\"")
        && !l.ends_with(" 0")));
    // The threshold beside it, so that Prometheus's ServiceDown follows the config.
    assert!(
        metrics.lines().any(|l| l
            .starts_with("tunnelkeeper_tcp_service_down_after{target=\"registry-db\"")
            && l.ends_with(" 2")),
        "{metrics}"
    );

    let (code, out, err) = run_cli(&["status", "--addr", &daemon.addr.to_string()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("127.0.0.1:{open}/tcp")), "{out}");
    assert!(out.contains(&format!("127.0.0.6:{closed}/tcp")), "{out}");
    assert!(out.contains("up/refused"), "{out}");
    assert!(out.contains("ServiceDown"), "{out}");
}

#[test]
#[ignore = "needs root (runs the daemon as nobody, without CAP_NET_RAW)"]
fn a_tcp_only_config_runs_where_no_icmp_socket_opens() {
    common::need_root("to run the daemon as nobody, with no ICMP privilege");
    // nobody's group outside ping_group_range and no CAP_NET_RAW: no ICMP socket opens.
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    let bounds: Vec<u32> = range
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        !(bounds[0]..=bounds[1]).contains(&NOGROUP),
        "ping_group_range {range:?} lets nogroup open ICMP sockets: this test needs a host that does not"
    );
    // One port on every loopback address.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    let config = write_temp(
        "tcp-only.toml",
        &format!(
            r#"
[probe]
timeout = "150ms"
tcp_interval = "200ms"
[[vpn]]
name = "svc"
  [[vpn.tunnel]]
  name = "svc-a"
  targets = ["127.0.0.1:{open}"]
  [[vpn.tunnel]]
  name = "svc-b"
  targets = ["127.0.0.2:{open}"]
"#
        ),
    );
    let state = common::temp_dir("tcp-only-state");
    std::os::unix::fs::chown(&state, Some(NOGROUP), Some(NOGROUP)).unwrap();
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(common::unprivileged_binary())
        .args(["run", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(&state)
        .env_remove("TUNNELKEEPER_CONFIG")
        .env("RUST_LOG", "info");
    let daemon = Daemon::spawn(command, None);
    let (_, body) = daemon.wait_for("/status", Duration::from_secs(10), |_, b| {
        serde_json::from_str::<serde_json::Value>(b)
            .is_ok_and(|s| s["connections"][0]["tunnels"][1]["state"] == "up")
    });
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["icmp_socket"], "none", "{}", daemon.log());
    assert_eq!(
        status["connections"][0]["tunnels"][0]["state"], "up",
        "{status}"
    );
    assert!(
        daemon.log().contains("no ICMP socket: every target is TCP"),
        "{}",
        daemon.log()
    );
}

/// nobody's user and group id on Debian.
const NOGROUP: u32 = 65534;
