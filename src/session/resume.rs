//! What a session continues of a channel's live playlist that another
//! node stored last (in a cluster): [`Resume`], carried in
//! [`super::SessionMeta::resume`] from `on_publish` to the pipeline, whose
//! live window (`pipeline::live`) adopts it. Plain data, here so that the
//! session record does not depend on the pipeline.

use serde::{Deserialize, Serialize};

/// One fragment of a channel's live playlist window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSeg {
    pub key_ms: u64,
    pub extinf: String,
    pub duration_ms: u64,
    pub discontinuity: bool,
    /// Wall-clock start, written as `#EXT-X-PROGRAM-DATE-TIME` at session starts.
    pub program_date_time_ms: Option<u64>,
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
