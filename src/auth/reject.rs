//! Why a push, or a callback of a running push, is refused: [`Reject`], the
//! one error type of auth's policy (callback parsing, push signatures, the
//! failure limiter, one-time URLs, channel policy). Admission carries it to
//! the HTTP layer, which answers every `Reject` with the same 403 and logs
//! and counts its [`Reject::code`].
//!
//! Below everything else in `auth`: it imports only [`crate::names`] and
//! [`crate::channels`], whose refusals it wraps, and the limits
//! [`crate::sign`] checks, which its messages state.

use crate::names::NameError;
use crate::sign::expiry::MAX_EXPIRES_DIGITS;
use crate::sign::mac::SHA1_LEN;

/// Why a push (or a callback of a running push) is refused. One variant per
/// distinct reason, so logs and metrics can tell them apart via [`Reject::code`].
///
/// Client-supplied text is printed with `{:?}` so that it cannot forge log
/// lines; secrets and computed signatures are never part of a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Reject {
    #[error("callback body is {len} bytes, more than the {max} accepted")]
    BodyTooLong { len: usize, max: usize },
    #[error("callback field {field:?} is not UTF-8 after percent-decoding")]
    NotUtf8 { field: String },
    #[error("callback body lacks nginx's `{0}` field")]
    MissingField(&'static str),
    #[error("callback `call={0:?}` is not one livebucket handles")]
    UnsupportedCall(String),
    #[error("expected a {expected} callback, got `call={got:?}`")]
    WrongCall { expected: &'static str, got: String },
    #[error("client query sets nginx's own callback field {field:?}")]
    OverrideAttempt { field: String },
    #[error("parameter `{param}` is given more than once with different values")]
    DuplicateParam { param: &'static str },
    #[error(
        "URL carries both RGW (Bucket, AccessKeyId) and OSS (OSSAccessKeyId, playlistName, security-token) parameters"
    )]
    AmbiguousScheme,
    #[error("URL is not signed: it has neither AccessKeyId nor OSSAccessKeyId")]
    Unsigned,
    #[error("signed URL lacks the `{0}` parameter")]
    MissingParam(&'static str),
    #[error("bucket name {name:?} is invalid: {reason}")]
    InvalidBucket { name: String, reason: &'static str },
    #[error("channel name {name:?} is invalid: {reason}")]
    InvalidChannel { name: String, reason: &'static str },
    #[error("`Expires` must be a decimal Unix time of 1 to {MAX_EXPIRES_DIGITS} digits")]
    InvalidExpires,
    #[error("URL expired at {expires} (now {now}, {skew} s of clock skew allowed)")]
    Expired { expires: u64, now: u64, skew: u64 },
    #[error("`Expires` {expires} is further ahead than the {max_lifetime} s allowed (now {now})")]
    ExpiresTooFar {
        expires: u64,
        now: u64,
        max_lifetime: u64,
    },
    #[error("access key {key_id:?} is not known")]
    UnknownKey { key_id: String },
    #[error("access key {key_id:?} is disabled")]
    KeyDisabled { key_id: String },
    #[error("access key {key_id:?} may not write to bucket {bucket:?}")]
    BucketNotAllowed { key_id: String, bucket: String },
    #[error("`Signature` is not valid standard base64")]
    SignatureNotBase64,
    #[error("`Signature` decodes to {len} bytes; an HMAC-SHA1 signature has {SHA1_LEN}")]
    SignatureWrongLength { len: usize },
    #[error("signature does not match")]
    BadSignature,
    #[error("OSS-style URL refused: `auth.oss_live_domain` is not configured")]
    OssNotConfigured,
    #[error("OSS-style URL refused: tcUrl host {host:?} is not <bucket>.{domain}")]
    OssHostMismatch { host: String, domain: String },
    #[error("tcUrl {0:?} has no usable host")]
    InvalidTcUrl(String),
    #[error("playlistName {name:?} is invalid: {reason}")]
    InvalidPlaylistName { name: String, reason: &'static str },
    #[error("too many failed attempts from this address; refused until its ban ends")]
    TooManyFailures,
    /// `auth.one_time_push`: this push URL was already used.
    #[error("this push URL was already used (auth.one_time_push)")]
    Replayed,
    /// `channels.unknown = "refuse"` and the channel was never created.
    #[error("no such channel (channels.unknown = \"refuse\")")]
    NoSuchChannel,
    /// The channel's status is `disabled` (PutLiveChannelStatus).
    #[error("the channel is disabled")]
    ChannelDisabled,
}

impl Reject {
    /// Stable snake_case label for logs and metrics; never changes meaning.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Reject::BodyTooLong { .. } => "body_too_long",
            Reject::NotUtf8 { .. } => "not_utf8",
            Reject::MissingField(_) => "missing_field",
            Reject::UnsupportedCall(_) => "unsupported_call",
            Reject::WrongCall { .. } => "wrong_call",
            Reject::OverrideAttempt { .. } => "override_attempt",
            Reject::DuplicateParam { .. } => "duplicate_param",
            Reject::AmbiguousScheme => "ambiguous_scheme",
            Reject::Unsigned => "unsigned",
            Reject::MissingParam(_) => "missing_param",
            Reject::InvalidBucket { .. } => "invalid_bucket",
            Reject::InvalidChannel { .. } => "invalid_channel",
            Reject::InvalidExpires => "invalid_expires",
            Reject::Expired { .. } => "expired",
            Reject::ExpiresTooFar { .. } => "expires_too_far",
            Reject::UnknownKey { .. } => "unknown_key",
            Reject::KeyDisabled { .. } => "key_disabled",
            Reject::BucketNotAllowed { .. } => "bucket_not_allowed",
            Reject::SignatureNotBase64 => "signature_not_base64",
            Reject::SignatureWrongLength { .. } => "signature_wrong_length",
            Reject::BadSignature => "bad_signature",
            Reject::OssNotConfigured => "oss_not_configured",
            Reject::OssHostMismatch { .. } => "oss_host_mismatch",
            Reject::InvalidTcUrl(_) => "invalid_tcurl",
            Reject::InvalidPlaylistName { .. } => "invalid_playlist_name",
            Reject::TooManyFailures => "too_many_failures",
            Reject::Replayed => "replayed",
            Reject::NoSuchChannel => "no_such_channel",
            Reject::ChannelDisabled => "channel_disabled",
        }
    }
}

impl From<crate::channels::Refused> for Reject {
    fn from(r: crate::channels::Refused) -> Self {
        match r {
            crate::channels::Refused::NoSuchChannel => Reject::NoSuchChannel,
            crate::channels::Refused::ChannelDisabled => Reject::ChannelDisabled,
        }
    }
}

impl From<NameError> for Reject {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Bucket { name, reason } => Reject::InvalidBucket { name, reason },
            NameError::Channel { name, reason } => Reject::InvalidChannel { name, reason },
            NameError::PlaylistName { name, reason } => {
                Reject::InvalidPlaylistName { name, reason }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel's refusal keeps its message as a push refusal.
    #[test]
    fn channel_refusals_keep_their_message() {
        use crate::channels::Refused;
        for r in [Refused::NoSuchChannel, Refused::ChannelDisabled] {
            assert_eq!(Reject::from(r).to_string(), r.to_string());
        }
    }

    /// A name refused as a push keeps the name rule's message and label.
    #[test]
    fn name_errors_keep_their_message_and_code() {
        for e in [
            crate::names::validate_bucket("A").unwrap_err(),
            crate::names::validate_channel("a/b").unwrap_err(),
            crate::names::validate_playlist_name("x").unwrap_err(),
        ] {
            let r = Reject::from(e.clone());
            assert_eq!(r.to_string(), e.to_string());
            assert_eq!(r.code(), e.code());
        }
    }
}
