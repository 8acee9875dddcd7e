//! `livebucket cluster status`: the nodes etcd knows, whether each holds a
//! live lease (so takes pushes) and the channels each one holds, read from
//! etcd alone. A node that joined (`members/`) but has no lease key
//! (`nodes/`) is running without a lease: listed as `NO LEASE`.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::etcd::{Etcd, EtcdError};
use super::keys::{HolderValue, Keys, NodeValue};
use crate::config::ClusterConfig;

/// What etcd says of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRow {
    /// From its lease key, or else its membership.
    pub value: Option<NodeValue>,
    /// It has a lease key: `Some(seconds left)` (`None` inside: expired
    /// between the two reads).
    pub lease: Option<Option<i64>>,
}

pub async fn render(cfg: &ClusterConfig) -> Result<String, EtcdError> {
    let etcd = Etcd::connect(cfg).await?;
    let keys = Keys::new(&cfg.prefix);
    let mut nodes: BTreeMap<String, NodeRow> = BTreeMap::new();
    for (key, value, _) in etcd.list(&keys.members()).await? {
        let name = key.trim_start_matches(&keys.members()).to_owned();
        nodes.entry(name).or_default().value = serde_json::from_slice(&value).ok();
    }
    for (key, value, lease) in etcd.list(&keys.nodes()).await? {
        let name = key.trim_start_matches(&keys.nodes()).to_owned();
        let ttl = etcd.time_to_live(lease).await?;
        let row = nodes.entry(name).or_default();
        row.lease = Some(ttl);
        if let Ok(v) = serde_json::from_slice(&value) {
            row.value = Some(v);
        }
    }
    let mut channels: BTreeMap<String, Vec<(String, HolderValue)>> = BTreeMap::new();
    for (key, value, _) in etcd.list(&keys.live_prefix()).await? {
        let Some((bucket, channel)) = keys.split(&keys.live_prefix(), &key) else {
            continue;
        };
        let Ok(h) = serde_json::from_slice::<HolderValue>(&value) else {
            continue;
        };
        channels
            .entry(h.node.clone())
            .or_default()
            .push((format!("{bucket}/{channel}"), h));
    }
    Ok(table(&nodes, &channels))
}

/// The status table: one line per node, then one per channel it holds.
pub fn table(
    nodes: &BTreeMap<String, NodeRow>,
    channels: &BTreeMap<String, Vec<(String, HolderValue)>>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "NODE\tLEASE\tADVERTISE\tLIVE CHANNELS");
    let mut names: Vec<&String> = nodes.keys().chain(channels.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let row = nodes.get(name).cloned().unwrap_or_default();
        let lease = match row.lease {
            Some(Some(t)) => format!("ok ({t}s left)"),
            Some(None) => "expired".to_owned(),
            // Joined, not stopped cleanly, no lease: refusing pushes (or
            // dead without a clean stop).
            None => "NO LEASE (refuses pushes, or is down)".to_owned(),
        };
        let advertise = row
            .value
            .and_then(|v| v.advertise)
            .unwrap_or_else(|| "-".into());
        let live = channels.get(name).map_or(0, Vec::len);
        let _ = writeln!(out, "{name}\t{lease}\t{advertise}\t{live}");
        for (channel, h) in channels.get(name).into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {channel}\tsession {}\tsince_ms {}",
                h.session, h.since_ms
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_without_a_lease_says_so() {
        let value = |n: &str| NodeValue {
            node: n.into(),
            advertise: Some(format!("http://{n}:9090")),
            started_ms: 1,
        };
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "a".to_owned(),
            NodeRow {
                value: Some(value("a")),
                lease: Some(Some(7)),
            },
        );
        nodes.insert(
            "b".to_owned(),
            NodeRow {
                value: Some(value("b")),
                lease: None,
            },
        );
        let mut channels = BTreeMap::new();
        channels.insert(
            "a".to_owned(),
            vec![(
                "bk/ch".to_owned(),
                HolderValue {
                    node: "a".into(),
                    session: "s1".into(),
                    since_ms: 5,
                    addr: String::new(),
                    advertise: None,
                },
            )],
        );
        let t = table(&nodes, &channels);
        assert_eq!(
            t,
            "NODE\tLEASE\tADVERTISE\tLIVE CHANNELS\n\
             a\tok (7s left)\thttp://a:9090\t1\n  bk/ch\tsession s1\tsince_ms 5\n\
             b\tNO LEASE (refuses pushes, or is down)\thttp://b:9090\t0\n"
        );
    }
}
