//! The OSS LiveChannel API, driven by Alibaba's own Python SDK (`oss2`,
//! `tests/oss2/client.py`) against real nginx-rtmp, ffmpeg, Garage and
//! livebucket: create with a custom Target and PlaylistName, list with
//! pagination, push with a URL from the SDK's `sign_rtmp_url`, stat while
//! live, disable (the push drops, the next is refused), enable, history,
//! Post/GetVodPlaylist, delete refused while live and allowed after; and the
//! refusals: bad signature, unknown key, another tenant's bucket, a skewed
//! date, malformed and oversized XML, each with OSS's code and nothing
//! changed. The lifecycle runs on Ceph RGW too, and there concurrent changes
//! of one record from two "nodes" all land (conditional writes), while
//! Garage is detected as having none.

use crate::common;

use std::time::Duration;

use base64::Engine;
use common::bucket_check::{self, FinalPlaylist};
use common::ffmpeg::{Push, TestMedia, push_media};
use common::fragments::{Ledger, Recorder};
use common::playlist_watch::{self, PlaylistWatch};
use common::stored::{ended, read_playlist};
use common::*;
use hmac::{KeyInit, Mac};
use serde_json::Value;

/// What livebucket's `auth.oss_live_domain` is in these tests.
const LIVE_DOMAIN: &str = "live.test";

/// `client.py ENDPOINT BUCKET KEY_ID SECRET OP ARGS…` with oss2.
fn oss2(endpoint: &str, bucket: &str, key: (&str, &str), op: &str, args: &[(&str, &str)]) -> Value {
    let python = std::env::var("OSS2_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/livebucket/oss2-2.19.1/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oss2/client.py"))
        .args([endpoint, bucket, key.0, key.1, op])
        .args(args.iter().map(|(k, v)| format!("{k}={v}")));
    let out = common::process::run(&format!("oss2 {op}"), &mut cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("oss2 {op} printed no JSON ({e}): {out}"))
}

struct Api<'a> {
    stack: &'a Stack,
    endpoint: String,
}

impl Api<'_> {
    fn call(&self, op: &str, args: &[(&str, &str)]) -> Value {
        let key = self.stack.key();
        oss2(&self.endpoint, BUCKET, (&key.id, &key.secret), op, args)
    }

    /// `op`, which must succeed.
    fn ok(&self, op: &str, args: &[(&str, &str)]) -> Value {
        let v = self.call(op, args);
        assert!(v.get("error").is_none(), "oss2 {op} {args:?}: {v}");
        v
    }

    /// `op`, which must fail with OSS `code` and `status`.
    fn fails(&self, op: &str, args: &[(&str, &str)], status: u64, code: &str) {
        let v = self.call(op, args);
        assert_eq!(v["error"]["code"], code, "oss2 {op} {args:?}: {v}");
        assert_eq!(v["error"]["status"], status, "oss2 {op} {args:?}: {v}");
    }
}

/// A 640x360 25 fps push with a keyframe every second (so fragments follow
/// the channel's FragDuration), presenting the OSS host in tcUrl.
fn push_oss(stack: &Stack, signed: &str, seconds: u32) -> Push {
    let host = format!("{BUCKET}.{LIVE_DOMAIN}");
    let port = stack.nginx.push_base();
    let port = port
        .trim_start_matches("rtmp://127.0.0.1:")
        .split('/')
        .next()
        .unwrap();
    let local = signed.replacen(&host, &format!("127.0.0.1:{port}"), 1);
    let media = TestMedia {
        video: "testsrc=size=640x360:rate=25",
        tone_hz: 440,
        seconds,
        gop: 25,
        live: true,
    };
    push_media(
        &stack.dir,
        &media,
        &local,
        &["-rtmp_tcurl", &format!("rtmp://{host}/live")],
    )
}

fn sign_rtmp(stack: &Stack, channel: &str) -> String {
    let key = stack.key();
    // oss2's sign_rtmp_url takes a lifetime in seconds, not a time.
    let expires = "3600";
    let v = oss2(
        &format!("http://{LIVE_DOMAIN}"),
        BUCKET,
        (&key.id, &key.secret),
        "sign_rtmp_url",
        &[("channel", channel), ("expires", expires)],
    );
    let url = v["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("rtmp://{BUCKET}.{LIVE_DOMAIN}/live/{channel}?")),
        "sign_rtmp_url: {url}"
    );
    url
}

async fn wait_live(api: &Api<'_>, channel: &str) -> Value {
    wait_until(
        "the channel to be Live",
        secs(30),
        millis(300),
        async || {
            let v = api.ok("stat", &[("channel", channel)]);
            (v["status"] == "Live").then_some(v.clone()).ok_or(v)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn oss2_manages_channels_end_to_end() {
    oss2_manages_channels_end_to_end_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW, where every change is a conditional write.
#[tokio::test(flavor = "multi_thread")]
async fn rgw_oss2_manages_channels_end_to_end() {
    oss2_manages_channels_end_to_end_on(StoreKind::Rgw).await;
}

async fn oss2_manages_channels_end_to_end_on(kind: StoreKind) {
    let stack = Stack::start_on(
        kind,
        "channels",
        &format!(
            "[auth]\noss_live_domain = \"{LIVE_DOMAIN}\"\n\n[channels]\nunknown = \"refuse\"\n"
        ),
    );
    let api = Api {
        stack: &stack,
        endpoint: stack.livebucket.url(),
    };
    let t0 = common::livebucket::unix_now() - 1;

    // Create, with a custom Target and PlaylistName.
    let created = api.ok(
        "create",
        &[
            ("channel", "cam"),
            ("description", "front door"),
            ("frag_duration", "3"),
            ("frag_count", "4"),
            ("playlist_name", "live.m3u8"),
        ],
    );
    assert_eq!(
        created["publish_url"],
        format!("rtmp://{BUCKET}.{LIVE_DOMAIN}/live/cam")
    );
    assert!(
        created["play_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{BUCKET}/cam/live.m3u8")),
        "{created}"
    );
    let info = api.ok("get", &[("channel", "cam")]);
    assert_eq!(
        (
            &info["status"],
            &info["description"],
            &info["frag_duration"],
            &info["frag_count"],
            &info["playlist_name"]
        ),
        (
            &Value::from("enabled"),
            &Value::from("front door"),
            &Value::from(3),
            &Value::from(4),
            &Value::from("live.m3u8")
        )
    );
    // A push to a channel nobody created is refused (channels.unknown).
    let mut stray = push_oss(&stack, &sign_rtmp(&stack, "stray"), 4);
    assert!(!stray.exit_within(secs(20)).await.success());

    // List with pagination: five channels, two per page, each seen once.
    for name in ["a1", "a2", "a3", "a4"] {
        api.ok("create", &[("channel", name)]);
    }
    let mut seen = Vec::new();
    let mut marker = String::new();
    for _ in 0..5 {
        let page = api.ok("list", &[("max_keys", "2"), ("marker", &marker)]);
        for c in page["channels"].as_array().unwrap() {
            seen.push(c["name"].as_str().unwrap().to_owned());
        }
        if page["is_truncated"] != true {
            break;
        }
        marker = page["next_marker"].as_str().unwrap().to_owned();
    }
    seen.sort();
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "cam"]);
    let prefixed = api.ok("list", &[("prefix", "a")]);
    assert_eq!(prefixed["channels"].as_array().unwrap().len(), 4);

    // Push #1 with the SDK's sign_rtmp_url; stat while live.
    let url = sign_rtmp(&stack, "cam");
    let mut push = push_oss(&stack, &url, 60);
    let stat = wait_live(&api, "cam").await;
    assert!(
        stat["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1"),
        "{stat}"
    );
    // Stat reports what ffmpeg really sends, measured by nginx-rtmp; the
    // bandwidths once nginx's first 10 s window has passed.
    let stat = wait_until(
        "stat with video and audio",
        secs(30),
        millis(500),
        async || {
            let v = api.ok("stat", &[("channel", "cam")]);
            let measured = v["video"]["bandwidth"].as_u64().is_some_and(|b| b > 0)
                && v["audio"]["bandwidth"].as_u64().is_some_and(|b| b > 0);
            measured.then_some(v.clone()).ok_or(v)
        },
    )
    .await;
    assert_eq!(
        (
            &stat["video"]["width"],
            &stat["video"]["height"],
            &stat["video"]["frame_rate"],
            &stat["video"]["codec"],
            &stat["audio"]["codec"],
            &stat["audio"]["sample_rate"],
        ),
        (
            &Value::from(640),
            &Value::from(360),
            &Value::from(25),
            &Value::from("H264"),
            &Value::from("AAC"),
            &Value::from(44100),
        ),
        "{stat}"
    );
    // Stored fragments follow FragDuration (3 s; keyframes every second) in
    // the channel's own playlist object, whose target duration is that
    // fragment length (players hold back three of it).
    let stored = wait_until(
        "three fragments in live.m3u8",
        secs(40),
        millis(500),
        async || {
            read_playlist(
                &stack.s3,
                "cam/live.m3u8",
                &common::stored::at_least_segments(3),
            )
            .await
        },
    )
    .await;
    for d in &stored.playlist.durations[..stored.playlist.durations.len() - 1] {
        assert!(
            (2.5..3.5).contains(d),
            "fragment of {d} s: {:?}",
            stored.playlist.durations
        );
    }
    assert_eq!(stored.playlist.target_duration, 3);
    assert_eq!(stored.playlist.hold_back, Some(9.0));
    // Delete is refused while live.
    api.fails("delete", &[("channel", "cam")], 409, "ChannelStillLive");
    api.fails("create", &[("channel", "cam")], 409, "ChannelStillLive");

    // Disable: the live push drops within nginx's update interval (10 s),
    // the next push is refused.
    api.ok("status", &[("channel", "cam"), ("status", "disabled")]);
    assert_eq!(api.ok("stat", &[("channel", "cam")])["status"], "Disabled");
    let status = push.exit_within(secs(25)).await;
    assert!(!status.success(), "the push survived disabling its channel");
    let mut refused = push_oss(&stack, &sign_rtmp(&stack, "cam"), 4);
    assert!(!refused.exit_within(secs(20)).await.success());
    assert!(
        stack
            .livebucket
            .metric("livebucket_push_rejected_total{reason=\"channel_disabled\"}")
            >= 1
    );

    // Enable, and two more pushes.
    api.ok("status", &[("channel", "cam"), ("status", "enabled")]);
    for _ in 0..2 {
        let mut p = push_oss(&stack, &sign_rtmp(&stack, "cam"), 6);
        assert!(p.exit_within(secs(30)).await.success(), "{}", p.log());
        wait_until("the session to end", secs(30), millis(300), async || {
            let v = api.ok("stat", &[("channel", "cam")]);
            (v["status"] == "Idle").then_some(()).ok_or(v)
        })
        .await;
    }
    wait_until("the playlist to end", secs(30), millis(500), async || {
        read_playlist(&stack.s3, "cam/live.m3u8", &ended).await
    })
    .await;
    let history = wait_until(
        "three pushes in the history",
        secs(20),
        millis(300),
        async || {
            let v = api.ok("history", &[("channel", "cam")]);
            (v["records"].as_array().unwrap().len() >= 3)
                .then_some(v.clone())
                .ok_or(v)
        },
    )
    .await;
    for r in history["records"].as_array().unwrap() {
        assert!(
            r["remote_addr"].as_str().unwrap().starts_with("127.0.0.1"),
            "{r}"
        );
    }

    // VOD over everything pushed.
    let t1 = (common::livebucket::unix_now() + 1).to_string();
    let t0 = t0.to_string();
    api.ok(
        "post_vod",
        &[
            ("channel", "cam"),
            ("playlist", "vod.m3u8"),
            ("start", &t0),
            ("end", &t1),
        ],
    );
    let posted = read_playlist(&stack.s3, "cam/vod.m3u8", &ended)
        .await
        .unwrap();
    assert!(
        posted.playlist.vod && posted.playlist.uris.len() >= 6,
        "{:?}",
        posted.playlist.uris
    );
    let got = api.ok(
        "get_vod",
        &[("channel", "cam"), ("start", &t0), ("end", &t1)],
    );
    let text = got["playlist"].as_str().unwrap();
    assert_eq!(
        common::hlscheck::check_playlist(text).map(|p| p.uris),
        Ok(posted.playlist.uris.clone())
    );
    api.fails(
        "post_vod",
        &[
            ("channel", "cam"),
            ("playlist", "live.m3u8"),
            ("start", &t0),
            ("end", &t1),
        ],
        400,
        "InvalidArgument",
    );
    // Nor over the name of a master playlist (adaptive bitrate).
    api.fails(
        "post_vod",
        &[
            ("channel", "cam"),
            ("playlist", "master.m3u8"),
            ("start", &t0),
            ("end", &t1),
        ],
        400,
        "InvalidArgument",
    );

    // Snapshots: every Interval seconds a JPEG of the picture, the newest
    // also at a stable key.
    let snap_xml = format!(
        "<LiveChannelConfiguration><Description/><Status>enabled</Status>\
         <Target><Type>HLS</Type><FragDuration>2</FragDuration><FragCount>3</FragCount>\
         <PlaylistName>playlist.m3u8</PlaylistName></Target>\
         <Snapshot><RoleName>role</RoleName><DestBucket>{BUCKET}</DestBucket>\
         <NotifyTopic>topic</NotifyTopic><Interval>2</Interval></Snapshot>\
         </LiveChannelConfiguration>"
    );
    assert_eq!(
        api.ok("create_xml", &[("channel", "snap"), ("body", &snap_xml)])["status"],
        200
    );
    let mut p = push_oss(&stack, &sign_rtmp(&stack, "snap"), 10);
    assert!(p.exit_within(secs(30)).await.success(), "{}", p.log());
    let jpegs = wait_until(
        "snapshots in the bucket",
        secs(20),
        millis(500),
        async || {
            let listed = stack.s3.list(BUCKET, "snap/snapshot/").await;
            (listed.len() >= 3 && listed.iter().any(|(k, _)| k == "snap/snapshot/latest.jpg"))
                .then_some(listed.clone())
                .ok_or(format!("{listed:?}"))
        },
    )
    .await;
    for (key, _) in &jpegs {
        let head = stack.s3.head(BUCKET, key).await;
        assert_eq!(head.content_type.as_deref(), Some("image/jpeg"), "{key}");
        let body = stack.s3.get(BUCKET, key).await;
        assert!(body.starts_with(&[0xFF, 0xD8]), "{key} is not a JPEG");
    }

    // Delete once idle; the media stays.
    api.ok("delete", &[("channel", "cam")]);
    api.fails("get", &[("channel", "cam")], 404, "NoSuchLiveChannel");
    assert!(!stack.s3.list(BUCKET, "cam/").await.is_empty());
}

/// An OSS V1 `Authorization` header made here, independently of livebucket.
fn oss_v1(secret: &str, to_sign: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_oss_errors_and_change_nothing() {
    let stack = Stack::start("channels-refused");
    let api = Api {
        stack: &stack,
        endpoint: stack.livebucket.url(),
    };
    api.ok("create", &[("channel", "keep"), ("description", "before")]);
    let before = api.ok("get", &[("channel", "keep")]);
    let key = stack.key();
    let as_key = |id: &str, secret: &str, bucket: &str, op: &str, args: &[(&str, &str)]| {
        oss2(&api.endpoint, bucket, (id, secret), op, args)
    };
    let code = |v: &Value| (v["error"]["status"].clone(), v["error"]["code"].clone());
    // A wrong secret and an unknown key id: the same answer.
    let wrong = as_key(
        &key.id,
        "not-the-secret-0000",
        BUCKET,
        "create",
        &[("channel", "keep")],
    );
    let unknown = as_key(
        "GKnobody00000000000000000",
        "x",
        BUCKET,
        "create",
        &[("channel", "keep")],
    );
    assert_eq!(
        code(&wrong),
        (Value::from(403), Value::from("SignatureDoesNotMatch"))
    );
    assert_eq!(code(&wrong), code(&unknown));
    assert_eq!(wrong["error"]["message"], unknown["error"]["message"]);
    // Another tenant's bucket: the key may not write it.
    let other = as_key(
        &key.id,
        &key.secret,
        OTHER_BUCKET,
        "create",
        &[("channel", "x")],
    );
    assert_eq!(
        code(&other),
        (Value::from(403), Value::from("AccessDenied"))
    );
    // Malformed and oversized configurations, through oss2's own transport.
    let bad_xml = api.call(
        "raw_put_config",
        &[
            ("channel", "keep"),
            ("body", "<LiveChannelConfiguration><Status>on"),
        ],
    );
    assert_eq!(
        code(&bad_xml),
        (Value::from(400), Value::from("MalformedXML"))
    );
    let big = api.call("raw_put_config", &[("channel", "keep"), ("size", "70000")]);
    assert_eq!(
        code(&big),
        (Value::from(400), Value::from("EntityTooLarge"))
    );
    let long = "d".repeat(200);
    api.fails(
        "create",
        &[("channel", "keep"), ("description", &long)],
        400,
        "InvalidArgument",
    );
    // A Date twenty minutes old, signed correctly (by this test's own HMAC).
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(1200));
    let path = format!("/{BUCKET}/keep");
    let to_sign = format!("GET\n\n\n{date}\n/{BUCKET}/keep?live");
    let auth = format!("OSS {}:{}", key.id, oss_v1(&key.secret, &to_sign));
    let url = format!("{}{path}?live", stack.livebucket.url());
    let resp =
        httpc::request_with_headers("GET", &url, &[("Date", &date), ("Authorization", &auth)])
            .await
            .unwrap();
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(
        resp.text().contains("<Code>RequestTimeTooSkewed</Code>"),
        "{}",
        resp.text()
    );
    // The same request dated now works: the signer above is right.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let to_sign = format!("GET\n\n\n{date}\n/{BUCKET}/keep?live");
    let auth = format!("OSS {}:{}", key.id, oss_v1(&key.secret, &to_sign));
    let resp =
        httpc::request_with_headers("GET", &url, &[("Date", &date), ("Authorization", &auth)])
            .await
            .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.header("x-oss-request-id").is_some());
    // A presigned URL for the year 3000, signed correctly, is refused: its
    // lifetime is capped (api.max_presigned_lifetime_secs, 7 days).
    let presigned = |expires: u64| {
        let to_sign = format!("GET\n\n\n{expires}\n/{BUCKET}/keep?live");
        let sig = oss_v1(&key.secret, &to_sign);
        let sig: String =
            percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        format!(
            "{url}&OSSAccessKeyId={}&Expires={expires}&Signature={sig}",
            key.id
        )
    };
    let resp = httpc::get(&presigned(32_503_680_000)).await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(
        resp.text().contains("<Code>AccessDenied</Code>") && resp.text().contains("Expires"),
        "{}",
        resp.text()
    );
    let resp = httpc::get(&presigned(common::livebucket::unix_now() + 600)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    // A Content-MD5 that is not the body's, or not an MD5 at all: refused.
    let put_status = async |md5: &str| {
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let to_sign = format!("PUT\n{md5}\n\n{date}\n/{BUCKET}/keep?live&status=enabled");
        let auth = format!("OSS {}:{}", key.id, oss_v1(&key.secret, &to_sign));
        let url = format!("{}{path}?live&status=enabled", stack.livebucket.url());
        httpc::request_with_headers(
            "PUT",
            &url,
            &[
                ("Date", &date),
                ("Content-MD5", md5),
                ("Authorization", &auth),
            ],
        )
        .await
        .unwrap()
    };
    for (md5, status, code) in [
        // md5("hello"), for an empty body.
        ("XUFAKrxLKna5cZ2REBfFkg==", 400, "BadDigest"),
        ("aGVsbG8=", 400, "InvalidDigest"),
        // md5(""): the right one.
        ("1B2M2Y8AsgTpgAmY7PhCfg==", 200, ""),
    ] {
        let resp = put_status(md5).await;
        assert_eq!(resp.status, status, "{md5}: {}", resp.text());
        assert!(resp.text().contains(code), "{md5}: {}", resp.text());
    }
    // Nothing changed.
    assert_eq!(api.ok("get", &[("channel", "keep")]), before);
    let listed = api.ok("list", &[]);
    assert_eq!(listed["channels"].as_array().unwrap().len(), 1, "{listed}");

    // `livebucket channel …` goes through the same API.
    let config = stack.livebucket.config_path().to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let mut cmd = std::process::Command::new(common::livebucket::BIN);
        cmd.arg("channel")
            .args(args)
            .args(["--config", &config, "--bucket", BUCKET]);
        common::process::run("livebucket channel", &mut cmd)
    };
    cli(&[
        "create",
        "--channel",
        "fromcli",
        "--frag-duration",
        "2",
        "--playlist-name",
        "cli.m3u8",
    ]);
    let info = api.ok("get", &[("channel", "fromcli")]);
    assert_eq!(
        (&info["frag_duration"], &info["playlist_name"]),
        (&Value::from(2), &Value::from("cli.m3u8"))
    );
    let shown = cli(&["get", "--channel", "fromcli"]);
    assert!(
        shown.contains("FragDuration: 2") && shown.contains("PlaylistName: cli.m3u8"),
        "{shown}"
    );
    assert!(cli(&["ls"]).contains("Name: fromcli"));
    cli(&["status", "--channel", "fromcli", "disabled"]);
    assert!(cli(&["stat", "--channel", "fromcli"]).contains("Status: Disabled"));
    cli(&["rm", "--channel", "fromcli"]);
    api.fails("get", &[("channel", "fromcli")], 404, "NoSuchLiveChannel");
    let mut cmd = std::process::Command::new(common::livebucket::BIN);
    cmd.args([
        "channel",
        "get",
        "--channel",
        "fromcli",
        "--config",
        &config,
        "--bucket",
        BUCKET,
    ]);
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchLiveChannel"));
}

/// livebucket's start-up log line saying what the probe found.
async fn conditional_detection(stack: &Stack) -> String {
    wait_until(
        "the conditional-write probe's log line",
        secs(20),
        millis(100),
        async || {
            stack
                .livebucket
                .log()
                .lines()
                .find(|l| l.contains("conditional writes"))
                .map(str::to_owned)
                .ok_or("not logged yet")
        },
    )
    .await
}

/// Two livebucket "nodes" (two channel stores, each with its own cache, as
/// two processes have) on one RGW bucket, four writers each, all appending
/// their token to one channel's description at once: every change that
/// returned Ok is in the final record (none silently overwritten), and every
/// one that did not was refused as a conflict and is absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rgw_concurrent_channel_updates_all_land() {
    use ::livebucket::channels::{ChannelError, ChannelStore};
    use ::livebucket::oss::channel::{ChannelRecord, LiveChannelConfig};

    let stack = Stack::start_on(StoreKind::Rgw, "channels-race", "");
    let logged = conditional_detection(&stack).await;
    assert!(
        logged.contains("honours conditional writes") && logged.contains("bare"),
        "RGW: {logged}"
    );
    let cfg = ::livebucket::config::Config::load(stack.livebucket.config_path()).unwrap();
    let nodes: Vec<std::sync::Arc<ChannelStore>> = (0..2)
        .map(|_| {
            let store = ::livebucket::store::Store::new(&cfg.s3, &cfg.keys);
            std::sync::Arc::new(ChannelStore::new(store))
        })
        .collect();
    let key = stack.key().id.clone();
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..4 {
            let (node, key) = (node.clone(), key.clone());
            writers.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for i in 0..2 {
                    let token = format!("{n}{w}{i} ");
                    let result = node
                        .update(&key, BUCKET, "race", |current| {
                            let mut r = current.unwrap_or_else(|| ChannelRecord {
                                name: "race".into(),
                                config: LiveChannelConfig::default(),
                                last_modified: 0,
                            });
                            r.config.description.push_str(&token);
                            Ok::<_, ChannelError>(r)
                        })
                        .await;
                    match result {
                        Ok(_) => outcomes.push((token, true)),
                        Err(ChannelError::Conflict { .. }) => outcomes.push((token, false)),
                        Err(e) => panic!("update {token}: {e}"),
                    }
                }
                outcomes
            }));
        }
    }
    let mut outcomes = Vec::new();
    for w in writers {
        outcomes.extend(w.await.unwrap());
    }
    // A third view, read fresh from the bucket.
    let reader = ChannelStore::new(::livebucket::store::Store::new(&cfg.s3, &cfg.keys));
    let record = reader.get(&key, BUCKET, "race").await.unwrap().unwrap();
    // Sorted lists, not sets: a change applied twice would show too.
    let mut stored: Vec<&str> = record.config.description.split_whitespace().collect();
    let mut landed: Vec<&str> = outcomes
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(t, _)| t.trim())
        .collect();
    stored.sort();
    landed.sort();
    assert_eq!(
        stored, landed,
        "the record holds exactly the changes reported as stored, each once; \
         outcomes: {outcomes:?}"
    );
    assert!(
        landed.len() >= outcomes.len() / 2,
        "most changes should land within the retries: {outcomes:?}"
    );
    // The writers did race: RGW refused some write-backs (412, or 500 for
    // a cancelled head write), which livebucket then re-applied.
    let rgw_log = std::fs::read_to_string(stack.store.dir().join("log/client.rgw.log")).unwrap();
    let refused = rgw_log
        .lines()
        .filter(|l| l.contains("\"PUT /media/.livebucket/channels/race.json"))
        .filter(|l| l.contains("HTTP/1.1\" 412 ") || l.contains("HTTP/1.1\" 500 "))
        .count();
    assert!(
        refused > 0,
        "no write-back lost a race: the test raced nothing"
    );
}

/// Garage ignores conditional headers: the probe says so, and channel
/// changes are plain writes as before (the lifecycle test above runs on it).
#[tokio::test(flavor = "multi_thread")]
async fn garage_is_detected_without_conditional_writes() {
    let stack = Stack::start("channels-garage-probe");
    let logged = conditional_detection(&stack).await;
    assert!(
        logged.contains("has no conditional writes"),
        "Garage: {logged}"
    );
    let cfg = ::livebucket::config::Config::load(stack.livebucket.config_path()).unwrap();
    let channels = ::livebucket::channels::ChannelStore::new(::livebucket::store::Store::new(
        &cfg.s3, &cfg.keys,
    ));
    assert_eq!(
        channels.conditional(&stack.key().id, BUCKET).await.unwrap(),
        ::livebucket::store::Conditional::Unsupported
    );
    // The probe leaves nothing behind.
    assert_eq!(stack.s3.list(BUCKET, ".livebucket/probe/").await, []);
}

/// Uploads the store refuses with a final answer (here the key lost its
/// write permission on the bucket, so Garage answers `AccessDenied`) show
/// in GetLiveChannelStat to the bucket's keys (livebucket's
/// `LivebucketParkedUploads`: count, S3 code, since), while oss2 still reads
/// the answer; a key of another bucket sees nothing of them. Once the
/// permission is back and livebucket reloads, the element is gone and every
/// fragment is stored exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn parked_uploads_show_in_the_stat_to_the_buckets_keys_only() {
    const CHANNEL: &str = "cam";
    let mut stack = Stack::start_with(
        "channels-parked",
        // A long backoff: only the reload can end the parking in time.
        "[upload]\nmax_backoff_secs = 600\n[live]\nwindow_segments = 200\n",
    );
    let endpoint = stack.livebucket.url();
    let key = stack.key().clone();
    let TestStore::Garage(garage) = &mut stack.store else {
        unreachable!("Stack::start_with runs Garage")
    };
    // A second tenant: a key allowed on OTHER_BUCKET only.
    let tenant = garage.create_key_for(OTHER_BUCKET);
    let config_path = stack.livebucket.config_path().to_owned();
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        "\n[[keys]]\nid = \"{}\"\nsecret = \"{}\"\nbuckets = [\"{OTHER_BUCKET}\"]\n",
        tenant.id, tenant.secret
    ));
    std::fs::write(&config_path, &config).unwrap();
    stack.livebucket.reload();
    let reloads = |stack: &Stack| {
        stack
            .livebucket
            .log()
            .matches("configuration reloaded")
            .count()
    };
    wait_until("the reload", secs(10), millis(100), async || {
        (reloads(&stack) >= 1).then_some(()).ok_or("not yet")
    })
    .await;

    let mine = (key.id.as_str(), key.secret.as_str());
    let theirs = (tenant.id.as_str(), tenant.secret.as_str());
    let create = [
        ("channel", CHANNEL),
        ("frag_duration", "2"),
        ("playlist_name", "index.m3u8"),
    ];
    let created = oss2(&endpoint, BUCKET, mine, "create", &create);
    assert!(created.get("error").is_none(), "{created}");
    let created = oss2(&endpoint, OTHER_BUCKET, theirs, "create", &create);
    assert!(created.get("error").is_none(), "{created}");
    let raw_stat = |bucket: &str, who: (&str, &str)| {
        let v = oss2(&endpoint, bucket, who, "raw_stat", &[("channel", CHANNEL)]);
        v["body"]
            .as_str()
            .unwrap_or_else(|| panic!("raw_stat: {v}"))
            .to_owned()
    };
    assert!(!raw_stat(BUCKET, mine).contains("Parked"));

    // The store now refuses this key's writes to the bucket.
    let TestStore::Garage(garage) = &mut stack.store else {
        unreachable!()
    };
    garage.cli(&["bucket", "deny", "--write", BUCKET, "--key", &key.id]);
    let ledger = Ledger::new(stack.dir.join("nginx-wrote"));
    let recorder = Recorder::start(&stack.hls_dir, &ledger);
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, CHANNEL);
    let mut push = stack.push(&stack.sign_push(CHANNEL), 8);
    let t0 = common::livebucket::unix_now() - 1;

    let parked = wait_until(
        "the parked uploads in the stat",
        secs(30),
        millis(300),
        async || {
            let body = raw_stat(BUCKET, mine);
            body.contains("<LivebucketParkedUploads>")
                .then(|| body.clone())
                .ok_or(body)
        },
    )
    .await;
    let element = |name: &str| {
        parked
            .split_once(&format!("<{name}>"))
            .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
            .map(|(v, _)| v.to_owned())
            .unwrap_or_else(|| panic!("no {name} in {parked}"))
    };
    assert_eq!(element("Code"), "AccessDenied", "{parked}");
    assert!(element("Count").parse::<u64>().unwrap() >= 1, "{parked}");
    let since = element("Since");
    let since = time::OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("Since {since}: {e}"))
        .unix_timestamp();
    assert!(
        since >= t0 as i64 && since <= common::livebucket::unix_now() as i64,
        "{parked}"
    );
    // Nothing secret: no key id, secret, URL or S3 message.
    for secret in [key.id.as_str(), key.secret.as_str(), "http", "Forbidden"] {
        assert!(!parked.contains(secret), "{secret} in {parked}");
    }
    // oss2's parser still reads the answer.
    let stat = oss2(&endpoint, BUCKET, mine, "stat", &[("channel", CHANNEL)]);
    assert!(
        stat.get("error").is_none() && ["Live", "Idle"].contains(&stat["status"].as_str().unwrap()),
        "{stat}"
    );
    // The other tenant sees nothing of it: not in its own channel of the
    // same name, and this bucket's stat is refused to it.
    assert!(!raw_stat(OTHER_BUCKET, theirs).contains("Parked"));
    let refused = oss2(&endpoint, BUCKET, theirs, "stat", &[("channel", CHANNEL)]);
    assert_eq!(refused["error"]["code"], "AccessDenied", "{refused}");

    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "the push failed; ffmpeg:\n{}", push.log());
    // The operator gives the permission back and reloads: the parked
    // uploads go at once.
    let TestStore::Garage(garage) = &mut stack.store else {
        unreachable!()
    };
    garage.cli(&["bucket", "allow", "--write", BUCKET, "--key", &key.id]);
    stack.livebucket.reload();
    wait_until("the second reload", secs(10), millis(100), async || {
        (reloads(&stack) >= 2).then_some(()).ok_or("not yet")
    })
    .await;
    watch
        .wait_for("#EXT-X-ENDLIST", secs(30), playlist_watch::ended)
        .await;
    let observed = watch.finish().await;
    drop(recorder);
    let stored = bucket_check::assert_bucket_matches(
        &ledger,
        &stack.s3,
        CHANNEL,
        &observed,
        FinalPlaylist::ListsAll,
    )
    .await;
    assert!(stored.len() >= 3, "{} fragments stored", stored.len());
    wait_until(
        "the parked uploads to leave the stat",
        secs(20),
        millis(300),
        async || {
            let body = raw_stat(BUCKET, mine);
            (!body.contains("Parked")).then_some(()).ok_or(body)
        },
    )
    .await;
}
