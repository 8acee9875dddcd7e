//! VOD and playback, end to end: ffmpeg → nginx-rtmp → livebucket → Garage,
//! then ffmpeg, ffprobe and a plain HTTP client reading back through
//! presigned URLs.
//!
//! - a VOD over two publish sessions (CLI and API) lists every stored segment
//!   once, with one DISCONTINUITY between the sessions and a
//!   PROGRAM-DATE-TIME at each session start, and decodes for as long as its
//!   EXTINFs say; every live playlist version on the way passes the spec
//!   checker;
//! - without session manifests the same range comes from a listing;
//! - `/play` serves a live playlist whose segment URLs Garage accepts, until
//!   they expire; expired and forged play signatures, and a parameter given
//!   twice with different values, are refused;
//! - `livebucket sign play` URLs (SigV4) are accepted by Garage, and SigV2
//!   URLs have the documented form and signature.
//!
//! Each also runs on Ceph RGW (`rgw_*`), which accepts SigV2 as well: there
//! the SigV2 segment and object URLs are fetched straight from the bucket.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{KeyInit, Mac};
use percent_encoding::percent_decode_str;

use common::hlscheck::{CheckedPlaylist, check_playlist};
use common::httpc::{self, Response};
use common::livebucket::BIN;
use common::playlist_watch::PlaylistWatch;
use common::*;

/// Each push of the two-session test.
const SESSION_SECONDS: u32 = 12;
/// `vod.max_range_secs` of the VOD test's livebucket.
const MAX_RANGE_SECS: u64 = 300;
/// Frame rate of the harness's pushes (`testsrc=rate=30`).
const FPS: f64 = 30.0;

/// `livebucket ARGS…`; panics with its output unless it succeeds. Returns
/// (stdout, stderr).
fn livebucket(args: &[&str]) -> (String, String) {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run livebucket {args:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(
        output.status.success(),
        "livebucket {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

fn config_arg(stack: &Stack) -> &str {
    stack.livebucket.config_path().to_str().unwrap()
}

/// `livebucket vod` of `channel` in [`BUCKET`] over `[start, end)` (epoch
/// seconds), with `extra` options; panics unless it succeeds. Returns its
/// stderr.
fn livebucket_vod(stack: &Stack, channel: &str, start: u64, end: u64, extra: &[&str]) -> String {
    let (start, end) = (start.to_string(), end.to_string());
    let mut args = vec![
        "vod",
        "--config",
        config_arg(stack),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--start",
        &start,
        "--end",
        &end,
    ];
    args.extend_from_slice(extra);
    livebucket(&args).1
}

/// `livebucket sign play --via-livebucket URL --key-name CHANNEL/PLAYLIST
/// EXPIRY…`: a `/play` URL (or, with PLAYLIST = `vod`, the signature of the
/// VOD API).
fn sign_play_via(stack: &Stack, key_name: &str, expiry: &[&str]) -> String {
    let mut args = vec!["sign", "play", "--config", config_arg(stack)];
    args.extend(["--bucket", BUCKET, "--key-name", key_name]);
    let base = stack.livebucket.url();
    args.extend(["--via-livebucket", &base]);
    args.extend_from_slice(expiry);
    let url = first_line(&livebucket(&args).0);
    let path = url.split('?').next().unwrap_or_default();
    assert_eq!(
        percent_decode_str(path).decode_utf8_lossy(),
        format!("{base}/play/{BUCKET}/{key_name}"),
        "sign play --via-livebucket printed {url:?}"
    );
    url
}

/// `livebucket sign play --key-name KEY EXTRA…`: a presigned S3 URL.
fn sign_object(stack: &Stack, key: &str, extra: &[&str]) -> String {
    let mut args = vec!["sign", "play", "--config", config_arg(stack)];
    args.extend(["--bucket", BUCKET, "--key-name", key]);
    args.extend_from_slice(extra);
    first_line(&livebucket(&args).0)
}

fn first_line(out: &str) -> String {
    out.lines().next().unwrap_or_default().trim().to_owned()
}

/// The VOD API URL for `METHOD` on `channel` with `params` (`start`, `end`,
/// `urls`, `name`), signed by `livebucket sign vod`. A parameter given twice
/// is signed with its first value and sent with both.
fn vod_api_url(stack: &Stack, method: &str, channel: &str, params: &str) -> String {
    let mut args = vec![
        "sign".to_owned(),
        "vod".into(),
        "--config".into(),
        config_arg(stack).to_owned(),
        "--bucket".into(),
        BUCKET.into(),
        "--channel".into(),
        channel.into(),
        "--expires-in".into(),
        "600".into(),
        "--via-livebucket".into(),
        stack.livebucket.url(),
    ];
    if method == "POST" {
        args.push("--post".into());
    }
    let mut seen = std::collections::HashSet::new();
    let mut extra = Vec::new();
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !seen.insert(k.to_owned()) {
            extra.push(pair.to_owned());
            continue;
        }
        args.push(format!("--{k}"));
        args.push(percent_decode_str(v).decode_utf8_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut url = first_line(&livebucket(&args).0);
    for pair in extra {
        url = format!("{url}&{pair}");
    }
    url
}

/// `METHOD` (GET or POST) on `channel`'s VOD API with `params`; asserts
/// that it answers 200.
async fn vod_api_ok(stack: &Stack, method: &str, channel: &str, params: &str) -> httpc::Response {
    let url = vod_api_url(stack, method, channel, params);
    let resp = httpc::request(method, &url)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    assert_eq!(
        resp.status,
        200,
        "{method} vod of {channel}?{params}: {}",
        resp.text()
    );
    resp
}

/// The `.ts` object keys under `CHANNEL/`, in key (= time) order.
async fn ts_keys(s3: &S3, channel: &str) -> Vec<String> {
    s3.list(BUCKET, &format!("{channel}/"))
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| common::is_fragment_key(k))
        .collect()
}

/// The keys of `all` whose time is in `[start_s, end_s)` (seconds).
fn keys_in(all: &[String], start_s: u64, end_s: u64) -> Vec<String> {
    all.iter()
        .filter(|k| (start_s * 1000..end_s * 1000).contains(&key_ms(k)))
        .cloned()
        .collect()
}

/// The object key a path-style URL on `endpoint` addresses in [`BUCKET`],
/// decoded; panics if the URL points anywhere else.
fn object_key(endpoint: &str, url: &str) -> String {
    let path = url
        .strip_prefix(endpoint)
        .and_then(|r| r.strip_prefix(&format!("/{BUCKET}/")))
        .unwrap_or_else(|| panic!("{url} is not an object of {endpoint}/{BUCKET}"));
    let path = path.split('?').next().unwrap_or_default();
    percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// Every segment URI of a playlist must be a SigV4 presigned URL on the store;
/// returns their object keys in order.
fn presigned_keys(endpoint: &str, playlist: &CheckedPlaylist, text: &str) -> Vec<String> {
    playlist
        .uris
        .iter()
        .map(|uri| {
            for param in ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"] {
                assert!(
                    query_param(uri, param).is_some(),
                    "segment URI {uri} has no {param}; the playlist:\n{text}"
                );
            }
            object_key(endpoint, uri)
        })
        .collect()
}

/// `CHANNEL/<13 digits>.ts` → the epoch ms in its name.
fn key_ms(key: &str) -> u64 {
    key.rsplit('/')
        .next()
        .and_then(|n| n.strip_suffix(".ts"))
        .filter(|d| d.len() == 13)
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not CHANNEL/<13-digit epoch ms>.ts"))
}

/// (segment index, epoch ms) of each `#EXT-X-PROGRAM-DATE-TIME`, read from
/// the playlist text here rather than by the code under test.
fn program_date_times(text: &str) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut pending = None;
    let mut segment = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(value) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            pending = Some(utc_ms(value));
        } else if !line.starts_with('#') {
            if let Some(ms) = pending.take() {
                out.push((segment, ms));
            }
            segment += 1;
        }
    }
    out
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` (the only form livebucket writes) → epoch ms.
fn utc_ms(s: &str) -> u64 {
    let field = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("PROGRAM-DATE-TIME {s:?} is not YYYY-MM-DDThh:mm:ss.mmmZ"))
    };
    assert!(
        s.len() == 24 && s.ends_with('Z') && &s[19..20] == ".",
        "PROGRAM-DATE-TIME {s:?} is not YYYY-MM-DDThh:mm:ss.mmmZ"
    );
    let (y, m, d) = (field(0..4), field(5..7), field(8..10));
    // Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + field(11..13) * 3600 + field(14..16) * 60 + field(17..19);
    u64::try_from(secs * 1000 + field(20..23)).expect("a date after 1970")
}

/// The `extinf` metadata of each key, in seconds.
async fn extinfs(s3: &S3, keys: &[String]) -> Vec<f64> {
    let mut out = Vec::new();
    for key in keys {
        let head = s3.head(BUCKET, key).await;
        let extinf = head
            .metadata
            .get("extinf")
            .unwrap_or_else(|| panic!("{key} has no extinf metadata: {head:?}"));
        out.push(
            extinf
                .parse()
                .unwrap_or_else(|_| panic!("{key}: extinf {extinf:?} is not a number")),
        );
    }
    out
}

fn assert_durations(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() < 0.0015,
            "{what}: segment {i} has EXTINF {g}, its object says {w}"
        );
    }
}

/// Runs `cmd` with stdout and stderr in files of the test's directory,
/// killing it (by PID) after `timeout`. Returns (status, stdout, stderr).
fn run_bounded(
    dir: &TestDir,
    what: &str,
    cmd: &mut Command,
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let (out, err) = (dir.unique_file(what, "out"), dir.unique_file(what, "err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(process::create_file(&out))
        .stderr(process::create_file(&err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("cannot poll a child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} still running after {timeout:?}: {cmd:?}\nstderr:\n{}",
                process::read_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, process::read_lossy(&out), process::read_lossy(&err))
}

/// What ffmpeg and ffprobe make of a playlist.
#[derive(Debug)]
struct Decoded {
    /// Audio samples decoded / sample rate (AAC frames of 1024 samples).
    audio_seconds: f64,
    /// Video frames decoded / frame rate.
    video_seconds: f64,
    /// ffprobe's `format=duration`.
    format_duration: f64,
}

/// Decodes every segment of `playlist` with ffmpeg (which must report no
/// error: a segment it cannot fetch is only logged, so the log is read) and
/// counts its audio and video frames with ffprobe. Frame counts do not depend
/// on timestamps, which restart at every session.
fn decode_playlist(dir: &TestDir, playlist: &Path) -> Decoded {
    let whitelist = ["-protocol_whitelist", "file,http,tcp"];
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-nostdin", "-hide_banner", "-v", "error"])
        .args(whitelist)
        .arg("-i")
        .arg(playlist)
        .args(["-f", "null", "-"]);
    let (status, _, stderr) = run_bounded(dir, "ffmpeg-decode", &mut ffmpeg, secs(120));
    assert!(
        status.success(),
        "ffmpeg cannot decode {}: {status}\n{stderr}",
        playlist.display()
    );
    for sign in [
        "Failed to open segment",
        "Server returned",
        "403",
        "Forbidden",
    ] {
        assert!(
            !stderr.contains(sign),
            "ffmpeg could not read every segment of {}:\n{stderr}",
            playlist.display()
        );
    }

    let mut ffprobe = Command::new("ffprobe");
    ffprobe
        .args(["-v", "error", "-of", "json"])
        .args(whitelist)
        .arg("-count_frames")
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,nb_read_frames,r_frame_rate,sample_rate:format=duration",
        ])
        .arg(playlist);
    let (status, stdout, stderr) = run_bounded(dir, "ffprobe-count", &mut ffprobe, secs(120));
    assert!(status.success(), "ffprobe: {status}\n{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("ffprobe printed invalid JSON ({e}): {stdout}"));
    let number = |v: &serde_json::Value| -> f64 {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("ffprobe: no number in {v} of {json}"))
    };
    let stream = |kind: &str| -> &serde_json::Value {
        json["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["codec_type"] == kind))
            .unwrap_or_else(|| panic!("ffprobe found no {kind} stream: {json}"))
    };
    let (video, audio) = (stream("video"), stream("audio"));
    assert_eq!(
        video["r_frame_rate"], "30/1",
        "the pushes are {FPS} fps: {json}"
    );
    assert_eq!(audio["codec_name"], "aac", "{json}");
    Decoded {
        audio_seconds: number(&audio["nb_read_frames"]) * 1024.0 / number(&audio["sample_rate"]),
        video_seconds: number(&video["nb_read_frames"]) / FPS,
        format_duration: number(&json["format"]["duration"]),
    }
}

/// Waits, once `push` has exited successfully, for the watched playlist to
/// end (ENDLIST) listing a segment after `after` (the previous session's last).
async fn wait_for_end(watch: &PlaylistWatch, push: &mut Push, after: Option<&str>) {
    let status = push
        .exit_within(secs(u64::from(SESSION_SECONDS) + 40))
        .await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());
    watch
        .wait_for("#EXT-X-ENDLIST after the push", secs(40), |v| {
            let newer = after.is_none_or(|a| v.keys.last().is_some_and(|k| k.as_str() > a));
            if v.playlist.ended && newer {
                Ok(())
            } else {
                Err("not ended yet (or still the previous session's end)".into())
            }
        })
        .await;
}

/// Two sessions on one channel, the live playlist checked at every version,
/// then VODs over both and parts of them, by the CLI and the API.
#[tokio::test(flavor = "multi_thread")]
async fn vod_over_two_sessions() {
    vod_over_two_sessions_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW.
#[tokio::test(flavor = "multi_thread")]
async fn rgw_vod_over_two_sessions() {
    vod_over_two_sessions_on(StoreKind::Rgw).await;
}

async fn vod_over_two_sessions_on(kind: StoreKind) {
    let extra = format!("[vod]\nmax_range_secs = {MAX_RANGE_SECS}\n");
    let stack = Stack::start_on(kind, "vod-two-sessions", &extra);
    let channel = "show";
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, channel);
    let start = unix_now() - 1;

    let mut push = stack.push(&stack.sign_push(channel), SESSION_SECONDS);
    wait_for_end(&watch, &mut push, None).await;
    let first = ts_keys(&stack.s3, channel).await;
    // Sessions apart in time, as two real broadcasts are (not an assertion).
    tokio::time::sleep(secs(5)).await;
    let mut push = stack.push(&stack.sign_push(channel), SESSION_SECONDS);
    wait_for_end(&watch, &mut push, first.last().map(String::as_str)).await;
    let end = unix_now() + 1;
    let observed = watch.finish().await;

    let all = ts_keys(&stack.s3, channel).await;
    let n1 = first.len();
    assert!(
        n1 >= 4 && all.len() >= n1 + 4 && all.starts_with(&first),
        "two {SESSION_SECONDS} s sessions stored {n1} then {} segments: {all:?}",
        all.len() - n1
    );

    // Every version was checked by the watch (check_playlist and
    // check_reload, across the reopening too); the live playlist also marks
    // each session start with a PROGRAM-DATE-TIME.
    assert!(
        observed.versions.len() >= 4,
        "only {} playlist versions seen",
        observed.versions.len()
    );
    let targets: BTreeSet<u64> = observed
        .versions
        .iter()
        .map(|v| v.playlist.target_duration)
        .collect();
    assert_eq!(targets.len(), 1, "TARGETDURATION changed: {targets:?}");
    assert!(observed.latest().is_some_and(|v| v.playlist.ended));
    for session_start in [&first[0], &all[n1]] {
        let version = observed
            .versions
            .iter()
            .find(|v| v.keys.contains(session_start))
            .unwrap_or_else(|| panic!("no live version listed {session_start}"));
        let i = version
            .keys
            .iter()
            .position(|k| k == session_start)
            .unwrap();
        assert!(
            program_date_times(&version.text)
                .iter()
                .any(|&(j, ms)| j == i && ms == key_ms(session_start)),
            "no PROGRAM-DATE-TIME of {session_start} at its session start:\n{}",
            version.text
        );
    }

    // The whole range by the CLI, with presigned URLs.
    let vod_file = stack.dir.join("vod.m3u8");
    let stderr = livebucket_vod(
        &stack,
        channel,
        start,
        end,
        &["--urls", "presigned", "--out", vod_file.to_str().unwrap()],
    );
    assert!(
        stderr.contains(&format!("{} segments from the index", all.len())),
        "livebucket vod said: {stderr}"
    );
    let text = std::fs::read_to_string(&vod_file).unwrap();
    let vod = check_playlist(&text)
        .unwrap_or_else(|v| panic!("the VOD playlist is not valid:\n{v}\n{text}"));
    assert!(vod.vod && vod.ended, "not a finished VOD playlist:\n{text}");
    let keys = presigned_keys(stack.store.endpoint(), &vod, &text);
    assert_eq!(keys, all, "the VOD's segments are not the stored ones");
    assert_durations(
        "VOD EXTINF",
        &vod.durations,
        &extinfs(&stack.s3, &all).await,
    );
    let mut expected_flags = vec![false; all.len()];
    expected_flags[n1] = true;
    assert_eq!(
        vod.discontinuity_flags, expected_flags,
        "one DISCONTINUITY, before the second session's first segment:\n{text}"
    );
    assert_eq!(
        program_date_times(&text),
        vec![(0, key_ms(&all[0])), (n1, key_ms(&all[n1]))],
        "a PROGRAM-DATE-TIME at each session start, the time of its first segment:\n{text}"
    );

    // ffmpeg fetches every segment from Garage through its presigned URL.
    // nginx's relay starts a session's video at its second keyframe, so the
    // first fragment of each session carries about 2 s of audio alone: the
    // audio is measured against the EXTINFs, the video allows that gap.
    let listed: f64 = vod.durations.iter().sum();
    let decoded = decode_playlist(&stack.dir, &vod_file);
    assert!(
        (decoded.audio_seconds - listed).abs() <= 2.0
            && (decoded.format_duration - listed).abs() <= 2.0
            && decoded.video_seconds <= listed + 0.1
            && decoded.video_seconds >= listed - 2.0 * 2.0,
        "the VOD lists {listed:.3} s but decodes as {decoded:?}"
    );

    // The same range from the API.
    let range = format!("start={start}&end={end}");
    let resp = vod_api_ok(&stack, "GET", channel, &format!("{range}&urls=presigned")).await;
    assert_eq!(resp.header("x-livebucket-vod-source"), Some("index"));
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let api_text = resp.text();
    let api = check_playlist(&api_text)
        .unwrap_or_else(|v| panic!("the API's VOD is not valid:\n{v}\n{api_text}"));
    assert_eq!(presigned_keys(stack.store.endpoint(), &api, &api_text), all);
    assert_eq!(api.durations, vod.durations);
    assert_eq!(api.discontinuity_flags, vod.discontinuity_flags);

    // POST stores CHANNEL/vod.m3u8 (relative URIs by default).
    let resp = vod_api_ok(&stack, "POST", channel, &format!("{range}&name=vod.m3u8")).await;
    assert_eq!(resp.header("x-livebucket-vod-source"), Some("index"));
    let body: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("POST vod answered no JSON ({e}): {}", resp.text()));
    assert_eq!(body["key"], format!("{channel}/vod.m3u8"), "{body}");
    assert_eq!(body["segments"], all.len(), "{body}");
    let stored_text =
        String::from_utf8(stack.s3.get(BUCKET, &format!("{channel}/vod.m3u8")).await).unwrap();
    let stored = check_playlist(&stored_text)
        .unwrap_or_else(|v| panic!("the stored VOD is not valid:\n{v}\n{stored_text}"));
    let relative: Vec<String> = stored
        .uris
        .iter()
        .map(|u| format!("{channel}/{u}"))
        .collect();
    assert_eq!(
        relative, all,
        "the stored VOD's relative URIs:\n{stored_text}"
    );
    assert_eq!(stored.discontinuity_flags, vod.discontinuity_flags);

    // The stored VOD plays through /play like the live playlist.
    let play = sign_play_via(
        &stack,
        &format!("{channel}/vod.m3u8"),
        &["--expires-in", "600"],
    );
    let resp = httpc::get(&play).await;
    assert_eq!(resp.status, 200, "GET {play}: {}", resp.text());
    let played_text = resp.text();
    let played = check_playlist(&played_text)
        .unwrap_or_else(|v| panic!("/play of the VOD is not valid:\n{v}\n{played_text}"));
    assert!(played.vod && played.ended);
    assert_eq!(
        presigned_keys(stack.store.endpoint(), &played, &played_text),
        all
    );

    // Ranges that cut into sessions: exactly the fragments starting in the
    // range, a DISCONTINUITY only where the second session starts after an
    // earlier fragment, a PROGRAM-DATE-TIME at the range's first fragment
    // and at the second session's first.
    let second = key_ms(&all[n1]);
    let between = second / 1000 - 2;
    assert!(
        between * 1000 > key_ms(&all[n1 - 1]),
        "sessions too close: {all:?}"
    );
    let mid1 = key_ms(&all[1]) / 1000 + 1;
    let mid2 = key_ms(&all[n1 + 2]) / 1000 + 1;
    for (s, e) in [(mid1, end), (between, end), (start, mid2), (mid1, mid2)] {
        let want = keys_in(&all, s, e);
        let resp = vod_api_ok(
            &stack,
            "GET",
            channel,
            &format!("start={s}&end={e}&urls=relative"),
        )
        .await;
        let text = resp.text();
        let got = check_playlist(&text)
            .unwrap_or_else(|v| panic!("VOD [{s}, {e}) is not valid:\n{v}\n{text}"));
        let got_keys: Vec<String> = got.uris.iter().map(|u| format!("{channel}/{u}")).collect();
        assert_eq!(got_keys, want, "VOD [{s}, {e})");
        let mut flags = vec![false; want.len()];
        let mut pdts = vec![(0, key_ms(&want[0]))];
        if let Some(j) = want.iter().position(|k| *k == all[n1]).filter(|&j| j > 0) {
            flags[j] = true;
            pdts.push((j, second));
        }
        assert_eq!(got.discontinuity_flags, flags, "VOD [{s}, {e}):\n{text}");
        assert_eq!(program_date_times(&text), pdts, "VOD [{s}, {e}):\n{text}");
    }

    // A playlist name that needs encoding in a URL (OSS allows spaces):
    // `sign play --via-livebucket` must print a URL that works.
    vod_api_ok(
        &stack,
        "POST",
        channel,
        &format!("{range}&name=my%20vod.m3u8"),
    )
    .await;
    let play = sign_play_via(
        &stack,
        &format!("{channel}/my vod.m3u8"),
        &["--expires-in", "600"],
    );
    assert!(!play.contains(' '), "not a URL: {play:?}");
    let resp = httpc::get(&play).await;
    assert_eq!(resp.status, 200, "GET {play}: {}", resp.text());
    assert_eq!(
        check_playlist(&resp.text()).map(|p| p.uris.len()),
        Ok(all.len())
    );

    // Bad ranges, and a parameter given twice with different values.
    let cases = [
        (format!("{range}&start={}", start + 1), 400, "given twice"),
        (format!("start={start}&end={start}"), 400, "must be after"),
        (format!("start={end}&end={start}"), 400, "must be after"),
        (
            format!("start={start}&end={}", start + MAX_RANGE_SECS + 1),
            400,
            "max_range_secs",
        ),
        (
            format!("start={}&end={}", start - 200, start - 100),
            404,
            "no fragment of show",
        ),
    ];
    for (params, status, says) in cases {
        let resp = httpc::get(&vod_api_url(&stack, "GET", channel, &params)).await;
        assert_eq!(resp.status, status, "GET vod?{params}: {}", resp.text());
        assert!(
            resp.text().contains(says),
            "GET vod?{params} should say {says:?}: {}",
            resp.text()
        );
    }
}

/// A copy of a channel's segments, without any manifest, gives the
/// same VOD through a listing.
#[tokio::test(flavor = "multi_thread")]
async fn vod_falls_back_to_listing_without_manifests() {
    vod_falls_back_to_listing_without_manifests_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW.
#[tokio::test(flavor = "multi_thread")]
async fn rgw_vod_falls_back_to_listing_without_manifests() {
    vod_falls_back_to_listing_without_manifests_on(StoreKind::Rgw).await;
}

async fn vod_falls_back_to_listing_without_manifests_on(kind: StoreKind) {
    let stack = Stack::start_on(kind, "vod-listing", "");
    let (channel, copy) = ("src", "copied");
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, channel);
    let start = unix_now() - 1;
    let mut push = stack.push(&stack.sign_push(channel), 10);
    wait_for_end(&watch, &mut push, None).await;
    let end = unix_now() + 1;
    watch.finish().await;

    let keys = ts_keys(&stack.s3, channel).await;
    assert!(keys.len() >= 3, "a 10 s push stored {keys:?}");
    let manifests = stack.s3.list(BUCKET, ".livebucket/index/").await;
    assert!(
        manifests
            .iter()
            .all(|(k, _)| k.starts_with(&format!(".livebucket/index/{channel}/"))),
        "{manifests:?}"
    );
    assert!(!manifests.is_empty(), "the push left no session manifest");

    for key in &keys {
        let name = key.rsplit('/').next().unwrap();
        stack
            .s3
            .client()
            .copy_object()
            .copy_source(format!("{BUCKET}/{key}"))
            .bucket(BUCKET)
            .key(format!("{copy}/{name}"))
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "CopyObject {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            });
    }
    let copies = ts_keys(&stack.s3, copy).await;
    assert_eq!(copies.len(), keys.len());
    assert_eq!(
        extinfs(&stack.s3, &copies).await,
        extinfs(&stack.s3, &keys).await,
        "CopyObject kept the extinf metadata"
    );

    let range = format!("start={start}&end={end}&urls=relative");
    let mut answers = Vec::new();
    for (ch, source) in [(channel, "index"), (copy, "listing")] {
        let resp = vod_api_ok(&stack, "GET", ch, &range).await;
        assert_eq!(
            resp.header("x-livebucket-vod-source"),
            Some(source),
            "VOD of {ch}"
        );
        let text = resp.text();
        let playlist = check_playlist(&text)
            .unwrap_or_else(|v| panic!("the VOD of {ch} is not valid:\n{v}\n{text}"));
        assert!(playlist.vod && playlist.ended, "{text}");
        assert_eq!(playlist.discontinuities, 0, "one session:\n{text}");
        assert_eq!(
            program_date_times(&text),
            vec![(0, key_ms(&keys[0]))],
            "{text}"
        );
        answers.push(playlist);
    }
    let (index, listing) = (&answers[0], &answers[1]);
    assert_eq!(index.uris.len(), keys.len());
    assert_eq!(listing.uris, index.uris, "the same segment names");
    assert_eq!(listing.durations, index.durations);

    // A range starting inside the session: the same fragments either way.
    let mid = key_ms(&keys[1]) / 1000 + 1;
    let want: Vec<String> = keys_in(&keys, mid, end)
        .iter()
        .map(|k| k.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert!(!want.is_empty() && want.len() < keys.len(), "{want:?}");
    for ch in [channel, copy] {
        let resp = vod_api_ok(
            &stack,
            "GET",
            ch,
            &format!("start={mid}&end={end}&urls=relative"),
        )
        .await;
        let got = check_playlist(&resp.text()).unwrap();
        assert_eq!(got.uris, want, "VOD of {ch} from {mid}");
    }

    let stderr = livebucket_vod(&stack, copy, start, end, &[]);
    assert!(
        stderr.contains(&format!("{} segments from the listing", keys.len())),
        "livebucket vod said: {stderr}"
    );
}

/// `/play` while a push runs.
#[tokio::test]
async fn play_serves_live_playlist_with_presigned_segments() {
    play_serves_live_playlist_with_presigned_segments_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW, which also serves the SigV2 segment URLs.
#[tokio::test]
async fn rgw_play_serves_live_playlist_with_presigned_segments() {
    play_serves_live_playlist_with_presigned_segments_on(StoreKind::Rgw).await;
}

async fn play_serves_live_playlist_with_presigned_segments_on(kind: StoreKind) {
    let stack = Stack::start_on(kind, "vod-play", "");
    let channel = "live1";
    let mut push = stack.push(&stack.sign_push(channel), 60);
    let playlist_key = format!("{channel}/index.m3u8");
    wait_until("three segments listed", secs(60), millis(300), async || {
        if let Some(status) = push.try_wait() {
            panic!("the push ended early ({status}):\n{}", push.log());
        }
        let listed = stack.s3.list(BUCKET, &playlist_key).await;
        if listed.is_empty() {
            return Err("no playlist yet".to_owned());
        }
        let text = String::from_utf8(stack.s3.get(BUCKET, &playlist_key).await).unwrap();
        let n = text.lines().filter(|l| l.ends_with(".ts")).count();
        if n >= 3 {
            Ok(())
        } else {
            Err(format!("{n} segments listed"))
        }
    })
    .await;

    let key_name = format!("{channel}/index.m3u8");
    let url = sign_play_via(&stack, &key_name, &["--expires-in", "600"]);
    let resp = httpc::get(&url).await;
    assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    let text = resp.text();
    let playlist = check_playlist(&text)
        .unwrap_or_else(|v| panic!("/play answered an invalid playlist:\n{v}\n{text}"));
    assert!(!playlist.ended && !playlist.vod, "still live:\n{text}");
    let keys = presigned_keys(stack.store.endpoint(), &playlist, &text);
    let stored = ts_keys(&stack.s3, channel).await;
    for key in &keys {
        assert!(stored.contains(key), "/play lists {key}, not in the bucket");
    }
    let segment = httpc::get(&playlist.uris[0]).await;
    assert_eq!(
        segment.status,
        200,
        "GET {}: {}",
        playlist.uris[0],
        segment.text()
    );
    assert_eq!(segment.body, stack.s3.get(BUCKET, &keys[0]).await);

    // Five reloads of the same play URL, seconds apart while the window
    // moves: a segment keeps its URI (RFC 8216 §6.2.1), whatever the clock.
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut repeats = 0;
    for _ in 0..5 {
        let text = httpc::get(&url).await.text();
        let reload = check_playlist(&text).unwrap();
        for (uri, key) in
            reload
                .uris
                .iter()
                .zip(presigned_keys(stack.store.endpoint(), &reload, &text))
        {
            match seen.get(&key) {
                Some(before) => {
                    assert_eq!(before, uri, "{key} changed its URI between reloads");
                    repeats += 1;
                }
                None => {
                    seen.insert(key, uri.clone());
                }
            }
        }
        tokio::time::sleep(millis(1500)).await;
    }
    assert!(repeats >= 8, "too few segments seen twice ({repeats})");

    // ffmpeg plays the live stream from the signed URL.
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args(["-nostdin", "-hide_banner", "-v", "error", "-nostats"])
        .args([
            "-i",
            &url,
            "-t",
            "4",
            "-progress",
            "pipe:1",
            "-f",
            "null",
            "-",
        ]);
    let (status, progress, stderr) = run_bounded(&stack.dir, "ffmpeg-play", &mut ffmpeg, secs(60));
    assert!(status.success(), "ffmpeg -i /play: {status}\n{stderr}");
    let frames: u64 = progress
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|f| f.trim().parse().ok())
        .next_back()
        .unwrap_or(0);
    assert!(
        frames >= 60,
        "ffmpeg decoded {frames} frames of 4 s from /play:\n{progress}\n{stderr}"
    );

    // SigV2 segment URLs on request.
    let resp = httpc::get(&format!("{url}&sigv2=1")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v2 = check_playlist(&resp.text()).unwrap();
    for uri in &v2.uris {
        assert!(
            ["AWSAccessKeyId", "Expires", "Signature"]
                .iter()
                .all(|p| query_param(uri, p).is_some())
                && !uri.contains("X-Amz-"),
            "not a SigV2 URL: {uri}"
        );
    }
    if kind == StoreKind::Rgw {
        // RGW accepts SigV2: the segment straight from the bucket.
        let segment = httpc::get(&v2.uris[0]).await;
        assert_eq!(
            segment.status,
            200,
            "GET {}: {}",
            v2.uris[0],
            segment.text()
        );
        let key = object_key(stack.store.endpoint(), &v2.uris[0]);
        assert_eq!(segment.body, stack.s3.get(BUCKET, &key).await);
    }

    // Expired and forged play signatures.
    let expired = sign_play_via(
        &stack,
        &key_name,
        &["--expires", &(unix_now() - 60).to_string()],
    );
    let signature = query_param(&url, "Signature").unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = with_query_param(&url, "Signature", &format!("{flipped}{}", &signature[1..]));
    let other_channel = url.replace(&format!("/{channel}/"), "/other/");
    // Every refusal answers the same `forbidden`; the reason is logged.
    for (what, bad, reason) in [
        ("expired", &expired, "expired"),
        ("forged", &forged, "bad_play_signature"),
        (
            "moved to another channel",
            &other_channel,
            "bad_play_signature",
        ),
    ] {
        let resp = httpc::get(bad).await;
        assert_eq!(resp.status, 403, "{what} play URL: {}", resp.text());
        assert_eq!(resp.text(), "forbidden\n", "{what}");
        let log = stack.livebucket.log();
        assert!(
            log.contains(&format!("reason=\"{reason}\""))
                || log.contains(&format!("reason={reason} ")),
            "{what}: livebucket logged no reason {reason}"
        );
    }

    // A parameter given twice with different values is refused, whichever
    // comes last (sign/play.rs: the caller must refuse it).
    let (path, query) = url.split_once('?').unwrap();
    let twice = format!("{path}?Expires={}&{query}", unix_now() + 9999);
    let resp = httpc::get(&twice).await;
    assert_eq!(resp.status, 400, "Expires given twice: {}", resp.text());
    assert!(resp.text().contains("given twice"), "{}", resp.text());
    let same_twice = format!("{url}&Expires={}", query_param(&url, "Expires").unwrap());
    let resp = httpc::get(&same_twice).await;
    assert_eq!(
        resp.status,
        200,
        "Expires given twice, same value: {}",
        resp.text()
    );

    // Segment URLs expire with a short-lived play URL.
    let short = sign_play_via(&stack, &key_name, &["--expires-in", "5"]);
    let resp = httpc::get(&short).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let short_playlist = check_playlist(&resp.text()).unwrap();
    let segment_url = short_playlist.uris[0].clone();
    // The segment URL ends exactly when the play URL does: it is signed
    // at the play URL's expiry minus SigV4's 7 days, for 7 days.
    let lifetime: u64 = query_param(&segment_url, "X-Amz-Expires")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no X-Amz-Expires in {segment_url}"));
    assert_eq!(lifetime, 604_800, "{segment_url}");
    let signed_at = query_param(&segment_url, "X-Amz-Date").unwrap();
    let d = |r: std::ops::Range<usize>| &signed_at[r];
    let signed_at = format!(
        "{}-{}-{}T{}:{}:{}.000Z",
        d(0..4),
        d(4..6),
        d(6..8),
        d(9..11),
        d(11..13),
        d(13..15)
    );
    let expires_at = utc_ms(&signed_at) / 1000 + lifetime;
    let play_expires: u64 = query_param(&short, "Expires").unwrap().parse().unwrap();
    assert_eq!(expires_at, play_expires, "{segment_url}");
    let first = httpc::get(&segment_url).await;
    assert_eq!(first.status, 200, "a fresh segment URL: {}", first.text());
    let refused = wait_until(
        "the store to refuse the expired segment URL",
        secs(30),
        millis(250),
        async || {
            let resp = httpc::get(&segment_url).await;
            if resp.status == 200 {
                Err("still 200".to_owned())
            } else {
                Ok((unix_now(), resp))
            }
        },
    )
    .await;
    // Garage 2.5 answers 400 InvalidRequest "Date is too old" where AWS
    // answers 403 AccessDenied "Request has expired"; RGW 16.2 answers 403
    // AccessDenied with no message (that it is the expiry shows below: the
    // same URL was served until then).
    let (refused_at, refused) = refused;
    let text = refused.text();
    let says_expired = match kind {
        StoreKind::Garage => text.contains("too old") || text.contains("expired"),
        StoreKind::Rgw => text.contains("<Code>AccessDenied</Code>"),
    };
    assert!(
        matches!(refused.status, 400 | 403) && says_expired,
        "an expired segment URL: {} {text}",
        refused.status
    );
    assert!(
        refused_at >= expires_at,
        "refused at {refused_at}, before its expiry {expires_at}: {text}"
    );
    push.kill();
}

/// `livebucket sign play` URLs for single objects, against the store.
#[tokio::test]
async fn sign_play_urls_for_objects() {
    sign_play_urls_for_objects_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW, which also serves the SigV2 URL.
#[tokio::test]
async fn rgw_sign_play_urls_for_objects() {
    sign_play_urls_for_objects_on(StoreKind::Rgw).await;
}

async fn sign_play_urls_for_objects_on(kind: StoreKind) {
    let stack = Stack::start_on(kind, "vod-presign", "");
    let endpoint = stack.store.endpoint().to_owned();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let plain = "cam/1700000000000.ts";
    let odd = "odd chan/seg+1 é.ts";
    for key in [plain, odd] {
        stack.s3.put(BUCKET, key, body.clone(), "video/mp2t").await;
    }

    for key in [plain, odd] {
        let url = sign_object(&stack, key, &["--expires-in", "60"]);
        assert_eq!(query_param(&url, "X-Amz-Expires").as_deref(), Some("60"));
        assert_eq!(object_key(&endpoint, &url), key);
        let resp = httpc::get(&url).await;
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
        assert_eq!(resp.body, body, "{key}: other bytes");

        // The store checks what it is given: the signature must match.
        let signature = query_param(&url, "X-Amz-Signature").unwrap();
        let flipped = if signature.starts_with('0') { "1" } else { "0" };
        let forged = with_query_param(
            &url,
            "X-Amz-Signature",
            &format!("{flipped}{}", &signature[1..]),
        );
        let resp = httpc::get(&forged).await;
        assert_eq!(resp.status, 403, "forged SigV4 URL: {}", resp.text());
    }
    let unsigned: Response = httpc::get(&format!("{endpoint}/{BUCKET}/{plain}")).await;
    assert_eq!(unsigned.status, 403, "unsigned GET: {}", unsigned.text());

    // SigV2: the documented form and signature (Garage speaks SigV4 only).
    let expires = unix_now() + 600;
    let url = sign_object(
        &stack,
        plain,
        &["--sigv2", "--expires", &expires.to_string()],
    );
    let (path, query) = url.split_once('?').unwrap();
    assert_eq!(path, format!("{endpoint}/{BUCKET}/{plain}"));
    let names: Vec<&str> = query
        .split('&')
        .map(|p| p.split_once('=').map_or(p, |(n, _)| n))
        .collect();
    assert_eq!(names, ["AWSAccessKeyId", "Expires", "Signature"], "{url}");
    let key = stack.key();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.secret.as_bytes()).unwrap();
    mac.update(format!("GET\n\n\n{expires}\n/{BUCKET}/{plain}").as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(query_param(&url, "AWSAccessKeyId"), Some(key.id.clone()));
    assert_eq!(query_param(&url, "Expires"), Some(expires.to_string()));
    assert_eq!(query_param(&url, "Signature"), Some(expected), "{url}");
    if kind == StoreKind::Rgw {
        // RGW speaks SigV2 too: it serves the URL, and refuses it forged.
        let resp = httpc::get(&url).await;
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
        assert_eq!(resp.body, body);
        let forged = with_query_param(&url, "Expires", &(expires + 1).to_string());
        let resp = httpc::get(&forged).await;
        assert_eq!(resp.status, 403, "forged SigV2 URL: {}", resp.text());
    }

    // A SigV4 URL cannot be signed for the past.
    let output = Command::new(BIN)
        .args(["sign", "play", "--config", config_arg(&stack)])
        .args(["--bucket", BUCKET, "--key-name", plain, "--expires"])
        .arg((unix_now() - 10).to_string())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("in the past"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
