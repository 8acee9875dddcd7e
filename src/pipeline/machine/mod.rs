//! The pipeline's decisions, as a state machine with no I/O.
//!
//! [`Core::handle`] takes one [`Input`] (a fragment closed, nginx's playlist
//! read, an upload stored, a tick…) and returns the [`Effect`]s to carry out
//! (journal, capture, upload, delete, publish a playlist, save a window…).
//! The actor (`pipeline/actor/`) does the I/O and feeds the outcomes back.
//! Unit tests and the model-based property test in `tests.rs` drive it
//! directly, with the same rules: what the actor decides with the file
//! system in hand (which files are closed, the order of capture steps) is
//! in [`disk`], as plain functions both call.
//!
//! Files: this one holds [`Core`], its inputs' dispatch, and fragments from
//! close to the channel window; `listing.rs` matches nginx's playlist to
//! captures; `ending.rs` ends and finishes sessions; `manifest.rs` writes
//! VOD manifests and compacts journals; `recovery.rs` rebuilds a session
//! from its journal; `save.rs` decides when channel windows are saved;
//! `spool.rs` is the tmpfs pressure policy; `fit.rs` checks fragments
//! against the target duration; `types.rs` and `session.rs` are the data.
//!
//! The rules it keeps:
//! - a fragment's key is new for the channel and journaled before its bytes
//!   are copied, so a key never names two different fragments;
//! - a fragment joins the channel window only once it and every earlier
//!   fragment of its session are stored, so no playlist lists a fragment
//!   that is not in the bucket;
//! - bytes are deleted only once stored (nginx's own file only once it has
//!   also left nginx's window);
//! - the media sequence never goes back (`live.rs`).

pub(crate) mod disk;
mod ending;
mod fit;
mod listing;
mod manifest;
mod recovery;
mod save;
mod session;
mod spool;
#[cfg(test)]
mod tests;
pub(crate) mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tracing::{error, info};

use crate::hls::LiveShape;
use crate::layout::name_ms;
use crate::live::{ChannelId, ChannelLive, WindowSeg};
use crate::pipeline::capture::Identity;
use crate::pipeline::journal::Entry;
use crate::session::SessionMeta;

pub(crate) use session::{Bytes, Capture, Seg, SessionState};
pub(crate) use types::{CaptureOutcome, Effect, Input, Job, Location, Ms, Stored};

#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    /// The live window and target duration of sessions without their own.
    pub live: LiveShape,
    /// How long after `on_publish_done` nginx's last fragment may still come.
    pub done_grace_ms: u64,
    /// No new fragment for this many of a session's target durations ends
    /// the playlist until fragments resume.
    pub idle_end_factor: u64,
    /// How often a live session's manifest is rewritten: it grows with the
    /// session, so not at every fragment.
    pub manifest_every_ms: u64,
    /// Fragments per manifest object (an hour of 2 s fragments): one object
    /// per session would make a day-long session's uploads grow with the
    /// square of its length.
    pub manifest_chunk: usize,
    /// How often changed channel windows are saved (see `save.rs`).
    pub save_every_ms: u64,
}

/// A channel's playlist and where its uploads stand.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelState {
    pub live: ChannelLive,
    /// The newest version handed to the uploader.
    pub requested: u64,
}

pub(crate) struct Core {
    cfg: CoreConfig,
    sessions: BTreeMap<String, SessionState>,
    channels: HashMap<ChannelId, ChannelState>,
    /// Channels whose window changed since it was last saved.
    unsaved: BTreeSet<ChannelId>,
    /// When the unsaved channels were last saved on the cadence.
    last_save: Ms,
}

impl Core {
    pub(crate) fn new(cfg: CoreConfig) -> Core {
        Core {
            cfg,
            sessions: BTreeMap::new(),
            channels: HashMap::new(),
            unsaved: BTreeSet::new(),
            last_save: 0,
        }
    }

    pub(crate) fn has_session(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    pub(crate) fn session(&self, id: &str) -> Option<&SessionState> {
        self.sessions.get(id)
    }

    #[cfg(test)]
    pub(crate) fn session_ids(&self) -> impl Iterator<Item = &String> {
        self.sessions.keys()
    }

    pub(crate) fn has_channel(&self, id: &ChannelId) -> bool {
        self.channels.contains_key(id)
    }

    /// Gives the core a channel's saved window before its first session.
    /// The bucket may hold an older playlist than the saved one (a crash
    /// between a PUT and the save, or before an ended playlist's PUT), so
    /// the saved one counts as not yet uploaded.
    pub(crate) fn load_channel(&mut self, id: ChannelId, mut live: ChannelLive) {
        live.version = live.version.max(1);
        live.stored_version = 0;
        self.channels
            .entry(id)
            .or_insert(ChannelState { requested: 0, live });
    }

    pub(crate) fn channel(&self, id: &ChannelId) -> Option<&ChannelLive> {
        self.channels.get(id).map(|c| &c.live)
    }

    pub(crate) fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Open { meta, now } => self.open(meta, now, &mut fx),
            Input::Recover {
                meta,
                entries,
                files,
                media,
                live,
                now,
            } => self.recover(meta, entries, (&files, &media), live, now, &mut fx),
            Input::Closed {
                session,
                name,
                ident,
                spool,
                wall_ms,
                now,
            } => self.closed(&session, name, ident, spool, wall_ms, now, &mut fx),
            Input::Captured {
                session,
                key,
                outcome,
                media_ms,
                keyframe_start,
            } => self.captured(&session, key, outcome, (media_ms, keyframe_start), &mut fx),
            Input::Playlist {
                session,
                entries,
                probed,
                now,
            } => self.playlist(&session, entries, probed, now, &mut fx),
            Input::Done { session, now } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.done_at.get_or_insert(now);
                }
            }
            Input::Stored(Stored::Fragment { session, key }) => {
                self.fragment_stored(&session, key, &mut fx)
            }
            Input::Stored(Stored::Playlist { channel, version }) => {
                self.playlist_stored(&channel, version, &mut fx)
            }
            Input::Stored(Stored::Manifest {
                session,
                count,
                full,
                ended,
            }) => self.manifest_stored(&session, count, full, ended, &mut fx),
            Input::Moved { session, key, ok } => {
                if ok
                    && let Some(c) = self
                        .sessions
                        .get_mut(&session)
                        .and_then(|s| s.capture_mut(key))
                    && c.bytes == Bytes::At(Location::Capture)
                {
                    c.bytes = Bytes::At(Location::Spool);
                }
            }
            Input::Tick { now, pressure } => {
                self.tick(now, pressure, &mut fx);
                self.save_if_due(now, &mut fx);
            }
            Input::Stop => self.save_unsaved(&mut fx),
            Input::EndCheck { session, done, now } => self.end_check(&session, done, now, &mut fx),
        }
        fx
    }

    fn shape(&self, meta: &SessionMeta) -> LiveShape {
        meta.shape.unwrap_or(self.cfg.live)
    }

    fn open(&mut self, meta: SessionMeta, now: Ms, fx: &mut Vec<Effect>) {
        let _ = fx;
        if self.sessions.contains_key(&meta.id) {
            return;
        }
        let s = SessionState::new(meta, now);
        let ch = &mut self.channels.entry(s.channel.clone()).or_default().live;
        // Another node published this channel last: continue its playlist
        // (sequences, window), not this node's older state.
        if let Some(r) = &s.meta.resume
            && ch.adopt(r)
        {
            info!(
                media_sequence = r.media_sequence,
                "continuing the channel's playlist from the bucket"
            );
        }
        ch.begin_session();
        info!(session = %crate::session::log_tag(&s.meta.id), channel = %s.meta.channel, "session started");
        self.sessions.insert(s.meta.id.clone(), s);
    }

    #[allow(clippy::too_many_arguments)]
    fn closed(
        &mut self,
        id: &str,
        name: String,
        ident: Identity,
        spool: bool,
        wall_ms: u64,
        now: Ms,
        fx: &mut Vec<Effect>,
    ) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        if s.is_captured(&name, &ident) {
            return;
        }
        let Some(ch) = self.channels.get_mut(&s.channel) else {
            return;
        };
        let key = name_ms(&name)
            .unwrap_or(wall_ms)
            .max(ch.live.last_key_ms + 1);
        ch.live.last_key_ms = key;
        s.last_key = s.last_key.max(key);
        fx.push(Effect::Journal {
            session: id.to_owned(),
            entry: Entry::Captured {
                name: name.clone(),
                key,
                size: ident.size,
                mtime_ns: ident.mtime_ns,
                spool,
            },
        });
        fx.push(Effect::Capture {
            session: id.to_owned(),
            name: name.clone(),
            key,
            ident,
            spool,
        });
        s.captures.push(Capture {
            name,
            key,
            ident,
            bytes: Bytes::Pending,
            assigned: false,
            original_removed: false,
            media_ms: None,
            keyframe_start: None,
        });
        s.last_activity = now;
    }

    fn captured(
        &mut self,
        id: &str,
        key: u64,
        outcome: CaptureOutcome,
        (media_ms, keyframe_start): (Option<u64>, Option<bool>),
        fx: &mut Vec<Effect>,
    ) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        match outcome {
            CaptureOutcome::Changed => {
                // The key stays spent (journaled); nothing was kept under it.
                s.captures.retain(|c| c.key != key);
            }
            CaptureOutcome::Kept(at) => {
                let Some(c) = s.capture_mut(key) else {
                    return;
                };
                c.bytes = Bytes::At(at);
                c.media_ms = media_ms;
                c.keyframe_start = keyframe_start;
                if at == Location::Nginx {
                    // Not ours to delete before it is stored and out of
                    // nginx's window; `original_removed` stays false.
                    error!(session = %crate::session::log_tag(id), fragment = %c.name, "capture impossible (capture dir and spool full?); uploading from nginx's file");
                }
                let name = c.name.clone();
                fx.push(Effect::Count("livebucket_fragments_captured_total"));
                if s.meta.snapshot.is_some() {
                    fx.push(Effect::Snapshot {
                        session: id.to_owned(),
                        key,
                        name,
                        at,
                    });
                }
            }
        }
    }

    fn fragment_stored(&mut self, id: &str, key: u64, fx: &mut Vec<Effect>) {
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let before = s.mark_stored(key);
        fx.push(Effect::Journal {
            session: id.to_owned(),
            entry: Entry::Stored { key },
        });
        fx.push(Effect::Count("livebucket_fragments_uploaded_total"));
        if let Some(Bytes::At(at @ (Location::Capture | Location::Spool))) = before {
            fx.push(Effect::RemoveCapture {
                session: id.to_owned(),
                key,
                at,
            });
        }
        let now = s.last_activity;
        self.advance(id, now, fx);
        if let Some(s) = self.sessions.get_mut(id) {
            s.prune();
        }
    }

    /// Moves the stored prefix of the session into the channel window.
    fn advance(&mut self, id: &str, now: Ms, fx: &mut Vec<Effect>) {
        let other_live = self.other_live(id);
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let shape = s.meta.shape.unwrap_or(self.cfg.live);
        let Some(ch) = self.channels.get_mut(&s.channel) else {
            return;
        };
        let mut changed = false;
        while let Some(seg) = s.seg(s.published).filter(|g| g.stored) {
            let first = s.published == 0 || s.idle_ended;
            let pdt = first.then(|| s.name_ms_of(seg.key).unwrap_or(s.meta.started_ms));
            ch.live.append(
                WindowSeg {
                    key_ms: seg.key,
                    extinf: seg.extinf.clone(),
                    duration_ms: seg.duration_ms,
                    discontinuity: false,
                    program_date_time_ms: pdt,
                },
                shape.window_segments,
                shape.target_duration_secs,
            );
            s.idle_ended = false;
            s.published += 1;
            changed = true;
        }
        if !changed {
            return;
        }
        ch.live.published.insert(s.meta.id.clone(), s.published);
        // A fragment nginx closed after the session ended: the playlist is
        // ended again after it, and the final manifest rewritten.
        let ending = s.ending_version.is_some();
        if ending {
            if !other_live {
                ch.live.end();
            }
            s.ending_version = Some(ch.live.version);
            s.manifest.stored_final = false;
        }
        let chid = s.channel.clone();
        let due = s
            .manifest
            .last_upload
            .is_none_or(|t| now.saturating_sub(t) >= self.cfg.manifest_every_ms);
        self.publish(&chid, fx);
        if due || ending {
            self.upload_manifest(id, ending, now, fx);
        }
    }

    /// Hands the channel's newest playlist to the uploader, if it has not
    /// had it.
    fn publish(&mut self, chid: &ChannelId, fx: &mut Vec<Effect>) {
        // Any session of the channel knows the key and the target duration.
        let Some((key_id, target)) = self
            .sessions
            .values()
            .find(|s| &s.channel == chid)
            .map(|s| {
                (
                    s.meta.key_id.clone(),
                    s.meta.shape.unwrap_or(self.cfg.live).target_duration_secs,
                )
            })
        else {
            return;
        };
        let Some(ch) = self.channels.get_mut(chid) else {
            return;
        };
        if ch.requested >= ch.live.version || ch.live.stored_version >= ch.live.version {
            return;
        }
        ch.requested = ch.live.version;
        fx.push(Effect::Upload(Job::Playlist {
            channel: chid.clone(),
            version: ch.live.version,
            key_id,
            body: ch.live.render(target),
        }));
    }

    fn playlist_stored(&mut self, chid: &ChannelId, version: u64, fx: &mut Vec<Effect>) {
        let target = self
            .sessions
            .values()
            .find(|s| &s.channel == chid)
            .map_or(self.cfg.live.target_duration_secs, |s| {
                s.meta.shape.unwrap_or(self.cfg.live).target_duration_secs
            });
        let Some(ch) = self.channels.get_mut(chid) else {
            return;
        };
        ch.live.stored_version = ch.live.stored_version.max(version);
        fx.push(Effect::Count("livebucket_playlists_uploaded_total"));
        self.unsaved.insert(chid.clone());
        if ch.live.version == version {
            fx.push(Effect::CacheLive {
                channel: chid.clone(),
                body: ch.live.render(target),
                target_duration: target,
            });
        }
        let finished: Vec<String> = self
            .sessions
            .values()
            .filter(|s| {
                &s.channel == chid
                    && s.manifest.stored_final
                    && s.settled()
                    && s.ending_version.is_some_and(|v| v <= version)
            })
            .map(|s| s.meta.id.clone())
            .collect();
        for id in finished {
            self.finish(&id, fx);
        }
    }
}

pub(super) fn fragment_job(meta: &SessionMeta, c: &Capture, seg: &Seg, at: Location) -> Effect {
    Effect::Upload(Job::Fragment {
        session: meta.id.clone(),
        key_id: meta.key_id.clone(),
        bucket: meta.bucket.clone(),
        channel: meta.channel.clone(),
        key: seg.key,
        extinf: seg.extinf.clone(),
        name: c.name.clone(),
        at,
    })
}
