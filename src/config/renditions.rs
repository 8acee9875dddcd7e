//! `[renditions]`: the adaptive-bitrate ladder. The operator names the rungs
//! here (what each costs in CPU is the operator's call); a channel picks
//! which of them it wants in its record (`LivebucketRenditions`), else it
//! gets `default`. A push with no rungs is stored exactly as without a
//! ladder. See `docs/renditions.md`.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// The name of the variant that is the streamer's own stream: never a rung.
pub(crate) const SOURCE: &str = "source";

/// Rung names that would collide with something else under `CHANNEL/`.
const RESERVED: &[&str] = &[SOURCE, "snapshot", "master"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionsConfig {
    /// The ffmpeg binary transcoders run.
    #[serde(default = "default_ffmpeg")]
    pub ffmpeg: String,
    /// The video encoder: `libx264` (software, the default), or a hardware
    /// one ffmpeg was built with (`h264_vaapi`, `h264_nvenc`, `h264_qsv`).
    #[serde(default = "default_encoder")]
    pub encoder: String,
    /// libx264's preset (`veryfast`, `superfast`, `ultrafast`, …); ignored
    /// by hardware encoders.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// The VA-API render node for `h264_vaapi`, e.g. `/dev/dri/renderD128`.
    #[serde(default)]
    pub vaapi_device: Option<String>,
    /// The transcoders' nice value (0 to 19): the source's relay, nginx and
    /// livebucket get the CPU first.
    #[serde(default = "default_nice")]
    pub nice: u32,
    /// Rungs a channel gets when its record names none. Empty (the
    /// default): only channels that ask for renditions get them.
    #[serde(default)]
    pub default: Vec<String>,
    /// A transcoder this many seconds behind real time is stopped and its
    /// rung dropped for the rest of the push (logged, counted), one rung
    /// per node at most every this many seconds; the source is never
    /// affected.
    #[serde(default = "default_max_lag_secs")]
    pub max_lag_secs: u64,
    /// Restarts of one rung's transcoder within a push before the rung is
    /// dropped for the rest of it.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// How long `on_publish` waits for the transcoders to subscribe before
    /// it answers, so their first fragment starts with the source's first.
    #[serde(default = "default_start_wait_ms")]
    pub start_wait_ms: u64,
    /// The ladder.
    #[serde(default)]
    pub rungs: Vec<Rung>,
}

/// One rendition of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Its name: the variant's folder under the channel
    /// (`CHANNEL/<name>/…`); 1 to 32 of `a-z 0-9 _ -`, starting with a
    /// letter or digit; not `source`, `snapshot` or `master`.
    pub name: String,
    /// Picture height in pixels (the width follows the source's aspect,
    /// rounded to even). Absent: an audio-only rung.
    #[serde(default)]
    pub height: Option<u32>,
    /// Video bitrate in kbit/s (required with `height`).
    #[serde(default)]
    pub video_kbps: Option<u32>,
    /// Audio bitrate in kbit/s (AAC).
    #[serde(default = "default_audio_kbps")]
    pub audio_kbps: u32,
    /// Frames per second, at most; absent: the source's.
    #[serde(default)]
    pub max_fps: Option<u32>,
}

impl Rung {
    pub fn audio_only(&self) -> bool {
        self.height.is_none()
    }
}

impl RenditionsConfig {
    pub fn rung(&self, name: &str) -> Option<&Rung> {
        self.rungs.iter().find(|r| r.name == name)
    }
}

fn default_ffmpeg() -> String {
    "ffmpeg".into()
}
fn default_encoder() -> String {
    "libx264".into()
}
fn default_preset() -> String {
    "veryfast".into()
}
fn default_nice() -> u32 {
    10
}
fn default_max_lag_secs() -> u64 {
    10
}
fn default_max_restarts() -> u32 {
    5
}
fn default_start_wait_ms() -> u64 {
    2000
}
fn default_audio_kbps() -> u32 {
    96
}

impl Default for RenditionsConfig {
    fn default() -> Self {
        Self {
            ffmpeg: default_ffmpeg(),
            encoder: default_encoder(),
            preset: default_preset(),
            vaapi_device: None,
            nice: default_nice(),
            default: Vec::new(),
            max_lag_secs: default_max_lag_secs(),
            max_restarts: default_max_restarts(),
            start_wait_ms: default_start_wait_ms(),
            rungs: Vec::new(),
        }
    }
}

/// Whether `name` may name a rung (see [`Rung::name`]).
pub(crate) fn valid_rung_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        && !RESERVED.contains(&name)
}

/// Checks `[renditions]`: rung names valid and unique, a video rung has a
/// bitrate, `default` names rungs that exist, sane limits.
pub(crate) fn validate(r: &RenditionsConfig) -> Result<(), ConfigError> {
    for (i, rung) in r.rungs.iter().enumerate() {
        let field = format!("renditions.rungs[{i}]");
        if !valid_rung_name(&rung.name) {
            return Err(invalid(
                format!("{field}.name"),
                "must be 1 to 32 of a-z 0-9 _ -, starting with a letter or digit, and not source, snapshot or master",
            ));
        }
        if r.rungs[..i].iter().any(|o| o.name == rung.name) {
            return Err(invalid(format!("{field}.name"), "names a rung twice"));
        }
        match (rung.height, rung.video_kbps) {
            (Some(h), Some(k))
                if (16..=4320).contains(&h) && h % 2 == 0 && (16..=100_000).contains(&k) => {}
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &field,
                    "height must be an even number from 16 to 4320 and video_kbps from 16 to 100000",
                ));
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    &field,
                    "a video rung needs both height and video_kbps; an audio-only rung neither",
                ));
            }
        }
        if !(8..=512).contains(&rung.audio_kbps) {
            return Err(invalid(
                format!("{field}.audio_kbps"),
                "must be from 8 to 512",
            ));
        }
        if rung.max_fps == Some(0) {
            return Err(invalid(format!("{field}.max_fps"), "must be at least 1"));
        }
    }
    if let Some(name) = r.default.iter().find(|n| r.rung(n).is_none()) {
        return Err(invalid(
            "renditions.default",
            format!("names {name:?}, which is not in renditions.rungs"),
        ));
    }
    if r.nice > 19 {
        return Err(invalid("renditions.nice", "must be from 0 to 19"));
    }
    if r.max_lag_secs == 0 {
        return Err(invalid("renditions.max_lag_secs", "must be at least 1"));
    }
    if r.ffmpeg.is_empty() || r.encoder.is_empty() || r.preset.is_empty() {
        return Err(invalid(
            "renditions",
            "ffmpeg, encoder and preset must not be empty",
        ));
    }
    if r.encoder == "h264_vaapi" && r.vaapi_device.is_none() {
        return Err(invalid(
            "renditions.vaapi_device",
            "is required with encoder = \"h264_vaapi\"",
        ));
    }
    Ok(())
}
