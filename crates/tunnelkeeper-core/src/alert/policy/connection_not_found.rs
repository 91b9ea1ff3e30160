//! `ConnectionNotFound`: EC2 does not know a configured connection id, or is deleting it:
//! the config no longer matches AWS.

use crate::alert::engine::{AlertKey, Conditions};
use crate::alert::policy::outage::active;
use crate::alert::policy::Inputs;
use crate::types::AlertClass;

/// Active for each configured connection EC2 says is missing, deleting or deleted.
pub fn rule(inputs: &Inputs<'_>) -> Conditions {
    let mut out = Conditions::new();
    for (ci, c) in inputs.config.connections.iter().enumerate() {
        let vpn = c.name.as_str();
        let vpn_id = c.id.as_ref().map(|id| id.to_string());
        let control = inputs.control;
        if let Some((state, id)) = control.and_then(|cp| cp.not_found(ci)).zip(c.id.as_ref()) {
            out.insert(
            AlertKey::connection(AlertClass::ConnectionNotFound, vpn),
            active(
                format!("{id} not found in EC2"),
                match state {
                    "missing" => format!(
                        "EC2 does not know connection {vpn} ({id}): deleted or replaced (a new customer gateway means a new connection), or in another account or Region; the config no longer matches AWS, and its tunnels' control plane is unknown"
                    ),
                    other => format!(
                        "connection {vpn} ({id}) is {other} in EC2; the config no longer matches AWS, and its tunnels' control plane is unknown"
                    ),
                },
                vpn_id.clone(),
            ),
        );
        }
    }
    out
}
