//! The fragment pipeline: nginx's HLS directory → capture → S3, then the
//! channel's playlist.
//!
//! The decisions are in [`machine`], a state machine with no I/O; this module is
//! the actor that owns it and does its I/O. The watcher, the HTTP hooks and
//! finished uploads send [`Msg`]s; each becomes a [`machine::Input`]; each
//! [`machine::Effect`] the core returns is carried out here (a journal line, a
//! capture copy, an upload, a delete), and its outcome goes back in as the
//! next input, at once (depth first), so the core always sees the world as
//! it is.
//!
//! For each approved session (directory `<hls_dir>/<session id>/`):
//! 1. IN_CLOSE_WRITE of `NAME.ts` → the bytes are copied to a capture file
//!    under a fresh object key (journal first, then the copy);
//! 2. the playlist rename → nginx's new entries are matched, in order, to
//!    captures of the same name; each gets its duration and is uploaded;
//! 3. a stored fragment joins the channel window once every earlier fragment
//!    of the session is stored; then the channel's playlist is uploaded. So a
//!    playlist never lists an object that is not in the bucket;
//! 4. `on_publish_done` (plus a grace period for nginx's last fragment), or no
//!    new fragment for a while, ends the session: the playlist gets
//!    `#EXT-X-ENDLIST`, then local files and session state are removed.
//!
//! On start, journals and capture files of unfinished sessions are replayed
//! ([`recovery`]) and every session directory is rescanned, so a crash loses
//! nothing that reached the disk.

pub mod capture;
pub mod fence;
pub mod fenced_write;
pub mod journal;
pub mod live;
pub mod machine;
pub mod parked;
pub mod recovery;
pub mod timestamps;
pub mod upload;
pub mod watch;

#[cfg(test)]
mod actor_tests;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::clock::unix_now_ms;
use crate::config::Config;
use crate::events::Event;
use crate::metrics::Metrics;
use crate::session::{SessionMeta, Sessions, looks_like_id};
use capture::{Identity, capture_name, identity, name_ms};
use journal::Journal;
use live::{ChannelId, ChannelLive};
use machine::{CaptureOutcome, Core, CoreConfig, Effect, Input, Job, Location, Ms, Stored};
use upload::{FragmentFiles, Uploader, UploaderConfig};
use watch::FsEvent;

pub enum Msg {
    Fs(FsEvent),
    /// `on_publish` approved a session.
    Started(Box<SessionMeta>),
    /// `on_publish_done` for a session.
    Done(String),
    /// An upload finished.
    Stored(Stored),
    Tick,
}

impl From<FsEvent> for Msg {
    fn from(e: FsEvent) -> Msg {
        Msg::Fs(e)
    }
}

/// The sending side, held by the HTTP hooks.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: UnboundedSender<Msg>,
}

impl PipelineHandle {
    pub fn started(&self, meta: SessionMeta) {
        let _ = self.tx.send(Msg::Started(Box::new(meta)));
    }
    pub fn done(&self, id: &str) {
        let _ = self.tx.send(Msg::Done(id.to_owned()));
    }
    pub fn sender(&self) -> UnboundedSender<Msg> {
        self.tx.clone()
    }
}

/// The newest stored live playlist of each channel, so `/play` can answer
/// without a round trip to S3.
pub type LiveCache = Arc<std::sync::RwLock<HashMap<ChannelId, String>>>;

pub fn channel() -> (PipelineHandle, UnboundedReceiver<Msg>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (PipelineHandle { tx }, rx)
}

/// How often a live session's manifest is rewritten.
const MANIFEST_EVERY: Duration = Duration::from_secs(10);

/// How often changed channel windows are saved. Each save creates a file in
/// `state_dir`, and at 100 channels saving every 5 s was still 9 % of
/// livebucket's CPU (mostly ext4 allocating inodes). A restart after a crash
/// recovers a staler window by publishing again what its sessions stored
/// since (see `recovery`; their journals keep it, and a journal is never
/// compacted or removed before the window is saved), so only the save
/// frequency is traded here.
const CHANNEL_SAVE_EVERY: Duration = Duration::from_secs(30);

/// What the pipeline shares with the HTTP side.
pub struct Shared {
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
    pub parked: parked::ParkedUploads,
}

pub struct Pipeline {
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
    /// Channels whose window changed since it was last saved.
    unsaved: HashSet<ChannelId>,
    last_save: Instant,
    store: crate::store::Store,
    ll: Arc<crate::llhls::hub::Hub>,
    /// Part uploads in flight, across every LL session.
    ll_uploads: Arc<tokio::sync::Semaphore>,
    /// Each LL session's follower, cancelled when the session finishes.
    followers: HashMap<String, CancellationToken>,
    events: crate::events::Events,
}

/// Part uploads in flight at once: parts are small and latency-critical,
/// and must never take the fragment uploads' connections.
const LL_UPLOADS: usize = 8;

impl Pipeline {
    pub fn new(
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
            live: crate::session::LiveShape {
                window_segments: cfg.live.window_segments,
                target_duration_secs: cfg.live.target_duration_secs,
            },
            done_grace_ms: cfg.live.done_grace_ms,
            idle_end_factor: u64::from(cfg.live.idle_end_factor),
            manifest_every_ms: MANIFEST_EVERY.as_millis() as u64,
            manifest_chunk: cfg.live.manifest_chunk_fragments,
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
            unsaved: HashSet::new(),
            last_save: Instant::now(),
            store,
            ll,
            ll_uploads: Arc::new(tokio::sync::Semaphore::new(LL_UPLOADS)),
            followers: HashMap::new(),
            events,
        }
    }

    fn now(&self) -> Ms {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Replays unfinished sessions, rescans, then handles messages until
    /// cancelled.
    pub async fn run(mut self, recovered: Vec<SessionMeta>, mut rx: UnboundedReceiver<Msg>) {
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
        self.save_channels();
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
                let now = self.now();
                self.feed(Input::Done { session, now });
            }
            Msg::Stored(s) => self.feed(Input::Stored(s)),
            Msg::Tick => {
                self.spool_failed = false;
                self.sessions.retry_unsettled();
                let high_water = self.cfg.spool.tmpfs_high_water;
                let pressure = capture::fs_usage(&self.capture_dir).is_ok_and(|u| u >= high_water);
                let now = self.now();
                self.feed(Input::Tick { now, pressure });
                if self.last_save.elapsed() >= CHANNEL_SAVE_EVERY {
                    self.save_channels();
                }
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
                        timestamps::facts(&self.kept_path(&session, &name, key, at))
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
                        ..
                    } => Some(self.fragment_files(session, *key, name, *at)),
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
                self.unsaved.insert(chid);
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
                // The journal is about to forget fragments that only the
                // channel's saved window then vouches for: save it first.
                if let Some(s) = self.core.session(&session) {
                    self.unsaved.insert(s.channel.clone());
                    self.save_channels();
                }
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
                if let Some(meta) = self.sessions.get(&session).filter(|_| done) {
                    self.events
                        .emit(Event::stream_ended(&meta, fragments, unix_now_ms())); // events:
                }
                self.sessions.end_live(&session);
            }
            Effect::Finish {
                session,
                channel,
                fragments,
            } => {
                if let Some(done) = self.followers.remove(&session) {
                    done.cancel();
                }
                if let Some(meta) = self.sessions.get(&session).filter(|_| fragments > 0) {
                    self.events
                        .emit(Event::recording_ready(&meta, fragments, unix_now_ms())); // events:
                }
                self.unsaved.insert(channel);
                self.save_channels();
                self.finish(&session);
            }
            Effect::Count(name) => self.metrics.inc(name, ""),
        }
    }

    fn save_channels(&mut self) {
        self.last_save = Instant::now();
        for chid in std::mem::take(&mut self.unsaved) {
            if let Some(ch) = self.core.channel(&chid)
                && let Err(e) = ch.save(&self.cfg.state_dir, &chid)
            {
                warn!(channel = %chid.channel, error = %e, "cannot save channel state");
            }
        }
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

    /// Takes nginx's `name` into `key`'s capture file: renamed into the
    /// capture area when it shares nginx's filesystem, else copied to the
    /// preferred area first, then the other; nginx's own file if both fail.
    fn capture(
        &self,
        session: &str,
        name: &str,
        key: u64,
        closed: Identity,
        spool: bool,
    ) -> CaptureOutcome {
        let src = self.hls_dir.join(session).join(name);
        if !spool {
            let dir = self.capture_dir.join(session);
            match capture::move_fragment(&src, &dir, key, closed) {
                Ok(_) => {
                    debug!(session, fragment = name, key, "captured (moved)");
                    return CaptureOutcome::Kept(Location::Capture);
                }
                Err(capture::MoveError::CrossDevice) => {}
                Err(capture::MoveError::Capture(capture::CaptureError::Changed)) => {
                    return rewritten(session, name);
                }
                Err(capture::MoveError::Capture(e)) => {
                    warn!(error = %e, dir = %dir.display(), "move to capture failed; copying")
                }
            }
        }
        for at in recovery::candidates(spool) {
            let dir = self.area(at).join(session);
            match capture::copy_fragment(&src, &dir, key, at == Location::Spool) {
                Ok(_) => {
                    debug!(session, fragment = name, key, "captured (copied)");
                    return CaptureOutcome::Kept(at);
                }
                Err(capture::CaptureError::Changed) => return rewritten(session, name),
                Err(e) => warn!(error = %e, dir = %dir.display(), "capture failed here"),
            }
        }
        CaptureOutcome::Kept(Location::Nginx)
    }

    /// Where a capture's bytes are kept: its capture file, or nginx's own.
    fn kept_path(&self, session: &str, name: &str, key: u64, at: Location) -> PathBuf {
        match at {
            Location::Nginx => self.hls_dir.join(session).join(name),
            at => self.area(at).join(session).join(capture_name(key)),
        }
    }

    /// The approved session a path under the HLS directory belongs to.
    fn session_of(&mut self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.hls_dir).ok()?;
        let mut comps = rel.components();
        let dir = comps.next()?.as_os_str().to_str()?.to_owned();
        comps.next()?;
        if comps.next().is_some() {
            return None;
        }
        if looks_like_id(&dir) && self.open_if_approved(&dir) {
            return Some(dir);
        }
        let d = self.hls_dir.join(&dir);
        if self.unknown_dirs.insert(d.clone()) {
            // Media from a publisher on_publish never approved (or a session
            // already finished): never uploaded.
            warn!(dir = %d.display(), "ignoring HLS directory of no approved session");
            self.metrics.inc("livebucket_unknown_dirs_total", "");
        }
        None
    }

    /// Whether the session is open, opening it if it was approved and not
    /// yet opened: `on_publish` sends Started after it answered, so nginx's
    /// first file, or even the publisher's end, may come first.
    fn open_if_approved(&mut self, id: &str) -> bool {
        if self.core.has_session(id) {
            return true;
        }
        let Some(meta) = self.sessions.get(id) else {
            return false;
        };
        self.open_session(meta, false);
        self.core.has_session(id)
    }

    fn open_session(&mut self, meta: SessionMeta, recovering: bool) {
        if self.core.has_session(&meta.id) {
            return;
        }
        // A new session's record is on the capture file system only;
        // recovered ones were settled when the sessions were read.
        if !recovering && let Err(e) = self.sessions.settle(&meta) {
            error!(session = %crate::session::log_tag(&meta.id), error = %e, "cannot write the session's state; new pushes are refused until it works");
        }
        let journal_path = self.sessions.session_dir(&meta.id).join("journal");
        let (journal, entries) = match Journal::open(&journal_path) {
            Ok(j) => j,
            Err(e) => {
                error!(session = %crate::session::log_tag(&meta.id), error = %e, path = %journal_path.display(), "cannot open session journal; session not uploaded");
                return;
            }
        };
        self.journals.insert(meta.id.clone(), journal);
        let chid = ChannelId {
            bucket: meta.bucket.clone(),
            channel: meta.channel.clone(),
            playlist: meta.playlist.clone(),
        };
        if !self.core.has_channel(&chid) {
            let saved = ChannelLive::load(&self.cfg.state_dir, &chid);
            self.core.load_channel(chid.clone(), saved);
        }
        let id = meta.id.clone();
        let now = self.now();
        self.follow_parts(&meta, &chid, &entries);
        if recovering {
            let files = self.capture_files(&id, &entries);
            let media = files
                .iter()
                .filter_map(|(&key, &at)| {
                    let path = self.area(at).join(&id).join(capture_name(key));
                    timestamps::media_ms(&path).map(|ms| (key, ms))
                })
                .collect();
            let live = self.sessions.is_live(&id);
            self.feed(Input::Recover {
                meta,
                entries,
                files,
                media,
                live,
                now,
            });
            // (Recovered sessions are rescanned together, right after.)
        } else {
            self.feed(Input::Open { meta, now });
            self.rescan_dir(&id);
        }
    }

    /// Starts cutting LL-HLS parts for a session on a channel with low
    /// latency on. A recovered session's captures are mapped first, so
    /// the fragment it is writing is numbered after the stored ones.
    fn follow_parts(&mut self, meta: &SessionMeta, chid: &ChannelId, entries: &[journal::Entry]) {
        let Some(part_target_ms) = meta.low_latency_or(&self.cfg.live) else {
            return;
        };
        // A recovered session that has ended gets one too: it finds nothing
        // open to cut, and deletes what parts the crash left at its finish.
        if self.followers.contains_key(&meta.id) {
            return;
        }
        let target = meta.shape_or(&self.cfg.live).target_duration_secs;
        let base = self
            .core
            .channel(chid)
            .filter(|l| l.stored_version == l.version)
            .map(|l| crate::llhls::hub::Base::of(l, target));
        self.ll.register(chid, &meta.id, part_target_ms, base);
        for e in entries {
            if let journal::Entry::Captured { name, key, .. } = e
                && let Some(ms) = name_ms(name)
            {
                self.ll.map(chid, &meta.id, ms, *key);
            }
        }
        let done = self.cancel.child_token();
        self.followers.insert(meta.id.clone(), done.clone());
        let follow = crate::llhls::follow::Follow {
            hub: self.ll.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            chid: chid.clone(),
            session: meta.id.clone(),
            key_id: meta.key_id.clone(),
            dir: self.hls_dir.join(&meta.id),
            part_target_ms,
            uploads: self.ll_uploads.clone(),
            done,
            shutdown: self.cancel.clone(),
        };
        tokio::spawn(follow.run());
    }

    /// Which journaled captures have a file, and where. A fragment caught
    /// by a crash halfway through its move is finished moving here, if it is
    /// still the version the journal recorded.
    fn capture_files(&self, id: &str, entries: &[journal::Entry]) -> HashMap<u64, Location> {
        entries
            .iter()
            .filter_map(|e| match e {
                journal::Entry::Captured {
                    key,
                    spool,
                    size,
                    mtime_ns,
                    ..
                } => Some((
                    *key,
                    *spool,
                    Identity {
                        size: *size,
                        mtime_ns: *mtime_ns,
                    },
                )),
                _ => None,
            })
            .filter_map(|(key, spool, closed)| {
                let found = recovery::candidates(spool)
                    .into_iter()
                    .find(|&at| self.area(at).join(id).join(capture_name(key)).exists());
                found
                    .or_else(|| {
                        capture::finish_move(&self.capture_dir.join(id), key, closed)
                            .then_some(Location::Capture)
                    })
                    .map(|at| (key, at))
            })
            .collect()
    }

    fn rescan_all(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.hls_dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(id) = self.session_of(&e.path().join("x")) {
                self.rescan_dir(&id);
            }
        }
    }

    /// Catches up with a session directory: captures every closed fragment
    /// not yet captured and reads the playlist.
    fn rescan_dir(&mut self, id: &str) {
        if !self.core.has_session(id) {
            return;
        }
        let dir = self.hls_dir.join(id);
        let entries = self.nginx_playlist(id).unwrap_or_default();
        let max_listed = entries.iter().filter_map(|e| name_ms(&e.uri)).max();
        let live = self.sessions.is_live(id);
        let mut names: Vec<(u64, String)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|n| name_ms(&n).map(|ms| (ms, n)))
            .collect();
        names.sort();
        for (ms, name) in names {
            // The newest unlisted fragment of a live session is still being
            // written; its IN_CLOSE_WRITE will come.
            let closed = entries.iter().any(|e| e.uri == name)
                || max_listed.is_some_and(|m| ms < m)
                || !live;
            if closed {
                self.closed(id, &dir.join(&name));
            }
        }
        if dir.join("index.m3u8").exists() {
            self.read_playlist(id);
        }
    }

    /// nginx closed a fragment: the core decides whether and where to
    /// capture it.
    fn closed(&mut self, id: &str, path: &Path) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            return;
        };
        let ident = match identity(path) {
            Ok(i) => i,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    warn!(session = %crate::session::log_tag(id), error = %e, "not captured");
                }
                return;
            }
        };
        let high_water = self.cfg.spool.tmpfs_high_water;
        let spool = capture::fs_usage(&self.capture_dir)
            .or_else(|_| capture::fs_usage(&self.hls_dir))
            .is_ok_and(|u| u >= high_water);
        let now = self.now();
        self.feed(Input::Closed {
            session: id.to_owned(),
            name,
            ident,
            spool,
            wall_ms: crate::clock::unix_now_ms(),
            now,
        });
    }

    fn nginx_playlist(&self, id: &str) -> Option<Vec<crate::hls::NginxEntry>> {
        let path = self.hls_dir.join(id).join("index.m3u8");
        let (bytes, _) = capture::read_nofollow(&path).ok()?;
        match crate::hls::parse_nginx(&bytes) {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unparsable nginx playlist");
                None
            }
        }
    }

    fn read_playlist(&mut self, id: &str) {
        if let Some(entries) = self.nginx_playlist(id) {
            let now = self.now();
            self.feed(Input::Playlist {
                session: id.to_owned(),
                entries,
                probed: false,
                now,
            });
        }
    }

    /// Everything of the session is stored and its playlist ended: remove its
    /// local files and state.
    fn finish(&mut self, id: &str) {
        self.journals.remove(id);
        let _ = std::fs::remove_dir_all(self.hls_dir.join(id));
        let _ = std::fs::remove_dir_all(self.capture_dir.join(id));
        let _ = std::fs::remove_dir_all(self.spool_dir.join(id));
        self.unknown_dirs.remove(&self.hls_dir.join(id));
        if let Some(meta) = self.sessions.get(id) {
            self.snapshots.forget(&meta.bucket, &meta.channel);
        }
        self.sessions.finish(id);
    }
}

/// nginx rewrote a fragment's name after its close. Not a space problem:
/// uploading nginx's file now could store the next version twice. Its own
/// close comes next.
fn rewritten(session: &str, name: &str) -> CaptureOutcome {
    warn!(
        session = %crate::session::log_tag(session),
        fragment = name,
        "fragment rewritten since its close; waiting for its next close"
    );
    CaptureOutcome::Changed
}

impl SessionMeta {
    /// The part target (ms) of this push's LL-HLS parts, or `None` when
    /// low latency is off: as its channel's `Target/LowLatency` says, else
    /// as `[live] low_latency` does.
    pub fn low_latency_or(&self, live: &crate::config::LiveConfig) -> Option<u64> {
        self.low_latency
            .unwrap_or(live.low_latency)
            .then_some(live.part_target_ms)
    }

    /// This session's live window and target duration: its channel's, or
    /// the `[live]` defaults.
    pub fn shape_or(&self, live: &crate::config::LiveConfig) -> crate::session::LiveShape {
        self.shape.unwrap_or(crate::session::LiveShape {
            window_segments: live.window_segments,
            target_duration_secs: live.target_duration_secs,
        })
    }
}

#[cfg(test)]
mod low_latency_tests {
    use crate::config::LiveConfig;

    #[test]
    fn a_channel_overrides_the_default() {
        let mut meta: crate::session::SessionMeta = serde_json::from_str(
            r#"{"id":"s","bucket":"b","channel":"c","playlist":"index.m3u8","key_id":"k",
                "clientid":"1","name":"c","addr":"a","started_ms":0}"#,
        )
        .unwrap();
        let mut live = LiveConfig::default();
        assert_eq!(meta.low_latency_or(&live), Some(500), "on by default");
        live.low_latency = false;
        assert_eq!(meta.low_latency_or(&live), None);
        live.low_latency = true;
        meta.low_latency = Some(false);
        assert_eq!(meta.low_latency_or(&live), None);
        live.low_latency = false;
        meta.low_latency = Some(true);
        assert_eq!(meta.low_latency_or(&live), Some(500));
    }
}
