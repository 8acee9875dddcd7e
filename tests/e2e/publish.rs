//! Publishing, end to end: ffmpeg → nginx-rtmp → livebucket → Garage.
//!
//! A signed push ends up in the bucket as MPEG-TS segments (with their
//! duration as metadata) and a playlist that lists only stored segments; once
//! the streamer stops, the playlist is finished and the bucket holds the whole
//! push. Push
//! URLs that are badly signed, name an unknown key, a bucket the key may not
//! write, or have expired are refused and store nothing.

use crate::common;

use common::stored::{at_least_segments, ended, wait_for_playlist};
use common::*;

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
    assert_put_path(&stack, "PUTs go direct to the store");
    push_stores_segments_and_playlist(&stack).await;
}

/// The same push with every PUT through the AWS SDK (the path `https://`
/// stores take), fragments read in the request's task.
#[tokio::test]
async fn signed_push_through_the_sdk() {
    let stack = Stack::start_with("publish-sdk", "direct_put = false\n");
    assert_put_path(&stack, "through the AWS SDK: [s3] direct_put = false");
    push_stores_segments_and_playlist(&stack).await;
}

/// And with the body's SHA-256 in every signature: the SDK reads fragments
/// through its own file body.
#[tokio::test]
async fn signed_push_with_signed_payloads() {
    let stack = Stack::start_with("publish-signed", "sign_payload = true\n");
    assert_put_path(&stack, "through the AWS SDK: s3.sign_payload");
    push_stores_segments_and_playlist(&stack).await;
}

/// Through the SDK on Ceph RGW: with payload signing off (the default) and
/// on (a signed body, not `aws-chunked`, which RGW 16.2 refuses with
/// trailing checksums). The direct path runs on RGW in the pipeline tests.
#[tokio::test]
async fn rgw_signed_push_through_the_sdk() {
    let stack = Stack::start_on(StoreKind::Rgw, "publish-sdk", "direct_put = false\n");
    assert_put_path(&stack, "through the AWS SDK: [s3] direct_put = false");
    push_stores_segments_and_playlist(&stack).await;
}

#[tokio::test]
async fn rgw_signed_push_with_signed_payloads() {
    let stack = Stack::start_on(StoreKind::Rgw, "publish-signed", "sign_payload = true\n");
    assert_put_path(&stack, "through the AWS SDK: s3.sign_payload");
    push_stores_segments_and_playlist(&stack).await;
}

fn assert_put_path(stack: &Stack, logged: &str) {
    let log = stack.livebucket.log();
    assert!(
        log.contains(logged),
        "no {logged:?} in livebucket's log:\n{log}"
    );
}

async fn push_stores_segments_and_playlist(stack: &Stack) {
    let channel = "cam1";
    let url = stack.sign_push(channel);
    let mut push = stack.push(&url, PUSH_SECONDS);

    let stored = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "two segments listed",
        at_least_segments(2),
    )
    .await;

    let segments: Vec<&(String, u64)> = stored
        .objects
        .iter()
        .filter(|(k, _)| common::is_fragment_key(k))
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
    let done = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "#EXT-X-ENDLIST",
        ended,
    )
    .await;
    let mut stored_seconds = 0.0;
    for (key, _) in done
        .objects
        .iter()
        .filter(|(k, _)| common::is_fragment_key(k))
    {
        stored_seconds += extinf_of(key, &stack.s3.head(BUCKET, key).await);
    }
    assert!(
        stored_seconds >= f64::from(PUSH_SECONDS) - 4.0,
        "a {PUSH_SECONDS} s push stored only {stored_seconds:.3} s of segments \
         (nginx's and livebucket's logs follow): {:?}",
        done.objects
    );
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
        "index.m3u8",
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
        stat_url: None,
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
