//! `GET /play/BUCKET/CHANNEL/PLAYLIST.m3u8?AccessKeyId=K&Expires=E&Signature=S`:
//! a signed playlist whose every segment URI is a presigned S3 URL, so a
//! private bucket plays with one signed link (like OSS `x-oss-process=hls/sign`).
//!
//! The live playlist comes from the pipeline's last stored copy when it has
//! one (no S3 round trip), else from S3. Segment URLs expire with the play URL
//! (SigV4 allows at most 7 days; a longer play URL gets 7-day segment URLs).
//! `&sigv2=1` asks for legacy SigV2 segment URLs.
//!
//! A channel this node publishes with low latency on gets its LL-HLS
//! playlist on the same URL instead, from memory ([`super::llplay`]).
//!
//! Cost is bounded ([`PlayLimits`], `[play]`): a stored playlist larger than
//! `play.max_playlist_bytes` is refused (413) without being read whole; at
//! most `play.max_concurrent_renders` playlists are presigned at once (a
//! request that waits a second for its turn gets 503 with `Retry-After`);
//! the output is built in chunks of [`CHUNK_LINES`](super::signed::CHUNK_LINES) lines and streamed; and
//! the signed copy of an ended (`#EXT-X-ENDLIST`) playlist is kept per play
//! URL (key, expiry, URL flavour) in a cache of `play.signed_cache_bytes`,
//! so a thousand viewers of one VOD link share one copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use tracing::info;

use super::AppState;
use super::error::HttpError;
use super::signed::{PlayKey, live_copy, playlist_response, render};
use crate::auth::reject::Reject;
use crate::cache::Fifo;
use crate::config::{AccessKey, Config};
use crate::logfmt::Esc;
use crate::sign::SignError;
use crate::sign::play::{VariantPath, verify_play, verify_play_variant};
use crate::sign::sigv4::SIGV4_MAX_EXPIRY;

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
    check: impl Fn(&str, u64, u64, &str) -> Result<(), SignError>,
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
            .ok_or(HttpError::BadSignature(SignError::BadSignature))
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
                (HttpError::BadSignature(SignError::Expired), _) => "expired",
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

/// A live playlist held in memory up to this size is signed without a
/// render slot (a live window is well under 1 kB).
const INLINE_BYTES: usize = 16 * 1024;

/// How long a request waits for a render slot before it is told to retry.
const RENDER_WAIT: Duration = Duration::from_secs(1);

/// The signed copies of ended playlists, by play URL: bounded by their total
/// size, the oldest inserted evicted first, and one copy may take at most a
/// quarter of the budget (a single huge playlist does not flush the rest).
/// Copies whose play URL has expired are dropped as new ones come in.
pub(crate) struct SignedCache(Fifo<PlayKey, Arc<[Bytes]>>);

impl SignedCache {
    /// An empty cache of at most `max_bytes` (0: keeps nothing).
    pub(crate) fn new(max_bytes: usize) -> SignedCache {
        SignedCache(Fifo::new(max_bytes))
    }

    /// The signed copy for `key`, shared.
    pub(crate) fn get(&self, key: &PlayKey) -> Option<Arc<[Bytes]>> {
        self.0.get(key).cloned()
    }

    /// Keeps `chunks` for `key` if it fits the rules above; `false` if not.
    pub(crate) fn insert(&mut self, key: PlayKey, chunks: Arc<[Bytes]>, now: u64) -> bool {
        let size: usize = chunks.iter().map(Bytes::len).sum();
        if size > self.0.max_weight() / 4 {
            return false;
        }
        self.0.drop_where(|k| k.expires < now);
        self.0.insert(key, chunks, size)
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.0.used()
    }
}

/// The bounds of `/play` (`[play]`), shared by its requests.
pub(crate) struct PlayLimits {
    renders: Arc<Semaphore>,
    cache: Mutex<SignedCache>,
}

impl PlayLimits {
    /// Render slots and an empty cache sized by `[play]`.
    pub(crate) fn new(cfg: &crate::config::PlayConfig) -> PlayLimits {
        PlayLimits {
            renders: Arc::new(Semaphore::new(cfg.max_concurrent_renders)),
            cache: Mutex::new(SignedCache::new(cfg.signed_cache_bytes)),
        }
    }

    /// A render slot, waiting at most `wait`; `None` when every slot stayed
    /// taken.
    async fn render_slot(&self, wait: Duration) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(wait, self.renders.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// The signed copy of the play URL `key`, if one is kept.
    fn cached(&self, key: &PlayKey) -> Option<Arc<[Bytes]>> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
    }
}

/// `GET /play/BUCKET/CHANNEL/PLAYLIST`: a channel's playlist, or its
/// master playlist (`master.m3u8`, see [`master_response`]).
pub(crate) async fn play(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel, playlist)): Path<(String, String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    crate::names::validate_channel(&channel).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    only_playlists(&playlist)?;
    let cfg = app.config();
    let (key, expires) = verify_signed(
        &app.metrics,
        &cfg,
        &q,
        &bucket,
        |secret, expires, now, sig| {
            verify_play(secret, &bucket, &channel, &playlist, expires, now, sig)
        },
    )?;
    let play_key = PlayKey {
        bucket,
        channel,
        playlist,
        key_id: key.id.clone(),
        expires,
        sigv2: wants_sigv2(&q),
    };
    serve(app, cfg, key, play_key, q, true).await
}

/// `GET /play/BUCKET/CHANNEL/RUNG/PLAYLIST`: the playlist of rung RUNG of a
/// channel with renditions (the variant channel `CHANNEL/RUNG`), served
/// exactly as a channel's, LL-HLS included; signed over the four names
/// ([`verify_play_variant`]).
pub(crate) async fn play_variant(
    State(app): State<Arc<AppState>>,
    Path((bucket, channel, rung, playlist)): Path<(String, String, String, String)>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, HttpError> {
    let q = query_map(q)?;
    crate::names::validate_channel(&channel).map_err(|e| HttpError::BadRequest(e.to_string()))?;
    if !crate::config::renditions::valid_rung_name(&rung) {
        return Err(HttpError::BadRequest(
            "the rung is not a rendition name (1 to 32 of a-z 0-9 _ -)".into(),
        ));
    }
    only_playlists(&playlist)?;
    let cfg = app.config();
    let (key, expires) = verify_signed(
        &app.metrics,
        &cfg,
        &q,
        &bucket,
        |secret, expires, now, sig| {
            verify_play_variant(
                secret,
                &VariantPath {
                    bucket: &bucket,
                    channel: &channel,
                    rung: &rung,
                    playlist: &playlist,
                },
                expires,
                now,
                sig,
            )
        },
    )?;
    let play_key = PlayKey {
        bucket,
        channel: format!("{channel}/{rung}"),
        playlist,
        key_id: key.id.clone(),
        expires,
        sigv2: wants_sigv2(&q),
    };
    serve(app, cfg, key, play_key, q, false).await
}

fn only_playlists(playlist: &str) -> Result<(), HttpError> {
    if playlist.ends_with(".m3u8") {
        Ok(())
    } else {
        Err(HttpError::NotFound(
            "only playlists (.m3u8) are served here".into(),
        ))
    }
}

fn wants_sigv2(q: &HashMap<String, String>) -> bool {
    q.get("sigv2").is_some_and(|v| v == "1" || v == "true")
}

/// Answers a verified play URL: the LL-HLS playlist, a cached signed copy,
/// the live window from memory, or the stored object signed under a render
/// slot. `may_be_master`: the URL names a channel (not a variant), so a
/// stored master playlist is answered with signed variant URLs.
async fn serve(
    app: Arc<AppState>,
    cfg: Arc<Config>,
    key: AccessKey,
    play_key: PlayKey,
    q: HashMap<String, String>,
    may_be_master: bool,
) -> Result<Response, HttpError> {
    let (bucket, channel) = (&play_key.bucket, &play_key.channel);
    if let Some(rx) = super::llplay::model(&app, &play_key) {
        return super::llplay::answer(&app, &cfg, &key, &play_key, rx, &q).await;
    }
    if let Some(chunks) = app.play.cached(&play_key) {
        app.metrics.inc("livebucket_play_cache_hits_total", "");
        return Ok(playlist_response(chunks, true));
    }
    // A live window held in memory is signed at once: it is a few lines,
    // and live viewers must not queue behind long VOD renders.
    let live = live_copy(&app, &play_key).filter(|t| t.len() <= INLINE_BYTES);
    if let Some(text) = live {
        let chunks = render(&cfg, &key, &play_key, &text)?;
        return Ok(playlist_response(
            chunks.into(),
            text.contains("#EXT-X-ENDLIST"),
        ));
    }
    // Anything else (a stored object, a long window) is read and signed
    // under one of the render slots, off the async workers.
    let Some(slot) = app.play.render_slot(RENDER_WAIT).await else {
        app.metrics
            .inc("livebucket_requests_refused_total", "play_busy");
        info!(
            bucket = %Esc(bucket),
            channel = %Esc(channel),
            "play refused: every render slot is taken"
        );
        return Err(HttpError::Busy(format!(
            "{} playlists are being signed (config play.max_concurrent_renders); retry shortly",
            cfg.play.max_concurrent_renders
        )));
    };
    // Another request may have signed this one while this one waited.
    if let Some(chunks) = app.play.cached(&play_key) {
        app.metrics.inc("livebucket_play_cache_hits_total", "");
        return Ok(playlist_response(chunks, true));
    }
    let text = playlist_text(&app, &cfg, &key, &play_key).await?;
    if may_be_master && crate::master::is_master(&text) {
        let live = app.sessions.live_of(bucket, channel);
        if !master_is_current(live.as_ref()) {
            return Err(HttpError::NotFound(
                "the channel's live push has no renditions: its master playlist is an earlier push's; play the channel's playlist".into(),
            ));
        }
        return master_response(&key, &play_key, &text);
    }
    let ended = text.contains("#EXT-X-ENDLIST");
    app.metrics.inc("livebucket_play_renders_total", "");
    let chunks: Arc<[Bytes]> = {
        let (cfg, key, k) = (cfg.clone(), key.clone(), play_key.clone());
        tokio::task::spawn_blocking(move || render(&cfg, &key, &k, &text))
            .await
            .map_err(|e| HttpError::Unavailable(format!("signing the playlist failed: {e}")))??
            .into()
    };
    drop(slot);
    // Cached only while the segment URLs depend on the play URL alone (an
    // expiry within SigV4's week; see segment_signing).
    if ended && play_key.expires <= unix_now().saturating_add(SIGV4_MAX_EXPIRY.as_secs()) {
        app.play
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(play_key, chunks.clone(), unix_now());
    }
    Ok(playlist_response(chunks, ended))
}

/// Whether a stored master playlist describes the channel's push: it
/// does unless this node knows the channel's live session and that push
/// has no renditions (the master then names an earlier push's variants,
/// whose playlists have ended). Not live here: the last push's master.
fn master_is_current(live: Option<&crate::session::SessionMeta>) -> bool {
    live.is_none_or(|m| !m.renditions.is_empty())
}

/// A stored master playlist for the play URL `k`: every variant URI becomes
/// that variant's play URL, relative to the master's (`PLAYLIST?…` for the
/// source, `RUNG/PLAYLIST?…` for a rung), signed with the master URL's key
/// and expiry, so reloads get the same URIs and the variants live exactly
/// as long as the master's URL; `sigv2` is passed on. Other lines are kept.
fn master_response(key: &AccessKey, k: &PlayKey, text: &str) -> Result<Response, HttpError> {
    let body = sign_master(key, k, text)?;
    Ok(playlist_response(vec![Bytes::from(body)].into(), false))
}

/// The signed master (see [`master_response`]).
pub(super) fn sign_master(key: &AccessKey, k: &PlayKey, text: &str) -> Result<String, HttpError> {
    use percent_encoding::utf8_percent_encode as enc;

    use crate::sign::encode::UNRESERVED;
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let uri = line.trim();
        let variant = (!uri.is_empty() && !uri.starts_with('#'))
            .then(|| crate::master::parse_variant_uri(uri))
            .flatten();
        match variant {
            None => out.push_str(line),
            Some((None, playlist)) => {
                let query = crate::sign::play::play_query(
                    &key.id,
                    &key.secret,
                    &k.bucket,
                    &k.channel,
                    playlist,
                    k.expires,
                )?;
                out.push_str(&format!("{}?{query}", enc(playlist, UNRESERVED)));
            }
            Some((Some(rung), playlist)) => {
                let query = crate::sign::play::play_variant_query(
                    &key.id,
                    &key.secret,
                    &VariantPath {
                        bucket: &k.bucket,
                        channel: &k.channel,
                        rung,
                        playlist,
                    },
                    k.expires,
                )?;
                out.push_str(&format!(
                    "{}/{}?{query}",
                    enc(rung, UNRESERVED),
                    enc(playlist, UNRESERVED)
                ));
            }
        }
        if variant.is_some() && k.sigv2 {
            out.push_str("&sigv2=1");
        }
        out.push('\n');
    }
    Ok(out)
}

/// The playlist a play URL names: the pipeline's copy of a live playlist
/// this node publishes, else the stored object, at most
/// `play.max_playlist_bytes` of either (a stored one is never read whole
/// past that).
async fn playlist_text(
    app: &AppState,
    cfg: &Config,
    key: &AccessKey,
    k: &PlayKey,
) -> Result<String, HttpError> {
    let max = cfg.play.max_playlist_bytes;
    let too_large = || {
        app.metrics
            .inc("livebucket_requests_refused_total", "playlist_too_large");
        HttpError::TooLarge(format!(
            "the playlist is larger than {max} bytes (config play.max_playlist_bytes)"
        ))
    };
    let cached = live_copy(app, k);
    if let Some(text) = cached {
        return if text.len() > max {
            Err(too_large())
        } else {
            Ok(text)
        };
    }
    let object = crate::layout::playlist_key(&k.channel, &k.playlist);
    let bytes = match app.store.get_capped(&key.id, &k.bucket, &object, max).await {
        Err(crate::store::StoreError::TooLarge { .. }) => {
            info!(
                bucket = %Esc(&k.bucket),
                object = %Esc(&object),
                max,
                "play refused: stored playlist too large"
            );
            return Err(too_large());
        }
        other => other?,
    };
    String::from_utf8(Vec::from(bytes))
        .map_err(|_| HttpError::Unavailable(format!("{object} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use axum::response::IntoResponse;

    use crate::http::signed::{CHUNK_LINES, segment_signing, sign_lines};
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
            verify_play(secret, "live", "cam1", "index.m3u8", e, now, s)
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
    fn segment_lines_are_signed_in_chunks_and_tags_kept() {
        let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
        for i in 0..(CHUNK_LINES * 2 + 3) {
            text.push_str(&format!("#EXTINF:2.000,\n{i}.ts\n"));
        }
        text.push_str("https://cdn/x.ts\n#EXT-X-ENDLIST\n");
        let chunks = sign_lines(&text, |uri| Ok(format!("S/{uri}"))).unwrap();
        assert_eq!(chunks.len(), 3, "two full chunks and the rest");
        let whole: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let whole = String::from_utf8(whole).unwrap();
        let want: String = text
            .lines()
            .map(|l| {
                if l.starts_with('#') || l.contains("://") {
                    format!("{l}\n")
                } else {
                    format!("S/{l}\n")
                }
            })
            .collect();
        assert_eq!(whole, want);
        assert!(sign_lines("#EXTM3U\na.ts\n", |_| Err(SignError::BadSignature)).is_err());
    }

    #[test]
    fn part_and_hint_uris_are_signed_in_their_attribute() {
        let text = "#EXT-X-PART-INF:PART-TARGET=0.500\n\
            #EXT-X-PART:DURATION=0.480,URI=\".ll/r/1-000.ts\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\".ll/r/1-001.ts\"\n\
            #EXT-X-PART:URI=\"https://x/y.ts\",DURATION=0.1\n\
            #EXTINF:2.000,\n1.ts\n";
        let chunks = sign_lines(text, |uri| Ok(format!("S/{uri}?a=1&b=2"))).unwrap();
        let whole = String::from_utf8(chunks.concat()).unwrap();
        assert_eq!(
            whole,
            "#EXT-X-PART-INF:PART-TARGET=0.500\n\
            #EXT-X-PART:DURATION=0.480,URI=\"S/.ll/r/1-000.ts?a=1&b=2\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"S/.ll/r/1-001.ts?a=1&b=2\"\n\
            #EXT-X-PART:URI=\"https://x/y.ts\",DURATION=0.1\n\
            #EXTINF:2.000,\nS/1.ts?a=1&b=2\n"
        );
    }

    fn play_key(expires: u64) -> PlayKey {
        PlayKey {
            bucket: "b".into(),
            channel: "cam".into(),
            playlist: "vod.m3u8".into(),
            key_id: "GK1".into(),
            expires,
            sigv2: false,
        }
    }

    fn chunks(size: usize) -> Arc<[Bytes]> {
        vec![Bytes::from(vec![b'x'; size])].into()
    }

    #[test]
    fn the_signed_cache_is_bounded_and_drops_expired_copies() {
        let mut cache = SignedCache::new(1000);
        // At most a quarter of the budget per copy.
        assert!(!cache.insert(play_key(1), chunks(251), 0));
        assert!(cache.insert(play_key(1), chunks(250), 0));
        assert!(cache.insert(play_key(2), chunks(250), 0));
        assert!(cache.insert(play_key(3), chunks(250), 0));
        assert!(cache.insert(play_key(4), chunks(250), 0));
        assert_eq!(cache.used(), 1000);
        // Full: the oldest goes.
        assert!(cache.insert(play_key(5), chunks(250), 0));
        assert!(cache.get(&play_key(1)).is_none());
        assert!(cache.get(&play_key(5)).is_some());
        assert_eq!(cache.used(), 1000);
        // Expired play URLs are dropped when a copy comes in.
        assert!(cache.insert(play_key(100), chunks(10), 4));
        assert_eq!(cache.used(), 2 * 250 + 10);
        assert!(cache.get(&play_key(3)).is_none());
        assert!(cache.get(&play_key(4)).is_some());
        // Another flavour of the same URL is another copy.
        let mut v2 = play_key(100);
        v2.sigv2 = true;
        assert!(cache.get(&v2).is_none());
        // Nothing kept with a zero budget.
        assert!(!SignedCache::new(0).insert(play_key(1), chunks(1), 0));
    }

    #[tokio::test]
    async fn render_slots_are_bounded_and_waited_for_briefly() {
        let limits = PlayLimits::new(&crate::config::PlayConfig {
            max_playlist_bytes: 1 << 20,
            max_concurrent_renders: 2,
            signed_cache_bytes: 0,
            ..Default::default()
        });
        let wait = Duration::from_millis(20);
        let a = limits.render_slot(wait).await.expect("first slot");
        let _b = limits.render_slot(wait).await.expect("second slot");
        assert!(limits.render_slot(wait).await.is_none(), "a third at once");
        drop(a);
        assert!(limits.render_slot(wait).await.is_some());
    }

    #[test]
    fn segment_urls_are_signed_from_the_expiry_not_the_clock() {
        let week = SIGV4_MAX_EXPIRY.as_secs();
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

    #[test]
    fn a_master_gets_every_variant_as_a_signed_play_url_with_its_expiry() {
        let cfg = config();
        let key = cfg.key("GKknown").unwrap().clone();
        let mut k = play_key(1_800_000_000);
        k.bucket = "live".into();
        k.playlist = "master.m3u8".into();
        let master = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
            #EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS=\"avc1.4d401e\"\nindex.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=300000\n360p/index.m3u8\n\
            #EXT-X-STREAM-INF:BANDWIDTH=1\nhttps://elsewhere/x.m3u8\n";
        let out = sign_master(&key, &k, master).unwrap();
        assert_eq!(out, sign_master(&key, &k, master).unwrap(), "stable");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], master.lines().collect::<Vec<_>>()[..4]);
        let query = |uri: &str| -> HashMap<String, String> {
            serde_urlencoded::from_str(uri.split_once('?').unwrap().1).unwrap()
        };
        let (src, q) = (lines[4], query(lines[4]));
        assert!(src.starts_with("index.m3u8?AccessKeyId=GKknown&Expires=1800000000&"));
        verify_play(
            &key.secret,
            "live",
            "cam",
            "index.m3u8",
            1_800_000_000,
            0,
            &q["Signature"],
        )
        .expect("the source's URL verifies");
        let (rung, q) = (lines[6], query(lines[6]));
        assert!(rung.starts_with("360p/index.m3u8?AccessKeyId=GKknown&Expires=1800000000&"));
        verify_play_variant(
            &key.secret,
            &VariantPath {
                bucket: "live",
                channel: "cam",
                rung: "360p",
                playlist: "index.m3u8",
            },
            1_800_000_000,
            0,
            &q["Signature"],
        )
        .expect("the rung's URL verifies");
        assert_eq!(
            lines[8], "https://elsewhere/x.m3u8",
            "absolute URIs are kept"
        );
        k.sigv2 = true;
        let v2 = sign_master(&key, &k, master).unwrap();
        assert!(v2.lines().nth(6).unwrap().ends_with("&sigv2=1"));
    }

    #[test]
    fn a_master_is_stale_while_a_push_without_renditions_is_live() {
        let mut live: crate::session::SessionMeta = serde_json::from_value(serde_json::json!({
            "id": "s", "bucket": "b", "channel": "cam", "playlist": "index.m3u8",
            "key_id": "k", "clientid": "1", "name": "cam", "addr": "a", "started_ms": 0,
        }))
        .unwrap();
        assert!(master_is_current(None), "ended: the last push's master");
        assert!(!master_is_current(Some(&live)));
        live.renditions = vec!["360p".into()];
        assert!(master_is_current(Some(&live)));
    }

    #[tokio::test]
    async fn play_urls_longer_than_the_cap_are_refused() {
        let cfg = config();
        let too_far = unix_now() + cfg.auth.max_play_lifetime_secs + 60;
        let sig = crate::sign::play::sign_play(
            "known-secret-0123",
            "live",
            "cam1",
            "index.m3u8",
            too_far,
        )
        .unwrap();
        assert_eq!(answer(&cfg, "GKknown", too_far, &sig).await.0, 403);
        let sig = crate::sign::play::sign_play(
            "known-secret-0123",
            "live",
            "cam1",
            "index.m3u8",
            u64::MAX,
        )
        .unwrap();
        assert_eq!(answer(&cfg, "GKknown", u64::MAX, &sig).await.0, 403);
    }
}
