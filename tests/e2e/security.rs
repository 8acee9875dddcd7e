//! The control plane under attack, end to end (nginx-rtmp, ffmpeg, Garage,
//! livebucket), each test played as an attacker on the same host would:
//!
//! - forged `on_publish_done` / `on_update` / `on_publish` from a client that
//!   is not nginx (no secret, a wrong secret, or the right path from a peer
//!   outside `hooks.allow`) get 403 and change nothing while a real push
//!   goes on;
//! - a VOD GET link cannot be replayed as a POST, nor with another range,
//!   URL mode or name; a POST cannot overwrite the live playlist; play URLs
//!   beyond the lifetime cap are refused; an unknown key id answers exactly
//!   like a wrong signature;
//! - 10,000 idle connections on the public and operator listeners neither
//!   stop nginx's `on_update` from being answered nor stay open past the
//!   header-read timeout;
//! - a symbolic link and `../` URIs planted in a live session's directory
//!   are not uploaded, before or after a restart's rescan;
//! - SIGHUP applies a new brute-force policy;
//! - one-time push URLs (`auth.one_time_push`) are accepted once.

use crate::common;

use std::net::SocketAddr;
use std::time::Instant;

use common::fake_nginx::hook_path;
use common::livebucket::{ConfigParams, HOOKS_SECRET, Livebucket, config_toml};
use common::stored::{at_least_segments, ended, read_playlist, wait_for_playlist};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 POST from `source` (a loopback address of the test's
/// choosing): (status, body).
async fn post_from(source: &str, to: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {to}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(secs(10), stream.read_to_end(&mut response))
        .await
        .expect("no answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// The form body nginx-rtmp posts for `call` on `name` by `clientid`.
fn nginx_body(call: &str, name: &str, clientid: u32, query: &str) -> String {
    let extra = match call {
        "publish" => "&type=live",
        "update_publish" => "&time=10&timestamp=10000",
        _ => "",
    };
    format!(
        "app=live&flashver=FMLE%2F3.0&swfurl=&tcurl=rtmp%3A%2F%2F127.0.0.1%3A1935%2Flive&pageurl=\
         &addr=127.0.0.1&clientid={clientid}&call={call}&name={name}{extra}&{query}"
    )
}

/// A live push of `seconds` to `channel`, once its playlist lists a segment.
async fn live_push(stack: &Stack, channel: &str, seconds: u32) -> common::ffmpeg::Push {
    let mut push = stack.push(&stack.sign_push(channel), seconds);
    wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "a first segment",
        at_least_segments(1),
    )
    .await;
    push
}

/// Waits until `CHANNEL/index.m3u8` ends with `#EXT-X-ENDLIST`.
async fn wait_for_end(stack: &Stack, channel: &str) {
    wait_until("the playlist to end", secs(40), millis(500), async || {
        read_playlist(&stack.s3, &format!("{channel}/index.m3u8"), &ended).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_callbacks_get_403_and_change_nothing() {
    let stack = Stack::start("sec-forged");
    let channel = "cam1";
    let mut push = live_push(&stack, channel, 16).await;
    let hooks = stack.livebucket.listen();
    let url = stack.sign_push("cam2");
    let (_, query) = url.split_once('?').unwrap();
    let before_approved = stack.livebucket.metric("livebucket_push_accepted_total");

    // nginx's clientid is a small counter: sweep it, as the attacker
    // did, with every call and three ways of not being nginx.
    let paths = |call: &str| {
        [
            ("127.0.0.1", format!("/hooks/{call}")),
            (
                "127.0.0.1",
                format!("/hooks/{}x/{call}", &HOOKS_SECRET[1..]),
            ),
            ("127.0.0.2", hook_path(call)),
        ]
    };
    let mut forged = 0;
    for clientid in 1..=12 {
        for (call, hook, q) in [
            ("publish_done", "on_publish_done", ""),
            ("update_publish", "on_update", ""),
            ("publish", "on_publish", query),
        ] {
            let name = if call == "publish" { "cam2" } else { channel };
            for (source, path) in paths(hook) {
                let (status, body) =
                    post_from(source, hooks, &path, &nginx_body(call, name, clientid, q)).await;
                assert_eq!(status, 403, "{source} POST {path}: {body}");
                assert_eq!(body, "forbidden\n", "the refusal says nothing more");
                forged += 1;
            }
        }
    }
    let counted = stack
        .livebucket
        .metric("livebucket_hooks_forged_total{reason=\"secret\"}")
        + stack
            .livebucket
            .metric("livebucket_hooks_forged_total{reason=\"peer\"}");
    assert_eq!(counted, forged);
    assert_eq!(
        stack.livebucket.metric("livebucket_push_accepted_total"),
        before_approved,
        "a forged on_publish approved a push"
    );
    assert!(
        stack.s3.list(BUCKET, "cam2/").await.is_empty(),
        "a forged on_publish stored something"
    );
    // The real push is untouched: still live mid-way, and it ends well.
    let live = read_playlist(&stack.s3, &format!("{channel}/index.m3u8"), &|p| {
        if p.ended {
            Err("the forged publish_done ended the playlist".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    assert!(live.is_ok(), "{:?}", live.err());
    let status = push.exit_within(secs(40)).await;
    assert!(
        status.success(),
        "the real push was dropped:\n{}",
        push.log()
    );
    wait_for_end(&stack, channel).await;
    // The forgeries never reached the brute-force limiter: 127.0.0.1 (the
    // real nginx's address in every forged body) is not banned.
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_push_rejected_total{reason=\"too_many_failures\"}"),
        0
    );
    let log = stack.livebucket.log();
    assert!(
        !log.contains(HOOKS_SECRET),
        "the log holds the hooks secret"
    );
}

/// `livebucket sign vod …` for this stack: the signed URL.
fn sign_vod(stack: &Stack, channel: &str, args: &[&str]) -> String {
    let config = stack.livebucket.config_path().to_str().unwrap().to_owned();
    let base = stack.livebucket.url();
    let mut cmd = std::process::Command::new(common::livebucket::BIN);
    cmd.args(["sign", "vod", "--config", &config, "--bucket", BUCKET])
        .args(["--channel", channel, "--via-livebucket", &base])
        .args(args);
    let out = common::process::run("livebucket sign vod", &mut cmd);
    out.lines().next().unwrap_or_default().to_owned()
}

/// `url` with `name=value` set (or added) in its query, the rest kept as is.
fn with_param(url: &str, name: &str, value: &str) -> String {
    common::livebucket::with_query_param(url, name, value)
}

/// HMAC-SHA256 play signature made here, independently of livebucket.
fn play_signature(secret: &str, expires: u64, path: &str) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("LIVEBUCKET-PLAY\n{expires}\n{path}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_links_grant_exactly_what_they_say() {
    let stack = Stack::start("sec-links");
    let channel = "show";
    let start = common::livebucket::unix_now() - 1;
    let mut push = stack.push(&stack.sign_push(channel), 8);
    assert!(push.exit_within(secs(40)).await.success(), "{}", push.log());
    let end = common::livebucket::unix_now() + 1;
    wait_for_end(&stack, channel).await;
    let live_before = stack.s3.get(BUCKET, &format!("{channel}/index.m3u8")).await;
    let range = [
        "--start",
        &start.to_string(),
        "--end",
        &end.to_string(),
        "--expires-in",
        "600",
    ]
    .map(str::to_owned);
    let range: Vec<&str> = range.iter().map(String::as_str).collect();

    // A viewer's GET link works as a GET…
    let get = sign_vod(&stack, channel, &range);
    let resp = httpc::get(&get).await;
    assert_eq!(resp.status, 200, "GET {get}: {}", resp.text());
    // …and as nothing else.
    let forbidden = |what: &str, resp: &httpc::Response| {
        assert_eq!(resp.status, 403, "{what}: {}", resp.text());
        assert_eq!(resp.text(), "forbidden\n", "{what}");
    };
    forbidden("POST with a GET link", &httpc::post(&get).await);
    forbidden(
        "POST with a GET link naming the live playlist",
        &httpc::post(&with_param(&get, "name", "index.m3u8")).await,
    );
    forbidden(
        "a wider range",
        &httpc::get(&with_param(&get, "start", &(start - 86_400).to_string())).await,
    );
    forbidden(
        "a later end",
        &httpc::get(&with_param(&get, "end", &(end + 86_400).to_string())).await,
    );
    forbidden(
        "another URL mode",
        &httpc::get(&with_param(&get, "urls", "relative")).await,
    );
    // A POST link writes its own name and no other.
    let mut post_args = range.clone();
    post_args.extend(["--post", "--name", "vod.m3u8"]);
    let post = sign_vod(&stack, channel, &post_args);
    forbidden("GET with a POST link", &httpc::get(&post).await);
    forbidden(
        "a POST link with another name",
        &httpc::post(&with_param(&post, "name", "index.m3u8")).await,
    );
    let resp = httpc::post(&post).await;
    assert_eq!(resp.status, 200, "POST {post}: {}", resp.text());
    // Even a correctly signed POST never replaces the live playlist.
    let mut live_args = range.clone();
    live_args.extend(["--post", "--name", "index.m3u8"]);
    let resp = httpc::post(&sign_vod(&stack, channel, &live_args)).await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(resp.text().contains("live playlist"), "{}", resp.text());
    assert_eq!(
        stack.s3.get(BUCKET, &format!("{channel}/index.m3u8")).await,
        live_before,
        "the live playlist changed"
    );

    // Play URLs: within the cap fine, beyond it (or never expiring) refused,
    // signed here rather than by the CLI (which refuses to make them).
    let key = stack.key();
    let path = format!("/{BUCKET}/{channel}/index.m3u8");
    let play = |key_id: &str, expires: u64, sig: &str| {
        format!(
            "{}/play{path}?AccessKeyId={key_id}&Expires={expires}&Signature={sig}",
            stack.livebucket.url()
        )
    };
    let now = common::livebucket::unix_now();
    let ok = now + 3600;
    let resp = httpc::get(&play(&key.id, ok, &play_signature(&key.secret, ok, &path))).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    for expires in [now + 8 * 86_400, 99_999_999_999, u64::MAX] {
        let sig = play_signature(&key.secret, expires, &path);
        forbidden(
            &format!("a play URL expiring at {expires}"),
            &httpc::get(&play(&key.id, expires, &sig)).await,
        );
    }
    // An unknown key id and a known one with a wrong signature answer the
    // same bytes.
    let wrong = play_signature("not the secret", ok, &path);
    let known = httpc::get(&play(&key.id, ok, &wrong)).await;
    let unknown = httpc::get(&play("GKdoesnotexist000000000000", ok, &wrong)).await;
    forbidden("a wrong signature", &known);
    assert_eq!((known.status, known.body), (unknown.status, unknown.body));
    let log = stack.livebucket.log();
    assert!(log.contains("reason=\"unknown_key\"") || log.contains("reason=unknown_key"));
}

/// Raises this process's open-file limit to its hard limit.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_do_not_starve_nginx_callbacks() {
    let limit = raise_fd_limit();
    assert!(limit > 12_000, "the open-file hard limit is {limit}");
    const IDLE: usize = 10_000;
    let stack = Stack::start_with(
        "sec-idle",
        "[limits]\nheader_read_timeout_secs = 3\nmax_connections = 2000\n",
    );
    let channel = "steady";
    // nginx calls on_update every 10 s: 30 s of push spans at least two.
    let mut push = live_push(&stack, channel, 30).await;
    let updates_before = stack
        .livebucket
        .metric("livebucket_hooks_total{call=\"update\"}");
    let targets = [
        stack.livebucket.public_addr(),
        stack.livebucket.operator_addr(),
    ];
    let opened = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        match tokio::net::TcpStream::connect(targets[i % 2]).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {i} failed: {e}"),
        }
    }
    eprintln!("{IDLE} idle connections opened in {:?}", opened.elapsed());
    // Every one of them is closed by livebucket: at once beyond the cap,
    // after the header-read timeout within it.
    let mut closed = 0;
    let deadline = Instant::now() + secs(20);
    for mut s in idle {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 64];
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) => panic!("an idle connection got {n} bytes"),
            Err(_) => break,
        }
    }
    assert_eq!(closed, IDLE, "idle connections still open 20 s later");
    assert!(
        stack
            .livebucket
            .metric("livebucket_connections_refused_total{listener=\"public\"}")
            > 0,
        "the connection cap never applied"
    );
    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "the push was dropped:\n{}", push.log());
    let updates = stack
        .livebucket
        .metric("livebucket_hooks_total{call=\"update\"}")
        - updates_before;
    assert!(
        updates >= 2,
        "only {updates} on_update answered during the flood"
    );
    assert!(
        !stack.nginx.error_log().contains("update failed"),
        "nginx reports failed updates"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_links_and_escaping_uris_are_not_uploaded() {
    let mut stack = Stack::start("sec-planted");
    let channel = "cam";
    let mut push = live_push(&stack, channel, 14).await;
    // What a local attacker wants published: a private file.
    let private = stack.dir.join("private.key");
    let secret_bytes: Vec<u8> = b"-----BEGIN PRIVATE KEY-----"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
    std::fs::write(&private, &secret_bytes).unwrap();
    let session = std::fs::read_dir(&stack.hls_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("no session directory");
    // A link named like nginx's fragments, a directory beside the session
    // holding a copy, and nginx's playlist rewritten (the way nginx does:
    // .bak, then rename) to list the link and `../` paths.
    let now_ms = common::livebucket::unix_now() * 1000;
    let link_name = format!("{}.ts", now_ms + 1);
    std::os::unix::fs::symlink(&private, session.join(&link_name)).unwrap();
    let beside = stack.hls_dir.join("beside");
    std::fs::create_dir_all(&beside).unwrap();
    std::fs::write(beside.join(format!("{}.ts", now_ms + 2)), &secret_bytes).unwrap();
    let hostile = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:100000\n#EXT-X-TARGETDURATION:2\n\
         #EXTINF:2.000,\n../beside/{}.ts\n#EXTINF:2.000,\n../../private.key\n#EXTINF:2.000,\n{link_name}\n",
        now_ms + 2
    );
    std::fs::write(session.join("index.m3u8.bak"), hostile).unwrap();
    std::fs::rename(session.join("index.m3u8.bak"), session.join("index.m3u8")).unwrap();
    // A restart rescans every session directory, link included.
    tokio::time::sleep(secs(1)).await;
    stack.livebucket.kill9();
    stack.livebucket.restart();
    // Without a held socket nginx may drop the stream if an on_update falls
    // into the restart; either way the session ends and is stored.
    push.exit_within(secs(40)).await;
    wait_for_end(&stack, channel).await;
    for (key, _) in stack.s3.list(BUCKET, "").await {
        let body = stack.s3.get(BUCKET, &key).await;
        assert!(
            !body
                .windows(27)
                .any(|w| w == b"-----BEGIN PRIVATE KEY-----"),
            "{key} holds the planted private file"
        );
    }
    let log = stack.livebucket.log();
    assert!(
        log.contains("not a plain file name") || log.contains("symbolic links are not followed"),
        "livebucket said nothing about the planted files"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_limiter_policy() {
    let dir = TestDir::new("sec-hup");
    let hooks = free_addr();
    let key = common::garage::Key {
        id: "GK000000000000000000000001".into(),
        secret: "0123456789abcdef0123456789abcdef".into(),
    };
    let config = config_toml(&ConfigParams {
        listen: hooks,
        stat_url: None,
        state_dir: &dir.subdir("state"),
        hls_dir: &dir.join("hls"),
        relay_url: "rtmp://127.0.0.1:1935/hls",
        s3_endpoint: "http://127.0.0.1:9",
        keys: &[(&key, &[BUCKET])],
        extra: "[auth]\nmax_failures = 100\n",
    });
    let mut lb = Livebucket::start(&dir, &config);
    // Well-formed pushes with a wrong signature, from one streamer address.
    let bad = |clientid: u32| {
        let expires = common::livebucket::unix_now() + 600;
        let query = format!(
            "Bucket={BUCKET}&AccessKeyId={}&Expires={expires}&Signature=AAAAAAAAAAAAAAAAAAAAAAAAAAA%3D",
            key.id
        );
        nginx_body("publish", "cam", clientid, &query).replace("addr=127.0.0.1", "addr=192.0.2.7")
    };
    let too_many = "livebucket_push_rejected_total{reason=\"too_many_failures\"}";
    for i in 0..3 {
        let (status, _) = post_from("127.0.0.1", hooks, &hook_path("on_publish"), &bad(i)).await;
        assert_eq!(status, 403);
    }
    assert_eq!(lb.metric(too_many), 0, "banned under max_failures = 100");
    let path = lb.config_path().to_owned();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("max_failures = 100", "max_failures = 4"),
    )
    .unwrap();
    lb.reload();
    wait_until("the reload", secs(10), millis(100), async || {
        lb.log()
            .contains("configuration reloaded")
            .then_some(())
            .ok_or("not reloaded yet")
    })
    .await;
    // The fourth failure reaches the new limit; the next attempt is refused
    // by the ban before its signature is even read.
    post_from("127.0.0.1", hooks, &hook_path("on_publish"), &bad(4)).await;
    post_from("127.0.0.1", hooks, &hook_path("on_publish"), &bad(5)).await;
    assert_eq!(lb.metric(too_many), 1, "the reloaded policy did not ban");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_time_push_urls_are_accepted_once() {
    let stack = Stack::start_with("sec-once", "[auth]\none_time_push = true\n");
    let url = stack.sign_push("once");
    let mut first = stack.push(&url, 4);
    assert!(
        first.exit_within(secs(30)).await.success(),
        "{}",
        first.log()
    );
    let mut again = stack.push(&url, 4);
    assert!(
        !again.exit_within(secs(30)).await.success(),
        "the same push URL was accepted twice"
    );
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_push_rejected_total{reason=\"replayed\"}"),
        1
    );
    // A fresh URL for the same channel still works.
    let mut fresh = stack.push(&stack.sign_push("once"), 4);
    assert!(
        fresh.exit_within(secs(30)).await.success(),
        "{}",
        fresh.log()
    );
}
