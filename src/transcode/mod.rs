//! The transcoders of adaptive bitrate: for every approved push with rungs
//! (the source session's `renditions`), one ffmpeg per rung that plays the
//! source from nginx's internal application and publishes the rung back
//! into the same application as a *rendition session* (`CHANNEL/<rung>`,
//! `SessionMeta::variant` set), which the pipeline stores like any session.
//!
//! Files: [`plan`] (which rungs, the rendition session's record, ffmpeg's
//! argv; no I/O), [`policy`] (restarts, lag, play admission, stderr budget;
//! no I/O), `run` (one rung's loop: record, spawn, watch, stop, restart),
//! `spawner` (the thread transcoders are forked from), this file (the
//! supervisors by source session, the play tokens).
//!
//! Lifecycle: `on_publish` approves a push, then [`Transcoders::start`]
//! spawns the rungs and waits up to `start_wait_ms` for each one's
//! `on_play` (admitted by [`Transcoders::admit_play`], once per one-use
//! token), so each transcoder is subscribed before nginx relays the source
//! and sees it from its first keyframe. A transcoder stops when its source
//! session stops being live (`on_publish_done`, an `on_update` that drops
//! the push, an idle end) or livebucket shuts down: it gets a grace to
//! finish the source's last frames on its own (its input ends with the
//! source; not at shutdown), then SIGTERM, then SIGKILL after a grace; then
//! its rendition session is ended as `on_publish_done` ends a session. One
//! that dies while its source is live is restarted as a new rendition
//! session (a discontinuity in the variant) after a backoff, up to
//! `max_restarts` times; one more than `max_lag_secs` behind real time is
//! killed and its rung dropped for the rest of the push. After a restart of
//! livebucket ([`Transcoders::recover`]) the rendition sessions it left are
//! ended and live pushes get new transcoders.
//!
//! Invariants: a transcoder never outlives livebucket (`PR_SET_PDEATHSIG`,
//! every transcoder forked from one long-lived thread: `spawner`);
//! the source session is never touched by a rung's failure; a play token
//! admits one play; session ids and tokens reach debug logs only.

pub(crate) mod plan;
pub(crate) mod policy;
mod run;
mod spawner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::PipelineHandle;
use crate::session::{SessionMeta, Sessions, log_tag};
use policy::{PlayRefusal, Ticket};

/// The query parameter of a transcoder's play URL that carries its token.
pub(crate) const TOKEN_PARAM: &str = "lbt";

/// A play token not yet used, and who waits for its play.
struct Pending {
    ticket: Ticket,
    played: Option<oneshot::Sender<()>>,
}

struct Inner {
    sessions: Arc<Sessions>,
    pipeline: PipelineHandle,
    metrics: Arc<Metrics>,
    /// The main runtime, where the rung loops run.
    runtime: tokio::runtime::Handle,
    /// Forks every transcoder (see the module doc); `None` if its thread
    /// could not be started (then no transcoder is).
    spawner: Option<spawner::Spawner>,
    tokens: Mutex<HashMap<String, Pending>>,
    /// When this node last dropped a rung for lag ([`policy::may_drop`]).
    last_drop_ms: Mutex<Option<u64>>,
    /// Cancelled at shutdown: every supervisor's cancel is its child.
    shutdown: CancellationToken,
    /// Source session id → the cancel of its supervisor.
    supervisors: Mutex<HashMap<String, CancellationToken>>,
    tasks: TaskTracker,
    /// Cluster mode: the coordinator and the store a rendition session
    /// reads its variant's playlist from, so it continues the playlist
    /// another node published last ([`Transcoders::continue_in`]).
    continuity: std::sync::OnceLock<(Arc<crate::cluster::Cluster>, crate::store::Store)>,
}

/// Every push's transcoders (see the module doc). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transcoders {
    inner: Arc<Inner>,
}

impl Transcoders {
    pub(crate) fn new(
        sessions: Arc<Sessions>,
        pipeline: PipelineHandle,
        metrics: Arc<Metrics>,
        runtime: tokio::runtime::Handle,
    ) -> Transcoders {
        Transcoders {
            inner: Arc::new(Inner {
                sessions,
                pipeline,
                metrics,
                spawner: spawner::Spawner::start(runtime.clone())
                    .inspect_err(|e| warn!(error = %e, "cannot start the transcoder spawner thread; no renditions"))
                    .ok(),
                runtime,
                tokens: Mutex::new(HashMap::new()),
                last_drop_ms: Mutex::new(None),
                supervisors: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                continuity: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Cluster mode: each rendition session starts where its variant's
    /// playlist stands in the bucket (`Cluster::resume`), as a source
    /// session continues its channel's; without it the node that takes a
    /// channel over would start every variant's playlist anew. Set once,
    /// when the app is wired.
    pub(crate) fn continue_in(
        &self,
        cluster: Arc<crate::cluster::Cluster>,
        store: crate::store::Store,
    ) {
        let _ = self.inner.continuity.set((cluster, store));
    }

    /// Starts the transcoders of the approved `source` (one per rung in its
    /// `renditions`), which play it from `relay` (its internal
    /// application), and waits until each has played or `start_wait_ms`
    /// passed (logged; the push goes on either way; 0: no wait).
    pub(crate) async fn start(&self, cfg: &Arc<Config>, source: &SessionMeta, relay: &str) {
        // 0: the operator chose not to wait.
        let wait = cfg.renditions.start_wait_ms > 0;
        let waits = self.supervise(cfg, source, relay, wait);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(cfg.renditions.start_wait_ms);
        let mut late = Vec::new();
        for (rung, played) in waits {
            if !matches!(tokio::time::timeout_at(deadline, played).await, Ok(Ok(()))) {
                late.push(rung);
            }
        }
        if !late.is_empty() {
            warn!(
                session = %log_tag(&source.id), channel = %source.channel, rungs = ?late,
                wait_ms = cfg.renditions.start_wait_ms,
                "transcoders did not subscribe in time; their variants may start after the source"
            );
        }
    }

    /// Spawns one rung loop per rung of `source` under a new supervisor;
    /// with `wait`, returns what says each one's first play came.
    fn supervise(
        &self,
        cfg: &Arc<Config>,
        source: &SessionMeta,
        relay: &str,
        wait: bool,
    ) -> Vec<(String, oneshot::Receiver<()>)> {
        let cancel = self.inner.shutdown.child_token();
        if let Some(old) = self
            .lock_supervisors()
            .insert(source.id.clone(), cancel.clone())
        {
            old.cancel();
        }
        let mut waits = Vec::new();
        for name in &source.renditions {
            let Some(rung) = cfg.renditions.rung(name).cloned() else {
                // Admission chose only rungs of the ladder; a reload may
                // have removed it since (a recovered session).
                warn!(channel = %source.channel, rung = %name, "rung no longer in [renditions] rungs; not transcoded");
                continue;
            };
            let (tx, rx) = oneshot::channel();
            if wait {
                waits.push((name.clone(), rx));
            }
            let span =
                tracing::info_span!("rendition", session = %log_tag(&source.id), rung = %name);
            let job = run::Job {
                t: self.clone(),
                cfg: cfg.clone(),
                source: source.clone(),
                rung,
                relay: relay.to_owned(),
                cancel: cancel.clone(),
                first_play: wait.then_some(tx),
            };
            let fut = self.inner.tasks.track_future(job.run().instrument(span));
            self.inner.runtime.spawn(fut);
        }
        waits
    }

    /// `on_play` in an internal application: admits the play of `name`
    /// with token `token` once, for a live source session that has the
    /// token's rung; the token is spent either way once it is found.
    pub(crate) fn admit_play(&self, name: &str, token: Option<&str>) -> Result<(), PlayRefusal> {
        let token = token.ok_or(PlayRefusal::NoToken)?;
        let pending = self.lock_tokens().remove(token);
        let source = pending
            .as_ref()
            .and_then(|p| self.inner.sessions.get(&p.ticket.source));
        let live = self.inner.sessions.is_live(name);
        let rungs = source.map(|s| s.renditions).unwrap_or_default();
        policy::admit_play(pending.as_ref().map(|p| &p.ticket), name, live, &rungs)?;
        if let Some(tx) = pending.and_then(|p| p.played) {
            let _ = tx.send(());
        }
        Ok(())
    }

    /// Stops the transcoders of source session `id`, if it has any.
    pub(crate) fn stop(&self, id: &str) {
        if let Some(cancel) = self.lock_supervisors().remove(id) {
            cancel.cancel();
        }
    }

    /// After a restart: ends the rendition sessions a previous run left
    /// (their transcoders died with it) and starts new transcoders for each
    /// source session in `recovered` that is still live and has rungs.
    pub(crate) fn recover(&self, cfg: &Arc<Config>, recovered: &[SessionMeta]) {
        let sessions = &self.inner.sessions;
        for m in recovered {
            if m.variant.is_some() && sessions.is_live(&m.id) {
                self.end_session(&m.id);
            }
        }
        for m in recovered {
            if m.variant.is_none() && !m.renditions.is_empty() && sessions.is_live(&m.id) {
                info!(session = %log_tag(&m.id), channel = %m.channel, rungs = ?m.renditions, "restarting the transcoders of a recovered push");
                self.supervise(cfg, m, &plan::relay_of(m, cfg), false);
            }
        }
    }

    /// Shutdown: stops every transcoder and waits for them (each within its
    /// grace) and for their rendition sessions to be ended.
    pub(crate) async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.lock_supervisors().clear();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Ends a rendition session as `on_publish_done` ends a session.
    fn end_session(&self, id: &str) {
        self.inner.sessions.release_live(id);
        self.inner.pipeline.done(id);
    }

    /// Whether a rung past its lag limit may go now; if so, the drop is
    /// recorded so the next waits ([`policy::may_drop`]).
    fn claim_drop(&self, now_ms: u64, hold_ms: u64) -> bool {
        let mut last = self
            .inner
            .last_drop_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let may = policy::may_drop(now_ms, *last, hold_ms);
        if may {
            *last = Some(now_ms);
        }
        may
    }

    fn lock_tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.inner.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_supervisors(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.inner
            .supervisors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}
