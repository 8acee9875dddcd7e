//! The web console (`/console/`) in real Chromium, headless with web
//! security on, driven over the DevTools protocol by puppeteer-core
//! (`tests/console/drive.cjs`, installed by `scripts/install-deps`), against
//! real nginx-rtmp, ffmpeg, Garage and livebucket: a wrong secret is refused
//! and nothing kept; sign in; create a channel (and an API error in words);
//! sign a push URL in the page and push to it with ffmpeg; the channel turns
//! Live with ffmpeg's real size and frame rate and a snapshot thumbnail;
//! while the store refuses the key's writes, the list and the channel page
//! warn with the S3 code, and the warning goes once writes are allowed again;
//! hls.js plays the signed `/play` URL with its latency shown, also from a
//! page on another origin (while an origin not in `http.cors_origins` is
//! refused); five reloads keep every segment URI; disabling drops the push;
//! a picked push plays as VOD to its end; and no request carried the secret.
//! Screenshots of each page are the test's artefacts: in
//! `target/tmp/e2e_console/` (cargo's `CARGO_TARGET_TMPDIR`, kept after the
//! run, replaced by the next), their paths printed.
//!
//! `js_signers_match_rust` checks the page's signers (console/js/sign.js)
//! against the Rust ones in node, without a browser.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use ::livebucket::sign::oss_v1 as sign;
use ::livebucket::sign::{play, push};
use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use common::process::{Proc, Stop};
use common::*;
use serde_json::{Value, json};

const CHANNEL: &str = "console-cam";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Serves a bare hls.js player page on a loopback port: another origin than
/// livebucket's. It loads hls.js from the console of the livebucket its
/// fragment's URL names (a script needs no CORS), plays that URL and records
/// fatal errors on the video element.
fn player_origin() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a player port");
    let origin = format!("http://{}", listener.local_addr().unwrap());
    const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>player on another origin</title>
<video id="v" controls playsinline style="width:640px"></video>
<script>
const v = document.getElementById("v");
v.muted = true;
const url = decodeURIComponent(location.hash.slice(1));
if (url.startsWith("http")) {
  const script = document.createElement("script");
  script.src = new URL(url).origin + "/console/vendor/hls.js/hls.min.js";
  // As the console does (console/js/ui.js playHls): restart once at the
  // fragment that brings video when the first one had audio only.
  const start = (at) => {
    const hls = new Hls({ startPosition: at });
    hls.on(Hls.Events.ERROR, (_, d) => {
      const newTrack = d.details === "bufferAppendError" &&
        /does not exist/.test(String(d.error && d.error.message));
      if (newTrack && !v.dataset.restarts && d.frag) {
        v.dataset.restarts = "1";
        hls.destroy();
        start(d.frag.start + Math.min(0.5, d.frag.duration / 2));
        return;
      }
      if (d.fatal) v.dataset.fatal = d.type + ": " + d.details;
    });
    hls.loadSource(url);
    hls.attachMedia(v);
    v.play().catch(() => {});
  };
  script.onload = () => start(-1);
  document.head.append(script);
}
</script>
"#;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            // The request head, up to its empty line.
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
        }
    });
    origin
}

/// The lines of the driver's output so far that start with `prefix`.
fn lines_with(log: &str, prefix: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(str::to_owned)
        .collect()
}

async fn wait_line(driver: &mut Proc, prefix: &str, timeout_secs: u64) -> String {
    wait_until(
        &format!("the console driver to print {prefix:?}"),
        secs(timeout_secs),
        millis(200),
        async || {
            let log = driver.log();
            if let Some(failed) = lines_with(&log, "FAILED ").first() {
                panic!("the console driver failed: {failed}\n{log}");
            }
            if let Some(status) = driver.try_wait()
                && lines_with(&log, prefix).is_empty()
            {
                panic!("the console driver exited ({status}) early:\n{log}");
            }
            lines_with(&log, prefix).into_iter().next().ok_or("not yet")
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_chromium() {
    let allowed = player_origin();
    let denied = player_origin();
    let mut stack = Stack::start_with(
        "console",
        &format!("[http]\ncors_origins = [\"{allowed}\"]\n"),
    );
    let lb = stack.livebucket.url();
    let key = stack.key().clone();

    // Segments come from Garage, another origin: the bucket's CORS rule.
    stack
        .s3
        .client()
        .put_bucket_cors()
        .bucket(BUCKET)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(
                    CorsRule::builder()
                        .allowed_origins(lb.clone())
                        .allowed_origins(allowed.clone())
                        .allowed_methods("GET")
                        .allowed_methods("HEAD")
                        .allowed_headers("*")
                        .max_age_seconds(600)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutBucketCors: {e:?}"));

    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e_console");
    let _ = std::fs::remove_dir_all(&artefacts);
    std::fs::create_dir_all(&artefacts).unwrap();
    let profile = stack.dir.subdir("chromium-profile");
    let signals = stack.dir.subdir("signals");
    let mut cmd = Command::new("node");
    cmd.arg(repo("tests/console/drive.cjs"))
        .env("LB_URL", &lb)
        .env("LB_KEY_ID", &key.id)
        .env("LB_SECRET", &key.secret)
        .env("LB_BUCKET", BUCKET)
        .env("LB_FOREIGN_BUCKET", OTHER_BUCKET)
        .env("LB_CHANNEL", CHANNEL)
        .env("LB_OTHER_ORIGIN", &allowed)
        .env("LB_DENIED_ORIGIN", &denied)
        .env("LB_ARTEFACTS", &artefacts)
        .env("LB_PROFILE", &profile)
        .env("LB_SIGNALS", &signals)
        .env("LB_RTMP_ENDPOINT", stack.nginx.push_base())
        .env("LB_NODE_MODULES", player::node_modules());
    let mut driver = Proc::spawn(
        "console driver",
        cmd,
        &stack.dir.join("console-driver.log"),
        Stop::Term { grace: secs(10) },
    );

    let push_url = wait_line(&mut driver, "PUSH_URL ", 120).await;
    assert!(
        push_url.starts_with(&format!(
            "{}/{CHANNEL}?Bucket={BUCKET}&",
            stack.nginx.push_base()
        )),
        "the console's push URL is not an RGW URL on nginx's endpoint: {push_url}"
    );
    let mut pushing =
        common::ffmpeg::push_video(&stack.dir, "testsrc=size=640x360:rate=25", &push_url, 180);
    std::fs::write(signals.join("pushing"), "").unwrap();

    // One outage: Garage refuses the key's writes to the bucket (a final
    // answer, AccessDenied) until the permission is back and livebucket
    // reloads.
    wait_line(&mut driver, "REFUSE", 300).await;
    let TestStore::Garage(garage) = &mut stack.store else {
        unreachable!("Stack::start_with runs Garage")
    };
    garage.cli(&["bucket", "deny", "--write", BUCKET, "--key", &key.id]);
    std::fs::write(signals.join("refusing"), "").unwrap();
    wait_line(&mut driver, "RESTORE", 120).await;
    let TestStore::Garage(garage) = &mut stack.store else {
        unreachable!()
    };
    garage.cli(&["bucket", "allow", "--write", BUCKET, "--key", &key.id]);
    stack.livebucket.reload();
    std::fs::write(signals.join("restored"), "").unwrap();

    wait_line(&mut driver, "DISABLED", 400).await;
    pushing.exit_within(secs(40)).await;
    std::fs::write(signals.join("dropped"), "").unwrap();

    let result = wait_line(&mut driver, "RESULT ", 300).await;
    let log = driver.log();
    let r: Value = serde_json::from_str(&result)
        .unwrap_or_else(|e| panic!("the driver's RESULT is not JSON ({e}): {result}"));
    println!("console driver said: {r:#}");
    for shot in lines_with(&log, "SCREENSHOT ") {
        println!("screenshot: {shot}");
        assert!(Path::new(&shot).is_file(), "{shot} was not written");
    }
    // A wrong secret: refused in words, nothing kept.
    let refusal = r["refusal"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("secret does not match"),
        "refusal: {refusal}"
    );
    assert_eq!(r["storedAfterRefusal"], 0, "a refused sign-in was stored");
    assert_eq!(r["signInFormAfterRefusal"], true);
    // A key sees only its buckets.
    let foreign = r["foreignRefusal"].as_str().unwrap_or_default();
    assert!(
        foreign.contains("may not manage this bucket"),
        "refusal: {foreign}"
    );
    assert_eq!(r["storedAfterForeign"], 0, "a refused sign-in was stored");
    assert_eq!(r["createdStatus"], "Idle");
    // Set in the create form, read back from the channel's record.
    assert_eq!(
        r["retention"],
        "Recordings are deleted once older than 7 days."
    );
    assert_eq!(r["renditions"], "Renditions: none (the source only).");
    let refused = r["renditionsRefused"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("Not saved:") && refused.contains("720p"),
        "renditions refusal: {refused}"
    );
    let create_error = r["createError"].as_str().unwrap_or_default();
    assert!(
        create_error.starts_with("Livebucket refused a value:"),
        "create error: {create_error}"
    );

    // The push-URL generator: the endpoint from the channel's PublishUrls
    // (the default, as no api.publish_url is set), OBS split, ffmpeg line.
    assert_eq!(r["endpointFromApi"], "rtmp://127.0.0.1:1935/live");
    assert_eq!(r["obsServer"], stack.nginx.push_base().as_str());
    assert_eq!(
        format!(
            "{}/{}",
            r["obsServer"].as_str().unwrap(),
            r["obsKey"].as_str().unwrap()
        ),
        push_url
    );
    assert!(
        r["ffmpegLine"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-f flv '{push_url}'"))
    );

    // Live, with what ffmpeg really sends: 640x360 at 25 fps.
    assert_eq!(r["liveStat"]["width"], 640, "{}", r["liveStat"]);
    assert_eq!(r["liveStat"]["height"], 360, "{}", r["liveStat"]);
    assert_eq!(r["liveStat"]["frameRate"], 25, "{}", r["liveStat"]);
    assert!(
        r["liveStat"]["text"]
            .as_str()
            .unwrap()
            .contains("from 127.0.0.1"),
        "{}",
        r["liveStat"]
    );
    assert_eq!(r["thumbnail"]["width"], 640, "{}", r["thumbnail"]);
    assert_eq!(r["thumbnail"]["height"], 360, "{}", r["thumbnail"]);
    // The parked uploads, in the list and on the channel's page, then gone.
    for view in ["parkedList", "parkedDetail"] {
        assert_eq!(r[view]["code"], "AccessDenied", "{view}: {}", r[view]);
        let text = r[view]["text"].as_str().unwrap_or_default();
        assert!(
            text.starts_with("The store refuses this channel's uploads (AccessDenied)")
                && text.contains("write permission on the bucket"),
            "{view}: {text}"
        );
    }
    assert_eq!(r["parkedGone"], true, "{}", r["parkedGone"]);
    assert!(
        r["narrowOverflow"].as_i64().unwrap() <= 0,
        "the list is wider than 360 px by {}",
        r["narrowOverflow"]
    );

    // hls.js played /play in the console and on another origin.
    for play in ["livePlay", "otherOriginPlay"] {
        assert!(r[play]["fatal"].is_null(), "{play}: {}", r[play]);
        let advanced = r[play]["last"].as_f64().unwrap() - r[play]["first"].as_f64().unwrap();
        assert!(advanced >= 4.0, "{play}: {}", r[play]);
        // At most the one restart past an audio-only first fragment.
        assert!(
            r[play]["restarts"].as_u64().unwrap() <= 1,
            "{play}: {}",
            r[play]
        );
    }
    let latency = r["latency"]["seconds"].as_f64().unwrap();
    assert!(latency > 0.0, "latency {}", r["latency"]);
    assert!(
        r["deniedFetch"].as_str().unwrap().starts_with("refused"),
        "an origin not in http.cors_origins read /play: {}",
        r["deniedFetch"]
    );
    assert_eq!(
        r["reloads"]["changed"], 0,
        "a segment changed its URI: {}",
        r["reloads"]
    );
    assert!(r["reloads"]["segments"].as_u64().unwrap() >= 3);

    // Disabled: the push was dropped (ffmpeg exited above, long before its
    // 180 s ran out) and the page says so.
    assert_eq!(r["disabledStatus"], "Disabled");
    assert!(
        stack.livebucket.log().contains("channel_disabled"),
        "livebucket did not log the drop as a disabled channel"
    );

    let delete_live = r["deleteWhileLive"].as_str().unwrap_or_default();
    assert!(
        delete_live.starts_with("The channel is live"),
        "delete while live: {delete_live}"
    );
    assert_eq!(r["enabledStatus"], "Idle");
    assert_eq!(r["afterDelete"], "No channels yet.");

    // VOD: played to its end, no fatal error; the copyable URL plays too.
    assert!(r["vod"]["fatal"].is_null(), "vod: {}", r["vod"]);
    assert!(
        r["vod"]["restarts"].as_u64().unwrap() <= 1,
        "vod: {}",
        r["vod"]
    );
    let duration = r["vod"]["duration"].as_f64().unwrap();
    assert!(duration >= 4.0, "vod: {}", r["vod"]);
    let vod_url = r["vodUrl"].as_str().unwrap();
    let vod = get_text(vod_url).await;
    assert!(vod.contains("#EXT-X-ENDLIST"), "{vod}");
    assert!(vod.contains(&format!("/{BUCKET}/{CHANNEL}/")), "{vod}");

    // No request carried the secret; the API calls were signed.
    assert!(r["requests"].as_u64().unwrap() > 20, "{}", r["requests"]);
    assert_eq!(
        r["requestsWithSecret"],
        json!([]),
        "requests carried the secret"
    );
    assert!(r["signedApiRequests"].as_u64().unwrap() >= 5);
}

/// GET with the harness's HTTP client; the body as text, panicking unless 200.
async fn get_text(url: &str) -> String {
    let resp = common::httpc::get(url).await;
    assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
    resp.text()
}

/// The page's signers give exactly what the Rust signers give.
#[test]
fn js_signers_match_rust() {
    let (id, secret) = (
        "GK31c2f218a2e44f485b94239e",
        "b892c0986f4a1f1f2a1e7ac1a5c5ac9bd72e4ee6d4b7",
    );
    let mut vectors = Vec::new();
    let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for (name, method, object, q, content_type) in [
        (
            "list",
            "GET",
            "",
            query(&[("live", ""), ("max-keys", "1000")]),
            "",
        ),
        (
            "stat",
            "GET",
            "cam1",
            query(&[("live", ""), ("comp", "stat")]),
            "",
        ),
        (
            "status",
            "PUT",
            "cam1",
            query(&[("live", ""), ("status", "disabled")]),
            "",
        ),
        (
            "create",
            "PUT",
            "cam 1",
            query(&[("live", "")]),
            "application/xml",
        ),
    ] {
        let date = "Sun, 29 Nov 2026 10:00:00 GMT";
        let headers: Vec<(&str, &[u8])> = {
            let mut h = vec![("x-oss-date", date.as_bytes())];
            if !content_type.is_empty() {
                h.push(("Content-Type", content_type.as_bytes()));
            }
            h
        };
        let view = sign::RequestView {
            method,
            bucket: "media",
            object,
            query: &q,
            headers: &headers,
        };
        let req = json!({
            "method": method, "contentType": content_type, "date": date,
            "ossHeaders": {"x-oss-date": date}, "bucket": "media", "object": object,
            "query": q,
        });
        vectors.push(json!({
            "kind": "oss_authorization", "name": name,
            "args": {"keyId": id, "secret": secret, "req": req},
            "expected": sign::authorization_header(id, secret, &view).unwrap(),
        }));
    }
    let snapshot = "cam1/snapshot/latest.jpg";
    let view = sign::RequestView {
        method: "GET",
        bucket: "media",
        object: snapshot,
        query: &[],
        headers: &[],
    };
    vectors.push(json!({
        "kind": "oss_presign", "name": "snapshot",
        "args": {"keyId": id, "secret": secret, "expires": 1_800_000_000u64,
                 "req": {"method": "GET", "bucket": "media", "object": snapshot, "query": []}},
        "expected": sign::presign_query(id, secret, &view, 1_800_000_000).unwrap(),
    }));
    vectors.push(json!({
        "kind": "play_query", "name": "index",
        "args": {"keyId": id, "secret": secret, "bucket": "media", "channel": "cam1",
                 "playlist": "my list.m3u8", "expires": 1_800_000_000u64},
        "expected": play::play_query(id, secret, "media", "cam1", "my list.m3u8", 1_800_000_000).unwrap(),
    }));
    for (method, urls, name) in [("GET", "presigned", ""), ("POST", "relative", "vod 1.m3u8")] {
        let scope = play::VodScope {
            method,
            bucket: "media",
            channel: "cam1",
            start: 1_764_000_000,
            end: 1_764_000_090,
            urls,
            name,
        };
        vectors.push(json!({
            "kind": "vod_query", "name": method,
            "args": {"keyId": id, "secret": secret, "expires": 1_800_000_000u64,
                     "scope": {"method": method, "bucket": "media", "channel": "cam1",
                               "start": 1_764_000_000u64, "end": 1_764_000_090u64,
                               "urls": urls, "name": name}},
            "expected": play::vod_query(id, secret, &scope, 1_800_000_000).unwrap(),
        }));
    }
    for channel in ["cam1", "cam-1_a.b~(x)!$&'*+,;=:@"] {
        vectors.push(json!({
            "kind": "rgw_push_url", "name": channel,
            "args": {"endpoint": "rtmp://127.0.0.1:1935/live/", "bucket": "media", "channel": channel,
                     "keyId": id, "secret": secret, "expires": 1_800_000_000u64},
            "expected": push::rgw_push_url("rtmp://127.0.0.1:1935/live/", "media", channel, id, secret, 1_800_000_000).unwrap(),
        }));
        for playlist in [None, Some("live 1.m3u8")] {
            vectors.push(json!({
                "kind": "oss_push_url", "name": format!("{channel} {playlist:?}"),
                "args": {"endpoint": "rtmp://media.live.test/live", "bucket": "media", "channel": channel,
                         "keyId": id, "secret": secret, "expires": 1_800_000_000u64,
                         "playlistName": playlist.unwrap_or("")},
                "expected": push::oss_push_url("rtmp://media.live.test/live", "media", channel, id, secret, 1_800_000_000, playlist).unwrap(),
            }));
        }
    }
    let dir = TestDir::new("console-vectors");
    let file = dir.join("vectors.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&vectors).unwrap()).unwrap();
    let out = Command::new("node")
        .arg(repo("tests/console/sign_vectors.mjs"))
        .arg(&file)
        .output()
        .expect("cannot run node (scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the page's signers differ from Rust's:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{0} of {0} vectors match", vectors.len())),
        "{text}"
    );
}

/// The page's warning for parked uploads, in node without a browser
/// (`tests/console/parked_words.mjs`).
#[test]
fn js_parked_warning_words() {
    let out = Command::new("node")
        .arg(repo("tests/console/parked_words.mjs"))
        .output()
        .expect("cannot run node (scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("FAIL"),
        "the console's parked-upload warning:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().filter(|l| l.starts_with("ok ")).count() >= 10,
        "{text}"
    );
}

/// The console's renditions field, in node without a browser
/// (`tests/console/renditions_words.mjs`): it takes what the API takes.
#[test]
fn js_renditions_field() {
    let out = Command::new("node")
        .arg(repo("tests/console/renditions_words.mjs"))
        .output()
        .expect("cannot run node (scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("FAIL"),
        "the console's renditions field:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().filter(|l| l.starts_with("ok ")).count() >= 20,
        "{text}"
    );
}

/// The words of the player's quality levels, in node without a browser
/// (`tests/console/levels_words.mjs`).
#[test]
fn js_level_words() {
    let out = Command::new("node")
        .arg(repo("tests/console/levels_words.mjs"))
        .output()
        .expect("cannot run node (scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("FAIL"),
        "the console's level words:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().filter(|l| l.starts_with("ok ")).count() >= 9,
        "{text}"
    );
}
