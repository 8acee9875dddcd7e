//! Who may push and who may play: nginx-rtmp callback bodies ([`callback`]),
//! signed push URLs and their policy ([`push`]), why a push is refused
//! ([`reject`]), per-address brute-force protection ([`limiter`]), one-time
//! push URLs ([`replay`]), the hooks secret across reloads
//! ([`hooks_secret`]), and presigned object and play URLs ([`presign`]).
//!
//! Decisions only, driven by the layers above (admission and the HTTP
//! handlers), which map each [`reject::Reject`] to a refusal. Nothing here
//! does network I/O or reads the configuration file (it is handed the parsed
//! [`crate::config`]); the one file this module touches is [`replay`]'s set
//! of spent push URLs, which it loads at start and rewrites (write, fsync,
//! rename) each time a one-time URL is spent.
//!
//! Imports run one way: `auth` uses only [`crate::names`], [`crate::config`]
//! and [`crate::clock`] of livebucket, and within it `reject` is at the
//! bottom (`callback`, `limiter` and `push` use it; `replay` uses `push`'s
//! grant tag).

pub mod callback;
pub mod hooks_secret;
pub mod limiter;
pub mod presign;
pub mod push;
pub mod reject;
pub mod replay;
