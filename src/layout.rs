//! The bucket's object key layout: the keys of media, playlists, LL-HLS
//! parts, VOD manifests and snapshots are made here, and each kind that is
//! read back from a listing is parsed here too (format and parse are tested
//! as inverses). Two kinds live with their owners: channel records
//! (`oss::channel`) and the conditional-PUT probe (`store::conditional`,
//! `.livebucket/probe/`).
//!
//! nginx's own fragment names in its HLS directory (`<epoch ms>.ts`) are
//! parsed here too ([`name_ms`]).
//!
//! Layout (compatible with tools that already read such buckets):
//! - fragments: `CHANNEL/<13-digit epoch ms>.ts`;
//! - live playlists: `CHANNEL/<playlist name>` (default `index.m3u8`);
//! - LL-HLS parts: `CHANNEL/.ll/<recording id>/<13-digit fragment ms>-<3-digit part>.ts`;
//! - VOD manifests: `.livebucket/index/CHANNEL/<13-digit start ms>-<recording id>.json`
//!   (`session::recording_id`; manifests written before carry the session id);
//! - channel records: `.livebucket/channels/…` (`oss::channel`);
//! - snapshots, in the channel's `Snapshot/DestBucket`:
//!   `CHANNEL/snapshot/<13-digit epoch ms>.jpg` and `…/latest.jpg`, prefixed
//!   with `BUCKET/` when the destination is not the channel's own bucket.

/// `CHANNEL/<13-digit epoch ms>.ts`
pub fn fragment_key(channel: &str, key_ms: u64) -> String {
    format!("{channel}/{}", fragment_name(key_ms))
}

/// The fragment's name relative to its playlist: `<13-digit epoch ms>.ts`.
pub fn fragment_name(key_ms: u64) -> String {
    format!("{key_ms:013}.ts")
}

/// The epoch ms of a fragment name [`fragment_name`] made.
pub fn parse_fragment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".ts")?;
    if digits.len() != 13 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The channel and epoch ms of a key [`fragment_key`] made.
pub fn parse_fragment_key(key: &str) -> Option<(&str, u64)> {
    let (channel, name) = key.rsplit_once('/')?;
    Some((channel, parse_fragment_name(name)?))
}

/// Epoch milliseconds from the name nginx gave a fragment in its HLS
/// directory with `hls_fragment_naming system` (`1732571234567.ts`); unlike
/// [`parse_fragment_name`], any number of digits is accepted.
pub fn name_ms(name: &str) -> Option<u64> {
    name.strip_suffix(".ts")?.parse().ok()
}

/// Where a channel's LL-HLS part objects live: `CHANNEL/.ll/`.
pub fn parts_root(channel: &str) -> String {
    format!("{channel}/.ll/")
}

/// `CHANNEL/.ll/<recording>/`: one session's parts (`recording` is its
/// [`crate::session::recording_id`], never the session id).
pub fn parts_prefix(channel: &str, recording: &str) -> String {
    format!("{}{recording}/", parts_root(channel))
}

/// A part's name relative to its channel's playlist:
/// `.ll/<recording>/<13-digit nginx fragment ms>-<3-digit part>.ts`. Never a
/// [`fragment_name`], so neither VOD's listing nor the index takes it for a
/// fragment.
pub fn part_name(recording: &str, fragment_ms: u64, part: usize) -> String {
    format!(".ll/{recording}/{fragment_ms:013}-{part:03}.ts")
}

/// `CHANNEL/` + [`part_name`].
pub fn part_key(channel: &str, recording: &str, fragment_ms: u64, part: usize) -> String {
    format!("{channel}/{}", part_name(recording, fragment_ms, part))
}

/// The recording a key under [`parts_root`] belongs to.
pub fn parse_part_recording<'a>(channel: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(channel)?
        .strip_prefix("/.ll/")?
        .split_once('/')
        .map(|(r, _)| r)
}

/// `CHANNEL/<playlist name>`
pub fn playlist_key(channel: &str, playlist: &str) -> String {
    format!("{channel}/{playlist}")
}

/// Where livebucket's VOD manifests live.
pub const INDEX_PREFIX: &str = ".livebucket/index/";

/// `.livebucket/index/CHANNEL/`
pub fn manifest_prefix(channel: &str) -> String {
    format!("{INDEX_PREFIX}{channel}/")
}

/// `.livebucket/index/CHANNEL/<13-digit start ms>-<recording>.json`: listed
/// in time order. `recording` is the session's
/// [`crate::session::recording_id`] (the session id itself in manifests
/// written before it), never read back but for grouping.
pub fn manifest_key(channel: &str, started_ms: u64, session: &str) -> String {
    format!(
        "{}{started_ms:013}-{session}.json",
        manifest_prefix(channel)
    )
}

/// The start time (ms) and recording (or, in older keys, session) id of a
/// key [`manifest_key`] made.
pub fn parse_manifest_key(key: &str) -> Option<(u64, &str)> {
    let name = key.rsplit('/').next()?.strip_suffix(".json")?;
    let (ms, session) = name.split_at_checked(13)?;
    if !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ms.parse().ok()?, session.strip_prefix('-')?))
}

/// Where the snapshots of `bucket`'s `channel` go in `dest_bucket`:
/// `CHANNEL/snapshot/` in the channel's own bucket, `BUCKET/CHANNEL/snapshot/`
/// in another one, so that same-named channels of two buckets sharing a
/// destination never share a key (`latest.jpg` above all). Neither bucket
/// nor channel names hold a `/`, so the two forms never meet either.
pub fn snapshot_prefix(bucket: &str, channel: &str, dest_bucket: &str) -> String {
    if bucket == dest_bucket {
        format!("{channel}/snapshot/")
    } else {
        format!("{bucket}/{channel}/snapshot/")
    }
}

/// `PREFIX<13-digit epoch ms>.jpg`: the snapshot taken from the fragment
/// whose key is `key_ms`.
pub fn snapshot_key(prefix: &str, key_ms: u64) -> String {
    format!("{prefix}{key_ms:013}.jpg")
}

/// `PREFIXlatest.jpg`: the newest snapshot, at a stable key for thumbnails.
pub fn latest_snapshot_key(prefix: &str) -> String {
    format!("{prefix}latest.jpg")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nginx_fragment_names_give_their_ms() {
        assert_eq!(name_ms("1732571234567.ts"), Some(1_732_571_234_567));
        assert_eq!(name_ms("index.m3u8"), None);
    }

    proptest! {
        #[test]
        fn keys_parse_back(channel in "[a-zA-Z0-9_-]{1,40}", ms in 0u64..10_000_000_000_000, session in "[0-9a-f]{32}") {
            let key = fragment_key(&channel, ms);
            prop_assert_eq!(parse_fragment_key(&key), Some((channel.as_str(), ms)));
            prop_assert_eq!(parse_fragment_name(&fragment_name(ms)), Some(ms));
            let key = manifest_key(&channel, ms, &session);
            prop_assert_eq!(parse_manifest_key(&key), Some((ms, session.as_str())));
        }
    }

    #[test]
    fn manifests_keyed_by_a_session_or_a_recording_id_read_alike() {
        // Manifests written before recording ids carry the session id.
        let id = crate::session::new_session_id();
        for tag in [id.clone(), crate::session::recording_id(&id)] {
            let key = manifest_key("cam", 5, &tag);
            assert_eq!(parse_manifest_key(&key), Some((5, tag.as_str())));
        }
    }

    #[test]
    fn layout() {
        assert_eq!(
            fragment_key("cam", 1_732_571_234_567),
            "cam/1732571234567.ts"
        );
        assert_eq!(playlist_key("cam", "index.m3u8"), "cam/index.m3u8");
        let part = part_key("cam", "abc", 1_732_571_234_567, 2);
        assert_eq!(part, "cam/.ll/abc/1732571234567-002.ts");
        assert_eq!(parse_fragment_key(&part), None, "a part is no fragment");
        assert_eq!(parse_part_recording("cam", &part), Some("abc"));
        assert!(part.starts_with(&parts_prefix("cam", "abc")));
        assert_eq!(
            manifest_key("cam", 1_732_571_234_567, "abc"),
            ".livebucket/index/cam/1732571234567-abc.json"
        );
        assert_eq!(snapshot_prefix("b", "cam", "b"), "cam/snapshot/");
        assert_eq!(snapshot_prefix("b", "cam", "d"), "b/cam/snapshot/");
        assert_eq!(
            snapshot_key("cam/snapshot/", 5),
            "cam/snapshot/0000000000005.jpg"
        );
        // Not ours: other names in a channel's prefix.
        for name in [
            "index.m3u8",
            "12.ts",
            "1732571234567.ts.tmp",
            "173257123456x.ts",
        ] {
            assert_eq!(parse_fragment_name(name), None, "{name}");
        }
        assert_eq!(
            parse_manifest_key(".livebucket/index/cam/17325712345-x.json"),
            None
        );
    }

    #[test]
    fn key_layout() {
        assert_eq!(
            fragment_key("cam1", 1_732_571_234_567),
            "cam1/1732571234567.ts"
        );
        assert_eq!(fragment_name(5), "0000000000005.ts");
        assert_eq!(playlist_key("cam1", "index.m3u8"), "cam1/index.m3u8");
        let own = snapshot_prefix("media", "cam1", "media");
        assert_eq!(own, "cam1/snapshot/");
        assert_eq!(
            snapshot_key(&own, 1_732_571_234_567),
            "cam1/snapshot/1732571234567.jpg"
        );
        assert_eq!(latest_snapshot_key(&own), "cam1/snapshot/latest.jpg");
        let other = snapshot_prefix("media", "cam1", "thumbs");
        assert_eq!(
            latest_snapshot_key(&other),
            "media/cam1/snapshot/latest.jpg"
        );
        assert_eq!(
            snapshot_key(&other, 5),
            "media/cam1/snapshot/0000000000005.jpg"
        );
    }
}
