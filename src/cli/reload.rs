//! `tunnelkeeper reload`: asks a running daemon to reload its config (SIGHUP) and waits
//! for the outcome, so that `systemctl reload` (its `ExecReload=`) fails when the new
//! config is refused instead of reporting success while the old config runs on.
//!
//! The process to signal is `--pid`, else `$MAINPID` (which systemd sets for
//! `ExecReload=`), else the `pid` the daemon itself reports in `/status`: no pid file, so
//! nothing needs a writable directory in the unit's sandbox. The outcome is the `reload`
//! key of `/status`: the command reads it before signalling and waits until
//! `last_attempt` differs, which needs no agreement between the two processes' clocks.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::DaemonAddress;
use crate::reload::ReloadHealth;

/// Between two reads of `/status` while waiting.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// What the reload came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new config runs; a one-line note says when.
    Taken(String),
    /// The daemon refused the new config (and runs the previous one), or the outcome could
    /// not be seen; the text says which and why.
    Failed(String),
}

/// Signals the daemon at `daemon` (or process `pid`) and waits up to `timeout` for the
/// outcome of the reload.
pub fn reload(daemon: &DaemonAddress, pid: Option<u32>, timeout: Duration) -> Outcome {
    let before = match super::status::fetch(daemon).and_then(|b| parse(&b)) {
        Ok(status) => status,
        Err(e) => {
            return Outcome::Failed(format!(
                "{e}; no signal sent (the outcome of a reload could not be seen)"
            ))
        }
    };
    let Some(pid) = pid.or_else(|| before["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
    else {
        return Outcome::Failed(
            "/status has no pid and none was given (--pid or MAINPID): no signal sent".into(),
        );
    };
    let attempt_before = before["reload"]["last_attempt"].clone();
    if let Err(e) = send_sighup(pid) {
        return Outcome::Failed(format!("cannot send SIGHUP to process {pid}: {e}"));
    }
    let deadline = Instant::now() + timeout;
    loop {
        std::thread::sleep(POLL_EVERY);
        let last_problem = match super::status::fetch(daemon).and_then(|b| parse(&b)) {
            Ok(now) if now["reload"]["last_attempt"] != attempt_before => {
                return judge(&now["reload"]);
            }
            Ok(_) => "no new reload attempt in /status".to_string(),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Outcome::Failed(format!(
                "SIGHUP sent to process {pid}, but no reload outcome within {} ({last_problem})",
                humantime::format_duration(timeout)
            ));
        }
    }
}

fn parse(body: &str) -> Result<Value, String> {
    serde_json::from_str(body).map_err(|e| format!("/status is not JSON: {e}"))
}

/// Reads the outcome out of `/status`'s `reload` key.
pub fn judge(reload: &Value) -> Outcome {
    match serde_json::from_value::<ReloadHealth>(reload.clone()) {
        Ok(r) => match (r.ok, r.refusal()) {
            (Some(true), _) => Outcome::Taken(format!(
                "config reloaded at {}",
                r.last_attempt.map_or("-".into(), |t| t.to_string())
            )),
            (_, Some((at, error))) => Outcome::Failed(format!(
                "the config reload at {at} was refused; the daemon runs the config loaded at {}:\n{error}",
                r.last_success
            )),
            _ => Outcome::Failed(format!("/status has no reload outcome: {reload}")),
        },
        Err(e) => Outcome::Failed(format!("/status has an unreadable reload key ({e}): {reload}")),
    }
}

#[allow(unsafe_code)]
fn send_sighup(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| std::io::Error::other(format!("{pid} is not a process id")))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_read_from_the_reload_key() {
        let taken = serde_json::json!({"last_attempt": "2027-01-15T08:01:00.000Z", "ok": true, "error": null, "last_success": "2027-01-15T08:01:00.000Z"});
        assert_eq!(
            judge(&taken),
            Outcome::Taken("config reloaded at 2027-01-15T08:01:00Z".into())
        );
        let refused = serde_json::json!({"last_attempt": "2027-01-15T08:02:00.000Z", "ok": false, "error": "bad.toml: line 5: vpn[0].id", "last_success": "2027-01-15T08:01:00.000Z"});
        let Outcome::Failed(text) = judge(&refused) else {
            panic!("a refusal is a failure")
        };
        assert!(
            text.contains("at 2027-01-15T08:02:00Z was refused"),
            "{text}"
        );
        assert!(text.ends_with("bad.toml: line 5: vpn[0].id"), "{text}");
        let never = serde_json::json!({"last_attempt": null, "ok": null, "error": null, "last_success": "2027-01-15T08:01:00.000Z"});
        assert!(matches!(judge(&never), Outcome::Failed(_)));
        assert!(matches!(judge(&Value::Null), Outcome::Failed(_)));
    }

    #[test]
    fn no_process_zero_or_negative_is_signalled() {
        // kill(0) would signal our own process group, kill(-1) every process we may.
        assert!(send_sighup(0).is_err());
        assert!(send_sighup(u32::MAX).is_err());
    }
}
