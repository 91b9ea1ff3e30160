//! `GET /outages` (the outage log, newest first, `?since=` and `?tunnel=` filters) and
//! `GET /outages/ID` (one record), read from the log's records in memory.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use tunnelkeeper_core::outage::log::OutageFilter;
use tunnelkeeper_core::outage::OutageRecord;

use super::{no_store, AppState, TEXT};

/// The version of `/outages`' form (docs/outages.schema.json).
pub const SCHEMA_VERSION: u32 = 1;

/// The body of `GET /outages`.
#[derive(Serialize)]
struct OutagesBody<'a> {
    schema_version: u32,
    outages: Vec<&'a OutageRecord>,
}

/// `GET /outages`.
pub async fn outages(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let filter = match OutageFilter::parse(query.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => {
            return no_store(
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, TEXT)],
                    format!("/outages: bad filter {e}\n"),
                )
                    .into_response(),
            )
        }
    };
    let records = state.outages.records();
    json(
        StatusCode::OK,
        &OutagesBody {
            schema_version: SCHEMA_VERSION,
            outages: filter.apply(&records),
        },
    )
}

/// `GET /outages/ID`.
pub async fn outage(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let records = state.outages.records();
    match records.iter().find(|r| r.id == id) {
        Some(record) => json(StatusCode::OK, record),
        None => no_store(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, TEXT)],
                format!("/outages/{id}: no such outage in the log (GET /outages lists them)\n"),
            )
                .into_response(),
        ),
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string_pretty(body).expect("records always serialize");
    no_store(
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            text + "\n",
        )
            .into_response(),
    )
}
