//! A tiny HTTP/1.1 client for plain `http://` URLs (the crate has no HTTP
//! client dependency): one request per connection with `Connection: close`,
//! the body read to the end (by `Content-Length`, chunked, or until close)
//! and kept as bytes, every header kept. The URL's authority is sent as the
//! `Host` header unchanged, which is what a SigV4 presigned URL signs.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    tokio::time::timeout(TIMEOUT, exchange(method, url, headers))
        .await
        .map_err(|_| std::io::Error::other(format!("no answer within {TIMEOUT:?}")))?
}

async fn exchange(method: &str, url: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// URLs are supported"))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let mut stream = TcpStream::connect(authority).await?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Length: 0\r\nUser-Agent: livebucket-tests\r\n{extra}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse(&raw)
}

fn parse(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |why: &str| std::io::Error::other(format!("malformed HTTP response: {why}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    response.body = if response
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest).ok_or_else(|| bad("broken chunked body"))?
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad Content-Length"))?;
        rest.get(..len)
            .ok_or_else(|| bad("body shorter than Content-Length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(response)
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
