//! Who may push and who may play: nginx-rtmp callback bodies ([`callback`]),
//! signed push URLs and their policy ([`push`]), per-address brute-force
//! protection ([`limiter`]), one-time push URLs ([`replay`]) and the hooks
//! secret across reloads ([`hooks_secret`]). The signatures themselves are
//! [`crate::sign`]'s.
//! Nothing here reads the configuration file, and only [`replay`] does I/O
//! (its spent-URL file, written and fsync'd before a push is approved); the
//! HTTP layer feeds requests in and maps each [`push::Reject`] to a refusal.

pub mod callback;
pub mod hooks_secret;
pub mod limiter;
pub mod push;
pub mod replay;
