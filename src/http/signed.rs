//! What `/play` and its LL-HLS variant (`llplay`) share: the play URL a
//! playlist is rendered for ([`PlayKey`]), the pipeline's in-memory copy of a
//! live playlist, presigning every segment URI of a playlist for that URL,
//! and the streamed answer. `play` and `llplay` both import this file, never
//! each other's helpers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::HttpError;
use crate::clock::unix_now;
use crate::config::{AccessKey, Config};
use crate::live::ChannelId;
use crate::sign::SignError;
use crate::sign::sigv2::presign_v2_get;
use crate::sign::sigv4::{SIGV4_MAX_EXPIRY, SigV4Presigner};
use crate::sign::url::S3Location;

/// The SigV4 signing time and lifetime of a play URL's segment URLs, fixed
/// by the play URL's expiry rather than the clock: every reload of one play
/// URL then names each segment by the same URI, as RFC 8216 §6.2.1 asks
/// (and caches can keep them). They are signed at `expires` − 7 days for 7
/// days, so they end with the play URL. A play URL valid for longer than
/// that (`auth.max_play_lifetime_secs` above 7 days) would need a signing
/// time in the future: its segments are signed now, for 7 days.
pub(super) fn segment_signing(expires: u64, now: u64) -> (u64, u64) {
    let max = SIGV4_MAX_EXPIRY.as_secs();
    match expires.checked_sub(max) {
        Some(at) if at <= now => (at, max),
        Some(_) => (now, max),
        // An expiry within the epoch's first week: no real URL.
        None => (0, expires.max(1)),
    }
}

/// Segment lines presigned per output chunk: tens of kB of URLs, so no
/// request builds one contiguous buffer the size of a long playlist.
pub(crate) const CHUNK_LINES: usize = 500;

/// What a play URL is rendered for: the signed output depends on nothing
/// else (segment URLs are signed from the expiry, see [`segment_signing`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlayKey {
    pub bucket: String,
    pub channel: String,
    pub playlist: String,
    pub key_id: String,
    pub expires: u64,
    pub sigv2: bool,
}

/// Rewrites `text` chunk by chunk: every line that names a segment (not a
/// tag, not blank, not already a URL) is replaced by `sign(uri)`, and so is
/// the `URI="…"` attribute of `#EXT-X-PART` and `#EXT-X-PRELOAD-HINT` tags;
/// the other lines are kept; each chunk ends after [`CHUNK_LINES`] signed
/// lines.
pub(crate) fn sign_lines(
    text: &str,
    mut sign: impl FnMut(&str) -> Result<String, SignError>,
) -> Result<Vec<Bytes>, SignError> {
    let mut chunks = Vec::new();
    let mut out = String::new();
    let mut signed = 0;
    for line in text.lines() {
        let uri = line.trim();
        if uri.starts_with("#EXT-X-PART:") || uri.starts_with("#EXT-X-PRELOAD-HINT:") {
            match uri_attribute(line) {
                Some((before, inner, after)) if !inner.contains("://") => {
                    out.push_str(before);
                    out.push_str(&sign(inner)?);
                    out.push_str(after);
                    signed += 1;
                }
                _ => out.push_str(line),
            }
        } else if uri.is_empty() || uri.starts_with('#') || uri.contains("://") {
            out.push_str(line);
        } else {
            out.push_str(&sign(uri)?);
            signed += 1;
        }
        out.push('\n');
        if signed == CHUNK_LINES {
            chunks.push(Bytes::from(std::mem::take(&mut out)));
            signed = 0;
        }
    }
    if !out.is_empty() {
        chunks.push(Bytes::from(out));
    }
    Ok(chunks)
}

/// A tag line split around the value of its `URI="…"` attribute.
fn uri_attribute(line: &str) -> Option<(&str, &str, &str)> {
    let at = line.find(",URI=\"").map(|i| i + 1).or_else(|| {
        let colon = line.find(':')?;
        line[colon + 1..].starts_with("URI=\"").then_some(colon + 1)
    })?;
    let start = at + "URI=\"".len();
    let len = line[start..].find('"')?;
    Some((
        &line[..start],
        &line[start..start + len],
        &line[start + len..],
    ))
}

/// The pipeline's copy of the live playlist `k` names, when this node
/// publishes it. In a cluster this node's copy is current only while it
/// publishes the channel; otherwise the bucket has the playlist another
/// node wrote.
pub(super) fn live_copy(app: &AppState, k: &PlayKey) -> Option<String> {
    if !current_here(app, k) {
        return None;
    }
    let chid = ChannelId {
        bucket: k.bucket.clone(),
        channel: k.channel.clone(),
        playlist: k.playlist.clone(),
    };
    app.live_cache
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&chid)
        .cloned()
}

/// Whether this node's in-memory copies of `k`'s channel are current: no
/// cluster, or this node holds the channel. A variant (`CHANNEL/RUNG`) is
/// published by the node that holds its source channel, so that is the
/// claim asked about.
pub(super) fn current_here(app: &AppState, k: &PlayKey) -> bool {
    app.cluster
        .as_ref()
        .is_none_or(|c| c.holds(&k.bucket, claimed_channel(&k.channel)))
}

/// The channel whose cluster claim covers `channel`: itself, or for a
/// variant `CHANNEL/RUNG` its source `CHANNEL`.
pub(super) fn claimed_channel(channel: &str) -> &str {
    channel.split_once('/').map_or(channel, |(c, _)| c)
}

/// Presigns every segment line of `text` for the play URL `k`.
pub(super) fn render(
    cfg: &Config,
    key: &AccessKey,
    k: &PlayKey,
    text: &str,
) -> Result<Vec<Bytes>, HttpError> {
    Ok(sign_lines(text, segment_signer(cfg, key, k)?)?)
}

/// What presigns a URI relative to the channel for the play URL `k`: the
/// same URL for it on every reload of `k` ([`segment_signing`]).
pub(super) fn segment_signer<'a>(
    cfg: &'a Config,
    key: &'a AccessKey,
    k: &'a PlayKey,
) -> Result<impl FnMut(&str) -> Result<String, SignError> + 'a, HttpError> {
    let endpoint = cfg.s3.viewer_endpoint();
    let now = unix_now();
    let lifetime = k
        .expires
        .saturating_sub(now)
        .clamp(1, SIGV4_MAX_EXPIRY.as_secs());
    let signer = if k.sigv2 {
        None
    } else {
        let (signed_at, valid_for) = segment_signing(k.expires, now);
        let signed_at = time::OffsetDateTime::from_unix_timestamp(signed_at as i64)
            .map_err(|_| HttpError::BadRequest("Expires is out of range".into()))?;
        Some(SigV4Presigner::new(
            &key.id,
            &key.secret,
            &cfg.s3.region,
            signed_at,
            Duration::from_secs(valid_for),
        )?)
    };
    Ok(move |uri: &str| {
        let object = format!("{}/{uri}", k.channel);
        let loc = S3Location {
            endpoint,
            path_style: cfg.s3.force_path_style,
            bucket: &k.bucket,
            key: &object,
        };
        match &signer {
            Some(s) => s.presign_get(&loc),
            None => presign_v2_get(&key.id, &key.secret, &loc, now + lifetime),
        }
    })
}

/// The answer: the chunks streamed one after another (shared, not copied,
/// when they come from the cache).
pub(super) fn playlist_response(chunks: Arc<[Bytes]>, ended: bool) -> Response {
    let cache = if ended {
        "private, max-age=60"
    } else {
        "private, max-age=1"
    };
    let body = futures::stream::iter(
        (0..chunks.len()).map(move |i| Ok::<_, std::convert::Infallible>(chunks[i].clone())),
    );
    (
        [
            (header::CONTENT_TYPE, crate::store::PLAYLIST_CONTENT_TYPE),
            (header::CACHE_CONTROL, cache),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::claimed_channel;

    #[test]
    fn a_variant_is_covered_by_its_source_channels_claim() {
        assert_eq!(claimed_channel("cam"), "cam");
        assert_eq!(claimed_channel("cam/360p"), "cam");
    }
}
