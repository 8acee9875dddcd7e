//! The actor on real files, with a store nothing listens on: what it does
//! before any upload can succeed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::Config;
use crate::pipeline::handle::channel;

/// The rig's tmpfs is a temporary directory on whatever disk the tests run
/// on: the high-water marks are at 100 % so that disk's own fill level
/// cannot send fragments to the spool (these tests are about capture).
fn config(dir: &Path, extra: &str) -> Arc<Config> {
    let text = format!(
        r#"
        state_dir = "{state}"
        {extra}
        [hooks]
        secret = "hooks-secret-for-the-unit-tests-0001"
        [nginx]
        hls_dir = "{hls}"
        [spool]
        tmpfs_high_water = 1.0
        spool_high_water = 1.0
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

struct Rig {
    _dir: tempfile::TempDir,
    cfg: Arc<Config>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    handle: PipelineHandle,
    task: tokio::task::JoinHandle<()>,
}

/// A running pipeline and a session approved as `on_publish` approves one,
/// its Started not sent.
fn rig_with_approved_session() -> (Rig, String) {
    rig_with("")
}

/// [`rig_with_approved_session`], with `extra` (top-level TOML, sections
/// included) at the start of the config.
fn rig_with(extra: &str) -> (Rig, String) {
    rig_of(extra, None)
}

/// [`rig_with`] whose session is a rendition's when `variant` says so
/// (its channel then `cam/<rung>`), with `[events]` queued on disk when
/// `extra` configures endpoints.
fn rig_of(extra: &str, variant: Option<crate::session::VariantOf>) -> (Rig, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), extra);
    std::fs::create_dir_all(&cfg.nginx.hls_dir).unwrap();
    let (sessions, _) =
        Sessions::open(&cfg.state_dir, &cfg.capture_dir().join("sessions")).unwrap();
    let sessions = Arc::new(sessions);
    let store = crate::store::Store::new(&cfg.s3, &cfg.keys);
    let metrics = Arc::new(Metrics::default());
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
            snapshots: crate::snapshot::Snapshotter::new(
                store,
                metrics.clone(),
                uploads.clone(),
                1,
            ),
            fence: None,
            ll: Arc::new(crate::llhls::hub::Hub::new(10)),
            events: crate::events::Events::open(
                &cfg.events,
                &cfg.state_dir,
                "test",
                metrics.clone(),
            )
            .unwrap(),
            parked: Default::default(),
        },
        &handle,
        cancel.clone(),
        uploads,
    );
    let id = sessions.new_id();
    sessions
        .begin(SessionMeta {
            id: id.clone(),
            bucket: "demo".into(),
            channel: variant
                .as_ref()
                .map_or("cam".into(), |v| format!("cam/{}", v.rung)),
            playlist: "index.m3u8".into(),
            key_id: "GK123".into(),
            clientid: "7".into(),
            name: "cam".into(),
            addr: "127.0.0.1".into(),
            started_ms: 1,
            shape: None,
            low_latency: None,
            snapshot: None,
            resume: None,
            grant: String::new(),
            notify_topic: None,
            variant,
            renditions: Vec::new(),
        })
        .unwrap();
    let task = tokio::spawn(pipeline.run(Vec::new(), rx));
    let rig = Rig {
        _dir: dir,
        cfg,
        sessions,
        metrics,
        cancel,
        handle,
        task,
    };
    (rig, id)
}

impl Rig {
    /// Polls `ok` for up to 2 s, then stops the pipeline.
    async fn wait_then_stop(self, mut ok: impl FnMut(&Rig) -> bool) -> bool {
        let mut done = false;
        for _ in 0..100 {
            if ok(&self) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.cancel.cancel();
        let _ = self.task.await;
        done
    }

    fn settled(&self, id: &str) -> bool {
        std::fs::read(self.sessions.session_dir(id).join("meta.json")).is_ok_and(|t| !t.is_empty())
    }
}

/// `on_publish` hands the pipeline its session after answering, so nginx may
/// write for it first: the fragment's event opens the session (settled into
/// `state_dir`) and the fragment is captured.
#[tokio::test]
async fn a_fragment_written_before_its_session_started_is_captured() {
    let (rig, id) = rig_with_approved_session();
    let fragment = rig.cfg.nginx.hls_dir.join(&id).join("0.ts");
    std::fs::create_dir(fragment.parent().unwrap()).unwrap();
    std::fs::write(&fragment, vec![0x47u8; 188 * 20]).unwrap();
    let _ = rig
        .handle
        .sender()
        .send(Msg::Fs(FsEvent::FragmentClosed(fragment.clone())));
    let captured = rig.cfg.capture_dir().join(&id);
    let metrics = rig.metrics.clone();
    let done = rig
        .wait_then_stop(|r| {
            r.settled(&id)
                && std::fs::read_dir(&captured).map_or(0, |d| d.count()) == 1
                && !fragment.exists()
        })
        .await;
    assert!(done, "the session was not opened by its fragment");
    assert_eq!(metrics.counter("livebucket_unknown_dirs_total", ""), 0);
}

/// The publisher may even leave before Started comes: its end opens the
/// session, settled, and marks it ended on disk.
#[tokio::test]
async fn a_session_that_ends_before_it_started_is_settled_and_ended() {
    let (rig, id) = rig_with_approved_session();
    rig.sessions.release_live(&id);
    rig.handle.done(&id);
    let sessions = rig.sessions.clone();
    let done = rig
        .wait_then_stop(|r| r.settled(&id) && sessions.session_dir(&id).join("ended").exists())
        .await;
    assert!(
        done,
        "the end of a session not yet started was not recorded"
    );
}

/// `on_publish` makes the session's HLS directory before it answers; a
/// publisher that leaves before nginx relayed anything leaves it empty. Its
/// creation is no unknown directory, and the session's end removes it.
#[tokio::test]
async fn an_approved_session_that_never_relayed_leaves_no_directory() {
    let (rig, id) = rig_with("[live]\ndone_grace_ms = 0");
    let dir = crate::session::make_stream_dir(&rig.cfg.nginx.hls_dir, &id).unwrap();
    let _ = rig
        .handle
        .sender()
        .send(Msg::Fs(FsEvent::DirCreated(dir.clone())));
    rig.handle.started(rig.sessions.get(&id).unwrap());
    rig.sessions.release_live(&id);
    rig.handle.done(&id);
    let (sessions, metrics) = (rig.sessions.clone(), rig.metrics.clone());
    let done = rig
        .wait_then_stop(|_| !dir.exists() && sessions.get(&id).is_none())
        .await;
    assert!(done, "the empty directory of an ended session stayed");
    assert_eq!(metrics.counter("livebucket_unknown_dirs_total", ""), 0);
}

/// The events a session's end queued (`<state_dir>/events/`), by type.
fn queued_events(cfg: &Config) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(cfg.state_dir.join("events")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter_map(|v| Some(v.get("kind")?.as_str()?.to_owned()))
        .collect()
}

/// A session's end emits `stream.ended` for a streamer's push, and nothing
/// for a rendition's: its source's events speak for the channel.
#[tokio::test]
async fn a_rendition_session_emits_no_stream_events() {
    const EVENTS: &str = "[events]\nsecret = \"events-secret-for-unit-tests\"\n\
        [[events.endpoints]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/\"\n\
        [live]\ndone_grace_ms = 0";
    for variant in [
        None,
        Some(crate::session::VariantOf {
            of: "source-session".into(),
            channel: "cam".into(),
            rung: "360p".into(),
        }),
    ] {
        let rendition = variant.is_some();
        let (rig, id) = rig_of(EVENTS, variant);
        rig.handle.started(rig.sessions.get(&id).unwrap());
        rig.sessions.release_live(&id);
        rig.handle.done(&id);
        let sessions = rig.sessions.clone();
        // Read while the rig (and its directory) still exists.
        let mut queued = Vec::new();
        let ended = rig
            .wait_then_stop(|r| {
                queued = queued_events(&r.cfg);
                sessions.get(&id).is_none()
            })
            .await;
        assert!(ended, "the session did not end");
        if rendition {
            assert!(queued.is_empty(), "a rendition queued {queued:?}");
        } else {
            assert!(
                queued.iter().any(|t| t == "stream.ended"),
                "the source queued {queued:?}"
            );
        }
    }
}
