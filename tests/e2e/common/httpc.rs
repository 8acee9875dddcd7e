//! The tests' HTTP client, on livebucket's own ([`livebucket::outbound`],
//! hyper): one request per connection with `Connection: close` (each test
//! has its own runtime, so nothing pooled outlives it), the body read whole
//! and kept as bytes, every header kept. The URL's authority is sent as the
//! `Host` header unchanged, which is what a SigV4 presigned URL signs.

use std::time::Duration;

use http_body_util::BodyExt;
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
    tokio::time::timeout(TIMEOUT, exchange(method, url, headers))
        .await
        .map_err(|_| std::io::Error::other(format!("no answer within {TIMEOUT:?}")))?
}

async fn exchange(method: &str, url: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    if !url.starts_with("http://") {
        return Err(std::io::Error::other("only http:// URLs are supported"));
    }
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("connection", "close")
        .header("content-length", "0")
        .header("user-agent", "livebucket-tests");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(outbound::empty())
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
