//! The network surfaces of the configuration: where each listener binds,
//! how nginx's callbacks are authenticated, and what a connection may cost.
//!
//! Three listeners, never sharing a socket (docs/security.md):
//! - `hooks`: nginx-rtmp's callbacks only. A Unix socket (the default, and
//!   the systemd and compose deployments) or TCP restricted to
//!   `hooks.allow`; every callback URL carries the per-install
//!   `hooks.secret`, so a process that can reach the socket still cannot
//!   forge a callback without reading nginx.conf.
//! - `public`: viewers and API clients (`/play`, the VOD API, the OSS
//!   LiveChannel API, the console).
//! - `operator`: `/metrics`, `/healthz`, `/readyz`, and in cluster mode the
//!   peers' `/cluster/v1/stat/…`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, invalid};

/// Where a listener binds: `IP:PORT` or `unix:/absolute/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl std::str::FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = Path::new(path);
            if !path.is_absolute() {
                return Err(format!(
                    "{s:?}: a Unix socket needs an absolute path, e.g. unix:/run/livebucket/hooks.sock"
                ));
            }
            return Ok(ListenAddr::Unix(path.to_owned()));
        }
        s.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| format!("{s:?}: use IP:PORT (e.g. 127.0.0.1:8089) or unix:/absolute/path"))
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `[listen]`: one address per surface.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// nginx-rtmp's callbacks (`HOOKS_URL` in nginx.conf). By default the
    /// Unix socket `/run/livebucket/hooks.sock` (mode 0660): only nginx's
    /// worker (through the socket's group) and livebucket can connect, so no
    /// local process can queue on the listener nginx's `on_update` needs.
    #[serde(default = "default_hooks")]
    pub hooks: ListenAddr,
    /// Viewers and API clients: `/play`, the VOD API, the OSS LiveChannel
    /// API, the console.
    #[serde(default = "default_public")]
    pub public: ListenAddr,
    /// Operators: `/metrics`, `/healthz`, `/readyz`; in cluster mode also
    /// the peers' `/cluster/v1/stat/…`.
    #[serde(default = "default_operator")]
    pub operator: ListenAddr,
}

fn default_hooks() -> ListenAddr {
    ListenAddr::Unix(PathBuf::from("/run/livebucket/hooks.sock"))
}
fn default_public() -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))
}
fn default_operator() -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 9090)))
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            hooks: default_hooks(),
            public: default_public(),
            operator: default_operator(),
        }
    }
}

/// `[hooks]`: how nginx's callbacks prove they come from nginx.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// The per-install secret in every callback URL
    /// (`…/hooks/SECRET/on_publish`), written into nginx.conf by
    /// `scripts/render-nginx-conf`. Prefer `secret_file`.
    #[serde(default)]
    pub secret: Option<String>,
    /// A file holding the secret (one line), readable by livebucket only.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// TCP peers allowed on the hooks listener (ignored for a Unix socket).
    #[serde(default = "default_allow")]
    pub allow: Vec<IpNet>,
    /// After a reload (SIGHUP) that changes the secret, how many seconds the
    /// previous one is still accepted: nginx calls with it until nginx is
    /// reloaded too, and a refused `on_update` drops the stream. 0 accepts
    /// the new secret only, at once; at most a day.
    #[serde(default = "default_previous_secret_grace_secs")]
    pub previous_secret_grace_secs: u64,
}

/// Five minutes: time to reload nginx after livebucket.
fn default_previous_secret_grace_secs() -> u64 {
    300
}

/// The longest `hooks.previous_secret_grace_secs`: an old secret accepted
/// for longer is a secret that was never rotated.
const MAX_PREVIOUS_SECRET_GRACE_SECS: u64 = 86_400;

impl fmt::Debug for HooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HooksConfig")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .field("allow", &self.allow)
            .field(
                "previous_secret_grace_secs",
                &self.previous_secret_grace_secs,
            )
            .finish()
    }
}

fn default_allow() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            secret: None,
            secret_file: None,
            allow: default_allow(),
            previous_secret_grace_secs: default_previous_secret_grace_secs(),
        }
    }
}

impl HooksConfig {
    /// Whether a TCP peer may call the hooks listener.
    pub fn allows(&self, ip: IpAddr) -> bool {
        ip_allowed(&self.allow, ip)
    }
}

/// Whether `ip` is in one of `nets`; an IPv4 peer on a dual-stack socket
/// (`::ffff:a.b.c.d`) is matched as its IPv4 address.
pub(crate) fn ip_allowed(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|net| net.contains(&ip))
}

/// The shortest accepted hooks secret: 128 bits as hex.
const MIN_SECRET_LEN: usize = 32;

/// The callback secret, read from `secret` or `secret_file` and checked: it
/// goes into a URL path and an nginx directive, so only `[A-Za-z0-9_-]`.
/// Errors never quote it. `previous_secret_grace_secs` is checked here too,
/// with the secret it applies to.
pub(crate) fn hooks_secret(h: &HooksConfig) -> Result<String, ConfigError> {
    if h.previous_secret_grace_secs > MAX_PREVIOUS_SECRET_GRACE_SECS {
        return Err(invalid(
            "hooks.previous_secret_grace_secs",
            format!(
                "must be at most {MAX_PREVIOUS_SECRET_GRACE_SECS} (a day); reload nginx with the new secret within that time"
            ),
        ));
    }
    let generate = "generate one with `head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'`";
    let secret = match (&h.secret, &h.secret_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "hooks.secret",
                "and hooks.secret_file are both set; keep one",
            ));
        }
        (Some(s), None) => s.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| {
                invalid(
                    "hooks.secret_file",
                    format!("cannot be read ({}): {e}", path.display()),
                )
            })?
            .trim()
            .to_owned(),
        (None, None) => {
            return Err(invalid(
                "hooks.secret_file",
                format!("(or hooks.secret) is required: nginx's callbacks carry it; {generate}"),
            ));
        }
    };
    if is_placeholder(&secret) {
        return Err(invalid(
            "hooks.secret",
            format!("is still the example's placeholder; {generate}"),
        ));
    }
    if secret.len() < MIN_SECRET_LEN
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "hooks.secret",
            format!(
                "must be at least {MIN_SECRET_LEN} characters of A-Z a-z 0-9 - _ (it goes into nginx.conf and a URL path); {generate}"
            ),
        ));
    }
    Ok(secret)
}

/// Placeholders in the shipped examples: a config copied without editing
/// must not start with a secret everyone knows.
pub(crate) fn is_placeholder(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    lower.starts_with("replace") || lower.contains("changeme") || lower.contains("change-me")
}

/// `[limits]`: what one connection may cost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// A connection that has not sent a whole request head within this many
    /// seconds (new, or idle between keep-alive requests) is closed.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: u64,
    /// A request not answered within this many seconds gets 503.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Open connections per listener; beyond it new ones are closed at once
    /// (counted in `livebucket_connections_refused_total`).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections per client IP on the public and operator listeners;
    /// beyond it a new one from that IP is closed at once (counted in
    /// `livebucket_connections_closed_total{reason="max_connections_per_peer"}`),
    /// so one client cannot fill a listener. Behind a reverse proxy, where
    /// every client has the proxy's address, raise it to `max_connections`.
    /// Not applied to the hooks listener (nginx shares 127.0.0.1 with every
    /// local process).
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// A response the client stops reading is cut off after this many
    /// seconds without the socket taking a byte (counted in
    /// `livebucket_connections_closed_total{reason="write_stalled"}`); a
    /// client that keeps reading, however slowly, is served to the end.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_secs: u64,
    /// The kernel send buffer of each accepted TCP connection, in bytes;
    /// 0 (the default) leaves it to the kernel's autotuning (up to
    /// `net.ipv4.tcp_wmem`'s maximum, 4 MiB on Linux). A fixed size bounds
    /// the kernel memory a client that stops reading pins until
    /// `write_timeout_secs` cuts it off, at the cost of throughput over
    /// long-distance links.
    #[serde(default = "default_send_buffer")]
    pub send_buffer_bytes: usize,
}

fn default_header_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    60
}
fn default_max_connections() -> usize {
    4096
}
fn default_max_connections_per_peer() -> usize {
    64
}
fn default_write_timeout() -> u64 {
    30
}
fn default_send_buffer() -> usize {
    0
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: default_header_timeout(),
            request_timeout_secs: default_request_timeout(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            write_timeout_secs: default_write_timeout(),
            send_buffer_bytes: default_send_buffer(),
        }
    }
}

/// Checks `[listen]` and `[limits]`.
pub(crate) fn validate(listen: &ListenConfig, limits: &LimitsConfig) -> Result<(), ConfigError> {
    let all = [
        ("listen.hooks", &listen.hooks),
        ("listen.public", &listen.public),
        ("listen.operator", &listen.operator),
    ];
    for (i, (field, addr)) in all.iter().enumerate() {
        if let Some((other, _)) = all[..i].iter().find(|(_, a)| a == addr) {
            return Err(invalid(
                *field,
                format!("is the same address as {other}: each surface needs its own listener"),
            ));
        }
    }
    if limits.header_read_timeout_secs == 0 {
        return Err(invalid(
            "limits.header_read_timeout_secs",
            "must be at least 1",
        ));
    }
    if limits.request_timeout_secs == 0 {
        return Err(invalid("limits.request_timeout_secs", "must be at least 1"));
    }
    if limits.max_connections == 0 {
        return Err(invalid("limits.max_connections", "must be at least 1"));
    }
    if limits.max_connections_per_peer == 0 {
        return Err(invalid(
            "limits.max_connections_per_peer",
            "must be at least 1 (raise it to limits.max_connections to turn it off)",
        ));
    }
    if limits.write_timeout_secs == 0 {
        return Err(invalid("limits.write_timeout_secs", "must be at least 1"));
    }
    if limits.send_buffer_bytes != 0 && !(4096..=64 << 20).contains(&limits.send_buffer_bytes) {
        return Err(invalid(
            "limits.send_buffer_bytes",
            "must be 0 (the kernel's autotuning) or 4096 to 67108864",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(
            "127.0.0.1:1".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(
            "unix:/run/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/x.sock".into())
        );
        assert!("unix:rel.sock".parse::<ListenAddr>().is_err());
        assert!("localhost:80".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn allow_list_matches_mapped_ipv4() {
        let h = HooksConfig::default();
        assert!(h.allows("127.0.0.1".parse().unwrap()));
        assert!(h.allows("::ffff:127.0.0.9".parse().unwrap()));
        assert!(h.allows("::1".parse().unwrap()));
        assert!(!h.allows("10.0.0.1".parse().unwrap()));
        assert!(!h.allows("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn secret_rules() {
        let with = |s: &str| HooksConfig {
            secret: Some(s.into()),
            ..HooksConfig::default()
        };
        let good = "0123456789abcdef0123456789abcdef";
        assert_eq!(hooks_secret(&with(good)).unwrap(), good);
        for bad in [
            "short",
            "0123456789abcdef0123456789abcde/",
            "replace-with-a-secret-0123456789abcdef",
        ] {
            let err = hooks_secret(&with(bad)).unwrap_err().to_string();
            assert!(err.contains("hooks.secret"), "{err}");
            assert!(!err.contains(bad), "the error quotes the secret: {err}");
        }
        assert!(hooks_secret(&HooksConfig::default()).is_err());
        assert_eq!(HooksConfig::default().previous_secret_grace_secs, 300);
        let long_grace = HooksConfig {
            previous_secret_grace_secs: 86_401,
            ..with(good)
        };
        let err = hooks_secret(&long_grace).unwrap_err().to_string();
        assert!(err.contains("hooks.previous_secret_grace_secs"), "{err}");
    }

    #[test]
    fn hooks_default_to_a_unix_socket() {
        assert_eq!(
            ListenConfig::default().hooks,
            ListenAddr::Unix("/run/livebucket/hooks.sock".into())
        );
    }

    #[test]
    fn per_peer_cap_and_write_timeout_are_checked() {
        let limits = LimitsConfig::default();
        assert_eq!(limits.max_connections_per_peer, 64);
        assert_eq!(limits.write_timeout_secs, 30);
        for (field, bad) in [
            (
                "limits.max_connections_per_peer",
                LimitsConfig {
                    max_connections_per_peer: 0,
                    ..LimitsConfig::default()
                },
            ),
            (
                "limits.write_timeout_secs",
                LimitsConfig {
                    write_timeout_secs: 0,
                    ..LimitsConfig::default()
                },
            ),
            (
                "limits.send_buffer_bytes",
                LimitsConfig {
                    send_buffer_bytes: 100,
                    ..LimitsConfig::default()
                },
            ),
        ] {
            let err = validate(&ListenConfig::default(), &bad).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn one_listener_per_surface() {
        let same = ListenConfig {
            public: default_hooks(),
            ..ListenConfig::default()
        };
        let err = validate(&same, &LimitsConfig::default()).unwrap_err();
        assert!(err.to_string().contains("listen.public"), "{err}");
    }
}
