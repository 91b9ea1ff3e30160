//! Operations: live reload (SIGHUP and `POST /-/reload`), systemd notifications, the
//! shipped unit (verified and security-rated by systemd-analyze), the Prometheus rules
//! (promtool), and the `status` and `healthcheck` commands.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{binary, http_request, need_tool, run_cli, temp_dir, write_temp, Daemon};
use serde_json::Value;

fn lab_config(tunnel_b_targets: &str, shared: &str) -> String {
    format!(
        "[[vpn]]\nname = \"lab\"\n[[vpn.tunnel]]\nname = \"lab-a\"\ntargets = [\"127.0.4.1\"]\n[[vpn.tunnel]]\nname = \"lab-b\"\ntargets = [{tunnel_b_targets}]\n{shared}"
    )
}

fn status(daemon: &Daemon) -> Value {
    serde_json::from_str(&daemon.get("/status").1).unwrap()
}

fn target_names(j: &Value) -> Vec<String> {
    let mut names: Vec<String> = j["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["tunnels"].as_array().unwrap().iter())
        .flat_map(|t| t["targets"].as_array().unwrap().iter())
        .chain(j["shared_targets"].as_array().unwrap().iter())
        .map(|t| t["address"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn sighup_reload_adds_and_removes_targets_and_keeps_unchanged_tunnels() {
    let path = write_temp(
        "reload.toml",
        &lab_config("\"127.0.4.2\", \"127.0.4.3\"", ""),
    );
    let mut daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, b| {
        s == 200 && b.contains("tunnel lab-b: up")
    });
    std::thread::sleep(Duration::from_secs(2));
    let before = status(&daemon);
    let a_since = before["connections"][0]["tunnels"][0]["since"]
        .as_str()
        .unwrap()
        .to_string();
    let a_sent = before["connections"][0]["tunnels"][0]["targets"][0]["sent"]
        .as_u64()
        .unwrap();
    assert!(a_sent >= 2);

    // Drop 127.0.4.3, add a shared target.
    std::fs::write(
        &path,
        lab_config(
            "\"127.0.4.2\"",
            "[[target]]\nname = \"dc-host\"\naddress = \"127.0.4.9\"\n",
        ),
    )
    .unwrap();
    let pid = daemon.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let (_, body) = daemon.wait_for("/status", Duration::from_secs(5), |_, b| {
        b.contains("127.0.4.9")
    });
    let after: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        target_names(&after),
        ["127.0.4.1", "127.0.4.2", "127.0.4.9"]
    );
    // The unchanged tunnel kept its state, its since and its counters.
    assert_eq!(
        after["connections"][0]["tunnels"][0]["since"],
        a_since.as_str()
    );
    assert!(
        after["connections"][0]["tunnels"][0]["targets"][0]["sent"]
            .as_u64()
            .unwrap()
            >= a_sent
    );
    // The added target is probed, the removed one is gone from /metrics too.
    daemon.wait_for("/status", Duration::from_secs(5), |_, b| {
        serde_json::from_str::<Value>(b).is_ok_and(|j| j["shared_targets"][0]["state"] == "up")
    });
    let (_, metrics) = daemon.get("/metrics");
    assert!(metrics.contains("address=\"127.0.4.9\""));
    assert!(!metrics.contains("address=\"127.0.4.3\""));
    assert!(metrics.contains("tunnelkeeper_config_last_reload_successful 1"));
    // The pingers of unchanged targets went on; only the removed and the added changed.
    let log = daemon.log();
    assert!(log.contains("config reloaded"), "{log}");
    assert!(
        log.contains("pingers_kept=2 pingers_started=1 pingers_stopped=1"),
        "{log}"
    );
    // The log says what changed, and the VPN state only when it changes (once, at start).
    for change in [
        "target 127.0.4.9 (dc-host) added on shared",
        "target 127.0.4.3 (127.0.4.3) removed from tunnel lab-b of lab",
    ] {
        assert!(log.contains(change), "{change} not in:\n{log}");
    }
    assert_eq!(log.matches("VPN state").count(), 1, "{log}");

    // An invalid config is refused and the old one keeps running.
    std::fs::write(
        &path,
        "[[vpn]]\nname = \"lab\"\n[[vpn.tunnel]]\nname = \"lab-a\"\ntargets = [\"300.1.1.1\"]\n",
    )
    .unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    daemon.wait_for("/metrics", Duration::from_secs(5), |_, b| {
        b.contains("tunnelkeeper_config_last_reload_successful 0")
    });
    // The log reaches the test through a reader thread: it may trail the metric a little.
    let waited = std::time::Instant::now();
    while !daemon.log().contains("config reload refused") {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        target_names(&status(&daemon)),
        ["127.0.4.1", "127.0.4.2", "127.0.4.9"]
    );
    let (code, body) = daemon.get("/health");
    assert_eq!(code, 200, "{body}");
    assert!(daemon.stop("TERM", Duration::from_secs(3)).success());
}

#[test]
fn post_reload_is_off_by_default_and_answers_with_the_outcome_when_enabled() {
    let path = write_temp("reload.toml", &lab_config("\"127.0.5.2\"", ""));
    let post =
        "POST /-/reload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let off = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);
    off.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    let (code, body) = http_request(off.addr, post);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("--web.enable-lifecycle"), "{body}");
    drop(off);

    let daemon = Daemon::start(
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--web.enable-lifecycle",
        ],
        &[],
    );
    daemon.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    let (code, body) = http_request(daemon.addr, post);
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("reloaded: 1 connection(s), 2 tunnel(s)"),
        "{body}"
    );
    std::fs::write(&path, "[probe]\ndown_after = 0\n").unwrap();
    let (code, body) = http_request(daemon.addr, post);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("config refused, the old one keeps running")
            && body.contains("probe.down_after"),
        "{body}"
    );
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    let dir = temp_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut daemon = Daemon::start(
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut heard: Vec<String> = Vec::new();
    let mut buf = [0u8; 512];
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok(n) = socket.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).to_string());
        }
        if heard.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2
            && heard.iter().any(|m| m == "READY=1")
            && heard.iter().any(|m| m == "STATUS=OK: 2/2 tunnels up")
        {
            break;
        }
    }
    let ready = heard
        .iter()
        .position(|m| m == "READY=1")
        .unwrap_or_else(|| panic!("no READY=1: {heard:?}"));
    // Both loopback targets of the embedded default answer.
    assert!(
        heard.iter().any(|m| m == "STATUS=OK: 2/2 tunnels up"),
        "{heard:?}"
    );
    assert!(
        heard.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2,
        "{heard:?}"
    );
    // READY=1 only once the first probe round is out: by then /health has a verdict. The
    // monitor sends STATUS= as it applies each answer, so the last one before READY=1 must
    // already carry a verdict.
    let status_before_ready = heard[..ready]
        .iter()
        .rev()
        .find_map(|m| m.strip_prefix("STATUS="));
    assert!(
        status_before_ready.is_some_and(|s| ["OK: ", "DEGRADED: ", "CRITICAL: "]
            .iter()
            .any(|verdict| s.starts_with(verdict))),
        "READY=1 came before any verdict: {heard:?}"
    );
    assert!(daemon.stop("TERM", Duration::from_secs(3)).success());
    let mut rest = Vec::new();
    while let Ok(n) = socket.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}

#[test]
fn status_prints_a_table_and_healthcheck_probes_liveness() {
    let daemon = Daemon::start(&[], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("tunnel local-b: up")
    });
    let addr = daemon.addr.to_string();
    let (code, out, err) = run_cli(&["status", "--addr", &addr]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("TUNNELKEEPER OK"), "{out}");
    assert!(
        out.contains("local-a") && out.contains("127.0.0.2") && out.contains("ALERTS (0)"),
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colors when not a terminal");
    let (code, out, _) = run_cli(&["status", "--addr", &addr, "--json"]);
    assert_eq!(code, 0);
    assert!(serde_json::from_str::<Value>(&out).is_ok());
    assert_eq!(run_cli(&["healthcheck", "--addr", &addr]).0, 0);
    // Host names work as well as addresses.
    let by_name = format!("localhost:{}", daemon.addr.port());
    assert_eq!(run_cli(&["status", "--addr", &by_name]).0, 0);
    // Nothing listens on port 1 of loopback.
    let (code, _, err) = run_cli(&["healthcheck", "--addr", "127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(err.contains("unhealthy"), "{err}");
    // As a monitoring plugin, an unreachable daemon is UNKNOWN (3).
    assert_eq!(run_cli(&["status", "--addr", "127.0.0.1:1"]).0, 3);
}

#[test]
#[ignore = "needs systemd-analyze (systemd)"]
fn the_systemd_unit_verifies_and_rates_2_or_lower() {
    need_tool("systemd-analyze", "systemd");
    // The unit names /usr/local/bin/tunnelkeeper; verify checks that it exists, so point it
    // at the binary under test.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/tunnelkeeper.service"
    ))
    .unwrap();
    let dir = temp_dir("unit");
    let path = dir.join("tunnelkeeper.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/tunnelkeeper", binary())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", path.to_str().unwrap()])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify said:\n{said}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for tunnelkeeper.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{text}");
}

#[test]
#[ignore = "needs promtool (prometheus)"]
fn the_prometheus_rules_check_and_pass_their_unit_tests() {
    need_tool("promtool", "prometheus");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [
        ["check", "rules", "tunnelkeeper-rules.yml"],
        ["test", "rules", "tunnelkeeper-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_grafana_dashboard_and_ecs_task_definition_are_valid_json() {
    for file in [
        "deploy/grafana/tunnelkeeper.json",
        "deploy/ecs/task-definition.json",
    ] {
        let text =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let j: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(j.is_object(), "{file}");
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/tunnelkeeper.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let exprs = dash["panels"].to_string();
    for metric in [
        "tunnelkeeper_tunnel_up",
        "tunnelkeeper_probe_rtt_seconds_bucket",
        "tunnelkeeper_alerts_firing",
        "tunnelkeeper_probe_sent_total",
    ] {
        assert!(exprs.contains(metric), "the dashboard uses {metric}");
    }
}
