//! One rung's loop: record a rendition session, spawn ffmpeg for it, watch
//! it (exit, progress, the source still live), stop it, end the session,
//! and restart or drop as [`super::policy`] says.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::policy::{AfterExit, DropReason, Lag, LineBudget, LineVerdict, Progress, Restarts};
use super::{Pending, TOKEN_PARAM, Transcoders, plan, policy};
use crate::config::{Config, Rung};
use crate::pipeline::fence::Resume;
use crate::session::{SessionError, SessionMeta, log_tag, new_session_id};

/// How long a transcoder whose source ended may take to finish its last
/// frames on its own; then SIGTERM, and this long again before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long a rendition session waits for its variant's playlist in
/// cluster mode (admission's wait for a source channel's is as long).
const RESUME_LOOKUP: Duration = Duration::from_secs(2);
/// How often a running transcoder checks that its source is still live.
const LIVE_CHECK: Duration = Duration::from_secs(1);
/// ffmpeg stderr lines logged (at debug) per [`LINE_WINDOW_MS`].
const LINES_PER_WINDOW: u32 = 20;
const LINE_WINDOW_MS: u64 = 10_000;

pub(super) struct Job {
    pub t: Transcoders,
    pub cfg: Arc<Config>,
    pub source: SessionMeta,
    pub rung: Rung,
    pub relay: String,
    pub cancel: CancellationToken,
    /// Told when the first run's play is admitted (`on_publish` waits).
    pub first_play: Option<oneshot::Sender<()>>,
}

/// How one run ended.
enum Ended {
    /// The source is no longer live, or livebucket stops.
    Stopped,
    Exited(std::process::ExitStatus),
    Lagging(u64),
}

impl Job {
    pub(super) async fn run(mut self) {
        let metrics = self.t.inner.metrics.clone();
        let mut restarts = Restarts::new(self.cfg.renditions.max_restarts);
        loop {
            if self.stopping() {
                break;
            }
            let ended = match self.once().await {
                Ok(ended) => ended,
                Err(reason) => {
                    self.dropped(reason, "");
                    break;
                }
            };
            match ended {
                Ended::Stopped => break,
                Ended::Lagging(lag_ms) => {
                    self.dropped(DropReason::Lag, &format!("{lag_ms} ms behind real time"));
                    break;
                }
                Ended::Exited(status) => match restarts.after_exit(status.success()) {
                    AfterExit::Drop => {
                        self.dropped(DropReason::Restarts, &format!("last exit: {status}"));
                        break;
                    }
                    AfterExit::Restart { after } => {
                        tokio::select! {
                            _ = self.cancel.cancelled() => break,
                            _ = tokio::time::sleep(after) => {}
                        }
                        if self.stopping() {
                            break;
                        }
                        metrics.inc("livebucket_rendition_restarts_total", &self.rung.name);
                        info!(%status, "transcoder exited while its source is live; restarting");
                    }
                },
            }
        }
        if !self.t.inner.sessions.is_live(&self.source.id) {
            self.t.lock_supervisors().remove(&self.source.id);
        }
    }

    fn stopping(&self) -> bool {
        self.cancel.is_cancelled() || !self.t.inner.sessions.is_live(&self.source.id)
    }

    fn dropped(&self, reason: DropReason, detail: &str) {
        self.t
            .inner
            .metrics
            .inc("livebucket_rendition_dropped_total", reason.code());
        warn!(
            channel = %self.source.channel, reason = reason.code(), detail,
            "rung dropped for the rest of the push; the source goes on"
        );
    }

    /// One run: its rendition session, its ffmpeg, until it ends; the
    /// session is ended whatever happened once it was begun.
    async fn once(&mut self) -> Result<Ended, DropReason> {
        let inner = &self.t.inner;
        let resume = self.resume().await;
        let meta = self.begin(resume)?;
        let id = meta.id.clone();
        let token = new_session_id();
        self.t.lock_tokens().insert(
            token.clone(),
            Pending {
                ticket: policy::Ticket {
                    source: self.source.id.clone(),
                    rung: self.rung.name.clone(),
                },
                played: self.first_play.take(),
            },
        );
        let input = format!("{}/{}?{TOKEN_PARAM}={token}", self.relay, self.source.id);
        let output = format!("{}/{id}", self.relay);
        let ended = match self.spawn(&input, &output).await {
            Ok(child) => {
                inner.metrics.gauge_add("livebucket_transcoders_running", 1);
                debug!(variant = %log_tag(&id), "transcoder started");
                let ended = self.watch(child).await;
                inner
                    .metrics
                    .gauge_add("livebucket_transcoders_running", -1);
                Ok(ended)
            }
            Err(e) => {
                warn!(ffmpeg = %self.cfg.renditions.ffmpeg, error = %e, "cannot start the transcoder");
                Err(DropReason::Spawn)
            }
        };
        // A token its ffmpeg never used admits nobody later.
        self.t.lock_tokens().remove(&token);
        self.t.end_session(&id);
        ended
    }

    /// Cluster mode: where the variant's playlist stands in the bucket, read
    /// as admission reads a source channel's (another node may have
    /// published the variant last); `None` outside cluster mode, when there
    /// is none, or when the read takes longer than [`RESUME_LOOKUP`] (the
    /// session then starts from this node's state, as a source does).
    async fn resume(&self) -> Option<Box<Resume>> {
        let (cluster, store) = self.t.inner.continuity.get()?;
        let channel = format!("{}/{}", self.source.channel, self.rung.name);
        let read = cluster.resume(
            store,
            &self.source.key_id,
            &self.source.bucket,
            &channel,
            &self.source.playlist,
        );
        match tokio::time::timeout(RESUME_LOOKUP, read).await {
            Ok(r) => r.map(Box::new),
            Err(_) => {
                warn!(channel = %channel, "the variant's playlist did not come within {RESUME_LOOKUP:?}; starting from this node's state");
                None
            }
        }
    }

    /// Records the run's rendition session and makes its HLS directory, as
    /// admission does for a source; the pipeline is told. A variant
    /// channel still live from an earlier run (its end not seen yet) is
    /// ended first.
    fn begin(&self, resume: Option<Box<Resume>>) -> Result<SessionMeta, DropReason> {
        let inner = &self.t.inner;
        let sessions = &inner.sessions;
        let mut meta = plan::variant_meta(
            &self.source,
            &self.rung.name,
            sessions.new_id(),
            crate::clock::unix_now_ms(),
        );
        meta.resume = resume.clone();
        let begun = match sessions.begin(meta.clone()) {
            Err(SessionError::ChannelLive { .. }) => {
                match sessions.live_of(&meta.bucket, &meta.channel) {
                    Some(old) if old.variant.is_some() => self.t.end_session(&old.id),
                    _ => {}
                }
                let mut retry = plan::variant_meta(
                    &self.source,
                    &self.rung.name,
                    sessions.new_id(),
                    crate::clock::unix_now_ms(),
                );
                retry.resume = resume;
                sessions.begin(retry)
            }
            other => other,
        };
        let meta = begun.map_err(|e| {
            warn!(error = %e, "cannot record the rendition session");
            DropReason::Session
        })?;
        if let Err(e) = crate::session::make_stream_dir(&self.cfg.nginx.hls_dir, &meta.id) {
            inner.metrics.inc("livebucket_stream_dir_errors_total", "");
            warn!(error = %e, "cannot make the rendition session's HLS directory");
            sessions.finish(&meta.id);
            return Err(DropReason::Session);
        }
        inner.pipeline.started(meta.clone());
        Ok(meta)
    }

    /// ffmpeg, niced, killed with livebucket (`PR_SET_PDEATHSIG`, forked
    /// from the spawner's thread) and when its handle is dropped.
    async fn spawn(&self, input: &str, output: &str) -> std::io::Result<Child> {
        let r = &self.cfg.renditions;
        let mut cmd = Command::new(&r.ffmpeg);
        cmd.args(plan::argv(r, &self.rung, input, output))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let nice = r.nice as libc::c_int;
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid,
        // setpriority) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Sent when the thread that forked exits: the spawner's,
                // which lives as long as livebucket's transcoders.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // livebucket died before prctl: nobody would stop this one.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::other("livebucket is gone"));
                }
                if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match &self.t.inner.spawner {
            Some(spawner) => spawner.spawn(cmd).await,
            None => Err(std::io::Error::other("no transcoder spawner thread")),
        }
    }

    /// Until the transcoder exits, lags, or must stop; it is stopped in the
    /// last two cases ([`stop`]).
    async fn watch(&self, mut child: Child) -> Ended {
        let max_lag = self.cfg.renditions.max_lag_secs;
        let mut stdout = child.stdout.take().map(|s| BufReader::new(s).lines());
        let mut stderr = child.stderr.take().map(|s| BufReader::new(s).lines());
        let mut progress = Progress::default();
        let mut lag = Lag::default();
        // Logged once: past the limit while another rung was just dropped.
        let mut held = false;
        let mut budget = LineBudget::new(LINES_PER_WINDOW, LINE_WINDOW_MS);
        let mut tick = tokio::time::interval(LIVE_CHECK);
        let ended = loop {
            tokio::select! {
                status = child.wait() => {
                    return match status {
                        Ok(s) => Ended::Exited(s),
                        Err(e) => {
                            warn!(error = %e, "cannot wait for the transcoder");
                            Ended::Stopped
                        }
                    };
                }
                _ = self.cancel.cancelled() => break Ended::Stopped,
                _ = tick.tick() => {
                    if !self.t.inner.sessions.is_live(&self.source.id) {
                        break Ended::Stopped;
                    }
                }
                line = next_line(&mut stdout) => match line {
                    Some(line) => {
                        if let Some(out_us) = progress.line(&line) {
                            let now = crate::clock::unix_now_ms();
                            let lag_ms = lag.sample(now, out_us);
                            if Lag::too_far(lag_ms, max_lag) {
                                if self.t.claim_drop(now, max_lag.saturating_mul(1000)) {
                                    break Ended::Lagging(lag_ms);
                                }
                                if !held {
                                    held = true;
                                    info!(lag_ms, "rung past its lag limit; held while another rung's drop frees the CPU");
                                }
                            }
                        }
                    }
                    None => stdout = None,
                },
                line = next_line(&mut stderr) => match line {
                    Some(line) => {
                        if let LineVerdict::Log { suppressed } = budget.line(crate::clock::unix_now_ms()) {
                            if suppressed > 0 {
                                debug!(suppressed, "ffmpeg lines not logged");
                            }
                            debug!(line = %crate::logfmt::Esc(&policy::redact(&line)), "ffmpeg");
                        }
                    }
                    None => stderr = None,
                },
            }
        };
        // Lagging, or livebucket stops: at once. The source ended: its
        // input ends too, and what it has read is still worth finishing.
        let drain = matches!(ended, Ended::Stopped) && !self.t.inner.shutdown.is_cancelled();
        stop(&mut child, drain).await;
        ended
    }
}

/// The next line of an open stream; never resolves once it is closed.
async fn next_line<R>(lines: &mut Option<tokio::io::Lines<R>>) -> Option<String>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    match lines {
        Some(l) => l.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// With `drain`, [`STOP_GRACE`] to exit on its own; then SIGTERM, then
/// SIGKILL after [`STOP_GRACE`].
async fn stop(child: &mut Child, drain: bool) {
    if drain && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
        return;
    }
    if let Some(pid) = child.id() {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
        warn!("transcoder ignored SIGTERM; killing it");
    }
    let _ = child.kill().await;
}
