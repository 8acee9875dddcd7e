//! Signed push URLs: the policy around the two signature schemes livebucket
//! accepts (which key, the expiry window, the buckets a key may write). The
//! schemes themselves (strings to sign, signatures, URL generators) live in
//! [`crate::sign::push`].
//!
//! Input is a [`Callback`] parsed by [`super::callback`]; output is a
//! [`PushGrant`] naming the bucket and channel the stream may write, or a
//! [`Reject`] saying why not. The HTTP layer maps every `Reject` to a refusal
//! and logs [`Reject::code`]; nginx-rtmp then drops the stream.
//!
//! Invariants:
//! - Bucket and channel are validated (by [`crate::names`]' rules) before
//!   anything else reads them, so the rest of the program may put them into
//!   object keys as they are.
//! - Signatures are compared in constant time, and only on decoded bytes; the
//!   accepted spellings (raw `+` that form decoding turned into a space, and
//!   every `/` written as `z`) are accepted only when they spell the correct
//!   signature.
//! - Policy reasons (disabled key, bucket not allowed, expiry) are reported only
//!   for URLs whose signature is genuine, so those metrics count real streamers.
//! - No `Reject` message contains a secret or a computed signature.

use super::callback::Callback;
use super::reject::Reject;
use crate::config::{AccessKey, AuthConfig};
use crate::names::{DEFAULT_PLAYLIST, validate_bucket, validate_channel, validate_playlist_name};
use crate::sign::SignError;
use crate::sign::expiry::parse_expires;
use crate::sign::mac::SHA1_LEN;
use crate::sign::push::{
    canonicalized_params, check_signature, decode_signature, oss_string_to_sign, rgw_string_to_sign,
};
use crate::sign::url::url_host;

/// Which signature scheme a URL used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Rgw,
    Oss,
}

/// The HMAC tag a push URL was verified against: the canonical 20 bytes,
/// whichever accepted spelling of them the URL carried (standard base64, a
/// raw `+` read as a space, `/` written as `z`). It identifies the grant:
/// `auth.one_time_push` spends it, and callbacks of a running push are
/// matched to the approved session by it. Within the URL's lifetime it is a
/// credential, so `Debug` hides it and only [`GrantTag::fingerprint`] may be
/// stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrantTag([u8; SHA1_LEN]);

impl GrantTag {
    /// The tag's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; SHA1_LEN] {
        &self.0
    }

    /// Hex SHA-256 of a domain label, the key id and the tag: one value per
    /// grant, whatever its spelling, that reveals nothing of the tag (the tag
    /// is 160 bits from HMAC, so the hash cannot be inverted or guessed).
    pub(crate) fn fingerprint(&self, key_id: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"livebucket push grant v2\0");
        h.update(key_id.as_bytes());
        h.update([0]);
        h.update(self.0);
        hex::encode(h.finalize())
    }
}

/// A tag whose standard base64 holds both `+` and `/`, for tests of its
/// spellings.
#[cfg(test)]
pub(crate) fn test_tag(n: u8) -> GrantTag {
    let mut bytes = [0u8; SHA1_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = [0xfb, 0xef, 0xbf][i % 3];
    }
    bytes[SHA1_LEN - 1] = n;
    GrantTag(bytes)
}

impl std::fmt::Debug for GrantTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantTag(..)")
    }
}

/// What a verified URL allows: push `channel` into `bucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushGrant {
    pub bucket: String,
    pub channel: String,
    pub key_id: String,
    pub expires: u64,
    pub scheme: Scheme,
    /// Object name of the live playlist: [`DEFAULT_PLAYLIST`] unless an OSS
    /// URL set `playlistName`.
    pub playlist_name: String,
    /// The verified tag, in its canonical bytes.
    pub tag: GrantTag,
}

/// Verifies an `on_publish` callback (`call=publish`): signature, key, bucket
/// permission and expiry at `now_unix`.
pub(crate) fn verify_publish(
    cb: &Callback,
    keys: &[AccessKey],
    auth: &AuthConfig,
    now_unix: u64,
) -> Result<PushGrant, Reject> {
    expect_call(cb, &["publish"], "publish")?;
    let grant = verify_signed(cb, keys, auth, Policy::Enforce)?;
    check_expiry(grant.expires, auth, now_unix)?;
    Ok(grant)
}

/// For on_update: same checks except expiry (a stream that started before its
/// URL expired may keep going), so a disabled/removed key or a bucket no longer
/// allowed is caught.
///
/// Accepts `call=update_publish`, and also `publish_done`/`done` so the end of
/// a stream can be attributed the same way.
pub(crate) fn verify_update(
    cb: &Callback,
    keys: &[AccessKey],
    auth: &AuthConfig,
) -> Result<PushGrant, Reject> {
    expect_call(
        cb,
        &["update_publish", "publish_done", "done"],
        "update_publish, publish_done or done",
    )?;
    verify_signed(cb, keys, auth, Policy::Enforce)
}

/// For on_publish_done: the URL must carry a genuine signature of a
/// configured key, as in [`verify_update`], but a key disabled or a bucket
/// withdrawn since the push began does not refuse it: the publisher has
/// gone either way, and its session must end now rather than at its idle
/// end.
pub(crate) fn verify_done(
    cb: &Callback,
    keys: &[AccessKey],
    auth: &AuthConfig,
) -> Result<PushGrant, Reject> {
    expect_call(cb, &["publish_done", "done"], "publish_done or done")?;
    verify_signed(cb, keys, auth, Policy::Skip)
}

/// Whether [`verify_signed`] applies the key's policy (disabled, buckets)
/// after the signature.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Enforce,
    Skip,
}

fn expect_call(cb: &Callback, allowed: &[&str], expected: &'static str) -> Result<(), Reject> {
    if allowed.contains(&cb.call.as_str()) {
        Ok(())
    } else {
        Err(Reject::WrongCall {
            expected,
            got: cb.call.clone(),
        })
    }
}

/// Everything but expiry, in an order that validates names first and reports
/// policy reasons only for genuine signatures.
fn verify_signed(
    cb: &Callback,
    keys: &[AccessKey],
    auth: &AuthConfig,
    policy: Policy,
) -> Result<PushGrant, Reject> {
    validate_channel(&cb.name)?;
    let params = AuthParams::collect(&cb.client)?;
    let scheme = params.scheme()?;

    let bucket = match scheme {
        Scheme::Rgw => params
            .bucket
            .ok_or(Reject::MissingParam("Bucket"))?
            .to_owned(),
        Scheme::Oss => oss_bucket(&cb.tcurl, auth)?,
    };
    validate_bucket(&bucket)?;

    let playlist_name = match params.playlist_name {
        Some(name) => {
            validate_playlist_name(name)?;
            name.to_owned()
        }
        None => DEFAULT_PLAYLIST.to_owned(),
    };

    let key_id = match scheme {
        Scheme::Rgw => params
            .access_key_id
            .ok_or(Reject::MissingParam("AccessKeyId"))?,
        Scheme::Oss => params
            .oss_access_key_id
            .ok_or(Reject::MissingParam("OSSAccessKeyId"))?,
    };
    let expires_text = params.expires.ok_or(Reject::MissingParam("Expires"))?;
    let expires = parse_expires(expires_text).map_err(refusal)?;
    let signature = decode_signature(params.signature.ok_or(Reject::MissingParam("Signature"))?)
        .map_err(refusal)?;

    let key = keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| Reject::UnknownKey {
            key_id: key_id.to_owned(),
        })?;

    // Sign over the Expires text as sent (leading zeros included), which is
    // what the client's generator signed.
    let string_to_sign = match scheme {
        Scheme::Rgw => rgw_string_to_sign(&bucket, &cb.name, expires_text),
        Scheme::Oss => oss_string_to_sign(
            &bucket,
            &cb.name,
            expires_text,
            &canonicalized_params(cb.client.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        ),
    };
    let tag = GrantTag(check_signature(&key.secret, &string_to_sign, &signature).map_err(refusal)?);

    if policy == Policy::Enforce && key.disabled {
        return Err(Reject::KeyDisabled {
            key_id: key.id.clone(),
        });
    }
    if policy == Policy::Enforce && !key.may_write(&bucket) {
        return Err(Reject::BucketNotAllowed {
            key_id: key.id.clone(),
            bucket,
        });
    }
    Ok(PushGrant {
        bucket,
        channel: cb.name.clone(),
        key_id: key.id.clone(),
        expires,
        scheme,
        playlist_name,
        tag,
    })
}

fn check_expiry(expires: u64, auth: &AuthConfig, now: u64) -> Result<(), Reject> {
    if now > expires.saturating_add(auth.clock_skew_secs) {
        return Err(Reject::Expired {
            expires,
            now,
            skew: auth.clock_skew_secs,
        });
    }
    let latest = now
        .saturating_add(auth.max_lifetime_secs)
        .saturating_add(auth.clock_skew_secs);
    if expires > latest {
        return Err(Reject::ExpiresTooFar {
            expires,
            now,
            max_lifetime: auth.max_lifetime_secs,
        });
    }
    Ok(())
}

/// The authentication parameters of a client query, each at most once.
#[derive(Default)]
struct AuthParams<'a> {
    bucket: Option<&'a str>,
    access_key_id: Option<&'a str>,
    oss_access_key_id: Option<&'a str>,
    expires: Option<&'a str>,
    signature: Option<&'a str>,
    playlist_name: Option<&'a str>,
    security_token: Option<&'a str>,
}

impl<'a> AuthParams<'a> {
    fn collect(client: &'a [(String, String)]) -> Result<Self, Reject> {
        let mut p = AuthParams::default();
        for (key, value) in client {
            let (slot, param) = match key.as_str() {
                "Bucket" => (&mut p.bucket, "Bucket"),
                "AccessKeyId" => (&mut p.access_key_id, "AccessKeyId"),
                "OSSAccessKeyId" => (&mut p.oss_access_key_id, "OSSAccessKeyId"),
                "Expires" => (&mut p.expires, "Expires"),
                "Signature" => (&mut p.signature, "Signature"),
                "playlistName" => (&mut p.playlist_name, "playlistName"),
                "security-token" => (&mut p.security_token, "security-token"),
                _ => continue,
            };
            match slot {
                None => *slot = Some(value.as_str()),
                // Two different values would let the signature check and the
                // policy read different ones; identical repeats are harmless.
                Some(seen) if *seen != value.as_str() => {
                    return Err(Reject::DuplicateParam { param });
                }
                Some(_) => {}
            }
        }
        Ok(p)
    }

    fn scheme(&self) -> Result<Scheme, Reject> {
        let rgw = self.bucket.is_some() || self.access_key_id.is_some();
        // playlistName is only signed by the OSS scheme; with RGW it would be
        // an unsigned choice of object name.
        let oss = self.oss_access_key_id.is_some()
            || self.playlist_name.is_some()
            || self.security_token.is_some();
        match (rgw, oss) {
            (true, true) => Err(Reject::AmbiguousScheme),
            (true, false) => Ok(Scheme::Rgw),
            (false, true) => Ok(Scheme::Oss),
            (false, false) => Err(Reject::Unsigned),
        }
    }
}

/// How a signing failure of a push URL reads as a refusal.
fn refusal(e: SignError) -> Reject {
    match e {
        SignError::InvalidExpires => Reject::InvalidExpires,
        SignError::SignatureNotBase64 => Reject::SignatureNotBase64,
        SignError::SignatureWrongLength { len } => Reject::SignatureWrongLength { len },
        // A mismatch, or a key HMAC cannot take (none exists): no grant.
        _ => Reject::BadSignature,
    }
}

/// The bucket named by an OSS tcUrl `rtmp://BUCKET.<oss_live_domain>[:port]/app`.
fn oss_bucket(tcurl: &str, auth: &AuthConfig) -> Result<String, Reject> {
    let domain = auth
        .oss_live_domain
        .as_deref()
        .ok_or(Reject::OssNotConfigured)?;
    let host = url_host(tcurl).ok_or_else(|| Reject::InvalidTcUrl(tcurl.to_owned()))?;
    bucket_label(host, domain).ok_or_else(|| Reject::OssHostMismatch {
        host: host.to_owned(),
        domain: domain.to_owned(),
    })
}

/// `BUCKET` if `host` is `BUCKET.<domain>` with a single-label bucket; DNS
/// names compare case-insensitively, and S3 bucket names are lowercase.
fn bucket_label(host: &str, domain: &str) -> Option<String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let split = host.len().checked_sub(domain.len())?.checked_sub(1)?;
    let label = host.get(..split)?;
    let dot = host.get(split..split + 1)?;
    let suffix = host.get(split + 1..)?;
    if dot != "." || !suffix.eq_ignore_ascii_case(domain) || label.is_empty() || label.contains('.')
    {
        return None;
    }
    Some(label.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::auth::callback::parse_callback;
    use crate::auth::callback::test_support::{
        nginx_done_body, nginx_publish_body, nginx_update_body,
    };
    use crate::sign::push as signer;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    const SECRET: &str = "0123456789abcdef";

    // The generators, unwrapped: signing with a test secret cannot fail.
    fn sign_rgw(secret: &str, bucket: &str, channel: &str, expires: u64) -> String {
        signer::sign_rgw(secret, bucket, channel, expires).expect("sign")
    }

    fn sign_oss(
        secret: &str,
        bucket: &str,
        channel: &str,
        expires: u64,
        params: &[(String, String)],
    ) -> String {
        signer::sign_oss(secret, bucket, channel, expires, params).expect("sign")
    }

    fn rgw_push_url(
        endpoint: &str,
        bucket: &str,
        channel: &str,
        key_id: &str,
        secret: &str,
        expires: u64,
    ) -> String {
        signer::rgw_push_url(endpoint, bucket, channel, key_id, secret, expires).expect("sign")
    }

    fn oss_push_url(
        endpoint: &str,
        bucket: &str,
        channel: &str,
        key_id: &str,
        secret: &str,
        expires: u64,
        playlist_name: Option<&str>,
    ) -> String {
        signer::oss_push_url(
            endpoint,
            bucket,
            channel,
            key_id,
            secret,
            expires,
            playlist_name,
        )
        .expect("sign")
    }

    fn keys() -> Vec<AccessKey> {
        vec![
            AccessKey {
                id: "GK123".into(),
                secret: SECRET.into(),
                buckets: vec!["demo".into()],
                disabled: false,
            },
            AccessKey {
                id: "GKOFF".into(),
                secret: SECRET.into(),
                buckets: vec!["demo".into()],
                disabled: true,
            },
            AccessKey {
                id: "GKALL".into(),
                secret: SECRET.into(),
                buckets: vec!["*".into()],
                disabled: false,
            },
        ]
    }

    fn oss_auth() -> AuthConfig {
        AuthConfig {
            oss_live_domain: Some("live.example.com".into()),
            ..AuthConfig::default()
        }
    }

    const LOCAL_TCURL: &str = "rtmp://127.0.0.1:1935/live";
    const OSS_TCURL: &str = "rtmp://demo.live.example.com:1935/live";

    // Independent vectors, computed with Python's hmac module.
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000000\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const SIG_1700000000: &str = "8KNPdJIaUBCcUOTq7sTPM9c4Vdg=";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000019\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const SIG_1700000019: &str = "s6/O5Wh6ILI+VsEmD8ANWCsNoew=";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000011\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const SIG_1700000011: &str = "0BDFPRFK/uDzEoS2/EOPyPMw08s=";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000002\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const SIG_1700000002: &str = "qKajXjatrfV23VihTHfFZIRz6iI=";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000000\nplaylistName:live.m3u8\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const OSS_SIG_PLAYLIST: &str = "aUiqXPkSe+EDJXpbfAhGTUlJXt0=";
    // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"0123456789abcdef",b"1700000000\nZeta:z z\nalpha:1\nplaylistName:live.m3u8\n/demo/cam1",hashlib.sha1).digest()).decode())'
    const OSS_SIG_MULTI: &str = "Q7bT8WNIRY/xu+UZ9Sa5OzHI5V0=";

    const NOW: u64 = 1_700_000_000 - 60;

    /// Percent-encodes a whole query value, as a careful generator would.
    fn q(value: &str) -> String {
        percent_encoding::utf8_percent_encode(value, crate::sign::encode::UNRESERVED).to_string()
    }

    fn rgw_query(bucket: &str, key: &str, expires: &str, sig: &str) -> String {
        format!("Bucket={bucket}&AccessKeyId={key}&Expires={expires}&Signature={sig}")
    }

    fn publish(name: &str, query: &str) -> Result<PushGrant, Reject> {
        publish_with(name, query, LOCAL_TCURL, &AuthConfig::default(), NOW)
    }

    fn publish_with(
        name: &str,
        query: &str,
        tcurl: &str,
        auth: &AuthConfig,
        now: u64,
    ) -> Result<PushGrant, Reject> {
        let cb = parse_callback(&nginx_publish_body(tcurl, name, query))?;
        verify_publish(&cb, &keys(), auth, now)
    }

    fn code(r: Result<PushGrant, Reject>) -> &'static str {
        match r {
            Ok(g) => panic!("expected a rejection, got {g:?}"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn generators_match_python_vectors() {
        assert_eq!(
            sign_rgw(SECRET, "demo", "cam1", 1_700_000_000),
            SIG_1700000000
        );
        assert_eq!(
            sign_rgw(SECRET, "demo", "cam1", 1_700_000_019),
            SIG_1700000019
        );
        let pl = vec![("playlistName".to_string(), "live.m3u8".to_string())];
        assert_eq!(
            sign_oss(SECRET, "demo", "cam1", 1_700_000_000, &pl),
            OSS_SIG_PLAYLIST
        );
        // Given unsorted and with the signature's own parameters, which are
        // left out of CanonicalizedParams.
        let multi: Vec<(String, String)> = [
            ("playlistName", "live.m3u8"),
            ("alpha", "1"),
            ("Signature", "x"),
            ("Zeta", "z z"),
            ("OSSAccessKeyId", "GK123"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            sign_oss(SECRET, "demo", "cam1", 1_700_000_000, &multi),
            OSS_SIG_MULTI
        );
        // With no other parameters both schemes sign the same string.
        assert_eq!(
            sign_oss(SECRET, "demo", "cam1", 1_700_000_000, &[]),
            SIG_1700000000
        );
    }

    #[test]
    fn rgw_accepts_correct_signature() {
        let g = publish(
            "cam1",
            &rgw_query("demo", "GK123", "1700000000", &q(SIG_1700000000)),
        )
        .unwrap();
        assert_eq!(
            g,
            PushGrant {
                bucket: "demo".into(),
                channel: "cam1".into(),
                key_id: "GK123".into(),
                expires: 1_700_000_000,
                scheme: Scheme::Rgw,
                playlist_name: DEFAULT_PLAYLIST.into(),
                tag: GrantTag(STANDARD.decode(SIG_1700000000).unwrap().try_into().unwrap()),
            }
        );
    }

    #[test]
    fn rgw_accepts_every_spelling_of_the_correct_signature() {
        let expires = "1700000019";
        let now = 1_700_000_019 - 60;
        let z = SIG_1700000019.replace('/', "z");
        for sig in [
            // percent-encoded
            q(SIG_1700000019),
            // raw: `+` becomes a space in form decoding
            SIG_1700000019.to_string(),
            // `/` written as `z`, raw and encoded
            z.clone(),
            q(&z),
            // `+` as `%20` (a space) is the same bytes once decoded
            SIG_1700000019.replace('+', "%20"),
        ] {
            let r = publish_with(
                "cam1",
                &rgw_query("demo", "GK123", expires, &sig),
                LOCAL_TCURL,
                &AuthConfig::default(),
                now,
            );
            assert!(r.is_ok(), "spelling {sig:?} refused: {r:?}");
        }
    }

    #[test]
    fn spellings_are_accepted_only_for_the_correct_signature() {
        let now = 1_700_000_000;
        let run = |expires: &str, sig: &str| {
            code(publish_with(
                "cam1",
                &rgw_query("demo", "GK123", expires, sig),
                LOCAL_TCURL,
                &AuthConfig::default(),
                now,
            ))
        };
        // Only one of two `/` replaced: not "every `/`".
        let partial = SIG_1700000011.replacen('/', "z", 1);
        assert_eq!(run("1700000011", &q(&partial)), "bad_signature");
        // A `z` of the real signature written as `/` is not a spelling.
        let reversed = SIG_1700000002.replace('z', "/");
        assert_eq!(run("1700000002", &q(&reversed)), "bad_signature");
        // The correct signature for another Expires.
        assert_eq!(run("1700000002", &q(SIG_1700000000)), "bad_signature");
        // Both `/` replaced is accepted.
        let full = SIG_1700000011.replace('/', "z");
        assert!(
            publish_with(
                "cam1",
                &rgw_query("demo", "GK123", "1700000011", &q(&full)),
                LOCAL_TCURL,
                &AuthConfig::default(),
                now,
            )
            .is_ok()
        );
    }

    #[test]
    fn signature_format_errors_are_distinct() {
        let run = |sig: &str| {
            code(publish(
                "cam1",
                &rgw_query("demo", "GK123", "1700000000", sig),
            ))
        };
        assert_eq!(run("not*base64"), "signature_not_base64");
        // Missing padding is not standard base64.
        assert_eq!(
            run(SIG_1700000000.trim_end_matches('=')),
            "signature_not_base64"
        );
        // Valid base64 of 16 bytes (an MD5's length).
        assert_eq!(
            run(&q(&STANDARD.encode([7u8; 16]))),
            "signature_wrong_length"
        );
        assert_eq!(run(""), "signature_wrong_length");
        assert_eq!(run(&q(&STANDARD.encode([7u8; 20]))), "bad_signature");
        // URL-safe alphabet is not accepted.
        let urlsafe = SIG_1700000019.replace('+', "-").replace('/', "_");
        assert_eq!(
            code(publish_with(
                "cam1",
                &rgw_query("demo", "GK123", "1700000019", &urlsafe),
                LOCAL_TCURL,
                &AuthConfig::default(),
                NOW,
            )),
            "signature_not_base64"
        );
    }

    #[test]
    fn missing_parameters() {
        let sig = q(SIG_1700000000);
        assert_eq!(
            code(publish(
                "cam1",
                &format!("AccessKeyId=GK123&Expires=1700000000&Signature={sig}")
            )),
            "missing_param"
        );
        assert_eq!(
            code(publish(
                "cam1",
                &format!("Bucket=demo&Expires=1700000000&Signature={sig}")
            )),
            "missing_param"
        );
        assert_eq!(
            code(publish(
                "cam1",
                &format!("Bucket=demo&AccessKeyId=GK123&Signature={sig}")
            )),
            "missing_param"
        );
        assert_eq!(
            code(publish(
                "cam1",
                "Bucket=demo&AccessKeyId=GK123&Expires=1700000000"
            )),
            "missing_param"
        );
        assert_eq!(code(publish("cam1", "")), "unsigned");
        assert_eq!(code(publish("cam1", "foo=bar")), "unsigned");
    }

    #[test]
    fn expires_must_be_plain_digits() {
        for bad in [
            "",
            "-1",
            "+1700000000",
            "1.7e9",
            "17000000000000000000000",
            "0x10",
            "1700000000%20",
        ] {
            let r = publish("cam1", &rgw_query("demo", "GK123", bad, &q(SIG_1700000000)));
            assert_eq!(code(r), "invalid_expires", "Expires={bad:?}");
        }
    }

    #[test]
    fn expiry_window_and_skew() {
        let auth = AuthConfig::default();
        let e = 1_700_000_000u64;
        let query = rgw_query("demo", "GK123", "1700000000", &q(SIG_1700000000));
        let at = |now| publish_with("cam1", &query, LOCAL_TCURL, &auth, now);
        assert!(at(e).is_ok());
        assert!(at(e + auth.clock_skew_secs).is_ok());
        assert_eq!(code(at(e + auth.clock_skew_secs + 1)), "expired");
        let earliest = e - auth.max_lifetime_secs - auth.clock_skew_secs;
        assert!(at(earliest).is_ok());
        assert_eq!(code(at(earliest - 1)), "expires_too_far");
        assert_eq!(code(at(0)), "expires_too_far");
        assert_eq!(code(at(u64::MAX)), "expired");
    }

    #[test]
    fn key_policy() {
        let sig = q(SIG_1700000000);
        assert_eq!(
            code(publish(
                "cam1",
                &rgw_query("demo", "GKNONE", "1700000000", &sig)
            )),
            "unknown_key"
        );
        assert_eq!(
            code(publish(
                "cam1",
                &rgw_query("demo", "GKOFF", "1700000000", &sig)
            )),
            "key_disabled"
        );
        // A disabled key with a forged signature is reported as a bad
        // signature: policy reasons are only given for genuine URLs.
        assert_eq!(
            code(publish(
                "cam1",
                &rgw_query(
                    "demo",
                    "GKOFF",
                    "1700000000",
                    &q(&STANDARD.encode([1u8; 20]))
                )
            )),
            "bad_signature"
        );
        let other = q(&sign_rgw(SECRET, "other", "cam1", 1_700_000_000));
        assert_eq!(
            code(publish(
                "cam1",
                &rgw_query("other", "GK123", "1700000000", &other)
            )),
            "bucket_not_allowed"
        );
        // Wildcard key writes anywhere.
        let g = publish("cam1", &rgw_query("other", "GKALL", "1700000000", &other)).unwrap();
        assert_eq!(g.bucket, "other");
    }

    #[test]
    fn signature_binds_bucket_and_channel() {
        let sig = q(SIG_1700000000);
        let r = publish("cam2", &rgw_query("demo", "GK123", "1700000000", &sig));
        assert_eq!(code(r), "bad_signature");
        let r = publish("cam1", &rgw_query("demo2", "GKALL", "1700000000", &sig));
        assert_eq!(code(r), "bad_signature");
    }

    #[test]
    fn bucket_and_channel_are_validated_first() {
        let sig = q(SIG_1700000000);
        for bad in [
            "ab",
            "Demo",
            "-demo",
            "demo-",
            "de..mo",
            "192.168.1.1",
            "de_mo",
            &"a".repeat(64),
        ] {
            let r = publish("cam1", &rgw_query(&q(bad), "GK123", "1700000000", &sig));
            assert_eq!(code(r), "invalid_bucket", "bucket {bad:?}");
        }
        for bad in [
            "..",
            ".",
            "a..b",
            "a\\b",
            "a b",
            &"c".repeat(101),
            "caf\u{e9}",
        ] {
            let r = publish(bad, &rgw_query("demo", "GK123", "1700000000", &sig));
            assert_eq!(code(r), "invalid_channel", "channel {bad:?}");
        }
        // Channel validation comes before anything about the signature.
        assert_eq!(code(publish("..", "")), "invalid_channel");
        assert!(validate_bucket("my.bucket-1").is_ok());
        assert!(validate_bucket("1.2.3").is_ok());
        assert!(validate_channel("a.b_c-d~e:f@g").is_ok());
        // A name the channel rule refuses is refused before the signature
        // is read.
        let r = publish(
            "k=v",
            &rgw_query("demo", "GK123", "1700000000", &q(SIG_1700000000)),
        );
        assert_eq!(code(r), "invalid_channel");
    }

    #[test]
    fn duplicate_auth_parameters() {
        let sig = q(SIG_1700000000);
        let base = rgw_query("demo", "GK123", "1700000000", &sig);
        // Identical repeats are fine.
        assert!(publish("cam1", &format!("{base}&Bucket=demo&Signature={sig}")).is_ok());
        for extra in [
            "Bucket=other",
            "AccessKeyId=GKALL",
            "Expires=1700000001",
            "Signature=AAAA",
        ] {
            let r = publish("cam1", &format!("{base}&{extra}"));
            assert_eq!(code(r.clone()), "duplicate_param", "{extra}");
            let msg = r.unwrap_err().to_string();
            assert!(msg.contains("different values"), "{msg}");
        }
        // The repeat may come first, too.
        let r = publish("cam1", &format!("Bucket=other&{base}"));
        assert_eq!(code(r), "duplicate_param");
    }

    #[test]
    fn both_schemes_at_once_are_ambiguous() {
        let sig = q(SIG_1700000000);
        let base = rgw_query("demo", "GK123", "1700000000", &sig);
        for extra in [
            "OSSAccessKeyId=GK123",
            "playlistName=live.m3u8",
            "security-token=x",
        ] {
            let r = publish_with(
                "cam1",
                &format!("{base}&{extra}"),
                OSS_TCURL,
                &oss_auth(),
                NOW,
            );
            assert_eq!(code(r), "ambiguous_scheme", "{extra}");
        }
    }

    fn oss_query(extra: &str, sig: &str) -> String {
        format!("OSSAccessKeyId=GK123&Expires=1700000000&Signature={sig}{extra}")
    }

    #[test]
    fn oss_accepts_correct_signature() {
        let g = publish_with(
            "cam1",
            &oss_query("", &q(SIG_1700000000)),
            OSS_TCURL,
            &oss_auth(),
            NOW,
        )
        .unwrap();
        assert_eq!(g.scheme, Scheme::Oss);
        assert_eq!(g.bucket, "demo");
        assert_eq!(g.playlist_name, DEFAULT_PLAYLIST);
        // Hosts compare case-insensitively; a trailing dot and no port are fine.
        for tcurl in [
            "rtmp://DEMO.Live.Example.COM/live",
            "rtmp://demo.live.example.com./live",
        ] {
            let g = publish_with(
                "cam1",
                &oss_query("", &q(SIG_1700000000)),
                tcurl,
                &oss_auth(),
                NOW,
            )
            .unwrap();
            assert_eq!(g.bucket, "demo");
        }
    }

    #[test]
    fn oss_playlist_name_is_signed_and_used() {
        let g = publish_with(
            "cam1",
            &oss_query("&playlistName=live.m3u8", &q(OSS_SIG_PLAYLIST)),
            OSS_TCURL,
            &oss_auth(),
            NOW,
        )
        .unwrap();
        assert_eq!(g.playlist_name, "live.m3u8");
        // Changing the playlist name breaks the signature.
        let r = publish_with(
            "cam1",
            &oss_query("&playlistName=evil.m3u8", &q(OSS_SIG_PLAYLIST)),
            OSS_TCURL,
            &oss_auth(),
            NOW,
        );
        assert_eq!(code(r), "bad_signature");
    }

    #[test]
    fn oss_playlist_name_validation() {
        for bad in [
            ".m3u8",
            "a.m3u",
            "a/b.m3u8",
            "a\\b.m3u8",
            "live.M3U8",
            &format!("{}.m3u8", "x".repeat(124)),
        ] {
            let r = publish_with(
                "cam1",
                &oss_query(&format!("&playlistName={}", q(bad)), &q(OSS_SIG_PLAYLIST)),
                OSS_TCURL,
                &oss_auth(),
                NOW,
            );
            assert_eq!(code(r), "invalid_playlist_name", "{bad:?}");
        }
        assert!(validate_playlist_name("a.m3u8").is_ok());
        assert!(validate_playlist_name(&format!("{}.m3u8", "x".repeat(123))).is_ok());
    }

    #[test]
    fn oss_other_params_are_canonicalized_sorted() {
        // Sent in an order other than the sorted one, raw `+` and `%20` both
        // decode to a space.
        let extra = "&playlistName=live.m3u8&alpha=1&Zeta=z+z";
        let g = publish_with(
            "cam1",
            &oss_query(extra, &q(OSS_SIG_MULTI)),
            OSS_TCURL,
            &oss_auth(),
            NOW,
        )
        .unwrap();
        assert_eq!(g.playlist_name, "live.m3u8");
        let extra = "&Zeta=z%20z&alpha=1&playlistName=live.m3u8&security-token=ignored";
        assert!(
            publish_with(
                "cam1",
                &oss_query(extra, &q(OSS_SIG_MULTI)),
                OSS_TCURL,
                &oss_auth(),
                NOW
            )
            .is_ok()
        );
        // A parameter the signer did not include breaks the signature.
        let extra = "&playlistName=live.m3u8&alpha=1&Zeta=z+z&beta=2";
        let r = publish_with(
            "cam1",
            &oss_query(extra, &q(OSS_SIG_MULTI)),
            OSS_TCURL,
            &oss_auth(),
            NOW,
        );
        assert_eq!(code(r), "bad_signature");
    }

    #[test]
    fn oss_needs_a_configured_matching_domain() {
        let query = oss_query("", &q(SIG_1700000000));
        let r = publish_with("cam1", &query, OSS_TCURL, &AuthConfig::default(), NOW);
        let err = r.clone().unwrap_err();
        assert_eq!(err.code(), "oss_not_configured");
        assert!(err.to_string().contains("oss_live_domain"), "{err}");
        for tcurl in [
            "rtmp://demo.live.example.org/live",
            "rtmp://live.example.com/live",
            "rtmp://a.demo.live.example.com/live",
            "rtmp://demolive.example.com/live",
            "rtmp://127.0.0.1:1935/live",
        ] {
            let r = publish_with("cam1", &query, tcurl, &oss_auth(), NOW);
            assert_eq!(code(r), "oss_host_mismatch", "{tcurl}");
        }
        for tcurl in [
            "",
            "demo.live.example.com/live",
            "rtmp://u@demo.live.example.com/live",
            "rtmp:///live",
        ] {
            let r = publish_with("cam1", &query, tcurl, &oss_auth(), NOW);
            assert_eq!(code(r), "invalid_tcurl", "{tcurl}");
        }
        // The bucket from the host is validated like any other.
        let r = publish_with(
            "cam1",
            &query,
            "rtmp://d_x.live.example.com/live",
            &oss_auth(),
            NOW,
        );
        assert_eq!(code(r), "invalid_bucket");
    }

    #[test]
    fn truncated_query_fails_cleanly() {
        // nginx keeps 255 bytes of "name?query"; every cut of a valid URL,
        // including inside a `%XX` escape, must be refused without panicking.
        let query = rgw_query("demo", "GK123", "1700000000", &q(SIG_1700000000));
        let full = format!("cam1?{query}");
        for cut in 0..full.len() {
            let kept = &full[..cut];
            let (name, query) = kept.split_once('?').unwrap_or((kept, ""));
            assert!(publish(name, query).is_err(), "cut at {cut} accepted");
        }
        assert!(publish("cam1", &query).is_ok());

        // The same through the body builder, which cuts as nginx does: a long
        // channel and an extra parameter push the signature past 255 bytes.
        let channel = "c".repeat(100);
        let sig = q(&sign_rgw(SECRET, "demo", &channel, 1_700_000_000));
        let rgw = rgw_query("demo", "GK123", "1700000000", &sig);
        let query_with = |pad: usize| format!("note={}&{rgw}", "x".repeat(pad));
        // "name?note=PAD&" + rgw is 255 bytes at pad `fits`; each further byte
        // of padding cuts one more byte off the end, until only `Expires=` is
        // left.
        let fits = 255 - (channel.len() + 1) - ("note=".len() + 1) - rgw.len();
        let expires_at = "Bucket=demo&AccessKeyId=GK123&Expires=".len();
        assert!(publish(&channel, &query_with(fits)).is_ok());
        for pad in fits + 1..=fits + rgw.len() - expires_at {
            let r = publish(&channel, &query_with(pad));
            assert!(
                matches!(
                    r.as_ref().map_err(Reject::code),
                    Err("signature_not_base64"
                        | "signature_wrong_length"
                        | "missing_param"
                        | "invalid_expires"
                        | "bad_signature")
                ),
                "pad {pad}: {r:?}"
            );
        }
    }

    #[test]
    fn update_skips_expiry_but_not_policy() {
        let query = rgw_query("demo", "GK123", "1700000000", &q(SIG_1700000000));
        let cb = parse_callback(&nginx_update_body(LOCAL_TCURL, "cam1", &query)).unwrap();
        // Long after expiry, on_update still passes.
        assert!(verify_update(&cb, &keys(), &AuthConfig::default()).is_ok());
        // ... but not once the key is disabled or loses the bucket.
        let mut ks = keys();
        ks[0].disabled = true;
        assert_eq!(
            verify_update(&cb, &ks, &AuthConfig::default())
                .unwrap_err()
                .code(),
            "key_disabled"
        );
        ks[0].disabled = false;
        ks[0].buckets = vec!["elsewhere".into()];
        assert_eq!(
            verify_update(&cb, &ks, &AuthConfig::default())
                .unwrap_err()
                .code(),
            "bucket_not_allowed"
        );
        ks.remove(0);
        assert_eq!(
            verify_update(&cb, &ks, &AuthConfig::default())
                .unwrap_err()
                .code(),
            "unknown_key"
        );
        // The calls are not interchangeable.
        assert_eq!(
            verify_publish(&cb, &keys(), &AuthConfig::default(), NOW)
                .unwrap_err()
                .code(),
            "wrong_call"
        );
        let pb = parse_callback(&nginx_publish_body(LOCAL_TCURL, "cam1", &query)).unwrap();
        assert_eq!(
            verify_update(&pb, &keys(), &AuthConfig::default())
                .unwrap_err()
                .code(),
            "wrong_call"
        );
    }

    #[test]
    fn push_urls_round_trip() {
        let url = rgw_push_url(
            "rtmp://host:1935/live/",
            "demo",
            "cam1",
            "GK123",
            SECRET,
            1_700_000_019,
        );
        assert_eq!(
            url,
            "rtmp://host:1935/live/cam1?Bucket=demo&AccessKeyId=GK123&Expires=1700000019&Signature=s6%2FO5Wh6ILI%2BVsEmD8ANWCsNoew%3D"
        );
        let (_, query) = url.split_once('?').unwrap();
        let auth = AuthConfig::default();
        assert!(publish_with("cam1", query, LOCAL_TCURL, &auth, 1_700_000_000).is_ok());

        let url = oss_push_url(
            "rtmp://demo.live.example.com/live",
            "demo",
            "cam1",
            "GK123",
            SECRET,
            1_700_000_000,
            Some("live.m3u8"),
        );
        assert_eq!(
            url,
            "rtmp://demo.live.example.com/live/cam1?OSSAccessKeyId=GK123&Expires=1700000000&Signature=aUiqXPkSe%2BEDJXpbfAhGTUlJXt0%3D&playlistName=live.m3u8"
        );
        let (_, query) = url.split_once('?').unwrap();
        let g = publish_with("cam1", query, OSS_TCURL, &oss_auth(), NOW).unwrap();
        assert_eq!(g.playlist_name, "live.m3u8");
    }

    #[test]
    fn push_url_channel_is_sent_as_written() {
        // Path characters stay literal, since RTMP clients send the name to
        // nginx without decoding; the URL then verifies for that channel.
        let channel = "a:b@c!$'()*+,;~";
        assert!(validate_channel(channel).is_ok());
        let url = rgw_push_url(
            "rtmp://h/live",
            "demo",
            channel,
            "GK123",
            SECRET,
            1_700_000_000,
        );
        let stream_key = url.strip_prefix("rtmp://h/live/").unwrap();
        let (name, query) = stream_key.split_once('?').unwrap();
        assert_eq!(name, channel);
        assert!(publish(name, query).is_ok());
        // Outside pchar, RFC 3986 requires encoding, which RTMP clients would
        // then send literally: the documented limitation.
        let url = rgw_push_url("rtmp://h/live", "demo", "a#b", "GK123", SECRET, 1);
        assert!(url.starts_with("rtmp://h/live/a%23b?"), "{url}");
    }

    #[test]
    fn messages_never_contain_secrets_or_signatures() {
        let expected = sign_rgw(SECRET, "demo", "cam1", 1_700_000_000);
        let queries = [
            rgw_query(
                "demo",
                "GK123",
                "1700000000",
                &q(&STANDARD.encode([3u8; 20])),
            ),
            rgw_query("demo", "GKOFF", "1700000000", &q(SIG_1700000000)),
            rgw_query("demo", "GK123", "1", &q(SIG_1700000000)),
            rgw_query("demo", "GK123", "1700000000", "abc"),
            format!(
                "{}&Signature=x",
                rgw_query("demo", "GK123", "1700000000", &q(SIG_1700000000))
            ),
        ];
        for query in queries {
            let err = publish("cam1", &query).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains(&expected), "{text}");
            assert!(!text.contains(&expected[..12]), "{text}");
        }
    }

    #[test]
    fn every_spelling_of_a_signature_is_one_grant() {
        // An Expires whose signature holds a `/`, so the `z` spelling differs.
        let (expires, sig) = (NOW..NOW + 1000)
            .map(|e| (e, sign_rgw(SECRET, "demo", "cam1", e)))
            .find(|(_, s)| s.contains('/') && s.contains('+'))
            .unwrap();
        let e = expires.to_string();
        let grant = |sig: &str| publish("cam1", &rgw_query("demo", "GK123", &e, sig)).unwrap();
        let standard = grant(&q(&sig));
        for spelling in [
            q(&sig.replace('/', "z")),
            sig.clone(),
            sig.replace('/', "z"),
        ] {
            let g = grant(&spelling);
            assert_eq!(g.tag, standard.tag, "{spelling}");
            assert_eq!(
                g.tag.fingerprint("GK123"),
                standard.tag.fingerprint("GK123")
            );
        }
        assert_ne!(
            standard.tag.fingerprint("GK123"),
            standard.tag.fingerprint("GKALL")
        );
        assert_eq!(format!("{:?}", standard.tag), "GrantTag(..)");
        // The same for the OSS scheme.
        let (expires, sig) = (NOW..NOW + 1000)
            .map(|e| (e, sign_oss(SECRET, "demo", "cam1", e, &[])))
            .find(|(_, s)| s.contains('/'))
            .unwrap();
        let oss = |sig: &str| {
            let query = format!(
                "OSSAccessKeyId=GK123&Expires={expires}&Signature={}",
                q(sig)
            );
            publish_with("cam1", &query, OSS_TCURL, &oss_auth(), NOW).unwrap()
        };
        assert_eq!(oss(&sig).tag, oss(&sig.replace('/', "z")).tag);
    }

    #[test]
    fn done_needs_a_genuine_signature_but_not_the_policy() {
        let query = rgw_query("demo", "GKOFF", "1700000000", &q(SIG_1700000000));
        let cb = parse_callback(&nginx_done_body(LOCAL_TCURL, "cam1", &query)).unwrap();
        assert!(verify_done(&cb, &keys(), &AuthConfig::default()).is_ok());
        assert_eq!(
            verify_update(&cb, &keys(), &AuthConfig::default())
                .unwrap_err()
                .code(),
            "key_disabled"
        );
        let bad = rgw_query("demo", "GKOFF", "1700000000", &q(SIG_1700000019));
        let cb = parse_callback(&nginx_done_body(LOCAL_TCURL, "cam1", &bad)).unwrap();
        assert_eq!(
            verify_done(&cb, &keys(), &AuthConfig::default())
                .unwrap_err()
                .code(),
            "bad_signature"
        );
        let up = parse_callback(&nginx_update_body(LOCAL_TCURL, "cam1", &query)).unwrap();
        assert_eq!(
            verify_done(&up, &keys(), &AuthConfig::default())
                .unwrap_err()
                .code(),
            "wrong_call"
        );
    }

    fn arb_channel() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_~:@-]{1,40}".prop_filter("valid channel", |c| validate_channel(c).is_ok())
    }

    fn arb_bucket() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9-]{1,20}[a-z0-9]"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any signature value that is not an accepted spelling of the correct
        /// signature is refused, whatever the bucket, channel and Expires.
        #[test]
        fn wrong_signatures_never_verify(
            bucket in arb_bucket(),
            channel in arb_channel(),
            expires in NOW..NOW + 1000,
            candidate in prop_oneof![
                "[A-Za-z0-9+/ ]{27}=",
                "[A-Za-z0-9+/z]{26}==",
                ".{0,40}",
                (0usize..27, "[A-Za-z0-9+/]").prop_map(|(i, c)| format!("mutate:{i}:{c}")),
            ],
        ) {
            let correct = sign_rgw(SECRET, &bucket, &channel, expires);
            let candidate = match candidate.strip_prefix("mutate:") {
                Some(spec) => {
                    let (i, c) = spec.split_once(':').unwrap();
                    let i: usize = i.parse().unwrap();
                    let mut s = correct.clone().into_bytes();
                    s[i] = c.as_bytes()[0];
                    String::from_utf8(s).unwrap()
                }
                None => candidate,
            };
            let normalized = candidate.replace(' ', "+");
            prop_assume!(normalized != correct && normalized != correct.replace('/', "z"));
            let query = rgw_query(&bucket, "GKALL", &expires.to_string(), &q(&candidate));
            let r = publish(&channel, &query);
            prop_assert!(r.is_err(), "accepted {:?} (correct {:?})", candidate, correct);

            let oss_tcurl = format!("rtmp://{bucket}.live.example.com/live");
            let query = format!("OSSAccessKeyId=GKALL&Expires={expires}&Signature={}", q(&candidate));
            let r = publish_with(&channel, &query, &oss_tcurl, &oss_auth(), NOW);
            prop_assert!(r.is_err(), "OSS accepted {:?}", candidate);
        }

        /// The correct signature in every accepted spelling always verifies.
        #[test]
        fn correct_signatures_verify(
            bucket in arb_bucket(),
            channel in arb_channel(),
            expires in NOW..NOW + 1000,
            raw in any::<bool>(),
            z in any::<bool>(),
        ) {
            let mut sig = sign_rgw(SECRET, &bucket, &channel, expires);
            if z { sig = sig.replace('/', "z"); }
            let sig = if raw { sig } else { q(&sig) };
            let query = rgw_query(&bucket, "GKALL", &expires.to_string(), &sig);
            let r = publish(&channel, &query);
            prop_assert!(r.is_ok(), "{:?}", r);
        }
    }
}
