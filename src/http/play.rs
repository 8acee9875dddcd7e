//! `GET /play/BUCKET/CHANNEL/PLAYLIST.m3u8?AccessKeyId=K&Expires=E&Signature=S`:
//! a signed playlist whose every segment URI is a presigned S3 URL, so a
//! private bucket plays with one signed link (like OSS `x-oss-process=hls/sign`).
//!
//! The live playlist comes from the pipeline's last stored copy when it has
//! one (no S3 round trip), else from S3. Segment URLs expire with the play URL
//! (SigV4 allows at most 7 days; a longer play URL gets 7-day segment URLs).
//! `&sigv2=1` asks for legacy SigV2 segment URLs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::HttpError;
use crate::auth::presign::{self, S3Location, SigV4Presigner};
use crate::config::{AccessKey, Config};
use crate::pipeline::live::ChannelId;

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The verified signer of a play or API request.
pub(super) fn verify(
    cfg: &Config,
    q: &HashMap<String, String>,
    bucket: &str,
    channel: &str,
    what: &str,
) -> Result<(AccessKey, u64), HttpError> {
    let missing = |p: &str| HttpError::BadRequest(format!("query parameter {p} is missing"));
    let key_id = q.get("AccessKeyId").ok_or_else(|| missing("AccessKeyId"))?;
    let expires: u64 = q
        .get("Expires")
        .ok_or_else(|| missing("Expires"))?
        .parse()
        .map_err(|_| HttpError::BadRequest("Expires must be Unix seconds".into()))?;
    let signature = q.get("Signature").ok_or_else(|| missing("Signature"))?;
    let key = cfg
        .key(key_id)
        .filter(|k| !k.disabled && k.may_write(bucket))
        .ok_or(HttpError::BadSignature(presign::PresignError::BadSignature))?;
    presign::verify_play(
        &key.secret,
        bucket,
        channel,
        what,
        expires,
        unix_now(),
        signature,
    )?;
    Ok((key.clone(), expires))
}

/// The query as a map. A parameter given twice with different values is
/// refused: which one was signed, and which one a cache in front keyed on,
/// would be ambiguous.
pub(super) fn query_map(
    pairs: Vec<(String, String)>,
) -> Result<HashMap<String, String>, HttpError> {
    let mut map = HashMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        if map.get(&name).is_some_and(|old| *old != value) {
            return Err(HttpError::BadRequest(format!(
                "query parameter {name} is given twice with different values"
            )));
        }
        map.insert(name, value);
    }
    Ok(map)
}

pub async fn play(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel, playlist)): Path<(String, String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    if !playlist.ends_with(".m3u8") {
        return Err(HttpError::NotFound(
            "only playlists (.m3u8) are served here".into(),
        ));
    }
    let cfg = app.config();
    let (key, expires) = verify(&cfg, &q, &bucket, &channel, &playlist)?;
    let chid = ChannelId {
        bucket: bucket.clone(),
        channel: channel.clone(),
        playlist: playlist.clone(),
    };
    let cached = app
        .live_cache
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&chid)
        .cloned();
    let text = match cached {
        Some(t) => t,
        None => {
            let object = crate::store::playlist_key(&channel, &playlist);
            let bytes = app.store.get(&key.id, &bucket, &object).await?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| HttpError::Unavailable(format!("{object} is not UTF-8")))?
        }
    };
    let endpoint = cfg
        .s3
        .public_endpoint
        .clone()
        .unwrap_or_else(|| cfg.s3.endpoint.clone());
    let now = unix_now();
    let lifetime = expires
        .saturating_sub(now)
        .clamp(1, presign::SIGV4_MAX_EXPIRY.as_secs());
    let sigv2 = q.get("sigv2").is_some_and(|v| v == "1" || v == "true");
    let signer = if sigv2 {
        None
    } else {
        Some(SigV4Presigner::new(
            &key.id,
            &key.secret,
            &cfg.s3.region,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(lifetime),
        )?)
    };
    let mut out = String::with_capacity(text.len() * 4);
    for line in text.lines() {
        let uri = line.trim();
        if uri.is_empty() || uri.starts_with('#') || uri.contains("://") {
            out.push_str(line);
        } else {
            let object = format!("{channel}/{uri}");
            let loc = S3Location {
                endpoint: &endpoint,
                path_style: cfg.s3.force_path_style,
                bucket: &bucket,
                key: &object,
            };
            let url = match &signer {
                Some(s) => s.presign_get(&loc)?,
                None => presign::presign_v2_get(&key.id, &key.secret, &loc, now + lifetime)?,
            };
            out.push_str(&url);
        }
        out.push('\n');
    }
    let cache = if text.contains("#EXT-X-ENDLIST") {
        "private, max-age=60"
    } else {
        "private, max-age=1"
    };
    Ok((
        [
            (header::CONTENT_TYPE, crate::store::PLAYLIST_CONTENT_TYPE),
            (header::CACHE_CONTROL, cache),
        ],
        out,
    )
        .into_response())
}
