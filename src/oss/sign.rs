//! OSS request signature V1: verifying the requests Alibaba's SDKs send, and
//! signing our own (CLI, tests). No I/O and no clock: the caller passes a
//! [`RequestView`] of the request as received, the key's secret and "now".
//!
//! # The scheme (`oss2.auth.ProviderAuth`, oss2 2.19, `__get_bytes_to_sign`)
//!
//! ```text
//! Authorization: OSS <AccessKeyId>:<Signature>
//! Signature = base64(HMAC-SHA1(secret, StringToSign))
//! StringToSign = VERB "\n" Content-MD5 "\n" Content-Type "\n" Date "\n"
//!                CanonicalizedOSSHeaders CanonicalizedResource
//! ```
//!
//! - `Date` is the `x-oss-date` header when present, else `Date`. It must be
//!   within [`DEFAULT_DATE_WINDOW`] (15 minutes, OSS's value; configurable)
//!   of now, else [`AuthError::Skewed`].
//! - `Content-MD5` and `Content-Type` are those headers' values as sent, or
//!   empty.
//! - CanonicalizedOSSHeaders (`__get_headers_bytes`): every header whose
//!   lower-cased name starts with `x-oss-`, as `name:value\n` with the name
//!   lower-cased and the value trimmed of spaces and tabs, sorted by name.
//!   oss2 cannot send a name twice; we refuse a repeated one
//!   ([`AuthError::Malformed`]) rather than guess how it was combined.
//! - CanonicalizedResource (`__get_resource_string`,
//!   `__get_subresource_string`): `/BUCKET/KEY` with the *decoded* object key
//!   (`/BUCKET/` for bucket-level requests such as ListLiveChannel), whatever
//!   the addressing style (virtual-hosted, custom domain or path style: oss2
//!   signs the same resource for all three), then `?` and the query
//!   parameters that are OSS sub-resources ([`SUB_RESOURCES`], oss2's
//!   `_subresource_key_set`), sorted by name, joined by `&`, each as `name`
//!   when its decoded value is empty and `name=value` otherwise (values are
//!   not re-encoded). So `GET /cam1?live=&comp=stat` signs
//!   `/bucket/cam1?comp=stat&live`, and a VOD request signs
//!   `?endTime=E&startTime=S&vod`.
//! - Every other query parameter (`prefix`, `marker`, `max-keys` of
//!   ListLiveChannel among them) is **not signed**, by OSS's design: the
//!   handler must treat those as unauthenticated input.
//!
//! The presigned-URL form (`Bucket.sign_url` → `ProviderAuth._sign_url`)
//! carries `OSSAccessKeyId`, `Expires` (Unix seconds) and `Signature` in the
//! query and signs the same string with the `Expires` text in place of the
//! date; it is valid up to and including second `Expires`, and refused
//! ([`AuthError::ExpiresTooFar`]) when `Expires` is further ahead than the
//! caller's cap (V1 itself sets none). `security-token`
//! (STS) is a sub-resource, so it is signed; `x-oss-security-token` is an
//! `x-oss-` header, so it is signed too.
//!
//! `oss2.Auth`, the SDK's default, is this V1 scheme (`auth_version()` is
//! `'v1'`); V2 (`OSS2`) and V4 (`OSS4-HMAC-SHA256`) need an explicit
//! `AuthV2`/`AuthV4` and are refused here with [`AuthError::BadAuthorization`].
//!
//! # Invariants
//!
//! - Signatures are compared in constant time (`Mac::verify_slice`), on the
//!   20 decoded bytes; each tag has one accepted spelling (canonical base64).
//! - An unknown key id costs the same HMAC as a known one and is reported as
//!   [`AuthError::UnknownKey`] *after* that work; the OSS layer answers it
//!   exactly like [`AuthError::BadSignature`] (see [`super::error`]).
//! - Skew and expiry are only reported for genuine signatures, so a caller
//!   learns nothing about a key it cannot sign for.
//! - A sub-resource, an `x-oss-` header, `Date`, `Content-MD5`,
//!   `Content-Type`, `Authorization` or a query credential given twice is
//!   refused: the signature and the handler must not read different copies.
//! - No error and no `Debug` output carries a secret or a signature.
//! - Nothing here panics on any input.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// OSS refuses a `Date` further than 15 minutes from its clock.
pub const DEFAULT_DATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The longest a presigned URL may be valid by default: 7 days, the limit
/// OSS (V4) and SigV4 put on theirs.
pub const DEFAULT_MAX_PRESIGNED_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// The query parameters OSS signs, byte-sorted: oss2 2.19's
/// `ProviderAuth._subresource_key_set`, which covers every sub-resource the
/// OSS V1 documentation lists. A client signs every one of these that it
/// sends, so the verifier must include every one it receives.
pub const SUB_RESOURCES: &[&str] = &[
    "accessPoint",
    "accessPointPolicy",
    "acl",
    "append",
    "asyncFetch",
    "bucketArchiveDirectRead",
    "bucketInfo",
    "callback",
    "callback-var",
    "cname",
    "comp",
    "continuation-token",
    "cors",
    "delete",
    "encryption",
    "endTime",
    "group",
    "httpsConfig",
    "inventory",
    "inventoryId",
    "lifecycle",
    "link",
    "live",
    "location",
    "logging",
    "metaQuery",
    "objectInfo",
    "objectMeta",
    "partNumber",
    "policy",
    "position",
    "publicAccessBlock",
    "qos",
    "qosInfo",
    "qosRequester",
    "redundancyTransition",
    "referer",
    "regionList",
    "replication",
    "replicationLocation",
    "replicationProgress",
    "requestPayment",
    "requesterQosInfo",
    "resourceGroup",
    "resourcePool",
    "resourcePoolBuckets",
    "resourcePoolInfo",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "security-token",
    "sequential",
    "startTime",
    "stat",
    "status",
    "style",
    "styleName",
    "symlink",
    "tagging",
    "transferAcceleration",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "vod",
    "website",
    "worm",
    "wormExtend",
    "wormId",
    "x-oss-ac-forward-allow",
    "x-oss-ac-source-ip",
    "x-oss-ac-subnet-mask",
    "x-oss-ac-vpc-id",
    "x-oss-access-point-name",
    "x-oss-async-process",
    "x-oss-process",
    "x-oss-redundancy-transition-taskid",
    "x-oss-request-payer",
    "x-oss-target-redundancy-type",
    "x-oss-traffic-limit",
    "x-oss-write-get-object-response",
];

/// HMAC-SHA1 tag length.
const SHA1_LEN: usize = 20;

/// Enough digits for any Unix time in `i64`.
const MAX_EXPIRES_DIGITS: usize = 19;

/// Keys the HMAC for an unknown access key id, so that path costs the same.
const UNKNOWN_KEY_STANDIN: &[u8] = b"livebucket: no such access key";

/// Query parameters that mark OSS V2/V4 presigned URLs.
const NEWER_PRESIGN_PARAMS: &[&str] = &[
    "x-oss-signature-version",
    "x-oss-credential",
    "x-oss-signature",
];

/// RFC 3986 unreserved characters stay; everything else is `%XX` (as oss2's
/// `urlquote(v, '')` does for presigned URLs).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A request as received, after bucket addressing and decoding
/// ([`super::route::resolve`], [`super::route::parse_query`]).
///
/// No `Debug`: the headers carry the signature.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The HTTP method as sent (`GET`, `PUT`, …).
    pub method: &'a str,
    /// The bucket, however it was addressed.
    pub bucket: &'a str,
    /// The decoded object key; empty for bucket-level requests.
    pub object: &'a str,
    /// Decoded query parameters in request order, repeats included.
    pub query: &'a [(String, String)],
    /// Header names (any case) and raw values, repeats included.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Why a request is not authenticated. The OSS layer maps each to an answer
/// in `From<AuthError> for OssError`; log the variant, answer the mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither an `Authorization` header nor query credentials.
    #[error("request carries no OSS credentials")]
    MissingAuth,
    /// An `Authorization` header that is not OSS signature V1.
    #[error("Authorization header refused: {0}")]
    BadAuthorization(&'static str),
    /// Credentials present but unusable: date, presign parameters, repeats.
    #[error("credentials refused: {0}")]
    Malformed(&'static str),
    /// The access key id is not configured (answered like `BadSignature`).
    #[error("access key id is not known")]
    UnknownKey,
    #[error("signature does not match")]
    BadSignature,
    /// A genuine signature whose date is outside the window.
    #[error("request date {date} is more than {window} s from now ({now})")]
    Skewed { date: i64, now: i64, window: u64 },
    /// A genuine presigned URL past its `Expires`.
    #[error("presigned URL expired at {expires} (now {now})")]
    Expired { expires: i64, now: i64 },
    /// A genuine presigned URL whose `Expires` is further from now than the
    /// longest lifetime allowed (`api.max_presigned_lifetime_secs`).
    #[error("presigned URL expires at {expires}, more than {max} s after now ({now})")]
    ExpiresTooFar { expires: i64, now: i64, max: u64 },
}

/// The credentials of a request, parsed but not yet verified.
pub struct Credentials<'a> {
    key_id: &'a str,
    signature: [u8; SHA1_LEN],
    form: Form<'a>,
}

enum Form<'a> {
    /// `Authorization` header; `date` is the signed date text.
    Header { date: &'a [u8], date_unix: i64 },
    /// Query credentials; `expires` is the signed `Expires` text.
    Presigned { expires: &'a str, expires_unix: i64 },
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("key_id", &self.key_id)
            .field("presigned", &self.is_presigned())
            .finish_non_exhaustive()
    }
}

/// Finds the request's credentials, without looking at any secret.
///
/// The HTTP layer then looks the key id up and calls
/// [`Credentials::verify`] with the secret, or with `None` when the key id is
/// unknown.
pub fn parse<'a>(view: &RequestView<'a>) -> Result<Credentials<'a>, AuthError> {
    if NEWER_PRESIGN_PARAMS
        .iter()
        .any(|p| view.query.iter().any(|(k, _)| k == p))
    {
        return Err(AuthError::BadAuthorization(
            "only OSS signature V1 is supported, not V2 or V4 presigned URLs",
        ));
    }
    let header = single_header(view.headers, "authorization")?;
    let id = single_query(view.query, "OSSAccessKeyId")?;
    let expires = single_query(view.query, "Expires")?;
    let signature = single_query(view.query, "Signature")?;
    let query_form = id.is_some() || expires.is_some() || signature.is_some();
    match (header, query_form) {
        (Some(_), true) => Err(AuthError::Malformed(
            "the request carries both an Authorization header and query credentials",
        )),
        (Some(value), false) => parse_header(value, view.headers),
        (None, true) => {
            let (Some(id), Some(expires), Some(signature)) = (id, expires, signature) else {
                return Err(AuthError::Malformed(
                    "Query string authentication requires the Signature, Expires and \
                     OSSAccessKeyId parameters",
                ));
            };
            if !is_key_id(id) {
                return Err(AuthError::Malformed(
                    "OSSAccessKeyId is empty or not printable",
                ));
            }
            Ok(Credentials {
                key_id: id,
                signature: decode_signature(signature).ok_or(AuthError::Malformed(
                    "Signature is not the base64 of an HMAC-SHA1",
                ))?,
                form: Form::Presigned {
                    expires,
                    expires_unix: parse_expires(expires)?,
                },
            })
        }
        (None, false) => Err(AuthError::MissingAuth),
    }
}

fn parse_header<'a>(
    value: &'a [u8],
    headers: &'a [(&'a str, &'a [u8])],
) -> Result<Credentials<'a>, AuthError> {
    let value = std::str::from_utf8(value)
        .map_err(|_| AuthError::BadAuthorization("the Authorization header is not UTF-8"))?;
    let Some(rest) = value.strip_prefix("OSS ") else {
        return Err(
            if value.starts_with("OSS2 ") || value.starts_with("OSS4-HMAC-SHA256") {
                AuthError::BadAuthorization(
                    "only OSS signature V1 ('OSS AccessKeyId:Signature') is supported",
                )
            } else {
                AuthError::BadAuthorization(
                    "the Authorization header is not 'OSS AccessKeyId:Signature'",
                )
            },
        );
    };
    let Some((key_id, signature)) = rest.split_once(':') else {
        return Err(AuthError::BadAuthorization(
            "the Authorization header is not 'OSS AccessKeyId:Signature'",
        ));
    };
    if !is_key_id(key_id) {
        return Err(AuthError::BadAuthorization(
            "the access key id in the Authorization header is empty or not printable",
        ));
    }
    let signature = decode_signature(signature).ok_or(AuthError::BadAuthorization(
        "the signature in the Authorization header is not the base64 of an HMAC-SHA1",
    ))?;
    let date = date_header(headers)?.ok_or(AuthError::Malformed(
        "the request has neither a Date nor an x-oss-date header",
    ))?;
    Ok(Credentials {
        key_id,
        signature,
        form: Form::Header {
            date,
            date_unix: parse_http_date(date)?,
        },
    })
}

impl<'a> Credentials<'a> {
    /// The access key id the request claims. Not yet verified.
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    /// Whether the credentials came in the query (presigned URL).
    pub fn is_presigned(&self) -> bool {
        matches!(self.form, Form::Presigned { .. })
    }

    /// Verifies the signature with `secret` (`None`: the key id is unknown),
    /// then, at `now_unix`, the date window (header form) or the expiry
    /// (presigned form: not past, and at most `max_lifetime` ahead, so a URL
    /// signed for the year 3000 is refused rather than valid for ever).
    ///
    /// `view` must be the same request [`parse`] read.
    pub fn verify(
        &self,
        view: &RequestView<'_>,
        secret: Option<&str>,
        now_unix: i64,
        window: Duration,
        max_lifetime: Duration,
    ) -> Result<(), AuthError> {
        let date_line = match self.form {
            Form::Header { date, .. } => date,
            Form::Presigned { expires, .. } => expires.as_bytes(),
        };
        let to_sign = string_to_sign(view, date_line)?;
        let mut mac = new_mac(secret.map_or(UNKNOWN_KEY_STANDIN, str::as_bytes))?;
        mac.update(&to_sign);
        let genuine = mac.verify_slice(&self.signature).is_ok();
        if secret.is_none() {
            return Err(AuthError::UnknownKey);
        }
        if !genuine {
            return Err(AuthError::BadSignature);
        }
        match self.form {
            Form::Header { date_unix, .. } => {
                let window = window.as_secs();
                if now_unix.saturating_sub(date_unix).unsigned_abs() > window {
                    return Err(AuthError::Skewed {
                        date: date_unix,
                        now: now_unix,
                        window,
                    });
                }
            }
            Form::Presigned { expires_unix, .. } => {
                if now_unix > expires_unix {
                    return Err(AuthError::Expired {
                        expires: expires_unix,
                        now: now_unix,
                    });
                }
                let max = max_lifetime.as_secs();
                if expires_unix.saturating_sub(now_unix).unsigned_abs() > max {
                    return Err(AuthError::ExpiresTooFar {
                        expires: expires_unix,
                        now: now_unix,
                        max,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The bytes OSS V1 signs for `view`, with `date_line` (the `x-oss-date` or
/// `Date` header, or a presigned URL's `Expires`) on the fourth line.
///
/// Not secret (OSS returns it in `SignatureDoesNotMatch` answers), so a
/// handler may log it at debug level to help a client debug its signer.
pub fn string_to_sign(view: &RequestView<'_>, date_line: &[u8]) -> Result<Vec<u8>, AuthError> {
    let content_md5 = single_header(view.headers, "content-md5")?.unwrap_or_default();
    let content_type = single_header(view.headers, "content-type")?.unwrap_or_default();

    let mut out = Vec::with_capacity(256);
    for part in [
        view.method.as_bytes(),
        b"\n",
        content_md5,
        b"\n",
        content_type,
        b"\n",
        date_line,
        b"\n",
    ] {
        out.extend_from_slice(part);
    }

    let mut oss_headers: Vec<(String, &[u8])> = view
        .headers
        .iter()
        .filter(|(name, _)| {
            name.get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-oss-"))
        })
        .map(|(name, value)| (name.to_ascii_lowercase(), trim_ws(value)))
        .collect();
    oss_headers.sort_by(|a, b| a.0.cmp(&b.0));
    if oss_headers.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(AuthError::Malformed(
            "an x-oss- header is given more than once",
        ));
    }
    for (name, value) in oss_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value);
        out.push(b'\n');
    }

    out.push(b'/');
    if !view.bucket.is_empty() {
        out.extend_from_slice(view.bucket.as_bytes());
        out.push(b'/');
        out.extend_from_slice(view.object.as_bytes());
    }
    let mut subs: Vec<(&str, &str)> = view
        .query
        .iter()
        .filter(|(k, _)| SUB_RESOURCES.binary_search(&k.as_str()).is_ok())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    subs.sort_by(|a, b| a.0.cmp(b.0));
    if subs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(AuthError::Malformed(
            "a signed query parameter is given more than once",
        ));
    }
    for (i, (k, v)) in subs.into_iter().enumerate() {
        out.push(if i == 0 { b'?' } else { b'&' });
        out.extend_from_slice(k.as_bytes());
        if !v.is_empty() {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
    }
    Ok(out)
}

/// The V1 signature of a request that carries its `Date` (or `x-oss-date`)
/// header in `view.headers`.
pub fn sign(secret: &str, view: &RequestView<'_>) -> Result<String, AuthError> {
    let date = date_header(view.headers)?.ok_or(AuthError::Malformed(
        "the request has neither a Date nor an x-oss-date header",
    ))?;
    compute(secret, &string_to_sign(view, date)?)
}

/// The `Authorization` header value `OSS <key_id>:<signature>` for `view`.
pub fn authorization_header(
    key_id: &str,
    secret: &str,
    view: &RequestView<'_>,
) -> Result<String, AuthError> {
    if !is_key_id(key_id) {
        return Err(AuthError::Malformed(
            "access key id is empty or not printable",
        ));
    }
    Ok(format!("OSS {key_id}:{}", sign(secret, view)?))
}

/// The query credentials `OSSAccessKeyId=…&Expires=…&Signature=…` (encoded,
/// no leading `&`) of a presigned URL for `view`, valid through `expires`.
/// Append them to the URL's own query, whose sub-resources they sign.
pub fn presign_query(
    key_id: &str,
    secret: &str,
    view: &RequestView<'_>,
    expires: u64,
) -> Result<String, AuthError> {
    if !is_key_id(key_id) {
        return Err(AuthError::Malformed(
            "access key id is empty or not printable",
        ));
    }
    let expires = expires.to_string();
    let signature = compute(secret, &string_to_sign(view, expires.as_bytes())?)?;
    Ok(format!(
        "OSSAccessKeyId={}&Expires={expires}&Signature={}",
        utf8_percent_encode(key_id, QUERY_VALUE),
        utf8_percent_encode(&signature, QUERY_VALUE),
    ))
}

fn compute(secret: &str, to_sign: &[u8]) -> Result<String, AuthError> {
    let mut mac = new_mac(secret.as_bytes())?;
    mac.update(to_sign);
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// HMAC takes keys of any length, so this never fails; mapping instead of
/// unwrapping keeps the module free of panics.
fn new_mac(key: &[u8]) -> Result<HmacSha1, AuthError> {
    <HmacSha1 as KeyInit>::new_from_slice(key)
        .map_err(|_| AuthError::Malformed("HMAC key rejected"))
}

/// The one value of header `name` (any case), refusing repeats.
fn single_header<'a>(
    headers: &'a [(&'a str, &'a [u8])],
    name: &str,
) -> Result<Option<&'a [u8]>, AuthError> {
    let mut found = None;
    for (n, v) in headers {
        if n.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(AuthError::Malformed(
                    "Date, Content-MD5, Content-Type or Authorization is given more than once",
                ));
            }
            found = Some(*v);
        }
    }
    Ok(found)
}

/// The signed date: `x-oss-date` when present, else `Date`.
fn date_header<'a>(headers: &'a [(&'a str, &'a [u8])]) -> Result<Option<&'a [u8]>, AuthError> {
    match single_header(headers, "x-oss-date")? {
        Some(d) => Ok(Some(d)),
        None => single_header(headers, "date"),
    }
}

/// The one value of query parameter `name` (exact case), refusing repeats.
fn single_query<'a>(
    query: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, AuthError> {
    let mut found = None;
    for (k, v) in query {
        if k == name {
            if found.is_some() {
                return Err(AuthError::Malformed(
                    "OSSAccessKeyId, Expires or Signature is given more than once",
                ));
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

fn is_key_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Canonical standard base64 of exactly 20 bytes; anything else is `None`.
fn decode_signature(text: &str) -> Option<[u8; SHA1_LEN]> {
    let bytes = STANDARD.decode(text.as_bytes()).ok()?;
    <[u8; SHA1_LEN]>::try_from(bytes.as_slice()).ok()
}

fn parse_expires(text: &str) -> Result<i64, AuthError> {
    let bad = AuthError::Malformed("Expires is not a decimal Unix time");
    if text.is_empty()
        || text.len() > MAX_EXPIRES_DIGITS
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad);
    }
    text.parse::<i64>().map_err(|_| bad)
}

fn parse_http_date(value: &[u8]) -> Result<i64, AuthError> {
    let bad = AuthError::Malformed(
        "the request date is not an HTTP date such as 'Tue, 14 Nov 2023 22:13:20 GMT'",
    );
    let text = std::str::from_utf8(value).map_err(|_| bad.clone())?;
    let time = httpdate::parse_http_date(text.trim()).map_err(|_| bad.clone())?;
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad.clone())?
        .as_secs();
    i64::try_from(secs).map_err(|_| bad)
}

/// OSS trims the spaces and tabs around a header value (HTTP parsers have
/// mostly removed them already); other whitespace is part of the value.
fn trim_ws(value: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of Alibaba's "Include a V1 signature in the
    // Authorization header" page: AccessKeyId 44CF9590006BF252F707, secret
    // OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV, `PUT /nelson` on bucket
    // oss-example, signature 26NBxoKdsyly4EDv6inkoDft/yA=. The page's string
    // to sign carries Content-MD5 ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=
    // (its request line shows eB5e…, a known slip of the page; the Go, Ruby
    // and libcloud OSS signers test the ODBG… value). Rechecked with
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV",b"PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\nThu, 17 Nov 2005 18:49:58 GMT\nx-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n/oss-example/nelson",hashlib.sha1).digest()).decode())'
    // -> 26NBxoKdsyly4EDv6inkoDft/yA=
    const DOC_ID: &str = "44CF9590006BF252F707";
    const DOC_SECRET: &str = "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV";
    const DOC_SIG: &str = "26NBxoKdsyly4EDv6inkoDft/yA=";
    const DOC_DATE: &str = "Thu, 17 Nov 2005 18:49:58 GMT";
    /// DOC_DATE as Unix seconds.
    const DOC_NOW: i64 = 1_132_253_398;

    /// Owned headers and query, borrowed into a [`RequestView`] per case.
    type Headers = Vec<(String, Vec<u8>)>;
    type Query = Vec<(String, String)>;
    type Pairs<'a> = Vec<(&'a str, &'a str)>;

    fn doc_headers(auth: &str) -> Headers {
        vec![
            (
                "Content-MD5".into(),
                b"ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=".to_vec(),
            ),
            ("Content-Type".into(), b"text/html".to_vec()),
            ("Date".into(), DOC_DATE.as_bytes().to_vec()),
            (
                "Host".into(),
                b"oss-example.oss-cn-hangzhou.aliyuncs.com".to_vec(),
            ),
            ("X-OSS-Meta-Author".into(), b"foo@bar.com".to_vec()),
            ("X-OSS-Magic".into(), b"abracadabra".to_vec()),
            ("Authorization".into(), auth.as_bytes().to_vec()),
        ]
    }

    fn borrow(h: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
        h.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
    }

    fn view<'a>(
        method: &'a str,
        bucket: &'a str,
        object: &'a str,
        query: &'a [(String, String)],
        headers: &'a [(&'a str, &'a [u8])],
    ) -> RequestView<'a> {
        RequestView {
            method,
            bucket,
            object,
            query,
            headers,
        }
    }

    fn check(v: &RequestView<'_>, secret: Option<&str>, now: i64) -> Result<(), AuthError> {
        parse(v)?.verify(
            v,
            secret,
            now,
            DEFAULT_DATE_WINDOW,
            DEFAULT_MAX_PRESIGNED_LIFETIME,
        )
    }

    #[test]
    fn sub_resources_are_sorted_and_unique() {
        assert!(SUB_RESOURCES.windows(2).all(|w| w[0] < w[1]));
        for word in [
            "live",
            "comp",
            "status",
            "vod",
            "startTime",
            "endTime",
            "security-token",
        ] {
            assert!(SUB_RESOURCES.binary_search(&word).is_ok(), "{word}");
        }
        for unsigned in [
            "prefix",
            "marker",
            "max-keys",
            "OSSAccessKeyId",
            "Expires",
            "Signature",
        ] {
            assert!(
                SUB_RESOURCES.binary_search(&unsigned).is_err(),
                "{unsigned}"
            );
        }
    }

    #[test]
    fn documentation_example_string_to_sign_and_signature() {
        let h = doc_headers(&format!("OSS {DOC_ID}:{DOC_SIG}"));
        let h = borrow(&h);
        let v = view("PUT", "oss-example", "nelson", &[], &h);
        assert_eq!(
            String::from_utf8(string_to_sign(&v, DOC_DATE.as_bytes()).unwrap()).unwrap(),
            "PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\n\
             Thu, 17 Nov 2005 18:49:58 GMT\nx-oss-magic:abracadabra\n\
             x-oss-meta-author:foo@bar.com\n/oss-example/nelson"
        );
        assert_eq!(sign(DOC_SECRET, &v).unwrap(), DOC_SIG);
        assert_eq!(
            authorization_header(DOC_ID, DOC_SECRET, &v).unwrap(),
            format!("OSS {DOC_ID}:{DOC_SIG}")
        );
        let creds = parse(&v).unwrap();
        assert_eq!(creds.key_id(), DOC_ID);
        assert!(!creds.is_presigned());
        assert_eq!(check(&v, Some(DOC_SECRET), DOC_NOW), Ok(()));
    }

    // The OSS "URL signature" recipe with the same key: GET of
    // /oss-example/oss-api.pdf until 1141889120. (The page prints
    // vjbyPxybdZaNmGa+yT272YEAiv4=, which is AWS's example signature over
    // /quotes/nelson; Aliyun's Go SDK and this Python agree on the value below.)
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV",b"GET\n\n\n1141889120\n/oss-example/oss-api.pdf",hashlib.sha1).digest()).decode())'
    // -> EwaNTn1erJGkimiJ9WmXgwnANLc=
    #[test]
    fn documentation_presigned_url_example() {
        let v = view("GET", "oss-example", "oss-api.pdf", &[], &[]);
        assert_eq!(
            presign_query(DOC_ID, DOC_SECRET, &v, 1_141_889_120).unwrap(),
            "OSSAccessKeyId=44CF9590006BF252F707&Expires=1141889120\
             &Signature=EwaNTn1erJGkimiJ9WmXgwnANLc%3D"
        );
        let q = vec![
            ("OSSAccessKeyId".to_string(), DOC_ID.to_string()),
            ("Expires".to_string(), "1141889120".to_string()),
            (
                "Signature".to_string(),
                "EwaNTn1erJGkimiJ9WmXgwnANLc=".to_string(),
            ),
        ];
        let v = view("GET", "oss-example", "oss-api.pdf", &q, &[]);
        assert!(parse(&v).unwrap().is_presigned());
        // Valid through the expiry second itself, not after.
        assert_eq!(check(&v, Some(DOC_SECRET), 1_141_889_120), Ok(()));
        // Valid for at most the cap (7 days): signed earlier than that, the
        // same URL is refused, though genuine and not expired.
        let week = DEFAULT_MAX_PRESIGNED_LIFETIME.as_secs() as i64;
        assert_eq!(check(&v, Some(DOC_SECRET), 1_141_889_120 - week), Ok(()));
        assert_eq!(
            check(&v, Some(DOC_SECRET), 1_141_889_120 - week - 1),
            Err(AuthError::ExpiresTooFar {
                expires: 1_141_889_120,
                now: 1_141_889_120 - week - 1,
                max: week as u64,
            })
        );
        // Only for genuine signatures: a wrong one says nothing about it.
        assert_eq!(
            check(&v, Some("another secret"), 1_141_889_120 - week - 1),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check(&v, Some(DOC_SECRET), 1_141_889_121),
            Err(AuthError::Expired {
                expires: 1_141_889_120,
                now: 1_141_889_121
            })
        );
        assert_eq!(
            check(&v, Some("wrong"), 1_141_889_121),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn every_signed_field_is_bound() {
        let good = doc_headers(&format!("OSS {DOC_ID}:{DOC_SIG}"));
        let edit = |name: &str, value: Option<&str>| -> Headers {
            let mut h: Vec<_> = good.iter().filter(|(n, _)| n != name).cloned().collect();
            if let Some(value) = value {
                h.push((name.to_string(), value.as_bytes().to_vec()));
            }
            h
        };
        let q_live = vec![("live".to_string(), String::new())];
        let cases: Vec<(&str, &str, &str, Query, Headers)> = vec![
            ("verb", "POST", "nelson", vec![], good.clone()),
            ("bucket", "PUT", "nelson", vec![], good.clone()),
            ("object", "PUT", "nelson2", vec![], good.clone()),
            ("sub-resource", "PUT", "nelson", q_live, good.clone()),
            (
                "content-type",
                "PUT",
                "nelson",
                vec![],
                edit("Content-Type", Some("text/plain")),
            ),
            (
                "content-md5",
                "PUT",
                "nelson",
                vec![],
                edit("Content-MD5", None),
            ),
            (
                "x-oss header value",
                "PUT",
                "nelson",
                vec![],
                edit("X-OSS-Magic", Some("abra")),
            ),
            (
                "x-oss header removed",
                "PUT",
                "nelson",
                vec![],
                edit("X-OSS-Magic", None),
            ),
            (
                "x-oss header added",
                "PUT",
                "nelson",
                vec![],
                edit("x-oss-meta-new", Some("1")),
            ),
            (
                "date",
                "PUT",
                "nelson",
                vec![],
                edit("Date", Some("Thu, 17 Nov 2005 18:49:59 GMT")),
            ),
        ];
        for (what, method, object, query, headers) in cases {
            let bucket = if what == "bucket" {
                "oss-example2"
            } else {
                "oss-example"
            };
            let h = borrow(&headers);
            let v = view(method, bucket, object, &query, &h);
            assert_eq!(
                check(&v, Some(DOC_SECRET), DOC_NOW),
                Err(AuthError::BadSignature),
                "{what}"
            );
        }
    }

    #[test]
    fn unsigned_fields_do_not_matter() {
        // Header name case, headers OSS does not sign, and query parameters
        // that are not sub-resources are outside the signature.
        let mut h = doc_headers(&format!("OSS {DOC_ID}:{DOC_SIG}"));
        for (name, _) in &mut h {
            if name.starts_with("X-OSS") {
                *name = name.to_ascii_lowercase();
            }
        }
        h.push(("User-Agent".into(), b"aliyun-sdk-python/2.19.1".to_vec()));
        h.push(("X-Amz-Meta-Other".into(), b"1".to_vec()));
        let q = vec![
            ("prefix".to_string(), "a".to_string()),
            ("max-keys".to_string(), "5".to_string()),
        ];
        let h = borrow(&h);
        let v = view("PUT", "oss-example", "nelson", &q, &h);
        assert_eq!(check(&v, Some(DOC_SECRET), DOC_NOW), Ok(()));
    }

    #[test]
    fn date_window() {
        let h = doc_headers(&format!("OSS {DOC_ID}:{DOC_SIG}"));
        let h = borrow(&h);
        let v = view("PUT", "oss-example", "nelson", &[], &h);
        for now in [DOC_NOW - 900, DOC_NOW + 900] {
            assert_eq!(check(&v, Some(DOC_SECRET), now), Ok(()), "{now}");
        }
        for now in [DOC_NOW - 901, DOC_NOW + 901, 0, i64::MAX] {
            assert!(
                matches!(
                    check(&v, Some(DOC_SECRET), now),
                    Err(AuthError::Skewed { .. })
                ),
                "{now}"
            );
        }
        // The window is configurable.
        let creds = parse(&v).unwrap();
        assert_eq!(
            creds.verify(
                &v,
                Some(DOC_SECRET),
                DOC_NOW + 60,
                Duration::from_secs(60),
                DEFAULT_MAX_PRESIGNED_LIFETIME
            ),
            Ok(())
        );
        assert!(matches!(
            creds.verify(
                &v,
                Some(DOC_SECRET),
                DOC_NOW + 61,
                Duration::from_secs(60),
                DEFAULT_MAX_PRESIGNED_LIFETIME
            ),
            Err(AuthError::Skewed { .. })
        ));
        // Skew is reported only for a genuine signature.
        assert_eq!(check(&v, Some("other"), 0), Err(AuthError::BadSignature));
    }

    #[test]
    fn x_oss_date_overrides_date() {
        let date = "Thu, 17 Nov 2005 18:49:58 GMT";
        let h: Vec<(&str, &[u8])> = vec![
            ("Date", b"Mon, 01 Jan 2001 00:00:00 GMT"),
            ("x-oss-date", date.as_bytes()),
        ];
        let v = view("GET", "b", "o", &[], &h);
        let sts = String::from_utf8(string_to_sign(&v, date.as_bytes()).unwrap()).unwrap();
        assert_eq!(sts, format!("GET\n\n\n{date}\nx-oss-date:{date}\n/b/o"));
        let sig = sign("s", &v).unwrap();
        let auth = format!("OSS id:{sig}");
        let mut h = h;
        h.push(("Authorization", auth.as_bytes()));
        let v = view("GET", "b", "o", &[], &h);
        // The window applies to x-oss-date, not to the stale Date.
        assert_eq!(check(&v, Some("s"), DOC_NOW), Ok(()));
    }

    #[test]
    fn unknown_key_is_reported_after_the_same_work() {
        let h = doc_headers(&format!("OSS {DOC_ID}:{DOC_SIG}"));
        let h = borrow(&h);
        let v = view("PUT", "oss-example", "nelson", &[], &h);
        // Even with a signature that would verify, and a skewed date.
        assert_eq!(check(&v, None, DOC_NOW), Err(AuthError::UnknownKey));
        assert_eq!(check(&v, None, 0), Err(AuthError::UnknownKey));
    }

    #[test]
    fn credential_shapes() {
        let sig = DOC_SIG;
        let header = |auth: &str| {
            vec![
                ("Authorization".to_string(), auth.as_bytes().to_vec()),
                ("Date".to_string(), DOC_DATE.as_bytes().to_vec()),
            ]
        };
        let cases: Vec<(Headers, Pairs, AuthError)> = vec![
            (vec![], vec![], AuthError::MissingAuth),
            (
                header("AWS id:x"),
                vec![],
                AuthError::BadAuthorization(
                    "the Authorization header is not 'OSS AccessKeyId:Signature'",
                ),
            ),
            (
                header(&format!("OSS {DOC_ID}{sig}")),
                vec![],
                AuthError::BadAuthorization(
                    "the Authorization header is not 'OSS AccessKeyId:Signature'",
                ),
            ),
            (
                header(&format!("OSS :{sig}")),
                vec![],
                AuthError::BadAuthorization(
                    "the access key id in the Authorization header is empty or not printable",
                ),
            ),
            (
                header(&format!("OSS {DOC_ID}:{}", &sig[..27])),
                vec![],
                AuthError::BadAuthorization(
                    "the signature in the Authorization header is not the base64 of an HMAC-SHA1",
                ),
            ),
            (
                header("OSS4-HMAC-SHA256 Credential=x,Signature=y"),
                vec![],
                AuthError::BadAuthorization(
                    "only OSS signature V1 ('OSS AccessKeyId:Signature') is supported",
                ),
            ),
            (
                header("OSS2 AccessKeyId:x,Signature:y"),
                vec![],
                AuthError::BadAuthorization(
                    "only OSS signature V1 ('OSS AccessKeyId:Signature') is supported",
                ),
            ),
            (
                vec![(
                    "Authorization".to_string(),
                    format!("OSS {DOC_ID}:{sig}").into_bytes(),
                )],
                vec![],
                AuthError::Malformed("the request has neither a Date nor an x-oss-date header"),
            ),
            (
                vec![
                    (
                        "Authorization".to_string(),
                        format!("OSS {DOC_ID}:{sig}").into_bytes(),
                    ),
                    ("Date".to_string(), b"yesterday".to_vec()),
                ],
                vec![],
                AuthError::Malformed(
                    "the request date is not an HTTP date such as 'Tue, 14 Nov 2023 22:13:20 GMT'",
                ),
            ),
            (
                header(&format!("OSS {DOC_ID}:{sig}")),
                vec![("Signature", sig)],
                AuthError::Malformed(
                    "the request carries both an Authorization header and query credentials",
                ),
            ),
            (
                vec![],
                vec![("OSSAccessKeyId", DOC_ID), ("Signature", sig)],
                AuthError::Malformed(
                    "Query string authentication requires the Signature, Expires and OSSAccessKeyId parameters",
                ),
            ),
            (
                vec![],
                vec![
                    ("OSSAccessKeyId", DOC_ID),
                    ("Expires", "-1"),
                    ("Signature", sig),
                ],
                AuthError::Malformed("Expires is not a decimal Unix time"),
            ),
            (
                vec![],
                vec![
                    ("OSSAccessKeyId", DOC_ID),
                    ("Expires", "99999999999999999999"),
                    ("Signature", sig),
                ],
                AuthError::Malformed("Expires is not a decimal Unix time"),
            ),
            (
                vec![],
                vec![
                    ("OSSAccessKeyId", DOC_ID),
                    ("Expires", "1"),
                    ("Signature", "x"),
                ],
                AuthError::Malformed("Signature is not the base64 of an HMAC-SHA1"),
            ),
            (
                vec![],
                vec![
                    ("OSSAccessKeyId", DOC_ID),
                    ("Expires", "1"),
                    ("Expires", "2"),
                    ("Signature", sig),
                ],
                AuthError::Malformed(
                    "OSSAccessKeyId, Expires or Signature is given more than once",
                ),
            ),
            (
                vec![],
                vec![("x-oss-signature-version", "OSS2")],
                AuthError::BadAuthorization(
                    "only OSS signature V1 is supported, not V2 or V4 presigned URLs",
                ),
            ),
        ];
        for (headers, query, expected) in cases {
            let h = borrow(&headers);
            let q: Vec<(String, String)> = query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let v = view("GET", "b", "o", &q, &h);
            assert_eq!(
                parse(&v).map(|c| c.key_id().to_owned()),
                Err(expected.clone()),
                "{expected}"
            );
        }
    }

    #[test]
    fn repeated_signed_inputs_are_refused() {
        let d = DOC_DATE.as_bytes();
        let twice_date: Vec<(&str, &[u8])> = vec![("Date", d), ("date", d)];
        let twice_oss: Vec<(&str, &[u8])> =
            vec![("Date", d), ("x-oss-meta-a", b"1"), ("X-Oss-Meta-A", b"1")];
        let twice_type: Vec<(&str, &[u8])> =
            vec![("Date", d), ("content-type", b"a"), ("Content-Type", b"b")];
        for h in [&twice_date, &twice_oss, &twice_type] {
            let v = view("GET", "b", "o", &[], h);
            assert!(matches!(
                string_to_sign(&v, d).and_then(|_| sign("s", &v)),
                Err(AuthError::Malformed(_))
            ));
        }
        let q = vec![
            ("comp".to_string(), "stat".to_string()),
            ("comp".to_string(), "history".to_string()),
        ];
        let v = view("GET", "b", "o", &q, &twice_date[..1]);
        assert!(matches!(sign("s", &v), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn canonical_forms() {
        let d = DOC_DATE.as_bytes();
        let h: Vec<(&str, &[u8])> =
            vec![("x-oss-meta-b", b"  two words \t"), ("X-OSS-META-A", b"1")];
        let q: Vec<(String, String)> = [
            ("live", ""),
            ("prefix", "x"),
            ("comp", "stat"),
            ("vod", "v=1&2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let bucket_level = view("GET", "demo", "", &q, &h);
        assert_eq!(
            String::from_utf8(string_to_sign(&bucket_level, d).unwrap()).unwrap(),
            format!(
                "GET\n\n\n{DOC_DATE}\nx-oss-meta-a:1\nx-oss-meta-b:two words\n/demo/?comp=stat&live&vod=v=1&2"
            )
        );
        // Without a bucket (a service-level request), oss2 signs "/" + sub-resources.
        let service = view("GET", "", "", &[], &[]);
        assert_eq!(string_to_sign(&service, b"1").unwrap(), b"GET\n\n\n1\n/");
    }

    #[test]
    fn debug_output_hides_the_signature() {
        let h = doc_headers(&format!("OSS {DOC_ID}:{DOC_SIG}"));
        let h = borrow(&h);
        let v = view("PUT", "oss-example", "nelson", &[], &h);
        let creds = parse(&v).unwrap();
        let debug = format!("{creds:?}");
        assert!(debug.contains(DOC_ID), "{debug}");
        assert!(!debug.contains(&DOC_SIG[..10]), "{debug}");
        for err in [check(&v, Some("x"), DOC_NOW), check(&v, None, DOC_NOW)] {
            let text = format!("{:?} {}", err, err.clone().unwrap_err());
            assert!(
                !text.contains(&DOC_SIG[..10]) && !text.contains(DOC_SECRET),
                "{text}"
            );
        }
    }

    #[test]
    fn header_value_trimming() {
        assert_eq!(trim_ws(b"  a b\t "), b"a b");
        assert_eq!(trim_ws(b" \t "), b"");
        assert_eq!(trim_ws(b""), b"");
        assert_eq!(trim_ws(b"\na\r"), b"\na\r");
    }
}
