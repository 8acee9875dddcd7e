//! Presigned URLs for object stores, and livebucket's own play signatures.
//!
//! This module owns three signing schemes and nothing else: it does no I/O,
//! reads no configuration and depends on no other module of the crate. Its
//! callers are the playlist handlers (which presign every segment URI they
//! emit) and the play endpoint (which verifies the signature on
//! `/play/...` requests).
//!
//! # The schemes
//!
//! * **SigV4 query authentication** for S3-compatible stores (Garage, Ceph
//!   RGW, MinIO, AWS): [`SigV4Presigner`]. A VOD playlist can carry tens of
//!   thousands of segment URIs, so the presigner is built once per
//!   (credentials, region, instant, expiry) and keeps the derived signing key
//!   already loaded into an HMAC state. Each URL then costs one SHA-256 of the
//!   canonical request plus one HMAC over a ~150 byte string to sign.
//! * **SigV2 query authentication** for legacy RGW and MinIO setups:
//!   [`presign_v2_get`].
//! * **livebucket play signatures**, for
//!   `GET /play/BUCKET/CHANNEL/PLAYLIST?AccessKeyId=K&Expires=E&Signature=S`:
//!   [`sign_play`], [`play_query`], [`verify_play`]. The string to sign is
//!
//!   ```text
//!   "LIVEBUCKET-PLAY\n" + E + "\n/" + BUCKET + "/" + CHANNEL + "/" + PLAYLIST
//!   ```
//!
//!   where `E` is the expiry in unix seconds written in decimal without
//!   leading zeros, the three names are the decoded path segments (PLAYLIST
//!   includes its extension, e.g. `index.m3u8`), and
//!   `S = base64url-no-pad(HMAC-SHA256(secret, string to sign))` (43
//!   characters). A URL is valid up to and including second `E`.
//! * **livebucket VOD API signatures**, for
//!   `GET|POST /api/v1/buckets/B/channels/C/vod?start=..&end=..&urls=..[&name=..]&AccessKeyId=K&Expires=E&Signature=S`:
//!   [`sign_vod`], [`vod_query`], [`verify_vod`]. The signature binds
//!   everything the URL grants, so a link cannot be turned into another
//!   request: the method, the range, the URL mode and (for POST) the object
//!   name it writes:
//!
//!   ```text
//!   "LIVEBUCKET-VOD\n" + METHOD + "\n" + E + "\n/" + B + "/" + C + "\n"
//!     + START + "\n" + END + "\n" + URLS + "\n" + NAME
//!   ```
//!
//!   with METHOD `GET` or `POST`, START and END the range in unix seconds,
//!   URLS `relative` or `presigned` (the value in effect: an omitted `urls`
//!   is signed as [`default_vod_urls`], `presigned` for GET and `relative`
//!   for POST), NAME the object name for POST (`vod.m3u8` when omitted) and
//!   empty for GET; `S` as for play. A GET without `urls` signed when its
//!   default was `relative` still verifies, as the `relative` link it was
//!   signed as ([`verify_vod_mode`]).
//!
//! # Invariants
//!
//! * The URL we hand out and the request we signed describe the same thing:
//!   the host in the URL is exactly the signed `host` header (lower-cased,
//!   default port dropped from both), and the path in the URL is exactly the
//!   canonical URI (each key segment URI-encoded once, `/` kept).
//! * SigV4 expiry is between 1 s and 7 days (604 800 s); anything longer is
//!   refused with [`PresignError::ExpiryTooLong`] rather than clamped, so a
//!   misconfiguration surfaces at startup instead of as 403s at playback.
//! * Play signatures are compared in constant time (`Mac::verify_slice`),
//!   the signature is checked before the expiry, so `Expired` is only ever
//!   reported for a URL we really issued, and a name containing `/` or a
//!   control character is refused, so the string to sign cannot be made
//!   ambiguous by moving a `/` between bucket, channel and playlist.
//! * No error carries a secret, a signature, or the endpoint text (which may
//!   hold user info); [`SigV4Presigner`]'s `Debug` omits its key.
//! * Nothing here panics on any input.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

/// The longest expiry SigV4 allows for a presigned URL: 7 days.
pub const SIGV4_MAX_EXPIRY: Duration = Duration::from_secs(604_800);

/// SigV4 "unreserved" characters stay, everything else is `%XX` (upper case).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Object keys: like [`UNRESERVED`], but `/` separates segments and stays.
const KEY_SEGMENTS: &AsciiSet = &UNRESERVED.remove(b'/');

/// S3 refuses longer keys, so a longer one is a bug upstream, not a URL.
const MAX_KEY_LEN: usize = 1024;

const PLAY_PREFIX: &str = "LIVEBUCKET-PLAY\n";
const VOD_PREFIX: &str = "LIVEBUCKET-VOD\n";

/// Length of a base64url-no-pad HMAC-SHA256.
const PLAY_SIGNATURE_LEN: usize = 43;

/// Why a URL could not be signed or a play signature was refused.
///
/// Messages never include secrets, signatures or the endpoint string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    /// SigV4 cannot sign for longer than [`SIGV4_MAX_EXPIRY`].
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
    /// A well-formed play signature that does not match.
    #[error("signature does not match")]
    BadSignature,
    /// An input that cannot be signed or verified at all.
    #[error("malformed signing input: {0}")]
    Malformed(&'static str),
}

/// Where an object lives: the store's endpoint, the addressing style, and
/// the object itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Location<'a> {
    /// `http://host[:port]` or `https://host[:port]`, optionally with a
    /// trailing `/`; no path, query or user info.
    pub endpoint: &'a str,
    /// `true`: `scheme://host/bucket/key`; `false` (virtual-hosted):
    /// `scheme://bucket.host/key`, which needs a DNS host name.
    pub path_style: bool,
    /// The bucket name.
    pub bucket: &'a str,
    /// The object key as stored, unencoded, e.g. `chan/1700000000000.ts`.
    pub key: &'a str,
}

/// SigV4 presigner for `GET`, reusable for any number of objects.
///
/// All URLs from one presigner share `X-Amz-Date` and `X-Amz-Expires`, so
/// they all expire together, `expires_in` after the `now` given to
/// [`SigV4Presigner::new`]. Build a new one when that is no longer fresh
/// enough.
#[derive(Clone)]
pub struct SigV4Presigner {
    /// HMAC already keyed with the derived signing key; cloned per URL so
    /// the key schedule is not redone.
    mac: Hmac<Sha256>,
    /// `"AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n"`.
    string_to_sign_prefix: String,
    /// The canonical query string without `X-Amz-Signature`, which is also
    /// the URL's query up to the signature (sorted, already encoded).
    query: String,
}

impl fmt::Debug for SigV4Presigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query holds only public values (key id, date, scope, expiry).
        f.debug_struct("SigV4Presigner")
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl SigV4Presigner {
    /// Derives the signing key for `now`'s date (UTC) and `region`.
    ///
    /// `expires_in` is truncated to whole seconds and must be 1 s to 7 days.
    pub fn new(
        access_key: &str,
        secret: &str,
        region: &str,
        now: OffsetDateTime,
        expires_in: Duration,
    ) -> Result<Self, PresignError> {
        // A `/` would split the credential scope at the wrong place on the
        // server side, and an empty part makes a scope no server accepts.
        if access_key.is_empty() || access_key.contains('/') {
            return Err(PresignError::Malformed(
                "access key id must be non-empty and contain no '/'",
            ));
        }
        if region.is_empty() || region.contains('/') {
            return Err(PresignError::Malformed(
                "region must be non-empty and contain no '/'",
            ));
        }
        let expires = expires_in.as_secs();
        if expires > SIGV4_MAX_EXPIRY.as_secs() {
            return Err(PresignError::ExpiryTooLong {
                max: SIGV4_MAX_EXPIRY.as_secs(),
                requested: expires,
            });
        }
        if expires == 0 {
            return Err(PresignError::Malformed("expiry must be at least 1 second"));
        }

        let amz_date = amz_date(now)?;
        let date = &amz_date[..8];
        let scope = format!("{date}/{region}/s3/aws4_request");
        let mac = signing_mac(secret, date, region)?;

        // Parameter names are already in byte order, as SigV4 requires for
        // the canonical query string; the URL reuses the same text.
        let query = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={credential}\
             &X-Amz-Date={amz_date}\
             &X-Amz-Expires={expires}\
             &X-Amz-SignedHeaders=host",
            credential = utf8_percent_encode(&format!("{access_key}/{scope}"), UNRESERVED),
        );
        let string_to_sign_prefix = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n");

        Ok(Self {
            mac,
            string_to_sign_prefix,
            query,
        })
    }

    /// A presigned `GET` URL for `loc`.
    pub fn presign_get(&self, loc: &S3Location<'_>) -> Result<String, PresignError> {
        let target = Target::new(loc)?;

        // Canonical request, hashed piecewise so no copy of it is built:
        // method, URI, query, headers, blank line, signed headers, payload.
        let mut hash = Sha256::new();
        for part in [
            "GET\n",
            &target.path,
            "\n",
            &self.query,
            "\nhost:",
            &target.host,
            "\n\nhost\nUNSIGNED-PAYLOAD",
        ] {
            hash.update(part.as_bytes());
        }
        let mut hash_hex = [0u8; 64];
        hex::encode_to_slice(hash.finalize(), &mut hash_hex)
            .map_err(|_| PresignError::Malformed("hash length"))?;

        let mut mac = self.mac.clone();
        mac.update(self.string_to_sign_prefix.as_bytes());
        mac.update(&hash_hex);
        let signature = hex::encode(mac.finalize().into_bytes());

        Ok(format!(
            "{scheme}://{host}{path}?{query}&X-Amz-Signature={signature}",
            scheme = target.scheme,
            host = target.host,
            path = target.path,
            query = self.query,
        ))
    }
}

/// SigV4's `X-Amz-Date` for `now`: `YYYYMMDDTHHMMSSZ` in UTC.
pub fn amz_date(now: OffsetDateTime) -> Result<String, PresignError> {
    let now = now.to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&now.year()) {
        return Err(PresignError::Malformed(
            "signing time must fall in years 0000 to 9999",
        ));
    }
    // Formatted by hand: `time`'s formatting feature is not enabled.
    Ok(format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    ))
}

/// An HMAC keyed with SigV4's derived signing key for S3 on `date`
/// (`YYYYMMDD`) in `region`; cloning it skips the four derivations.
pub fn signing_mac(secret: &str, date: &str, region: &str) -> Result<Hmac<Sha256>, PresignError> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    let k_region = hmac_sha256(&k_date, region.as_bytes())?;
    let k_service = hmac_sha256(&k_region, b"s3")?;
    let k_signing = hmac_sha256(&k_service, b"aws4_request")?;
    new_mac::<Sha256>(&k_signing)
}

/// A presigned SigV2 `GET` URL, valid until `expires_unix` (unix seconds).
///
/// The signed resource is `/` + bucket + the URL's encoded path to the key,
/// i.e. `"GET\n\n\n" + E + "\n/" + BUCKET + "/" + KEY` with KEY URI-encoded
/// as in the URL, which is what AWS specifies and botocore does. For keys made
/// of unreserved characters and `/`, such as ours, encoded and raw agree, so
/// servers that sign the decoded path accept these URLs too.
pub fn presign_v2_get(
    access_key: &str,
    secret: &str,
    loc: &S3Location<'_>,
    expires_unix: u64,
) -> Result<String, PresignError> {
    if access_key.is_empty() {
        return Err(PresignError::Malformed("access key id must be non-empty"));
    }
    let target = Target::new(loc)?;

    let mut mac = new_mac::<Sha1>(secret.as_bytes())?;
    mac.update(format!("GET\n\n\n{expires_unix}\n").as_bytes());
    if !loc.path_style {
        // Virtual-hosted URLs lack the bucket in the path, but SigV2 signs it.
        mac.update(b"/");
        mac.update(loc.bucket.as_bytes());
    }
    mac.update(target.path.as_bytes());
    let signature = STANDARD.encode(mac.finalize().into_bytes());

    Ok(format!(
        "{scheme}://{host}{path}?AWSAccessKeyId={key}&Expires={expires_unix}&Signature={sig}",
        scheme = target.scheme,
        host = target.host,
        path = target.path,
        key = utf8_percent_encode(access_key, UNRESERVED),
        sig = utf8_percent_encode(&signature, UNRESERVED),
    ))
}

/// The play signature `S` for `/play/BUCKET/CHANNEL/PLAYLIST` until
/// `expires` (unix seconds); see the module doc for the string to sign.
pub fn sign_play(
    secret: &str,
    bucket: &str,
    channel: &str,
    playlist: &str,
    expires: u64,
) -> Result<String, PresignError> {
    let mac = play_mac(secret, bucket, channel, playlist, expires)?;
    Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The query string `AccessKeyId=K&Expires=E&Signature=S` (no leading `?`)
/// for a play URL, percent-encoded.
pub fn play_query(
    key_id: &str,
    secret: &str,
    bucket: &str,
    channel: &str,
    playlist: &str,
    expires: u64,
) -> Result<String, PresignError> {
    if key_id.is_empty() {
        return Err(PresignError::Malformed("access key id must be non-empty"));
    }
    let signature = sign_play(secret, bucket, channel, playlist, expires)?;
    Ok(format!(
        "AccessKeyId={key}&Expires={expires}&Signature={sig}",
        key = utf8_percent_encode(key_id, UNRESERVED),
        // base64url is all unreserved; encoding is a no-op kept for safety.
        sig = utf8_percent_encode(&signature, UNRESERVED),
    ))
}

/// Checks a play signature (the decoded `Signature` parameter) at `now_unix`.
///
/// `Malformed` for names or signatures that could never be valid,
/// `BadSignature` for a mismatch, `Expired` for a genuine but stale one.
/// The caller parses `Expires` and must refuse a parameter given twice.
pub fn verify_play(
    secret: &str,
    bucket: &str,
    channel: &str,
    playlist: &str,
    expires: u64,
    now_unix: u64,
    signature: &str,
) -> Result<(), PresignError> {
    let mac = play_mac(secret, bucket, channel, playlist, expires)?;
    check_tag(mac, signature, expires, now_unix)
}

/// The signature check shared by play and VOD URLs: shape, then MAC in
/// constant time, then expiry (so `Expired` only answers a genuine URL).
fn check_tag(
    mac: Hmac<Sha256>,
    signature: &str,
    expires: u64,
    now_unix: u64,
) -> Result<(), PresignError> {
    if signature.len() != PLAY_SIGNATURE_LEN {
        return Err(PresignError::Malformed("signature has the wrong length"));
    }
    // The engine rejects padding and non-zero trailing bits, so each MAC has
    // exactly one accepted spelling.
    let tag = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| PresignError::Malformed("signature is not base64url without padding"))?;
    mac.verify_slice(&tag)
        .map_err(|_| PresignError::BadSignature)?;
    if now_unix > expires {
        return Err(PresignError::Expired);
    }
    Ok(())
}

/// What a VOD API URL grants; every field is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VodScope<'a> {
    /// `GET` (read the playlist) or `POST` (store it as `name`).
    pub method: &'a str,
    pub bucket: &'a str,
    pub channel: &'a str,
    /// Range start and end, unix seconds.
    pub start: u64,
    pub end: u64,
    /// `relative` or `presigned`.
    pub urls: &'a str,
    /// The object name a POST writes; empty for GET.
    pub name: &'a str,
}

/// The VOD signature `S` of `scope` until `expires`; see the module doc.
pub fn sign_vod(secret: &str, scope: &VodScope<'_>, expires: u64) -> Result<String, PresignError> {
    let mac = vod_mac(secret, scope, expires)?;
    Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The query string of a VOD API URL for `scope` (no leading `?`): the range,
/// the URL mode, the name for POST, then `AccessKeyId`, `Expires`,
/// `Signature`.
pub fn vod_query(
    key_id: &str,
    secret: &str,
    scope: &VodScope<'_>,
    expires: u64,
) -> Result<String, PresignError> {
    if key_id.is_empty() {
        return Err(PresignError::Malformed("access key id must be non-empty"));
    }
    let signature = sign_vod(secret, scope, expires)?;
    let mut q = format!(
        "start={}&end={}&urls={}",
        scope.start, scope.end, scope.urls
    );
    if !scope.name.is_empty() {
        q += &format!("&name={}", utf8_percent_encode(scope.name, UNRESERVED));
    }
    q += &format!(
        "&AccessKeyId={}&Expires={expires}&Signature={signature}",
        utf8_percent_encode(key_id, UNRESERVED)
    );
    Ok(q)
}

/// The URL mode a VOD request without `urls` is signed and served with:
/// `presigned` for GET, so a viewer's link plays as is (relative URIs would
/// resolve under the API's path), `relative` for POST, whose playlist is
/// stored next to its fragments.
pub fn default_vod_urls(method: &str) -> &'static str {
    if method == "GET" {
        "presigned"
    } else {
        "relative"
    }
}

/// Checks a VOD request's signature and returns the URL mode it grants.
/// `scope.urls` is the query's `urls` when `urls_given`, else
/// [`default_vod_urls`]. A GET without `urls` whose signature is not for
/// `presigned` but for `relative` (signed while that was GET's default)
/// verifies as the `relative` link it was signed as: the signature, not
/// the current default, says what a link grants. Errors as for
/// [`verify_play`].
pub fn verify_vod_mode<'a>(
    secret: &str,
    scope: &VodScope<'a>,
    urls_given: bool,
    expires: u64,
    now_unix: u64,
    signature: &str,
) -> Result<&'a str, PresignError> {
    match verify_vod(secret, scope, expires, now_unix, signature) {
        Err(PresignError::BadSignature) if !urls_given && scope.method == "GET" => {
            let signed_before = VodScope {
                urls: "relative",
                ..*scope
            };
            verify_vod(secret, &signed_before, expires, now_unix, signature)
                .map(|()| "relative")
                // A link of neither rule: report the mismatch, not the
                // old rule's.
                .map_err(|e| match e {
                    PresignError::Expired => PresignError::Expired,
                    _ => PresignError::BadSignature,
                })
        }
        other => other.map(|()| scope.urls),
    }
}

/// Checks a VOD API signature for exactly `scope` at `now_unix`; errors as
/// for [`verify_play`].
pub fn verify_vod(
    secret: &str,
    scope: &VodScope<'_>,
    expires: u64,
    now_unix: u64,
    signature: &str,
) -> Result<(), PresignError> {
    let mac = vod_mac(secret, scope, expires)?;
    check_tag(mac, signature, expires, now_unix)
}

fn vod_mac(secret: &str, scope: &VodScope<'_>, expires: u64) -> Result<Hmac<Sha256>, PresignError> {
    for name in [scope.bucket, scope.channel] {
        if !is_single_segment(name) {
            return Err(PresignError::Malformed(
                "bucket and channel must each be one non-empty path segment",
            ));
        }
    }
    if !matches!(scope.method, "GET" | "POST") {
        return Err(PresignError::Malformed("method must be GET or POST"));
    }
    if !matches!(scope.urls, "relative" | "presigned") {
        return Err(PresignError::Malformed(
            "urls must be relative or presigned",
        ));
    }
    // GET writes nothing, so it names nothing; POST always names its object.
    if (scope.method == "GET") != scope.name.is_empty()
        || (!scope.name.is_empty() && !is_single_segment(scope.name))
    {
        return Err(PresignError::Malformed(
            "name is one path segment for POST and empty for GET",
        ));
    }
    let mut mac = new_mac::<Sha256>(secret.as_bytes())?;
    mac.update(VOD_PREFIX.as_bytes());
    mac.update(
        format!(
            "{method}\n{expires}\n/{bucket}/{channel}\n{start}\n{end}\n{urls}\n{name}",
            method = scope.method,
            bucket = scope.bucket,
            channel = scope.channel,
            start = scope.start,
            end = scope.end,
            urls = scope.urls,
            name = scope.name,
        )
        .as_bytes(),
    );
    Ok(mac)
}

/// The play MAC with the string to sign already fed in.
fn play_mac(
    secret: &str,
    bucket: &str,
    channel: &str,
    playlist: &str,
    expires: u64,
) -> Result<Hmac<Sha256>, PresignError> {
    for name in [bucket, channel, playlist] {
        if !is_single_segment(name) {
            return Err(PresignError::Malformed(
                "bucket, channel and playlist must each be one non-empty path segment",
            ));
        }
    }
    let mut mac = new_mac::<Sha256>(secret.as_bytes())?;
    mac.update(PLAY_PREFIX.as_bytes());
    mac.update(format!("{expires}\n/{bucket}/{channel}/{playlist}").as_bytes());
    Ok(mac)
}

/// A name that a router can deliver as one path segment and that keeps the
/// string to sign unambiguous.
fn is_single_segment(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c.is_control())
}

/// Scheme, host header and encoded path of one object URL: what a presigned
/// URL names and what `store`'s direct PUT sends, encoded one way for both.
pub struct Target {
    pub scheme: &'static str,
    /// Lower-case host, with the port unless it is the scheme's default;
    /// both the URL authority and the signed `host` header.
    pub host: String,
    /// `/bucket/key` (path style) or `/key`, encoded.
    pub path: String,
}

impl Target {
    pub fn new(loc: &S3Location<'_>) -> Result<Self, PresignError> {
        if loc.bucket.is_empty() || loc.bucket.contains('/') {
            return Err(PresignError::Malformed(
                "bucket must be non-empty and contain no '/'",
            ));
        }
        if loc.key.is_empty() {
            return Err(PresignError::Malformed("object key must be non-empty"));
        }
        if loc.key.len() > MAX_KEY_LEN {
            return Err(PresignError::Malformed(
                "object key is longer than 1024 bytes",
            ));
        }
        let endpoint = Endpoint::parse(loc.endpoint)?;
        let key = utf8_percent_encode(loc.key, KEY_SEGMENTS);

        let (host, path) = if loc.path_style {
            let bucket = utf8_percent_encode(loc.bucket, UNRESERVED);
            (endpoint.authority(None), format!("/{bucket}/{key}"))
        } else {
            if endpoint.is_ip_literal {
                return Err(PresignError::BadEndpoint(
                    "virtual-hosted style needs a DNS name, not an IP address; use path style",
                ));
            }
            // The bucket becomes a DNS label prefix, so it must already be
            // in the form DNS compares: lower case, no escapes possible.
            let dns_safe = loc
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !dns_safe || loc.bucket.starts_with(['.', '-']) || loc.bucket.ends_with(['.', '-']) {
                return Err(PresignError::Malformed(
                    "virtual-hosted style needs a DNS-compatible bucket name (a-z, 0-9, '-', '.')",
                ));
            }
            (endpoint.authority(Some(loc.bucket)), format!("/{key}"))
        };
        Ok(Self {
            scheme: endpoint.scheme,
            host,
            path,
        })
    }
}

/// A parsed `http(s)://host[:port]`.
struct Endpoint {
    scheme: &'static str,
    /// Lower case; IPv6 keeps its brackets.
    host: String,
    /// `None` when absent or the scheme's default, so URL and signature agree
    /// whatever the HTTP client does with default ports.
    port: Option<u16>,
    is_ip_literal: bool,
}

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Self, PresignError> {
        let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(endpoint, "http://") {
            ("http", rest)
        } else if let Some(rest) = strip_prefix_ignore_case(endpoint, "https://") {
            ("https", rest)
        } else {
            return Err(PresignError::BadEndpoint(
                "expected http://host[:port] or https://host[:port]",
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(PresignError::BadEndpoint(
                "endpoint must not have a path, query or fragment",
            ));
        }
        if authority.contains('@') {
            return Err(PresignError::BadEndpoint(
                "endpoint must not carry user info; credentials go in the key settings",
            ));
        }

        let (host, port, is_ip_literal) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err(PresignError::BadEndpoint("unclosed '[' in IPv6 host"));
            };
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(PresignError::BadEndpoint("invalid IPv6 address"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or(PresignError::BadEndpoint(
                    "unexpected text after IPv6 address",
                ))?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port, true)
        } else {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !host_ok {
                return Err(PresignError::BadEndpoint(
                    "host must be a DNS name, an IPv4 address or a bracketed IPv6 address",
                ));
            }
            let is_ip = host.parse::<std::net::Ipv4Addr>().is_ok();
            (host.to_ascii_lowercase(), port, is_ip)
        };

        let port = match port {
            None => None,
            Some(p) => {
                // `u16::from_str` would take a leading '+'; digits only.
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PresignError::BadEndpoint("port must be a number"));
                }
                match p.parse::<u16>() {
                    Ok(0) | Err(_) => {
                        return Err(PresignError::BadEndpoint("port must be 1 to 65535"));
                    }
                    Ok(n) => Some(n),
                }
            }
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        Ok(Self {
            scheme,
            host,
            port: port.filter(|&p| p != default_port),
            is_ip_literal,
        })
    }

    /// `[bucket.]host[:port]`.
    fn authority(&self, bucket: Option<&str>) -> String {
        let mut out = String::with_capacity(self.host.len() + 70);
        if let Some(bucket) = bucket {
            out.push_str(bucket);
            out.push('.');
        }
        out.push_str(&self.host);
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// An HMAC keyed with `key`.
///
/// HMAC takes keys of any length, so this never fails; mapping the error
/// instead of unwrapping keeps the module free of panics.
fn new_mac<D>(key: &[u8]) -> Result<Hmac<D>, PresignError>
where
    D: hmac::EagerHash,
    Hmac<D>: KeyInit,
{
    <Hmac<D> as KeyInit>::new_from_slice(key)
        .map_err(|_| PresignError::Malformed("HMAC key rejected"))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], PresignError> {
    let mut mac = new_mac::<Sha256>(key)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GARAGE_KEY_ID: &str = "GK31c2f218a2e44f485b94239e";
    const GARAGE_SECRET: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
    /// 2024-01-02T03:04:05Z
    const T_2024_01_02_030405: i64 = 1_704_164_645;
    /// Space, '+', and two-, three-byte UTF-8.
    const ODD_KEY: &str = "chan one/seg+1 \u{fc}\u{6f22}.ts";

    fn garage_presigner(expires: u64) -> SigV4Presigner {
        let now = OffsetDateTime::from_unix_timestamp(T_2024_01_02_030405).expect("valid time");
        SigV4Presigner::new(
            GARAGE_KEY_ID,
            GARAGE_SECRET,
            "garage",
            now,
            Duration::from_secs(expires),
        )
        .expect("valid presigner")
    }

    fn loc<'a>(endpoint: &'a str, path_style: bool, key: &'a str) -> S3Location<'a> {
        S3Location {
            endpoint,
            path_style,
            bucket: "live",
            key,
        }
    }

    // The SigV4 URLs below come from botocore 1.43 (Debian's python3-boto3
    // environment), not from this code:
    //
    // import datetime
    // from unittest import mock
    // import boto3
    // from botocore.config import Config
    //
    // NOW = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    // KEY = "chan one/seg+1 \u00fc\u6f22.ts"
    //
    // def presign(endpoint, style, key, expires):
    //     c = boto3.client(
    //         "s3", endpoint_url=endpoint, region_name="garage",
    //         aws_access_key_id="GK31c2f218a2e44f485b94239e",
    //         aws_secret_access_key="b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835",
    //         config=Config(signature_version="s3v4", s3={"addressing_style": style}),
    //     )
    //     with mock.patch("botocore.auth.get_current_datetime", return_value=NOW):
    //         return c.generate_presigned_url(
    //             "get_object", Params={"Bucket": "live", "Key": key}, ExpiresIn=expires)
    //
    // print(presign("http://127.0.0.1:3900", "path", KEY, 3600))
    // print(presign("https://s3.example.com", "virtual", KEY, 604800))
    // print(presign("http://127.0.0.1:3900", "path", "chan/1700000000000.ts", 86400))
    // print(presign("https://s3.example.com:8443", "virtual", "a~b*c'(d)!e=f%g&h;i:j@k$l,m", 60))
    // print(presign("https://s3.example.com:443", "virtual", "chan/1700000000000.ts", 60))

    #[test]
    fn sigv4_path_style_special_key_matches_botocore() {
        let url = garage_presigner(3600)
            .presign_get(&loc("http://127.0.0.1:3900", true, ODD_KEY))
            .expect("presign");
        assert_eq!(
            url,
            "http://127.0.0.1:3900/live/chan%20one/seg%2B1%20%C3%BC%E6%BC%A2.ts\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=6fbe6266cb2d8585b7929e5653e597af00abb031a63163c42c71cd3a08a54608"
        );
    }

    #[test]
    fn sigv4_virtual_hosted_max_expiry_matches_botocore() {
        let url = garage_presigner(604_800)
            .presign_get(&loc("https://s3.example.com", false, ODD_KEY))
            .expect("presign");
        assert_eq!(
            url,
            "https://live.s3.example.com/chan%20one/seg%2B1%20%C3%BC%E6%BC%A2.ts\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=604800&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=fe5662a701e6813186945eac6c97d71cfdc740b9c3bdc849267814630f3ef5e6"
        );
    }

    #[test]
    fn sigv4_segment_key_matches_botocore() {
        let url = garage_presigner(86_400)
            .presign_get(&loc(
                "http://127.0.0.1:3900/",
                true,
                "chan/1700000000000.ts",
            ))
            .expect("presign");
        assert_eq!(
            url,
            "http://127.0.0.1:3900/live/chan/1700000000000.ts\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=349db21f90d9ee351cca767f144e5b546bf297c41deb0d292c3b62b5bcb72fd6"
        );
    }

    #[test]
    fn sigv4_reserved_characters_and_port_match_botocore() {
        let url = garage_presigner(60)
            .presign_get(&loc(
                "https://s3.example.com:8443",
                false,
                "a~b*c'(d)!e=f%g&h;i:j@k$l,m",
            ))
            .expect("presign");
        assert_eq!(
            url,
            "https://live.s3.example.com:8443/a~b%2Ac%27%28d%29%21e%3Df%25g%26h%3Bi%3Aj%40k%24l%2Cm\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=9305f5d02ce342559d98cf10baf5ccc58813ca373b89849075f43937aadfc67a"
        );
    }

    #[test]
    fn sigv4_default_port_is_dropped_from_url_and_signature() {
        // botocore signs `host` without :443 but leaves it in the URL; we
        // drop it from both, with the same signature.
        let presigner = garage_presigner(60);
        let expected = "https://live.s3.example.com/chan/1700000000000.ts\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=GK31c2f218a2e44f485b94239e%2F20240102%2Fgarage%2Fs3%2Faws4_request\
             &X-Amz-Date=20240102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=142dad80dcd2c91953c4dab9484b6a2937ba270ac6e2d4a0f4bb9f992d720885";
        for endpoint in [
            "https://s3.example.com:443",
            "https://s3.example.com",
            "HTTPS://S3.Example.COM:443/",
        ] {
            let url = presigner
                .presign_get(&loc(endpoint, false, "chan/1700000000000.ts"))
                .expect("presign");
            assert_eq!(url, expected, "endpoint {endpoint}");
        }
    }

    /// The example in AWS's "Authenticating Requests: Using Query Parameters"
    /// page, also reproduced with botocore.
    #[test]
    fn sigv4_aws_documentation_example() {
        let now = OffsetDateTime::from_unix_timestamp(1_369_353_600).expect("valid time");
        let presigner = SigV4Presigner::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            now,
            Duration::from_secs(86_400),
        )
        .expect("valid presigner");
        let url = presigner
            .presign_get(&S3Location {
                endpoint: "https://s3.amazonaws.com",
                path_style: false,
                bucket: "examplebucket",
                key: "test.txt",
            })
            .expect("presign");
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn sigv4_signing_time_is_taken_in_utc() {
        let utc = OffsetDateTime::from_unix_timestamp(T_2024_01_02_030405).expect("valid time");
        let offset = UtcOffset::from_hms(-5, 0, 0).expect("valid offset");
        let shifted = SigV4Presigner::new(
            GARAGE_KEY_ID,
            GARAGE_SECRET,
            "garage",
            utc.to_offset(offset),
            Duration::from_secs(3600),
        )
        .expect("valid presigner");
        let target = loc("http://127.0.0.1:3900", true, ODD_KEY);
        assert_eq!(
            shifted.presign_get(&target),
            garage_presigner(3600).presign_get(&target)
        );
    }

    #[test]
    fn sigv4_expiry_bounds() {
        let now = OffsetDateTime::from_unix_timestamp(T_2024_01_02_030405).expect("valid time");
        let make = |d| SigV4Presigner::new(GARAGE_KEY_ID, GARAGE_SECRET, "garage", now, d);
        assert!(make(SIGV4_MAX_EXPIRY).is_ok());
        assert_eq!(
            make(SIGV4_MAX_EXPIRY + Duration::from_secs(1)).err(),
            Some(PresignError::ExpiryTooLong {
                max: 604_800,
                requested: 604_801
            })
        );
        assert!(matches!(
            make(Duration::from_millis(999)),
            Err(PresignError::Malformed(_))
        ));
    }

    #[test]
    fn sigv4_rejects_bad_endpoints() {
        let p = garage_presigner(60);
        for endpoint in [
            "127.0.0.1:3900",
            "ftp://127.0.0.1",
            "http://",
            "http://127.0.0.1:3900/prefix",
            "http://127.0.0.1:3900?x=1",
            "http://user:pass@127.0.0.1:3900",
            "http://127.0.0.1:",
            "http://127.0.0.1:0",
            "http://127.0.0.1:+80",
            "http://127.0.0.1:65536",
            "http://[::1",
            "http://[zz]:3900",
            "http://ho st",
        ] {
            let err = p
                .presign_get(&loc(endpoint, true, "k"))
                .expect_err(endpoint);
            assert!(
                matches!(err, PresignError::BadEndpoint(_)),
                "{endpoint}: {err}"
            );
            assert!(!err.to_string().contains("pass"), "{err}");
        }
        // An IP address cannot carry a bucket label.
        assert!(matches!(
            p.presign_get(&loc("http://127.0.0.1:3900", false, "k")),
            Err(PresignError::BadEndpoint(_))
        ));
    }

    #[test]
    fn sigv4_ipv6_endpoint_keeps_brackets_and_port() {
        let url = garage_presigner(60)
            .presign_get(&loc("http://[::1]:3900", true, "k"))
            .expect("presign");
        assert!(url.starts_with("http://[::1]:3900/live/k?"), "{url}");
    }

    #[test]
    fn sigv4_rejects_unsignable_names() {
        let p = garage_presigner(60);
        let long_key = "k".repeat(1025);
        let at = |bucket, path_style, key| {
            p.presign_get(&S3Location {
                endpoint: "https://s3.example.com",
                path_style,
                bucket,
                key,
            })
        };
        assert!(matches!(at("", true, "k"), Err(PresignError::Malformed(_))));
        assert!(matches!(
            at("a/b", true, "k"),
            Err(PresignError::Malformed(_))
        ));
        assert!(matches!(
            at("live", true, ""),
            Err(PresignError::Malformed(_))
        ));
        assert!(matches!(
            at("live", true, &long_key),
            Err(PresignError::Malformed(_))
        ));
        assert!(matches!(
            at("Live", false, "k"),
            Err(PresignError::Malformed(_))
        ));
        assert!(matches!(
            at("-live", false, "k"),
            Err(PresignError::Malformed(_))
        ));
        // Path style can address any bucket name the store accepts.
        assert!(at("Live_Bucket", true, "k").is_ok());
    }

    #[test]
    fn sigv4_debug_hides_key_material() {
        let debug = format!("{:?}", garage_presigner(60));
        assert!(!debug.contains(GARAGE_SECRET), "{debug}");
        assert!(debug.contains("SigV4Presigner"), "{debug}");
    }

    // SigV2, made with Python's hmac module:
    //
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==",b"GET\n\n\n1700003600\n/live/chan/1700000000000.ts",hashlib.sha1).digest()).decode())'
    // -> A20ZqqH4K4E3C7d8drq0Lz8APoY=
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==",b"GET\n\n\n1700003600\n/live/chan%20one/seg%2B1%20%C3%BC.ts",hashlib.sha1).digest()).decode())'
    // -> xPABJsb77YSMiZypeuns6QiXnGY=
    //
    // Both agree with botocore's HmacV1QueryAuth (boto3 client with
    // signature_version="s3", time.time patched to 1700000000, ExpiresIn=3600),
    // which orders the parameters AWSAccessKeyId, Signature, Expires.
    const V2_KEY_ID: &str = "0555b35654ad1656d804";
    const V2_SECRET: &str = "h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q==";

    #[test]
    fn sigv2_path_style_matches_python() {
        let url = presign_v2_get(
            V2_KEY_ID,
            V2_SECRET,
            &loc("http://127.0.0.1:7480", true, "chan/1700000000000.ts"),
            1_700_003_600,
        )
        .expect("presign");
        assert_eq!(
            url,
            "http://127.0.0.1:7480/live/chan/1700000000000.ts\
             ?AWSAccessKeyId=0555b35654ad1656d804&Expires=1700003600\
             &Signature=A20ZqqH4K4E3C7d8drq0Lz8APoY%3D"
        );
    }

    #[test]
    fn sigv2_special_key_matches_python() {
        let url = presign_v2_get(
            V2_KEY_ID,
            V2_SECRET,
            &loc("http://127.0.0.1:7480", true, "chan one/seg+1 \u{fc}.ts"),
            1_700_003_600,
        )
        .expect("presign");
        assert_eq!(
            url,
            "http://127.0.0.1:7480/live/chan%20one/seg%2B1%20%C3%BC.ts\
             ?AWSAccessKeyId=0555b35654ad1656d804&Expires=1700003600\
             &Signature=xPABJsb77YSMiZypeuns6QiXnGY%3D"
        );
    }

    #[test]
    fn sigv2_virtual_hosted_signs_the_bucket_too() {
        // Same resource string as the path-style vector, so same signature.
        let url = presign_v2_get(
            V2_KEY_ID,
            V2_SECRET,
            &loc(
                "http://rgw.example.com:7480",
                false,
                "chan/1700000000000.ts",
            ),
            1_700_003_600,
        )
        .expect("presign");
        assert_eq!(
            url,
            "http://live.rgw.example.com:7480/chan/1700000000000.ts\
             ?AWSAccessKeyId=0555b35654ad1656d804&Expires=1700003600\
             &Signature=A20ZqqH4K4E3C7d8drq0Lz8APoY%3D"
        );
    }

    // Play signature, made with Python's hmac module:
    //
    // python3 -c 'import hmac,hashlib,base64;print(base64.urlsafe_b64encode(hmac.new(b"play-secret",b"LIVEBUCKET-PLAY\n1700003600\n/live/cam1/index.m3u8",hashlib.sha256).digest()).rstrip(b"=").decode())'
    // -> 5U9xc53fQgio24yLR95Tf9RALLoMT117Ln42-dxu66M
    const PLAY_SECRET: &str = "play-secret";
    const PLAY_EXPIRES: u64 = 1_700_003_600;
    const PLAY_SIG: &str = "5U9xc53fQgio24yLR95Tf9RALLoMT117Ln42-dxu66M";

    fn verify(
        bucket: &str,
        channel: &str,
        playlist: &str,
        expires: u64,
        sig: &str,
    ) -> Result<(), PresignError> {
        verify_play(
            PLAY_SECRET,
            bucket,
            channel,
            playlist,
            expires,
            1_700_000_000,
            sig,
        )
    }

    // VOD signatures, made with Python's hmac module:
    //
    // python3 -c 'import hmac,hashlib,base64;print(base64.urlsafe_b64encode(hmac.new(b"vod-secret",b"LIVEBUCKET-VOD\nGET\n1700003600\n/live/cam1\n1700000000\n1700000600\nrelative\n",hashlib.sha256).digest()).rstrip(b"=").decode())'
    // -> 9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ
    // python3 -c 'import hmac,hashlib,base64;print(base64.urlsafe_b64encode(hmac.new(b"vod-secret",b"LIVEBUCKET-VOD\nPOST\n1700003600\n/live/cam1\n1700000000\n1700000600\npresigned\nvod.m3u8",hashlib.sha256).digest()).rstrip(b"=").decode())'
    // -> gYCKvkLeww-hvLVt_2yocQNd9Q53ZJL8x1gvQLQJGmY
    const VOD_GET: VodScope<'static> = VodScope {
        method: "GET",
        bucket: "live",
        channel: "cam1",
        start: 1_700_000_000,
        end: 1_700_000_600,
        urls: "relative",
        name: "",
    };

    /// GET without `urls` means `presigned` now; a link signed while it
    /// meant `relative` still verifies, as `relative`; an explicit `urls`
    /// and POST's default are exactly what they were.
    #[test]
    fn an_omitted_vod_url_mode_is_presigned_for_get_and_old_links_keep_theirs() {
        let (now, secret) = (1_700_000_000, "vod-secret");
        assert_eq!(default_vod_urls("GET"), "presigned");
        assert_eq!(default_vod_urls("POST"), "relative");
        let get = VodScope {
            urls: default_vod_urls("GET"),
            ..VOD_GET
        };
        let new = sign_vod(secret, &get, PLAY_EXPIRES).unwrap();
        // The python vector above: signed when omitted meant relative.
        let old = "9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ";
        let mode = |scope: &VodScope<'static>, given, sig: &str, now| {
            verify_vod_mode(secret, scope, given, PLAY_EXPIRES, now, sig)
        };
        assert_eq!(mode(&get, false, &new, now), Ok("presigned"));
        assert_eq!(mode(&get, false, old, now), Ok("relative"));
        assert_eq!(
            mode(&get, false, old, PLAY_EXPIRES + 1),
            Err(PresignError::Expired)
        );
        // Given explicitly, the mode is the one signed, no fallback.
        assert_eq!(mode(&get, true, old, now), Err(PresignError::BadSignature));
        assert_eq!(mode(&VOD_GET, true, old, now), Ok("relative"));
        let forged = "A".repeat(43);
        assert_eq!(
            mode(&get, false, &forged, now),
            Err(PresignError::BadSignature)
        );
        // POST's default stays relative, without a fallback.
        let post = VodScope {
            method: "POST",
            urls: default_vod_urls("POST"),
            name: "vod.m3u8",
            ..VOD_GET
        };
        let signed = sign_vod(secret, &post, PLAY_EXPIRES).unwrap();
        assert_eq!(mode(&post, false, &signed, now), Ok("relative"));
        let presigned = sign_vod(
            secret,
            &VodScope {
                urls: "presigned",
                ..post
            },
            PLAY_EXPIRES,
        )
        .unwrap();
        assert_eq!(
            mode(&post, false, &presigned, now),
            Err(PresignError::BadSignature)
        );
    }

    #[test]
    fn vod_signatures_match_python_and_bind_every_field() {
        let get = sign_vod("vod-secret", &VOD_GET, PLAY_EXPIRES).unwrap();
        assert_eq!(get, "9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ");
        let post = VodScope {
            method: "POST",
            urls: "presigned",
            name: "vod.m3u8",
            ..VOD_GET
        };
        assert_eq!(
            sign_vod("vod-secret", &post, PLAY_EXPIRES).unwrap(),
            "gYCKvkLeww-hvLVt_2yocQNd9Q53ZJL8x1gvQLQJGmY"
        );
        let now = 1_700_000_000;
        assert_eq!(
            verify_vod("vod-secret", &VOD_GET, PLAY_EXPIRES, now, &get),
            Ok(())
        );
        let others = [
            VodScope {
                method: "POST",
                name: "vod.m3u8",
                ..VOD_GET
            },
            VodScope {
                start: VOD_GET.start - 1,
                ..VOD_GET
            },
            VodScope {
                end: VOD_GET.end + 86_400,
                ..VOD_GET
            },
            VodScope {
                urls: "presigned",
                ..VOD_GET
            },
            VodScope {
                channel: "cam2",
                ..VOD_GET
            },
            VodScope {
                bucket: "other",
                ..VOD_GET
            },
        ];
        for other in others {
            assert_eq!(
                verify_vod("vod-secret", &other, PLAY_EXPIRES, now, &get),
                Err(PresignError::BadSignature),
                "{other:?}"
            );
        }
        // A GET never names an object; a POST always does.
        let get_named = VodScope {
            name: "x.m3u8",
            ..VOD_GET
        };
        assert!(matches!(
            sign_vod("s", &get_named, 1),
            Err(PresignError::Malformed(_))
        ));
        let post_unnamed = VodScope {
            method: "POST",
            ..VOD_GET
        };
        assert!(matches!(
            sign_vod("s", &post_unnamed, 1),
            Err(PresignError::Malformed(_))
        ));
        assert_eq!(
            vod_query("GK1", "vod-secret", &VOD_GET, PLAY_EXPIRES).unwrap(),
            "start=1700000000&end=1700000600&urls=relative&AccessKeyId=GK1&Expires=1700003600&Signature=9w84sXFaSrNpe3y1tmC6-TjMsDR3Isb10Mnb2OITGzQ"
        );
    }

    #[test]
    fn play_signature_matches_python() {
        let sig = sign_play(PLAY_SECRET, "live", "cam1", "index.m3u8", PLAY_EXPIRES).expect("sign");
        assert_eq!(sig, PLAY_SIG);
        assert_eq!(
            play_query(
                "key 1",
                PLAY_SECRET,
                "live",
                "cam1",
                "index.m3u8",
                PLAY_EXPIRES
            )
            .expect("query"),
            format!("AccessKeyId=key%201&Expires=1700003600&Signature={PLAY_SIG}")
        );
    }

    #[test]
    fn play_round_trip() {
        let sig =
            sign_play(PLAY_SECRET, "live", "caméra", "720p.m3u8", PLAY_EXPIRES).expect("sign");
        assert_eq!(
            verify("live", "caméra", "720p.m3u8", PLAY_EXPIRES, &sig),
            Ok(())
        );
        // Valid through the expiry second itself.
        assert_eq!(
            verify_play(
                PLAY_SECRET,
                "live",
                "caméra",
                "720p.m3u8",
                PLAY_EXPIRES,
                PLAY_EXPIRES,
                &sig
            ),
            Ok(())
        );
    }

    #[test]
    fn play_tampering_is_rejected() {
        assert_eq!(
            verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, PLAY_SIG),
            Ok(())
        );
        for (bucket, channel, playlist, expires) in [
            ("live2", "cam1", "index.m3u8", PLAY_EXPIRES),
            ("live", "cam2", "index.m3u8", PLAY_EXPIRES),
            ("live", "cam1", "720p.m3u8", PLAY_EXPIRES),
            ("live", "cam1", "index.m3u8", PLAY_EXPIRES + 1),
        ] {
            assert_eq!(
                verify(bucket, channel, playlist, expires, PLAY_SIG),
                Err(PresignError::BadSignature),
                "{bucket}/{channel}/{playlist}@{expires}"
            );
        }
        assert_eq!(
            verify_play(
                "other-secret",
                "live",
                "cam1",
                "index.m3u8",
                PLAY_EXPIRES,
                0,
                PLAY_SIG
            ),
            Err(PresignError::BadSignature)
        );
    }

    #[test]
    fn play_expired_is_rejected() {
        assert_eq!(
            verify_play(
                PLAY_SECRET,
                "live",
                "cam1",
                "index.m3u8",
                PLAY_EXPIRES,
                PLAY_EXPIRES + 1,
                PLAY_SIG
            ),
            Err(PresignError::Expired)
        );
    }

    #[test]
    fn play_malformed_signatures_are_rejected() {
        let padded = format!("{PLAY_SIG}=");
        let standard_alphabet = PLAY_SIG.replace('-', "+");
        // Same bytes but non-zero trailing bits: 'M' -> 'N' in the last char.
        let trailing_bits = format!("{}N", &PLAY_SIG[..42]);
        for sig in [
            "",
            "not base64 at all!",
            &padded,
            &standard_alphabet,
            &PLAY_SIG[..42],
            &trailing_bits,
        ] {
            assert!(
                matches!(
                    verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, sig),
                    Err(PresignError::Malformed(_))
                ),
                "{sig:?}"
            );
        }
    }

    #[test]
    fn play_names_must_be_single_segments() {
        // "a/b" + "c" would sign the same string as "a" + "b/c".
        for (bucket, channel, playlist) in [
            ("live/cam1", "x", "index.m3u8"),
            ("live", "", "index.m3u8"),
            ("live", "..", "index.m3u8"),
            ("live", "cam1", "index\n.m3u8"),
        ] {
            assert!(matches!(
                sign_play(PLAY_SECRET, bucket, channel, playlist, PLAY_EXPIRES),
                Err(PresignError::Malformed(_))
            ));
            assert!(matches!(
                verify(bucket, channel, playlist, PLAY_EXPIRES, PLAY_SIG),
                Err(PresignError::Malformed(_))
            ));
        }
    }

    #[test]
    fn errors_never_echo_secrets() {
        let errors = [
            verify("live", "cam1", "index.m3u8", PLAY_EXPIRES + 1, PLAY_SIG),
            verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, "x"),
            presign_v2_get(V2_KEY_ID, V2_SECRET, &loc("gopher://x", true, "k"), 1).map(drop),
        ];
        for err in errors {
            let text = err.expect_err("must fail").to_string();
            assert!(
                !text.contains(PLAY_SECRET) && !text.contains(V2_SECRET),
                "{text}"
            );
            assert!(!text.contains(PLAY_SIG), "{text}");
        }
    }

    proptest! {
        #[test]
        fn verify_play_rejects_arbitrary_signatures(sig in ".*") {
            let result = verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, &sig);
            prop_assert!(
                matches!(result, Err(PresignError::Malformed(_) | PresignError::BadSignature)),
                "{result:?}"
            );
        }

        /// Well-formed signatures reach the MAC comparison and still fail.
        #[test]
        fn verify_play_rejects_random_well_formed_signatures(tag in any::<[u8; 32]>()) {
            let sig = URL_SAFE_NO_PAD.encode(tag);
            prop_assume!(sig != PLAY_SIG);
            prop_assert_eq!(
                verify("live", "cam1", "index.m3u8", PLAY_EXPIRES, &sig),
                Err(PresignError::BadSignature)
            );
        }

        #[test]
        fn presign_never_panics(
            endpoint in prop_oneof![
                Just("http://127.0.0.1:3900".to_owned()),
                Just("https://s3.example.com".to_owned()),
                ".{0,40}",
            ],
            bucket in ".{0,20}",
            key in ".{0,60}",
            path_style in any::<bool>(),
        ) {
            let target = S3Location { endpoint: &endpoint, path_style, bucket: &bucket, key: &key };
            let v4 = garage_presigner(60).presign_get(&target);
            let v2 = presign_v2_get(V2_KEY_ID, V2_SECRET, &target, 1);
            prop_assert_eq!(v4.is_ok(), v2.is_ok());
            if let Ok(url) = v4 {
                // Host and path were validated or escaped, so the URL is plain ASCII.
                prop_assert!(url.is_ascii(), "{}", url);
                prop_assert!(!url.contains(' '));
            }
        }
    }
}
