//! The NOC page on known snapshots: structure, escaping, summaries, routes and auth.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::config::{Config, TargetScope};
use crate::health::HealthModel;
use crate::history::History;
use crate::http::{router, security, AppState};
use crate::liveness::{Heartbeat, Watched};
use crate::messages::ProbeOutcome;
use crate::probe::stats::TargetStats;
use crate::snapshot::{AlertView, Meta, Snapshot, HEALTH_TARGET_LINES};
use crate::types::{AlertClass, Severity, TargetId, Timestamp};

// The scenarios count three lost probes as down.
const CONFIG: &str = r#"
    [probe]
    down_after = 3
    [[vpn]]
    id = "vpn-0123456789abcdef0"
    name = "dc"
      [[vpn.tunnel]]
      name = "dc-a"
      targets = ["172.16.1.10"]
      [[vpn.tunnel]]
      name = "dc-b"
      targets = ["172.16.2.10"]
"#;

const T0: u64 = 1_700_000_000;

/// Plays (target, replied) pairs one second apart into a model, stats and history, as
/// the monitor does, and takes the snapshot 100 s after the start.
fn snapshot_after(config: &str, script: &[(usize, bool)]) -> Snapshot {
    let config = Arc::new(Config::parse(config, "test").unwrap());
    let mut model = HealthModel::new(&config);
    let mut stats = vec![TargetStats::default(); config.targets.len()];
    let history = History::shared(&config);
    for id in config.tunnel_ids() {
        history
            .lock()
            .unwrap()
            .note_tunnel(id, "unknown", Timestamp::from_secs(T0));
    }
    for (i, &(target, replied)) in script.iter().enumerate() {
        let outcome = if replied {
            ProbeOutcome::Reply {
                rtt: Duration::from_millis(4 + i as u64),
            }
        } else {
            ProbeOutcome::Timeout {
                after: Duration::from_secs(1),
            }
        };
        let at = Timestamp::from_secs(T0 + i as u64);
        stats[target].record(&outcome);
        model.handle_probe(TargetId(target), &outcome, at);
        let mut h = history.lock().unwrap();
        h.record(TargetId(target), &outcome, at);
        if let TargetScope::Pinned(id) = config.targets[target].scope {
            h.note_tunnel(id, model.tunnel(id).verdict.label(), at);
        }
    }
    let meta = Meta {
        started_at: Timestamp::from_secs(T0),
        icmp_socket: "raw",
    };
    let mut snapshot = Snapshot::build(
        &config,
        &model,
        None,
        &stats,
        meta,
        Timestamp::from_secs(T0 + 100),
    );
    snapshot.history = Some(history);
    snapshot
}

fn hour() -> View {
    View {
        range: Range::Hour,
        stale_for: None,
        reload_refused: None,
        outages: Default::default(),
        rings: Default::default(),
    }
}

const UP_A: (usize, bool) = (0, true);
const UP_B: (usize, bool) = (1, true);
const LOST_A: (usize, bool) = (0, false);

#[test]
fn a_down_tunnel_shows_its_cause_and_the_other_none() {
    use crate::health::cause::{Cause, CauseSource};
    use tunnelkeeper_core::tunnel_log::CauseKind;
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B, LOST_A, LOST_A, LOST_A]);
    s.connections[0].tunnels[0].cause = Some(Cause {
        kind: CauseKind::Dpd,
        source: CauseSource::TunnelLogs,
        text: "Peer is not responsive - Declaring peer dead".into(),
        at: Timestamp::from_secs(T0 + 3),
    });
    let html = render_index(&s, &hour());
    assert_eq!(html.matches("<dt>cause</dt>").count(), 1, "{html}");
    assert!(
        html.contains(
            "<dt>cause</dt><dd><strong>AWS: Peer is not responsive - Declaring peer dead (DPD, "
        ),
        "{html}"
    );
    assert!(html.contains("(runbook: Cause: DPD)"), "{html}");
}

#[test]
fn a_tunnel_shows_its_path_mtu_and_a_black_hole_in_words() {
    use crate::health::path_mtu::TunnelPathMtu;
    use crate::messages::{MtuLimitFound, PathMtuReading};
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B]);
    let reading = |bytes, found, router| TunnelPathMtu {
        reading: PathMtuReading {
            bytes,
            found,
            expected: 1446,
            target: "172.16.1.10".parse().unwrap(),
            router,
            probes: 9,
        },
        measured_at: Timestamp::from_secs(T0 + 60),
    };
    s.connections[0].tunnels[0].path_mtu = Some(reading(1300, MtuLimitFound::Silent, None));
    s.connections[0].tunnels[1].path_mtu = Some(reading(
        1300,
        MtuLimitFound::FragNeeded,
        Some("10.1.2.2".parse().unwrap()),
    ));
    let html = render_index(&s, &hour());
    assert!(
        html.contains("<dt>path MTU</dt><dd>1300 bytes (<strong>black hole</strong>: larger packets vanish without ICMP; expected 1446)"),
        "{html}"
    );
    assert!(
        html.contains("1300 bytes (fragmentation needed from 10.1.2.2; expected 1446)"),
        "{html}"
    );
}

#[test]
fn the_page_states_the_verdict_in_words_and_shows_both_tunnels_with_charts() {
    let s = snapshot_after(CONFIG, &[UP_A, UP_B, LOST_A, LOST_A, LOST_A]);
    let html = render_index(&s, &hour());
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<title>DEGRADED · tunnelkeeper</title>"));
    // Colour and words: the class colours it, the symbol and the word say it.
    assert!(
        html.contains(
            r#"<header class="vpn warn"><h1><span aria-hidden="true">▲</span> VPN DEGRADED</h1>"#
        ),
        "{html}"
    );
    assert!(
        html.contains("dc-a down: pinned targets unreachable"),
        "{html}"
    );
    assert_eq!(html.matches(r#"<section class="tunnel "#).count(), 2);
    assert!(html.contains(r#"<section class="tunnel bad"><h4>"#));
    assert!(html.contains(r#"<section class="tunnel good"><h4>"#));
    assert_eq!(html.matches("<svg ").count(), 2, "one chart per tunnel");
    // dc-a went down within the hour: its chart has the mark and the loss.
    assert!(html.contains(r#"<line class="mark down""#), "{html}");
    assert!(html.contains(r#"<rect class="loss l3""#), "{html}");
    assert!(html.contains(r#"<a href="/target/172.16.1.10?range=1h">172.16.1.10</a>"#));
    assert!(html.contains("survives a config reload and a restart"));
    assert!(html.contains("⏸ daemon not running"));
    assert!(html.contains(r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#));
    assert!(html.contains(r#"fetch(location.href"#));
}

#[test]
fn the_page_needs_nothing_from_outside() {
    let html = render_index(&snapshot_after(CONFIG, &[UP_A, UP_B]), &hour());
    for outside in ["<link", " src=", "@import", "url(", "//cdn", "fonts."] {
        assert!(!html.contains(outside), "{outside} in the page");
    }
    // The only absolute address is the SVG namespace, which is never fetched.
    let addresses = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(
        addresses,
        html.matches(r#"xmlns="http://www.w3.org/2000/svg""#)
            .count()
    );
}

/// Config validation keeps names tame today; the page escapes whatever it is given
/// anyway, and reasons and AWS's messages are free text.
fn hostile(s: &mut Snapshot) {
    use crate::messages::{ApiTunnelStatus, Telemetry, TunnelReading};
    use crate::types::{ConnectionName, TargetName, TunnelName};
    let c = &mut s.connections[0];
    c.name = ConnectionName::new("&co<b>");
    let t = &mut c.tunnels[0];
    t.name = TunnelName::new("<script>alert('tunnel')</script>");
    t.targets[0].name = TargetName::new("\"><img src=x onerror=alert(1)>");
    t.aws = Some(TunnelReading {
        outside_ip: None,
        telemetry: Some(Telemetry {
            status: ApiTunnelStatus::Unknown("<i>NEW</i>".into()),
            status_message: Some("<iframe>".into()),
            last_status_change: None,
            accepted_route_count: Some(3),
        }),
        options: None,
    });
    if let crate::health::Verdict::Down { reason, .. } = &mut t.state {
        *reason = "<marquee>".into();
    }
}

#[test]
fn hostile_names_are_escaped_on_both_pages() {
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B, LOST_A, LOST_A, LOST_A]);
    hostile(&mut s);
    let pages = [
        render_index(&s, &hour()),
        render_target(&s, &hour(), "172.16.1.10".parse().unwrap()).unwrap(),
    ];
    for html in pages {
        for raw in [
            "<script>alert",
            "<img src=x",
            "&co<b>",
            "alert('tunnel')",
            "<i>NEW",
            "<iframe>",
            "<marquee>",
        ] {
            assert!(!html.contains(raw), "{raw} unescaped in\n{html}");
        }
        assert!(
            html.contains("&lt;script&gt;alert(&#39;tunnel&#39;)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    }
    let html = render_index(&s, &hour());
    assert!(html.contains("&lt;iframe&gt;") && html.contains("&lt;marquee&gt;"));
    assert!(html.contains("&amp;co&lt;b&gt;"));
}

#[test]
fn the_target_page_shows_where_it_is_probed_and_its_chart() {
    let s = snapshot_after(CONFIG, &[UP_A, UP_B, UP_A, LOST_A]);
    let six = View {
        range: Range::SixHours,
        stale_for: None,
        reload_refused: None,
        outages: Default::default(),
        rings: Default::default(),
    };
    let html = render_target(&s, &six, "172.16.1.10".parse().unwrap()).unwrap();
    assert!(html.contains("pinned to tunnel dc-a of dc"), "{html}");
    assert!(html.contains("3 sent, 2 received, 1 timed out"), "{html}");
    assert!(html.contains("last 6 hours, per 5 minutes"));
    assert!(html.contains(r#"<a aria-current="page" href="/target/172.16.1.10?range=6h">"#));
    assert_eq!(html.matches("<svg ").count(), 1);
    assert!(render_target(&s, &six, "10.9.9.9".parse().unwrap()).is_none());
}

#[test]
fn many_shared_targets_are_summarised_like_health() {
    let mut toml = String::new();
    for i in 0..HEALTH_TARGET_LINES + 8 {
        toml.push_str(&format!("[[target]]\naddress = \"127.1.0.{}\"\n", i + 1));
    }
    let html = render_index(&snapshot_after(&toml, &[(0, true), (0, true)]), &hour());
    assert!(html.contains("<p>1 of 40 up. Those not up:</p>"), "{html}");
    assert_eq!(
        html.matches(r#"<tr><td><a href="/target/"#).count(),
        HEALTH_TARGET_LINES
    );
    assert!(html.contains("… and 7 more not up"), "{html}");
    assert!(
        !html.contains("/target/127.1.0.1?"),
        "the one up is not listed"
    );
}

fn alert(state: &'static str, class: AlertClass, severity: Severity) -> AlertView {
    AlertView {
        alert: class,
        severity,
        situation: None,
        vpn: Some("dc".into()),
        tunnel: Some("dc-a".into()),
        state,
        since: Timestamp::from_secs(T0 + 50),
        summary: format!("{} summary", class.name()),
        reason: "pinned targets <unreachable>".into(),
        muted_by: None,
    }
}

#[test]
fn firing_alerts_come_first_above_the_connections_with_what_to_do() {
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B]);
    s.alerts = vec![
        alert("pending", AlertClass::TunnelFlapping, Severity::Warning),
        alert("firing", AlertClass::TunnelDown, Severity::Warning),
    ];
    s.runbook_url = "https://wiki.city.example/vpn".into();
    let html = render_index(&s, &hour());
    let firing = html.find("TunnelDown summary").unwrap();
    let connections = html.find(r#"<section id="connections">"#).unwrap();
    let pending = html.find("TunnelFlapping summary").unwrap();
    assert!(firing < connections, "firing above the connections");
    assert!(connections < pending, "what does not page comes after");
    assert!(html.contains(
        r#"<a href="https://wiki.city.example/vpn#tunneldown">https://wiki.city.example/vpn#tunneldown</a>"#
    ));
    assert!(
        html.contains("<b>What to do:</b> check the tunnel in the AWS console"),
        "{html}"
    );
    assert!(html.contains("pinned targets &lt;unreachable&gt;"));
    // The default runbook is a path in the source tree: named, not linked.
    s.runbook_url = crate::config::DEFAULT_RUNBOOK.into();
    let html = render_index(&s, &hour());
    assert!(
        html.contains("<td>docs/runbook.md#tunnelflapping</td>"),
        "{html}"
    );
}

#[test]
fn the_banner_says_the_worst_of_the_verdict_and_what_fires() {
    // The probes say DEGRADED (one tunnel down); a critical alert fires.
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B, LOST_A, LOST_A, LOST_A]);
    s.alerts = vec![alert(
        "firing",
        AlertClass::ConnectionDown,
        Severity::Critical,
    )];
    let html = render_index(&s, &hour());
    assert!(
        html.contains(r#"<header class="vpn bad"><h1><span aria-hidden="true">✖</span> VPN CRITICAL</h1><p>CRITICAL ConnectionDown fires; the probes alone say VPN DEGRADED.</p>"#),
        "{html}"
    );
    assert!(html.contains("<title>CRITICAL · tunnelkeeper</title>"));
    // An inhibited or pending alert does not darken it.
    s.alerts[0].state = "inhibited";
    let html = render_index(&s, &hour());
    assert!(html.contains("VPN DEGRADED</h1>"), "{html}");
}

#[test]
fn a_reason_is_written_once_and_a_long_one_folds() {
    let long =
        "every tunnel down:\n dc-a: pinned targets unreachable\n dc-b: pinned targets unreachable";
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B, LOST_A, LOST_A, LOST_A]);
    s.vpn = crate::health::VpnState::Critical {
        since: Timestamp::from_secs(T0),
        reason: long.into(),
    };
    let mut a = alert("firing", AlertClass::VpnUnreachable, Severity::Critical);
    a.reason = long.into();
    s.alerts = vec![a];
    let html = render_index(&s, &hour());
    assert_eq!(
        html.matches("dc-b: pinned targets unreachable").count(),
        1,
        "{html}"
    );
    assert!(
        html.contains(r#"<details class="reason"><summary>every tunnel down: …</summary>"#),
        "{html}"
    );
    assert!(html.contains("(reason above)"), "{html}");
}

#[test]
fn a_down_target_shows_how_long_it_has_not_replied() {
    let s = snapshot_after(CONFIG, &[UP_A, UP_B, LOST_A, LOST_A, LOST_A]);
    let html = render_index(&s, &hour());
    // The last reply came at T0 (the first step); the snapshot is taken at T0 + 100.
    assert!(html.contains("no reply for 1 min"), "{html}");
}

#[test]
fn the_control_plane_says_what_its_alert_says() {
    let mut s = snapshot_after(CONFIG, &[UP_A, UP_B]);
    let mut a = alert(
        "firing",
        AlertClass::ControlPlaneUnavailable,
        Severity::Warning,
    );
    (a.vpn, a.tunnel) = (None, None);
    a.summary = "EC2 API unavailable: no route to the endpoint".into();
    s.alerts = vec![a];
    let html = render_index(&s, &hour());
    assert!(!html.contains("waiting for the first EC2 answer"), "{html}");
    assert_eq!(
        html.matches(
            "EC2 API unavailable: no route to the endpoint (ControlPlaneUnavailable since"
        )
        .count(),
        2,
        "both tunnels: {html}"
    );
}

#[test]
fn ages_and_rtts_read_at_a_glance() {
    let at = |s: u64| Timestamp::from_secs(T0 + s);
    for (secs, text) in [
        (0, "0 s"),
        (59, "59 s"),
        (60, "1 min"),
        (3_599, "59 min"),
        (3_600 + 300, "1 h 5 min"),
        (2 * 86_400 + 4 * 3_600, "2 d 4 h"),
    ] {
        assert_eq!(age(at(secs), at(0)), text);
    }
    for (seconds, text) in [
        (None, "–"),
        (Some(0.000_05), "0.05 ms"),
        (Some(0.0123), "12.3 ms"),
    ] {
        assert_eq!(ms(seconds), text);
    }
}

fn app(snapshot: Snapshot, security: security::Security, watched: Vec<Watched>) -> Router {
    let (_tx, snapshots) = watch::channel(Arc::new(snapshot));
    router(AppState {
        snapshots,
        ready: Arc::new(AtomicBool::new(true)),
        reload: None,
        lifecycle: Arc::new(AtomicBool::new(false)),
        test_pages: None,
        security: security::shared(security),
        watched,
        reload_health: watch::channel(crate::reload::ReloadHealth::started(
            crate::types::Timestamp::from_secs(1_700_000_000),
        ))
        .1,
        outages: Arc::new(crate::outage_log::OutageLog::in_memory(Vec::new())),
        rings: Default::default(),
        state_save: watch::channel(Default::default()).1,
    })
}

async fn get(app: Router, uri: &str, auth: Option<&str>) -> (StatusCode, String, String) {
    let mut request = Request::builder().uri(uri);
    if let Some(auth) = auth {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_routes_answer_html_and_refuse_bad_ranges_and_addresses() {
    let app = app(
        snapshot_after(CONFIG, &[UP_A, UP_B]),
        security::Security::open(),
        Vec::new(),
    );
    let (status, kind, body) = get(app.clone(), "/", None).await;
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    assert!(body.contains("VPN OK"));
    let (status, _, body) = get(app.clone(), "/?range=6h", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<a aria-current="page" href="/?range=6h">"#));
    let (status, _, body) = get(app.clone(), "/?range=7d", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<a aria-current="page" href="/?range=7d">"#));
    assert!(body.contains("7 days, per 15 minutes"), "{body}");
    let (status, _, body) = get(app.clone(), "/?range=2d", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        "range: \"2d\" is not a chart range; use 1h, 6h or 7d\n"
    );
    assert_eq!(
        get(app.clone(), "/target/172.16.2.10", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(app.clone(), "/target/10.9.9.9", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _, body) = get(app, "/target/nope", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("not an IPv4 address"), "{body}");
}

#[tokio::test]
async fn basic_auth_covers_the_page_and_the_target_pages() {
    let hash = bcrypt::hash("pa55word", 4).unwrap();
    let config = Config::parse(
        &format!("{CONFIG}\n[http.basic_auth_users]\nnoc = \"{hash}\"\n"),
        "test",
    )
    .unwrap();
    let app = app(
        snapshot_after(CONFIG, &[UP_A, UP_B]),
        security::Security::load(&config).unwrap(),
        Vec::new(),
    );
    use base64::Engine as _;
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("noc:pa55word")
    );
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("noc:guess")
    );
    for uri in ["/", "/?range=6h", "/target/172.16.1.10"] {
        let (status, _, body) = get(app.clone(), uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(!body.contains("172.16"), "{uri} leaks: {body}");
        assert_eq!(
            get(app.clone(), uri, Some(&wrong)).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(app.clone(), uri, Some(&good)).await.0, StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopped_monitor_puts_a_stale_banner_on_the_page() {
    let monitor = Heartbeat::new();
    let watched = vec![Watched {
        name: "monitor",
        heartbeat: monitor.clone(),
        max_silence: Duration::from_secs(10),
    }];
    let app = app(
        snapshot_after(CONFIG, &[UP_A, UP_B]),
        security::Security::open(),
        watched,
    );
    monitor.beat();
    let (_, _, body) = get(app.clone(), "/", None).await;
    assert!(!body.contains("STALE"), "{body}");
    tokio::time::advance(Duration::from_secs(7)).await;
    let (_, _, body) = get(app, "/", None).await;
    assert!(
        body.contains("STALE: the monitor has not run for 7 s"),
        "{body}"
    );
}
