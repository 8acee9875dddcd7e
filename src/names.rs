//! Name rules: what a bucket, a channel and a playlist object name may be,
//! wherever one comes in (a push URL, the OSS API, `/play`, VOD, the CLI,
//! the configuration), and the names livebucket gives itself
//! ([`DEFAULT_PLAYLIST`], [`RESERVED_CHANNEL`]).
//!
//! The bottom of the crate: this module imports nothing of livebucket, so
//! every layer may use it. Each boundary maps a [`NameError`] into its own
//! error (`auth::Reject` for nginx's callbacks, `OssError` for the OSS API,
//! `HttpError` for `/play` and VOD, `anyhow` in the CLI and configuration).
//!
//! Invariant: a name that passes its rule is safe as it is in an object key,
//! as one path component of nginx's HLS directory and as one OSS resource
//! name, so no later reader escapes or re-checks it.

/// Playlist object name used unless an OSS URL names one with `playlistName`.
pub const DEFAULT_PLAYLIST: &str = "index.m3u8";

/// What is wrong with a name. The message quotes the name with `{:?}` (so
/// client text cannot forge a log line) and says which rule it breaks; a
/// name is never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("bucket name {name:?} is invalid: {reason}")]
    Bucket { name: String, reason: &'static str },
    #[error("channel name {name:?} is invalid: {reason}")]
    Channel { name: String, reason: &'static str },
    #[error("playlistName {name:?} is invalid: {reason}")]
    PlaylistName { name: String, reason: &'static str },
}

impl NameError {
    /// Stable snake_case label for logs and metrics (the same as the push
    /// refusal's [`code`](crate::auth::reject::Reject::code) it maps to).
    pub fn code(&self) -> &'static str {
        match self {
            NameError::Bucket { .. } => "invalid_bucket",
            NameError::Channel { .. } => "invalid_channel",
            NameError::PlaylistName { .. } => "invalid_playlist_name",
        }
    }
}

/// S3 bucket naming rules: 3–63 characters of lowercase letters, digits, `-`
/// and `.`; starts and ends with a letter or digit; no `..`; not an IPv4
/// address.
pub fn validate_bucket(name: &str) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError::Bucket {
            name: name.to_owned(),
            reason,
        })
    };
    if !(3..=63).contains(&name.len()) {
        return fail("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return fail("may only contain lowercase letters, digits, '-' and '.'");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return fail("must start and end with a letter or digit");
    }
    if name.contains("..") {
        return fail("must not contain '..'");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() == 4
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
    {
        return fail("must not be formatted as an IPv4 address");
    }
    Ok(())
}

/// Livebucket's own prefix in every bucket (`.livebucket/index/`,
/// `.livebucket/channels/`): a channel of this name would put its fragments
/// among the metadata.
pub const RESERVED_CHANNEL: &str = ".livebucket";

/// The one rule for channel names, wherever a name comes in (a push's
/// stream name, the OSS API's channel, the CLI, `/play`, VOD): 1–100 bytes
/// of printable ASCII (0x21–0x7E), and none of
/// - `/`, `\`, `.` alone or `..`: a channel is one path component of object
///   keys and of nginx's HLS directory;
/// - `?`, `&`, `=`: the OSS API's sub-resource delimiters
///   (`/CHANNEL?live&…`), which would make one URL name two things;
/// - [`RESERVED_CHANNEL`] itself, and a name ending in `.history`: the
///   first is livebucket's metadata prefix, the second would share its
///   channel record's key with another channel's history
///   (`.livebucket/channels/x.history.json`).
pub fn validate_channel(name: &str) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError::Channel {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 100 {
        return fail("must be 1 to 100 bytes long");
    }
    if !name.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return fail("may only contain printable ASCII without spaces");
    }
    if name.contains(['/', '\\']) {
        return fail("must not contain '/' or '\\'");
    }
    if name == "." || name.contains("..") {
        return fail("must not be '.' or contain '..'");
    }
    if name.contains(['?', '&', '=']) {
        return fail("must not contain '?', '&' or '=' (they delimit OSS sub-resources)");
    }
    if name == RESERVED_CHANNEL {
        return fail("is reserved for livebucket's metadata");
    }
    if name.ends_with(".history") {
        return fail("must not end with \".history\" (channel records use that suffix)");
    }
    Ok(())
}

/// OSS `playlistName`: 6–128 characters ending in `.m3u8`, and usable as one
/// object-name component (no `/`, `\` or control characters).
pub fn validate_playlist_name(name: &str) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError::PlaylistName {
            name: name.to_owned(),
            reason,
        })
    };
    let chars = name.chars().count();
    if !(6..=128).contains(&chars) {
        return fail("must be 6 to 128 characters long");
    }
    if !name.ends_with(".m3u8") {
        return fail("must end with .m3u8");
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return fail("must not contain '/', '\\' or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn one_rule_for_channel_names() {
        for good in [
            "cam1",
            "a.b",
            "x-history",
            "history",
            "A_b~c:d@e",
            "a!$'()*+,;",
            ".x",
        ] {
            assert_eq!(validate_channel(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("", "1 to 100"),
            ("a/b", "'/'"),
            ("a\\b", "'/'"),
            ("..", "'..'"),
            (".", "'..'"),
            ("a b", "printable"),
            ("caf\u{e9}", "printable"),
            ("cam?live", "OSS sub-resources"),
            ("a&b", "OSS sub-resources"),
            ("k=v", "OSS sub-resources"),
            (".livebucket", "reserved"),
            ("cam.history", ".history"),
        ] {
            let err = validate_channel(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_channel");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        assert!(validate_channel(&"a".repeat(100)).is_ok());
        assert!(validate_channel(&"a".repeat(101)).is_err());
    }

    proptest! {
        /// What the rule accepts is exactly what can be a path component,
        /// an OSS resource name and a channel record of its own.
        #[test]
        fn accepted_channel_names_are_safe_everywhere(name in "[!-~]{0,110}") {
            let ok = validate_channel(&name).is_ok();
            let safe = (1..=100).contains(&name.len())
                && !name.contains(['/', '\\', '?', '&', '='])
                && name != "."
                && !name.contains("..")
                && name != RESERVED_CHANNEL
                && !name.ends_with(".history");
            prop_assert_eq!(ok, safe, "{:?}", name);
        }
    }

    #[test]
    fn bucket_rules() {
        for good in ["my.bucket-1", "1.2.3", "abc", &"a".repeat(63)] {
            assert_eq!(validate_bucket(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            (&"a".repeat(64), "3 to 63"),
            ("My-bucket", "lowercase"),
            ("-abc", "start and end"),
            ("abc.", "start and end"),
            ("a..b", "'..'"),
            ("192.168.1.1", "IPv4"),
        ] {
            let err = validate_bucket(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_bucket");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn playlist_name_rules() {
        assert!(validate_playlist_name("a.m3u8").is_ok());
        assert!(validate_playlist_name(&format!("{}.m3u8", "x".repeat(123))).is_ok());
        for (bad, why) in [
            (".m3u8", "6 to 128"),
            ("ab.m3u", "end with .m3u8"),
            ("live.M3U8", "end with .m3u8"),
            ("a/b.m3u8", "'/'"),
            ("a\\b.m3u8", "'/'"),
            ("a\nb.m3u8", "control"),
        ] {
            let err = validate_playlist_name(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_playlist_name");
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
        let long = format!("{}.m3u8", "x".repeat(124));
        assert!(validate_playlist_name(&long).is_err());
    }
}
