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
use std::time::{Duration, Instant, SystemTime};

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

/// A GET with basic auth from the loopback address `from`; returns the status, the
/// response's head and the time it took.
fn get_from(
    from: IpAddr,
    addr: SocketAddr,
    path: &str,
    credentials: &str,
) -> (u16, String, Duration) {
    let started = Instant::now();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    if let Err(e) = socket.connect_timeout(&addr.into(), Duration::from_secs(5)) {
        return (0, format!("connect: {e}"), started.elapsed());
    }
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let head = String::from_utf8_lossy(&response)
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    (parse_response(&response).0, head, started.elapsed())
}

/// CPU seconds (user and system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn basic_auth_tells_no_user_names_apart_and_brakes_a_flood_of_wrong_passwords() {
    // Cost 8: enough to measure in a debug build without making the test slow.
    let hash = bcrypt::hash("pa55word", 8).unwrap();
    let config = write_temp(
        "auth.toml",
        &format!(
            "[http.basic_auth_users]\nnoc = \"{hash}\"\n[[target]]\naddress = \"127.0.0.1\"\n"
        ),
    );
    let daemon = Daemon::start(&["run", "--config", config.to_str().unwrap()], &[]);
    let addr = daemon.addr;
    let from = |last: u8| IpAddr::from([127, 0, 0, last]);

    // Timing: one try per address, so that no brake applies.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..6u8 {
        let (code, _, took) = get_from(from(100 + i), addr, "/health", "noc:wrong");
        assert_eq!(code, 401);
        known.push(took);
        let (code, _, took) = get_from(from(120 + i), addr, "/health", "nosuchuser:wrong");
        assert_eq!(code, 401);
        unknown.push(took);
    }
    let (known, unknown) = (median(known), median(unknown));
    eprintln!("median refusal: known user {known:?}, unknown user {unknown:?}");
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "known user {known:?}, unknown user {unknown:?}: the timing tells user names apart"
    );

    // The flood: 8 connections of wrong passwords from one address for 5 s, while a
    // SiteScope with the right password asks for /health from another.
    let (code, _, _) = get_from(from(2), addr, "/health", "noc:pa55word");
    assert_eq!(code, 200, "the right password is taken");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cpu_before = cpu_seconds(daemon.child.id());
    let flood_started = Instant::now();
    let flooders: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut codes = std::collections::BTreeMap::<u16, u32>::new();
                let mut retry_after = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (code, head, _) = get_from(from(66), addr, "/health", "noc:guess");
                    *codes.entry(code).or_default() += 1;
                    if code == 429 {
                        retry_after = head
                            .lines()
                            .find_map(|l| l.strip_prefix("retry-after: "))
                            .map(str::to_string);
                    }
                }
                (codes, retry_after)
            })
        })
        .collect();
    let mut health = Vec::new();
    while flood_started.elapsed() < Duration::from_secs(5) {
        let (code, _, took) = get_from(from(2), addr, "/health", "noc:pa55word");
        assert_eq!(code, 200);
        health.push(took);
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut codes = std::collections::BTreeMap::<u16, u32>::new();
    let mut retry_after = None;
    for f in flooders {
        let (c, r) = f.join().unwrap();
        for (k, v) in c {
            *codes.entry(k).or_default() += v;
        }
        retry_after = retry_after.or(r);
    }
    let cpu = (cpu_seconds(daemon.child.id()) - cpu_before) / flood_started.elapsed().as_secs_f64();
    health.sort();
    let p99 = health[(health.len() * 99 / 100).min(health.len() - 1)];
    eprintln!(
        "flood: answers {codes:?}, daemon CPU {:.0} %, /health p50 {:?} p99 {p99:?} over {} requests",
        cpu * 100.0,
        health[health.len() / 2],
        health.len()
    );
    assert!(codes.get(&429).copied().unwrap_or(0) > 0, "{codes:?}");
    assert!(
        codes.get(&401).copied().unwrap_or(0) <= 10,
        "at most the burst and what refills in 5 s reach bcrypt: {codes:?}"
    );
    let retry_after: u64 = retry_after
        .expect("429 has Retry-After")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // The brake is judged by the bcrypt work let through (the 401s above), not by CPU or
    // latency figures: those are printed for the record, since on a shared machine they
    // move with the neighbours (147 % was seen here with the brake working, under a
    // parallel test run). The bound below only catches /health waiting on the flood.
    assert!(p99 < Duration::from_secs(2), "/health p99 {p99:?}");
}

/// Opens a connection from `from` that sends half a request and then nothing.
fn slow_connection(from: IpAddr, addr: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.bind(&SocketAddr::new(from, 0).into()).ok()?;
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(1))
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .ok()?;
    stream.set_nonblocking(true).ok()?;
    Some(stream)
}

/// Whether the server closed `stream` (or reset it).
fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match stream.read(&mut buf) {
        Ok(0) => true,
        // An answer (408 at the header timeout) comes just before the close.
        Ok(n) => n > 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn health_answers_a_fresh_address_while_64_addresses_hold_32_slow_connections_each() {
    let config = write_temp("slots.toml", "[[target]]\naddress = \"127.0.0.1\"\n");
    let daemon = Daemon::start(&["run", "--config", config.to_str().unwrap()], &[]);
    let addr = daemon.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Each address keeps 32 connections open, opening a new one as soon as one is closed.
    let holders: Vec<_> = (1..=64u8)
        .map(|a| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let from = IpAddr::from([127, 0, 0, a]);
                let mut open: Vec<TcpStream> = Vec::new();
                let mut opened = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    open.retain_mut(|s| !closed(s));
                    while open.len() < 32 {
                        match slow_connection(from, addr) {
                            Some(s) => {
                                open.push(s);
                                opened += 1;
                            }
                            None => break,
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                opened
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let fresh = IpAddr::from([127, 0, 1, 1]);
    let tries = 200;
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    for _ in 0..tries {
        let (code, _, took) = get_from(fresh, addr, "/health", "x:y");
        if code != 0 {
            answered += 1;
        }
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened: u32 = holders.into_iter().map(|h| h.join().unwrap()).sum();
    let (_, metrics) = daemon.get("/metrics");
    let refused: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tunnelkeeper_http_connections_refused_total"))
        .collect();
    eprintln!(
        "/health from a fresh address: {answered} of {tries} answered (slowest {slowest:?}); \
         the 64 holders opened {opened} connections; {refused:?}"
    );
    assert!(
        answered * 100 >= tries * 99,
        "{answered} of {tries} answered"
    );
}

/// The (startsAt, endsAt) pairs of every alert posted.
type Posts = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// An Alertmanager double: records each post's (startsAt, endsAt) pairs and answers 400,
/// as Alertmanager does, when an alert ends before it starts.
fn alertmanager_double() -> (SocketAddr, Posts) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 65536];
            // Read the head, then the body its Content-Length announces.
            let body = loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => raw.extend_from_slice(&buf[..n]),
                }
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        break Some(body.to_string());
                    }
                }
            };
            let Some(body) = body else { continue };
            let alerts: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let mut consistent = true;
            for a in alerts.as_array().into_iter().flatten() {
                let pair = (
                    a["startsAt"].as_str().unwrap_or_default().to_string(),
                    a["endsAt"].as_str().unwrap_or_default().to_string(),
                );
                consistent &= pair.0 <= pair.1;
                seen.lock().unwrap().push(pair);
            }
            let status = if consistent {
                "200 OK"
            } else {
                "400 Bad Request"
            };
            let _ = stream.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (addr, posts)
}

#[test]
#[ignore = "needs faketime"]
fn alertmanager_posts_stay_consistent_when_the_clock_is_stepped_back_after_start() {
    common::need_tool("faketime", "faketime");
    let lib = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|arch| PathBuf::from(format!("/usr/lib/{arch}/faketime/libfaketime.so.1")))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 from the faketime package");
    let dir = temp_dir("faketime");
    // The clock is an hour fast at start; the test steps it back as NTP would.
    let offset = dir.join("offset");
    std::fs::write(&offset, "+1h\n").unwrap();
    let (am, posts) = alertmanager_double();
    let double = AwsDouble::start();
    // AWS's LastStatusChange far ahead: the outage's start is then the daemon's own
    // reading (the earlier of the two), on the clock that was an hour fast.
    let tunnel = |ip: &str| {
        serde_json::json!({
            "outside_ip": ip, "status": "DOWN", "status_message": "IPSEC IS DOWN",
            "last_status_change": "2030-01-01T00:00:00.000Z", "accepted_route_count": 2,
            "startup_action": "start", "dpd_timeout_action": "restart",
        })
    };
    double.set_connections(&serde_json::json!([{
        "id": VPN_ID,
        "tunnels": [tunnel("52.2.144.13"), tunnel("52.2.144.14")],
    }]));
    let config = write_temp(
        "faketime.toml",
        &dc_config(
            &double,
            "",
            ["127.0.3.1", "127.0.3.2"],
            &format!("[[alerts.sink]]\nkind = \"alertmanager\"\nurl = \"http://{am}\"\n"),
        ),
    );
    let mut command = Command::new(common::binary());
    command
        .args(["run", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.join("state"))
        .env_remove("TUNNELKEEPER_CONFIG")
        .env("RUST_LOG", "info")
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME_TIMESTAMP_FILE", &offset)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    for (k, v) in aws_env() {
        command.env(k, v);
    }
    let daemon = Daemon::spawn(command, None);
    assert!(
        wait_until(Duration::from_secs(15), || !posts
            .lock()
            .unwrap()
            .is_empty()),
        "the alert was posted: {}",
        daemon.log()
    );
    let first = posts.lock().unwrap()[0].clone();
    std::fs::write(&offset, "+0\n").unwrap();
    let before = posts.lock().unwrap().len();
    // The next resend comes within AM_RESEND (10 s).
    assert!(
        wait_until(Duration::from_secs(15), || posts.lock().unwrap().len()
            > before),
        "a post after the step"
    );
    let after = posts.lock().unwrap().last().unwrap().clone();
    eprintln!("before the step {first:?}; after {after:?}");
    for (starts, ends) in posts.lock().unwrap().iter() {
        assert!(starts <= ends, "startsAt {starts} after endsAt {ends}");
    }
    assert!(
        after.0 < first.0,
        "startsAt follows the system clock back: {first:?} then {after:?}"
    );
    assert!(
        wait_until(Duration::from_secs(3), || daemon
            .log()
            .contains("the system clock was stepped")),
        "the step is logged"
    );
    assert_eq!(
        daemon.log().matches("the system clock was stepped").count(),
        1,
        "once"
    );
    shown_times_follow_the_step(&daemon);
}

/// After the step, what the daemon shows is on the system clock: its own readings moved
/// back by the step, and AWS's LastStatusChange (read again at the next poll) as AWS gave it.
fn shown_times_follow_the_step(daemon: &Daemon) {
    let time = |v: &Value| {
        humantime::parse_rfc3339(v.as_str().unwrap_or_else(|| panic!("a time: {v}")))
            .unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    let status = || serde_json::from_str::<Value>(&daemon.get("/status").1).unwrap();
    let aws_since = |s: &Value| {
        s["connections"][0]["tunnels"][0]["aws"]["telemetry"]["last_status_change"].clone()
    };
    assert!(
        wait_until(Duration::from_secs(15), || aws_since(&status())
            == "2030-01-01T00:00:00.000Z"),
        "AWS's LastStatusChange is shown as AWS gave it: {}",
        aws_since(&status())
    );
    let s = status();
    let real_now = SystemTime::now();
    let off_by = |t: SystemTime| t.duration_since(real_now).unwrap_or_else(|e| e.duration());
    let generated = time(&s["generated_at"]);
    assert!(
        off_by(generated) < Duration::from_secs(30),
        "generated_at {generated:?} is on the system clock (now {real_now:?})"
    );
    assert!(
        time(&s["started_at"]) <= real_now,
        "started_at: {}",
        s["started_at"]
    );
    let alerts = s["alerts"].as_array().expect("alerts");
    assert!(!alerts.is_empty(), "{s}");
    for a in alerts {
        assert!(
            time(&a["since"]) <= real_now,
            "an alert since the future: {a}"
        );
    }
    // The page's times are the same readings.
    let page = daemon.get("/").1;
    let started = s["started_at"].as_str().unwrap();
    let shown = &started[..started.len() - 5];
    assert!(
        page.contains(shown),
        "the page shows started_at {shown} (second precision)"
    );
}
