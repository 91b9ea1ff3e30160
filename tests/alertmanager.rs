//! Two tunnelkeepers watching the same VPN send their alerts to a real Prometheus
//! Alertmanager (Debian's package, started on loopback by the test): it holds one alert,
//! not two, and the alert ends when the tunnel comes back.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    aws_env, dc_config, http_call, need_tool, temp_dir, write_temp, AwsDouble, Daemon, VPN_ID as ID,
};
use serde_json::Value;

struct Alertmanager {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_alertmanager() -> Alertmanager {
    let dir = temp_dir("alertmanager");
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        // No cluster: nothing listens or gossips beyond loopback.
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus-alertmanager");
    let am = Alertmanager { child, addr };
    let start = Instant::now();
    while http_call(am.addr, "GET", "/-/ready", "").0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Alertmanager did not get ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    am
}

fn active_alerts(am: &Alertmanager) -> Vec<Value> {
    let (status, body) = http_call(am.addr, "GET", "/api/v2/alerts?active=true", "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .into_iter()
        .filter(|a| a["status"]["state"] == "active")
        .collect()
}

fn set_b(double: &AwsDouble, status: &str) {
    double.set_tunnels(ID, "UP", status);
}

/// How long an alert lives in Alertmanager after its last post (the daemon's AM_LAPSE).
const LAPSE: Duration = Duration::from_secs(40);

fn config_for(double: &AwsDouble, am: &Alertmanager) -> std::path::PathBuf {
    write_temp(
        "am.toml",
        &dc_config(
            double,
            "",
            ["127.0.3.1", "127.0.3.2"],
            &format!(
                "[[alerts.sink]]\nkind = \"alertmanager\"\nurl = \"http://{}\"\n",
                am.addr
            ),
        ),
    )
}

fn wait_for_alerts(
    am: &Alertmanager,
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let alerts = active_alerts(am);
        if done(&alerts) || start.elapsed() > limit {
            return alerts;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "needs prometheus-alertmanager"]
fn two_instances_make_one_alert_in_alertmanager_and_it_resolves() {
    need_tool("prometheus-alertmanager", "prometheus-alertmanager");
    let am = start_alertmanager();
    let double = AwsDouble::start();
    set_b(&double, "DOWN");
    let config = config_for(&double, &am);
    let config = config.to_str().unwrap();
    let _one = Daemon::start(&["run", "--config", config], &aws_env());
    let _two = Daemon::start(&["run", "--config", config], &aws_env());

    let alerts = wait_for_alerts(&am, Duration::from_secs(15), |a| !a.is_empty());
    assert_eq!(alerts.len(), 1, "one alert from two instances: {alerts:#?}");
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["alertname"], "TunnelDown");
    assert_eq!(labels["tunnel"], "dc-b");
    assert_eq!(labels["vpn_id"], ID);
    assert_eq!(labels["severity"], "warning");
    assert!(alerts[0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("AWS reports DOWN"));
    assert_eq!(
        alerts[0]["annotations"]["notification_id"]
            .as_str()
            .map(str::len),
        Some(16)
    );

    set_b(&double, "UP");
    let left = wait_for_alerts(&am, LAPSE + Duration::from_secs(20), |a| a.is_empty());
    assert!(left.is_empty(), "the alert did not end: {left:#?}");
}

#[test]
#[ignore = "needs prometheus-alertmanager"]
fn an_alert_stays_firing_while_any_instance_sees_it_and_ends_once_none_does() {
    need_tool("prometheus-alertmanager", "prometheus-alertmanager");
    let am = start_alertmanager();
    // Two instances that see different things: A's EC2 says tunnel b is DOWN, B's says UP.
    let (double_a, double_b) = (AwsDouble::start(), AwsDouble::start());
    set_b(&double_a, "DOWN");
    set_b(&double_b, "DOWN");
    let config_a = config_for(&double_a, &am);
    let config_b = config_for(&double_b, &am);
    let _a = Daemon::start(&["run", "--config", config_a.to_str().unwrap()], &aws_env());
    let _b = Daemon::start(&["run", "--config", config_b.to_str().unwrap()], &aws_env());
    let alerts = wait_for_alerts(&am, Duration::from_secs(15), |a| !a.is_empty());
    assert_eq!(alerts.len(), 1, "{alerts:#?}");

    // B sees the tunnel back; A still sees it down. The alert must not flip to resolved in
    // Alertmanager at any moment, well past the lapse.
    set_b(&double_b, "UP");
    let start = Instant::now();
    while start.elapsed() < LAPSE + Duration::from_secs(15) {
        let alerts = active_alerts(&am);
        assert_eq!(
            alerts.len(),
            1,
            "resolved while instance A still sees it, after {:?}: {alerts:#?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Now neither sees it: it ends within the lapse (and the poll interval).
    set_b(&double_a, "UP");
    let cleared = Instant::now();
    let left = wait_for_alerts(&am, LAPSE + Duration::from_secs(20), |a| a.is_empty());
    assert!(left.is_empty(), "the alert did not end: {left:#?}");
    eprintln!(
        "resolved in Alertmanager {:?} after the last instance saw the tunnel up",
        cleared.elapsed()
    );
}

#[test]
#[ignore = "needs prometheus-alertmanager"]
fn test_page_posts_a_short_lived_test_alert_labelled_test() {
    need_tool("prometheus-alertmanager", "prometheus-alertmanager");
    let am = start_alertmanager();
    let double = AwsDouble::start();
    set_b(&double, "UP");
    let config = config_for(&double, &am);
    let daemon = Daemon::start(&["run", "--config", config.to_str().unwrap()], &aws_env());
    let addr = daemon.addr.to_string();
    let (code, out, err) = common::run_cli(&["test-page", "--addr", &addr]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok      alertmanager:"), "{out}");
    let alerts = wait_for_alerts(&am, Duration::from_secs(5), |a| !a.is_empty());
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["labels"]["test"], "true", "{alerts:#?}");
    let summary = alerts[0]["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("tunnelkeeper test page from ")
            && summary.ends_with("no action needed"),
        "{summary}"
    );
    // It ends by itself: never re-posted.
    let left = wait_for_alerts(&am, LAPSE + Duration::from_secs(15), |a| a.is_empty());
    assert!(left.is_empty(), "the test alert did not end: {left:#?}");
}
