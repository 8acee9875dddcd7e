//! The cluster's background tasks: the lease keeper (renews the node's
//! lease, takes channels back onto a new lease, releases finished ones), the
//! change watcher and the change announcer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, WatchOptions};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::decide::{self, Claim, Holding};
use super::etcd::encode;
use super::keys::NodeValue;
use super::lease::{self, Answer, Event, Next};
use super::{Cluster, now_ms};
use crate::channels::ChannelStore;

/// An open keep-alive stream, and the lease it renews.
type KeepAlive = (LeaseKeeper, LeaseKeepAliveStream, i64);

/// A failed grant or registration: never `Gone` (that is about a lease the
/// node holds), a timeout or a transient failure.
fn failed(e: &super::EtcdError) -> Answer {
    match lease::classify(e) {
        Answer::Timeout => Answer::Timeout,
        _ => Answer::Transient,
    }
}

/// How long a failed watch or announcement waits before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// Renews the lease (or gets a new one) as [`super::lease`] decides, retakes
/// lost channels and releases finished ones, until `cancel`. `wait` is what
/// the first round (in `Cluster::start`) asked for.
pub(super) async fn keeper(c: Arc<Cluster>, mut wait: Duration, cancel: CancellationToken) {
    let mut ka: Option<KeepAlive> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => break,
        }
        wait = c.round(&mut ka).await;
        c.release_finished().await;
        c.gauges();
    }
}

impl Cluster {
    /// At shutdown, first thing: stops the keeper from taking a new lease,
    /// revokes the lease, so this node's channels are free at once rather
    /// than after the TTL, and removes the node's membership. From then on
    /// the fence holds every playlist and manifest write back (no live
    /// lease); unfinished sessions are recovered at the next start, and write
    /// their playlist again only where nobody continued the channel.
    pub async fn shutdown(&self) {
        let lease = {
            let mut s = self.lock();
            s.stopped = true;
            s.lease.take()
        };
        if let Some(lease) = lease {
            let mut client = self.etcd.client();
            match tokio::time::timeout(self.etcd.timeout(), client.lease_revoke(lease)).await {
                Ok(Ok(_)) => {
                    info!("cluster lease revoked at shutdown: this node's channels are free")
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot revoke the cluster lease at shutdown; its channels free when it expires")
                }
                Err(_) => warn!(
                    "etcd did not answer the lease revocation at shutdown; this node's channels free when its lease expires"
                ),
            }
        }
        // A clean stop leaves the cluster: `cluster status` no longer lists
        // the node as running without a lease.
        if let Err(e) = self.etcd.delete(&self.keys.member(&self.cfg.node_id)).await {
            warn!(error = %e, "cannot remove this node's membership in etcd at shutdown");
        }
    }

    /// The first round of the keeper, before the first push: how long until
    /// the next.
    pub(super) async fn keep(&self) -> Duration {
        self.round(&mut None).await
    }

    /// One round of the keeper: a grant or a renewal, what the answer means
    /// (see [`lease::Lease::answer`]), then channels retaken where due. A
    /// lease found gone is replaced in the same round. How long until the
    /// next round.
    async fn round(&self, ka: &mut Option<KeepAlive>) -> Duration {
        loop {
            let (next, stopped) = {
                let s = self.lock();
                (s.lease.next(), s.stopped)
            };
            if stopped {
                return Duration::from_secs(3600);
            }
            let sent = Instant::now();
            let (answer, error) = match next {
                Next::Grant => self.grant().await,
                Next::Renew(id) => {
                    let r = self.keep_alive(ka, id).await;
                    let answer = lease::classify_renewal(&r);
                    if answer != Answer::Renewed {
                        // A new stream next time: this one may be broken.
                        *ka = None;
                    }
                    (answer, r.err())
                }
            };
            if matches!(answer, Answer::Timeout | Answer::Transient) {
                self.metrics
                    .inc("livebucket_cluster_lease_failures_total", answer.label());
            }
            if self.lock().stopped {
                // Stopped while this request was out: a lease granted
                // meanwhile is not kept.
                if let Answer::Granted(id) = answer {
                    let mut client = self.etcd.client();
                    let _ =
                        tokio::time::timeout(self.etcd.timeout(), client.lease_revoke(id)).await;
                }
                return Duration::from_secs(3600);
            }
            let (step, alive, channels) = {
                let mut s = self.lock();
                let step = s.lease.answer(sent, answer);
                if step.lose_channels {
                    for h in s.holdings.values_mut() {
                        if let Holding::Held { session, .. } = h {
                            *h = Holding::Lost {
                                session: session.clone(),
                            };
                        }
                    }
                }
                let alive = s.lease.alive(Instant::now());
                if alive.is_none()
                    && matches!(answer, Answer::Timeout | Answer::Transient)
                    && (s.lease.id().is_some() || !s.holdings.is_empty())
                {
                    self.say_cut_off(&mut s);
                }
                if matches!(step.event, Some(Event::Granted | Event::Back)) {
                    s.cut_off_logged = false;
                }
                (step, alive, s.holdings.len())
            };
            match step.event {
                Some(Event::Granted) => {
                    self.metrics
                        .inc("livebucket_cluster_leases_total", "granted");
                    info!(lease = ?alive, ttl_secs = self.cfg.lease_ttl_secs, "etcd lease granted; node registered");
                }
                Some(Event::Back) => info!("etcd answers again; lease renewed"),
                Some(Event::Lost) => {
                    self.metrics.inc("livebucket_cluster_leases_total", "lost");
                    error!(
                        channels,
                        "etcd no longer knows this node's lease (expired or revoked): its channels were released in etcd; asking for a new lease and taking them back where nobody took them"
                    );
                }
                Some(Event::Failed { failures }) => {
                    let error = error.map(|e| e.to_string()).unwrap_or_default();
                    match next {
                        Next::Grant => {
                            warn!(%error, failures, "cannot get a lease from etcd; pushes are refused until it answers; retrying")
                        }
                        Next::Renew(_) => {
                            warn!(%error, failures, "cannot renew the etcd lease; retrying")
                        }
                    }
                }
                None => {}
            }
            match (step.retake, alive) {
                (Some(l), _) => self.retake(l, |_| true).await,
                // A retake that failed (etcd answered the renewal but not the
                // channel's request) is tried again every round.
                (None, Some(l)) if self.lock().holdings.values().any(decide::retake_due) => {
                    self.retake(l, decide::retake_due).await;
                }
                _ => {}
            }
            if !step.wait.is_zero() {
                return step.wait;
            }
        }
    }

    /// Renews once: the TTL etcd reported (0 when it does not know the
    /// lease).
    async fn keep_alive(
        &self,
        ka: &mut Option<KeepAlive>,
        lease: i64,
    ) -> Result<i64, super::EtcdError> {
        let t = self.etcd.timeout();
        let timeout = |_| super::EtcdError::Timeout(t);
        if ka.as_ref().is_none_or(|(_, _, id)| *id != lease) {
            let mut client = self.etcd.client();
            let (k, s) = tokio::time::timeout(t, client.lease_keep_alive(lease))
                .await
                .map_err(timeout)??;
            *ka = Some((k, s, lease));
        }
        let Some((keeper, stream, _)) = ka.as_mut() else {
            return Ok(0);
        };
        tokio::time::timeout(t, keeper.keep_alive())
            .await
            .map_err(timeout)??;
        match tokio::time::timeout(t, stream.message())
            .await
            .map_err(timeout)??
        {
            Some(resp) => Ok(resp.ttl()),
            None => Err(super::EtcdError::Etcd(etcd_client::Error::InvalidArgs(
                "keep-alive stream closed".into(),
            ))),
        }
    }

    /// Asks for a new lease and registers the node on it.
    async fn grant(&self) -> (Answer, Option<super::EtcdError>) {
        let lease = match self.etcd.grant(self.cfg.lease_ttl_secs).await {
            Ok(l) => l,
            Err(e) => return (failed(&e), Some(e)),
        };
        let node = NodeValue {
            node: self.cfg.node_id.clone(),
            advertise: self.cfg.advertise.clone(),
            started_ms: now_ms(),
        };
        let registered = async {
            self.etcd
                .put(&self.keys.member(&self.cfg.node_id), encode(&node), None)
                .await?;
            self.etcd
                .put(
                    &self.keys.node(&self.cfg.node_id),
                    encode(&node),
                    Some(lease),
                )
                .await
        };
        match registered.await {
            Ok(()) => (Answer::Granted(lease), None),
            // The unused lease expires alone after its TTL.
            Err(e) => (failed(&e), Some(e)),
        }
    }

    /// Puts this node's channels (those `which` picks) onto `lease`, where
    /// nobody else took them meanwhile. One that etcd does not answer for
    /// stays as it was (retried next round if [`decide::retake_due`]).
    async fn retake(&self, lease: i64, which: fn(&Holding) -> bool) {
        let held: Vec<_> = self
            .lock()
            .holdings
            .iter()
            .filter(|(_, h)| which(h))
            .map(|(k, h)| (k.clone(), h.clone()))
            .collect();
        for ((bucket, channel), h) in held {
            let key = self.keys.live(&bucket, &channel);
            let last = self.keys.last(&bucket, &channel);
            let Ok(current) = self.etcd.holder(&key).await else {
                continue;
            };
            let session = h.session().to_owned();
            let value = self.holder_value(&session);
            let next = match decide::after_new_lease(&h, current.as_ref(), self.node_id()) {
                None => continue,
                Some(Claim::Take) => match self.etcd.take(&key, &last, &value, lease).await {
                    Ok(Some(epoch)) => Holding::Held { session, epoch },
                    _ => continue,
                },
                Some(Claim::TakeOver { epoch }) => {
                    match self.etcd.take_over(&key, &last, epoch, &value, lease).await {
                        Ok(true) => Holding::Held { session, epoch },
                        _ => continue,
                    }
                }
                Some(Claim::Refuse { node }) => {
                    warn!(bucket, channel, by = %node, "another node took this channel while this node was cut off");
                    Holding::Superseded { session, by: node }
                }
            };
            let state = match &next {
                Holding::Held { epoch, .. } => format!("held at epoch {epoch}"),
                Holding::Lost { .. } => "lost".to_owned(),
                Holding::Superseded { by, .. } => format!("taken by {by}"),
            };
            info!(bucket, channel, %state, "channel after the new lease");
            self.lock().holdings.insert((bucket, channel), next);
        }
    }

    /// Deletes the keys of channels whose session here is finished.
    async fn release_finished(&self) {
        let done: Vec<_> = {
            let mut s = self.lock();
            s.pending
                .retain(|_, since| since.elapsed() < super::PENDING);
            s.holdings
                .iter()
                .filter(|((bucket, channel), h)| {
                    decide::releasable(
                        self.sessions.get(h.session()).is_some(),
                        s.pending.contains_key(h.session()),
                        self.sessions
                            .known_with_variants(bucket, channel)
                            .iter()
                            .any(|m| m.is_rendition()),
                    )
                })
                .map(|(k, h)| (k.clone(), h.clone()))
                .collect()
        };
        for ((bucket, channel), h) in done {
            if let Holding::Held { epoch, .. } = h {
                let key = self.keys.live(&bucket, &channel);
                if let Err(e) = self.etcd.release(&key, epoch).await {
                    warn!(error = %e, bucket, channel, "cannot release the channel in etcd; retrying");
                    continue;
                }
                info!(bucket, channel, "channel released in etcd");
            }
            let mut s = self.lock();
            if s.holdings.get(&(bucket.clone(), channel.clone())) == Some(&h) {
                s.holdings.remove(&(bucket, channel));
            }
        }
    }

    fn gauges(&self) {
        let s = self.lock();
        let alive = self.lease_alive(&s);
        self.metrics
            .gauge_set("livebucket_cluster_lease_alive", i64::from(alive));
        let held = s
            .holdings
            .values()
            .filter(|h| matches!(h, Holding::Held { .. }))
            .count();
        self.metrics
            .gauge_set("livebucket_cluster_channels_held", held as i64);
    }
}

/// Drops cached channel records that another node changed. A (re)started
/// watch first drops them all: changes may have come meanwhile.
pub(super) async fn watch_changes(
    c: Arc<Cluster>,
    channels: Arc<ChannelStore>,
    cancel: CancellationToken,
) {
    let prefix = c.keys.changes();
    // Failed opens in a row: logged at the first and every 30th.
    let mut failures: u32 = 0;
    loop {
        let mut client = c.etcd.client();
        let opened = tokio::time::timeout(
            c.etcd.timeout(),
            client.watch(prefix.clone(), Some(WatchOptions::new().with_prefix())),
        )
        .await;
        match opened {
            Ok(Ok(mut stream)) => {
                failures = 0;
                channels.forget_all();
                loop {
                    let msg = tokio::select! {
                        m = stream.message() => m,
                        _ = cancel.cancelled() => return,
                    };
                    match msg {
                        Ok(Some(resp)) => {
                            for ev in resp.events() {
                                let Some(kv) = ev.kv() else { continue };
                                let key = String::from_utf8_lossy(kv.key());
                                if let Some((bucket, channel)) = c.keys.split(&prefix, &key) {
                                    channels.forget(bucket, channel);
                                    c.metrics
                                        .inc("livebucket_cluster_channel_changes_total", "");
                                }
                            }
                        }
                        Ok(None) => {
                            c.metrics
                                .inc("livebucket_cluster_watch_reconnects_total", "");
                            warn!("etcd ended the watch of channel changes; reopening");
                            break;
                        }
                        Err(e) => {
                            c.metrics
                                .inc("livebucket_cluster_watch_reconnects_total", "");
                            warn!(error = %e, "etcd watch of channel changes broke; reopening");
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(error = %e, failures, "cannot watch channel changes in etcd; retrying");
                }
            }
            Err(_) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(
                        failures,
                        "etcd did not open the channel-change watch in time; retrying"
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Bumps `changes/<bucket>/<channel>` for every record this node writes,
/// retrying until etcd takes it.
pub(super) async fn announce_changes(
    c: Arc<Cluster>,
    mut rx: UnboundedReceiver<(String, String)>,
    cancel: CancellationToken,
) {
    loop {
        let (bucket, channel) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = cancel.cancelled() => return,
        };
        let key = c.keys.change(&bucket, &channel);
        let value = format!("{} {}", c.cfg.node_id, now_ms()).into_bytes();
        while let Err(e) = c.etcd.put(&key, value.clone(), None).await {
            warn!(error = %e, bucket, channel, "cannot announce a channel change in etcd; retrying");
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }
}
