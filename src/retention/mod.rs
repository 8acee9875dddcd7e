//! Retention: recordings older than their channel's period are deleted by
//! livebucket itself, on any S3 (no bucket lifecycle rules needed).
//!
//! A channel's period is its record's `RetentionSeconds`, else `[retention]
//! default_period_secs`; 0 keeps everything. Every `interval_secs` a sweep
//! walks each bucket an enabled key names (and, for keys allowed `"*"`,
//! every bucket ListBuckets shows them), and in it every channel: the
//! top-level names of the bucket and of the VOD index.
//! For one channel the driver here lists and reads what may have expired
//! (bounded per round), [`plan::plan`] decides, and the driver executes the
//! plan's steps in order: manifests trimmed (PUT) or deleted and stored
//! playlists deleted first, then fragments, LL-HLS parts and snapshots, in
//! DeleteObjects batches of `batch_size` keys (one DELETE per key where a
//! store refuses DeleteObjects). Rounds repeat until a plan is empty.
//!
//! A channel's listings are delimited, so they hold only its own objects.
//! Its variants (a rendition's `CHANNEL/<rung>/…` and
//! `.livebucket/index/CHANNEL/<rung>/…`; the rung names found under either)
//! are then swept the same way, each as a channel of its own, with the
//! channel's period, kept while the channel is live or the variant is still
//! being stored here. Last, `CHANNEL/master.m3u8` goes once the channel is
//! not live and none of the playlists it names is left.
//!
//! # Guarantees
//!
//! - No manifest, and so no VOD answer built from manifests, names a deleted
//!   fragment, at any moment: see [`plan`]'s invariants. VOD's cache of
//!   closed ranges is not trusted past the cutoff either
//!   ([`crate::vod::RangeCache::get`] takes the oldest time kept).
//! - A channel live on this node, still being stored here, or live on
//!   another node (etcd's `live/` key, the same source as
//!   `Cluster::live_elsewhere`) keeps its newest recording's newest manifest
//!   chunk and everything after its start; the recording's earlier chunks
//!   (closed: the pipeline never writes them again) go whole once expired
//!   and older than twice the live window ([`plan::live_guard_ms`]). When etcd
//!   cannot tell, the channel is skipped.
//! - A crash mid-sweep leaves the bucket consistent (the plan's order), and
//!   the next sweep, started from scratch, finishes the work: no cursor is
//!   kept, because planning again over what is left plans exactly the rest.
//! - In cluster mode one node sweeps a channel at a time: it holds the
//!   channel's `sweep/` key in etcd on its lease while it does.
//!
//! The one race left is a session whose fragments are older than the period
//! when their manifest is written, which only a period shorter than the
//! upload backlog can give.

pub(crate) mod plan;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::channels::record::MASTER_PLAYLIST_NAME;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::index::Manifest;
use crate::layout;
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::store::{ListedObject, Listing, Store, StoreError};
use plan::{Found, Inputs, Listed, PlaylistSeen, Step, Where};

/// Most objects of each kind listed (and manifests read) per round; the
/// rounds repeat until nothing is left, so memory stays bounded on a
/// bucket that never had retention before.
pub(crate) const ROUND_OBJECTS: usize = 10_000;
/// Most manifests read per round.
pub(crate) const ROUND_MANIFESTS: usize = 500;
/// The largest stored playlist read to find the fragments it names.
const MAX_PLAYLIST_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("channel record: {0}")]
    Channel(#[from] crate::channels::ChannelError),
    #[error("manifest {key} is unreadable: {message}")]
    BadManifest { key: String, message: String },
    #[error("whether the channel is live on another node cannot be confirmed (etcd)")]
    LiveUnknown,
    #[error("etcd: {0}")]
    Etcd(String),
}

impl RetentionError {
    fn reason(&self) -> &'static str {
        match self {
            RetentionError::Store(_) => "store",
            RetentionError::Channel(_) => "channel_record",
            RetentionError::BadManifest { .. } => "bad_manifest",
            RetentionError::LiveUnknown => "live_unknown",
            RetentionError::Etcd(_) => "etcd",
        }
    }
}

/// What one sweep did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Report {
    pub dry_run: bool,
    pub channels: usize,
    pub objects: usize,
    pub bytes: u64,
    pub manifests_trimmed: usize,
    /// Every key deleted (or that would be), in order; only kept for dry
    /// runs and sweeps asked for on the operator listener.
    pub keys: Vec<String>,
    pub errors: Vec<String>,
    /// Channels skipped because they are swept by another node now.
    pub busy: Vec<String>,
}

/// One channel or variant a sweep plans for.
struct Swept<'a> {
    /// `CHANNEL`, or a variant's `CHANNEL/<rung>`.
    channel: String,
    /// The channel whose record, period and liveness apply (`CHANNEL`).
    source: &'a str,
    /// Where its snapshots are; `None` for a variant (it takes none).
    snapshots_in: Option<&'a str>,
    /// Playlist names kept while live.
    live_playlists: Vec<String>,
}

/// How a sweep runs.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// List and log, delete nothing.
    dry_run: bool,
    /// Every key deleted goes into the report (always in a dry run).
    keep_keys: bool,
}

/// The sweep's dependencies.
pub(crate) struct Retention {
    config: RwLock<Arc<Config>>,
    store: Store,
    channels: Arc<crate::channels::ChannelStore>,
    sessions: Arc<Sessions>,
    cluster: Option<Arc<Cluster>>,
    metrics: Arc<Metrics>,
    /// One sweep at a time on this node (the periodic one and one asked for).
    running: tokio::sync::Mutex<()>,
}

impl Retention {
    pub(crate) fn new(
        config: Arc<Config>,
        store: Store,
        channels: Arc<crate::channels::ChannelStore>,
        sessions: Arc<Sessions>,
        cluster: Option<Arc<Cluster>>,
        metrics: Arc<Metrics>,
    ) -> Retention {
        Retention {
            config: RwLock::new(config),
            store,
            channels,
            sessions,
            cluster,
            metrics,
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes a reloaded configuration (periods, batch size, dry run).
    pub(crate) fn set_config(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sweeps every `interval_secs` (the first one interval after start)
    /// until `cancel`.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let wait = Duration::from_secs(self.config().retention.interval_secs);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let dry_run = self.config().retention.dry_run;
            let report = self.sweep(dry_run, false).await;
            if !report.errors.is_empty() {
                warn!(errors = report.errors.len(), first = %report.errors[0], "retention sweep had errors; the next sweep tries again");
            }
        }
    }

    /// One sweep of every bucket; `keep_keys`: list every key in the
    /// report (always in a dry run).
    pub(crate) async fn sweep(&self, dry_run: bool, keep_keys: bool) -> Report {
        let _one = self.running.lock().await;
        let cfg = self.config();
        let started = Instant::now();
        let mut report = Report {
            dry_run,
            ..Report::default()
        };
        let (mut targets, wildcard) = buckets(&cfg);
        for key_id in wildcard {
            match self.store.list_buckets(&key_id).await {
                Ok(names) => {
                    for b in names {
                        if !targets.iter().any(|(_, seen)| *seen == b) {
                            targets.push((key_id.clone(), b));
                        }
                    }
                }
                Err(e) => self.note_error(&mut report, "*", "", &e.into()),
            }
        }
        for (key_id, bucket) in targets {
            let channels = match self.channels_of(&key_id, &bucket).await {
                Ok(c) => c,
                Err(e) => {
                    self.note_error(&mut report, &bucket, "", &e);
                    continue;
                }
            };
            for channel in channels {
                report.channels += 1;
                let span = info_span!("retention", bucket = %bucket, stream = %channel);
                let swept = self
                    .sweep_channel(
                        &cfg,
                        &key_id,
                        &bucket,
                        &channel,
                        Mode {
                            dry_run,
                            keep_keys: keep_keys || dry_run,
                        },
                        &mut report,
                    )
                    .instrument(span)
                    .await;
                if let Err(e) = swept {
                    self.note_error(&mut report, &bucket, &channel, &e);
                }
            }
        }
        let outcome = match (dry_run, report.errors.is_empty()) {
            (true, _) => "dry_run",
            (false, true) => "ok",
            (false, false) => "errors",
        };
        self.metrics
            .inc("livebucket_retention_sweeps_total", outcome);
        self.metrics
            .observe("livebucket_retention_sweep_seconds", "", started.elapsed());
        info!(
            dry_run,
            channels = report.channels,
            objects = report.objects,
            bytes = report.bytes,
            errors = report.errors.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "retention sweep done"
        );
        report
    }

    fn note_error(&self, report: &mut Report, bucket: &str, channel: &str, e: &RetentionError) {
        self.metrics
            .inc("livebucket_retention_errors_total", e.reason());
        warn!(bucket, stream = channel, error = %e, "retention sweep of the channel stopped");
        report.errors.push(format!("{bucket}/{channel}: {e}"));
    }

    /// Channel names in a bucket: its top-level "directories" and the VOD
    /// index's, valid channel names only.
    async fn channels_of(
        &self,
        key_id: &str,
        bucket: &str,
    ) -> Result<BTreeSet<String>, RetentionError> {
        let mut names: BTreeSet<String> = self
            .store
            .list_dirs(key_id, bucket, "")
            .await?
            .into_iter()
            .collect();
        names.extend(
            self.store
                .list_dirs(key_id, bucket, layout::INDEX_PREFIX)
                .await?,
        );
        names.retain(|n| crate::names::validate_channel(n).is_ok());
        Ok(names)
    }

    /// Whether the channel is live or still being stored (here), or live
    /// on another node.
    async fn live(&self, bucket: &str, channel: &str) -> Result<bool, RetentionError> {
        if !self.sessions.known_of(bucket, channel).is_empty() {
            return Ok(true);
        }
        let Some(cluster) = &self.cluster else {
            return Ok(false);
        };
        match cluster.live_elsewhere(bucket, channel).await {
            crate::cluster::decide::Elsewhere::No => Ok(false),
            crate::cluster::decide::Elsewhere::Yes { .. } => Ok(true),
            crate::cluster::decide::Elsewhere::Unknown => Err(RetentionError::LiveUnknown),
        }
    }

    async fn sweep_channel(
        &self,
        cfg: &Config,
        key_id: &str,
        bucket: &str,
        channel: &str,
        mode: Mode,
        report: &mut Report,
    ) -> Result<(), RetentionError> {
        let record = self.channels.get(key_id, bucket, channel).await?;
        let period_secs = period_of(record.as_ref().map(|r| &r.config), cfg);
        if period_secs == 0 {
            return Ok(());
        }
        let lock = match &self.cluster {
            None => None,
            Some(c) => match c.lock_sweep(bucket, channel).await {
                Ok(Some(epoch)) => Some((c, epoch)),
                Ok(None) => {
                    report.busy.push(format!("{bucket}/{channel}"));
                    return Ok(());
                }
                Err(e) => return Err(RetentionError::Etcd(e.to_string())),
            },
        };
        let playlist_name = record
            .as_ref()
            .map(|r| r.config.target.playlist_name.clone());
        let snapshots_in = record
            .as_ref()
            .and_then(|r| r.config.snapshot.as_ref())
            .map_or(bucket, |s| s.dest_bucket.as_str())
            .to_owned();
        let result = async {
            let source = Swept {
                channel: channel.to_owned(),
                source: channel,
                snapshots_in: Some(&snapshots_in),
                live_playlists: self.live_playlists(bucket, channel, playlist_name.as_deref()),
            };
            self.sweep_rounds(cfg, key_id, bucket, &source, period_secs, mode, report)
                .await?;
            // Each variant (`CHANNEL/<rung>/…`, a rendition's sub-channel)
            // with the channel's period, under the same sweep lock.
            for rung in self.variants_of(key_id, bucket, channel).await? {
                let variant = format!("{channel}/{rung}");
                let swept = Swept {
                    live_playlists: self.live_playlists(bucket, &variant, playlist_name.as_deref()),
                    channel: variant,
                    source: channel,
                    snapshots_in: None,
                };
                self.sweep_rounds(cfg, key_id, bucket, &swept, period_secs, mode, report)
                    .instrument(info_span!("variant", rung = %rung))
                    .await?;
            }
            self.sweep_master(key_id, bucket, channel, mode, report)
                .await
        }
        .await;
        if let Some((c, epoch)) = lock {
            c.unlock_sweep(bucket, channel, epoch).await;
        }
        result
    }

    /// Playlist names (under `channel`) a live push there may be writing.
    fn live_playlists(&self, bucket: &str, channel: &str, record: Option<&str>) -> Vec<String> {
        let mut names = self.sessions.playlists_of(bucket, channel);
        names.push(crate::names::DEFAULT_PLAYLIST.to_owned());
        names.extend(record.map(str::to_owned));
        names
    }

    /// The rungs a channel has objects or manifests of: the names under
    /// `CHANNEL/` and `.livebucket/index/CHANNEL/` that are rung names
    /// (which leaves out `.ll`, `snapshot` and anything not a rung).
    async fn variants_of(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
    ) -> Result<BTreeSet<String>, RetentionError> {
        let mut names: BTreeSet<String> = self
            .store
            .list_dirs(key_id, bucket, &format!("{channel}/"))
            .await?
            .into_iter()
            .collect();
        names.extend(
            self.store
                .list_dirs(key_id, bucket, &layout::manifest_prefix(channel))
                .await?,
        );
        names.retain(|n| crate::config::renditions::valid_rung_name(n));
        Ok(names)
    }

    /// Whether `swept`'s channel is live: its source channel live (here or
    /// on another node; a source's variants are transcoded while it is), or
    /// a session of the channel itself still being stored here.
    async fn swept_live(&self, bucket: &str, swept: &Swept<'_>) -> Result<bool, RetentionError> {
        Ok(self.live(bucket, swept.source).await?
            || !self.sessions.known_of(bucket, &swept.channel).is_empty())
    }

    /// Rounds of plan and execute for one channel or variant until a plan
    /// is empty (one round in a dry run).
    #[allow(clippy::too_many_arguments)]
    async fn sweep_rounds(
        &self,
        cfg: &Config,
        key_id: &str,
        bucket: &str,
        swept: &Swept<'_>,
        period_secs: u64,
        mode: Mode,
        report: &mut Report,
    ) -> Result<(), RetentionError> {
        let channel = swept.channel.as_str();
        // A dry run plans one round: it deletes nothing, so a second
        // round would plan the same. A round that plans what the last
        // one did made no progress (a store that answers deletes but
        // keeps the objects): the next sweep tries again.
        let mut last: Option<plan::Plan> = None;
        loop {
            // Asked again every round: a push that began since keeps
            // its channel's newest recording and live playlist.
            let live = self.swept_live(bucket, swept).await?;
            let now_ms = crate::clock::unix_now_ms();
            let Some(cutoff) = plan::cutoff_ms(now_ms, period_secs) else {
                return Ok(());
            };
            let found = self
                .find(key_id, bucket, channel, swept.snapshots_in, cutoff)
                .await?;
            let inputs = Inputs {
                channel,
                now_ms,
                period_secs,
                live,
                live_playlists: &swept.live_playlists,
                window_segments: cfg.live.window_segments,
            };
            let plan = plan::plan(&found, &inputs, cfg.retention.batch_size);
            if plan.is_empty() {
                return Ok(());
            }
            if last.as_ref().is_some_and(|l| l.steps == plan.steps) {
                warn!("the sweep made no progress; stopping until the next one");
                return Ok(());
            }
            let snapshots_in = swept.snapshots_in.unwrap_or(bucket);
            self.execute(key_id, bucket, snapshots_in, &plan, mode, report)
                .await?;
            if mode.dry_run {
                return Ok(());
            }
            last = Some(plan);
        }
    }

    /// Deletes `CHANNEL/master.m3u8` once nothing it names is left (every
    /// variant's and the source's playlist swept) and the channel is not
    /// live; a master naming something still stored stays.
    async fn sweep_master(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
        mode: Mode,
        report: &mut Report,
    ) -> Result<(), RetentionError> {
        let key = layout::playlist_key(channel, MASTER_PLAYLIST_NAME);
        let text = match self
            .store
            .get_capped(key_id, bucket, &key, MAX_PLAYLIST_BYTES)
            .await
        {
            Ok(t) => t,
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if self.live(bucket, channel).await? {
            return Ok(());
        }
        for named in plan::master_names(channel, &String::from_utf8_lossy(&text)) {
            if self.store.exists(key_id, bucket, &named).await? {
                return Ok(());
            }
        }
        info!(key = %key, dry_run = mode.dry_run, "retention: deleting the master playlist, which names nothing left");
        if !mode.dry_run {
            self.store
                .delete_many(key_id, bucket, std::slice::from_ref(&key))
                .await?;
            self.metrics
                .add("livebucket_retention_deleted_objects_total", "", 1);
            self.metrics.add(
                "livebucket_retention_deleted_bytes_total",
                "",
                text.len() as u64,
            );
        }
        report.objects += 1;
        report.bytes += text.len() as u64;
        if mode.keep_keys {
            report.keys.push(key);
        }
        Ok(())
    }

    /// Lists and reads what may have expired before `cutoff`.
    async fn find(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
        snapshots_in: Option<&str>,
        cutoff: u64,
    ) -> Result<Found, RetentionError> {
        let store = &self.store;
        let index_prefix = layout::manifest_prefix(channel);
        // Delimited here and below: a variant's manifests and objects
        // (`…CHANNEL/<rung>/…`) are swept as the variant, never as the
        // channel's own.
        let manifest_keys = store
            .list_children(key_id, bucket, &index_prefix, None, |_| false)
            .await?;
        let cutoff_manifest = layout::manifest_key(channel, cutoff, "");
        let expiring: Vec<&String> = manifest_keys
            .iter()
            .filter(|k| k.as_str() < cutoff_manifest.as_str())
            .collect();
        // Fragments from the first manifest not read this round on may be
        // named by it: none of them is taken for unnamed (it starts no
        // later than its first fragment).
        let horizon = plan::unnamed_horizon(&expiring, ROUND_MANIFESTS, cutoff);
        let mut manifests = Vec::new();
        for key in expiring.into_iter().take(ROUND_MANIFESTS) {
            let bytes = match store.get(key_id, bucket, key).await {
                Ok(b) => b,
                // Deleted since the listing (another sweep, a cut short one).
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let m: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| RetentionError::BadManifest {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            manifests.push((key.clone(), m));
        }
        let media = format!("{channel}/");
        let cutoff_fragment = layout::fragment_key(channel, horizon);
        let fragments = store
            .list_objects(
                key_id,
                bucket,
                Listing {
                    start_after: Some(&format!("{channel}//")),
                    delimiter: Some("/"),
                    ..Listing::under(&media, ROUND_OBJECTS)
                },
                |k| k >= cutoff_fragment.as_str(),
            )
            .await?;
        let parts = store
            .list_objects(
                key_id,
                bucket,
                Listing::under(&layout::parts_root(channel), ROUND_OBJECTS),
                |_| false,
            )
            .await?;
        // Playlists sort after the fragments' digits; the delimiter leaves
        // `snapshot/` and other sub-prefixes out.
        let after_digits = layout::fragment_key(channel, 9_999_999_999_999);
        let mut playlists = Vec::new();
        for object in store
            .list_objects(
                key_id,
                bucket,
                Listing {
                    start_after: Some(&after_digits),
                    delimiter: Some("/"),
                    ..Listing::under(&media, ROUND_OBJECTS)
                },
                |_| false,
            )
            .await?
            .into_iter()
            .filter(|o| o.key.ends_with(".m3u8"))
        {
            let earliest_ms = match store
                .get_capped(key_id, bucket, &object.key, MAX_PLAYLIST_BYTES)
                .await
            {
                Ok(text) => plan::earliest_fragment(&String::from_utf8_lossy(&text)),
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            playlists.push(PlaylistSeen {
                object: listed(object),
                earliest_ms,
            });
        }
        let snapshots = match snapshots_in {
            Some(dest) => {
                self.snapshots(key_id, bucket, channel, dest, cutoff)
                    .await?
            }
            None => Vec::new(),
        };
        Ok(Found {
            newest_manifest: manifest_keys.last().cloned(),
            manifests,
            fragments: fragments.into_iter().map(listed).collect(),
            parts: parts.into_iter().map(listed).collect(),
            playlists,
            snapshots: snapshots.into_iter().map(listed).collect(),
        })
    }

    /// The channel's snapshots in `dest` taken before `cutoff`, and its
    /// `latest.jpg`.
    async fn snapshots(
        &self,
        key_id: &str,
        bucket: &str,
        channel: &str,
        dest: &str,
        cutoff: u64,
    ) -> Result<Vec<ListedObject>, RetentionError> {
        let store = &self.store;
        let snap_prefix = layout::snapshot_prefix(bucket, channel, dest);
        let cutoff_snapshot = layout::snapshot_key(&snap_prefix, cutoff);
        let mut snapshots = store
            .list_objects(
                key_id,
                dest,
                Listing::under(&snap_prefix, ROUND_OBJECTS),
                |k| k >= cutoff_snapshot.as_str(),
            )
            .await?;
        let latest = layout::latest_snapshot_key(&snap_prefix);
        snapshots.extend(
            store
                .list_objects(key_id, dest, Listing::under(&latest, 1), |_| false)
                .await?
                .into_iter()
                .filter(|o| o.key == latest),
        );
        Ok(snapshots)
    }

    async fn execute(
        &self,
        key_id: &str,
        bucket: &str,
        snapshots_in: &str,
        plan: &plan::Plan,
        mode: Mode,
        report: &mut Report,
    ) -> Result<(), RetentionError> {
        let dry_run = mode.dry_run;
        for step in &plan.steps {
            match step {
                Step::Put { key, manifest } => {
                    info!(key = %key, fragments = manifest.fragments.len(), dry_run, "retention: trimming manifest");
                    if !dry_run {
                        let body = serde_json::to_vec(manifest).map_err(|e| {
                            RetentionError::BadManifest {
                                key: key.clone(),
                                message: e.to_string(),
                            }
                        })?;
                        self.store
                            .put(key_id, bucket, key, body, &crate::store::ObjectMeta::JSON)
                            .await?;
                    }
                    report.manifests_trimmed += 1;
                }
                Step::Delete {
                    place, keys, bytes, ..
                } => {
                    let target = match place {
                        Where::Channel => bucket,
                        Where::Snapshots => snapshots_in,
                    };
                    info!(bucket = target, objects = keys.len(), bytes, first = %keys[0], dry_run, "retention: deleting");
                    if dry_run {
                        // A dry run lists every key it would delete.
                        for key in keys {
                            info!(bucket = target, key = %key, "retention: would delete");
                        }
                    } else {
                        self.store.delete_many(key_id, target, keys).await?;
                        self.metrics.add(
                            "livebucket_retention_deleted_objects_total",
                            "",
                            keys.len() as u64,
                        );
                        self.metrics
                            .add("livebucket_retention_deleted_bytes_total", "", *bytes);
                    }
                    report.objects += keys.len();
                    report.bytes += bytes;
                    if mode.keep_keys {
                        report.keys.extend(keys.iter().cloned());
                    }
                }
            }
        }
        Ok(())
    }
}

fn listed(o: ListedObject) -> Listed {
    Listed {
        key: o.key,
        size: o.size,
        modified_ms: o.modified_ms,
    }
}

/// A channel's retention period (seconds; 0 keeps everything): its
/// record's `RetentionSeconds`, else `[retention] default_period_secs`.
pub(crate) fn period_of(
    record: Option<&crate::channels::record::LiveChannelConfig>,
    cfg: &Config,
) -> u64 {
    record
        .and_then(|c| c.retention_secs)
        .unwrap_or(cfg.retention.default_period_secs)
}

/// The oldest fragment time a VOD answer may still name for a channel
/// (epoch ms): anything older may have been swept. 0 when nothing expires.
pub(crate) fn oldest_kept_ms(period_secs: u64, now_ms: u64) -> u64 {
    plan::cutoff_ms(now_ms, period_secs).unwrap_or(0)
}

/// The buckets swept and the key each is swept with: every bucket an
/// enabled key names explicitly, with the first such key; then the enabled
/// keys allowed every bucket (`"*"`), whose buckets are found by ListBuckets.
pub(crate) fn buckets(cfg: &Config) -> (Vec<(String, String)>, Vec<String>) {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut wildcard = Vec::new();
    for k in cfg.keys.iter().filter(|k| !k.disabled) {
        for b in &k.buckets {
            if b == "*" {
                wildcard.push(k.id.clone());
            } else if !out.iter().any(|(_, seen)| seen == b) {
                out.push((k.id.clone(), b.clone()));
            }
        }
    }
    (out, wildcard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_enabled_keys_named_ones_each_with_its_first_key_then_wildcards() {
        let cfg = crate::config::for_tests(
            "[[keys]]\nid = \"GKa\"\nsecret = \"0123456789abcdef\"\nbuckets = [\"media\", \"*\"]\n\
             [[keys]]\nid = \"GKb\"\nsecret = \"0123456789abcdef\"\nbuckets = [\"media\", \"other\"]\n\
             [[keys]]\nid = \"GKc\"\nsecret = \"0123456789abcdef\"\nbuckets = [\"off\"]\ndisabled = true\n",
        );
        assert_eq!(
            buckets(&cfg),
            (
                vec![
                    ("GKa".to_owned(), "media".to_owned()),
                    ("GKb".to_owned(), "other".to_owned())
                ],
                vec!["GKa".to_owned()]
            )
        );
    }

    #[test]
    fn a_channel_period_overrides_the_default_and_zero_keeps_everything() {
        let cfg = crate::config::for_tests("[retention]\ndefault_period_secs = 3600\n");
        let mut channel = crate::channels::record::LiveChannelConfig::default();
        assert_eq!(period_of(None, &cfg), 3600);
        assert_eq!(period_of(Some(&channel), &cfg), 3600);
        channel.retention_secs = Some(0);
        assert_eq!(period_of(Some(&channel), &cfg), 0);
        channel.retention_secs = Some(60);
        assert_eq!(period_of(Some(&channel), &cfg), 60);
        assert_eq!(oldest_kept_ms(0, 5_000_000), 0);
        assert_eq!(oldest_kept_ms(60, 5_000_000), 4_940_000);
    }
}
