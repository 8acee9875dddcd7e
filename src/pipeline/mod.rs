//! The fragment pipeline: nginx's HLS directory → capture → S3, then the
//! channel's playlist.
//!
//! One actor task owns all per-session and per-channel state and is the only
//! writer of it; the watcher, the HTTP hooks and finished uploads talk to it
//! through [`Msg`]. Uploads run as separate tasks and report back.
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
//! and every session directory is rescanned, so a crash loses nothing that
//! reached the disk.

pub mod capture;
pub mod journal;
pub mod live;
pub mod upload;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::session::{SessionMeta, Sessions, looks_like_id};
use crate::store::{Store, fragment_key, playlist_key};
use capture::{Identity, identity, name_ms};
use journal::{Entry, Journal};
use live::{ChannelId, ChannelLive, WindowSeg};
use watch::FsEvent;

pub enum Msg {
    Fs(FsEvent),
    /// `on_publish` approved a session.
    Started(SessionMeta),
    /// `on_publish_done` for a session.
    Done(String),
    FragmentStored {
        session: String,
        key_ms: u64,
    },
    PlaylistStored {
        channel: ChannelId,
        version: u64,
    },
    ManifestStored {
        session: String,
        /// `segs[..count]` are now in stored manifests.
        count: usize,
        /// The chunk is full: the next upload starts a new manifest object.
        full: bool,
        ended: bool,
    },
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
        let _ = self.tx.send(Msg::Started(meta));
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

struct CaptureRec {
    name: String,
    key_ms: u64,
    ident: Identity,
    /// Where the bytes are kept until stored; `None` once stored.
    file: Option<PathBuf>,
    assigned: bool,
    /// nginx's own file was removed (it left nginx's window after capture).
    original_removed: bool,
}

struct Seg {
    key_ms: u64,
    extinf: String,
    duration_ms: u64,
    stored: bool,
}

struct SessionPipe {
    meta: SessionMeta,
    channel: ChannelId,
    journal: Journal,
    captures: Vec<CaptureRec>,
    segs: Vec<Seg>,
    /// `segs[..published]` are in the channel window.
    published: usize,
    /// Highest nginx media sequence number already matched.
    last_seq: Option<u64>,
    last_activity: Instant,
    done_at: Option<Instant>,
    /// The channel version whose upload finishes this session.
    ending_version: Option<u64>,
    /// Ended for lack of fragments while nginx still had the publisher.
    idle_ended: bool,
    manifest: ManifestState,
}

/// The session's VOD manifest in the bucket (see `crate::index`).
#[derive(Default)]
struct ManifestState {
    uploading: bool,
    /// Fragments listed by the stored manifests.
    stored_count: usize,
    stored_final: bool,
    last_upload: Option<Instant>,
    /// Index in `segs` where the manifest object being written starts.
    chunk_start: usize,
}

/// Fragments per manifest object (an hour of 2 s fragments): a live
/// manifest is rewritten every few seconds, so one object per session would
/// make a day-long session's uploads grow with the square of its length.
const MANIFEST_CHUNK: usize = 1800;

/// How often a live session's manifest is rewritten: it grows with the
/// session, so not at every fragment.
const MANIFEST_EVERY: Duration = Duration::from_secs(10);

/// What the pipeline shares with the HTTP side.
pub struct Shared {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<Sessions>,
    pub live_cache: LiveCache,
    /// Takes the channels' snapshots from captured fragments.
    pub snapshots: crate::snapshot::Snapshotter,
}

pub struct Pipeline {
    cfg: Arc<Config>,
    hls_dir: PathBuf,
    capture_dir: PathBuf,
    spool_dir: PathBuf,
    store: Store,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    tx: UnboundedSender<Msg>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    pipes: HashMap<String, SessionPipe>,
    channels: HashMap<ChannelId, ChannelLive>,
    unknown_dirs: HashSet<PathBuf>,
    live_cache: LiveCache,
    snapshots: crate::snapshot::Snapshotter,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

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
        } = shared;
        Pipeline {
            hls_dir: cfg.nginx.hls_dir.clone(),
            capture_dir: cfg.capture_dir(),
            spool_dir: cfg.spool_dir(),
            permits: Arc::new(Semaphore::new(cfg.upload.concurrency)),
            cfg,
            store,
            metrics,
            sessions,
            tx: handle.sender(),
            cancel,
            tracker,
            pipes: HashMap::new(),
            channels: HashMap::new(),
            unknown_dirs: HashSet::new(),
            live_cache,
            snapshots,
        }
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
        info!("pipeline stopped; unfinished work stays on disk for the next start");
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Fs(FsEvent::FragmentClosed(p)) => {
                if let Some(id) = self.session_of(&p) {
                    self.capture(&id, &p);
                }
            }
            Msg::Fs(FsEvent::PlaylistWritten(p)) => {
                if let Some(id) = self.session_of(&p) {
                    self.on_playlist(&id);
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
            Msg::Started(meta) => self.open_session(meta, false),
            Msg::Done(id) => {
                if let Some(p) = self.pipes.get_mut(&id) {
                    p.done_at.get_or_insert_with(Instant::now);
                }
            }
            Msg::FragmentStored { session, key_ms } => self.on_fragment_stored(&session, key_ms),
            Msg::PlaylistStored { channel, version } => self.on_playlist_stored(channel, version),
            Msg::ManifestStored {
                session,
                count,
                full,
                ended,
            } => self.on_manifest_stored(&session, count, full, ended),
            Msg::Tick => self.on_tick(),
        }
        self.metrics.gauge_set(
            "livebucket_sessions_live",
            self.sessions.live_count() as i64,
        );
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
        if looks_like_id(&dir) && self.pipes.contains_key(&dir) {
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

    fn open_session(&mut self, meta: SessionMeta, recovering: bool) {
        if self.pipes.contains_key(&meta.id) {
            return;
        }
        let span = info_span!("stream", session = %meta.id, bucket = %meta.bucket, channel = %meta.channel);
        let _g = span.enter();
        let channel = ChannelId {
            bucket: meta.bucket.clone(),
            channel: meta.channel.clone(),
            playlist: meta.playlist.clone(),
        };
        let journal_path = self.sessions.session_dir(&meta.id).join("journal");
        let (journal, entries) = match Journal::open(&journal_path) {
            Ok(j) => j,
            Err(e) => {
                error!(error = %e, path = %journal_path.display(), "cannot open session journal; session not uploaded");
                return;
            }
        };
        let state_dir = self.cfg.state_dir.clone();
        let ch = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelLive::load(&state_dir, &channel));
        let mut pipe = SessionPipe {
            meta: meta.clone(),
            channel: channel.clone(),
            journal,
            captures: Vec::new(),
            segs: Vec::new(),
            published: 0,
            last_seq: None,
            last_activity: Instant::now(),
            done_at: None,
            ending_version: None,
            idle_ended: false,
            manifest: ManifestState::default(),
        };
        if !recovering {
            ch.begin_session();
            info!("session started");
        } else {
            replay(&mut pipe, entries, ch, &self.capture_dir, &self.spool_dir);
            info!(
                captured = pipe.captures.len(),
                listed = pipe.segs.len(),
                "session recovered from journal"
            );
        }
        self.pipes.insert(meta.id.clone(), pipe);
        if recovering {
            let id = meta.id.clone();
            for i in 0..self.pipes[&id].segs.len() {
                if !self.pipes[&id].segs[i].stored {
                    self.spawn_fragment_upload(&id, i);
                }
            }
            self.advance(&id);
            if !self.sessions.is_live(&id)
                && let Some(p) = self.pipes.get_mut(&id)
            {
                p.done_at = Some(Instant::now());
            }
        } else {
            // (Recovered sessions are rescanned together, right after.)
            self.rescan_dir(&meta.id);
        }
    }

    fn rescan_all(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.hls_dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            if let Some(id) = self.session_of(&path.join("x")) {
                self.rescan_dir(&id);
            }
        }
    }

    /// Catches up with a session directory: captures every closed fragment
    /// not yet captured and reads the playlist.
    fn rescan_dir(&mut self, id: &str) {
        let dir = self.hls_dir.join(id);
        let playlist = self.pipes.get(id).map(|p| dir.join(p.meta.playlist_file()));
        let listed: Vec<String> = playlist
            .as_ref()
            .and_then(|p| capture::read_nofollow(p).ok())
            .map(|(b, _)| b)
            .and_then(|b| crate::hls::parse_nginx(&b).ok())
            .map(|es| es.into_iter().map(|e| e.uri).collect())
            .unwrap_or_default();
        let max_listed = listed.iter().filter_map(|n| name_ms(n)).max();
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
            let closed = listed.contains(&name) || max_listed.is_some_and(|m| ms < m) || !live;
            if closed {
                self.capture(id, &dir.join(&name));
            }
        }
        if playlist.is_some_and(|p| p.exists()) {
            self.on_playlist(id);
        }
    }

    /// Copies a closed fragment to its capture file under a new key, unless
    /// this version of it is already captured.
    fn capture(&mut self, id: &str, path: &Path) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            return;
        };
        let ident = match identity(path) {
            Ok(i) => i,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    warn!(error = %e, "not captured");
                }
                return;
            }
        };
        let high_water = self.cfg.spool.tmpfs_high_water;
        let use_spool = capture::fs_usage(&self.capture_dir)
            .or_else(|_| capture::fs_usage(&self.hls_dir))
            .map(|u| u >= high_water)
            .unwrap_or(false);
        let Some(pipe) = self.pipes.get_mut(id) else {
            return;
        };
        if pipe
            .captures
            .iter()
            .any(|c| c.name == name && c.ident == ident)
        {
            return;
        }
        let Some(ch) = self.channels.get_mut(&pipe.channel) else {
            return;
        };
        let key_ms = name_ms(&name)
            .unwrap_or_else(now_ms)
            .max(ch.last_key_ms + 1);
        ch.last_key_ms = key_ms;
        let span = info_span!("stream", session = %id, channel = %pipe.meta.channel, key = key_ms);
        let _g = span.enter();
        let entry = Entry::Captured {
            name: name.clone(),
            key: key_ms,
            size: ident.size,
            mtime_ns: ident.mtime_ns,
            spool: use_spool,
        };
        if let Err(e) = pipe.journal.append(&entry) {
            error!(error = %e, "cannot write journal; capturing anyway");
        }
        let dirs = if use_spool {
            [self.spool_dir.join(id), self.capture_dir.join(id)]
        } else {
            [self.capture_dir.join(id), self.spool_dir.join(id)]
        };
        let mut file = None;
        for dir in &dirs {
            let durable = dir.starts_with(&self.spool_dir);
            match capture::copy_fragment(path, dir, key_ms, durable) {
                Ok((f, _)) => {
                    file = Some(f);
                    break;
                }
                Err(capture::CaptureError::Changed) => {
                    // Not a space problem: uploading nginx's file now could
                    // store the next version twice. Its own close comes next.
                    warn!(fragment = %name, "fragment rewritten while captured; waiting for its next close");
                    return;
                }
                Err(e) => warn!(error = %e, dir = %dir.display(), "capture failed here"),
            }
        }
        let file = match file {
            Some(f) => f,
            None => {
                // Nowhere to copy to: keep nginx's own file as the only copy
                // and say so; it is not deleted before it is stored.
                error!(fragment = %path.display(), "capture impossible (capture dir and spool full?); uploading from nginx's file");
                path.to_owned()
            }
        };
        debug!(fragment = %name, size = ident.size, "captured");
        self.metrics.inc("livebucket_fragments_captured_total", "");
        if let Some(plan) = &pipe.meta.snapshot {
            // Never waits: the snapshotter opens the file before it returns.
            self.snapshots.offer(crate::snapshot::SnapshotRequest {
                key_id: pipe.meta.key_id.clone(),
                bucket: pipe.meta.bucket.clone(),
                channel: pipe.meta.channel.clone(),
                plan: plan.clone(),
                fragment: file.clone(),
                fragment_ms: key_ms,
            });
        }
        pipe.captures.push(CaptureRec {
            name,
            key_ms,
            ident,
            file: Some(file),
            assigned: false,
            original_removed: false,
        });
        pipe.last_activity = Instant::now();
    }

    /// nginx wrote a new playlist: match its new entries to captures.
    fn on_playlist(&mut self, id: &str) {
        let Some(pipe) = self.pipes.get(id) else {
            return;
        };
        let dir = self.hls_dir.join(id);
        let path = dir.join(pipe.meta.playlist_file());
        let entries = match capture::read_nofollow(&path).map(|(b, _)| crate::hls::parse_nginx(&b))
        {
            Ok(Ok(e)) => e,
            Ok(Err(e)) => {
                warn!(path = %path.display(), error = %e, "unparsable nginx playlist");
                return;
            }
            Err(_) => return,
        };
        let last_seq = pipe.last_seq;
        for entry in entries
            .iter()
            .filter(|e| last_seq.is_none_or(|s| e.seq > s))
        {
            let found = self.pipes[id]
                .captures
                .iter()
                .position(|c| c.name == entry.uri && !c.assigned);
            let idx = match found {
                Some(i) => Some(i),
                None => {
                    // Listed but its close event was missed: capture now.
                    self.capture(id, &dir.join(&entry.uri));
                    self.pipes[id]
                        .captures
                        .iter()
                        .position(|c| c.name == entry.uri && !c.assigned)
                }
            };
            let Some(pipe) = self.pipes.get_mut(id) else {
                return;
            };
            pipe.last_seq = Some(entry.seq);
            match idx {
                Some(i) => {
                    let key = pipe.captures[i].key_ms;
                    self.assign_orphans_before(id, key);
                    self.assign(
                        id,
                        i,
                        entry.extinf.clone(),
                        entry.duration_ms,
                        Some(entry.seq),
                    );
                }
                None => {
                    error!(session = %id, fragment = %entry.uri, "nginx listed a fragment that is gone; it cannot be uploaded");
                    self.metrics.inc("livebucket_fragments_lost_total", "");
                }
            }
        }
        // Fragments that left nginx's window and were captured are no longer
        // needed in nginx's directory.
        let listed: HashSet<&str> = entries.iter().map(|e| e.uri.as_str()).collect();
        if let Some(pipe) = self.pipes.get_mut(id) {
            for c in pipe
                .captures
                .iter_mut()
                .filter(|c| c.assigned && !c.original_removed)
            {
                if !listed.contains(c.name.as_str()) {
                    let orig = dir.join(&c.name);
                    let same = identity(&orig).is_ok_and(|i| i == c.ident);
                    let copied = c.file.as_ref().is_none_or(|f| *f != orig);
                    if same && copied {
                        let _ = std::fs::remove_file(&orig);
                    }
                    c.original_removed = true;
                }
            }
            pipe.last_activity = Instant::now();
            prune(pipe);
        }
    }

    /// Captured fragments older than `before_key` that nginx never listed
    /// (they left its window while livebucket was down): their duration is
    /// the gap to the next fragment's name, which `system` naming makes the
    /// wall-clock length.
    fn assign_orphans_before(&mut self, id: &str, before_key: u64) {
        loop {
            let Some(pipe) = self.pipes.get(id) else {
                return;
            };
            let Some(i) = pipe
                .captures
                .iter()
                .position(|c| !c.assigned && c.key_ms < before_key)
            else {
                return;
            };
            let this = name_ms(&pipe.captures[i].name);
            let next = pipe
                .captures
                .iter()
                .filter_map(|c| name_ms(&c.name))
                .filter(|&n| this.is_some_and(|t| n > t))
                .min();
            let duration_ms = match (this, next) {
                (Some(t), Some(n)) => (n - t).clamp(1, 60_000),
                _ => self.cfg.live.target_duration_secs * 1000,
            };
            warn!(session = %id, fragment = %pipe.captures[i].name, duration_ms, "fragment never listed by nginx; duration estimated from names");
            let extinf = format!("{}.{:03}", duration_ms / 1000, duration_ms % 1000);
            self.assign(id, i, extinf, duration_ms, None);
        }
    }

    fn assign(&mut self, id: &str, i: usize, extinf: String, duration_ms: u64, seq: Option<u64>) {
        let Some(pipe) = self.pipes.get_mut(id) else {
            return;
        };
        let c = &mut pipe.captures[i];
        c.assigned = true;
        let key_ms = c.key_ms;
        let _ = pipe.journal.append(&Entry::Listed {
            key: key_ms,
            extinf: extinf.clone(),
            duration_ms,
            seq,
        });
        pipe.segs.push(Seg {
            key_ms,
            extinf,
            duration_ms,
            stored: false,
        });
        let idx = pipe.segs.len() - 1;
        self.spawn_fragment_upload(id, idx);
    }

    fn spawn_fragment_upload(&self, id: &str, idx: usize) {
        let Some(pipe) = self.pipes.get(id) else {
            return;
        };
        let seg = &pipe.segs[idx];
        let Some(file) = pipe
            .captures
            .iter()
            .find(|c| c.key_ms == seg.key_ms)
            .and_then(|c| c.file.clone())
        else {
            return;
        };
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let permits = self.permits.clone();
        let cancel = self.cancel.clone();
        let tx = self.tx.clone();
        let max_backoff = Duration::from_secs(self.cfg.upload.max_backoff_secs);
        let meta = pipe.meta.clone();
        let key_ms = seg.key_ms;
        let extinf = seg.extinf.clone();
        let object = fragment_key(&meta.channel, key_ms);
        let spool_twin = self.spool_dir.join(&meta.id).join(format!("{key_ms}.ts"));
        let span = info_span!("stream", session = %meta.id, channel = %meta.channel, key = %object);
        metrics.gauge_add("livebucket_uploads_pending", 1);
        self.tracker.spawn(
            async move {
                let stored =
                    upload::until_stored(&object, &permits, &cancel, &metrics, max_backoff, || {
                        let file = file.clone();
                        let twin = spool_twin.clone();
                        let (store, meta, object, extinf) = (&store, &meta, &object, &extinf);
                        async move {
                            // The capture may have moved to the spool since.
                            let read = match tokio::fs::read(&file).await {
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                    tokio::fs::read(&twin).await
                                }
                                other => other,
                            };
                            let body = read.map(Bytes::from).map_err(|e| {
                                crate::store::StoreError::Request {
                                    op: "read",
                                    bucket: meta.bucket.clone(),
                                    key: object.clone(),
                                    message: e.to_string(),
                                    retriable: true,
                                }
                            })?;
                            store
                                .put_fragment(
                                    &meta.key_id,
                                    &meta.bucket,
                                    object,
                                    body,
                                    extinf,
                                    &meta.id,
                                )
                                .await
                        }
                    })
                    .await;
                metrics.gauge_add("livebucket_uploads_pending", -1);
                if stored.is_some() {
                    metrics.inc("livebucket_fragments_uploaded_total", "");
                    let _ = tx.send(Msg::FragmentStored {
                        session: meta.id.clone(),
                        key_ms,
                    });
                }
            }
            .instrument(span),
        );
    }

    fn on_fragment_stored(&mut self, id: &str, key_ms: u64) {
        let Some(pipe) = self.pipes.get_mut(id) else {
            return;
        };
        // Keys grow in listing order, so a day-long session need not be
        // scanned; the scan stays as a fallback should that ever not hold.
        let found = pipe
            .segs
            .binary_search_by_key(&key_ms, |s| s.key_ms)
            .ok()
            .or_else(|| pipe.segs.iter().position(|s| s.key_ms == key_ms));
        if let Some(i) = found {
            pipe.segs[i].stored = true;
        }
        let _ = pipe.journal.append(&Entry::Stored { key: key_ms });
        let dir = self.hls_dir.join(id);
        if let Some(c) = pipe.captures.iter_mut().find(|c| c.key_ms == key_ms)
            && let Some(f) = c.file.take()
            // nginx's own file is only removed once out of its window.
            && f.parent() != Some(dir.as_path())
        {
            let _ = std::fs::remove_file(&f);
        }
        self.advance(id);
        if let Some(pipe) = self.pipes.get_mut(id) {
            prune(pipe);
        }
    }

    /// Moves the stored prefix of the session into the channel window.
    fn advance(&mut self, id: &str) {
        let Some(pipe) = self.pipes.get_mut(id) else {
            return;
        };
        let shape = pipe.meta.shape_or(&self.cfg.live);
        let (window, target) = (shape.window_segments, shape.target_duration_secs);
        let Some(ch) = self.channels.get_mut(&pipe.channel) else {
            return;
        };
        let mut changed = false;
        while pipe.published < pipe.segs.len() && pipe.segs[pipe.published].stored {
            let s = &pipe.segs[pipe.published];
            let first = pipe.published == 0 || pipe.idle_ended;
            pipe.idle_ended = false;
            let pdt = first.then(|| name_ms_of(pipe, s.key_ms).unwrap_or(pipe.meta.started_ms));
            ch.append(
                WindowSeg {
                    key_ms: s.key_ms,
                    extinf: s.extinf.clone(),
                    duration_ms: s.duration_ms,
                    discontinuity: false,
                    program_date_time_ms: pdt,
                },
                window,
                target,
            );
            pipe.published += 1;
            changed = true;
        }
        if changed {
            let chid = pipe.channel.clone();
            let due = pipe
                .manifest
                .last_upload
                .is_none_or(|t| t.elapsed() >= MANIFEST_EVERY);
            self.upload_playlist(&chid);
            if due {
                self.upload_manifest(id, false);
            }
        }
    }

    /// Rewrites the session's manifest with every fragment published so far.
    fn upload_manifest(&mut self, id: &str, ended: bool) {
        let Some(pipe) = self.pipes.get_mut(id) else {
            return;
        };
        if pipe.manifest.uploading {
            return;
        }
        pipe.manifest.uploading = true;
        pipe.manifest.last_upload = Some(Instant::now());
        let start = pipe.manifest.chunk_start;
        let count = pipe.published.min(start + MANIFEST_CHUNK);
        let full = count - start == MANIFEST_CHUNK;
        // The session's last object says so; earlier full chunks do not.
        let ended = ended && count == pipe.published;
        // The first chunk is keyed by the session's start, later ones by
        // their first fragment, so keys stay in time order.
        let chunk_ms = match start {
            0 => pipe.meta.started_ms,
            i => pipe.segs[i].key_ms,
        };
        let manifest = crate::index::Manifest {
            version: 1,
            session: pipe.meta.id.clone(),
            channel: pipe.meta.channel.clone(),
            started_ms: pipe.meta.started_ms,
            ended,
            fragments: pipe.segs[start..count]
                .iter()
                .map(|s| crate::index::IndexedFragment {
                    k: s.key_ms,
                    d: s.duration_ms,
                })
                .collect(),
        };
        let body = match serde_json::to_vec(&manifest) {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot serialise manifest");
                return;
            }
        };
        let meta = pipe.meta.clone();
        let object = crate::index::manifest_key(&meta.channel, chunk_ms, &meta.id);
        let (store, metrics, permits, cancel, tx) = (
            self.store.clone(),
            self.metrics.clone(),
            self.permits.clone(),
            self.cancel.clone(),
            self.tx.clone(),
        );
        let max_backoff = Duration::from_secs(self.cfg.upload.max_backoff_secs);
        let span = info_span!("stream", session = %meta.id, channel = %meta.channel, key = %object);
        self.tracker.spawn(
            async move {
                let stored =
                    upload::until_stored(&object, &permits, &cancel, &metrics, max_backoff, || {
                        store.put_json(&meta.key_id, &meta.bucket, &object, body.clone())
                    })
                    .await;
                if stored.is_some() {
                    let _ = tx.send(Msg::ManifestStored {
                        session: meta.id.clone(),
                        count,
                        full,
                        ended,
                    });
                }
            }
            .instrument(span),
        );
    }

    fn on_manifest_stored(&mut self, id: &str, count: usize, full: bool, ended: bool) {
        let Some(pipe) = self.pipes.get_mut(id) else {
            return;
        };
        pipe.manifest.uploading = false;
        pipe.manifest.stored_count = pipe.manifest.stored_count.max(count);
        pipe.manifest.stored_final |= ended;
        if full {
            pipe.manifest.chunk_start = count;
        }
        let Some(version) = pipe.ending_version else {
            return;
        };
        if !pipe.manifest.stored_final {
            self.upload_manifest(id, true);
        } else if self
            .channels
            .get(&pipe.channel)
            .is_some_and(|c| c.stored_version >= version)
        {
            self.finish(id);
        }
    }

    fn upload_playlist(&mut self, chid: &ChannelId) {
        let Some(ch) = self.channels.get_mut(chid) else {
            return;
        };
        if ch.uploading || ch.stored_version >= ch.version {
            return;
        }
        // The session that writes: any session of this channel knows the key
        // and the playlist's target duration.
        let Some((key_id, target)) = self.pipes.values().find(|p| &p.channel == chid).map(|p| {
            (
                p.meta.key_id.clone(),
                p.meta.shape_or(&self.cfg.live).target_duration_secs,
            )
        }) else {
            return;
        };
        ch.uploading = true;
        let version = ch.version;
        let body = ch.render(target);
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let permits = self.permits.clone();
        let cancel = self.cancel.clone();
        let tx = self.tx.clone();
        let max_backoff = Duration::from_secs(self.cfg.upload.max_backoff_secs);
        let cache_control = self.cfg.upload.playlist_cache_control.clone();
        let object = playlist_key(&chid.channel, &chid.playlist);
        let chid = chid.clone();
        let span =
            info_span!("stream", bucket = %chid.bucket, channel = %chid.channel, key = %object);
        self.tracker.spawn(
            async move {
                let stored =
                    upload::until_stored(&object, &permits, &cancel, &metrics, max_backoff, || {
                        store.put_playlist(
                            &key_id,
                            &chid.bucket,
                            &object,
                            body.clone(),
                            &cache_control,
                        )
                    })
                    .await;
                if stored.is_some() {
                    metrics.inc("livebucket_playlists_uploaded_total", "");
                    let _ = tx.send(Msg::PlaylistStored {
                        channel: chid,
                        version,
                    });
                }
            }
            .instrument(span),
        );
    }

    fn on_playlist_stored(&mut self, chid: ChannelId, version: u64) {
        let target = self
            .pipes
            .values()
            .find(|p| p.channel == chid)
            .map_or(self.cfg.live.target_duration_secs, |p| {
                p.meta.shape_or(&self.cfg.live).target_duration_secs
            });
        if let Some(ch) = self.channels.get_mut(&chid) {
            ch.uploading = false;
            ch.stored_version = ch.stored_version.max(version);
            if let Err(e) = ch.save(&self.cfg.state_dir, &chid) {
                warn!(error = %e, "cannot save channel state");
            }
            if ch.version == version {
                let body = ch.render(target);
                self.live_cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(chid.clone(), body);
            }
        }
        self.upload_playlist(&chid);
        let finished: Vec<String> = self
            .pipes
            .iter()
            .filter(|(_, p)| {
                p.channel == chid
                    && p.manifest.stored_final
                    && p.ending_version.is_some_and(|v| v <= version)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            self.finish(&id);
        }
    }

    /// Past the tmpfs high-water mark: move pending captures to the on-disk
    /// spool, and drop nginx's copies of fragments already captured (even
    /// inside nginx's window: nobody plays from nginx), so nginx keeps room to
    /// write new fragments.
    fn relieve_pressure(&mut self) {
        let high_water = self.cfg.spool.tmpfs_high_water;
        let over = capture::fs_usage(&self.capture_dir).is_ok_and(|u| u >= high_water);
        if !over {
            return;
        }
        let mut moved = 0usize;
        for (id, pipe) in self.pipes.iter_mut() {
            let hls = self.hls_dir.join(id);
            for c in pipe.captures.iter_mut() {
                if !c.original_removed {
                    let orig = hls.join(&c.name);
                    if identity(&orig).is_ok_and(|i| i == c.ident)
                        && c.file.as_ref().is_none_or(|f| *f != orig)
                    {
                        let _ = std::fs::remove_file(&orig);
                        c.original_removed = true;
                    }
                }
                let Some(file) = c.file.as_ref() else {
                    continue;
                };
                if !file.starts_with(&self.capture_dir) {
                    continue;
                }
                let dst_dir = self.spool_dir.join(id);
                match capture::move_to_spool(file, &dst_dir) {
                    Ok(dst) => {
                        c.file = Some(dst);
                        moved += 1;
                    }
                    Err(e) => {
                        error!(error = %e, file = %file.display(), "cannot move capture to the spool");
                        self.metrics.inc("livebucket_spool_errors_total", "");
                        return;
                    }
                }
            }
        }
        if moved > 0 {
            warn!(
                moved,
                "tmpfs past its high-water mark; pending fragments moved to the spool"
            );
            self.metrics
                .add("livebucket_spooled_total", "", moved as u64);
        }
    }

    fn on_tick(&mut self) {
        self.relieve_pressure();
        let grace = Duration::from_millis(self.cfg.live.done_grace_ms);
        let idle = self.cfg.hold_interval() * self.cfg.live.idle_end_factor;
        let ids: Vec<String> = self.pipes.keys().cloned().collect();
        for id in ids {
            let p = &self.pipes[&id];
            if p.published > p.manifest.stored_count
                && !p.manifest.uploading
                && p.ending_version.is_none()
                && p.manifest
                    .last_upload
                    .is_none_or(|t| t.elapsed() >= MANIFEST_EVERY)
            {
                self.upload_manifest(&id, false);
            }
            let p = &self.pipes[&id];
            if p.ending_version.is_some() {
                continue;
            }
            // An idle-ended session whose publish_done never comes (nginx
            // restarted, or it came while livebucket was down) is done after
            // a while longer.
            let done = p.done_at.is_some_and(|t| t.elapsed() >= grace)
                || (p.idle_ended && p.last_activity.elapsed() >= idle * 4);
            let idle_now = !p.idle_ended && p.last_activity.elapsed() >= idle;
            if !(done || idle_now) {
                continue;
            }
            // One last look for nginx's final fragment and playlist.
            self.rescan_dir(&id);
            self.assign_orphans_before(&id, u64::MAX);
            let p = &self.pipes[&id];
            if p.published < p.segs.len() {
                continue; // still storing; the next tick looks again
            }
            let chid = p.channel.clone();
            if p.published == 0 {
                // Approved but never relayed a fragment (the publisher left
                // before or right after approval; nginx may even have sent
                // on_publish_done before livebucket approved): nothing to end,
                // and the channel must not stay locked.
                self.sessions.end_live(&id);
                self.finish(&id);
                continue;
            }
            // Another session may already be live on this channel (a fast
            // reconnect): then the playlist goes on without ENDLIST.
            let other_live = self.pipes.iter().any(|(o, q)| {
                o != &id && q.channel == chid && q.ending_version.is_none() && !q.idle_ended
            });
            let Some(ch) = self.channels.get_mut(&chid) else {
                continue;
            };
            if !other_live {
                ch.end();
            }
            let version = ch.version;
            let span = info_span!("stream", session = %id, channel = %chid.channel);
            let _g = span.enter();
            if done {
                info!(
                    fragments = self.pipes[&id].segs.len(),
                    "session ended; finishing playlist"
                );
                self.sessions.end_live(&id);
                if let Some(p) = self.pipes.get_mut(&id) {
                    p.ending_version = Some(version);
                }
                // Finished once both the ended playlist and the final
                // manifest are stored (whichever comes last finishes it).
                self.upload_playlist(&chid);
                self.upload_manifest(&id, true);
            } else {
                info!("no new fragment for a while; playlist ended until fragments resume");
                // The channel is free for a new publisher; a stalled one is
                // refused at its next on_update.
                self.sessions.end_live(&id);
                if let Some(p) = self.pipes.get_mut(&id) {
                    p.idle_ended = true;
                }
                if let Some(ch) = self.channels.get_mut(&chid) {
                    ch.begin_session();
                }
                self.upload_playlist(&chid);
            }
        }
    }

    /// Everything of the session is stored and its playlist ended: remove its
    /// local files and state.
    fn finish(&mut self, id: &str) {
        let Some(pipe) = self.pipes.remove(id) else {
            return;
        };
        let _ = std::fs::remove_dir_all(self.hls_dir.join(id));
        let _ = std::fs::remove_dir_all(self.capture_dir.join(id));
        let _ = std::fs::remove_dir_all(self.spool_dir.join(id));
        self.unknown_dirs.remove(&self.hls_dir.join(id));
        if let Some(meta) = self.sessions.get(id) {
            self.snapshots.forget(&meta.bucket, &meta.channel);
        }
        self.sessions.finish(id);
        info!(session = %id, channel = %pipe.meta.channel, fragments = pipe.segs.len(), "session finished");
    }
}

/// Forgets captures that are done with (stored, listed, nginx's copy gone
/// and published), so a day-long session keeps only what is in flight.
fn prune(pipe: &mut SessionPipe) {
    // Keys grow in listing order, so the published ones are those up to the
    // last published key.
    let Some(last) = pipe.published.checked_sub(1).map(|i| pipe.segs[i].key_ms) else {
        return;
    };
    pipe.captures
        .retain(|c| !(c.assigned && c.file.is_none() && c.original_removed && c.key_ms <= last));
}

fn name_ms_of(pipe: &SessionPipe, key_ms: u64) -> Option<u64> {
    pipe.captures
        .iter()
        .find(|c| c.key_ms == key_ms)
        .and_then(|c| name_ms(&c.name))
}

/// Rebuilds a session's state from its journal and what is on disk.
fn replay(
    pipe: &mut SessionPipe,
    entries: Vec<Entry>,
    ch: &mut ChannelLive,
    capture_dir: &Path,
    spool_dir: &Path,
) {
    let id = pipe.meta.id.clone();
    let mut stored = HashSet::new();
    for e in &entries {
        if let Entry::Stored { key } = e {
            stored.insert(*key);
        }
    }
    for e in entries {
        match e {
            Entry::Captured {
                name,
                key,
                size,
                mtime_ns,
                spool,
            } => {
                ch.last_key_ms = ch.last_key_ms.max(key);
                // The copy may have landed in the other area (the preferred
                // one was full) or moved to the spool since.
                let (first, second) = if spool {
                    (spool_dir, capture_dir)
                } else {
                    (capture_dir, spool_dir)
                };
                let name_ts = format!("{key}.ts");
                let file = first.join(&id).join(&name_ts);
                let file = if file.exists() {
                    file
                } else {
                    second.join(&id).join(&name_ts)
                };
                let file = if stored.contains(&key) {
                    let _ = std::fs::remove_file(&file);
                    None
                } else if file.exists() {
                    Some(file)
                } else {
                    // The crash came between the journal line and the copy:
                    // forget this capture; the rescan captures nginx's file
                    // again under a new key.
                    continue;
                };
                pipe.captures.push(CaptureRec {
                    name,
                    key_ms: key,
                    ident: Identity { size, mtime_ns },
                    file,
                    assigned: false,
                    original_removed: false,
                });
            }
            Entry::Listed {
                key,
                extinf,
                duration_ms,
                seq,
            } => {
                if seq.is_some() {
                    pipe.last_seq = seq;
                }
                if let Some(c) = pipe.captures.iter_mut().find(|c| c.key_ms == key) {
                    c.assigned = true;
                    pipe.segs.push(Seg {
                        key_ms: key,
                        extinf,
                        duration_ms,
                        stored: stored.contains(&key),
                    });
                }
            }
            Entry::Stored { .. } => {}
        }
    }
    // Fragments already in the channel window were published before the crash.
    let last_published = ch.window.back().map(|w| w.key_ms);
    pipe.published = pipe
        .segs
        .iter()
        .take_while(|s| last_published.is_some_and(|k| s.key_ms <= k))
        .count();
}

impl SessionMeta {
    /// nginx always writes `index.m3u8` in a nested stream directory; the
    /// session's own playlist name only names the object in S3.
    pub fn playlist_file(&self) -> &'static str {
        "index.m3u8"
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
