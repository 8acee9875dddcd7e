//! OSS's error vocabulary. Every refusal of the OSS API is one [`OssError`];
//! [`OssError::parts`] maps it to the HTTP status, OSS error code and message
//! in one `match`, and [`super::xml::render_error`] writes OSS's error XML
//! (`<Error><Code/><Message/><RequestId/><HostId/></Error>`), which the HTTP
//! layer sends with an `x-oss-request-id` header.
//!
//! Statuses and codes follow oss2's exception table (`oss2/exceptions.py`,
//! keyed by `(status, code)`, so an SDK raises its specific exception class
//! only when both match) and Alibaba's API reference:
//! `NoSuchLiveChannel` 404, `ChannelStillLive` 409, `LiveChannelDisabled` 409
//! (oss2's class says 409, not 403), `InvalidArgument` 400, `MalformedXML`
//! 400, `AccessDenied` 403, `SignatureDoesNotMatch` 403,
//! `RequestTimeTooSkewed` 403, `EntityTooLarge` 400, `NotImplemented` 400
//! (oss2's class), `MethodNotAllowed` 405, `InvalidDigest` 400, `BadDigest`
//! 400, `ServiceUnavailable` 503, `OperationAborted` 409 (S3's and OSS's
//! code for a conflicting concurrent operation on the same resource).
//!
//! # Refusals never reveal whether an access key id exists
//!
//! OSS itself answers `InvalidAccessKeyId` for an unknown key id. livebucket
//! does not: an unknown key id and a wrong signature both become
//! [`OssError::SignatureDoesNotMatch`] with the same message (see the
//! `From<AuthError>` impl), and the verifier spends the same HMAC on both, so
//! a caller cannot probe for key ids. The precise reason
//! ([`AuthError::UnknownKey`] vs [`AuthError::BadSignature`]) is for the log.
//! Policy refusals (disabled key, bucket not allowed) are `AccessDenied` and
//! are only ever reached with a genuine signature.
//!
//! Messages never contain a secret, a signature or a string to sign (OSS
//! returns the latter two; we do not). Client-supplied text in messages is
//! escaped when rendered.

use crate::sign::oss_v1::AuthError;

/// One refusal of the OSS API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OssError {
    /// No credentials, malformed date or presign parameters, an expired
    /// presigned URL, a disabled key or a bucket the key may not use.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// Wrong signature *or* unknown access key id (deliberately the same).
    #[error("signature does not match")]
    SignatureDoesNotMatch,
    #[error("request time is outside the allowed window")]
    RequestTimeTooSkewed,
    /// A value (query parameter, XML field, name) is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request body is not the XML document the operation expects.
    #[error("malformed XML: {0}")]
    MalformedXml(String),
    #[error("request body exceeds {max} bytes")]
    EntityTooLarge { max: usize },
    #[error("invalid bucket name: {0}")]
    InvalidBucketName(String),
    #[error("invalid object name: {0}")]
    InvalidObjectName(String),
    #[error("no such live channel")]
    NoSuchLiveChannel,
    /// GetObject of a snapshot that is not stored (yet).
    #[error("no such key")]
    NoSuchKey,
    /// The channel has a live publisher, so it cannot be re-created or deleted.
    #[error("live channel is still live")]
    ChannelStillLive,
    #[error("live channel is disabled")]
    LiveChannelDisabled,
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// A request that is not one of the LiveChannel operations.
    #[error("operation not implemented")]
    NotImplemented,
    /// The `Content-MD5` header is not the base64 of an MD5 digest.
    #[error("Content-MD5 is not a base64 MD5 digest")]
    InvalidDigest,
    /// The body's MD5 is not the `Content-MD5` the request sent.
    #[error("Content-MD5 does not match the body")]
    BadDigest,
    /// Our own failure (storage, a corrupt stored record); details go to the log.
    #[error("internal error")]
    InternalError,
    /// A dependency (the cluster coordinator) cannot answer now; the request
    /// changed nothing and may be retried.
    #[error("service unavailable: {0}")]
    ServiceUnavailable(String),
    /// Other writers kept changing the channel's record while this change
    /// was being applied; nothing of this request was stored.
    #[error("the live channel was changed concurrently")]
    ConcurrentUpdate,
}

/// What the HTTP layer sends for an [`OssError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorParts {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl OssError {
    /// Status, OSS code and message, in one place.
    pub fn parts(&self) -> ErrorParts {
        let (status, code, message): (u16, &'static str, String) = match self {
            OssError::AccessDenied(m) => (403, "AccessDenied", m.clone()),
            OssError::SignatureDoesNotMatch => (
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you \
                 provided. Check your key and signing method."
                    .into(),
            ),
            OssError::RequestTimeTooSkewed => (
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.".into(),
            ),
            OssError::InvalidArgument(m) => (400, "InvalidArgument", m.clone()),
            OssError::MalformedXml(m) => (
                400,
                "MalformedXML",
                format!("The XML you provided was not well-formed or did not validate: {m}"),
            ),
            OssError::EntityTooLarge { max } => (
                400,
                "EntityTooLarge",
                format!("Your request body exceeds the maximum allowed size of {max} bytes."),
            ),
            OssError::InvalidBucketName(m) => (
                400,
                "InvalidBucketName",
                format!("The specified bucket is not valid: {m}"),
            ),
            OssError::InvalidObjectName(m) => (
                400,
                "InvalidObjectName",
                format!("The specified object name is not valid: {m}"),
            ),
            OssError::NoSuchLiveChannel => (
                404,
                "NoSuchLiveChannel",
                "The specified live channel does not exist.".into(),
            ),
            OssError::NoSuchKey => (404, "NoSuchKey", "The specified key does not exist.".into()),
            OssError::ChannelStillLive => (
                409,
                "ChannelStillLive",
                "The live channel is still live: stop the stream before updating or \
                 deleting the channel."
                    .into(),
            ),
            OssError::LiveChannelDisabled => (
                409,
                "LiveChannelDisabled",
                "The live channel is disabled.".into(),
            ),
            OssError::MethodNotAllowed => (
                405,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.".into(),
            ),
            OssError::NotImplemented => (
                400,
                "NotImplemented",
                "livebucket implements only the LiveChannel operations of the OSS API.".into(),
            ),
            OssError::InternalError => (
                500,
                "InternalError",
                "We encountered an internal error. Please try again.".into(),
            ),
            OssError::ServiceUnavailable(m) => (503, "ServiceUnavailable", m.clone()),
            OssError::ConcurrentUpdate => (
                409,
                "OperationAborted",
                "Another request changed the live channel at the same time; \
                 nothing of this one was stored. Please try again."
                    .into(),
            ),
            OssError::InvalidDigest => (
                400,
                "InvalidDigest",
                "The Content-MD5 you specified is not valid.".into(),
            ),
            OssError::BadDigest => (
                400,
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.".into(),
            ),
        };
        ErrorParts {
            status,
            code,
            message,
        }
    }
}

impl From<AuthError> for OssError {
    /// The one mapping from authentication failures to OSS answers. An unknown
    /// key id answers exactly like a bad signature (see the module doc).
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::UnknownKey | AuthError::BadSignature => OssError::SignatureDoesNotMatch,
            AuthError::MissingAuth => {
                OssError::AccessDenied("Anonymous access is forbidden for this operation.".into())
            }
            AuthError::BadAuthorization(m) => OssError::InvalidArgument(m.into()),
            AuthError::Malformed(m) => OssError::AccessDenied(m.into()),
            AuthError::Skewed { .. } => OssError::RequestTimeTooSkewed,
            AuthError::Expired { .. } => OssError::AccessDenied("Request has expired.".into()),
            AuthError::ExpiresTooFar { max, .. } => OssError::AccessDenied(format!(
                "Expires is too far in the future: a presigned URL may be valid for at most {max} seconds."
            )),
        }
    }
}

impl From<crate::channels::record::InvalidChannel> for OssError {
    fn from(e: crate::channels::record::InvalidChannel) -> OssError {
        OssError::InvalidArgument(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_and_bad_signature_are_indistinguishable() {
        let unknown = OssError::from(AuthError::UnknownKey).parts();
        let bad = OssError::from(AuthError::BadSignature).parts();
        assert_eq!(unknown, bad);
        assert_eq!(unknown.status, 403);
        assert_eq!(unknown.code, "SignatureDoesNotMatch");
    }

    #[test]
    fn codes_and_statuses_match_oss2_exception_classes() {
        // (status, code) pairs from oss2/exceptions.py, which picks its
        // exception class by both.
        let cases = [
            (OssError::NoSuchLiveChannel, 404, "NoSuchLiveChannel"),
            (OssError::ChannelStillLive, 409, "ChannelStillLive"),
            (OssError::LiveChannelDisabled, 409, "LiveChannelDisabled"),
            (
                OssError::InvalidArgument("x".into()),
                400,
                "InvalidArgument",
            ),
            (OssError::MalformedXml("x".into()), 400, "MalformedXML"),
            (OssError::AccessDenied("x".into()), 403, "AccessDenied"),
            (
                OssError::SignatureDoesNotMatch,
                403,
                "SignatureDoesNotMatch",
            ),
            (
                OssError::InvalidObjectName("x".into()),
                400,
                "InvalidObjectName",
            ),
            (OssError::NotImplemented, 400, "NotImplemented"),
            (OssError::RequestTimeTooSkewed, 403, "RequestTimeTooSkewed"),
            (OssError::EntityTooLarge { max: 1 }, 400, "EntityTooLarge"),
            (OssError::MethodNotAllowed, 405, "MethodNotAllowed"),
            (
                OssError::InvalidBucketName("x".into()),
                400,
                "InvalidBucketName",
            ),
            (OssError::InternalError, 500, "InternalError"),
            (
                OssError::ServiceUnavailable("x".into()),
                503,
                "ServiceUnavailable",
            ),
            (OssError::InvalidDigest, 400, "InvalidDigest"),
            (OssError::BadDigest, 400, "BadDigest"),
            (OssError::ConcurrentUpdate, 409, "OperationAborted"),
        ];
        for (err, status, code) in cases {
            let p = err.parts();
            assert_eq!((p.status, p.code), (status, code), "{err:?}");
            assert!(!p.message.is_empty());
        }
    }

    #[test]
    fn auth_errors_map_to_oss_codes() {
        let code = |e: AuthError| OssError::from(e).parts().code;
        assert_eq!(code(AuthError::MissingAuth), "AccessDenied");
        assert_eq!(code(AuthError::Malformed("m")), "AccessDenied");
        assert_eq!(code(AuthError::BadAuthorization("m")), "InvalidArgument");
        assert_eq!(
            code(AuthError::Skewed {
                date: 0,
                now: 10_000,
                window: 900
            }),
            "RequestTimeTooSkewed"
        );
        assert_eq!(
            code(AuthError::Expired { expires: 1, now: 2 }),
            "AccessDenied"
        );
        assert_eq!(
            code(AuthError::ExpiresTooFar {
                expires: 32_503_680_000,
                now: 2,
                max: 604_800
            }),
            "AccessDenied"
        );
    }
}
