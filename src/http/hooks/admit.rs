//! The driver of [`crate::admission::Admission`]: performs each effect the
//! machine hands out against the real parts (limiter, replay set, channel
//! records, spool, sessions, cluster, nginx's HLS directory, pipeline) and
//! feeds the outcomes back. It decides nothing; [`decided`] is the one place
//! where an `on_publish` decision is final (logged and counted there).

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::{AppState, CHANNEL_LOOKUP, channel_record, log_refusal};
use crate::admission::{Admission, Answer, Decision, Effect, Step};
use crate::auth::callback::Callback;
use crate::auth::replay::Reservation;
use crate::events::Event;
use crate::logfmt::Esc;
use crate::session::{SessionMeta, log_tag};

/// Admits the push `cb`: runs the machine to its decision.
pub(super) async fn admit(app: &Arc<AppState>, cb: &Callback) -> Decision {
    let cfg = app.config();
    let now = crate::clock::unix_now();
    let mut machine = Admission::new(cb, &cfg, now, app.cluster.is_some());
    // Held while the push is admitted; dropped uncommitted, it releases the
    // URL (also if this future is dropped midway).
    let mut reservation: Option<Reservation<'_>> = None;
    let decision = loop {
        match machine.poll() {
            Step::Done(decision) => break decision,
            Step::Do(effect) => {
                if let Some(answer) = perform(app, &cfg, effect, &mut reservation).await {
                    machine.answer(answer);
                }
            }
        }
    };
    decided(app, cb, &decision);
    decision
}

/// Performs one effect; a question's answer is returned.
async fn perform<'r>(
    app: &'r AppState,
    cfg: &crate::config::Config,
    effect: Effect,
    reservation: &mut Option<Reservation<'r>>,
) -> Option<Answer> {
    Some(match effect {
        Effect::CheckLimiter { addr } => Answer::Limiter(app.limiter.check(&addr, Instant::now())),
        Effect::Reserve {
            key_id,
            tag,
            signature,
            forget_after,
            now,
        } => Answer::Reserved(
            app.replay
                .reserve(&key_id, &tag, &signature, forget_after, now)
                .map(|held| *reservation = Some(held)),
        ),
        Effect::LookupChannel {
            key_id,
            bucket,
            channel,
        } => Answer::Channel(
            // An S3 outage must not stop new pushes: a channel whose record
            // cannot be read (and is not cached) is treated as one nobody
            // created.
            channel_record(app, &key_id, &bucket, &channel)
                .await
                .unwrap_or_else(|why| {
                    warn!(channel = %channel, "{why}; treating the channel as unknown");
                    None
                }),
        ),
        Effect::CheckSpool => Answer::SpoolFull(app.spool_full()),
        Effect::TakeId => Answer::Id {
            id: app.sessions.new_id(),
            now_ms: crate::clock::unix_now_ms(),
        },
        Effect::Claim { meta } => Answer::Claimed(claim_in_cluster(app, &meta).await),
        Effect::Begin { meta } => Answer::Begun(app.sessions.begin(*meta)),
        Effect::MakeStreamDir { id } => {
            let made = crate::session::make_stream_dir(&cfg.nginx.hls_dir, &id).map(drop);
            if made.is_err() {
                app.metrics.inc("livebucket_stream_dir_errors_total", "");
            }
            Answer::StreamDir(made)
        }
        Effect::Commit => Answer::Committed(match reservation.take() {
            Some(held) => held.commit(),
            // The machine commits only what it reserved.
            None => Ok(()),
        }),
        Effect::CountFailure { addr } => {
            app.limiter.record_failure(&addr, Instant::now());
            return None;
        }
        Effect::Release => {
            reservation.take();
            return None;
        }
        Effect::GiveBack { id } => {
            app.sessions.give_back(&id);
            return None;
        }
        Effect::Finish { id } => {
            app.sessions.finish(&id);
            return None;
        }
        Effect::RemoveStreamDir { id } => {
            let _ = std::fs::remove_dir(cfg.nginx.hls_dir.join(&id));
            return None;
        }
        Effect::Unclaim {
            bucket,
            channel,
            id,
        } => {
            if let Some(cluster) = &app.cluster {
                cluster.unclaim(&bucket, &channel, &id).await;
            }
            return None;
        }
        Effect::Started { id } => {
            if let Some(cluster) = &app.cluster {
                cluster.started(&id);
            }
            return None;
        }
        Effect::StartPipeline { meta } => {
            start_pipeline(app, *meta);
            return None;
        }
    })
}

/// Cluster mode: takes the channel in etcd for this session (refused when
/// another node publishes it) and reads where its playlist stands in the
/// bucket, so the session continues it.
async fn claim_in_cluster(
    app: &AppState,
    meta: &SessionMeta,
) -> Result<Option<Box<crate::pipeline::fence::Resume>>, crate::cluster::ClaimError> {
    use crate::cluster::ClaimError;
    let Some(cluster) = &app.cluster else {
        return Ok(None);
    };
    cluster
        .claim(&meta.bucket, &meta.channel, &meta.id, &meta.addr)
        .await
        .inspect_err(|e| {
            if let ClaimError::Live(node) = e {
                info!(channel = %meta.channel, node = %node, "channel live on another node");
            }
        })?;
    let read = cluster.resume(
        &app.store,
        &meta.key_id,
        &meta.bucket,
        &meta.channel,
        &meta.playlist,
    );
    Ok(match tokio::time::timeout(CHANNEL_LOOKUP, read).await {
        Ok(r) => r.map(Box::new),
        Err(_) => {
            warn!(channel = %meta.channel, "the channel's playlist did not come within {CHANNEL_LOOKUP:?}; starting from this node's state");
            None
        }
    })
}

/// Tells the pipeline about an approved session.
fn start_pipeline(app: &AppState, meta: SessionMeta) {
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
}

/// The one place an `on_publish` decision is final: an approval is logged,
/// counted in `livebucket_push_accepted_total` and emitted as
/// `stream.started`; a refusal logged, counted in
/// `livebucket_push_rejected_total` by its reason code and emitted as
/// `stream.refused`.
fn decided(app: &AppState, cb: &Callback, decision: &Decision) {
    match decision {
        Decision::Approve { meta, .. } => {
            info!(
                session = %log_tag(&meta.id), bucket = %meta.bucket, channel = %meta.channel,
                key_id = %Esc(&meta.key_id), addr = %Esc(&meta.addr), "push approved"
            );
            app.metrics.inc("livebucket_push_accepted_total", "");
            app.events.emit(Event::stream_started(meta));
        }
        Decision::Refuse(refusal) => {
            log_refusal(&app.metrics, Some(cb), &refusal.clone().into());
            app.events.emit(Event::stream_refused(
                &cb.app,
                &cb.name,
                &cb.addr,
                refusal.code(),
                crate::clock::unix_now_ms(),
            ));
        }
    }
}
