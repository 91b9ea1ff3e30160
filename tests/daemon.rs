//! The real binary on 127.0.0.1:0: the embedded default turns OK, metrics count replies,
//! the HTTP server refuses abuse, the command line behaves, and SIGTERM stops it cleanly.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http_request, run_cli, write_temp, Daemon};

#[test]
fn embedded_default_turns_ok_counts_replies_and_stops_on_sigterm() {
    let mut daemon = Daemon::start(&[], &[]);
    let log = daemon.log();
    assert!(
        log.contains("embedded default"),
        "first log line must say so:\n{log}"
    );

    let (status, body) = daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.starts_with("TUNNELKEEPER OK")
    });
    assert_eq!(status, 200);
    assert!(body.contains("tunnel local-a: up"), "{body}");
    daemon.wait_for("/health", Duration::from_secs(5), |_, b| {
        b.contains("tunnel local-b: up")
    });

    let (status, metrics) = daemon.wait_for("/metrics", Duration::from_secs(5), |_, b| {
        replies(b, "127.0.0.1") >= 2 && replies(b, "127.0.0.2") >= 2
    });
    assert_eq!(status, 200);
    assert!(metrics.contains("tunnelkeeper_vpn_state{state=\"ok\"} 1"));

    let (status, json) = daemon.get("/status");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["vpn"]["state"], "ok");
    assert_eq!(daemon.get("/-/ready").0, 200);
    assert_eq!(daemon.get("/-/healthy").0, 200);

    let started = Instant::now();
    let exit = daemon.stop("TERM", Duration::from_secs(3));
    assert!(
        exit.success(),
        "exit status {exit:?}; log:\n{}",
        daemon.log()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(daemon.log().contains("signal received"));
}

fn replies(metrics: &str, address: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("tunnelkeeper_probe_replies_total{")
                && l.contains(&format!("address=\"{address}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigint_also_stops_it_with_exit_0() {
    let mut daemon = Daemon::start(&["run"], &[]);
    assert!(daemon.stop("INT", Duration::from_secs(3)).success());
}

#[test]
fn a_config_file_is_taken_from_the_flag_or_the_environment() {
    let path = write_temp(
        "tk.toml",
        "[[vpn]]\nname = \"lab\"\n[[vpn.tunnel]]\nname = \"lab-a\"\ntargets = [\"127.0.0.3\"]\n[[vpn.tunnel]]\nname = \"lab-b\"\ntargets = [\"127.0.0.4\"]\n",
    );
    let path = path.to_str().unwrap();
    let daemon = Daemon::start(&["run", "--config", path], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, b| {
        s == 200 && b.contains("connection lab: healthy")
    });
    drop(daemon);
    let daemon = Daemon::start(&[], &[("TUNNELKEEPER_CONFIG", path)]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, b| {
        s == 200 && b.contains("tunnel lab-b: up")
    });
}

#[test]
fn json_logs_are_one_object_per_line() {
    let daemon = Daemon::start(&["--log-format", "json"], &[]);
    daemon.wait_for("/health", Duration::from_secs(5), |s, _| s == 200);
    for line in daemon.log().lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string());
    }
}

#[test]
fn huge_headers_are_refused_and_slow_clients_are_dropped() {
    let daemon = Daemon::start(&[], &[]);
    let huge = "x".repeat(64 * 1024);
    let (status, _) = http_request(
        daemon.addr,
        &format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {huge}\r\n\r\n"),
    );
    assert_eq!(status, 431);

    // A client that sends half a request line and stalls is cut off by the header timeout.
    let mut slow = TcpStream::connect(daemon.addr).unwrap();
    slow.write_all(b"GET /hea").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "slow client held the connection for {waited:?}"
    );
    // Meanwhile the server answered everybody else.
    assert_eq!(daemon.get("/-/healthy").0, 200);
}

/// Connects to `to` from the loopback address `from` (another "host" on this machine).
fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

#[test]
fn one_address_holding_half_sent_requests_cannot_lock_out_the_health_check() {
    let daemon = Daemon::start(&[], &[]);
    // 127.0.0.2 opens far more connections than it may hold, each with half a request.
    let mut held = Vec::new();
    for _ in 0..200 {
        let Ok(mut c) = connect_from([127, 0, 0, 2], daemon.addr) else {
            continue;
        };
        let _ = c.write_all(b"GET /hea");
        held.push(c);
    }
    // The ones past the per-address limit are closed at once by the server.
    std::thread::sleep(Duration::from_millis(300));
    let mut closed = 0;
    for c in &mut held {
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut byte = [0u8; 1];
        // Closed with the request unread: a FIN, or a reset.
        match c.read(&mut byte) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Ok(_) | Err(_) => {}
        }
    }
    assert_eq!(
        closed,
        held.len() - 32,
        "32 stay open, the rest are refused"
    );
    // Meanwhile another address gets its answers, again and again.
    for _ in 0..5 {
        let (status, body) = daemon.get("/health");
        assert!(status == 200 || status == 503, "{status} {body}");
        assert!(body.starts_with("TUNNELKEEPER "), "{body}");
    }
    let (_, metrics) = daemon.get("/metrics");
    let refused: u64 = metrics
        .lines()
        .find(|l| l.starts_with("tunnelkeeper_http_connections_refused_total{reason=\"per_peer\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap();
    assert_eq!(refused, held.len() as u64 - 32, "{metrics}");
    drop(held);
}

/// A self-signed certificate for 127.0.0.1 and its key, made with openssl.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=tunnelkeeper-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // Not a CA: a self-signed certificate that is its own trust anchor must be an
        // end-entity certificate for webpki.
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl could not make a certificate");
    (cert, key)
}

#[test]
#[ignore = "needs openssl (to make a test certificate)"]
fn tls_and_basic_auth_guard_every_route_and_the_cli_speaks_both() {
    common::need_tool("openssl", "openssl");
    let dir = common::temp_dir("tls");
    let (cert, key) = self_signed(&dir);
    let hash = bcrypt::hash("pa55word", 4).unwrap();
    let config = write_temp(
        "tls.toml",
        &format!(
            "[http.tls_server_config]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [http.basic_auth_users]\nnoc = \"{hash}\"\n\
             [[target]]\naddress = \"127.0.0.1\"\n",
            cert.display(),
            key.display()
        ),
    );
    let daemon = Daemon::start(&["run", "--config", config.to_str().unwrap()], &[]);
    let started = Instant::now();
    while !daemon.log().contains("on https://") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Plain HTTP is not served.
    let (status, _) = daemon.get("/health");
    assert_ne!(status, 200);

    let addr = daemon.addr.to_string();
    let cli = |extra: &[&str]| {
        let mut args = vec!["healthcheck", "--addr", &addr];
        args.extend_from_slice(extra);
        run_cli(&args)
    };
    let ca = cert.to_str().unwrap();
    assert_eq!(
        cli(&["--tls-ca-file", ca, "--basic-auth", "noc:pa55word"]).0,
        0
    );
    assert_eq!(
        cli(&["--tls-insecure", "--basic-auth", "noc:pa55word"]).0,
        0
    );
    let (code, _, err) = cli(&["--tls-ca-file", ca]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(&["--tls-ca-file", ca, "--basic-auth", "noc:wrong"]);
    assert_eq!((code, err.contains("401")), (1, true), "{err}");
    // Not trusting the certificate is an error too.
    assert_eq!(cli(&["--basic-auth", "noc:pa55word"]).0, 1);
    let (code, out, err) = run_cli(&[
        "status",
        "--addr",
        &addr,
        "--json",
        "--tls-ca-file",
        ca,
        "--basic-auth",
        "noc:pa55word",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"shared_targets\""), "{out}");
}

#[test]
fn bad_tls_files_and_hashes_stop_the_start_naming_the_key() {
    let config = write_temp(
        "bad-tls.toml",
        "[http.tls_server_config]\ncert_file = \"/nonexistent/tls.crt\"\nkey_file = \"/nonexistent/tls.key\"\n\
         [[target]]\naddress = \"127.0.0.1\"\n",
    );
    let state = common::temp_dir("bad-tls-state");
    let (code, _, err) = run_cli(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("http.tls_server_config.cert_file /nonexistent/tls.crt"),
        "{err}"
    );
    let config = write_temp(
        "bad-hash.toml",
        "[http.basic_auth_users]\nnoc = \"plaintext\"\n[[target]]\naddress = \"127.0.0.1\"\n",
    );
    let (code, _, err) = run_cli(&["check-config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("http.basic_auth_users.noc: not a bcrypt hash"),
        "{err}"
    );
}

#[test]
fn check_config_accepts_good_files_with_a_summary() {
    let (code, out, _) = run_cli(&[
        "check-config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml"),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("OK: 2 connection(s), 4 tunnel(s), 6 pinned and 2 shared target(s)"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn check_config_refuses_bad_files_with_exit_2_and_the_reason() {
    let path = write_temp(
        "bad.toml",
        "[probe]\ndown_after = 0\n[[target]]\naddress = \"10.0.0.1\"\n",
    );
    let (code, _, err) = run_cli(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 2, column 14: probe.down_after: 0 is out of range"),
        "{err}"
    );
}

#[test]
fn print_config_prints_a_config_that_check_config_accepts() {
    let (code, out, _) = run_cli(&["print-config"]);
    assert_eq!(code, 0);
    assert!(out.starts_with('#'), "the default is commented");
    let path = write_temp("default.toml", &out);
    let (code, out, _) = run_cli(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn run_with_a_bad_config_exits_2_naming_the_problem() {
    let path = write_temp("bad.toml", "[[target]]\naddress = \"300.1.1.1\"\n");
    let (code, _, err) = run_cli(&["run", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("300.1.1.1 is not an IPv4 address"), "{err}");
}

#[test]
fn help_reads_well() {
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    for word in [
        "run",
        "check-config",
        "print-config",
        "--config",
        "--listen",
        "--log-format",
        "TUNNELKEEPER_CONFIG",
    ] {
        assert!(out.contains(word), "{word} missing from --help:\n{out}");
    }
}
