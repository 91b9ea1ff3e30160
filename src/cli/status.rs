//! `tunnelkeeper status` and `tunnelkeeper healthcheck`: small HTTP/1.1 clients for a
//! running daemon, and the table an engineer on the instance wants to see first.

use std::fmt::Write as _;
use std::time::Duration;

use super::DaemonAddress;
use crate::http_client::CallOptions;

use serde_json::Value;

/// Makes a GET request to a running daemon; returns the status code and body.
pub fn get(daemon: &DaemonAddress, path: &str) -> Result<(u16, String), String> {
    call(daemon, path, None, Duration::from_secs(5))
}

/// Makes a request to a running daemon (a POST with `body`); returns status and body.
pub fn call(
    daemon: &DaemonAddress,
    path: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let addr = &daemon.addr;
    let tls = daemon.tls_insecure || daemon.tls_ca_file.is_some();
    let options = CallOptions {
        tls: tls
            .then(|| {
                crate::http_client::tls_client(daemon.tls_ca_file.as_deref(), daemon.tls_insecure)
            })
            .transpose()?,
        authorization: daemon.basic_auth.as_ref().map(|credentials| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        }),
    };
    let scheme = if tls { "https" } else { "http" };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer = runtime
        .block_on(crate::http_client::call(
            &format!("{scheme}://{addr}"),
            path,
            body,
            timeout,
            &options,
        ))
        .map_err(|e| format!("cannot reach tunnelkeeper at {addr}: {e}"))?;
    Ok((
        answer.status,
        String::from_utf8_lossy(&answer.body).into_owned(),
    ))
}

/// The monitoring-plugins exit code for a `/status` body: 0 OK, 1 DEGRADED, 2 CRITICAL,
/// 3 anything else (starting, unreadable), so that `tunnelkeeper status` serves as a
/// Nagios or Icinga check too. An unreachable daemon is 3 as well. A critical alert
/// firing (or inhibited by another, which fires too) is 2 whatever the VPN's state: a
/// check must never say less than the pages do.
pub fn exit_code(body: &str) -> u8 {
    let json = serde_json::from_str::<Value>(body).ok();
    let state = json
        .as_ref()
        .and_then(|j| j["vpn"]["state"].as_str().map(str::to_string));
    let by_state = match state.as_deref() {
        Some("ok") => 0,
        Some("degraded") => 1,
        Some("critical") => 2,
        Some(_) | None => 3,
    };
    if json
        .as_ref()
        .is_some_and(|j| !critical_alerts(j).is_empty())
    {
        return 2;
    }
    by_state
}

/// The critical alerts that fire (inhibited ones too: only another firing alert inhibits),
/// as `Class vpn/tunnel: summary`.
fn critical_alerts(j: &Value) -> Vec<String> {
    j["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            a["severity"] == "critical"
                && matches!(a["state"].as_str(), Some("firing" | "inhibited"))
        })
        .map(|a| {
            let place: Vec<&str> = [a["vpn"].as_str(), a["tunnel"].as_str()]
                .into_iter()
                .flatten()
                .collect();
            let place = if place.is_empty() {
                String::new()
            } else {
                format!(" {}", place.join("/"))
            };
            format!("{}{place}: {}", s(a, "alert"), s(a, "summary"))
        })
        .collect()
}

/// Fetches `/status`.
pub fn fetch(daemon: &DaemonAddress) -> Result<String, String> {
    match get(daemon, "/status")? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("/status answered {status}: {}", body.trim())),
    }
}

fn paint(text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match text {
        "up" | "ok" | "healthy" | "OK" => "32",
        "degraded" | "unknown" | "DEGRADED" | "starting" | "STARTING" | "pending" | "warning"
        | "silenced" | "inhibited" => "33",
        "down" | "critical" | "CRITICAL" | "firing" => "31",
        _ => return text.to_string(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// How long a reason may be in the table; `/status` has it whole.
const REASON_CHARS: usize = 100;

fn when(v: &Value, with_reason: bool) -> String {
    let reason = v["reason"].as_str().filter(|_| with_reason).map(|r| {
        if r.chars().count() > REASON_CHARS {
            let cut: String = r.chars().take(REASON_CHARS - 3).collect();
            format!("{cut}...")
        } else {
            r.to_string()
        }
    });
    match (v["since"].as_str(), reason) {
        (Some(since), Some(reason)) => format!("since {} ({reason})", utc(since)),
        (Some(since), None) => format!("since {}", utc(since)),
        (None, Some(reason)) => reason,
        (None, None) => String::new(),
    }
}

/// An RFC 3339 time to the second, with its `Z`, as `/health` prints it.
fn utc(t: &str) -> String {
    match t.get(..19) {
        Some(seconds) if t.ends_with('Z') => format!("{seconds}Z"),
        _ => t.to_string(),
    }
}

/// Returns a key's value unless it is null (`/status` keeps every key, null when nothing
/// applies).
fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |s| format!("{:.2} ms", s * 1000.0))
}

/// Renders `/status` JSON as a compact table, colored when `color`.
pub fn render(body: &str, color: bool) -> Result<String, String> {
    let j: Value = serde_json::from_str(body).map_err(|e| format!("/status is not JSON: {e}"))?;
    let mut out = String::new();
    let vpn = &j["vpn"];
    let token = s(vpn, "state").to_ascii_uppercase();
    let _ = writeln!(
        out,
        "TUNNELKEEPER {} {}  (ICMP socket: {})",
        paint(&token, color),
        when(vpn, true),
        s(&j, "icmp_socket")
    );
    let refused = serde_json::from_value::<crate::reload::ReloadHealth>(j["reload"].clone())
        .ok()
        .and_then(|r| r.health_line());
    if let Some(line) = refused {
        let _ = writeln!(out, "WARNING: {line}");
    }
    for alert in critical_alerts(&j) {
        let _ = writeln!(out, "{} {alert}", paint("CRITICAL", color));
    }
    for sink in j["sinks"].as_array().into_iter().flatten() {
        if sink["ok"] == false {
            let _ = writeln!(
                out,
                "{}: pages to sink {} fail since {} ({} in a row): {}",
                paint("WARNING", color),
                s(sink, "name"),
                s(sink, "failing_since"),
                sink["consecutive_failures"].as_u64().unwrap_or(0),
                s(sink, "error")
            );
        }
    }
    let (table, targets) = tunnels_table(&j, color);
    out.push_str(&table);
    out.push_str(&targets_table(&targets, color));
    out.push_str(&maintenance_table(&j, color));
    out.push_str(&path_mtu_table(&j, color));
    out.push_str(&alerts_table(&j, color));
    out.push_str(&notes(&j, color));
    Ok(out)
}

/// The connections and their tunnels, one row each; with every target and the tunnel
/// it rides (shared ones last), for the targets' table.
fn tunnels_table(j: &Value, color: bool) -> (String, Vec<(String, Value)>) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<16} {:<18} {:<9} {:<8} {:<8} DETAIL",
        "CONNECTION", "TUNNEL", "STATE", "DATA", "AWS"
    );
    let mut targets = Vec::new();
    for c in j["connections"].as_array().into_iter().flatten() {
        let state = s(c, "state");
        // A reason is shown once, on the most precise row that has it.
        let tunnels_say_why = c["tunnels"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["reason"].is_string());
        let _ = writeln!(
            out,
            "{:<16} {:<18} {:<9} {:<8} {:<8} {}",
            s(c, "name"),
            "",
            paint(state, color),
            "",
            "",
            when(c, !tunnels_say_why)
        );
        for t in c["tunnels"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{:<16} {:<18} {:<9} {:<8} {:<8} {}",
                "",
                s(t, "name"),
                paint(s(t, "state"), color),
                paint(s(&t["data_plane"], "state"), color),
                paint(s(&t["control_plane"], "state"), color),
                when(t, true)
            );
            for x in t["targets"].as_array().into_iter().flatten() {
                targets.push((s(t, "name").to_string(), x.clone()));
            }
        }
    }
    for x in j["shared_targets"].as_array().into_iter().flatten() {
        targets.push(("(shared)".to_string(), x.clone()));
    }
    (out, targets)
}

/// A target's address, with `:port/tcp` for a TCP target.
fn endpoint(x: &Value) -> String {
    match x["tcp_port"].as_u64() {
        Some(port) => format!("{}:{port}/tcp", s(x, "address")),
        None => s(x, "address").to_string(),
    }
}

/// A target's state; a TCP target whose host resets the connects is `up/refused`: the
/// path works, the service does not.
fn target_state(x: &Value) -> String {
    match x["service"]["state"].as_str() {
        Some("refused") => format!("{}/refused", s(x, "state")),
        Some(_) | None => s(x, "state").to_string(),
    }
}

/// Every target's state, loss and RTTs over its recent window.
fn targets_table(targets: &[(String, Value)], color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<18} {:<20} {:<21} {:<9} {:>13} {:>10} {:>10} {:>9}",
        "TUNNEL", "TARGET", "ADDRESS", "STATE", "LOSS", "RTT p50", "RTT p99", "SENT"
    );
    for (tunnel, x) in targets {
        let _ = writeln!(
            out,
            "{:<18} {:<20} {:<21} {:<9} {:>13} {:>10} {:>10} {:>9}",
            tunnel,
            s(x, "name"),
            endpoint(x),
            paint(&target_state(x), color),
            format!(
                "{:.1}% of {}",
                x["recent_loss_percent"].as_f64().unwrap_or(0.0),
                x["recent_probes"].as_u64().unwrap_or(0)
            ),
            ms(&x["rtt_p50_seconds"]),
            ms(&x["rtt_p99_seconds"]),
            x["sent"].as_u64().unwrap_or(0)
        );
    }
    if !targets.is_empty() {
        let _ = writeln!(
            out,
            "LOSS and RTT: each target's last {} probes (fewer since a start); SENT: since the start.",
            crate::probe::stats::WINDOW
        );
    }
    out
}

/// AWS's maintenance of the tunnels, when EC2 said anything of it.
fn maintenance_table(j: &Value, color: bool) -> String {
    let mut out = String::new();
    let maintenance: Vec<(&Value, &Value)> = j["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["tunnels"].as_array().into_iter().flatten())
        .filter_map(|t| present(t, "maintenance").map(|m| (t, m)))
        .collect();
    if !maintenance.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<18} {:<24} {:<20} {:<20} CHECKED",
            "TUNNEL", "AWS MAINTENANCE", "AUTO-APPLY AFTER", "LAST APPLIED"
        );
        for (t, m) in maintenance {
            let pending = m["pending"]
                .as_str()
                .map(str::trim)
                .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("none"));
            let _ = writeln!(
                out,
                "{:<18} {:<24} {:<20} {:<20} {}",
                s(t, "name"),
                pending.map_or("none".to_string(), |p| paint_pending(p, color)),
                if pending.is_some() {
                    time(&m["auto_apply_after"])
                } else {
                    "-".to_string()
                },
                time(&m["last_applied"]),
                time(&m["checked_at"])
            );
        }
    }
    out
}

/// Every alert, firing ones and pending, inhibited and silenced ones.
fn alerts_table(j: &Value, color: bool) -> String {
    let mut out = String::new();
    let alerts: Vec<&Value> = j["alerts"].as_array().into_iter().flatten().collect();
    let _ = writeln!(out, "\nALERTS ({})", alerts.len());
    for a in alerts {
        let place = [a["vpn"].as_str(), a["tunnel"].as_str()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("/");
        let _ = writeln!(
            out,
            "  {:<10} {:<9} {:<24} {:<24} {}",
            paint(s(a, "state"), color),
            paint(s(a, "severity"), color),
            s(a, "alert"),
            if place.is_empty() {
                "VPN".to_string()
            } else {
                place
            },
            s(a, "summary")
        );
    }
    out
}

/// EC2's freshness, connections EC2 does not know, config warnings and advisories.
fn notes(j: &Value, color: bool) -> String {
    let mut out = String::new();
    if let Some(cp) = present(j, "control_plane") {
        let _ = writeln!(
            out,
            "\nEC2: last answer {}, {}",
            cp["last_success"].as_str().unwrap_or("never"),
            if cp["stale"] == true {
                paint("stale", color)
            } else {
                "fresh".to_string()
            }
        );
    }
    if let Some(cp) = present(j, "control_plane") {
        for c in cp["connections_not_found"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "{}: connection {} ({}) is {} in EC2: the config no longer matches AWS",
                paint("warning", color),
                s(c, "vpn"),
                s(c, "vpn_id"),
                s(c, "state")
            );
        }
    }
    for w in j["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "warning: {}", w.as_str().unwrap_or(""));
    }
    for a in j["advisories"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "advice [{}] {}/{}: {}",
            s(a, "code"),
            s(a, "vpn"),
            s(a, "tunnel"),
            s(a, "message")
        );
    }
    out
}

/// The tunnels' last path-MTU measurements, if any: the size that crossed, the size
/// expected, and how the limit was found ("silent" under the expected size is a black hole).
fn path_mtu_table(j: &Value, color: bool) -> String {
    let measured: Vec<(&Value, &Value)> = j["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["tunnels"].as_array().into_iter().flatten())
        .filter_map(|t| present(t, "path_mtu").map(|m| (t, m)))
        .collect();
    if measured.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n{:<18} {:>8} {:>8} {:<24} {:<16} MEASURED\n",
        "TUNNEL", "PATH MTU", "EXPECTED", "FOUND BY", "TARGET"
    );
    for (t, m) in measured {
        let (bytes, expected) = (m["bytes"].as_u64(), m["expected"].as_u64());
        let found = match (s(m, "found"), m["router"].as_str()) {
            ("frag_needed", Some(router)) => format!("frag needed ({router})"),
            ("frag_needed", None) => "frag needed".to_string(),
            ("silent", _) if bytes < expected => paint_pending("silent: black hole", color),
            (other, _) => other.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>8} {:<24} {:<16} {}",
            s(t, "name"),
            bytes.map_or("-".into(), |b| b.to_string()),
            expected.map_or("-".into(), |b| b.to_string()),
            found,
            s(m, "target"),
            time(&m["measured_at"])
        );
    }
    out
}

/// A `/status` time as `2026-11-28T14:00:00Z`, or `-`.
fn time(v: &Value) -> String {
    v.as_str().map_or("-".to_string(), utc)
}

fn paint_pending(text: &str, color: bool) -> String {
    let short: String = text.chars().take(24).collect();
    if color {
        format!("\x1b[33m{short}\x1b[0m")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_codes_follow_the_monitoring_plugins() {
        let body = |state: &str| format!("{{\"vpn\": {{\"state\": \"{state}\"}}}}");
        assert_eq!(super::exit_code(&body("ok")), 0);
        assert_eq!(super::exit_code(&body("degraded")), 1);
        assert_eq!(super::exit_code(&body("critical")), 2);
        assert_eq!(super::exit_code(&body("starting")), 3);
        assert_eq!(super::exit_code("not json"), 3);
        // A critical alert firing is 2 whatever the VPN says (a ConnectionDown that is the
        // last path, say); a silenced one, or a warning, is not.
        let with = |state: &str, severity: &str, alert_state: &str| {
            format!(
                "{{\"vpn\": {{\"state\": \"{state}\"}}, \"alerts\": [{{\"alert\": \"ConnectionDown\", \"severity\": \"{severity}\", \"vpn\": \"dc\", \"state\": \"{alert_state}\", \"summary\": \"both tunnels down\"}}]}}"
            )
        };
        assert_eq!(super::exit_code(&with("degraded", "critical", "firing")), 2);
        assert_eq!(super::exit_code(&with("ok", "critical", "inhibited")), 2);
        assert_eq!(
            super::exit_code(&with("degraded", "critical", "silenced")),
            1
        );
        assert_eq!(
            super::exit_code(&with("degraded", "critical", "pending")),
            1
        );
        assert_eq!(super::exit_code(&with("degraded", "warning", "firing")), 1);
        let table = super::render(&with("degraded", "critical", "firing"), false).unwrap();
        assert!(
            table.contains("CRITICAL ConnectionDown dc: both tunnels down"),
            "{table}"
        );
    }

    use super::*;

    const STATUS: &str = r#"{
      "vpn": {"state": "degraded", "since": "2026-11-28T14:00:00.000Z", "reason": "dc degraded"},
      "icmp_socket": "dgram",
      "connections": [{"name": "dc", "state": "degraded", "since": "2026-11-28T14:00:00.000Z", "reason": "redundancy lost",
        "tunnels": [{"name": "dc-a", "state": "down", "since": "2026-11-28T14:00:00.000Z", "reason": "AWS reports DOWN: x",
          "data_plane": {"state": "up"}, "control_plane": {"state": "down"},
          "targets": [{"name": "172.16.1.10", "address": "172.16.1.10", "state": "up", "recent_loss_percent": 2.0,
                       "recent_probes": 100, "rtt_p50_seconds": 0.0041, "rtt_p99_seconds": 0.009, "sent": 120}]}]}],
      "shared_targets": [],
      "alerts": [{"alert": "TunnelDown", "severity": "warning", "vpn": "dc", "tunnel": "dc-a", "state": "firing", "summary": "AWS reports DOWN: x"}],
      "warnings": ["tunnel dc-b: StartupAction=add"]
    }"#;

    const WITH_MAINTENANCE: &str = r#"{
      "vpn": {"state": "ok", "since": "2026-11-28T14:00:00.000Z"},
      "icmp_socket": "dgram",
      "connections": [{"name": "dc", "state": "healthy", "since": "2026-11-28T14:00:00.000Z",
        "tunnels": [
          {"name": "dc-a", "state": "up", "data_plane": {"state": "up"}, "control_plane": {"state": "up"}, "targets": [],
           "maintenance": {"pending": "Pending", "auto_apply_after": "2026-12-02T03:00:00.000Z",
                           "last_applied": null, "checked_at": "2026-11-28T14:05:00.000Z"}},
          {"name": "dc-b", "state": "up", "data_plane": {"state": "up"}, "control_plane": {"state": "up"}, "targets": [],
           "maintenance": {"pending": null, "auto_apply_after": null,
                           "last_applied": "2026-10-01T02:00:00.000Z", "checked_at": "2026-11-28T14:05:01.000Z"}}]}],
      "shared_targets": [],
      "alerts": [],
      "control_plane": {"last_success": "2026-11-28T14:05:00.000Z", "stale": false,
        "connections_not_found": [{"vpn": "old", "vpn_id": "vpn-0aaaaaaaaaaaaaaaa", "state": "missing"}]},
      "advisories": [{"code": "tunnel_logging_off", "vpn": "dc", "tunnel": "dc-b", "message": "tunnel logging is off"}],
      "warnings": []
    }"#;

    #[test]
    fn null_parts_of_status_print_nothing() {
        // /status keeps every key: null maintenance, path MTU and control plane without AWS.
        let body = r#"{"vpn": {"state": "ok", "since": "2026-11-28T14:00:00.000Z", "reason": null},
          "icmp_socket": "raw", "control_plane": null, "advisories": [], "warnings": [], "alerts": [],
          "shared_targets": [], "connections": [{"name": "dc", "state": "healthy", "since": null, "reason": null,
            "tunnels": [{"name": "dc-a", "state": "up", "since": null, "reason": null, "aws": null,
              "maintenance": null, "path_mtu": null, "data_plane": {"state": "up"},
              "control_plane": {"state": "unknown"}, "targets": []}]}]}"#;
        let table = render(body, false).unwrap();
        assert!(!table.contains("AWS MAINTENANCE"), "{table}");
        assert!(!table.contains("PATH MTU"), "{table}");
        assert!(!table.contains("EC2:"), "{table}");
    }

    #[test]
    fn the_table_shows_aws_maintenance_unknown_connections_and_advice() {
        let table = render(WITH_MAINTENANCE, false).unwrap();
        assert!(table.contains("TUNNEL             AWS MAINTENANCE          AUTO-APPLY AFTER     LAST APPLIED         CHECKED"), "{table}");
        assert!(table.contains("dc-a               Pending                  2026-12-02T03:00:00Z -                    2026-11-28T14:05:00Z"), "{table}");
        assert!(table.contains("dc-b               none                     -                    2026-10-01T02:00:00Z 2026-11-28T14:05:01Z"), "{table}");
        assert!(
            table.contains("warning: connection old (vpn-0aaaaaaaaaaaaaaaa) is missing in EC2"),
            "{table}"
        );
        assert!(
            table.contains("advice [tunnel_logging_off] dc/dc-b: tunnel logging is off"),
            "{table}"
        );
    }

    #[test]
    fn the_table_shows_each_tunnels_path_mtu_and_how_it_was_found() {
        let mtu = |bytes: u32, found: &str, router: &str| {
            format!(
                r#"{{"bytes": {bytes}, "found": "{found}", "expected": 1446, "target": "172.16.1.10"{router}, "probes": 9, "measured_at": "2026-11-28T14:05:00.000Z"}}"#
            )
        };
        let tunnel = |name: &str, m: String| {
            format!(
                r#"{{"name": "{name}", "state": "up", "data_plane": {{"state": "up"}}, "control_plane": {{"state": "up"}}, "targets": [], "path_mtu": {m}}}"#
            )
        };
        let body = format!(
            r#"{{"vpn": {{"state": "ok"}}, "connections": [{{"name": "dc", "state": "healthy", "tunnels": [{}, {}, {}]}}], "alerts": []}}"#,
            tunnel("dc-a", mtu(1300, "silent", "")),
            tunnel(
                "dc-b",
                mtu(1300, "frag_needed", r#", "router": "10.1.2.2""#)
            ),
            tunnel("dc-c", mtu(1500, "reply", "")),
        );
        let table = render(&body, false).unwrap();
        for line in [
            "TUNNEL             PATH MTU EXPECTED FOUND BY                 TARGET           MEASURED",
            "dc-a                   1300     1446 silent: black hole       172.16.1.10      2026-11-28T14:05:00Z",
            "dc-b                   1300     1446 frag needed (10.1.2.2)   172.16.1.10      2026-11-28T14:05:00Z",
            "dc-c                   1500     1446 reply                    172.16.1.10      2026-11-28T14:05:00Z",
        ] {
            assert!(table.contains(line), "{line:?} not in\n{table}");
        }
        assert!(!render(STATUS, false).unwrap().contains("PATH MTU"));
    }

    #[test]
    fn the_table_shows_both_planes_targets_and_alerts() {
        let table = render(STATUS, false).unwrap();
        assert!(
            table.starts_with("TUNNELKEEPER DEGRADED since 2026-11-28T14:00:00Z (dc degraded)"),
            "{table}"
        );
        assert!(table.contains("dc-a               down      up       down     since 2026-11-28T14:00:00Z (AWS reports DOWN: x)"), "{table}");
        // The connection's reason is its tunnel's, said once.
        assert!(
            table.contains(&format!(
                "{:<16} {:<18} {:<9} {:<8} {:<8} since 2026-11-28T14:00:00Z\n",
                "dc", "", "degraded", "", ""
            )),
            "{table}"
        );
        assert!(
            table.contains("2.0% of 100    4.10 ms    9.00 ms       120"),
            "{table}"
        );
        assert!(
            table.contains("LOSS and RTT: each target's last 100 probes"),
            "{table}"
        );
        assert!(
            table.contains("firing     warning   TunnelDown               dc/dc-a"),
            "{table}"
        );
        assert!(table.contains("warning: tunnel dc-b"), "{table}");
        assert!(!table.contains('\x1b'));
        assert!(render(STATUS, true)
            .unwrap()
            .contains("\x1b[31mdown\x1b[0m"));
    }
}
