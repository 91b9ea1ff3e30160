//! `tunnelkeeper test-page`, the daemon's side: a task that takes test-page requests from
//! the HTTP route over a channel and sends "[TEST] tunnelkeeper test page from <host>: no
//! action needed" through each configured sink (or the one named), with the sinks' own
//! code (`Deliver` for log and SNS, the Alertmanager post with `test="true"`), and answers
//! what each sink said. It goes around the outbox on purpose: a test page must never be
//! retried later, saved or counted as an alert, and its answer is wanted now.

use std::sync::Arc;

use aws_config::SdkConfig;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::alert::sinks::{post_test_alert, Deliver, LogSink, SnsSink};
use crate::alert::wording::{test_page, PageContext};
use crate::config::{Config, SinkKind};
use crate::types::Timestamp;

/// A request from `POST /-/test-page`.
pub struct TestPageRequest {
    /// Only this sink (by name); all when `None`.
    pub sink: Option<String>,
    /// Each sink's answer, or why nothing was sent (an unknown sink name).
    pub respond: oneshot::Sender<Result<Vec<SinkAnswer>, String>>,
}

/// What one sink said to the test page.
#[derive(Clone, Debug, Serialize)]
pub struct SinkAnswer {
    /// The sink's name.
    pub name: String,
    /// Whether it accepted the page.
    pub ok: bool,
    /// Its refusal.
    pub error: Option<String>,
}

/// What the test pages go through: the running config and its AWS settings (replaced on
/// reload).
pub type Sinks = (Arc<Config>, Option<SdkConfig>);

/// Answers test-page requests until cancelled; each is sent in its own task, so a hanging
/// sink delays only its own answer.
pub async fn serve(
    mut requests: mpsc::Receiver<TestPageRequest>,
    sinks: watch::Receiver<Sinks>,
    cancel: CancellationToken,
) {
    loop {
        let request = tokio::select! {
            _ = cancel.cancelled() => return,
            r = requests.recv() => match r { Some(r) => r, None => return },
        };
        let (config, sdk) = sinks.borrow().clone();
        tokio::spawn(async move {
            let answer = send(&config, sdk.as_ref(), request.sink.as_deref()).await;
            let _ = request.respond.send(answer);
        });
    }
}

/// Sends the test page through the sinks of `config` (or the one named).
pub async fn send(
    config: &Config,
    sdk: Option<&SdkConfig>,
    only: Option<&str>,
) -> Result<Vec<SinkAnswer>, String> {
    if let Some(name) = only {
        if !config.alerts.sinks.iter().any(|s| s.name == name) {
            let names: Vec<&str> = config
                .alerts
                .sinks
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(format!(
                "no sink named {name}; the sinks are: {}",
                names.join(", ")
            ));
        }
    }
    let ctx = PageContext::from_machine(config);
    let now = Timestamp::from_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
    );
    let page = test_page(&ctx.host, now);
    let mut answers = Vec::new();
    for sink in &config.alerts.sinks {
        if only.is_some_and(|name| name != sink.name) {
            continue;
        }
        let result = match &sink.kind {
            SinkKind::Log => LogSink { ctx: ctx.clone() }
                .deliver(&page)
                .await
                .map_err(|(_, e)| e),
            SinkKind::Sns { topic_arn } => match sdk {
                Some(sdk) => SnsSink {
                    client: aws_sdk_sns::Client::new(sdk),
                    topic_arn: topic_arn.clone(),
                    ctx: ctx.clone(),
                }
                .deliver(&page)
                .await
                .map_err(|(kind, e)| format!("{kind}: {e}")),
                None => Err("no [aws] settings for the SNS client".to_string()),
            },
            SinkKind::Alertmanager { url } => post_test_alert(url, page.clone(), &ctx, now).await,
        };
        info!(
            sink = %sink.name,
            ok = result.is_ok(),
            error = result.as_ref().err().map_or("", String::as_str),
            "test page sent"
        );
        answers.push(SinkAnswer {
            name: sink.name.clone(),
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    Ok(answers)
}
