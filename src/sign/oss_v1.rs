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
//!   exactly like [`AuthError::BadSignature`] (see `oss::error`).
//! - Skew and expiry are only reported for genuine signatures, so a caller
//!   learns nothing about a key it cannot sign for.
//! - A sub-resource, an `x-oss-` header, `Date`, `Content-MD5`,
//!   `Content-Type`, `Authorization` or a query credential given twice is
//!   refused: the signature and the handler must not read different copies.
//! - No error and no `Debug` output carries a secret or a signature.
//! - Nothing here panics on any input.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use hmac::Mac;
use percent_encoding::utf8_percent_encode;
use sha1::Sha1;

use super::encode::UNRESERVED;
use super::expiry::parse_expires as parse_expires_u64;
use super::mac::{SHA1_LEN, decode_sha1_tag, new_mac, sha1_base64};

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

/// Keys the HMAC for an unknown access key id, so that path costs the same.
const UNKNOWN_KEY_STANDIN: &[u8] = b"livebucket: no such access key";

/// Query parameters that mark OSS V2/V4 presigned URLs.
const NEWER_PRESIGN_PARAMS: &[&str] = &[
    "x-oss-signature-version",
    "x-oss-credential",
    "x-oss-signature",
];

/// A request as received, after bucket addressing and decoding
/// (`oss::route::resolve`, `oss::route::parse_query`).
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
        let mut mac = new_mac::<Sha1>(secret.map_or(UNKNOWN_KEY_STANDIN, str::as_bytes))
            .map_err(|_| AuthError::Malformed("HMAC key rejected"))?;
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
        utf8_percent_encode(key_id, UNRESERVED),
        utf8_percent_encode(&signature, UNRESERVED),
    ))
}

fn compute(secret: &str, to_sign: &[u8]) -> Result<String, AuthError> {
    sha1_base64(secret, to_sign).map_err(|_| AuthError::Malformed("HMAC key rejected"))
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
    decode_sha1_tag(text).ok()
}

/// `Expires` as Unix seconds in `i64`, the type the date checks use.
fn parse_expires(text: &str) -> Result<i64, AuthError> {
    parse_expires_u64(text)
        .ok()
        .and_then(|e| i64::try_from(e).ok())
        .ok_or(AuthError::Malformed("Expires is not a decimal Unix time"))
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
pub(super) fn trim_ws(value: &[u8]) -> &[u8] {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}
