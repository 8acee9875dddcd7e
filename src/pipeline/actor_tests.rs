//! The actor on real files, with a store nothing listens on: what it does
//! before any upload can succeed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::Config;

fn config(dir: &Path) -> Arc<Config> {
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
        secret = "0123456789abcdef"
        buckets = ["demo"]
        "#,
        state = dir.join("state").display(),
        hls = dir.join("hls").display(),
    );
    Arc::new(Config::parse(&text, Path::new("test.toml")).unwrap())
}

/// `on_publish` hands the pipeline its session after answering, so nginx may
/// write for it first: the fragment's event opens the session (settled into
/// `state_dir`) and the fragment is captured.
#[tokio::test]
async fn a_fragment_written_before_its_session_started_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    std::fs::create_dir_all(&cfg.nginx.hls_dir).unwrap();
    let (sessions, _) =
        Sessions::open(&cfg.state_dir, &cfg.capture_dir().join("sessions")).unwrap();
    let sessions = Arc::new(sessions);
    let store = crate::store::Store::new(&cfg.s3, &cfg.keys);
    let metrics = Arc::new(Metrics::default());
    let counted = metrics.clone();
    let uploads = TaskTracker::new();
    let cancel = CancellationToken::new();
    let (handle, rx) = channel();
    let pipeline = Pipeline::new(
        cfg.clone(),
        Shared {
            store: store.clone(),
            metrics: metrics.clone(),
            sessions: sessions.clone(),
            live_cache: LiveCache::default(),
            snapshots: crate::snapshot::Snapshotter::new(store, metrics, uploads.clone(), 1),
            fence: None,
        },
        &handle,
        cancel.clone(),
        uploads,
    );

    let id = sessions.new_id();
    let meta = SessionMeta {
        id: id.clone(),
        bucket: "demo".into(),
        channel: "cam".into(),
        playlist: "index.m3u8".into(),
        key_id: "GK123".into(),
        clientid: "7".into(),
        name: "cam".into(),
        addr: "127.0.0.1".into(),
        started_ms: 1,
        shape: None,
        snapshot: None,
        resume: None,
    };
    sessions.begin(meta).unwrap();
    let fragment = cfg.nginx.hls_dir.join(&id).join("0.ts");
    std::fs::create_dir(fragment.parent().unwrap()).unwrap();
    std::fs::write(&fragment, vec![0x47u8; 188 * 20]).unwrap();

    let task = tokio::spawn(pipeline.run(Vec::new(), rx));
    let _ = handle
        .sender()
        .send(Msg::Fs(FsEvent::FragmentClosed(fragment.clone())));
    let captured = cfg.capture_dir().join(&id);
    let record = sessions.session_dir(&id).join("meta.json");
    let mut done = false;
    for _ in 0..100 {
        let settled = std::fs::read(&record).is_ok_and(|t| !t.is_empty());
        let files = std::fs::read_dir(&captured).map_or(0, |d| d.count());
        if settled && files == 1 && !fragment.exists() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let _ = task.await;
    assert!(
        done,
        "the session was not opened by its fragment: record {:?}, captured {:?}",
        std::fs::read(&record).map(|t| t.len()),
        std::fs::read_dir(&captured).map(|d| d.count())
    );
    assert_eq!(counted.counter("livebucket_unknown_dirs_total", ""), 0);
}
