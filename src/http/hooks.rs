//! nginx-rtmp's callbacks: `on_publish`, `on_update`, `on_publish_done`.
//!
//! Thin handlers: the body is parsed and verified by `auth`, the session is
//! registered by `session`, the pipeline is told. `on_publish` approves by
//! answering `302 Location: <relay_url>/<session id>`, which makes nginx relay
//! the stream to the internal HLS application under that name; media sent
//! before the answer never reaches an application that writes HLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::AppState;
use super::error::HttpError;
use crate::auth::callback::{Callback, parse_callback};
use crate::auth::push::{Reject, verify_done, verify_publish, verify_update};
use crate::auth::replay::ReplayError;
use crate::logfmt::Esc;
use crate::session::{Publisher, SessionMeta, log_tag};

/// How long `on_publish` waits for a channel record from S3 (cached after
/// the first read).
const CHANNEL_LOOKUP: Duration = Duration::from_secs(2);

/// A refused push waits this long before its answer, which slows guessing.
const FAILURE_DELAY: Duration = Duration::from_millis(250);

use crate::clock::{unix_now, unix_now_ms};
use crate::events::Event;

fn close(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Logs and counts a refusal (the reason, never the secret or signature).
/// Every client-supplied field is escaped onto one line.
fn refused(app: &AppState, cb: Option<&Callback>, err: &HttpError) {
    log_refusal(&app.metrics, cb, err);
}

fn log_refusal(metrics: &crate::metrics::Metrics, cb: Option<&Callback>, err: &HttpError) {
    metrics.inc("livebucket_push_rejected_total", err.code());
    let detail = err.to_string();
    match cb {
        Some(cb) => info!(
            reason = err.code(),
            detail = %Esc(&detail),
            app = %Esc(&cb.app),
            name = %Esc(&cb.name),
            addr = %Esc(&cb.addr),
            clientid = %Esc(&cb.clientid),
            call = %Esc(&cb.call),
            "callback refused"
        ),
        None => info!(reason = err.code(), detail = %Esc(&detail), "callback refused"),
    }
}

/// Adds the finished push to its channel's history (GetLiveChannelHistory),
/// in the background on the main runtime: nginx need not wait for S3.
fn record_history(app: &Arc<AppState>, s: &SessionMeta) {
    let app = app.clone();
    let s = s.clone();
    app.background.clone().spawn(async move {
        let push = crate::oss::channel::LiveRecord {
            start: (s.started_ms / 1000) as i64,
            end: unix_now() as i64,
            remote_addr: s.addr.clone(),
        };
        if let Err(e) = app
            .channels
            .record_push(&s.key_id, &s.bucket, &s.channel, push)
            .await
        {
            warn!(error = %e, channel = %s.channel, "cannot record the push in the channel's history");
        }
    });
}

fn answered(app: &AppState, call: &'static str) {
    app.metrics.inc("livebucket_hooks_total", call);
}

pub async fn on_publish(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    answered(&app, "publish");
    let cb = match parsed(&app, &body) {
        Ok(cb) => cb,
        Err(err) => {
            tokio::time::sleep(FAILURE_DELAY).await;
            return err.into_response();
        }
    };
    match publish(&app, &cb).await {
        Ok(resp) => close(resp),
        Err(err) => {
            refused(&app, Some(&cb), &err);
            app.events.emit(Event::stream_refused(
                &cb.app,
                &cb.name,
                &cb.addr,
                err.code(),
                unix_now_ms(),
            )); // events:
            if matches!(err, HttpError::Refused(ref r) if !matches!(r, Reject::TooManyFailures)) {
                app.limiter.record_failure(&cb.addr, Instant::now());
                tokio::time::sleep(FAILURE_DELAY).await;
            }
            err.into_response()
        }
    }
}

async fn publish(app: &AppState, cb: &Callback) -> Result<Response, HttpError> {
    app.limiter.check(&cb.addr, Instant::now())?;
    let cfg = app.config();
    if !cfg.nginx.public_apps.iter().any(|a| a == &cb.app) {
        return Err(HttpError::WrongApp(cb.app.clone()));
    }
    let now = unix_now();
    let grant = verify_publish(cb, &cfg.keys, &cfg.auth, now)?;
    // auth.one_time_push: the grant is held from here, so a concurrent use of
    // the same URL is refused, and spent only once the push is admitted.
    let reservation = if cfg.auth.one_time_push {
        // Verified above, so the signature parameter is present.
        let signature = cb.client_param("Signature").unwrap_or_default();
        let forget_after = grant.expires.saturating_add(cfg.auth.clock_skew_secs);
        let held = app
            .replay
            .reserve(&grant.key_id, &grant.tag, signature, forget_after, now)
            .map_err(replay_refusal)?;
        Some(held)
    } else {
        None
    };
    // An S3 outage must not stop new pushes: a channel whose record cannot
    // be read (and is not cached) is treated as one nobody created.
    let record = channel_record(app, &grant.key_id, &grant.bucket, &grant.channel)
        .await
        .unwrap_or_else(|why| {
            warn!(channel = %grant.channel, "{why}; treating the channel as unknown");
            None
        });
    let plan = crate::channels::plan_push(record.as_ref(), &cfg)?;
    let snapshot = record
        .as_ref()
        .and_then(|r| r.config.snapshot.as_ref())
        .zip(cfg.key(&grant.key_id))
        .and_then(|(s, key)| {
            crate::snapshot::SnapshotPlan::new(s, key)
                .inspect_err(
                    |e| warn!(error = %e, channel = %grant.channel, "no snapshots for this push"),
                )
                .ok()
        });
    if app.spool_full() {
        return Err(HttpError::Unavailable(
            "spool past its high-water mark; refusing new publishes to protect live ones".into(),
        ));
    }
    let fingerprint = grant.tag.fingerprint(&grant.key_id);
    let meta = SessionMeta {
        id: app.sessions.new_id(),
        bucket: grant.bucket,
        channel: grant.channel,
        // A playlistName in the push URL wins over the channel's.
        playlist: if cb.client_param("playlistName").is_some() {
            grant.playlist_name
        } else {
            plan.playlist
        },
        key_id: grant.key_id,
        clientid: cb.clientid.clone(),
        name: cb.name.clone(),
        addr: cb.addr.clone(),
        started_ms: crate::clock::unix_now_ms(),
        shape: plan.shape,
        low_latency: plan.low_latency,
        snapshot,
        resume: None,
        grant: fingerprint,
        notify_topic: record
            .as_ref()
            .and_then(|r| r.notify_topic())
            .map(str::to_owned), // events:
    };
    let meta = match &app.cluster {
        Some(cluster) => {
            let id = meta.id.clone();
            claim_in_cluster(app, cluster, meta)
                .await
                .inspect_err(|_| app.sessions.give_back(&id))?
        }
        None => meta,
    };
    let begun = app
        .sessions
        .begin(meta.clone())
        .map_err(|e| match e {
            crate::session::SessionError::ChannelLive { bucket, channel } => {
                HttpError::ChannelLive(format!("{bucket}/{channel}"))
            }
            other => HttpError::Unavailable(other.to_string()),
        })
        .and_then(|m| {
            // The directory nginx will write into, made before the URL is
            // spent: a push refused here leaves its URL usable.
            if let Err(e) = stream_dir(app, &cfg, &m.id) {
                app.sessions.finish(&m.id);
                return Err(e);
            }
            // The push is admitted: spend its URL now, or undo the session
            // (a URL that cannot be recorded as used is not approved).
            match reservation.map(|r| r.commit()) {
                Some(Err(e)) => {
                    app.sessions.finish(&m.id);
                    let _ = std::fs::remove_dir(cfg.nginx.hls_dir.join(&m.id));
                    Err(replay_refusal(e))
                }
                _ => Ok(m),
            }
        });
    let meta = match begun {
        Ok(m) => {
            if let Some(cluster) = &app.cluster {
                cluster.started(&m.id);
            }
            m
        }
        Err(e) => {
            if let Some(cluster) = &app.cluster {
                cluster.unclaim(&meta.bucket, &meta.channel, &meta.id).await;
            }
            return Err(e);
        }
    };
    let location = format!("{}/{}", plan.relay_url, meta.id);
    info!(
        session = %log_tag(&meta.id), bucket = %meta.bucket, channel = %meta.channel,
        key_id = %Esc(&meta.key_id), addr = %Esc(&meta.addr), "push approved"
    );
    app.metrics.inc("livebucket_push_accepted_total", "");
    app.events.emit(Event::stream_started(&meta)); // events:
    // Waking the pipeline and the blocking pool here would have them take
    // the cores from this answer; spawned on the hooks thread, this runs
    // once the answer is written. (A fragment nginx writes, or an end,
    // before the pipeline has the session opens it:
    // `Pipeline::open_if_approved`.)
    let sessions = app.sessions.clone();
    let pipeline = app.pipeline.clone();
    tokio::spawn(async move {
        pipeline.started(meta);
        // The next publish finds its state directory made.
        tokio::task::spawn_blocking(move || sessions.refill_spares());
    });
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// Makes the approved session's HLS directory, so that it is livebucket's
/// and nginx's worker writes there through its group (see
/// [`crate::session::make_stream_dir`]). A failure refuses the push (503,
/// logged with the reason, counted in `livebucket_stream_dir_errors_total`);
/// the caller undoes the session.
fn stream_dir(app: &AppState, cfg: &crate::config::Config, id: &str) -> Result<(), HttpError> {
    let Err(e) = crate::session::make_stream_dir(&cfg.nginx.hls_dir, id) else {
        return Ok(());
    };
    app.metrics.inc("livebucket_stream_dir_errors_total", "");
    // The session id stays out of the log (it names the internal stream).
    Err(HttpError::Unavailable(format!(
        "cannot make the session's directory in nginx.hls_dir ({}): {e}",
        cfg.nginx.hls_dir.display()
    )))
}

/// The refusal for a grant that cannot be reserved or spent.
fn replay_refusal(e: ReplayError) -> HttpError {
    match e {
        ReplayError::Replayed | ReplayError::InUse => HttpError::Refused(Reject::Replayed),
        save @ ReplayError::Save { .. } => HttpError::Unavailable(save.to_string()),
    }
}

/// Cluster mode: takes the channel in etcd for this session (refused when
/// another node publishes it) and reads where its playlist stands in the
/// bucket, so the session continues it.
async fn claim_in_cluster(
    app: &AppState,
    cluster: &crate::cluster::Cluster,
    mut meta: SessionMeta,
) -> Result<SessionMeta, HttpError> {
    use crate::cluster::ClaimError;
    cluster
        .claim(&meta.bucket, &meta.channel, &meta.id, &meta.addr)
        .await
        .map_err(|e| match e {
            ClaimError::Live(node) => {
                info!(channel = %meta.channel, node = %node, "channel live on another node");
                HttpError::ChannelLive(format!("{}/{}", meta.bucket, meta.channel))
            }
            ClaimError::Unavailable(why) => HttpError::Unavailable(why),
        })?;
    let read = cluster.resume(
        &app.store,
        &meta.key_id,
        &meta.bucket,
        &meta.channel,
        &meta.playlist,
    );
    meta.resume = match tokio::time::timeout(CHANNEL_LOOKUP, read).await {
        Ok(r) => r.map(Box::new),
        Err(_) => {
            warn!(channel = %meta.channel, "the channel's playlist did not come within {CHANNEL_LOOKUP:?}; starting from this node's state");
            None
        }
    };
    Ok(meta)
}

pub async fn on_update(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    answered(&app, "update");
    let result = match parse_callback(&body) {
        Ok(cb) => update(&app, &cb)
            .await
            .inspect_err(|e| refused(&app, Some(&cb), e)),
        Err(e) => Err(HttpError::from(e)),
    };
    match result {
        Ok(()) => close(StatusCode::OK.into_response()),
        Err(e) => e.into_response(),
    }
}

async fn update(app: &AppState, cb: &Callback) -> Result<(), HttpError> {
    // Only publishers are re-checked. `update_play` comes from nginx's own
    // relay to the HLS application (its local side "plays" the public
    // stream; `deny play all` admits no other player): refusing it would
    // drop the relay, and with it the push, at the first update.
    if cb.call != "update_publish" {
        return Ok(());
    }
    let cfg = app.config();
    let grant = verify_update(cb, &cfg.keys, &cfg.auth)?;
    let fingerprint = grant.tag.fingerprint(&grant.key_id);
    let session = app
        .sessions
        .find_live(&publisher(cb, &grant, &fingerprint))
        .ok_or(HttpError::UnknownSession)?;
    // A channel disabled since the push began drops it now. A store that
    // cannot answer keeps the stream: an S3 outage must not end live pushes.
    match channel_record(app, &session.key_id, &session.bucket, &session.channel).await {
        Ok(record) => crate::channels::still_allowed(record.as_ref())?,
        Err(why) => warn!(channel = %session.channel, "{why}; keeping the push"),
    }
    if let Some(cluster) = &app.cluster {
        use crate::cluster::decide::Update;
        match cluster.update(&session.bucket, &session.channel) {
            Update::Keep => {}
            Update::Superseded(node) => {
                info!(channel = %session.channel, node = %node, "another node publishes this channel now; dropping this publisher");
                return Err(HttpError::ChannelLive(format!(
                    "{}/{}",
                    session.bucket, session.channel
                )));
            }
            Update::CutOff => {
                return Err(HttpError::Unavailable(
                    "this node is cut off from the cluster coordinator; the publisher should reconnect to another node".into(),
                ));
            }
        }
    }
    Ok(())
}

/// A channel's record for a callback, within [`CHANNEL_LOOKUP`] (nginx
/// waits for the answer); `Err` says why there is none to go by.
async fn channel_record(
    app: &AppState,
    key_id: &str,
    bucket: &str,
    channel: &str,
) -> Result<Option<crate::oss::channel::ChannelRecord>, String> {
    if let Some(hit) = app.channels.cached(bucket, channel) {
        return Ok(hit);
    }
    // On the main runtime: S3 connections opened here would stay bound to
    // the hooks listener's thread and load it with other requests' I/O.
    let lookup = {
        let channels = app.channels.clone();
        let (key_id, bucket, channel) = (key_id.to_owned(), bucket.to_owned(), channel.to_owned());
        app.background
            .spawn(async move { channels.get(&key_id, &bucket, &channel).await })
    };
    match tokio::time::timeout(CHANNEL_LOOKUP, lookup).await {
        Ok(Ok(Ok(record))) => Ok(record),
        Ok(Ok(Err(e))) => Err(format!("cannot read the channel record ({e})")),
        Ok(Err(e)) => Err(format!("the channel record lookup failed ({e})")),
        Err(_) => Err(format!(
            "the channel record did not come within {CHANNEL_LOOKUP:?}"
        )),
    }
}

/// nginx's form body as a [`Callback`]; a body that is none is refused
/// (logged and counted) as [`HttpError`].
fn parsed(app: &AppState, body: &[u8]) -> Result<Callback, HttpError> {
    parse_callback(body).map_err(|e| {
        let err = HttpError::from(e);
        refused(app, None, &err);
        err
    })
}

/// `on_publish` of the internal HLS applications: admits nginx's own relay
/// of an approved session (the stream named by the session id that
/// `on_publish` answered with), once per session and only while its
/// publisher is there; any other publish there (a local process that learned
/// a session id, a second publish into a relayed session, an ended or
/// unknown session) is refused and logged with its reason. The name is
/// logged as its [`log_tag`] only: a session id must not reach info logs.
pub async fn on_relay(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    answered(&app, "relay");
    let cb = match parsed(&app, &body) {
        Ok(cb) => cb,
        Err(err) => return err.into_response(),
    };
    let admitted = if cb.call == "publish" {
        app.sessions.admit_relay(&cb.name).map_err(|r| r.code())
    } else {
        Err("relay_wrong_call")
    };
    match admitted {
        Ok(()) => {
            tracing::debug!(session = %log_tag(&cb.name), "relay admitted");
            close(StatusCode::OK.into_response())
        }
        Err(reason) => {
            app.metrics.inc("livebucket_relay_refused_total", reason);
            info!(
                reason,
                session = %log_tag(&cb.name),
                app = %Esc(&cb.app),
                addr = %Esc(&cb.addr),
                clientid = %Esc(&cb.clientid),
                call = %Esc(&cb.call),
                "publish into the internal application refused"
            );
            // The same answer as any callback naming no session.
            HttpError::UnknownSession.into_response()
        }
    }
}

/// The publisher a callback of a running push names, with the grant its
/// URL verified to.
fn publisher<'a>(
    cb: &'a Callback,
    grant: &'a crate::auth::push::PushGrant,
    fingerprint: &'a str,
) -> Publisher<'a> {
    Publisher {
        clientid: &cb.clientid,
        name: &cb.name,
        bucket: &grant.bucket,
        key_id: &grant.key_id,
        grant: fingerprint,
    }
}

/// `on_publish_done` ends the session of the publisher it names, identified
/// as `on_update` identifies it: nginx's client id and name, and the push
/// URL the session was approved with (its signature verified again; see
/// [`crate::session::is_publisher`]). A call naming no such session (a
/// client id nginx reused after a reload, another stream's URL) is refused
/// and ends nothing.
pub async fn on_publish_done(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    answered(&app, "publish_done");
    let cb = match parsed(&app, &body) {
        Ok(cb) => cb,
        Err(err) => return err.into_response(),
    };
    let cfg = app.config();
    let found = verify_done(&cb, &cfg.keys, &cfg.auth)
        .map_err(HttpError::from)
        .and_then(|grant| {
            let fingerprint = grant.tag.fingerprint(&grant.key_id);
            app.sessions
                .find_known(&publisher(&cb, &grant, &fingerprint))
                .ok_or(HttpError::UnknownSession)
        });
    match found {
        Ok(s) => {
            info!(session = %log_tag(&s.id), channel = %s.channel, "publisher gone");
            app.sessions.release_live(&s.id);
            app.pipeline.done(&s.id);
            record_history(&app, &s);
            close(StatusCode::OK.into_response())
        }
        Err(err) => {
            refused(&app, Some(&cb), &err);
            err.into_response()
        }
    }
}

#[cfg(test)]
mod stream_dir_tests;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::*;
    use crate::metrics::Metrics;

    /// A writer that keeps what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What one refusal logs, through the same fmt layer `main` installs.
    fn logged(cb: Option<&Callback>, err: &HttpError) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_refusal(&Metrics::default(), cb, err);
        });
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z]{0,8}(\\n|\\r|\\u{1b}\\[2J|\\u{2028}|%0A)[ -~]{0,40}".prop_map(|s| s),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// A body crafted to forge log lines (newlines, escape sequences,
        /// line separators in any field) is logged on exactly one line.
        #[test]
        fn every_refusal_is_one_log_line(
            app in hostile(), name in hostile(), addr in hostile(),
            clientid in hostile(), call in hostile(),
        ) {
            let cb = Callback {
                call: call.clone(),
                app,
                name: name.clone(),
                addr,
                clientid,
                tcurl: String::new(),
                client: Vec::new(),
            };
            let errors = [
                HttpError::Refused(Reject::UnknownKey { key_id: name.clone() }),
                HttpError::WrongApp(call),
                HttpError::Refused(Reject::InvalidChannel { name, reason: "x" }),
            ];
            for err in &errors {
                for cb in [Some(&cb), None] {
                    let text = logged(cb, err);
                    prop_assert_eq!(text.matches('\n').count(), 1, "{:?}", text);
                    prop_assert!(text.ends_with('\n'));
                    prop_assert!(!text.contains('\r') && !text.contains('\u{1b}') && !text.contains('\u{2028}'), "{:?}", text);
                }
            }
        }
    }
}
