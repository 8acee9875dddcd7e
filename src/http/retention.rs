//! `POST /retention/sweep?dry_run=true|false` on the operator listener: one
//! retention sweep now ([`crate::retention`]), answered with its report as
//! JSON once it is done (`livebucket retention sweep` calls this).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

pub(crate) async fn sweep(
    State(app): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let dry_run = match q.get("dry_run").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return (StatusCode::BAD_REQUEST, "dry_run must be true or false\n").into_response();
        }
    };
    let Some(retention) = &app.retention else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "retention is not running on this node\n",
        )
            .into_response();
    };
    Json(retention.sweep(dry_run, true).await).into_response()
}
