//! The retention sweep's lock on a channel ([`crate::retention`]): the
//! channel's `sweep/` key, created on this node's lease, so that one node
//! sweeps a channel at a time and a node that dies mid-sweep frees it when
//! its lease expires.

use std::time::Instant;

use super::Cluster;
use super::etcd::EtcdError;

impl Cluster {
    /// Takes the channel's sweep lock: its epoch, or `None` when another
    /// sweep holds it. Without a live lease this node sweeps nothing.
    pub async fn lock_sweep(&self, bucket: &str, channel: &str) -> Result<Option<i64>, EtcdError> {
        let Some(lease) = self.lock().lease.alive(Instant::now()) else {
            return Err(EtcdError::Etcd(etcd_client::Error::InvalidArgs(
                "this node holds no live lease in etcd".into(),
            )));
        };
        let key = self.keys.sweep(bucket, channel);
        self.etcd
            .create(&key, self.node_id().as_bytes().to_vec(), lease)
            .await
    }

    /// Releases a lock [`Cluster::lock_sweep`] took (a failure is logged:
    /// the lease frees the key anyway).
    pub async fn unlock_sweep(&self, bucket: &str, channel: &str, epoch: i64) {
        let key = self.keys.sweep(bucket, channel);
        if let Err(e) = self.etcd.release(&key, epoch).await {
            tracing::warn!(error = %e, key, "cannot release the sweep lock; it goes with the lease");
        }
    }
}
