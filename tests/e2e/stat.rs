//! Live statistics and snapshots, end to end: ffmpeg pushes a known picture
//! (640x360 at 25 fps, H.264, AAC at 44.1 kHz) through nginx-rtmp and
//! livebucket into Garage, and
//!
//! - `livebucket::stat` reads that session's size, frame rate, codecs,
//!   sample rate and a non-zero bandwidth from the real `rtmp_stat` page,
//!   with the streamer's address; the page answers loopback only;
//! - `livebucket::snapshot` turns a fragment captured from the push into a
//!   JPEG stored under its timestamped key and `latest.jpg`, in the
//!   channel's bucket and in another one.
//!
//! Both are library calls here; the OSS API wires them in.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use ::livebucket::config::{AccessKey, S3Config};
use ::livebucket::metrics::Metrics;
use ::livebucket::oss::channel::Snapshot;
use ::livebucket::snapshot::{Offer, SnapshotPlan, SnapshotRequest, Snapshotter};
use ::livebucket::stat::{StatError, StatSource, StreamStat};
use ::livebucket::store::Store;
use common::ffmpeg::push_video;
use common::fragments::{Ledger, Recorder};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::task::TaskTracker;

const CHANNEL: &str = "cam1";

/// The session's directory under the HLS dir, once nginx listed two
/// fragments in it: (session id, a copy of the newer one in the test
/// directory; a session's first fragment may hold no picture). livebucket
/// takes a fragment out of nginx's directory at its close, so the copy is
/// the test's own recorder's.
async fn session_and_fragment(
    stack: &Stack,
    push: &mut Push,
    ledger: &Ledger,
) -> (String, PathBuf) {
    wait_until(
        "two fragments in a session directory",
        secs(30),
        millis(200),
        async || {
            if let Some(status) = push.try_wait() {
                panic!("ffmpeg exited ({status}):\n{}", push.log());
            }
            let dirs = std::fs::read_dir(&stack.hls_dir).map_err(|e| e.to_string())?;
            for dir in dirs.flatten() {
                let id = dir.file_name().to_string_lossy().into_owned();
                if !::livebucket::session::looks_like_id(&id) {
                    continue;
                }
                // A fragment listed in nginx's playlist is complete.
                let playlist =
                    std::fs::read_to_string(dir.path().join("index.m3u8")).unwrap_or_default();
                let listed: Vec<&str> = playlist.lines().filter(|l| l.ends_with(".ts")).collect();
                if let [_, .., name] = listed.as_slice()
                    && let Some(copy) = ledger
                        .copies()
                        .into_iter()
                        .rev()
                        .find(|c| c.session == id && c.name == *name)
                {
                    let named = stack.dir.join(format!("captured-{name}"));
                    std::fs::copy(&copy.path, &named).map_err(|e| e.to_string())?;
                    return Ok((id, named));
                }
            }
            Err("fewer than two listed fragments".to_string())
        },
    )
    .await
}

/// One GET of the stat page from `source` (a loopback address): the status.
async fn stat_status_from(source: &str, stat_url: &str) -> u16 {
    let addr = stat_url
        .trim_start_matches("http://")
        .trim_end_matches("/stat");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    stream
        .write_all(format!("GET /stat HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(secs(5), stream.read_to_end(&mut response))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

/// Width and height of an image, by ffprobe.
fn image_size(path: &Path) -> (u32, u32) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("cannot run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let (w, h) = text
        .trim()
        .split_once(',')
        .unwrap_or_else(|| panic!("ffprobe of {}: {text:?}", path.display()));
    (w.parse().unwrap(), h.parse().unwrap())
}

#[tokio::test]
async fn a_live_push_has_stats_and_snapshots() {
    let stack = Stack::start("stat");
    let ledger = Ledger::new(stack.dir.join("recorded"));
    let _recorder = Recorder::start(&stack.hls_dir, &ledger);
    let url = stack.sign_push(CHANNEL);
    let mut push = push_video(&stack.dir, "testsrc=size=640x360:rate=25", &url, 30);
    let (session, fragment) = session_and_fragment(&stack, &mut push, &ledger).await;
    let source = StatSource::new(&stack.nginx.stat_url(), "hls");

    // nginx's bandwidth is per 10-second window: wait for the first one.
    let stat: StreamStat = wait_until(
        "the session's video and audio with a bandwidth",
        secs(40),
        millis(500),
        async || {
            let all = source
                .session_stats(&[&session, "ffffffffffffffffffffffffffffffff"])
                .await
                .map_err(|e| e.to_string())?;
            assert!(all.len() <= 1, "{all:?}");
            let stat = all.get(&session).cloned().ok_or("session not listed")?;
            match (&stat.video, &stat.audio) {
                (Some(v), Some(a)) if v.bandwidth > 0 && a.bandwidth > 0 => Ok(stat),
                _ => Err(format!("not yet: {stat:?}")),
            }
        },
    )
    .await;
    let video = stat.video.as_ref().unwrap();
    assert_eq!(
        (
            video.width,
            video.height,
            video.frame_rate,
            video.codec.as_str()
        ),
        (640, 360, 25, "H264"),
        "{stat:?}"
    );
    let audio = stat.audio.as_ref().unwrap();
    assert_eq!(
        (audio.sample_rate, audio.codec.as_str()),
        (44_100, "AAC"),
        "{stat:?}"
    );
    // B/s: the test pattern at x264's defaults is well under 1 MB/s, the
    // 64 kbit/s tone about 8 kB/s.
    assert!(video.bandwidth < 1_000_000, "{stat:?}");
    assert!((4_000..16_000).contains(&audio.bandwidth), "{stat:?}");
    let publisher = stat.publisher.as_ref().expect("no publisher");
    assert_eq!(publisher.addr, "127.0.0.1");
    assert!(publisher.connected_for >= secs(10), "{stat:?}");

    // The page is for loopback's 127.0.0.1 only.
    assert_eq!(
        stat_status_from("127.0.0.1", &stack.nginx.stat_url()).await,
        200
    );
    assert_eq!(
        stat_status_from("127.0.0.2", &stack.nginx.stat_url()).await,
        403
    );

    snapshots_of(&stack, &fragment).await;

    // Once the push is over, nginx lists the session no more.
    let status = push.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());
    wait_until(
        "the session to leave the stat page",
        secs(20),
        millis(500),
        async || {
            let all = source
                .session_stats(&[&session])
                .await
                .map_err(|e| e.to_string())?;
            if all.is_empty() {
                Ok(())
            } else {
                Err(format!("{all:?}"))
            }
        },
    )
    .await;
    // And a stat page that does not answer is an error, not a hang (once
    // the last read, shared for STAT_CACHE_FOR, is over).
    drop(stack);
    tokio::time::sleep(::livebucket::stat::STAT_CACHE_FOR).await;
    let err = source.session_stats(&[&session]).await.unwrap_err();
    assert!(matches!(err, StatError::Fetch { .. }), "{err}");
}

/// Snapshots of a fragment captured from the push, into the channel's
/// bucket and into another one, with the stack's key (Garage lets it write
/// both); then the background path.
async fn snapshots_of(stack: &Stack, fragment: &Path) {
    let key = stack.key();
    let access_key = AccessKey {
        id: key.id.clone(),
        secret: key.secret.clone(),
        buckets: vec![BUCKET.into(), OTHER_BUCKET.into()],
        disabled: false,
    };
    let s3 = S3Config {
        endpoint: stack.store.endpoint().into(),
        region: stack.store.region().into(),
        force_path_style: true,
        public_endpoint: None,
        sign_payload: false,
        direct_put: true,
        ca_file: None,
        attempt_timeout_secs: 5,
        attempt_min_rate_kib: 256,
    };
    let metrics = Arc::new(Metrics::default());
    let tracker = TaskTracker::new();
    let snapshotter = Snapshotter::new(
        Store::new(&s3, std::slice::from_ref(&access_key)),
        metrics.clone(),
        tracker.clone(),
        2,
    );
    let fragment_ms: u64 = fragment
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| {
            n.strip_prefix("captured-")?
                .strip_suffix(".ts")?
                .parse()
                .ok()
        })
        .expect("fragment names are epoch ms");
    for (dest, key_prefix) in [
        (BUCKET, format!("{CHANNEL}/snapshot/")),
        (OTHER_BUCKET, format!("{BUCKET}/{CHANNEL}/snapshot/")),
    ] {
        let plan = SnapshotPlan::new(
            &Snapshot {
                role_name: "ignored".into(),
                dest_bucket: dest.into(),
                notify_topic: "ignored".into(),
                interval: 5,
            },
            &access_key,
        )
        .unwrap();
        let taken = snapshotter
            .take(&SnapshotRequest {
                key_id: key.id.clone(),
                bucket: BUCKET.into(),
                channel: CHANNEL.into(),
                plan,
                fragment: fragment.to_owned(),
                fragment_ms,
            })
            .await
            .unwrap_or_else(|e| panic!("snapshot into {dest}: {e}"));
        let timestamped = format!("{key_prefix}{fragment_ms:013}.jpg");
        let latest = format!("{key_prefix}latest.jpg");
        assert_eq!(
            (taken.key.as_str(), taken.latest_key.as_str()),
            (timestamped.as_str(), latest.as_str())
        );
        for (object, cache) in [
            (&timestamped, "public, max-age=31536000, immutable"),
            (&latest, "max-age=1"),
        ] {
            let head = stack.s3.head(dest, object).await;
            assert_eq!(head.content_type.as_deref(), Some("image/jpeg"), "{object}");
            assert_eq!(head.cache_control.as_deref(), Some(cache), "{object}");
            let jpeg = stack.s3.get(dest, object).await;
            assert!(
                jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]),
                "{object} is not a JPEG ({} bytes)",
                jpeg.len()
            );
            let local = stack.dir.unique_file("snapshot", "jpg");
            std::fs::write(&local, &jpeg).unwrap();
            assert_eq!(image_size(&local), (640, 360), "{object}");
        }
    }
    assert_eq!(metrics.counter("livebucket_snapshots_total", ""), 2);

    // The background path: a fragment without a picture does not count, a
    // real one is due, the next within the interval is not.
    let audio_only = stack.dir.join("audio-only.ts");
    let made = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-f", "lavfi", "-i"])
        .args([
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "1",
            "-c:a",
            "aac",
        ])
        .args(["-f", "mpegts"])
        .arg(&audio_only)
        .status()
        .expect("cannot run ffmpeg");
    assert!(made.success());
    let plan = SnapshotPlan {
        dest_bucket: BUCKET.into(),
        interval_secs: 5,
    };
    let request = |fragment: &Path, ms| SnapshotRequest {
        key_id: key.id.clone(),
        bucket: BUCKET.into(),
        channel: "cam2".into(),
        plan: plan.clone(),
        fragment: fragment.to_owned(),
        fragment_ms: ms,
    };
    tracker.close();
    let before = fragment_ms - 2_000;
    assert_eq!(
        snapshotter.offer(request(&audio_only, before)),
        Offer::Started
    );
    tracker.wait().await;
    assert_eq!(
        metrics.counter("livebucket_snapshot_failures_total", "no_picture"),
        1
    );
    assert_eq!(
        snapshotter.offer(request(fragment, fragment_ms)),
        Offer::Started
    );
    tracker.wait().await;
    let next = fragment_ms + 4_999;
    assert_eq!(snapshotter.offer(request(fragment, next)), Offer::NotDue);
    assert_eq!(metrics.counter("livebucket_snapshots_total", ""), 3);
    let stored: Vec<String> = stack
        .s3
        .list(BUCKET, "cam2/snapshot/")
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        stored,
        [
            format!("cam2/snapshot/{fragment_ms:013}.jpg"),
            "cam2/snapshot/latest.jpg".to_string()
        ]
    );
}
