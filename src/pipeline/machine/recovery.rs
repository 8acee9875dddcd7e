//! Rebuilding a session from its journal after a restart, without I/O: the
//! caller says which capture files exist; this decides what they are, and
//! [`Core`]'s `Input::Recover` asks again for the uploads the crash lost.

use std::collections::{HashMap, HashSet};

use tracing::info;

use super::session::{Bytes, Capture, Seg, SessionState};
use super::types::{Effect, Location, Ms};
use super::{Core, fragment_job};
use crate::live::ChannelLive;
use crate::pipeline::capture::Identity;
use crate::pipeline::journal::Entry;
use crate::session::SessionMeta;

impl Core {
    /// A session found on disk at start: rebuilt from its journal, its
    /// unstored listed fragments handed to the uploader again, ended if
    /// nginx no longer has its publisher, and its stored prefix published.
    pub(super) fn recover(
        &mut self,
        meta: SessionMeta,
        entries: Vec<Entry>,
        (files, media): (&HashMap<u64, Location>, &HashMap<u64, u64>),
        live: bool,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        if self.sessions.contains_key(&meta.id) {
            return;
        }
        let mut s = SessionState::new(meta, now);
        let ch = self.channels.entry(s.channel.clone()).or_default();
        replay(&mut s, entries, Found { files, media }, &mut ch.live, fx);
        info!(
            session = %crate::session::log_tag(&s.meta.id),
            captured = s.captures.len(),
            listed = s.listed(),
            "session recovered from journal"
        );
        let id = s.meta.id.clone();
        for seg in s.segs.iter().filter(|g| !g.stored) {
            if let Some(c) = s.captures.iter().find(|c| c.key == seg.key)
                && let Bytes::At(at) = c.bytes
            {
                fx.push(fragment_job(&s.meta, c, seg, at));
            }
        }
        if !live {
            s.done_at = Some(now);
        }
        self.sessions.insert(id.clone(), s);
        self.advance(&id, now, fx);
    }
}

/// What the actor found of a session's journaled captures, by key.
#[derive(Clone, Copy)]
pub(super) struct Found<'a> {
    /// Where each capture file that exists is.
    pub files: &'a HashMap<u64, Location>,
    /// The duration from their timestamps of those that have any.
    pub media: &'a HashMap<u64, u64>,
}

/// Fills `s` from the journal `entries` and what was `found` on disk.
/// Capture files of stored fragments are removed (effects pushed to `fx`).
pub(super) fn replay(
    s: &mut SessionState,
    entries: Vec<Entry>,
    found: Found<'_>,
    ch: &mut ChannelLive,
    fx: &mut Vec<Effect>,
) {
    let stored: HashSet<u64> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Stored { key } => Some(*key),
            _ => None,
        })
        .collect();
    for e in entries {
        match e {
            Entry::Checkpoint {
                base,
                chunk_start,
                last_seq,
                last_key,
                estimated,
            } => {
                s.estimated.extend(estimated);
                let base = usize::try_from(base).unwrap_or(usize::MAX);
                let chunk_start = usize::try_from(chunk_start).unwrap_or(base).max(base);
                s.base = base;
                s.published = base;
                s.manifest.chunk_start = chunk_start;
                s.manifest.stored_count = chunk_start;
                s.last_seq = last_seq;
                s.last_key = s.last_key.max(last_key);
                ch.last_key_ms = ch.last_key_ms.max(last_key);
            }
            Entry::Captured {
                name,
                key,
                size,
                mtime_ns,
                ..
            } => {
                ch.last_key_ms = ch.last_key_ms.max(key);
                s.last_key = s.last_key.max(key);
                let file = found.files.get(&key).copied();
                let bytes = if stored.contains(&key) {
                    if let Some(at) = file {
                        fx.push(Effect::RemoveCapture {
                            session: s.meta.id.clone(),
                            key,
                            at,
                        });
                    }
                    Bytes::Stored
                } else if let Some(at) = file {
                    Bytes::At(at)
                } else {
                    // The crash came between the journal line and the copy:
                    // forget this capture; the rescan captures nginx's file
                    // again under a new key.
                    continue;
                };
                s.captures.push(session_capture(
                    name,
                    key,
                    Identity { size, mtime_ns },
                    bytes,
                    found.media.get(&key).copied(),
                ));
            }
            Entry::Listed {
                key,
                extinf,
                duration_ms,
                seq,
            } => {
                // A compacted journal lists by key, not by nginx's order.
                s.last_seq = s.last_seq.max(seq);
                let known = match s.capture_mut(key) {
                    Some(c) => {
                        c.assigned = true;
                        if seq.is_none() {
                            let name = c.name.clone();
                            s.estimated.insert(name);
                        }
                        true
                    }
                    // After compaction a published fragment's capture may be
                    // gone; it is stored and still in the manifest chunk.
                    None => stored.contains(&key),
                };
                if known {
                    s.segs.push_back(session_seg(
                        key,
                        seq,
                        extinf,
                        duration_ms,
                        stored.contains(&key),
                    ));
                }
            }
            Entry::Stored { .. } => {}
        }
    }
    // Fragments already in the saved playlist were published before the
    // crash; state saved before that count existed: those keyed up to the
    // window's last.
    s.published = match ch.published.get(&s.meta.id) {
        Some(&n) => n.clamp(s.base, s.listed()),
        None => {
            let last_published = ch.window.back().map(|w| w.key_ms);
            s.base
                + s.segs
                    .iter()
                    .take_while(|g| last_published.is_some_and(|k| g.key <= k))
                    .count()
        }
    };
}

/// A capture as recovery rebuilds it.
fn session_capture(
    name: String,
    key: u64,
    ident: Identity,
    bytes: Bytes,
    media_ms: Option<u64>,
) -> Capture {
    Capture {
        name,
        key,
        ident,
        bytes,
        assigned: false,
        original_removed: false,
        media_ms,
        keyframe_start: None,
    }
}

/// A listed fragment as recovery rebuilds it.
fn session_seg(key: u64, seq: Option<u64>, extinf: String, duration_ms: u64, stored: bool) -> Seg {
    Seg {
        key,
        seq,
        extinf,
        duration_ms,
        stored,
    }
}
