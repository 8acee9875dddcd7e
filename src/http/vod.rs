//! The VOD API (like OSS PostVodPlaylist / GetVodPlaylist):
//! `GET|POST /api/v1/buckets/B/channels/C/vod?start=S&end=E[&urls=relative|presigned][&name=vod.m3u8]`
//! with `AccessKeyId`, `Expires` and `Signature` in the query, signed with
//! the VOD scheme of [`crate::auth::presign`]: the signature binds the
//! method, the range, the URL mode and, for POST, the object name, so a
//! viewer's GET link can neither be widened nor turned into a write.
//!
//! GET streams the playlist as it is rendered; POST stores `C/<name>` in the
//! bucket (never over a live playlist) and answers JSON.
//! `X-Livebucket-Vod-Source` says whether the session index or a listing of
//! the fragments was used.
//!
//! Cost is bounded: at most `vod.max_concurrent_builds` builds at once (503
//! with `Retry-After` beyond), at most `vod.max_fragments` fragments per
//! playlist (413, found before any per-fragment request).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::OwnedSemaphorePermit;

use super::AppState;
use super::error::HttpError;
use super::play::{query_map, unix_now, verify_signed};
use crate::auth::presign::{self, SIGV4_MAX_EXPIRY, SigV4Presigner, VodScope};
use crate::config::{AccessKey, Config};
use crate::index::RangeFragment;
use crate::vod::{self, Source, Uris};

/// The object name a POST writes when the query names none.
const DEFAULT_NAME: &str = "vod.m3u8";

fn num(q: &HashMap<String, String>, name: &str) -> Result<u64, HttpError> {
    q.get(name)
        .ok_or_else(|| HttpError::BadRequest(format!("query parameter {name} is missing")))?
        .parse()
        .map_err(|_| HttpError::BadRequest(format!("{name} must be Unix seconds")))
}

/// A verified, admitted VOD request: its fragments and how to write URIs.
struct Admitted {
    key: AccessKey,
    frags: Vec<RangeFragment>,
    source: Source,
    uris: Uris,
    /// Held until the response is built (for GET: until it is streamed).
    permit: OwnedSemaphorePermit,
}

async fn admit(
    app: &AppState,
    bucket: &str,
    channel: &str,
    q: &HashMap<String, String>,
    method: &'static str,
    name: &str,
) -> Result<Admitted, HttpError> {
    crate::auth::push::validate_channel(channel)
        .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let cfg = app.config();
    let (start, end) = (num(q, "start")?, num(q, "end")?);
    let urls = q.get("urls").map_or("relative", String::as_str);
    if !matches!(urls, "relative" | "presigned") {
        return Err(HttpError::BadRequest(format!(
            "urls={:?}: use relative or presigned",
            crate::logfmt::Esc(urls)
        )));
    }
    let scope = VodScope {
        method,
        bucket,
        channel,
        start,
        end,
        urls,
        name,
    };
    let (key, expires) = verify_signed(
        &app.metrics,
        &cfg,
        q,
        bucket,
        |secret, expires, now, sig| presign::verify_vod(secret, &scope, expires, now, sig),
    )?;
    vod::check_range(start, end, cfg.vod.max_range_secs)?;
    let permit = app.vod_permit().ok_or_else(|| {
        HttpError::Busy(format!(
            "{} VOD playlists are being built (config vod.max_concurrent_builds); retry shortly",
            cfg.vod.max_concurrent_builds
        ))
    })?;
    let (frags, source) = vod::nonempty_fragments(
        &app.store,
        &key.id,
        bucket,
        channel,
        (start, end),
        cfg.vod.max_fragments,
    )
    .await
    .inspect_err(|e| {
        if matches!(e, vod::VodError::TooManyFragments { .. }) {
            app.metrics
                .inc("livebucket_vod_refused_total", "too_many_fragments");
        }
    })?;
    let uris = uris(&cfg, &key, urls, expires)?;
    Ok(Admitted {
        key,
        frags,
        source,
        uris,
        permit,
    })
}

fn uris(cfg: &Config, key: &AccessKey, urls: &str, expires: u64) -> Result<Uris, HttpError> {
    if urls == "relative" {
        return Ok(Uris::Relative);
    }
    Ok(Uris::SigV4 {
        presigner: SigV4Presigner::new(
            &key.id,
            &key.secret,
            &cfg.s3.region,
            time::OffsetDateTime::now_utc(),
            Duration::from_secs(
                expires
                    .saturating_sub(unix_now())
                    .clamp(1, SIGV4_MAX_EXPIRY.as_secs()),
            ),
        )?,
        endpoint: cfg.s3.viewer_endpoint().to_owned(),
        path_style: cfg.s3.force_path_style,
    })
}

fn source_header(source: Source) -> (header::HeaderName, HeaderValue) {
    (
        header::HeaderName::from_static("x-livebucket-vod-source"),
        HeaderValue::from_static(source.as_str()),
    )
}

pub async fn get_vod(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    let a = admit(&app, &bucket, &channel, &q, "GET", "").await?;
    let source = a.source;
    let permit = a.permit;
    let body = futures::StreamExt::map(
        vod::render_stream(bucket, channel, a.frags, a.uris),
        move |chunk| {
            // The permit lives as long as the stream.
            let _held = &permit;
            chunk.map_err(|e| std::io::Error::other(e.to_string()))
        },
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::store::PLAYLIST_CONTENT_TYPE),
            ),
            source_header(source),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

pub async fn post_vod(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    let name = q
        .get("name")
        .map_or(DEFAULT_NAME, String::as_str)
        .to_owned();
    crate::auth::push::validate_playlist_name(&name)
        .map_err(|e| HttpError::BadRequest(format!("name: {e}")))?;
    let a = admit(&app, &bucket, &channel, &q, "POST", &name).await?;
    // A VOD playlist never replaces a live one, whoever signed it.
    if app
        .is_live_playlist(&a.key.id, &bucket, &channel, &name)
        .await
    {
        return Err(HttpError::BadRequest(format!(
            "name: {name} is this channel's live playlist; choose another name"
        )));
    }
    let playlist = vod::render(&bucket, &channel, &a.frags, &a.uris)?;
    drop(a.permit);
    let object = crate::layout::playlist_key(&channel, &name);
    app.store
        .put(
            &a.key.id,
            &bucket,
            &object,
            playlist.into_bytes(),
            &crate::store::ObjectMeta::playlist("max-age=60"),
        )
        .await?;
    let body = serde_json::json!({
        "bucket": bucket,
        "key": object,
        "segments": a.frags.len(),
        "source": a.source.as_str(),
    });
    Ok(([source_header(a.source)], axum::Json(body)).into_response())
}
