//! Serving one surface's [`Router`] on one listener, at a bounded cost.
//!
//! axum's own `serve` sets no header-read timeout, so a connection that never
//! sends a request would stay open forever. Here each connection is driven by
//! hyper's HTTP/1 server with a timer, so:
//! - a connection that has not sent a whole request head within
//!   `limits.header_read_timeout_secs` is closed, whether it is new or idle
//!   between keep-alive requests (hyper starts that clock whenever it waits
//!   for a head);
//! - a response the client stops reading is cut off: once a write has
//!   waited `limits.write_timeout_secs` for room in the socket (the peer's
//!   receive window stays full), the connection is closed ([`WriteDeadline`]);
//!   tower-http's `TimeoutLayer` ends at the response head, so without this a
//!   stalled reader would hold its connection for ever (`limits.send_buffer_bytes`
//!   bounds the kernel memory it pins meanwhile);
//! - at most `limits.max_connections` connections are open per listener;
//!   beyond it a new connection is closed at once and counted, so a flood on
//!   one surface cannot take file descriptors or memory from another (nginx's
//!   callbacks have a listener of their own);
//! - on the public and operator listeners, at most
//!   `limits.max_connections_per_peer` of them per client IP ([`PeerCounts`]),
//!   so one client cannot take the whole listener from the others. Not on
//!   the hooks listener: its one legitimate peer, nginx, shares 127.0.0.1
//!   with every local process, so a per-address cap would cap nginx itself;
//! - the hooks listener keeps no connection alive after its answer (nginx's
//!   callbacks are HTTP/1.0, one request per connection), and every refusal
//!   there carries `Connection: close`: a process without the secret cannot
//!   park keep-alive connections on the listener nginx needs;
//! - the peer's address travels with each request as [`Peer`], and on the
//!   hooks listener a TCP peer outside `hooks.allow` gets 403 for everything
//!   it sends.
//!
//! Every connection closed on livebucket's initiative is counted in
//! `livebucket_connections_closed_total` by reason.
//!
//! Listeners come from the config (`IP:PORT` or `unix:/path`) or from
//! systemd socket activation, matched by `FileDescriptorName=`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::config::ListenAddr;
use crate::metrics::Metrics;

/// A bound listening socket.
pub(crate) enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Bound {
    /// Where it listens, for logs.
    pub(crate) fn describe(&self) -> String {
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
pub(crate) struct Peer(pub Option<SocketAddr>);

/// When the server began on a request: its connection's accept for the
/// first request (nginx's callbacks make one request per connection), the
/// arrival of its head for later ones. Answer times are measured from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrived(pub Instant);

/// Binds `addr`. A Unix socket replaces a stale socket file at the same path
/// (never any other kind of file) and is made `0660`: nginx's worker reaches
/// it through the owner or the group.
pub(crate) async fn bind(addr: &ListenAddr) -> anyhow::Result<Bound> {
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
pub(crate) fn inherited() -> anyhow::Result<Vec<(String, Bound)>> {
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
pub(crate) type PeerFilter = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How one surface is served.
#[derive(Clone)]
pub(crate) struct Surface {
    /// `hooks`, `public` or `operator`: logs and metrics.
    pub name: &'static str,
    pub router: Router,
    pub header_read_timeout: Duration,
    /// How long a write may wait for the peer to read before the
    /// connection is closed (`limits.write_timeout_secs`).
    pub write_timeout: Duration,
    /// `SO_SNDBUF` of each accepted TCP connection; `None`: the kernel's
    /// autotuning.
    pub send_buffer: Option<usize>,
    pub max_connections: usize,
    /// Open connections per client IP; `None` for no per-peer cap (the
    /// hooks listener, whose only legitimate peer is nginx).
    pub max_connections_per_peer: Option<usize>,
    /// Whether a connection may carry a second request. Off on the hooks
    /// listener, where nginx never sends one.
    pub keep_alive: bool,
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
pub(crate) fn serve_on_own_thread(
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
pub(crate) async fn serve(
    bound: Bound,
    surface: Surface,
    stop: CancellationToken,
    conns: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(surface.max_connections));
    let peers = PeerCounts::default();
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
            refuse(&surface, "max_connections", peer);
            continue;
        };
        let peer_slot = match (peer.0, surface.max_connections_per_peer) {
            (Some(addr), Some(cap)) => match peers.admit(addr.ip(), cap) {
                Some(s) => Some(s),
                None => {
                    refuse(&surface, "max_connections_per_peer", peer);
                    continue;
                }
            },
            _ => None,
        };
        let surface = surface.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let (limit, metrics) = (surface.write_timeout, surface.metrics.clone());
            match stream {
                Stream::Tcp(s) => {
                    if let Some(bytes) = surface.send_buffer {
                        set_send_buffer(&s, bytes);
                    }
                    let s = WriteDeadline::new(s, limit, metrics);
                    connection(s, peer, arrived, &surface, stop).await;
                }
                Stream::Unix(s) => {
                    let s = WriteDeadline::new(s, limit, metrics);
                    connection(s, peer, arrived, &surface, stop).await;
                }
            }
            drop((slot, peer_slot));
        });
    }
}

/// Closes a new connection at accept (dropping it does), counted as a
/// refusal of its listener and by `reason`.
fn refuse(surface: &Surface, reason: &'static str, peer: Peer) {
    surface
        .metrics
        .inc("livebucket_connections_refused_total", surface.name);
    surface
        .metrics
        .inc("livebucket_connections_closed_total", reason);
    debug!(
        listener = surface.name,
        peer = ?peer.0.map(|a| a.ip()),
        reason,
        "connection limit reached; closing a new connection"
    );
}

/// Sets `SO_SNDBUF` (which turns the kernel's autotuning off for the
/// socket); a failure is logged and the connection served as it is.
fn set_send_buffer(stream: &tokio::net::TcpStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local
    // and touches nothing else; the fd is the stream's, open for the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        debug!(error = %std::io::Error::last_os_error(), "cannot set SO_SNDBUF");
    }
}

/// Open connections per client IP on one listener. [`PeerCounts::admit`]
/// hands out a [`PeerSlot`] that gives its place back when dropped.
#[derive(Default, Clone)]
pub(crate) struct PeerCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One open connection of one peer, counted in its [`PeerCounts`] until
/// dropped.
pub(crate) struct PeerSlot {
    counts: PeerCounts,
    ip: IpAddr,
}

impl PeerCounts {
    /// A slot for one more connection from `ip`, or `None` when it already
    /// has `cap` open. An IPv4 peer on a dual-stack socket (`::ffff:a.b.c.d`)
    /// counts as its IPv4 address, so it cannot double its share.
    pub(crate) fn admit(&self, ip: IpAddr, cap: usize) -> Option<PeerSlot> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let open = counts.entry(ip).or_default();
        if *open >= cap {
            return None;
        }
        *open += 1;
        Some(PeerSlot {
            counts: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    pub(crate) fn open(&self, ip: IpAddr) -> usize {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        // The entry goes with the peer's last connection, so the map holds
        // only peers with connections open (at most max_connections).
        if let Some(open) = counts.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A connection's stream whose writes fail with `TimedOut` once one has
/// waited `limit` without the socket taking a byte: the peer has stopped
/// reading (its receive window and our send buffer are full). A write that
/// makes progress, however slow, starts the clock again, so slow clients
/// that keep reading are served to the end.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write is first pending, dropped at the next progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, limit: Duration, metrics: Arc<Metrics>) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
            metrics,
        }
    }

    /// After the inner write answered `result`: progress disarms the clock;
    /// `Pending` arms it (once) and fails the write once it has run out.
    fn check<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        result: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let clock = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if clock.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.stalled = None;
        self.metrics
            .inc("livebucket_connections_closed_total", "write_stalled");
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("the peer read nothing for {limit:?}"),
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, result)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, result)
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
                    (
                        StatusCode::FORBIDDEN,
                        [(header::CONNECTION, "close")],
                        "forbidden\n",
                    )
                        .into_response(),
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
        .keep_alive(surface.keep_alive);
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
        if e.is_timeout() {
            // hyper's header-read timeout: a slow head, or an idle
            // keep-alive connection.
            surface
                .metrics
                .inc("livebucket_connections_closed_total", "header_timeout");
        }
        // Timeouts, resets and malformed requests: the peer's problem.
        debug!(listener = surface.name, peer = ?peer.0, error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn peers_get_their_cap_each() {
        let peers = PeerCounts::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<PeerSlot> = (0..3).filter_map(|_| peers.admit(a, 3)).collect();
        assert_eq!(held.len(), 3);
        assert!(peers.admit(a, 3).is_none(), "a fourth from the same IP");
        // The same IP through a dual-stack socket is the same peer.
        assert!(
            peers
                .admit("::ffff:192.0.2.1".parse().unwrap(), 3)
                .is_none()
        );
        // Another peer is not affected.
        let other = peers.admit(b, 3);
        assert!(other.is_some());
        // A closed connection gives its place back; the last one, the entry.
        drop(held);
        assert_eq!(peers.open(a), 0);
        assert!(peers.0.lock().unwrap().get(&a).is_none());
        assert!(peers.admit(a, 3).is_some());
    }

    /// A stream whose peer reads `read` bytes now and then, over a pipe of
    /// 1 KiB, while 64 KiB are written.
    async fn write_to_a_reader(
        stall: Duration,
        reads_every: Option<Duration>,
    ) -> std::io::Result<()> {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let metrics = Arc::new(Metrics::default());
        let mut stream = WriteDeadline::new(ours, stall, metrics);
        let reader = tokio::spawn(async move {
            let Some(every) = reads_every else {
                // Never reads: holds the pipe open.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            };
            let mut buf = [0u8; 512];
            while theirs.read(&mut buf).await.is_ok_and(|n| n > 0) {
                tokio::time::sleep(every).await;
            }
        });
        let result = stream.write_all(&[7u8; 64 * 1024]).await;
        reader.abort();
        result
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_is_cut_off_after_the_deadline() {
        let started = tokio::time::Instant::now();
        let err = write_to_a_reader(Duration::from_secs(5), None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        // 128 reads, 2 s apart: 4 minutes in all, each gap under the 5 s
        // deadline.
        write_to_a_reader(Duration::from_secs(5), Some(Duration::from_secs(2)))
            .await
            .unwrap();
    }
}
