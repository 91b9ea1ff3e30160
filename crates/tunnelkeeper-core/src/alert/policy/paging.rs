//! `NotificationsFailing`: a sink's deliveries keep failing (`sink_health`).

use crate::alert::engine::{AlertKey, Conditions};
use crate::alert::policy::Inputs;
use crate::types::AlertClass;

/// Active while any sink is failing.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    inputs
        .sinks
        .condition()
        .map(|c| (AlertKey::global(AlertClass::NotificationsFailing), c))
        .into_iter()
        .collect()
}
