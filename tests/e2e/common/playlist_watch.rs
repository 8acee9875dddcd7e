//! Polls a channel's live playlist in the bucket while a test runs and checks
//! every version it sees, as a viewer would meet it:
//! - it is a valid RFC 8216 media playlist (`hlscheck::check_playlist`);
//! - each segment URI is `<13-digit epoch ms>.ts`, relative, and the keys
//!   strictly increase in playlist order;
//! - every segment it lists is in a bucket listing made after reading it;
//! - it is a valid reload of the previous version (`hlscheck::check_reload`).
//!   After `#EXT-X-ENDLIST` a new session may reopen the playlist: that
//!   version must then be a valid reload of the ended one as if it had not
//!   ended (same segments, same numbering, only new ones at the tail), and
//!   its first new segment must carry `#EXT-X-DISCONTINUITY`.
//!
//! Polls that fail (S3 down) are counted, not errors. Violations are
//! collected and reported all at once by [`PlaylistWatch::finish`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::DisplayErrorContext;

use super::hlscheck::{CheckedPlaylist, check_playlist, check_reload};
use super::s3::S3;

/// How often the playlist is read.
const POLL: Duration = Duration::from_millis(250);
/// How long one poll may wait for an answer before it counts as failed.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// One distinct playlist text seen in the bucket.
#[derive(Debug, Clone)]
pub struct Version {
    pub text: String,
    pub playlist: CheckedPlaylist,
    /// Object keys of its segments, in playlist order.
    pub keys: Vec<String>,
    pub seen_at: Instant,
}

#[derive(Debug, Default)]
pub struct Observed {
    pub versions: Vec<Version>,
    pub violations: Vec<String>,
    /// Polls where S3 did not answer.
    pub failed_polls: u32,
}

impl Observed {
    pub fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// Every key any version listed.
    pub fn all_keys(&self) -> BTreeSet<String> {
        self.versions
            .iter()
            .flat_map(|v| v.keys.iter().cloned())
            .collect()
    }
}

pub struct PlaylistWatch {
    pub playlist_key: String,
    observed: Arc<Mutex<Observed>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PlaylistWatch {
    /// Starts polling `bucket/channel/index.m3u8`. Needs a multi-threaded
    /// runtime to keep polling while the test blocks.
    pub fn start(s3: &S3, bucket: &str, channel: &str) -> PlaylistWatch {
        let observed: Arc<Mutex<Observed>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let playlist_key = format!("{channel}/index.m3u8");
        let task = tokio::spawn(poll_loop(
            s3.clone(),
            bucket.to_owned(),
            channel.to_owned(),
            playlist_key.clone(),
            observed.clone(),
            stop.clone(),
        ));
        PlaylistWatch {
            playlist_key,
            observed,
            stop,
            task: Some(task),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest version seen so far.
    pub fn latest(&self) -> Option<Version> {
        self.lock().latest().cloned()
    }

    /// Waits until the newest version satisfies `ready` (which says what is
    /// still missing otherwise) and returns it. Panics early on a violation.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Version) -> Result<(), String>,
    ) -> Version {
        super::wait_until(
            &format!("s3 {}: {what}", self.playlist_key),
            timeout,
            Duration::from_millis(100),
            async || {
                let observed = self.lock();
                assert!(
                    observed.violations.is_empty(),
                    "a version of {} broke the rules:\n{}",
                    self.playlist_key,
                    observed.violations.join("\n\n")
                );
                let Some(latest) = observed.latest() else {
                    return Err("no playlist yet".to_owned());
                };
                ready(latest).map_err(|why| format!("{why}; newest version:\n{}", latest.text))?;
                Ok(latest.clone())
            },
        )
        .await
    }

    /// Stops polling (after one last poll) and returns everything seen;
    /// panics listing every violation, if any.
    pub async fn finish(mut self) -> Observed {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.await.expect("the playlist poller panicked");
        }
        let observed = std::mem::take(&mut *self.lock());
        assert!(
            observed.violations.is_empty(),
            "{} version(s) of {} broke the rules:\n{}",
            observed.violations.len(),
            self.playlist_key,
            observed.violations.join("\n\n")
        );
        assert!(
            !observed.versions.is_empty(),
            "no version of {} was ever seen",
            self.playlist_key
        );
        observed
    }
}

/// A [`PlaylistWatch::wait_for`] check: the playlist has `#EXT-X-ENDLIST`.
pub fn ended(v: &Version) -> Result<(), String> {
    if v.playlist.ended {
        Ok(())
    } else {
        Err("no #EXT-X-ENDLIST yet".into())
    }
}

impl Drop for PlaylistWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn poll_loop(
    s3: S3,
    bucket: String,
    channel: String,
    playlist_key: String,
    observed: Arc<Mutex<Observed>>,
    stop: Arc<AtomicBool>,
) {
    loop {
        // Read the flag first: a stop request still gets one full poll.
        let last = stop.load(Ordering::SeqCst);
        // A frozen store (RGW under SIGSTOP) accepts and never answers: a
        // poll without an answer in time counts as failed, like a refusal.
        let poll = poll_once(&s3, &bucket, &channel, &playlist_key, &observed);
        let result = tokio::time::timeout(POLL_TIMEOUT, poll).await;
        if !matches!(result, Ok(Ok(()))) {
            observed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .failed_polls += 1;
        }
        if last {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One poll: `Err` when S3 did not answer.
async fn poll_once(
    s3: &S3,
    bucket: &str,
    channel: &str,
    playlist_key: &str,
    observed: &Mutex<Observed>,
) -> Result<(), String> {
    let text = match s3
        .client()
        .get_object()
        .bucket(bucket)
        .key(playlist_key)
        .send()
        .await
    {
        Ok(out) => out
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes(),
        Err(e) => {
            if e.as_service_error().is_some_and(|se| se.is_no_such_key()) {
                return Ok(());
            }
            return Err(DisplayErrorContext(e).to_string());
        }
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let seen_at = Instant::now();
    {
        let obs = observed.lock().unwrap_or_else(|p| p.into_inner());
        if obs.latest().is_some_and(|v| v.text == text) {
            return Ok(());
        }
    }
    // Listed after the read: whatever the playlist names must be in it
    // (objects are never deleted in these tests).
    let listing = s3.try_list(bucket, &format!("{channel}/")).await?;
    let stored: BTreeSet<&str> = listing.iter().map(|(k, _)| k.as_str()).collect();

    let mut obs = observed.lock().unwrap_or_else(|p| p.into_inner());
    let n = obs.versions.len() + 1;
    let mut errs = Vec::new();
    let playlist = match check_playlist(&text) {
        Ok(p) => p,
        Err(violations) => {
            obs.violations
                .push(format!("version {n} is not valid:\n{violations}\n{text}"));
            return Ok(());
        }
    };
    let mut keys = Vec::new();
    let mut prev_ms = None;
    for uri in &playlist.uris {
        let ms = uri
            .strip_suffix(".ts")
            .filter(|d| d.len() == 13 && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok());
        match ms {
            Some(ms) => {
                if prev_ms.is_some_and(|p| ms <= p) {
                    errs.push(format!("{uri} does not come after the key before it"));
                }
                prev_ms = Some(ms);
            }
            None => errs.push(format!("{uri:?} is not a relative <13-digit epoch ms>.ts")),
        }
        let key = format!("{channel}/{uri}");
        if !stored.contains(key.as_str()) {
            errs.push(format!("lists {key}, which is not in the bucket"));
        }
        keys.push(key);
    }
    if let Some(prev) = obs.latest() {
        let before = CheckedPlaylist {
            ended: false,
            ..prev.playlist.clone()
        };
        if let Err(e) = check_reload(&before, &playlist) {
            errs.push(format!(
                "not a valid reload of version {}{}:\n{e}\nprevious:\n{}",
                n - 1,
                if prev.playlist.ended {
                    " (reopened after ENDLIST)"
                } else {
                    ""
                },
                prev.text
            ));
        }
    }
    if let Some(prev) = obs.latest().filter(|v| v.playlist.ended) {
        // A playlist reopened after ENDLIST belongs to a new session (or a
        // session resuming after idle end): its first new segment says so.
        let prev_end = prev.playlist.media_sequence + prev.playlist.uris.len() as u64;
        let first_new = prev_end.checked_sub(playlist.media_sequence);
        if let Some(i) = first_new.map(|i| i as usize).filter(|&i| i < keys.len())
            && !playlist.discontinuity_flags[i]
        {
            errs.push(format!(
                "reopened after ENDLIST without #EXT-X-DISCONTINUITY before {}",
                keys[i]
            ));
        }
    }
    if !errs.is_empty() {
        obs.violations
            .push(format!("version {n}:\n{}\n{text}", errs.join("\n")));
    }
    obs.versions.push(Version {
        text,
        playlist,
        keys,
        seen_at,
    });
    Ok(())
}
