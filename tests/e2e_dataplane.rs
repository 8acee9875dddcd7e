#![cfg(feature = "e2e")]
//! The data plane under load from viewers who hold no secret, end to end
//! (Garage and livebucket; nginx idles):
//!
//! - readers that stall in the middle of VOD playlists do not keep the next
//!   VOD call out (the build slot is released once the fragment list is
//!   known, before the body is streamed).

mod common;

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
