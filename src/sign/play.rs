//! livebucket's own URL signatures: play URLs and VOD API URLs. Both sign
//! with HMAC-SHA256 under the access key's secret and write
//! `S = base64url-no-pad(tag)` (43 characters).
//!
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
//!   characters). A URL is valid up to and including second `E`. A
//!   channel's master playlist is PLAYLIST `master.m3u8` of this form.
//! * **livebucket variant play signatures**, for a rung R of a channel with
//!   renditions, `GET /play/BUCKET/CHANNEL/R/PLAYLIST?AccessKeyId=K&Expires=E&Signature=S`:
//!   [`sign_play_variant`], [`play_variant_query`], [`verify_play_variant`].
//!   The same scheme over four names:
//!
//!   ```text
//!   "LIVEBUCKET-PLAY\n" + E + "\n/" + BUCKET + "/" + CHANNEL + "/" + R + "/" + PLAYLIST
//!   ```
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
//! * **VOD of one variant** of a channel with renditions: the same URL
//!   with `&variant=V` (`source`, or a rung's name) before `AccessKeyId`:
//!   [`sign_vod_variant`], [`vod_variant_query`], [`verify_vod_variant`].
//!   The string to sign is the VOD string above followed by `"\n" + V`.
//!   NAME never holds a control character, so a variant's string never
//!   equals another request's, and every URL without `variant` signs and
//!   means exactly what it did before variants existed.
//!
//! # Invariants
//!
//! * Signatures are compared in constant time (`Mac::verify_slice`), the
//!   signature is checked before the expiry, so `Expired` is only ever
//!   reported for a URL we really issued, and a name containing `/` or a
//!   control character is refused, so the string to sign cannot be made
//!   ambiguous by moving a `/` between bucket, channel and playlist. A
//!   play string to sign has exactly one `/` before each name, so a
//!   three-name (channel) and a four-name (variant) string never collide:
//!   no split of a path into names is ambiguous, and a channel's URL never
//!   verifies as a variant's or the other way round.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use percent_encoding::utf8_percent_encode;
use sha2::Sha256;

use super::SignError;
use super::encode::UNRESERVED;
use super::mac::new_mac;

const PLAY_PREFIX: &str = "LIVEBUCKET-PLAY\n";
const VOD_PREFIX: &str = "LIVEBUCKET-VOD\n";

/// Length of a base64url-no-pad HMAC-SHA256.
const PLAY_SIGNATURE_LEN: usize = 43;

/// The play signature `S` for `/play/BUCKET/CHANNEL/PLAYLIST` until
/// `expires` (unix seconds); see the module doc for the string to sign.
pub fn sign_play(
    secret: &str,
    bucket: &str,
    channel: &str,
    playlist: &str,
    expires: u64,
) -> Result<String, SignError> {
    let mac = play_mac(secret, &[bucket, channel, playlist], expires)?;
    Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The path a variant play URL names: `/play/BUCKET/CHANNEL/RUNG/PLAYLIST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantPath<'a> {
    pub bucket: &'a str,
    pub channel: &'a str,
    pub rung: &'a str,
    pub playlist: &'a str,
}

impl VariantPath<'_> {
    fn names(&self) -> [&str; 4] {
        [self.bucket, self.channel, self.rung, self.playlist]
    }
}

/// The variant play signature `S` for `path` until `expires`; see the
/// module doc.
pub fn sign_play_variant(
    secret: &str,
    path: &VariantPath<'_>,
    expires: u64,
) -> Result<String, SignError> {
    let mac = play_mac(secret, &path.names(), expires)?;
    Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The query string of a variant play URL, as [`play_query`].
pub fn play_variant_query(
    key_id: &str,
    secret: &str,
    path: &VariantPath<'_>,
    expires: u64,
) -> Result<String, SignError> {
    let signature = sign_play_variant(secret, path, expires)?;
    query(key_id, &signature, expires)
}

/// Checks a variant play signature; errors as for [`verify_play`].
pub fn verify_play_variant(
    secret: &str,
    path: &VariantPath<'_>,
    expires: u64,
    now_unix: u64,
    signature: &str,
) -> Result<(), SignError> {
    let mac = play_mac(secret, &path.names(), expires)?;
    check_tag(mac, signature, expires, now_unix)
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
) -> Result<String, SignError> {
    let signature = sign_play(secret, bucket, channel, playlist, expires)?;
    query(key_id, &signature, expires)
}

/// `AccessKeyId=K&Expires=E&Signature=S`, percent-encoded.
fn query(key_id: &str, signature: &str, expires: u64) -> Result<String, SignError> {
    if key_id.is_empty() {
        return Err(SignError::Malformed("access key id must be non-empty"));
    }
    Ok(format!(
        "AccessKeyId={key}&Expires={expires}&Signature={sig}",
        key = utf8_percent_encode(key_id, UNRESERVED),
        // base64url is all unreserved; encoding is a no-op kept for safety.
        sig = utf8_percent_encode(signature, UNRESERVED),
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
) -> Result<(), SignError> {
    let mac = play_mac(secret, &[bucket, channel, playlist], expires)?;
    check_tag(mac, signature, expires, now_unix)
}

/// The signature check shared by play and VOD URLs: shape, then MAC in
/// constant time, then expiry (so `Expired` only answers a genuine URL).
fn check_tag(
    mac: Hmac<Sha256>,
    signature: &str,
    expires: u64,
    now_unix: u64,
) -> Result<(), SignError> {
    if signature.len() != PLAY_SIGNATURE_LEN {
        return Err(SignError::Malformed("signature has the wrong length"));
    }
    // The engine rejects padding and non-zero trailing bits, so each MAC has
    // exactly one accepted spelling.
    let tag = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| SignError::Malformed("signature is not base64url without padding"))?;
    mac.verify_slice(&tag)
        .map_err(|_| SignError::BadSignature)?;
    if now_unix > expires {
        return Err(SignError::Expired);
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
pub fn sign_vod(secret: &str, scope: &VodScope<'_>, expires: u64) -> Result<String, SignError> {
    let mac = vod_mac(secret, scope, None, expires)?;
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
) -> Result<String, SignError> {
    vod_query_with(key_id, secret, scope, None, expires)
}

/// The VOD signature `S` of one variant's range (`variant`: `source` or a
/// rung's name); see the module doc.
pub fn sign_vod_variant(
    secret: &str,
    scope: &VodScope<'_>,
    variant: &str,
    expires: u64,
) -> Result<String, SignError> {
    let mac = vod_mac(secret, scope, Some(variant), expires)?;
    Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The query string of a VOD API URL for one variant of `scope`: as
/// [`vod_query`] with `&variant=V` before `AccessKeyId`.
pub fn vod_variant_query(
    key_id: &str,
    secret: &str,
    scope: &VodScope<'_>,
    variant: &str,
    expires: u64,
) -> Result<String, SignError> {
    vod_query_with(key_id, secret, scope, Some(variant), expires)
}

/// Checks a VOD signature for exactly `scope` and `variant`; errors as for
/// [`verify_play`].
pub fn verify_vod_variant(
    secret: &str,
    scope: &VodScope<'_>,
    variant: &str,
    expires: u64,
    now_unix: u64,
    signature: &str,
) -> Result<(), SignError> {
    let mac = vod_mac(secret, scope, Some(variant), expires)?;
    check_tag(mac, signature, expires, now_unix)
}

fn vod_query_with(
    key_id: &str,
    secret: &str,
    scope: &VodScope<'_>,
    variant: Option<&str>,
    expires: u64,
) -> Result<String, SignError> {
    if key_id.is_empty() {
        return Err(SignError::Malformed("access key id must be non-empty"));
    }
    let mac = vod_mac(secret, scope, variant, expires)?;
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let mut q = format!(
        "start={}&end={}&urls={}",
        scope.start, scope.end, scope.urls
    );
    if !scope.name.is_empty() {
        q += &format!("&name={}", utf8_percent_encode(scope.name, UNRESERVED));
    }
    if let Some(v) = variant {
        q += &format!("&variant={}", utf8_percent_encode(v, UNRESERVED));
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
) -> Result<&'a str, SignError> {
    match verify_vod(secret, scope, expires, now_unix, signature) {
        Err(SignError::BadSignature) if !urls_given && scope.method == "GET" => {
            let signed_before = VodScope {
                urls: "relative",
                ..*scope
            };
            verify_vod(secret, &signed_before, expires, now_unix, signature)
                .map(|()| "relative")
                // A link of neither rule: report the mismatch, not the
                // old rule's.
                .map_err(|e| match e {
                    SignError::Expired => SignError::Expired,
                    _ => SignError::BadSignature,
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
) -> Result<(), SignError> {
    let mac = vod_mac(secret, scope, None, expires)?;
    check_tag(mac, signature, expires, now_unix)
}

fn vod_mac(
    secret: &str,
    scope: &VodScope<'_>,
    variant: Option<&str>,
    expires: u64,
) -> Result<Hmac<Sha256>, SignError> {
    if variant.is_some_and(|v| !is_single_segment(v)) {
        return Err(SignError::Malformed(
            "variant must be one non-empty path segment",
        ));
    }
    for name in [scope.bucket, scope.channel] {
        if !is_single_segment(name) {
            return Err(SignError::Malformed(
                "bucket and channel must each be one non-empty path segment",
            ));
        }
    }
    if !matches!(scope.method, "GET" | "POST") {
        return Err(SignError::Malformed("method must be GET or POST"));
    }
    if !matches!(scope.urls, "relative" | "presigned") {
        return Err(SignError::Malformed("urls must be relative or presigned"));
    }
    // GET writes nothing, so it names nothing; POST always names its object.
    if (scope.method == "GET") != scope.name.is_empty()
        || (!scope.name.is_empty() && !is_single_segment(scope.name))
    {
        return Err(SignError::Malformed(
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
    if let Some(v) = variant {
        mac.update(b"\n");
        mac.update(v.as_bytes());
    }
    Ok(mac)
}

/// The play MAC with the string to sign already fed in: the prefix, the
/// expiry, then `/NAME` for each of `names` (bucket, channel, [rung,]
/// playlist).
fn play_mac(secret: &str, names: &[&str], expires: u64) -> Result<Hmac<Sha256>, SignError> {
    if !names.iter().all(|n| is_single_segment(n)) {
        return Err(SignError::Malformed(
            "bucket, channel, rung and playlist must each be one non-empty path segment",
        ));
    }
    let mut mac = new_mac::<Sha256>(secret.as_bytes())?;
    mac.update(PLAY_PREFIX.as_bytes());
    mac.update(expires.to_string().as_bytes());
    mac.update(b"\n");
    for name in names {
        mac.update(b"/");
        mac.update(name.as_bytes());
    }
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
