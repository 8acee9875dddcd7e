//! What a session is: its record ([`SessionMeta`]), its publisher, its ids
//! (the secret session id, and the [`recording_id`] and [`log_tag`] shown
//! instead), and the errors of the session store.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::resume::Resume;
use crate::hls::LiveShape;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionMeta {
    pub id: String,
    pub bucket: String,
    pub channel: String,
    /// Live playlist object name (`index.m3u8` or the OSS `playlistName`).
    pub playlist: String,
    /// The key that signed the push; it also writes the objects.
    pub key_id: String,
    /// nginx's client id and the public stream name, which identify the
    /// publisher in `on_update` and `on_publish_done`.
    pub clientid: String,
    pub name: String,
    pub addr: String,
    pub started_ms: u64,
    /// The live playlist's window and target duration for this push, from
    /// its channel's `Target`; `None` (and sessions saved before channels
    /// existed): the `[live]` defaults.
    #[serde(default)]
    pub shape: Option<LiveShape>,
    /// The channel's `Target/LowLatency` when the push began; `None`:
    /// `[live] low_latency`.
    #[serde(default)]
    pub low_latency: Option<bool>,
    /// The channel's snapshots, if its `Snapshot` asks for them.
    #[serde(default)]
    pub snapshot: Option<crate::snapshot::SnapshotPlan>,
    /// In a cluster: the channel's playlist as another node last stored it,
    /// which this session continues (see [`Resume`]).
    #[serde(default)]
    pub resume: Option<Box<Resume>>,
    /// The push URL's grant (`GrantTag::fingerprint`), which `on_update` and
    /// `on_publish_done` must present again; empty in sessions recorded
    /// before it was kept (then the bucket and key must match).
    #[serde(default)]
    pub grant: String,
    /// The channel record's `Snapshot/NotifyTopic` when the push began: the
    /// `[events]` endpoint (by name) that gets this session's events besides
    /// the endpoints that get every channel's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_topic: Option<String>,
    /// A rendition's session: the transcoder's publish of one rung of the
    /// source session `of`. Its `channel` is the variant's, `CHANNEL/<rung>`
    /// (so its keys, live window, parts and manifests are the variant's);
    /// `None` for a streamer's own session. See `docs/renditions.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantOf>,
    /// The rungs this (source) session's transcoders produce, as admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<String>,
}

/// Which source session and rung a rendition's session transcodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VariantOf {
    /// The source session's id.
    pub of: String,
    /// The source's channel (the variant's `channel` without `/<rung>`).
    pub channel: String,
    /// The rung's name (`[[renditions.rungs]] name`).
    pub rung: String,
}

impl SessionMeta {
    /// A rendition's session (a transcoder's publish of one rung), not a
    /// streamer's: it adds no push to the channel's history, sends no
    /// `stream.*` or `recording.ready` event of its own (the source's speak
    /// for the channel) and is not the channel's publisher in
    /// GetLiveChannelStat (its `channel` is the variant's, `CHANNEL/<rung>`).
    pub fn is_rendition(&self) -> bool {
        self.variant.is_some()
    }

    /// The part target (ms) of this push's LL-HLS parts, or `None` when
    /// low latency is off: as its channel's `Target/LowLatency` says, else
    /// as `[live] low_latency` does.
    pub fn low_latency_or(&self, live: &crate::config::LiveConfig) -> Option<u64> {
        self.low_latency
            .unwrap_or(live.low_latency)
            .then_some(live.part_target_ms)
    }

    /// This session's live window and target duration: its channel's, or
    /// the `[live]` defaults.
    pub fn shape_or(&self, live: &crate::config::LiveConfig) -> LiveShape {
        self.shape.unwrap_or(LiveShape {
            window_segments: live.window_segments,
            target_duration_secs: live.target_duration_secs,
        })
    }
}

/// A publisher as a callback of a running push names it: nginx's client id
/// and stream name, and the grant its URL verified to.
#[derive(Debug, Clone, Copy)]
pub struct Publisher<'a> {
    pub clientid: &'a str,
    pub name: &'a str,
    pub bucket: &'a str,
    pub key_id: &'a str,
    pub grant: &'a str,
}

/// Whether `who` is the publisher `meta` approved: same client id and name
/// (which alone repeat after nginx restarts its client id counter, and
/// across buckets), and the same grant (or, for a session recorded without
/// one, the same bucket and key).
pub fn is_publisher(meta: &SessionMeta, who: &Publisher<'_>) -> bool {
    meta.clientid == who.clientid
        && meta.name == who.name
        && if meta.grant.is_empty() {
            meta.bucket == who.bucket && meta.key_id == who.key_id
        } else {
            meta.grant == who.grant
        }
}

/// The id a session's objects in the bucket carry (VOD manifest keys and
/// bodies) and the logs show: 32 hex digits of SHA-256 over a label and the
/// session id. Session ids name a session's stream in nginx's internal HLS
/// application; this id cannot be turned back into one (the session id is
/// 128 random bits), so bucket readers and log readers learn nothing that
/// lets them publish into a session.
pub fn recording_id(session: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"livebucket recording id\0");
    h.update(session.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// A session in logs: the first 8 digits of its [`recording_id`], enough to
/// follow one session through a log and useless for publishing into it.
pub fn log_tag(session: &str) -> String {
    let mut id = recording_id(session);
    id.truncate(8);
    id
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("channel {bucket}/{channel} already has a live publisher")]
    ChannelLive { bucket: String, channel: String },
    #[error("cannot persist session state in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn new_session_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `name` can be a session id (and so a directory we may upload).
pub fn looks_like_id(name: &str) -> bool {
    name.len() == 32
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod low_latency_tests {
    use crate::config::LiveConfig;

    #[test]
    fn a_channel_overrides_the_default() {
        let mut meta: super::SessionMeta = serde_json::from_str(
            r#"{"id":"s","bucket":"b","channel":"c","playlist":"index.m3u8","key_id":"k",
                "clientid":"1","name":"c","addr":"a","started_ms":0}"#,
        )
        .unwrap();
        let mut live = LiveConfig::default();
        assert_eq!(meta.low_latency_or(&live), Some(500), "on by default");
        live.low_latency = false;
        assert_eq!(meta.low_latency_or(&live), None);
        live.low_latency = true;
        meta.low_latency = Some(false);
        assert_eq!(meta.low_latency_or(&live), None);
        live.low_latency = false;
        meta.low_latency = Some(true);
        assert_eq!(meta.low_latency_or(&live), Some(500));
    }
}
