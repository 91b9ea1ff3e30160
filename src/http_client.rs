//! One small HTTP/1.1 client over hyper, for the two places the daemon is a client: the
//! Alertmanager sink and `tunnelkeeper status`/`healthcheck`. Plain `http://` only, a
//! deadline on the whole exchange, and errors worded for a log line.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// What came back.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Splits `http://host:port/prefix` into the authority and the path prefix.
fn split_url(base: &str) -> Result<(&str, &str), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base}: only http:// is supported"))?
        .trim_end_matches('/');
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    })
}

/// Sends one request to `base` + `path` and reads the whole answer within `deadline`.
/// `body` is a JSON document for a POST, `None` for a GET.
pub async fn call(
    base: &str,
    path: &str,
    json_body: Option<String>,
    deadline: Duration,
) -> Result<Answer, String> {
    let (authority, prefix) = split_url(base)?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{authority}: {e}"))?;
        tokio::spawn(connection);
        let builder = hyper::Request::builder()
            .uri(format!("{prefix}{path}"))
            .header("host", authority);
        let request = match json_body {
            Some(json) => builder
                .method("POST")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(json))),
            None => builder.method("GET").body(Full::new(Bytes::new())),
        }
        .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{authority} did not answer HTTP: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer from {authority}: {e}"))?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| {
            format!(
                "{authority}: no answer within {}",
                humantime::format_duration(deadline)
            )
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:9093"),
            Ok(("127.0.0.1:9093", ""))
        );
        assert_eq!(split_url("http://am:9093/"), Ok(("am:9093", "")));
        assert_eq!(
            split_url("http://am:9093/alertmanager"),
            Ok(("am:9093", "/alertmanager"))
        );
        assert!(split_url("https://am:9093").is_err());
    }
}
