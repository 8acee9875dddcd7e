//! A channel's live playlist as read from the bucket, checked on every read:
//! it is a valid RFC 8216 playlist (`hlscheck::check_playlist`) and every
//! segment it lists is in a bucket listing made after reading it (livebucket
//! uploads a playlist only after its segments).

use std::collections::BTreeSet;

use super::ffmpeg::Push;
use super::hlscheck::{CheckedPlaylist, check_playlist};
use super::s3::S3;
use super::{BUCKET, millis, secs, wait_until};

/// A channel's live playlist as read from the bucket, and what was stored
/// beside it.
pub struct Stored {
    /// Every (key, size) under `CHANNEL/`, listed after the playlist was read.
    pub objects: Vec<(String, u64)>,
    pub playlist: CheckedPlaylist,
    /// The object keys of the playlist's segments, in playlist order.
    pub segment_keys: Vec<String>,
}

impl Stored {
    /// The `.ts` keys of [`Stored::objects`].
    pub fn segment_objects(&self) -> BTreeSet<&str> {
        self.objects
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| crate::common::is_fragment_key(k))
            .collect()
    }
}

/// Waits until `CHANNEL/PLAYLIST` in [`BUCKET`] is `ready`. Every read
/// asserts what [`read_playlist`] does. Fails fast if `push` fails.
pub async fn wait_for_playlist(
    s3: &S3,
    channel: &str,
    playlist_name: &str,
    push: &mut Push,
    what: &str,
    ready: impl Fn(&CheckedPlaylist) -> Result<(), String>,
) -> Stored {
    let playlist_key = format!("{channel}/{playlist_name}");
    wait_until(
        &format!("s3://{BUCKET}/{playlist_key}: {what}"),
        secs(60),
        millis(500),
        async || {
            if let Some(status) = push.try_wait().filter(|s| !s.success()) {
                panic!("the push failed ({status}); ffmpeg's log:\n{}", push.log());
            }
            read_playlist(s3, &playlist_key, &ready).await
        },
    )
    .await
}

/// One read of the playlist at `playlist_key` in [`BUCKET`]: `Err` while it
/// is missing or not `ready`. Asserts that it is valid (RFC 8216,
/// `common::hlscheck`) and that every segment it lists is in a listing of
/// its directory made after the read.
pub async fn read_playlist(
    s3: &S3,
    playlist_key: &str,
    ready: &impl Fn(&CheckedPlaylist) -> Result<(), String>,
) -> Result<Stored, String> {
    let prefix = format!("{}/", playlist_key.rsplit_once('/').unwrap().0);
    let before = s3.list(BUCKET, &prefix).await;
    if !before.iter().any(|(k, _)| k == playlist_key) {
        return Err(format!("no playlist yet; objects: {before:?}"));
    }
    // Playlist first, then the listing: whatever the playlist names must be
    // in a listing made after it.
    let playlist =
        String::from_utf8(s3.get(BUCKET, playlist_key).await).expect("the playlist is not UTF-8");
    let objects = s3.list(BUCKET, &prefix).await;
    let stored: BTreeSet<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
    let checked = check_playlist(&playlist).unwrap_or_else(|violations| {
        panic!("{playlist_key} is not a valid playlist:\n{violations}\n{playlist}")
    });
    let listed = segment_keys(playlist_key, &checked.uris);
    let missing: Vec<&String> = listed
        .iter()
        .filter(|k| !stored.contains(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the playlist lists segments that are not in the bucket: {missing:?}\n\
         playlist:\n{playlist}\nobjects: {objects:?}"
    );
    ready(&checked).map_err(|why| format!("{why}; the playlist:\n{playlist}"))?;
    Ok(Stored {
        objects,
        playlist: checked,
        segment_keys: listed,
    })
}

/// The object keys of segment URIs in the playlist stored at `playlist_key`.
/// The URIs must be plain relative names (no scheme, no leading `/`, no
/// query, no empty, `.` or `..` segment), so that the key a player resolves
/// is the URI appended to the playlist's directory.
pub fn segment_keys(playlist_key: &str, uris: &[String]) -> Vec<String> {
    let dir = playlist_key.rsplit_once('/').map_or("", |(d, _)| d);
    uris.iter()
        .map(|uri| {
            assert!(
                !uri.contains("://")
                    && !uri.starts_with('/')
                    && !uri.contains('?')
                    && !uri.split('/').any(|p| matches!(p, "" | "." | "..")),
                "segment URI {uri:?} in {playlist_key} is not a plain relative URI"
            );
            if dir.is_empty() {
                uri.clone()
            } else {
                format!("{dir}/{uri}")
            }
        })
        .collect()
}

/// A `ready` check: at least `n` segments listed.
pub fn at_least_segments(n: usize) -> impl Fn(&CheckedPlaylist) -> Result<(), String> {
    move |p| {
        if p.uris.len() >= n {
            Ok(())
        } else {
            Err(format!("{} of {n} segments listed", p.uris.len()))
        }
    }
}

/// A `ready` check: the playlist ends with `#EXT-X-ENDLIST`.
pub fn ended(p: &CheckedPlaylist) -> Result<(), String> {
    if p.ended {
        Ok(())
    } else {
        Err("no #EXT-X-ENDLIST yet".into())
    }
}
