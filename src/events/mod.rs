//! Stream and channel events for the application around livebucket,
//! delivered at least once as signed HTTP POSTs (`[events]`).
//!
//! - [`model`]: the events and their JSON bodies (ids stable across retries).
//! - [`decide`]: what to send next, backoff, drop by age, per-channel order;
//!   no I/O.
//! - [`store`]: the queue of record, one fsync'd file per event in
//!   `<state_dir>/events/`.
//! - `sign::webhook`: the Standard Webhooks signature.
//! - this file: [`Events`], the handle the emitting call sites hold
//!   (`events.emit(Event::…)`, one line each, marked `// events:`), and the
//!   delivery worker.
//!
//! Invariants:
//! - [`Events::emit`] returns once the event is on disk (file and directory
//!   fsync'd); the call sites emit before the answer or the action that
//!   makes the event true (the 302 of `on_publish`, the API's answer). It
//!   never waits for a receiver: the worker POSTs in the background.
//! - An event leaves the disk only when every endpoint it is for answered
//!   2xx, or after `max_age_secs` (counted in
//!   `livebucket_events_dropped_total`, logged). New `stream.refused`
//!   events are not queued past `max_queued` queued events: anyone who
//!   reaches the RTMP port can cause them.
//! - Per endpoint and channel, events go out in the order they were emitted.
//! - Each node sends the events it emitted, from its own `state_dir`: in a
//!   cluster the node that took the push (its `stream.*` and
//!   `recording.ready`) or answered the API call (`channel.changed`), so an
//!   event is sent by one node only.
//!
//! Receivers: the endpoints with `all_channels = true`, plus the one a
//! channel's `Snapshot/NotifyTopic` names (an endpoint of the config, by
//! name; a topic naming none is ignored). Only operator-configured URLs are
//! ever POSTed to: a channel owner picks among them but cannot add one, so
//! the API cannot make livebucket reach an arbitrary internal address.

pub(crate) mod decide;
pub(crate) mod model;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::Uri;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::unix_now_ms;
use crate::config::EventsConfig;
use crate::metrics::Metrics;
use decide::{Attempts, Outcome, Pending, Queue, Send};
pub(crate) use model::{Change, Event, Kind};
use store::{DiskQueue, Record};

/// The handle call sites emit through; clones share the queue. Without
/// `[events]` endpoints it is inert: nothing is written or sent.
#[derive(Clone, Default)]
pub(crate) struct Events {
    inner: Option<Arc<Inner>>,
}

struct Endpoint {
    name: String,
    url: Uri,
    all_channels: bool,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    key: Vec<u8>,
    node: String,
    timeout: Duration,
    max_queued: usize,
    concurrency: usize,
    disk: DiskQueue,
    queue: Mutex<Queue>,
    /// The last sequence number handed out.
    seq: Mutex<u64>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

/// Why the events queue cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the events queue in {dir}: {source}")]
pub(crate) struct OpenError {
    dir: String,
    source: std::io::Error,
}

impl Events {
    /// An inert handle (no `[events]`).
    pub(crate) fn disabled() -> Events {
        Events::default()
    }

    /// The queue in `<state_dir>/events/` with what it held at the last
    /// stop; `node` names this node in every event. Inert when `cfg` lists
    /// no endpoint.
    pub(crate) fn open(
        cfg: &EventsConfig,
        state_dir: &Path,
        node: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Events, OpenError> {
        if !cfg.enabled() {
            return Ok(Events::disabled());
        }
        let dir = state_dir.join("events");
        let fail = |source| OpenError {
            dir: dir.display().to_string(),
            source,
        };
        let disk = DiskQueue::open(&dir).map_err(fail)?;
        let endpoints: Vec<Endpoint> = cfg
            .endpoints
            .iter()
            .filter_map(|e| {
                Some(Endpoint {
                    name: e.name.clone(),
                    // Validated with the config.
                    url: e.url.parse().ok()?,
                    all_channels: e.all_channels,
                })
            })
            .collect();
        let mut queue = Queue::new(cfg.max_age_secs * 1000, cfg.max_backoff_secs * 1000);
        let mut last = 0;
        for r in disk.load().map_err(fail)? {
            let Record::V1 {
                seq,
                kind,
                id,
                lane,
                created_ms,
                targets,
                body,
            } = r;
            last = last.max(seq);
            let kind = kind_label(&kind);
            let targets: BTreeMap<String, Attempts> = targets
                .into_iter()
                .filter(|t| endpoints.iter().any(|e| &e.name == t))
                .map(|t| (t, Attempts::default()))
                .collect();
            if targets.is_empty() {
                warn!(
                    seq,
                    kind, "queued event for endpoints no longer configured; dropped"
                );
                metrics.inc("livebucket_events_dropped_total", kind);
                disk.remove(seq);
                continue;
            }
            queue.push(Pending {
                seq,
                kind,
                lane,
                created_ms,
                body: Arc::from(body),
                id: Arc::from(id),
                targets,
            });
        }
        if !queue.is_empty() {
            info!(
                events = queue.len(),
                "events queued at the last stop will be sent"
            );
        }
        Ok(Events {
            inner: Some(Arc::new(Inner {
                endpoints,
                key: cfg.key().unwrap_or_default(),
                node: node.to_owned(),
                timeout: Duration::from_secs(cfg.timeout_secs),
                max_queued: cfg.max_queued,
                concurrency: cfg.concurrency,
                disk,
                queue: Mutex::new(queue),
                seq: Mutex::new(last),
                wake: Notify::new(),
                metrics,
            })),
        })
    }

    /// Queues `event` for its endpoints: on disk (fsync'd) when this
    /// returns, sent by [`Events::run`]. A write that fails is logged and
    /// counted as dropped; it never fails the caller (the stream or the
    /// API call goes on).
    pub(crate) fn emit(&self, event: Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        inner.emit(event);
    }

    /// Delivers queued events until `cancel`; what is not delivered stays
    /// on disk for the next start.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let Some(inner) = self.inner else {
            return;
        };
        inner.run(cancel).await;
    }
}

/// The metric label of a stored `type`, as a `&'static str`.
fn kind_label(kind: &str) -> &'static str {
    [
        Kind::StreamStarted,
        Kind::StreamEnded,
        Kind::RecordingReady,
        Kind::StreamRefused,
        Kind::ChannelChanged,
    ]
    .into_iter()
    .map(Kind::as_str)
    .find(|k| *k == kind)
    .unwrap_or("unknown")
}

impl Inner {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, event: Event) {
        let kind = event.kind.as_str();
        let targets = targets(&self.endpoints, event.topic.as_deref());
        if targets.is_empty() {
            return;
        }
        if event.kind == Kind::StreamRefused && self.queue().len() >= self.max_queued {
            self.metrics.inc("livebucket_events_dropped_total", kind);
            debug!("events queue past events.max_queued; stream.refused not queued");
            return;
        }
        let seq = {
            let mut last = self.seq.lock().unwrap_or_else(|p| p.into_inner());
            // Microseconds of the wall clock, or one past the last: numbers
            // keep growing across restarts, so file names sort in emission
            // order.
            *last = (unix_now_ms() * 1000).max(*last + 1);
            *last
        };
        let body = event.body(&self.node);
        let record = Record::V1 {
            seq,
            kind: kind.to_owned(),
            id: event.id.clone(),
            lane: event.lane.clone(),
            created_ms: event.at_ms,
            targets: targets.clone(),
            body: body.clone(),
        };
        let began = Instant::now();
        if let Err(e) = self.disk.write(seq, &record) {
            error!(kind, error = %e, "cannot write an event to disk; it is lost");
            self.metrics.inc("livebucket_events_dropped_total", kind);
            return;
        }
        self.metrics
            .observe("livebucket_events_write_seconds", kind, began.elapsed());
        self.queue().push(Pending {
            seq,
            kind,
            lane: event.lane,
            created_ms: event.at_ms,
            body: Arc::from(body),
            id: Arc::from(event.id),
            targets: targets
                .into_iter()
                .map(|t| (t, Attempts::default()))
                .collect(),
        });
        self.wake.notify_one();
    }

    async fn run(self: Arc<Inner>, cancel: CancellationToken) {
        let client = match crate::outbound::plain() {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "cannot build the HTTP client; events stay queued on disk");
                return;
            }
        };
        let mut in_flight: JoinSet<(Send, Option<u16>)> = JoinSet::new();
        loop {
            let now = unix_now_ms();
            let (dropped, sends, wake) = {
                let mut q = self.queue();
                let dropped = q.expire(now);
                let room = self.concurrency.saturating_sub(in_flight.len());
                let sends: Vec<(Send, Arc<str>, Arc<str>)> = q
                    .due(now, room)
                    .into_iter()
                    .filter_map(|s| {
                        let p = q.get(s.seq)?;
                        Some((s, p.id.clone(), p.body.clone()))
                    })
                    .collect();
                self.metrics
                    .gauge_set("livebucket_events_queued", q.len() as i64);
                self.metrics.gauge_set(
                    "livebucket_events_oldest_age_seconds",
                    q.oldest().map_or(0, |o| now.saturating_sub(o) / 1000) as i64,
                );
                (dropped, sends, q.next_wake())
            };
            for p in dropped {
                warn!(
                    kind = p.kind, id = %p.id, lane = %p.lane,
                    age_secs = now.saturating_sub(p.created_ms) / 1000,
                    endpoints = ?p.targets.keys().collect::<Vec<_>>(),
                    "event older than events.max_age_secs and still undelivered; dropped"
                );
                self.metrics.inc("livebucket_events_dropped_total", p.kind);
                self.disk.remove(p.seq);
            }
            for (send, id, body) in sends {
                let Some(url) = self
                    .endpoints
                    .iter()
                    .find(|e| e.name == send.target)
                    .map(|e| e.url.clone())
                else {
                    continue;
                };
                let (key, timeout) = (self.key.clone(), self.timeout);
                in_flight.spawn(async move {
                    let status = post(client, url, &key, &id, &body, timeout).await;
                    (send, status)
                });
            }
            // Wake for the next retry or expiry, and at least every 5 s so
            // the age gauge moves.
            let sleep_ms = wake.map_or(5000, |w| w.saturating_sub(now).min(5000));
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok((send, status)) = done {
                        self.answered(&send, status);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
            }
        }
        in_flight.abort_all();
    }

    /// Records one attempt's answer.
    fn answered(&self, send: &Send, status: Option<u16>) {
        let outcome = decide::classify(status);
        let now = unix_now_ms();
        let mut q = self.queue();
        let Some(p) = q.get(send.seq) else {
            return;
        };
        let (kind, id) = (p.kind, p.id.clone());
        let failures = p.targets.get(&send.target).map_or(0, |a| a.failures) + 1;
        let done = q.outcome(send, outcome, now, rand::random::<f64>());
        drop(q);
        match outcome {
            Outcome::Delivered => {
                self.metrics.inc("livebucket_events_delivered_total", kind);
                debug!(kind, id = %id, endpoint = %send.target, "event delivered");
            }
            Outcome::Retry { reason } => {
                self.metrics.inc("livebucket_events_failed_total", kind);
                warn!(
                    kind, id = %id, endpoint = %send.target, reason,
                    status = status.map_or_else(|| "none".to_owned(), |s| s.to_string()),
                    failures, "event not delivered; retrying"
                );
            }
        }
        if let Some(p) = done {
            self.disk.remove(p.seq);
        }
    }
}

/// One signed POST of `body`; the answer's status, or `None` when none came
/// within `timeout` (connect, send and the answer's body included).
async fn post(
    client: &crate::outbound::HttpClient,
    url: Uri,
    key: &[u8],
    id: &str,
    body: &str,
    timeout: Duration,
) -> Option<u16> {
    let timestamp = crate::clock::unix_now();
    let signature = crate::sign::webhook::signature(key, id, timestamp, body).ok()?;
    let req = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "livebucket-events")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(crate::outbound::full(body.to_owned()))
        .ok()?;
    let attempt = async {
        let resp = client.send(req).await.ok()?;
        let status = resp.status().as_u16();
        // Read (and discard) the answer so the connection is reused.
        let _ = crate::outbound::read_capped(resp.into_body(), 64 * 1024).await;
        Some(status)
    };
    tokio::time::timeout(timeout, attempt).await.ok().flatten()
}

/// The endpoints an event goes to: those that get every channel's events,
/// and the one `topic` (the channel's `Snapshot/NotifyTopic`) names.
fn targets(endpoints: &[Endpoint], topic: Option<&str>) -> Vec<String> {
    if let Some(t) = topic
        && !endpoints.iter().any(|e| e.name == t)
    {
        debug!(topic = t, "NotifyTopic names no [events] endpoint");
    }
    endpoints
        .iter()
        .filter(|e| e.all_channels || topic == Some(e.name.as_str()))
        .map(|e| e.name.clone())
        .collect()
}

/// This node's name in events: the cluster's `node_id`, else the host name.
pub(crate) fn node_name(cfg: &crate::config::Config) -> String {
    if let Some(c) = &cfg.cluster {
        return c.node_id.clone();
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "livebucket".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_reaches_the_shared_endpoints_and_the_one_its_topic_names() {
        let ep = |name: &str, all_channels| Endpoint {
            name: name.into(),
            url: "http://127.0.0.1:9/".parse().unwrap(),
            all_channels,
        };
        let eps = [ep("app", true), ep("billing", false), ep("audit", false)];
        assert_eq!(targets(&eps, None), ["app"]);
        assert_eq!(targets(&eps, Some("billing")), ["app", "billing"]);
        assert_eq!(
            targets(&eps, Some("arn:mns:topic/x")),
            ["app"],
            "an MNS topic that is no endpoint adds none"
        );
        assert!(targets(&eps[1..], None).is_empty());
    }

    fn config(max_queued: usize) -> EventsConfig {
        let mut cfg: EventsConfig = toml::from_str(
            "secret = \"0123456789abcdef\"\n\
             [[endpoints]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        cfg.max_queued = max_queued;
        cfg
    }

    #[test]
    fn emitted_events_are_on_disk_and_a_restart_sends_them_again_under_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let events = Events::open(&config(10), dir.path(), "n1", metrics.clone()).unwrap();
        let meta: crate::session::SessionMeta = serde_json::from_str(
            r#"{"id":"s","bucket":"b","channel":"cam","playlist":"index.m3u8","key_id":"k",
                "clientid":"1","name":"cam","addr":"a","started_ms":1000}"#,
        )
        .unwrap();
        let started = Event::stream_started(&meta);
        let ended = Event::stream_ended(&meta, 2, 5000);
        let ids = [started.id.clone(), ended.id.clone()];
        events.emit(started);
        events.emit(ended);
        drop(events);
        // As after a crash: a new process opens the same directory.
        let reopened = Events::open(&config(10), dir.path(), "n1", metrics).unwrap();
        let inner = reopened.inner.unwrap();
        let mut q = inner.queue();
        assert_eq!(q.len(), 2);
        let due = q.due(unix_now_ms(), 10);
        assert_eq!(due.len(), 1, "one lane: the second waits for the first");
        assert_eq!(&*q.get(due[0].seq).unwrap().id, ids[0].as_str());
        let body: serde_json::Value =
            serde_json::from_str(&q.get(due[0].seq).unwrap().body).unwrap();
        assert_eq!(body["data"]["node"], "n1");
    }

    #[test]
    fn refusals_past_max_queued_are_dropped_and_counted_but_stream_events_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::default());
        let events = Events::open(&config(1), dir.path(), "n1", metrics.clone()).unwrap();
        for _ in 0..3 {
            events.emit(Event::stream_refused(
                "live",
                "cam",
                "a",
                "bad_signature",
                1,
            ));
        }
        events.emit(Event::channel_changed("b", "cam", Change::Created, None, 2));
        let files = std::fs::read_dir(dir.path().join("events"))
            .unwrap()
            .count();
        assert_eq!(files, 2, "one refusal and the change");
        assert_eq!(
            metrics.counter("livebucket_events_dropped_total", "stream.refused"),
            2
        );
    }

    #[test]
    fn without_endpoints_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let events = Events::open(
            &EventsConfig::default(),
            dir.path(),
            "n1",
            Arc::new(Metrics::default()),
        )
        .unwrap();
        events.emit(Event::stream_refused(
            "live",
            "cam",
            "a",
            "bad_signature",
            1,
        ));
        assert!(!dir.path().join("events").exists());
    }
}
