//! Reload health: `tunnelkeeper reload` signals the real daemon and waits for the outcome;
//! a refused reload shows on `/status`, `/health` (status code unchanged), the NOC page and
//! `tunnelkeeper status` until a good config is taken.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{binary, run_cli, write_temp, Daemon};
use serde_json::Value;

fn good_config(targets: &str) -> String {
    format!(
        "[[vpn]]\nname = \"lab\"\n[[vpn.tunnel]]\nname = \"lab-a\"\ntargets = [{targets}]\n[[vpn.tunnel]]\nname = \"lab-b\"\ntargets = [\"127.0.6.2\"]\n"
    )
}

/// A misspelt table and an invalid VPN id: check-config's text names both.
const BAD_CONFIG: &str = "[[vpn]]\nid = \"vpn-12\"\nname = \"lab\"\n[[vpn.tunnels]]\nname = \"lab-a\"\ntargets = [\"127.0.6.1\"]\n";

fn status(daemon: &Daemon) -> Value {
    serde_json::from_str(&daemon.get("/status").1).unwrap()
}

fn reload_cli(daemon: &Daemon, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let addr = daemon.addr.to_string();
    let mut command = Command::new(binary());
    command
        .args(["reload", "--addr", &addr])
        .args(extra)
        .env_remove("MAINPID")
        .env_remove("TUNNELKEEPER_ADDR");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn a_refused_reload_fails_the_reload_command_and_shows_everywhere_until_a_good_one() {
    let path = write_temp("reload-health.toml", &good_config("\"127.0.6.1\""));
    let mut daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, b| {
        s == 200 && b.contains("tunnel lab-b: up")
    });
    let fresh = status(&daemon);
    assert_eq!(fresh["pid"], daemon.child.id());
    assert_eq!(fresh["reload"]["last_attempt"], Value::Null, "{fresh:#}");
    assert_eq!(fresh["reload"]["ok"], Value::Null);
    assert_eq!(fresh["reload"]["error"], Value::Null);
    assert!(fresh["reload"]["last_success"].is_string());

    // A bad config: the command fails with the reason, and the old config runs on.
    std::fs::write(&path, BAD_CONFIG).unwrap();
    let (code, stdout, stderr) = reload_cli(&daemon, &[], &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    for needle in ["was refused", "\"vpn-12\"", "did you mean `tunnel`?"] {
        assert!(stderr.contains(needle), "{needle} not in: {stderr}");
    }
    let refused = status(&daemon);
    assert_eq!(refused["reload"]["ok"], false, "{refused:#}");
    assert!(refused["reload"]["last_attempt"].is_string());
    assert!(refused["reload"]["error"]
        .as_str()
        .unwrap()
        .contains("\"vpn-12\""));
    assert_eq!(
        refused["reload"]["last_success"], fresh["reload"]["last_success"],
        "the previous config still runs"
    );
    let (code, health) = daemon.get("/health");
    assert_eq!(
        code, 200,
        "a refused reload does not change /health's code: {health}"
    );
    assert!(health.starts_with("TUNNELKEEPER OK"), "{health}");
    let line = health
        .lines()
        .find(|l| l.starts_with("config reload at "))
        .unwrap_or_else(|| panic!("no reload line in /health:\n{health}"));
    assert!(
        line.contains("refused") && line.contains("vpn-12"),
        "{line}"
    );
    let (_, page) = daemon.get("/");
    assert!(
        page.contains("id=\"reload-refused\""),
        "no banner on the NOC page"
    );
    assert!(page.contains("was refused"), "no banner on the NOC page");
    let addr = daemon.addr.to_string();
    let (_, table, _) = run_cli(&["status", "--addr", &addr]);
    assert!(table.contains("WARNING: config reload at"), "{table}");

    // A good config (through MAINPID, as systemd's ExecReload= gives it) clears it all.
    std::fs::write(&path, good_config("\"127.0.6.1\", \"127.0.6.3\"")).unwrap();
    let pid = daemon.child.id().to_string();
    let (code, stdout, stderr) = reload_cli(&daemon, &[], &[("MAINPID", &pid)]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("config reloaded at"), "{stdout}");
    let taken = status(&daemon);
    assert_eq!(taken["reload"]["ok"], true, "{taken:#}");
    assert_eq!(taken["reload"]["error"], Value::Null);
    assert_eq!(
        taken["reload"]["last_success"],
        taken["reload"]["last_attempt"]
    );
    assert!(daemon.get("/status").1.contains("127.0.6.3"));
    // The added target starts unknown: /health is 200 again once it answered.
    let (_, health) = daemon.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    assert!(!health.contains("config reload"), "{health}");
    assert!(!daemon.get("/").1.contains("reload-refused"));
    let (_, table, _) = run_cli(&["status", "--addr", &addr]);
    assert!(!table.contains("WARNING: config reload"), "{table}");
    assert!(daemon.stop("TERM", Duration::from_secs(3)).success());
}

#[test]
fn the_reload_command_fails_when_no_outcome_comes_or_no_daemon_answers() {
    let path = write_temp("reload-timeout.toml", &good_config("\"127.0.6.1\""));
    let mut daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    // The signal goes to a process that is not the daemon: no attempt ever shows.
    let mut bystander = Command::new("sleep").arg("60").spawn().unwrap();
    let bystander_pid = bystander.id().to_string();
    let (code, _, stderr) = reload_cli(&daemon, &["--pid", &bystander_pid, "--timeout", "1s"], &[]);
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no reload outcome within 1s"), "{stderr}");
    assert_eq!(status(&daemon)["reload"]["last_attempt"], Value::Null);

    // No daemon at the address: nothing is signalled, and the command says why.
    let addr = daemon.addr.to_string();
    assert!(daemon.stop("TERM", Duration::from_secs(3)).success());
    let (code, _, stderr) = run_cli(&["reload", "--addr", &addr, "--timeout", "1s"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach tunnelkeeper"), "{stderr}");
    assert!(stderr.contains("no signal sent"), "{stderr}");
}
