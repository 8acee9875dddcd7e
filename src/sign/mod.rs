//! Every signature livebucket makes or checks, in one place at the bottom of
//! the crate: keyed MACs and their text forms, the percent-encoding sets,
//! `Expires` parsing, URL and host building, and the schemes below. It
//! imports nothing else of the crate, reads no configuration and does no I/O;
//! callers pass secrets, names and "now" in. Policy (which key, which expiry
//! window, which bucket a key may write, how a refusal is reported) stays with
//! the callers: `auth::push` (push URLs), `http::play` and `http::vod` (play
//! and VOD URLs, presigned segment URIs), `vod`, `store::direct` (the direct
//! PUT), `http::oss` (OSS API requests) and `cli` (URL generators).
//!
//! # The schemes
//!
//! | scheme | MAC, text form | module | used for |
//! |---|---|---|---|
//! | SigV4 query | HMAC-SHA256, hex | [`sigv4`] | presigned segment URLs (S3-compatible stores) |
//! | SigV4 header | HMAC-SHA256, hex | [`sigv4`] | the direct PUT of a fragment |
//! | SigV2 query | HMAC-SHA1, base64 | [`sigv2`] | presigned segment URLs (legacy RGW, MinIO) |
//! | livebucket play / VOD | HMAC-SHA256, base64url without padding | [`play`] | `/play/...` and `/api/v1/.../vod` URLs |
//! | RGW push, OSS push | HMAC-SHA1, base64 | [`push`] | RTMP push URLs |
//! | OSS V1 header / query | HMAC-SHA1, base64 | [`oss_v1`] | the OSS LiveChannel API |
//! | Standard Webhooks | HMAC-SHA256, base64 | [`webhook`] | the `[events]` POSTs (`events`) |
//!
//! The building blocks: [`mac`] (keyed MACs, tag decoding), [`encode`] (the
//! percent-encoding sets, each named for its RFC rule), [`expiry`] (the
//! `Expires` parameter) and [`url`] (object URLs and the one `host[:port]`
//! splitter).
//!
//! # Invariants
//!
//! * Signatures are compared in constant time (`Mac::verify_slice`, or
//!   `CtOutput` equality), and only on decoded bytes, never on their text.
//! * No error and no `Debug` output carries a secret, a computed signature
//!   or an endpoint's text (which may hold user info).
//! * Nothing here panics on any input: a malformed signature, expiry, host or
//!   name is an error value.

pub mod encode;
pub(crate) mod expiry;
pub(crate) mod mac;
pub mod oss_v1;
pub mod play;
pub mod push;
pub mod sigv2;
pub mod sigv4;
pub mod url;
pub(crate) mod webhook;

#[cfg(test)]
mod oss_v1_tests;
#[cfg(test)]
mod presign_tests;
#[cfg(test)]
mod sigv4_tests;

/// Why something could not be signed, or a signature was refused, by the
/// SigV4, SigV2, play, VOD and push signers. (OSS V1 request verification
/// reports its own [`oss_v1::AuthError`], whose variants the OSS API maps to
/// its error codes.)
///
/// Messages never include secrets, signatures or the endpoint string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// SigV4 cannot sign for longer than [`sigv4::SIGV4_MAX_EXPIRY`].
    #[error(
        "presigned URL expiry of {requested} s exceeds the SigV4 maximum of {max} s (7 days); \
         lower the expiry"
    )]
    ExpiryTooLong {
        /// The maximum, in seconds.
        max: u64,
        /// What was asked for, in whole seconds.
        requested: u64,
    },
    /// The S3 endpoint is not `http(s)://host[:port]`.
    #[error("S3 endpoint cannot be used for presigning: {0}")]
    BadEndpoint(&'static str),
    /// A genuine play signature whose expiry has passed.
    #[error("signed URL has expired")]
    Expired,
    /// A well-formed signature that does not match.
    #[error("signature does not match")]
    BadSignature,
    /// An `Expires` parameter that is not 1 to 19 decimal digits.
    #[error(
        "`Expires` must be a decimal Unix time of 1 to {} digits",
        expiry::MAX_EXPIRES_DIGITS
    )]
    InvalidExpires,
    /// A base64 `Signature` that does not decode.
    #[error("`Signature` is not valid standard base64")]
    SignatureNotBase64,
    /// A `Signature` that decodes to the wrong number of bytes for its MAC.
    #[error(
        "`Signature` decodes to {len} bytes; an HMAC-SHA1 signature has {}",
        mac::SHA1_LEN
    )]
    SignatureWrongLength {
        /// The decoded length.
        len: usize,
    },
    /// An input that cannot be signed or verified at all.
    #[error("malformed signing input: {0}")]
    Malformed(&'static str),
}
