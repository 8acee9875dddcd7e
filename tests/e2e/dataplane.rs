//! The data plane under load from viewers who hold no secret, end to end
//! (Garage and livebucket; nginx idles):
//!
//! - readers that stall in the middle of VOD playlists do not keep the next
//!   VOD call out (the build slot is released once the fragment list is
//!   known, before the body is streamed);
//! - many parallel readers of one long stored playlist through `/play` are
//!   served from one signed copy: at most `play.max_concurrent_renders`
//!   renders, 503 with `Retry-After` for those that cannot wait, and
//!   livebucket's memory does not grow with the number of readers;
//! - the listing fallback (a bucket copy without manifests, one HEAD per
//!   fragment) has its own, lower cap, and a closed range is built once:
//!   replaying the request is answered from the range cache.

use crate::common;

use std::process::{Command, Stdio};

use ::livebucket::index::{IndexedFragment, Manifest, manifest_key};
use common::httpc;
use common::livebucket::BIN;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `livebucket ARGS…`'s first line of output; panics unless it succeeds.
fn livebucket_line(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run livebucket {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "livebucket {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().next().unwrap_or_default().trim().to_owned()
}

/// A GET of the VOD API for `channel` over `[start, end)` with presigned
/// segment URLs, signed by `livebucket sign vod`.
fn vod_get_url(stack: &Stack, channel: &str, start: u64, end: u64) -> String {
    let (start, end) = (start.to_string(), end.to_string());
    let base = stack.livebucket.url();
    livebucket_line(&[
        "sign",
        "vod",
        "--config",
        stack.livebucket.config_path().to_str().unwrap(),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--start",
        &start,
        "--end",
        &end,
        "--urls",
        "presigned",
        "--expires-in",
        "600",
        "--via-livebucket",
        &base,
    ])
}

/// Stores a finished session manifest of `count` 2 s fragments of
/// `channel` starting at `start_ms` (the fragments themselves are not
/// needed to list them).
async fn store_manifest(stack: &Stack, channel: &str, start_ms: u64, count: u64) {
    let manifest = Manifest {
        version: 1,
        session: "dataplane".into(),
        channel: channel.into(),
        started_ms: start_ms,
        ended: true,
        fragments: (0..count)
            .map(|i| IndexedFragment {
                k: start_ms + i * 2000,
                d: 2000,
            })
            .collect(),
    };
    stack
        .s3
        .put(
            BUCKET,
            &manifest_key(channel, start_ms, "dataplane"),
            serde_json::to_vec(&manifest).unwrap(),
            "application/json",
        )
        .await;
}

/// Sends `GET url` on a connection whose receive buffer is small, reads the
/// response head and a first piece of the body, then stops reading: a
/// viewer that stalls mid-body. The connection is returned, still open.
async fn stalled_reader(url: &str) -> tokio::net::TcpStream {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(authority.parse().unwrap()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 8192 {
        let n = tokio::time::timeout(secs(10), conn.read(&mut buf))
            .await
            .expect("no body within 10 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    conn
}

/// `livebucket sign play --via-livebucket` for `CHANNEL/PLAYLIST`, valid 600 s.
fn play_url(stack: &Stack, key_name: &str) -> String {
    livebucket_line(&[
        "sign",
        "play",
        "--config",
        stack.livebucket.config_path().to_str().unwrap(),
        "--bucket",
        BUCKET,
        "--key-name",
        key_name,
        "--via-livebucket",
        &stack.livebucket.url(),
        "--expires-in",
        "600",
    ])
}

/// Resident memory of process `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// Sends `GET url` on a connection with a small receive buffer and reads
/// only the response head (and what comes with it): the status, whether
/// `Retry-After` was sent, and the connection, left open and unread.
async fn head_only(url: &str) -> (u16, bool, tokio::net::TcpStream) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(authority.parse().unwrap()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(secs(30), conn.read(&mut buf))
            .await
            .expect("no answer within 30 s")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text.contains("\r\nretry-after:"), conn)
}

/// A thousand-fold `/play` of one long ended playlist costs one signed copy:
/// 48 readers that stop reading after the head, then 48 more, leave
/// livebucket's memory within tens of MB of where it was (each used to build
/// its own ~20 MB answer), with at most `play.max_concurrent_renders`
/// renders, and every refusal a 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_plays_of_a_long_playlist_share_one_signed_copy() {
    const RENDERS: u64 = 2;
    const READERS: usize = 48;
    let stack = Stack::start_with(
        "dp-play-many",
        &format!("[play]\nmax_concurrent_renders = {RENDERS}\n"),
    );
    // 50,000 segments: 1.9 MB stored, about 18 MB once presigned.
    let mut text = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n");
    for i in 0..50_000u64 {
        text.push_str(&format!(
            "#EXTINF:2.000,\n{}.ts\n",
            1_700_000_000_000 + i * 2000
        ));
    }
    text.push_str("#EXT-X-ENDLIST\n");
    stack
        .s3
        .put(
            BUCKET,
            "cam/long.m3u8",
            text.into_bytes(),
            "application/vnd.apple.mpegurl",
        )
        .await;
    let url = play_url(&stack, "cam/long.m3u8");
    let pid = stack.livebucket.pid().unwrap();
    let before = rss_kb(pid);

    let mut held = Vec::new();
    for round in 0..2 {
        let answers = futures::future::join_all((0..READERS).map(|_| head_only(&url))).await;
        let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
        for (status, retry_after, _) in &answers {
            assert!(
                *status == 200 || (*status == 503 && *retry_after),
                "round {round}: {status} (Retry-After: {retry_after})"
            );
        }
        assert!(ok > 0, "round {round}: no reader was served");
        held.extend(answers.into_iter().map(|(_, _, conn)| conn));
    }
    let grown_mb = rss_kb(pid).saturating_sub(before) / 1024;
    assert!(
        grown_mb < 150,
        "{} stalled readers grew livebucket by {grown_mb} MB",
        held.len()
    );
    let renders = stack.livebucket.metric("livebucket_play_renders_total");
    let hits = stack.livebucket.metric("livebucket_play_cache_hits_total");
    assert!(
        (1..=RENDERS).contains(&renders),
        "{renders} renders for one play URL"
    );
    assert!(hits > 0, "no answer came from the signed copy");

    // A complete answer is the whole playlist, presigned.
    let whole = httpc::get(&url).await;
    assert_eq!(whole.status, 200);
    let body = whole.text();
    assert_eq!(body.matches("X-Amz-Signature=").count(), 50_000);
    assert!(body.trim_end().ends_with("#EXT-X-ENDLIST"));
    drop(held);
}

/// A stored playlist larger than `play.max_playlist_bytes` is refused with
/// 413, saying which setting bounds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_playlist_past_the_cap_is_refused() {
    let stack = Stack::start_with("dp-play-cap", "[play]\nmax_playlist_bytes = 4096\n");
    let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
    for i in 0..200u64 {
        text.push_str(&format!("#EXTINF:2.000,\n{i}.ts\n"));
    }
    text.push_str("#EXT-X-ENDLIST\n");
    stack
        .s3
        .put(
            BUCKET,
            "cam/big.m3u8",
            text.into_bytes(),
            "application/vnd.apple.mpegurl",
        )
        .await;
    stack
        .s3
        .put(
            BUCKET,
            "cam/small.m3u8",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n0.ts\n#EXT-X-ENDLIST\n".to_vec(),
            "application/vnd.apple.mpegurl",
        )
        .await;
    let big = httpc::get(&play_url(&stack, "cam/big.m3u8")).await;
    assert_eq!(big.status, 413, "{}", big.text());
    assert!(
        big.text().contains("play.max_playlist_bytes"),
        "{}",
        big.text()
    );
    let small = httpc::get(&play_url(&stack, "cam/small.m3u8")).await;
    assert_eq!(small.status, 200, "{}", small.text());
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_requests_refused_total{reason=\"playlist_too_large\"}"),
        1
    );
}

/// `vod.max_concurrent_builds` readers that stop reading in the middle of
/// long VOD playlists: the next VOD call is answered 200, not 503.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_vod_readers_do_not_hold_the_build_slots() {
    const BUILDS: usize = 2;
    let stack = Stack::start_with(
        "dp-vod-stall",
        &format!("[vod]\nmax_concurrent_builds = {BUILDS}\n"),
    );
    // 20,000 presigned segment URLs: several MB, far more than the socket
    // buffers between the stalled reader and livebucket hold.
    let start_s = unix_now() - 2 * 86_400;
    let count = 20_000;
    store_manifest(&stack, "cam", start_s * 1000, count).await;
    let url = vod_get_url(&stack, "cam", start_s, start_s + count * 2);

    let mut stalled = Vec::new();
    for _ in 0..BUILDS {
        stalled.push(stalled_reader(&url).await);
    }
    let next = httpc::get(&url).await;
    assert_eq!(
        next.status,
        200,
        "with {BUILDS} stalled readers: {}",
        String::from_utf8_lossy(&next.body[..next.body.len().min(300)])
    );
    assert!(next.text().trim_end().ends_with("#EXT-X-ENDLIST"));
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_vod_refused_total{reason=\"busy\"}"),
        0
    );
    drop(stalled);
}

/// Copies of `count` 2 s fragments of `channel` from `start_ms`, without
/// any session manifest (a bucket filled by another tool), each with the
/// `extinf` metadata the listing fallback reads.
async fn store_fragments_without_manifest(stack: &Stack, channel: &str, start_ms: u64, count: u64) {
    for i in 0..count {
        stack
            .s3
            .client()
            .put_object()
            .bucket(BUCKET)
            .key(format!("{channel}/{:013}.ts", start_ms + i * 2000))
            .content_type("video/mp2t")
            .metadata("extinf", "2.000")
            .body(vec![0x47u8; 188].into())
            .send()
            .await
            .unwrap();
    }
}

/// The listing fallback refuses a range past `vod.max_fallback_fragments`
/// (413, naming the setting) that the manifests would serve, and a closed
/// range is built once: the replay comes from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn the_listing_fallback_has_its_own_cap_and_closed_ranges_are_cached() {
    let stack = Stack::start_with("dp-vod-fallback", "[vod]\nmax_fallback_fragments = 20\n");
    let start_s = unix_now() - 86_400;
    store_fragments_without_manifest(&stack, "copy", start_s * 1000, 30).await;
    store_manifest(&stack, "indexed", start_s * 1000, 30).await;

    // 30 fragments: too many to HEAD, fine from a manifest.
    let listed = httpc::get(&vod_get_url(&stack, "copy", start_s, start_s + 60)).await;
    assert_eq!(listed.status, 413, "{}", listed.text());
    assert!(
        listed.text().contains("vod.max_fallback_fragments"),
        "{}",
        listed.text()
    );
    let indexed = httpc::get(&vod_get_url(&stack, "indexed", start_s, start_s + 60)).await;
    assert_eq!(indexed.status, 200, "{}", indexed.text());
    assert_eq!(indexed.header("x-livebucket-vod-source"), Some("index"));
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_vod_refused_total{reason=\"too_many_fallback_fragments\"}"),
        1
    );

    // 10 fragments from the listing, then the same again: one build.
    let url = vod_get_url(&stack, "copy", start_s, start_s + 20);
    let first = httpc::get(&url).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-livebucket-vod-source"), Some("listing"));
    assert_eq!(first.text().matches("X-Amz-Signature=").count(), 10);
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_vod_range_cache_hits_total"),
        0
    );
    let again = httpc::get(&url).await;
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.header("x-livebucket-vod-source"), Some("listing"));
    // The same segments (their URLs are signed anew, at each request's time).
    let objects = |text: String| -> Vec<String> {
        text.lines()
            .map(|l| l.split('?').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(objects(again.text()), objects(first.text()));
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_vod_range_cache_hits_total"),
        1
    );
    // The indexed range (ended session) was cached too.
    let indexed = httpc::get(&vod_get_url(&stack, "indexed", start_s, start_s + 60)).await;
    assert_eq!(indexed.status, 200);
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_vod_range_cache_hits_total"),
        2
    );
}
