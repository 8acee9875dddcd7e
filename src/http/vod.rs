//! The VOD API (like OSS PostVodPlaylist / GetVodPlaylist):
//! `GET|POST /api/v1/buckets/B/channels/C/vod?start=S&end=E[&urls=relative|presigned][&name=vod.m3u8]`
//! with `AccessKeyId`, `Expires` and `Signature` in the query, signed with
//! the VOD scheme of [`crate::sign::play`]: the signature binds the
//! method, the range, the URL mode and, for POST, the object name, so a
//! viewer's GET link can neither be widened nor turned into a write.
//! Without `urls`, GET presigns its segment URIs (the link plays as is) and
//! POST writes them relative ([`play::default_vod_urls`]).
//!
//! GET streams the playlist as it is rendered; POST stores `C/<name>` in the
//! bucket (never over a live playlist) and answers JSON.
//! `X-Livebucket-Vod-Source` says whether the session index or a listing of
//! the fragments was used.
//!
//! Cost is bounded: at most `vod.max_concurrent_builds` builds at once (503
//! with `Retry-After` beyond; a build ends once its fragment list is known,
//! before a GET's body is streamed), at most `vod.max_fragments` fragments
//! per playlist, `vod.max_fallback_fragments` from the listing fallback
//! (413, found before any per-fragment request), and a closed range's
//! fragments are cached ([`vod::RangeCache`]), so a replayed request costs
//! no S3 request.

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
use crate::config::{AccessKey, Config};
use crate::index::RangeFragment;
use crate::sign::play::{self, VodScope};
use crate::sign::sigv4::{SIGV4_MAX_EXPIRY, SigV4Presigner};
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
    /// The build slot: held while the fragments are found (the listing,
    /// manifests and HEADs that `vod.max_concurrent_builds` bounds); `None`
    /// when they came from the closed-range cache. GET drops it before
    /// streaming the body, so a reader that stalls holds a connection, not
    /// a slot.
    permit: Option<OwnedSemaphorePermit>,
}

/// Why [`range_fragments`] found no fragments.
pub(super) enum RangeError {
    /// Every build slot is taken (`vod.max_concurrent_builds`).
    Busy,
    Vod(vod::VodError),
}

/// The fragments of a range, from the closed-range cache without any S3
/// request, else under a build slot (returned, held) from the store; a
/// closed range's are then cached ([`vod::is_closed`]). Refusals for cost
/// are counted here.
pub(super) async fn range_fragments(
    app: &AppState,
    cfg: &Config,
    key_id: &str,
    bucket: &str,
    channel: &str,
    range: (u64, u64),
) -> Result<(Vec<RangeFragment>, Source, Option<OwnedSemaphorePermit>), RangeError> {
    // A cached range is not trusted past the channel's retention cutoff: a
    // sweep may have deleted its oldest fragments since.
    // An unreadable record: the range is read again (u64::MAX).
    let oldest_kept = match app.channels.get(key_id, bucket, channel).await {
        Ok(record) => crate::retention::oldest_kept_ms(
            crate::retention::period_of(record.as_ref().map(|r| &r.config), cfg),
            crate::clock::unix_now_ms(),
        ),
        Err(_) => u64::MAX,
    };
    if let Some((frags, source)) = app.vod_ranges.get(bucket, channel, range, oldest_kept) {
        app.metrics.inc("livebucket_vod_range_cache_hits_total", "");
        return Ok((frags, source, None));
    }
    let permit = app.vod_permit().ok_or(RangeError::Busy)?;
    let found = vod::nonempty_fragments(
        &app.store,
        key_id,
        bucket,
        channel,
        range,
        vod::Limits::of(&cfg.vod),
    )
    .await
    .map_err(|e| {
        if let vod::VodError::TooManyFragments { setting, .. } = &e {
            let reason = if *setting == "vod.max_fallback_fragments" {
                "too_many_fallback_fragments"
            } else {
                "too_many_fragments"
            };
            app.metrics.inc("livebucket_vod_refused_total", reason);
        }
        RangeError::Vod(e)
    })?;
    if vod::is_closed(range.1, found.sessions_ended, unix_now()) {
        app.vod_ranges
            .insert(bucket, channel, range, &found.frags, found.source);
    }
    Ok((found.frags, found.source, Some(permit)))
}

async fn admit(
    app: &AppState,
    bucket: &str,
    channel: &str,
    q: &HashMap<String, String>,
    method: &'static str,
    name: &str,
) -> Result<Admitted, HttpError> {
    crate::names::validate_channel(channel).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let cfg = app.config();
    let (start, end) = (num(q, "start")?, num(q, "end")?);
    let given = q.get("urls").map(String::as_str);
    let urls = given.unwrap_or(play::default_vod_urls(method));
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
    // The mode the signature grants (see `play::verify_vod_mode`).
    let granted = std::cell::Cell::new(urls);
    let (key, expires) = verify_signed(
        &app.metrics,
        &cfg,
        q,
        bucket,
        |secret, expires, now, sig| {
            play::verify_vod_mode(secret, &scope, given.is_some(), expires, now, sig)
                .map(|mode| granted.set(mode))
        },
    )?;
    let urls = granted.get();
    vod::check_range(start, end, cfg.vod.max_range_secs)?;
    let (frags, source, permit) = range_fragments(
        app,
        &cfg,
        &key.id,
        bucket,
        channel,
        (start, end),
    )
    .await
    .map_err(|e| match e {
        RangeError::Busy => HttpError::Busy(format!(
            "{} VOD playlists are being built (config vod.max_concurrent_builds); retry shortly",
            cfg.vod.max_concurrent_builds
        )),
        RangeError::Vod(e) => e.into(),
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

pub(crate) async fn get_vod(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    let a = admit(&app, &bucket, &channel, &q, "GET", "").await?;
    // The fragment list is known: what is left (presigning a chunk at a
    // time as the reader takes it) costs no S3 request, and a reader that
    // stalls mid-body must not keep other VOD calls out.
    drop(a.permit);
    let source = a.source;
    let body = futures::StreamExt::map(
        vod::render_stream(bucket, channel, a.frags, a.uris),
        |chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())),
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

pub(crate) async fn post_vod(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    let name = q
        .get("name")
        .map_or(DEFAULT_NAME, String::as_str)
        .to_owned();
    crate::names::validate_playlist_name(&name)
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
