//! Table tests of `TunnelLossy` and `TunnelSlow`: a tunnel fed probes at made-up times
//! through the health model and the history, conditions read as the router reads them.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::alert::engine::{AlertEngine, AlertState};
use crate::messages::ProbeOutcome;
use crate::types::{TargetId, TunnelId};

const CONFIG: &str = r#"
[alerts]
for = "0s"
group_wait = "0s"
[alerts.lossy]
window = "60s"
threshold = "5%"
[alerts.slow]
window = "60s"
factor = 3.0
[[vpn]]
name = "dc"
  [[vpn.tunnel]]
  name = "dc-a"
  targets = ["172.16.1.10"]
  [[vpn.tunnel]]
  name = "dc-b"
  targets = ["172.16.2.10"]
"#;

const T0_MS: u64 = 1_700_000_040_000; // the start of a minute
const A: TunnelId = TunnelId {
    connection: 0,
    tunnel: 0,
};

/// One tunnel probed twice a second.
struct Drive {
    config: Arc<Config>,
    model: HealthModel,
    history: History,
    engine: AlertEngine,
    target: TargetId,
    now_ms: u64,
    probes: u64,
}

impl Drive {
    fn new() -> Self {
        let config = Arc::new(Config::parse(CONFIG, "t").unwrap());
        let target = config
            .targets
            .iter()
            .find(|t| t.address.to_string() == "172.16.1.10")
            .unwrap()
            .id;
        Self {
            model: HealthModel::new(&config),
            history: History::new(&config),
            engine: AlertEngine::new(config.alerts.rules.clone(), Vec::new()),
            config,
            target,
            now_ms: T0_MS,
            probes: 0,
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now_ms)
    }

    /// Probes for `secs` seconds, losing `loss` of them spread evenly (never two in a row
    /// below 50 %, so the tunnel stays up), replies taking `rtt_ms`; evaluates the alerts
    /// every second.
    fn run(&mut self, secs: u64, loss: f64, rtt_ms: u64) {
        for _ in 0..secs * 2 {
            self.now_ms += 500;
            self.probes += 1;
            let lost =
                (self.probes as f64 * loss).floor() > ((self.probes - 1) as f64 * loss).floor();
            let outcome = if lost {
                ProbeOutcome::Timeout {
                    after: Duration::from_millis(400),
                }
            } else {
                ProbeOutcome::Reply {
                    rtt: Duration::from_millis(rtt_ms),
                }
            };
            let now = self.now();
            self.model.handle_probe(self.target, &outcome, now);
            self.history.record(self.target, &outcome, now);
            let label = self.model.tunnel(A).verdict.label();
            self.history.note_tunnel(A, label, now);
            if self.probes.is_multiple_of(2) {
                let conditions = self.conditions();
                self.engine.evaluate(&conditions, now);
            }
        }
    }

    fn conditions(&self) -> Conditions {
        brownouts(&self.config, &self.model, &self.history, self.now())
    }

    fn condition(&self, class: AlertClass) -> Option<Condition> {
        self.conditions()
            .get(&AlertKey::tunnel(class, "dc", "dc-a"))
            .cloned()
    }

    fn firing(&self, class: AlertClass) -> bool {
        let key = AlertKey::tunnel(class, "dc", "dc-a");
        self.engine
            .alerts()
            .any(|a| a.key == key && matches!(a.state, AlertState::Firing { .. }))
    }
}

/// What a condition is, in a word.
fn kind(c: Option<Condition>) -> &'static str {
    match c {
        Some(Condition::Active(_)) => "active",
        Some(Condition::Unknown) => "unknown",
        None => "absent",
    }
}

#[test]
fn seven_percent_over_the_window_fires_three_percent_does_not() {
    for (loss, want, fires) in [
        (0.07, "active", true),
        (0.03, "unknown", false), // in the band: nothing starts
        (0.01, "absent", false),
        (0.0, "absent", false),
    ] {
        let mut d = Drive::new();
        d.run(90, loss, 20);
        assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), want, "{loss}");
        assert_eq!(d.firing(AlertClass::TunnelLossy), fires, "{loss}");
        let reading = d.history.brownout(A, d.now());
        let ratio = reading.window_loss_ratio.unwrap();
        assert!((ratio - loss).abs() < 0.01, "{loss}: {reading:?}");
        assert_eq!(reading.window_probes, 120);
    }
}

#[test]
fn the_page_names_the_loss_and_what_to_check() {
    let mut d = Drive::new();
    d.run(90, 0.07, 20);
    let Some(Condition::Active(details)) = d.condition(AlertClass::TunnelLossy) else {
        panic!("not active");
    };
    assert_eq!(details.summary, "6.7% loss over 1m");
    assert!(
        details.reason.contains("8 of 120 probes"),
        "{}",
        details.reason
    );
    assert!(
        details.reason.contains("sibling tunnel"),
        "{}",
        details.reason
    );
}

#[test]
fn lossy_fires_then_holds_in_the_band_and_resolves_under_half_the_threshold() {
    let mut d = Drive::new();
    d.run(90, 0.07, 20);
    assert!(d.firing(AlertClass::TunnelLossy));
    d.run(90, 0.03, 20);
    assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), "unknown");
    assert!(
        d.firing(AlertClass::TunnelLossy),
        "3 % is above half the threshold: holds"
    );
    d.run(90, 0.02, 20);
    assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), "absent");
    assert!(!d.firing(AlertClass::TunnelLossy), "under 2.5 %: resolved");
}

#[test]
fn no_verdict_until_the_window_spans_its_length() {
    let mut d = Drive::new();
    d.run(50, 0.5, 20);
    assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), "unknown");
    assert_eq!(d.history.brownout(A, d.now()).window_loss_ratio, None);
    d.run(11, 0.5, 20); // the first probe came half a second in
    assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), "active");
}

#[test]
fn an_outage_is_tunnel_down_not_lossy_during_it_nor_after_it() {
    let mut d = Drive::new();
    d.run(90, 0.0, 20);
    d.run(20, 1.0, 20); // every probe lost: the tunnel goes down
    assert!(d.model.tunnel(A).verdict.is_down());
    assert_eq!(
        kind(d.condition(AlertClass::TunnelLossy)),
        "unknown",
        "held while down"
    );
    assert!(!d.firing(AlertClass::TunnelLossy));
    d.run(30, 0.0, 20);
    assert!(!d.model.tunnel(A).verdict.is_down());
    assert_eq!(
        kind(d.condition(AlertClass::TunnelLossy)),
        "unknown",
        "the window refills after the outage"
    );
    d.run(60, 0.0, 20);
    assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), "absent");
    assert!(
        !d.firing(AlertClass::TunnelLossy),
        "the outage's losses never paged"
    );
}

#[test]
fn slow_fires_against_the_baseline_holds_in_the_band_and_resolves() {
    let mut d = Drive::new();
    d.run(4 * 60, 0.0, 20);
    assert_eq!(
        kind(d.condition(AlertClass::TunnelSlow)),
        "unknown",
        "a baseline of four minutes is not trusted yet"
    );
    d.run(6 * 60, 0.0, 20);
    assert_eq!(kind(d.condition(AlertClass::TunnelSlow)), "absent");
    assert_eq!(d.history.window(A).unwrap().baseline_us(), Some(20_000));
    for (rtt_ms, want, firing) in [
        (70, "active", true),   // 3.5x
        (50, "unknown", true),  // 2.5x: between 2x and 3x, holds
        (30, "absent", false),  // 1.5x: resolved
        (50, "unknown", false), // the band starts nothing
    ] {
        d.run(90, 0.0, rtt_ms);
        assert_eq!(
            kind(d.condition(AlertClass::TunnelSlow)),
            want,
            "{rtt_ms} ms"
        );
        assert_eq!(d.firing(AlertClass::TunnelSlow), firing, "{rtt_ms} ms");
    }
    let reading = d.history.brownout(A, d.now());
    assert_eq!(reading.window_rtt_median_seconds, Some(0.05));
    assert_eq!(kind(d.condition(AlertClass::TunnelLossy)), "absent");
}

#[test]
fn the_baseline_does_not_learn_the_slowness_it_detects() {
    let mut d = Drive::new();
    d.run(10 * 60, 0.0, 20);
    d.run(45 * 60, 0.0, 100);
    let baseline = d.history.window(A).unwrap().baseline_us().unwrap();
    assert_eq!(baseline, 20_000, "frozen while slow");
    assert!(
        d.firing(AlertClass::TunnelSlow),
        "still slow after 45 minutes"
    );
    // A drift the tunnel takes in its stride (1.5x, under the resolve level) is learnt.
    let mut d = Drive::new();
    d.run(10 * 60, 0.0, 20);
    d.run(30 * 60, 0.0, 30);
    let baseline = d.history.window(A).unwrap().baseline_us().unwrap();
    assert!(baseline > 27_000, "{baseline}");
    assert!(!d.firing(AlertClass::TunnelSlow));
}

#[test]
fn a_tunnel_without_pinned_targets_has_no_brownout_conditions() {
    let d = Drive::new();
    let text = CONFIG.replace("targets = [\"172.16.2.10\"]", "");
    let config = Config::parse(&text, "t").unwrap();
    let c = brownouts(
        &config,
        &d.model,
        &History::new(&Arc::new(config.clone())),
        d.now(),
    );
    assert!(
        c.keys().all(|k| k.tunnel.as_deref() != Some("dc-b")),
        "{c:?}"
    );
}
