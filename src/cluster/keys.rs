//! Where livebucket keeps its cluster state in etcd, and what the values say.
//! Everything is under `cluster.prefix` (`/livebucket/` by default):
//!
//! - `nodes/<node id>`: a node is up (on the node's lease); [`NodeValue`].
//! - `members/<node id>`: a node joined and has not stopped cleanly (no
//!   lease: it outlives a lost lease, so `livebucket cluster status` can
//!   name a node that is running without one); [`NodeValue`].
//! - `live/<bucket>/<channel>`: the channel's one publisher (on the holding
//!   node's lease); [`HolderValue`]. The key's create revision is the
//!   holder's epoch: a node fences its playlist writes on it.
//! - `last/<bucket>/<channel>`: who took the channel last (no lease, written
//!   in the same transaction as every take); [`HolderValue`]. A node
//!   restarted after a crash reads it to know whether anybody continued.
//! - `changes/<bucket>/<channel>`: bumped at every write of the channel's
//!   record, so every node forgets its cached copy (etcd watch).
//! - `sweep/<bucket>/<channel>`: the node sweeping the channel's old
//!   recordings now (on its lease; the node id as value): one at a time.
//!
//! Bucket and channel names hold no `/` (both are validated before any key
//! is made), so a key splits back unambiguously.

use serde::{Deserialize, Serialize};

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeValue {
    pub node: String,
    /// Its operator URL (`cluster.advertise`), if given.
    #[serde(default)]
    pub advertise: Option<String>,
    pub started_ms: u64,
}

/// What a node's operator listener answers other nodes about a channel it
/// publishes (`GET /cluster/v1/stat/<bucket>/<channel>`): nginx's
/// measurements of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerStat {
    pub video: Option<crate::channels::record::VideoStat>,
    pub audio: Option<crate::channels::record::AudioStat>,
}

/// Who publishes a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderValue {
    pub node: String,
    pub session: String,
    pub since_ms: u64,
    /// The publisher's address, for GetLiveChannelStat on other nodes.
    #[serde(default)]
    pub addr: String,
    #[serde(default)]
    pub advertise: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    pub(crate) fn node(&self, node: &str) -> String {
        format!("{}{node}", self.nodes())
    }

    pub(crate) fn members(&self) -> String {
        format!("{}members/", self.prefix)
    }

    pub(crate) fn member(&self, node: &str) -> String {
        format!("{}{node}", self.members())
    }

    pub(crate) fn live_prefix(&self) -> String {
        format!("{}live/", self.prefix)
    }

    pub(crate) fn live(&self, bucket: &str, channel: &str) -> String {
        format!("{}{bucket}/{channel}", self.live_prefix())
    }

    pub(crate) fn last(&self, bucket: &str, channel: &str) -> String {
        format!("{}last/{bucket}/{channel}", self.prefix)
    }

    pub(crate) fn changes(&self) -> String {
        format!("{}changes/", self.prefix)
    }

    pub(crate) fn change(&self, bucket: &str, channel: &str) -> String {
        format!("{}{bucket}/{channel}", self.changes())
    }

    pub(crate) fn sweep(&self, bucket: &str, channel: &str) -> String {
        format!("{}sweep/{bucket}/{channel}", self.prefix)
    }

    /// (bucket, channel) of a `live/` or `changes/` key under `under`.
    pub(crate) fn split<'k>(&self, under: &str, key: &'k str) -> Option<(&'k str, &'k str)> {
        key.strip_prefix(under)?.split_once('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_split() {
        let k = Keys::new("/lb/");
        assert_eq!(k.live("b", "c"), "/lb/live/b/c");
        assert_eq!(k.change("b", "c"), "/lb/changes/b/c");
        assert_eq!(k.node("n1"), "/lb/nodes/n1");
        assert_eq!(k.member("n1"), "/lb/members/n1");
        assert_eq!(k.last("b", "c"), "/lb/last/b/c");
        assert_eq!(k.sweep("b", "c"), "/lb/sweep/b/c");
        assert_eq!(k.split(&k.changes(), "/lb/changes/b/c"), Some(("b", "c")));
        assert_eq!(k.split(&k.live_prefix(), "/lb/changes/b/c"), None);
        assert_eq!(k.split(&k.changes(), "/lb/changes/b"), None);
    }
}
