//! `[http]`: what browsers on other origins may do with the public listener.
//!
//! Only `/play/…` and the VOD API answer cross-origin requests, and only for
//! the origins listed here: a player page on another site fetches a signed
//! playlist the URL itself authorises, so CORS adds no authority of its own
//! (no cookies or credentials are ever allowed). The console is served from
//! the public listener itself, so its own origin never needs to be listed.

use serde::Deserialize;

use super::{ConfigError, invalid};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins (`scheme://host[:port]`, exactly as a browser sends the
    /// `Origin` header) whose pages may fetch `/play` playlists and VOD
    /// playlists, e.g. `["https://player.example.com"]`; `["*"]` allows any
    /// page. Empty (the default): same-origin only (the console).
    #[serde(default)]
    pub cors_origins: Vec<String>,
}

impl HttpConfig {
    /// Whether `cors_origins` is `["*"]`.
    pub fn any_origin(&self) -> bool {
        self.cors_origins.iter().any(|o| o == "*")
    }
}

/// Checks `[http]`: every origin is `*` alone or an origin a browser could
/// send (http or https, a host, an optional port, nothing after it).
pub(crate) fn validate(http: &HttpConfig) -> Result<(), ConfigError> {
    if http.any_origin() && http.cors_origins.len() > 1 {
        return Err(invalid(
            "http.cors_origins",
            "\"*\" allows every origin; list it alone or list origins without it",
        ));
    }
    for (i, origin) in http.cors_origins.iter().enumerate() {
        if origin != "*" && !is_origin(origin) {
            return Err(invalid(
                format!("http.cors_origins[{i}]"),
                "must be an origin as browsers send it: http:// or https://, a lower-case host, \
                 an optional :port, no path or trailing slash (e.g. https://player.example.com)",
            ));
        }
    }
    Ok(())
}

fn is_origin(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return false;
    };
    let Ok((host, port)) = crate::sign::url::split_host_port(rest) else {
        return false;
    };
    let host_ok = !host.is_empty()
        && host.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '[' | ']' | ':')
        });
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(origins: &[&str]) -> bool {
        validate(&HttpConfig {
            cors_origins: origins.iter().map(|s| s.to_string()).collect(),
        })
        .is_ok()
    }

    #[test]
    fn origins_as_browsers_send_them() {
        assert!(check(&[]));
        assert!(check(&["*"]));
        assert!(check(&[
            "https://player.example.com",
            "http://127.0.0.1:8081"
        ]));
        assert!(check(&["http://[::1]:8081", "http://[::1]"]));
        for bad in [
            "player.example.com",
            "https://player.example.com/",
            "https://player.example.com/page",
            "https://Player.example.com",
            "ftp://example.com",
            "https://",
            "http://127.0.0.1:",
            "http://127.0.0.1:80x",
        ] {
            assert!(!check(&[bad]), "{bad} was accepted");
        }
        assert!(!check(&["*", "https://a.example"]));
    }
}
