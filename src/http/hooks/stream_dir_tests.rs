//! `on_publish` makes the approved session's HLS directory itself, before
//! it answers, so that it is livebucket's and not nginx's worker's (see
//! [`crate::session::make_stream_dir`]). Driven through the handler, with a
//! store nothing listens on and the pipeline's receiver held, not run.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::handle::Msg;
use crate::session::{STREAM_DIR_MODE, Sessions};

const SECRET: &str = "0123456789abcdef";

struct Rig {
    _dir: tempfile::TempDir,
    app: Arc<AppState>,
    hls_dir: std::path::PathBuf,
    rx: UnboundedReceiver<Msg>,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        state_dir = "{state}"
        [hooks]
        secret = "hooks-secret-for-the-unit-tests-0001"
        [nginx]
        hls_dir = "{hls}"
        [s3]
        endpoint = "http://127.0.0.1:9"
        [[keys]]
        id = "GK123"
        secret = "{SECRET}"
        buckets = ["demo"]
        "#,
        state = dir.path().join("state").display(),
        hls = dir.path().join("hls").display(),
    );
    let cfg = Arc::new(Config::parse(&text, Path::new("test.toml")).unwrap());
    // As deploy/ makes it: setgid, group-writable.
    std::fs::create_dir(&cfg.nginx.hls_dir).unwrap();
    std::fs::set_permissions(&cfg.nginx.hls_dir, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let (sessions, _) =
        Sessions::open(&cfg.state_dir, &cfg.capture_dir().join("sessions")).unwrap();
    let store = crate::store::Store::new(&cfg.s3, &cfg.keys);
    let (pipeline, rx) = crate::pipeline::channel();
    let app = AppState::new(
        cfg.clone(),
        Arc::new(sessions),
        pipeline,
        Arc::new(Metrics::default()),
        store.clone(),
        Default::default(),
        Arc::new(crate::channels::ChannelStore::new(store)),
    );
    Rig {
        _dir: dir,
        hls_dir: cfg.nginx.hls_dir.clone(),
        app: Arc::new(app),
        rx,
    }
}

/// nginx-rtmp's `on_publish` form for a correctly signed push to `channel`,
/// and the signature in it.
fn publish_body(channel: &str) -> (String, String) {
    let expires = unix_now() + 600;
    let url = crate::sign::push::rgw_push_url(
        "rtmp://127.0.0.1:1935/live",
        "demo",
        channel,
        "GK123",
        SECRET,
        expires,
    )
    .expect("sign");
    let (_, query) = url.split_once('?').unwrap();
    let signature = query.rsplit_once("Signature=").unwrap().1.to_owned();
    let body = format!(
        "app=live&flashver=FMLE%2F3.0&swfurl=&tcurl=rtmp%3A%2F%2F127.0.0.1%3A1935%2Flive&pageurl=\
         &addr=127.0.0.1&clientid=7&call=publish&name={channel}&type=live&{query}"
    );
    (body, signature)
}

/// A writer that keeps what the fmt layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The answer to `body`, and what was logged meanwhile.
async fn publish(app: &Arc<AppState>, body: String) -> (Response, String) {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let resp = {
        let _guard = tracing::subscriber::set_default(subscriber);
        on_publish(State(app.clone()), Bytes::from(body)).await
    };
    let logged = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    (resp, logged)
}

#[tokio::test(flavor = "current_thread")]
async fn an_approved_push_finds_its_directory_made_0o2770_before_the_answer() {
    let rig = rig();
    let (body, _) = publish_body("cam");
    let (resp, logged) = publish(&rig.app, body).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{logged}");
    let location = resp.headers()[header::LOCATION].to_str().unwrap();
    let id = location.rsplit('/').next().unwrap();
    assert!(crate::session::looks_like_id(id), "{location}");
    // Checked as the answer leaves: nginx relays into it only after.
    let dir = rig.hls_dir.join(id);
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, STREAM_DIR_MODE);
    assert_eq!(meta.uid(), unsafe { libc::geteuid() }, "livebucket's own");
    assert_eq!(meta.gid(), std::fs::metadata(&rig.hls_dir).unwrap().gid());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(
        rig.app
            .metrics
            .counter("livebucket_stream_dir_errors_total", ""),
        0
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_directory_that_cannot_be_made_refuses_the_push_and_frees_the_channel() {
    let mut rig = rig();
    // Something already holds every name: here, hls_dir is not there.
    std::fs::remove_dir(&rig.hls_dir).unwrap();
    let (body, signature) = publish_body("cam");
    let (resp, logged) = publish(&rig.app, body).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{logged}");
    assert!(resp.headers().get(header::LOCATION).is_none());
    let metrics = &rig.app.metrics;
    assert_eq!(metrics.counter("livebucket_stream_dir_errors_total", ""), 1);
    assert_eq!(
        metrics.counter("livebucket_push_rejected_total", "unavailable"),
        1
    );
    assert_eq!(metrics.counter("livebucket_push_accepted_total", ""), 0);
    // The reason is logged; no signature, no session id.
    assert!(
        logged.contains("cannot make the session's directory in nginx.hls_dir"),
        "{logged}"
    );
    assert!(!logged.contains(&signature), "{logged}");
    // The session begun for it is undone before the pipeline hears of it:
    // the channel takes the next push, and nothing is left to end.
    assert!(rig.app.sessions.live_of("demo", "cam").is_none());
    assert!(
        rig.rx.try_recv().is_err(),
        "the pipeline hears of no session"
    );

    std::fs::create_dir(&rig.hls_dir).unwrap();
    let (body, _) = publish_body("cam");
    let (resp, logged) = publish(&rig.app, body).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "{logged}");
}
