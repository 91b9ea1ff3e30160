//! The daemon under its own host's faults (issue 30), with the real binary: a state
//! directory that fills during an outage and empties again, with a `kill -9` restart in
//! between, still gets its RESOLVED page out; basic auth that tells no user names apart by
//! timing and brakes a flood of wrong passwords while `/health` keeps answering; and
//! `/health` from a fresh address while 64 addresses hold 32 slow connections each; and
//! Alertmanager posts that stay consistent when the system clock is stepped back (faketime).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{
    aws_env, dc_config, need_root, parse_response, temp_dir, write_temp, AwsDouble, Daemon, VPN_ID,
};
use serde_json::Value;

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:noc-page";

fn start(double: &AwsDouble, state_dir: &Path) -> Daemon {
    let rest = format!("[alerts]\n[[alerts.sink]]\nkind = \"sns\"\ntopic_arn = \"{TOPIC}\"\n");
    let path = write_temp(
        "host_faults.toml",
        &dc_config(double, "", ["127.0.2.1", "127.0.2.2"], &rest),
    );
    Daemon::start(
        &[
            "run",
            "--config",
            path.to_str().unwrap(),
            "--state-dir",
            state_dir.to_str().unwrap(),
        ],
        &aws_env(),
    )
}

fn pages(double: &AwsDouble) -> Vec<Value> {
    double
        .requests("sns")
        .into_iter()
        .filter(|r| r["failed"].is_null())
        .collect()
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir("tmpfs");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs on {}", dir.display());
        Tmpfs(dir)
    }

    /// Fills the file system with `filler` until it is full.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root (mounts a tmpfs)"]
fn a_state_dir_that_fills_during_an_outage_and_empties_still_gets_the_resolved_page_out() {
    need_root("mounts a tmpfs as the state directory");
    let fs = Tmpfs::mount("256k");
    let state_dir = fs.0.join("state");
    let double = AwsDouble::start();
    double.set_tunnels(VPN_ID, "UP", "UP");
    let mut daemon = start(&double, &state_dir);
    daemon.wait_for("/health", Duration::from_secs(10), |c, _| c == 200);

    let filler = fs.fill();
    double.set_tunnels(VPN_ID, "DOWN", "DOWN");
    assert!(
        wait_until(Duration::from_secs(10), || pages(&double).len() == 1),
        "the outage is paged"
    );
    let outage_subject = pages(&double)[0]["params"]["Subject"]
        .as_str()
        .unwrap()
        .to_string();
    daemon.wait_for("/health", Duration::from_secs(10), |_, b| {
        b.contains("STATE NOT SAVED since ")
    });
    let (code, status) = daemon.get("/status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["state_save"]["unsaved_since"].is_string(),
        "{}",
        status["state_save"]
    );
    let (_, metrics) = daemon.get("/metrics");
    assert!(
        !metrics.contains("tunnelkeeper_state_unsaved_since_seconds 0\n"),
        "the metric has the time"
    );
    let temporaries = || {
        std::fs::read_dir(&state_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .count()
    };
    assert_eq!(temporaries(), 0, "failed saves leave no temporary files");
    // A minute on, the alert (through the same sink: SNS takes pages from memory).
    daemon.wait_for("/status", Duration::from_secs(80), |_, b| {
        b.contains("StateNotSaved")
    });
    assert!(
        wait_until(Duration::from_secs(10), || pages(&double)
            .iter()
            .any(|p| p["params"]["Message"]
                .to_string()
                .contains("StateNotSaved"))),
        "StateNotSaved paged: {:?}",
        pages(&double)
    );

    // Space comes back; nothing changes in the outage, so only a retry can save it.
    std::fs::remove_file(filler).unwrap();
    // Within the longest backoff (15 s) of space coming back.
    let saved = wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(state_dir.join("state.json"))
            .is_ok_and(|s| s.contains("ConnectionDown"))
    });
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        !b.contains("STATE NOT SAVED")
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(
        saved,
        "the firing alert reached the disk once space came back"
    );

    double.set_tunnels(VPN_ID, "UP", "UP");
    let _daemon = start(&double, &state_dir);
    assert!(
        outage_subject.contains("ConnectionDown"),
        "{outage_subject}"
    );
    let resolved_subject = |p: &Value| {
        p["params"]["Subject"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[RESOLVED] ConnectionDown")
    };
    assert!(
        wait_until(Duration::from_secs(15), || pages(&double)
            .iter()
            .any(resolved_subject)),
        "the outage's RESOLVED after the restart: {outage_subject} then {:?}",
        pages(&double)
            .iter()
            .map(|p| p["params"]["Subject"].clone())
            .collect::<Vec<_>>()
    );
}
