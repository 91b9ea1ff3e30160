//! When to read each tunnel's AWS logs, and what was read: a call per tunnel every
//! `interval` while the tunnel is not up or for `linger` after it changed (the calls cost
//! money and API rate, and an up tunnel has nothing to explain), backing off on failures
//! and throttling; each call starts where the last event seen left off. Pure bookkeeping:
//! the shell makes the calls the core asks for ([`LogFetch`]) and reports the results.

use std::collections::VecDeque;
use std::time::Duration;

use crate::config::{Config, TunnelLogsConfig};
use crate::messages::TunnelLogResult;
use crate::tunnel_log::TunnelLogEvent;
use crate::types::{Timestamp, TunnelId};

/// The events kept per tunnel: enough for an outage's story, bounded.
pub const KEPT_EVENTS: usize = 50;
/// The longest wait between two calls for a tunnel whose calls fail.
pub const MAX_BACKOFF: Duration = Duration::from_secs(900);
/// How far back the first call of a tunnel reads: the cause may be logged a little before
/// the probes saw the outage.
pub const FIRST_LOOKBACK: Duration = Duration::from_secs(600);

/// A call with no answer after this long counts as lost (AWS calls time out well before).
pub const LOST_CALL: Duration = Duration::from_secs(60);

/// One call for the shell to make: `FilterLogEvents` on `log_group`, events of
/// `outside_ip`, from `from` on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFetch {
    /// Which tunnel.
    pub tunnel: TunnelId,
    /// The log group's name.
    pub log_group: String,
    /// The tunnel's outside IP, the filter.
    pub outside_ip: String,
    /// Read events from here on (CloudWatch's event time).
    pub from: Timestamp,
}

/// What `/status` shows of a tunnel's log reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TunnelLogsReading {
    /// The log group read; `null` when the tunnel's logs are not read (off, or no group
    /// known: enable tunnel logs in the tunnel options).
    pub log_group: Option<String>,
    /// The last call's failure, while calls fail.
    pub error: Option<String>,
    /// Events kept for the tunnel.
    pub events: usize,
}

#[derive(Clone, Debug, Default)]
struct TunnelLogState {
    events: VecDeque<TunnelLogEvent>,
    /// The group EC2 names in the tunnel's options (its ARN turned into a name).
    group_from_ec2: Option<String>,
    /// When the call under way started.
    in_flight_since: Option<Timestamp>,
    /// Not before this time.
    next_call: Option<Timestamp>,
    /// Failed calls in a row.
    failures: u32,
    /// Read until then after a change, even while up.
    active_until: Option<Timestamp>,
    /// The next call reads from here.
    read_from: Option<Timestamp>,
    /// The last call's failure, for `/status`.
    last_error: Option<String>,
    /// The verdict kind last noted.
    last_verdict: Option<String>,
}

/// Every tunnel's log reading.
#[derive(Clone, Debug)]
pub struct TunnelLogBook {
    settings: TunnelLogsConfig,
    /// Outside IPs, indexed like the config's tunnels.
    outside_ips: Vec<Vec<Option<String>>>,
    tunnels: Vec<Vec<TunnelLogState>>,
}

impl TunnelLogBook {
    /// Builds the book for `config`: nothing read yet.
    pub fn new(config: &Config) -> Self {
        let settings = config
            .aws
            .as_ref()
            .map(|a| a.tunnel_logs.clone())
            .unwrap_or(TunnelLogsConfig {
                enabled: Some(false),
                ..TunnelLogsConfig::default()
            });
        Self {
            settings,
            outside_ips: config
                .connections
                .iter()
                .map(|c| {
                    c.tunnels
                        .iter()
                        .map(|t| t.outside_ip.as_ref().map(|ip| ip.to_string()))
                        .collect()
                })
                .collect(),
            tunnels: config
                .connections
                .iter()
                .map(|c| vec![TunnelLogState::default(); c.tunnels.len()])
                .collect(),
        }
    }

    fn state(&self, id: TunnelId) -> Option<&TunnelLogState> {
        self.tunnels.get(id.connection)?.get(id.tunnel)
    }

    fn state_mut(&mut self, id: TunnelId) -> Option<&mut TunnelLogState> {
        self.tunnels.get_mut(id.connection)?.get_mut(id.tunnel)
    }

    /// Takes the log group EC2 names for a tunnel (`LogGroupArn`, when `LogEnabled`).
    pub fn set_group_from_ec2(&mut self, id: TunnelId, arn: Option<&str>) {
        if let Some(s) = self.state_mut(id) {
            s.group_from_ec2 = arn.and_then(group_name_from_arn);
        }
    }

    /// Returns the group read for a tunnel, `None` when its logs are not read.
    pub fn group(&self, id: TunnelId) -> Option<String> {
        self.settings
            .group_for(self.state(id)?.group_from_ec2.as_deref())
    }

    /// Notes a tunnel's verdict kind (`up`, `down`, `unknown`); returns true, and reads
    /// its logs for `linger` on, when it changed.
    pub fn note_verdict(&mut self, id: TunnelId, label: &str, now: Timestamp) -> bool {
        let Some(s) = self.state_mut(id) else {
            return false;
        };
        if s.last_verdict.as_deref() == Some(label) {
            return false;
        }
        // The first verdict after a start is no change worth reading for.
        let first = s.last_verdict.is_none();
        s.last_verdict = Some(label.to_string());
        if !first {
            self.note_change(id, now);
        }
        !first
    }

    /// Notes that a tunnel's verdict changed: its logs are read for `linger` on.
    pub fn note_change(&mut self, id: TunnelId, now: Timestamp) {
        let linger = self.settings.linger;
        if let Some(s) = self.state_mut(id) {
            s.active_until = Some(now.plus(linger));
            // A change is news: read now rather than at the end of an interval.
            if s.failures == 0 {
                s.next_call = None;
            }
        }
    }

    /// Returns the calls due at `now` and marks them under way. `down` says whether a
    /// tunnel is down: any other is read only within `linger` of its last change (an
    /// unknown verdict at start or while EC2 is stale has no outage to explain).
    pub fn due(&mut self, now: Timestamp, down: impl Fn(TunnelId) -> bool) -> Vec<LogFetch> {
        let mut calls = Vec::new();
        for ci in 0..self.tunnels.len() {
            for ti in 0..self.tunnels[ci].len() {
                let id = TunnelId {
                    connection: ci,
                    tunnel: ti,
                };
                let (Some(group), Some(ip)) = (self.group(id), self.outside_ips[ci][ti].clone())
                else {
                    continue;
                };
                let s = &mut self.tunnels[ci][ti];
                let wanted = down(id) || s.active_until.is_some_and(|until| now < until);
                // A call with no answer for this long was lost (the shell could not take
                // it): ask again.
                let under_way = s.in_flight_since.is_some_and(|t| now < t.plus(LOST_CALL));
                if !wanted || under_way || s.next_call.is_some_and(|t| now < t) {
                    continue;
                }
                s.in_flight_since = Some(now);
                let from = s.read_from.unwrap_or_else(|| {
                    Timestamp::from_millis(
                        now.as_millis()
                            .saturating_sub(FIRST_LOOKBACK.as_millis() as u64),
                    )
                });
                calls.push(LogFetch {
                    tunnel: id,
                    log_group: group,
                    outside_ip: ip,
                    from,
                });
            }
        }
        calls
    }

    /// Takes a call's result.
    pub fn handle(&mut self, id: TunnelId, result: TunnelLogResult, now: Timestamp) {
        let interval = self.settings.interval;
        let Some(s) = self.state_mut(id) else { return };
        s.in_flight_since = None;
        match result {
            TunnelLogResult::Events { events, latest } => {
                s.failures = 0;
                s.last_error = None;
                s.next_call = Some(now.plus(interval));
                for e in events {
                    if !s.events.contains(&e) {
                        s.events.push_back(e);
                    }
                }
                while s.events.len() > KEPT_EVENTS {
                    s.events.pop_front();
                }
                s.events.make_contiguous().sort_by_key(|e| e.at);
                // FilterLogEvents' startTime is inclusive: the next call starts just after.
                if let Some(latest) = latest {
                    s.read_from = Some(latest.plus(Duration::from_millis(1)));
                }
            }
            TunnelLogResult::Failed { kind, message } => {
                s.failures += 1;
                s.last_error = Some(format!("{kind:?}: {message}"));
                let backoff = interval
                    .saturating_mul(1 << s.failures.min(8))
                    .min(MAX_BACKOFF);
                s.next_call = Some(now.plus(backoff));
            }
        }
    }

    /// Returns a tunnel's events, oldest first.
    pub fn events(&self, id: TunnelId) -> Vec<TunnelLogEvent> {
        self.state(id)
            .map(|s| s.events.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Returns when the call under way for a tunnel started, if one is.
    pub fn in_flight_since(&self, id: TunnelId) -> Option<Timestamp> {
        self.state(id)?.in_flight_since
    }

    /// Returns the last call's failure for a tunnel, while calls fail.
    pub fn last_error(&self, id: TunnelId) -> Option<&str> {
        self.state(id)?.last_error.as_deref()
    }

    /// Returns what `/status` shows of a tunnel's log reading.
    pub fn reading(&self, id: TunnelId) -> TunnelLogsReading {
        TunnelLogsReading {
            log_group: self.group(id),
            error: self.last_error(id).map(str::to_string),
            events: self.state(id).map_or(0, |s| s.events.len()),
        }
    }

    /// Returns how long a page waits for a call under way.
    pub fn wait(&self) -> Duration {
        self.settings.wait
    }

    /// Returns the earliest time a call may become due (for the core's deadline).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.tunnels
            .iter()
            .flatten()
            .filter(|s| s.in_flight_since.is_none())
            .filter_map(|s| s.next_call)
            .min()
    }
}

/// Returns the group name in a log group ARN (`arn:aws:logs:r:a:log-group:NAME[:*]`), or
/// the text itself when it is a bare name.
pub fn group_name_from_arn(arn: &str) -> Option<String> {
    let name = match arn.split_once(":log-group:") {
        Some((_, rest)) => rest.trim_end_matches(":*"),
        None if arn.starts_with("arn:") => return None,
        None => arn,
    };
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::messages::AwsErrorKind;

    fn config(logs: &str) -> Config {
        let text = format!(
            "[aws]\nregion = \"eu-west-1\"\n{logs}\n[[vpn]]\nname = \"dc\"\nid = \"vpn-0123456789abcdef0\"\n[[vpn.tunnel]]\nname = \"t1\"\noutside_ip = \"203.0.113.10\"\ntargets = [\"10.0.0.1\"]\n[[vpn.tunnel]]\nname = \"t2\"\noutside_ip = \"203.0.113.11\"\ntargets = [\"10.0.0.2\"]\n"
        );
        Config::parse(&text, "test").unwrap_or_else(|e| panic!("{e}"))
    }

    const T1: TunnelId = TunnelId {
        connection: 0,
        tunnel: 0,
    };
    const T2: TunnelId = TunnelId {
        connection: 0,
        tunnel: 1,
    };

    #[test]
    fn the_group_comes_from_ec2_unless_the_config_names_one_or_turns_logs_off() {
        let arn = Some("arn:aws:logs:eu-west-1:123456789012:log-group:/vpn/tunnels:*");
        let rows = [
            ("", arn, Some("/vpn/tunnels")),
            ("", None, None),
            (
                "[aws.tunnel_logs]\nlog_group = \"/mine\"",
                arn,
                Some("/mine"),
            ),
            ("[aws.tunnel_logs]\nenabled = false", arn, None),
        ];
        for (logs, arn, want) in rows {
            let mut book = TunnelLogBook::new(&config(logs));
            book.set_group_from_ec2(T1, arn);
            assert_eq!(book.group(T1).as_deref(), want, "{logs:?}");
        }
    }

    #[test]
    fn logs_are_read_while_down_or_just_after_a_change_and_back_off_on_failures() {
        let mut book = TunnelLogBook::new(&config("[aws.tunnel_logs]\nlog_group = \"/vpn\""));
        let t0 = Timestamp::from_secs(100_000);
        // Both up, no change: nothing to read.
        assert!(book.due(t0, |_| false).is_empty());
        // T1 down: read from ten minutes back, once at a time.
        let calls = book.due(t0, |id| id == T1);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].outside_ip, "203.0.113.10");
        assert_eq!(calls[0].from, Timestamp::from_secs(100_000 - 600));
        assert_eq!(book.in_flight_since(T1), Some(t0));
        assert!(book
            .due(t0.plus(Duration::from_secs(59)), |id| id == T1)
            .is_empty());
        // A call never answered is lost after a minute: asked again then.
        let mut lost = book.clone();
        assert_eq!(lost.due(t0.plus(LOST_CALL), |id| id == T1).len(), 1);
        // Answered: the next call waits an interval and reads on from the latest event.
        book.handle(
            T1,
            TunnelLogResult::Events {
                events: vec![],
                latest: Some(Timestamp::from_secs(99_990)),
            },
            t0,
        );
        assert!(book
            .due(t0.plus(Duration::from_secs(29)), |id| id == T1)
            .is_empty());
        let calls = book.due(t0.plus(Duration::from_secs(30)), |id| id == T1);
        assert_eq!(calls[0].from, Timestamp::from_millis(99_990_001));
        // Throttled: 60 s, then 120 s.
        let t1 = t0.plus(Duration::from_secs(30));
        let throttled = || TunnelLogResult::Failed {
            kind: AwsErrorKind::Throttled,
            message: "ThrottlingException".into(),
        };
        book.handle(T1, throttled(), t1);
        assert_eq!(book.next_deadline(), Some(t1.plus(Duration::from_secs(60))));
        let t2 = t1.plus(Duration::from_secs(60));
        assert_eq!(book.due(t2, |id| id == T1).len(), 1);
        book.handle(T1, throttled(), t2);
        assert_eq!(
            book.next_deadline(),
            Some(t2.plus(Duration::from_secs(120)))
        );
        // T2 changed and came back up: read for the linger, then no more.
        book.note_change(T2, t2);
        assert_eq!(book.due(t2, |_| false).len(), 1);
        book.handle(
            T2,
            TunnelLogResult::Events {
                events: vec![],
                latest: None,
            },
            t2,
        );
        assert_eq!(
            book.due(t2.plus(Duration::from_secs(299)), |_| false).len(),
            1
        );
        book.handle(
            T2,
            TunnelLogResult::Events {
                events: vec![],
                latest: None,
            },
            t2.plus(Duration::from_secs(299)),
        );
        assert!(book
            .due(t2.plus(Duration::from_secs(400)), |_| false)
            .is_empty());
    }

    #[test]
    fn arns_give_their_group_name() {
        let rows = [
            (
                "arn:aws:logs:eu-west-1:1:log-group:/vpn/t:*",
                Some("/vpn/t"),
            ),
            ("arn:aws:logs:eu-west-1:1:log-group:vpn", Some("vpn")),
            ("plain-name", Some("plain-name")),
            ("arn:aws:s3:::bucket", None),
            ("", None),
        ];
        for (arn, want) in rows {
            assert_eq!(group_name_from_arn(arn).as_deref(), want, "{arn}");
        }
    }
}
