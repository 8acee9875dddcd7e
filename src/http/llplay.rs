//! `/play` for a channel this node publishes with low latency on: its LL-HLS
//! playlist ([`crate::llhls`]), from memory, on the same signed URL.
//!
//! - Parts are listed as `#EXT-X-PART` with URIs presigned like segments.
//! - Blocking reload: `_HLS_msn=M[&_HLS_part=P]` is held (on the channel's
//!   `watch`, no thread or render slot) until the playlist has that part or
//!   segment; 400 when further ahead than the draft allows, 503 after three
//!   target durations or past `play.max_blocking_reloads` waiters.
//! - Delta updates: `_HLS_skip=YES` (or `v2`).
//! - `#EXT-X-PRELOAD-HINT:TYPE=PART` names the next part as this same play
//!   URL with `part=M.P`: such a request waits like a blocking reload for
//!   part P of segment M and is redirected (302) to its presigned URL, or
//!   gets 404 when segment M ended before part P.
//!
//! Like `sigv2`, none of these parameters is signed: they only choose which
//! view of the same playlist the signature already allows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::AppState;
use super::error::HttpError;
use super::signed::{PlayKey, current_here, playlist_response, render, segment_signer};
use crate::config::{AccessKey, Config};
use crate::live::ChannelId;
use crate::llhls::playlist::{Directives, LlPlaylist, Readiness};

type Model = watch::Receiver<Arc<LlPlaylist>>;

/// The LL-HLS model of the playlist `k` names, when this node publishes it
/// with low latency on (in a cluster: while it holds the channel, as for
/// [`super::signed::live_copy`]).
pub(super) fn model(app: &AppState, k: &PlayKey) -> Option<Model> {
    if !current_here(app, k) {
        return None;
    }
    app.ll.subscribe(&ChannelId {
        bucket: k.bucket.clone(),
        channel: k.channel.clone(),
        playlist: k.playlist.clone(),
    })
}

/// Answers the LL playlist (or, with `part=M.P`, the hinted part): at once,
/// or once the model holds what the request waits for.
pub(super) async fn answer(
    app: &AppState,
    cfg: &Config,
    key: &AccessKey,
    k: &PlayKey,
    rx: Model,
    q: &HashMap<String, String>,
) -> Result<Response, HttpError> {
    if let Some(hint) = q.get("part") {
        return part(app, cfg, key, k, rx, hint).await;
    }
    let d = Directives::parse(|name| q.get(name).cloned())
        .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let model = match d.msn {
        None => rx.borrow().clone(),
        Some(msn) => ready(app, cfg, rx, msn, d.part).await?,
    };
    let text = model.render(d.skip);
    let mut chunks = render(cfg, key, k, &text)?;
    if let Some(hint) = hint_line(&model, k, q) {
        chunks.push(Bytes::from(hint));
    }
    Ok(playlist_response(chunks.into(), model.ended))
}

/// The model once it holds part `part` of segment `msn` (or the whole
/// segment when `part` is `None`).
async fn ready(
    app: &AppState,
    cfg: &Config,
    mut rx: Model,
    msn: u64,
    part: Option<u64>,
) -> Result<Arc<LlPlaylist>, HttpError> {
    let now = rx.borrow_and_update().clone();
    match now.readiness(msn, part) {
        Readiness::Ready => return Ok(now),
        Readiness::TooFar => {
            app.metrics
                .inc("livebucket_requests_refused_total", "ll_too_far");
            return Err(HttpError::BadRequest(format!(
                "segment {msn} part {part:?} is further ahead than a client may ask (the playlist is at segment {})",
                now.next_msn()
            )));
        }
        Readiness::Wait => {}
    }
    let Some(_waiter) = app.ll.waiter() else {
        app.metrics
            .inc("livebucket_requests_refused_total", "ll_waiters");
        return Err(HttpError::Busy(format!(
            "{} blocking reloads are waiting (config play.max_blocking_reloads); retry shortly",
            cfg.play.max_blocking_reloads
        )));
    };
    let limit = Duration::from_secs(3 * now.target_duration.max(1));
    let waited = rx.wait_for(|m| m.readiness(msn, part) != Readiness::Wait);
    match tokio::time::timeout(limit, waited).await {
        Ok(Ok(m)) => Ok(m.clone()),
        Ok(Err(_)) => Err(HttpError::Unavailable(
            "the channel's live stream ended; reload the playlist".into(),
        )),
        Err(_) => Err(HttpError::Unavailable(format!(
            "segment {msn} part {part:?} did not come within {} s (three target durations)",
            limit.as_secs()
        ))),
    }
}

/// `#EXT-X-PRELOAD-HINT` for the next part of the segment in progress (its
/// first, when none is listed yet), as this play URL with `part=M.P`
/// (relative to the playlist, so it carries the signature along).
fn hint_line(model: &LlPlaylist, k: &PlayKey, q: &HashMap<String, String>) -> Option<String> {
    if model.ended {
        return None;
    }
    let next_part = model.tail.as_ref().map_or(0, |t| t.parts.len());
    let mut query: Vec<(&str, String)> = ["AccessKeyId", "Expires", "Signature", "sigv2"]
        .into_iter()
        .filter_map(|name| q.get(name).map(|v| (name, v.clone())))
        .collect();
    query.push(("part", format!("{}.{next_part}", model.next_msn())));
    let query = serde_urlencoded::to_string(&query).ok()?;
    let name = percent_encoding::utf8_percent_encode(&k.playlist, crate::sign::encode::UNRESERVED);
    Some(format!(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{name}?{query}\"\n"
    ))
}

/// `part=M.P`: waits for that part, then redirects to its presigned URL.
async fn part(
    app: &AppState,
    cfg: &Config,
    key: &AccessKey,
    k: &PlayKey,
    rx: Model,
    hint: &str,
) -> Result<Response, HttpError> {
    let bad = || HttpError::BadRequest("part must be SEGMENT.PART (two integers)".into());
    let (msn, index) = hint.split_once('.').ok_or_else(bad)?;
    let msn: u64 = msn.parse().map_err(|_| bad())?;
    let index: u64 = index.parse().map_err(|_| bad())?;
    let model = ready(app, cfg, rx, msn, Some(index)).await?;
    let Some(uri) = model.part_uri(msn, index) else {
        return Err(HttpError::NotFound(format!(
            "segment {msn} has no part {index} (it ended before, or its parts are no longer listed)"
        )));
    };
    let location = segment_signer(cfg, key, k)?(uri)?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "private, max-age=1".to_owned()),
        ],
    )
        .into_response())
}
