//! Wires config → store → sessions → pipeline → HTTP, and stops them in order.
//!
//! Shutdown (SIGTERM/SIGINT): the HTTP server stops accepting, the watcher is
//! dropped, uploads in flight get a few seconds, then the pipeline stops. What
//! is not stored yet stays in capture/spool files and journals, and the next
//! start picks it up. SIGHUP reloads keys and auth policy without touching
//! live streams.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::http::{AppState, router};
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline, watch};
use crate::session::Sessions;
use crate::store::Store;

/// How long in-flight uploads may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let config = Arc::new(Config::load(&config_path)?);
    for dir in [
        config.nginx.hls_dir.clone(),
        config.capture_dir(),
        config.spool_dir(),
        config.state_dir.clone(),
    ] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let metrics = Arc::new(Metrics::default());
    let store = Store::new(&config.s3, &config.keys);
    let (sessions, recovered) = Sessions::open(&config.state_dir)?;
    let sessions = Arc::new(sessions);
    if !recovered.is_empty() {
        info!(sessions = recovered.len(), "recovering unfinished sessions");
    }

    let cancel = CancellationToken::new();
    let uploads = TaskTracker::new();
    let (handle, rx) = pipeline::channel();
    let live_cache = pipeline::LiveCache::default();
    // Watch before the first rescan so nothing falls between the two.
    let watcher = watch::watch(&config.nginx.hls_dir, handle.sender())
        .with_context(|| format!("cannot watch {}", config.nginx.hls_dir.display()))?;
    let pipeline = Pipeline::new(
        config.clone(),
        pipeline::Shared {
            store: store.clone(),
            metrics: metrics.clone(),
            sessions: sessions.clone(),
            live_cache: live_cache.clone(),
        },
        &handle,
        cancel.child_token(),
        uploads.clone(),
    );
    let pipeline_cancel = cancel.clone();
    let pipeline_task = tokio::spawn(pipeline.run(recovered, rx));

    let state = Arc::new(AppState::new(
        config.clone(),
        sessions,
        handle,
        metrics,
        store.clone(),
        live_cache,
    ));
    let listener = match inherited_listener()? {
        Some(l) => {
            info!("using the listening socket passed by the service manager");
            l
        }
        None => tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| {
                format!("cannot listen on {} (config field `listen`)", config.listen)
            })?,
    };
    info!(listen = %listener.local_addr()?, hls_dir = %config.nginx.hls_dir.display(), "livebucket serving");

    let reload_state = state.clone();
    let reload_store = store.clone();
    let reload_path = config_path.clone();
    tokio::spawn(async move { reload_on_sighup(&reload_path, &reload_state, &reload_store).await });

    let http_cancel = cancel.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            http_cancel.cancel();
        })
        .await
        .context("HTTP server failed")?;

    info!("shutting down");
    drop(watcher);
    uploads.close();
    if tokio::time::timeout(DRAIN, uploads.wait()).await.is_err() {
        warn!("uploads still running at shutdown; they resume on the next start");
    }
    pipeline_cancel.cancel();
    if let Err(e) = pipeline_task.await {
        error!(error = %e, "pipeline task failed");
    }
    Ok(())
}

/// A listening socket passed by systemd socket activation (`LISTEN_PID`,
/// `LISTEN_FDS`, first fd 3). While livebucket restarts, the socket stays open
/// and nginx's callbacks wait in its backlog instead of being refused: nginx-
/// rtmp drops a live stream whose `on_update` cannot connect.
fn inherited_listener() -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if !ours || fds == 0 {
        return Ok(None);
    }
    use std::os::fd::FromRawFd;
    // SAFETY: with LISTEN_PID naming this process, the service manager
    // guarantees fd 3 is an open listening socket handed to us alone.
    let std_listener = unsafe { std::net::TcpListener::from_raw_fd(3) };
    std_listener
        .set_nonblocking(true)
        .context("the inherited socket (fd 3) is not a TCP listener")?;
    Ok(Some(
        tokio::net::TcpListener::from_std(std_listener)
            .context("the inherited socket (fd 3) is not a TCP listener")?,
    ))
}

async fn shutdown_signal() {
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot install SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn reload_on_sighup(path: &Path, state: &AppState, store: &Store) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        error!("cannot install SIGHUP handler; reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        match Config::load(path) {
            Ok(new) => {
                store.update_keys(&new.keys);
                state.set_config(Arc::new(new));
                info!(config = %path.display(), "configuration reloaded");
            }
            Err(e) => error!(error = %e, "reload failed; keeping the previous configuration"),
        }
    }
}
