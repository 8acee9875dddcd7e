//! Where a signed request goes: an object's URL parts ([`Target`]) from the
//! store's endpoint, the addressing style, bucket and key, encoded once for
//! both the URL and its signature; and the one `host[:port]` splitter every
//! part of livebucket that reads an authority uses ([`split_host_port`]).

use percent_encoding::utf8_percent_encode;

use super::SignError;
use super::encode::{OBJECT_KEY, UNRESERVED};

/// S3 refuses longer keys, so a longer one is a bug upstream, not a URL.
const MAX_KEY_LEN: usize = 1024;

/// Where an object lives: the store's endpoint, the addressing style, and
/// the object itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Location<'a> {
    /// `http://host[:port]` or `https://host[:port]`, optionally with a
    /// trailing `/`; no path, query or user info.
    pub endpoint: &'a str,
    /// `true`: `scheme://host/bucket/key`; `false` (virtual-hosted):
    /// `scheme://bucket.host/key`, which needs a DNS host name.
    pub path_style: bool,
    /// The bucket name.
    pub bucket: &'a str,
    /// The object key as stored, unencoded, e.g. `chan/1700000000000.ts`.
    pub key: &'a str,
}

/// Scheme, host header and encoded path of one object URL: what a presigned
/// URL names and what `store`'s direct PUT sends, encoded one way for both.
pub struct Target {
    pub scheme: &'static str,
    /// Lower-case host, with the port unless it is the scheme's default;
    /// both the URL authority and the signed `host` header.
    pub host: String,
    /// `/bucket/key` (path style) or `/key`, encoded.
    pub path: String,
}

impl Target {
    pub fn new(loc: &S3Location<'_>) -> Result<Self, SignError> {
        if loc.bucket.is_empty() || loc.bucket.contains('/') {
            return Err(SignError::Malformed(
                "bucket must be non-empty and contain no '/'",
            ));
        }
        if loc.key.is_empty() {
            return Err(SignError::Malformed("object key must be non-empty"));
        }
        if loc.key.len() > MAX_KEY_LEN {
            return Err(SignError::Malformed("object key is longer than 1024 bytes"));
        }
        let endpoint = Endpoint::parse(loc.endpoint)?;
        let key = utf8_percent_encode(loc.key, OBJECT_KEY);

        let (host, path) = if loc.path_style {
            let bucket = utf8_percent_encode(loc.bucket, UNRESERVED);
            (endpoint.authority(None), format!("/{bucket}/{key}"))
        } else {
            if endpoint.is_ip_literal {
                return Err(SignError::BadEndpoint(
                    "virtual-hosted style needs a DNS name, not an IP address; use path style",
                ));
            }
            // The bucket becomes a DNS label prefix, so it must already be
            // in the form DNS compares: lower case, no escapes possible.
            let dns_safe = loc
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !dns_safe || loc.bucket.starts_with(['.', '-']) || loc.bucket.ends_with(['.', '-']) {
                return Err(SignError::Malformed(
                    "virtual-hosted style needs a DNS-compatible bucket name (a-z, 0-9, '-', '.')",
                ));
            }
            (endpoint.authority(Some(loc.bucket)), format!("/{key}"))
        };
        Ok(Self {
            scheme: endpoint.scheme,
            host,
            path,
        })
    }
}

/// A parsed `http(s)://host[:port]`.
struct Endpoint {
    scheme: &'static str,
    /// Lower case; IPv6 keeps its brackets.
    host: String,
    /// `None` when absent or the scheme's default, so URL and signature agree
    /// whatever the HTTP client does with default ports.
    port: Option<u16>,
    is_ip_literal: bool,
}

impl Endpoint {
    fn parse(endpoint: &str) -> Result<Self, SignError> {
        let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(endpoint, "http://") {
            ("http", rest)
        } else if let Some(rest) = strip_prefix_ignore_case(endpoint, "https://") {
            ("https", rest)
        } else {
            return Err(SignError::BadEndpoint(
                "expected http://host[:port] or https://host[:port]",
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(SignError::BadEndpoint(
                "endpoint must not have a path, query or fragment",
            ));
        }
        if authority.contains('@') {
            return Err(SignError::BadEndpoint(
                "endpoint must not carry user info; credentials go in the key settings",
            ));
        }

        let (host, port) = split_host_port(authority).map_err(SignError::BadEndpoint)?;
        let (host, is_ip_literal) = if let Some(v6) = host.strip_prefix('[') {
            let addr = v6.strip_suffix(']').unwrap_or(v6);
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(SignError::BadEndpoint("invalid IPv6 address"));
            }
            (format!("[{}]", addr.to_ascii_lowercase()), true)
        } else {
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !host_ok {
                return Err(SignError::BadEndpoint(
                    "host must be a DNS name, an IPv4 address or a bracketed IPv6 address",
                ));
            }
            let is_ip = host.parse::<std::net::Ipv4Addr>().is_ok();
            (host.to_ascii_lowercase(), is_ip)
        };
        let port = port
            .map(|p| parse_port(p).map_err(SignError::BadEndpoint))
            .transpose()?;
        let default_port = if scheme == "https" { 443 } else { 80 };
        Ok(Self {
            scheme,
            host,
            port: port.filter(|&p| p != default_port),
            is_ip_literal,
        })
    }

    /// `[bucket.]host[:port]`.
    fn authority(&self, bucket: Option<&str>) -> String {
        let mut out = String::with_capacity(self.host.len() + 70);
        if let Some(bucket) = bucket {
            out.push_str(bucket);
            out.push('.');
        }
        out.push_str(&self.host);
        if let Some(port) = self.port {
            out.push(':');
            out.push_str(&port.to_string());
        }
        out
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Splits an authority `host[:port]` into the host as written and the text
/// after its port colon. An IPv6 host keeps its brackets (`[::1]:80` gives
/// `[::1]` and `80`); otherwise the first `:` starts the port. Nothing is
/// validated beyond that shape: callers check the host's characters and
/// parse the port with [`parse_port`].
pub fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), &'static str> {
    if authority.starts_with('[') {
        let Some(close) = authority.find(']') else {
            return Err("unclosed '[' in IPv6 host");
        };
        let (host, after) = authority.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            p => match p.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("unexpected text after IPv6 address"),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// A port number: ASCII digits only (`u16::from_str` would take a leading
/// `+`), 1 to 65535.
pub fn parse_port(text: &str) -> Result<u16, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be a number");
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err("port must be 1 to 65535"),
        Ok(n) => Ok(n),
    }
}

/// The host of `scheme://host[:port][/...]`, without the port (an IPv6 host
/// keeps its brackets); `None` when there is no host, the port is not a
/// number, or the authority carries user info (unusual enough in RTMP and
/// HTTP URLs that guessing is worse than refusing).
pub fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority).ok()?;
    if let Some(port) = port {
        parse_port(port).ok()?;
    }
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_splitter_for_every_authority() {
        assert_eq!(split_host_port("h"), Ok(("h", None)));
        assert_eq!(split_host_port("h:1935"), Ok(("h", Some("1935"))));
        assert_eq!(split_host_port("h:"), Ok(("h", Some(""))));
        assert_eq!(split_host_port("[::1]"), Ok(("[::1]", None)));
        assert_eq!(split_host_port("[::1]:80"), Ok(("[::1]", Some("80"))));
        assert!(split_host_port("[::1").is_err());
        assert!(split_host_port("[::1]x").is_err());
        assert_eq!(parse_port("8080"), Ok(8080));
        for bad in ["", "+80", "0", "65536", "8o"] {
            assert!(parse_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn url_host_drops_the_port_and_refuses_user_info() {
        assert_eq!(
            url_host("rtmp://b.live.test:1935/live"),
            Some("b.live.test")
        );
        assert_eq!(url_host("rtmp://b.live.test/live?x=1"), Some("b.live.test"));
        assert_eq!(url_host("rtmp://[::1]:1935/live"), Some("[::1]"));
        assert_eq!(url_host("rtmp://u@b.live.test/live"), None);
        assert_eq!(url_host("rtmp:///live"), None);
        assert_eq!(url_host("rtmp://h:x/live"), None);
        assert_eq!(url_host("b.live.test/live"), None);
    }
}
