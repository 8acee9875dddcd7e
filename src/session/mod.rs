//! Publish sessions: who publishes which channel since when, recorded before
//! `on_publish` answers so a restarted livebucket still knows them.
//!
//! The record is written twice. `on_publish` writes it to a directory on the
//! capture file system (memory-backed, like nginx's HLS files, so the answer
//! waits for no disk), and the pipeline copies it into the session's state
//! directory when it opens the session, before it writes anything else
//! there ([`Sessions::settle`]). A restart reads both. Neither is fsync'd:
//! a crash of livebucket keeps both, a power cut loses the memory copy with
//! the fragments it describes.
//!
//! A session is born when `on_publish` approves a push. Its id (128 random
//! bits, hex) is the stream name nginx relays to in the internal HLS
//! application, so `<hls_dir>/<id>/` holds its files; a directory with any
//! other name was not approved here and is never uploaded. nginx's internal
//! application admits one publish per approved session, its relay
//! ([`Sessions::admit_relay`]), so knowing an id does not let a local process
//! publish into the session. The id is kept out of the bucket and of info
//! logs: those show its [`recording_id`] and [`log_tag`]. Invariant: at most
//! one session per (bucket, channel) is *live* (between approval and
//! `on_publish_done` or idle end); a second push to a live channel is refused.
//! A session stays *known* until its pipeline finished it (everything stored,
//! playlist ended); then its state directory is removed.
//!
//! Files: `meta.rs` holds what a session is ([`SessionMeta`]), its ids and
//! its publisher; [`store`] is the persisted registry ([`Sessions`]), [`relay`] the
//! relay admission decision, [`stream_dir`] the session's HLS directory,
//! [`resume`] what a session continues of another node's playlist.

mod meta;
mod relay;
mod resume;
mod store;
mod stream_dir;

pub use meta::{
    Publisher, SessionError, SessionMeta, VariantOf, is_publisher, log_tag, looks_like_id,
    new_session_id, recording_id,
};
pub use relay::RelayRefusal;
pub use resume::{Resume, WindowSeg};
pub use store::{Sessions, write_atomically};
pub use stream_dir::{STREAM_DIR_MODE, make_stream_dir};
