//! Each LL channel's parts beside its stored live window, and the
//! [`LlPlaylist`] built from them, published on a `tokio::sync::watch`
//! channel that `/play`'s blocking reloads wait on.
//!
//! Writers: the pipeline actor (the stored window at every playlist upload,
//! and which object key each nginx fragment was captured to) and each
//! session's [`super::follow`] task (parts cut, stored, failed, fragments
//! complete). Every change rebuilds the model under one short lock and
//! wakes the waiters only when the model changed.
//!
//! Which fragment is the segment in progress: the window's last segment
//! while its parts are still being cut or stored (none failed), since its
//! object can be stored a moment before its last part; otherwise the first
//! fragment not captured at or before the window's last whose predecessor
//! in nginx's playlist is the window's last segment (or that is its
//! session's first). So while a closed fragment's object or parts are not
//! stored, it stays in progress, and the next fragment's parts wait: no
//! part is ever numbered against the wrong segment, and parts once listed
//! stay listed until they age out. A
//! fragment's parts are listed only as a contiguous run of stored objects
//! from its first; one failed part withdraws them all. Parts of stored
//! segments are listed while the segment ends within three target
//! durations of the playlist's end, then marked dropped; their objects are
//! deleted by the follower after a grace period.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::playlist::{LlPlaylist, Part, Segment, Tail};
use crate::live::{ChannelId, ChannelLive, WindowSeg};

/// What comes before a fragment in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prev {
    /// The session's first fragment.
    First,
    /// The fragment nginx listed before it (its name's ms).
    After(u64),
}

/// The stored live window, as last uploaded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Base {
    pub target_duration: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub window: Vec<WindowSeg>,
    pub ended: bool,
}

impl Base {
    /// The window `live` describes, with its target duration (raised, as
    /// the stored playlist's is, to its longest segment).
    pub(crate) fn of(live: &ChannelLive, target_duration: u64) -> Base {
        Base {
            target_duration: target_duration.max(crate::hls::target_duration_of(
                live.window.iter().map(|w| w.duration_ms),
            )),
            media_sequence: live.media_sequence(),
            discontinuity_sequence: live.discontinuity_sequence,
            window: live.window.iter().cloned().collect(),
            ended: live.ended,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Pending(Part),
    Stored(Part),
    Failed,
}

#[derive(Debug, Default)]
struct Frag {
    /// The object key (ms) the pipeline captured it to.
    key: Option<u64>,
    prev: Option<Prev>,
    slots: Vec<Slot>,
    complete: bool,
    dropped_at: Option<Instant>,
    deleted: bool,
}

impl Frag {
    fn broken(&self) -> bool {
        self.slots.contains(&Slot::Failed)
    }

    /// The stored parts from the first, up to the first not stored.
    fn listed(&self) -> Vec<Part> {
        if self.broken() || self.deleted {
            return Vec::new();
        }
        self.slots
            .iter()
            .map_while(|s| match s {
                Slot::Stored(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// The follower cuts it, and parts are still to be cut or stored, none
    /// failed: its part list is not final yet.
    fn settling(&self) -> bool {
        self.prev.is_some()
            && !self.broken()
            && !self.deleted
            && (!self.complete || self.slots.iter().any(|s| matches!(s, Slot::Pending(_))))
    }

    fn whole(&self) -> Vec<Part> {
        let parts = self.listed();
        if self.complete && parts.len() == self.slots.len() {
            parts
        } else {
            Vec::new()
        }
    }
}

struct Chan {
    tx: watch::Sender<Arc<LlPlaylist>>,
    part_target_ms: u64,
    base: Option<Base>,
    /// The sessions cutting parts for it; the channel goes with the last.
    sessions: HashSet<String>,
    /// By session and nginx fragment name (ms).
    frags: BTreeMap<(String, u64), Frag>,
}

impl Chan {
    /// Rebuilds the model; marks fragments whose parts left it as dropped.
    fn rebuild(&mut self, now: Instant) {
        let Some(base) = &self.base else { return };
        let by_key: HashMap<u64, &Frag> = self
            .frags
            .values()
            .filter_map(|f| f.key.map(|k| (k, f)))
            .collect();
        let stored: HashSet<u64> = base.window.iter().map(|w| w.key_ms).collect();
        let last_key = base.window.last().map(|w| w.key_ms);
        let tail = if base.ended {
            None
        } else {
            self.frags
                .iter()
                .find(|((session, _), f)| {
                    // A fragment stored, or captured before the window's
                    // last (one that has left the window keeps its entry
                    // until its parts are deleted), is never in progress.
                    let passed = f
                        .key
                        .is_some_and(|k| stored.contains(&k) || last_key.is_some_and(|l| k <= l));
                    !passed
                        && match f.prev {
                            Some(Prev::First) => true,
                            Some(Prev::After(p)) => self
                                .frags
                                .get(&(session.clone(), p))
                                .and_then(|pf| pf.key)
                                .is_some_and(|k| Some(k) == last_key),
                            None => false,
                        }
                })
                .map(|(_, f)| Tail {
                    discontinuity: f.prev == Some(Prev::First) && !base.window.is_empty(),
                    parts: f.listed(),
                })
        };
        // The window's last segment stays in progress while its parts are
        // still being cut or stored: its object can be stored a moment
        // before its last part, and listing it without parts in between
        // would take back parts a player already loaded.
        let held = base
            .window
            .last()
            .filter(|_| !base.ended)
            .and_then(|w| Some((w, *by_key.get(&w.key_ms)?)))
            .filter(|(_, f)| f.settling());
        let (window, tail) = match held {
            Some((w, f)) => (
                &base.window[..base.window.len() - 1],
                Some(Tail {
                    discontinuity: w.discontinuity,
                    parts: f.listed(),
                }),
            ),
            None => (&base.window[..], tail),
        };
        let tail_ms: u64 = tail
            .as_ref()
            .map_or(0, |t| t.parts.iter().map(|p| p.duration_ms).sum());
        // Parts are kept for segments ending within three target durations
        // of the playlist's end.
        let keep_ms = 3 * base.target_duration * 1000;
        let mut from_end = tail_ms;
        let mut segments: Vec<Segment> = Vec::with_capacity(window.len());
        for w in window.iter().rev() {
            let parts = if from_end < keep_ms && !base.ended {
                by_key.get(&w.key_ms).map_or_else(Vec::new, |f| f.whole())
            } else {
                Vec::new()
            };
            from_end += w.duration_ms;
            segments.push(Segment {
                uri: crate::layout::fragment_name(w.key_ms),
                extinf: w.extinf.clone(),
                duration_ms: w.duration_ms,
                discontinuity: w.discontinuity,
                program_date_time_ms: w.program_date_time_ms,
                parts,
            });
        }
        segments.reverse();
        let shown: HashSet<u64> = segments
            .iter()
            .filter(|s| !s.parts.is_empty())
            .filter_map(|s| crate::layout::parse_fragment_name(&s.uri))
            .collect();
        for f in self.frags.values_mut() {
            let settled = f.complete || f.broken();
            let passed = f.key.is_some_and(|k| last_key.is_some_and(|l| k <= l));
            if settled && passed && !f.key.is_some_and(|k| shown.contains(&k)) {
                f.dropped_at.get_or_insert(now);
            }
        }
        // Fragments that left the window with no part objects left.
        let first_key = base.window.first().map_or(0, |w| w.key_ms);
        self.frags.retain(|_, f| {
            !(f.key.is_some_and(|k| k < first_key) && (f.deleted || f.slots.is_empty()))
        });
        let model = LlPlaylist {
            target_duration: base.target_duration,
            part_target_ms: self.part_target_ms,
            media_sequence: base.media_sequence,
            discontinuity_sequence: base.discontinuity_sequence,
            segments,
            tail,
            ended: base.ended,
        };
        self.tx.send_if_modified(|cur| {
            if **cur == model {
                false
            } else {
                *cur = Arc::new(model);
                true
            }
        });
    }
}

/// Every LL channel of this node.
pub(crate) struct Hub {
    chans: Mutex<HashMap<ChannelId, Chan>>,
    waiters: AtomicUsize,
    max_waiters: usize,
}

/// A blocking reload counted against the cap while it waits.
pub(crate) struct Waiter<'a>(&'a AtomicUsize);

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// A hub that lets at most `max_waiters` blocking reloads wait at once.
    pub(crate) fn new(max_waiters: usize) -> Hub {
        Hub {
            chans: Mutex::new(HashMap::new()),
            waiters: AtomicUsize::new(0),
            max_waiters,
        }
    }

    fn with<R>(&self, chid: &ChannelId, f: impl FnOnce(&mut Chan) -> R) -> Option<R> {
        let mut chans = self.chans.lock().unwrap_or_else(|p| p.into_inner());
        let chan = chans.get_mut(chid)?;
        let r = f(chan);
        chan.rebuild(Instant::now());
        Some(r)
    }

    fn frag<R>(
        &self,
        chid: &ChannelId,
        session: &str,
        ms: u64,
        f: impl FnOnce(&mut Frag) -> R,
    ) -> Option<R> {
        self.with(chid, |c| {
            f(c.frags.entry((session.to_owned(), ms)).or_default())
        })
    }

    /// `session` cuts parts of at most `part_target_ms` for the channel,
    /// which serves LL playlists until its last such session is forgotten.
    pub(crate) fn register(
        &self,
        chid: &ChannelId,
        session: &str,
        part_target_ms: u64,
        base: Option<Base>,
    ) {
        let mut chans = self.chans.lock().unwrap_or_else(|p| p.into_inner());
        let chan = chans.entry(chid.clone()).or_insert_with(|| Chan {
            tx: watch::Sender::new(Arc::new(LlPlaylist::default())),
            part_target_ms,
            base: None,
            sessions: HashSet::new(),
            frags: BTreeMap::new(),
        });
        chan.sessions.insert(session.to_owned());
        chan.part_target_ms = part_target_ms;
        if chan.base.is_none() {
            chan.base = base;
        }
        chan.rebuild(Instant::now());
    }

    /// Whether the channel is registered.
    pub(crate) fn has(&self, chid: &ChannelId) -> bool {
        self.chans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(chid)
    }

    /// The channel's playlist was stored with this window.
    pub(crate) fn set_base(&self, chid: &ChannelId, base: Base) {
        self.with(chid, |c| c.base = Some(base));
    }

    /// nginx's fragment `ms` of `session` was captured to object key `key`.
    pub(crate) fn map(&self, chid: &ChannelId, session: &str, ms: u64, key: u64) {
        self.frag(chid, session, ms, |f| f.key = Some(key));
    }

    /// The follower began cutting fragment `ms`, which follows `prev`.
    pub(crate) fn begin(&self, chid: &ChannelId, session: &str, ms: u64, prev: Prev) {
        self.frag(chid, session, ms, |f| {
            f.prev = Some(prev);
            f.slots.clear();
            f.complete = false;
        });
    }

    /// Part `index` of fragment `ms` was cut and is being stored.
    pub(crate) fn cut(&self, chid: &ChannelId, session: &str, ms: u64, index: usize, part: Part) {
        self.frag(chid, session, ms, |f| {
            if f.slots.len() == index {
                f.slots.push(Slot::Pending(part));
            }
        });
    }

    /// Part `index` of fragment `ms` was stored (`ok`) or not.
    pub(crate) fn stored(&self, chid: &ChannelId, session: &str, ms: u64, index: usize, ok: bool) {
        self.frag(chid, session, ms, |f| {
            if let Some(slot) = f.slots.get_mut(index) {
                *slot = match (ok, std::mem::replace(slot, Slot::Failed)) {
                    (true, Slot::Pending(p) | Slot::Stored(p)) => Slot::Stored(p),
                    _ => Slot::Failed,
                };
            }
        });
    }

    /// Fragment `ms` is cut whole (every part it will have was cut) or
    /// abandoned (`ok == false`: its parts are never listed).
    pub(crate) fn complete(&self, chid: &ChannelId, session: &str, ms: u64, ok: bool) {
        self.frag(chid, session, ms, |f| {
            f.complete = true;
            if !ok {
                f.slots.push(Slot::Failed);
            }
        });
    }

    /// Fragments of `session` whose parts left the playlist more than
    /// `grace` ago, with their part counts; they are marked deleted.
    pub(crate) fn take_dropped(
        &self,
        chid: &ChannelId,
        session: &str,
        grace: Duration,
    ) -> Vec<(u64, usize)> {
        self.with(chid, |c| {
            let mut out = Vec::new();
            for ((s, ms), f) in c.frags.iter_mut() {
                if s == session && !f.deleted && f.dropped_at.is_some_and(|t| t.elapsed() >= grace)
                {
                    f.deleted = true;
                    out.push((*ms, f.slots.len()));
                }
            }
            out
        })
        .unwrap_or_default()
    }

    /// The session is over: its fragments are forgotten, and the channel
    /// with its last session (`/play` then serves the stored playlist;
    /// blocking reloads still waiting get 503).
    pub(crate) fn forget(&self, chid: &ChannelId, session: &str) {
        let mut chans = self.chans.lock().unwrap_or_else(|p| p.into_inner());
        let Some(chan) = chans.get_mut(chid) else {
            return;
        };
        chan.frags.retain(|(s, _), _| s != session);
        chan.sessions.remove(session);
        if chan.sessions.is_empty() {
            chans.remove(chid);
        } else {
            chan.rebuild(Instant::now());
        }
    }

    /// The sessions with fragments on the channel.
    pub(crate) fn sessions(&self, chid: &ChannelId) -> Vec<String> {
        let chans = self.chans.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<String> = chans
            .get(chid)
            .map(|c| c.frags.keys().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default();
        out.dedup();
        out
    }

    /// The channel's model, once its stored window is known.
    pub(crate) fn subscribe(&self, chid: &ChannelId) -> Option<watch::Receiver<Arc<LlPlaylist>>> {
        let chans = self.chans.lock().unwrap_or_else(|p| p.into_inner());
        let chan = chans.get(chid)?;
        chan.base.as_ref()?;
        Some(chan.tx.subscribe())
    }

    /// A place among the waiting blocking reloads, if one is free.
    pub(crate) fn waiter(&self) -> Option<Waiter<'_>> {
        let n = self.waiters.fetch_add(1, Ordering::Relaxed);
        let w = Waiter(&self.waiters);
        (n < self.max_waiters).then_some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llhls::playlist::Readiness;

    fn chid() -> ChannelId {
        ChannelId {
            bucket: "b".into(),
            channel: "cam".into(),
            playlist: "index.m3u8".into(),
        }
    }

    fn seg(key_ms: u64) -> WindowSeg {
        WindowSeg {
            key_ms,
            extinf: "2.000".into(),
            duration_ms: 2000,
            discontinuity: false,
            program_date_time_ms: None,
        }
    }

    fn base(keys: &[u64], first_seq: u64) -> Base {
        Base {
            target_duration: 2,
            media_sequence: first_seq,
            discontinuity_sequence: 0,
            window: keys.iter().map(|k| seg(*k)).collect(),
            ended: false,
        }
    }

    fn part(i: usize) -> Part {
        Part {
            uri: format!("p{i}"),
            duration_ms: if i == 4 { 80 } else { 480 },
            independent: i == 0,
        }
    }

    fn model(hub: &Hub) -> Arc<LlPlaylist> {
        hub.subscribe(&chid()).unwrap().borrow().clone()
    }

    /// Cuts and stores `n` parts of fragment `ms`.
    fn parts(hub: &Hub, ms: u64, n: usize) {
        for i in 0..n {
            hub.cut(&chid(), "s", ms, i, part(i));
            hub.stored(&chid(), "s", ms, i, true);
        }
    }

    #[test]
    fn a_fragment_is_in_progress_until_its_object_is_stored() {
        let hub = Hub::new(10);
        let c = chid();
        hub.register(&c, "s", 500, Some(base(&[], 0)));
        assert!(model(&hub).tail.is_none());
        hub.begin(&c, "s", 1000, Prev::First);
        parts(&hub, 1000, 2);
        let m = model(&hub);
        assert_eq!(m.next_msn(), 0);
        assert_eq!(m.tail.as_ref().unwrap().parts.len(), 2);
        assert!(!m.tail.as_ref().unwrap().discontinuity, "nothing before it");
        // Closed and captured; the next fragment's parts wait for its object.
        hub.cut(&c, "s", 1000, 2, part(2));
        hub.stored(&c, "s", 1000, 2, true);
        hub.complete(&c, "s", 1000, true);
        hub.map(&c, "s", 1000, 5000);
        hub.begin(&c, "s", 3000, Prev::After(1000));
        parts(&hub, 3000, 1);
        assert_eq!(
            model(&hub).tail.as_ref().unwrap().parts.len(),
            3,
            "still 1000"
        );
        hub.set_base(&c, base(&[5000], 0));
        let m = model(&hub);
        assert_eq!(
            m.segments[0].parts.len(),
            3,
            "the stored segment keeps its parts"
        );
        assert_eq!(m.next_msn(), 1);
        assert_eq!(m.tail.as_ref().unwrap().parts, vec![part(0)]);
    }

    #[test]
    fn a_failed_part_withdraws_the_fragments_parts() {
        let hub = Hub::new(10);
        let c = chid();
        hub.register(&c, "s", 500, Some(base(&[], 0)));
        hub.begin(&c, "s", 1000, Prev::First);
        hub.cut(&c, "s", 1000, 0, part(0));
        hub.cut(&c, "s", 1000, 1, part(1));
        hub.stored(&c, "s", 1000, 1, true);
        assert!(
            model(&hub).tail.as_ref().unwrap().parts.is_empty(),
            "part 0 not stored yet"
        );
        hub.stored(&c, "s", 1000, 0, true);
        assert_eq!(model(&hub).tail.as_ref().unwrap().parts.len(), 2);
        hub.cut(&c, "s", 1000, 2, part(2));
        hub.stored(&c, "s", 1000, 2, false);
        assert!(model(&hub).tail.as_ref().unwrap().parts.is_empty());
    }

    #[test]
    fn parts_leave_with_age_and_are_handed_out_for_deletion_after_the_grace() {
        let hub = Hub::new(10);
        let c = chid();
        hub.register(&c, "s", 500, Some(base(&[], 0)));
        let mut keys = Vec::new();
        let mut prev = Prev::First;
        for i in 0..5u64 {
            let ms = 1000 + i * 2000;
            hub.begin(&c, "s", ms, prev);
            parts(&hub, ms, 5);
            hub.complete(&c, "s", ms, true);
            hub.map(&c, "s", ms, ms + 7);
            keys.push(ms + 7);
            hub.set_base(&c, base(&keys, 0));
            prev = Prev::After(ms);
        }
        let m = model(&hub);
        let with: Vec<bool> = m.segments.iter().map(|s| !s.parts.is_empty()).collect();
        assert_eq!(with, vec![false, false, true, true, true], "the last 6 s");
        assert!(hub.take_dropped(&c, "t", Duration::ZERO).is_empty());
        let dropped = hub.take_dropped(&c, "s", Duration::ZERO);
        assert_eq!(dropped, vec![(1000, 5), (3000, 5)]);
        assert!(
            hub.take_dropped(&c, "s", Duration::ZERO).is_empty(),
            "handed out once"
        );
    }

    #[test]
    fn the_sessions_first_fragment_is_not_in_progress_again_once_it_left_the_window() {
        let hub = Hub::new(10);
        let c = chid();
        hub.register(&c, "s", 500, Some(base(&[], 0)));
        let mut keys = Vec::new();
        let mut prev = Prev::First;
        for i in 0..4u64 {
            let ms = 1000 + i * 2000;
            hub.begin(&c, "s", ms, prev);
            parts(&hub, ms, 5);
            hub.complete(&c, "s", ms, true);
            hub.map(&c, "s", ms, ms + 7);
            keys.push(ms + 7);
            prev = Prev::After(ms);
        }
        // The first segment left the window; its parts are not deleted yet.
        hub.set_base(&c, base(&keys[1..], 1));
        let m = model(&hub);
        assert!(
            m.tail.is_none(),
            "nothing is in progress: the first fragment is not, though it is \
             its session's first and no longer in the window: {m:?}"
        );
        hub.begin(&c, "s", 9000, Prev::After(7000));
        parts(&hub, 9000, 2);
        let m = model(&hub);
        assert_eq!(m.next_msn(), 4);
        let tail = m.tail.as_ref().unwrap();
        assert!(!tail.discontinuity);
        assert_eq!(tail.parts, vec![part(0), part(1)]);
    }

    #[test]
    fn a_segment_stored_before_its_last_part_stays_in_progress_until_its_parts_are() {
        let hub = Hub::new(10);
        let c = chid();
        hub.register(&c, "s", 500, Some(base(&[], 0)));
        hub.begin(&c, "s", 1000, Prev::First);
        parts(&hub, 1000, 4);
        hub.cut(&c, "s", 1000, 4, part(4));
        hub.complete(&c, "s", 1000, true);
        hub.map(&c, "s", 1000, 5000);
        hub.begin(&c, "s", 3000, Prev::After(1000));
        parts(&hub, 3000, 1);
        // The fragment's object is stored before its last part's.
        hub.set_base(&c, base(&[5000], 0));
        let m = model(&hub);
        assert_eq!(m.next_msn(), 0, "segment 0 is still in progress: {m:?}");
        assert_eq!(m.tail.as_ref().unwrap().parts.len(), 4);
        assert_eq!(m.readiness(0, Some(4)), Readiness::Wait);
        hub.stored(&c, "s", 1000, 4, true);
        let m = model(&hub);
        assert_eq!(m.next_msn(), 1);
        assert_eq!(m.segments[0].parts.len(), 5, "whole, with all its parts");
        assert_eq!(m.tail.as_ref().unwrap().parts, vec![part(0)]);
        // A segment whose part failed is listed at once, without parts.
        hub.begin(&c, "s", 3000, Prev::After(1000));
        hub.cut(&c, "s", 3000, 0, part(0));
        hub.stored(&c, "s", 3000, 0, false);
        hub.map(&c, "s", 3000, 7000);
        hub.set_base(&c, base(&[5000, 7000], 0));
        let m = model(&hub);
        assert_eq!(m.next_msn(), 2);
        assert!(m.segments[1].parts.is_empty());
    }

    #[test]
    fn a_new_session_starts_with_a_discontinuity_and_the_waiter_cap_holds() {
        let hub = Hub::new(1);
        let c = chid();
        hub.register(&c, "s", 500, Some(base(&[1], 4)));
        hub.begin(&c, "t", 9000, Prev::First);
        let m = model(&hub);
        assert!(m.tail.as_ref().unwrap().discontinuity);
        assert_eq!(m.next_msn(), 5);
        // The channel stays while one of its sessions does.
        hub.register(&c, "t", 500, None);
        hub.forget(&c, "s");
        assert!(hub.subscribe(&c).is_some());
        hub.forget(&c, "t");
        assert!(!hub.has(&c) && hub.subscribe(&c).is_none());
        let w = hub.waiter();
        assert!(w.is_some());
        assert!(hub.waiter().is_none());
        drop(w);
        assert!(hub.waiter().is_some());
    }
}
