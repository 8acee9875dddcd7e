//! Live stream statistics, measured by nginx-rtmp itself: its `rtmp_stat`
//! page (`nginx.stat_url`, the `http` block of `nginx/nginx.conf.in`) read
//! and parsed here, for GetLiveChannelStat's `Video` and `Audio`.
//!
//! # Where the numbers come from
//!
//! nginx-rtmp's stat module (`ngx_rtmp_stat_module.c`) writes one
//! `<application>` per RTMP application, and in its `<live>` one `<stream>`
//! per live stream with:
//!
//! - `<bw_in>`, `<bw_video>`, `<bw_audio>`: bits per second, each the bytes
//!   of the last whole 10-second window × 8, so 0 during a stream's first
//!   10 s;
//! - `<meta>`, present once the stream has a publisher: `<video>` with
//!   `<width>`, `<height>` (parsed from the H.264 header or the publisher's
//!   `onMetaData`), `<frame_rate>` (from `onMetaData` only, an integer) and
//!   `<codec>` (`H264`, …, absent until the first video header), `<audio>`
//!   with `<codec>` (`AAC`, …) and `<sample_rate>`; unknown numbers are `0`;
//! - `<client>`s with `<address>` (the peer's IP, no port; for a relay, the
//!   relay target `IP:PORT/APP/NAME`), `<time>` (ms connected) and
//!   `<publishing/>` on the publisher.
//!
//! # Which entry is a session's
//!
//! A livebucket session's stream is the one named by its id in the internal
//! application (`nginx.relay_url`'s last segment, `hls`): nginx relays only
//! approved pushes there, under a fresh 128-bit name, so that entry is
//! unambiguous. Its publisher is nginx's own relay from 127.0.0.1, so the
//! streamer's address is read in the public application, from the stream
//! that has the relay to `…/hls/<id>` among its clients (the public stream's
//! own name is a hash, `notify_relay_redirect`).
//!
//! # Units and absences (OSS GetLiveChannelStat)
//!
//! OSS documents `Bandwidth` in B/s (the Chinese reference, `单位:B/s`; some
//! translations say bit/s): nginx's bits per second are divided by 8.
//! Nothing is guessed: `Video` is given only when codec, width, height and
//! frame rate are all known (non-zero) and `Audio` only when codec and
//! sample rate are, as OSS leaves the containers out until the stream has
//! sent audio or video. A bandwidth of 0 is real (the first 10 s).
//!
//! # Robustness
//!
//! The parser takes any bytes: it never panics, ignores elements it does not
//! know, treats an unreadable number as unknown, and refuses only documents
//! that are not XML, not `<rtmp>`, or nested absurdly deep. The fetch is one
//! GET on livebucket's HTTP client ([`crate::outbound`]: pooled over TCP, a
//! new connection over a Unix socket) with an overall deadline
//! ([`STAT_TIMEOUT`]) and a size cap, so a hung nginx cannot hold up the API.
//!
//! # Cost
//!
//! Every GetLiveChannelStat (public listener) and every peer node's
//! `/cluster/v1/stat/…` (operator listener) reads the page, so a flood of
//! them would be a flood of requests to nginx. [`StatSource::session_stats`]
//! therefore reads it at most once per [`STAT_CACHE_FOR`]: one read in flight
//! at a time (callers that arrive meanwhile wait for it and share its
//! result, failures included) and its parsed result kept for that long.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channels::record::{AudioStat, VideoStat};
use crate::config::{NginxConfig, StatTarget, parse_stat_url};
use crate::outbound;

pub(crate) mod page;

pub use page::{Application, Client, Meta, Stream, parse};

/// How long one read of the stat page may take, connect to last byte.
pub const STAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest stat page read (about 1.5 KB per live stream).
pub const MAX_STAT_BYTES: usize = 16 << 20;
/// How long one read of the page answers every caller: nginx's bandwidth
/// figures change every 10 s, its stream list at publishes and ends.
pub const STAT_CACHE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum StatError {
    #[error("cannot read nginx's rtmp_stat at {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("nginx's rtmp_stat at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("nginx's rtmp_stat at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("nginx's rtmp_stat page is not usable: {0}")]
    Parse(String),
}

/// What GetLiveChannelStat needs of one live session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamStat {
    /// `None` until the stream has sent video and its size and frame rate
    /// are known.
    pub video: Option<VideoStat>,
    /// `None` until the stream has sent audio.
    pub audio: Option<AudioStat>,
    /// The streamer as the public application sees it; `None` when nginx
    /// lists no relay to this session there (the publisher just left).
    pub publisher: Option<Publisher>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    /// The streamer's IP address (nginx-rtmp gives no port).
    pub addr: String,
    /// How long its RTMP connection has been open.
    pub connected_for: Duration,
}

/// Where to read the stat page and which application holds the sessions.
/// Clones share one cache of the parsed page.
#[derive(Debug, Clone)]
pub struct StatSource {
    url: String,
    hls_app: String,
    timeout: Duration,
    /// The last read and when it ended; its lock is held while a read is in
    /// flight, which makes that read the only one.
    last: Arc<tokio::sync::Mutex<Option<(Instant, Page)>>>,
}

/// One read of the page, parsed, or why it failed.
type Page = Result<Arc<Vec<Application>>, StatError>;

impl StatSource {
    /// From the validated config: `nginx.stat_url` and the internal
    /// application named by `nginx.relay_url`.
    pub fn from_config(nginx: &NginxConfig) -> StatSource {
        StatSource::new(&nginx.stat_url, nginx.hls_app())
    }

    /// `url` is `http://HOST:PORT/PATH` or `unix:/SOCKET:/PATH`
    /// ([`parse_stat_url`]); anything else fails at the first fetch.
    pub fn new(url: &str, hls_app: &str) -> StatSource {
        StatSource {
            url: url.to_owned(),
            hls_app: hls_app.to_owned(),
            timeout: STAT_TIMEOUT,
            last: Arc::default(),
        }
    }

    /// Another deadline than [`STAT_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> StatSource {
        self.timeout = timeout;
        self
    }

    /// nginx's measurements of one live session; `None` when nginx does not
    /// list it or its page cannot be read (logged): callers then answer
    /// without video and audio, as OSS does just after a publisher connects.
    pub async fn session_stat(&self, session_id: &str) -> Option<StreamStat> {
        self.session_stats(&[session_id])
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "no stream statistics from nginx"))
            .unwrap_or_default()
            .remove(session_id)
    }

    /// The statistics of each live session among `session_ids`, read in one
    /// request. A session nginx does not list (not live, or not yet relayed)
    /// is absent from the map.
    pub async fn session_stats(
        &self,
        session_ids: &[&str],
    ) -> Result<HashMap<String, StreamStat>, StatError> {
        let apps = self.page().await?;
        Ok(session_stats_in(&apps, &self.hls_app, session_ids))
    }

    /// The parsed page: the last read if it ended less than
    /// [`STAT_CACHE_FOR`] ago, else a new one. Only one read runs at a time:
    /// callers arriving during it wait for it and share its result.
    async fn page(&self) -> Page {
        let mut last = self.last.lock().await;
        if let Some((at, page)) = last.as_ref()
            && at.elapsed() < STAT_CACHE_FOR
        {
            return page.clone();
        }
        let page = match self.fetch().await {
            Ok(body) => parse(&body).map(Arc::new),
            Err(e) => Err(e),
        };
        *last = Some((Instant::now(), page.clone()));
        page
    }

    /// The raw stat page, read now (never cached).
    pub async fn fetch(&self) -> Result<Vec<u8>, StatError> {
        match tokio::time::timeout(self.timeout, http_get(&self.url)).await {
            Ok(result) => result,
            Err(_) => Err(StatError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }),
        }
    }
}

/// `GET url`; the body of a `200`, at most [`MAX_STAT_BYTES`].
async fn http_get(url: &str) -> Result<Vec<u8>, StatError> {
    let fail = |message: String| StatError::Fetch {
        url: url.to_owned(),
        message,
    };
    let target = parse_stat_url(url)
        .ok_or_else(|| fail("not an http://HOST:PORT/PATH or unix:/SOCKET:/PATH URL".into()))?;
    let request = |uri: String, host: &str| {
        hyper::Request::get(uri)
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "livebucket")
            .header(hyper::header::ACCEPT, "text/xml")
            .body(outbound::empty())
            .map_err(|e| fail(e.to_string()))
    };
    let answer = match target {
        StatTarget::Tcp { authority, path } => {
            let req = request(format!("http://{authority}{path}"), authority)?;
            let client = outbound::plain().map_err(|e| fail(e.to_string()))?;
            client.send(req).await
        }
        StatTarget::Unix { socket, path } => {
            outbound::send_unix(
                std::path::Path::new(socket),
                request(path.to_owned(), "localhost")?,
            )
            .await
        }
    }
    .map_err(|e| fail(e.to_string()))?;
    let status = answer.status().as_u16();
    if status != 200 {
        return Err(StatError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let body = outbound::read_capped(answer.into_body(), MAX_STAT_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    Ok(body.to_vec())
}

/// The statistics of `session_ids` found in a parsed page: each session's
/// stream in `hls_app`, and its publisher in the public application that
/// relays to it.
pub fn session_stats_in(
    apps: &[Application],
    hls_app: &str,
    session_ids: &[&str],
) -> HashMap<String, StreamStat> {
    let mut out = HashMap::new();
    // The internal applications: `hls_app` and its per-fragment-length
    // siblings `<hls_app>_<N>s` (channels' FragDuration).
    let is_internal = |name: &str| {
        name == hls_app
            || name
                .strip_prefix(hls_app)
                .and_then(|rest| rest.strip_prefix('_'))
                .and_then(|rest| rest.strip_suffix('s'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let internal: Vec<&Application> = apps.iter().filter(|a| is_internal(&a.name)).collect();
    for id in session_ids {
        let Some((app, stream)) = internal
            .iter()
            .find_map(|a| a.streams.iter().find(|s| s.name == *id).map(|s| (a, s)))
        else {
            continue;
        };
        let relay_suffix = format!("/{}/{id}", app.name);
        let publisher = apps
            .iter()
            .filter(|a| !is_internal(&a.name))
            .flat_map(|a| &a.streams)
            .find(|s| {
                s.clients
                    .iter()
                    .any(|c| !c.publishing && c.address.ends_with(&relay_suffix))
            })
            .and_then(|s| s.clients.iter().find(|c| c.publishing))
            .map(|c| Publisher {
                addr: c.address.clone(),
                connected_for: Duration::from_millis(c.time_ms.unwrap_or(0)),
            });
        out.insert(
            (*id).to_owned(),
            StreamStat {
                video: video_of(stream),
                audio: audio_of(stream),
                publisher,
            },
        );
    }
    out
}

fn video_of(stream: &Stream) -> Option<VideoStat> {
    let meta = stream.meta.as_ref()?;
    Some(VideoStat {
        width: meta.width?,
        height: meta.height?,
        frame_rate: meta.frame_rate?,
        bandwidth: stream.bw_video? / 8,
        codec: meta.video_codec.clone()?,
    })
}

fn audio_of(stream: &Stream) -> Option<AudioStat> {
    let meta = stream.meta.as_ref()?;
    Some(AudioStat {
        sample_rate: meta.sample_rate?,
        bandwidth: stream.bw_audio? / 8,
        codec: meta.audio_codec.clone()?,
    })
}

#[cfg(test)]
mod tests {
    use super::page::tests::{AUDIO_ONLY, FIRST_SECONDS, IDLE, LIVE};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const SESSION: &str = "dc05cdac9ff06f227e9fac0a29ff9b17";

    fn stats(page: &[u8], ids: &[&str]) -> HashMap<String, StreamStat> {
        session_stats_in(&parse(page).unwrap(), "hls", ids)
    }

    #[test]
    fn a_live_session_in_oss_units() {
        let got = stats(LIVE, &[SESSION, "ffffffffffffffffffffffffffffffff"]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            got[SESSION],
            StreamStat {
                video: Some(VideoStat {
                    width: 640,
                    height: 360,
                    frame_rate: 25,
                    // 237304 bit/s in the page.
                    bandwidth: 29_663,
                    codec: "H264".into(),
                }),
                audio: Some(AudioStat {
                    sample_rate: 44_100,
                    // 69576 bit/s.
                    bandwidth: 8_697,
                    codec: "AAC".into(),
                }),
                publisher: Some(Publisher {
                    addr: "127.0.0.1".into(),
                    connected_for: Duration::from_millis(17_865),
                }),
            }
        );
        // The public stream's own (hashed) name is not a session.
        assert!(stats(LIVE, &["b8d092932c8f7d3e2ad874cf3a0dcef1"]).is_empty());
        // Another internal application name finds nothing.
        assert!(session_stats_in(&parse(LIVE).unwrap(), "live2", &[SESSION]).is_empty());
        // A channel with a FragDuration relays to `hls_<N>s`: found there too,
        // with the same publisher.
        let text = String::from_utf8_lossy(LIVE)
            .replace("<name>hls</name>", "<name>hls_3s</name>")
            .replace("/hls/", "/hls_3s/");
        let moved = stats(text.as_bytes(), &[SESSION]);
        assert_eq!(moved.get(SESSION), got.get(SESSION));
        assert!(session_stats_in(&parse(text.as_bytes()).unwrap(), "hls_3", &[SESSION]).is_empty());
    }

    #[test]
    fn zero_bandwidth_is_real_unknown_video_is_absent() {
        let early = &stats(FIRST_SECONDS, &[SESSION])[SESSION];
        assert_eq!(early.video.as_ref().unwrap().bandwidth, 0);
        assert_eq!(early.audio.as_ref().unwrap().bandwidth, 0);

        let id = "0123456789abcdef0123456789abcdef";
        let audio_only = &stats(AUDIO_ONLY, &[id])[id];
        assert_eq!(audio_only.video, None);
        assert_eq!(audio_only.audio.as_ref().unwrap().sample_rate, 48_000);
        // Pushed straight into the internal app: no relay, no publisher.
        assert_eq!(audio_only.publisher, None);

        assert!(stats(IDLE, &[SESSION]).is_empty());
    }

    #[test]
    fn video_needs_every_number() {
        let text = String::from_utf8(LIVE.to_vec()).unwrap();
        for (from, to) in [
            ("<frame_rate>25</frame_rate>", "<frame_rate>0</frame_rate>"),
            ("<width>640</width>", ""),
            ("<codec>H264</codec>", ""),
        ] {
            // Edit only the internal app's entry (the second occurrence).
            let at = text.rfind(from).unwrap();
            let edited = format!("{}{to}{}", &text[..at], &text[at + from.len()..]);
            let got = &stats(edited.as_bytes(), &[SESSION])[SESSION];
            assert_eq!(got.video, None, "without {from}");
            assert!(got.audio.is_some());
        }
    }

    /// A one-shot server on 127.0.0.1 that reads the request and answers
    /// `answer` (or nothing, holding the connection, when `None`).
    async fn serve_once(answer: Option<Vec<u8>>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stat", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            match answer {
                Some(a) => conn.write_all(&a).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
            request
        });
        (url, task)
    }

    #[tokio::test]
    async fn fetches_over_http() {
        let mut answer =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", LIVE.len()).into_bytes();
        answer.extend_from_slice(LIVE);
        let (url, server) = serve_once(Some(answer)).await;
        let got = StatSource::new(&url, "hls")
            .session_stats(&[SESSION])
            .await
            .unwrap();
        assert_eq!(got[SESSION].video.as_ref().unwrap().width, 640);
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        let authority = url.trim_start_matches("http://").trim_end_matches("/stat");
        assert!(request.starts_with("GET /stat HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains(&format!("host: {authority}\r\n")),
            "{request}"
        );
        assert!(request.contains("accept: text/xml\r\n"), "{request}");
    }

    #[tokio::test]
    async fn fetches_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("stat.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = conn.read(&mut request).await.unwrap();
            request.truncate(n);
            let mut answer =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", IDLE.len()).into_bytes();
            answer.extend_from_slice(IDLE);
            conn.write_all(&answer).await.unwrap();
            request
        });
        let url = format!("unix:{}:/stat", socket.display());
        let got = StatSource::new(&url, "hls")
            .session_stats(&[SESSION])
            .await
            .unwrap();
        assert!(got.is_empty());
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(request.starts_with("GET /stat HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("host: localhost\r\n"), "{request}");
    }

    #[tokio::test]
    async fn one_read_in_flight_and_one_per_second() {
        // A stat page that counts its reads and takes 200 ms to answer.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stat", listener.local_addr().unwrap());
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = reads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = conn.read(&mut buf).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let mut answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", LIVE.len())
                            .into_bytes();
                    answer.extend_from_slice(LIVE);
                    let _ = conn.write_all(&answer).await;
                });
            }
        });
        let source = StatSource::new(&url, "hls");
        let asks: Vec<_> = (0..50)
            .map(|_| {
                let source = source.clone();
                tokio::spawn(async move { source.session_stats(&[SESSION]).await })
            })
            .collect();
        for ask in asks {
            let got = ask.await.unwrap().unwrap();
            assert_eq!(got[SESSION].video.as_ref().unwrap().width, 640);
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Within the second: still the same read.
        source.session_stats(&[SESSION]).await.unwrap();
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        tokio::time::sleep(STAT_CACHE_FOR).await;
        source.session_stats(&[SESSION]).await.unwrap();
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_errors_never_hangs() {
        let (url, _server) = serve_once(Some(b"HTTP/1.1 403 Forbidden\r\n\r\n".to_vec())).await;
        let err = StatSource::new(&url, "hls").fetch().await.unwrap_err();
        assert!(
            matches!(err, StatError::Status { status: 403, .. }),
            "{err}"
        );

        let (url, _server) = serve_once(None).await;
        let started = std::time::Instant::now();
        let err = StatSource::new(&url, "hls")
            .with_timeout(Duration::from_millis(200))
            .fetch()
            .await
            .unwrap_err();
        assert!(matches!(err, StatError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let (url, _server) = serve_once(Some(b"HTTP/1.1 200 OK\r\n\r\n<html/>".to_vec())).await;
        let err = StatSource::new(&url, "hls")
            .session_stats(&[SESSION])
            .await
            .unwrap_err();
        assert!(matches!(err, StatError::Parse(_)), "{err}");

        // Nothing listens there.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = StatSource::new(&format!("http://127.0.0.1:{port}/stat"), "hls")
            .fetch()
            .await
            .unwrap_err();
        assert!(matches!(err, StatError::Fetch { .. }), "{err}");
        let err = StatSource::new("https://127.0.0.1:1/stat", "hls")
            .fetch()
            .await
            .unwrap_err();
        assert!(matches!(err, StatError::Fetch { .. }), "{err}");
    }
}
