//! Wires config → store → sessions → pipeline → HTTP, and stops them in order.
//!
//! Three HTTP listeners (hooks, public, operator; see `http`), each bound
//! from the config or taken from systemd socket activation by name. The
//! hooks listener runs on a thread of its own (see
//! `http::server::serve_on_own_thread`), the rest on the main runtime.
//!
//! Shutdown (SIGTERM/SIGINT): in cluster mode the node first revokes its
//! lease, so its channels are free for other nodes at once; then the
//! listeners stop accepting and open connections get [`DRAIN`] to finish
//! their request, the transcoders are stopped (their sessions ended), the
//! watcher is dropped, uploads in flight get [`DRAIN`] more, and the
//! pipeline stops. What is not stored yet stays in
//! capture/spool files and journals, and the next start picks it up.
//! SIGHUP loads the config file again and swaps it in without touching live
//! streams: keys (also in the store's clients), auth policy and the hooks
//! secret take effect; listener addresses and limits take a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::pipeline::{self, Pipeline, watch};
use crate::session::Sessions;
use crate::store::Store;

/// How long open connections, and then in-flight uploads, may each take to
/// finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn serve(config_path: PathBuf) -> anyhow::Result<()> {
    let config = Arc::new(Config::load(&config_path)?);
    // Live fragments, captures, journals and the spool are nobody else's
    // business: new files get no permission for "other".
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { libc::umask(0o027) };
    raise_fd_limit();
    for dir in [
        config.capture_dir(),
        config.spool_dir(),
        config.state_dir.clone(),
    ] {
        private_dir(&dir)?;
    }
    warn_if_open(&config.nginx.hls_dir)?;
    let metrics = Arc::new(Metrics::default());
    let store = Store::new(&config.s3, &config.keys);
    match store.sdk_put_reason() {
        None => info!("fragment and playlist PUTs go direct to the store (hyper client)"),
        Some(why) => info!("every PUT goes through the AWS SDK: {why}"),
    }
    let (sessions, recovered) =
        Sessions::open(&config.state_dir, &config.capture_dir().join("sessions"))?;
    let sessions = Arc::new(sessions);
    if !recovered.is_empty() {
        info!(sessions = recovered.len(), "recovering unfinished sessions");
    }

    let cancel = CancellationToken::new();
    let channels = Arc::new(crate::channels::ChannelStore::new(store.clone()));
    if let Some((key_id, bucket)) = crate::channels::probe_target(&config.keys) {
        // In the background, so a store that is down does not hold up the
        // start; the first channel write waits for (or redoes) the probe.
        let (channels, key_id, bucket) = (channels.clone(), key_id.to_owned(), bucket.to_owned());
        tokio::spawn(async move { channels.detect_conditional(&key_id, &bucket).await });
    }
    let cluster = match &config.cluster {
        Some(c) => Some(
            crate::cluster::Cluster::start(
                c.clone(),
                sessions.clone(),
                metrics.clone(),
                channels.clone(),
                cancel.child_token(),
            )
            .await
            .context("cannot start cluster mode (config section `cluster`)")?,
        ),
        None => None,
    };
    let events = crate::events::Events::open(
        &config.events,
        &config.state_dir,
        &crate::events::node_name(&config),
        metrics.clone(),
    )?;
    let events_task = tokio::spawn(events.clone().run(cancel.child_token()));
    let uploads = TaskTracker::new();
    let (handle, rx) = pipeline::channel();
    let live_cache = pipeline::LiveCache::default();
    let parked = pipeline::parked::ParkedUploads::default();
    let ll = Arc::new(crate::llhls::hub::Hub::new(
        config.play.max_blocking_reloads,
    ));
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
            snapshots: crate::snapshot::Snapshotter::new(
                store.clone(),
                metrics.clone(),
                uploads.clone(),
                crate::snapshot::DEFAULT_MAX_CONCURRENT,
            ),
            fence: cluster
                .clone()
                .map(|c| c as Arc<dyn pipeline::fence::Fence>),
            ll: ll.clone(),
            events: events.clone(),
            parked: parked.clone(),
        },
        &handle,
        cancel.child_token(),
        uploads.clone(),
    );
    let pipeline_cancel = cancel.clone();
    let recovered_sessions = recovered.clone();
    let pipeline_task = tokio::spawn(pipeline.run(recovered, rx));

    let retention = Arc::new(crate::retention::Retention::new(
        config.clone(),
        store.clone(),
        channels.clone(),
        sessions.clone(),
        cluster.clone(),
        metrics.clone(),
    ));
    let retention_task = tokio::spawn(retention.clone().run(cancel.child_token()));
    let state = Arc::new(
        AppState::new(
            config.clone(),
            sessions,
            handle,
            metrics.clone(),
            store.clone(),
            live_cache,
            channels,
        )
        .with_cluster(cluster.clone())
        .with_ll(ll)
        .with_events(events)
        .with_retention(retention)
        .with_parked(parked),
    );
    // Transcoders died with the previous run: their sessions end, and live
    // pushes get new ones.
    state.transcoders.recover(&config, &recovered_sessions);
    drop(recovered_sessions);
    let mut inherited = http::server::inherited()?;
    let limits = &config.limits;
    let allow_cfg = config.hooks.clone();
    let surfaces = [
        (
            "hooks",
            &config.listen.hooks,
            http::hooks_router(state.clone()),
            Some(Arc::new(move |ip| allow_cfg.allows(ip)) as http::server::PeerFilter),
        ),
        (
            "public",
            &config.listen.public,
            http::public_router(state.clone()),
            None,
        ),
        (
            "operator",
            &config.listen.operator,
            http::operator_router(state.clone()),
            None,
        ),
    ];
    let stop_http = CancellationToken::new();
    // The hooks listener's runtime lives until everything else has stopped.
    let keep_hooks_runtime = CancellationToken::new();
    let _keep_hooks_runtime = keep_hooks_runtime.clone().drop_guard();
    let connections = TaskTracker::new();
    let mut servers = Vec::new();
    for (name, addr, router, allow) in surfaces {
        let bound = match inherited.iter().position(|(n, _)| n == name) {
            Some(i) => inherited.swap_remove(i).1,
            None => http::server::bind(addr)
                .await
                .with_context(|| format!("config field `listen.{name}`"))?,
        };
        info!(listener = name, address = %bound.describe(), "listening");
        let surface = http::server::Surface {
            name,
            router,
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs),
            write_timeout: Duration::from_secs(limits.write_timeout_secs),
            send_buffer: (limits.send_buffer_bytes > 0).then_some(limits.send_buffer_bytes),
            max_connections: limits.max_connections,
            // nginx shares 127.0.0.1 with every local process: no per-peer
            // cap on its listener (http::server says why).
            max_connections_per_peer: (name != "hooks").then_some(limits.max_connections_per_peer),
            keep_alive: name != "hooks",
            allow,
            metrics: metrics.clone(),
        };
        let stopped = if name == "hooks" {
            http::server::serve_on_own_thread(
                bound,
                surface,
                stop_http.clone(),
                connections.clone(),
                keep_hooks_runtime.clone(),
            )?
        } else {
            let (done, stopped) = tokio::sync::oneshot::channel();
            let (stop, conns) = (stop_http.clone(), connections.clone());
            tokio::spawn(async move {
                http::server::serve(bound, surface, stop, conns).await;
                let _ = done.send(());
            });
            stopped
        };
        servers.push(stopped);
    }
    if let Some((name, _)) = inherited.first() {
        warn!(socket = %name, "socket activation passed a socket no listener uses (names: hooks, public, operator)");
    }
    info!(hls_dir = %config.nginx.hls_dir.display(), "livebucket serving");

    let reload_state = state.clone();
    let reload_store = store.clone();
    let reload_path = config_path.clone();
    tokio::spawn(async move { reload_on_sighup(&reload_path, &reload_state, &reload_store).await });

    shutdown_signal().await;
    info!("shutting down");
    // First, so this node's channels are free for other nodes at once
    // rather than after the drains below (up to twice DRAIN) or the lease
    // TTL: the fence holds every playlist and manifest write from here on,
    // and the next start recovers them.
    if let Some(c) = &cluster {
        c.shutdown().await;
    }
    // A sweep cut short is consistent; the next start's sweep finishes it.
    retention_task.abort();
    stop_http.cancel();
    for server in servers {
        let _ = server.await;
    }
    connections.close();
    if tokio::time::timeout(DRAIN, connections.wait())
        .await
        .is_err()
    {
        warn!("HTTP connections still open at shutdown; closing them");
    }
    // No callback starts one any more: stop the transcoders (each within
    // its grace) and end their sessions while the pipeline still runs.
    state.transcoders.shutdown().await;
    drop(watcher);
    uploads.close();
    if tokio::time::timeout(DRAIN, uploads.wait()).await.is_err() {
        warn!("uploads still running at shutdown; they resume on the next start");
    }
    pipeline_cancel.cancel();
    if let Err(e) = pipeline_task.await {
        error!(error = %e, "pipeline task failed");
    }
    // Cancelled with the pipeline; undelivered events stay on disk.
    if let Err(e) = events_task.await {
        error!(error = %e, "events task failed");
    }
    Ok(())
}

/// Creates `dir` if needed and takes "other"'s permissions off it, so a
/// local user can neither list nor read what is inside.
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot stat {}", dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o007 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & !0o007))
            .with_context(|| {
                format!(
                    "{} is open to every local user (mode {:o}) and cannot be restricted",
                    dir.display(),
                    mode & 0o777
                )
            })?;
        info!(dir = %dir.display(), "removed other users' access");
    }
    Ok(())
}

/// nginx's worker writes into the stream directories livebucket makes in
/// `hls_dir` through the group `hls_dir` passes on, so livebucket does not
/// change the mode of an `hls_dir` it finds (deploy/ lays it out setgid,
/// group of nginx's worker, 2770). It creates a missing one 2770, and says so
/// loudly when every local user may read live fragments there, or when
/// `hls_dir` is not setgid and group-writable: then nginx's worker, unless
/// it runs as livebucket's user, cannot write the streams livebucket
/// approves.
fn warn_if_open(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .and_then(|()| {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(HLS_DIR_MODE))
            })
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot stat {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            "nginx.hls_dir is open to every local user, who can read live fragments before they are published; mount it mode=0750"
        );
    }
    if mode & HLS_DIR_MODE != HLS_DIR_MODE {
        warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o7777),
            "nginx.hls_dir is not setgid and group-writable: nginx's worker may not write the stream directories livebucket makes there; make it mode 2770, group of nginx's worker (deploy/livebucket.service's ExecStartPre)"
        );
    }
    Ok(())
}

/// `hls_dir`'s mode as deploy/ lays it out: setgid, so that the stream
/// directories livebucket makes there take nginx's worker's group.
const HLS_DIR_MODE: u32 = 0o2770;

/// Raises the soft limit on open files to the hard limit: every connection
/// and every capture takes one, and `limits.max_connections` per listener
/// should be what bounds them.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                warn!("cannot raise the open-file limit");
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_missing_hls_dir_is_made_setgid_and_group_writable_and_a_found_one_is_left_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let missing = dir.path().join("shm/hls");
        warn_if_open(&missing).unwrap();
        assert_eq!(mode(&missing), HLS_DIR_MODE);
        let found = dir.path().join("found");
        std::fs::create_dir(&found).unwrap();
        std::fs::set_permissions(&found, std::fs::Permissions::from_mode(0o750)).unwrap();
        warn_if_open(&found).unwrap();
        assert_eq!(mode(&found), 0o750, "nginx's side is not changed");
    }
}
