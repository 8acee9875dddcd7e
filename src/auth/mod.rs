//! Who may push and who may play: nginx-rtmp callback bodies ([`callback`]),
//! signed push URLs and their policy ([`push`]), why a push is refused
//! ([`reject`]), per-address brute-force protection ([`limiter`]), one-time
//! push URLs ([`replay`]) and the hooks secret across reloads
//! ([`hooks_secret`]). The signatures themselves are [`crate::sign`]'s.
//!
//! Decisions only, driven by the layers above (admission and the HTTP
//! handlers), which map each [`reject::Reject`] to a refusal. Nothing here
//! reads the configuration file (it is handed the parsed [`crate::config`]),
//! and only [`replay`] does I/O: its spent-URL file, loaded at start and
//! rewritten (temp file, fsync, rename) before a one-time URL's push is
//! approved.
//!
//! Imports run one way: `auth` uses only [`crate::names`], [`crate::sign`],
//! [`crate::config`] and [`crate::clock`] of livebucket, and within it
//! `reject` is at the bottom (`callback`, `limiter` and `push` use it;
//! `replay` uses `push`'s grant tag).

pub(crate) mod callback;
pub(crate) mod hooks_secret;
pub(crate) mod limiter;
pub(crate) mod push;
pub(crate) mod reject;
pub(crate) mod replay;
