//! The percent-encoding sets, each named for the RFC 3986 rule it keeps. Every
//! URL livebucket builds encodes with one of these, so the text a client
//! sends back is the text that was signed.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

/// RFC 3986 §2.3 `unreserved` (`A-Z a-z 0-9 - . _ ~`) stays, everything else
/// is `%XX` (upper-case hex). SigV4's `UriEncode`, and the set for every query
/// value and every single path segment (bucket, playlist, OSS object) we write,
/// so `+`, `/` and `=` of base64 signatures are always encoded.
pub const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An S3 object key in a URL path: [`UNRESERVED`], but `/` separates segments
/// and stays (SigV4's canonical URI for S3, which is not double-encoded).
pub const OBJECT_KEY: &AsciiSet = &UNRESERVED.remove(b'/');

/// RFC 3986 §3.3 `pchar` stays (unreserved, sub-delims, `:` and `@`), the rest
/// is encoded: the channel in a push URL's path. RTMP clients send the stream
/// name to nginx literally, never percent-decoded, so keeping every character
/// a path may hold as it is keeps such URLs verifiable. A channel with a
/// character outside `pchar` (one of `"#%<>?[]^`{|}`) gets a correctly encoded
/// URL that still cannot verify.
pub const PCHAR: &AsciiSet = &UNRESERVED
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

#[cfg(test)]
mod tests {
    use percent_encoding::utf8_percent_encode;

    use super::*;

    #[test]
    fn each_set_keeps_exactly_its_rule() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        let kept = |set| {
            all.chars()
                .filter(|c| utf8_percent_encode(&c.to_string(), set).to_string() == c.to_string())
                .collect::<String>()
        };
        let unreserved = "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~";
        assert_eq!(kept(UNRESERVED), unreserved);
        assert_eq!(
            kept(OBJECT_KEY),
            "-./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
        );
        assert_eq!(
            kept(PCHAR),
            "!$&'()*+,-.0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
        );
        assert_eq!(utf8_percent_encode("ü", UNRESERVED).to_string(), "%C3%BC");
    }
}
