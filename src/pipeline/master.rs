//! When a channel's master playlist (`CHANNEL/master.m3u8`) is written and
//! what it lists; the actor feeds it what happens to the sessions of a push
//! with renditions and uploads what it returns. No I/O.
//!
//! A *push* is a source session whose `renditions` are not empty, with the
//! rendition sessions whose `variant.of` names it (a rung restarted after
//! its transcoder died is a new session of the same rung). Sessions of
//! channels without renditions never reach this file's state.
//!
//! - A variant's rate ([`Rate`]) counts every fragment of its sessions once
//!   S3 has it; its probe is taken from a captured fragment.
//! - The first master is written once every variant with a live session
//!   has a stored fragment and a probe; later ones when the set of variants
//!   changes or a measured value moves materially
//!   ([`crate::master::materially_changed`]).
//! - A rung whose last session ends while the source is live (dropped for
//!   lag or out of restarts) leaves the master. When the source's publish
//!   ends the set is frozen: the rungs stopped with it stay listed, and so
//!   do the rungs of a source recovered as ended after a restart.
//! - When every session of the push has finished, the final master is
//!   written (if it differs from the last) and the push is forgotten.
//!
//! A push whose master would be rewritten after a newer push of the same
//! channel opened (its last fragments stored late) leaves the newer one's
//! master alone.
//!
//! After a restart only the fragments stored since count: the rates of a
//! recovered push start again from its next stored fragment.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::live::ChannelId;
use crate::master::probe::Probe;
use crate::master::{MASTER, Rate, StreamInf, materially_changed, render};
use crate::session::SessionMeta;

/// A master to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterWrite {
    /// The source's channel, with [`MASTER`] as its playlist.
    pub channel: ChannelId,
    pub key_id: String,
    pub body: String,
    /// Grows with every write of this node, so the uploader keeps the newest.
    pub version: u64,
}

/// One variant of a push: `None` is the source.
type VariantName = Option<String>;

#[derive(Debug, Default)]
struct Variant {
    live: HashSet<String>,
    probe: Option<Probe>,
    rate: Rate,
    /// Listed in the master (a rung leaves when dropped mid-push).
    listed: bool,
}

#[derive(Debug)]
struct Push {
    bucket: String,
    channel: String,
    playlist: String,
    key_id: String,
    source_ended: bool,
    variants: BTreeMap<VariantName, Variant>,
    /// Sessions of the push not yet finished.
    sessions: HashSet<String>,
    written: Option<Vec<StreamInf>>,
    /// When it was opened, among this node's pushes: a later push of the
    /// same channel owns its master.
    opened: u64,
}

impl Push {
    /// The master's entries now: every listed variant with a probe and a
    /// rate. `None` while a listed, live variant still lacks either (the
    /// first master waits for all of them), unless `last` (the push is over:
    /// whatever was measured is listed).
    fn entries(&self, last: bool) -> Option<Vec<StreamInf>> {
        let mut out = Vec::new();
        for (name, v) in self.variants.iter().filter(|(_, v)| v.listed) {
            match &v.probe {
                Some(p) if v.rate.total_ms > 0 => out.push(StreamInf::new(
                    name.as_deref(),
                    &self.playlist,
                    &v.rate,
                    p.clone(),
                )),
                // Measured later (a restarted rung): it joins when it is.
                _ if last || self.written.is_some() => {}
                _ => return None,
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

/// Every push with renditions this node publishes.
#[derive(Debug, Default)]
pub(crate) struct Masters {
    pushes: HashMap<String, Push>,
    /// Session id → (source session id, variant).
    of: HashMap<String, (String, VariantName)>,
    /// Fragments submitted for upload, until stored: (bytes, EXTINF ms).
    pending: HashMap<(String, u64), (u64, u64)>,
    version: u64,
    /// Pushes opened so far.
    opened: u64,
}

impl Masters {
    /// A session opened (or recovered). Only sources with renditions and
    /// rendition sessions are tracked.
    pub(crate) fn open(&mut self, meta: &SessionMeta) {
        let (source, name, channel) = match &meta.variant {
            Some(v) => (v.of.clone(), Some(v.rung.clone()), v.channel.clone()),
            None if !meta.renditions.is_empty() => (meta.id.clone(), None, meta.channel.clone()),
            None => return,
        };
        let push = self.pushes.entry(source.clone()).or_insert_with(|| Push {
            bucket: meta.bucket.clone(),
            channel,
            playlist: meta.playlist.clone(),
            key_id: meta.key_id.clone(),
            source_ended: false,
            variants: BTreeMap::new(),
            sessions: HashSet::new(),
            written: None,
            opened: self.opened,
        });
        self.opened += 1;
        if push.source_ended && name.is_some() {
            // A transcoder that outlived its source's publish adds nothing.
            return;
        }
        push.sessions.insert(meta.id.clone());
        let v = push.variants.entry(name.clone()).or_default();
        v.live.insert(meta.id.clone());
        v.listed = true;
        self.of.insert(meta.id.clone(), (source, name));
    }

    /// Whether `session` is a variant of a push with renditions, whose
    /// fragments' sizes and durations the master needs.
    pub(crate) fn tracks(&self, session: &str) -> bool {
        self.of.contains_key(session)
    }

    /// Whether a captured fragment of `session` should be probed.
    pub(crate) fn wants_probe(&self, session: &str) -> bool {
        self.variant(session).is_some_and(|v| v.probe.is_none())
    }

    /// The probe of one of `session`'s fragments.
    pub(crate) fn probed(&mut self, session: &str, probe: Probe) -> Option<MasterWrite> {
        self.variant_mut(session)?.probe = Some(probe);
        self.update(session, false)
    }

    /// A fragment of `session` was handed to the uploader.
    pub(crate) fn submitted(&mut self, session: &str, key: u64, bytes: u64, extinf_ms: u64) {
        if self.tracks(session) {
            self.pending
                .insert((session.to_owned(), key), (bytes, extinf_ms));
        }
    }

    /// S3 has a fragment of `session`.
    pub(crate) fn stored(&mut self, session: &str, key: u64) -> Option<MasterWrite> {
        let (bytes, ms) = self.pending.remove(&(session.to_owned(), key))?;
        self.variant_mut(session)?.rate.add(bytes, ms);
        self.update(session, false)
    }

    /// `session`'s publish ended (`on_publish_done`, or idle).
    /// `source_live` says whether a source session's publisher is still
    /// there (the session registry's view): a rung that ends while it is
    /// was dropped; one that ends after (or with a source recovered as
    /// ended) was stopped with it.
    pub(crate) fn ended(
        &mut self,
        session: &str,
        source_live: impl Fn(&str) -> bool,
    ) -> Option<MasterWrite> {
        let (source, name) = self.of.get(session)?.clone();
        let push = self.pushes.get_mut(&source)?;
        match name {
            None => push.source_ended = true,
            Some(_) if push.source_ended || !source_live(&source) => {}
            Some(_) => {
                let v = push.variants.get_mut(&name)?;
                v.live.remove(session);
                if v.live.is_empty() {
                    v.listed = false;
                }
            }
        }
        self.update(session, false)
    }

    /// Everything of `session` is stored and its local state removed.
    pub(crate) fn finished(&mut self, session: &str) -> Option<MasterWrite> {
        let (source, _) = self.of.get(session)?.clone();
        let out = {
            let push = self.pushes.get_mut(&source)?;
            push.sessions.remove(session);
            if !push.sessions.is_empty() || !push.source_ended {
                return None;
            }
            self.update(session, true)
        };
        self.pushes.remove(&source);
        self.of.retain(|_, (s, _)| *s != source);
        self.pending.retain(|(s, _), _| self.of.contains_key(s));
        out
    }

    fn variant(&self, session: &str) -> Option<&Variant> {
        let (source, name) = self.of.get(session)?;
        self.pushes.get(source)?.variants.get(name)
    }

    fn variant_mut(&mut self, session: &str) -> Option<&mut Variant> {
        let (source, name) = self.of.get(session)?;
        self.pushes.get_mut(source)?.variants.get_mut(name)
    }

    /// The master of `session`'s push, if it is due (see the module doc).
    fn update(&mut self, session: &str, last: bool) -> Option<MasterWrite> {
        let (source, _) = self.of.get(session)?;
        let push = self.pushes.get(source)?;
        // An ended push's late rewrite must not replace the master of a
        // newer push of the same channel.
        let superseded = self.pushes.values().any(|p| {
            p.opened > push.opened && p.bucket == push.bucket && p.channel == push.channel
        });
        if superseded {
            return None;
        }
        let push = self.pushes.get_mut(source)?;
        let now = push.entries(last)?;
        let due = match &push.written {
            None => true,
            Some(w) => materially_changed(w, &now) || (last && render(w) != render(&now)),
        };
        if !due {
            return None;
        }
        let body = render(&now);
        push.written = Some(now);
        self.version += 1;
        Some(MasterWrite {
            channel: ChannelId {
                bucket: push.bucket.clone(),
                channel: push.channel.clone(),
                playlist: MASTER.to_owned(),
            },
            key_id: push.key_id.clone(),
            body,
            version: self.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::probe::Video;

    fn meta(id: &str, variant: Option<&str>, renditions: &[&str]) -> SessionMeta {
        let mut m: SessionMeta = serde_json::from_value(serde_json::json!({
            "id": id, "bucket": "b", "channel": "cam", "playlist": "index.m3u8",
            "key_id": "GK1", "clientid": "1", "name": "cam", "addr": "a", "started_ms": 0,
        }))
        .expect("a session record");
        m.renditions = renditions.iter().map(|r| r.to_string()).collect();
        if let Some(rung) = variant {
            m.channel = format!("cam/{rung}");
            m.variant = serde_json::from_value(
                serde_json::json!({"of": "src", "channel": "cam", "rung": rung}),
            )
            .expect("a variant");
        }
        m
    }

    fn probe(h: u32) -> Probe {
        Probe {
            video: Some(Video {
                codec: "avc1.4d401e".into(),
                width: h * 16 / 9,
                height: h,
                fps: Some(25.0),
            }),
            audio: Some("mp4a.40.2".into()),
        }
    }

    /// One fragment of `session` probed (if first), submitted and stored.
    fn fragment(
        m: &mut Masters,
        session: &str,
        key: u64,
        bytes: u64,
        h: u32,
    ) -> Option<MasterWrite> {
        let mut out = None;
        if m.wants_probe(session) {
            out = m.probed(session, probe(h));
        }
        m.submitted(session, key, bytes, 2000);
        m.stored(session, key).or(out)
    }

    fn live(_: &str) -> bool {
        true
    }

    fn uris(w: &MasterWrite) -> Vec<&str> {
        w.body.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn a_channel_without_renditions_is_not_tracked() {
        let mut m = Masters::default();
        m.open(&meta("plain", None, &[]));
        assert!(!m.wants_probe("plain"));
        assert_eq!(fragment(&mut m, "plain", 1, 1000, 720), None);
        assert_eq!(m.ended("plain", live), None);
        assert_eq!(m.finished("plain"), None);
    }

    #[test]
    fn the_first_master_waits_for_every_live_variant() {
        let mut m = Masters::default();
        m.open(&meta("src", None, &["360p", "240p"]));
        m.open(&meta("r360", Some("360p"), &[]));
        m.open(&meta("r240", Some("240p"), &[]));
        assert_eq!(fragment(&mut m, "src", 1, 500_000, 720), None);
        assert_eq!(fragment(&mut m, "r360", 1, 200_000, 360), None);
        // A probe alone is not enough: the rung has no stored fragment yet.
        assert_eq!(m.probed("r240", probe(240)), None);
        m.submitted("r240", 1, 100_000, 2000);
        let w = m.stored("r240", 1).expect("all three are in");
        assert_eq!(w.channel.channel, "cam");
        assert_eq!(w.channel.playlist, "master.m3u8");
        assert_eq!(
            uris(&w),
            ["index.m3u8", "360p/index.m3u8", "240p/index.m3u8"]
        );
        // The same rates again: nothing to rewrite.
        assert_eq!(fragment(&mut m, "src", 2, 500_000, 720), None);
        // The source's peak rises by a fifth: rewritten.
        let w2 = fragment(&mut m, "src", 3, 600_000, 720).expect("rewritten");
        assert!(w2.version > w.version);
        assert!(w2.body.contains("BANDWIDTH=2400000,"));
    }

    #[test]
    fn a_dropped_rung_leaves_and_a_restarted_one_comes_back() {
        let mut m = Masters::default();
        m.open(&meta("src", None, &["360p"]));
        m.open(&meta("r1", Some("360p"), &[]));
        fragment(&mut m, "src", 1, 500_000, 720);
        assert!(fragment(&mut m, "r1", 1, 200_000, 360).is_some());
        let w = m.ended("r1", live).expect("the rung left");
        assert_eq!(uris(&w), ["index.m3u8"]);
        // Its transcoder restarted: a new session of the same rung. Its
        // rate is the rung's so far; it is listed again with its probe.
        m.open(&meta("r2", Some("360p"), &[]));
        let w = fragment(&mut m, "r2", 5, 200_000, 360).expect("back");
        assert_eq!(uris(&w), ["index.m3u8", "360p/index.m3u8"]);
    }

    #[test]
    fn rungs_stopped_with_the_source_stay_and_the_last_master_is_written() {
        let mut m = Masters::default();
        m.open(&meta("src", None, &["360p"]));
        m.open(&meta("r1", Some("360p"), &[]));
        fragment(&mut m, "src", 1, 500_000, 720);
        fragment(&mut m, "r1", 1, 200_000, 360);
        assert_eq!(m.ended("src", live), None);
        assert_eq!(
            m.ended("r1", live),
            None,
            "the set is frozen with the source"
        );
        // The rung's last fragment lowers its average a little.
        m.submitted("r1", 2, 190_000, 2000);
        assert_eq!(m.stored("r1", 2), None, "not material");
        assert_eq!(m.finished("src"), None, "the rung is not finished");
        let w = m.finished("r1").expect("the last master");
        assert_eq!(uris(&w), ["index.m3u8", "360p/index.m3u8"]);
        assert!(w.body.contains("AVERAGE-BANDWIDTH=780000,"));
        // The push is forgotten.
        assert!(m.pushes.is_empty() && m.of.is_empty() && m.pending.is_empty());
    }

    #[test]
    fn a_rung_ending_after_its_source_stopped_stays() {
        let mut m = Masters::default();
        m.open(&meta("src", None, &["360p"]));
        m.open(&meta("r1", Some("360p"), &[]));
        fragment(&mut m, "src", 1, 500_000, 720);
        let w = fragment(&mut m, "r1", 1, 200_000, 360).expect("the first master");
        assert_eq!(uris(&w), ["index.m3u8", "360p/index.m3u8"]);
        // Recovered after a restart, both ended: the rung's end may come
        // first, while the source's publisher is already gone. Nothing
        // changes, so nothing is rewritten.
        assert_eq!(m.ended("r1", |_| false), None);
        assert_eq!(m.ended("src", live), None);
        assert_eq!(m.finished("r1"), None);
        assert_eq!(m.finished("src"), None);
        assert!(m.pushes.is_empty());
    }

    #[test]
    fn an_ended_push_never_rewrites_a_newer_push_s_master() {
        let mut m = Masters::default();
        m.open(&meta("src", None, &["360p"]));
        m.open(&meta("r1", Some("360p"), &[]));
        fragment(&mut m, "src", 1, 500_000, 720);
        assert!(fragment(&mut m, "r1", 1, 200_000, 360).is_some());
        m.ended("src", live);
        // The next push of the channel starts while the rung's last
        // fragment is still being stored.
        m.open(&meta("src2", None, &["360p"]));
        assert_eq!(fragment(&mut m, "r1", 2, 900_000, 360), None);
        m.ended("r1", live);
        m.finished("src");
        assert_eq!(m.finished("r1"), None, "the newer push owns the master");
        assert_eq!(
            fragment(&mut m, "src2", 1, 500_000, 720).map(|w| w.channel.channel),
            Some("cam".into())
        );
    }

    #[test]
    fn a_rung_that_never_stored_anything_does_not_hold_the_last_master_back() {
        let mut m = Masters::default();
        m.open(&meta("src", None, &["360p"]));
        m.open(&meta("r1", Some("360p"), &[]));
        assert_eq!(fragment(&mut m, "src", 1, 500_000, 720), None);
        m.ended("src", live);
        assert_eq!(m.finished("r1"), None);
        let w = m.finished("src").expect("written at the end");
        assert_eq!(uris(&w), ["index.m3u8"]);
    }
}
