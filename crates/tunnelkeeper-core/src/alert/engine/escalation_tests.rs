//! The City's rule on a timeline: a warning that lasts `escalate_after` is re-sent once as
//! critical, its RESOLVED follows it to the critical sinks, and a restart keeps its clock.

use std::time::Duration;

use super::*;

const MIN: u64 = 60;

fn t(s: u64) -> Timestamp {
    Timestamp::from_secs(50_000 + s)
}

/// One step of a timeline: at `at` seconds the condition holds or not; `restart` saves
/// the engine's alerts and starts a new engine from them first (the daemon restarted).
struct Step {
    at: u64,
    holds: bool,
    restart: bool,
}

const fn on(at: u64) -> Step {
    Step {
        at,
        holds: true,
        restart: false,
    }
}
const fn off(at: u64) -> Step {
    Step {
        at,
        holds: false,
        restart: false,
    }
}
const fn restart_on(at: u64) -> Step {
    Step {
        at,
        holds: true,
        restart: true,
    }
}

/// What went out: (seconds, status, severity, repeat).
type Sent = (u64, NotificationStatus, Severity, bool);

struct Case {
    name: &'static str,
    class: AlertClass,
    /// The situation's severity (ConnectionDown is a warning while another connection
    /// carries traffic).
    situation: Option<Severity>,
    escalate_after: Duration,
    steps: &'static [Step],
    sent: &'static [Sent],
}

fn key(class: AlertClass) -> AlertKey {
    match class {
        AlertClass::ConnectionDown => AlertKey::connection(class, "dc"),
        _ => AlertKey::tunnel(class, "dc", "dc-a"),
    }
}

/// Runs a case: evaluates at each step and at every wake-up the engine asks for between
/// steps, as the pager does, and returns what was sent.
fn run(case: &Case) -> Vec<Sent> {
    let rules = AlertRules {
        escalate_after: case.escalate_after,
        ..AlertRules::default()
    };
    let mut e = AlertEngine::new(rules.clone(), Vec::new());
    let key = key(case.class);
    let details = Details {
        summary: "down".into(),
        reason: "no reply".into(),
        vpn_id: None,
        severity: case.situation,
        since: None,
        cause: None,
    };
    let conditions = |holds: bool| -> Conditions {
        if holds {
            [(key.clone(), Condition::Active(details.clone()))].into()
        } else {
            Conditions::new()
        }
    };
    let mut sent = Vec::new();
    let mut holds = false;
    let mut now = t(0);
    let drain = |e: &mut AlertEngine, at: Timestamp, sent: &mut Vec<Sent>| {
        while let Some(n) = e.poll_notification() {
            sent.push((at.since(t(0)).as_secs(), n.status, n.severity, n.repeat));
        }
    };
    for step in case.steps {
        let at = t(step.at);
        // The wake-ups the engine asked for before this step.
        while let Some(wake) = e.poll_timeout(now).filter(|w| *w < at) {
            now = wake;
            e.evaluate(&conditions(holds), now);
            drain(&mut e, now, &mut sent);
        }
        if step.restart {
            let saved = serde_json::to_string(&e.alerts().cloned().collect::<Vec<_>>())
                .expect("alerts serialize");
            e = AlertEngine::new(rules.clone(), Vec::new());
            e.restore(serde_json::from_str(&saved).expect("alerts deserialize"));
        }
        now = at;
        holds = step.holds;
        e.evaluate(&conditions(holds), now);
        drain(&mut e, now, &mut sent);
    }
    sent
}

use NotificationStatus::{Firing, Resolved};
use Severity::{Critical, Warning};

const CASES: &[Case] = &[
    Case {
        name: "a warning lasting 15 minutes is re-sent as critical, and resolves as critical",
        class: AlertClass::TunnelDown,
        situation: None,
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), on(10 * MIN), on(20 * MIN), off(30 * MIN)],
        sent: &[
            (0, Firing, Warning, false),
            (15 * MIN, Firing, Critical, true),
            (30 * MIN, Resolved, Critical, false),
        ],
    },
    Case {
        name: "a warning that heals before 15 minutes is never re-sent",
        class: AlertClass::TunnelDown,
        situation: None,
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), off(14 * MIN), on(16 * MIN), off(20 * MIN)],
        sent: &[
            (0, Firing, Warning, false),
            (14 * MIN, Resolved, Warning, false),
            // A new outage starts its own clock.
            (16 * MIN, Firing, Warning, false),
            (20 * MIN, Resolved, Warning, false),
        ],
    },
    Case {
        name: "ConnectionDown while another connection carries traffic escalates",
        class: AlertClass::ConnectionDown,
        situation: Some(Warning),
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), on(40 * MIN)],
        sent: &[
            (0, Firing, Warning, false),
            (15 * MIN, Firing, Critical, true),
        ],
    },
    Case {
        name: "an alert that is critical already is not re-sent at 15 minutes",
        class: AlertClass::ConnectionDown,
        situation: Some(Critical),
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), on(40 * MIN), off(41 * MIN)],
        sent: &[
            (0, Firing, Critical, false),
            (41 * MIN, Resolved, Critical, false),
        ],
    },
    Case {
        name: "a restart mid-warning keeps the original start",
        class: AlertClass::TunnelDown,
        situation: None,
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), restart_on(10 * MIN), on(14 * MIN), on(20 * MIN)],
        sent: &[
            (0, Firing, Warning, false),
            (15 * MIN, Firing, Critical, true),
        ],
    },
    Case {
        name: "a restart after the escalation does not escalate again",
        class: AlertClass::TunnelDown,
        situation: None,
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), restart_on(20 * MIN), on(60 * MIN), off(61 * MIN)],
        sent: &[
            (0, Firing, Warning, false),
            (15 * MIN, Firing, Critical, true),
            (61 * MIN, Resolved, Critical, false),
        ],
    },
    Case {
        name: "a class that does not escalate stays a warning",
        class: AlertClass::TunnelLossy,
        situation: None,
        escalate_after: Duration::from_secs(15 * MIN),
        steps: &[on(0), on(60 * MIN), off(61 * MIN)],
        sent: &[
            (0, Firing, Warning, false),
            (61 * MIN, Resolved, Warning, false),
        ],
    },
    Case {
        name: "escalate_after = 0s never escalates",
        class: AlertClass::TunnelDown,
        situation: None,
        escalate_after: Duration::ZERO,
        steps: &[on(0), on(60 * MIN)],
        sent: &[(0, Firing, Warning, false)],
    },
];

#[test]
fn lasting_warnings_are_re_sent_as_critical_on_a_timeline() {
    for case in CASES {
        assert_eq!(run(case), case.sent, "{}", case.name);
    }
}

#[test]
fn an_escalated_alert_shows_as_critical() {
    let mut e = AlertEngine::new(AlertRules::default(), Vec::new());
    let key = key(AlertClass::TunnelDown);
    let details = Details {
        summary: "down".into(),
        reason: "no reply".into(),
        vpn_id: None,
        severity: None,
        since: None,
        cause: None,
    };
    let conditions: Conditions = [(key, Condition::Active(details))].into();
    e.evaluate(&conditions, t(0));
    assert_eq!(e.views(t(0))[0].severity, Warning);
    assert_eq!(
        e.poll_timeout(t(1)),
        Some(t(15 * MIN)),
        "wakes up to escalate"
    );
    e.evaluate(&conditions, t(15 * MIN));
    assert_eq!(e.views(t(15 * MIN))[0].severity, Critical);
    assert!(e.alerts().all(Alert::escalated));
}
