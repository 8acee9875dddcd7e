//! A time range of a channel → a VOD playlist (like OSS PostVodPlaylist /
//! GetVodPlaylist).
//!
//! Fragments come from the session manifests of [`crate::index`] (a few
//! requests for any range), or, for buckets without manifests, from listing
//! `CHANNEL/<epoch-ms>.ts` and reading each one's `extinf` metadata. Segment
//! URIs are relative (next to the fragments, for public buckets and CDNs),
//! absolute under a base URL, or presigned (SigV4, or SigV2 for legacy
//! servers) for private buckets.

use futures::stream::{self, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use crate::auth::presign::{PresignError, S3Location, SigV4Presigner, presign_v2_get};
use crate::hls::{Segment, render_vod};
use crate::index::{self, Manifest, RangeFragment};
use crate::store::{Store, StoreError, fragment_key, fragment_name};

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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("presigning segment URLs: {0}")]
    Presign(#[from] PresignError),
    #[error("manifest {key} is unreadable: {message}")]
    BadManifest { key: String, message: String },
}

/// How segment URIs are written.
pub enum Uris<'a> {
    Relative,
    Absolute {
        base: &'a str,
    },
    SigV4 {
        presigner: SigV4Presigner,
        endpoint: &'a str,
        path_style: bool,
    },
    SigV2 {
        key_id: &'a str,
        secret: &'a str,
        expires: u64,
        endpoint: &'a str,
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

/// Reads the fragments of `[start_s, end_s)`.
pub async fn fragments(
    store: &Store,
    key_id: &str,
    bucket: &str,
    channel: &str,
    start_s: u64,
    end_s: u64,
) -> Result<(Vec<RangeFragment>, Source), VodError> {
    let (start_ms, end_ms) = (start_s.saturating_mul(1000), end_s.saturating_mul(1000));
    let prefix = index::manifest_prefix(channel);
    let end_key = index::manifest_key(channel, end_ms, "");
    let manifests = store
        .list(key_id, bucket, &prefix, None, |k| k >= end_key.as_str())
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
        return Ok((index::select(&loaded, start_ms, end_ms), Source::Index));
    }
    let media_prefix = format!("{channel}/");
    let first = format!("{media_prefix}{:013}", start_ms.saturating_sub(1));
    let last = fragment_key(channel, end_ms);
    let keys = store
        .list(key_id, bucket, &media_prefix, Some(&first), |k| {
            k >= last.as_str()
        })
        .await?;
    let timed: Vec<u64> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&media_prefix))
        .filter(|n| n.len() == 16 && n.ends_with(".ts"))
        .filter_map(|n| n[..13].parse().ok())
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
    Ok((
        index::select_listed(&listed, start_ms, end_ms),
        Source::Listing,
    ))
}

/// Renders the VOD playlist of the selected fragments.
pub fn render(
    bucket: &str,
    channel: &str,
    frags: &[RangeFragment],
    uris: &Uris<'_>,
) -> Result<String, VodError> {
    let segments = frags
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
        .collect::<Result<Vec<_>, VodError>>()?;
    Ok(render_vod(&segments, 0))
}

/// Fragments of the range rendered as a playlist; `Empty` when there are none.
pub async fn build(
    store: &Store,
    key_id: &str,
    bucket: &str,
    channel: &str,
    start_s: u64,
    end_s: u64,
    uris: &Uris<'_>,
) -> Result<Vod, VodError> {
    let (frags, source) = fragments(store, key_id, bucket, channel, start_s, end_s).await?;
    if frags.is_empty() {
        return Err(VodError::Empty {
            channel: channel.to_owned(),
            start: start_s,
            end: end_s,
        });
    }
    let playlist = render(bucket, channel, &frags, uris)?;
    Ok(Vod {
        playlist,
        source,
        segments: frags.len(),
    })
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
                base: "https://cdn/b/",
            },
        )
        .unwrap();
        assert!(
            abs.contains("\nhttps://cdn/b/cam/1700000000000.ts\n"),
            "{abs}"
        );
    }
}
