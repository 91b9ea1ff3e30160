//! The NOC page in a real browser: headless Chromium loads `/` from the running binary (the
//! embedded default), takes a screenshot that must not be blank, and dumps the DOM, which
//! must name both tunnels and show that the inline refresh swapped the page in place.
//!
//! `TUNNELKEEPER_SCREENSHOT=docs/noc-page.png cargo test --test noc_page -- --include-ignored`
//! refreshes the README's screenshot.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;

/// Runs headless Chromium (as root it needs `--no-sandbox`) with its own profile, killed
/// after a minute.
fn chromium(profile: &Path, args: &[&str]) -> Output {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// An RGB(A) 8-bit PNG decoded to its pixels, as `0xRRGGBBAA`.
struct Image {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
}

/// Decodes the non-interlaced 8-bit RGB and RGBA PNGs Chromium writes.
fn decode_png(bytes: &[u8]) -> Image {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0u32, 0u32, 0usize);
    let mut data = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let body = &bytes[at + 8..at + 8 + length];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(body[0..4].try_into().unwrap());
                height = u32::from_be_bytes(body[4..8].try_into().unwrap());
                assert_eq!(body[8], 8, "bit depth");
                channels = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("colour type {other} not handled"),
                };
                assert_eq!(body[12], 0, "interlaced");
            }
            b"IDAT" => data.extend_from_slice(body),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + length;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&data[..])
        .read_to_end(&mut raw)
        .expect("inflate the image data");
    let stride = width as usize * channels;
    assert_eq!(raw.len(), (stride + 1) * height as usize, "image data size");
    let mut previous = vec![0u8; stride];
    let mut pixels = Vec::with_capacity((width * height) as usize);
    for row in raw.chunks(stride + 1) {
        let (filter, line) = (row[0], &row[1..]);
        let mut current = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= channels {
                current[i - channels]
            } else {
                0
            };
            let b = previous[i];
            let c = if i >= channels {
                previous[i - channels]
            } else {
                0
            };
            let predicted = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("filter {other}"),
            };
            current[i] = line[i].wrapping_add(predicted);
        }
        for px in current.chunks(channels) {
            let alpha = if channels == 4 { px[3] } else { 255 };
            pixels.push(u32::from_be_bytes([px[0], px[1], px[2], alpha]));
        }
        previous = current;
    }
    Image {
        width,
        height,
        pixels,
    }
}

#[test]
#[ignore = "needs chromium (Debian's chromium package): renders the NOC page headless"]
fn headless_chromium_renders_the_noc_page_with_both_tunnels_and_refreshes_it_in_place() {
    common::need_tool("chromium", "chromium");
    let daemon = Daemon::start(&["run"], &[]);
    daemon.wait_for("/health", Duration::from_secs(10), |s, b| {
        s == 200 && b.contains("tunnel local-a: up") && b.contains("tunnel local-b: up")
    });
    // A few seconds of replies, so that the charts have smoke to draw.
    std::thread::sleep(Duration::from_secs(3));
    let dir = common::temp_dir("chromium");
    let profile = dir.join("profile");
    let shot = dir.join("noc.png");
    let url = format!("http://{}/", daemon.addr);

    let out = chromium(
        &profile,
        &[
            "--window-size=1280,1000",
            &format!("--screenshot={}", shot.display()),
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    let image = decode_png(&png);
    assert_eq!((image.width, image.height), (1280, 1000));
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for &p in &image.pixels {
        *counts.entry(p).or_default() += 1;
    }
    let background = counts.values().copied().max().unwrap();
    assert!(
        counts.len() > 50,
        "only {} colours: a blank page?",
        counts.len()
    );
    assert!(
        background * 100 < image.pixels.len() * 90,
        "one colour covers {background} of {} pixels: a blank page?",
        image.pixels.len()
    );
    // The state colour (the healthy green of the badges and the tunnels' top bars) shows.
    let green = HashSet::from([0x007a5aff_u32, 0x2fbf8fff]);
    assert!(
        counts.keys().any(|c| green.contains(c)),
        "no state colour drawn"
    );
    if let Ok(keep) = std::env::var("TUNNELKEEPER_SCREENSHOT") {
        std::fs::copy(&shot, &keep).expect("keep the screenshot");
    }

    // Seven seconds of virtual time: the inline script's 5 s refresh runs once.
    let out = chromium(
        &profile,
        &["--virtual-time-budget=7000", "--dump-dom", &url],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    for text in ["VPN OK", "local-a", "local-b", "127.0.0.1", "127.0.0.2"] {
        assert!(dom.contains(text), "{text} not in the DOM:\n{dom}");
    }
    assert_eq!(dom.matches("<svg ").count(), 2, "{dom}");
    assert!(dom.contains(r#"class="smoke""#), "{dom}");
    assert!(
        dom.contains(r#"data-refreshes="1""#),
        "no in-place refresh:\n{dom}"
    );
    assert!(!log.contains("Uncaught"), "script error:\n{log}");

    let out = chromium(
        &profile,
        &["--dump-dom", &format!("{url}target/127.0.0.2?range=6h")],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("pinned to tunnel local-b of local"), "{dom}");
    assert!(dom.contains("last 6 hours, per 5 minutes"), "{dom}");
}

#[test]
fn the_charts_history_survives_a_reload() {
    let config = |extra: &str| {
        format!(
            "[[vpn]]\nname = \"lab\"\n[[vpn.tunnel]]\nname = \"lab-a\"\ntargets = [\"127.0.5.2\"]\n\
             [[vpn.tunnel]]\nname = \"lab-b\"\ntargets = [\"127.0.5.3\"]\n{extra}"
        )
    };
    let path = common::write_temp("noc-reload.toml", &config(""));
    let daemon = Daemon::start(&["run", "--config", path.to_str().unwrap()], &[]);
    // The tunnels' first verdicts (unknown, then up) leave an "up" mark on their charts.
    let (_, page) = daemon.wait_for("/", Duration::from_secs(10), |s, b| {
        s == 200 && b.matches(r#"<line class="mark up""#).count() == 2
    });
    assert!(page.contains(r#"class="smoke""#), "{page}");
    std::fs::write(
        &path,
        config("[[target]]\nname = \"dc-host\"\naddress = \"127.0.5.9\"\n"),
    )
    .unwrap();
    let pid = daemon.child.id().to_string();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let (_, page) = daemon.wait_for("/", Duration::from_secs(10), |_, b| b.contains("dc-host"));
    // A fresh history would start at the tunnels' carried "up" with no change to mark.
    assert_eq!(
        page.matches(r#"<line class="mark up""#).count(),
        2,
        "the marks went with the reload:\n{page}"
    );
}

/// Serves, on a port of its own, a wrapper page at `/wrap?WxH` that frames the daemon's `/`
/// at that viewport size and writes where the alert's name lies in it into its own DOM
/// (`<pre id="layout">`), for `--dump-dom` to read; every other path is the daemon's,
/// relayed, so that the frame is same-origin with the wrapper and its DOM can be read.
fn layout_server(daemon: std::net::SocketAddr, alert: &'static str) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = if let Some(size) = path.strip_prefix("/wrap?") {
                let (w, h) = size.split_once('x').unwrap();
                format!(
                    r#"<!doctype html><html><body style="margin:0"><iframe id="f" src="/" style="border:0;width:{w}px;height:{h}px"></iframe><script>
document.getElementById("f").onload=function(){{var d=this.contentDocument,w=d.createTreeWalker(d.body,NodeFilter.SHOW_TEXT),n,r=null;
while((n=w.nextNode())){{if(n.textContent.indexOf("{alert}")>=0){{var g=d.createRange();g.selectNodeContents(n);r=g.getBoundingClientRect();break}}}}
var p=document.createElement("pre");p.id="layout";p.textContent=JSON.stringify({{found:!!r,top:r&&r.top,bottom:r&&r.bottom,right:r&&r.right,
width:d.documentElement.clientWidth,height:d.documentElement.clientHeight,title:d.title}});document.body.appendChild(p)}};</script></body></html>"#
                )
            } else {
                let mut upstream = std::net::TcpStream::connect(daemon).unwrap();
                write!(
                    upstream,
                    "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut response = String::new();
                let _ = upstream.read_to_string(&mut response);
                response
                    .split_once("\r\n\r\n")
                    .map(|(_, b)| b.to_string())
                    .unwrap_or_default()
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
#[ignore = "needs chromium (Debian's chromium package): lays the NOC page out headless"]
fn a_firing_alert_is_on_the_first_screen_of_a_desktop_and_a_phone() {
    common::need_tool("chromium", "chromium");
    // Two connections, so that the page is long: AWS says both tunnels of "dc" are DOWN
    // (the pings to loopback still pass), "dr" carries the traffic: ConnectionDown fires.
    let double = common::AwsDouble::start();
    double.set_tunnels(common::VPN_ID, "DOWN", "DOWN");
    let config = common::dc_config(
        &double,
        "",
        ["127.0.2.1", "127.0.2.2"],
        "[[vpn]]\nname = \"dr\"\n[[vpn.tunnel]]\nname = \"dr-a\"\ntargets = [\"127.0.3.1\"]\n\
         [[vpn.tunnel]]\nname = \"dr-b\"\ntargets = [\"127.0.3.2\"]\n\
         [[target]]\nname = \"dc-host\"\naddress = \"127.0.4.1\"\n",
    );
    let path = common::write_temp("noc-first-screen.toml", &config);
    let daemon = Daemon::start(
        &["run", "--config", path.to_str().unwrap()],
        &common::aws_env(),
    );
    daemon.wait_for("/status", Duration::from_secs(15), |s, b| {
        s == 200
            && serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
                v["alerts"].as_array().is_some_and(|alerts| {
                    alerts
                        .iter()
                        .any(|a| a["alert"] == "ConnectionDown" && a["state"] == "firing")
                })
            })
    });
    let proxy = layout_server(daemon.addr, "ConnectionDown");
    let dir = common::temp_dir("chromium-first-screen");
    for (width, height) in [(1280, 800), (390, 844)] {
        let out = chromium(
            &dir.join("profile"),
            &[
                "--window-size=1400,1000",
                "--virtual-time-budget=3000",
                "--dump-dom",
                &format!("http://{proxy}/wrap?{width}x{height}"),
            ],
        );
        let dom = String::from_utf8_lossy(&out.stdout);
        let start = dom
            .find(r#"<pre id="layout">"#)
            .unwrap_or_else(|| panic!("no layout:\n{dom}"));
        let json = &dom[start + r#"<pre id="layout">"#.len()..];
        let json = &json[..json.find("</pre>").unwrap()].replace("&quot;", "\"");
        let layout: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(
            layout["found"], true,
            "{width}x{height}: no ConnectionDown on the page"
        );
        assert_eq!(
            (layout["width"].as_f64(), layout["height"].as_f64()),
            (Some(f64::from(width)), Some(f64::from(height))),
            "the frame is the screen"
        );
        let bottom = layout["bottom"].as_f64().unwrap();
        let right = layout["right"].as_f64().unwrap();
        assert!(
            layout["top"].as_f64().unwrap() >= 0.0
                && bottom <= f64::from(height)
                && right <= f64::from(width),
            "{width}x{height}: ConnectionDown is outside the first screen: {layout}"
        );
        assert_eq!(layout["title"], "DEGRADED · tunnelkeeper", "{layout}");
    }
}
