//! The pipeline's actor: owns the [`Core`] and does its I/O. Each [`Msg`]
//! becomes a [`machine::Input`]; each [`Effect`] the core returns is carried
//! out here (a journal line, a capture, an upload, a delete, a save), and its
//! outcome goes back in as the next input, at once (depth first), so the
//! core always sees the world as it is. Opening, recovering, rescanning and
//! finishing sessions on disk is in [`sessions`].

mod sessions;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::capture::{self, Identity, capture_name, identity};
use super::handle::{LiveCache, Msg, PipelineHandle};
use super::journal::Journal;
use super::machine::disk::{CaptureStep, StepResult};
use super::machine::{
    self, CaptureOutcome, Core, CoreConfig, Effect, Input, Job, Location, Ms, Stored,
};
use super::master::{MasterWrite, Masters};
use super::upload::{FragmentFiles, Uploader, UploaderConfig};
use super::watch::FsEvent;
use super::{fence, timestamps};
use crate::clock::unix_now_ms;
use crate::config::Config;
use crate::events::Event;
use crate::layout::name_ms;
use crate::metrics::Metrics;
use crate::session::{SessionMeta, Sessions};

/// How often a live session's manifest is rewritten.
const MANIFEST_EVERY: Duration = Duration::from_secs(10);

/// How often changed channel windows are saved (`machine/save.rs` says
/// when else). Each save writes a file in `state_dir`; a restart after a
/// crash recovers a staler window by publishing again what its sessions
/// stored since, so only the save frequency is traded here.
const CHANNEL_SAVE_EVERY: Duration = Duration::from_secs(30);

/// What the pipeline shares with the HTTP side.
pub(crate) struct Shared {
    pub store: crate::store::Store,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<Sessions>,
    pub live_cache: LiveCache,
    /// Takes the channels' snapshots from captured fragments.
    pub snapshots: crate::snapshot::Snapshotter,
    /// In a cluster: asked before every playlist and manifest upload.
    pub fence: Option<Arc<dyn fence::Fence>>,
    /// LL-HLS channels' parts and playlists, shared with `/play`.
    pub ll: Arc<crate::llhls::hub::Hub>,
    /// `stream.ended` and `recording.ready` go out through it.
    pub events: crate::events::Events,
    /// Uploads parked on a final answer, by channel; shared with the OSS API.
    pub parked: super::parked::ParkedUploads,
}

pub(crate) struct Pipeline {
    core: Core,
    cfg: Arc<Config>,
    hls_dir: PathBuf,
    capture_dir: PathBuf,
    spool_dir: PathBuf,
    uploader: Uploader,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    cancel: CancellationToken,
    journals: HashMap<String, Journal>,
    unknown_dirs: HashSet<PathBuf>,
    live_cache: LiveCache,
    snapshots: crate::snapshot::Snapshotter,
    epoch: Instant,
    /// A move to the spool failed during this tick: try no more until the next.
    spool_failed: bool,
    store: crate::store::Store,
    ll: Arc<crate::llhls::hub::Hub>,
    /// Part uploads in flight, across every LL session.
    ll_uploads: Arc<tokio::sync::Semaphore>,
    /// Each LL session's follower, cancelled when the session finishes.
    followers: HashMap<String, CancellationToken>,
    events: crate::events::Events,
    /// When each push with renditions gets its master playlist.
    masters: Masters,
}

/// The most of a fragment read to probe it for the master playlist: its
/// SPS and first audio frame come first, the frame rate is measured over
/// what was read.
const PROBE_MAX_BYTES: u64 = 8 << 20;

/// Part uploads in flight at once: parts are small and latency-critical,
/// and must never take the fragment uploads' connections.
const LL_UPLOADS: usize = 8;

impl Pipeline {
    pub(crate) fn new(
        cfg: Arc<Config>,
        shared: Shared,
        handle: &PipelineHandle,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Pipeline {
        let Shared {
            store,
            metrics,
            sessions,
            live_cache,
            snapshots,
            fence,
            ll,
            events,
            parked,
        } = shared;
        let uploader = Uploader::new(
            store.clone(),
            metrics.clone(),
            UploaderConfig {
                concurrency: cfg.upload.concurrency,
                max_backoff: Duration::from_secs(cfg.upload.max_backoff_secs),
                playlist_cache_control: cfg.upload.playlist_cache_control.clone(),
                fence,
                parked,
            },
            cancel.clone(),
            tracker,
            handle.sender(),
        );
        let core = Core::new(CoreConfig {
            live: crate::hls::LiveShape {
                window_segments: cfg.live.window_segments,
                target_duration_secs: cfg.live.target_duration_secs,
            },
            done_grace_ms: cfg.live.done_grace_ms,
            idle_end_factor: u64::from(cfg.live.idle_end_factor),
            manifest_every_ms: MANIFEST_EVERY.as_millis() as u64,
            manifest_chunk: cfg.live.manifest_chunk_fragments,
            save_every_ms: CHANNEL_SAVE_EVERY.as_millis() as u64,
        });
        Pipeline {
            core,
            hls_dir: cfg.nginx.hls_dir.clone(),
            capture_dir: cfg.capture_dir(),
            spool_dir: cfg.spool_dir(),
            cfg,
            uploader,
            metrics,
            sessions,
            cancel,
            journals: HashMap::new(),
            unknown_dirs: HashSet::new(),
            live_cache,
            snapshots,
            epoch: Instant::now(),
            spool_failed: false,
            store,
            ll,
            ll_uploads: Arc::new(tokio::sync::Semaphore::new(LL_UPLOADS)),
            followers: HashMap::new(),
            events,
            masters: Masters::default(),
        }
    }

    fn now(&self) -> Ms {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Replays unfinished sessions, rescans, then handles messages until
    /// cancelled.
    pub(crate) async fn run(mut self, recovered: Vec<SessionMeta>, mut rx: UnboundedReceiver<Msg>) {
        for meta in recovered {
            self.open_session(meta, true);
        }
        self.rescan_all();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => break },
                _ = tick.tick() => Msg::Tick,
                _ = self.cancel.cancelled() => break,
            };
            self.handle(msg);
        }
        self.feed(Input::Stop);
        info!("pipeline stopped; unfinished work stays on disk for the next start");
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Fs(FsEvent::FragmentClosed(p)) => {
                if let Some(id) = self.session_of(&p) {
                    self.closed(&id, &p);
                }
            }
            Msg::Fs(FsEvent::PlaylistWritten(p)) => {
                if let Some(id) = self.session_of(&p) {
                    self.read_playlist(&id);
                }
            }
            Msg::Fs(FsEvent::DirCreated(p)) => {
                if p.parent() == Some(self.hls_dir.as_path())
                    && let Some(id) = self.session_of(&p.join("x"))
                {
                    self.rescan_dir(&id);
                }
            }
            Msg::Fs(FsEvent::Rescan) => self.rescan_all(),
            Msg::Started(meta) => self.open_session(*meta, false),
            Msg::Done(session) => {
                // Opened (so settled) first: a restart recovers the
                // session as ended. (Unless it is finished already: its
                // directory is gone and stays gone.)
                if self.open_if_approved(&session) {
                    self.sessions.end_live(&session);
                }
                let sessions = &self.sessions;
                let write = self.masters.ended(&session, |id| sessions.is_live(id));
                self.write_master(write);
                let now = self.now();
                self.feed(Input::Done { session, now });
            }
            Msg::Stored(s) => {
                if let Stored::Fragment { session, key } = &s {
                    let write = self.masters.stored(session, *key);
                    self.write_master(write);
                }
                self.feed(Input::Stored(s))
            }
            Msg::Tick => {
                self.spool_failed = false;
                self.sessions.retry_unsettled();
                let high_water = self.cfg.spool.tmpfs_high_water;
                let pressure = capture::fs_usage(&self.capture_dir).is_ok_and(|u| u >= high_water);
                let now = self.now();
                self.feed(Input::Tick { now, pressure });
            }
        }
        self.metrics.gauge_set(
            "livebucket_sessions_live",
            self.sessions.live_count() as i64,
        );
    }

    /// Hands `input` to the core and carries out what it asks, feeding each
    /// outcome back before the next effect.
    fn feed(&mut self, input: Input) {
        for effect in self.core.handle(input) {
            self.execute(effect);
        }
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Journal { session, entry } => {
                if let Some(j) = self.journals.get_mut(&session)
                    && let Err(e) = j.append(&entry)
                {
                    error!(session = %crate::session::log_tag(&session), error = %e, "cannot write journal; going on");
                }
            }
            Effect::Capture {
                session,
                name,
                key,
                ident,
                spool,
            } => {
                if let Some(ms) = name_ms(&name)
                    && let Some(s) = self.core.session(&session)
                {
                    self.ll.map(&s.channel, &session, ms, key);
                }
                let outcome = self.capture(&session, &name, key, ident, spool);
                // Head and tail of the kept file: what a fragment nginx
                // never lists gets as its duration, and whether it starts
                // with a keyframe.
                let facts = match outcome {
                    CaptureOutcome::Kept(at) => {
                        let path = self.kept_path(&session, &name, key, at);
                        if self.masters.wants_probe(&session) {
                            self.probe_for_master(&session, &path);
                        }
                        timestamps::facts(&path)
                    }
                    CaptureOutcome::Changed => timestamps::Facts::default(),
                };
                self.feed(Input::Captured {
                    session,
                    key,
                    outcome,
                    media_ms: facts.media_ms,
                    keyframe_start: facts.keyframe_start,
                });
            }
            Effect::Probe {
                session,
                names,
                entries,
            } => {
                let dir = self.hls_dir.join(&session);
                for name in names {
                    self.closed(&session, &dir.join(name));
                }
                let now = self.now();
                self.feed(Input::Playlist {
                    session,
                    entries,
                    probed: true,
                    now,
                });
            }
            Effect::Upload(job) => {
                let files = match &job {
                    Job::Fragment {
                        session,
                        key,
                        name,
                        at,
                        extinf,
                        ..
                    } => {
                        let files = self.fragment_files(session, *key, name, *at);
                        // A stat per fragment only for pushes with a master.
                        if self.masters.tracks(session) {
                            let size = std::fs::metadata(&files.file)
                                .or_else(|e| files.twin.as_ref().map_or(Err(e), std::fs::metadata));
                            if let (Ok(m), Some(ms)) = (size, crate::hls::parse_duration_ms(extinf))
                            {
                                self.masters.submitted(session, *key, m.len(), ms);
                            }
                        }
                        Some(files)
                    }
                    _ => None,
                };
                self.uploader.submit(job, files);
            }
            Effect::RemoveNginxCopy {
                session,
                name,
                ident,
            } => {
                let orig = self.hls_dir.join(&session).join(&name);
                if identity(&orig).is_ok_and(|i| i == ident) {
                    let _ = std::fs::remove_file(&orig);
                }
            }
            Effect::RemoveCapture { session, key, at } => {
                let _ = std::fs::remove_file(self.area(at).join(&session).join(capture_name(key)));
            }
            Effect::MoveToSpool { session, key } => {
                if self.spool_failed {
                    return;
                }
                let file = self.capture_dir.join(&session).join(capture_name(key));
                let ok = match capture::move_to_spool(&file, &self.spool_dir.join(&session)) {
                    Ok(_) => {
                        self.metrics.inc("livebucket_spooled_total", "");
                        true
                    }
                    Err(e) => {
                        error!(error = %e, file = %file.display(), "cannot move capture to the spool");
                        self.metrics.inc("livebucket_spool_errors_total", "");
                        self.spool_failed = true;
                        false
                    }
                };
                self.feed(Input::Moved { session, key, ok });
            }
            Effect::Snapshot {
                session,
                key,
                name,
                at,
            } => {
                if let Some(meta) = self.core.session(&session).map(|s| s.meta.clone())
                    && let Some(plan) = meta.snapshot
                {
                    // Never waits: the snapshotter opens the file before it returns.
                    self.snapshots.offer(crate::snapshot::SnapshotRequest {
                        key_id: meta.key_id,
                        bucket: meta.bucket,
                        channel: meta.channel,
                        plan,
                        fragment: self.fragment_files(&session, key, &name, at).file,
                        fragment_ms: key,
                    });
                }
            }
            Effect::SaveChannel(chid) => {
                if let Some(ch) = self.core.channel(&chid)
                    && let Err(e) = ch.save(&self.cfg.state_dir, &chid)
                {
                    warn!(channel = %chid.channel, error = %e, "cannot save channel state");
                }
            }
            Effect::CacheLive {
                channel,
                body,
                target_duration,
            } => {
                if self.ll.has(&channel)
                    && let Some(live) = self.core.channel(&channel)
                {
                    let base = crate::llhls::hub::Base::of(live, target_duration);
                    self.ll.set_base(&channel, base);
                }
                self.live_cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(channel, body);
            }
            Effect::CompactJournal { session } => {
                if let Some(entries) = self.core.journal_of(&session)
                    && let Some(j) = self.journals.get_mut(&session)
                {
                    match j.rewrite(&entries) {
                        Ok(()) => {
                            debug!(session = %crate::session::log_tag(&session), lines = entries.len(), "journal compacted")
                        }
                        Err(e) => {
                            warn!(session = %crate::session::log_tag(&session), error = %e, "cannot compact journal; it keeps growing")
                        }
                    }
                }
            }
            Effect::FinalLook { session, done } => {
                // One last look for nginx's final fragment and playlist.
                self.rescan_dir(&session);
                let now = self.now();
                self.feed(Input::EndCheck { session, done, now });
            }
            Effect::EndLive {
                session,
                done,
                fragments,
            } => {
                // A rendition's end is no stream's end: its source's says it.
                if let Some(meta) = self
                    .sessions
                    .get(&session)
                    .filter(|m| done && !m.is_rendition())
                {
                    self.events
                        .emit(Event::stream_ended(&meta, fragments, unix_now_ms())); // events:
                }
                self.sessions.end_live(&session);
                let sessions = &self.sessions;
                let write = self.masters.ended(&session, |id| sessions.is_live(id));
                self.write_master(write);
            }
            Effect::Finish {
                session, fragments, ..
            } => {
                if let Some(done) = self.followers.remove(&session) {
                    done.cancel();
                }
                // Only the source's recording is announced, and without
                // waiting for its variants: they are stored on their own.
                if let Some(meta) = self
                    .sessions
                    .get(&session)
                    .filter(|m| fragments > 0 && !m.is_rendition())
                {
                    self.events
                        .emit(Event::recording_ready(&meta, fragments, unix_now_ms())); // events:
                }
                self.finish(&session);
                let write = self.masters.finished(&session);
                self.write_master(write);
            }
            Effect::Count(name) => self.metrics.inc(name, ""),
        }
    }

    /// Probes a captured fragment for its push's master playlist (read
    /// whole, at most [`PROBE_MAX_BYTES`]; once per variant).
    fn probe_for_master(&mut self, session: &str, path: &Path) {
        use std::io::Read as _;
        let mut bytes = Vec::new();
        let read =
            std::fs::File::open(path).and_then(|f| f.take(PROBE_MAX_BYTES).read_to_end(&mut bytes));
        if let Err(e) = read {
            debug!(session = %crate::session::log_tag(session), error = %e, "cannot read a fragment to probe; the next one is tried");
            return;
        }
        match crate::master::probe::probe(&bytes) {
            Some(p) => {
                debug!(session = %crate::session::log_tag(session), codecs = %p.codecs(), "probed a fragment for the master playlist");
                let write = self.masters.probed(session, p);
                self.write_master(write);
            }
            None => {
                debug!(session = %crate::session::log_tag(session), "fragment has no H.264 SPS or ADTS header; the next one is tried")
            }
        }
    }

    /// Hands a master playlist to the uploader: the small-object path the
    /// channel's playlist takes, through the same fence in a cluster.
    fn write_master(&self, write: Option<MasterWrite>) {
        let Some(w) = write else {
            return;
        };
        info!(bucket = %w.channel.bucket, channel = %w.channel.channel, version = w.version, "master playlist due");
        self.uploader.submit(
            Job::Playlist {
                channel: w.channel,
                version: w.version,
                key_id: w.key_id,
                body: w.body,
            },
            None,
        );
    }

    fn area(&self, at: Location) -> &Path {
        match at {
            Location::Capture => &self.capture_dir,
            Location::Spool => &self.spool_dir,
            Location::Nginx => &self.hls_dir,
        }
    }

    fn fragment_files(&self, session: &str, key: u64, name: &str, at: Location) -> FragmentFiles {
        match at {
            Location::Nginx => FragmentFiles {
                file: self.hls_dir.join(session).join(name),
                twin: None,
            },
            Location::Capture | Location::Spool => {
                let other = if at == Location::Capture {
                    Location::Spool
                } else {
                    Location::Capture
                };
                FragmentFiles {
                    file: self.area(at).join(session).join(capture_name(key)),
                    twin: Some(self.area(other).join(session).join(capture_name(key))),
                }
            }
        }
    }

    /// Takes nginx's `name` into `key`'s capture file, trying each way
    /// [`machine::disk::capture_with`] says in its order.
    fn capture(
        &self,
        session: &str,
        name: &str,
        key: u64,
        closed: Identity,
        spool: bool,
    ) -> CaptureOutcome {
        let src = self.hls_dir.join(session).join(name);
        let outcome = machine::disk::capture_with(spool, |step| match step {
            CaptureStep::Move => {
                let dir = self.capture_dir.join(session);
                match capture::move_fragment(&src, &dir, key, closed) {
                    Ok(_) => {
                        debug!(session, fragment = name, key, "captured (moved)");
                        StepResult::Done
                    }
                    Err(capture::MoveError::CrossDevice) => StepResult::Failed,
                    Err(capture::MoveError::Capture(capture::CaptureError::Changed)) => {
                        StepResult::Changed
                    }
                    Err(capture::MoveError::Capture(e)) => {
                        warn!(error = %e, dir = %dir.display(), "move to capture failed; copying");
                        StepResult::Failed
                    }
                }
            }
            CaptureStep::Copy(at) => {
                let dir = self.area(at).join(session);
                match capture::copy_fragment(&src, &dir, key, at == Location::Spool) {
                    Ok(_) => {
                        debug!(session, fragment = name, key, "captured (copied)");
                        StepResult::Done
                    }
                    Err(capture::CaptureError::Changed) => StepResult::Changed,
                    Err(e) => {
                        warn!(error = %e, dir = %dir.display(), "capture failed here");
                        StepResult::Failed
                    }
                }
            }
        });
        if outcome == CaptureOutcome::Changed {
            // nginx rewrote the fragment's name after its close. Not a space
            // problem: uploading nginx's file now could store the next
            // version twice. Its own close comes next.
            warn!(
                session = %crate::session::log_tag(session),
                fragment = name,
                "fragment rewritten since its close; waiting for its next close"
            );
        }
        outcome
    }

    /// Where a capture's bytes are kept: its capture file, or nginx's own.
    fn kept_path(&self, session: &str, name: &str, key: u64, at: Location) -> PathBuf {
        match at {
            Location::Nginx => self.hls_dir.join(session).join(name),
            at => self.area(at).join(session).join(capture_name(key)),
        }
    }
}
