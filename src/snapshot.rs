//! Channel snapshots (OSS LiveChannel `Snapshot`): every `Interval` seconds
//! a JPEG of the live picture, stored in `DestBucket` under a timestamped
//! key and at a stable `latest.jpg` for thumbnails (keys:
//! [`crate::layout::snapshot_prefix`]).
//!
//! # What is taken, when
//!
//! The picture is the first frame of a captured fragment (nginx-rtmp cuts
//! fragments at keyframes, so it is a whole picture), decoded by
//! `ffmpeg -frames:v 1 … -c:v mjpeg`; its key is the fragment's key, so
//! `CHANNEL/snapshot/1732571234567.jpg` shows the start of
//! `CHANNEL/1732571234567.ts`. A fragment is due ([`is_due`]) when no
//! snapshot was taken yet for the channel or the last one is at least
//! `Interval` older: snapshots are at least `Interval` apart and at most one
//! fragment later than that (as on OSS, a stretch without a keyframe gets
//! none). Offering the same or an older fragment again is never due, so
//! `latest.jpg` never goes back in time. A fragment without a picture (a
//! session's first fragment can hold audio before the first keyframe) does
//! not count: the channel's next fragment is due at once.
//!
//! # What the `Snapshot` fields mean here ([`SnapshotPlan`])
//!
//! - `Interval`: seconds, 1 to 100 as on OSS.
//! - `DestBucket`: must be a bucket the key that signed the push may write
//!   (the same key stores the snapshots); checked when the channel is
//!   configured and again for each push, as keys change on reload.
//! - `RoleName`: accepted, stored, ignored. There are no RAM roles: the
//!   push's access key writes the snapshots.
//! - `NotifyTopic`: accepted, stored, ignored; **no notification is sent**.
//!   OSS publishes each snapshot's result to an MNS topic; livebucket has no
//!   message service to publish to. It is accepted rather than refused
//!   because OSS requires it (an empty `NotifyTopic` is OSS's
//!   `InvalidArgument`), so refusing it would refuse every `Snapshot` an OSS
//!   client sends. Clients learn of new snapshots by reading `latest.jpg` or
//!   listing the timestamped keys (or from the S3 server's own bucket
//!   notifications, where it has them).
//!
//! # Cost and failure
//!
//! ffmpeg runs single-threaded, one per channel at a time, and at most
//! `max_concurrent` at once ([`DEFAULT_MAX_CONCURRENT`]); a due snapshot that
//! finds its channel busy or the cap reached is skipped, not queued (the
//! next fragment brings a newer picture). A failure is logged and counted
//! (`livebucket_snapshot_failures_total`) and never retried: the next due
//! fragment tries again. Nothing here touches fragments, playlists or their
//! uploads: [`Snapshotter::offer`] opens the fragment for reading
//! (`O_NOFOLLOW`) before it returns and hands it to ffmpeg as its standard
//! input, so the pipeline may move or delete it at once.

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

use crate::channels::record::{FRAG_RANGE, Snapshot};
use crate::config::AccessKey;
use crate::layout::{latest_snapshot_key, snapshot_key, snapshot_prefix};
use crate::metrics::Metrics;
use crate::store::{
    FRAGMENT_CACHE_CONTROL, ObjectMeta, SNAPSHOT_CONTENT_TYPE, SNAPSHOT_LATEST_CACHE_CONTROL,
    Store, StoreError,
};

/// ffmpeg processes at once, across channels, unless configured otherwise.
pub const DEFAULT_MAX_CONCURRENT: usize = 2;
/// How long one ffmpeg may run before it is killed.
pub const FFMPEG_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest JPEG accepted from ffmpeg.
pub const MAX_JPEG_BYTES: usize = 16 << 20;

/// A channel's `Snapshot`, checked against the key that will write it. Kept
/// with the session's state, so a recovered session keeps taking them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotPlan {
    pub dest_bucket: String,
    /// Seconds, in [`FRAG_RANGE`].
    pub interval_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("Snapshot/DestBucket {bucket:?} is not a bucket access key {key_id:?} may write")]
    BucketNotAllowed { bucket: String, key_id: String },
    #[error("Snapshot/Interval is {0}; it must be an integer from 1 to 100")]
    Interval(u32),
}

impl SnapshotPlan {
    /// What `snapshot` asks for, if `key` may write its `DestBucket`.
    /// `RoleName` and `NotifyTopic` are ignored (see the module doc).
    pub fn new(snapshot: &Snapshot, key: &AccessKey) -> Result<SnapshotPlan, PlanError> {
        if !FRAG_RANGE.contains(&snapshot.interval) {
            return Err(PlanError::Interval(snapshot.interval));
        }
        if !key.may_write(&snapshot.dest_bucket) {
            return Err(PlanError::BucketNotAllowed {
                bucket: snapshot.dest_bucket.clone(),
                key_id: key.id.clone(),
            });
        }
        Ok(SnapshotPlan {
            dest_bucket: snapshot.dest_bucket.clone(),
            interval_secs: snapshot.interval,
        })
    }
}

/// Whether the fragment with key `fragment_ms` is due a snapshot, given the
/// channel's interval and the key of the fragment the last snapshot was
/// taken from. No I/O: see the module doc for the rule.
pub fn is_due(interval_secs: u32, last_ms: Option<u64>, fragment_ms: u64) -> bool {
    match last_ms {
        None => true,
        Some(last) => {
            fragment_ms > last
                && fragment_ms - last >= u64::from(interval_secs).saturating_mul(1000)
        }
    }
}

/// One snapshot to take.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The access key that signed the push; it writes the snapshot.
    pub key_id: String,
    /// The channel's own bucket and name.
    pub bucket: String,
    pub channel: String,
    pub plan: SnapshotPlan,
    /// The newest captured fragment of the channel's session …
    pub fragment: PathBuf,
    /// … and its object key's epoch milliseconds.
    pub fragment_ms: u64,
}

impl SnapshotRequest {
    fn prefix(&self) -> String {
        snapshot_prefix(&self.bucket, &self.channel, &self.plan.dest_bucket)
    }

    /// The timestamped key and `latest.jpg` in `plan.dest_bucket`.
    pub fn keys(&self) -> (String, String) {
        let prefix = self.prefix();
        (
            snapshot_key(&prefix, self.fragment_ms),
            latest_snapshot_key(&prefix),
        )
    }
}

/// What [`Snapshotter::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// A snapshot of this fragment is being taken.
    Started,
    NotDue,
    /// Due, but the channel's previous snapshot is still running: skipped.
    Busy,
    /// Due, but `max_concurrent` snapshots are running: skipped.
    AtCapacity,
    /// Due, but the fragment could not be opened (counted as a `fragment`
    /// failure); the channel's next fragment is due.
    NoFragment,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot open fragment {path}: {source}")]
    Fragment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run ffmpeg: {0}")]
    Spawn(std::io::Error),
    #[error("ffmpeg failed ({status}): {stderr}")]
    Ffmpeg { status: String, stderr: String },
    /// The fragment holds no video picture to take.
    #[error("the fragment has no picture")]
    NoPicture,
    #[error("ffmpeg took longer than {0:?}")]
    Timeout(Duration),
    #[error("ffmpeg's output is not a JPEG of at most {MAX_JPEG_BYTES} bytes ({0} bytes)")]
    NotJpeg(usize),
    #[error(transparent)]
    Upload(#[from] StoreError),
}

impl SnapshotError {
    /// The `reason` label of `livebucket_snapshot_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::Fragment { .. } => "fragment",
            SnapshotError::Spawn(_) | SnapshotError::Ffmpeg { .. } => "ffmpeg",
            SnapshotError::NoPicture => "no_picture",
            SnapshotError::Timeout(_) => "timeout",
            SnapshotError::NotJpeg(_) => "not_jpeg",
            SnapshotError::Upload(_) => "upload",
        }
    }
}

/// A stored snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub bucket: String,
    pub key: String,
    pub latest_key: String,
    pub size: usize,
}

#[derive(Default)]
struct ChannelState {
    last_ms: Option<u64>,
    busy: bool,
}

/// Takes snapshots in the background, bounded per channel and overall.
/// Cheap to clone; clones share their limits and state.
#[derive(Clone)]
pub struct Snapshotter {
    store: Store,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    /// The ffmpeg program; `ffmpeg` from `PATH` unless changed.
    ffmpeg: PathBuf,
    /// (bucket, channel) → last snapshot and whether one runs.
    channels: Arc<Mutex<HashMap<(String, String), ChannelState>>>,
}

impl Snapshotter {
    /// Snapshot tasks are spawned on `tracker`, so shutdown can wait for
    /// them; at most `max_concurrent` (at least 1) run at once.
    pub fn new(
        store: Store,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
        max_concurrent: usize,
    ) -> Snapshotter {
        Snapshotter {
            store,
            metrics,
            tracker,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            ffmpeg: PathBuf::from("ffmpeg"),
            channels: Arc::default(),
        }
    }

    /// Runs `program` instead of `ffmpeg` from `PATH` (an ffmpeg elsewhere;
    /// the tests' stand-ins).
    pub fn with_ffmpeg(mut self, program: impl Into<PathBuf>) -> Snapshotter {
        self.ffmpeg = program.into();
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), ChannelState>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fragment of the channel was captured: starts a snapshot of it in
    /// the background if it is due and there is room. Never waits: the
    /// fragment is opened here, before this returns (so the caller may
    /// move or delete it at once), and ffmpeg and the uploads run in a task.
    /// The outcome is logged and counted.
    pub fn offer(&self, request: SnapshotRequest) -> Offer {
        let id = (request.bucket.clone(), request.channel.clone());
        let permit = {
            let mut channels = self.lock();
            let state = channels.entry(id.clone()).or_default();
            if !is_due(
                request.plan.interval_secs,
                state.last_ms,
                request.fragment_ms,
            ) {
                return Offer::NotDue;
            }
            if state.busy {
                self.metrics
                    .inc("livebucket_snapshots_skipped_total", "busy");
                return Offer::Busy;
            }
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                self.metrics
                    .inc("livebucket_snapshots_skipped_total", "capacity");
                return Offer::AtCapacity;
            };
            state.busy = true;
            let previous = state.last_ms.replace(request.fragment_ms);
            (permit, previous)
        };
        let (permit, previous) = permit;
        let file = match open_fragment(&request.fragment) {
            Ok(file) => file,
            Err(e) => {
                if let Some(state) = self.lock().get_mut(&id) {
                    state.busy = false;
                    state.last_ms = previous;
                }
                self.metrics
                    .inc("livebucket_snapshot_failures_total", e.reason());
                warn!(bucket = %request.bucket, channel = %request.channel, error = %e, "snapshot failed");
                return Offer::NoFragment;
            }
        };
        let this = self.clone();
        let span = info_span!("snapshot", bucket = %request.bucket, channel = %request.channel, key_ms = request.fragment_ms);
        self.tracker.spawn(
            async move {
                // Frees the channel even if the task panics or is dropped.
                let _done = Done {
                    snapshotter: &this,
                    id,
                };
                match this.counted(this.take_file(&request, file).await) {
                    Ok(taken) => debug!(key = %taken.key, size = taken.size, "snapshot stored"),
                    Err(SnapshotError::NoPicture) => {
                        debug!("no picture in this fragment; the next one is due");
                        if let Some(state) = this.lock().get_mut(&_done.id) {
                            state.last_ms = previous;
                        }
                    }
                    Err(e) => warn!(error = %e, "snapshot failed"),
                }
                drop(permit);
            }
            .instrument(span),
        );
        Offer::Started
    }

    /// The channel's publisher is gone: its next push starts with a
    /// snapshot of its first fragment.
    pub fn forget(&self, bucket: &str, channel: &str) {
        let mut channels = self.lock();
        let id = (bucket.to_owned(), channel.to_owned());
        if channels.get(&id).is_some_and(|s| !s.busy) {
            channels.remove(&id);
        }
    }

    /// Takes and stores one snapshot now, whether due or not (no limits
    /// apply), counting the outcome.
    pub async fn take(&self, request: &SnapshotRequest) -> Result<Taken, SnapshotError> {
        let result = match open_fragment(&request.fragment) {
            Ok(file) => self.take_file(request, file).await,
            Err(e) => Err(e),
        };
        self.counted(result)
    }

    fn counted(&self, result: Result<Taken, SnapshotError>) -> Result<Taken, SnapshotError> {
        match &result {
            Ok(_) => self.metrics.inc("livebucket_snapshots_total", ""),
            Err(e) => self
                .metrics
                .inc("livebucket_snapshot_failures_total", e.reason()),
        }
        result
    }
}

struct Done<'a> {
    snapshotter: &'a Snapshotter,
    id: (String, String),
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.snapshotter.lock().get_mut(&self.id) {
            state.busy = false;
        }
    }
}

impl Snapshotter {
    /// JPEG of the fragment's first picture, then both objects: the
    /// timestamped one (immutable) first, so `latest.jpg` is always also
    /// stored under its own time.
    async fn take_file(
        &self,
        request: &SnapshotRequest,
        fragment: std::fs::File,
    ) -> Result<Taken, SnapshotError> {
        let jpeg = Bytes::from(jpeg_of(fragment, &self.ffmpeg).await?);
        store_jpeg(&self.store, request, jpeg).await
    }
}

async fn store_jpeg(
    store: &Store,
    request: &SnapshotRequest,
    jpeg: Bytes,
) -> Result<Taken, SnapshotError> {
    let (key, latest_key) = request.keys();
    let bucket = &request.plan.dest_bucket;
    let size = jpeg.len();
    store
        .put(
            &request.key_id,
            bucket,
            &key,
            jpeg.clone(),
            &ObjectMeta {
                content_type: SNAPSHOT_CONTENT_TYPE,
                cache_control: Some(FRAGMENT_CACHE_CONTROL),
                metadata: &[],
            },
        )
        .await?;
    store
        .put(
            &request.key_id,
            bucket,
            &latest_key,
            jpeg,
            &ObjectMeta {
                content_type: SNAPSHOT_CONTENT_TYPE,
                cache_control: Some(SNAPSHOT_LATEST_CACHE_CONTROL),
                metadata: &[],
            },
        )
        .await?;
    Ok(Taken {
        bucket: bucket.clone(),
        key,
        latest_key,
        size,
    })
}

/// Opens a fragment for ffmpeg: a regular file, not through a symbolic link.
fn open_fragment(fragment: &Path) -> Result<std::fs::File, SnapshotError> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(fragment)
        .and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(f)
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        })
        .map_err(|source| SnapshotError::Fragment {
            path: fragment.to_owned(),
            source,
        })
}

/// The first picture of an open MPEG-TS fragment as a JPEG, by `ffmpeg`.
async fn jpeg_of(fragment: std::fs::File, ffmpeg: &Path) -> Result<Vec<u8>, SnapshotError> {
    let child = tokio::process::Command::new(ffmpeg)
        .args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        .args(["-threads", "1", "-i", "pipe:0", "-an", "-sn", "-dn"])
        .args(["-frames:v", "1", "-q:v", "3", "-threads", "1"])
        .args(["-f", "image2pipe", "-c:v", "mjpeg", "pipe:1"])
        .stdin(Stdio::from(fragment))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(SnapshotError::Spawn)?;
    let output = tokio::time::timeout(FFMPEG_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| SnapshotError::Timeout(FFMPEG_TIMEOUT))?
        .map_err(SnapshotError::Spawn)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // No video to decode: ffmpeg says "Output file [#0] does not contain any
    // stream" (and fails), or encodes nothing ("Output file is empty").
    if output.stdout.is_empty()
        && (output.status.success() || stderr.contains("does not contain any stream"))
    {
        return Err(SnapshotError::NoPicture);
    }
    if !output.status.success() {
        let stderr: String = stderr.trim().chars().take(500).collect();
        return Err(SnapshotError::Ffmpeg {
            status: output.status.to_string(),
            stderr: crate::logfmt::Esc(&stderr).to_string(),
        });
    }
    let jpeg = output.stdout;
    if !is_jpeg(&jpeg) {
        return Err(SnapshotError::NotJpeg(jpeg.len()));
    }
    Ok(jpeg)
}

/// Starts with SOI and ends with EOI, within [`MAX_JPEG_BYTES`].
fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 4
        && bytes.len() <= MAX_JPEG_BYTES
        && bytes.starts_with(&[0xFF, 0xD8])
        && bytes.ends_with(&[0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::S3Config;
    use proptest::prelude::*;

    fn key(buckets: &[&str]) -> AccessKey {
        AccessKey {
            id: "GK1".into(),
            secret: "0123456789abcdef".into(),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            disabled: false,
        }
    }

    fn snapshot(dest: &str, interval: u32) -> Snapshot {
        Snapshot {
            role_name: "role".into(),
            dest_bucket: dest.into(),
            notify_topic: "topic".into(),
            interval,
        }
    }

    #[test]
    fn plan_needs_a_writable_destination() {
        assert_eq!(
            SnapshotPlan::new(&snapshot("thumbs", 5), &key(&["media", "thumbs"])),
            Ok(SnapshotPlan {
                dest_bucket: "thumbs".into(),
                interval_secs: 5
            })
        );
        assert!(SnapshotPlan::new(&snapshot("thumbs", 100), &key(&["*"])).is_ok());
        assert_eq!(
            SnapshotPlan::new(&snapshot("thumbs", 5), &key(&["media"])),
            Err(PlanError::BucketNotAllowed {
                bucket: "thumbs".into(),
                key_id: "GK1".into()
            })
        );
        for bad in [0, 101] {
            assert_eq!(
                SnapshotPlan::new(&snapshot("media", bad), &key(&["*"])),
                Err(PlanError::Interval(bad))
            );
        }
    }

    #[test]
    fn due_rule() {
        assert!(is_due(5, None, 0));
        assert!(!is_due(5, Some(1_000), 5_999));
        assert!(is_due(5, Some(1_000), 6_000));
        // The same fragment again, or an older one: never.
        assert!(!is_due(1, Some(9_000), 9_000));
        assert!(!is_due(1, Some(9_000), 1_000));
        // No overflow at the extremes.
        assert!(is_due(u32::MAX, Some(0), u64::MAX));
        assert!(!is_due(u32::MAX, Some(u64::MAX - 1), u64::MAX));
    }

    proptest! {
        /// Over any run of fragments (keys increasing, as the pipeline makes
        /// them): the first is taken, taken ones are at least the interval
        /// apart, and a skipped one is within the interval of the last taken.
        #[test]
        fn due_over_a_session(
            interval in 1u32..=100,
            gaps in prop::collection::vec(0u64..20_000, 1..200),
        ) {
            let mut at = 1_700_000_000_000u64;
            let mut last = None;
            let mut taken = Vec::new();
            for (i, gap) in gaps.iter().enumerate() {
                at += gap;
                let due = is_due(interval, last, at);
                if i == 0 {
                    prop_assert!(due);
                }
                if due {
                    taken.push(at);
                    last = Some(at);
                } else {
                    let l = last.unwrap();
                    prop_assert!(at <= l || at - l < u64::from(interval) * 1000);
                }
            }
            for w in taken.windows(2) {
                prop_assert!(w[1] - w[0] >= u64::from(interval) * 1000);
            }
        }
    }

    fn request(
        bucket: &str,
        channel: &str,
        dest: &str,
        ms: u64,
        fragment: PathBuf,
    ) -> SnapshotRequest {
        SnapshotRequest {
            key_id: "GK1".into(),
            bucket: bucket.into(),
            channel: channel.into(),
            plan: SnapshotPlan {
                dest_bucket: dest.into(),
                interval_secs: 2,
            },
            fragment,
            fragment_ms: ms,
        }
    }

    #[test]
    fn keys_of_a_request() {
        let r = request("media", "cam1", "media", 1_732_571_234_567, "x.ts".into());
        assert_eq!(
            r.keys(),
            (
                "cam1/snapshot/1732571234567.jpg".to_string(),
                "cam1/snapshot/latest.jpg".to_string()
            )
        );
        let r = request("media", "cam1", "thumbs", 7, "x.ts".into());
        assert_eq!(r.keys().1, "media/cam1/snapshot/latest.jpg");
    }

    #[test]
    fn jpeg_shape() {
        assert!(is_jpeg(&[0xFF, 0xD8, 0x00, 0xFF, 0xD9]));
        assert!(!is_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9][..3]));
        assert!(!is_jpeg(b"\x89PNG\r\n\x1a\n"));
        assert!(!is_jpeg(&[]));
    }

    #[test]
    fn fragments_that_are_not_plain_files_are_refused_before_ffmpeg() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link.ts");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        for path in [link, dir.path().to_owned(), dir.path().join("missing.ts")] {
            let err = open_fragment(&path).unwrap_err();
            assert_eq!(err.reason(), "fragment", "{}: {err}", path.display());
        }
    }

    /// A snapshotter whose "ffmpeg" is `program` (`false`: fails, `true`:
    /// succeeds and writes nothing), so no test here needs ffmpeg or S3.
    fn snapshotter(max: usize, program: &str) -> (Snapshotter, Arc<Metrics>, TaskTracker) {
        let s3 = S3Config {
            endpoint: "http://127.0.0.1:9".into(),
            region: "garage".into(),
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
        let store = Store::new(&s3, &[key(&["*"])]);
        let s = Snapshotter::new(store, metrics.clone(), tracker.clone(), max).with_ffmpeg(program);
        (s, metrics, tracker)
    }

    /// The limits, on a current-thread runtime where spawned snapshots only
    /// run once the test awaits.
    #[tokio::test]
    async fn one_per_channel_and_a_global_cap() {
        let (s, metrics, tracker) = snapshotter(2, "false");
        let dir = tempfile::tempdir().unwrap();
        let fragment = dir.path().join("1.ts");
        std::fs::write(&fragment, b"not really MPEG-TS").unwrap();
        let r = |channel: &str, ms| request("media", channel, "media", ms, fragment.clone());
        assert_eq!(s.offer(r("a", 10_000)), Offer::Started);
        assert_eq!(s.offer(r("a", 10_000)), Offer::NotDue);
        assert_eq!(s.offer(r("a", 11_000)), Offer::NotDue);
        assert_eq!(s.offer(r("a", 12_000)), Offer::Busy);
        assert_eq!(s.offer(r("b", 10_000)), Offer::Started);
        assert_eq!(s.offer(r("c", 10_000)), Offer::AtCapacity);
        assert_eq!(
            metrics.counter("livebucket_snapshots_skipped_total", "busy"),
            1
        );
        assert_eq!(
            metrics.counter("livebucket_snapshots_skipped_total", "capacity"),
            1
        );

        // The fragment was opened by offer(): deleting it now is harmless
        // (here "ffmpeg" fails anyway, with the file open as its stdin).
        std::fs::remove_file(&fragment).unwrap();
        tracker.close();
        tracker.wait().await;
        assert_eq!(
            metrics.counter("livebucket_snapshot_failures_total", "ffmpeg"),
            2
        );
        assert_eq!(metrics.counter("livebucket_snapshots_total", ""), 0);

        // A fragment that cannot be opened: counted, and the channel's clock
        // is not moved.
        assert_eq!(s.offer(r("a", 12_000)), Offer::NoFragment);
        assert_eq!(
            metrics.counter("livebucket_snapshot_failures_total", "fragment"),
            1
        );
        std::fs::write(&fragment, b"x").unwrap();
        // Done (failed): the channel is free and its clock kept the attempt.
        assert_eq!(s.offer(r("a", 11_000)), Offer::NotDue);
        assert_eq!(s.offer(r("a", 12_000)), Offer::Started);
        // A skipped channel was not marked: its next fragment is due.
        assert_eq!(s.offer(r("c", 10_500)), Offer::Started);
        // forget() does nothing while one runs, then a new push starts with
        // a snapshot.
        s.forget("media", "a");
        assert_eq!(s.offer(r("a", 12_001)), Offer::NotDue);
        tracker.wait().await;
        s.forget("media", "a");
        assert_eq!(s.offer(r("a", 12_001)), Offer::Started);
        tracker.wait().await;
    }

    /// "ffmpeg" that succeeds with no output: no picture, so the attempt does
    /// not count and the next fragment is due at once.
    #[tokio::test]
    async fn a_fragment_without_a_picture_does_not_count() {
        let (s, metrics, tracker) = snapshotter(2, "true");
        let dir = tempfile::tempdir().unwrap();
        let fragment = dir.path().join("1.ts");
        std::fs::write(&fragment, b"audio only").unwrap();
        let r = |ms| request("media", "a", "media", ms, fragment.clone());
        tracker.close();
        assert_eq!(s.offer(r(10_000)), Offer::Started);
        tracker.wait().await;
        assert_eq!(
            metrics.counter("livebucket_snapshot_failures_total", "no_picture"),
            1
        );
        assert_eq!(s.offer(r(10_001)), Offer::Started);
        tracker.wait().await;
        assert_eq!(
            metrics.counter("livebucket_snapshot_failures_total", "no_picture"),
            2
        );
    }
}
