//! `ControlPlaneUnavailable`: the EC2 API has failed for longer than
//! `control_plane_unavailable_after`, with its cause; unknown until EC2 has answered once
//! (nobody knows yet whether its API is available).

use crate::alert::engine::{AlertKey, Condition, Conditions};
use crate::alert::policy::{paths, Inputs};
use crate::types::{AlertClass, Timestamp};

/// Active while EC2 has been failing past the limit.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let mut out = Conditions::new();
    let Some(control) = inputs.control else {
        return out;
    };
    let key = AlertKey::global(AlertClass::ControlPlaneUnavailable);
    let limit = inputs.config.alerts.control_plane_unavailable_after;
    if let Some((failing_for, error)) = control.failing_for(inputs.now).filter(|(d, _)| *d > limit)
    {
        let since = Timestamp::from_millis(inputs.now.as_millis() - failing_for.as_millis() as u64);
        out.insert(
            key,
            paths::control_plane_unavailable(Some(control), since, &error),
        );
    } else if !control.has_succeeded() {
        out.insert(key, Condition::Unknown);
    }
    out
}
