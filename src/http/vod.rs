//! The VOD API (like OSS PostVodPlaylist / GetVodPlaylist):
//! `POST|GET /api/v1/buckets/B/channels/C/vod?start=S&end=E[&name=vod.m3u8][&urls=relative|presigned]`
//! signed like a play URL with PLAYLIST = `vod` (`AccessKeyId`, `Expires`,
//! `Signature` in the query). POST stores `C/<name>` in the bucket; GET
//! returns the playlist. `X-Livebucket-Vod-Source` says whether the session
//! index or a listing of the fragments was used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::HttpError;
use super::play::{query_map, unix_now, verify};
use crate::auth::presign::{SIGV4_MAX_EXPIRY, SigV4Presigner};
use crate::vod::{self, Uris};

fn num(q: &HashMap<String, String>, name: &str) -> Result<u64, HttpError> {
    q.get(name)
        .ok_or_else(|| HttpError::BadRequest(format!("query parameter {name} is missing")))?
        .parse()
        .map_err(|_| HttpError::BadRequest(format!("{name} must be Unix seconds")))
}

async fn build(
    app: &AppState,
    bucket: &str,
    channel: &str,
    q: &HashMap<String, String>,
) -> Result<vod::Vod, HttpError> {
    let cfg = app.config();
    let (key, expires) = verify(&cfg, q, bucket, channel, "vod")?;
    let (start, end) = (num(q, "start")?, num(q, "end")?);
    vod::check_range(start, end, cfg.vod.max_range_secs)?;
    let endpoint = cfg
        .s3
        .public_endpoint
        .clone()
        .unwrap_or_else(|| cfg.s3.endpoint.clone());
    let uris = match q.get("urls").map(String::as_str).unwrap_or("relative") {
        "relative" => Uris::Relative,
        "presigned" => Uris::SigV4 {
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
            endpoint: &endpoint,
            path_style: cfg.s3.force_path_style,
        },
        other => {
            return Err(HttpError::BadRequest(format!(
                "urls={other:?}: use relative or presigned"
            )));
        }
    };
    Ok(vod::build(&app.store, &key.id, bucket, channel, start, end, &uris).await?)
}

fn source_header(v: &vod::Vod) -> (header::HeaderName, HeaderValue) {
    (
        header::HeaderName::from_static("x-livebucket-vod-source"),
        HeaderValue::from_static(v.source.as_str()),
    )
}

pub async fn get_vod(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    let v = build(&app, &bucket, &channel, &q).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::store::PLAYLIST_CONTENT_TYPE),
            ),
            source_header(&v),
        ],
        v.playlist,
    )
        .into_response())
}

pub async fn post_vod(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    let name = q.get("name").map_or("vod.m3u8", String::as_str).to_owned();
    crate::auth::push::validate_playlist_name(&name)
        .map_err(|e| HttpError::BadRequest(format!("name: {e}")))?;
    let v = build(&app, &bucket, &channel, &q).await?;
    let key_id = q.get("AccessKeyId").cloned().unwrap_or_default();
    let object = crate::store::playlist_key(&channel, &name);
    app.store
        .put_playlist(&key_id, &bucket, &object, v.playlist.clone(), "max-age=60")
        .await?;
    let body = serde_json::json!({
        "bucket": bucket,
        "key": object,
        "segments": v.segments,
        "source": v.source.as_str(),
    });
    Ok(([source_header(&v)], axum::Json(body)).into_response())
}
