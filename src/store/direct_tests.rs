//! The direct PUT against a scripted S3 server of the test's own: a tokio
//! TCP server that reads each request and answers byte for byte as
//! scripted, for the protocol's edge cases.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::store::errors::Class;

fn target() -> Target {
    Target::new(&S3Location {
        endpoint: "http://127.0.0.1:3900",
        path_style: true,
        bucket: "media",
        key: "cam/1700000000000 a.ts",
    })
    .unwrap()
}

#[test]
fn head_carries_object_headers_and_a_signature_over_them() {
    let signer = HeaderSigner::new("GKtest", "secret", "garage");
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let meta = ObjectMeta::fragment(&[("extinf", "2.000"), ("session", "s1")]);
    let (uri, headers) = put_head(&target(), &meta, 5, &signer, at).unwrap();
    assert_eq!(
        uri.to_string(),
        "http://127.0.0.1:3900/media/cam/1700000000000%20a.ts"
    );
    for (name, value) in [
        ("host", "127.0.0.1:3900"),
        ("content-type", "video/mp2t"),
        ("content-length", "5"),
        ("cache-control", "public, max-age=31536000, immutable"),
        ("x-amz-meta-extinf", "2.000"),
        ("x-amz-meta-session", "s1"),
        ("x-amz-date", "20231114T221320Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ] {
        assert_eq!(headers[name], value, "{name}");
    }
    let auth = headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with(
        "AWS4-HMAC-SHA256 Credential=GKtest/20231114/garage/s3/aws4_request, \
         SignedHeaders=cache-control;content-length;content-type;host;x-amz-content-sha256;\
         x-amz-date;x-amz-meta-extinf;x-amz-meta-session, Signature="
    ));
    assert!(!auth.contains("secret"));
}

#[test]
fn header_values_with_line_breaks_are_refused() {
    let signer = HeaderSigner::new("GKtest", "secret", "garage");
    let meta = ObjectMeta::fragment(&[("session", "s1\r\nx-evil: 1")]);
    let err = put_head(&target(), &meta, 5, &signer, OffsetDateTime::now_utc());
    assert!(err.is_err());
}

/// What the scripted server does with one request.
#[derive(Clone)]
enum Step {
    /// Reads the whole request, writes these bytes, keeps the connection.
    Answer(&'static str),
    /// Reads the whole request, writes these bytes, closes.
    AnswerClose(&'static str),
    /// Reads the head and this many body bytes, writes the answer, stops
    /// writing (FIN), reads a little more and closes (as Go's net/http
    /// refuses early).
    EarlyClose(usize, &'static str),
    /// Reads the whole request and closes without a byte: an idle
    /// connection the server was closing as the request came.
    Drop,
    /// Reads the whole request, answers, then closes the idle connection
    /// after this long.
    AnswerThenIdleClose(&'static str, Duration),
}

/// A server on 127.0.0.1 that plays `steps` in order across connections;
/// returns the endpoint and a task yielding each request head it read.
async fn scripted(steps: Vec<Step>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        let mut steps = steps.into_iter().peekable();
        'conns: while steps.peek().is_some() {
            let Ok((mut conn, _)) = listener.accept().await else {
                break;
            };
            loop {
                let Some(step) = steps.peek().cloned() else {
                    break 'conns;
                };
                let body_cap = match step {
                    Step::EarlyClose(n, _) => Some(n),
                    _ => None,
                };
                let Some(head) = read_request(&mut conn, body_cap).await else {
                    continue 'conns;
                };
                heads.push(head);
                steps.next();
                match step {
                    Step::Answer(a) => conn.write_all(a.as_bytes()).await.unwrap(),
                    Step::AnswerClose(a) => {
                        conn.write_all(a.as_bytes()).await.unwrap();
                        continue 'conns;
                    }
                    Step::EarlyClose(_, a) => {
                        conn.write_all(a.as_bytes()).await.unwrap();
                        let _ = conn.shutdown().await;
                        let mut sink = vec![0u8; 16 * 1024];
                        let _ =
                            tokio::time::timeout(Duration::from_millis(50), conn.read(&mut sink))
                                .await;
                        continue 'conns;
                    }
                    Step::Drop => continue 'conns,
                    Step::AnswerThenIdleClose(a, after) => {
                        conn.write_all(a.as_bytes()).await.unwrap();
                        tokio::time::sleep(after).await;
                        continue 'conns;
                    }
                }
            }
        }
        heads
    });
    (endpoint, task)
}

/// Reads one request's head and its Content-Length body (at most
/// `body_cap` bytes of it); `None` if the connection ended first.
async fn read_request(conn: &mut TcpStream, body_cap: Option<usize>) -> Option<String> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if conn.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.parse().unwrap());
    let want = end + body_cap.map_or(len, |c| c.min(len));
    while buf.len() < want {
        if conn.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
    Some(head)
}

fn direct_to(endpoint: &str) -> DirectPut {
    DirectPut::new(&S3Config {
        endpoint: endpoint.into(),
        region: "garage".into(),
        force_path_style: true,
        public_endpoint: None,
        sign_payload: false,
        direct_put: true,
        ca_file: None,
        attempt_timeout_secs: 5,
        attempt_min_rate_kib: 256,
    })
    .unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

async fn put(direct: &DirectPut, body: Body) -> Result<(), PutFileError> {
    let signer = HeaderSigner::new("GKtest", "secret", "garage");
    let meta = ObjectMeta::fragment(&[("extinf", "2.000")]);
    direct
        .put(&signer, "media", "cam/1.ts", body, &meta, soon())
        .await
}

fn fragment_file(len: usize) -> std::fs::File {
    let file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut &file, &vec![7u8; len]).unwrap();
    file
}

/// The store's answer, or a panic naming what came instead.
fn answered(err: PutFileError) -> (u16, Option<String>, Option<String>, Class) {
    match err {
        PutFileError::Store(StoreError::Answered {
            status,
            code,
            message,
            class,
            ..
        }) => (status, code, message, class),
        other => panic!("not an S3 answer: {other:?}"),
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// An answer with `status_line` and `body`, its Content-Length counted.
fn answer(status_line: &str, body: &str) -> &'static str {
    let text = format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_boxed_str())
}

fn denied() -> &'static str {
    answer(
        "403 Forbidden",
        "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Tom &amp; Jerry&apos;s key</Message></Error>\n",
    )
}

#[tokio::test]
async fn an_early_403_then_close_mid_body_surfaces_the_s3_error() {
    let (endpoint, server) = scripted(vec![Step::EarlyClose(64 * 1024, denied())]).await;
    let direct = direct_to(&endpoint);
    // A fragment's size: larger than the loopback socket takes at once.
    let err = put(&direct, Body::File(fragment_file(8 << 20), 8 << 20))
        .await
        .unwrap_err();
    let (status, code, message, class) = answered(err);
    assert_eq!(status, 403);
    assert_eq!(code.as_deref(), Some("AccessDenied"));
    assert_eq!(message.as_deref(), Some("Tom & Jerry's key"));
    assert_eq!(class, Class::Final);
    assert_eq!(server.await.unwrap().len(), 1, "sent once, not retried");
}

#[tokio::test]
async fn a_204_without_length_ends_at_once_and_the_connection_is_reused() {
    let (endpoint, server) = scripted(vec![
        Step::Answer("HTTP/1.1 204 No Content\r\n\r\n"),
        Step::Answer(OK),
    ])
    .await;
    let direct = direct_to(&endpoint);
    let started = Instant::now();
    put(&direct, Body::Bytes(Bytes::from_static(b"#EXTM3U\n")))
        .await
        .unwrap();
    put(&direct, Body::Bytes(Bytes::from_static(b"#EXTM3U\n")))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // Both on the first connection: the script accepts no second one.
    drop(direct);
    assert_eq!(server.await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_chunked_answer_with_extensions_and_trailers_is_read() {
    const CHUNKED: &str = "HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n\r\n\
        10;ext=1\r\n<Error><Code>Slo\r\n\
        1f;a=b;c=\"d\"\r\nwDown</Code><Message>ease off</\r\n\
        11\r\nMessage></Error>\n\r\n\
        0\r\nx-amz-trailer: 1\r\nx-other: 2\r\n\r\n";
    let (endpoint, server) = scripted(vec![Step::Answer(CHUNKED), Step::Answer(OK)]).await;
    let direct = direct_to(&endpoint);
    let err = put(&direct, Body::Bytes(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    let (status, code, message, class) = answered(err);
    assert_eq!(
        (status, code.as_deref(), message.as_deref(), class),
        (503, Some("SlowDown"), Some("ease off"), Class::Retry)
    );
    // The connection survived the chunked answer and carries the next PUT.
    put(&direct, Body::Bytes(Bytes::from_static(b"x")))
        .await
        .unwrap();
    drop(direct);
    assert_eq!(server.await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_permanent_redirect_is_final_and_says_where() {
    let moved = answer(
        "301 Moved Permanently",
        "<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message><Endpoint>s3.eu</Endpoint></Error>",
    );
    let (endpoint, server) = scripted(vec![Step::Answer(moved)]).await;
    let direct = direct_to(&endpoint);
    let err = put(&direct, Body::Bytes(Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    let text = err.to_string();
    let (status, code, _, class) = answered(err);
    assert_eq!(
        (status, code.as_deref(), class),
        (301, Some("PermanentRedirect"), Class::Final)
    );
    assert!(
        text.contains("HTTP 301: PermanentRedirect (The bucket you are attempting"),
        "{text}"
    );
    drop(direct);
    assert_eq!(server.await.unwrap().len(), 1, "not followed, not retried");
}

#[tokio::test]
async fn a_stale_pooled_connection_is_replaced_transparently() {
    // PUT 1 on a new connection; the server closes it while idle; PUT 2
    // goes on a new connection. PUT 3 reuses that one, which the server
    // closes unanswered as the request arrives: sent once more on a third.
    let (endpoint, server) = scripted(vec![
        Step::AnswerThenIdleClose(OK, Duration::from_millis(10)),
        Step::Answer(OK),
        Step::Drop,
        Step::Answer(OK),
    ])
    .await;
    let direct = direct_to(&endpoint);
    let file = || Body::File(fragment_file(300_000), 300_000);
    put(&direct, file()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    put(&direct, file()).await.unwrap();
    put(&direct, file()).await.unwrap();
    drop(direct);
    let heads = server.await.unwrap();
    assert_eq!(heads.len(), 4, "PUT 3 was sent twice");
    assert_eq!(heads[2], heads[3]);
    assert!(heads[2].contains("content-length: 300000"));
}

#[tokio::test]
async fn a_file_shorter_than_announced_is_a_read_error() {
    let (endpoint, _server) = scripted(vec![Step::Answer(OK)]).await;
    let direct = direct_to(&endpoint);
    let err = put(&direct, Body::File(fragment_file(10), 20))
        .await
        .unwrap_err();
    assert!(matches!(err, PutFileError::Read(_)), "{err:?}");
}

#[tokio::test]
async fn no_answer_by_the_deadline_is_a_retriable_error() {
    // The server reads the request and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let _server = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        read_request(&mut conn, None).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let direct = direct_to(&endpoint);
    let signer = HeaderSigner::new("GKtest", "secret", "garage");
    let started = Instant::now();
    let err = direct
        .put(
            &signer,
            "media",
            "cam/1.ts",
            Body::Bytes(Bytes::from_static(b"x")),
            &ObjectMeta::JSON,
            Instant::now() + Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match err {
        PutFileError::Store(e @ StoreError::Request { .. }) => {
            assert!(e.is_retriable());
            assert!(e.to_string().contains("deadline"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_2xx_with_a_bad_body_is_stored() {
    // Content-Length larger than what follows, then close: the object was
    // stored whatever happened to the rest of the answer.
    let (endpoint, _server) = scripted(vec![Step::AnswerClose(
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    )])
    .await;
    let direct = direct_to(&endpoint);
    put(&direct, Body::Bytes(Bytes::from_static(b"x")))
        .await
        .unwrap();
}
