//! Low-Latency HLS (draft-pantos-hls-rfc8216bis) from the bucket.
//!
//! While nginx writes a fragment, [`follow`] reads what it appended,
//! [`ts`] finds the frames in it, [`cut`] decides where partial segments
//! end, and each part is stored as an object under
//! [`crate::layout::part_key`]. [`hub`] holds each channel's parts beside
//! its stored live window and publishes the [`playlist::LlPlaylist`] that
//! `/play` renders, waits on (blocking reload) and trims (delta updates).
//! The full fragment still goes through the pipeline exactly once and the
//! bucket's own playlist stays plain RFC 8216: parts only ever add to what
//! `/play` answers.

pub(crate) mod cut;
pub(crate) mod follow;
pub(crate) mod hub;
pub(crate) mod playlist;
pub(crate) mod ts;
