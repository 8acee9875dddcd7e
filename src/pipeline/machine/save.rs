//! When channel windows are saved to `state_dir` (the actor writes them).
//!
//! A stored playlist marks its channel unsaved; the unsaved channels are
//! saved every `save_every_ms` (on a tick) and when the pipeline stops. Two
//! moments save a channel at once, because from then on only its saved
//! window vouches for what its sessions published: just before a session's
//! journal is compacted (it forgets published fragments) and just before a
//! finished session's local state is removed. A restart after a crash
//! recovers a staler window by publishing again what its sessions stored
//! since (their journals keep it).

use super::Core;
use super::types::{Effect, Ms};
use crate::live::ChannelId;

impl Core {
    /// On a tick: saves every unsaved channel once `save_every_ms` passed
    /// since the last such save.
    pub(super) fn save_if_due(&mut self, now: Ms, fx: &mut Vec<Effect>) {
        if now.saturating_sub(self.last_save) >= self.cfg.save_every_ms {
            self.last_save = now;
            self.save_unsaved(fx);
        }
    }

    /// Saves every unsaved channel now (the pipeline stops).
    pub(super) fn save_unsaved(&mut self, fx: &mut Vec<Effect>) {
        for chid in std::mem::take(&mut self.unsaved) {
            fx.push(Effect::SaveChannel(chid));
        }
    }

    /// Saves `chid` now, whatever the cadence: what follows relies on its
    /// saved window. (`manifest_stored` does the same inline before a
    /// compaction, while it holds the session.)
    pub(super) fn save_now(&mut self, chid: &ChannelId, fx: &mut Vec<Effect>) {
        self.unsaved.remove(chid);
        fx.push(Effect::SaveChannel(chid.clone()));
    }
}
