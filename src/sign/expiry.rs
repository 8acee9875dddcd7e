//! The `Expires` query parameter shared by the push schemes, SigV2 and OSS V1
//! presigned URLs: Unix seconds in plain decimal. What window around "now" a
//! caller accepts is its policy, not this module's.

use super::SignError;

/// More digits than any Unix time this century needs, and few enough that
/// parsing into `u64` cannot overflow.
pub(crate) const MAX_EXPIRES_DIGITS: usize = 19;

/// `text` as Unix seconds: 1 to [`MAX_EXPIRES_DIGITS`] ASCII digits (leading
/// zeros allowed; no sign, space or other spelling `u64::from_str` takes).
pub(crate) fn parse_expires(text: &str) -> Result<u64, SignError> {
    if text.is_empty()
        || text.len() > MAX_EXPIRES_DIGITS
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignError::InvalidExpires);
    }
    text.parse().map_err(|_| SignError::InvalidExpires)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_digits() {
        assert_eq!(parse_expires("1700000000"), Ok(1_700_000_000));
        assert_eq!(parse_expires("0001700000000"), Ok(1_700_000_000));
        assert_eq!(
            parse_expires("9999999999999999999"),
            Ok(9_999_999_999_999_999_999)
        );
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1e9",
            "0x10",
            "12345678901234567890",
        ] {
            assert_eq!(
                parse_expires(bad),
                Err(SignError::InvalidExpires),
                "{bad:?}"
            );
        }
    }
}
