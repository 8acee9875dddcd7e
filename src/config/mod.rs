//! The configuration file: one TOML document, parsed into [`RawConfig`] and
//! checked by [`RawConfig::validate`] into a [`Config`] the rest of the program
//! trusts. Every error names the field it is about and says how to fix it.
//!
//! The same access key signs push URLs and writes to its buckets (as Alibaba
//! OSS and RGW deployments do), so keys live here, not in S3's own config.
//!
//! Every field is listed in `docs/configuration.md` and in
//! `deploy/livebucket.toml.example`; the tests in `reference.rs` fail when
//! either lacks a field or names one that does not exist.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) mod api;
pub(crate) mod cluster;
pub(crate) mod events;
pub(crate) mod http;
pub(crate) mod listen;
#[cfg(test)]
mod reference;
pub(crate) mod renditions;
pub(crate) mod retention;

pub use api::{ApiConfig, ChannelsConfig, UnknownChannels};
pub use cluster::ClusterConfig;
pub use events::EventsConfig;
pub use http::HttpConfig;
pub use listen::{HooksConfig, LimitsConfig, ListenAddr, ListenConfig};
pub use renditions::{RenditionsConfig, Rung};
pub use retention::RetentionConfig;

/// What went wrong loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}` {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// The file as written, before [`RawConfig::validate`]. Defaults are named
/// functions; `docs/configuration.md` lists every field, checked against
/// these structs by `reference.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where each HTTP surface listens: nginx's callbacks, the public
    /// endpoints, the operator endpoints.
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Directory on disk for livebucket's own state: session journals, spool.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    pub nginx: NginxConfig,
    pub s3: S3Config,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub upload: UploadConfig,
    #[serde(default)]
    pub live: LiveConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub vod: VodConfig,
    /// What one `/play` request may cost.
    #[serde(default)]
    pub play: PlayConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub channels: ChannelsConfig,
    /// Cross-origin access to `/play` and the VOD API.
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub keys: Vec<AccessKey>,
    /// Several nodes, one bucket: coordination through etcd. Absent: this
    /// node is alone and talks to no coordinator.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Stream and channel events POSTed to the application's endpoints,
    /// signed (`crate::events`). Absent: no events.
    #[serde(default)]
    pub events: EventsConfig,
    /// How long recordings stay in the bucket (`[retention]`).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The adaptive-bitrate ladder (`[renditions]`). Absent: every channel
    /// is stored as the streamer sends it.
    #[serde(default)]
    pub renditions: RenditionsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    /// nginx-rtmp's `hls_path` of the internal HLS application (`hls_nested on`).
    pub hls_dir: PathBuf,
    /// Where an approved push is relayed: `rtmp://127.0.0.1:PORT/INTERNAL_APP`.
    /// livebucket appends `/<session id>`.
    #[serde(default = "default_relay_url")]
    pub relay_url: String,
    /// The public applications streamers may push to. Callbacks from any other
    /// application are refused.
    #[serde(default = "default_public_apps")]
    pub public_apps: Vec<String>,
    /// Fragment lengths (seconds) with an internal application of their own,
    /// named `<relay app>_<N>s` (`hls_5s`), as `scripts/render-nginx-conf`
    /// writes them from `HLS_FRAGMENTS`. nginx-rtmp's `hls_fragment` is per
    /// application, so a channel's `FragDuration` picks the longest of these
    /// not above it (the shortest if all are); empty: every push goes to
    /// `relay_url` and its application's `hls_fragment`.
    #[serde(default = "default_fragment_durations")]
    pub fragment_durations: Vec<u32>,
    /// nginx-rtmp's `rtmp_stat` page (`STAT_LISTEN` in nginx.conf), where
    /// livebucket reads a live stream's video size, frame rate, codecs and
    /// bandwidth: `http://IP:PORT/PATH` (plain HTTP, on loopback), or
    /// `unix:/SOCKET:/PATH` for a Unix socket (as `HOOKS_URL` spells it).
    #[serde(default = "default_stat_url")]
    pub stat_url: String,
}

impl NginxConfig {
    /// The internal application's name: the last path segment of
    /// `relay_url` (`hls` in `rtmp://127.0.0.1:1935/hls`), where each
    /// session's stream is named by its id.
    pub fn hls_app(&self) -> &str {
        let relay = self.relay_url.trim_end_matches('/');
        let path = relay
            .strip_prefix("rtmp://")
            .and_then(|rest| rest.split_once('/'))
            .map_or("", |(_, path)| path);
        path.rsplit('/').next().unwrap_or("")
    }
}

/// Where `nginx.stat_url` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatTarget<'a> {
    /// `http://AUTHORITY/PATH`: AUTHORITY is `HOST:PORT`, the port required.
    Tcp { authority: &'a str, path: &'a str },
    /// `unix:/SOCKET:/PATH`.
    Unix { socket: &'a Path, path: &'a str },
}

/// The two forms `nginx.stat_url` takes (no https, userinfo, query or
/// fragment); `None` for anything else.
pub fn parse_stat_url(url: &str) -> Option<StatTarget<'_>> {
    if let Some(rest) = url.strip_prefix("unix:") {
        let (socket, path) = rest.rsplit_once(':')?;
        let socket = Path::new(socket);
        return (socket.is_absolute()
            && socket.file_name().is_some()
            && !rest.contains('\0')
            && path.starts_with('/')
            && is_plain_path(path))
        .then_some(StatTarget::Unix { socket, path });
    }
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, Some(port)) = crate::sign::url::split_host_port(authority).ok()? else {
        return None;
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let port_ok = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    (host_ok && port_ok && is_plain_path(path)).then_some(StatTarget::Tcp { authority, path })
}

/// A request path without query, fragment or escapes, sent as is.
fn is_plain_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_graphic() && !b"?#%\\".contains(&b))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// S3 endpoint URL, e.g. `http://127.0.0.1:3900` for Garage.
    pub endpoint: String,
    /// Region name the server expects in SigV4 signatures (`garage` for Garage).
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`); most self-hosted servers
    /// need it.
    #[serde(default = "default_true")]
    pub force_path_style: bool,
    /// Endpoint that appears in presigned URLs handed to viewers, when it
    /// differs from `endpoint` (e.g. a public hostname).
    #[serde(default)]
    pub public_endpoint: Option<String>,
    /// Hash every PUT's body into its SigV4 signature. Off by default: the
    /// hash costs more CPU than the rest of an upload, and with `https://`
    /// TLS already protects the body; turn it on for plain `http://` across
    /// a network you do not trust. (Without it, requests carry
    /// `UNSIGNED-PAYLOAD`, which Garage, MinIO, Ceph RGW and AWS accept.)
    #[serde(default)]
    pub sign_payload: bool,
    /// Send fragment and playlist PUTs without the AWS SDK, on livebucket's
    /// own HTTP client (hyper, rustls for `https://`; `store/direct.rs`). On
    /// by default; it is used only without `sign_payload`. `false` sends
    /// every PUT through the SDK.
    #[serde(default = "default_true")]
    pub direct_put: bool,
    /// A PEM file of CA certificates trusted for an `https://` endpoint on
    /// top of the system's roots (a store with a self-signed or private CA),
    /// by every request: the direct PUTs and the SDK's (GET, LIST, DELETE,
    /// HEAD, and PUTs when they go through it).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds a PUT attempt may take before the body's own transfer time
    /// (`attempt_min_rate_kib`) is added; past it the attempt is abandoned
    /// and retried. A live fragment is worth little once it has left the
    /// playlist, so this is seconds, not the SDK's usual 30.
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_secs: u64,
    /// The slowest upload rate (KiB/s) a PUT attempt is given time for: an
    /// attempt of N KiB may take `attempt_timeout_secs + N / this` seconds.
    #[serde(default = "default_attempt_min_rate")]
    pub attempt_min_rate_kib: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Seconds a push URL is still accepted after its `Expires`.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_secs: u64,
    /// Longest accepted lifetime: an `Expires` further than this in the future
    /// is refused.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    /// OSS-style push URLs name the bucket as the first label of the host:
    /// `rtmp://BUCKET.<oss_live_domain>/live/CHANNEL`.
    #[serde(default)]
    pub oss_live_domain: Option<String>,
    /// Failed pushes from one address within `failure_window_secs` before that
    /// address is refused for `ban_secs`.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window")]
    pub failure_window_secs: u64,
    #[serde(default = "default_ban")]
    pub ban_secs: u64,
    /// Longest lifetime of a play or VOD URL: an `Expires` further than this
    /// in the future is refused (SigV4's own limit is 7 days).
    #[serde(default = "default_max_lifetime")]
    pub max_play_lifetime_secs: u64,
    /// Accept each push URL once: its signature is remembered until it
    /// expires and a second publish with it is refused (`replayed`). Off by
    /// default, as on OSS: an encoder that reconnects reuses its URL.
    #[serde(default)]
    pub one_time_push: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Uploads in flight at once, across all channels.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// `Cache-Control` of live playlist objects.
    #[serde(default = "default_playlist_cache_control")]
    pub playlist_cache_control: String,
    /// Longest wait between two attempts of a failing upload.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// `#EXT-X-TARGETDURATION` of the live playlists of pushes relayed to
    /// the `relay_url` application itself (channels without a record, or
    /// every push when `nginx.fragment_durations` is empty): that
    /// application's `hls_fragment` (`HLS_FRAGMENT`) rounded up to whole
    /// seconds. A channel relayed to `<relay app>_<N>s` gets N. It must not
    /// change while a playlist is live, so it is fixed rather than following
    /// fragments; a fragment that rounds above it is logged with advice and
    /// counted (`livebucket_fragment_misfit_total`).
    #[serde(default = "default_target_duration")]
    pub target_duration_secs: u64,
    /// Segments kept in the live playlist window.
    #[serde(default = "default_window")]
    pub window_segments: usize,
    /// After `on_publish_done`, how long to wait for nginx's last fragment
    /// before the playlist is finished with `#EXT-X-ENDLIST`.
    #[serde(default = "default_done_grace_ms")]
    pub done_grace_ms: u64,
    /// Without `on_publish_done`, a session with no new fragment for this many
    /// of its target durations is ended (at least 2).
    #[serde(default = "default_idle_factor")]
    pub idle_end_factor: u32,
    /// Serve Low-Latency HLS on `/play` for channels that do not say
    /// otherwise (`Target/LowLatency`): parts are cut from the fragment
    /// nginx is writing and stored as objects beside it.
    #[serde(default = "default_low_latency")]
    pub low_latency: bool,
    /// `PART-TARGET` of LL playlists, in ms: no part is longer. Players hold
    /// back three of them from the live edge.
    #[serde(default = "default_part_target_ms")]
    pub part_target_ms: u64,
    /// Fragments per VOD manifest object (at least 3). A session's manifest
    /// is split into chunks of this many fragments; only its newest chunk is
    /// rewritten, and retention deletes a live recording's older chunks
    /// whole, so this is also how finely a push that never ends is swept.
    /// A live session's manifest is written at most every 10 s, one chunk
    /// at a time: a chunk should hold more than 10 s of fragments, or VOD of
    /// a live push falls behind it until the push ends.
    #[serde(default = "default_manifest_chunk_fragments")]
    pub manifest_chunk_fragments: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Where fragments go when nginx closes them, until stored. On the same
    /// tmpfs as `nginx.hls_dir`, but not inside it, fragments are renamed
    /// here (no copy); on another filesystem they are copied. Default:
    /// `capture` next to `hls_dir`.
    #[serde(default)]
    pub capture_dir: Option<PathBuf>,
    /// On-disk directory that takes captures once the tmpfs is past
    /// `tmpfs_high_water`. Default: `<state_dir>/spool`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Fraction (0–1) of the tmpfs in use beyond which captures go to the
    /// spool instead.
    #[serde(default = "default_high_water")]
    pub tmpfs_high_water: f64,
    /// Fraction (0–1) of the spool's filesystem in use beyond which new
    /// publishes are refused, so live streams keep the space they need.
    #[serde(default = "default_spool_high_water")]
    pub spool_high_water: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VodConfig {
    /// Longest time range one VOD playlist may cover (OSS allows one day).
    #[serde(default = "default_max_range")]
    pub max_range_secs: u64,
    /// Most fragments one VOD playlist may list; a larger range is refused
    /// with 413 before any per-fragment work (a day of 2 s fragments is
    /// 43,200).
    #[serde(default = "default_max_fragments")]
    pub max_fragments: usize,
    /// Most fragments one VOD playlist may list when it comes from the
    /// listing fallback (a bucket without session manifests), which costs
    /// one HEAD per fragment; at most `max_fragments`.
    #[serde(default = "default_max_fallback_fragments")]
    pub max_fallback_fragments: usize,
    /// VOD playlists built at once; further requests get 503 with
    /// `Retry-After`.
    #[serde(default = "default_max_builds")]
    pub max_concurrent_builds: usize,
}

fn default_max_range() -> u64 {
    7 * 24 * 3600
}
fn default_max_fragments() -> usize {
    50_000
}
fn default_max_fallback_fragments() -> usize {
    // Two hours of 2 s fragments: a few seconds of HEADs.
    3_600
}
fn default_max_builds() -> usize {
    4
}

impl Default for VodConfig {
    fn default() -> Self {
        Self {
            max_range_secs: default_max_range(),
            max_fragments: default_max_fragments(),
            max_fallback_fragments: default_max_fallback_fragments(),
            max_concurrent_builds: default_max_builds(),
        }
    }
}

/// `[play]`: the cost of `/play`, whose every segment line is presigned per
/// request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayConfig {
    /// Largest stored playlist `/play` reads (413 beyond): 8 MiB holds a
    /// week-long VOD playlist of 2 s fragments (about 36 bytes a segment).
    #[serde(default = "default_max_playlist_bytes")]
    pub max_playlist_bytes: usize,
    /// Playlists presigned at once; a request that waits more than a second
    /// for its turn gets 503 with `Retry-After`.
    #[serde(default = "default_max_renders")]
    pub max_concurrent_renders: usize,
    /// Memory for the signed copies of ended (`#EXT-X-ENDLIST`) playlists,
    /// kept per play URL (key and expiry) so a popular VOD link is presigned
    /// once; 0 keeps none. One copy may take at most a quarter of it: a
    /// quarter of the default (32 MiB) holds a 50,000-segment playlist
    /// (about 20 MB signed).
    #[serde(default = "default_signed_cache_bytes")]
    pub signed_cache_bytes: usize,
    /// Blocking playlist reloads (LL-HLS `_HLS_msn`) waiting at once on
    /// this node; beyond it a request gets 503 with `Retry-After`.
    #[serde(default = "default_max_blocking_reloads")]
    pub max_blocking_reloads: usize,
}

fn default_max_blocking_reloads() -> usize {
    10_000
}

fn default_max_playlist_bytes() -> usize {
    8 << 20
}
fn default_max_renders() -> usize {
    4
}
fn default_signed_cache_bytes() -> usize {
    128 << 20
}

impl Default for PlayConfig {
    fn default() -> Self {
        Self {
            max_playlist_bytes: default_max_playlist_bytes(),
            max_concurrent_renders: default_max_renders(),
            signed_cache_bytes: default_signed_cache_bytes(),
            max_blocking_reloads: default_max_blocking_reloads(),
        }
    }
}

/// An access key: signs push URLs and writes to its buckets.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    /// Buckets this key may push to; `"*"` means every bucket.
    pub buckets: Vec<String>,
    /// A disabled key signs nothing; its live streams are dropped at their next
    /// `on_update`.
    #[serde(default)]
    pub disabled: bool,
}

impl std::fmt::Debug for AccessKey {
    // Never print the secret, not even in a debug dump of the config.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("buckets", &self.buckets)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl AccessKey {
    pub fn may_write(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|b| b == "*" || b == bucket)
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/livebucket")
}
fn default_relay_url() -> String {
    "rtmp://127.0.0.1:1935/hls".into()
}
fn default_fragment_durations() -> Vec<u32> {
    vec![1, 2, 3, 4, 5, 6, 8, 10]
}
fn default_public_apps() -> Vec<String> {
    vec!["live".into()]
}
fn default_stat_url() -> String {
    "http://127.0.0.1:8090/stat".into()
}
fn default_attempt_timeout() -> u64 {
    5
}
fn default_attempt_min_rate() -> u64 {
    256
}
fn default_region() -> String {
    "garage".into()
}
fn default_true() -> bool {
    true
}
fn default_clock_skew() -> u64 {
    300
}
fn default_max_lifetime() -> u64 {
    7 * 24 * 3600
}
fn default_max_failures() -> u32 {
    10
}
fn default_failure_window() -> u64 {
    60
}
fn default_ban() -> u64 {
    60
}
fn default_concurrency() -> usize {
    32
}
fn default_playlist_cache_control() -> String {
    "max-age=1".into()
}
fn default_max_backoff() -> u64 {
    30
}
/// `HLS_FRAGMENT`'s default in `scripts/render-nginx-conf` (2s).
fn default_target_duration() -> u64 {
    2
}
fn default_window() -> usize {
    6
}
fn default_low_latency() -> bool {
    true
}
fn default_part_target_ms() -> u64 {
    500
}
fn default_done_grace_ms() -> u64 {
    3000
}
fn default_idle_factor() -> u32 {
    5
}
fn default_manifest_chunk_fragments() -> usize {
    // An hour of 2 s fragments.
    1800
}

fn default_high_water() -> f64 {
    0.8
}
fn default_spool_high_water() -> f64 {
    0.95
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            clock_skew_secs: default_clock_skew(),
            max_lifetime_secs: default_max_lifetime(),
            oss_live_domain: None,
            max_failures: default_max_failures(),
            failure_window_secs: default_failure_window(),
            ban_secs: default_ban(),
            max_play_lifetime_secs: default_max_lifetime(),
            one_time_push: false,
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            playlist_cache_control: default_playlist_cache_control(),
            max_backoff_secs: default_max_backoff(),
        }
    }
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            capture_dir: None,
            dir: None,
            tmpfs_high_water: default_high_water(),
            spool_high_water: default_spool_high_water(),
        }
    }
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            target_duration_secs: default_target_duration(),
            window_segments: default_window(),
            done_grace_ms: default_done_grace_ms(),
            idle_end_factor: default_idle_factor(),
            low_latency: default_low_latency(),
            part_target_ms: default_part_target_ms(),
            manifest_chunk_fragments: default_manifest_chunk_fragments(),
        }
    }
}

/// A configuration that passed [`RawConfig::validate`].
#[derive(Clone)]
pub struct Config {
    pub raw: RawConfig,
    /// `hooks.secret`, or the content of `hooks.secret_file`, checked.
    hooks_secret: String,
}

impl std::fmt::Debug for Config {
    // The raw config redacts its own secrets; the hooks secret is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("raw", &self.raw)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for Config {
    type Target = RawConfig;
    fn deref(&self) -> &RawConfig {
        &self.raw
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_message(text, &e),
        })?;
        raw.validate()
    }

    /// The secret every nginx callback URL carries.
    pub fn hooks_secret(&self) -> &str {
        &self.hooks_secret
    }

    pub fn key(&self, id: &str) -> Option<&AccessKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    pub fn capture_dir(&self) -> PathBuf {
        self.spool.capture_dir.clone().unwrap_or_else(|| {
            self.nginx
                .hls_dir
                .parent()
                .unwrap_or(&self.nginx.hls_dir)
                .join("capture")
        })
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.spool
            .dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("spool"))
    }
}

/// A TOML error as "line L, column C: message" without the excerpt of the
/// file that `toml`'s own text quotes, and with quoted values elided: the
/// line may hold a secret, and the log is no place for it.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let mut message = redact_quoted(e.message());
    if message.contains("ListenConfig") {
        message.push_str(
            " (`listen` is a table now: [listen] hooks = \"127.0.0.1:8089\", public = …, operator = …)",
        );
    }
    match e.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// `message` with every "…" string and every `…` literal that is not a
/// plain field name replaced by an ellipsis.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i] as char;
        out.push_str(&rest[..=i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(quote) else {
            out.push('…');
            return out;
        };
        let inner = &after[..end];
        let field_name = quote == '`'
            && inner.starts_with(|c: char| c.is_ascii_lowercase())
            && inner
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        out.push_str(if field_name { inner } else { "…" });
        out.push(quote);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

impl S3Config {
    /// The endpoint written into URLs for viewers: `public_endpoint` when
    /// set, else `endpoint`.
    pub fn viewer_endpoint(&self) -> &str {
        self.public_endpoint.as_deref().unwrap_or(&self.endpoint)
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        listen::validate(&self.listen, &self.limits)?;
        api::validate(&self.api)?;
        http::validate(&self.http)?;
        retention::validate(&self.retention)?;
        renditions::validate(&self.renditions)?;
        if let Some(c) = &self.cluster {
            cluster::validate(c)?;
        }
        events::validate(&self.events)?;
        if self
            .nginx
            .fragment_durations
            .iter()
            .any(|&d| !(1..=100).contains(&d))
        {
            return Err(invalid(
                "nginx.fragment_durations",
                "must be seconds from 1 to 100 (OSS's FragDuration range)",
            ));
        }
        let hooks_secret = listen::hooks_secret(&self.hooks)?;
        if !self.nginx.hls_dir.is_absolute() {
            return Err(invalid(
                "nginx.hls_dir",
                "must be an absolute path (nginx-rtmp's hls_path)",
            ));
        }
        if !self.state_dir.is_absolute() {
            return Err(invalid("state_dir", "must be an absolute path"));
        }
        let relay = self.nginx.relay_url.trim_end_matches('/');
        if !relay.starts_with("rtmp://") || relay.len() <= "rtmp://".len() {
            return Err(invalid(
                "nginx.relay_url",
                "must look like rtmp://127.0.0.1:1935/hls (nginx only relays to rtmp:// URLs with an IP address)",
            ));
        }
        if self.nginx.hls_app().is_empty() {
            return Err(invalid(
                "nginx.relay_url",
                "must end with the internal application's name, e.g. rtmp://127.0.0.1:1935/hls",
            ));
        }
        if parse_stat_url(&self.nginx.stat_url).is_none() {
            return Err(invalid(
                "nginx.stat_url",
                "must look like http://127.0.0.1:8090/stat (plain http, IP or host with a port, a path) or unix:/run/livebucket/stat.sock:/stat (STAT_LISTEN in nginx.conf)",
            ));
        }
        if self.nginx.public_apps.is_empty() {
            return Err(invalid(
                "nginx.public_apps",
                "must name at least one application, e.g. [\"live\"]",
            ));
        }
        if !(self.s3.endpoint.starts_with("http://") || self.s3.endpoint.starts_with("https://")) {
            return Err(invalid(
                "s3.endpoint",
                "must be an http:// or https:// URL, e.g. http://127.0.0.1:3900",
            ));
        }
        if self.s3.region.is_empty() {
            return Err(invalid("s3.region", "must not be empty"));
        }
        if self.s3.attempt_timeout_secs == 0 {
            return Err(invalid("s3.attempt_timeout_secs", "must be at least 1"));
        }
        if self.s3.attempt_min_rate_kib == 0 {
            return Err(invalid("s3.attempt_min_rate_kib", "must be at least 1"));
        }
        if let Some(ca) = &self.s3.ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            return Err(invalid(
                "s3.ca_file",
                format!(
                    "cannot read {}: {e} (a PEM file of CA certificates)",
                    ca.display()
                ),
            ));
        }
        if self.upload.concurrency == 0 {
            return Err(invalid("upload.concurrency", "must be at least 1"));
        }
        if self.upload.max_backoff_secs == 0 {
            return Err(invalid("upload.max_backoff_secs", "must be at least 1"));
        }
        if self.live.target_duration_secs == 0 {
            return Err(invalid("live.target_duration_secs", "must be at least 1"));
        }
        if self.live.window_segments < 3 {
            return Err(invalid(
                "live.window_segments",
                "must be at least 3 (RFC 8216 asks live playlists for three target durations)",
            ));
        }
        if self.live.idle_end_factor < 2 {
            return Err(invalid(
                "live.idle_end_factor",
                "must be at least 2: fragments come about one target duration apart, so one \
                 would end live playlists between two fragments",
            ));
        }
        if self.live.manifest_chunk_fragments < 3 {
            return Err(invalid(
                "live.manifest_chunk_fragments",
                "must be at least 3 (fragments per VOD manifest object; 1800 is an hour of 2 s \
                 fragments)",
            ));
        }
        if !(200..=2000).contains(&self.live.part_target_ms) {
            return Err(invalid(
                "live.part_target_ms",
                "must be between 200 and 2000 (ms; parts are cut at frame boundaries)",
            ));
        }
        if self.live.part_target_ms >= self.live.target_duration_secs * 1000 {
            return Err(invalid(
                "live.part_target_ms",
                "must be shorter than live.target_duration_secs (a part is a piece of a segment)",
            ));
        }
        if self.auth.max_lifetime_secs == 0 {
            return Err(invalid("auth.max_lifetime_secs", "must be at least 1"));
        }
        if self.auth.max_play_lifetime_secs == 0 {
            return Err(invalid("auth.max_play_lifetime_secs", "must be at least 1"));
        }
        if self.vod.max_fragments == 0 {
            return Err(invalid("vod.max_fragments", "must be at least 1"));
        }
        if self.vod.max_fallback_fragments == 0 {
            return Err(invalid("vod.max_fallback_fragments", "must be at least 1"));
        }
        if self.play.max_playlist_bytes < 1024 {
            return Err(invalid(
                "play.max_playlist_bytes",
                "must be at least 1024 (a live playlist's window)",
            ));
        }
        if self.play.max_concurrent_renders == 0 {
            return Err(invalid("play.max_concurrent_renders", "must be at least 1"));
        }
        if self.vod.max_concurrent_builds == 0 {
            return Err(invalid("vod.max_concurrent_builds", "must be at least 1"));
        }
        if let Some(domain) = &self.auth.oss_live_domain
            && (domain.is_empty() || domain.starts_with('.') || domain.contains('/'))
        {
            return Err(invalid(
                "auth.oss_live_domain",
                "must be a host name such as live.example.com (no scheme, no leading dot)",
            ));
        }
        for (field, v) in [
            ("spool.tmpfs_high_water", self.spool.tmpfs_high_water),
            ("spool.spool_high_water", self.spool.spool_high_water),
        ] {
            if !(0.0..=1.0).contains(&v) || v == 0.0 {
                return Err(invalid(field, "must be a fraction in (0, 1], e.g. 0.8"));
            }
        }
        let capture = self.spool.capture_dir.clone().unwrap_or_default();
        if capture.starts_with(&self.nginx.hls_dir) {
            return Err(invalid(
                "spool.capture_dir",
                "must not be inside nginx.hls_dir (livebucket watches that directory)",
            ));
        }
        let mut seen = HashSet::new();
        for (i, key) in self.keys.iter().enumerate() {
            let field = |name: &str| format!("keys[{i}].{name}");
            if key.id.is_empty() || !key.id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    field("id"),
                    "must be non-empty printable ASCII without spaces",
                ));
            }
            if !seen.insert(key.id.as_str()) {
                return Err(invalid(field("id"), format!("repeats key id {:?}", key.id)));
            }
            if key.secret.len() < 8 {
                return Err(invalid(field("secret"), "must be at least 8 characters"));
            }
            if listen::is_placeholder(&key.secret) {
                return Err(invalid(
                    field("secret"),
                    "is still the example's placeholder: set the secret of this key on your S3 server",
                ));
            }
            if key.buckets.is_empty() {
                return Err(invalid(
                    field("buckets"),
                    "must list at least one bucket, or \"*\" for all",
                ));
            }
        }
        Ok(Config {
            raw: self,
            hooks_secret,
        })
    }
}

/// A valid config for unit tests elsewhere: the required fields, then
/// `extra` (whole tables, keys).
#[cfg(test)]
pub fn for_tests(extra: &str) -> Config {
    let text = format!(
        "[hooks]\nsecret = \"hooks-secret-for-the-unit-tests-0001\"\n\
         [nginx]\nhls_dir = \"/dev/shm/livebucket/hls\"\n\
         [s3]\nendpoint = \"http://127.0.0.1:3900\"\n{extra}"
    );
    match Config::parse(&text, Path::new("test.toml")) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}\n{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [hooks]
        secret = "hooks-secret-for-the-unit-tests-0001"
        [nginx]
        hls_dir = "/dev/shm/livebucket/hls"
        [s3]
        endpoint = "http://127.0.0.1:3900"
        [[keys]]
        id = "GK123"
        secret = "0123456789abcdef"
        buckets = ["demo"]
    "#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            c.listen.hooks,
            "unix:/run/livebucket/hooks.sock".parse().unwrap()
        );
        assert_eq!(c.hooks_secret(), "hooks-secret-for-the-unit-tests-0001");
        assert_eq!(c.s3.region, "garage");
        assert!(c.s3.force_path_style);
        assert_eq!(c.nginx.public_apps, vec!["live".to_string()]);
        assert!(c.key("GK123").unwrap().may_write("demo"));
        assert!(!c.key("GK123").unwrap().may_write("other"));
    }

    #[test]
    fn low_latency_settings_are_validated() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.live.low_latency);
        assert_eq!(c.live.part_target_ms, 500);
        let off = parse(&format!(
            "{MINIMAL}\n[live]\nlow_latency = false\npart_target_ms = 800\n"
        ))
        .unwrap();
        assert!(!off.live.low_latency);
        assert_eq!(off.live.part_target_ms, 800);
        for (extra, why) in [
            ("part_target_ms = 100", "between 200 and 2000"),
            ("part_target_ms = 2500", "between 200 and 2000"),
            (
                "target_duration_secs = 1\npart_target_ms = 1000",
                "shorter than",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}\n[live]\n{extra}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("live.part_target_ms") && err.contains(why),
                "{extra}: {err}"
            );
        }
    }

    #[test]
    fn live_defaults_match_the_default_application_and_idle_needs_two_fragments() {
        let c = parse(MINIMAL).unwrap();
        // HLS_FRAGMENT=2s in scripts/render-nginx-conf.
        assert_eq!(c.live.target_duration_secs, 2);
        let one = parse(&format!("{MINIMAL}\n[live]\nidle_end_factor = 1\n")).unwrap_err();
        assert!(
            one.to_string().contains("live.idle_end_factor")
                && one.to_string().contains("at least 2"),
            "{one}"
        );
        assert!(parse(&format!("{MINIMAL}\n[live]\nidle_end_factor = 2\n")).is_ok());
        let chunk = parse(&format!(
            "{MINIMAL}\n[live]\nmanifest_chunk_fragments = 2\n"
        ))
        .unwrap_err();
        assert!(
            chunk.to_string().contains("live.manifest_chunk_fragments"),
            "{chunk}"
        );
        assert!(
            parse(&format!(
                "{MINIMAL}\n[live]\nmanifest_chunk_fragments = 3\n"
            ))
            .is_ok()
        );
    }

    #[test]
    fn s3_attempt_bounds_and_ca_file_are_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(
            (c.s3.attempt_timeout_secs, c.s3.attempt_min_rate_kib),
            (5, 256)
        );
        assert_eq!(c.s3.ca_file, None);
        let with = |line: &str| {
            MINIMAL.replace(
                "endpoint = \"http://127.0.0.1:3900\"",
                &format!("endpoint = \"https://127.0.0.1:3900\"\n{line}"),
            )
        };
        for (line, field) in [
            ("attempt_timeout_secs = 0", "s3.attempt_timeout_secs"),
            ("attempt_min_rate_kib = 0", "s3.attempt_min_rate_kib"),
            ("ca_file = \"/nonexistent/ca.pem\"", "s3.ca_file"),
        ] {
            let err = parse(&with(line)).unwrap_err();
            assert!(err.to_string().contains(field), "{line}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").unwrap();
        let c = parse(&with(&format!("ca_file = {:?}", ca.display().to_string()))).unwrap();
        assert_eq!(c.s3.ca_file.as_deref(), Some(ca.as_path()));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse(&format!("{MINIMAL}\n[upload]\nconcurency = 3\n")).unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn relative_hls_dir_is_refused_with_field_name() {
        let err = parse(&MINIMAL.replace("/dev/shm/livebucket/hls", "hls")).unwrap_err();
        assert!(err.to_string().contains("nginx.hls_dir"), "{err}");
    }

    #[test]
    fn duplicate_key_and_short_secret_are_refused() {
        let dup = format!(
            "{MINIMAL}\n[[keys]]\nid = \"GK123\"\nsecret = \"abcdefghij\"\nbuckets = [\"*\"]\n"
        );
        assert!(parse(&dup).unwrap_err().to_string().contains("keys[1].id"));
        let short = MINIMAL.replace("0123456789abcdef", "short");
        assert!(
            parse(&short)
                .unwrap_err()
                .to_string()
                .contains("keys[0].secret")
        );
    }

    #[test]
    fn debug_never_prints_secret() {
        let c = parse(MINIMAL).unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        assert!(!format!("{c:?}").contains("hooks-secret-for"));
    }

    #[test]
    fn deploy_example_refuses_its_placeholders_then_parses() {
        // The example users copy must stay in step with the schema, and must
        // not start with secrets everyone knows.
        let example = include_str!("../../deploy/livebucket.toml.example");
        let err = parse(example).unwrap_err().to_string();
        assert!(err.contains("hooks.secret"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("hooks.secret");
        std::fs::write(&secret_file, "0123456789abcdef0123456789abcdef\n").unwrap();
        let edited = example.replace(
            "/etc/livebucket/hooks.secret",
            secret_file.to_str().unwrap(),
        );
        let err = parse(&edited).unwrap_err().to_string();
        assert!(err.contains("keys[0].secret"), "{err}");
        let c = parse(&edited.replace(
            "replace-with-the-64-hex-secret-of-this-key",
            "a-real-secret-of-this-key",
        ))
        .unwrap();
        assert_eq!(c.nginx.hls_dir, Path::new("/dev/shm/livebucket/hls"));
        assert_eq!(c.hooks_secret(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn parse_errors_never_quote_the_file() {
        let secret = "s3cr3t-Value-that-must-not-leak";
        for text in [
            format!("{MINIMAL}\n[[keys]]\nid = \"GK9\"\nsecret = \"{secret}\nbuckets = [\"*\"]\n"),
            format!("{MINIMAL}\n[[keys]]\nid = \"GK9\"\nsecret = {secret}\nbuckets = [\"*\"]\n"),
            format!(
                "{MINIMAL}\n[[keys]]\nid = \"GK9\"\nsecret = [\"{secret}\"]\nbuckets = [\"*\"]\n"
            ),
            format!(
                "{MINIMAL}\n[[keys]]\nid = \"GK9\"\nsecret = 918273645546372819\nbuckets = [\"*\"]\n"
            ),
            format!(
                "{MINIMAL}\n[[keys]]\nid = \"GK9\"\nbuckets = [\"*\"]\nsecret = \"{secret}\"\nbuckets = [\"*\"]\n"
            ),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                !err.contains(secret) && !err.contains("918273645546372819"),
                "{err}"
            );
            assert!(err.contains("line "), "no line number: {err}");
        }
        // Field names still help.
        let err = parse(&format!("{MINIMAL}\n[upload]\nconcurency = 3\n")).unwrap_err();
        assert!(err.to_string().contains("concurency"), "{err}");
    }

    #[test]
    fn legacy_listen_string_says_what_changed() {
        let err = parse(&format!("listen = \"127.0.0.1:8089\"\n{MINIMAL}")).unwrap_err();
        assert!(err.to_string().contains("[listen]"), "{err}");
    }

    #[test]
    fn stat_url_and_hls_app() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.nginx.stat_url, "http://127.0.0.1:8090/stat");
        assert_eq!(c.nginx.hls_app(), "hls");
        let tcp = |authority, path| Some(StatTarget::Tcp { authority, path });
        assert_eq!(
            parse_stat_url("http://127.0.0.1:8090/stat"),
            tcp("127.0.0.1:8090", "/stat")
        );
        assert_eq!(
            parse_stat_url("http://[::1]:8090/a/b"),
            tcp("[::1]:8090", "/a/b")
        );
        assert_eq!(
            parse_stat_url("http://localhost:8090"),
            tcp("localhost:8090", "/")
        );
        assert_eq!(
            parse_stat_url("unix:/run/livebucket/stat.sock:/stat"),
            Some(StatTarget::Unix {
                socket: Path::new("/run/livebucket/stat.sock"),
                path: "/stat"
            })
        );
        for bad in [
            "https://127.0.0.1:8090/stat",
            "http://127.0.0.1/stat",
            "http://:8090/stat",
            "http://127.0.0.1:80x/stat",
            "http://u@127.0.0.1:8090/stat",
            "http://127.0.0.1:8090/stat?x",
            "http://127.0.0.1:8090/st at",
            "127.0.0.1:8090/stat",
            "unix:/run/stat.sock",
            "unix:run/stat.sock:/stat",
            "unix:/run/stat.sock:stat",
            "unix:/:/stat",
        ] {
            assert_eq!(parse_stat_url(bad), None, "{bad}");
            let text = MINIMAL.replace(
                "[s3]",
                &format!("stat_url = {}\n[s3]", toml::Value::from(bad)),
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("nginx.stat_url"), "{bad}: {err}");
        }
        let custom = MINIMAL.replace(
            "[s3]",
            "relay_url = \"rtmp://127.0.0.1:1935/internal/\"\n[s3]",
        );
        assert_eq!(parse(&custom).unwrap().nginx.hls_app(), "internal");
        let no_app = MINIMAL.replace("[s3]", "relay_url = \"rtmp://127.0.0.1:1935\"\n[s3]");
        let err = parse(&no_app).unwrap_err().to_string();
        assert!(err.contains("nginx.relay_url"), "{err}");
    }

    #[test]
    fn wildcard_bucket() {
        let c = parse(&MINIMAL.replace("[\"demo\"]", "[\"*\"]")).unwrap();
        assert!(c.key("GK123").unwrap().may_write("anything"));
    }
}
