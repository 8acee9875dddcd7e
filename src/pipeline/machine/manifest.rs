//! A session's VOD manifests (see `crate::index`), in chunks, and the
//! journal they let it forget.

use tracing::error;

use super::Core;
use super::session::{Bytes, Capture};
use super::types::{Effect, Job, Location, Ms};
use crate::pipeline::journal::Entry;

impl Core {
    pub(super) fn upload_manifest(&mut self, id: &str, ended: bool, now: Ms, fx: &mut Vec<Effect>) {
        let chunk = self.cfg.manifest_chunk;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.manifest.uploading {
            return;
        }
        let start = s.manifest.chunk_start;
        let count = s.published.min(start + chunk);
        if count <= start && start > 0 {
            // Nothing since the last full chunk (or, after a restart, the
            // saved playlist is behind it): that object stands as the
            // session's last (`ended` is informational; nothing reads it).
            s.manifest.stored_final |= ended;
            return;
        }
        let full = count - start == chunk;
        // The session's last object says so; earlier full chunks do not.
        let ended = ended && count == s.published;
        // The first chunk is keyed by the session's start, later ones by
        // their first fragment, so keys stay in time order.
        let chunk_ms = match start {
            0 => Some(s.meta.started_ms),
            i => s.seg(i).map(|g| g.key),
        };
        let Some(chunk_ms) = chunk_ms else {
            error!(session = %crate::session::log_tag(id), start, base = s.base, "manifest chunk start forgotten; not uploaded");
            return;
        };
        let manifest = crate::index::Manifest {
            version: 1,
            // Not the session id, which names the session's stream in
            // nginx's internal application: the bucket's readers get an id
            // that cannot be turned back into it.
            session: crate::session::recording_id(&s.meta.id),
            channel: s.meta.channel.clone(),
            started_ms: s.meta.started_ms,
            ended,
            fragments: (start..count)
                .filter_map(|i| s.seg(i))
                .map(|g| crate::index::IndexedFragment {
                    k: g.key,
                    d: g.duration_ms,
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
        s.manifest.uploading = true;
        s.manifest.last_upload = Some(now);
        fx.push(Effect::Upload(Job::Manifest {
            session: id.to_owned(),
            key_id: s.meta.key_id.clone(),
            bucket: s.meta.bucket.clone(),
            channel: s.channel.clone(),
            object: crate::index::manifest_key(
                &s.meta.channel,
                chunk_ms,
                &crate::session::recording_id(&s.meta.id),
            ),
            body,
            count,
            full,
            ended,
        }));
    }
    pub(super) fn manifest_stored(
        &mut self,
        id: &str,
        count: usize,
        full: bool,
        ended: bool,
        fx: &mut Vec<Effect>,
    ) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        s.manifest.uploading = false;
        s.manifest.stored_count = s.manifest.stored_count.max(count);
        s.manifest.stored_final |= ended;
        if full && count > s.manifest.chunk_start {
            s.manifest.chunk_start = count;
            // The closed chunk is in the bucket: forget it here and in the
            // journal, so neither grows with the session.
            s.prune();
            s.forget_before(count);
            // Saved first: its window then vouches for what the journal
            // forgets (`save.rs`).
            self.unsaved.remove(&s.channel);
            fx.push(Effect::SaveChannel(s.channel.clone()));
            fx.push(Effect::CompactJournal {
                session: id.to_owned(),
            });
        }
        let Some(version) = s.ending_version else {
            return;
        };
        let now = s.last_activity;
        if !s.manifest.stored_final {
            self.upload_manifest(id, true, now, fx);
            self.finish_if_stored(id, fx);
        } else if s.settled()
            && self
                .channels
                .get(&s.channel)
                .is_some_and(|c| c.live.stored_version >= version)
        {
            self.finish(id, fx);
        }
    }
    /// What the session's journal must hold: a checkpoint for what was
    /// forgotten, then every capture, listing and store still relevant.
    pub(crate) fn journal_of(&self, id: &str) -> Option<Vec<Entry>> {
        let s = self.sessions.get(id)?;
        let mut out = vec![Entry::Checkpoint {
            base: s.base as u64,
            chunk_start: s.manifest.chunk_start as u64,
            last_seq: s.last_seq,
            last_key: s.last_key,
            estimated: s.estimated.iter().cloned().collect(),
        }];
        let captured = |c: &Capture| Entry::Captured {
            name: c.name.clone(),
            key: c.key,
            size: c.ident.size,
            mtime_ns: c.ident.mtime_ns,
            spool: c.bytes == Bytes::At(Location::Spool),
        };
        // Listings in nginx's order (keys need not follow it), each after
        // its capture if that is still held (a pruned one is stored and
        // published).
        for g in &s.segs {
            if let Some(c) = s.captures.iter().find(|c| c.key == g.key) {
                out.push(captured(c));
            }
            out.push(Entry::Listed {
                key: g.key,
                extinf: g.extinf.clone(),
                duration_ms: g.duration_ms,
                seq: g.seq,
            });
            if g.stored {
                out.push(Entry::Stored { key: g.key });
            }
        }
        // Captures not matched yet. (A pending one's outcome comes before
        // the next journal line anyway.)
        for c in s
            .captures
            .iter()
            .filter(|c| c.bytes != Bytes::Pending && !s.segs.iter().any(|g| g.key == c.key))
        {
            out.push(captured(c));
            if c.bytes == Bytes::Stored {
                out.push(Entry::Stored { key: c.key });
            }
        }
        Some(out)
    }
}
