//! How sessions end: a tick notices `on_publish_done` past its grace, or
//! no new fragment for a while; a last look at the directory; then the
//! playlist is ended (unless another session continues it) and the session
//! is finished once its last playlist and manifest are stored.

use tracing::info;

use super::Core;
use super::session::SessionState;
use super::types::{Effect, Ms};

impl Core {
    pub(super) fn tick(&mut self, now: Ms, pressure: bool, fx: &mut Vec<Effect>) {
        if pressure {
            self.relieve(fx);
        }
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let due = s
                .manifest
                .last_upload
                .is_none_or(|t| now.saturating_sub(t) >= self.cfg.manifest_every_ms);
            if s.published > s.manifest.stored_count && s.ending_version.is_none() && due {
                self.upload_manifest(&id, false, now, fx);
            }
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            if s.ending_version.is_some() {
                // Ended, but nginx closed another fragment since.
                if !s.settled() {
                    fx.push(Effect::FinalLook {
                        session: id,
                        done: true,
                    });
                }
                continue;
            }
            let quiet = now.saturating_sub(s.last_activity);
            // In the session's own target durations: a channel of 10 s
            // fragments is not idle after a 2 s channel's wait.
            let idle_ms =
                self.cfg.idle_end_factor * self.shape(&s.meta).target_duration_secs * 1000;
            // An idle-ended session whose publish_done never comes (nginx
            // restarted, or it came while livebucket was down) is done after
            // a while longer.
            let done = s
                .done_at
                .is_some_and(|t| now.saturating_sub(t) >= self.cfg.done_grace_ms)
                || (s.idle_ended && quiet >= idle_ms * 4);
            let idle_now = !s.idle_ended && quiet >= idle_ms;
            if done || idle_now {
                fx.push(Effect::FinalLook { session: id, done });
            }
        }
    }
    pub(super) fn end_check(&mut self, id: &str, done: bool, now: Ms, fx: &mut Vec<Effect>) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let default_ms = self.shape(&s.meta).target_duration_secs * 1000;
        let ended = s.ending_version.is_some();
        self.assign_orphans_before(id, None, default_ms, fx);
        if ended {
            return; // what is left is stored, then ends the playlist again
        }
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        if s.published < s.listed() || s.captures.iter().any(|c| !c.assigned) {
            return; // still storing; the next tick looks again
        }
        let chid = s.channel.clone();
        let other_live = self.other_live(id);
        if s.published == 0 {
            // Approved but never relayed a fragment (the publisher left
            // before or right after approval; nginx may even have sent
            // on_publish_done before livebucket approved): the channel must
            // not stay locked, and a playlist an earlier session left open
            // for this one is ended. A stalled publisher may still be
            // writing its first fragment: its directory stays until the
            // session is done.
            fx.push(Effect::EndLive {
                session: id.to_owned(),
                done,
                fragments: 0,
            });
            if !done {
                if let Some(s) = self.sessions.get_mut(id) {
                    s.idle_ended = true;
                }
                return;
            }
            if !other_live
                && let Some(ch) = self.channels.get_mut(&chid)
                && !ch.live.window.is_empty()
            {
                // Finished once that playlist is stored: a restart before
                // then ends it again.
                ch.live.end();
                let version = ch.live.version;
                if let Some(s) = self.sessions.get_mut(id) {
                    s.ending_version = Some(version);
                    s.manifest.stored_final = true;
                }
                self.publish(&chid, fx);
                self.finish_if_stored(id, fx);
                return;
            }
            self.finish(id, fx);
            return;
        }
        let Some(ch) = self.channels.get_mut(&chid) else {
            return;
        };
        if !other_live {
            ch.live.end();
        }
        let version = ch.live.version;
        let fragments = self.sessions.get(id).map_or(0, SessionState::listed);
        fx.push(Effect::EndLive {
            session: id.to_owned(),
            done,
            fragments,
        });
        if done {
            // Here a session *ends* (its publisher gone, its last fragment
            // listed and stored): its playlist ends and the final manifest
            // is written; `finish` follows once both are stored.
            info!(session = %crate::session::log_tag(id), listed = self.sessions.get(id).map_or(0, SessionState::listed), "session ended; finishing playlist");
            if let Some(s) = self.sessions.get_mut(id) {
                s.ending_version = Some(version);
            }
            // Finished once both the ended playlist and the final manifest
            // are stored (whichever comes last finishes it).
            self.publish(&chid, fx);
            self.upload_manifest(id, true, now, fx);
            self.finish_if_stored(id, fx);
        } else {
            info!(session = %crate::session::log_tag(id), "no new fragment for a while; playlist ended until fragments resume");
            if let Some(s) = self.sessions.get_mut(id) {
                s.idle_ended = true;
            }
            if let Some(ch) = self.channels.get_mut(&chid) {
                ch.live.begin_session();
            }
            self.publish(&chid, fx);
        }
    }
    /// Another session is live on `id`'s channel (a fast reconnect): then
    /// the playlist goes on without ENDLIST.
    pub(super) fn other_live(&self, id: &str) -> bool {
        let Some(chid) = self.sessions.get(id).map(|s| &s.channel) else {
            return false;
        };
        self.sessions.values().any(|o| {
            o.meta.id != id && &o.channel == chid && o.ending_version.is_none() && !o.idle_ended
        })
    }
    /// A session whose ended playlist and final manifest were both already
    /// stored is finished now.
    pub(super) fn finish_if_stored(&mut self, id: &str, fx: &mut Vec<Effect>) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let stored = s.manifest.stored_final
            && s.settled()
            && s.ending_version.is_some_and(|v| {
                self.channels
                    .get(&s.channel)
                    .is_some_and(|c| c.live.stored_version >= v)
            });
        if stored {
            self.finish(id, fx);
        }
    }
    /// Here a session is *fully stored*: every fragment it listed, the
    /// channel playlist version that ends it (or that another session
    /// continues) and its final manifest are in the bucket (a session that
    /// never published a fragment has no manifest). [`Effect::Finish`] then
    /// removes its local state; nothing of it is written afterwards.
    pub(super) fn finish(&mut self, id: &str, fx: &mut Vec<Effect>) {
        if let Some(s) = self.sessions.remove(id) {
            if let Some(ch) = self.channels.get_mut(&s.channel) {
                ch.live.published.remove(id);
            }
            info!(session = %crate::session::log_tag(id), channel = %s.meta.channel, fragments = s.listed(), "session finished");
            // The session's journal no longer vouches for what it published.
            self.save_now(&s.channel, fx);
            fx.push(Effect::Finish {
                session: id.to_owned(),
                fragments: s.listed(),
                channel: s.channel,
            });
        }
    }
}
