//! `ReplaceVpnTunnel` with `ApplyPendingMaintenance=true`, called when the core asks
//! ([`Event::ReplaceTunnel`](tunnelkeeper_core::machine::Event::ReplaceTunnel)); the answer
//! goes back to the core as an observation. One task per call: the core never asks for
//! more than `[maintenance] max_concurrent` at once.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::messages::{AwsErrorKind, Observation};
use crate::types::TunnelId;

/// Calls `ReplaceVpnTunnel` for the monitor.
#[derive(Clone)]
pub struct TunnelReplacer {
    /// The SDK client.
    pub client: aws_sdk_ec2::Client,
    /// The running config.
    pub config: Arc<Config>,
    /// Where answers go.
    pub observations: mpsc::Sender<Observation>,
    /// Stops a call under way.
    pub cancel: CancellationToken,
    /// The generation's tasks.
    pub tasks: TaskTracker,
}

impl TunnelReplacer {
    /// Starts the call for `tunnel`.
    pub fn replace(&self, tunnel: TunnelId) {
        let this = self.clone();
        self.tasks.spawn(async move {
            let error = this.call(tunnel).await.err();
            let observation = Observation::TunnelReplaceAnswered {
                at: Instant::now(),
                tunnel,
                error,
            };
            // A monitor that has gone (shutdown, reload) takes no answer.
            let _ = this.observations.send(observation).await;
        });
    }

    async fn call(&self, tunnel: TunnelId) -> Result<(), (AwsErrorKind, String)> {
        let connection = &self.config.connections[tunnel.connection];
        let spec = self.config.tunnel(tunnel);
        let (Some(vpn_id), Some(ip)) = (&connection.id, spec.outside_ip) else {
            return Err((
                AwsErrorKind::Other,
                "the tunnel has no connection id or outside IP".into(),
            ));
        };
        let request = self
            .client
            .replace_vpn_tunnel()
            .vpn_connection_id(vpn_id.to_string())
            .vpn_tunnel_outside_ip_address(ip.to_string())
            .apply_pending_maintenance(true);
        let outcome = tokio::select! {
            _ = self.cancel.cancelled() => return Err((AwsErrorKind::Other, "cancelled".into())),
            outcome = request.send() => outcome,
        };
        match outcome {
            Ok(_) => {
                info!(vpn = %connection.name, tunnel = %spec.name, vpn_id = %vpn_id, outside_ip = %ip, "ReplaceVpnTunnel accepted: AWS replaces the tunnel endpoint now");
                Ok(())
            }
            Err(err) => {
                let (kind, message) = crate::aws::classify(&err);
                warn!(vpn = %connection.name, tunnel = %spec.name, kind = kind.label(), %message, "ReplaceVpnTunnel failed");
                Err((kind, message))
            }
        }
    }
}
