//! AWS SDK setup from the `[aws]` table: the SDK's default chain (environment, profile,
//! IMDSv2 instance role), the optional region and endpoint, and the daemon's own retry
//! and timeout policy (the SDK's retries are off: the poller and publishers back off
//! themselves, so a throttled account is not hit three times per call).

use std::time::Duration;

use anyhow::bail;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use crate::config::AwsConfig;
use crate::messages::AwsErrorKind;

/// How long one AWS call may take, at most.
pub fn call_timeout(aws: &AwsConfig) -> Duration {
    aws.call_timeout()
}

/// Loads the shared SDK config. Never called without an `[aws]` table, so the default
/// config never reaches for instance metadata.
pub async fn load(aws: &AwsConfig) -> anyhow::Result<SdkConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(call_timeout(aws))
                .operation_timeout(call_timeout(aws))
                .build(),
        );
    if let Some(region) = &aws.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &aws.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let sdk = loader.load().await;
    if sdk.region().is_none() {
        bail!("no AWS region: set aws.region in the config, or AWS_REGION in the environment");
    }
    Ok(sdk)
}

/// Sorts an SDK failure into a bounded kind, with a message fit for logs.
pub fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: &SdkError<E, HttpResponse>,
) -> (AwsErrorKind, String) {
    match err {
        SdkError::TimeoutError(_) => (AwsErrorKind::Timeout, "no answer within the timeout".into()),
        SdkError::DispatchFailure(f) => {
            if f.is_timeout() {
                (AwsErrorKind::Timeout, "no answer within the timeout".into())
            } else if f.is_io() {
                (
                    AwsErrorKind::Network,
                    format!("cannot reach the endpoint: {}", source_text(err)),
                )
            } else {
                let text = source_text(err);
                let kind = if text.contains("credential") {
                    AwsErrorKind::Auth
                } else {
                    AwsErrorKind::Other
                };
                (kind, text)
            }
        }
        // The parser's message may quote the answer, and EC2 answers carry pre-shared keys:
        // say only that it could not be read.
        SdkError::ResponseError(_) => (
            AwsErrorKind::Unparsable,
            "unreadable answer (its text is not logged: it may hold secrets)".into(),
        ),
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("");
            let message = e.err().message().unwrap_or("");
            let status = e.raw().status().as_u16();
            let kind = match code {
                "RequestLimitExceeded" | "Throttling" | "ThrottlingException" => {
                    AwsErrorKind::Throttled
                }
                "AuthFailure"
                | "UnauthorizedOperation"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "RequestExpired"
                | "OptInRequired" => AwsErrorKind::Auth,
                "InvalidVpnConnectionID.NotFound" => AwsErrorKind::NotFound,
                _ if status >= 500 => AwsErrorKind::ServerError,
                "" => AwsErrorKind::Unparsable,
                _ => AwsErrorKind::Other,
            };
            (kind, http_error_text(status, code, message))
        }
        SdkError::ConstructionFailure(_) => (AwsErrorKind::Other, source_text(err)),
        _ => (AwsErrorKind::Other, source_text(err)),
    }
}

fn source_text(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Says an HTTP error in words, leaving out what the answer did not carry: "HTTP 500"
/// with "(no error code or message)" rather than "HTTP 500 :  ".
pub fn http_error_text(status: u16, code: &str, message: &str) -> String {
    let (code, message) = (code.trim(), message.trim());
    match (code.is_empty(), message.is_empty()) {
        (true, true) => format!("HTTP {status} (no error code or message)"),
        (false, true) => format!("HTTP {status} {code}"),
        (true, false) => format!("HTTP {status}: {message}"),
        (false, false) => format!("HTTP {status} {code}: {message}"),
    }
}

#[cfg(test)]
mod error_text_tests {
    use super::http_error_text;

    #[test]
    fn http_errors_say_only_what_the_answer_carried() {
        assert_eq!(
            http_error_text(500, "", " "),
            "HTTP 500 (no error code or message)"
        );
        assert_eq!(
            http_error_text(503, "Unavailable", ""),
            "HTTP 503 Unavailable"
        );
        assert_eq!(http_error_text(500, "", "boom"), "HTTP 500: boom");
        assert_eq!(
            http_error_text(400, "InvalidParameterValue", "bad id"),
            "HTTP 400 InvalidParameterValue: bad id"
        );
    }
}
