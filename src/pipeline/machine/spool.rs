//! The tmpfs pressure policy.

use super::Core;
use super::session::Bytes;
use super::types::{Effect, Location};

impl Core {
    /// Past the tmpfs high-water mark: pending captures go to the on-disk
    /// spool, and nginx's copies of captured fragments go (even inside
    /// nginx's window: nobody plays from nginx), so nginx keeps room.
    pub(super) fn relieve(&mut self, fx: &mut Vec<Effect>) {
        for (id, s) in self.sessions.iter_mut() {
            for c in s.captures.iter_mut() {
                if !c.original_removed
                    && matches!(
                        c.bytes,
                        Bytes::Stored | Bytes::At(Location::Capture | Location::Spool)
                    )
                {
                    fx.push(Effect::RemoveNginxCopy {
                        session: id.clone(),
                        name: c.name.clone(),
                        ident: c.ident,
                    });
                    c.original_removed = true;
                }
                if c.bytes == Bytes::At(Location::Capture) {
                    fx.push(Effect::MoveToSpool {
                        session: id.clone(),
                        key: c.key,
                    });
                }
            }
        }
    }
}
