//! The one uploader for fragments, playlists and manifests.
//!
//! Every job is retried until it is stored or livebucket stops
//! ([`super::retry::until_stored`]): the bytes stay in their capture or
//! spool file (the queue of record) and a failing upload waits at most
//! `max_backoff` between attempts, visible in
//! `livebucket_upload_failures_total` and, by S3 code, in
//! `livebucket_s3_errors_total`. A stop cancels the wait; the file is still
//! there for the next start. This module builds each job's attempt and
//! reports what was stored back to the actor.
//!
//! A final answer (a refusal that only a change of configuration, keys or
//! bucket can fix) is logged once per distinct error as an error, and the
//! upload is parked: retried every `max_backoff`, and at once after a reload
//! ([`Store::keys_changed`]), counted in `livebucket_uploads_parked` and
//! listed by channel in [`super::parked`] (which GetLiveChannelStat shows);
//! the bytes stay on disk. Parking rather than giving up keeps every fragment;
//! waiting `max_backoff` rather than retrying fast keeps a wrong key from
//! becoming a tight loop against the store, and the reload wake-up means an
//! operator's fix takes effect without waiting out the backoff.
//!
//! A playlist or manifest write in a cluster is bounded by the fence's
//! [`Fence::write_deadline`]: its PUT is abandoned when the lease that
//! allowed it could have expired, and not started past that instant. On a
//! store with conditional PUTs a playlist write is also conditional on the
//! object being the one this node last wrote or read
//! ([`super::fenced_write`] decides the precondition and what a refusal
//! leads to; this module carries it out).
//!
//! Media and the small objects (playlists, manifests) have separate permit
//! pools, so a playlist never queues behind a backlog of fragments when S3
//! falls behind. A channel has at most one playlist upload in flight, and a
//! newer version replaces one whose PUT has not started: under overload the
//! bucket gets the newest playlist, not every version.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span};

use super::fence::{Fence, FenceVerdict};
use super::fenced_write::{AfterRefusal, Attempt, Known, after_refusal, attempt};
use super::handle::Msg;
use super::machine::{Job, Stored};
use super::parked::ParkedUploads;
use super::retry::{UploadError, until_stored};
use crate::layout::{fragment_key, playlist_key};
use crate::live::ChannelId;
use crate::metrics::Metrics;
use crate::store::{ObjectMeta, PutFileError, PutIf, Store};

/// Where a fragment job's bytes are: the file first, then its twin in the
/// other area (a capture may move to the spool while it waits).
pub(crate) struct FragmentFiles {
    pub file: PathBuf,
    pub twin: Option<PathBuf>,
}

/// The newest playlist of a channel not yet handed to a PUT.
#[derive(Default)]
struct PlaylistSlot {
    next: Option<(u64, String, String)>,
    running: bool,
}

/// Frees a channel's playlist slot if its upload task unwinds, so the next
/// version starts a new task instead of waiting on a dead one forever.
/// (A task that ends normally frees the slot itself, under the lock, as it
/// decides to end; doing it again here could free its successor's.)
struct ReleaseSlotOnPanic {
    slots: Arc<Mutex<HashMap<ChannelId, PlaylistSlot>>>,
    channel: ChannelId,
}

impl Drop for ReleaseSlotOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(channel = %self.channel.channel, "playlist upload task panicked; its slot is freed");
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.channel);
        }
    }
}

#[derive(Clone)]
pub(crate) struct Uploader {
    store: Store,
    metrics: Arc<Metrics>,
    media: Arc<Semaphore>,
    small: Arc<Semaphore>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    tx: UnboundedSender<Msg>,
    max_backoff: Duration,
    playlist_cache_control: Arc<str>,
    slots: Arc<Mutex<HashMap<ChannelId, PlaylistSlot>>>,
    /// Each channel's playlist object as this node last wrote or read it
    /// (used only for conditional writes).
    known: Arc<Mutex<HashMap<ChannelId, Known>>>,
    fence: Option<Arc<dyn Fence>>,
    /// Jobs parked on a final answer, by channel (shown by the OSS API).
    parked: ParkedUploads,
}

pub(crate) struct UploaderConfig {
    pub concurrency: usize,
    pub max_backoff: Duration,
    pub playlist_cache_control: String,
    /// In a cluster: asked before every attempt of a playlist or manifest
    /// upload (see [`super::fence`]).
    pub fence: Option<Arc<dyn Fence>>,
    /// Where parked jobs are listed by channel.
    pub parked: ParkedUploads,
}

impl Uploader {
    pub(crate) fn new(
        store: Store,
        metrics: Arc<Metrics>,
        cfg: UploaderConfig,
        cancel: CancellationToken,
        tracker: TaskTracker,
        tx: UnboundedSender<Msg>,
    ) -> Uploader {
        Uploader {
            store,
            metrics,
            media: Arc::new(Semaphore::new(cfg.concurrency)),
            small: Arc::new(Semaphore::new(cfg.concurrency)),
            cancel,
            tracker,
            tx,
            max_backoff: cfg.max_backoff,
            playlist_cache_control: cfg.playlist_cache_control.into(),
            slots: Arc::default(),
            known: Arc::default(),
            fence: cfg.fence,
            parked: cfg.parked,
        }
    }

    /// Starts `job`; its [`Stored`] report comes back as [`Msg::Stored`].
    /// `files` locates a fragment job's bytes.
    pub(crate) fn submit(&self, job: Job, files: Option<FragmentFiles>) {
        match job {
            Job::Fragment {
                session,
                key_id,
                bucket,
                channel,
                key,
                extinf,
                ..
            } => {
                let Some(files) = files else {
                    return;
                };
                let object = fragment_key(&channel, key);
                let span = info_span!("stream", session = %crate::session::log_tag(&session), channel = %channel, key = %object);
                let up = self.clone();
                self.metrics.gauge_add("livebucket_uploads_pending", 1);
                self.tracker.spawn(
                    async move {
                        let stored = up
                            .retry(&object, (&bucket, &channel), &up.media, || {
                                up.put_fragment(
                                    &files, &key_id, &bucket, &object, &extinf, &session,
                                )
                            })
                            .await;
                        up.metrics.gauge_add("livebucket_uploads_pending", -1);
                        if stored {
                            up.report(Stored::Fragment { session, key });
                        }
                    }
                    .instrument(span),
                );
            }
            Job::Manifest {
                session,
                key_id,
                bucket,
                channel,
                object,
                body,
                count,
                full,
                ended,
            } => {
                let span = info_span!("stream", session = %crate::session::log_tag(&session), key = %object);
                let up = self.clone();
                let body = Bytes::from(body);
                self.tracker.spawn(
                    async move {
                        let stored = up
                            .retry(&object, (&bucket, &channel.channel), &up.small, || async {
                                // A manifest is this session's own object:
                                // held back while the node cannot reach the
                                // coordinator, written otherwise.
                                let verdict = up.fenced(&channel).await;
                                if verdict == Some(FenceVerdict::Hold) {
                                    return Err(UploadError::Fenced(channel.channel.clone()));
                                }
                                let before = up.fenced_deadline(&channel, verdict)?;
                                up.store
                                    .put_before(
                                        &key_id,
                                        &bucket,
                                        &object,
                                        body.clone(),
                                        &ObjectMeta::JSON,
                                        before,
                                    )
                                    .await
                                    .map_err(UploadError::from)
                            })
                            .await;
                        if stored {
                            up.report(Stored::Manifest {
                                session,
                                count,
                                full,
                                ended,
                            });
                        }
                    }
                    .instrument(span),
                );
            }
            Job::Playlist {
                channel,
                version,
                key_id,
                body,
            } => self.submit_playlist(channel, version, key_id, body),
        }
    }

    fn submit_playlist(&self, channel: ChannelId, version: u64, key_id: String, body: String) {
        {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let slot = slots.entry(channel.clone()).or_default();
            slot.next = Some((version, key_id, body));
            if slot.running {
                // The running loop takes it (superseding an older one).
                return;
            }
            slot.running = true;
        }
        let object = playlist_key(&channel.channel, &channel.playlist);
        let span = info_span!("stream", bucket = %channel.bucket, channel = %channel.channel, key = %object);
        let up = self.clone();
        self.tracker.spawn(
            async move {
                let _release = ReleaseSlotOnPanic {
                    slots: up.slots.clone(),
                    channel: channel.clone(),
                };
                loop {
                    // The permit first, then the newest body: a version
                    // superseded while this waited is never sent.
                    let permit = tokio::select! {
                        p = up.small.clone().acquire_owned() => p.ok(),
                        _ = up.cancel.cancelled() => None,
                    };
                    let taken = {
                        let mut slots = up.slots.lock().unwrap_or_else(|p| p.into_inner());
                        let next = slots.get_mut(&channel).and_then(|s| s.next.take());
                        if next.is_none() || permit.is_none() {
                            slots.remove(&channel);
                        }
                        next
                    };
                    let (Some(permit), Some((version, key_id, body))) = (permit, taken) else {
                        return;
                    };
                    drop(permit);
                    let body = Bytes::from(body);
                    let meta = ObjectMeta::playlist(&up.playlist_cache_control);
                    let stored = up
                        .retry(
                            &object,
                            (&channel.bucket, &channel.channel),
                            &up.small,
                            || async {
                                // Checked before every attempt: a retry may come
                                // after this node lost the channel.
                                let verdict = up.fenced(&channel).await;
                                match verdict {
                                    Some(FenceVerdict::Hold) => {
                                        return Err(UploadError::Fenced(channel.channel.clone()));
                                    }
                                    // Another node's playlist now: this version is
                                    // done with, never written (the core may
                                    // finish its sessions; /play does not serve
                                    // this node's copy, see http::play).
                                    Some(FenceVerdict::Yield) => return Ok(()),
                                    Some(FenceVerdict::Write) | None => {}
                                }
                                let before = up.fenced_deadline(&channel, verdict)?;
                                up.put_playlist(&channel, &key_id, &object, &body, &meta, before)
                                    .await
                            },
                        )
                        .await;
                    if !stored {
                        return;
                    }
                    up.report(Stored::Playlist {
                        channel: channel.clone(),
                        version,
                    });
                }
            }
            .instrument(span),
        );
    }

    /// One PUT of `channel`'s playlist after the fence said write (or
    /// without a fence): plain, or conditional where the fence says the
    /// store has conditional writes ([`super::fenced_write`]).
    async fn put_playlist(
        &self,
        channel: &ChannelId,
        key_id: &str,
        object: &str,
        body: &Bytes,
        meta: &ObjectMeta<'_>,
        before: Option<std::time::Instant>,
    ) -> Result<(), UploadError> {
        let plain = || async {
            self.store
                .put_before(key_id, &channel.bucket, object, body.clone(), meta, before)
                .await
                .map_err(UploadError::from)
        };
        let Some(fence) = &self.fence else {
            return plain().await;
        };
        let mode = fence.conditional(key_id, &channel.bucket).await?;
        if let Some(read) = fence.take_read(channel) {
            self.set_known(channel, read);
        }
        let mut reread = false;
        loop {
            let known = self.known_of(channel);
            let condition = match attempt(mode, &known) {
                Attempt::Plain => return plain().await,
                Attempt::ReadFirst => {
                    self.read_known(channel, key_id, object).await?;
                    reread = true;
                    continue;
                }
                Attempt::If(condition) => condition,
            };
            let sent = self
                .store
                .put_if_before(
                    key_id,
                    &channel.bucket,
                    object,
                    body.clone(),
                    meta,
                    &condition,
                    before,
                )
                .await;
            match sent {
                Ok(PutIf::Stored { etag }) => {
                    self.set_known(channel, Known::stored(etag));
                    return Ok(());
                }
                // What the object is now cannot be told from a failure.
                Err(e) => {
                    self.set_known(channel, Known::Unknown);
                    return Err(e.into());
                }
                Ok(PutIf::PreconditionFailed) => {}
            }
            let verdict = fence.allow(channel).await;
            let next = after_refusal(verdict, reread);
            let label = match next {
                AfterRefusal::Drop => "drop",
                AfterRefusal::Hold => "hold",
                AfterRefusal::ReadAndRetry => "retry",
                AfterRefusal::Contended => "contended",
            };
            self.metrics
                .inc("livebucket_cluster_playlist_refusals_total", label);
            tracing::info!(
                ?condition,
                ?verdict,
                ?next,
                "conditional playlist PUT refused: the object changed since this node wrote or read it"
            );
            match next {
                AfterRefusal::Drop => {
                    self.forget_known(channel);
                    return Ok(());
                }
                AfterRefusal::Hold => {
                    return Err(UploadError::Fenced(channel.channel.clone()));
                }
                AfterRefusal::Contended => {
                    self.set_known(channel, Known::Unknown);
                    return Err(UploadError::Contended(channel.channel.clone()));
                }
                AfterRefusal::ReadAndRetry => {
                    // The retry keeps the deadline of the fence check that
                    // allowed the first PUT.
                    if before.is_some_and(|b| b <= std::time::Instant::now()) {
                        return Err(UploadError::Fenced(channel.channel.clone()));
                    }
                    self.read_known(channel, key_id, object).await?;
                    reread = true;
                }
            }
        }
    }

    /// Reads what the playlist object is now into [`Uploader::known`].
    async fn read_known(
        &self,
        channel: &ChannelId,
        key_id: &str,
        object: &str,
    ) -> Result<(), UploadError> {
        let read = self
            .store
            .get_versioned(key_id, &channel.bucket, object)
            .await;
        let known = Known::read(read)?;
        self.set_known(channel, known);
        Ok(())
    }

    fn known_of(&self, channel: &ChannelId) -> Known {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.get(channel).cloned().unwrap_or_default()
    }

    fn set_known(&self, channel: &ChannelId, k: Known) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(channel.clone(), k);
    }

    fn forget_known(&self, channel: &ChannelId) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.remove(channel);
    }

    /// The fence's verdict for a write of `channel`'s objects; `None`
    /// without a fence (a single node).
    async fn fenced(&self, channel: &ChannelId) -> Option<FenceVerdict> {
        let verdict = self.fence.as_ref()?.allow(channel).await;
        if verdict != FenceVerdict::Write {
            tracing::debug!(channel = %channel.channel, ?verdict, "fenced");
        }
        Some(verdict)
    }

    /// After a [`FenceVerdict::Write`]: the instant the write must land by
    /// ([`Fence::write_deadline`]); an error (held back) when that is
    /// already past, `None` without a bound.
    fn fenced_deadline(
        &self,
        channel: &ChannelId,
        verdict: Option<FenceVerdict>,
    ) -> Result<Option<std::time::Instant>, UploadError> {
        if verdict != Some(FenceVerdict::Write) {
            return Ok(None);
        }
        match self.fence.as_ref().and_then(|f| f.write_deadline()) {
            Some(d) if d <= std::time::Instant::now() => {
                Err(UploadError::Fenced(channel.channel.clone()))
            }
            d => Ok(d),
        }
    }

    /// [`until_stored`], with the job listed in [`Uploader::parked`] under
    /// `(bucket, channel)` while its last attempt got a final answer.
    async fn retry<F, Fut>(
        &self,
        what: &str,
        (bucket, channel): (&str, &str),
        permits: &Arc<Semaphore>,
        mut attempt: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), UploadError>>,
    {
        let parked = self.parked.job(bucket, channel);
        until_stored(
            what,
            permits,
            &self.cancel,
            &self.metrics,
            self.max_backoff,
            self.store.keys_changed(),
            || {
                let sent = attempt();
                let parked = &parked;
                async move {
                    let result = sent.await;
                    let code = result.as_ref().err().and_then(UploadError::parked_code);
                    parked.note(code.as_deref());
                    result
                }
            },
        )
        .await
        .is_some()
    }

    async fn put_fragment(
        &self,
        files: &FragmentFiles,
        key_id: &str,
        bucket: &str,
        object: &str,
        extinf: &str,
        session: &str,
    ) -> Result<(), UploadError> {
        // The capture may have moved to the spool since the job was made.
        let path = match &files.twin {
            Some(twin) if !files.file.exists() => twin,
            _ => &files.file,
        };
        // The recording id, not the session id: that one names the
        // session's stream in nginx's internal application.
        let recording = crate::session::recording_id(session);
        let metadata = [("extinf", extinf), ("session", recording.as_str())];
        self.store
            .put_file(
                key_id,
                bucket,
                object,
                path,
                &ObjectMeta::fragment(&metadata),
            )
            .await
            .map_err(|e| match e {
                PutFileError::Read(source) => UploadError::Read {
                    path: path.clone(),
                    source,
                },
                PutFileError::Store(e) => UploadError::Store(e),
            })
    }

    fn report(&self, stored: Stored) {
        let _ = self.tx.send(Msg::Stored(stored));
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use super::*;

    /// A playlist task that unwinds frees its channel's slot; one that ends
    /// normally leaves the slot to whoever holds it now.
    #[test]
    fn a_panicked_playlist_task_frees_its_slot() {
        let slots: Arc<Mutex<HashMap<ChannelId, PlaylistSlot>>> = Arc::default();
        let channel = ChannelId {
            bucket: "b".into(),
            channel: "cam".into(),
            playlist: "index.m3u8".into(),
        };
        let running = || {
            slots.lock().unwrap().insert(
                channel.clone(),
                PlaylistSlot {
                    next: None,
                    running: true,
                },
            );
        };
        running();
        drop(ReleaseSlotOnPanic {
            slots: slots.clone(),
            channel: channel.clone(),
        });
        assert!(slots.lock().unwrap().contains_key(&channel));
        let guard = ReleaseSlotOnPanic {
            slots: slots.clone(),
            channel: channel.clone(),
        };
        let unwound = std::panic::catch_unwind(AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("the task panics");
        }));
        assert!(unwound.is_err());
        assert!(!slots.lock().unwrap().contains_key(&channel));
    }
}
