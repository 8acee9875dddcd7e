//! Channels, as the OSS LiveChannel API manages them: records in the bucket
//! under `.livebucket/channels/` ([`crate::channels::record`] owns their format
//! and keys), read and written here, and what a channel's record means for a
//! push ([`plan_push`]).
//!
//! The records live in the bucket so they survive the node and any node that
//! serves the bucket sees them. A write-through cache answers `on_publish`
//! and `on_update` without a round trip to S3 after the first read of a
//! channel. In a cluster every node caches, so each write is announced
//! (`announce_to`) and the other nodes `forget` their copy.
//!
//! Any node may change a record (the OSS API is served everywhere), and
//! every change is a read-modify-write ([`ChannelStore::update`]). Where the
//! store honours conditional PUTs (Ceph RGW, AWS S3, MinIO; found at start
//! by [`ChannelStore::detect_conditional`], never assumed) each write-back
//! is made `If-Match` the ETag that was read, or `If-None-Match: *` for a
//! record that did not exist, so a concurrent change makes it fail instead
//! of being overwritten; the change is then applied again to a fresh
//! read, at most [`MAX_WRITE_ATTEMPTS`] times, after which the caller gets
//! [`ChannelError::Conflict`]. Garage ignores those headers: there the
//! write is plain, as before, and two writers of one record at the same
//! moment can still lose one change (the last write wins), so the rule
//! stays one writer at a time. A channel's push history is updated the same
//! way.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::OnceCell;

use crate::channels::record::{
    self as model, ChannelRecord, ChannelStatus, LiveChannelConfig, LiveRecord,
};
use crate::config::{Config, UnknownChannels};
use crate::hls::LiveShape;
use crate::store::{Conditional, Store, StoreError};

pub mod record;
mod write;

pub use write::{MAX_WRITE_ATTEMPTS, WriteBack, probe_target, write_back};

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record of {channel} is unreadable: {message}")]
    Corrupt { channel: String, message: String },
    /// Every attempt lost a race to another writer of the same object.
    #[error("{channel}: another writer changed it during each of {MAX_WRITE_ATTEMPTS} attempts")]
    Conflict { channel: String },
}

type CacheKey = (String, String);

/// A cached record and the ETag of the object it came from (`None` when the
/// store did not say, or the record does not exist).
#[derive(Clone)]
struct Cached {
    record: Option<ChannelRecord>,
    etag: Option<String>,
}

/// Channel records in their buckets, with a write-through cache.
pub struct ChannelStore {
    store: Store,
    cache: Mutex<HashMap<CacheKey, Cached>>,
    /// In a cluster: told (bucket, channel) after every write of a record,
    /// so the other nodes drop their cached copies.
    changes: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<CacheKey>>,
    /// Whether the store honours conditional PUTs; probed once (the first
    /// write waits for it if the start-up probe has not answered yet).
    conditional: OnceCell<Conditional>,
}

impl ChannelStore {
    pub fn new(store: Store) -> ChannelStore {
        ChannelStore {
            store,
            cache: Mutex::new(HashMap::new()),
            changes: std::sync::OnceLock::new(),
            conditional: OnceCell::new(),
        }
    }

    /// Where this store announces its writes (set once, by the cluster).
    pub fn announce_to(&self, tx: tokio::sync::mpsc::UnboundedSender<CacheKey>) {
        let _ = self.changes.set(tx);
    }

    fn announce(&self, bucket: &str, channel: &str) {
        if let Some(tx) = self.changes.get() {
            let _ = tx.send((bucket.to_owned(), channel.to_owned()));
        }
    }

    /// Drops the cached record: another node changed it.
    pub fn forget(&self, bucket: &str, channel: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(bucket.to_owned(), channel.to_owned()));
    }

    /// Drops every cached record (changes may have been missed).
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The cached record without a lookup: `Some(None)` for a channel known
    /// not to exist, `None` when it is not cached.
    pub fn cached(&self, bucket: &str, channel: &str) -> Option<Option<ChannelRecord>> {
        self.cached_entry(bucket, channel).map(|c| c.record)
    }

    fn cached_entry(&self, bucket: &str, channel: &str) -> Option<Cached> {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(bucket.to_owned(), channel.to_owned()))
            .cloned()
    }

    fn remember(&self, bucket: &str, channel: &str, cached: Cached) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((bucket.to_owned(), channel.to_owned()), cached);
    }

    /// The channel's record; `None` if it was never created (or deleted).
    pub async fn get(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
    ) -> Result<Option<ChannelRecord>, ChannelError> {
        if let Some(hit) = self.cached(bucket, channel) {
            return Ok(hit);
        }
        Ok(self.read(key_id, bucket, channel).await?.record)
    }

    /// Reads the record from the store (never the cache) and caches it.
    async fn read(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
    ) -> Result<Cached, ChannelError> {
        let cached = match self
            .store
            .get_versioned(key_id, bucket, &model::channel_key(channel))
            .await
        {
            Ok(v) => Cached {
                record: Some(model::decode_channel(channel, &v.body).map_err(|e| {
                    ChannelError::Corrupt {
                        channel: channel.to_owned(),
                        message: e.to_string(),
                    }
                })?),
                etag: v.etag,
            },
            Err(StoreError::NotFound { .. }) => Cached {
                record: None,
                etag: None,
            },
            Err(e) => return Err(e.into()),
        };
        self.remember(bucket, channel, cached.clone());
        Ok(cached)
    }

    /// Forgets a channel: its record and its history. Its media stays.
    pub async fn delete(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
    ) -> Result<(), ChannelError> {
        self.store
            .delete(key_id, bucket, &model::channel_key(channel))
            .await?;
        self.store
            .delete(key_id, bucket, &model::history_key(channel))
            .await?;
        self.remember(
            bucket,
            channel,
            Cached {
                record: None,
                etag: None,
            },
        );
        self.announce(bucket, channel);
        Ok(())
    }

    /// One ListLiveChannel page: records of channels whose names start with
    /// `prefix`, after `marker`, at most `max_keys`, and the next marker.
    pub async fn list(
        &self,
        key_id: &str,
        bucket: &str,
        prefix: &str,
        marker: &str,
        max_keys: u16,
    ) -> Result<(Vec<ChannelRecord>, Option<String>), ChannelError> {
        let start_after = model::list_start_after(marker);
        let want = usize::from(max_keys) + 1;
        let seen = std::sync::atomic::AtomicUsize::new(0);
        let keys = self
            .store
            .list(
                key_id,
                bucket,
                &model::list_prefix(prefix),
                start_after.as_deref(),
                |k| {
                    // Stop once one more channel than a page is listed.
                    model::channel_from_key(k).is_some()
                        && seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= want
                },
            )
            .await?;
        let names: Vec<String> = keys
            .iter()
            .filter_map(|k| model::channel_from_key(k))
            .map(str::to_owned)
            .collect();
        let (page, next) = model::paginate(names, max_keys);
        let mut records = Vec::with_capacity(page.len());
        for name in page {
            if let Some(r) = self.get(key_id, bucket, &name).await? {
                records.push(r);
            }
        }
        Ok((records, next))
    }

    /// The last pushes of a channel, oldest first.
    pub async fn history(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
    ) -> Result<Vec<LiveRecord>, ChannelError> {
        match self
            .store
            .get(key_id, bucket, &model::history_key(channel))
            .await
        {
            Ok(bytes) => model::decode_history(&bytes).map_err(|e| ChannelError::Corrupt {
                channel: channel.to_owned(),
                message: e.to_string(),
            }),
            Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Why a channel takes no push; auth maps it into its push refusal
/// (`auth::reject::Reject`), with the same message and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `channels.unknown = "refuse"` and the channel was never created.
    #[error("no such channel (channels.unknown = \"refuse\")")]
    NoSuchChannel,
    /// The channel's status is `disabled` (PutLiveChannelStatus).
    #[error("the channel is disabled")]
    ChannelDisabled,
}

/// What a push to a channel gets, decided from its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPlan {
    /// The live playlist's object name, unless the push URL names one.
    pub playlist: String,
    /// The live window and target duration; `None`: `[live]`'s.
    pub shape: Option<LiveShape>,
    /// Where nginx relays the approved stream (`…/<session id>` is appended).
    pub relay_url: String,
    /// The channel's `Target/LowLatency`; `None`: `[live] low_latency`.
    pub low_latency: Option<bool>,
}

/// The decision for a push to a channel whose record is `record`: refused
/// while disabled, refused when unknown under `channels.unknown = "refuse"`,
/// otherwise the channel's playlist name, window (`FragCount`, at least 3;
/// the live window also keeps three target durations, RFC 8216 §6.2.2), the
/// internal application whose `hls_fragment` is closest to `FragDuration`
/// ([`fragment_app`]) and, as target duration, that application's fragment
/// length (`[live] target_duration_secs` when every push goes to the one
/// application of `relay_url`). Nothing exceeds it: nginx-rtmp's relay
/// starts at a keyframe (`wait_key`/`wait_video` in the public
/// application) and `hls_max_fragment` cuts a fragment before it rounds
/// above its application's length (`scripts/render-nginx-conf`).
pub fn plan_push(record: Option<&ChannelRecord>, cfg: &Config) -> Result<PushPlan, Refused> {
    let default = PushPlan {
        playlist: crate::names::DEFAULT_PLAYLIST.to_owned(),
        shape: None,
        relay_url: cfg.nginx.relay_url.trim_end_matches('/').to_owned(),
        low_latency: None,
    };
    let Some(record) = record else {
        return match cfg.channels.unknown {
            UnknownChannels::Create => Ok(default),
            UnknownChannels::Refuse => Err(Refused::NoSuchChannel),
        };
    };
    let c: &LiveChannelConfig = &record.config;
    if c.status == ChannelStatus::Disabled {
        return Err(Refused::ChannelDisabled);
    }
    let app = fragment_app(&cfg.nginx.fragment_durations, c.target.frag_duration);
    Ok(PushPlan {
        playlist: c.target.playlist_name.clone(),
        shape: Some(LiveShape {
            window_segments: (c.target.frag_count as usize).max(3),
            target_duration_secs: app.map_or(cfg.live.target_duration_secs, u64::from),
        }),
        relay_url: relay_for(&default.relay_url, app),
        low_latency: c.target.low_latency,
    })
}

/// The fragment length (seconds) of the internal application for a
/// channel's `frag` among the configured `durations`: the longest not above
/// `frag` (the shortest if all are); `None` when none is configured.
pub fn fragment_app(durations: &[u32], frag: u32) -> Option<u32> {
    durations
        .iter()
        .copied()
        .filter(|&d| d <= frag)
        .max()
        .or_else(|| durations.iter().copied().min())
}

/// The relay URL of the internal application with fragment length `app`
/// ([`fragment_app`]): `<relay app>_<N>s`, or `relay_url` itself for `None`.
pub fn relay_for(relay_url: &str, app: Option<u32>) -> String {
    match app {
        Some(n) => format!("{relay_url}_{n}s"),
        None => relay_url.to_owned(),
    }
}

/// Whether a live push may go on: its channel was not disabled since.
pub fn still_allowed(record: Option<&ChannelRecord>) -> Result<(), Refused> {
    match record {
        Some(r) if r.config.status == ChannelStatus::Disabled => Err(Refused::ChannelDisabled),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::record::HlsTarget;

    fn cfg(extra: &str) -> Config {
        crate::config::for_tests(extra)
    }

    fn record(status: ChannelStatus, frag_duration: u32, frag_count: u32) -> ChannelRecord {
        ChannelRecord {
            name: "cam".into(),
            config: LiveChannelConfig {
                status,
                target: HlsTarget {
                    frag_duration,
                    frag_count,
                    playlist_name: "live.m3u8".into(),
                    low_latency: None,
                },
                ..LiveChannelConfig::default()
            },
            last_modified: 0,
        }
    }

    #[test]
    fn unknown_channels_follow_the_policy() {
        let plan = plan_push(None, &cfg("")).unwrap();
        assert_eq!(plan.playlist, "index.m3u8");
        assert_eq!(plan.shape, None);
        assert_eq!(plan.relay_url, "rtmp://127.0.0.1:1935/hls");
        assert_eq!(
            plan_push(None, &cfg("[channels]\nunknown = \"refuse\"")),
            Err(Refused::NoSuchChannel)
        );
    }

    #[test]
    fn a_channel_shapes_its_push() {
        let plan = plan_push(Some(&record(ChannelStatus::Enabled, 5, 4)), &cfg("")).unwrap();
        assert_eq!(plan.playlist, "live.m3u8");
        // The target duration is the application's fragment, not more.
        assert_eq!(
            plan.shape,
            Some(LiveShape {
                window_segments: 4,
                target_duration_secs: 5
            })
        );
        assert_eq!(plan.relay_url, "rtmp://127.0.0.1:1935/hls_5s");
        assert_eq!(plan.low_latency, None, "not given: [live]'s");
        let mut ll = record(ChannelStatus::Enabled, 5, 4);
        ll.config.target.low_latency = Some(false);
        let plan = plan_push(Some(&ll), &cfg("")).unwrap();
        assert_eq!(plan.low_latency, Some(false));
        // Short windows keep three segments.
        let plan = plan_push(Some(&record(ChannelStatus::Enabled, 1, 1)), &cfg("")).unwrap();
        assert_eq!(
            plan.shape,
            Some(LiveShape {
                window_segments: 3,
                target_duration_secs: 1
            })
        );
        // FragDuration 7 goes to hls_6s: its target is 6, not 7.
        let plan = plan_push(Some(&record(ChannelStatus::Enabled, 7, 3)), &cfg("")).unwrap();
        assert_eq!(plan.relay_url, "rtmp://127.0.0.1:1935/hls_6s");
        assert_eq!(plan.shape.map(|s| s.target_duration_secs), Some(6));
        // Without per-length applications, the one application's target.
        let mut one = cfg("[live]\ntarget_duration_secs = 3\n");
        one.raw.nginx.fragment_durations.clear();
        let plan = plan_push(Some(&record(ChannelStatus::Enabled, 5, 3)), &one).unwrap();
        assert_eq!(plan.relay_url, "rtmp://127.0.0.1:1935/hls");
        assert_eq!(plan.shape.map(|s| s.target_duration_secs), Some(3));
        assert_eq!(
            plan_push(Some(&record(ChannelStatus::Disabled, 5, 3)), &cfg("")),
            Err(Refused::ChannelDisabled)
        );
    }

    #[test]
    fn relay_picks_the_closest_application() {
        let d = [1, 2, 3, 4, 5, 6, 8, 10];
        let relay = |d: &[u32], frag| relay_for("r/hls", fragment_app(d, frag));
        assert_eq!(relay(&d, 7), "r/hls_6s");
        assert_eq!(relay(&d, 100), "r/hls_10s");
        assert_eq!(relay(&[5, 10], 1), "r/hls_5s");
        assert_eq!(relay(&[], 5), "r/hls");
    }
}
