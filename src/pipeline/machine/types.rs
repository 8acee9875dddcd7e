//! The vocabulary of the pipeline's state machine: what happens to it
//! ([`Input`]) and what it asks the world to do ([`Effect`]). Plain data, so
//! a test can feed inputs and read effects without a file system or S3.

use std::collections::HashMap;

use crate::hls::NginxEntry;
use crate::live::ChannelId;
use crate::pipeline::capture::Identity;
use crate::pipeline::journal::Entry;
use crate::session::SessionMeta;

/// Milliseconds on a monotonic clock chosen by the caller.
pub(crate) type Ms = u64;

/// Where a fragment's bytes are kept until they are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    /// The capture area (tmpfs, beside nginx's directory).
    Capture,
    /// The on-disk spool (fsync'd).
    Spool,
    /// Only nginx's own file: capturing was impossible.
    Nginx,
}

/// What became of a capture the state machine asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaptureOutcome {
    /// The bytes are safe at this location.
    Kept(Location),
    /// nginx rewrote the file while it was copied; its next close comes.
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    Fragment {
        session: String,
        key: u64,
    },
    Playlist {
        channel: ChannelId,
        version: u64,
    },
    Manifest {
        session: String,
        /// Fragments (absolute index) the stored manifest object ends at.
        count: usize,
        /// The chunk is full: the next upload starts a new manifest object.
        full: bool,
        ended: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// `on_publish` approved a new session.
    Open {
        meta: SessionMeta,
        now: Ms,
    },
    /// A session found on disk at start: its journal and which capture files
    /// exist (by key), and whether nginx still has its publisher.
    Recover {
        meta: SessionMeta,
        entries: Vec<Entry>,
        files: HashMap<u64, Location>,
        /// The duration from their timestamps of the capture files that
        /// exist and have any, by key.
        media: HashMap<u64, u64>,
        live: bool,
        now: Ms,
    },
    /// nginx closed fragment `name` (this version of it: `ident`).
    Closed {
        session: String,
        name: String,
        ident: Identity,
        /// Past the tmpfs high-water mark: capture straight to the spool.
        spool: bool,
        /// Wall clock, for a key when the name carries no time.
        wall_ms: u64,
        now: Ms,
    },
    Captured {
        session: String,
        key: u64,
        outcome: CaptureOutcome,
        /// The kept bytes' duration from their timestamps, if readable.
        media_ms: Option<u64>,
        /// Whether the kept bytes' first video frame is a keyframe; `None`
        /// without video or when unreadable.
        keyframe_start: Option<bool>,
    },
    /// nginx's playlist for the session as it is now. `probed`: the files
    /// it lists that were not captured have just been looked for.
    Playlist {
        session: String,
        entries: Vec<NginxEntry>,
        probed: bool,
        now: Ms,
    },
    /// `on_publish_done`.
    Done {
        session: String,
        now: Ms,
    },
    Stored(Stored),
    /// A capture was moved to the spool (`false`: the move failed).
    Moved {
        session: String,
        key: u64,
        ok: bool,
    },
    Tick {
        now: Ms,
        pressure: bool,
    },
    /// The pipeline stops: unsaved channel windows are saved.
    Stop,
    /// After the last look at an ending session's directory.
    EndCheck {
        session: String,
        done: bool,
        now: Ms,
    },
}

/// An upload; the uploader retries it until it is stored and reports
/// [`Stored`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    Fragment {
        session: String,
        key_id: String,
        bucket: String,
        channel: String,
        key: u64,
        extinf: String,
        /// nginx's file name, for [`Location::Nginx`].
        name: String,
        at: Location,
    },
    /// A newer version of a channel's playlist supersedes one whose upload
    /// has not started.
    Playlist {
        channel: ChannelId,
        version: u64,
        key_id: String,
        body: String,
    },
    Manifest {
        session: String,
        key_id: String,
        bucket: String,
        /// The session's channel (what a cluster's fence is asked about).
        channel: ChannelId,
        object: String,
        body: Vec<u8>,
        count: usize,
        full: bool,
        ended: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Append to the session's journal (before the effects that follow).
    Journal {
        session: String,
        entry: Entry,
    },
    /// Copy nginx's file `name` to `key`'s capture file (to the spool first
    /// if `spool`), then report [`Input::Captured`].
    Capture {
        session: String,
        name: String,
        key: u64,
        /// The identity nginx's file had at its close.
        ident: Identity,
        spool: bool,
    },
    /// Look for these listed but uncaptured files (report each as
    /// [`Input::Closed`]), then give the playlist back with `probed` set.
    Probe {
        session: String,
        names: Vec<String>,
        entries: Vec<NginxEntry>,
    },
    Upload(Job),
    /// Remove nginx's file if it is still this version.
    RemoveNginxCopy {
        session: String,
        name: String,
        ident: Identity,
    },
    /// The fragment is stored: its capture file is no longer needed.
    RemoveCapture {
        session: String,
        key: u64,
        at: Location,
    },
    MoveToSpool {
        session: String,
        key: u64,
    },
    Snapshot {
        session: String,
        key: u64,
        name: String,
        at: Location,
    },
    /// Write the channel's window to `state_dir` now (for continuity after
    /// a restart); the core decides when (`save.rs`).
    SaveChannel(ChannelId),
    /// The newest stored playlist, for `/play`, and its target duration
    /// (LL playlists are built from the same window).
    CacheLive {
        channel: ChannelId,
        body: String,
        target_duration: u64,
    },
    /// Rewrite the session's journal as [`super::Core::journal_of`] says.
    /// Always preceded by its channel's [`Effect::SaveChannel`]: the saved
    /// window then vouches for the fragments the journal forgets.
    CompactJournal {
        session: String,
    },
    /// Look at the session's directory a last time, then report
    /// [`Input::EndCheck`].
    FinalLook {
        session: String,
        done: bool,
    },
    /// The channel is free for a new publisher. `done`: the publisher left
    /// (else the session only went idle); `fragments`: those it listed.
    EndLive {
        session: String,
        done: bool,
        fragments: usize,
    },
    /// Everything of the session is stored (its ended playlist and final
    /// manifest included): remove the session's local files and state.
    /// Always preceded by its channel's [`Effect::SaveChannel`].
    Finish {
        session: String,
        channel: ChannelId,
        /// Fragments the session stored.
        fragments: usize,
    },
    Count(&'static str),
}
