//! The `TunnelLossy` and `TunnelSlow` conditions, pure: from each tunnel's brownout window
//! (`history::brownout`) and its verdict. Both have hysteresis: past the threshold a
//! condition is active, under the resolve level (half the loss threshold; `factor / 1.5`
//! times the baseline) it is absent, and in between, or while the window is not full, it
//! is unknown, so the alert keeps whatever state it has. A tunnel that is down pages as
//! `TunnelDown` only: both are unknown (held, never started) while it is down, and the
//! window restarts when it comes back, so the outage's losses never count as a brownout.

use crate::alert::engine::{AlertKey, Condition, Conditions, Details};
use crate::config::Config;
use crate::health::HealthModel;
use crate::history::brownout::{loss_level, slow_level, Level};
use crate::history::History;
use crate::types::{AlertClass, Timestamp};

/// Returns the brownout conditions of every tunnel with pinned targets.
/// The policy's rule: [`brownouts`] of every tunnel.
pub fn rule(inputs: &crate::alert::policy::Inputs<'_>) -> Conditions {
    brownouts(inputs.config, inputs.model, inputs.history, inputs.now)
}

/// Each tunnel's `TunnelLossy` and `TunnelSlow` conditions.
pub fn brownouts(
    config: &Config,
    model: &HealthModel,
    history: &History,
    now: Timestamp,
) -> Conditions {
    let mut out = Conditions::new();
    let (lossy, slow) = (&config.alerts.lossy, &config.alerts.slow);
    for id in config.tunnel_ids() {
        let connection = &config.connections[id.connection];
        let tunnel = config.tunnel(id);
        if tunnel.targets.is_empty() {
            continue;
        }
        let (vpn, name) = (connection.name.as_str(), tunnel.name.as_str());
        let lossy_key = AlertKey::tunnel(AlertClass::TunnelLossy, vpn, name);
        let slow_key = AlertKey::tunnel(AlertClass::TunnelSlow, vpn, name);
        let window = history.window(id);
        if model.tunnel(id).verdict.is_down() || window.is_none() {
            out.insert(lossy_key, Condition::Unknown);
            out.insert(slow_key, Condition::Unknown);
            continue;
        }
        let window = window.expect("checked above");
        let details = |summary: String, reason: String| {
            Condition::Active(Details {
                summary,
                reason,
                vpn_id: connection.id.as_ref().map(|id| id.to_string()),
                severity: None,
                since: None,
                cause: None,
            })
        };
        let window_text = |w| humantime::format_duration(w).to_string();
        match window.loss(now, lossy.window) {
            None => {
                out.insert(lossy_key, Condition::Unknown);
            }
            Some(loss) => match loss_level(loss.ratio(), lossy) {
                Level::Above => {
                    let percent = 100.0 * loss.ratio();
                    out.insert(
                        lossy_key,
                        details(
                            format!("{percent:.1}% loss over {}", window_text(lossy.window)),
                            format!(
                                "{} of {} probes to the tunnel's pinned targets lost over the last {} ({percent:.1}%, threshold {:.1}%; resolves under {:.1}%): the tunnel is up but losing packets. Check the datacenter's link and customer gateway, the ISP's loss, and compare with the sibling tunnel",
                                loss.lost,
                                loss.probes,
                                window_text(lossy.window),
                                100.0 * lossy.threshold.0,
                                50.0 * lossy.threshold.0,
                            ),
                        ),
                    );
                }
                Level::Between => {
                    out.insert(lossy_key, Condition::Unknown);
                }
                Level::Below => {}
            },
        }
        match (window.median_us(now, slow.window), window.baseline_us()) {
            (Some(median), Some(baseline)) => match slow_level(median, baseline, slow) {
                Level::Above => {
                    let ms = |us: u32| f64::from(us) / 1000.0;
                    let times = f64::from(median) / f64::from(baseline.max(1));
                    out.insert(
                        slow_key,
                        details(
                            format!(
                                "median RTT {:.1} ms, {times:.1}x its baseline {:.1} ms",
                                ms(median),
                                ms(baseline)
                            ),
                            format!(
                                "median RTT over the last {} is {:.1} ms, {times:.1} times the tunnel's baseline of {:.1} ms (fires over {}x, resolves under {:.1}x): traffic takes a longer or congested path. Compare with the sibling tunnel and ask the ISP about routing",
                                window_text(slow.window),
                                ms(median),
                                ms(baseline),
                                slow.factor.0,
                                slow.resolve_factor(),
                            ),
                        ),
                    );
                }
                Level::Between => {
                    out.insert(slow_key, Condition::Unknown);
                }
                Level::Below => {}
            },
            _ => {
                out.insert(slow_key, Condition::Unknown);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
