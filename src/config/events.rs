//! `[events]`: where stream and channel events are POSTed (see
//! `crate::events`), how they are signed, and how long they are kept.
//! Absent, or with no endpoint, livebucket writes and sends no events.

use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[events]`: the receivers, the signing secret, timeouts and bounds.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The receivers: `[[events.endpoints]]` with a `name` and an `http://`
    /// or `https://` `url`. An endpoint with `all_channels = true` (the
    /// default) gets every event; one with `false` only the events of the
    /// channels whose record names it in `Snapshot/NotifyTopic`.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
    /// The HMAC-SHA256 key of the `webhook-signature` header (Standard
    /// Webhooks). Either `whsec_` followed by base64 (the key is the decoded
    /// bytes, as Standard Webhooks libraries take it) or any other string
    /// (the key is its UTF-8 bytes). At least 16 bytes of key; required when
    /// an endpoint is listed. Never logged.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long one POST may take, connect to the end of the answer, before
    /// it counts as failed and is retried.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The longest wait between two attempts of one event (the backoff grows
    /// from 1 s to this, with full jitter).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// An event not delivered this long after it happened is dropped (logged,
    /// counted in `livebucket_events_dropped_total`); until then it is
    /// retried, across restarts. Default 3 days.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Events waiting on disk beyond which new `stream.refused` events are
    /// not queued (counted as dropped): those come from anyone who can reach
    /// the RTMP port. Every other event is always queued; `max_age_secs`
    /// bounds them.
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// POSTs in flight at once, across endpoints and channels.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

/// One receiver of events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// The name a channel record's `Snapshot/NotifyTopic` uses to pick this
    /// endpoint: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Every channel's events (`true`), or only those of channels that name
    /// this endpoint in `Snapshot/NotifyTopic` (`false`).
    #[serde(default = "default_all_channels")]
    pub all_channels: bool,
}

impl fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsConfig")
            .field("endpoints", &self.endpoints)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout_secs", &self.timeout_secs)
            .field("max_backoff_secs", &self.max_backoff_secs)
            .field("max_age_secs", &self.max_age_secs)
            .field("max_queued", &self.max_queued)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

fn default_timeout_secs() -> u64 {
    10
}
fn default_max_backoff_secs() -> u64 {
    300
}
fn default_max_age_secs() -> u64 {
    3 * 24 * 3600
}
fn default_max_queued() -> usize {
    100_000
}
fn default_concurrency() -> usize {
    16
}
fn default_all_channels() -> bool {
    true
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            endpoints: Vec::new(),
            secret: None,
            timeout_secs: default_timeout_secs(),
            max_backoff_secs: default_max_backoff_secs(),
            max_age_secs: default_max_age_secs(),
            max_queued: default_max_queued(),
            concurrency: default_concurrency(),
        }
    }
}

/// The shortest signing key accepted, in bytes.
pub(crate) const MIN_SECRET_BYTES: usize = 16;

impl EventsConfig {
    /// The HMAC key `secret` stands for (see the field's doc), or `None`
    /// without one.
    pub fn key(&self) -> Option<Vec<u8>> {
        let secret = self.secret.as_deref()?;
        Some(match secret.strip_prefix("whsec_") {
            Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).ok()?,
            None => secret.as_bytes().to_vec(),
        })
    }

    /// Whether any endpoint is configured (else no event is written).
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }
}

pub(super) fn validate(e: &EventsConfig) -> Result<(), ConfigError> {
    let mut names = std::collections::HashSet::new();
    for (i, ep) in e.endpoints.iter().enumerate() {
        let field = format!("events.endpoints[{i}]");
        let name_ok = !ep.name.is_empty()
            && ep.name.len() <= 64
            && ep
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                format!("{field}.name"),
                "must be 1-64 letters, digits, '-' or '_'",
            ));
        }
        if !names.insert(ep.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("{:?} is listed twice; names must be unique", ep.name),
            ));
        }
        let uri: hyper::Uri = ep.url.parse().map_err(|e| {
            invalid(
                format!("{field}.url"),
                format!("is not a URL ({e}); write http://host:port/path"),
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(invalid(
                format!("{field}.url"),
                "must be an absolute http:// or https:// URL with a host",
            ));
        }
    }
    match (e.enabled(), e.secret.as_deref(), e.key()) {
        (true, None, _) => {
            return Err(invalid(
                "events.secret",
                "is required with endpoints: receivers verify the webhook-signature with it",
            ));
        }
        (_, Some(s), None) if s.starts_with("whsec_") => {
            return Err(invalid(
                "events.secret",
                "starts with whsec_ but the rest is not base64",
            ));
        }
        (_, Some(_), Some(k)) if k.len() < MIN_SECRET_BYTES => {
            return Err(invalid(
                "events.secret",
                format!(
                    "is shorter than {MIN_SECRET_BYTES} bytes of key; use e.g. `openssl rand -base64 32` after whsec_"
                ),
            ));
        }
        _ => {}
    }
    for (field, v) in [
        ("events.timeout_secs", e.timeout_secs),
        ("events.max_backoff_secs", e.max_backoff_secs),
        ("events.max_age_secs", e.max_age_secs),
        ("events.max_queued", e.max_queued as u64),
        ("events.concurrency", e.concurrency as u64),
    ] {
        if v == 0 {
            return Err(invalid(field, "must be at least 1"));
        }
    }
    if e.timeout_secs > 300 {
        return Err(invalid("events.timeout_secs", "must be at most 300"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(), ConfigError> {
        let e: EventsConfig = toml::from_str(text).unwrap();
        validate(&e)
    }

    #[test]
    fn endpoints_need_a_url_a_unique_name_and_a_long_enough_secret() {
        let ok = "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
                  [[endpoints]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/hook\"\n";
        parse(ok).unwrap();
        let field = |r: Result<(), ConfigError>| match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(parse("[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\n")),
            "events.secret"
        );
        assert_eq!(
            field(parse(
                "secret = \"short\"\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\n"
            )),
            "events.secret"
        );
        assert_eq!(
            field(parse(
                "secret = \"0123456789abcdef\"\n[[endpoints]]\nname = \"a\"\nurl = \"ftp://h/\"\n"
            )),
            "events.endpoints[0].url"
        );
        assert_eq!(
            field(parse(
                "secret = \"0123456789abcdef\"\n[[endpoints]]\nname = \"a b\"\nurl = \"http://h/\"\n"
            )),
            "events.endpoints[0].name"
        );
        assert_eq!(
            field(parse(
                "secret = \"0123456789abcdef\"\n[[endpoints]]\nname = \"a\"\nurl = \"http://h/\"\n\
                 [[endpoints]]\nname = \"a\"\nurl = \"http://g/\"\n"
            )),
            "events.endpoints[1].name"
        );
        assert_eq!(field(parse("timeout_secs = 0\n")), "events.timeout_secs");
    }

    #[test]
    fn the_deploy_example_parses_once_uncommented() {
        let example = include_str!("../../deploy/livebucket.toml.example");
        let section = &example[example.find("#[events]").unwrap()..];
        let text: String = section
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| !l.is_empty() && !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = text
            .replace("[events]\n", "")
            .replace("[[events.endpoints]]", "[[endpoints]]")
            .replace(
                "whsec_REPLACE_WITH_openssl_rand_base64_32",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            );
        let e: EventsConfig = toml::from_str(&text).unwrap();
        validate(&e).unwrap();
        assert_eq!(e.endpoints.len(), 2);
        assert!(!e.endpoints[1].all_channels);
        assert_eq!(e.max_age_secs, default_max_age_secs());
    }

    #[test]
    fn a_whsec_secret_is_its_base64_bytes() {
        let e: EventsConfig =
            toml::from_str("secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n").unwrap();
        assert_eq!(e.key().unwrap().len(), 24);
        assert!(!format!("{e:?}").contains("MfKQ"), "the secret is redacted");
    }
}
