//! nginx's playlist, matched to captures: each new entry gives its capture
//! a duration and a place in the session (journaled, then uploaded); a
//! capture nginx never lists gets an estimated duration once a later one is
//! listed or the session ends; nginx's own copies leave once their bytes
//! are elsewhere and nginx's window moved past them.

use tracing::{error, info, warn};

use super::session::{Bytes, Capture, Seg};
use super::types::{Effect, Location, Ms};
use super::{Core, fragment_job};
use crate::hls::NginxEntry;
use crate::pipeline::capture::Identity;
use crate::pipeline::journal::Entry;

impl Core {
    pub(super) fn playlist(
        &mut self,
        id: &str,
        entries: Vec<NginxEntry>,
        probed: bool,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let last_seq = s.last_seq;
        let fresh = |e: &&NginxEntry| last_seq.is_none_or(|l| e.seq > l);
        if !probed {
            // Listed but never seen closed (a missed event): look first.
            let names: Vec<String> = entries
                .iter()
                .filter(fresh)
                .filter(|e| s.unassigned(&e.uri).is_none() && !s.estimated.contains(&e.uri))
                .map(|e| e.uri.clone())
                .collect();
            if !names.is_empty() {
                fx.push(Effect::Probe {
                    session: id.to_owned(),
                    names,
                    entries,
                });
                return;
            }
        }
        let default_ms = self.shape(&s.meta).target_duration_secs * 1000;
        let names: Vec<&str> = entries.iter().map(|e| e.uri.as_str()).collect();
        for e in entries.iter().filter(fresh) {
            let Some(s) = self.sessions.get_mut(id) else {
                return;
            };
            s.last_seq = Some(e.seq);
            match s.unassigned(&e.uri) {
                Some(i) => {
                    let key = s.captures[i].key;
                    let this = s.captures[i].clone();
                    self.assign_orphans_before(id, Some((&this, &names)), default_ms, fx);
                    self.assign(id, key, e.extinf.clone(), e.duration_ms, Some(e.seq), fx);
                }
                None if s.estimated.remove(&e.uri) => {}
                None => {
                    error!(session = %crate::session::log_tag(id), fragment = %e.uri, "nginx listed a fragment that is gone; it cannot be uploaded");
                    fx.push(Effect::Count("livebucket_fragments_lost_total"));
                }
            }
        }
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        // Fragments that left nginx's window are no longer needed in its
        // directory once their bytes are elsewhere.
        for c in s
            .captures
            .iter_mut()
            .filter(|c| c.assigned && !c.original_removed)
        {
            // nginx's file is the only copy until stored: it goes at a
            // later playlist update.
            if !entries.iter().any(|e| e.uri == c.name) && c.bytes != Bytes::At(Location::Nginx) {
                fx.push(Effect::RemoveNginxCopy {
                    session: id.to_owned(),
                    name: c.name.clone(),
                    ident: c.ident,
                });
                c.original_removed = true;
            }
        }
        s.last_activity = now;
        s.prune();
    }

    /// Captures written before `before` that nginx does not list (they
    /// left its window while livebucket was down) get estimated durations;
    /// `None`: every unmatched capture (the session is ending).
    pub(super) fn assign_orphans_before(
        &mut self,
        id: &str,
        before: Option<(&Capture, &[&str])>,
        default_ms: u64,
        fx: &mut Vec<Effect>,
    ) {
        let last = Capture {
            name: String::new(),
            key: u64::MAX,
            ident: Identity {
                size: 0,
                mtime_ns: 0,
            },
            bytes: Bytes::Pending,
            assigned: false,
            original_removed: false,
            media_ms: None,
            keyframe_start: None,
        };
        let (before, listed) = before.unwrap_or((&last, &[]));
        while let Some((i, duration_ms)) = self
            .sessions
            .get(id)
            .and_then(|s| s.orphan_before(before, listed, default_ms))
        {
            let Some(s) = self.sessions.get(id) else {
                return;
            };
            let key = s.captures[i].key;
            let c = &s.captures[i];
            let tag = crate::session::log_tag(id);
            if c.media_ms.is_some() {
                info!(session = %tag, fragment = %c.name, duration_ms, "fragment never listed by nginx; duration from its timestamps");
            } else {
                warn!(session = %tag, fragment = %c.name, duration_ms, "fragment never listed by nginx and without timestamps; duration estimated from names");
            }
            let extinf = format!("{}.{:03}", duration_ms / 1000, duration_ms % 1000);
            let name = s.captures[i].name.clone();
            self.assign(id, key, extinf, duration_ms, None, fx);
            if let Some(s) = self.sessions.get_mut(id) {
                s.estimated.insert(name);
            }
        }
    }

    fn assign(
        &mut self,
        id: &str,
        key: u64,
        extinf: String,
        duration_ms: u64,
        seq: Option<u64>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let Some(c) = s.capture_mut(key) else {
            return;
        };
        c.assigned = true;
        let bytes = c.bytes;
        fx.push(Effect::Journal {
            session: id.to_owned(),
            entry: Entry::Listed {
                key,
                extinf: extinf.clone(),
                duration_ms,
                seq,
            },
        });
        let seg = Seg {
            key,
            seq,
            extinf,
            duration_ms,
            stored: false,
        };
        if let Bytes::At(at) = bytes
            && let Some(c) = s.captures.iter().find(|c| c.key == key)
        {
            fx.push(fragment_job(&s.meta, c, &seg, at));
        }
        s.segs.push_back(seg);
        // Only nginx's own durations: an estimate says nothing of the encoder.
        if seq.is_some() {
            self.check_fit(id, key, duration_ms, fx);
        }
    }
}
