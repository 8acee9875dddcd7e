//! Serving one surface's [`Router`] on one listener, at a bounded cost.
//!
//! axum's own `serve` sets no header-read timeout, so a connection that never
//! sends a request would stay open forever. Here each connection is driven by
//! hyper's HTTP/1 server with a timer, so:
//! - a connection that has not sent a whole request head within
//!   `limits.header_read_timeout_secs` is closed, whether it is new or idle
//!   between keep-alive requests (hyper starts that clock whenever it waits
//!   for a head);
//! - at most `limits.max_connections` connections are open per listener;
//!   beyond it a new connection is closed at once and counted, so a flood on
//!   one surface cannot take file descriptors or memory from another (nginx's
//!   callbacks have a listener of their own);
//! - the peer's address travels with each request as [`Peer`], and on the
//!   hooks listener a TCP peer outside `hooks.allow` gets 403 for everything
//!   it sends.
//!
//! Listeners come from the config (`IP:PORT` or `unix:/path`) or from
//! systemd socket activation, matched by `FileDescriptorName=`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::ListenAddr;
use crate::metrics::Metrics;

/// A bound listening socket.
pub enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Bound {
    /// Where it listens, for logs.
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("tcp (unknown address: {e})"), |a| a.to_string()),
            Bound::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:(unnamed)".into()),
        }
    }
}

/// The peer of a request's connection; `None` on a Unix socket.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

/// When the server began on a request: its connection's accept for the
/// first request (nginx's callbacks make one request per connection), the
/// arrival of its head for later ones. Answer times are measured from it.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// Binds `addr`. A Unix socket replaces a stale socket file at the same path
/// (never any other kind of file) and is made `0660`: nginx's worker reaches
/// it through the owner or the group.
pub async fn bind(addr: &ListenAddr) -> anyhow::Result<Bound> {
    match addr {
        ListenAddr::Tcp(a) => Ok(Bound::Tcp(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        )),
        ListenAddr::Unix(path) => bind_unix(path),
    }
}

fn bind_unix(path: &Path) -> anyhow::Result<Bound> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    Ok(Bound::Unix(listener))
}

/// The sockets passed by systemd socket activation, by name
/// (`FileDescriptorName=` in the unit, `LISTEN_FDNAMES`). A single socket
/// without a name is taken as `hooks`, the one whose availability matters
/// across restarts (nginx drops a live stream whose `on_update` cannot
/// connect).
pub fn inherited() -> anyhow::Result<Vec<(String, Bound)>> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if !ours || count <= 0 {
        return Ok(Vec::new());
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|n| n.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..count {
        let fd: RawFd = 3 + i;
        let name = match names.get(i as usize) {
            Some(n) if !n.is_empty() && n != "unknown" => n.clone(),
            _ if count == 1 => "hooks".to_owned(),
            _ => anyhow::bail!(
                "socket activation passed {count} sockets; name each with FileDescriptorName= (hooks, public, operator)"
            ),
        };
        out.push((name, from_fd(fd)?));
    }
    Ok(out)
}

/// Takes ownership of an inherited listening socket.
fn from_fd(fd: RawFd) -> anyhow::Result<Bound> {
    // SAFETY: with LISTEN_PID naming this process, the service manager hands
    // us fds 3.. as open listening sockets owned by nothing else here; each is
    // taken exactly once.
    let family = unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut addr).cast(), &mut len) != 0 {
            anyhow::bail!(
                "inherited fd {fd} is not a socket: {}",
                std::io::Error::last_os_error()
            );
        }
        libc::c_int::from(addr.ss_family)
    };
    if family == libc::AF_UNIX {
        // SAFETY: as above; the fd is a Unix socket.
        let l = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        l.set_nonblocking(true)?;
        Ok(Bound::Unix(UnixListener::from_std(l)?))
    } else {
        // SAFETY: as above; the fd is an IP socket.
        let l = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        l.set_nonblocking(true)?;
        Ok(Bound::Tcp(TcpListener::from_std(l)?))
    }
}

/// Which TCP peers may use a listener.
pub type PeerFilter = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How one surface is served.
#[derive(Clone)]
pub struct Surface {
    /// `hooks`, `public` or `operator`: logs and metrics.
    pub name: &'static str,
    pub router: Router,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// TCP peers allowed; `None` allows every peer.
    pub allow: Option<PeerFilter>,
    pub metrics: Arc<Metrics>,
}

/// Serves `surface` as [`serve`] does, on a thread of its own with a
/// single-threaded runtime, and returns at once; the receiver completes when
/// the listener has stopped accepting.
///
/// For the hooks listener: nginx waits on every callback (a streamer is held
/// until `on_publish` answers, and an `on_update` that is not answered drops
/// a live one), and on the main runtime's worker threads those requests
/// queued behind the pipeline's uploads and file system calls. Here the
/// kernel schedules them as soon as they arrive.
///
/// The thread's runtime lives until `keep` is cancelled, not only until the
/// listener stops: the work a request left for after its answer (waking
/// the pipeline, refilling spare session directories) runs on it.
pub fn serve_on_own_thread(
    bound: Bound,
    surface: Surface,
    stop: CancellationToken,
    conns: TaskTracker,
    keep: CancellationToken,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<()>> {
    // A tokio listener is tied to the runtime it was registered with.
    let bound = match bound {
        Bound::Tcp(l) => StdBound::Tcp(l.into_std()?),
        Bound::Unix(l) => StdBound::Unix(l.into_std()?),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime for a listener")?;
    let name = surface.name;
    let (registered, registration) = std::sync::mpsc::sync_channel(1);
    let (done, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("livebucket-{name}"))
        .spawn(move || {
            runtime.block_on(async move {
                let bound = match bound.into_tokio() {
                    Ok(bound) => bound,
                    Err(e) => {
                        let _ = registered.send(Err(e));
                        return;
                    }
                };
                let _ = registered.send(Ok(()));
                serve(bound, surface, stop, conns).await;
                let _ = done.send(());
                keep.cancelled().await;
            });
        })
        .context("cannot start a thread for a listener")?;
    // A few microseconds at start: the listener is serving, or this fails.
    registration
        .recv()
        .map_err(|_| anyhow::anyhow!("the {name} listener's thread ended at start"))?
        .with_context(|| format!("cannot serve the {name} listener on its thread"))?;
    Ok(stopped)
}

/// A [`Bound`] between runtimes.
enum StdBound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl StdBound {
    /// Registers the listener with the current runtime.
    fn into_tokio(self) -> std::io::Result<Bound> {
        Ok(match self {
            StdBound::Tcp(l) => Bound::Tcp(TcpListener::from_std(l)?),
            StdBound::Unix(l) => Bound::Unix(UnixListener::from_std(l)?),
        })
    }
}

/// Accepts until `stop`, then lets open connections finish their current
/// request (graceful shutdown); each connection task is tracked in `conns`.
pub async fn serve(bound: Bound, surface: Surface, stop: CancellationToken, conns: TaskTracker) {
    let slots = Arc::new(Semaphore::new(surface.max_connections));
    let surface = Arc::new(surface);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = accept(&bound) => a,
        };
        let arrived = Instant::now();
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(listener = surface.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            surface
                .metrics
                .inc("livebucket_connections_refused_total", surface.name);
            debug!(
                listener = surface.name,
                "connection limit reached; closing a new connection"
            );
            continue;
        };
        let surface = surface.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            match stream {
                Stream::Tcp(s) => connection(s, peer, arrived, &surface, stop).await,
                Stream::Unix(s) => connection(s, peer, arrived, &surface, stop).await,
            }
            drop(slot);
        });
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(bound: &Bound) -> std::io::Result<(Stream, Peer)> {
    match bound {
        Bound::Tcp(l) => {
            let (s, a) = l.accept().await?;
            Ok((Stream::Tcp(s), Peer(Some(a))))
        }
        Bound::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Stream::Unix(s), Peer(None)))
        }
    }
}

async fn connection<S>(
    stream: S,
    peer: Peer,
    accepted: Instant,
    surface: &Surface,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let first = std::sync::atomic::AtomicBool::new(true);
    let allowed = match (peer.0, &surface.allow) {
        (Some(addr), Some(allow)) => allow(addr.ip()),
        _ => true,
    };
    let router = surface.router.clone();
    let metrics = surface.metrics.clone();
    let name = surface.name;
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let router = router.clone();
        let metrics = metrics.clone();
        let arrived = if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            accepted
        } else {
            Instant::now()
        };
        async move {
            if !allowed {
                metrics.inc("livebucket_hooks_forged_total", "peer");
                info!(
                    listener = name,
                    peer = ?peer.0,
                    reason = "peer_not_allowed",
                    "request refused: peer is not in hooks.allow"
                );
                return Ok::<Response, Infallible>(
                    (StatusCode::FORBIDDEN, "forbidden\n").into_response(),
                );
            }
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(Arrived(arrived));
            router.oneshot(req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(surface.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests: the peer's problem.
        debug!(listener = surface.name, peer = ?peer.0, error = %e, "connection ended with an error");
    }
}
