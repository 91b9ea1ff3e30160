//! The `[maintenance]` table.

use super::*;
use crate::config::maintenance::{ApplyMode, MaintenanceConfig, Window, Windows, Zone};

impl Validator<'_> {
    pub(super) fn maintenance(
        &mut self,
        raw: Option<&Spanned<RawMaintenance>>,
        aws: bool,
    ) -> MaintenanceConfig {
        let defaults = MaintenanceConfig::default();
        let Some(raw) = raw else { return defaults };
        let m = raw.get_ref();
        let apply = match m.apply.as_ref() {
            None => ApplyMode::Never,
            Some(v) => match v.get_ref().as_str() {
                "never" => ApplyMode::Never,
                "dry-run" => ApplyMode::DryRun,
                "when-safe" => ApplyMode::WhenSafe,
                other => {
                    self.problem(
                        Some(v.span()),
                        "maintenance.apply",
                        format!("{other:?} is not a mode: write \"never\", \"dry-run\" or \"when-safe\""),
                    );
                    ApplyMode::Never
                }
            },
        };
        let zone = match m.timezone.as_ref() {
            None => defaults.windows.zone.clone(),
            Some(v) => Zone::get(v.get_ref()).unwrap_or_else(|e| {
                self.problem(Some(v.span()), "maintenance.timezone", e);
                defaults.windows.zone.clone()
            }),
        };
        let mut windows = Vec::new();
        if let Some(v) = m.window.as_ref() {
            let texts: Vec<&String> = match v.get_ref() {
                RawWindows::One(t) => vec![t],
                RawWindows::Many(ts) => ts.iter().collect(),
            };
            for text in texts {
                match Window::parse(text) {
                    Ok(w) => windows.push(w),
                    Err(e) => self.problem(Some(v.span()), "maintenance.window", e),
                }
            }
        }
        if apply != ApplyMode::Never {
            let key_span = m.apply.as_ref().map(|a| a.span());
            if windows.is_empty() && m.window.is_none() {
                self.problem(
                    key_span.clone(),
                    "maintenance.window",
                    format!("apply = {:?} needs at least one window: add window = [\"Sun 02:00-05:00\"]", apply.label()),
                );
            }
            if !aws {
                self.problem(
                    key_span,
                    "maintenance.apply",
                    format!("apply = {:?} needs an [aws] table: the daemon learns of pending maintenance from EC2", apply.label()),
                );
            }
        }
        let max_concurrent = match m.max_concurrent.as_ref() {
            None => defaults.max_concurrent,
            Some(v) => {
                let n = *v.get_ref();
                if !(1..=3).contains(&n) {
                    self.problem(
                        Some(v.span()),
                        "maintenance.max_concurrent",
                        format!("{n} is out of range: it must be between 1 and 3 (a VGW has four tunnels, and one of each connection must stay up)"),
                    );
                }
                n.clamp(1, 3)
            }
        };
        MaintenanceConfig {
            apply,
            windows: Windows { windows, zone },
            sibling_healthy_for: self.duration(
                "maintenance.sibling_healthy_for",
                m.sibling_healthy_for.as_ref(),
                MaintenanceConfig::DEFAULT_SIBLING_HEALTHY_FOR,
                MaintenanceConfig::MIN_WAIT,
                Duration::from_secs(7 * 24 * 3600),
            ),
            max_concurrent,
            recovery_timeout: self.duration(
                "maintenance.recovery_timeout",
                m.recovery_timeout.as_ref(),
                MaintenanceConfig::DEFAULT_RECOVERY_TIMEOUT,
                MaintenanceConfig::MIN_WAIT,
                Duration::from_secs(24 * 3600),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::maintenance::ApplyMode;
    use crate::config::Config;
    use std::time::Duration;

    const BASE: &str = "[aws]\nregion = \"eu-west-3\"\n[[vpn]]\nname = \"dc\"\nid = \"vpn-0123456789abcdef0\"\n[[vpn.tunnel]]\nname = \"a\"\noutside_ip = \"203.0.113.1\"\ntargets = [\"10.0.0.1\"]\n";

    fn parse(maintenance: &str) -> Result<Config, String> {
        Config::parse(&format!("{BASE}{maintenance}"), "test").map_err(|e| e.to_string())
    }

    #[test]
    fn maintenance_defaults_to_never_and_reads_every_key() {
        let c = parse("").unwrap();
        assert_eq!(c.maintenance.apply, ApplyMode::Never);
        let c = parse("[maintenance]\napply = \"when-safe\"\nwindow = [\"Sun 02:00-05:00\", \"Wed 03:00-04:00\"]\ntimezone = \"Europe/Paris\"\nsibling_healthy_for = \"45m\"\nmax_concurrent = 2\nrecovery_timeout = \"15m\"\n").unwrap();
        let m = &c.maintenance;
        assert_eq!(m.apply, ApplyMode::WhenSafe);
        assert_eq!(m.windows.windows.len(), 2);
        assert_eq!(m.windows.zone.name, "Europe/Paris");
        assert_eq!(m.sibling_healthy_for, Duration::from_secs(2700));
        assert_eq!(m.max_concurrent, 2);
        assert_eq!(m.recovery_timeout, Duration::from_secs(900));
        // One window as a bare string.
        let c =
            parse("[maintenance]\napply = \"dry-run\"\nwindow = \"daily 01:00-02:00\"\n").unwrap();
        assert_eq!(c.maintenance.windows.windows.len(), 1);
    }

    #[test]
    fn bad_maintenance_values_are_named_with_their_line() {
        for (text, says) in [
            ("[maintenance]\napply = \"always\"\n", "line 11, column 9: maintenance.apply: \"always\" is not a mode"),
            ("[maintenance]\napply = \"when-safe\"\n", "maintenance.window: apply = \"when-safe\" needs at least one window"),
            ("[maintenance]\nwindow = [\"Sun 02:00\"]\n", "line 11, column 10: maintenance.window: \"Sun 02:00\": \"02:00\" is not a time range"),
            ("[maintenance]\ntimezone = \"Mars/Olympus\"\n", "line 11, column 12: maintenance.timezone: \"Mars/Olympus\" is not a time zone"),
            ("[maintenance]\nmax_concurrent = 0\n", "maintenance.max_concurrent: 0 is out of range"),
            ("[maintenance]\nrecovery_timeout = \"5s\"\n", "maintenance.recovery_timeout: 5s is out of range"),
            ("[maintenance]\nsibling_healthy_for = \"1s\"\n", "maintenance.sibling_healthy_for: 1s is out of range"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        let e = Config::parse("[[vpn]]\nname = \"dc\"\n[[vpn.tunnel]]\nname = \"a\"\ntargets = [\"10.0.0.1\"]\n[maintenance]\napply = \"dry-run\"\nwindow = \"Sun 02:00-03:00\"\n", "t").unwrap_err().to_string();
        assert!(
            e.contains("maintenance.apply: apply = \"dry-run\" needs an [aws] table"),
            "{e}"
        );
    }
}
