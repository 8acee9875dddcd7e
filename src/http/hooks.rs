//! nginx-rtmp's callbacks: `on_publish`, `on_update`, `on_publish_done`
//! (the public applications), `on_relay` (`on_publish` of the internal
//! HLS applications) and `on_play` (their `on_play`: only transcoders play
//! there, see [`crate::transcode`]).
//!
//! Thin handlers: parse the body (`auth::callback`), decide, map the
//! decision to an answer. `on_publish`'s decision is
//! [`crate::admission`]'s, driven by [`admit`]; it approves by answering
//! `302 Location: <relay_url>/<session id>`, which makes nginx relay the
//! stream to the internal HLS application under that name; media sent
//! before the answer never reaches an application that writes HLS. Any
//! refusal is an [`HttpError`] (403 or 503), logged with its reason code.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::AppState;
use super::error::HttpError;
use crate::admission::update::Lookup;
use crate::admission::{self, Decision};
use crate::auth::callback::{Callback, parse_callback};
use crate::auth::push::{verify_done, verify_update};
use crate::logfmt::Esc;
use crate::session::{Publisher, SessionMeta, log_tag};

/// How long `on_publish` waits for a channel record from S3 (cached after
/// the first read).
const CHANNEL_LOOKUP: Duration = Duration::from_secs(2);

/// A refused push waits this long before its answer, which slows guessing.
const FAILURE_DELAY: Duration = Duration::from_millis(250);

use crate::clock::unix_now;

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
    // A transcoder's publish is no push of the channel.
    if s.is_rendition() {
        return;
    }
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

pub(crate) async fn on_publish(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    answered(&app, "publish");
    let cb = match parsed(&app, &body) {
        Ok(cb) => cb,
        Err(err) => {
            tokio::time::sleep(FAILURE_DELAY).await;
            return err.into_response();
        }
    };
    match admit::admit(&app, &cb).await {
        Decision::Approve { location, meta } => {
            if !meta.renditions.is_empty() {
                start_transcoders(&app, &location, &meta).await;
            }
            close((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
        }
        Decision::Refuse(refusal) => {
            if refusal.counts_as_failure() {
                tokio::time::sleep(FAILURE_DELAY).await;
            }
            HttpError::from(refusal).into_response()
        }
    }
}

pub(crate) async fn on_update(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
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

/// Starts the transcoders of an approved push and waits (within
/// `renditions.start_wait_ms`) until they play it, so they see the source
/// from the first keyframe nginx relays once it has the 302.
async fn start_transcoders(app: &AppState, location: &str, meta: &SessionMeta) {
    let cfg = app.config();
    match crate::transcode::plan::relay_from_location(location, &meta.id) {
        Some(relay) => app.transcoders.start(&cfg, meta, relay).await,
        None => {
            warn!(channel = %meta.channel, "the relay target does not end in the session id; no transcoders")
        }
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
    // A channel disabled since the push began drops it now; a store that
    // cannot answer keeps the stream.
    let record = channel_record(app, &session.key_id, &session.bucket, &session.channel)
        .await
        .inspect_err(|why| warn!(channel = %session.channel, "{why}; keeping the push"));
    let lookup = match &record {
        Ok(r) => Lookup::Found(r.as_ref()),
        Err(_) => Lookup::Unreadable,
    };
    let cluster = app
        .cluster
        .as_ref()
        .map(|c| c.update(&session.bucket, &session.channel));
    admission::update::update(&session, lookup, cluster)
        .map_err(HttpError::from)
        // nginx drops the push on this answer: its transcoders go with it.
        .inspect_err(|_| app.transcoders.stop(&session.id))
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
pub(crate) async fn on_relay(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
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

/// `on_play` of the internal HLS applications: admits a transcoder's play
/// of its source (the stream named by the source session's id, with the
/// one-use token livebucket gave that transcoder), once per token and only
/// while the source is live and has the token's rung
/// ([`crate::transcode::Transcoders::admit_play`]). Any other play is
/// refused, logged and counted, with the answer for an unknown session;
/// names are logged as [`log_tag`]s, tokens never.
pub(crate) async fn on_play(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
    answered(&app, "play");
    let cb = match parsed(&app, &body) {
        Ok(cb) => cb,
        Err(err) => return err.into_response(),
    };
    let admitted = if cb.call == "play" {
        app.transcoders
            .admit_play(&cb.name, cb.client_param(crate::transcode::TOKEN_PARAM))
    } else {
        Err(crate::transcode::policy::PlayRefusal::WrongCall)
    };
    match admitted {
        Ok(()) => {
            tracing::debug!(session = %log_tag(&cb.name), "transcoder's play admitted");
            close(StatusCode::OK.into_response())
        }
        Err(refusal) => {
            app.metrics
                .inc("livebucket_play_refused_total", refusal.code());
            info!(
                reason = refusal.code(),
                session = %log_tag(&cb.name),
                app = %Esc(&cb.app),
                addr = %Esc(&cb.addr),
                clientid = %Esc(&cb.clientid),
                "play from the internal application refused"
            );
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
pub(crate) async fn on_publish_done(State(app): State<Arc<AppState>>, body: Bytes) -> Response {
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
            app.transcoders.stop(&s.id);
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

mod admit;

#[cfg(test)]
mod stream_dir_tests;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;

    use super::*;
    use crate::auth::reject::Reject;
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
