//! What a cluster node tells the others, on its operator listener (never
//! public: it names publishers' streams): the stream statistics of a channel
//! it publishes, for GetLiveChannelStat asked of another node.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::cluster::keys::PeerStat;

/// `GET /cluster/v1/stat/{bucket}/{channel}`: nginx's measurements of the
/// channel's live session here; 404 when it is not live on this node.
pub async fn stat(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
) -> Response {
    let Some(s) = app.sessions.live_of(&bucket, &channel) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let m = app.stat.session_stat(&s.id).await;
    Json(PeerStat {
        video: m.as_ref().and_then(|m| m.video.clone()),
        audio: m.and_then(|m| m.audio),
    })
    .into_response()
}
