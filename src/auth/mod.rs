//! Who may push and who may play: nginx-rtmp callback bodies ([`callback`]),
//! signed push URLs and their policy ([`push`]), per-address brute-force
//! protection ([`limiter`]), one-time push URLs ([`replay`]), the hooks
//! secret across reloads ([`hooks_secret`]), and presigned object and play
//! URLs ([`presign`]).
//! Nothing here does I/O or reads the configuration file; the HTTP layer feeds
//! requests in and maps each [`push::Reject`] to a refusal.

pub mod callback;
pub mod hooks_secret;
pub mod limiter;
pub mod presign;
pub mod push;
pub mod replay;
