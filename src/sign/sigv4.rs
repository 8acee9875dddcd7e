//! AWS Signature Version 4 for S3, in its two forms: query authentication
//! for presigned `GET` URLs ([`SigV4Presigner`]; S3-compatible stores such as
//! Garage, Ceph RGW, MinIO and AWS) and the `Authorization` header for the
//! direct PUT of a fragment ([`HeaderSigner`], used by `store::direct`).
//!
//! Both derive the day's signing key once and keep it loaded into an HMAC
//! state (cloned per signature), and hash the canonical request piece by
//! piece instead of building it. The tests check the query form against
//! botocore's URLs and the header form against `aws-sigv4`, the SDK's own
//! signer, for the same requests.
//!
//! # Invariants
//!
//! * The URL we hand out and the request we signed describe the same thing:
//!   the host in the URL is exactly the signed `host` header (lower-cased,
//!   default port dropped from both), and the path in the URL is exactly the
//!   canonical URI (each key segment URI-encoded once, `/` kept); both come
//!   from [`super::url::Target`].
//! * Presigned expiry is between 1 s and 7 days ([`SIGV4_MAX_EXPIRY`]);
//!   anything longer is refused with [`SignError::ExpiryTooLong`] rather than
//!   clamped, so a misconfiguration surfaces at startup instead of as 403s at
//!   playback.
//! * [`SigV4Presigner`]'s `Debug` omits its key; [`HeaderSigner`] has none.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use hmac::{Hmac, Mac};
use percent_encoding::utf8_percent_encode;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use super::SignError;
use super::encode::UNRESERVED;
use super::mac::{hmac_sha256, new_mac};
use super::url::{S3Location, Target};

/// The longest expiry SigV4 allows for a presigned URL: 7 days.
pub const SIGV4_MAX_EXPIRY: Duration = Duration::from_secs(604_800);

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
    ) -> Result<Self, SignError> {
        // A `/` would split the credential scope at the wrong place on the
        // server side, and an empty part makes a scope no server accepts.
        if access_key.is_empty() || access_key.contains('/') {
            return Err(SignError::Malformed(
                "access key id must be non-empty and contain no '/'",
            ));
        }
        if region.is_empty() || region.contains('/') {
            return Err(SignError::Malformed(
                "region must be non-empty and contain no '/'",
            ));
        }
        let expires = expires_in.as_secs();
        if expires > SIGV4_MAX_EXPIRY.as_secs() {
            return Err(SignError::ExpiryTooLong {
                max: SIGV4_MAX_EXPIRY.as_secs(),
                requested: expires,
            });
        }
        if expires == 0 {
            return Err(SignError::Malformed("expiry must be at least 1 second"));
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
    pub fn presign_get(&self, loc: &S3Location<'_>) -> Result<String, SignError> {
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
            .map_err(|_| SignError::Malformed("hash length"))?;

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
pub fn amz_date(now: OffsetDateTime) -> Result<String, SignError> {
    let now = now.to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&now.year()) {
        return Err(SignError::Malformed(
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
pub fn signing_mac(secret: &str, date: &str, region: &str) -> Result<Hmac<Sha256>, SignError> {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    let k_region = hmac_sha256(&k_date, region.as_bytes())?;
    let k_service = hmac_sha256(&k_region, b"s3")?;
    let k_signing = hmac_sha256(&k_service, b"aws4_request")?;
    new_mac::<Sha256>(&k_signing)
}

/// The payload hash every direct PUT declares.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Signs requests for one access key in one region.
pub struct HeaderSigner {
    key_id: String,
    secret: String,
    region: String,
    /// `YYYYMMDD` and that day's keyed HMAC.
    day: Mutex<Option<(String, Hmac<Sha256>)>>,
}

/// The headers a signed request adds to its own.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    pub amz_date: String,
    pub authorization: String,
}

impl HeaderSigner {
    pub fn new(key_id: &str, secret: &str, region: &str) -> HeaderSigner {
        HeaderSigner {
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
            region: region.to_owned(),
            day: Mutex::new(None),
        }
    }

    /// Signs `method path` with `headers` (lower-case names, `host` among
    /// them) plus the `x-amz-date` and `x-amz-content-sha256:
    /// UNSIGNED-PAYLOAD` the caller sends with the result. `path` is already
    /// encoded (as [`super::url::Target`] makes it) and there is no query.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        now: OffsetDateTime,
    ) -> Result<Signed, SignError> {
        if headers
            .iter()
            .any(|(name, _)| name.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err(SignError::Malformed("header names must be lower case"));
        }
        let amz_date = amz_date(now)?;
        let date = &amz_date[..8];
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 2);
        all.extend_from_slice(headers);
        all.push(("x-amz-content-sha256", UNSIGNED_PAYLOAD));
        all.push(("x-amz-date", &amz_date));
        all.sort_unstable_by_key(|(name, _)| *name);
        let signed_headers = all
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(";");

        let mut creq = Sha256::new();
        for part in [method, "\n", path, "\n\n"] {
            creq.update(part);
        }
        for (name, value) in &all {
            creq.update(name);
            creq.update(":");
            // SigV4 trims a value and folds its runs of spaces into one.
            for (i, word) in value.split_ascii_whitespace().enumerate() {
                if i > 0 {
                    creq.update(" ");
                }
                creq.update(word);
            }
            creq.update("\n");
        }
        for part in ["\n", &signed_headers, "\n", UNSIGNED_PAYLOAD] {
            creq.update(part);
        }
        let mut creq_hex = [0u8; 64];
        hex::encode_to_slice(creq.finalize(), &mut creq_hex)
            .map_err(|_| SignError::Malformed("hash length"))?;

        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let mut mac = self.day_mac(date)?;
        for part in ["AWS4-HMAC-SHA256\n", &amz_date, "\n", &scope, "\n"] {
            mac.update(part.as_bytes());
        }
        mac.update(&creq_hex);
        let signature = hex::encode(mac.finalize().into_bytes());
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, \
             Signature={signature}",
            self.key_id
        );
        Ok(Signed {
            amz_date,
            authorization,
        })
    }

    /// The HMAC keyed for `date`, derived once a day.
    fn day_mac(&self, date: &str) -> Result<Hmac<Sha256>, SignError> {
        let mut day = self.day.lock().unwrap_or_else(|p| p.into_inner());
        match &*day {
            Some((cached, mac)) if cached == date => Ok(mac.clone()),
            _ => {
                let mac = signing_mac(&self.secret, date, &self.region)?;
                *day = Some((date.to_owned(), mac.clone()));
                Ok(mac)
            }
        }
    }
}
