//! One task per LL session: follows the fragment nginx is writing, cuts
//! parts from it as it grows, stores them, and deletes them once the hub
//! dropped them (and all of the session's at its end).
//!
//! nginx-rtmp writes a fragment in place and the watcher deliberately sees
//! only closes and renames (watching every write costs nginx dearly), so
//! the open file is polled: every [`POLL`] its size (one `fstat` on the fd
//! kept open: the pipeline renames the file into its capture area at close,
//! and the fd still reads it) and nginx's playlist (one `stat`). New whole
//! packets are read with `pread`. A fragment is closed once nginx's
//! playlist lists it; that entry's EXTINF gives the last part its duration.
//! Which fragment is open: the newest `.ts` of the session directory that
//! nginx's playlist does not list yet; which came before it: the last entry
//! nginx lists before it (none: the session's first).
//!
//! Part uploads never hold up fragments: they share a small semaphore of
//! their own, each has a deadline and is not retried; a part that fails is
//! never listed (see [`super::hub`]).

use std::collections::HashSet;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::cut::{Cut, Cutter};
use super::hub::{Hub, Prev};
use super::playlist::Part;
use super::ts::{PACKET, Scanner};
use crate::hls::NginxEntry;
use crate::live::ChannelId;
use crate::metrics::Metrics;
use crate::store::{ObjectMeta, Store};

/// How often the open fragment's size and nginx's playlist are looked at.
pub(crate) const POLL: Duration = Duration::from_millis(50);
/// How often dropped parts are deleted.
const GC_EVERY: Duration = Duration::from_secs(2);
/// How long a dropped part's object stays for players that hold its URL.
pub(crate) const GRACE: Duration = Duration::from_secs(20);

/// What a follower needs.
pub(crate) struct Follow {
    pub hub: Arc<Hub>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub chid: ChannelId,
    pub session: String,
    pub key_id: String,
    /// `<hls_dir>/<session>/`.
    pub dir: PathBuf,
    pub part_target_ms: u64,
    /// Shared by every follower: part uploads in flight.
    pub uploads: Arc<Semaphore>,
    /// Cancelled when the session is finished (or livebucket stops).
    pub done: CancellationToken,
    /// Cancelled when livebucket stops: no cleanup then.
    pub shutdown: CancellationToken,
}

/// The fragment being followed.
struct Open {
    name: String,
    ms: u64,
    file: std::fs::File,
    /// The fragment's bytes from `base` on: those of the part being cut
    /// and what was read after it (earlier parts' bytes are dropped).
    buf: Vec<u8>,
    base: u64,
    /// Bytes of the fragment scanned so far.
    scanned: u64,
    scanner: Scanner,
    cutter: Cutter,
    /// Broken TS: nothing more is cut from it.
    failed: bool,
}

impl Follow {
    /// Follows the session until it is finished, then deletes its parts.
    pub(crate) async fn run(self) {
        let span = info_span!("llhls", stream = %crate::session::log_tag(&self.session), channel = %self.chid.channel);
        async move {
            // In the background: a slow or failing S3 must not delay parts.
            tokio::spawn(self.sweep().in_current_span());
            self.follow().await;
            if !self.shutdown.is_cancelled() {
                // Players that loaded the last LL playlist may still fetch
                // its parts for a moment.
                tokio::select! {
                    _ = tokio::time::sleep(GRACE.min(Duration::from_secs(5))) => {}
                    _ = self.shutdown.cancelled() => return,
                }
                self.delete_all().await;
            }
            self.hub.forget(&self.chid, &self.session);
        }
        .instrument(span)
        .await
    }

    fn recording(&self) -> String {
        crate::session::recording_id(&self.session)
    }

    async fn follow(&self) {
        let mut open: Option<Open> = None;
        let mut last_ms: Option<u64> = None;
        let mut stamp = None;
        let mut nginx: Vec<NginxEntry> = Vec::new();
        let mut last_gc = Instant::now();
        let mut deleting: Option<tokio::task::JoinHandle<()>> = None;
        let mut to_delete: Vec<String> = Vec::new();
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.done.cancelled() => return,
            }
            let playlist = self.dir.join("index.m3u8");
            let now_stamp = std::fs::metadata(&playlist)
                .ok()
                .map(|m| (m.ino(), m.mtime_nsec(), m.mtime(), m.size()));
            if now_stamp != stamp {
                stamp = now_stamp;
                if let Ok((bytes, _)) = crate::nofollow::read_nofollow(&playlist)
                    && let Ok(entries) = crate::hls::parse_nginx(&bytes)
                {
                    nginx = entries;
                }
            }
            // At most a few fragments per tick (one normally).
            for _ in 0..4 {
                if open.is_none() {
                    open = self.open_next(last_ms, &nginx);
                }
                let Some(o) = open.as_mut() else { break };
                self.read(o);
                let Some(entry) = nginx.iter().find(|e| e.uri == o.name) else {
                    break;
                };
                // Closed: the rest of the file is the last part.
                self.read(o);
                let end = (o.base + o.buf.len() as u64) / PACKET as u64 * PACKET as u64;
                if !o.failed
                    && let Some(cut) = o.cutter.finish(end, entry.duration_ms)
                {
                    self.store_part(o, cut);
                }
                self.hub
                    .complete(&self.chid, &self.session, o.ms, !o.failed);
                debug!(fragment = %o.name, parts = o.cutter.parts(), "fragment cut");
                last_ms = Some(o.ms);
                open = None;
            }
            if last_gc.elapsed() >= GC_EVERY {
                last_gc = Instant::now();
                to_delete.extend(self.dropped_keys());
                // One batch at a time, in the background: deletes never hold
                // up the cutting, and pile up here (not in tasks) while S3
                // is slow. Whatever is left, the session's end deletes.
                if deleting.as_ref().is_none_or(|h| h.is_finished()) && !to_delete.is_empty() {
                    let keys = std::mem::take(&mut to_delete);
                    deleting = Some(tokio::spawn(self.cleaner().delete(keys).in_current_span()));
                }
            }
        }
    }

    /// The fragment after `last_ms` (at start: the one nginx is writing).
    fn open_next(&self, last_ms: Option<u64>, nginx: &[NginxEntry]) -> Option<Open> {
        let listed: HashSet<&str> = nginx.iter().map(|e| e.uri.as_str()).collect();
        let mut names: Vec<(u64, String)> = std::fs::read_dir(&self.dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter_map(|n| crate::layout::name_ms(&n).map(|ms| (ms, n)))
            .collect();
        names.sort();
        let (ms, name) = match last_ms {
            Some(last) => names.into_iter().find(|(ms, _)| *ms > last)?,
            None => names
                .into_iter()
                .rev()
                .find(|(_, n)| !listed.contains(n.as_str()))?,
        };
        let file = std::fs::File::open(self.dir.join(&name)).ok()?;
        let prev = nginx
            .iter()
            .filter_map(|e| crate::layout::name_ms(&e.uri))
            .filter(|m| *m < ms)
            .max()
            .map_or(Prev::First, Prev::After);
        self.hub.begin(&self.chid, &self.session, ms, prev);
        debug!(fragment = %name, ?prev, "following");
        Some(Open {
            name,
            ms,
            file,
            buf: Vec::new(),
            base: 0,
            scanned: 0,
            scanner: Scanner::new(),
            cutter: Cutter::new(self.part_target_ms),
            failed: false,
        })
    }

    /// Reads what nginx appended and stores the parts it completes.
    fn read(&self, o: &mut Open) {
        let Ok(size) = o.file.metadata().map(|m| m.len()) else {
            return;
        };
        let read = o.base + o.buf.len() as u64;
        if size > read {
            let from = o.buf.len();
            o.buf.resize(from + (size - read) as usize, 0);
            match o.file.read_at(&mut o.buf[from..], read) {
                Ok(n) => o.buf.truncate(from + n),
                Err(e) => {
                    o.buf.truncate(from);
                    warn!(fragment = %o.name, error = %e, "cannot read the open fragment");
                    return;
                }
            }
        }
        if o.failed {
            return;
        }
        let mut frames = Vec::new();
        let unscanned = (o.scanned - o.base) as usize;
        match o.scanner.push(&o.buf[unscanned..], &mut frames) {
            Ok(n) => o.scanned += n as u64,
            Err(e) => {
                warn!(fragment = %o.name, error = %e, "not MPEG-TS as expected; no parts for this fragment");
                o.failed = true;
                return;
            }
        }
        let mut cuts = Vec::new();
        for f in frames {
            o.cutter.frame(f, &mut cuts);
        }
        for cut in &cuts {
            self.store_part(o, *cut);
        }
        // The bytes of stored parts are no longer needed.
        if let Some(last) = cuts.last() {
            o.buf.drain(..(last.end - o.base) as usize);
            o.base = last.end;
        }
    }

    /// Lists part `cut` as pending and stores it in the background.
    fn store_part(&self, o: &Open, cut: Cut) {
        let index = cut.index;
        let (start, end) = (
            (cut.start - o.base) as usize,
            ((cut.end - o.base) as usize).min(o.buf.len()),
        );
        // A part after the first starts without the fragment's PAT and PMT
        // (nginx writes them once, at its start): they are put in front,
        // so a player can start at any INDEPENDENT part.
        let body: Bytes = match (cut.start, o.scanner.psi()) {
            (0, _) | (_, None) => Bytes::copy_from_slice(&o.buf[start..end]),
            (_, Some(psi)) => {
                let mut b = Vec::with_capacity(psi.len() + end - start);
                b.extend_from_slice(&psi);
                b.extend_from_slice(&o.buf[start..end]);
                b.into()
            }
        };
        let recording = self.recording();
        let part = Part {
            uri: crate::layout::part_name(&recording, o.ms, index),
            duration_ms: cut.duration_ms,
            independent: cut.independent,
        };
        self.hub.cut(&self.chid, &self.session, o.ms, index, part);
        let key = crate::layout::part_key(&self.chid.channel, &recording, o.ms, index);
        let (hub, store, metrics, uploads) = (
            self.hub.clone(),
            self.store.clone(),
            self.metrics.clone(),
            self.uploads.clone(),
        );
        let (chid, session, key_id, ms) = (
            self.chid.clone(),
            self.session.clone(),
            self.key_id.clone(),
            o.ms,
        );
        let deadline = Duration::from_millis((3 * self.part_target_ms).max(1000));
        tokio::spawn(
            async move {
                let put = async {
                    let _slot = uploads.acquire().await.map_err(|e| e.to_string())?;
                    store
                        .put(&key_id, &chid.bucket, &key, body, &ObjectMeta::fragment(&[]))
                        .await
                        .map_err(|e| e.to_string())
                };
                let result = match tokio::time::timeout(deadline, put).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("not stored within {deadline:?}")),
                };
                if let Err(e) = &result {
                    warn!(part = index, error = %e, "part not stored; this fragment's parts are not offered");
                    metrics.inc("livebucket_parts_failed_total", "");
                } else {
                    metrics.inc("livebucket_parts_uploaded_total", "");
                }
                hub.stored(&chid, &session, ms, index, result.is_ok());
            }
            .in_current_span(),
        );
    }

    /// The keys of this session's parts that left the playlist more than
    /// [`GRACE`] ago.
    fn dropped_keys(&self) -> Vec<String> {
        let recording = self.recording();
        self.hub
            .take_dropped(&self.chid, &self.session, GRACE)
            .into_iter()
            .flat_map(|(ms, parts)| {
                let (channel, recording) = (&self.chid.channel, &recording);
                (0..parts).map(move |i| crate::layout::part_key(channel, recording, ms, i))
            })
            .collect()
    }

    fn cleaner(&self) -> Cleaner {
        Cleaner {
            store: self.store.clone(),
            key_id: self.key_id.clone(),
            bucket: self.chid.bucket.clone(),
        }
    }

    /// Deletes every part object of this session.
    async fn delete_all(&self) {
        let prefix = crate::layout::parts_prefix(&self.chid.channel, &self.recording());
        self.cleaner().delete_listed(&prefix, |_| true).await;
    }

    /// Deletes the parts that sessions this node no longer follows left
    /// under the channel (a crash, a node fenced out, a cleanup cut short).
    fn sweep(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let root = crate::layout::parts_root(&self.chid.channel);
        let mut kept: HashSet<String> = self
            .hub
            .sessions(&self.chid)
            .iter()
            .map(|s| crate::session::recording_id(s))
            .collect();
        kept.insert(self.recording());
        let channel = self.chid.channel.clone();
        let cleaner = self.cleaner();
        async move {
            cleaner
                .delete_listed(&root, move |k| {
                    crate::layout::parse_part_recording(&channel, k)
                        .is_some_and(|r| !kept.contains(r))
                })
                .await
        }
    }
}

/// Deletes part objects with the session's key.
struct Cleaner {
    store: Store,
    key_id: String,
    bucket: String,
}

impl Cleaner {
    async fn delete(self, keys: Vec<String>) {
        for key in keys {
            if let Err(e) = self.store.delete(&self.key_id, &self.bucket, &key).await {
                warn!(error = %e, "cannot delete a dropped part; the session's end deletes it");
            }
        }
    }

    async fn delete_listed(&self, prefix: &str, which: impl Fn(&str) -> bool) {
        let keys = match self
            .store
            .list(&self.key_id, &self.bucket, prefix, None, |_| false)
            .await
        {
            Ok(k) => k,
            Err(e) => {
                warn!(error = %e, prefix, "cannot list part objects to delete them");
                return;
            }
        };
        let mut deleted = 0;
        for key in keys.iter().filter(|k| which(k)) {
            match self.store.delete(&self.key_id, &self.bucket, key).await {
                Ok(()) => deleted += 1,
                Err(e) => warn!(error = %e, "cannot delete a part object"),
            }
        }
        if deleted > 0 {
            info!(deleted, prefix, "part objects deleted");
        }
    }
}
