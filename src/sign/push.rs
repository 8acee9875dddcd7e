//! The two RTMP push URL schemes: their strings to sign, their signatures and
//! the URL builders the CLI hands out. Both sign with HMAC-SHA1 and write the
//! tag in standard base64:
//!
//! - RGW: `?Bucket=B&AccessKeyId=K&Expires=E&Signature=S`, signing
//!   `E "\n/" B "/" CHANNEL`.
//! - OSS: the bucket is the first label of the tcUrl host
//!   (`rtmp://B.<oss_live_domain>/live/CHANNEL?OSSAccessKeyId=K&Expires=E&Signature=S`),
//!   signing `E "\n" CanonicalizedParams "/" B "/" CHANNEL`.
//!
//! Verification is split so `auth::push` keeps the policy (which key, the
//! expiry window, the buckets a key may write): [`decode_signature`] reads a
//! `Signature` value, [`check_signature`] compares it with the tag of a
//! string to sign. Accepted spellings of a tag (a raw `+` that form decoding
//! turned into a space, every `/` written as `z`) are accepted only when they
//! spell the correct tag, and always yield the same canonical bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::Mac;
use hmac::digest::{CtOutput, Output};
use percent_encoding::utf8_percent_encode;
use sha1::Sha1;

use super::SignError;
use super::encode::{PCHAR, UNRESERVED};
use super::mac::{HmacSha1, SHA1_LEN, decode_sha1_tag, new_mac, sha1_base64};

/// The query parameters that carry an OSS push signature; every other one is
/// part of CanonicalizedParams.
const OSS_SIGNATURE_PARAMS: [&str; 4] =
    ["OSSAccessKeyId", "Expires", "Signature", "security-token"];

/// The RGW string to sign, over the `Expires` text as sent (leading zeros
/// included), which is what the client's generator signed.
pub fn rgw_string_to_sign(bucket: &str, channel: &str, expires: &str) -> String {
    format!("{expires}\n/{bucket}/{channel}")
}

/// The OSS string to sign; `canonical` is [`canonicalized_params`]' output.
pub fn oss_string_to_sign(bucket: &str, channel: &str, expires: &str, canonical: &str) -> String {
    format!("{expires}\n{canonical}/{bucket}/{channel}")
}

/// OSS CanonicalizedParams: every parameter but the four that carry the
/// signature itself, as `key:value\n`, sorted. Exact repeats count once (as
/// `auth::push` reads them); sorting by value after key makes a repeated key
/// with different values deterministic.
pub fn canonicalized_params<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut kept: Vec<(&str, &str)> = params
        .filter(|(k, _)| !OSS_SIGNATURE_PARAMS.contains(k))
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut out = String::new();
    for (k, v) in kept {
        out.push_str(k);
        out.push(':');
        out.push_str(v);
        out.push('\n');
    }
    out
}

/// Decodes a `Signature` value into the 20 bytes of a tag. A raw `+` became a
/// space in form decoding; base64 has no space, so turning it back is
/// lossless.
pub fn decode_signature(value: &str) -> Result<[u8; SHA1_LEN], SignError> {
    decode_sha1_tag(&value.replace(' ', "+"))
}

/// Accepts `given` if it is the tag of `string_to_sign` under `secret`, or
/// the tag's `/`→`z` spelling decoded, and returns the tag itself: the same
/// bytes for either spelling. [`SignError::BadSignature`] otherwise.
pub fn check_signature(
    secret: &str,
    string_to_sign: &str,
    given: &[u8; SHA1_LEN],
) -> Result<[u8; SHA1_LEN], SignError> {
    let mut mac = new_mac::<Sha1>(secret.as_bytes())?;
    mac.update(string_to_sign.as_bytes());
    let tag = mac.clone().finalize().into_bytes();
    let standard_ok = mac.verify_slice(given).is_ok();

    // Base64 is a bijection between canonical 28-character strings and 20
    // bytes, and the `z` spelling stays canonical (the last data character of
    // a 20-byte encoding has its low bits clear, so it is never `/`). Comparing
    // decoded bytes therefore compares the spellings; CtOutput's equality is
    // constant time.
    let z_spelling = STANDARD.encode(tag).replace('/', "z");
    let z_ok = STANDARD
        .decode(z_spelling.as_bytes())
        .ok()
        .and_then(|bytes| Output::<HmacSha1>::try_from(bytes.as_slice()).ok())
        .is_some_and(|z| {
            CtOutput::<HmacSha1>::new(z) == CtOutput::new(Output::<HmacSha1>::from(*given))
        });

    if standard_ok | z_ok {
        Ok(tag.into())
    } else {
        Err(SignError::BadSignature)
    }
}

/// RGW-style signature: `base64(HMAC-SHA1(secret, E "\n/" B "/" CHANNEL))`.
pub fn sign_rgw(
    secret: &str,
    bucket: &str,
    channel: &str,
    expires: u64,
) -> Result<String, SignError> {
    sha1_base64(
        secret,
        rgw_string_to_sign(bucket, channel, &expires.to_string()).as_bytes(),
    )
}

/// OSS-style signature over `params`, the URL's other query parameters
/// (`playlistName` and any custom ones; the signature's own parameters are
/// ignored if present).
pub fn sign_oss(
    secret: &str,
    bucket: &str,
    channel: &str,
    expires: u64,
    params: &[(String, String)],
) -> Result<String, SignError> {
    let canonical = canonicalized_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    sha1_base64(
        secret,
        oss_string_to_sign(bucket, channel, &expires.to_string(), &canonical).as_bytes(),
    )
}

fn enc(value: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(value, UNRESERVED)
}

/// Full RGW-style push URL:
/// `ENDPOINT/CHANNEL?Bucket=..&AccessKeyId=..&Expires=..&Signature=..` with
/// `endpoint` like `rtmp://host:1935/live`.
///
/// Only formats and signs: validate `bucket` and `channel` first (the name
/// rules), or the URL will be refused.
pub fn rgw_push_url(
    endpoint: &str,
    bucket: &str,
    channel: &str,
    key_id: &str,
    secret: &str,
    expires: u64,
) -> Result<String, SignError> {
    let signature = sign_rgw(secret, bucket, channel, expires)?;
    Ok(format!(
        "{}/{}?Bucket={}&AccessKeyId={}&Expires={expires}&Signature={}",
        endpoint.trim_end_matches('/'),
        utf8_percent_encode(channel, PCHAR),
        enc(bucket),
        enc(key_id),
        enc(&signature),
    ))
}

/// Full OSS-style push URL:
/// `ENDPOINT/CHANNEL?OSSAccessKeyId=..&Expires=..&Signature=..[&playlistName=..]`
/// with `endpoint` like `rtmp://BUCKET.live.example.com/live`, whose host's
/// first label must be `bucket`.
///
/// Only formats and signs: validate `bucket`, `channel` and `playlist_name`
/// first (the name rules), or the URL will be refused.
pub fn oss_push_url(
    endpoint: &str,
    bucket: &str,
    channel: &str,
    key_id: &str,
    secret: &str,
    expires: u64,
    playlist_name: Option<&str>,
) -> Result<String, SignError> {
    let params: Vec<(String, String)> = playlist_name
        .map(|name| ("playlistName".to_owned(), name.to_owned()))
        .into_iter()
        .collect();
    let signature = sign_oss(secret, bucket, channel, expires, &params)?;
    let mut url = format!(
        "{}/{}?OSSAccessKeyId={}&Expires={expires}&Signature={}",
        endpoint.trim_end_matches('/'),
        utf8_percent_encode(channel, PCHAR),
        enc(key_id),
        enc(&signature),
    );
    for (k, v) in &params {
        url.push('&');
        url.push_str(k);
        url.push('=');
        url.extend(enc(v));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000019\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const SIG_1700000019: &str = "s6/O5Wh6ILI+VsEmD8ANWCsNoew=";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000000\nplaylistName:live.m3u8\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const OSS_SIG_PLAYLIST: &str = "aUiqXPkSe+EDJXpbfAhGTUlJXt0=";

    #[test]
    fn signatures_match_python() {
        assert_eq!(
            sign_rgw(SECRET, "demo", "cam1", 1_700_000_019),
            Ok(SIG_1700000019.to_owned())
        );
        let pl = [("playlistName".to_owned(), "live.m3u8".to_owned())];
        assert_eq!(
            sign_oss(SECRET, "demo", "cam1", 1_700_000_000, &pl),
            Ok(OSS_SIG_PLAYLIST.to_owned())
        );
    }

    #[test]
    fn every_accepted_spelling_yields_the_canonical_tag() {
        let to_sign = rgw_string_to_sign("demo", "cam1", "1700000019");
        let canonical = decode_sha1_tag(SIG_1700000019).expect("vector");
        for spelling in [
            SIG_1700000019.to_owned(),
            // A raw `+` that form decoding turned into a space.
            SIG_1700000019.replace('+', " "),
            // Every `/` written as `z`.
            SIG_1700000019.replace('/', "z"),
        ] {
            let given = decode_signature(&spelling).expect("decodes");
            assert_eq!(
                check_signature(SECRET, &to_sign, &given),
                Ok(canonical),
                "{spelling:?}"
            );
        }
        // The `z` spelling of another tag is that other tag, and fails here.
        let other = decode_signature(&SIG_1700000019.replace('s', "t")).expect("decodes");
        assert_eq!(
            check_signature(SECRET, &to_sign, &other),
            Err(SignError::BadSignature)
        );
        assert_eq!(
            decode_signature("AAAAAAAAAAAAAAAAAAAAAAAAAA=="),
            Err(SignError::SignatureWrongLength { len: 19 })
        );
    }

    #[test]
    fn canonicalized_params_sorts_and_drops_the_signature_params() {
        let params = [
            ("playlistName", "live.m3u8"),
            ("alpha", "1"),
            ("Signature", "x"),
            ("security-token", "t"),
            ("alpha", "1"),
            ("Zeta", "z z"),
            ("OSSAccessKeyId", "GK123"),
            ("Expires", "1"),
        ];
        assert_eq!(
            canonicalized_params(params.into_iter()),
            "Zeta:z z\nalpha:1\nplaylistName:live.m3u8\n"
        );
    }

    #[test]
    fn urls_encode_the_channel_as_pchar_and_values_as_unreserved() {
        let url = rgw_push_url("rtmp://h/live/", "demo", "a b:@", "GK 1", SECRET, 1).expect("url");
        let signature = sign_rgw(SECRET, "demo", "a b:@", 1).expect("sign");
        let encoded: String = utf8_percent_encode(&signature, UNRESERVED).collect();
        assert_eq!(
            url,
            format!(
                "rtmp://h/live/a%20b:@?Bucket=demo&AccessKeyId=GK%201&Expires=1&Signature={encoded}"
            )
        );
        let url = oss_push_url(
            "rtmp://demo.l/live",
            "demo",
            "c",
            "K",
            SECRET,
            1,
            Some("a b.m3u8"),
        )
        .expect("url");
        assert!(url.ends_with("&playlistName=a%20b.m3u8"), "{url}");
    }
}
