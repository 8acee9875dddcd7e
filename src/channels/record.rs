//! The channel record, modelled on OSS's LiveChannel: a channel's
//! configuration with OSS's defaults and limits, its stream statistics and push history, how both are stored in the
//! bucket, and the URLs a channel answers with.
//!
//! # Storage layout (in the channel's own bucket)
//!
//! - `.livebucket/channels/<channel>.json`: the channel ([`StoredChannel`]),
//!   written by PutLiveChannel and PutLiveChannelStatus, removed by
//!   DeleteLiveChannel;
//! - `.livebucket/channels/<channel>.history.json`: the last
//!   [`HISTORY_LEN`] pushes ([`StoredHistory`]).
//!
//! Both are versioned JSON (`"format": "livebucket.channel.v1"`), refused
//! whole when unreadable. `.livebucket/` is livebucket's reserved prefix (the
//! VOD index lives under `.livebucket/index/`).
//!
//! # Invariants
//!
//! - A channel name that passes [`validate_channel_name`] maps to exactly one
//!   key of each kind and no two names share a key: names ending in
//!   `.history` are refused (`x.history`'s channel key would be `x`'s history
//!   key), and so is the reserved name `.livebucket`. Names are also valid
//!   push names ([`crate::names::validate_channel`]: 1–100 printable
//!   ASCII bytes, no `/`, `\` or `..`), so every channel can be pushed to.
//! - ListLiveChannel order is the order of the channel keys in the bucket, so
//!   a listing is one prefix list with `start-after` ([`list_start_after`]),
//!   and pages never repeat or skip a channel. This is byte order of
//!   `<name>.json`, which equals name order except that a name sorts after
//!   its extensions starting with a byte below `.` (`a-b` before `a`).
//! - [`LiveChannelConfig::validate`] holds for every config this module
//!   hands out, parsed (`oss::xml::parse_config`) or stored
//!   ([`decode_channel`]).
//!
//! It lives below the OSS API (`oss::channel` re-exports it) because the
//! channel store, snapshots, stat, the cluster, events and retention all read
//! records; a refusal is an [`InvalidChannel`], which the API answers as
//! `InvalidArgument`.

use serde::{Deserialize, Serialize};

use crate::names;

/// `FragDuration` when the request leaves it out (seconds).
pub const DEFAULT_FRAG_DURATION: u32 = 5;
/// `FragCount` when the request leaves it out.
pub const DEFAULT_FRAG_COUNT: u32 = 3;
/// `PlaylistName` when the request leaves it out or empty (oss2 sends
/// `<PlaylistName />` by default).
pub const DEFAULT_PLAYLIST_NAME: &str = "playlist.m3u8";
/// OSS's limit on `Description`.
pub const MAX_DESCRIPTION_BYTES: usize = 128;
/// OSS's range for `FragDuration`, `FragCount` and `Snapshot/Interval`.
pub const FRAG_RANGE: std::ops::RangeInclusive<u32> = 1..=100;
/// OSS keeps the last ten pushes of a channel.
pub const HISTORY_LEN: usize = 10;
/// Most channels one ListLiveChannel page may return; 100 by default.
pub const MAX_LIST_KEYS: u16 = 1000;
pub const DEFAULT_LIST_KEYS: u16 = 100;

/// The longest `RetentionSeconds` a channel may ask for: 100 years (the
/// same bound as `[retention] default_period_secs`).
pub use crate::config::retention::MAX_RETENTION_SECS;

/// Where channel records live; see the module doc.
pub const CHANNELS_PREFIX: &str = ".livebucket/channels/";
const CHANNEL_SUFFIX: &str = ".json";
const HISTORY_SUFFIX: &str = ".history.json";

/// A channel's configured status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelStatus {
    Enabled,
    Disabled,
}

impl ChannelStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Enabled => "enabled",
            ChannelStatus::Disabled => "disabled",
        }
    }

    /// OSS's spelling only: `enabled` or `disabled`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "enabled" => Some(ChannelStatus::Enabled),
            "disabled" => Some(ChannelStatus::Disabled),
            _ => None,
        }
    }
}

/// `LiveChannelConfiguration`, as PutLiveChannel takes it and
/// GetLiveChannelInfo returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveChannelConfig {
    /// Up to [`MAX_DESCRIPTION_BYTES`], no control characters but tab and
    /// newline.
    pub description: String,
    pub status: ChannelStatus,
    /// `Target`; `Type` is always `HLS`.
    pub target: HlsTarget,
    pub snapshot: Option<Snapshot>,
    /// livebucket's extension `RetentionSeconds`: recordings of this channel
    /// older than this many seconds are deleted by the retention sweep
    /// ([`crate::retention`]); `Some(0)` keeps them forever; `None` (not
    /// given): `[retention] default_period_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_secs: Option<u64>,
    /// livebucket's extension `LivebucketRenditions`: the rungs of the
    /// `[renditions]` ladder this channel's pushes are transcoded to.
    /// `None` (not given): `[renditions] default`; `Some(Renditions::None)`
    /// (`none`): no renditions whatever the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions: Option<Renditions>,
}

/// A channel's choice of rungs (see [`LiveChannelConfig::renditions`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Renditions {
    /// `none`: the source only.
    None,
    /// These rungs, by name, in the order given.
    Rungs(Vec<String>),
}

/// `LivebucketRenditions`' word for "no renditions, whatever the default".
pub const RENDITIONS_NONE: &str = "none";

/// The master playlist's object name under a channel with renditions
/// (`CHANNEL/master.m3u8`): a channel whose live playlist has this name
/// cannot have renditions, or the two would be one object.
pub const MASTER_PLAYLIST_NAME: &str = "master.m3u8";

impl Renditions {
    /// `LivebucketRenditions`' text, taken exactly as written like every
    /// leaf: empty is `None` (the config's default), `none` is
    /// [`Renditions::None`], anything else comma-separated rung names, which
    /// [`LiveChannelConfig::validate`] checks (so `a, b` or `a,,b` is
    /// refused there, not silently mended here).
    pub fn parse(text: &str) -> Option<Renditions> {
        match text {
            "" => None,
            RENDITIONS_NONE => Some(Renditions::None),
            _ => Some(Renditions::Rungs(
                text.split(',').map(str::to_owned).collect(),
            )),
        }
    }

    /// The text [`Renditions::parse`] reads back: `none` or `a,b`.
    pub fn to_text(&self) -> String {
        match self {
            Renditions::None => RENDITIONS_NONE.to_owned(),
            Renditions::Rungs(names) => names.join(","),
        }
    }

    /// The names checked by [`LiveChannelConfig::validate`]: each a valid
    /// rung name ([`crate::config::renditions::valid_rung_name`]), none twice,
    /// at least one, and `none` only alone.
    fn check_names(&self) -> Result<(), InvalidChannel> {
        let Renditions::Rungs(names) = self else {
            return Ok(());
        };
        if names.is_empty() {
            return Err(invalid(
                "LivebucketRenditions must name at least one rung, or be none",
            ));
        }
        for (i, name) in names.iter().enumerate() {
            if name == RENDITIONS_NONE {
                return Err(invalid(
                    "LivebucketRenditions: none cannot be combined with rung names",
                ));
            }
            if !crate::config::renditions::valid_rung_name(name) {
                return Err(invalid(format!(
                    "LivebucketRenditions: {:?} is not a rung name (1 to 32 of a-z 0-9 _ -, \
                     starting with a letter or digit; not source, snapshot or master)",
                    shown_name(name)
                )));
            }
            if names[..i].contains(name) {
                return Err(invalid(format!("LivebucketRenditions names {name} twice")));
            }
        }
        Ok(())
    }
}

/// A client's name cut to a length a message can carry.
fn shown_name(name: &str) -> String {
    name.chars().take(40).collect()
}

/// The rungs a channel's pushes get: its record's choice, else the ladder's
/// `default`. Names the ladder no longer has are kept here; admission skips
/// (and logs) them.
pub fn effective_renditions(
    choice: Option<&Renditions>,
    ladder: &crate::config::RenditionsConfig,
) -> Vec<String> {
    match choice {
        None => ladder.default.clone(),
        Some(Renditions::None) => Vec::new(),
        Some(Renditions::Rungs(names)) => names.clone(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsTarget {
    /// Seconds per fragment, in [`FRAG_RANGE`].
    pub frag_duration: u32,
    /// Fragments in the live playlist, in [`FRAG_RANGE`].
    pub frag_count: u32,
    /// The live playlist's object name under the channel:
    /// [`names::validate_playlist_name`].
    pub playlist_name: String,
    /// livebucket's extension `Target/LowLatency`: LL-HLS parts on `/play`
    /// for this channel (`true`/`false`); `None` (not given): `[live]
    /// low_latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_latency: Option<bool>,
}

/// `Snapshot`: OSS takes snapshots with a RAM role into another bucket and
/// notifies MNS. livebucket takes them with the push's key
/// ([`crate::snapshot`]); `RoleName` is stored and returned but unused (no
/// RAM roles). `NotifyTopic` names the `[events]` endpoint that gets the
/// channel's events ([`crate::events`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub role_name: String,
    pub dest_bucket: String,
    pub notify_topic: String,
    /// Seconds, in [`FRAG_RANGE`].
    pub interval: u32,
}

impl Default for LiveChannelConfig {
    fn default() -> Self {
        Self {
            description: String::new(),
            status: ChannelStatus::Enabled,
            target: HlsTarget {
                frag_duration: DEFAULT_FRAG_DURATION,
                frag_count: DEFAULT_FRAG_COUNT,
                playlist_name: DEFAULT_PLAYLIST_NAME.to_owned(),
                low_latency: None,
            },
            snapshot: None,
            retention_secs: None,
            renditions: None,
        }
    }
}

impl LiveChannelConfig {
    /// OSS's limits, each refusal an `InvalidArgument` naming the field.
    pub fn validate(&self) -> Result<(), InvalidChannel> {
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(format!(
                "Description is {} bytes; at most {MAX_DESCRIPTION_BYTES} are allowed",
                self.description.len()
            )));
        }
        if !is_xml_text(&self.description) {
            return Err(invalid(
                "Description must not contain control characters other than tab and newline",
            ));
        }
        check_range("Target/FragDuration", self.target.frag_duration)?;
        check_range("Target/FragCount", self.target.frag_count)?;
        names::validate_playlist_name(&self.target.playlist_name)
            .map_err(|e| invalid(format!("Target/PlaylistName: {e}")))?;
        if let Some(s) = &self.snapshot {
            for (field, value) in [
                ("Snapshot/RoleName", &s.role_name),
                ("Snapshot/NotifyTopic", &s.notify_topic),
            ] {
                if value.is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
                    return Err(invalid(format!(
                        "{field} must be 1 to 256 bytes without control characters"
                    )));
                }
            }
            names::validate_bucket(&s.dest_bucket)
                .map_err(|e| invalid(format!("Snapshot/DestBucket: {e}")))?;
            check_range("Snapshot/Interval", s.interval)?;
        }
        if self.retention_secs.is_some_and(|r| r > MAX_RETENTION_SECS) {
            return Err(invalid(format!(
                "RetentionSeconds must be an integer from 0 (keep forever) to {MAX_RETENTION_SECS}"
            )));
        }
        if let Some(r) = &self.renditions {
            r.check_names()?;
            if matches!(r, Renditions::Rungs(_))
                && self.target.playlist_name == MASTER_PLAYLIST_NAME
            {
                return Err(master_clash());
            }
        }
        Ok(())
    }

    /// What PutLiveChannel checks beyond [`LiveChannelConfig::validate`]
    /// where the ladder is known: every rung the record names is in
    /// `[renditions]` (the refusal names the first unknown one), and a
    /// channel that gets renditions (its own or the default) does not use
    /// [`MASTER_PLAYLIST_NAME`] as its playlist.
    pub fn check_ladder(
        &self,
        ladder: &crate::config::RenditionsConfig,
    ) -> Result<(), InvalidChannel> {
        if let Some(Renditions::Rungs(names)) = &self.renditions
            && let Some(unknown) = names.iter().find(|n| ladder.rung(n).is_none())
        {
            let known: Vec<&str> = ladder.rungs.iter().map(|r| r.name.as_str()).collect();
            return Err(invalid(format!(
                "LivebucketRenditions: rung {unknown} is not in the [renditions] ladder \
                 (it has: {})",
                if known.is_empty() {
                    "no rungs".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        if self.target.playlist_name == MASTER_PLAYLIST_NAME
            && !effective_renditions(self.renditions.as_ref(), ladder).is_empty()
        {
            return Err(master_clash());
        }
        Ok(())
    }
}

fn master_clash() -> InvalidChannel {
    invalid(format!(
        "Target/PlaylistName {MASTER_PLAYLIST_NAME} is the master playlist's name: a channel \
         with renditions needs another playlist name (or LivebucketRenditions none)"
    ))
}

fn check_range(field: &str, value: u32) -> Result<(), InvalidChannel> {
    if FRAG_RANGE.contains(&value) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} is {value}; it must be an integer from {} to {}",
            FRAG_RANGE.start(),
            FRAG_RANGE.end()
        )))
    }
}

/// A channel configuration or name outside the limits; the message names the
/// field. The OSS API answers it as `InvalidArgument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidChannel(pub String);

fn invalid(message: impl Into<String>) -> InvalidChannel {
    InvalidChannel(message.into())
}

/// Text that XML 1.0 can carry and that survives a round trip through a
/// parser's end-of-line normalization ([`is_xml_char`] throughout).
pub(crate) fn is_xml_text(text: &str) -> bool {
    text.chars().all(is_xml_char)
}

/// No control characters but `\t` and `\n`, and none of XML's non-characters.
pub(crate) fn is_xml_char(c: char) -> bool {
    !((c.is_control() && c != '\t' && c != '\n') || c == '\u{FFFE}' || c == '\u{FFFF}')
}

/// A LiveChannel name: the one rule for channel names
/// ([`names::validate_channel`], which also refuses the reserved
/// `.livebucket` and names ending in `.history`; see the module doc).
/// Refusals are `InvalidArgument`.
pub fn validate_channel_name(name: &str) -> Result<(), InvalidChannel> {
    names::validate_channel(name).map_err(|e| invalid(e.to_string()))
}

/// `.livebucket/channels/<channel>.json`
pub fn channel_key(channel: &str) -> String {
    format!("{CHANNELS_PREFIX}{channel}{CHANNEL_SUFFIX}")
}

/// `.livebucket/channels/<channel>.history.json`
pub fn history_key(channel: &str) -> String {
    format!("{CHANNELS_PREFIX}{channel}{HISTORY_SUFFIX}")
}

/// The listing prefix for channels whose names start with `prefix`.
pub fn list_prefix(prefix: &str) -> String {
    format!("{CHANNELS_PREFIX}{prefix}")
}

/// The listing's `start-after` for a ListLiveChannel `marker` (channels after
/// the marker); `None` for an empty marker.
pub fn list_start_after(marker: &str) -> Option<String> {
    (!marker.is_empty()).then(|| channel_key(marker))
}

/// The channel a listed key is the record of; `None` for history records and
/// anything else under the prefix.
pub fn channel_from_key(key: &str) -> Option<&str> {
    let name = key
        .strip_prefix(CHANNELS_PREFIX)?
        .strip_suffix(CHANNEL_SUFFIX)?;
    (validate_channel_name(name).is_ok()).then_some(name)
}

/// One ListLiveChannel page from channel names in listing order, of which the
/// caller fetched up to `max_keys + 1`: the page, and `NextMarker` when more
/// follow.
pub fn paginate(mut names: Vec<String>, max_keys: u16) -> (Vec<String>, Option<String>) {
    let max = usize::from(max_keys);
    if names.len() <= max {
        return (names, None);
    }
    names.truncate(max);
    let next = names.last().cloned();
    (names, next)
}

/// A stored channel: its configuration and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRecord {
    pub name: String,
    pub config: LiveChannelConfig,
    /// Unix seconds of the last PutLiveChannel or PutLiveChannelStatus.
    pub last_modified: i64,
}

impl ChannelRecord {
    /// `Snapshot/NotifyTopic`: the `[events]` endpoint (by name) that gets
    /// this channel's events besides those that get every channel's.
    pub fn notify_topic(&self) -> Option<&str> {
        self.config
            .snapshot
            .as_ref()
            .map(|s| s.notify_topic.as_str())
    }
}

/// The JSON document at [`channel_key`]; the tag is its format version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format")]
pub enum StoredChannel {
    #[serde(rename = "livebucket.channel.v1")]
    V1(ChannelRecord),
}

/// One push: when it started and ended, from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRecord {
    pub start: i64,
    pub end: i64,
    /// `ip:port` of the publisher.
    pub remote_addr: String,
}

/// The JSON document at [`history_key`]: the last [`HISTORY_LEN`] pushes,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format")]
pub enum StoredHistory {
    #[serde(rename = "livebucket.history.v1")]
    V1 { records: Vec<LiveRecord> },
}

/// A record in storage that livebucket cannot use; the HTTP layer logs it and
/// answers `InternalError`.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    #[error("stored record is not valid JSON of a known format: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored record is for channel {found:?}, expected {expected:?}")]
    WrongChannel { expected: String, found: String },
    #[error("stored configuration is invalid: {0}")]
    Invalid(InvalidChannel),
}

pub fn encode_channel(record: &ChannelRecord) -> Result<Vec<u8>, StoredError> {
    Ok(serde_json::to_vec(&StoredChannel::V1(record.clone()))?)
}

/// Reads the record stored at `channel_key(channel)`, checking that it is
/// that channel's and still valid.
pub fn decode_channel(channel: &str, bytes: &[u8]) -> Result<ChannelRecord, StoredError> {
    let StoredChannel::V1(record) = serde_json::from_slice(bytes)?;
    if record.name != channel {
        return Err(StoredError::WrongChannel {
            expected: channel.to_owned(),
            found: record.name,
        });
    }
    record.config.validate().map_err(StoredError::Invalid)?;
    Ok(record)
}

/// Appends a finished push, keeping the last [`HISTORY_LEN`].
pub fn record_push(history: &mut Vec<LiveRecord>, record: LiveRecord) {
    history.push(record);
    let excess = history.len().saturating_sub(HISTORY_LEN);
    history.drain(..excess);
}

pub fn encode_history(records: &[LiveRecord]) -> Result<Vec<u8>, StoredError> {
    Ok(serde_json::to_vec(&StoredHistory::V1 {
        records: records.to_vec(),
    })?)
}

/// Reads a history document, keeping at most the last [`HISTORY_LEN`].
pub fn decode_history(bytes: &[u8]) -> Result<Vec<LiveRecord>, StoredError> {
    let StoredHistory::V1 { mut records } = serde_json::from_slice(bytes)?;
    let excess = records.len().saturating_sub(HISTORY_LEN);
    records.drain(..excess);
    Ok(records)
}

/// GetLiveChannelStat's `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatStatus {
    Idle,
    Live,
    Disabled,
}

impl StatStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StatStatus::Idle => "Idle",
            StatStatus::Live => "Live",
            StatStatus::Disabled => "Disabled",
        }
    }
}

/// What a live publisher looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// Unix seconds the push started.
    pub connected: i64,
    /// `ip:port` of the publisher.
    pub remote_addr: String,
    /// Absent until the stream's metadata is known.
    pub video: Option<VideoStat>,
    pub audio: Option<AudioStat>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoStat {
    pub width: u32,
    pub height: u32,
    pub frame_rate: u32,
    /// Bytes per second, averaged recently (0 just after connecting).
    pub bandwidth: u64,
    pub codec: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioStat {
    pub sample_rate: u32,
    /// Bytes per second.
    pub bandwidth: u64,
    pub codec: String,
}

/// Uploads of a channel the store refuses with a final answer, parked on
/// this node until a change of configuration, keys or bucket lets them
/// through (livebucket's extension to GetLiveChannelStat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedStat {
    /// Jobs parked now (fragments, the playlist, manifests).
    pub uploads: u64,
    /// The S3 error code of the latest refusal (a plain identifier, or
    /// `HTTP_<status>` when the store sent none).
    pub code: String,
    /// Unix seconds the longest-parked upload was first refused.
    pub since: i64,
}

/// GetLiveChannelStat's answer: `Disabled` wins over a session still being
/// dropped, a session makes it `Live`, else `Idle`. Only `Live` carries the
/// session. Parked uploads ([`ChannelStat::with_parked`]) are carried
/// whatever the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStat {
    status: StatStatus,
    session: Option<LiveSession>,
    parked: Option<ParkedStat>,
}

impl ChannelStat {
    pub fn new(configured: ChannelStatus, session: Option<LiveSession>) -> Self {
        match (configured, session) {
            (ChannelStatus::Disabled, _) => Self {
                status: StatStatus::Disabled,
                session: None,
                parked: None,
            },
            (ChannelStatus::Enabled, Some(s)) => Self {
                status: StatStatus::Live,
                session: Some(s),
                parked: None,
            },
            (ChannelStatus::Enabled, None) => Self {
                status: StatStatus::Idle,
                session: None,
                parked: None,
            },
        }
    }

    /// The channel's parked uploads, if any.
    pub fn with_parked(mut self, parked: Option<ParkedStat>) -> Self {
        self.parked = parked;
        self
    }

    pub fn parked(&self) -> Option<&ParkedStat> {
        self.parked.as_ref()
    }

    pub fn status(&self) -> StatStatus {
        self.status
    }

    pub fn session(&self) -> Option<&LiveSession> {
        self.session.as_ref()
    }
}

/// A channel's `PublishUrls/Url` and `PlayUrls/Url`.
///
/// `publish_base` and `play_base` are templates in which `{bucket}` stands
/// for the bucket, e.g. `rtmp://{bucket}.live.example.com/live` and
/// `https://{bucket}.oss.example.com` (OSS's own shapes), or a custom domain
/// without a placeholder. The channel and playlist are appended as
/// percent-encoded path segments.
pub fn channel_urls(
    publish_base: &str,
    play_base: &str,
    bucket: &str,
    channel: &str,
    playlist: &str,
) -> (String, String) {
    use percent_encoding::utf8_percent_encode;
    // RFC 3986 pchar stays; the rest (including `%`, `?`, `#`, `/`) is encoded.
    const SEGMENT: &percent_encoding::AsciiSet = crate::sign::encode::PCHAR;
    let base = |template: &str| {
        template
            .replace("{bucket}", bucket)
            .trim_end_matches('/')
            .to_owned()
    };
    let channel = utf8_percent_encode(channel, SEGMENT);
    (
        format!("{}/{channel}", base(publish_base)),
        format!(
            "{}/{channel}/{}",
            base(play_base),
            utf8_percent_encode(playlist, SEGMENT)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ChannelRecord {
        ChannelRecord {
            name: name.into(),
            config: LiveChannelConfig {
                description: "cam one".into(),
                status: ChannelStatus::Disabled,
                target: HlsTarget {
                    frag_duration: 2,
                    frag_count: 5,
                    playlist_name: "live.m3u8".into(),
                    low_latency: Some(true),
                },
                snapshot: Some(Snapshot {
                    role_name: "role".into(),
                    dest_bucket: "snaps".into(),
                    notify_topic: "topic".into(),
                    interval: 10,
                }),
                retention_secs: Some(86_400),
                renditions: None,
            },
            last_modified: 1_700_000_000,
        }
    }

    #[test]
    fn defaults_are_oss_defaults() {
        let c = LiveChannelConfig::default();
        assert_eq!(c.status, ChannelStatus::Enabled);
        assert_eq!(c.target.frag_duration, 5);
        assert_eq!(c.target.frag_count, 3);
        assert_eq!(c.target.playlist_name, "playlist.m3u8");
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn limits() {
        let ok = |f: &dyn Fn(&mut LiveChannelConfig)| {
            let mut c = record("c").config;
            f(&mut c);
            c.validate()
        };
        assert_eq!(ok(&|c| c.description = "é".repeat(64)), Ok(()));
        assert_eq!(ok(&|c| c.description = "a\tb\nc".into()), Ok(()));
        for (what, edit) in [
            (
                "129 bytes",
                &(|c: &mut LiveChannelConfig| c.description = "a".repeat(129))
                    as &dyn Fn(&mut LiveChannelConfig),
            ),
            ("control char", &|c| c.description = "a\u{1}".into()),
            ("carriage return", &|c| c.description = "a\rb".into()),
            ("frag duration 0", &|c| c.target.frag_duration = 0),
            ("frag duration 101", &|c| c.target.frag_duration = 101),
            ("frag count 0", &|c| c.target.frag_count = 0),
            ("frag count 101", &|c| c.target.frag_count = 101),
            ("playlist suffix", &|c| {
                c.target.playlist_name = "live.m3u".into()
            }),
            ("playlist short", &|c| {
                c.target.playlist_name = ".m3u8".into()
            }),
            ("playlist slash", &|c| {
                c.target.playlist_name = "a/b.m3u8".into()
            }),
            ("playlist long", &|c| {
                c.target.playlist_name = format!("{}.m3u8", "a".repeat(124))
            }),
            ("snapshot bucket", &|c| {
                c.snapshot.as_mut().unwrap().dest_bucket = "Bad_Bucket".into()
            }),
            ("snapshot interval", &|c| {
                c.snapshot.as_mut().unwrap().interval = 0
            }),
            ("snapshot role", &|c| {
                c.snapshot.as_mut().unwrap().role_name = String::new()
            }),
        ] {
            assert!(matches!(ok(edit), Err(InvalidChannel(_))), "{what}");
        }
        assert_eq!(
            ok(&|c| c.target.playlist_name = format!("{}.m3u8", "a".repeat(123))),
            Ok(())
        );
    }

    #[test]
    fn channel_names() {
        for good in ["cam1", "a.b", "x-history", "history", "A_b~c:d@e"] {
            assert_eq!(validate_channel_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            "a b",
            ".livebucket",
            "cam.history",
            "cam?live",
            "a&b=c",
            &"a".repeat(101),
        ] {
            assert!(
                matches!(validate_channel_name(bad), Err(InvalidChannel(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn key_layout() {
        assert_eq!(channel_key("cam1"), ".livebucket/channels/cam1.json");
        assert_eq!(
            history_key("cam1"),
            ".livebucket/channels/cam1.history.json"
        );
        assert_eq!(
            channel_from_key(".livebucket/channels/cam1.json"),
            Some("cam1")
        );
        assert_eq!(
            channel_from_key(".livebucket/channels/cam1.history.json"),
            None
        );
        assert_eq!(channel_from_key(".livebucket/index/cam1.json"), None);
        assert_eq!(channel_from_key(".livebucket/channels/a/b.json"), None);
        assert_eq!(list_prefix("ca"), ".livebucket/channels/ca");
        assert_eq!(list_start_after(""), None);
        assert_eq!(
            list_start_after("cam1").as_deref(),
            Some(".livebucket/channels/cam1.json")
        );
    }

    #[test]
    fn keys_of_valid_names_never_collide() {
        let names = ["a", "a.history", "a.json", "a.history.history", "b", "a.b"];
        let mut keys = Vec::new();
        for n in names.iter().filter(|n| validate_channel_name(n).is_ok()) {
            keys.push(channel_key(n));
            keys.push(history_key(n));
            assert_eq!(channel_from_key(&channel_key(n)), Some(*n));
            assert_eq!(channel_from_key(&history_key(n)), None);
        }
        let len = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), len);
    }

    #[test]
    fn pagination() {
        let names = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
        assert_eq!(paginate(names(2), 2), (names(2), None));
        assert_eq!(paginate(names(3), 2), (names(2), Some("c1".into())));
        assert_eq!(paginate(vec![], 100), (vec![], None));
    }

    #[test]
    fn stored_channel_round_trip_and_format() {
        let r = record("cam1");
        let bytes = encode_channel(&r).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"format":"livebucket.channel.v1","name":"cam1""#),
            "{text}"
        );
        assert_eq!(decode_channel("cam1", &bytes).unwrap(), r);
        assert!(matches!(
            decode_channel("cam2", &bytes),
            Err(StoredError::WrongChannel { .. })
        ));
        // Unknown format, unknown field, invalid config: refused whole.
        let other = text.replace("livebucket.channel.v1", "livebucket.channel.v9");
        assert!(matches!(
            decode_channel("cam1", other.as_bytes()),
            Err(StoredError::Json(_))
        ));
        let extra = text.replace(r#""name":"cam1""#, r#""name":"cam1","x":1"#);
        assert!(matches!(
            decode_channel("cam1", extra.as_bytes()),
            Err(StoredError::Json(_))
        ));
        let bad = text.replace(r#""frag_count":5"#, r#""frag_count":500"#);
        assert!(matches!(
            decode_channel("cam1", bad.as_bytes()),
            Err(StoredError::Invalid(_))
        ));
        assert!(decode_channel("cam1", b"\xff").is_err());
    }

    #[test]
    fn history_keeps_the_last_ten_oldest_first() {
        let mut h = Vec::new();
        for i in 0..13 {
            record_push(
                &mut h,
                LiveRecord {
                    start: i,
                    end: i + 1,
                    remote_addr: format!("10.0.0.1:{i}"),
                },
            );
        }
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.first().unwrap().start, 3);
        assert_eq!(h.last().unwrap().start, 12);
        let bytes = encode_history(&h).unwrap();
        assert!(bytes.starts_with(br#"{"format":"livebucket.history.v1","records":["#));
        assert_eq!(decode_history(&bytes).unwrap(), h);
        // A longer stored list (hand-edited) is cut to the last ten.
        let mut long = h.clone();
        long.insert(
            0,
            LiveRecord {
                start: 0,
                end: 1,
                remote_addr: "x".into(),
            },
        );
        assert_eq!(decode_history(&encode_history(&long).unwrap()).unwrap(), h);
    }

    #[test]
    fn stat_status() {
        let s = LiveSession {
            connected: 1,
            remote_addr: "1.2.3.4:5".into(),
            video: None,
            audio: None,
        };
        let stat = ChannelStat::new(ChannelStatus::Enabled, Some(s.clone()));
        assert_eq!(
            (stat.status(), stat.session()),
            (StatStatus::Live, Some(&s))
        );
        let stat = ChannelStat::new(ChannelStatus::Disabled, Some(s));
        assert_eq!(
            (stat.status(), stat.session()),
            (StatStatus::Disabled, None)
        );
        let stat = ChannelStat::new(ChannelStatus::Enabled, None);
        assert_eq!(stat.status().as_str(), "Idle");
    }

    #[test]
    fn urls() {
        assert_eq!(
            channel_urls(
                "rtmp://{bucket}.live.example.com/live",
                "https://{bucket}.oss.example.com/",
                "demo",
                "cam:1",
                "live.m3u8"
            ),
            (
                "rtmp://demo.live.example.com/live/cam:1".to_string(),
                "https://demo.oss.example.com/cam:1/live.m3u8".to_string()
            )
        );
        let (publish, play) = channel_urls(
            "rtmp://h/live",
            "https://cdn.example.org",
            "demo",
            "a#b?c%",
            "p q.m3u8",
        );
        assert_eq!(publish, "rtmp://h/live/a%23b%3Fc%25");
        assert_eq!(play, "https://cdn.example.org/a%23b%3Fc%25/p%20q.m3u8");
    }
}

#[cfg(test)]
mod renditions_tests {
    use super::*;
    use crate::config::{RenditionsConfig, Rung};

    fn with(renditions: Option<Renditions>, playlist: &str) -> LiveChannelConfig {
        let mut c = LiveChannelConfig {
            renditions,
            ..LiveChannelConfig::default()
        };
        c.target.playlist_name = playlist.to_owned();
        c
    }

    fn rungs(names: &[&str]) -> Option<Renditions> {
        Some(Renditions::Rungs(
            names.iter().map(|n| (*n).to_owned()).collect(),
        ))
    }

    fn ladder(names: &[&str], default: &[&str]) -> RenditionsConfig {
        RenditionsConfig {
            rungs: names
                .iter()
                .map(|n| Rung {
                    name: (*n).to_owned(),
                    height: Some(360),
                    video_kbps: Some(800),
                    audio_kbps: 96,
                    max_fps: None,
                })
                .collect(),
            default: default.iter().map(|n| (*n).to_owned()).collect(),
            ..RenditionsConfig::default()
        }
    }

    #[test]
    fn text_parses_and_renders_back() {
        assert_eq!(Renditions::parse(""), None);
        assert_eq!(Renditions::parse("none"), Some(Renditions::None));
        assert_eq!(Renditions::parse("720p,360p"), rungs(&["720p", "360p"]));
        for r in [
            Renditions::None,
            Renditions::Rungs(vec!["a".into(), "b_2".into()]),
        ] {
            assert_eq!(Renditions::parse(&r.to_text()), Some(r));
        }
    }

    #[test]
    fn names_are_checked_without_the_ladder() {
        let ok = |r| with(r, DEFAULT_PLAYLIST_NAME).validate();
        assert_eq!(ok(None), Ok(()));
        assert_eq!(ok(Some(Renditions::None)), Ok(()));
        assert_eq!(ok(rungs(&["720p", "audio"])), Ok(()));
        for bad in [
            vec!["720p", "720p"],
            vec!["720P"],
            vec!["a b"],
            vec![""],
            vec!["720p", ""],
            vec!["source"],
            vec!["master"],
            vec!["../x"],
            vec!["none", "720p"],
            vec![],
        ] {
            let refused = ok(rungs(&bad));
            assert!(
                refused
                    .as_ref()
                    .is_err_and(|e| e.0.contains("LivebucketRenditions")),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(
            with(rungs(&["720p"]), MASTER_PLAYLIST_NAME)
                .validate()
                .is_err_and(|e| e.0.contains("master.m3u8"))
        );
        // `none` with the master's name is fine: no master is ever written.
        assert_eq!(
            with(Some(Renditions::None), MASTER_PLAYLIST_NAME).validate(),
            Ok(())
        );
    }

    #[test]
    fn the_ladder_decides_which_names_exist() {
        let l = ladder(&["720p", "360p"], &[]);
        assert_eq!(with(rungs(&["360p"]), "p.m3u8").check_ladder(&l), Ok(()));
        let refused = with(rungs(&["360p", "1080p"]), "p.m3u8").check_ladder(&l);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.0.contains("1080p") && e.0.contains("720p, 360p")),
            "{refused:?}"
        );
        assert!(
            with(rungs(&["x"]), "p.m3u8")
                .check_ladder(&RenditionsConfig::default())
                .is_err_and(|e| e.0.contains("no rungs"))
        );
        // The default ladder counts against the master's name; `none` or
        // no default does not.
        let defaulted = ladder(&["360p"], &["360p"]);
        assert!(
            with(None, MASTER_PLAYLIST_NAME)
                .check_ladder(&defaulted)
                .is_err()
        );
        assert_eq!(
            with(Some(Renditions::None), MASTER_PLAYLIST_NAME).check_ladder(&defaulted),
            Ok(())
        );
        assert_eq!(with(None, MASTER_PLAYLIST_NAME).check_ladder(&l), Ok(()));
    }

    #[test]
    fn effective_rungs_follow_the_record_then_the_default() {
        let l = ladder(&["720p", "360p"], &["360p"]);
        assert_eq!(effective_renditions(None, &l), vec!["360p".to_owned()]);
        assert!(effective_renditions(Some(&Renditions::None), &l).is_empty());
        assert_eq!(
            effective_renditions(rungs(&["720p"]).as_ref(), &l),
            vec!["720p".to_owned()]
        );
    }
}
