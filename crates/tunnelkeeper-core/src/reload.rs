//! The outcome of config reloads, as `/status`, `/health`, the NOC page and `tunnelkeeper
//! status` tell it. A refused reload leaves the previous config running, which is easy to
//! miss (the log says it once, `systemctl reload` used to report success): every view says
//! so until a reload is taken.

use serde::{Deserialize, Serialize};

use crate::types::Timestamp;

/// The last reload attempt and its outcome; `/status` key `reload`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadHealth {
    /// When the last reload was asked for (SIGHUP or `POST /-/reload`); null before any.
    pub last_attempt: Option<Timestamp>,
    /// Whether it was taken; null before any.
    pub ok: Option<bool>,
    /// Why it was refused; null unless the last attempt was refused.
    pub error: Option<String>,
    /// When the running config was loaded: at start, or by the last reload taken.
    pub last_success: Timestamp,
}

impl ReloadHealth {
    /// Returns the state of a daemon that loaded its config at `at` and was never reloaded.
    pub fn started(at: Timestamp) -> Self {
        Self {
            last_attempt: None,
            ok: None,
            error: None,
            last_success: at,
        }
    }

    /// Records a reload asked for at `at` and taken.
    pub fn taken(&mut self, at: Timestamp) {
        *self = Self {
            last_attempt: Some(at),
            ok: Some(true),
            error: None,
            last_success: at,
        };
    }

    /// Records a reload asked for at `at` and refused for `error`; the config loaded at
    /// `last_success` goes on running.
    pub fn refused(&mut self, at: Timestamp, error: &str) {
        self.last_attempt = Some(at);
        self.ok = Some(false);
        self.error = Some(error.trim().to_string());
    }

    /// Returns when the last reload was refused and why, unless it was taken (or none was
    /// asked for).
    pub fn refusal(&self) -> Option<(Timestamp, &str)> {
        match (self.ok, self.last_attempt) {
            (Some(false), Some(at)) => Some((at, self.error.as_deref().unwrap_or("unknown"))),
            _ => None,
        }
    }

    /// Returns the line `/health` adds while the last reload stands refused: one line, the
    /// error's own lines joined, so that a SiteScope match on the first line is unchanged.
    pub fn health_line(&self) -> Option<String> {
        let (at, error) = self.refusal()?;
        Some(format!(
            "config reload at {at} refused ({}); running the config loaded at {}",
            one_line(error),
            self.last_success
        ))
    }

    /// Returns the NOC page's banner while the last reload stands refused.
    pub fn banner(&self) -> Option<String> {
        let (at, error) = self.refusal()?;
        Some(format!(
            "The config reload at {at} was refused: {}; the daemon runs the previous config (loaded at {}).",
            one_line(error),
            self.last_success
        ))
    }
}

/// Joins a multi-line error (`check-config`'s list of problems) into one line.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn each_view_tells_a_refused_reload_until_one_is_taken() {
        let at = |s: u64| START.plus(std::time::Duration::from_secs(s));
        let mut reload = ReloadHealth::started(START);
        assert_eq!(reload.refusal(), None);
        assert_eq!(reload.health_line(), None);
        assert_eq!(reload.banner(), None);

        let error = "config.toml: 1 problem(s):\n  line 5, column 6: vpn[0].id: \"vpn-12\" is not a VPN connection id\n";
        reload.refused(at(60), error);
        assert_eq!(reload.ok, Some(false));
        assert_eq!(reload.last_success, START, "the previous config still runs");
        assert_eq!(reload.refusal().map(|(t, _)| t), Some(at(60)));
        let line = reload.health_line().unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            line,
            "config reload at 2027-01-15T08:01:00Z refused (config.toml: 1 problem(s): line 5, column 6: vpn[0].id: \"vpn-12\" is not a VPN connection id); running the config loaded at 2027-01-15T08:00:00Z"
        );
        let banner = reload.banner().unwrap();
        assert!(
            banner.starts_with("The config reload at 2027-01-15T08:01:00Z was refused: config.toml: 1 problem(s): line 5"),
            "{banner}"
        );
        assert!(
            banner.contains("the daemon runs the previous config"),
            "{banner}"
        );

        // A second refusal replaces the first; a taken reload clears both.
        reload.refused(at(120), "cannot open the ICMP socket");
        assert!(reload
            .banner()
            .unwrap()
            .contains("cannot open the ICMP socket"));
        reload.taken(at(180));
        assert_eq!(
            reload,
            ReloadHealth {
                last_attempt: Some(at(180)),
                ok: Some(true),
                error: None,
                last_success: at(180),
            }
        );
        assert_eq!(reload.health_line(), None);
        assert_eq!(reload.banner(), None);
    }

    #[test]
    fn status_keeps_every_key_null_where_nothing_applies() {
        let json = serde_json::to_value(ReloadHealth::started(START)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "last_attempt": null,
                "ok": null,
                "error": null,
                "last_success": "2027-01-15T08:00:00.000Z",
            })
        );
    }
}
