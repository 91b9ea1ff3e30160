//! `SharedTargetsDown`: the shared datacenter hosts do not answer, past the failover
//! grace, while some tunnel's pinned targets do (the reasoning is in `paths`).

use crate::alert::engine::Conditions;
use crate::alert::policy::{paths, Inputs};

/// Active past the grace; unknown (held) within it.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    paths::shared_targets_down(inputs.config, inputs.model, inputs.now)
        .into_iter()
        .collect()
}
