//! `/metrics` of the running daemon passes `promtool check metrics` without a word.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{need_tool, Daemon};

#[test]
#[ignore = "needs promtool (prometheus)"]
fn metrics_pass_promtool_check_metrics() {
    need_tool("promtool", "prometheus");
    let daemon = Daemon::start(&[], &[]);
    let (_, metrics) = daemon.wait_for("/metrics", Duration::from_secs(5), |_, b| {
        b.contains("tunnelkeeper_vpn_state{state=\"ok\"} 1")
    });
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool said:\n{said}"
    );
}
