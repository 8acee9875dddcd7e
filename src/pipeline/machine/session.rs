//! One publish session's fragments: captured, matched to nginx's playlist,
//! stored, published. Only the fragments still in flight and the current
//! manifest chunk are kept, so memory does not grow with the session.

use std::collections::VecDeque;

use crate::layout::name_ms;
use crate::live::ChannelId;
use crate::pipeline::capture::Identity;
use crate::session::SessionMeta;

use super::types::{Location, Ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bytes {
    /// The capture was asked for; its outcome has not come back.
    Pending,
    At(Location),
    Stored,
}

#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub name: String,
    pub key: u64,
    pub ident: Identity,
    pub bytes: Bytes,
    /// Matched to a playlist entry (or estimated): it has a duration.
    pub assigned: bool,
    /// nginx's own file is gone (or was never ours to remove).
    pub original_removed: bool,
    /// Its duration from its own timestamps ([`crate::pipeline::timestamps`]),
    /// measured once its bytes are safe; what a fragment nginx never lists
    /// gets as its duration.
    pub media_ms: Option<u64>,
    /// Whether its first video frame is a keyframe, read with `media_ms`;
    /// `None` without video, when unreadable, or after a restart.
    pub keyframe_start: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seg {
    pub key: u64,
    /// nginx's media sequence number; `None`: duration estimated.
    pub seq: Option<u64>,
    pub extinf: String,
    pub duration_ms: u64,
    pub stored: bool,
}

/// The session's VOD manifest in the bucket (see `crate::index`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ManifestState {
    pub uploading: bool,
    /// Fragments (absolute index) listed by the stored manifests.
    pub stored_count: usize,
    pub stored_final: bool,
    pub last_upload: Option<Ms>,
    /// Absolute index where the manifest object being written starts.
    pub chunk_start: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct SessionState {
    pub meta: SessionMeta,
    pub channel: ChannelId,
    pub captures: Vec<Capture>,
    /// `segs[i]` is the session's fragment number `base + i`, in listing
    /// order; those before `base` are in stored manifests and forgotten.
    pub segs: VecDeque<Seg>,
    pub base: usize,
    /// Fragments (absolute count) in the channel window.
    pub published: usize,
    /// Highest nginx media sequence number already matched.
    pub last_seq: Option<u64>,
    /// Highest key handed out in this session (kept across compaction).
    pub last_key: u64,
    pub last_activity: Ms,
    pub done_at: Option<Ms>,
    /// The channel version whose upload finishes this session.
    pub ending_version: Option<u64>,
    /// Ended for lack of fragments while nginx still had the publisher.
    pub idle_ended: bool,
    pub manifest: ManifestState,
    /// Names matched with an estimated duration before nginx listed them
    /// (a stalled publisher's last fragment): nginx listing one later is no
    /// news. Only such fragments, so a handful.
    pub estimated: std::collections::BTreeSet<String>,
    /// A fragment that does not fit the target duration was logged
    /// (`fit.rs`): once per session is enough.
    pub misfit_warned: bool,
}

impl SessionState {
    pub(crate) fn new(meta: SessionMeta, now: Ms) -> SessionState {
        let channel = ChannelId {
            bucket: meta.bucket.clone(),
            channel: meta.channel.clone(),
            playlist: meta.playlist.clone(),
        };
        SessionState {
            meta,
            channel,
            captures: Vec::new(),
            segs: VecDeque::new(),
            base: 0,
            published: 0,
            last_seq: None,
            last_key: 0,
            last_activity: now,
            done_at: None,
            ending_version: None,
            idle_ended: false,
            manifest: ManifestState::default(),
            estimated: Default::default(),
            misfit_warned: false,
        }
    }

    /// Fragments (absolute count) ever listed.
    pub(crate) fn listed(&self) -> usize {
        self.base + self.segs.len()
    }

    pub(crate) fn seg(&self, abs: usize) -> Option<&Seg> {
        abs.checked_sub(self.base).and_then(|i| self.segs.get(i))
    }

    pub(crate) fn is_captured(&self, name: &str, ident: &Identity) -> bool {
        self.captures
            .iter()
            .any(|c| c.name == name && c.ident == *ident)
    }

    /// The first capture of `name` not yet matched to a playlist entry.
    pub(crate) fn unassigned(&self, name: &str) -> Option<usize> {
        self.captures
            .iter()
            .position(|c| c.name == name && !c.assigned && c.bytes != Bytes::Pending)
    }

    pub(crate) fn capture_mut(&mut self, key: u64) -> Option<&mut Capture> {
        self.captures.iter_mut().find(|c| c.key == key)
    }

    /// The oldest unmatched capture that nginx wrote before `before` and
    /// does not list (`listed`), with its duration: measured from its own
    /// timestamps; only a file without any (not playable anyway) gets the
    /// gap to the next fragment's name, or else `default_ms`. A cut-short
    /// fragment is as long as its media, not as the gap between names.
    /// "Before" is by name when both names carry a time
    /// (a capture made late, for a missed event, has a later key than
    /// fragments written after it), else by key.
    pub(crate) fn orphan_before(
        &self,
        before: &Capture,
        listed: &[&str],
        default_ms: u64,
    ) -> Option<(usize, u64)> {
        let before_ms = name_ms(&before.name);
        let i = self.captures.iter().position(|c| {
            !c.assigned
                && c.bytes != Bytes::Pending
                && !listed.contains(&c.name.as_str())
                && match (name_ms(&c.name), before_ms) {
                    (Some(a), Some(b)) => a < b,
                    _ => c.key < before.key,
                }
        })?;
        if let Some(ms) = self.captures[i].media_ms {
            return Some((i, ms.clamp(1, 60_000)));
        }
        let this = name_ms(&self.captures[i].name);
        let next = self
            .captures
            .iter()
            .filter_map(|c| name_ms(&c.name))
            .filter(|&n| this.is_some_and(|t| n > t))
            .min();
        let duration = match (this, next) {
            (Some(t), Some(n)) => (n - t).clamp(1, 60_000),
            _ => default_ms,
        };
        Some((i, duration))
    }

    /// Marks fragment `key` stored; its bytes' location before, if any.
    pub(crate) fn mark_stored(&mut self, key: u64) -> Option<Bytes> {
        // Keys grow in listing order, so a binary search finds it; the
        // scan stays as a fallback should that ever not hold.
        let found = self
            .segs
            .binary_search_by_key(&key, |s| s.key)
            .ok()
            .or_else(|| self.segs.iter().position(|s| s.key == key));
        if let Some(i) = found {
            self.segs[i].stored = true;
        }
        let c = self.capture_mut(key)?;
        Some(std::mem::replace(&mut c.bytes, Bytes::Stored))
    }

    /// Forgets captures that are done with (stored, matched, nginx's copy
    /// gone, published), so a long session keeps only what is in flight.
    pub(crate) fn prune(&mut self) {
        let Some(last) = self
            .published
            .checked_sub(1)
            .and_then(|i| self.seg(i))
            .map(|s| s.key)
        else {
            return;
        };
        self.captures.retain(|c| {
            !(c.assigned && c.bytes == Bytes::Stored && c.original_removed && c.key <= last)
        });
    }

    /// Forgets listed fragments before `abs` (in stored manifests) whose
    /// capture is pruned; one still held (nginx's copy not yet gone) keeps
    /// its listing, so the journal can still say it was matched.
    pub(crate) fn forget_before(&mut self, abs: usize) {
        let abs = abs.min(self.published);
        while self.base < abs
            && self
                .segs
                .front()
                .is_some_and(|g| !self.captures.iter().any(|c| c.key == g.key))
        {
            self.segs.pop_front();
            self.base += 1;
        }
    }

    /// Nothing in flight: every capture matched, stored and published.
    pub(crate) fn settled(&self) -> bool {
        self.published == self.listed()
            && self
                .captures
                .iter()
                .all(|c| c.assigned && c.bytes == Bytes::Stored)
    }

    /// The wall-clock time the fragment's name gives, if any.
    pub(crate) fn name_ms_of(&self, key: u64) -> Option<u64> {
        self.captures
            .iter()
            .find(|c| c.key == key)
            .and_then(|c| name_ms(&c.name))
    }
}
