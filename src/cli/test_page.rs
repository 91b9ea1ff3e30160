//! `tunnelkeeper test-page`: asks a running daemon (`POST /-/test-page`) to send a
//! "[TEST]" page through its sinks and prints what each sink answered, so that an operator
//! can prove the pager path after deploying.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::DaemonAddress;

/// How long the daemon may take: every sink in turn, each with its own timeouts and the
/// SDK's retries.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Sends the test page; returns the exit code (0 every sink accepted it, 1 one refused,
/// 2 the daemon refused the request, 3 unreachable) and what to print.
pub fn run(daemon: &DaemonAddress, sink: Option<&str>) -> (u8, String) {
    let path = match sink {
        Some(name) => format!("/-/test-page?sink={}", percent_encode(name)),
        None => "/-/test-page".to_string(),
    };
    match super::status::call(daemon, &path, Some(String::new()), TIMEOUT) {
        Err(e) => (3, format!("error: {e}\n")),
        Ok((status, body)) if status == 200 || status == 502 => match render(&body) {
            Ok(text) => (if status == 200 { 0 } else { 1 }, text),
            Err(e) => (3, format!("error: unreadable answer ({e}): {body}\n")),
        },
        Ok((status, body)) => (
            2,
            format!("error: the daemon answered {status}: {}\n", body.trim()),
        ),
    }
}

/// One line per sink: `ok sns:noc-page` or `FAILED sns:noc-page: <error>`.
fn render(body: &str) -> Result<String, String> {
    let answers: Vec<Value> = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let mut out = String::new();
    for a in &answers {
        let name = a["name"].as_str().unwrap_or("-");
        if a["ok"] == true {
            let _ = writeln!(out, "ok      {name}: accepted the test page");
        } else {
            let _ = writeln!(
                out,
                "FAILED  {name}: {}",
                a["error"].as_str().unwrap_or("refused")
            );
        }
    }
    Ok(out)
}

/// Escapes what a query value cannot hold (`:` and `/` of sink names are fine as `%XX`).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sink_gets_a_line_naming_a_refusal() {
        let text = render(
            r#"[{"name": "log", "ok": true, "error": null},
                {"name": "sns:noc-page", "ok": false, "error": "throttled: Rate exceeded"}]"#,
        )
        .unwrap();
        assert!(text.contains("ok      log: accepted"), "{text}");
        assert!(
            text.contains("FAILED  sns:noc-page: throttled: Rate exceeded"),
            "{text}"
        );
        assert_eq!(percent_encode("sns:noc page"), "sns%3Anoc%20page");
    }
}
