//! The benchmark harness in its seconds-long smoke mode, so that it cannot rot: it runs
//! tunnelkeeper, smokeping_prober and fping side by side on 8 loopback targets in both
//! socket modes, RTT against ping on loopback and through a namespace, and HTTP load, and
//! writes the tables.

mod common;

use std::process::Command;

use common::{binary, need_root, need_tool, temp_dir};

#[test]
#[ignore = "needs root and prometheus-smokeping-prober, fping, wrk, h2load, ping, ip, nft, setpriv, python3"]
fn the_benchmark_harness_runs_and_writes_its_tables() {
    for (tool, package) in [
        ("prometheus-smokeping-prober", "prometheus-smokeping-prober"),
        ("fping", "fping"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("ping", "iputils-ping"),
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("setpriv", "util-linux"),
        ("python3", "python3"),
    ] {
        need_tool(tool, package);
    }
    need_root("the benchmark opens raw ICMP sockets and a network namespace");
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
        "### dgram",
        "### raw",
        "| 8 | tunnelkeeper | ",
        "| 8 | smokeping_prober | ",
        "| 8 | fping | ",
        "| loopback (127.0.0.1) | ",
        "| veth into a namespace (10.203.0.2) | ",
        "| /health | h2load, fixed 1,000/s",
        "`tunnelkeeper_probe_send_delay_seconds`",
    ] {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
    assert!(text.contains("<!-- bench:start -->") && text.contains("<!-- bench:end -->"));
}
