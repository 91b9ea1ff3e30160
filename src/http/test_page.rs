//! `POST /-/test-page[?sink=NAME]`: asks the daemon's test-page task to page through its
//! sinks and answers each sink's result as JSON (`[{name, ok, error}]`), 200 when every
//! sink accepted, 502 when one refused.
//!
//! Who may: a peer on loopback always (the operator on the box, without enabling reload
//! over HTTP), any peer while the lifecycle API is enabled; basic auth, where configured,
//! applies as on every route. A remote peer cannot make the NOC's pager ring otherwise.

use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::{AppState, Peer, TEXT};
use crate::alert::test_page::TestPageRequest;

/// Sends a test page through the sinks.
pub async fn test_page(State(state): State<AppState>, request: Request) -> Response {
    let text = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, TEXT)], body).into_response()
    };
    let local = request
        .extensions()
        .get::<Peer>()
        .is_some_and(|p| p.0.ip().is_loopback());
    if !local && !state.lifecycle.load(Ordering::Acquire) {
        return text(
            StatusCode::FORBIDDEN,
            "POST /-/test-page is allowed from loopback (run tunnelkeeper test-page on the \
             daemon's host) or with the lifecycle API enabled\n"
                .into(),
        );
    }
    let mut sink = None;
    for pair in request.uri().query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("sink", name)) if !name.is_empty() => {
                sink = Some(percent_decode(name));
            }
            None if pair.is_empty() => {}
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query {pair}: POST /-/test-page takes only sink=NAME\n"),
                )
            }
        }
    }
    let Some(tx) = &state.test_pages else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "test pages are not available\n".into(),
        );
    };
    let (respond, answer) = oneshot::channel();
    if tx.send(TestPageRequest { sink, respond }).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    match answer.await {
        Ok(Ok(answers)) => {
            let status = if answers.iter().all(|a| a.ok) {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            let body = serde_json::to_string(&answers).unwrap_or_default();
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(Err(error)) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into()),
    }
}

/// Decodes `%XX` escapes (a sink name such as `sns:noc-page` arrives as `sns%3Anoc-page`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
