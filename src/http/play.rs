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
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use tracing::info;

use super::AppState;
use super::error::HttpError;
use crate::auth::presign::{self, S3Location, SigV4Presigner};
use crate::auth::push::Reject;
use crate::config::{AccessKey, Config};
use crate::logfmt::Esc;
use crate::pipeline::live::ChannelId;

pub(super) use crate::clock::unix_now;

/// The verified signer of a play or VOD request and the URL's expiry.
///
/// `check` verifies the signature with a secret (play or VOD scheme). An
/// unknown, disabled or foreign key is checked against a throwaway secret
/// too, so the answer and its timing do not tell whether the key id exists.
/// An `Expires` further away than `auth.max_play_lifetime_secs` is refused
/// before any key is looked up. Refusals are logged and counted here, with
/// the reason; the caller answers the uniform 403.
pub(super) fn verify_signed(
    metrics: &crate::metrics::Metrics,
    cfg: &Config,
    q: &HashMap<String, String>,
    bucket: &str,
    check: impl Fn(&str, u64, u64, &str) -> Result<(), presign::PresignError>,
) -> Result<(AccessKey, u64), HttpError> {
    let missing = |p: &str| HttpError::BadRequest(format!("query parameter {p} is missing"));
    let key_id = q.get("AccessKeyId").ok_or_else(|| missing("AccessKeyId"))?;
    let expires: u64 = q
        .get("Expires")
        .ok_or_else(|| missing("Expires"))?
        .parse()
        .map_err(|_| HttpError::BadRequest("Expires must be Unix seconds".into()))?;
    let signature = q.get("Signature").ok_or_else(|| missing("Signature"))?;
    let now = unix_now();
    let result = (|| {
        let max = cfg.auth.max_play_lifetime_secs;
        if expires > now.saturating_add(max) {
            return Err(HttpError::Refused(Reject::ExpiresTooFar {
                expires,
                now,
                max_lifetime: max,
            }));
        }
        let key = cfg
            .key(key_id)
            .filter(|k| !k.disabled && k.may_write(bucket));
        let secret = key.map_or(UNKNOWN_KEY_SECRET, |k| k.secret.as_str());
        check(secret, expires, now, signature)?;
        key.cloned()
            .ok_or(HttpError::BadSignature(presign::PresignError::BadSignature))
    })();
    match result {
        Ok(key) => Ok((key, expires)),
        Err(e) => {
            let reason = match (&e, cfg.key(key_id)) {
                (HttpError::BadSignature(_), None) => "unknown_key",
                (HttpError::BadSignature(_), Some(k)) if k.disabled => "key_disabled",
                (HttpError::BadSignature(_), Some(k)) if !k.may_write(bucket) => {
                    "bucket_not_allowed"
                }
                (HttpError::BadSignature(presign::PresignError::Expired), _) => "expired",
                _ => e.code(),
            };
            metrics.inc("livebucket_requests_refused_total", reason);
            info!(
                reason,
                detail = %Esc(&e.to_string()),
                key_id = %Esc(key_id),
                bucket = %Esc(bucket),
                "signed request refused"
            );
            Err(e)
        }
    }
}

/// Stands in for the secret of a key that does not exist (or may not sign
/// for this bucket), so such a request costs the same HMAC as a real one.
const UNKNOWN_KEY_SECRET: &str = "livebucket: no such key";

/// The SigV4 signing time and lifetime of a play URL's segment URLs, fixed
/// by the play URL's expiry rather than the clock: every reload of one play
/// URL then names each segment by the same URI, as RFC 8216 §6.2.1 asks
/// (and caches can keep them). They are signed at `expires` − 7 days for 7
/// days, so they end with the play URL. A play URL valid for longer than
/// that (`auth.max_play_lifetime_secs` above 7 days) would need a signing
/// time in the future: its segments are signed now, for 7 days.
fn segment_signing(expires: u64, now: u64) -> (u64, u64) {
    let max = presign::SIGV4_MAX_EXPIRY.as_secs();
    match expires.checked_sub(max) {
        Some(at) if at <= now => (at, max),
        Some(_) => (now, max),
        // An expiry within the epoch's first week: no real URL.
        None => (0, expires.max(1)),
    }
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
    crate::auth::push::validate_channel(&channel)
        .map_err(|e| HttpError::BadRequest(e.to_string()))?;
    if !playlist.ends_with(".m3u8") {
        return Err(HttpError::NotFound(
            "only playlists (.m3u8) are served here".into(),
        ));
    }
    let cfg = app.config();
    let (key, expires) = verify_signed(
        &app.metrics,
        &cfg,
        &q,
        &bucket,
        |secret, expires, now, sig| {
            presign::verify_play(secret, &bucket, &channel, &playlist, expires, now, sig)
        },
    )?;
    let chid = ChannelId {
        bucket: bucket.clone(),
        channel: channel.clone(),
        playlist: playlist.clone(),
    };
    // In a cluster this node's copy is current only while it publishes the
    // channel; otherwise the bucket has the playlist another node wrote.
    let current = app
        .cluster
        .as_ref()
        .is_none_or(|c| c.holds(&bucket, &channel));
    let cached = current
        .then(|| {
            app.live_cache
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&chid)
                .cloned()
        })
        .flatten();
    let text = match cached {
        Some(t) => t,
        None => {
            let object = crate::layout::playlist_key(&channel, &playlist);
            let bytes = app.store.get(&key.id, &bucket, &object).await?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| HttpError::Unavailable(format!("{object} is not UTF-8")))?
        }
    };
    let endpoint = cfg.s3.viewer_endpoint();
    let now = unix_now();
    let lifetime = expires
        .saturating_sub(now)
        .clamp(1, presign::SIGV4_MAX_EXPIRY.as_secs());
    let sigv2 = q.get("sigv2").is_some_and(|v| v == "1" || v == "true");
    let signer = if sigv2 {
        None
    } else {
        let (signed_at, valid_for) = segment_signing(expires, now);
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
    let mut out = String::with_capacity(text.len() * 4);
    for line in text.lines() {
        let uri = line.trim();
        if uri.is_empty() || uri.starts_with('#') || uri.contains("://") {
            out.push_str(line);
        } else {
            let object = format!("{channel}/{uri}");
            let loc = S3Location {
                endpoint,
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::metrics::Metrics;

    fn config() -> Config {
        crate::config::for_tests(
            r#"
            [[keys]]
            id = "GKknown"
            secret = "known-secret-0123"
            buckets = ["live"]
            [[keys]]
            id = "GKoff"
            secret = "disabled-secret-0123"
            buckets = ["live"]
            disabled = true
            "#,
        )
    }

    async fn answer(cfg: &Config, key_id: &str, expires: u64, sig: &str) -> (u16, Vec<u8>) {
        let q: HashMap<String, String> = [
            ("AccessKeyId", key_id.to_owned()),
            ("Expires", expires.to_string()),
            ("Signature", sig.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let err = verify_signed(&Metrics::default(), cfg, &q, "live", |secret, e, now, s| {
            presign::verify_play(secret, "live", "cam1", "index.m3u8", e, now, s)
        })
        .expect_err("a forged signature was accepted");
        let resp = err.into_response();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        (status, body.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// For any forged signature, an existing key, a disabled key and a
        /// key id that does not exist get the same answer.
        #[test]
        fn refusals_do_not_reveal_whether_a_key_exists(
            unknown in "GK[A-Za-z0-9]{1,24}",
            sig in prop_oneof!["[A-Za-z0-9_-]{43}", "[ -~]{0,60}"],
            ahead in 0u64..700_000,
        ) {
            prop_assume!(unknown != "GKknown" && unknown != "GKoff");
            let cfg = config();
            let expires = unix_now() + ahead;
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let known = rt.block_on(answer(&cfg, "GKknown", expires, &sig));
            prop_assert_eq!(known.0, 403);
            prop_assert_eq!(&rt.block_on(answer(&cfg, &unknown, expires, &sig)), &known);
            prop_assert_eq!(&rt.block_on(answer(&cfg, "GKoff", expires, &sig)), &known);
        }
    }

    #[test]
    fn segment_urls_are_signed_from_the_expiry_not_the_clock() {
        let week = presign::SIGV4_MAX_EXPIRY.as_secs();
        let expires = 1_800_000_000;
        // Any moment before expiry gives the same signing time, so the same
        // URIs, ending exactly at the play URL's expiry.
        for now in [expires - 3600, expires - 60, expires - week] {
            assert_eq!(segment_signing(expires, now), (expires - week, week));
        }
        // Longer than SigV4 allows: signed now, for the longest it allows.
        let far = expires + 10 * week;
        assert_eq!(segment_signing(far, expires), (expires, week));
    }

    #[tokio::test]
    async fn play_urls_longer_than_the_cap_are_refused() {
        let cfg = config();
        let too_far = unix_now() + cfg.auth.max_play_lifetime_secs + 60;
        let sig =
            presign::sign_play("known-secret-0123", "live", "cam1", "index.m3u8", too_far).unwrap();
        assert_eq!(answer(&cfg, "GKknown", too_far, &sig).await.0, 403);
        let sig = presign::sign_play("known-secret-0123", "live", "cam1", "index.m3u8", u64::MAX)
            .unwrap();
        assert_eq!(answer(&cfg, "GKknown", u64::MAX, &sig).await.0, 403);
    }
}
