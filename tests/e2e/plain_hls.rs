//! Plain HLS at its floor, on real nginx-rtmp, ffmpeg and Garage: the live
//! playlist's target duration is the fragment length asked for (the default
//! application's, and a channel's `FragDuration`), no EXTINF rounds above
//! it, players are told to hold back three of it; a session's first
//! fragment starts with a keyframe (no audio-only lead), so a VOD from the
//! push's start has picture from its first frame; a GET VOD link signed the
//! README's way plays through its presigned segment URLs; and an encoder
//! whose keyframe interval is longer than the fragment gets fragments cut
//! at the target (a valid playlist) and a warning.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::stored::{at_least_segments, ended, wait_for_playlist};
use common::*;

/// One packet as ffprobe reads it.
#[derive(Debug)]
struct Packet {
    video: bool,
    pts: f64,
    key: bool,
}

/// ffprobe's packets of `input` (a file, or an http playlist whose
/// segments it fetches), in read order, and what it logged at warning
/// level. Each read gives up after 5 s, so a stalled server fails the test.
fn packets(input: &str) -> (Vec<Packet>, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "warning", "-of", "json", "-rw_timeout", "5000000"])
        .args(["-protocol_whitelist", "file,http,tcp"])
        .args(["-show_entries", "packet=codec_type,pts_time,flags"])
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffprobe: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffprobe {input}: {stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ffprobe printed invalid JSON ({e}); stderr: {stderr}"));
    let packets = json["packets"]
        .as_array()
        .unwrap_or_else(|| panic!("ffprobe found no packets in {input}: {stderr}"))
        .iter()
        .filter_map(|p| {
            Some(Packet {
                video: p["codec_type"] == "video",
                pts: p["pts_time"].as_str()?.parse().ok()?,
                key: p["flags"].as_str()?.starts_with('K'),
            })
        })
        .collect();
    (packets, stderr)
}

/// How far the first video packet of `packets` is from the earliest
/// timestamp of all, in seconds, and whether it is a keyframe.
fn video_lead(packets: &[Packet]) -> (f64, bool) {
    let first = packets
        .iter()
        .find(|p| p.video)
        .expect("no video packet at all");
    let earliest = packets.iter().map(|p| p.pts).fold(f64::INFINITY, f64::min);
    (first.pts - earliest, first.key)
}

/// The `.ts` object keys under `CHANNEL/`, oldest first.
async fn fragment_keys(stack: &Stack, channel: &str) -> Vec<String> {
    let mut keys: Vec<String> = stack
        .s3
        .list(BUCKET, &format!("{channel}/"))
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| common::is_fragment_key(k))
        .collect();
    keys.sort();
    keys
}

async fn download(stack: &Stack, key: &str) -> std::path::PathBuf {
    let file = stack.dir.join(key.replace('/', "_"));
    std::fs::write(&file, stack.s3.get(BUCKET, key).await).unwrap();
    file
}

fn livebucket(args: &[&str]) -> String {
    common::process::run(
        &format!("livebucket {}", args[..2].join(" ")),
        Command::new(common::livebucket::BIN).args(args),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The default application (2 s fragments, an encoder with a keyframe every
/// 2 s): target 2, HOLD-BACK 6, a first fragment that starts with its
/// keyframe and lasts one fragment, nothing counted as a misfit; then the
/// push's VOD, from a GET link made with `livebucket sign vod`'s defaults,
/// plays through its presigned segments from a keyframe at its first
/// timestamp.
#[tokio::test(flavor = "multi_thread")]
async fn plain_hls_at_the_fragment_length_from_a_keyframe() {
    let stack = Stack::start("latency-default");
    let channel = "cam";
    let start = common::livebucket::unix_now() - 1;
    let mut push = stack.push(&stack.sign_push(channel), 9);

    let live = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "three segments",
        at_least_segments(3),
    )
    .await;
    // check_playlist has also refused any EXTINF rounding above the target.
    assert_eq!(live.playlist.target_duration, 2, "{:?}", live.playlist);
    assert_eq!(live.playlist.hold_back, Some(6.0), "{:?}", live.playlist);

    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());
    let done = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "#EXT-X-ENDLIST",
        ended,
    )
    .await;
    let end = common::livebucket::unix_now() + 1;
    assert_eq!(done.playlist.target_duration, 2);
    assert_eq!(
        done.playlist.hold_back, None,
        "an ended playlist holds none"
    );

    // The session's first fragment: its first video packet is a keyframe at
    // its first timestamp (before wait_video, ~2 s of audio came first),
    // and it lasts one fragment (it was ~3.9 s).
    let keys = fragment_keys(&stack, channel).await;
    let first = &keys[0];
    let (lead, key) = video_lead(&packets(path_str(&download(&stack, first).await)).0);
    assert!(
        key,
        "{first} starts with a video frame that is not a keyframe"
    );
    assert!(
        lead < 0.1,
        "{first} has {lead:.3} s of audio before its first video frame"
    );
    let extinf: f64 = stack.s3.head(BUCKET, first).await.metadata["extinf"]
        .parse()
        .unwrap();
    assert!(
        (1.5..2.5).contains(&extinf),
        "{first}: EXTINF {extinf}, not one 2 s fragment"
    );
    assert_eq!(
        stack.livebucket.metric("livebucket_fragment_misfit_total"),
        0,
        "a 2 s GOP fits 2 s fragments; livebucket's log:\n{}",
        stack.livebucket.log()
    );

    // A GET VOD link as the README makes it: no --urls.
    let link = sign_vod(&stack, channel, (start, end), &[]);
    let resp = common::httpc::get(&link).await;
    assert_eq!(resp.status, 200, "GET {link}: {}", resp.text());
    let vod = common::hlscheck::check_playlist(&resp.text())
        .unwrap_or_else(|v| panic!("the VOD is not valid:\n{v}\n{}", resp.text()));
    assert_eq!(vod.uris.len(), keys.len(), "{}", resp.text());
    assert!(
        vod.uris
            .iter()
            .all(|u| u.starts_with(stack.store.endpoint())),
        "segment URIs are not presigned store URLs:\n{}",
        resp.text()
    );
    let (played, log) = packets(&link);
    for failure in ["Failed to open segment", "HTTP error", "403"] {
        assert!(
            !log.contains(failure),
            "ffprobe could not play {link}:\n{log}"
        );
    }
    let (lead, key) = video_lead(&played);
    assert!(
        key && lead < 0.1,
        "the VOD starts {lead:.3} s before its first picture (key: {key})"
    );
    let video: Vec<f64> = played.iter().filter(|p| p.video).map(|p| p.pts).collect();
    let span = video.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b))
        - video.iter().fold(f64::INFINITY, |a, &b| a.min(b));
    let listed: f64 = vod.durations.iter().sum();
    assert!(
        span > listed - 0.5,
        "ffprobe read {span:.3} s of picture of the VOD's {listed:.3} s"
    );

    // A link signed while an omitted `urls` meant relative still gets what
    // it was signed for.
    let old = sign_vod(&stack, channel, (start, end), &["--urls", "relative"]);
    let old = old.replacen("&urls=relative", "", 1);
    let resp = common::httpc::get(&old).await;
    assert_eq!(resp.status, 200, "GET {old}: {}", resp.text());
    let relative = common::hlscheck::check_playlist(&resp.text()).unwrap();
    assert_eq!(
        relative.uris,
        keys.iter()
            .map(|k| k.rsplit('/').next().unwrap())
            .collect::<Vec<_>>(),
        "{}",
        resp.text()
    );
}

/// `livebucket sign vod` of a GET on `channel` over `range` (Unix
/// seconds), with `extra` options: the link it prints.
fn sign_vod(stack: &Stack, channel: &str, range: (u64, u64), extra: &[&str]) -> String {
    let (start, end) = (range.0.to_string(), range.1.to_string());
    let base = stack.livebucket.url();
    let mut args = vec![
        "sign",
        "vod",
        "--config",
        path_str(stack.livebucket.config_path()),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--start",
        &start,
        "--end",
        &end,
        "--expires-in",
        "600",
        "--via-livebucket",
        &base,
    ];
    args.extend_from_slice(extra);
    let out = livebucket(&args);
    out.lines().next().unwrap_or_default().trim().to_owned()
}

/// A channel with FragDuration 1 (the `hls_1s` application) pushed with a
/// keyframe every 2 s: target 1 and HOLD-BACK 3 on every playlist read
/// while live, fragments cut by `hls_max_fragment` at non-key frames so no
/// EXTINF rounds above 1, each counted, and one warning for the session
/// with the keyframe interval that fits.
#[tokio::test(flavor = "multi_thread")]
async fn a_gop_longer_than_the_fragment_is_cut_at_the_target_and_warned() {
    let stack = Stack::start("latency-gop");
    let channel = "short";
    livebucket(&[
        "channel",
        "create",
        "--config",
        path_str(stack.livebucket.config_path()),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--frag-duration",
        "1",
        "--playlist-name",
        "index.m3u8",
    ]);
    let mut push = stack.push(&stack.sign_push(channel), 8);
    let live = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "three segments",
        at_least_segments(3),
    )
    .await;
    assert_eq!(live.playlist.target_duration, 1, "{:?}", live.playlist);
    assert_eq!(live.playlist.hold_back, Some(3.0), "{:?}", live.playlist);

    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());
    let done = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "#EXT-X-ENDLIST",
        ended,
    )
    .await;
    assert_eq!(done.playlist.target_duration, 1);

    // nginx cut at whatever frame came past 1.4 s: some fragments start
    // without a keyframe.
    let keys = fragment_keys(&stack, channel).await;
    let mut keyless = 0;
    for key in &keys {
        let (_, starts_key) = video_lead(&packets(path_str(&download(&stack, key).await)).0);
        keyless += usize::from(!starts_key);
    }
    assert!(
        keyless > 0,
        "every fragment of {keys:?} starts with a keyframe"
    );
    let counted = stack.livebucket.metric("livebucket_fragment_misfit_total");
    assert!(
        counted >= keyless as u64,
        "{keyless} fragments without a keyframe, {counted} counted"
    );
    let log = stack.livebucket.log();
    let warnings = log.matches("fragment cut without a keyframe").count();
    assert_eq!(warnings, 1, "one warning per session:\n{log}");
    assert!(
        log.contains("keyframe interval to 1 s"),
        "the warning gives the fix:\n{log}"
    );
}
