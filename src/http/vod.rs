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
//! A channel with renditions: a GET whose range holds fragments of any rung
//! of `[renditions]` (`CHANNEL/R/…`) answers a master playlist
//! ([`vod_master`]) whose variants are this same VOD URL for one variant
//! each (`&variant=source` or `&variant=R`, signed with the request's key,
//! expiry, range and URL mode: [`play::vod_variant_query`]); such a URL
//! answers that variant's media playlist. POST and the OSS API always
//! store or answer the source's media playlist.
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
use crate::config::renditions::SOURCE;
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
    expires: u64,
    /// The URL mode the signature grants.
    urls: &'static str,
    range: (u64, u64),
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
    // An unreadable record: the range is read again (u64::MAX). A variant
    // (`CHANNEL/R`) is kept for its channel's period.
    let record = channel.split_once('/').map_or(channel, |(c, _)| c);
    let oldest_kept = match app.channels.get(key_id, bucket, record).await {
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

/// The variant a VOD URL names (`variant=`): `None` for the channel.
fn variant_of(q: &HashMap<String, String>) -> Result<Option<&str>, HttpError> {
    match q.get("variant").map(String::as_str) {
        None => Ok(None),
        Some(v) if v == SOURCE || crate::config::renditions::valid_rung_name(v) => Ok(Some(v)),
        Some(v) => Err(HttpError::BadRequest(format!(
            "variant={:?}: use source or a rendition's name",
            crate::logfmt::Esc(v)
        ))),
    }
}

/// Where a variant's fragments are: the channel for the source, `C/R` for
/// rung R.
fn variant_channel(channel: &str, variant: Option<&str>) -> String {
    match variant {
        Some(r) if r != SOURCE => format!("{channel}/{r}"),
        _ => channel.to_owned(),
    }
}

async fn admit(
    app: &AppState,
    bucket: &str,
    channel: &str,
    q: &HashMap<String, String>,
    method: &'static str,
    name: &str,
    variant: Option<&str>,
) -> Result<Admitted, HttpError> {
    crate::names::validate_channel(channel).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    let cfg = app.config();
    let (start, end) = (num(q, "start")?, num(q, "end")?);
    let given = q.get("urls").map(String::as_str);
    let urls: &'static str = match given.unwrap_or(play::default_vod_urls(method)) {
        "relative" => "relative",
        "presigned" => "presigned",
        other => {
            return Err(HttpError::BadRequest(format!(
                "urls={:?}: use relative or presigned",
                crate::logfmt::Esc(other)
            )));
        }
    };
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
        |secret, expires, now, sig| match variant {
            // Variant URLs are only ever made with an explicit mode.
            Some(v) => play::verify_vod_variant(secret, &scope, v, expires, now, sig),
            None => play::verify_vod_mode(secret, &scope, given.is_some(), expires, now, sig)
                .map(|mode| granted.set(mode)),
        },
    )?;
    let urls: &'static str = if granted.get() == "relative" {
        "relative"
    } else {
        "presigned"
    };
    vod::check_range(start, end, cfg.vod.max_range_secs)?;
    let (frags, source, permit) = range_fragments(
        app,
        &cfg,
        &key.id,
        bucket,
        &variant_channel(channel, variant),
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
        expires,
        urls,
        range: (start, end),
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
    let variant = variant_of(&q)?;
    let mut a = admit(&app, &bucket, &channel, &q, "GET", "", variant).await?;
    // The fragment list is known: what is left (presigning a chunk at a
    // time as the reader takes it) costs no S3 request, and a reader that
    // stalls mid-body must not keep other VOD calls out.
    drop(a.permit.take());
    let source = a.source;
    if variant.is_none() {
        let cfg = app.config();
        let rungs = rungs_in_range(&app, &cfg, &a.key.id, &bucket, &channel, a.range).await?;
        if !rungs.is_empty() {
            return vod_master(&app, &a, &bucket, &channel, rungs).await;
        }
    }
    let body = futures::StreamExt::map(
        vod::render_stream(bucket, variant_channel(&channel, variant), a.frags, a.uris),
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
    let a = admit(&app, &bucket, &channel, &q, "POST", &name, None).await?;
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

/// The rungs of `[renditions]` with fragments in `range` under the channel,
/// with their first fragment, in the ladder's order.
async fn rungs_in_range(
    app: &AppState,
    cfg: &Config,
    key_id: &str,
    bucket: &str,
    channel: &str,
    range: (u64, u64),
) -> Result<Vec<(String, RangeFragment)>, HttpError> {
    let mut out = Vec::new();
    for rung in &cfg.renditions.rungs {
        let at = variant_channel(channel, Some(&rung.name));
        match range_fragments(app, cfg, key_id, bucket, &at, range).await {
            Ok((frags, _, _)) => {
                if let Some(first) = frags.into_iter().next() {
                    out.push((rung.name.clone(), first));
                }
            }
            Err(RangeError::Vod(vod::VodError::Empty { .. })) => {}
            Err(RangeError::Busy) => {
                return Err(HttpError::Busy(format!(
                    "{} VOD playlists are being built (config vod.max_concurrent_builds); retry shortly",
                    cfg.vod.max_concurrent_builds
                )));
            }
            Err(RangeError::Vod(e)) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The largest stored master read for a VOD master's variant attributes.
const MASTER_MAX_BYTES: usize = 64 * 1024;
/// The largest fragment read to probe a variant the stored master does not
/// list.
const PROBE_MAX_BYTES: usize = 16 << 20;

/// The VOD master of a range of a channel with renditions: the source,
/// then each rung with fragments in the range. Each variant's
/// `EXT-X-STREAM-INF` is the one the channel's stored master states (rates
/// measured over a whole push with the same ladder); a variant it does not
/// list is measured from its first fragment in the range (one GET: its
/// probe, and its rate as both peak and average). Each URI is this VOD URL
/// for that variant, signed like the request.
async fn vod_master(
    app: &AppState,
    a: &Admitted,
    bucket: &str,
    channel: &str,
    rungs: Vec<(String, RangeFragment)>,
) -> Result<Response, HttpError> {
    use crate::master::{self, Rate, StreamInf, probe};
    let stored = app
        .store
        .get_capped(
            &a.key.id,
            bucket,
            &crate::layout::playlist_key(channel, master::MASTER),
            MASTER_MAX_BYTES,
        )
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| master::stream_infs(&t))
        .unwrap_or_default();
    // The stored master names the source by its playlist name.
    let stated = |rung: Option<&str>| -> Option<String> {
        stored
            .iter()
            .find(|(_, uri)| master::parse_variant_uri(uri).is_some_and(|(r, _)| r == rung))
            .map(|(tag, _)| tag.clone())
    };
    let scope = VodScope {
        method: "GET",
        bucket,
        channel,
        start: a.range.0,
        end: a.range.1,
        urls: a.urls,
        name: "",
    };
    let first_source = a.frags.first().cloned();
    let mut entries = Vec::new();
    let variants = std::iter::once((None, first_source))
        .chain(rungs.into_iter().map(|(r, f)| (Some(r), Some(f))));
    for (rung, first) in variants {
        let tag = match (stated(rung.as_deref()), first) {
            (Some(tag), _) => tag,
            (None, Some(f)) => {
                let object = crate::layout::fragment_key(
                    &variant_channel(channel, rung.as_deref()),
                    f.key_ms,
                );
                let bytes = app
                    .store
                    .get_capped(&a.key.id, bucket, &object, PROBE_MAX_BYTES)
                    .await?;
                let Some(p) = probe::probe(&bytes) else {
                    continue;
                };
                let mut rate = Rate::default();
                rate.add(bytes.len() as u64, f.duration_ms);
                StreamInf::new(rung.as_deref(), "vod", &rate, p).tag()
            }
            (None, None) => continue,
        };
        let variant = rung.as_deref().unwrap_or(SOURCE);
        let (key, expires) = (&a.key, a.expires);
        let query = play::vod_variant_query(&key.id, &key.secret, &scope, variant, expires)?;
        entries.push((tag, format!("vod?{query}")));
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::store::PLAYLIST_CONTENT_TYPE),
        )],
        master::render_tags(&entries),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_is_the_source_or_a_rung_name_and_names_its_channel() {
        let q = |v: &str| HashMap::from([("variant".to_owned(), v.to_owned())]);
        assert_eq!(variant_of(&HashMap::new()).ok(), Some(None));
        assert_eq!(variant_of(&q("source")).ok(), Some(Some("source")));
        assert_eq!(variant_of(&q("360p")).ok(), Some(Some("360p")));
        for bad in ["", "a/b", "360P", "../x", &"x".repeat(33)] {
            assert!(variant_of(&q(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(variant_channel("cam", None), "cam");
        assert_eq!(variant_channel("cam", Some("source")), "cam");
        assert_eq!(variant_channel("cam", Some("360p")), "cam/360p");
    }
}
