//! The fragment pipeline: nginx's HLS directory → capture → S3, then the
//! channel's playlist.
//!
//! The decisions are in [`machine`], a state machine with no I/O; [`actor`]
//! owns it and does its I/O. The watcher, the HTTP hooks and finished
//! uploads send [`Msg`]s ([`handle`]); each becomes a [`machine::Input`];
//! each [`machine::Effect`] the core returns is carried out by the actor,
//! and its outcome goes back in as the next input.
//!
//! For each approved session (directory `<hls_dir>/<session id>/`):
//! 1. IN_CLOSE_WRITE of `NAME.ts` → the bytes are taken into a capture file
//!    under a fresh object key (journal first, then a rename or a copy);
//! 2. the playlist rename → nginx's new entries are matched, in order, to
//!    captures of the same name; each gets its duration and is uploaded;
//! 3. a stored fragment joins the channel window once every earlier fragment
//!    of the session is stored; then the channel's playlist is uploaded. So a
//!    playlist never lists an object that is not in the bucket;
//! 4. `on_publish_done` (plus a grace period for nginx's last fragment), or no
//!    new fragment for a while, ends the session: the playlist gets
//!    `#EXT-X-ENDLIST`, then local files and session state are removed.
//!
//! A push with renditions also gets a master playlist at
//! `CHANNEL/master.m3u8` ([`master`] says when and what; the actor probes a
//! captured fragment per variant and uploads it like a playlist).
//!
//! On start, journals and capture files of unfinished sessions are replayed
//! ([`machine::recovery`]) and every session directory is rescanned, so a
//! crash loses nothing that reached the disk.
//!
//! Imports run one way: each file imports only files listed after it
//! (a folder's parts, which implement its main type, import their parent):
//! `actor` · `upload` · `handle` · `retry`, `fenced_write`, `machine`,
//! `master`, `watch` · `fence` · `capture`, `journal`, `timestamps`. Below them all,
//! `crate::live` (the channel window), `crate::llhls` and `crate::session`.

pub(crate) mod actor;
pub(crate) mod capture;
pub(crate) mod fence;
pub(crate) mod fenced_write;
pub(crate) mod handle;
pub(crate) mod journal;
pub(crate) mod machine;
pub(crate) mod master;
pub(crate) mod parked;
pub(crate) mod retry;
pub(crate) mod timestamps;
pub(crate) mod upload;
pub(crate) mod watch;

pub(crate) use actor::{Pipeline, Shared};
pub(crate) use handle::{LiveCache, PipelineHandle, channel};
