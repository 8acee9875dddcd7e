//! The pipeline's two seams to a coordinator (`crate::cluster` implements
//! them; a single node has none and writes as before).
//!
//! - [`Fence`]: asked before every upload of a channel's playlist and of a
//!   session's manifest, whether this node may write it now.
//! - [`Resume`]: where a channel's live playlist stood when another node
//!   last wrote it, handed to the pipeline with a new session (in
//!   [`crate::session::SessionMeta::resume`]) so the playlist continues its
//!   sequences on this node.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::live::{ChannelId, WindowSeg};

/// The answer of a [`Fence`] for one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceVerdict {
    /// This node holds the channel: write.
    Write,
    /// This node cannot tell (coordinator unreachable, its lease possibly
    /// expired): do not write now; try again later, the write stays due.
    Hold,
    /// Another node holds the channel (or this node no longer does): the
    /// channel's playlist is theirs, so this playlist write is dropped for
    /// good. A manifest, which only this node's session writes, is still
    /// written (it lists fragments that are in the bucket).
    Yield,
}

/// Whether this node may write a channel's shared objects now.
pub trait Fence: Send + Sync {
    fn allow<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, FenceVerdict>;

    /// After [`FenceVerdict::Write`]: the instant past which the write must
    /// not land (the lease that allowed it may have expired by then), so
    /// the PUT is abandoned at it. `None`: no such bound.
    fn write_deadline(&self) -> Option<std::time::Instant> {
        None
    }
}

/// A channel's live playlist as it was last stored (by any node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    /// The stored window, oldest first.
    pub window: Vec<WindowSeg>,
    pub ended: bool,
}
