//! The NOC page: `GET /` (the VPN verdict, each connection's tunnels side by side with a
//! smoke chart, shared targets, alerts, advisories) and `GET /target/ADDR` (one target's
//! numbers and chart), HTML rendered from the same snapshot as `/health` and `/status`
//! plus the latency history. Self-contained (inline style and a small inline script, no
//! outside resource), it refreshes itself by fetching the page and swapping its content,
//! and by a plain `<meta refresh>` where scripts do not run.

pub mod chart;
mod first_screen;
mod index;
mod outages;
mod target;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{AppState, STALE_AFTER};
use crate::health::{ConnectionState, Verdict, VpnState};
use crate::history::{History, Live, MinuteSummary, Range};
use crate::types::Timestamp;

pub use index::render_index;
pub use target::render_target;

/// How often the page fetches itself again, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

/// What a render needs besides the snapshot.
#[derive(Clone, Debug)]
pub struct View {
    /// The chart range asked for.
    pub range: Range,
    /// How long the monitor has been silent, when longer than `/health` accepts.
    pub stale_for: Option<Duration>,
    /// The banner of a refused config reload, until one is taken.
    pub reload_refused: Option<String>,
    /// The outage log's records, oldest first.
    pub outages: std::sync::Arc<Vec<tunnelkeeper_core::outage::OutageRecord>>,
    /// The history's ring files, which the charts read.
    pub rings: crate::history_file::Rings,
}

/// Escapes text for HTML content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Formats how long ago `since` was, as of `now`: `42 s`, `12 min`, `3 h 5 min`, `2 d 4 h`.
pub fn age(now: Timestamp, since: Timestamp) -> String {
    let secs = now.since(since).as_secs();
    match secs {
        0..60 => format!("{secs} s"),
        60..3_600 => format!("{} min", secs / 60),
        3_600..86_400 => format!("{} h {} min", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// A time with its age: `2026-12-03T14:00:00Z (12 min ago)`.
fn when(now: Timestamp, at: Timestamp) -> String {
    format!(
        r#"<time datetime="{at}">{at}</time> ({} ago)"#,
        age(now, at)
    )
}

/// How a state looks: CSS class (the colour), symbol and word. State is never colour
/// alone: the symbol and the word say it too.
struct Look {
    class: &'static str,
    symbol: &'static str,
    word: &'static str,
}

const GOOD: &str = "good";
const WARN: &str = "warn";
const BAD: &str = "bad";
const NONE: &str = "none";

fn look(class: &'static str, word: &'static str) -> Look {
    let symbol = match class {
        GOOD => "✔",
        WARN => "▲",
        BAD => "✖",
        _ => "?",
    };
    Look {
        class,
        symbol,
        word,
    }
}

fn vpn_look(v: &VpnState) -> Look {
    match v {
        VpnState::Starting => look(NONE, "STARTING"),
        VpnState::Ok { .. } => look(GOOD, "OK"),
        VpnState::Degraded { .. } => look(WARN, "DEGRADED"),
        VpnState::Critical { .. } => look(BAD, "CRITICAL"),
    }
}

fn connection_look(c: &ConnectionState) -> Look {
    match c {
        ConnectionState::Unknown { .. } => look(NONE, "UNKNOWN"),
        ConnectionState::Healthy { .. } => look(GOOD, "HEALTHY"),
        ConnectionState::Degraded { .. } => look(WARN, "DEGRADED"),
        ConnectionState::Down { .. } => look(BAD, "DOWN"),
    }
}

fn verdict_look(v: &Verdict) -> Look {
    match v {
        Verdict::Unknown { .. } => look(NONE, "UNKNOWN"),
        Verdict::Up { .. } => look(GOOD, "UP"),
        Verdict::Down { .. } => look(BAD, "DOWN"),
    }
}

/// A badge: symbol and word in the state's colour.
fn badge(l: &Look) -> String {
    format!(
        r#"<span class="badge {}"><span aria-hidden="true">{}</span> {}</span>"#,
        l.class, l.symbol, l.word
    )
}

/// A verdict in words: `UP since …`, `DOWN since …: reason`, `UNKNOWN: reason`.
fn verdict_line(now: Timestamp, v: &Verdict, reasons: &mut first_screen::Reasons) -> String {
    let l = verdict_look(v);
    match v {
        Verdict::Unknown { reason } => format!("{}: {}", badge(&l), reasons.html(reason)),
        Verdict::Up { since } => format!("{} since {}", badge(&l), when(now, *since)),
        Verdict::Down { since, reason } => format!(
            "{} since {}: {}",
            badge(&l),
            when(now, *since),
            reasons.html(reason)
        ),
    }
}

/// Formats seconds as milliseconds (two decimals below 1 ms), `–` when absent.
fn ms(seconds: Option<f64>) -> String {
    match seconds {
        None => "–".into(),
        Some(s) if s < 0.001 => format!("{:.2} ms", s * 1_000.0),
        Some(s) => format!("{:.1} ms", s * 1_000.0),
    }
}

/// The query of both pages: `?range=1h` (default), `?range=6h` or `?range=7d`.
fn range_of(query: &HashMap<String, String>) -> Result<Range, String> {
    match query.get("range").map(String::as_str) {
        None | Some("1h") => Ok(Range::Hour),
        Some("6h") => Ok(Range::SixHours),
        Some("7d") => Ok(Range::Week),
        Some(other) => Err(format!(
            "range: {other:?} is not a chart range; use 1h, 6h or 7d\n"
        )),
    }
}

/// The range links, the current one marked.
fn range_links(path: &str, range: Range) -> String {
    let link = |r: Range, value: &str, text: &str| {
        if r == range {
            format!(r#"<a aria-current="page" href="{path}?range={value}">{text}</a>"#)
        } else {
            format!(r#"<a href="{path}?range={value}">{text}</a>"#)
        }
    };
    format!(
        r#"<nav class="ranges">Charts: {} {} {}</nav>"#,
        link(Range::Hour, "1h", "last hour"),
        link(Range::SixHours, "6h", "last 6 hours"),
        link(Range::Week, "7d", "last 7 days")
    )
}

fn range_query(range: Range) -> &'static str {
    match range {
        Range::Hour => "1h",
        Range::SixHours => "6h",
        Range::Week => "7d",
    }
}

const STYLE: &str = r#"
:root{color-scheme:light dark;--bg:#fff;--fg:#111;--mute:#555;--card:#f4f4f4;--line:#ccc;
--good:#007a5a;--warn:#b45f00;--bad:#c0392b;--none:#666;--smoke:#9a9a9a}
@media (prefers-color-scheme:dark){:root{--bg:#111;--fg:#eee;--mute:#aaa;--card:#1d1d1d;--line:#444;
--good:#2fbf8f;--warn:#f0a830;--bad:#ff6b5b;--none:#999;--smoke:#6a6a6a}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:clamp(14px,1.1vw,20px)/1.4 system-ui,sans-serif}
main{padding:.8em;max-width:2400px;margin:auto}
h1{margin:0;font-size:2em}h2{margin:1em 0 .3em;font-size:1.3em}h3{margin:.2em 0}
a{color:inherit}
.vpn{padding:.6em 1em;border-left:.6em solid var(--none);background:var(--card)}
.vpn.good{border-color:var(--good)}.vpn.warn{border-color:var(--warn)}.vpn.bad{border-color:var(--bad)}
.vpn p{margin:.2em 0}
.badge{font-weight:bold;white-space:nowrap;padding:0 .3em;border-radius:.2em;color:#fff;background:var(--none)}
.badge.good{background:var(--good)}.badge.warn{background:var(--warn)}.badge.bad{background:var(--bad)}
.stale,#offline{background:var(--bad);color:#fff;padding:.5em 1em;font-weight:bold}
#offline{display:none}body.offline #offline{display:block}
.tunnels{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,26em),1fr));gap:.8em}
.tunnel{background:var(--card);padding:.6em;border-top:.35em solid var(--none)}
.tunnel.good{border-color:var(--good)}.tunnel.bad{border-color:var(--bad)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.1em .6em;margin:.3em 0}dt{color:var(--mute)}dd{margin:0}
table{border-collapse:collapse;width:100%;margin:.3em 0}th,td{text-align:left;padding:.15em .4em;border-bottom:1px solid var(--line)}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
.chart{width:100%;height:auto;display:block}
.chart .plot{fill:none;stroke:var(--line)}.chart .grid{stroke:var(--line);stroke-dasharray:2 3}
.chart .axis{fill:var(--mute);font-size:11px}.chart .smoke{fill:var(--smoke);opacity:.55}
.chart .median{stroke-width:2.5}.chart .l0{stroke:var(--good);fill:var(--good)}
.chart .l1{stroke:#0072b2;fill:#0072b2}.chart .l2{stroke:#cc79a7;fill:#cc79a7}.chart .l3{stroke:var(--bad);fill:var(--bad)}
.chart .mark{stroke-width:1.5;stroke-dasharray:3 2;font-size:11px}.chart line.mark.down{stroke:var(--bad)}
.chart line.mark.up{stroke:var(--good)}.chart line.mark.unknown{stroke:var(--none)}
.chart text.mark.down{fill:var(--bad)}.chart text.mark.up{fill:var(--good)}.chart text.mark.unknown{fill:var(--none)}
.chart line.mark.stopped{stroke:var(--none);stroke-dasharray:1 2}.chart text.mark.stopped{fill:var(--none)}
.legend,footer,.ranges{color:var(--mute);font-size:.9em}
.firing{margin:.3em 0;padding-left:1.4em}.firing li{margin:.3em 0;padding:.3em .5em;background:var(--card);border-left:.4em solid var(--none)}
.firing li.bad{border-color:var(--bad)}.firing li.warn{border-color:var(--warn)}.firing .alert{font-size:1.1em}
.firing p{margin:.2em 0}.since,.again{color:var(--mute)}details.reason{display:inline}
.ranges a[aria-current]{font-weight:bold;text-decoration:none}
"#;

// Fetches the page again and swaps <main>, keeping the scroll position, and counts the
// swaps in <body data-refreshes>; a failed fetch shows the offline banner instead of
// silently showing old numbers.
const SCRIPT: &str = r#"(function(){var busy=false;setInterval(function(){if(busy||document.hidden)return;busy=true;
fetch(location.href,{cache:"no-store",credentials:"same-origin"}).then(function(r){if(!r.ok)throw new Error(r.status);return r.text()})
.then(function(t){var d=new DOMParser().parseFromString(t,"text/html"),n=d.getElementById("page");
if(n){document.getElementById("page").replaceWith(n);document.title=d.title;
var b=document.body.dataset;b.refreshes=(+b.refreshes||0)+1}document.body.classList.remove("offline")})
.catch(function(){document.getElementById("offline-at").textContent=new Date().toISOString();document.body.classList.add("offline")})
.finally(function(){busy=false})},REFRESH)})();"#;

/// Wraps a page's content in the document: head, style, banners and the refresh script.
fn document(title: &str, main: &str) -> String {
    let mut html = String::with_capacity(main.len() + 8 * 1024);
    let _ = write!(
        html,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{}</title><noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript><style>{STYLE}</style></head><body><div id="offline" role="alert">The daemon did not answer at <span id="offline-at"></span>: what you see is stale.</div>{main}<script>{}</script></body></html>"#,
        escape(title),
        SCRIPT.replace("REFRESH", &(REFRESH_SECONDS * 1_000).to_string())
    );
    html
}

/// The banner that says the monitor stopped, as `/health` says STALE.
fn stale_banner(view: &View) -> String {
    view.stale_for.map_or(String::new(), |silence| {
        format!(
            r#"<p class="stale" role="alert">STALE: the monitor has not run for {} s; the verdicts below are its last ones.</p>"#,
            silence.as_secs()
        )
    })
}

/// The banner that says a config reload was refused, as `/health` and `/status` say it.
fn reload_banner(view: &View) -> String {
    view.reload_refused
        .as_ref()
        .map_or(String::new(), |banner| {
            format!(
                r#"<p class="stale" id="reload-refused" role="alert">{}</p>"#,
                escape(banner)
            )
        })
}

/// The banner that says pages to a sink fail, as `/health`'s `paging:` lines say it.
fn paging_banner(s: &crate::snapshot::Snapshot) -> String {
    let lines = crate::snapshot::paging_lines(&s.sinks);
    if lines.is_empty() {
        return String::new();
    }
    let items: String = lines
        .lines()
        .map(|l| format!("<br>{}", escape(l.trim_start_matches("paging: "))))
        .collect();
    format!(
        r#"<p class="stale" id="paging-failing" role="alert">PAGES ARE NOT GETTING THROUGH: the NOC may not hear of what this page shows.{items}</p>"#
    )
}

/// The page's note on where the charts come from, and what the start read back.
fn history_note(s: &crate::snapshot::Snapshot) -> String {
    let restored = (s.history.as_ref()).and_then(|h| {
        h.lock()
            .unwrap_or_else(|p| p.into_inner())
            .restored()
            .cloned()
    });
    let read_back = match restored {
        Some(r) if r.series_adopted > 0 => format!(
            "; it read back {} minute(s) of the last hour written until {}, and {} minute(s) \
             the daemon was not running are marked ⏸",
            r.minutes_restored, r.saved_at, r.minutes_not_running
        ),
        Some(r) => format!(
            "; the history written until {} matched nothing of this config",
            r.saved_at
        ),
        None => String::new(),
    };
    format!(
        "Charts come from history written to state_dir once a minute (the last hour, six \
         hours and seven days): it survives a config reload and a restart (this one started \
         {}{read_back}). Smoke: RTT p10–p90 per point; line: \
         median, coloured by loss (green none, blue ≤ 5 %, pink ≤ 20 %, red more); bar under the \
         plot: loss; ▼ down, ▲ up, ? unknown, ⏸ daemon not running.",
        s.started_at
    )
}

/// Reads the points of one series: its minutes in memory are copied under the history's
/// lock, the rest is read from the ring files with no lock held.
fn points_of(
    s: &crate::snapshot::Snapshot,
    view: &View,
    pick: impl Fn(&History) -> Option<Live>,
) -> Option<Vec<MinuteSummary>> {
    let live = pick(
        &s.history
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    )?;
    Some(live.points(view.range, s.generated_at, &view.rings))
}

fn view_of(state: &AppState, range: Range) -> View {
    let stale_for = state
        .watched
        .first()
        .map(|m| m.heartbeat.silence())
        .filter(|silence| *silence > STALE_AFTER);
    View {
        range,
        stale_for,
        reload_refused: state.reload_health.borrow().banner(),
        outages: state.outages.records(),
        rings: state.rings.clone(),
    }
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn bad_query(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// `GET /`: the NOC page.
pub async fn index_page(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let range = match range_of(&query) {
        Ok(r) => r,
        Err(e) => return bad_query(e),
    };
    let snapshot = state.snapshots.borrow().clone();
    let view = view_of(&state, range);
    html(StatusCode::OK, render_index(&snapshot, &view))
}

/// `GET /target/ADDR`: every target at that address, with its chart.
pub async fn target_page(
    State(state): State<AppState>,
    Path(address): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let range = match range_of(&query) {
        Ok(r) => r,
        Err(e) => return bad_query(e),
    };
    let Ok(address) = address.parse::<std::net::Ipv4Addr>() else {
        return bad_query(format!(
            "/target/{address}: not an IPv4 address (try /target/172.16.1.10)\n"
        ));
    };
    let snapshot = state.snapshots.borrow().clone();
    let view = view_of(&state, range);
    match render_target(&snapshot, &view, address) {
        Some(page) => html(StatusCode::OK, page),
        None => html(
            StatusCode::NOT_FOUND,
            document(
                "not probed · tunnelkeeper",
                &format!(
                    r#"<main id="page"><h1>{address} is not probed</h1><p>No configured target has this address. <a href="/">Back to the overview</a>.</p></main>"#
                ),
            ),
        ),
    }
}
