//! The direct PUT: fragments and playlists to an `http://` store without the
//! SDK's per-request machinery, and a tmpfs file sent with `sendfile(2)`.
//!
//! Profiles at 100 channels put about a quarter of livebucket's CPU in the
//! SDK's orchestrator (interceptors, config bags, endpoint rules) for two
//! PUTs per fragment that never change shape, and another tenth in reading
//! each fragment from tmpfs into user space only to write it to a socket.
//! This path signs with [`super::sign`] (checked against the SDK's own
//! signer), writes the request head itself, sends a fragment's pages from
//! the page cache straight to the socket, and reads the answer with
//! `httparse`.
//!
//! It is used only where it is the same request the SDK would make:
//! `http://` endpoints (TLS goes through the SDK), `UNSIGNED-PAYLOAD`
//! (`s3.sign_payload = false`), and for files only when they are memory
//! backed (a disk read could block the runtime). `[s3] direct_put = false`
//! turns it off. Everything else livebucket asks of S3 (GET, LIST, DELETE,
//! HEAD) stays on the SDK.
//!
//! Connections are kept alive and reused per host. A reused connection the
//! server closed meanwhile fails before any answer arrives; the PUT is then
//! sent once more on a new connection (PUT is idempotent), so an idle
//! timeout on the server is not an upload error.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::sign::{HeaderSigner, UNSIGNED_PAYLOAD};
use super::{ObjectMeta, PutFileError, StoreError, retriable_code};
use crate::auth::presign::{S3Location, Target};
use crate::config::S3Config;

/// Same bounds as the SDK client's (`store::client_for`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per host: enough for every upload permit.
const MAX_IDLE: usize = 64;
/// A response head or an error body larger than this is not S3's.
const MAX_RESPONSE: usize = 64 * 1024;
/// A body this small goes in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// What a PUT sends.
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// A memory-backed file and the length announced for it.
    File(&'a std::fs::File, u64),
}

impl Body<'_> {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, size) => *size,
        }
    }
}

pub struct DirectPut {
    endpoint: String,
    path_style: bool,
    /// Idle keep-alive connections by `host[:port]`.
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl DirectPut {
    /// The direct path for this store, or why the SDK keeps every PUT.
    pub fn new(s3: &S3Config) -> Result<DirectPut, &'static str> {
        if !s3.direct_put {
            return Err("[s3] direct_put = false");
        }
        if s3.sign_payload {
            return Err("s3.sign_payload hashes every body, which the SDK does");
        }
        let probe = Target::new(&S3Location {
            endpoint: &s3.endpoint,
            path_style: s3.force_path_style,
            bucket: "bucket",
            key: "key",
        })
        .map_err(|_| "the endpoint is not http(s)://host[:port]")?;
        if probe.scheme != "http" {
            return Err("the endpoint is https (TLS goes through the SDK)");
        }
        Ok(DirectPut {
            endpoint: s3.endpoint.clone(),
            path_style: s3.force_path_style,
            idle: Mutex::default(),
        })
    }

    /// Stores `body` at `bucket/key`. A file that turns out shorter than
    /// announced is a [`PutFileError::Read`] and nothing is stored.
    pub async fn put(
        &self,
        signer: &HeaderSigner,
        bucket: &str,
        key: &str,
        body: Body<'_>,
        object: &ObjectMeta<'_>,
    ) -> Result<(), PutFileError> {
        let fail = |message: String, retriable: bool| StoreError::Request {
            op: "PUT",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message,
            retriable,
        };
        let target = Target::new(&S3Location {
            endpoint: &self.endpoint,
            path_style: self.path_style,
            bucket,
            key,
        })
        .map_err(|e| fail(e.to_string(), false))?;
        let head = request_head(
            &target,
            object,
            body.len(),
            signer,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| fail(e, false))?;

        let attempt = async {
            let (mut conn, reused) = self.checkout(&target.host).await?;
            let answer = match exchange(&mut conn, &head, &body).await {
                Err(Failure::Unanswered(_)) if reused => {
                    // The server closed the idle connection: a new one.
                    conn = self.connect(&target.host).await?;
                    exchange(&mut conn, &head, &body).await
                }
                other => other,
            }?;
            if answer.reusable {
                self.checkin(&target.host, conn);
            }
            Ok::<_, Failure>(answer)
        };
        let answer = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Err(_) => return Err(fail("no answer within 30 s".into(), true).into()),
            Ok(Err(Failure::Short)) => {
                return Err(PutFileError::Read(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file is shorter than its announced length",
                )));
            }
            Ok(Err(Failure::Unanswered(e) | Failure::Io(e))) => {
                return Err(fail(format!("{}: {e}", target.host), true).into());
            }
            Ok(Ok(answer)) => answer,
        };
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let (code, message) = error_code(&answer.body);
        let retriable = retriable_code(code.as_deref());
        let text = match (code, message) {
            (Some(c), m) => format!("{c} ({})", m.as_deref().unwrap_or("no message")),
            (None, _) => format!("HTTP {}", answer.status),
        };
        Err(fail(text, retriable).into())
    }

    /// An idle connection to `host` that the server has not closed, or a
    /// new one; `true` when reused.
    async fn checkout(&self, host: &str) -> Result<(TcpStream, bool), Failure> {
        loop {
            let conn = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(host)
                .and_then(Vec::pop);
            let Some(conn) = conn else {
                return Ok((self.connect(host).await?, false));
            };
            // A closed or babbling idle connection reads something now.
            let mut probe = [0u8; 1];
            match conn.try_read(&mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((conn, true)),
                _ => continue,
            }
        }
    }

    async fn connect(&self, host: &str) -> Result<TcpStream, Failure> {
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(connect_addr(host)))
            .await
            .map_err(|_| Failure::Io(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(Failure::Io)?;
        // The head and a fragment's last partial segment must not wait for
        // an ACK the server may delay.
        conn.set_nodelay(true).map_err(Failure::Io)?;
        Ok(conn)
    }

    fn checkin(&self, host: &str, conn: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let conns = idle.entry(host.to_owned()).or_default();
        if conns.len() < MAX_IDLE {
            conns.push(conn);
        }
    }
}

/// `host[:port]` as `connect` takes it: `Target` drops the default port
/// from the host header, and an IPv6 address keeps its brackets.
fn connect_addr(host: &str) -> String {
    let after_address = host.rsplit_once(']').map_or(host, |(_, rest)| rest);
    if after_address.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    }
}

/// Why one exchange failed.
#[derive(Debug)]
enum Failure {
    /// Nothing came back: on a reused connection, the server had closed it.
    Unanswered(io::Error),
    /// A transport error after the server began answering, or on connect.
    Io(io::Error),
    /// The file ended before the announced length.
    Short,
}

/// The request head: the request line and headers, signed with SigV4
/// (`UNSIGNED-PAYLOAD`), ending in the blank line.
fn request_head(
    target: &Target,
    object: &ObjectMeta<'_>,
    len: u64,
    signer: &HeaderSigner,
    now: OffsetDateTime,
) -> Result<Vec<u8>, String> {
    let len = len.to_string();
    let meta_names: Vec<String> = object
        .metadata
        .iter()
        .map(|(k, _)| format!("x-amz-meta-{k}"))
        .collect();
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", &target.host),
        ("content-type", object.content_type),
        ("content-length", &len),
    ];
    if let Some(cc) = object.cache_control {
        headers.push(("cache-control", cc));
    }
    for (name, (_, value)) in meta_names.iter().zip(object.metadata) {
        headers.push((name, value));
    }
    // A value with a line break would end the head early.
    if headers
        .iter()
        .any(|(_, v)| v.bytes().any(|b| b.is_ascii_control()))
    {
        return Err("a header value holds a control character".into());
    }

    let signed = signer
        .sign("PUT", &target.path, &headers, now)
        .map_err(|e| format!("signing: {e}"))?;
    let added = [
        ("x-amz-date", signed.amz_date.as_str()),
        ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ("authorization", signed.authorization.as_str()),
    ];

    let mut head = Vec::with_capacity(1024);
    head.extend_from_slice(b"PUT ");
    head.extend_from_slice(target.path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter().chain(&added) {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// Sends the request and reads the whole answer.
async fn exchange(conn: &mut TcpStream, head: &[u8], body: &Body<'_>) -> Result<Answer, Failure> {
    // Until the server answers, any error may be an idle connection it
    // closed; the caller retries those once on a new connection.
    let unanswered = Failure::Unanswered;
    match body {
        Body::Bytes(bytes) if bytes.len() <= COALESCE => {
            let mut all = Vec::with_capacity(head.len() + bytes.len());
            all.extend_from_slice(head);
            all.extend_from_slice(bytes);
            conn.write_all(&all).await.map_err(unanswered)?;
        }
        Body::Bytes(bytes) => {
            conn.write_all(head).await.map_err(unanswered)?;
            conn.write_all(bytes).await.map_err(unanswered)?;
        }
        Body::File(file, size) => {
            conn.write_all(head).await.map_err(unanswered)?;
            send_file(conn, file, *size).await?;
        }
    }
    read_answer(conn).await
}

/// `size` bytes of `file` from its start, page cache to socket.
async fn send_file(conn: &TcpStream, file: &std::fs::File, size: u64) -> Result<(), Failure> {
    let (sock, fd) = (conn.as_raw_fd(), file.as_raw_fd());
    let mut offset: libc::off_t = 0;
    while (offset as u64) < size {
        let left = usize::try_from(size - offset as u64).unwrap_or(usize::MAX);
        let sent = conn
            .async_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the whole call (the
                // borrows outlive it) and `offset` is a valid off_t.
                let n = unsafe { libc::sendfile(sock, fd, &mut offset, left) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })
            .await
            .map_err(Failure::Unanswered)?;
        if sent == 0 {
            return Err(Failure::Short);
        }
    }
    Ok(())
}

/// A whole HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The connection may carry another request.
    reusable: bool,
}

/// Reads one answer (skipping `1xx`), with its body framed by
/// `Content-Length`, chunked encoding or the connection's end.
async fn read_answer<R: AsyncRead + Unpin>(conn: &mut R) -> Result<Answer, Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        let parsed = loop {
            if let Some(parsed) = parse_head(&buf)? {
                break parsed;
            }
            if buf.len() > MAX_RESPONSE {
                return Err(Failure::Io(invalid("response head too large")));
            }
            let n = conn.read_buf(&mut buf).await.map_err(|e| {
                if buf.is_empty() {
                    Failure::Unanswered(e)
                } else {
                    Failure::Io(e)
                }
            })?;
            if n == 0 {
                let e = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
                return Err(if buf.is_empty() {
                    Failure::Unanswered(e)
                } else {
                    Failure::Io(e)
                });
            }
        };
        buf.drain(..parsed.head_len);
        if (100..200).contains(&parsed.status) {
            continue;
        }
        let (body, framed) = match parsed.framing {
            Framing::Length(n) => (read_exact(conn, buf, n).await?, true),
            Framing::Chunked => (read_chunked(conn, buf).await?, true),
            Framing::UntilClose => (read_to_end(conn, buf).await?, false),
        };
        return Ok(Answer {
            status: parsed.status,
            body,
            reusable: framed && parsed.keep_alive,
        });
    }
}

#[derive(Debug, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    head_len: usize,
    framing: Framing,
    keep_alive: bool,
}

/// The answer's head if `buf` holds all of it.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Failure::Io(invalid(&format!("bad response: {e}")))),
    };
    let status = response.code.unwrap_or(0);
    let mut keep_alive = response.version == Some(1);
    let mut framing = Framing::UntilClose;
    for h in response.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| Failure::Io(invalid("bad Content-Length")))?;
            if framing != Framing::Chunked {
                framing = Framing::Length(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().ends_with("chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            keep_alive &= !value.eq_ignore_ascii_case("close");
        }
    }
    Ok(Some(Head {
        status,
        head_len,
        framing,
        keep_alive,
    }))
}

async fn read_exact<R: AsyncRead + Unpin>(
    conn: &mut R,
    mut buf: Vec<u8>,
    n: usize,
) -> Result<Vec<u8>, Failure> {
    if n > MAX_RESPONSE {
        return Err(Failure::Io(invalid("response body too large")));
    }
    while buf.len() < n {
        if conn.read_buf(&mut buf).await.map_err(Failure::Io)? == 0 {
            return Err(Failure::Io(invalid("connection closed mid-body")));
        }
    }
    // More than the body means the server sent something unasked for.
    if buf.len() > n {
        return Err(Failure::Io(invalid("bytes after the response body")));
    }
    Ok(buf)
}

async fn read_to_end<R: AsyncRead + Unpin>(
    conn: &mut R,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    while conn.read_buf(&mut buf).await.map_err(Failure::Io)? > 0 {
        if buf.len() > MAX_RESPONSE {
            return Err(Failure::Io(invalid("response body too large")));
        }
    }
    Ok(buf)
}

async fn read_chunked<R: AsyncRead + Unpin>(
    conn: &mut R,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match decode_chunks(&buf, &mut body)? {
            Some(used) if used == buf.len() => return Ok(body),
            Some(_) => return Err(Failure::Io(invalid("bytes after the response body"))),
            None => {}
        }
        if buf.len() > MAX_RESPONSE {
            return Err(Failure::Io(invalid("response body too large")));
        }
        if conn.read_buf(&mut buf).await.map_err(Failure::Io)? == 0 {
            return Err(Failure::Io(invalid("connection closed mid-body")));
        }
    }
}

/// Decodes a whole chunked body from the start of `buf` into `body`:
/// `Some(bytes used)` when the last chunk and its trailer are in, `None`
/// when more is needed (`body` is then rebuilt on the next call).
fn decode_chunks(buf: &[u8], body: &mut Vec<u8>) -> Result<Option<usize>, Failure> {
    body.clear();
    let mut at = 0;
    loop {
        let (start, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete((start, size))) => (start, size),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Failure::Io(invalid("bad chunk size"))),
        };
        // The size is the peer's: a chunk that could not fit in a response
        // we accept is refused before any sum with it can overflow.
        let size = usize::try_from(size)
            .ok()
            .filter(|&n| n <= MAX_RESPONSE)
            .ok_or_else(|| Failure::Io(invalid("chunk too large")))?;
        at += start;
        if size == 0 {
            // Trailer fields (none expected) end with an empty line.
            return Ok(find_crlfcrlf_or_crlf(&buf[at..]).map(|end| at + end));
        }
        // `at` ≤ `buf.len()` and `size` ≤ MAX_RESPONSE: these sums fit.
        let data_end = at + size;
        if buf.len() < data_end + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..data_end]);
        if &buf[data_end..data_end + 2] != b"\r\n" {
            return Err(Failure::Io(invalid("chunk not followed by CRLF")));
        }
        at = data_end + 2;
    }
}

/// After the last chunk: the length up to and including the empty line
/// that ends the (usually empty) trailer.
fn find_crlfcrlf_or_crlf(rest: &[u8]) -> Option<usize> {
    if rest.starts_with(b"\r\n") {
        return Some(2);
    }
    rest.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// `<Error><Code>…</Code><Message>…</Message></Error>` from S3's error body.
fn error_code(body: &[u8]) -> (Option<String>, Option<String>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let (mut code, mut message, mut field) = (None, None, None);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                field = match e.local_name().as_ref() {
                    b"Code" => Some(true),
                    b"Message" => Some(false),
                    _ => None,
                }
            }
            Ok(Event::Text(t)) => {
                let text = t.decode().map(|t| t.into_owned()).ok();
                match field {
                    Some(true) => code = text,
                    Some(false) => message = text,
                    None => {}
                }
            }
            Ok(Event::End(_)) => field = None,
            Ok(Event::Eof) | Err(_) => return (code, message),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn target() -> Target {
        Target::new(&S3Location {
            endpoint: "http://127.0.0.1:3900",
            path_style: true,
            bucket: "media",
            key: "cam/1700000000000 a.ts",
        })
        .unwrap()
    }

    fn head_text(meta: &ObjectMeta<'_>) -> String {
        let signer = HeaderSigner::new("GKtest", "secret", "garage");
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        String::from_utf8(request_head(&target(), meta, 5, &signer, at).unwrap()).unwrap()
    }

    #[test]
    fn head_carries_object_headers_and_a_signature_over_them() {
        let text = head_text(&ObjectMeta::fragment(&[
            ("extinf", "2.000"),
            ("session", "s1"),
        ]));
        assert!(text.starts_with("PUT /media/cam/1700000000000%20a.ts HTTP/1.1\r\n"));
        for line in [
            "host: 127.0.0.1:3900",
            "content-type: video/mp2t",
            "content-length: 5",
            "cache-control: public, max-age=31536000, immutable",
            "x-amz-meta-extinf: 2.000",
            "x-amz-meta-session: s1",
            "x-amz-date: 20231114T221320Z",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ] {
            assert!(
                text.contains(&format!("{line}\r\n")),
                "{line} missing in {text}"
            );
        }
        assert!(text.contains(
            "authorization: AWS4-HMAC-SHA256 Credential=GKtest/20231114/garage/s3/aws4_request, \
             SignedHeaders=cache-control;content-length;content-type;host;x-amz-content-sha256;\
             x-amz-date;x-amz-meta-extinf;x-amz-meta-session, Signature="
        ));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("secret"));
    }

    #[test]
    fn connect_address_has_a_port() {
        assert_eq!(connect_addr("127.0.0.1:3900"), "127.0.0.1:3900");
        assert_eq!(connect_addr("s3.lan"), "s3.lan:80");
        assert_eq!(connect_addr("media.s3.lan:9000"), "media.s3.lan:9000");
        assert_eq!(connect_addr("[::1]"), "[::1]:80");
        assert_eq!(connect_addr("[::1]:9000"), "[::1]:9000");
    }

    #[test]
    fn header_values_with_line_breaks_are_refused() {
        let signer = HeaderSigner::new("GKtest", "secret", "garage");
        let meta = ObjectMeta::fragment(&[("session", "s1\r\nx-evil: 1")]);
        let err = request_head(&target(), &meta, 5, &signer, OffsetDateTime::now_utc());
        assert!(err.is_err());
    }

    async fn answer_of(bytes: &[u8]) -> Result<Answer, Failure> {
        let (mut server, mut client) = tokio::io::duplex(4096);
        server.write_all(bytes).await.unwrap();
        drop(server);
        read_answer(&mut client).await
    }

    #[tokio::test]
    async fn answers_are_framed_by_length_chunks_or_close() {
        let a = answer_of(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!((a.status, a.body.len(), a.reusable), (200, 0, true));

        let a = answer_of(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok")
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body[..], a.reusable),
            (200, &b"ok"[..], false)
        );

        let a = answer_of(b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<Erro\r\n3;x=y\r\nr/>\r\n0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body[..], a.reusable),
            (403, &b"<Error/>"[..], true)
        );

        let a = answer_of(b"HTTP/1.0 500 Oops\r\n\r\nbody until close")
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body[..], a.reusable),
            (500, &b"body until close"[..], false)
        );
    }

    #[tokio::test]
    async fn broken_answers_are_errors() {
        assert!(matches!(answer_of(b"").await, Err(Failure::Unanswered(_))));
        assert!(matches!(
            answer_of(b"HTTP/1.1 200 OK\r\nContent-Le").await,
            Err(Failure::Io(_))
        ));
        assert!(matches!(
            answer_of(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").await,
            Err(Failure::Io(_))
        ));
        assert!(matches!(
            answer_of(b"SMTP ready\r\n\r\n").await,
            Err(Failure::Io(_))
        ));
        assert!(matches!(
            answer_of(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").await,
            Err(Failure::Io(_))
        ));
        assert!(matches!(
            answer_of(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra").await,
            Err(Failure::Io(_))
        ));
    }

    /// Sizes and lengths are the peer's numbers: any of them, however
    /// large, is an error, never a panic (`at + size + 2` overflowed).
    #[tokio::test]
    async fn huge_chunk_sizes_and_lengths_are_errors_not_panics() {
        for size in [
            "FFFFFFFFFFFFFFFF",
            "FFFFFFFFFFFFFFFE",
            "7FFFFFFFFFFFFFFF",
            "10001",
        ] {
            let answer = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n"
            );
            assert!(
                matches!(answer_of(answer.as_bytes()).await, Err(Failure::Io(_))),
                "chunk size {size}"
            );
        }
        for len in ["18446744073709551615", "18446744073709551616", "65537"] {
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\nabc");
            assert!(
                matches!(answer_of(answer.as_bytes()).await, Err(Failure::Io(_))),
                "Content-Length {len}"
            );
        }
        // Garbage in a chunk size: refused by httparse.
        assert!(matches!(
            answer_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await,
            Err(Failure::Io(_))
        ));
    }

    /// The same answer from a server: the PUT fails with a retriable error.
    #[tokio::test]
    async fn a_put_answered_with_a_huge_chunk_is_a_retriable_error() {
        const HUGE: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            FFFFFFFFFFFFFFFF\r\nabc\r\n";
        let (endpoint, _server) = scripted_server(vec![(HUGE, true)]).await;
        let direct = direct_to(&endpoint);
        let signer = HeaderSigner::new("GKtest", "secret", "garage");
        let err = direct
            .put(
                &signer,
                "media",
                "cam/1",
                Body::Bytes(b"x"),
                &ObjectMeta::JSON,
            )
            .await
            .unwrap_err();
        match err {
            PutFileError::Store(StoreError::Request { retriable, .. }) => assert!(retriable),
            other => panic!("{other:?}"),
        }
    }

    /// A server on 127.0.0.1 that reads each request (head and Content-Length
    /// body), sends the answer scripted for it, and closes the connection
    /// after it when `close` says so.
    async fn scripted_server(
        answers: Vec<(&'static str, bool)>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            let mut answers = answers.into_iter();
            'conns: while answers.len() > 0 {
                let Ok((mut conn, _)) = listener.accept().await else {
                    break;
                };
                loop {
                    let mut buf = Vec::new();
                    let end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        if conn.read_buf(&mut buf).await.unwrap() == 0 {
                            continue 'conns;
                        }
                    };
                    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    while buf.len() < end + len {
                        if conn.read_buf(&mut buf).await.unwrap() == 0 {
                            continue 'conns;
                        }
                    }
                    heads.push(head);
                    let Some((answer, close)) = answers.next() else {
                        break 'conns;
                    };
                    // DROP: the request is read and never answered.
                    conn.write_all(answer.as_bytes()).await.unwrap();
                    if close {
                        continue 'conns;
                    }
                }
            }
            heads
        });
        (endpoint, server)
    }

    fn direct_to(endpoint: &str) -> DirectPut {
        DirectPut::new(&S3Config {
            endpoint: endpoint.into(),
            region: "garage".into(),
            force_path_style: true,
            public_endpoint: None,
            sign_payload: false,
            direct_put: true,
        })
        .unwrap()
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    /// No answer at all: an idle connection the server was closing.
    const DROP: &str = "";
    const DENIED: &str = "HTTP/1.1 403 Forbidden\r\nContent-Length: 74\r\n\r\n\
        <Error><Code>AccessDenied</Code><Message>not this bucket</Message></Error>";

    #[tokio::test]
    async fn connections_are_reused_and_a_closed_one_is_replaced() {
        // PUT 1 on a new connection; PUT 2 reuses it, the server closes it
        // unanswered, and it is sent again on a new one; PUT 3 reuses that,
        // whose server closes after answering; PUT 4 sees that before
        // sending and connects anew. Every PUT succeeds.
        let (endpoint, server) = scripted_server(vec![
            (OK, false),
            (DROP, true),
            (OK, false),
            (OK, true),
            (OK, false),
        ])
        .await;
        let direct = direct_to(&endpoint);
        let signer = HeaderSigner::new("GKtest", "secret", "garage");
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &[7u8; 300_000]).unwrap();
        for i in 0..4 {
            let body = if i % 2 == 0 {
                Body::Bytes(b"#EXTM3U\n")
            } else {
                Body::File(&file, 300_000)
            };
            let meta = ObjectMeta::playlist("no-cache");
            direct
                .put(&signer, "media", &format!("cam/{i}"), body, &meta)
                .await
                .unwrap_or_else(|e| panic!("PUT {i}: {e}"));
        }
        drop(direct);
        let heads = server.await.unwrap();
        assert_eq!(heads.len(), 5, "PUT 2 was sent twice");
        assert_eq!(heads[1], heads[2]);
        assert!(heads[1].contains("content-length: 300000"));
    }

    #[tokio::test]
    async fn s3_errors_are_reported_with_their_code_and_not_retried() {
        let (endpoint, server) = scripted_server(vec![(DENIED, false)]).await;
        let direct = direct_to(&endpoint);
        let signer = HeaderSigner::new("GKtest", "secret", "garage");
        let err = direct
            .put(
                &signer,
                "media",
                "cam/1",
                Body::Bytes(b"x"),
                &ObjectMeta::JSON,
            )
            .await
            .unwrap_err();
        match err {
            PutFileError::Store(StoreError::Request {
                message, retriable, ..
            }) => {
                assert_eq!(message, "AccessDenied (not this bucket)");
                assert!(!retriable);
            }
            other => panic!("{other:?}"),
        }
        drop(direct);
        assert_eq!(server.await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_is_a_read_error() {
        let (endpoint, _server) = scripted_server(vec![(OK, false)]).await;
        let direct = direct_to(&endpoint);
        let signer = HeaderSigner::new("GKtest", "secret", "garage");
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &[1u8; 10]).unwrap();
        let err = direct
            .put(
                &signer,
                "media",
                "cam/1",
                Body::File(&file, 20),
                &ObjectMeta::JSON,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, PutFileError::Read(_)), "{err:?}");
    }

    #[test]
    fn s3_error_bodies_give_code_and_message() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Forbidden: no such key</Message><Resource>/m/k</Resource></Error>"#;
        assert_eq!(
            error_code(body),
            (
                Some("AccessDenied".into()),
                Some("Forbidden: no such key".into())
            )
        );
        assert_eq!(error_code(b"not xml <"), (None, None));
    }
}
