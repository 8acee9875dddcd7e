//! The pipeline's two seams to a coordinator (`crate::cluster` implements
//! them; a single node has none and writes as before).
//!
//! - [`Fence`]: asked before every upload of a channel's playlist and of a
//!   session's manifest, whether this node may write it now; it also says
//!   whether the store has conditional PUTs and hands over what this node
//!   read of the playlist object, for [`super::fenced_write`].
//! - [`Resume`]: where a channel's live playlist stood when another node
//!   last wrote it, handed to the pipeline with a new session (in
//!   [`crate::session::SessionMeta::resume`]) so the playlist continues its
//!   sequences on this node. Defined in `session` (re-exported here), so
//!   the session record does not depend on the pipeline.
//! - [`Known`]: what this node knows of a channel's playlist object, which
//!   a fence hands over and [`super::fenced_write`] decides with.

use crate::live::ChannelId;
pub(crate) use crate::session::Resume;
use crate::store::{Conditional, StoreError, Versioned};
use futures::future::BoxFuture;

/// What this node knows of a channel's playlist object in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Known {
    /// Nothing (never written or read here, or a PUT answered without an
    /// ETag): the object is read before a conditional PUT.
    #[default]
    Unknown,
    /// No such object when it was last read.
    Absent,
    /// Its ETag, as the store returned it (quotes included).
    Etag(String),
}

impl Known {
    /// What a PUT's answer says: the new object's ETag, if it gave one.
    pub(crate) fn stored(etag: Option<String>) -> Known {
        etag.map_or(Known::Unknown, Known::Etag)
    }

    /// What a read of the object says (a missing object is [`Known::Absent`]).
    pub(crate) fn read(result: Result<Versioned, StoreError>) -> Result<Known, StoreError> {
        match result {
            Ok(v) => Ok(Known::stored(v.etag)),
            Err(StoreError::NotFound { .. }) => Ok(Known::Absent),
            Err(e) => Err(e),
        }
    }
}

/// The answer of a [`Fence`] for one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FenceVerdict {
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
pub(crate) trait Fence: Send + Sync {
    fn allow<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, FenceVerdict>;

    /// After [`FenceVerdict::Write`]: the instant past which the write must
    /// not land (the lease that allowed it may have expired by then), so
    /// the PUT is abandoned at it. `None`: no such bound.
    fn write_deadline(&self) -> Option<std::time::Instant> {
        None
    }

    /// Whether the store honours conditional PUTs (found out once, with
    /// `key_id` in `bucket`): where it does, fenced playlist writes are
    /// conditional ([`super::fenced_write`]). An error: not known yet (the
    /// store did not answer), the write is tried again later.
    fn conditional<'a>(
        &'a self,
        _key_id: &'a str,
        _bucket: &'a str,
    ) -> BoxFuture<'a, Result<Conditional, StoreError>> {
        Box::pin(async { Ok(Conditional::Unsupported) })
    }

    /// The channel's playlist object as this node read it from the bucket
    /// when it last took the channel (for [`Resume`]), handed out once: it
    /// is newer than anything this node wrote before taking the channel.
    fn take_read(&self, _channel: &ChannelId) -> Option<Known> {
        None
    }
}
