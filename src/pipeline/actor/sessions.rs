//! The actor's sessions on disk: opening an approved session (its journal,
//! its channel's saved window, its LL-HLS follower), recovering one at
//! start, rescanning its directory, reporting nginx's closes and playlist
//! to the core, and removing its local files once the core finished it.

use std::collections::HashMap;
use std::path::Path;

use tracing::{error, warn};

use super::Pipeline;
use crate::layout::name_ms;
use crate::live::{ChannelId, ChannelLive};
use crate::pipeline::capture::{self, Identity, capture_name, identity};
use crate::pipeline::journal::{self, Journal};
use crate::pipeline::machine::{self, Input, Location};
use crate::pipeline::timestamps;
use crate::session::{SessionMeta, looks_like_id};

impl Pipeline {
    /// The approved session a path under the HLS directory belongs to.
    pub(super) fn session_of(&mut self, path: &Path) -> Option<String> {
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
    pub(super) fn open_if_approved(&mut self, id: &str) -> bool {
        if self.core.has_session(id) {
            return true;
        }
        let Some(meta) = self.sessions.get(id) else {
            return false;
        };
        self.open_session(meta, false);
        self.core.has_session(id)
    }

    pub(super) fn open_session(&mut self, meta: SessionMeta, recovering: bool) {
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
        self.masters.open(&meta);
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
    pub(super) fn follow_parts(
        &mut self,
        meta: &SessionMeta,
        chid: &ChannelId,
        entries: &[journal::Entry],
    ) {
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
    pub(super) fn capture_files(
        &self,
        id: &str,
        entries: &[journal::Entry],
    ) -> HashMap<u64, Location> {
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
                let found = machine::disk::candidates(spool)
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

    pub(super) fn rescan_all(&mut self) {
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
    pub(super) fn rescan_dir(&mut self, id: &str) {
        if !self.core.has_session(id) {
            return;
        }
        let dir = self.hls_dir.join(id);
        let entries = self.nginx_playlist(id).unwrap_or_default();
        let live = self.sessions.is_live(id);
        let files = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_owned));
        for name in machine::disk::closed_fragments(files, &entries, live) {
            self.closed(id, &dir.join(&name));
        }
        if dir.join("index.m3u8").exists() {
            self.read_playlist(id);
        }
    }

    /// nginx closed a fragment: the core decides whether and where to
    /// capture it.
    pub(super) fn closed(&mut self, id: &str, path: &Path) {
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

    pub(super) fn nginx_playlist(&self, id: &str) -> Option<Vec<crate::hls::NginxEntry>> {
        let path = self.hls_dir.join(id).join("index.m3u8");
        let (bytes, _) = crate::nofollow::read_nofollow(&path).ok()?;
        match crate::hls::parse_nginx(&bytes) {
            Ok(e) => Some(e),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "unparsable nginx playlist");
                None
            }
        }
    }

    pub(super) fn read_playlist(&mut self, id: &str) {
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
    pub(super) fn finish(&mut self, id: &str) {
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
