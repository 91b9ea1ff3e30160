//! Helpers shared by the integration tests: start the real binary, find its HTTP port,
//! make plain HTTP/1.1 requests, and stop it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tunnelkeeper")
}

/// A running daemon; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `tunnelkeeper` with `args` (plus `--listen 127.0.0.1:0`) and waits until it
    /// says where it listens.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut command = Command::new(binary());
        command
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .args(if args.contains(&"--state-dir") {
                vec![]
            } else {
                vec![
                    "--state-dir".to_string(),
                    temp_dir("state").display().to_string(),
                ]
            })
            .env_remove("TUNNELKEEPER_CONFIG")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            command.env(k, v);
        }
        Self::spawn(command, None)
    }

    /// Starts a prepared command (stderr is taken here); `reach` replaces the IP of the
    /// bound address, for a daemon listening on 0.0.0.0 inside a namespace.
    pub fn spawn(mut command: Command, reach: Option<std::net::IpAddr>) -> Daemon {
        // Whatever the environment says, a test daemon never reaches instance metadata or
        // an AWS endpoint: only the loopback endpoint its config names.
        command.env("AWS_EC2_METADATA_DISABLED", "true");
        for key in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_EC2",
            "AWS_ENDPOINT_URL_SNS",
            "AWS_ENDPOINT_URL_CLOUDWATCH",
            "AWS_PROFILE",
        ] {
            command.env_remove(key);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start tunnelkeeper");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listen_address(&line) {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => reach.map_or(addr, |ip| SocketAddr::new(ip, addr.port())),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "tunnelkeeper did not start listening; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Daemon { child, addr, log }
    }

    /// Makes a GET request and returns status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_request(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
        )
    }

    /// Polls `path` until `check` holds on (status, body), or panics after `limit`.
    pub fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        check: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        let start = Instant::now();
        loop {
            let (status, body) = self.get(path);
            if check(status, &body) {
                return (status, body);
            }
            if start.elapsed() > limit {
                panic!("{path} did not reach the expected state within {limit:?}; last answer {status}:\n{body}\nlog:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns the log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends a signal and waits up to `limit` for the exit.
    pub fn stop(&mut self, signal: &str, limit: Duration) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "tunnelkeeper did not exit within {limit:?} of SIG{signal}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds the bound address in the "running" log line, text or JSON.
fn listen_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("tunnelkeeper running") {
        return None;
    }
    let rest = &line[line.find("listen")? + "listen".len()..];
    let rest = rest.trim_start_matches(['=', '"', ':', ' ']);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Sends a raw request and returns status and body.
pub fn http_request(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(stream) => stream,
        // Status 0: nothing answered (not up yet, or gone).
        Err(e) => return (0, format!("connect {addr}: {e}")),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_response(&response)
}

/// Splits an HTTP/1.1 response into status and body (handles chunked bodies).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).to_string();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, text);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The system clock's minute (seconds since the epoch / 60), as the history numbers them.
pub fn minute_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60
}

/// Sleeps until the system clock's minute is past `minute`.
pub fn wait_past_minute(minute: u64) {
    while minute_now() <= minute {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Returns a fresh, empty temporary directory.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tunnelkeeper-test-{what}-{}-{}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to a file in a fresh temporary directory and returns its path.
pub fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let path = temp_dir("file").join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Runs the binary to completion with `args`; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("TUNNELKEEPER_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// True when a path exists.
pub fn exists(p: &str) -> bool {
    Path::new(p).exists()
}

/// True when `tool` is on PATH.
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails the test unless `tool` is on PATH, naming the Debian package that has it. For the
/// tests marked `#[ignore = "needs ..."]`: `cargo test` lists them as ignored, and when they
/// are asked for (`cargo test -- --include-ignored`, as `.ci/run` does) a missing tool is a
/// failure, never a silent pass.
pub fn need_tool(tool: &str, package: &str) {
    assert!(
        on_path(tool),
        "`{tool}` is not installed (apt-get install {package}); this test cannot run without it"
    );
}

/// True when the test runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Fails the test unless it runs as root; `why` says what needs root.
pub fn need_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root ({why}); run the ignored tests as root"
    );
}

/// Makes a request with a JSON body and returns status and body.
pub fn http_call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_request(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Path of the AWS double built from tests/support/aws_double.rs (an example target, which
/// `cargo test` builds next to the test binaries).
pub fn aws_double_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join("aws-double");
    assert!(
        path.exists(),
        "{} missing: run the tests with `cargo test`, which builds it",
        path.display()
    );
    path
}

/// The local AWS double (EC2, SNS, CloudWatch), killed on drop.
pub struct AwsDouble {
    pub child: Child,
    pub addr: SocketAddr,
}

impl AwsDouble {
    /// Starts the double on a free loopback port.
    pub fn start() -> AwsDouble {
        Self::start_with(Command::new(aws_double_binary()))
    }

    /// Starts the double from a prepared command (e.g. wrapped in `ip netns exec`).
    pub fn start_with(command: Command) -> AwsDouble {
        Self::start_reachable(command, None)
    }

    /// Starts the double from a prepared command; `reach` replaces the IP it reports (it
    /// listens on 0.0.0.0 inside a namespace, and the test reaches it from outside).
    pub fn start_reachable(mut command: Command, reach: Option<std::net::IpAddr>) -> AwsDouble {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aws-double");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("aws-double said {line:?}"));
        let addr: SocketAddr = reach.map_or(addr, |ip| SocketAddr::new(ip, addr.port()));
        AwsDouble { child, addr }
    }

    /// Its endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets what EC2 reports (a JSON list of connections).
    pub fn set_connections(&self, connections: &serde_json::Value) {
        let (status, body) = http_call(
            self.addr,
            "PUT",
            "/_double/ec2/connections",
            &connections.to_string(),
        );
        assert_eq!(status, 204, "{body}");
    }

    /// Has EC2 report connection `id` with two tunnels (outside IPs 52.2.144.13 and
    /// .14) in the given states (`UP`/`DOWN`; DOWN says "IPSEC IS DOWN"), both last
    /// changed at 2026-11-01T08:00:00Z.
    pub fn set_tunnels(&self, id: &str, a: &str, b: &str) {
        self.set_tunnels_changed_at(id, a, b, "2026-11-01T08:00:00.000Z");
    }

    /// As [`AwsDouble::set_tunnels`], with both tunnels' LastStatusChange at `changed`.
    pub fn set_tunnels_changed_at(&self, id: &str, a: &str, b: &str, changed: &str) {
        let tunnel = |ip: &str, status: &str| {
            serde_json::json!({
                "outside_ip": ip, "status": status,
                "status_message": if status == "DOWN" { "IPSEC IS DOWN" } else { "" },
                "last_status_change": changed, "accepted_route_count": 2,
                "startup_action": "start", "dpd_timeout_action": "restart",
            })
        };
        self.set_connections(&serde_json::json!([{
            "id": id,
            "tunnels": [tunnel("52.2.144.13", a), tunnel("52.2.144.14", b)],
        }]));
    }

    /// Makes the next `count` requests to `service` fail with `mode` (None: until changed).
    pub fn fail(&self, service: &str, mode: &str, count: Option<u32>) {
        let plan = serde_json::json!({ "mode": mode, "count": count });
        let (status, body) = http_call(
            self.addr,
            "PUT",
            &format!("/_double/fail/{service}"),
            &plan.to_string(),
        );
        assert_eq!(status, 204, "{body}");
    }

    /// Returns every request received for `service`.
    pub fn requests(&self, service: &str) -> Vec<serde_json::Value> {
        let (_, body) = http_call(self.addr, "GET", "/_double/requests", "");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        all.into_iter()
            .filter(|r| r["service"] == service)
            .collect()
    }
}

impl Drop for AwsDouble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The VPN connection id the AWS double answers for in [`dc_config`].
pub const VPN_ID: &str = "vpn-0123456789abcdef0";

/// A config with one connection `dc` (tunnels `dc-a` and `dc-b` with outside IPs
/// 52.2.144.13 and .14, one pinned target each) whose `[aws]` table points at the double
/// on loopback; `aws_extra` goes into that table and `rest` after the connection.
pub fn dc_config(double: &AwsDouble, aws_extra: &str, targets: [&str; 2], rest: &str) -> String {
    format!(
        r#"
[aws]
poll_interval = "5s"
endpoint_url = "{url}"
{aws_extra}
[[vpn]]
id = "{VPN_ID}"
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  outside_ip = "52.2.144.13"
  targets = ["{a}"]
  [[vpn.tunnel]]
  name = "dc-b"
  outside_ip = "52.2.144.14"
  targets = ["{b}"]
{rest}
"#,
        url = double.url(),
        a = targets[0],
        b = targets[1],
    )
}

/// Environment for a daemon that talks to the double: static credentials, no IMDS.
pub fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST"),
        ("AWS_SECRET_ACCESS_KEY", "test-secret"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_CONFIG_FILE", "/dev/null"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    ]
}

/// Fails the test, naming the package, unless python3 with its jsonschema module is here.
#[allow(dead_code)]
pub fn need_jsonschema() {
    need_tool("python3", "python3");
    let ok = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3's jsonschema module is not installed (apt-get install python3-jsonschema); this test cannot run without it"
    );
}

/// Validates the JSON `body` against the schema file `schema` (a path under the crate)
/// with python3-jsonschema (Draft 2020-12); panics with every error, naming `what`.
#[allow(dead_code)]
pub fn validate_against_schema(schema: &str, body: &str, what: &str) {
    let script = "import json, sys, jsonschema\n\
        schema = json.load(open(sys.argv[1]))\n\
        jsonschema.Draft202012Validator.check_schema(schema)\n\
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.load(sys.stdin)))\n\
        for e in errors: print('/'.join(str(p) for p in e.absolute_path) + ': ' + e.message)\n\
        sys.exit(1 if errors else 0)\n";
    let mut child = Command::new("python3")
        .args(["-c", script, schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} does not match {schema}:\n{}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A copy of the binary anyone can run, whatever the permissions on the build directory:
/// one fixed path, replaced by rename once per test process (a daemon still running the
/// previous copy keeps its inode), so runs do not pile up copies in /tmp.
pub fn unprivileged_binary() -> std::path::PathBuf {
    static COPY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let dir = std::env::temp_dir().join("tunnelkeeper-lab-bin");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("tunnelkeeper");
        let fresh = dir.join(format!("tunnelkeeper.{}", std::process::id()));
        std::fs::copy(binary(), &fresh).unwrap();
        std::fs::rename(&fresh, &bin).unwrap();
        bin
    })
    .clone()
}
