//! The tests' one HTTP client, on livebucket's own ([`livebucket::outbound`],
//! hyper): one request per connection (each test has its own runtime, so
//! nothing pooled outlives it), the body read whole and kept as bytes,
//! every header kept. The URL's authority is sent as the `Host` header
//! unchanged, which is what a SigV4 presigned URL signs.
//!
//! Async tests await [`get`], [`request`], …; synchronous harness code
//! (start-up polls, `Livebucket::get`) calls [`blocking`], which runs the
//! same request on a thread of its own with a current-thread runtime, so it
//! works inside and outside a test's runtime alike.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Version;
use livebucket::outbound::{self, HttpClient};

/// How long one request may take, connect to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// (name in lower case, value), in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for assertions and messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET url`; panics, naming the URL, if no HTTP answer comes back.
pub async fn get(url: &str) -> Response {
    request("GET", url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `POST url` with an empty body; panics if no HTTP answer comes back.
pub async fn post(url: &str) -> Response {
    request("POST", url)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// `METHOD url` with an empty body.
pub async fn request(method: &str, url: &str) -> std::io::Result<Response> {
    request_with_headers(method, url, &[]).await
}

/// `METHOD url` with an empty body and these extra headers.
pub async fn request_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    send(&Request::new(method, url).headers(headers)).await
}

/// One request: method, URL, extra headers, body and HTTP version.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: &'a str,
    url: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
    version: Version,
    timeout: Duration,
}

impl<'a> Request<'a> {
    /// `METHOD url`, HTTP/1.1, no body, no extra header, answered within
    /// 30 s.
    pub fn new(method: &'a str, url: &'a str) -> Request<'a> {
        Request {
            method,
            url,
            headers: &[],
            body: b"",
            version: Version::HTTP_11,
            timeout: TIMEOUT,
        }
    }

    pub fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        self.headers = headers;
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Request<'a> {
        self.body = body;
        self
    }

    /// Sent as HTTP/1.0 (as nginx-rtmp sends its callbacks), without a
    /// `Connection` header: the connection closes after the answer.
    pub fn http10(mut self) -> Request<'a> {
        self.version = Version::HTTP_10;
        self
    }

    /// How long the whole exchange may take, connect to last byte.
    pub fn timeout(mut self, timeout: Duration) -> Request<'a> {
        self.timeout = timeout;
        self
    }
}

/// Sends `req`; an error when no HTTP answer comes back in time.
pub async fn send(req: &Request<'_>) -> std::io::Result<Response> {
    tokio::time::timeout(req.timeout, exchange(req))
        .await
        .map_err(|_| std::io::Error::other(format!("no answer within {:?}", req.timeout)))?
}

/// [`send`] from synchronous code, on a thread of its own with a
/// current-thread runtime (a runtime cannot be blocked on from inside
/// another, and the caller may be in a test's).
pub fn blocking(req: &Request<'_>) -> std::io::Result<Response> {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(send(req))
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn exchange(r: &Request<'_>) -> std::io::Result<Response> {
    if !r.url.starts_with("http://") {
        return Err(std::io::Error::other("only http:// URLs are supported"));
    }
    let mut req = hyper::Request::builder()
        .method(r.method)
        .uri(r.url)
        .version(r.version)
        .header("content-length", r.body.len())
        .header("user-agent", "livebucket-tests");
    if r.version != Version::HTTP_10 {
        req = req.header("connection", "close");
    }
    for (name, value) in r.headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(outbound::full(r.body.to_vec()))
        .map_err(|e| std::io::Error::other(format!("bad request: {e}")))?;
    let client = HttpClient::new(None).map_err(std::io::Error::other)?;
    let answer = client.send(req).await.map_err(std::io::Error::other)?;
    let status = answer.status().as_u16();
    let headers = answer
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}
