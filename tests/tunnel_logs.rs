//! AWS's tunnel logs as the cause of an outage, end to end: the daemon reads EC2 from the
//! local double (whose tunnel options name the log group) and CloudWatch Logs from moto
//! (a real implementation of the API, not ours), and pages the tunnel's own cause. Needs
//! moto: `pip install 'moto[server]'`.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const GROUP: &str = "/vpn/tunnels";
const GROUP_ARN: &str = "arn:aws:logs:us-east-1:123456789012:log-group:/vpn/tunnels:*";

/// moto's server on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        assert!(
            Command::new("python3")
                .args(["-c", "import moto.server"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "moto is missing: pip install 'moto[server]'"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {url}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, url }
    }

    /// Writes AWS's tunnel log events into the group, one stream per tunnel, through
    /// boto3 (moto's own client library).
    fn put_events(&self, streams: &[(&str, Vec<String>)]) {
        let streams: Vec<Value> = streams
            .iter()
            .map(|(name, messages)| json!({"name": name, "messages": messages}))
            .collect();
        let script = r#"
import boto3, json, sys, time
c = boto3.client("logs", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="AKIDTESTTESTTEST", aws_secret_access_key="test-secret")
c.create_log_group(logGroupName=sys.argv[2])
now = int(time.time() * 1000)
for s in json.loads(sys.argv[3]):
    c.create_log_stream(logGroupName=sys.argv[2], logStreamName=s["name"])
    c.put_log_events(logGroupName=sys.argv[2], logStreamName=s["name"],
        logEvents=[{"timestamp": now - 5000 + i, "message": m} for i, m in enumerate(s["messages"])])
"#;
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                &self.url,
                GROUP,
                &Value::from(streams).to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn utc_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()
}

/// dc-a's events in the JSON form, dc-b's in the text form; each tunnel logs a
/// different failure.
fn events() -> Vec<(&'static str, Vec<String>)> {
    let at = utc_now();
    let a = json!({
        "VpnLogCreationTimestamp": at, "VpnConnectionId": VPN_ID,
        "TunnelOutsideIPAddress": "52.2.144.13", "TunnelDPDEnabled": true,
        "TunnelCGWNATTDetectionStatus": false, "TunnelIKEPhase1State": "Down",
        "TunnelIKEPhase2State": "Down",
        "VpnLogDetail": "Peer is not responsive - Declaring peer dead",
    });
    let b = format!("VpnLogCreationTimestamp: {at} +0000\nVpnConnectionId: {VPN_ID}\nTunnelOutsideIPAddress: 52.2.144.14\nTunnelDPDEnabled: True\nTunnelCGWNATTDetectionStatus: False\nTunnelIKEPhase1State: Negotiating\nTunnelIKEPhase2State: Down\nVpnLogDetail: AWS tunnel payload decryption was unsuccessful due to invalid Pre-shared Key");
    vec![
        ("vpn-0123456789abcdef0-52.2.144.13", vec![a.to_string()]),
        ("vpn-0123456789abcdef0-52.2.144.14", vec![b]),
    ]
}

/// EC2's answer: both tunnels with tunnel logs on into the group; dc-a `a_status`.
fn connections(a_status: &str) -> Value {
    let tunnel = |ip: &str, status: &str| {
        json!({
            "outside_ip": ip, "status": status,
            "status_message": if status == "DOWN" { "IPSEC IS DOWN" } else { "" },
            "last_status_change": "2026-11-01T08:00:00.000Z", "accepted_route_count": 2,
            "startup_action": "start", "dpd_timeout_action": "restart",
            "log_enabled": true, "log_group_arn": GROUP_ARN,
        })
    };
    json!([{ "id": VPN_ID, "tunnels": [tunnel("52.2.144.13", a_status), tunnel("52.2.144.14", "UP")] }])
}

/// Starts the daemon: EC2 at the double, CloudWatch Logs at `logs_url`.
fn daemon(double: &AwsDouble, logs_url: &str) -> Daemon {
    // `endpoint_url` points every AWS client at the double; the SDK's service-specific
    // variable points CloudWatch Logs at moto.
    let config = format!(
        r#"
[aws]
poll_interval = "5s"
region = "us-east-1"
endpoint_url = "{ec2}"
[[vpn]]
id = "{VPN_ID}"
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  outside_ip = "52.2.144.13"
  targets = ["127.0.1.1"]
  [[vpn.tunnel]]
  name = "dc-b"
  outside_ip = "52.2.144.14"
  targets = ["127.0.1.2"]
[alerts]
for = "0s"
group_wait = "0s"
  [[alerts.sink]]
  kind = "log"
"#,
        ec2 = double.url()
    );
    let path = write_temp("tunnel-logs.toml", &config);
    let mut env = aws_env();
    env.push(("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", logs_url));
    Daemon::start(&["run", "--config", path.to_str().unwrap()], &env)
}

fn status(daemon: &Daemon) -> Value {
    serde_json::from_str(&daemon.get("/status").1).unwrap()
}

/// Waits for the log line of dc-a's TunnelDown page; returns how long it took.
fn wait_page(daemon: &Daemon, from: Instant, limit: Duration) -> (Duration, String) {
    loop {
        let log = daemon.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("ALERT [WARNING] TunnelDown dc-a"))
        {
            return (from.elapsed(), line.to_string());
        }
        assert!(from.elapsed() < limit, "no TunnelDown page for dc-a: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs moto (pip install 'moto[server]')"]
fn a_tunnels_page_carries_its_own_cause_from_aws_tunnel_logs() {
    let moto = Moto::start();
    moto.put_events(&events());
    let double = AwsDouble::start();
    double.set_connections(&connections("UP"));
    let daemon = daemon(&double, &moto.url);
    // The log group is read from EC2's tunnel options.
    let json = wait_json(&daemon, Duration::from_secs(15), |j| {
        j["connections"][0]["tunnels"][0]["tunnel_logs"]["log_group"] == GROUP
    });
    assert_eq!(
        json["connections"][0]["tunnels"][1]["tunnel_logs"]["log_group"],
        GROUP
    );
    assert_eq!(
        json["connections"][0]["tunnels"][0]["aws"]["options"]["log_group_arn"],
        GROUP_ARN
    );

    // dc-a goes down.
    double.set_connections(&connections("DOWN"));
    let (_, page) = wait_page(&daemon, Instant::now(), Duration::from_secs(20));
    assert!(
        page.contains("cause=\"AWS: Peer is not responsive - Declaring peer dead (DPD, "),
        "{page}"
    );
    assert!(page.contains("#cause-dpd"), "{page}");
    assert!(
        !page.contains("Pre-shared Key"),
        "dc-b's cause in dc-a's page: {page}"
    );
    let json = status(&daemon);
    let a = &json["connections"][0]["tunnels"][0];
    assert_eq!(a["cause"]["kind"], "dpd", "{a}");
    assert_eq!(a["cause"]["source"], "tunnel_logs");
    assert_eq!(
        a["cause"]["text"],
        "Peer is not responsive - Declaring peer dead"
    );
    assert!(a["tunnel_logs"]["events"].as_u64().unwrap() >= 1, "{a}");
    // dc-b is up: no cause, and its logs were not read.
    let b = &json["connections"][0]["tunnels"][1];
    assert!(b["cause"].is_null(), "{b}");
    assert_eq!(b["tunnel_logs"]["events"], 0, "{b}");
    assert!(daemon.log().contains("outage cause"), "the log line");
}

#[test]
#[ignore = "needs moto (pip install 'moto[server]')"]
fn a_page_goes_on_time_without_a_logs_cause_when_the_logs_api_is_down() {
    // Nothing listens where CloudWatch Logs should be.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let double = AwsDouble::start();
    double.set_connections(&connections("UP"));
    let daemon = daemon(&double, &dead);
    wait_json(&daemon, Duration::from_secs(15), |j| {
        j["connections"][0]["tunnels"][0]["tunnel_logs"]["log_group"] == GROUP
    });
    let down_at = Instant::now();
    double.set_connections(&connections("DOWN"));
    // EC2 is polled every 5 s: the page is due within a poll, and may not wait for logs.
    let (took, page) = wait_page(&daemon, down_at, Duration::from_secs(20));
    assert!(
        took < Duration::from_secs(9),
        "the page took {took:?}: {page}"
    );
    assert!(!page.contains("cause=\"AWS: "), "{page}");
    let json = wait_json(&daemon, Duration::from_secs(5), |j| {
        !j["connections"][0]["tunnels"][0]["tunnel_logs"]["error"].is_null()
    });
    let a = &json["connections"][0]["tunnels"][0];
    // EC2's status message is the best cause left.
    assert_eq!(a["cause"]["source"], "control_plane", "{a}");
}

/// Waits until `/status` satisfies `ok`.
fn wait_json(daemon: &Daemon, limit: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let json = status(daemon);
        if ok(&json) {
            return json;
        }
        assert!(start.elapsed() < limit, "timed out: {json}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
