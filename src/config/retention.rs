//! `[retention]`: how long recordings stay in the bucket, and how the sweep
//! that deletes older ones runs ([`crate::retention`]). A channel's record
//! may set its own period (`RetentionSeconds`); channels without one, or
//! without a record, use `default_period_secs`.

use serde::Deserialize;

use super::{ConfigError, invalid};

/// The longest retention period a channel or the default may ask for:
/// 100 years.
pub const MAX_RETENTION_SECS: u64 = 100 * 365 * 86_400;
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Recordings (fragments, VOD manifests, LL-HLS parts, stored VOD
    /// playlists, snapshots) older than this many seconds are deleted.
    /// 0 (the default): kept forever, unless a channel's record sets its
    /// own `RetentionSeconds`.
    #[serde(default = "default_period_secs")]
    pub default_period_secs: u64,
    /// Seconds between two sweeps of every bucket; the first runs this long
    /// after start-up, never at once (a restart after a crash mid-sweep
    /// finishes it at the next one).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Most keys one DeleteObjects request names (S3 allows 1,000).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Sweeps list and log what they would delete, and delete nothing.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_period_secs() -> u64 {
    0
}
fn default_interval_secs() -> u64 {
    3600
}
fn default_batch_size() -> usize {
    1000
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            default_period_secs: default_period_secs(),
            interval_secs: default_interval_secs(),
            batch_size: default_batch_size(),
            dry_run: false,
        }
    }
}

/// Checks `[retention]`: a batch of 1 to 1,000 keys (S3's DeleteObjects
/// limit), an interval of at least a second, a period of at most 100 years.
pub(crate) fn validate(r: &RetentionConfig) -> Result<(), ConfigError> {
    if !(1..=1000).contains(&r.batch_size) {
        return Err(invalid(
            "retention.batch_size",
            "must be from 1 to 1000 (S3's DeleteObjects limit)",
        ));
    }
    if r.interval_secs == 0 {
        return Err(invalid(
            "retention.interval_secs",
            "must be at least 1 (seconds between sweeps)",
        ));
    }
    if r.default_period_secs > MAX_RETENTION_SECS {
        return Err(invalid(
            "retention.default_period_secs",
            format!(
                "must be at most {} (100 years); 0 keeps recordings forever",
                MAX_RETENTION_SECS
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), String> {
        let r: RetentionConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        validate(&r).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_keep_everything_and_bad_values_name_their_field() {
        let d = RetentionConfig::default();
        assert_eq!(d.default_period_secs, 0);
        assert_eq!(d.batch_size, 1000);
        assert!(!d.dry_run);
        assert_eq!(
            parse("default_period_secs = 604800\ndry_run = true"),
            Ok(())
        );
        let e = parse("batch_size = 1001").unwrap_err();
        assert!(e.contains("retention.batch_size"), "{e}");
        let e = parse("interval_secs = 0").unwrap_err();
        assert!(e.contains("retention.interval_secs"), "{e}");
        let e = parse("default_period_secs = 99999999999").unwrap_err();
        assert!(e.contains("retention.default_period_secs"), "{e}");
        assert!(parse("period = 5").is_err(), "unknown fields are refused");
    }
}
