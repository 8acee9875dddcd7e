//! Keyed MACs and the text forms of their tags: what every scheme in
//! [`super`] builds on.
//!
//! HMAC takes keys of any length, so keying never fails in practice; the
//! constructors still return a [`SignError`] instead of unwrapping, so no
//! signer can panic on any secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::SignError;

/// HMAC-SHA1, the MAC of SigV2, the push schemes and OSS V1.
pub(crate) type HmacSha1 = Hmac<Sha1>;

/// HMAC-SHA1 tag length in bytes.
pub(crate) const SHA1_LEN: usize = 20;

/// An HMAC keyed with `key`.
pub(crate) fn new_mac<D>(key: &[u8]) -> Result<Hmac<D>, SignError>
where
    D: hmac::EagerHash,
    Hmac<D>: KeyInit,
{
    <Hmac<D> as KeyInit>::new_from_slice(key).map_err(|_| SignError::Malformed("HMAC key rejected"))
}

/// HMAC-SHA256 of `data` under `key`, as bytes.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<[u8; 32], SignError> {
    let mut mac = new_mac::<Sha256>(key)?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// Standard base64 (with padding) of HMAC-SHA1(`secret`, `data`): the
/// `Signature` of SigV2, both push schemes and OSS V1.
pub(crate) fn sha1_base64(secret: &str, data: &[u8]) -> Result<String, SignError> {
    let mut mac = new_mac::<Sha1>(secret.as_bytes())?;
    mac.update(data);
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// The 20 bytes of an HMAC-SHA1 tag written in standard base64. The engine
/// refuses non-canonical trailing bits, so each tag has one accepted text.
pub(crate) fn decode_sha1_tag(text: &str) -> Result<[u8; SHA1_LEN], SignError> {
    let bytes = STANDARD
        .decode(text.as_bytes())
        .map_err(|_| SignError::SignatureNotBase64)?;
    <[u8; SHA1_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| SignError::SignatureWrongLength { len: bytes.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2202_and_4231_vectors() {
        // RFC 2202 test case 2 (HMAC-SHA1), RFC 4231 test case 2 (HMAC-SHA256).
        let sha1 = sha1_base64("Jefe", b"what do ya want for nothing?").expect("sign");
        assert_eq!(
            STANDARD.decode(sha1).expect("base64"),
            hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").expect("hex")
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?").expect("sign")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn tag_decoding_errors_are_values() {
        let tag = sha1_base64("k", b"m").expect("sign");
        assert!(decode_sha1_tag(&tag).is_ok());
        // Padding is part of the canonical text.
        assert_eq!(
            decode_sha1_tag(tag.trim_end_matches('=')),
            Err(SignError::SignatureNotBase64)
        );
        assert_eq!(
            decode_sha1_tag("not base64!"),
            Err(SignError::SignatureNotBase64)
        );
        assert_eq!(
            decode_sha1_tag("AAAA"),
            Err(SignError::SignatureWrongLength { len: 3 })
        );
    }
}
