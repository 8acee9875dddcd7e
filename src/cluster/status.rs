//! `livebucket cluster status`: the nodes etcd knows, their lease health
//! and the channels each one holds, read from etcd alone.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use super::etcd::{Etcd, EtcdError};
use super::keys::{HolderValue, Keys, NodeValue};
use crate::config::ClusterConfig;

pub async fn render(cfg: &ClusterConfig) -> Result<String, EtcdError> {
    let etcd = Etcd::connect(
        &cfg.endpoints,
        Duration::from_millis(cfg.request_timeout_ms),
    )
    .await?;
    let keys = Keys::new(&cfg.prefix);
    let mut nodes: BTreeMap<String, (Option<NodeValue>, Option<i64>)> = BTreeMap::new();
    for (key, value, lease) in etcd.list(&keys.nodes()).await? {
        let name = key.trim_start_matches(&keys.nodes()).to_owned();
        let ttl = etcd.time_to_live(lease).await?;
        nodes.insert(name, (serde_json::from_slice(&value).ok(), ttl));
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
    let mut out = String::new();
    let _ = writeln!(out, "NODE\tLEASE\tADVERTISE\tLIVE CHANNELS");
    let mut names: Vec<&String> = nodes.keys().chain(channels.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (value, ttl) = nodes.get(name).cloned().unwrap_or((None, None));
        let lease = match ttl {
            Some(t) => format!("ok ({t}s left)"),
            None => "expired".to_owned(),
        };
        let advertise = value
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
    Ok(out)
}
