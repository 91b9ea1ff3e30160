//! The `[aws.tunnel_logs]` table: where AWS's tunnel activity logs are read, how often, and
//! how long a page waits for them.

use super::*;
use crate::config::TunnelLogsConfig;

impl Validator<'_> {
    pub(super) fn tunnel_logs(&mut self, raw: Option<&RawTunnelLogs>) -> TunnelLogsConfig {
        let Some(t) = raw else {
            return TunnelLogsConfig::default();
        };
        let log_group = t.log_group.as_ref().map(|g| {
            let value = g.get_ref();
            // CloudWatch Logs group names: 1 to 512 of [a-zA-Z0-9_-/.#].
            let usable = !value.is_empty()
                && value.len() <= 512
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c));
            if !usable {
                self.problem(
                    Some(g.span()),
                    "aws.tunnel_logs.log_group",
                    format!("{value:?} is not a log group name: 1 to 512 of a-z A-Z 0-9 _ - / . # (the name, not its ARN)"),
                );
            }
            value.clone()
        });
        if t.enabled == Some(false) {
            self.warnings.push(
                "aws.tunnel_logs.enabled = false: AWS's tunnel logs are never read; enable tunnel logs: pages will not say why".into(),
            );
        }
        TunnelLogsConfig {
            enabled: t.enabled,
            log_group,
            wait: self.duration(
                "aws.tunnel_logs.wait",
                t.wait.as_ref(),
                TunnelLogsConfig::DEFAULT_WAIT,
                Duration::ZERO,
                Duration::from_secs(60),
            ),
            interval: self.duration(
                "aws.tunnel_logs.interval",
                t.interval.as_ref(),
                TunnelLogsConfig::DEFAULT_INTERVAL,
                Duration::from_secs(5),
                Duration::from_secs(600),
            ),
            linger: self.duration(
                "aws.tunnel_logs.linger",
                t.linger.as_ref(),
                TunnelLogsConfig::DEFAULT_LINGER,
                Duration::ZERO,
                Duration::from_secs(3600),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn with(logs: &str) -> Result<Config, String> {
        let text = format!("[aws]\nregion = \"eu-west-1\"\n[aws.tunnel_logs]\n{logs}\n[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [\"10.0.0.1\"]\n");
        Config::parse(&text, "test").map_err(|e| e.to_string())
    }

    #[test]
    fn bad_values_name_key_value_and_bound_and_logs_off_is_warned() {
        let rows = [
            (
                "wait = \"2m\"",
                "aws.tunnel_logs.wait: 2m is out of range: it must be between 0s and 1m",
            ),
            (
                "interval = \"1s\"",
                "aws.tunnel_logs.interval: 1s is out of range: it must be between 5s and 10m",
            ),
            (
                "linger = \"2h\"",
                "aws.tunnel_logs.linger: 2h is out of range",
            ),
            (
                "log_group = \"arn:aws:logs:x\"",
                "aws.tunnel_logs.log_group: \"arn:aws:logs:x\" is not a log group name",
            ),
        ];
        for (line, want) in rows {
            let error = with(line).expect_err(line);
            assert!(error.contains(want), "{line}: {error}");
        }
        let off = with("enabled = false").unwrap();
        assert!(
            off.warnings
                .iter()
                .any(|w| w.contains("enable tunnel logs: pages will not say why")),
            "{:?}",
            off.warnings
        );
        let on = with("log_group = \"/vpn/tunnels\"\nwait = \"5s\"").unwrap();
        let logs = &on.aws.as_ref().unwrap().tunnel_logs;
        assert_eq!(
            (logs.log_group.as_deref(), logs.wait.as_secs()),
            (Some("/vpn/tunnels"), 5)
        );
        assert!(!on.warnings.iter().any(|w| w.contains("tunnel_logs")));
    }
}
