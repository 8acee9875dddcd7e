//! A time range of a channel → a VOD playlist (like OSS PostVodPlaylist /
//! GetVodPlaylist).
//!
//! Fragments come from the session manifests of [`crate::index`] (a few
//! requests for any range), or, for buckets without manifests, from listing
//! `CHANNEL/<epoch-ms>.ts` and reading each one's `extinf` metadata (one
//! HEAD per fragment, so this fallback has a lower cap of its own,
//! [`Limits::max_fallback_fragments`]). The fragments of a closed range (in
//! the past, its sessions ended: nothing more can arrive) are kept in a
//! bounded [`RangeCache`], so replaying a request does not redo its
//! listing and HEADs. Segment
//! URIs are relative (next to the fragments, for public buckets and CDNs),
//! absolute under a base URL, or presigned (SigV4, or SigV2 for legacy
//! servers) for private buckets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::cache::Fifo;
use crate::hls::{Segment, VOD_TAIL, target_duration_of, vod_head, vod_segments};
use crate::index::{self, Manifest, RangeFragment};
use crate::layout::{fragment_key, fragment_name, parse_fragment_name};
use crate::sign::SignError;
use crate::sign::sigv2::presign_v2_get;
use crate::sign::sigv4::SigV4Presigner;
use crate::sign::url::S3Location;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum VodError {
    #[error("no fragment of {channel} starts in [{start}, {end})")]
    Empty {
        channel: String,
        start: u64,
        end: u64,
    },
    #[error("{0}")]
    BadRange(String),
    /// More fragments than the cap (`setting` names it): found before any
    /// per-fragment request or URL is made.
    #[error(
        "the range holds more than {max} fragments (config {setting}); ask for a shorter range"
    )]
    TooManyFragments { max: usize, setting: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("presigning segment URLs: {0}")]
    Presign(#[from] SignError),
    #[error("manifest {key} is unreadable: {message}")]
    BadManifest { key: String, message: String },
}

/// How segment URIs are written. Owns its strings, so a streamed response
/// can carry it.
pub enum Uris {
    Relative,
    Absolute {
        base: String,
    },
    SigV4 {
        presigner: SigV4Presigner,
        endpoint: String,
        path_style: bool,
    },
    SigV2 {
        key_id: String,
        secret: String,
        expires: u64,
        endpoint: String,
        path_style: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Index,
    Listing,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Index => "index",
            Source::Listing => "listing",
        }
    }
}

pub struct Vod {
    pub playlist: String,
    pub source: Source,
    pub segments: usize,
}

/// How many fragments one playlist may list (`[vod]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the session manifests (`vod.max_fragments`).
    pub max_fragments: usize,
    /// From the listing fallback, which HEADs every fragment
    /// (`vod.max_fallback_fragments`, at most `max_fragments`).
    pub max_fallback_fragments: usize,
}

impl Limits {
    pub fn of(cfg: &crate::config::VodConfig) -> Limits {
        Limits {
            max_fragments: cfg.max_fragments,
            max_fallback_fragments: cfg.max_fallback_fragments.min(cfg.max_fragments),
        }
    }
}

/// What [`fragments`] found.
pub struct Found {
    pub frags: Vec<RangeFragment>,
    pub source: Source,
    /// Every session that reaches into the range has ended (its manifest
    /// says so), or there are no manifests: with the range old enough
    /// ([`is_closed`]), nothing more can be stored in it.
    pub sessions_ended: bool,
}

/// A range's end must be this far in the past before its fragments are
/// taken as final: uploads of its last fragments have landed by then.
pub const CLOSED_AFTER_SECS: u64 = 300;

/// Whether a build of `[.., end_s)` may be cached: the range ended
/// [`CLOSED_AFTER_SECS`] before `now_s` and its sessions have ended.
pub fn is_closed(end_s: u64, sessions_ended: bool, now_s: u64) -> bool {
    sessions_ended && end_s.saturating_add(CLOSED_AFTER_SECS) <= now_s
}

/// Fragments cached in all by default: 250,000 (about 8 MB), five
/// full-size ranges.
pub const RANGE_CACHE_FRAGMENTS: usize = 250_000;

/// Closed ranges' fragments, by (bucket, channel, start, end): bounded by
/// the number of fragments held, the oldest inserted evicted first.
/// Independent of the key that asked: every key allowed on a bucket sees
/// the same fragments.
pub struct RangeCache {
    inner: Mutex<Ranges>,
}

type RangeKey = (String, String, u64, u64);
/// A range's fragments, weighed by their count.
type Ranges = Fifo<RangeKey, (Arc<Vec<RangeFragment>>, Source)>;

impl RangeCache {
    pub fn new(max_fragments: usize) -> RangeCache {
        RangeCache {
            inner: Mutex::new(Fifo::new(max_fragments)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ranges> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached fragments of exactly this range, unless one of them
    /// starts before `oldest_kept_ms` (the channel's retention cutoff,
    /// [`crate::retention::oldest_kept_ms`]): it may have been swept, so the
    /// range is read again from the manifests, which are trimmed first.
    pub fn get(
        &self,
        bucket: &str,
        channel: &str,
        range: (u64, u64),
        oldest_kept_ms: u64,
    ) -> Option<(Vec<RangeFragment>, Source)> {
        let key = (bucket.to_owned(), channel.to_owned(), range.0, range.1);
        self.lock()
            .get(&key)
            .filter(|(f, _)| f.iter().all(|f| f.key_ms >= oldest_kept_ms))
            .map(|(f, s)| (f.as_ref().clone(), *s))
    }

    /// Keeps `frags` for the range, evicting the oldest entries to fit;
    /// a set larger than the whole cache is not kept.
    pub fn insert(
        &self,
        bucket: &str,
        channel: &str,
        range: (u64, u64),
        frags: &[RangeFragment],
        source: Source,
    ) {
        let key = (bucket.to_owned(), channel.to_owned(), range.0, range.1);
        self.lock()
            .insert(key, (Arc::new(frags.to_vec()), source), frags.len());
    }

    /// Fragments held.
    pub fn held(&self) -> usize {
        self.lock().used()
    }
}

/// Checks a requested range: `start < end`, at most `max_secs` long.
pub fn check_range(start: u64, end: u64, max_secs: u64) -> Result<(), VodError> {
    if end <= start {
        return Err(VodError::BadRange(format!(
            "end ({end}) must be after start ({start})"
        )));
    }
    if end - start > max_secs {
        return Err(VodError::BadRange(format!(
            "the range is {} s long; at most {max_secs} s are allowed (config vod.max_range_secs)",
            end - start
        )));
    }
    Ok(())
}

/// Reads the fragments of `[start_s, end_s)`, at most
/// `limits.max_fragments` of them from the manifests, or
/// `limits.max_fallback_fragments` from a listing: past that
/// `TooManyFragments`, found from the manifests, or while listing before
/// any HEAD.
pub async fn fragments(
    store: &Store,
    key_id: &str,
    bucket: &str,
    channel: &str,
    (start_s, end_s): (u64, u64),
    limits: Limits,
) -> Result<Found, VodError> {
    let (start_ms, end_ms) = (start_s.saturating_mul(1000), end_s.saturating_mul(1000));
    let prefix = index::manifest_prefix(channel);
    let end_key = index::manifest_key(channel, end_ms, "");
    // Delimited: a variant's manifests (`.livebucket/index/CHANNEL/<rung>/…`)
    // are not the channel's, and a rung named like `1080p` sorts among them.
    let manifests = store
        .list_children(key_id, bucket, &prefix, None, |k| k >= end_key.as_str())
        .await?;
    if !manifests.is_empty() {
        // One publisher per channel: sessions do not overlap, so only the last
        // session that started before the range can reach into it.
        let first = manifests
            .iter()
            .rposition(|k| index::manifest_start(k).is_some_and(|s| s <= start_ms))
            .unwrap_or(0);
        let wanted = &manifests[first..];
        let loaded: Vec<Manifest> = stream::iter(wanted.iter().cloned())
            .map(|key| async move {
                let bytes = store.get(key_id, bucket, &key).await?;
                serde_json::from_slice::<Manifest>(&bytes).map_err(|e| VodError::BadManifest {
                    key,
                    message: e.to_string(),
                })
            })
            .buffered(8)
            .try_collect()
            .await?;
        let selected = index::select(&loaded, start_ms, end_ms);
        if selected.len() > limits.max_fragments {
            return Err(VodError::TooManyFragments {
                max: limits.max_fragments,
                setting: "vod.max_fragments",
            });
        }
        // Sessions do not overlap: the last one to start before the range's
        // end having ended, every earlier one has too.
        let sessions_ended = loaded.last().is_none_or(|m| m.ended);
        return Ok(Found {
            frags: selected,
            source: Source::Index,
            sessions_ended,
        });
    }
    let max_fragments = limits.max_fallback_fragments;
    let media_prefix = format!("{channel}/");
    let first = format!("{media_prefix}{:013}", start_ms.saturating_sub(1));
    let last = fragment_key(channel, end_ms);
    // Stop listing one key past the cap: enough to refuse, without listing
    // (and later HEADing) a week of fragments.
    // (An atomic, not a Cell: the future holding it must be Send.)
    let listed_count = AtomicUsize::new(0);
    // Delimited: a variant's objects (`CHANNEL/<rung>/…`), its parts and
    // snapshots neither count against the cap nor end the listing early.
    let keys = store
        .list_children(key_id, bucket, &media_prefix, Some(&first), |k| {
            let n = listed_count.fetch_add(1, Ordering::Relaxed) + 1;
            k >= last.as_str() || n > max_fragments + 1
        })
        .await?;
    if keys.len() > max_fragments {
        return Err(VodError::TooManyFragments {
            max: max_fragments,
            setting: "vod.max_fallback_fragments",
        });
    }
    let timed: Vec<u64> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&media_prefix))
        .filter_map(parse_fragment_name)
        .collect();
    let listed: Vec<(u64, u64)> = stream::iter(timed)
        .map(|k| async move {
            let meta = store
                .metadata(key_id, bucket, &fragment_key(channel, k))
                .await?;
            let d = meta.get("extinf").and_then(|e| index::extinf_ms(e));
            Ok::<_, VodError>((k, d))
        })
        .buffered(32)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .filter_map(|(k, d)| d.map(|d| (k, d)))
        .collect();
    Ok(Found {
        frags: index::select_listed(&listed, start_ms, end_ms),
        source: Source::Listing,
        // No manifests: copies of finished streams (a live one writes
        // manifests), so only the range's age decides.
        sessions_ended: true,
    })
}

/// Renders the VOD playlist of the selected fragments.
pub fn render(
    bucket: &str,
    channel: &str,
    frags: &[RangeFragment],
    uris: &Uris,
) -> Result<String, VodError> {
    let mut out = head(frags);
    out.push_str(&vod_segments(&segments(bucket, channel, frags, uris)?));
    out.push_str(VOD_TAIL);
    Ok(out)
}

/// Segments rendered per chunk of a streamed playlist: a few hundred kB of
/// presigned URLs, so a week-long playlist never sits in memory whole.
const STREAM_CHUNK: usize = 1000;

/// [`render`] as a stream of text chunks, built as they are sent.
pub fn render_stream(
    bucket: String,
    channel: String,
    frags: Vec<RangeFragment>,
    uris: Uris,
) -> impl Stream<Item = Result<String, VodError>> + Send + 'static {
    let head = head(&frags);
    let chunks = (0..frags.len().div_ceil(STREAM_CHUNK)).map(move |i| {
        let part = &frags[i * STREAM_CHUNK..((i + 1) * STREAM_CHUNK).min(frags.len())];
        segments(&bucket, &channel, part, &uris).map(|s| vod_segments(&s))
    });
    stream::iter(
        std::iter::once(Ok(head))
            .chain(chunks)
            .chain(std::iter::once(Ok(VOD_TAIL.to_owned()))),
    )
}

fn head(frags: &[RangeFragment]) -> String {
    vod_head(target_duration_of(frags.iter().map(|f| f.duration_ms)), 0)
}

fn segments(
    bucket: &str,
    channel: &str,
    frags: &[RangeFragment],
    uris: &Uris,
) -> Result<Vec<Segment>, VodError> {
    frags
        .iter()
        .map(|f| {
            let name = fragment_name(f.key_ms);
            let key = fragment_key(channel, f.key_ms);
            let loc = |endpoint, path_style| S3Location {
                endpoint,
                path_style,
                bucket,
                key: &key,
            };
            let uri = match uris {
                Uris::Relative => name,
                Uris::Absolute { base } => format!("{}/{key}", base.trim_end_matches('/')),
                Uris::SigV4 {
                    presigner,
                    endpoint,
                    path_style,
                } => presigner.presign_get(&loc(endpoint, *path_style))?,
                Uris::SigV2 {
                    key_id,
                    secret,
                    expires,
                    endpoint,
                    path_style,
                } => presign_v2_get(key_id, secret, &loc(endpoint, *path_style), *expires)?,
            };
            Ok(Segment {
                uri,
                duration_ms: f.duration_ms,
                extinf: String::new(),
                discontinuity: f.discontinuity,
                program_date_time: f
                    .session_start
                    .then(|| {
                        OffsetDateTime::from_unix_timestamp_nanos(f.key_ms as i128 * 1_000_000).ok()
                    })
                    .flatten(),
            })
        })
        .collect()
}

/// Fragments of the range rendered as a playlist; `Empty` when there are none.
pub async fn build(
    store: &Store,
    key_id: &str,
    bucket: &str,
    channel: &str,
    range: (u64, u64),
    limits: Limits,
    uris: &Uris,
) -> Result<Vod, VodError> {
    let found = nonempty_fragments(store, key_id, bucket, channel, range, limits).await?;
    let playlist = render(bucket, channel, &found.frags, uris)?;
    Ok(Vod {
        playlist,
        source: found.source,
        segments: found.frags.len(),
    })
}

/// [`fragments`], with `Empty` when there are none.
pub async fn nonempty_fragments(
    store: &Store,
    key_id: &str,
    bucket: &str,
    channel: &str,
    range: (u64, u64),
    limits: Limits,
) -> Result<Found, VodError> {
    let found = fragments(store, key_id, bucket, channel, range, limits).await?;
    if found.frags.is_empty() {
        return Err(VodError::Empty {
            channel: channel.to_owned(),
            start: range.0,
            end: range.1,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_checks() {
        assert!(check_range(10, 10, 100).is_err());
        assert!(check_range(10, 5, 100).is_err());
        assert!(check_range(0, 101, 100).is_err());
        assert!(check_range(0, 100, 100).is_ok());
    }

    #[test]
    fn only_old_ranges_of_ended_sessions_are_closed() {
        let now = 1_800_000_000;
        assert!(is_closed(now - CLOSED_AFTER_SECS, true, now));
        assert!(!is_closed(now - CLOSED_AFTER_SECS + 1, true, now));
        assert!(!is_closed(now - 86_400, false, now), "a session still open");
        assert!(!is_closed(u64::MAX, true, now));
    }

    fn frags(n: u64) -> Vec<RangeFragment> {
        (0..n)
            .map(|i| RangeFragment {
                key_ms: i * 2000,
                duration_ms: 2000,
                discontinuity: false,
                session_start: i == 0,
            })
            .collect()
    }

    #[test]
    fn the_range_cache_is_bounded_by_fragments() {
        let cache = RangeCache::new(100);
        cache.insert("b", "cam", (0, 10), &frags(60), Source::Index);
        assert_eq!(cache.get("b", "cam", (0, 10), 0).unwrap().0.len(), 60);
        assert!(
            cache.get("b", "cam", (0, 11), 0).is_none(),
            "exactly the range"
        );
        assert!(cache.get("other", "cam", (0, 10), 0).is_none());
        // 60 + 50 > 100: the oldest goes.
        cache.insert("b", "cam", (10, 20), &frags(50), Source::Listing);
        assert!(cache.get("b", "cam", (0, 10), 0).is_none());
        assert_eq!(
            cache
                .get("b", "cam", (10, 20), 0)
                .map(|(f, s)| (f.len(), s)),
            Some((50, Source::Listing))
        );
        assert_eq!(cache.held(), 50);
        // Larger than the whole cache: not kept, nothing evicted.
        cache.insert("b", "cam", (20, 30), &frags(101), Source::Index);
        assert!(cache.get("b", "cam", (20, 30), 0).is_none());
        assert_eq!(cache.held(), 50);
    }

    #[test]
    fn a_cached_range_reaching_past_the_retention_cutoff_is_read_again() {
        let cache = RangeCache::new(100);
        cache.insert("b", "cam", (0, 10), &frags(5), Source::Index);
        // Fragments at 0, 2000, … 8000 ms.
        assert!(cache.get("b", "cam", (0, 10), 0).is_some());
        assert!(
            cache.get("b", "cam", (0, 10), 1).is_none(),
            "the first fragment may be swept"
        );
    }

    #[test]
    fn the_fallback_cap_never_exceeds_the_main_one() {
        let cfg = crate::config::VodConfig {
            max_fragments: 1000,
            max_fallback_fragments: 5000,
            ..Default::default()
        };
        assert_eq!(Limits::of(&cfg).max_fallback_fragments, 1000);
    }

    #[test]
    fn renders_relative_and_absolute() {
        let frags = vec![
            RangeFragment {
                key_ms: 1_700_000_000_000,
                duration_ms: 2000,
                discontinuity: false,
                session_start: true,
            },
            RangeFragment {
                key_ms: 1_700_000_100_000,
                duration_ms: 2500,
                discontinuity: true,
                session_start: true,
            },
        ];
        let rel = render("b", "cam", &frags, &Uris::Relative).unwrap();
        assert!(rel.contains("\n1700000000000.ts\n"), "{rel}");
        assert!(rel.contains("#EXT-X-TARGETDURATION:3"), "{rel}");
        assert!(rel.contains("#EXT-X-DISCONTINUITY\n"), "{rel}");
        assert!(rel.trim_end().ends_with("#EXT-X-ENDLIST"));
        assert_eq!(rel.matches("#EXT-X-PROGRAM-DATE-TIME").count(), 2);
        let abs = render(
            "b",
            "cam",
            &frags,
            &Uris::Absolute {
                base: "https://cdn/b/".into(),
            },
        )
        .unwrap();
        assert!(
            abs.contains("\nhttps://cdn/b/cam/1700000000000.ts\n"),
            "{abs}"
        );
    }

    #[test]
    fn streamed_playlist_is_the_rendered_one() {
        let frags: Vec<RangeFragment> = (0..2_345u64)
            .map(|i| RangeFragment {
                key_ms: 1_700_000_000_000 + i * 2000,
                duration_ms: 2000 + i % 7,
                discontinuity: i == 1500,
                session_start: i == 0 || i == 1500,
            })
            .collect();
        let whole = render("b", "cam", &frags, &Uris::Relative).unwrap();
        let chunks: Vec<String> = futures::executor::block_on(
            render_stream("b".into(), "cam".into(), frags, Uris::Relative).try_collect(),
        )
        .unwrap();
        assert_eq!(chunks.len(), 2 + 3, "head, three chunks, tail");
        assert_eq!(chunks.concat(), whole);
    }
}
