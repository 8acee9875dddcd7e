//! `[api]` and `[channels]`: the OSS-compatible LiveChannel API on the public
//! listener, and what a push to a channel nobody created does.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[api]`: how OSS SDKs address buckets and what URLs channels advertise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Requests for `<bucket>.<domain>` are virtual-hosted, as OSS SDKs send
    /// them by default (`oss2.Bucket(auth, "http://<domain>", bucket)`).
    /// Requests to an IP address or any other host are path-style
    /// (`/<bucket>/<channel>?live`).
    #[serde(default)]
    pub domain: Option<String>,
    /// Custom domains (CNAME): host → the bucket it serves
    /// (`oss2.Bucket(…, is_cname=True)`).
    #[serde(default)]
    pub custom_domains: BTreeMap<String, String>,
    /// How far a request's `Date` (or `x-oss-date`) may be from livebucket's
    /// clock (OSS: 15 minutes).
    #[serde(default = "default_date_window")]
    pub date_window_secs: u64,
    /// Longest lifetime of a presigned API URL (OSS V1 query signature): an
    /// `Expires` further than this from now is refused, so a URL signed for
    /// the year 3000 is not a permanent credential. Default 7 days (OSS V4's
    /// and SigV4's limit).
    #[serde(default = "default_max_presigned_lifetime")]
    pub max_presigned_lifetime_secs: u64,
    /// `PublishUrls` of a channel, `{bucket}` replaced; the channel is
    /// appended. Default: `rtmp://{bucket}.<auth.oss_live_domain>/live` when
    /// `auth.oss_live_domain` is set (OSS's shape, which `sign_rtmp_url`
    /// signs), else `rtmp://127.0.0.1:1935/live`.
    #[serde(default)]
    pub publish_url: Option<String>,
    /// `PlayUrls` of a channel, `{bucket}` replaced; channel and playlist
    /// are appended. Default: the bucket on `s3.public_endpoint` (or
    /// `s3.endpoint`), path-style.
    #[serde(default)]
    pub play_url: Option<String>,
}

fn default_date_window() -> u64 {
    900
}
fn default_max_presigned_lifetime() -> u64 {
    crate::sign::oss_v1::DEFAULT_MAX_PRESIGNED_LIFETIME.as_secs()
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            domain: None,
            custom_domains: BTreeMap::new(),
            date_window_secs: default_date_window(),
            max_presigned_lifetime_secs: default_max_presigned_lifetime(),
            publish_url: None,
            play_url: None,
        }
    }
}

/// `[channels]`: channel policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelsConfig {
    /// A push to a channel that was never created with `PutLiveChannel`:
    /// `create` (the default) takes it with OSS's defaults (and livebucket's
    /// `index.m3u8` playlist), `refuse` refuses it (`no_such_channel`), as
    /// OSS does.
    #[serde(default)]
    pub unknown: UnknownChannels,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownChannels {
    #[default]
    Create,
    Refuse,
}

/// Checks `[api]`.
pub(crate) fn validate(api: &ApiConfig) -> Result<(), ConfigError> {
    if api.date_window_secs == 0 {
        return Err(invalid("api.date_window_secs", "must be at least 1"));
    }
    if api.max_presigned_lifetime_secs == 0 {
        return Err(invalid(
            "api.max_presigned_lifetime_secs",
            "must be at least 1 (a presigned URL valid for no time)",
        ));
    }
    if let Some(d) = &api.domain
        && (d.is_empty() || d.starts_with('.') || d.contains('/') || d.contains(':'))
    {
        return Err(invalid(
            "api.domain",
            "must be a host name such as oss.example.com (no scheme, port or leading dot)",
        ));
    }
    for (host, bucket) in &api.custom_domains {
        if host.is_empty() || host.contains('/') {
            return Err(invalid(
                format!("api.custom_domains.{host}"),
                "must be a host name",
            ));
        }
        crate::names::validate_bucket(bucket).map_err(|e| {
            invalid(
                format!("api.custom_domains.{host}"),
                format!("names no valid bucket: {e}"),
            )
        })?;
    }
    for (field, url) in [
        ("api.publish_url", &api.publish_url),
        ("api.play_url", &api.play_url),
    ] {
        if let Some(u) = url
            && !u.contains("://")
        {
            return Err(invalid(
                field,
                "must be a URL such as rtmp://{bucket}.live.example.com/live",
            ));
        }
    }
    Ok(())
}
