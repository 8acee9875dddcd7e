//! livebucket's one outbound HTTP stack: hyper 1.x's pooled client
//! (`hyper_util::client::legacy`) over TCP, with rustls for `https://`, and
//! hyper's connection API for one-off requests over a Unix socket.
//!
//! Framing, keep-alive, connection reuse, answers that arrive before the
//! request body is sent, and idle connections the server closed are hyper's
//! business; callers build a [`Request`] and read the [`Response`]. Its users:
//! the direct S3 PUTs (`store::direct`), the rtmp_stat and peer statistics
//! reads (`stat`), the `livebucket channel` CLI's API requests, and the
//! tests' client (`tests/e2e/common/httpc.rs`).
//!
//! TLS is rustls with the ring provider, trusting the system's roots plus,
//! when given, the certificates of a PEM file (a store with a self-signed or
//! private CA). Only HTTP/1.1 is spoken: S3-compatible stores all speak it,
//! and a PUT per connection at a time is what the uploader's permits allow.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// A request body: bytes in memory, a file read as it is sent, or nothing.
pub type Body = BoxBody<Bytes, io::Error>;

/// A body of bytes held in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// How long a TCP connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept. Shorter than the idle
/// timeouts of the servers we talk to (nginx 75 s, Garage and RGW longer),
/// so the server rarely closes one under a request.
const POOL_IDLE: Duration = Duration::from_secs(30);
/// Idle connections kept per host: enough for every upload permit.
const MAX_IDLE_PER_HOST: usize = 64;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading the CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// The pooled client; clones share the pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Body>,
}

impl HttpClient {
    /// A client for `http://` and `https://` URLs; `ca_file` adds the PEM
    /// certificates in it to the system's roots.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpClient, BuildError> {
        let tls = tls_config(ca_file)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        Ok(HttpClient { inner })
    }

    /// Sends `req` (its URI absolute) and returns the answer's head; the
    /// body is read by the caller ([`read_capped`]).
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, SendError> {
        self.inner.request(req).await.map_err(SendError::from)
    }
}

/// The process's client without an extra CA file (nginx's statistics,
/// peers), built at first use and shared.
pub fn plain() -> Result<&'static HttpClient, BuildError> {
    static PLAIN: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
    if let Some(c) = PLAIN.get() {
        return Ok(c);
    }
    let client = HttpClient::new(None)?;
    Ok(PLAIN.get_or_init(|| client))
}

/// Why no answer came back.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    message: String,
    /// The connection could not be made (nothing was sent).
    pub connect: bool,
    /// The connection closed before any answer, after the request may have
    /// been sent: on a pooled connection, the server's idle close racing
    /// the request.
    pub closed_unanswered: bool,
    /// The request's own body failed (a file shorter than announced).
    pub user_body: bool,
}

impl From<hyper_util::client::legacy::Error> for SendError {
    fn from(e: hyper_util::client::legacy::Error) -> SendError {
        let hyper = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<hyper::Error>());
        SendError {
            message: error_chain(&e),
            connect: e.is_connect(),
            closed_unanswered: hyper.is_some_and(|h| h.is_incomplete_message()),
            user_body: hyper.is_some_and(|h| h.is_user()),
        }
    }
}

impl From<hyper::Error> for SendError {
    fn from(e: hyper::Error) -> SendError {
        SendError {
            message: error_chain(&e),
            connect: false,
            closed_unanswered: e.is_incomplete_message(),
            user_body: e.is_user(),
        }
    }
}

/// An error and its causes on one line, as `{:#}` prints an anyhow chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body: {0}")]
    Transport(String),
}

/// The whole body, refused once it passes `max` bytes (never read further).
pub async fn read_capped(mut body: Incoming, max: usize) -> Result<Bytes, ReadError> {
    use hyper::body::Body as _;
    if body.size_hint().lower() > max as u64 {
        return Err(ReadError::TooLarge(max));
    }
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Transport(error_chain(&e)))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(ReadError::TooLarge(max));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// One request over a new connection to the Unix socket at `socket` (the
/// pooled client speaks TCP only); the connection ends with the answer.
pub async fn send_unix(socket: &Path, req: Request<Body>) -> Result<Response<Incoming>, SendError> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| SendError {
            message: format!("connecting to {}: {e}", socket.display()),
            connect: true,
            closed_unanswered: false,
            user_body: false,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "unix-socket HTTP connection ended with an error");
        }
    });
    Ok(sender.send_request(req).await?)
}

/// rustls with ring: the system's roots, plus `ca_file`'s certificates.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, BuildError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = system_roots().clone();
    if let Some(path) = ca_file {
        let fail = |message: String| BuildError::CaFile {
            path: path.display().to_string(),
            message,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| fail(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The system's root certificates, read once. A system without a CA bundle
/// is fine when a CA file is given (or only `http://` is used); unreadable
/// entries are skipped.
fn system_roots() -> &'static rustls::RootCertStore {
    static ROOTS: std::sync::OnceLock<rustls::RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system root certificate could not be read");
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(found.certs);
        roots
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let Err(err) = HttpClient::new(Some(&path)) else {
            panic!("accepted");
        };
        assert!(err.to_string().contains("ca.pem"), "{err}");
        let Err(err) = HttpClient::new(Some(&dir.path().join("missing.pem"))) else {
            panic!("accepted");
        };
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
