//! A viewer: hls.js in headless Chromium plays a URL for a while and reports
//! what it saw (`tests/player/play.cjs`, driven by puppeteer-core; both it
//! and hls.js come from `tests/console/package.json`, installed by
//! `scripts/install-deps`).
//!
//! Latency is measured glass to glass: when the stream comes from
//! [`super::ffmpeg::push_stamped`], every picture carries the wall-clock time
//! it was made, and the page reads it back from each picture Chromium
//! presents (same machine, same clock). hls.js's own `latency` and
//! `targetLatency` are sampled beside it, with stalls, errors, and the
//! fragments and LL-HLS parts it loaded. Given a master playlist, it lists
//! `hls.levels` and can start on one level and switch to another
//! ([`play_switching`]), reporting the fragments loaded and buffered per
//! level and each change of the picture's size.
//!
//! The page runs on its own loopback origin, so the playlist's server and
//! the bucket must allow it by CORS, as for any web player:
//! [`CORS_CONFIG`] for livebucket, [`allow_any_origin`] for the bucket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use serde::Deserialize;

use super::TestDir;
use super::process::{Proc, Stop};
use super::s3::S3;

/// livebucket config that lets any origin read `/play` (CORS).
pub const CORS_CONFIG: &str = "[http]\ncors_origins = [\"*\"]\n";

/// How long the first picture may take after the page loads.
const START_SECONDS: u64 = 30;

/// How hls.js is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// hls.js's defaults with `lowLatencyMode: false`: a player that ignores
    /// LL-HLS parts (hls.js's own default is `true`).
    Plain,
    /// hls.js's defaults (`lowLatencyMode: true`).
    LowLatency,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::LowLatency => "low-latency",
        }
    }
}

/// What the player saw, as `play.cjs` reports it. Times are milliseconds;
/// `t` is the time since the first picture was shown.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Played {
    /// `Hls.version` in the page.
    pub hls_version: String,
    /// From page load to the first picture shown.
    pub startup_ms: f64,
    /// Pictures the page saw presented (one `requestVideoFrameCallback`
    /// each).
    pub frames: u64,
    /// Chromium's count of presented frames (`presentedFrames`), which also
    /// counts those presented between two callbacks.
    pub presented_frames: u64,
    /// Pictures whose stamp did not read (no stamp, or a CRC mismatch).
    pub unreadable: u64,
    /// The longest time between two presented pictures after the first, or
    /// from the last one to the end of the watch (a picture that froze).
    pub max_frame_gap_ms: f64,
    /// `(t, glass to glass)` for every picture whose stamp read.
    pub glass: Vec<(f64, f64)>,
    /// `(t, hls.latency, hls.targetLatency)` every 500 ms, in seconds as
    /// hls.js gives them (`None` before hls.js knows).
    pub latency: Vec<(f64, Option<f64>, Option<f64>)>,
    /// `t` of each hls.js `bufferStalledError`.
    pub stalls: Vec<Option<f64>>,
    /// `t` of each `waiting` event of the video after the first picture.
    pub waiting: Vec<Option<f64>>,
    /// hls.js errors (the first 50).
    pub errors: Vec<PlayerError>,
    /// The first fatal hls.js error, `TYPE: DETAILS (REASON)`.
    pub fatal: Option<String>,
    /// Whole segments loaded.
    pub frags_loaded: u64,
    /// LL-HLS parts loaded.
    pub parts_loaded: u64,
    /// Media playlist loads (reloads included).
    pub levels_loaded: u64,
    /// The last media playlist's header, as hls.js parsed it.
    pub level: Option<Level>,
    /// A master's variants as `hls.levels` lists them (hls.js orders them by
    /// bitrate); empty for a media playlist.
    #[serde(default)]
    pub levels: Vec<HlsLevel>,
    /// The first level hls.js switched to (an index into `levels`).
    pub start_level: Option<usize>,
    /// The level [`Switch::to_height`] asked for.
    pub switch_target: Option<usize>,
    /// `t` when it was asked for.
    pub switched_at: Option<f64>,
    /// `(t, level)` of each hls.js `LEVEL_SWITCHED`.
    #[serde(default)]
    pub level_switched: Vec<(Option<f64>, usize)>,
    /// Whole segments loaded, per level.
    #[serde(default)]
    pub frags_by_level: BTreeMap<usize, u64>,
    /// Whole segments appended to the media buffer, per level.
    #[serde(default)]
    pub buffered_by_level: BTreeMap<usize, u64>,
    /// `(t, width, height)` at each change of the presented picture's size.
    #[serde(default)]
    pub sizes: Vec<(f64, u32, u32)>,
    /// Pictures presented at the switch target's height after the switch
    /// was asked for.
    #[serde(default)]
    pub frames_at_target: u64,
}

/// One of `hls.levels`.
#[derive(Debug, Deserialize)]
pub struct HlsLevel {
    pub width: u32,
    pub height: u32,
    /// hls.js's `bitrate`: the master's BANDWIDTH.
    pub bitrate: u64,
    /// hls.js's video and audio codec, comma-separated.
    pub codecs: String,
    /// The variant's URL without its query.
    pub uri: String,
}

/// For a master playlist: the level to start on and the one to switch to
/// once the first picture shows (each by its picture height).
#[derive(Clone, Copy, Debug, Default)]
pub struct Switch {
    pub start_height: Option<u32>,
    pub to_height: Option<u32>,
}

#[expect(dead_code, reason = "printed with {:?} in Played's summary")]
#[derive(Debug, Deserialize)]
pub struct PlayerError {
    pub t: Option<f64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub details: String,
    pub fatal: bool,
    /// hls.js's reason or error message, when it gives one.
    pub reason: String,
}

#[expect(dead_code, reason = "printed with {:?} in Played's summary")]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    pub target_duration: f64,
    pub part_target: f64,
    pub hold_back: f64,
    pub part_hold_back: f64,
    pub can_block_reload: bool,
    pub can_skip_until: f64,
    pub segments: u64,
    pub parts: u64,
    pub live: bool,
}

impl Played {
    /// The `p`-th percentile (nearest rank, 0–100) of the glass-to-glass
    /// samples, in ms; `None` without a readable stamp.
    pub fn glass_percentile(&self, p: f64) -> Option<f64> {
        percentile(self.glass.iter().map(|&(_, ms)| ms).collect(), p)
    }

    /// The `p`-th percentile of `hls.latency`, in ms.
    pub fn hls_latency_percentile(&self, p: f64) -> Option<f64> {
        percentile(
            self.latency
                .iter()
                .filter_map(|&(_, l, _)| l.map(|s| s * 1000.0))
                .collect(),
            p,
        )
    }

    /// The last `hls.targetLatency`, in ms.
    pub fn target_latency_ms(&self) -> Option<f64> {
        self.latency
            .iter()
            .rev()
            .find_map(|&(_, _, t)| t.map(|s| s * 1000.0))
    }

    /// Stalls once playing: hls.js's `bufferStalledError`s and the video's
    /// `waiting` events after the first picture.
    pub fn stalls_after_start(&self) -> usize {
        self.stalls.iter().filter(|t| t.is_some()).count() + self.waiting.len()
    }

    /// One paragraph for a failure message: every figure a latency or
    /// playback assertion is about.
    pub fn summary(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
        format!(
            "hls.js {}: startup {:.0} ms; {} pictures presented ({} by Chromium's count), \
             {} unreadable, longest gap {:.0} ms; glass to glass p50 / p95 / max {} / {} / {} ms \
             over {} stamps; hls.latency p50 / max {} / {} ms, targetLatency {} ms; \
             stalls after start {} (bufferStalledError at {:?}, waiting at {:?}); \
             {} fragments and {} parts loaded, {} playlist loads; last playlist {:?}; \
             levels {:?}, start level {:?}, switch to {:?} at {:?}, switches {:?}, \
             fragments loaded / buffered per level {:?} / {:?}, picture sizes {:?}, \
             {} pictures at the target's height; fatal {:?}; errors {:?}",
            self.hls_version,
            self.startup_ms,
            self.frames,
            self.presented_frames,
            self.unreadable,
            self.max_frame_gap_ms,
            ms(self.glass_percentile(50.0)),
            ms(self.glass_percentile(95.0)),
            ms(self.glass_percentile(100.0)),
            self.glass.len(),
            ms(self.hls_latency_percentile(50.0)),
            ms(self.hls_latency_percentile(100.0)),
            ms(self.target_latency_ms()),
            self.stalls_after_start(),
            self.stalls,
            self.waiting,
            self.frags_loaded,
            self.parts_loaded,
            self.levels_loaded,
            self.level,
            self.levels,
            self.start_level,
            self.switch_target,
            self.switched_at,
            self.level_switched,
            self.frags_by_level,
            self.buffered_by_level,
            self.sizes,
            self.frames_at_target,
            self.fatal,
            self.errors,
        )
    }
}

/// Nearest-rank percentile of `values` (`p` in 0–100).
pub fn percentile(mut values: Vec<f64>, p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// puppeteer-core's and hls.js's `node_modules`, as `scripts/install-deps`
/// installs them (`CONSOLE_TEST_NODE_MODULES` overrides).
pub fn node_modules() -> PathBuf {
    let dir = std::env::var_os("CONSOLE_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME is not set"))
                .join(".cache/livebucket/console-test-node/node_modules")
        });
    for package in ["puppeteer-core", "hls.js"] {
        assert!(
            dir.join(package).is_dir(),
            "{} has no {package}: run scripts/install-deps",
            dir.display()
        );
    }
    dir
}

/// Lets any origin GET `bucket`'s objects (CORS), as a bucket serving web
/// players must: segment URIs in `/play` are presigned URLs to the bucket.
pub async fn allow_any_origin(s3: &S3, bucket: &str) {
    let rule = CorsRule::builder()
        .allowed_origins("*")
        .allowed_methods("GET")
        .allowed_methods("HEAD")
        .allowed_headers("*")
        .max_age_seconds(600)
        .build()
        .expect("a CORS rule");
    s3.client()
        .put_bucket_cors()
        .bucket(bucket)
        .cors_configuration(
            CorsConfiguration::builder()
                .cors_rules(rule)
                .build()
                .expect("a CORS configuration"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutBucketCors on {bucket}: {e:?}"));
}

/// Plays `url` in `mode` for `seconds` after the first picture and returns
/// what the player saw. Panics, with the driver's output, if no picture
/// shows within 30 s, hls.js fails fatally before, or the driver fails.
pub async fn play(dir: &TestDir, url: &str, mode: Mode, seconds: u32) -> Played {
    play_switching(dir, url, mode, seconds, Switch::default()).await
}

/// [`play`] of a master playlist, starting on and switching to the levels
/// `switch` names (hls.js's own choice where it names none). The player
/// fails if no level has a height asked for.
pub async fn play_switching(
    dir: &TestDir,
    url: &str,
    mode: Mode,
    seconds: u32,
    switch: Switch,
) -> Played {
    let profile = dir.unique_file("chromium-profile", "d");
    std::fs::create_dir(&profile)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", profile.display()));
    let mut cmd = Command::new("node");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/player/play.cjs"
    ))
    .env("PLAY_URL", url)
    .env("PLAY_MODE", mode.name())
    .env("PLAY_SECONDS", seconds.to_string())
    .env("PLAY_START_SECONDS", START_SECONDS.to_string())
    .env("PLAY_PROFILE", &profile)
    .env("PLAY_NODE_MODULES", node_modules());
    if let Some(h) = switch.start_height {
        cmd.env("PLAY_START_HEIGHT", h.to_string());
    }
    if let Some(h) = switch.to_height {
        cmd.env("PLAY_SWITCH_HEIGHT", h.to_string());
    }
    let log = dir.unique_file("player", "log");
    // SIGTERM: puppeteer then closes Chromium; its children go after the
    // grace period.
    let mut driver = Proc::spawn(
        "player",
        cmd,
        &log,
        Stop::Term {
            grace: Duration::from_secs(5),
        },
    );
    let timeout = Duration::from_secs(START_SECONDS + u64::from(seconds) + 30);
    let line = super::wait_until(
        &format!("the player to report on {}", mode.name()),
        timeout,
        Duration::from_millis(250),
        async || {
            let out = driver.log();
            if let Some(failed) = out.lines().find_map(|l| l.strip_prefix("FAILED ")) {
                panic!("the player failed: {failed}\n{out}");
            }
            if let Some(result) = out.lines().find_map(|l| l.strip_prefix("RESULT ")) {
                return Ok(result.to_owned());
            }
            match driver.try_wait() {
                Some(status) => panic!("the player exited ({status}) without a result:\n{out}"),
                None => Err("no RESULT line yet"),
            }
        },
    )
    .await;
    driver.stop();
    serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the player's RESULT is not what player.rs reads ({e}): {line}"))
}
