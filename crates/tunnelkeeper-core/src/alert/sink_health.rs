//! Whether each sink takes its pages, from the outcome of every delivery: a pager that
//! cannot page must say so somewhere that still works.
//!
//! A sink is failing once [`FAILING_AFTER`] deliveries in a row failed (the outbox retries
//! at 1, 2 and 4 s, so within about 7 s of the first failure); one delivery that succeeds
//! clears it. While any sink fails, `NotificationsFailing` is active, and it is routed to
//! every sink but the failing ones.

use serde::Serialize;

use crate::alert::engine::{Condition, Details};
use crate::config::Config;
use crate::types::Timestamp;

/// Deliveries in a row that must fail before a sink counts as failing.
pub const FAILING_AFTER: u32 = 3;

/// What is known of one sink's deliveries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkHealth {
    /// The sink's name (`sns:noc-page`, `log`, ...).
    pub name: String,
    /// True unless the sink is failing.
    pub ok: bool,
    /// When a delivery last succeeded.
    pub last_success: Option<Timestamp>,
    /// When a delivery last failed.
    pub last_failure: Option<Timestamp>,
    /// What the last failure said.
    pub error: Option<String>,
    /// Failed deliveries since the last success.
    pub consecutive_failures: u32,
    /// Since when the sink has been failing (the first of the failures in a row).
    pub failing_since: Option<Timestamp>,
}

/// Every sink's health, by sink index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinksHealth {
    sinks: Vec<SinkHealth>,
    /// When the failures in a row began, per sink.
    streak_since: Vec<Option<Timestamp>>,
}

impl SinksHealth {
    /// Starts with every sink of `config` healthy.
    pub fn new(config: &Config) -> Self {
        let sinks: Vec<SinkHealth> = config
            .alerts
            .sinks
            .iter()
            .map(|s| SinkHealth {
                name: s.name.clone(),
                ok: true,
                ..SinkHealth::default()
            })
            .collect();
        Self {
            streak_since: vec![None; sinks.len()],
            sinks,
        }
    }

    /// Takes over what `old` knew of the sinks that keep their name.
    pub fn adopt(&mut self, old: &SinksHealth) {
        for (i, sink) in self.sinks.iter_mut().enumerate() {
            if let Some(o) = old.sinks.iter().position(|o| o.name == sink.name) {
                *sink = old.sinks[o].clone();
                self.streak_since[i] = old.streak_since[o];
            }
        }
    }

    /// Notes a delivery to sink `index` that succeeded.
    pub fn delivered(&mut self, index: usize, now: Timestamp) {
        let Some(sink) = self.sinks.get_mut(index) else {
            return;
        };
        sink.last_success = Some(now);
        sink.consecutive_failures = 0;
        sink.failing_since = None;
        sink.ok = true;
        self.streak_since[index] = None;
    }

    /// Notes a delivery to sink `index` that failed with `error`.
    pub fn failed(&mut self, index: usize, error: String, now: Timestamp) {
        let Some(sink) = self.sinks.get_mut(index) else {
            return;
        };
        let since = *self.streak_since[index].get_or_insert(now);
        sink.last_failure = Some(now);
        sink.error = Some(error);
        sink.consecutive_failures += 1;
        if sink.consecutive_failures >= FAILING_AFTER {
            sink.ok = false;
            sink.failing_since = Some(since);
        }
    }

    /// Returns whether sink `index` is failing.
    pub fn is_failing(&self, index: usize) -> bool {
        self.sinks.get(index).is_some_and(|s| !s.ok)
    }

    /// Returns every sink's health, in config order.
    pub fn sinks(&self) -> &[SinkHealth] {
        &self.sinks
    }

    /// Returns the `NotificationsFailing` condition: active while any sink fails.
    pub fn condition(&self) -> Option<Condition> {
        let failing: Vec<&SinkHealth> = self.sinks.iter().filter(|s| !s.ok).collect();
        let first = failing.first()?;
        let names: Vec<&str> = failing.iter().map(|s| s.name.as_str()).collect();
        let reasons: Vec<String> = failing
            .iter()
            .map(|s| {
                format!(
                    "{} failing since {} ({} deliveries in a row failed; last error: {})",
                    s.name,
                    s.failing_since.map_or("-".to_string(), |t| t.to_string()),
                    s.consecutive_failures,
                    s.error.as_deref().unwrap_or("none")
                )
            })
            .collect();
        Some(Condition::Active(Details {
            summary: format!("pages to {} are not delivered", names.join(", ")),
            reason: reasons.join("; "),
            vpn_id: None,
            severity: None,
            since: first.failing_since,
            cause: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
        [aws]
        region = "us-east-1"
        [alerts]
          [[alerts.sink]]
          kind = "log"
          [[alerts.sink]]
          kind = "sns"
          topic_arn = "arn:aws:sns:us-east-1:123456789012:noc-page"
        [[target]]
        address = "127.0.0.1"
    "#;

    fn t(s: u64) -> Timestamp {
        Timestamp::from_secs(1_000 + s)
    }

    #[test]
    fn a_sink_fails_after_three_failures_in_a_row_and_one_success_clears_it() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let mut h = SinksHealth::new(&config);
        assert_eq!(h.condition(), None);
        // (failures so far, failing?)
        for (n, failing) in [(1, false), (2, false), (3, true), (4, true)] {
            h.failed(1, "throttled: Rate exceeded".into(), t(n));
            assert_eq!(h.is_failing(1), failing, "after {n}");
        }
        assert!(!h.is_failing(0));
        let sns = &h.sinks()[1];
        assert_eq!(
            sns.failing_since,
            Some(t(1)),
            "since the first of the streak"
        );
        assert_eq!(sns.consecutive_failures, 4);
        let Some(Condition::Active(d)) = h.condition() else {
            panic!("NotificationsFailing should be active");
        };
        assert!(d.summary.contains("sns:noc-page"), "{}", d.summary);
        assert!(d.reason.contains("Rate exceeded"), "{}", d.reason);
        assert_eq!(d.since, Some(t(1)));
        h.delivered(1, t(10));
        assert!(!h.is_failing(1));
        assert_eq!(h.condition(), None);
        // A new streak counts from its own first failure.
        for n in 20..23 {
            h.failed(1, "timeout".into(), t(n));
        }
        assert_eq!(h.sinks()[1].failing_since, Some(t(20)));
    }

    #[test]
    fn a_reload_keeps_the_health_of_sinks_that_keep_their_name() {
        let config = Config::parse(CONFIG, "t").unwrap();
        let mut old = SinksHealth::new(&config);
        for n in 0..3 {
            old.failed(1, "timeout".into(), t(n));
        }
        let only_sns = CONFIG.replace("[[alerts.sink]]\n          kind = \"log\"\n", "");
        let config = Config::parse(&only_sns, "t").unwrap();
        let mut new = SinksHealth::new(&config);
        new.adopt(&old);
        assert_eq!(new.sinks().len(), 1);
        assert!(new.is_failing(0));
    }
}
