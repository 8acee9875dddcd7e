#![cfg(feature = "e2e")]
//! Publishing, end to end: ffmpeg → nginx-rtmp → livebucket → Garage.
//!
//! A signed push ends up in the bucket as MPEG-TS segments (with their
//! duration as metadata) and a playlist that lists only stored segments; once
//! the streamer stops, the playlist is finished and the bucket holds the whole
//! push. Push
//! URLs that are badly signed, name an unknown key, a bucket the key may not
//! write, or have expired are refused and store nothing.

mod common;

use std::collections::BTreeSet;

use common::hlscheck::{CheckedPlaylist, check_playlist};
use common::*;

/// A channel's live playlist as read from the bucket, and what was stored
/// beside it.
struct Stored {
    /// Every (key, size) under `CHANNEL/`, listed after the playlist was read.
    objects: Vec<(String, u64)>,
    playlist: CheckedPlaylist,
    /// The object keys of the playlist's segments, in playlist order.
    segment_keys: Vec<String>,
}

/// Waits until `channel`'s playlist is `ready`. Every time it reads the
/// playlist it asserts that the playlist is valid (RFC 8216,
/// `common::hlscheck`) and that every segment it lists is already in the
/// bucket: livebucket uploads a playlist only after its segments. Fails fast
/// if the push fails.
async fn wait_for_playlist(
    s3: &S3,
    channel: &str,
    push: &mut Push,
    what: &str,
    ready: impl Fn(&CheckedPlaylist) -> Result<(), String>,
) -> Stored {
    let playlist_key = format!("{channel}/index.m3u8");
    wait_until(
        &format!("s3://{BUCKET}/{playlist_key}: {what}"),
        secs(60),
        millis(500),
        async || {
            if let Some(status) = push.try_wait().filter(|s| !s.success()) {
                panic!("the push failed ({status}); ffmpeg's log:\n{}", push.log());
            }
            let before = s3.list(BUCKET, &format!("{channel}/")).await;
            if !before.iter().any(|(k, _)| *k == playlist_key) {
                return Err(format!("no playlist yet; objects: {before:?}"));
            }
            // Playlist first, then the listing: whatever the playlist names
            // must be in a listing made after it.
            let playlist = String::from_utf8(s3.get(BUCKET, &playlist_key).await)
                .expect("the playlist is not UTF-8");
            let objects = s3.list(BUCKET, &format!("{channel}/")).await;
            let stored: BTreeSet<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
            let checked = check_playlist(&playlist).unwrap_or_else(|violations| {
                panic!("{playlist_key} is not a valid playlist:\n{violations}\n{playlist}")
            });
            let listed = segment_keys(&playlist_key, &checked.uris);
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
        },
    )
    .await
}

/// The object keys of segment URIs in the playlist stored at `playlist_key`:
/// the URIs must be relative, and resolve against the playlist's key.
fn segment_keys(playlist_key: &str, uris: &[String]) -> Vec<String> {
    let dir = playlist_key.rsplit_once('/').map_or("", |(d, _)| d);
    uris.iter()
        .map(|uri| {
            assert!(
                !uri.contains("://") && !uri.starts_with('/') && !uri.contains('?'),
                "segment URI {uri:?} in {playlist_key} is not a plain relative URI"
            );
            let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
            for part in uri.split('/') {
                match part {
                    "." | "" => {}
                    ".." => {
                        parts.pop();
                    }
                    p => parts.push(p),
                }
            }
            parts.join("/")
        })
        .collect()
}

/// The `extinf` user metadata of a segment, which must be a positive decimal
/// number of seconds.
fn extinf_of(key: &str, head: &Head) -> f64 {
    let extinf = head
        .metadata
        .get("extinf")
        .unwrap_or_else(|| panic!("{key} has no extinf metadata: {head:?}"));
    let is_decimal = !extinf.is_empty()
        && extinf.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && extinf.bytes().filter(|&b| b == b'.').count() <= 1;
    let seconds: f64 = extinf.parse().unwrap_or(0.0);
    assert!(
        is_decimal && seconds > 0.0 && seconds.is_finite(),
        "{key}: extinf {extinf:?} is not a positive decimal"
    );
    seconds
}

/// Long enough to outlive nginx's first `on_update` (every 10 s).
const PUSH_SECONDS: u32 = 16;

#[tokio::test]
async fn signed_push_stores_segments_and_playlist() {
    let stack = Stack::start("publish");
    let channel = "cam1";
    let url = stack.sign_push(channel);
    let mut push = stack.push(&url, PUSH_SECONDS);

    let stored = wait_for_playlist(
        &stack.s3,
        channel,
        &mut push,
        "two segments listed",
        at_least_segments(2),
    )
    .await;

    let segments: Vec<&(String, u64)> = stored
        .objects
        .iter()
        .filter(|(k, _)| k.ends_with(".ts"))
        .collect();
    assert!(segments.len() >= 2, "segments: {:?}", stored.objects);
    for (key, size) in &segments {
        assert!(*size > 0, "{key} is empty");
        let head = stack.s3.head(BUCKET, key).await;
        assert_eq!(
            head.content_type.as_deref(),
            Some("video/mp2t"),
            "{key}: {head:?}"
        );
        let seconds = extinf_of(key, &head);
        // A listed segment's metadata and its #EXTINF agree.
        if let Some(i) = stored.segment_keys.iter().position(|k| k == key) {
            let listed = stored.playlist.durations[i];
            assert!(
                (seconds - listed).abs() < 0.002,
                "{key}: extinf metadata {seconds} but #EXTINF:{listed} in the playlist"
            );
        }
    }

    let playlist_key = format!("{channel}/index.m3u8");
    let head = stack.s3.head(BUCKET, &playlist_key).await;
    assert_eq!(
        head.content_type.as_deref(),
        Some("application/vnd.apple.mpegurl"),
        "{playlist_key}: {head:?}"
    );
    assert!(
        head.cache_control.as_deref().is_some_and(|c| !c.is_empty()),
        "{playlist_key} has no Cache-Control: {head:?}"
    );

    let first = &stored.segment_keys[0];
    let local = stack.dir.join("segment.ts");
    std::fs::write(&local, stack.s3.get(BUCKET, first).await).unwrap();
    let probe = ffprobe(&local);
    assert!(
        probe.format_name.split(',').any(|f| f == "mpegts"),
        "{first} is not MPEG-TS: {probe:?}"
    );
    for (kind, codec) in [("video", "h264"), ("audio", "aac")] {
        assert!(
            probe.streams.iter().any(|(t, c)| t == kind && c == codec),
            "{first} has no {kind} stream in {codec}: {probe:?}"
        );
    }

    let status = push.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());

    // Once the streamer is gone the playlist is finished, and the bucket
    // holds the whole push, not just its start.
    let ended = wait_for_playlist(&stack.s3, channel, &mut push, "#EXT-X-ENDLIST", |p| {
        if p.ended {
            Ok(())
        } else {
            Err("no #EXT-X-ENDLIST yet".into())
        }
    })
    .await;
    let mut stored_seconds = 0.0;
    for (key, _) in ended.objects.iter().filter(|(k, _)| k.ends_with(".ts")) {
        stored_seconds += extinf_of(key, &stack.s3.head(BUCKET, key).await);
    }
    assert!(
        stored_seconds >= f64::from(PUSH_SECONDS) - 4.0,
        "a {PUSH_SECONDS} s push stored only {stored_seconds:.3} s of segments \
         (nginx's and livebucket's logs follow): {:?}",
        ended.objects
    );
}

/// A `ready` check for [`wait_for_playlist`].
fn at_least_segments(n: usize) -> impl Fn(&CheckedPlaylist) -> Result<(), String> {
    move |p| {
        if p.uris.len() >= n {
            Ok(())
        } else {
            Err(format!("{} of {n} segments listed", p.uris.len()))
        }
    }
}

#[tokio::test]
async fn bad_push_urls_are_refused_and_store_nothing() {
    let stack = Stack::start("refused");
    let base = stack.nginx.push_base();
    let key = stack.key().clone();
    let in_an_hour = unix_now() + 3600;

    // Signed here, not by livebucket: if this control is accepted, the
    // signatures below differ from a good one only in what each case changes.
    let control_url = push_url(&base, "control", BUCKET, &key, in_an_hour);

    let signed = stack.sign_push("wrong-signature");
    let expires: u64 = query_param(&signed, "Expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no Expires in {signed}"));
    let forged = push_signature("not-the-secret-at-all", BUCKET, "wrong-signature", expires);
    let stranger = Key {
        id: "GK0000000000000000000000ff".into(),
        secret: garage::random_hex(32),
    };
    let cases: Vec<(&str, &str, String)> = vec![
        (
            "wrong-signature",
            BUCKET,
            with_query_param(&signed, "Signature", &forged),
        ),
        (
            "unknown-key",
            BUCKET,
            push_url(&base, "unknown-key", BUCKET, &stranger, in_an_hour),
        ),
        (
            "bucket-not-allowed",
            OTHER_BUCKET,
            push_url(&base, "bucket-not-allowed", OTHER_BUCKET, &key, in_an_hour),
        ),
        (
            "expired",
            BUCKET,
            push_url(&base, "expired", BUCKET, &key, unix_now() - 3600),
        ),
    ];

    let mut control = stack.push(&control_url, 30);
    let mut refused: Vec<(&str, &str, Push)> = cases
        .iter()
        .map(|(channel, bucket, url)| (*channel, *bucket, stack.push(url, 10)))
        .collect();

    for (channel, _, push) in &mut refused {
        let status = push.exit_within(secs(20)).await;
        assert!(
            !status.success(),
            "the {channel} push was accepted (ffmpeg: {status}); its log:\n{}",
            push.log()
        );
    }

    // The control reaching the bucket shows the pipeline ran while the bad
    // pushes were tried.
    wait_for_playlist(
        &stack.s3,
        "control",
        &mut control,
        "two segments listed",
        at_least_segments(2),
    )
    .await;
    for (channel, bucket, _) in &refused {
        for b in [*bucket, BUCKET] {
            let objects = stack.s3.list(b, &format!("{channel}/")).await;
            assert!(
                objects.is_empty(),
                "the refused {channel} push stored objects in {b}: {objects:?}"
            );
        }
    }
    stack
        .livebucket
        .get("/healthz")
        .expect("livebucket stopped answering");
}

/// `livebucket sign push` produces the documented URL, signature included, so
/// the URLs this file forges test what they claim to.
#[test]
fn cli_signature_matches_documented_algorithm() {
    let dir = TestDir::new("sign");
    let key = Key {
        id: "GK000000000000000000000001".into(),
        secret: "0123456789abcdef0123456789abcdef".into(),
    };
    let config = config_toml(&ConfigParams {
        listen: free_addr(),
        state_dir: &dir.subdir("state"),
        hls_dir: &dir.join("hls"),
        relay_url: "rtmp://127.0.0.1:1935/hls",
        s3_endpoint: "http://127.0.0.1:3900",
        keys: &[(&key, &["media"])],
        extra: "",
    });
    let config_path = dir.join("livebucket.toml");
    std::fs::write(&config_path, config).unwrap();
    let base = "rtmp://127.0.0.1:1935/live";
    let expires = unix_now() + 600;

    let url = sign_push_expiring_at(&config_path, "media", "cam1", base, expires);
    let expected = push_url(base, "cam1", "media", &key, expires);
    assert_eq!(
        url.split_once('?').map(|(path, _)| path),
        Some("rtmp://127.0.0.1:1935/live/cam1"),
        "path of {url}"
    );
    for name in ["Bucket", "AccessKeyId", "Expires", "Signature"] {
        assert_eq!(
            query_param(&url, name),
            query_param(&expected, name),
            "{name} in {url} (expected {expected})"
        );
    }
}
