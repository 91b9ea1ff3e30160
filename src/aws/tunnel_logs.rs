//! The tunnel logs reader: makes the `FilterLogEvents` calls the core asks for
//! (`Event::FetchTunnelLogs`: which group, which tunnel's outside IP, from when), reads the
//! events in both of AWS's formats, and reports them back as an observation. When and how
//! often to call is the core's (`health::tunnel_log_book`): here is only the IO.

use aws_sdk_cloudwatchlogs::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::messages::{AwsErrorKind, Observation};
use crate::types::Timestamp;
use tunnelkeeper_core::health::tunnel_log_book::LogFetch;
use tunnelkeeper_core::messages::TunnelLogResult;
use tunnelkeeper_core::tunnel_log::parse;

/// Pages read per call at most: a call follows the last event seen, so one page is the
/// usual; a burst of IKE retries may fill a few.
const MAX_PAGES: usize = 5;
/// Events asked for per page.
const PAGE_EVENTS: i32 = 100;

/// Builds the CloudWatch Logs client: `[aws] endpoint_url` like every AWS client, unless
/// `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` names another (the SDK's service-specific variable,
/// read here because the shared config's explicit endpoint would otherwise win): the logs
/// may live elsewhere than EC2, and tests point them at moto while EC2 is the double.
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    let mut config = aws_sdk_cloudwatchlogs::config::Builder::from(sdk);
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS") {
        if !url.trim().is_empty() {
            config = config.endpoint_url(url.trim());
        }
    }
    Client::from_conf(config.build())
}

/// Reads tunnel logs on request until cancelled.
pub struct TunnelLogReader {
    /// The SDK client.
    pub client: Client,
    /// The calls the core asks for.
    pub requests: mpsc::Receiver<LogFetch>,
    /// Where results go.
    pub observations: mpsc::Sender<Observation>,
    /// Stops the task.
    pub cancel: CancellationToken,
}

impl TunnelLogReader {
    /// Serves the requests, one call at a time.
    pub async fn run(mut self) {
        loop {
            let fetch = tokio::select! {
                _ = self.cancel.cancelled() => return,
                fetch = self.requests.recv() => match fetch {
                    Some(fetch) => fetch,
                    None => return,
                },
            };
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return,
                result = read(&self.client, &fetch) => result,
            };
            if let TunnelLogResult::Failed { kind, message } = &result {
                warn!(log_group = %fetch.log_group, outside_ip = %fetch.outside_ip, kind = kind.label(), %message, "tunnel logs: FilterLogEvents failed");
            }
            let observation = Observation::TunnelLogs {
                tunnel: fetch.tunnel,
                at: Instant::now(),
                result,
            };
            if self.observations.send(observation).await.is_err() {
                return;
            }
        }
    }
}

/// One `FilterLogEvents` call (a few pages at most): the tunnel's events from `from` on.
pub async fn read(client: &Client, fetch: &LogFetch) -> TunnelLogResult {
    let mut events = Vec::new();
    let mut latest: Option<Timestamp> = None;
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        // The IP quoted: a filter term matches it in both formats, and "203.0.113.1" must
        // not match "203.0.113.10".
        let answer = client
            .filter_log_events()
            .log_group_name(&fetch.log_group)
            .filter_pattern(format!("\"{}\"", fetch.outside_ip))
            .start_time(fetch.from.wall_millis() as i64)
            .limit(PAGE_EVENTS)
            .set_next_token(token.take())
            .send()
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let (kind, message) = crate::aws::classify(&e);
                let kind = match e.as_service_error().map(|s| s.meta().code()) {
                    Some(Some("ResourceNotFoundException")) => AwsErrorKind::NotFound,
                    Some(Some("AccessDeniedException")) => AwsErrorKind::Auth,
                    _ => kind,
                };
                return TunnelLogResult::Failed { kind, message };
            }
        };
        for e in answer.events() {
            let ingested = Timestamp::from_wall_millis(e.timestamp().unwrap_or(0).max(0) as u64);
            latest = Some(latest.map_or(ingested, |l| l.max(ingested)));
            let Some(message) = e.message() else { continue };
            match parse(message, ingested) {
                // The filter matched the IP anywhere in the text: keep the tunnel's own.
                Ok(event)
                    if event
                        .outside_ip
                        .as_deref()
                        .is_none_or(|ip| ip == fetch.outside_ip) =>
                {
                    events.push(event)
                }
                Ok(_) => {}
                Err(error) => debug!(%error, "tunnel logs: an event that is not AWS's tunnel log"),
            }
        }
        match answer.next_token() {
            Some(next) if !answer.events().is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    TunnelLogResult::Events { events, latest }
}
