//! The events livebucket sends and their JSON bodies.
//!
//! Every body is `{"type", "id", "timestamp", "data"}`. `id` is the
//! idempotency key: the same event sent again (a retry, a restart, a
//! session's end seen again after a crash) carries the same id. Events of a
//! session derive it from the session id through a hash of their own, so the
//! id reveals neither the session id (a capability: whoever knows it may
//! publish into the session) nor its public recording id; one-off events
//! (`stream.refused`, `channel.changed`) get a random one when they happen.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::session::{SessionMeta, recording_id};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    StreamStarted,
    StreamEnded,
    RecordingReady,
    StreamRefused,
    ChannelChanged,
}

impl Kind {
    /// The `type` field, and the `type` label of the metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::StreamStarted => "stream.started",
            Kind::StreamEnded => "stream.ended",
            Kind::RecordingReady => "recording.ready",
            Kind::StreamRefused => "stream.refused",
            Kind::ChannelChanged => "channel.changed",
        }
    }
}

/// What `channel.changed` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// PutLiveChannel: the record was created or replaced.
    Created,
    Enabled,
    Disabled,
    Deleted,
}

impl Change {
    /// What PutLiveChannelStatus to `status` is.
    pub(crate) fn status(status: crate::channels::record::ChannelStatus) -> Change {
        match status {
            crate::channels::record::ChannelStatus::Enabled => Change::Enabled,
            crate::channels::record::ChannelStatus::Disabled => Change::Disabled,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Enabled => "enabled",
            Change::Disabled => "disabled",
            Change::Deleted => "deleted",
        }
    }
}

/// One event, before the node that emits it fills `data.node`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub kind: Kind,
    pub id: String,
    /// When it happened (Unix ms).
    pub at_ms: u64,
    /// The ordering lane: `bucket/channel`, or `""` for refusals (whose
    /// channel name is unverified input).
    pub lane: String,
    /// The channel's `Snapshot/NotifyTopic`: an endpoint name.
    pub topic: Option<String>,
    pub data: Value,
}

/// `ms` as RFC 3339 UTC with milliseconds (`2026-12-06T23:30:00.125Z`).
pub(crate) fn rfc3339(ms: u64) -> String {
    let t = OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms % 1000
    )
}

/// The stable id of a session's event of `kind`.
fn session_event_id(kind: Kind, session: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"livebucket event id\0");
    h.update(kind.as_str().as_bytes());
    h.update(b"\0");
    h.update(session.as_bytes());
    format!("evt_{}", hex::encode(&h.finalize()[..16]))
}

fn random_id() -> String {
    format!("evt_{}", hex::encode(rand::random::<[u8; 16]>()))
}

fn lane(bucket: &str, channel: &str) -> String {
    format!("{bucket}/{channel}")
}

/// The fields every session event has.
fn session_data(meta: &SessionMeta) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("bucket".into(), json!(meta.bucket));
    m.insert("channel".into(), json!(meta.channel));
    m.insert("recording".into(), json!(recording_id(&meta.id)));
    m.insert("remote_addr".into(), json!(meta.addr));
    m.insert("started_at".into(), json!(rfc3339(meta.started_ms)));
    m
}

impl Event {
    fn of_session(kind: Kind, meta: &SessionMeta, at_ms: u64, data: Value) -> Event {
        Event {
            kind,
            id: session_event_id(kind, &meta.id),
            at_ms,
            lane: lane(&meta.bucket, &meta.channel),
            topic: meta.notify_topic.clone(),
            data,
        }
    }

    /// A push was approved (emitted before nginx gets the answer).
    pub(crate) fn stream_started(meta: &SessionMeta) -> Event {
        let data = session_data(meta);
        Event::of_session(Kind::StreamStarted, meta, meta.started_ms, data.into())
    }

    /// The push ended (its publisher left, or livebucket found it gone at
    /// a restart): `fragments` nginx wrote for it, `ended_ms` when
    /// livebucket saw it end.
    pub(crate) fn stream_ended(meta: &SessionMeta, fragments: usize, ended_ms: u64) -> Event {
        let mut data = session_data(meta);
        data.insert("ended_at".into(), json!(rfc3339(ended_ms)));
        data.insert(
            "duration_secs".into(),
            json!(ended_ms.saturating_sub(meta.started_ms) as f64 / 1000.0),
        );
        data.insert("fragments".into(), json!(fragments));
        Event::of_session(Kind::StreamEnded, meta, ended_ms, data.into())
    }

    /// Every fragment of the session and its final manifest are in the
    /// bucket. `vod` is the range (Unix seconds, end exclusive) that
    /// GetVodPlaylist / `/vod` take to list exactly this recording's
    /// fragments (with those of any other push in that range).
    pub(crate) fn recording_ready(meta: &SessionMeta, fragments: usize, stored_ms: u64) -> Event {
        let mut data = session_data(meta);
        let start = meta.started_ms / 1000;
        let end = stored_ms.div_ceil(1000).max(start + 1);
        data.insert("stored_at".into(), json!(rfc3339(stored_ms)));
        data.insert("fragments".into(), json!(fragments));
        data.insert("vod".into(), json!({"start_time": start, "end_time": end}));
        Event::of_session(Kind::RecordingReady, meta, stored_ms, data.into())
    }

    /// A publish was refused. `reason` is the refusal's class (the
    /// `livebucket_push_rejected_total` label); `app` and `name` are what
    /// the publisher asked for, unverified; no URL parameter is included
    /// (the signature and any token stay out).
    pub(crate) fn stream_refused(
        app: &str,
        name: &str,
        addr: &str,
        reason: &str,
        at_ms: u64,
    ) -> Event {
        Event {
            kind: Kind::StreamRefused,
            id: random_id(),
            at_ms,
            lane: String::new(),
            topic: None,
            data: json!({
                "app": app,
                "channel": name,
                "remote_addr": addr,
                "reason": reason,
            }),
        }
    }

    /// A channel record was created, enabled, disabled or deleted through
    /// the API; `topic` is its `Snapshot/NotifyTopic` (the deleted record's
    /// for a deletion).
    pub(crate) fn channel_changed(
        bucket: &str,
        channel: &str,
        change: Change,
        topic: Option<&str>,
        at_ms: u64,
    ) -> Event {
        Event {
            kind: Kind::ChannelChanged,
            id: random_id(),
            at_ms,
            lane: lane(bucket, channel),
            topic: topic.map(str::to_owned),
            data: json!({
                "bucket": bucket,
                "channel": channel,
                "change": change.as_str(),
            }),
        }
    }

    /// The JSON body sent, with `data.node` set to `node`.
    pub(crate) fn body(&self, node: &str) -> String {
        let mut data = self.data.clone();
        if let Some(m) = data.as_object_mut() {
            m.insert("node".into(), json!(node));
        }
        json!({
            "type": self.kind.as_str(),
            "id": self.id,
            "timestamp": rfc3339(self.at_ms),
            "data": data,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SessionMeta {
        serde_json::from_str(
            r#"{"id":"s3cr3t-session","bucket":"b","channel":"cam","playlist":"index.m3u8",
                "key_id":"k","clientid":"1","name":"cam","addr":"10.0.0.9","started_ms":1765000000000}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_session_event_has_a_stable_id_and_never_the_session_id() {
        let m = meta();
        let a = Event::stream_started(&m);
        let b = Event::stream_started(&m);
        assert_eq!(a.id, b.id, "the same event, the same id");
        let ended = Event::stream_ended(&m, 3, m.started_ms + 12_500);
        assert_ne!(a.id, ended.id);
        for e in [
            &a,
            &ended,
            &Event::recording_ready(&m, 3, m.started_ms + 20_000),
        ] {
            let body = e.body("node-1");
            assert!(!body.contains("s3cr3t-session"), "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["data"]["recording"], recording_id(&m.id));
            assert_eq!(v["data"]["node"], "node-1");
            assert_eq!(v["id"], e.id);
        }
        let v: Value = serde_json::from_str(&ended.body("n")).unwrap();
        assert_eq!(v["type"], "stream.ended");
        assert_eq!(v["data"]["duration_secs"], 12.5);
        assert_eq!(v["timestamp"], "2025-12-06T05:46:52.500Z");
    }

    #[test]
    fn the_vod_range_covers_the_whole_recording() {
        let m = meta();
        let e = Event::recording_ready(&m, 4, m.started_ms + 8_001);
        assert_eq!(
            e.data["vod"],
            json!({"start_time": 1765000000, "end_time": 1765000009})
        );
    }

    #[test]
    fn one_off_events_get_fresh_ids() {
        let a = Event::stream_refused("live", "cam", "1.2.3.4", "bad_signature", 1);
        let b = Event::stream_refused("live", "cam", "1.2.3.4", "bad_signature", 1);
        assert_ne!(a.id, b.id);
        assert_eq!(a.lane, "");
        let c = Event::channel_changed("b", "cam", Change::Disabled, Some("app"), 1);
        assert_eq!(c.lane, "b/cam");
        assert_eq!(c.data["change"], "disabled");
    }
}
