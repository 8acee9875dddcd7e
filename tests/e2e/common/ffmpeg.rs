//! ffmpeg as the streamer (a small test pattern and a tone, pushed in real
//! time) and ffprobe to check what landed in the bucket.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::TestDir;
use super::process::{Proc, Stop, run};

/// A running push; killed (SIGKILL) when dropped.
pub struct Push {
    proc: Proc,
}

/// A lavfi test pattern and a sine tone, encoded the way every test media is:
/// H.264 (libx264 ultrafast, yuv420p) + AAC.
pub struct TestMedia<'a> {
    /// The lavfi video source, e.g. `testsrc=size=320x240:rate=30`.
    pub video: &'a str,
    /// The tone's frequency in Hz (sampled at 44.1 kHz).
    pub tone_hz: u32,
    pub seconds: u32,
    /// Frames from one keyframe to the next (`-g`).
    pub gop: u32,
    /// As a live streamer: the inputs read in real time (`-re`) and x264
    /// tuned for zero latency. Otherwise encoded as fast as ffmpeg can.
    pub live: bool,
}

impl TestMedia<'_> {
    /// `ffmpeg`, logging at `loglevel`, with these inputs and codecs; the
    /// caller adds any other output options, the format and the output.
    pub fn command(&self, loglevel: &str) -> Command {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-nostdin", "-hide_banner", "-loglevel", loglevel]);
        if self.live {
            cmd.arg("-re");
        }
        cmd.args(["-f", "lavfi", "-i", self.video])
            .args(["-f", "lavfi", "-i"])
            .arg(format!("sine=frequency={}:sample_rate=44100", self.tone_hz))
            .args(["-t", &self.seconds.to_string()])
            .args(["-c:v", "libx264", "-preset", "ultrafast"]);
        if self.live {
            cmd.args(["-tune", "zerolatency"]);
        }
        cmd.args(["-pix_fmt", "yuv420p", "-g", &self.gop.to_string()])
            .args(["-c:a", "aac"]);
        cmd
    }
}

/// Pushes `seconds` of 320x240 30 fps H.264 (keyframe every 2 s) + AAC to
/// `url` in real time (`-re`). Its log goes to `DIR/ffmpeg-N.log`.
pub fn push(dir: &TestDir, url: &str, seconds: u32) -> Push {
    push_with_args(dir, url, seconds, &[])
}

/// [`push`] with more output options before the URL, e.g.
/// `["-rtmp_tcurl", "rtmp://demo.live.example.com:1935/live"]`.
pub fn push_with_args(dir: &TestDir, url: &str, seconds: u32, output_args: &[&str]) -> Push {
    let log = dir.unique_file("ffmpeg", "log");
    let cmd = push_command("testsrc=size=320x240:rate=30", url, seconds, output_args);
    Push {
        proc: Proc::spawn("ffmpeg", cmd, &log, Stop::Kill),
    }
}

/// Pushes `media` (which should be `live`) to `url` as FLV, with
/// `output_args` before the URL.
pub fn push_media(dir: &TestDir, media: &TestMedia, url: &str, output_args: &[&str]) -> Push {
    let log = dir.unique_file("ffmpeg", "log");
    let mut cmd = media.command("warning");
    cmd.args(["-b:a", "64k"])
        .args(output_args)
        .args(["-f", "flv", url]);
    Push {
        proc: Proc::spawn("ffmpeg", cmd, &log, Stop::Kill),
    }
}

/// [`push`] of another lavfi `video` (30 fps unless it says otherwise), e.g.
/// `testsrc=size=640x360:rate=25`.
pub fn push_video(dir: &TestDir, video: &str, url: &str, seconds: u32) -> Push {
    let log = dir.unique_file("ffmpeg", "log");
    Push {
        proc: Proc::spawn(
            "ffmpeg",
            push_command(video, url, seconds, &[]),
            &log,
            Stop::Kill,
        ),
    }
}

/// The ffmpeg command of a push: `seconds` of lavfi `video` (30 fps, a
/// keyframe every 2 s) and a 440 Hz tone at 64 kbit/s, as FLV to `url` in
/// real time, with `output_args` (e.g. bitrate options) before the URL.
pub fn push_command(video: &str, url: &str, seconds: u32, output_args: &[&str]) -> Command {
    let media = TestMedia {
        video,
        tone_hz: 440,
        seconds,
        gop: 60,
        live: true,
    };
    let mut cmd = media.command("warning");
    cmd.args(["-b:a", "64k"])
        .args(output_args)
        .args(["-f", "flv", url]);
    cmd
}

/// The stamped encoder, `tests/player/stamp_push.py`: 320x240 25 fps
/// pictures that each carry their capture time (Unix ms, with a CRC) as an
/// 8x8 grid of black and white cells, encoded live (libx264 veryfast
/// zerolatency, a keyframe every `fragment_secs`, 400 kbit/s) with a 440 Hz
/// AAC tone and pushed to `url` for `seconds` (0: until stopped).
/// [`super::player`] reads the stamps back in Chromium. Stopped by SIGTERM
/// (the script then ends ffmpeg's input, and the push ends cleanly), or
/// [`Push::kill`]. Its log goes to `DIR/stamp-push-N.log`.
pub fn push_stamped(dir: &TestDir, url: &str, fragment_secs: u32, seconds: u32) -> Push {
    let log = dir.unique_file("stamp-push", "log");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/player/stamp_push.py"
    ))
    .arg(url)
    .args(["--fragment", &fragment_secs.to_string()])
    .args(["--seconds", &seconds.to_string()]);
    Push {
        proc: Proc::spawn(
            "stamp_push",
            cmd,
            &log,
            Stop::Term {
                grace: Duration::from_secs(12),
            },
        ),
    }
}

impl Push {
    /// Waits for ffmpeg to exit; panics, with its log, after `timeout`.
    pub async fn exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.proc.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "ffmpeg still running after {timeout:?}; its log:\n{}",
                    self.proc.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some(status)` once ffmpeg has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.proc.try_wait()
    }

    /// Stops the push now (the streamer vanishes without closing).
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// What ffprobe says of a media file.
#[derive(Debug)]
pub struct Probe {
    /// e.g. `mpegts`
    pub format_name: String,
    /// (codec_type, codec_name), e.g. `("video", "h264")`, in stream order.
    pub streams: Vec<(String, String)>,
}

pub fn ffprobe(path: &Path) -> Probe {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-of", "json"])
        .args([
            "-show_entries",
            "format=format_name:stream=codec_type,codec_name",
        ])
        .arg(path);
    let json: serde_json::Value = serde_json::from_str(&run("ffprobe", &mut cmd))
        .unwrap_or_else(|e| panic!("ffprobe printed invalid JSON: {e}"));
    let field = |v: &serde_json::Value, name: &str| v[name].as_str().unwrap_or_default().to_owned();
    Probe {
        format_name: field(&json["format"], "format_name"),
        streams: json["streams"]
            .as_array()
            .map(|streams| {
                streams
                    .iter()
                    .map(|s| (field(s, "codec_type"), field(s, "codec_name")))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
