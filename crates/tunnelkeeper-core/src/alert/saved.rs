//! What the state file holds: the alert engine's alerts and the outbox, versioned. Writing
//! it to disk is the shell's business (`alert::state_file` in the daemon).

use serde::{Deserialize, Serialize};

use crate::alert::engine::Alert;
use crate::alert::outbox::Outbox;
use crate::types::Timestamp;

/// The file's format version.
pub const VERSION: u32 = 1;

/// What is saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedState {
    pub version: u32,
    /// When it was written.
    pub saved_at: Option<Timestamp>,
    /// Pending and firing alerts.
    pub alerts: Vec<Alert>,
    /// Undelivered notifications.
    pub outbox: Outbox,
}
