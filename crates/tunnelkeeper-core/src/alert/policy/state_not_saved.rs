//! `StateNotSaved`: the shell's state writer has failed to write the state file for
//! [`AFTER`] (it retries with backoff meanwhile). Until a save succeeds, a restart loses
//! every page sent since the first failure, and with it their RESOLVED.

use std::time::Duration;

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::alert::policy::Inputs;
pub use crate::messages::SaveFailure;
use crate::types::AlertClass;

/// How long saves must have failed before the alert: a full disk that a log rotation
/// frees again within seconds is not worth a page.
pub const AFTER: Duration = Duration::from_secs(60);

/// Active once saves have failed for [`AFTER`].
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let Some(failure) = inputs.state_save else {
        return Conditions::new();
    };
    if inputs.now.since(failure.since) < AFTER {
        return Conditions::new();
    }
    let details = Details {
        summary: "alert state not saved".into(),
        reason: format!(
            "the state file cannot be written since {} ({}); saves are retried, but a restart \
             now would forget the pages sent since and never send their RESOLVED",
            failure.since, failure.error
        ),
        vpn_id: None,
        severity: None,
        since: Some(failure.since),
        cause: None,
    };
    Conditions::from([(
        AlertKey::global(AlertClass::StateNotSaved),
        Condition::Active(details),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Timestamp;

    #[test]
    fn fires_after_a_minute_of_failed_saves_only() {
        let config = crate::config::Config::parse("[[target]]\naddress = \"10.0.0.1\"\n", "test")
            .expect("a minimal config");
        let config = std::sync::Arc::new(config);
        let model = crate::health::HealthModel::new(&config);
        let flaps = crate::alert::policy::FlapTracker::new(&config, 5, Duration::from_secs(60));
        let history = crate::history::History::new(&config);
        let sinks = crate::alert::sink_health::SinksHealth::new(&config);
        let path_mtu = crate::health::path_mtu::PathMtus::new(&config);
        let maintenance = crate::maintenance::MaintenanceTracker::new(&config);
        let failure = SaveFailure {
            since: Timestamp::from_secs(1_000),
            error: "No space left on device (os error 28)".into(),
        };
        let at = |secs: u64, state_save| {
            rule(&Inputs {
                config: &config,
                model: &model,
                control: None,
                flaps: &flaps,
                path_mtu: &path_mtu,
                history: &history,
                sinks: &sinks,
                maintenance: &maintenance,
                state_save,
                now: Timestamp::from_secs(secs),
            })
        };
        assert!(at(2_000, None).is_empty(), "saves succeed");
        assert!(at(1_059, Some(&failure)).is_empty(), "not yet a minute");
        let fired = at(1_060, Some(&failure));
        let Some(Condition::Active(details)) =
            fired.get(&AlertKey::global(AlertClass::StateNotSaved))
        else {
            panic!("{fired:?}")
        };
        assert!(
            details.reason.contains("No space left on device"),
            "{details:?}"
        );
        assert_eq!(details.since, Some(failure.since));
    }
}
