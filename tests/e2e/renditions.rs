//! Adaptive bitrate (issue 25) end to end, on real nginx-rtmp, ffmpeg,
//! Garage and Chromium: a 320x240 push with a two-rung ladder (180p, 120p,
//! low bitrates and libx264 `ultrafast`, so two cores keep up) yields
//! variants cut at the same keyframes (same segment count, each segment's
//! first picture within a frame of the source's, read from the stored TS),
//! every variant a valid playlist, and a master that is valid tag by tag
//! (`hlscheck::master`) and whose `BANDWIDTH`, `RESOLUTION`, `FRAME-RATE`
//! and `CODECS` match what was stored (sizes and EXTINF from the bucket,
//! pictures from ffprobe); the VOD of the push is a master of VOD variants
//! that play to their end; hls.js plays the master through `/play` and
//! switches level when asked; in cluster mode a failover moves the
//! transcoders to the node that takes the channel, and every variant goes
//! on there.
//!
//! Restarting a killed transcoder and the refusal and disable paths are
//! engineer A's `transcode` area; they are not repeated here.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use common::cluster::{Balancer, Node};
use common::etcd::Etcd;
use common::hlscheck::align::{FRAME_30FPS, check_alignment, first_video_pts};
use common::hlscheck::master::{CheckedMaster, check_bandwidth, check_master};
use common::hlscheck::{CheckedPlaylist, check_playlist};
use common::ladder::{ladder_toml, transcoders};
use common::player::{CORS_CONFIG, Mode, Switch, allow_any_origin, play_switching};
use common::playlist_watch::PlaylistWatch;
use common::stored::{at_least_segments, ended, wait_for_playlist};
use common::*;

/// The rungs of these tests: two small ones under the harness's 320x240
/// push (`ladder::ladder_toml`: libx264 `ultrafast`, low bitrates).
const RUNGS: &[(&str, u32)] = &[("180p", 180), ("120p", 120)];

/// livebucket's config: the ladder, and a live window that keeps every
/// segment of a short push in the final playlists.
fn config(extra: &str) -> String {
    format!(
        "{extra}[live]\nwindow_segments = 100\n{}",
        ladder_toml(RUNGS, "")
    )
}

/// The variants of a push with [`RUNGS`]: (folder under the channel, or
/// none for the source; picture width and height).
const VARIANTS: &[(Option<&str>, (u32, u32))] = &[
    (None, (320, 240)),
    (Some("180p"), (240, 180)),
    (Some("120p"), (160, 120)),
];

/// The key prefix of a variant's objects: `CHANNEL/` or `CHANNEL/RUNG/`.
fn prefix(channel: &str, rung: Option<&str>) -> String {
    match rung {
        None => format!("{channel}/"),
        Some(r) => format!("{channel}/{r}/"),
    }
}

/// The stored fragments directly under `prefix` (not a rung's below it), in
/// name order (nginx names them by time), each with its bytes and EXTINF.
async fn stored_segments(s3: &S3, prefix: &str) -> Vec<(String, f64, Vec<u8>)> {
    let mut keys: Vec<String> = s3
        .list(BUCKET, prefix)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| is_fragment_key(k) && !k[prefix.len()..].contains('/'))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let extinf: f64 = s3.head(BUCKET, &key).await.metadata["extinf"]
            .parse()
            .unwrap_or_else(|e| panic!("{key}: EXTINF metadata is not a number: {e}"));
        let bytes = s3.get(BUCKET, &key).await;
        out.push((key, extinf, bytes));
    }
    out
}

/// ffprobe's first video stream of a file: width, height, average frame
/// rate, H.264 level.
fn probe_video(path: &Path) -> (u32, u32, f64, u32) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,avg_frame_rate,r_frame_rate,level",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffprobe: {e}"));
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json["streams"][0];
    let rate = |v: &serde_json::Value| -> Option<f64> {
        let (n, d) = v.as_str()?.split_once('/')?;
        let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
        (d > 0.0).then(|| n / d)
    };
    (
        s["width"].as_u64().unwrap_or_default() as u32,
        s["height"].as_u64().unwrap_or_default() as u32,
        rate(&s["r_frame_rate"])
            .or_else(|| rate(&s["avg_frame_rate"]))
            .unwrap_or_default(),
        s["level"].as_u64().unwrap_or_default() as u32,
    )
}

/// ffprobe's first video packet PTS of a file, in 90 kHz ticks: the
/// independent reading [`first_video_pts`] must agree with.
fn ffprobe_first_video_pts(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "csv=p=0", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts", "-read_intervals", "%+#1"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffprobe: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("ffprobe gave no video PTS for {}: {text}", path.display()))
}

/// The master's variant for `rung` (the source: its playlist name alone).
fn variant_for<'a>(
    master: &'a CheckedMaster,
    rung: Option<&str>,
) -> &'a common::hlscheck::master::CheckedVariant {
    let path = match rung {
        None => "index.m3u8".to_owned(),
        Some(r) => format!("{r}/index.m3u8"),
    };
    master
        .variant(&path)
        .unwrap_or_else(|| panic!("the master lists no {path}: {master:?}"))
}

/// A 12 s push with the two-rung ladder: once it ends, every variant's live
/// playlist is valid and ended, the variants have the same number of
/// segments and each segment starts within a frame of the source's (first
/// video PTS read from the stored TS, checked against ffprobe), and the
/// master is valid tag by tag, lists the three variants with `BANDWIDTH`
/// at least each one's peak segment bit rate (sizes and EXTINF as stored),
/// and the `RESOLUTION`, `FRAME-RATE` and H.264 level ffprobe reads from
/// the variant. The VOD of the push is a master whose variants are VOD
/// playlists of the same range, each valid, with as many segments as
/// stored, and readable by ffprobe to its end.
#[tokio::test(flavor = "multi_thread")]
async fn a_two_rung_push_gives_aligned_variants_a_valid_master_and_a_vod_master() {
    let stack = Stack::start_with("renditions-aligned", &config(""));
    let channel = "cam";
    let start = unix_now();
    let mut push = stack.push(&stack.sign_push(channel), 12);
    push.exit_within(secs(60)).await;
    let end = unix_now() + 1;

    // Every variant's live playlist ends (the source's session ended, so
    // its transcoders stopped and their sessions ended too).
    let mut playlists: Vec<(Option<&str>, CheckedPlaylist)> = Vec::new();
    for (rung, _) in VARIANTS {
        let folder = prefix(channel, *rung);
        let stored = wait_for_playlist(
            &stack.s3,
            folder.trim_end_matches('/'),
            "index.m3u8",
            &mut push,
            "ended",
            ended,
        )
        .await;
        playlists.push((*rung, stored.playlist));
    }

    // The master, rewritten at the end: three variants.
    let master_key = format!("{channel}/master.m3u8");
    let (master, master_text) = wait_until(
        &format!("{master_key} to list every variant"),
        secs(30),
        millis(500),
        async || {
            let text = match stack.s3.try_get(BUCKET, &master_key).await {
                Ok(b) => String::from_utf8(b).expect("the master is not UTF-8"),
                Err(e) => return Err(e),
            };
            let m = check_master(&text)
                .unwrap_or_else(|e| panic!("{master_key} is not a valid master:\n{e}\n{text}"));
            if m.variants.len() == VARIANTS.len() {
                Ok((m, text))
            } else {
                Err(format!("{} variants:\n{text}", m.variants.len()))
            }
        },
    )
    .await;

    let tmp = stack.dir.subdir("segments");
    let mut aligned: Vec<(String, Vec<u64>)> = Vec::new();
    for ((rung, (width, height)), (_, playlist)) in VARIANTS.iter().zip(&playlists) {
        let name = rung.unwrap_or("source").to_owned();
        let segments = stored_segments(&stack.s3, &prefix(channel, *rung)).await;
        assert_eq!(
            segments.len(),
            playlist.uris.len(),
            "{name}: stored {:?}, the ended playlist lists {:?}",
            segments.iter().map(|s| &s.0).collect::<Vec<_>>(),
            playlist.uris
        );
        assert!(
            segments.len() >= 4,
            "{name}: only {} segments",
            segments.len()
        );
        let variant = variant_for(&master, *rung);
        let sizes: Vec<(f64, u64)> = segments
            .iter()
            .map(|(_, d, b)| (*d, b.len() as u64))
            .collect();
        check_bandwidth(variant, &sizes)
            .unwrap_or_else(|e| panic!("{name}: {e}\nmaster:\n{master_text}"));

        // What the pictures are, read by ffprobe from the first segment.
        let first = tmp.join(format!("{name}-first.ts"));
        std::fs::write(&first, &segments[0].2).unwrap();
        let (w, h, fps, level) = probe_video(&first);
        assert_eq!((w, h), (*width, *height), "{name}: ffprobe's picture size");
        assert_eq!(
            variant.resolution,
            Some((w, h)),
            "{name}: RESOLUTION against ffprobe's\n{master_text}"
        );
        let rate = variant.frame_rate.unwrap_or_default();
        assert!(
            (rate - fps).abs() < 0.01,
            "{name}: FRAME-RATE {rate}, ffprobe reads {fps}\n{master_text}"
        );
        let avc = variant
            .codecs
            .iter()
            .find(|c| c.starts_with("avc1."))
            .unwrap_or_else(|| panic!("{name}: no avc1 in CODECS\n{master_text}"));
        assert_eq!(
            u32::from_str_radix(&avc[9..], 16).ok(),
            Some(level),
            "{name}: CODECS {avc} names another level than ffprobe's {level}"
        );
        assert!(
            variant.codecs.iter().any(|c| c == "mp4a.40.2"),
            "{name}: AAC-LC expected in CODECS\n{master_text}"
        );

        // Where each segment starts, from the TS itself.
        let pts: Vec<u64> = segments
            .iter()
            .map(|(key, _, bytes)| first_video_pts(bytes).unwrap_or_else(|e| panic!("{key}: {e}")))
            .collect();
        assert_eq!(
            pts[0],
            ffprobe_first_video_pts(&first),
            "{name}: the TS reader and ffprobe disagree on the first PTS"
        );
        aligned.push((name, pts));
    }
    check_alignment(&aligned, FRAME_30FPS)
        .unwrap_or_else(|e| panic!("the variants are not aligned:\n{e}\n{aligned:?}"));

    // The VOD of the push: a master of VOD variants.
    let link = sign_vod(&stack, channel, (start, end));
    let resp = common::httpc::get(&link).await;
    assert_eq!(resp.status, 200, "GET {link}: {}", resp.text());
    let vod_master = check_master(&resp.text())
        .unwrap_or_else(|e| panic!("the VOD is not a valid master:\n{e}\n{}", resp.text()));
    assert_eq!(vod_master.variants.len(), VARIANTS.len(), "{}", resp.text());
    let mut counts = BTreeMap::new();
    for v in &vod_master.variants {
        let uri = resolve(&link, &v.uri);
        let resp = common::httpc::get(&uri).await;
        assert_eq!(resp.status, 200, "GET {uri}: {}", resp.text());
        let vod = check_playlist(&resp.text())
            .unwrap_or_else(|e| panic!("VOD variant {uri}:\n{e}\n{}", resp.text()));
        assert!(vod.vod && vod.ended, "{uri} is not a VOD:\n{}", resp.text());
        let listed: f64 = vod.durations.iter().sum();
        let span = video_span(&uri);
        assert!(
            span > listed - 0.5,
            "ffprobe read {span:.3} s of picture of {uri}'s {listed:.3} s"
        );
        counts.insert(v.resolution, vod.uris.len());
    }
    let expected: BTreeMap<_, _> = VARIANTS
        .iter()
        .zip(&playlists)
        .map(|((_, size), (_, p))| (Some(*size), p.uris.len()))
        .collect();
    assert_eq!(counts, expected, "segments per VOD variant, by RESOLUTION");
}

/// hls.js in Chromium plays the live master through `/play`: it lists the
/// three variants as levels (each a `/play` URL), starts on the source,
/// and when asked switches to 120p, whose fragments it then loads, buffers
/// and shows (the picture becomes 160x120 and keeps playing).
#[tokio::test(flavor = "multi_thread")]
async fn hls_js_plays_the_master_and_switches_level_when_asked() {
    let stack = Stack::start_with("renditions-player", &config(CORS_CONFIG));
    allow_any_origin(&stack.s3, BUCKET).await;
    let channel = "cam";
    let mut push = stack.push(&stack.sign_push(channel), 40);
    let master_key = format!("{channel}/master.m3u8");
    let master = wait_until(
        &format!("{master_key} to list every variant"),
        secs(40),
        millis(500),
        async || {
            if let Some(status) = push.try_wait() {
                panic!("the push ended ({status}): {}", push.log());
            }
            let text = String::from_utf8(stack.s3.try_get(BUCKET, &master_key).await?)
                .expect("the master is not UTF-8");
            match check_master(&text) {
                Ok(m) if m.variants.len() == VARIANTS.len() => Ok(m),
                Ok(m) => Err(format!("{} variants", m.variants.len())),
                Err(e) => panic!("{master_key} is not a valid master:\n{e}\n{text}"),
            }
        },
    )
    .await;

    let url = stack.sign_play(&master_key);
    // LL-HLS (on by default) per variant: each rung's /play, as the signed
    // master names it, is a Low-Latency playlist with parts of its own.
    let signed = common::httpc::get(&url).await;
    assert_eq!(signed.status, 200, "{}", signed.text());
    let signed = signed.text();
    for rung in RUNGS.iter().map(|(r, _)| r) {
        let uri = signed
            .lines()
            .find(|l| l.starts_with(&format!("{rung}/")))
            .unwrap_or_else(|| panic!("no {rung} variant in the signed master:\n{signed}"));
        let variant = wait_until(
            &format!("{rung}'s /play with LL-HLS parts"),
            secs(20),
            millis(500),
            async || {
                let text = common::httpc::get(&resolve(&url, uri)).await.text();
                if text.contains("#EXT-X-PART-INF:") && text.contains("#EXT-X-PART:") {
                    Ok(text)
                } else {
                    Err(text)
                }
            },
        )
        .await;
        assert!(variant.contains("#EXT-X-SERVER-CONTROL:"), "{variant}");
        assert!(
            variant.contains(&format!("/{channel}/{rung}/.ll/")),
            "{rung}'s parts are stored under its own .ll/: {variant}"
        );
    }
    let played = play_switching(
        &stack.dir,
        &url,
        Mode::Plain,
        10,
        Switch {
            start_height: Some(240),
            to_height: Some(120),
        },
    )
    .await;
    let summary = played.summary();
    assert!(played.fatal.is_none(), "{summary}");
    let mut heights: Vec<u32> = played.levels.iter().map(|l| l.height).collect();
    heights.sort_unstable();
    assert_eq!(heights, [120, 180, 240], "{summary}");
    // hls.js read each level as the master states it. The master is
    // rewritten while measurements grow, and BANDWIDTH is a peak over a
    // growing set of segments: what hls.js read lies between the master
    // seen before the play and the one stored after it.
    let text = String::from_utf8(stack.s3.get(BUCKET, &master_key).await).unwrap();
    let after = check_master(&text)
        .unwrap_or_else(|e| panic!("{master_key} is not a valid master:\n{e}\n{text}"));
    for level in &played.levels {
        let size = Some((level.width, level.height));
        let [before, after] = [&master, &after].map(|m| {
            m.variants
                .iter()
                .find(|v| v.resolution == size)
                .unwrap_or_else(|| panic!("no variant of {level:?} in {m:?}"))
        });
        assert!(before.has_video(), "{before:?}");
        assert!(
            (before.bandwidth..=after.bandwidth).contains(&level.bitrate),
            "{level:?} between {before:?} and {after:?}"
        );
        assert_eq!(level.codecs, after.codecs.join(","), "{summary}");
    }
    let base = format!("{}/play/{BUCKET}/{channel}/", stack.livebucket.url());
    assert!(
        played.levels.iter().all(|l| l.uri.starts_with(&base)),
        "every level is a /play URL under {base}: {summary}"
    );
    let level_of = |h: u32| played.levels.iter().position(|l| l.height == h);
    assert_eq!(played.start_level, level_of(240), "{summary}");
    let target = level_of(120);
    assert_eq!(played.switch_target, target, "{summary}");
    let target = target.unwrap();
    let switched_at = played.switched_at.unwrap_or_default();
    assert!(
        played
            .level_switched
            .iter()
            .any(|&(t, l)| l == target && t.unwrap_or_default() >= switched_at),
        "hls.js never switched to the 120p level: {summary}"
    );
    assert!(
        played.buffered_by_level.get(&target).copied().unwrap_or(0) >= 1,
        "no 120p fragment reached the buffer: {summary}"
    );
    assert!(
        played
            .sizes
            .iter()
            .any(|&(t, _, h)| h == 120 && t >= switched_at),
        "the picture never became 120 lines high: {summary}"
    );
    // A second of pictures at 30 fps shown at the new size.
    assert!(played.frames_at_target >= 30, "{summary}");
    push.kill();
}

/// Cluster mode (two nodes, one etcd, a balancer in front): the node that
/// takes a push with a ladder runs its transcoders; when it dies (`kill
/// -9` of its nginx and livebucket), the streamer's next push is taken by
/// the other node, which runs the transcoders now, and every variant's
/// playlist goes on from the bucket (each version a valid reload of the one
/// before: a discontinuity, then the new node's segments), with the master
/// still listing all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_failover_moves_the_variants_to_the_node_that_takes_the_channel() {
    let dir = TestDir::new("renditions-cluster");
    let mut garage = Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let s3 = garage.s3();
    let etcd = tokio::task::block_in_place(|| Etcd::start(&dir, 1));
    let endpoints = etcd.endpoints_toml();
    let mut nodes: Vec<Node> = ["a", "b"]
        .iter()
        .map(|n| tokio::task::block_in_place(|| Node::start(n, &garage, &endpoints, &config(""))))
        .collect();
    let ports: Vec<u16> = nodes.iter().map(|n| n.nginx.rtmp_port()).collect();
    let balancer = tokio::task::block_in_place(|| Balancer::start(&dir, &ports));
    let channel = "fo";
    let url = sign_push(
        nodes[0].livebucket.config_path(),
        BUCKET,
        channel,
        &balancer.push_base(),
    );
    let watches: Vec<PlaylistWatch> = VARIANTS
        .iter()
        .map(|(rung, _)| {
            let folder = prefix(channel, *rung);
            PlaylistWatch::start(&s3, BUCKET, folder.trim_end_matches('/'))
        })
        .collect();

    let (mut streamer, holder) = push_until_accepted(&dir, &url, &nodes, &[0, 1]).await;
    for w in &watches {
        w.wait_for("two segments", secs(60), |v| {
            at_least_segments(2)(&v.playlist)
        })
        .await;
    }
    assert_eq!(transcoders(ports[holder]).len(), RUNGS.len());
    tokio::task::block_in_place(|| nodes[holder].kill9());
    assert!(
        !streamer.exit_within(secs(20)).await.success(),
        "the push outlived its node"
    );

    let other = 1 - holder;
    let (mut streamer, _) = push_until_accepted(&dir, &url, &nodes, &[other]).await;
    for w in &watches {
        w.wait_for("two segments after a discontinuity", secs(60), |v| match v
            .playlist
            .discontinuity_flags
            .iter()
            .rposition(|&d| d)
        {
            Some(i) if v.playlist.uris.len() - i >= 2 => Ok(()),
            _ => Err("no two segments after a discontinuity".to_owned()),
        })
        .await;
    }
    let coders = transcoders(ports[other]);
    assert_eq!(coders.len(), RUNGS.len(), "{coders:?}");
    let master_key = format!("{channel}/master.m3u8");
    let text = String::from_utf8(s3.get(BUCKET, &master_key).await).unwrap();
    let master = check_master(&text)
        .unwrap_or_else(|e| panic!("{master_key} is not a valid master:\n{e}\n{text}"));
    assert_eq!(master.variants.len(), VARIANTS.len(), "{text}");
    streamer.kill();
    for w in watches {
        w.finish().await;
    }
    drop(balancer);
    drop(nodes);
    drop(etcd);
}

/// Pushes `url` until one of `nodes[candidates]` approves it (a refused
/// push ends at once; streamers retry): the push and that node's index.
async fn push_until_accepted(
    dir: &TestDir,
    url: &str,
    nodes: &[Node],
    candidates: &[usize],
) -> (Push, usize) {
    let accepted = |i: usize| nodes[i].accepted();
    let deadline = std::time::Instant::now() + secs(60);
    loop {
        let before: Vec<u64> = candidates.iter().map(|&i| accepted(i)).collect();
        let mut p = push(dir, url, 600);
        let taken = wait_until(
            "a node to take or refuse the push",
            secs(15),
            millis(200),
            async || {
                let now: Vec<u64> = candidates.iter().map(|&i| accepted(i)).collect();
                if let Some(k) = (0..now.len()).find(|&k| now[k] > before[k]) {
                    return Ok(Some(candidates[k]));
                }
                match p.try_wait() {
                    Some(_) => Ok(None),
                    None => Err(format!("accepted counts {now:?}")),
                }
            },
        )
        .await;
        if let Some(i) = taken {
            return (p, i);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node took the push within 60 s"
        );
        tokio::time::sleep(millis(500)).await;
    }
}

/// An ffprobe of `uri` (an HLS playlist it follows): the seconds between
/// its first and last video packet. Each read gives up after 5 s.
fn video_span(uri: &str) -> f64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "csv=p=0", "-rw_timeout", "5000000"])
        .args(["-protocol_whitelist", "file,http,https,tcp,tls"])
        .args(["-select_streams", "v:0", "-show_entries", "packet=pts_time"])
        .arg(uri)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffprobe: {e}"));
    assert!(
        out.status.success(),
        "ffprobe {uri}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let (lo, hi) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &p| {
            (lo.min(p), hi.max(p))
        });
    hi - lo
}

/// `uri` as a player resolves it against the playlist at `base`.
fn resolve(base: &str, uri: &str) -> String {
    if uri.contains("://") {
        return uri.to_owned();
    }
    let base = base.split('?').next().unwrap_or_default();
    match uri.strip_prefix('/') {
        Some(path) => {
            let origin_end = base.find("://").map_or(0, |i| i + 3);
            let host_end = base[origin_end..]
                .find('/')
                .map_or(base.len(), |i| origin_end + i);
            format!("{}/{path}", &base[..host_end])
        }
        None => format!("{}/{uri}", base.rsplit_once('/').map_or(base, |(d, _)| d)),
    }
}

/// `livebucket sign vod` of a GET on `channel` over `range` (Unix
/// seconds), through livebucket: the link it prints.
fn sign_vod(stack: &Stack, channel: &str, (start, end): (u64, u64)) -> String {
    let config = stack.livebucket.config_path().to_str().unwrap().to_owned();
    let (start, end, base) = (start.to_string(), end.to_string(), stack.livebucket.url());
    let out = Command::new(env!("CARGO_BIN_EXE_livebucket"))
        .args(["sign", "vod", "--config", &config, "--bucket", BUCKET])
        .args(["--channel", channel, "--start", &start, "--end", &end])
        .args(["--expires-in", "600", "--via-livebucket", &base])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run livebucket sign vod: {e}"));
    assert!(
        out.status.success(),
        "livebucket sign vod: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}
