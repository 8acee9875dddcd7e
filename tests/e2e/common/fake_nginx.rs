//! nginx-rtmp, played by the test: its HTTP callbacks to livebucket, with the
//! form bodies nginx-rtmp writes, and its HLS writer's file operations, so a
//! test can produce sequences real nginx makes only rarely (a fragment name
//! truncated and rewritten) or at an exact moment (a stream that stops
//! writing without `on_publish_done`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::TestDir;
use super::ffmpeg::TestMedia;
use super::fragments::Ledger;
use super::garage::Key;
use super::httpc::{self, Response};
use super::livebucket::push_url;
use super::process::run;

/// An HTTP/1.0 form POST, as nginx-rtmp's notify module sends it, through
/// the harness's HTTP client ([`httpc::blocking`]), answered within 5 s.
pub fn http_post_form(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<Response> {
    let url = format!("http://{addr}{path}");
    let req = httpc::Request::new("POST", &url)
        .http10()
        .headers(&[("content-type", "application/x-www-form-urlencoded")])
        .body(body.as_bytes())
        .timeout(Duration::from_secs(5));
    httpc::blocking(&req)
}

/// `/hooks/SECRET/CALL`, as the harness's nginx.conf calls it.
pub fn hook_path(call: &str) -> String {
    format!("/hooks/{}/{call}", super::livebucket::HOOKS_SECRET)
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A publisher as nginx-rtmp reports it to livebucket's callbacks.
pub struct FakePublisher {
    hooks: SocketAddr,
    channel: String,
    clientid: String,
    /// The push URL's query, exactly as the client sent it.
    query: String,
}

impl FakePublisher {
    /// `on_publish` for a push of `channel` to `bucket`, signed with `key`
    /// (valid for an hour). Returns the publisher and the session id
    /// livebucket chose (the last path segment of the 302's Location).
    /// Panics unless livebucket approves.
    pub fn publish(
        hooks: SocketAddr,
        key: &Key,
        bucket: &str,
        channel: &str,
        clientid: u32,
    ) -> (FakePublisher, String) {
        let url = push_url(
            "rtmp://127.0.0.1:1935/live",
            channel,
            bucket,
            key,
            super::unix_now() + 3600,
        );
        let query = url.split_once('?').map(|(_, q)| q.to_owned()).unwrap();
        let publisher = FakePublisher {
            hooks,
            channel: channel.to_owned(),
            clientid: clientid.to_string(),
            query,
        };
        let body = format!(
            "{}&call=publish&name={}&type=live&{}",
            publisher.session_fields(),
            enc(channel),
            publisher.query
        );
        let answer = http_post_form(hooks, &hook_path("on_publish"), &body)
            .unwrap_or_else(|e| panic!("on_publish to livebucket failed: {e}"));
        let session = match (answer.status, answer.header("location")) {
            (302, Some(location)) => location.rsplit('/').next().unwrap_or_default().to_owned(),
            _ => panic!("on_publish was not approved: {answer:?}"),
        };
        assert!(
            session.len() == 32 && session.bytes().all(|b| b.is_ascii_hexdigit()),
            "the 302's Location does not end in a session id: {session:?}"
        );
        (publisher, session)
    }

    /// nginx's own fields, before `call`, as nginx-rtmp writes them.
    fn session_fields(&self) -> String {
        format!(
            "app=live&flashver=FMLE%2F3.0%20%28compatible%3B%20FMSc%2F1.0%29&swfurl=\
             &tcurl={}&pageurl=&addr=127.0.0.1&clientid={}",
            enc("rtmp://127.0.0.1:1935/live"),
            self.clientid
        )
    }

    /// `on_publish_done`: the publisher went away. Panics unless 2xx.
    pub fn publish_done(&self) {
        let body = format!(
            "{}&call=publish_done&name={}&{}",
            self.session_fields(),
            enc(&self.channel),
            self.query
        );
        let answer = http_post_form(self.hooks, &hook_path("on_publish_done"), &body)
            .unwrap_or_else(|e| panic!("on_publish_done to livebucket failed: {e}"));
        assert!(
            (200..300).contains(&answer.status),
            "on_publish_done answered {}: {}",
            answer.status,
            answer.text()
        );
    }
}

/// nginx-rtmp's HLS writer for one session directory (`hls_nested on`):
/// fragments are written in place (create or truncate, write, close), then
/// the playlist is written to `index.m3u8.bak` and renamed over `index.m3u8`.
pub struct HlsWriter {
    dir: PathBuf,
    session: String,
    ledger: Ledger,
    /// nginx's window: (name, EXTINF text), oldest first.
    window: VecDeque<(String, String)>,
    media_sequence: u64,
    window_len: usize,
}

impl HlsWriter {
    /// Creates `hls_dir/<session>/`. Everything written is also recorded in
    /// `ledger`, as the watcher of a real nginx would.
    pub fn new(hls_dir: &Path, session: &str, ledger: &Ledger) -> HlsWriter {
        let dir = hls_dir.join(session);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // nginx creates the directory when the stream starts and closes its
        // first fragment a fragment length later, never at once: give
        // inotify watchers the moment they need to watch the new directory.
        std::thread::sleep(Duration::from_millis(300));
        HlsWriter {
            dir,
            session: session.to_owned(),
            ledger: ledger.clone(),
            window: VecDeque::new(),
            media_sequence: 0,
            window_len: 5,
        }
    }

    /// Writes fragment `name` as nginx does: open with O_TRUNC (creating it
    /// if needed), write, close.
    pub fn write_fragment(&self, name: &str, bytes: &[u8]) {
        let path = self.dir.join(name);
        let mut f =
            File::create(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        f.write_all(bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        drop(f);
        self.ledger.add(&self.session, name, bytes);
    }

    /// Appends `name` to nginx's playlist (its window slides like nginx's)
    /// and writes the playlist: `.bak`, then rename.
    pub fn list(&mut self, name: &str, extinf: &str) {
        self.window.push_back((name.to_owned(), extinf.to_owned()));
        while self.window.len() > self.window_len {
            self.window.pop_front();
            self.media_sequence += 1;
        }
        let mut text = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-TARGETDURATION:2\n\n",
            self.media_sequence
        );
        for (name, extinf) in &self.window {
            text += &format!("#EXTINF:{extinf},\n{name}\n");
        }
        let bak = self.dir.join("index.m3u8.bak");
        std::fs::write(&bak, &text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", bak.display()));
        std::fs::rename(&bak, self.dir.join("index.m3u8"))
            .unwrap_or_else(|e| panic!("cannot rename {}: {e}", bak.display()));
        let names: Vec<&str> = self.window.iter().map(|(n, _)| n.as_str()).collect();
        self.ledger.listed(&self.session, &names);
    }
}

/// `seconds` of MPEG-TS (H.264 + AAC, like nginx's fragments) made by ffmpeg
/// from lavfi source `video` (e.g. `testsrc=size=160x120:rate=30`).
pub fn make_ts(dir: &TestDir, video: &str, seconds: u32) -> Vec<u8> {
    let path = dir.unique_file("fragment", "ts");
    run(
        "ffmpeg (making a test fragment)",
        TestMedia {
            video,
            tone_hz: 440,
            seconds,
            gop: 60,
            live: false,
        }
        .command("error")
        .args(["-f", "mpegts", "-y"])
        .arg(&path),
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fragment name as nginx's `system` naming makes it: epoch ms now.
pub fn fragment_name_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{ms}.ts")
}
