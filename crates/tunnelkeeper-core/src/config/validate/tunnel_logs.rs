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
