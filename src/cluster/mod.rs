//! Many ingest nodes, one bucket: coordination through etcd.
//!
//! Off unless `[cluster]` is configured; a single node has no coordinator
//! and nothing here runs. With it, every node keeps one lease in etcd
//! (`cluster.lease_ttl_secs`, renewed every third of it) and:
//!
//! - **one publisher per channel**: `on_publish` creates the channel's key
//!   (`live/<bucket>/<channel>`, [`keys`]) on the node's lease or refuses
//!   with `channel_live`; the key stays while the session is known here (its
//!   playlist ends under it) and is deleted when it is finished. A node that
//!   dies loses its keys when its lease expires.
//! - **fencing**: before every playlist upload the pipeline asks the
//!   [`Fence`](crate::pipeline::fence::Fence); this node answers from one
//!   etcd transaction comparing the key's create revision (the epoch) with
//!   the one it took. It holds the write back when etcd does not answer or
//!   its lease is past its TTL (so a node cut off from etcd stops writing
//!   playlists within the TTL), and drops it for good when another node
//!   holds the channel. The PUT is abandoned at the fence's write deadline
//!   (last renewal + TTL − margin). On a store with conditional PUTs the
//!   playlist PUT is also `If-Match` the ETag this node last wrote or read
//!   (`If-None-Match: *` when it knew the object absent), so one that still
//!   lands after the next holder wrote is refused
//!   ([`crate::pipeline::fenced_write`]); on a store without them (Garage)
//!   a PUT sent just before the deadline can still land after it.
//! - **continuity**: a session continues the playlist the last holder
//!   stored in the bucket ([`continuity`]).
//! - **channel changes**: every record write bumps `changes/<bucket>/<channel>`;
//!   every node watches `changes/` and drops its cached record, so `on_update`
//!   re-reads it and a disable drops the publisher wherever it is.
//!
//! The decisions are in [`decide`] (no I/O); this module and [`tasks`] are
//! the driver. Lock order: `state` is never held across an await.

pub(crate) mod continuity;
pub(crate) mod decide;
pub(crate) mod etcd;
pub(crate) mod keys;
pub(crate) mod lease;
pub mod status;
mod sweep;
mod tasks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tracing::{error, info, warn};

use crate::config::ClusterConfig;
use crate::live::ChannelId;
use crate::metrics::Metrics;
use crate::pipeline::fence::{Fence, FenceVerdict, Resume};
use crate::session::Sessions;
use decide::{Claim, Holding, Update};
use etcd::{Etcd, EtcdError};
use keys::{HolderValue, Keys};

/// Why `on_publish` cannot have a channel.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("channel is live on node {0}")]
    Live(String),
    #[error("cluster coordinator unavailable: {0}")]
    Unavailable(String),
}

type ChannelKey = (String, String);

struct State {
    /// The node's lease and its renewals ([`lease`] decides).
    lease: lease::Lease,
    /// Channels this node published and has not finished.
    holdings: HashMap<ChannelKey, Holding>,
    /// Sessions `claim` took a channel for that `on_publish` has not begun
    /// yet (it still reads the playlist): the keeper must not take them for
    /// finished. Dropped by `started`/`unclaim`, or after [`PENDING`].
    pending: HashMap<String, Instant>,
    /// Said loudly once per outage.
    cut_off_logged: bool,
    /// `shutdown` began: no new lease is taken.
    stopped: bool,
    /// What [`Cluster::resume`] read of a channel's playlist object, until
    /// the uploader takes it ([`Fence::take_read`]).
    reads: HashMap<ChannelKey, crate::pipeline::fenced_write::Known>,
}

/// Longest an `on_publish` can keep a claimed session pending (its handler
/// was dropped, say): past it, the keeper may release the channel.
const PENDING: Duration = Duration::from_secs(30);

pub struct Cluster {
    cfg: ClusterConfig,
    keys: Keys,
    etcd: Etcd,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    /// Holds the store's conditional-write probe ([`Fence::conditional`]).
    channels: Arc<crate::channels::ChannelStore>,
    state: Mutex<State>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Cluster {
    /// Connects to etcd and starts the lease keeper, the change watcher and
    /// the change announcer; they stop with `cancel`.
    pub async fn start(
        cfg: ClusterConfig,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
        channels: Arc<crate::channels::ChannelStore>,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<Arc<Cluster>, EtcdError> {
        let etcd = Etcd::connect(&cfg).await?;
        let ttl = Duration::from_secs(cfg.lease_ttl_secs);
        let cluster = Arc::new(Cluster {
            keys: Keys::new(&cfg.prefix),
            cfg,
            etcd,
            sessions,
            metrics,
            channels: channels.clone(),
            state: Mutex::new(State {
                lease: lease::Lease::new(ttl),
                holdings: HashMap::new(),
                pending: HashMap::new(),
                cut_off_logged: false,
                stopped: false,
                reads: HashMap::new(),
            }),
        });
        // The first lease before the first push, so a node that starts with
        // etcd up takes pushes at once.
        let wait = cluster.keep().await;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        channels.announce_to(tx);
        tokio::spawn(tasks::keeper(cluster.clone(), wait, cancel.clone()));
        tokio::spawn(tasks::watch_changes(
            cluster.clone(),
            channels,
            cancel.clone(),
        ));
        tokio::spawn(tasks::announce_changes(cluster.clone(), rx, cancel));
        info!(node = %cluster.cfg.node_id, endpoints = ?cluster.cfg.endpoints, "cluster mode: coordinating through etcd");
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.cfg.node_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lease_alive(&self, s: &State) -> bool {
        s.lease.alive(Instant::now()).is_some()
    }

    fn holder_value(&self, session: &str) -> HolderValue {
        let meta = self.sessions.get(session);
        HolderValue {
            node: self.cfg.node_id.clone(),
            session: session.to_owned(),
            since_ms: meta.as_ref().map_or_else(now_ms, |m| m.started_ms),
            addr: meta.map(|m| m.addr).unwrap_or_default(),
            advertise: self.cfg.advertise.clone(),
        }
    }

    /// `on_publish`: takes the channel for `session` (whose publisher is at
    /// `addr`), or says who has it.
    pub async fn claim(
        &self,
        bucket: &str,
        channel: &str,
        session: &str,
        addr: &str,
    ) -> Result<(), ClaimError> {
        let lease = {
            let s = self.lock();
            match s.lease.alive(Instant::now()) {
                Some(l) => l,
                None => {
                    return Err(ClaimError::Unavailable(
                        "this node holds no live lease in etcd".into(),
                    ));
                }
            }
        };
        let key = self.keys.live(bucket, channel);
        let unavailable = |e: EtcdError| ClaimError::Unavailable(e.to_string());
        let current = self.etcd.holder(&key).await.map_err(unavailable)?;
        let value = HolderValue {
            addr: addr.to_owned(),
            since_ms: now_ms(),
            ..self.holder_value(session)
        };
        let epoch = match decide::claim(current.as_ref(), self.node_id(), |s| {
            self.sessions.is_live(s)
        }) {
            Claim::Take => self
                .etcd
                .take(&key, &self.keys.last(bucket, channel), &value, lease)
                .await
                .map_err(unavailable)?,
            Claim::TakeOver { epoch } => self
                .etcd
                .take_over(&key, &self.keys.last(bucket, channel), epoch, &value, lease)
                .await
                .map_err(unavailable)?
                .then_some(epoch),
            Claim::Refuse { node } => return Err(ClaimError::Live(node)),
        };
        let Some(epoch) = epoch else {
            // Lost a race between the read and the transaction.
            let node = self
                .etcd
                .holder(&key)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "another node".to_owned(), |h| h.node);
            return Err(ClaimError::Live(node));
        };
        {
            let mut s = self.lock();
            s.pending.insert(session.to_owned(), Instant::now());
            s.holdings.insert(
                (bucket.to_owned(), channel.to_owned()),
                Holding::Held {
                    session: session.to_owned(),
                    epoch,
                },
            );
        }
        info!(bucket, channel, session = %crate::session::log_tag(session), epoch, "channel taken in etcd");
        Ok(())
    }

    /// The session `claim` took a channel for has begun: from now on it is
    /// released when it is finished.
    pub fn started(&self, session: &str) {
        self.lock().pending.remove(session);
    }

    /// Gives back a channel `claim` took for a session that did not start.
    pub async fn unclaim(&self, bucket: &str, channel: &str, session: &str) {
        let k = (bucket.to_owned(), channel.to_owned());
        let epoch = {
            let mut s = self.lock();
            s.pending.remove(session);
            match s.holdings.get(&k) {
                Some(Holding::Held { session: h, epoch }) if h == session => {
                    let e = *epoch;
                    s.holdings.remove(&k);
                    Some(e)
                }
                _ => None,
            }
        };
        if let Some(epoch) = epoch
            && let Err(e) = self
                .etcd
                .release(&self.keys.live(bucket, channel), epoch)
                .await
        {
            warn!(error = %e, bucket, channel, "cannot release the channel in etcd; it frees when the lease expires");
        }
    }

    /// `/readyz`: whether this node takes pushes now (see
    /// [`decide::ready`]).
    pub fn ready(&self) -> Result<(), String> {
        let s = self.lock();
        decide::ready(self.lease_alive(&s), s.lease.failures())
    }

    /// `on_update`: may this node's publisher of the channel go on?
    pub fn update(&self, bucket: &str, channel: &str) -> Update {
        let s = self.lock();
        let h = s.holdings.get(&(bucket.to_owned(), channel.to_owned()));
        decide::update(h, self.lease_alive(&s))
    }

    /// Where the channel's playlist stood in the bucket, for a new session.
    /// What the read found (the object's ETag, or that it is absent) is kept
    /// for the uploader's first conditional write ([`Fence::take_read`]).
    pub async fn resume(
        &self,
        store: &crate::store::Store,
        key_id: &str,
        bucket: &str,
        channel: &str,
        playlist: &str,
    ) -> Option<Resume> {
        use crate::pipeline::fenced_write::Known;
        let object = crate::layout::playlist_key(channel, playlist);
        let read = store.get_versioned(key_id, bucket, &object).await;
        let k = (bucket.to_owned(), channel.to_owned());
        match &read {
            Ok(v) => {
                let known = Known::stored(v.etag.clone());
                self.lock().reads.insert(k, known);
            }
            Err(crate::store::StoreError::NotFound { .. }) => {
                self.lock().reads.insert(k, Known::Absent);
            }
            // Nothing learnt: the uploader reads before its first write.
            Err(_) => {
                self.lock().reads.remove(&k);
            }
        }
        match read {
            Ok(v) => {
                let r = std::str::from_utf8(&v.body)
                    .ok()
                    .and_then(continuity::parse);
                if r.is_none() {
                    warn!(
                        bucket,
                        channel,
                        "the channel's playlist in the bucket is not livebucket's; starting a new one"
                    );
                }
                r
            }
            Err(crate::store::StoreError::NotFound { .. }) => None,
            Err(e) => {
                warn!(error = %e, bucket, channel, "cannot read the channel's playlist to continue it; starting from this node's state");
                None
            }
        }
    }

    /// Who publishes a channel anywhere in the cluster.
    pub async fn holder(
        &self,
        bucket: &str,
        channel: &str,
    ) -> Result<Option<HolderValue>, EtcdError> {
        let key = self.keys.live(bucket, channel);
        let mut c = self.etcd.client();
        let resp = tokio::time::timeout(self.etcd.timeout(), c.get(key.clone(), None))
            .await
            .map_err(|_| EtcdError::Timeout(self.etcd.timeout()))??;
        resp.kvs()
            .first()
            .map(|kv| {
                serde_json::from_slice(kv.value()).map_err(|e| EtcdError::BadValue {
                    key,
                    message: e.to_string(),
                })
            })
            .transpose()
    }

    /// Whether this node holds the channel now (as far as it knows).
    pub fn holds(&self, bucket: &str, channel: &str) -> bool {
        matches!(
            self.lock()
                .holdings
                .get(&(bucket.to_owned(), channel.to_owned())),
            Some(Holding::Held { .. })
        )
    }

    /// Whether another node publishes the channel: `Unknown` (logged) when
    /// etcd cannot be asked, which callers treat like live (fail closed).
    pub async fn live_elsewhere(&self, bucket: &str, channel: &str) -> decide::Elsewhere {
        let holder = self.holder(bucket, channel).await;
        if let Err(e) = &holder {
            warn!(error = %e, bucket, channel, "cannot ask etcd who publishes the channel");
        }
        decide::elsewhere(
            holder.as_ref().map(|h| h.as_ref().map(|h| h.node.as_str())),
            &self.cfg.node_id,
        )
    }

    /// GetLiveChannelStat for a channel another node publishes: who and
    /// since when from etcd, the stream's measurements from that node's
    /// operator listener when it advertises one. `None`: nobody publishes it
    /// elsewhere (or etcd cannot tell).
    pub async fn remote_session(
        &self,
        bucket: &str,
        channel: &str,
    ) -> Option<crate::channels::record::LiveSession> {
        let h = match self.holder(bucket, channel).await {
            Ok(Some(h)) if h.node != self.cfg.node_id => h,
            Ok(_) => return None,
            Err(e) => {
                warn!(error = %e, bucket, channel, "cannot ask etcd who publishes the channel");
                return None;
            }
        };
        let measured = match &h.advertise {
            Some(base) => {
                let url = format!(
                    "{}/cluster/v1/stat/{bucket}/{channel}",
                    base.trim_end_matches('/')
                );
                // The same plain HTTP/1.0 GET that reads nginx's stat page.
                let fetched = crate::stat::StatSource::new(&url, "")
                    .with_timeout(self.etcd.timeout())
                    .fetch()
                    .await;
                match fetched.map(|b| serde_json::from_slice::<keys::PeerStat>(&b)) {
                    Ok(Ok(stat)) => Some(stat),
                    Ok(Err(e)) => {
                        warn!(error = %e, node = %h.node, "unreadable stream statistics from the node");
                        None
                    }
                    Err(e) => {
                        warn!(error = %e, node = %h.node, "no stream statistics from the node");
                        None
                    }
                }
            }
            None => None,
        };
        let (video, audio) = measured.map_or((None, None), |m| (m.video, m.audio));
        Some(crate::channels::record::LiveSession {
            connected: (h.since_ms / 1000) as i64,
            remote_addr: h.addr,
            video,
            audio,
        })
    }

    fn say_cut_off(&self, s: &mut State) {
        if !s.cut_off_logged {
            s.cut_off_logged = true;
            let channels = s.holdings.len();
            error!(
                node = %self.cfg.node_id,
                channels,
                ttl_secs = self.cfg.lease_ttl_secs,
                "CUT OFF FROM ETCD: this node's lease may have expired; it writes no playlist of its channels and refuses their publishers until etcd answers again"
            );
            self.metrics.inc("livebucket_cluster_cut_off_total", "");
        }
    }
}

impl Cluster {
    /// A channel this node holds nothing for, asked about by the pipeline: a
    /// session recovered after a crash (or a stop) still writes it. Takes the
    /// channel back for that session when nobody continued it (see
    /// [`decide::recovered`]), so its playlist is written and ended here;
    /// records a yield otherwise. `Some` is the verdict to give now (etcd
    /// unreachable: hold); `None`: the holdings now say.
    /// `verdict`, counted in `livebucket_cluster_fence_total`.
    fn counted(&self, verdict: FenceVerdict) -> FenceVerdict {
        let label = match verdict {
            FenceVerdict::Write => "write",
            FenceVerdict::Hold => "hold",
            FenceVerdict::Yield => "yield",
        };
        self.metrics.inc("livebucket_cluster_fence_total", label);
        verdict
    }

    async fn adopt(&self, channel: &ChannelId) -> Option<FenceVerdict> {
        let (bucket, name) = (&channel.bucket, &channel.channel);
        // The newest session of the channel (or, the source finished, of
        // one of its renditions) this node still has work for.
        let known = self.sessions.known_with_variants(bucket, name);
        let session = decide::adopter(&known)?.clone();
        let key = self.keys.live(bucket, name);
        let last_key = self.keys.last(bucket, name);
        let found = match (
            self.etcd.holder(&key).await,
            self.etcd.last(&last_key).await,
        ) {
            (Ok(current), Ok(last)) => (current, last),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, channel = %name, "cannot ask etcd who continued a recovered session's channel; playlist held back");
                return Some(FenceVerdict::Hold);
            }
        };
        let lease = self.lock().lease.alive(Instant::now())?;
        let value = self.holder_value(&session.id);
        let taken = match decide::recovered(
            found.0.as_ref(),
            found.1.as_ref(),
            self.node_id(),
            &session.id,
        ) {
            decide::Recovered::Take => self.etcd.take(&key, &last_key, &value, lease).await,
            decide::Recovered::TakeOver { epoch } => self
                .etcd
                .take_over(&key, &last_key, epoch, &value, lease)
                .await
                .map(|ok| ok.then_some(epoch)),
            decide::Recovered::Yield { by } => {
                info!(bucket, channel = %name, by = %by, session = %crate::session::log_tag(&session.id), "another node continued the channel of a recovered session; its playlist is theirs");
                self.lock()
                    .holdings
                    .entry((bucket.clone(), name.clone()))
                    .or_insert(Holding::Superseded {
                        session: session.id,
                        by,
                    });
                return None;
            }
            decide::Recovered::Leave => return Some(FenceVerdict::Yield),
        };
        match taken {
            Ok(Some(epoch)) => {
                info!(bucket, channel = %name, session = %crate::session::log_tag(&session.id), epoch, "channel of a recovered session taken back: nobody continued it");
                self.lock()
                    .holdings
                    .entry((bucket.clone(), name.clone()))
                    .or_insert(Holding::Held {
                        session: session.id,
                        epoch,
                    });
                None
            }
            // Somebody took it between the read and the transaction: the
            // next write asks again.
            Ok(None) => Some(FenceVerdict::Hold),
            Err(e) => {
                warn!(error = %e, channel = %name, "cannot take back a recovered session's channel; playlist held back");
                Some(FenceVerdict::Hold)
            }
        }
    }
}

impl Fence for Cluster {
    fn write_deadline(&self) -> Option<Instant> {
        self.lock().lease.write_deadline()
    }

    fn conditional<'a>(
        &'a self,
        key_id: &'a str,
        bucket: &'a str,
    ) -> BoxFuture<'a, Result<crate::store::Conditional, crate::store::StoreError>> {
        Box::pin(self.channels.conditional(key_id, bucket))
    }

    fn take_read(&self, channel: &ChannelId) -> Option<crate::pipeline::fenced_write::Known> {
        self.lock()
            .reads
            .remove(&(channel.bucket.clone(), channel.channel.clone()))
    }

    fn allow<'a>(&'a self, channel: &'a ChannelId) -> BoxFuture<'a, FenceVerdict> {
        Box::pin(async move {
            // A variant's playlist is written under its source channel's
            // claim: the same verdict, the same node, the same fail-over.
            let source = ChannelId {
                channel: decide::fenced_by(&channel.channel).to_owned(),
                ..channel.clone()
            };
            let channel = &source;
            let k = (channel.bucket.clone(), channel.channel.clone());
            let (unknown, lease) = {
                let s = self.lock();
                (!s.holdings.contains_key(&k), self.lease_alive(&s))
            };
            if unknown {
                if !lease {
                    // A recovered session's channel while this node has no
                    // lease (etcd down since the start): whether anybody
                    // continued it cannot be told yet, so its writes wait.
                    if !self.sessions.known_with_variants(&k.0, &k.1).is_empty() {
                        return self.counted(FenceVerdict::Hold);
                    }
                } else if let Some(verdict) = self.adopt(channel).await {
                    return self.counted(verdict);
                }
            }
            let (holding, lease) = {
                let mut s = self.lock();
                let lease = self.lease_alive(&s);
                if !lease && s.holdings.contains_key(&k) {
                    self.say_cut_off(&mut s);
                }
                (s.holdings.get(&k).cloned(), lease)
            };
            let found = match &holding {
                Some(Holding::Held { epoch, .. }) if lease => {
                    let key = self.keys.live(&channel.bucket, &channel.channel);
                    match self.etcd.check(&key, *epoch).await {
                        Ok(state) => Some(state),
                        Err(e) => {
                            warn!(error = %e, channel = %channel.channel, "fence check failed; playlist held back");
                            None
                        }
                    }
                }
                _ => None,
            };
            let verdict = self.counted(decide::fence(
                holding.as_ref(),
                lease,
                self.node_id(),
                found.as_ref(),
            ));
            if let (FenceVerdict::Yield, Some(decide::KeyState::Other(h))) = (verdict, &found) {
                let mut s = self.lock();
                if let Some(entry) = s.holdings.get_mut(&k) {
                    warn!(channel = %channel.channel, by = %h.node, "another node publishes this channel now; this node stops writing its playlist");
                    *entry = Holding::Superseded {
                        session: entry.session().to_owned(),
                        by: h.node.clone(),
                    };
                }
            }
            verdict
        })
    }
}
