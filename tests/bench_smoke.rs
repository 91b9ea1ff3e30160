//! The benchmark harness in its seconds-long smoke mode, so that it cannot rot: it runs
//! tunnelkeeper and smokeping_prober side by side on 8 loopback targets and writes a table.

mod common;

use std::process::Command;

use common::{binary, require_tool, temp_dir};

#[test]
fn the_benchmark_harness_runs_and_writes_its_tables() {
    for (tool, package) in [
        ("prometheus-smokeping-prober", "prometheus-smokeping-prober"),
        ("wrk", "wrk"),
        ("ping", "iputils-ping"),
        ("python3", "python3"),
    ] {
        if !require_tool(tool, package) {
            return;
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status").unwrap();
    if !uid
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the benchmark smoke test needs root under CI"
        );
        eprintln!("\n*** SKIPPED: the benchmark needs root (raw ICMP for both tools) ***\n");
        return;
    }
    let out = temp_dir("bench").join("BENCHMARKS.md");
    let run = Command::new("python3")
        .args([
            concat!(env!("CARGO_MANIFEST_DIR"), "/bench/run.py"),
            "--smoke",
            "--no-install",
            "--binary",
            binary(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    for row in [
        "| 8 | tunnelkeeper | ",
        "| 8 | smokeping_prober | ",
        "| ping |",
        "| /health | 32 |",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
    assert!(text.contains("<!-- bench:start -->") && text.contains("<!-- bench:end -->"));
}
