//! `on_update` of a running push: whether its publisher may go on, from
//! what the handler found (the channel's record, the cluster's verdict).
//! The handler has verified the URL and found the session first; this is
//! the rest, without I/O.

use tracing::info;

use super::Refusal;
use crate::auth::reject::Reject;
use crate::channels::record::ChannelRecord;
use crate::cluster::decide::Update;
use crate::session::SessionMeta;

/// The channel's record as `on_update` could read it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lookup<'a> {
    /// Read (or cached): the record, or none.
    Found(Option<&'a ChannelRecord>),
    /// The store did not answer in time.
    Unreadable,
}

/// Keeps the push of `session` unless its channel was disabled since it
/// began, or (in a cluster, `cluster` is `Some`) another node publishes
/// the channel now or this node is cut off from the coordinator. A store
/// that cannot answer keeps the stream: an S3 outage must not end live
/// pushes.
pub(crate) fn update(
    session: &SessionMeta,
    record: Lookup<'_>,
    cluster: Option<Update>,
) -> Result<(), Refusal> {
    if let Lookup::Found(record) = record {
        crate::channels::still_allowed(record).map_err(Reject::from)?;
    }
    match cluster {
        None | Some(Update::Keep) => Ok(()),
        Some(Update::Superseded(node)) => {
            info!(channel = %session.channel, node = %node, "another node publishes this channel now; dropping this publisher");
            Err(Refusal::ChannelLive(format!(
                "{}/{}",
                session.bucket, session.channel
            )))
        }
        Some(Update::CutOff) => Err(Refusal::Unavailable(
            "this node is cut off from the cluster coordinator; the publisher should reconnect to another node".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::record::{ChannelStatus, LiveChannelConfig};

    fn session() -> SessionMeta {
        SessionMeta {
            id: "0123456789abcdef0123456789abcdef".into(),
            bucket: "demo".into(),
            channel: "cam1".into(),
            playlist: "index.m3u8".into(),
            key_id: "GK1".into(),
            clientid: "42".into(),
            name: "cam1".into(),
            addr: "192.0.2.7".into(),
            started_ms: 0,
            shape: None,
            low_latency: None,
            snapshot: None,
            resume: None,
            grant: String::new(),
            notify_topic: None,
            variant: None,
            renditions: Vec::new(),
        }
    }

    fn record(status: ChannelStatus) -> ChannelRecord {
        ChannelRecord {
            name: "cam1".into(),
            config: LiveChannelConfig {
                status,
                ..LiveChannelConfig::default()
            },
            last_modified: 0,
        }
    }

    #[test]
    fn a_push_goes_on_unless_disabled_superseded_or_cut_off() {
        let s = session();
        let enabled = record(ChannelStatus::Enabled);
        let disabled = record(ChannelStatus::Disabled);
        for lookup in [
            Lookup::Found(None),
            Lookup::Found(Some(&enabled)),
            Lookup::Unreadable,
        ] {
            assert_eq!(update(&s, lookup, None), Ok(()));
            assert_eq!(update(&s, lookup, Some(Update::Keep)), Ok(()));
        }
        // Disabled since the push began: dropped, in a cluster or not.
        for cluster in [None, Some(Update::Keep)] {
            assert_eq!(
                update(&s, Lookup::Found(Some(&disabled)), cluster),
                Err(Refusal::Refused(Reject::ChannelDisabled))
            );
        }
        // An S3 outage keeps the stream.
        assert_eq!(update(&s, Lookup::Unreadable, None), Ok(()));
        assert_eq!(
            update(
                &s,
                Lookup::Unreadable,
                Some(Update::Superseded("node-b".into()))
            ),
            Err(Refusal::ChannelLive("demo/cam1".into()))
        );
        let cut = update(&s, Lookup::Found(None), Some(Update::CutOff)).unwrap_err();
        assert_eq!(cut.code(), "unavailable");
    }
}
