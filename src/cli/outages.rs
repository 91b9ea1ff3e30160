//! `tunnelkeeper outages`: a running daemon's outage log, one line per outage, newest
//! first; with `--export ID` the outage's incident bundle as JSON (or its minutes as CSV
//! with `--csv`), for a support case or a post-mortem.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::DaemonAddress;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches and renders; returns the exit code (0 done, 1 no such outage, 2 a bad request,
/// 3 unreachable) and what to print (stdout for 0, stderr otherwise).
pub fn run(daemon: &DaemonAddress, export: Option<&str>, csv: bool) -> (u8, String) {
    let path = match (export, csv) {
        (Some(id), false) => format!("/outages/{id}"),
        (Some(id), true) => format!("/outages/{id}?format=csv"),
        (None, true) => return (2, "error: --csv goes with --export ID\n".into()),
        (None, false) => "/outages".to_string(),
    };
    match super::status::call(daemon, &path, None, TIMEOUT) {
        Err(e) => (3, format!("error: {e}\n")),
        Ok((200, body)) if export.is_some() => (0, body),
        Ok((200, body)) => match render(&body) {
            Ok(text) => (0, text),
            Err(e) => (3, format!("error: unreadable answer ({e}): {body}\n")),
        },
        Ok((404, body)) => (1, format!("error: {}", body)),
        Ok((status, body)) => (2, format!("error: the daemon answered {status}: {body}")),
    }
}

/// One line per outage: id, began, seconds, what, why.
fn render(body: &str) -> Result<String, String> {
    let json: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let outages = json["outages"].as_array().ok_or("no outages list")?;
    if outages.is_empty() {
        return Ok("no outages in the log\n".into());
    }
    let mut out = String::new();
    for o in outages {
        let tunnels: Vec<&str> = o["tunnels"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  {}  {:>8.1} s  {} {}: {}",
            o["id"].as_str().unwrap_or("-"),
            o["started_at"].as_str().unwrap_or("-"),
            o["seconds"].as_f64().unwrap_or(0.0),
            o["kind"].as_str().unwrap_or("-"),
            tunnels.join(","),
            o["reason"].as_str().unwrap_or("")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outage_gets_a_line() {
        let text = render(
            r#"{"schema_version":1,"outages":[{"id":"tunnel-1-0000abcd","started_at":"2026-12-04T03:00:00.000Z","seconds":75.25,"kind":"tunnel","tunnels":["dc-a"],"reason":"AWS reports DOWN"}]}"#,
        )
        .unwrap();
        assert_eq!(
            text,
            "tunnel-1-0000abcd  2026-12-04T03:00:00.000Z      75.2 s  tunnel dc-a: AWS reports DOWN\n"
        );
        assert_eq!(
            render(r#"{"schema_version":1,"outages":[]}"#).unwrap(),
            "no outages in the log\n"
        );
    }
}
