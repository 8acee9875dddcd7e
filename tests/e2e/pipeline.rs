//! The pipeline's promises, end to end: every fragment nginx closes ends up in
//! the bucket, unaltered, exactly once, and every playlist version a viewer
//! can read lists only stored fragments, in order; through an S3 outage, a
//! `kill -9`, a full tmpfs, a rewritten fragment name, and both ways a
//! stream ends.
//!
//! Each test keeps its own record of what nginx wrote (`common::fragments`:
//! a second inotify watcher copies every fragment at close, keyed by name and
//! SHA-256; the synthetic writer of `common::fake_nginx` records directly),
//! polls the playlist throughout (`common::playlist_watch`, which checks
//! every version it sees), and ends with [`assert_bucket_matches`], which
//! compares the bucket's bytes with the record.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::bucket_check::{self, FinalPlaylist, StoredFragment};
use common::fake_nginx::{FakePublisher, HlsWriter, fragment_name_now, make_ts};
use common::ffmpeg::push_command;
use common::fragments::{Ledger, Recorder, sha256_hex};
use common::playlist_watch::{Observed, PlaylistWatch, Version, ended};
use common::process::{Proc, Stop};
use common::tmpfs::Tmpfs;
use common::*;

const CHANNEL: &str = "cam";

/// Every test's config: a short upload backoff, so stored-after-outage
/// shows up within seconds.
const UPLOAD: &str = "[upload]\nmax_backoff_secs = 2\n";
/// A window holding a whole test's fragments: the final playlist must then
/// list every stored fragment.
const WHOLE_WINDOW: &str = "[live]\nwindow_segments = 200\n";

/// A store (Garage unless [`Rig::start_on`] says otherwise), livebucket and
/// (optionally) nginx-rtmp, plus the test's own record of the HLS directory.
/// Fields drop in order: the recorder, then livebucket, nginx, the store,
/// and the directory last.
struct Rig {
    _recorder: Option<Recorder>,
    livebucket: Livebucket,
    nginx: Option<Nginx>,
    store: TestStore,
    s3: S3,
    hls_dir: PathBuf,
    state_dir: PathBuf,
    ledger: Ledger,
    dir: TestDir,
}

impl Rig {
    /// Captures waiting to be stored: in the capture directory, or in the
    /// spool when the disk holding the test's "tmpfs" is past the
    /// high-water mark (a busy machine's disk).
    fn waiting_captures(&self) -> Vec<PathBuf> {
        let mut waiting = files_under(&self.dir.join("capture"));
        waiting.extend(files_under(&self.state_dir.join("spool")));
        waiting
    }

    /// With nginx; `extra` is added to livebucket's config after [`UPLOAD`].
    fn start(name: &str, extra: &str) -> Rig {
        Self::start_on(StoreKind::Garage, name, extra)
    }

    /// [`Rig::start`] on a store of `kind`.
    fn start_on(kind: StoreKind, name: &str, extra: &str) -> Rig {
        Self::build(kind, name, true, None, extra, false)
    }

    /// With nginx, and livebucket serving on a listening socket the test
    /// holds across restarts (systemd socket activation), logging every
    /// request it answers.
    fn start_with_held_socket(name: &str, extra: &str) -> Rig {
        Self::build(StoreKind::Garage, name, true, None, extra, true)
    }

    /// Without nginx: the test writes the HLS directory itself.
    fn start_without_nginx(name: &str, extra: &str) -> Rig {
        Self::build(StoreKind::Garage, name, false, None, extra, false)
    }

    /// With nginx writing HLS to `hls_dir` (e.g. on a tmpfs of the test's).
    fn start_with_hls_dir(name: &str, hls_dir: PathBuf, extra: &str) -> Rig {
        Self::build(StoreKind::Garage, name, true, Some(hls_dir), extra, false)
    }

    fn build(
        kind: StoreKind,
        name: &str,
        with_nginx: bool,
        hls_dir: Option<PathBuf>,
        extra: &str,
        held_socket: bool,
    ) -> Rig {
        let dir = TestDir::new(name);
        let mut store = TestStore::start(kind, &dir);
        store.create_bucket(BUCKET);
        let key = store.key().clone();
        // Held for the whole test by livebucket's harness, which passes it
        // to every `serve` as fd 3.
        let socket = held_socket
            .then(|| std::net::TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0"));
        let listen = socket
            .as_ref()
            .map_or_else(free_addr, |s| s.local_addr().unwrap());
        let hls_dir = hls_dir.unwrap_or_else(|| dir.join("hls"));
        let nginx = with_nginx.then(|| Nginx::start(&dir, &format!("http://{listen}"), &hls_dir));
        std::fs::create_dir_all(&hls_dir).unwrap();
        let ledger = Ledger::new(dir.join("nginx-wrote"));
        // Recording starts before livebucket, which may delete fragments.
        let recorder = with_nginx.then(|| Recorder::start(&hls_dir, &ledger));
        let state_dir = dir.subdir("state");
        let relay_url = nginx
            .as_ref()
            .map_or_else(|| "rtmp://127.0.0.1:1935/hls".to_owned(), Nginx::relay_url);
        let config = config_toml(&ConfigParams {
            listen,
            stat_url: nginx.as_ref().map(Nginx::stat_url).as_deref(),
            state_dir: &state_dir,
            hls_dir: &hls_dir,
            relay_url: &relay_url,
            s3_endpoint: store.endpoint(),
            keys: &[(&key, &[BUCKET])],
            extra: &format!("{UPLOAD}{extra}"),
        });
        let livebucket = Livebucket::start_with(
            &dir,
            &config,
            common::livebucket::Options {
                socket,
                log: if held_socket { "tower_http=debug" } else { "" },
            },
        );
        Rig {
            _recorder: recorder,
            s3: store.s3(),
            livebucket,
            nginx,
            store,
            hls_dir,
            state_dir,
            ledger,
            dir,
        }
    }

    fn nginx(&self) -> &Nginx {
        self.nginx.as_ref().expect("this rig has no nginx")
    }

    fn push_url(&self, channel: &str) -> String {
        sign_push(
            self.livebucket.config_path(),
            BUCKET,
            channel,
            &self.nginx().push_base(),
        )
    }

    /// ffmpeg pushes `seconds` of test pattern to `channel`.
    fn push(&self, channel: &str, seconds: u32) -> Push {
        push(&self.dir, &self.push_url(channel), seconds)
    }

    fn watch(&self, channel: &str) -> PlaylistWatch {
        PlaylistWatch::start(&self.s3, BUCKET, channel)
    }

    /// on_publish as nginx sends it, for the synthetic writer.
    fn fake_publish(&self, channel: &str, clientid: u32) -> (FakePublisher, String) {
        FakePublisher::publish(
            self.livebucket.listen(),
            self.store.key(),
            BUCKET,
            channel,
            clientid,
        )
    }
}

/// [`bucket_check::assert_bucket_matches`] on the rig's record and bucket.
async fn assert_bucket_matches(
    rig: &Rig,
    channel: &str,
    observed: &Observed,
    final_playlist: FinalPlaylist,
) -> Vec<StoredFragment> {
    bucket_check::assert_bucket_matches(&rig.ledger, &rig.s3, channel, observed, final_playlist)
        .await
}

/// A `ready` check: the playlist lists at least `n` segments.
fn at_least(n: usize) -> impl Fn(&Version) -> Result<(), String> {
    move |v| {
        if v.keys.len() >= n {
            Ok(())
        } else {
            Err(format!("{} of {n} segments listed", v.keys.len()))
        }
    }
}

/// Waits for ffmpeg to finish and asserts it succeeded: nginx (and through
/// it livebucket) accepted the whole push.
async fn assert_push_succeeds(push: &mut Push, timeout: Duration) {
    let status = push.exit_within(timeout).await;
    assert!(
        status.success(),
        "the push failed ({status}); ffmpeg:\n{}",
        push.log()
    );
}

/// Regular files anywhere under `dir` (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(entry.path()),
                Ok(t) if t.is_file() => out.push(entry.path()),
                _ => {}
            }
        }
    }
    out
}

/// Fraction of the filesystem holding `path` in use, as `df` computes it.
fn fs_usage(path: &Path) -> f64 {
    let out = common::process::run(
        "df",
        Command::new("df")
            .args(["--output=size,avail", "-B1"])
            .arg(path),
    );
    let nums: Vec<f64> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match nums[..] {
        [size, avail] if size > 0.0 => 1.0 - avail / size,
        _ => panic!("cannot read df's output: {out:?}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs blocking harness code (process start/stop) without stalling the
/// playlist watch on this runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// 1. A plain push: every playlist version lists only stored fragments, under
///    13-digit epoch-ms keys (this push's time), strictly increasing; nothing
///    nginx wrote is missing, duplicated or altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playlist_versions_list_only_stored_fragments_in_key_order() {
    playlist_versions_list_only_stored_fragments_in_key_order_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rgw_playlist_versions_list_only_stored_fragments_in_key_order() {
    playlist_versions_list_only_stored_fragments_in_key_order_on(StoreKind::Rgw).await;
}

async fn playlist_versions_list_only_stored_fragments_in_key_order_on(kind: StoreKind) {
    let rig = Rig::start_on(kind, "ordering", "");
    let watch = rig.watch(CHANNEL);
    let started_ms = now_ms();
    let mut push = rig.push(CHANNEL, 20);
    assert_push_succeeds(&mut push, secs(60)).await;
    watch.wait_for("#EXT-X-ENDLIST", secs(30), ended).await;
    let ended_ms = now_ms();
    let observed = watch.finish().await;

    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::Window).await;
    assert!(stored.len() >= 8, "a 20 s push stored only {stored:?}");
    for s in &stored {
        assert!(
            (started_ms..=ended_ms).contains(&s.key_ms),
            "{} is not an epoch-ms time during the push ({started_ms}..{ended_ms})",
            s.key
        );
    }
    assert!(
        observed.versions.len() >= 5,
        "the playlist was seen in only {} versions: the watch did not follow it",
        observed.versions.len()
    );
}

/// 2. S3 down for 60 s in the middle of a 100 s push: the push goes on,
///    livebucket keeps capturing, and afterwards every fragment is stored and
///    the playlist catches up and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_loses_nothing_and_playlist_catches_up() {
    s3_outage_loses_nothing_and_playlist_catches_up_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW, frozen (SIGSTOP) for the outage: requests hang
/// rather than being refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rgw_s3_outage_loses_nothing_and_playlist_catches_up() {
    s3_outage_loses_nothing_and_playlist_catches_up_on(StoreKind::Rgw).await;
}

async fn s3_outage_loses_nothing_and_playlist_catches_up_on(kind: StoreKind) {
    let mut rig = Rig::start_on(kind, "outage", WHOLE_WINDOW);
    let watch = rig.watch(CHANNEL);
    let mut push = rig.push(CHANNEL, 100);
    let push_started = Instant::now();
    watch
        .wait_for("two segments before the outage", secs(30), at_least(2))
        .await;
    tokio::time::sleep_until((push_started + secs(20)).into()).await;

    blocking(|| rig.store.stop());
    let outage_ms = now_ms();
    let listed_before = watch.latest().map_or(0, |v| v.keys.len());
    tokio::time::sleep(secs(60)).await;
    assert!(
        push.try_wait().is_none(),
        "the push ended during the S3 outage; ffmpeg:\n{}",
        push.log()
    );
    rig.livebucket.assert_running();
    let waiting = rig.waiting_captures();
    assert!(
        waiting.len() >= 20,
        "after 60 s without S3 only {} captures wait to be stored",
        waiting.len()
    );
    blocking(|| rig.store.start_again());
    let back_ms = now_ms();

    assert_push_succeeds(&mut push, secs(60)).await;
    watch.wait_for("#EXT-X-ENDLIST", secs(60), ended).await;
    let observed = watch.finish().await;
    assert!(
        observed.failed_polls > 0,
        "the watch never noticed the outage"
    );

    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    let during = stored
        .iter()
        .filter(|s| (outage_ms..back_ms).contains(&s.key_ms))
        .count();
    assert!(
        during >= 25 && stored.len() > listed_before + during,
        "{during} fragments stored from the 60 s outage, {} in all",
        stored.len()
    );
}

/// 3. `kill -9` of livebucket mid-push, restarted 5 s later with the same
///    config and state: every fragment nginx wrote is stored exactly once,
///    unaltered, and the playlist carries on across the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_stores_every_fragment_once() {
    kill_9_and_restart_stores_every_fragment_once_on(StoreKind::Garage).await;
}

/// The same on Ceph RGW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rgw_kill_9_and_restart_stores_every_fragment_once() {
    kill_9_and_restart_stores_every_fragment_once_on(StoreKind::Rgw).await;
}

async fn kill_9_and_restart_stores_every_fragment_once_on(kind: StoreKind) {
    let mut rig = Rig::start_on(kind, "crash", WHOLE_WINDOW);
    let watch = rig.watch(CHANNEL);
    let mut push = rig.push(CHANNEL, 30);
    let push_started = Instant::now();
    watch
        .wait_for("two segments before the crash", secs(30), at_least(2))
        .await;
    // nginx calls on_update every 10 s from the publish, and drops the
    // stream when livebucket does not answer (nginx-rtmp treats a refused
    // or broken reply as a failure even with notify_update_strict off). The
    // 5 s outage therefore sits between two updates: from 11 s to ~17 s.
    tokio::time::sleep_until((push_started + secs(11)).into()).await;
    // Right after nginx closes a fragment, while livebucket captures and
    // uploads it: the crash hits work in flight, not an idle process.
    let closed = rig.ledger.copies().len();
    wait_until(
        "nginx to close a fragment",
        secs(10),
        millis(2),
        async || {
            if rig.ledger.copies().len() > closed {
                Ok(())
            } else {
                Err("none yet")
            }
        },
    )
    .await;
    blocking(|| rig.livebucket.kill9());
    tokio::time::sleep(secs(5)).await;
    blocking(|| rig.livebucket.restart());

    assert_push_succeeds(&mut push, secs(60)).await;
    watch.wait_for("#EXT-X-ENDLIST", secs(60), ended).await;
    let observed = watch.finish().await;
    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    assert!(stored.len() >= 12, "a 30 s push stored only {stored:?}");
}

/// 3b. SIGTERM while uploads are in flight (S3 down, so they cannot finish):
///     livebucket exits within its drain time, keeps what it had not stored
///     on disk, and the next start stores every fragment exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_uploads_exits_in_time_and_loses_nothing() {
    let mut rig = Rig::start("sigterm", WHOLE_WINDOW);
    let watch = rig.watch(CHANNEL);
    let mut push = rig.push(CHANNEL, 30);
    let push_started = Instant::now();
    watch
        .wait_for("two segments before the stop", secs(30), at_least(2))
        .await;
    // Between nginx's on_update calls (every 10 s), as in the crash test.
    tokio::time::sleep_until((push_started + secs(11)).into()).await;
    blocking(|| rig.store.stop());
    wait_until(
        "an upload to be waiting for S3",
        secs(10),
        millis(20),
        async || match rig.livebucket.metric("livebucket_uploads_pending") {
            0 => Err("none pending"),
            _ => Ok(()),
        },
    )
    .await;
    let signalled = Instant::now();
    let status = blocking(|| rig.livebucket.terminate(secs(15)));
    let took = signalled.elapsed();
    assert!(
        status.success(),
        "livebucket exited with {status} on SIGTERM"
    );
    // The drain is 5 s for connections and 5 s for uploads.
    assert!(took < secs(12), "SIGTERM took {took:?}");
    let log = rig.livebucket.log();
    assert!(
        log.contains("uploads still running at shutdown"),
        "the stop did not wait for the uploads; log:\n{log}"
    );
    assert!(
        !rig.waiting_captures().is_empty(),
        "nothing left to store after the stop"
    );
    blocking(|| rig.store.start_again());
    blocking(|| rig.livebucket.restart());

    assert_push_succeeds(&mut push, secs(60)).await;
    watch.wait_for("#EXT-X-ENDLIST", secs(60), ended).await;
    let observed = watch.finish().await;
    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    assert!(stored.len() >= 12, "a 30 s push stored only {stored:?}");
}

/// When [`outage_across_first_update`] stopped and restarted livebucket.
struct Outage {
    /// livebucket approved the push: nginx's first `on_update` for it is due
    /// 10 s later.
    approved: Instant,
    /// The restarted livebucket answered `/healthz` (epoch ms).
    restarted_ms: u64,
}

/// Waits for livebucket to approve `push`, SIGKILLs it 8 s after the
/// approval and restarts it 14 s after: down across nginx's first
/// `on_update` for the stream, due 10 s after the approval.
async fn outage_across_first_update(rig: &mut Rig, push: &mut Push) -> Outage {
    let livebucket = &rig.livebucket;
    wait_until(
        "livebucket to approve the push",
        secs(20),
        millis(20),
        async || {
            if let Some(status) = push.try_wait() {
                panic!(
                    "the push ended ({status}) before approval; ffmpeg:\n{}",
                    push.log()
                );
            }
            match livebucket.metric("livebucket_push_accepted_total") {
                0 => Err("no push approved yet"),
                _ => Ok(()),
            }
        },
    )
    .await;
    let approved = Instant::now();
    tokio::time::sleep_until((approved + secs(8)).into()).await;
    if let Some(status) = push.try_wait() {
        panic!(
            "the push ended ({status}) before the outage; ffmpeg:\n{}",
            push.log()
        );
    }
    blocking(|| rig.livebucket.kill9());
    tokio::time::sleep_until((approved + secs(14)).into()).await;
    blocking(|| rig.livebucket.restart());
    Outage {
        approved,
        restarted_ms: now_ms(),
    }
}

/// 3b. The same crash with livebucket's listening socket held across it, as
///     systemd holds `deploy/livebucket.socket`: livebucket is down from 8 s
///     to 14 s after approving a 40 s push, across nginx's first `on_update`
///     (due at 10 s). The update waits in the socket's backlog, the restarted
///     process answers it, nginx keeps the stream, and every fragment nginx
///     wrote is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_held_socket_keeps_live_streams() {
    let mut rig = Rig::start_with_held_socket("held-socket", WHOLE_WINDOW);
    let watch = rig.watch(CHANNEL);
    let mut push = rig.push(CHANNEL, 40);
    let outage = outage_across_first_update(&mut rig, &mut push).await;

    // nginx sends the first update 10 s after the approval, none while one
    // is unanswered, and the next 10 s after an answer: an on_update the new
    // process answers before 19 s was sent at 10 s, while it was down.
    wait_until(
        "the restarted livebucket to answer the queued on_update",
        (outage.approved + secs(19)).saturating_duration_since(Instant::now()),
        millis(100),
        async || {
            let log = rig.livebucket.log();
            let since_restart = log
                .rsplit_once("=== harness: starting livebucket")
                .map_or("", |(_, after)| after);
            since_restart
                .lines()
                .any(|l| {
                    l.contains("hook{call=") && l.contains("on_update") && l.contains("status=200")
                })
                .then_some(())
                .ok_or("no on_update answered since the restart")
        },
    )
    .await;

    assert_push_succeeds(&mut push, secs(60)).await;
    let error_log = rig.nginx().error_log();
    assert!(
        !error_log.contains("notify: update failed"),
        "nginx saw an on_update fail:\n{error_log}"
    );
    watch.wait_for("#EXT-X-ENDLIST", secs(60), ended).await;
    let observed = watch.finish().await;
    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    let after_restart = stored
        .iter()
        .filter(|s| s.key_ms >= outage.restarted_ms)
        .count();
    assert!(
        stored.len() >= 17 && after_restart >= 10,
        "a 40 s push stored {} fragments, {after_restart} started after the restart: {stored:#?}",
        stored.len()
    );
}

/// 3c. The control of 3b: the same outage without a held socket. nginx's
///     first on_update is refused, nginx drops the stream, and the push
///     fails long before its 40 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_held_socket_drops_live_streams() {
    let mut rig = Rig::start("no-held-socket", WHOLE_WINDOW);
    let mut push = rig.push(CHANNEL, 40);
    let outage = outage_across_first_update(&mut rig, &mut push).await;
    let status = push.exit_within(secs(30)).await;
    let ran = outage.approved.elapsed();
    assert!(
        !status.success() && ran < secs(30),
        "the push was not dropped: it exited {status} {ran:?} after approval; ffmpeg:\n{}",
        push.log()
    );
    let error_log = rig.nginx().error_log();
    assert!(
        error_log.contains("notify: update failed"),
        "nginx logged no failed on_update:\n{error_log}"
    );
}

/// ffmpeg pushing a constant 4 Mbit/s (padded CBR), to fill a tmpfs fast.
fn push_cbr(dir: &TestDir, url: &str, seconds: u32) -> Proc {
    let cmd = push_command(
        "testsrc=size=640x360:rate=30",
        url,
        seconds,
        &[
            "-b:v",
            "4M",
            "-minrate",
            "4M",
            "-maxrate",
            "4M",
            "-bufsize",
            "1M",
            "-x264-params",
            "nal-hrd=cbr",
        ],
    );
    Proc::spawn(
        "ffmpeg",
        cmd,
        &dir.unique_file("ffmpeg-cbr", "log"),
        Stop::Kill,
    )
}

/// 4. With S3 down, captures fill the tmpfs past `spool.tmpfs_high_water`
///    and move to the on-disk spool; once S3 is back everything is stored and
///    the spool (and the capture area) end empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_tmpfs_spills_to_spool_and_drains() {
    // Declared first, dropped last: everything writing to it stops before.
    let shm = Tmpfs::mount("space", "40m");
    let mut rig = Rig::start_with_hls_dir(
        "space",
        shm.join("hls"),
        &format!("{WHOLE_WINDOW}\n[spool]\ntmpfs_high_water = 0.3\n"),
    );
    let spool = rig.state_dir.join("spool");
    let capture = shm.join("capture");
    blocking(|| rig.store.stop());
    let watch = rig.watch(CHANNEL);
    let mut push = push_cbr(&rig.dir, &rig.push_url(CHANNEL), 32);

    // The highest tmpfs use seen: livebucket deletes nginx's fragments as
    // they leave nginx's window, so the use also goes down. A sampler
    // thread looks every 5 ms, so a busy machine does not hide the peak.
    let peak_bits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0f64.to_bits()));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak_bits, sampling, path) =
            (peak_bits.clone(), sampling.clone(), shm.path().to_owned());
        std::thread::spawn(move || {
            use std::sync::atomic::Ordering::Relaxed;
            while sampling.load(Relaxed) {
                let usage = fs_usage(&path);
                if usage > f64::from_bits(peak_bits.load(Relaxed)) {
                    peak_bits.store(usage.to_bits(), Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let spooled = wait_until(
        "captures in the on-disk spool",
        secs(45),
        millis(100),
        async || {
            let files = files_under(&spool);
            let usage = fs_usage(shm.path());
            if let Some(status) = push.try_wait() {
                panic!("the push ended ({status}) before anything was spooled");
            }
            if files.len() >= 2 {
                Ok(files)
            } else {
                Err(format!(
                    "{} spooled; tmpfs {:.0}% used, captures: {:?}",
                    files.len(),
                    usage * 100.0,
                    files_under(&capture)
                ))
            }
        },
    )
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    let peak = f64::from_bits(peak_bits.load(std::sync::atomic::Ordering::Relaxed));
    assert!(
        peak >= 0.3,
        "captures went to the spool ({spooled:?}) with the tmpfs never more than {:.0}% used",
        peak * 100.0
    );
    blocking(|| rig.store.start_again());

    let status = wait_until("the push to end", secs(60), millis(200), async || {
        push.try_wait().ok_or("ffmpeg still running")
    })
    .await;
    assert!(
        status.success(),
        "the push failed ({status}): {}",
        push.log()
    );
    watch.wait_for("#EXT-X-ENDLIST", secs(60), ended).await;
    let observed = watch.finish().await;
    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    assert!(stored.len() >= 12, "a 32 s push stored only {stored:?}");
    wait_until(
        "spool and capture area empty",
        secs(20),
        millis(200),
        async || {
            let left: Vec<PathBuf> = files_under(&spool)
                .into_iter()
                .chain(files_under(&capture))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("left: {left:?}"))
            }
        },
    )
    .await;
}

/// 5. nginx truncates and rewrites a fragment name after livebucket captured
///    it: both versions are stored, under distinct keys, with their own bytes,
///    and the playlist lists both in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_fragment_name_stores_both_versions() {
    let rig = Rig::start_without_nginx("reused", "[live]\ndone_grace_ms = 500\n");
    let first = make_ts(&rig.dir, "testsrc=size=160x120:rate=30", 2);
    let second = make_ts(&rig.dir, "smptebars=size=160x120:rate=30", 2);
    assert_ne!(first, second);
    let watch = rig.watch(CHANNEL);
    let (publisher, session) = rig.fake_publish(CHANNEL, 1);
    let mut nginx = HlsWriter::new(&rig.hls_dir, &session, &rig.ledger);

    let name = fragment_name_now();
    nginx.write_fragment(&name, &first);
    nginx.list(&name, "2.000");
    watch
        .wait_for("the first version stored and listed", secs(20), at_least(1))
        .await;
    nginx.write_fragment(&name, &second);
    // nginx's window now holds the name twice; its sequence goes on.
    nginx.list(&name, "2.000");
    let both = watch
        .wait_for("the second version listed", secs(20), at_least(2))
        .await;
    publisher.publish_done();
    watch.wait_for("#EXT-X-ENDLIST", secs(20), ended).await;
    let observed = watch.finish().await;

    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    let shas: Vec<&str> = stored.iter().map(|s| s.sha256.as_str()).collect();
    assert_eq!(
        shas,
        [sha256_hex(&first), sha256_hex(&second)],
        "stored {stored:#?}"
    );
    let keys: Vec<&str> = stored.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        both.keys, keys,
        "the playlist lists the two versions in order"
    );
    assert!(stored.iter().all(|s| s.copy.name == name));
}

/// 6a. A push that ends normally (`on_publish_done`) finishes the playlist
///     with `#EXT-X-ENDLIST`, listing nginx's last fragment; a second push to
///     the channel continues it: same segments and numbering, then exactly
///     one `#EXT-X-DISCONTINUITY` before the new session's fragments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_done_ends_playlist_and_next_push_continues_it() {
    let rig = Rig::start("end", WHOLE_WINDOW);
    let watch = rig.watch(CHANNEL);

    let mut push = rig.push(CHANNEL, 12);
    assert_push_succeeds(&mut push, secs(60)).await;
    let first = watch.wait_for("#EXT-X-ENDLIST", secs(30), ended).await;
    let sessions_first: BTreeSet<String> =
        rig.ledger.copies().into_iter().map(|c| c.session).collect();
    assert_eq!(sessions_first.len(), 1, "one push, one session directory");
    assert_last_listed_is_nginx_last(&rig, &first, &sessions_first).await;

    let mut push = rig.push(CHANNEL, 12);
    assert_push_succeeds(&mut push, secs(60)).await;
    let n = first.keys.len();
    let both = watch
        .wait_for("the second session ended", secs(30), |v| {
            ended(v)?;
            if v.keys.len() > n {
                Ok(())
            } else {
                Err("no fragment of the second push yet".into())
            }
        })
        .await;
    let observed = watch.finish().await;

    let p = &both.playlist;
    assert_eq!(
        both.keys[..n],
        first.keys[..],
        "the first session's segments"
    );
    assert_eq!(p.media_sequence, first.playlist.media_sequence);
    assert_eq!(
        p.discontinuity_sequence,
        first.playlist.discontinuity_sequence
    );
    assert_eq!(
        p.discontinuities, 1,
        "exactly one #EXT-X-DISCONTINUITY:\n{}",
        both.text
    );
    assert!(
        p.discontinuity_flags[n],
        "the discontinuity is not at the second session's first segment:\n{}",
        both.text
    );
    let sessions: BTreeSet<String> = rig.ledger.copies().into_iter().map(|c| c.session).collect();
    let second: BTreeSet<String> = sessions.difference(&sessions_first).cloned().collect();
    assert_eq!(second.len(), 1, "the second push, one new session");
    assert_last_listed_is_nginx_last(&rig, &both, &second).await;
    assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
}

/// The last segment of `version` holds the bytes of the last fragment nginx
/// listed in `sessions`.
async fn assert_last_listed_is_nginx_last(
    rig: &Rig,
    version: &Version,
    sessions: &BTreeSet<String>,
) {
    let last_copy = rig
        .ledger
        .copies()
        .into_iter()
        .filter(|c| c.listed && sessions.contains(&c.session))
        .max_by(|a, b| a.name.cmp(&b.name))
        .expect("nginx listed no fragment");
    let last_key = version.keys.last().expect("empty playlist");
    let bytes = rig.s3.get(BUCKET, last_key).await;
    assert_eq!(
        sha256_hex(&bytes),
        last_copy.sha256,
        "the ended playlist's last segment {last_key} is not nginx's last fragment {} \
         (copy {}):\n{}",
        last_copy.name,
        last_copy.path.display(),
        version.text
    );
}

/// 6b. A session whose fragments stop without `on_publish_done` gets
///     `#EXT-X-ENDLIST` once `live.idle_end_factor × live.target_duration_secs`
///     passed without a new fragment, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_ends_playlist_without_publish_done() {
    let idle = secs(2 * 2);
    let rig = Rig::start_without_nginx(
        "idle",
        "[live]\ntarget_duration_secs = 2\nidle_end_factor = 2\n",
    );
    let bytes = make_ts(&rig.dir, "testsrc=size=160x120:rate=30", 2);
    let watch = rig.watch(CHANNEL);
    let (_publisher, session) = rig.fake_publish(CHANNEL, 1);
    let mut nginx = HlsWriter::new(&rig.hls_dir, &session, &rig.ledger);
    let base: u64 = now_ms();
    for i in 0..3 {
        let name = format!("{}.ts", base + i * 2000);
        nginx.write_fragment(&name, &bytes[..bytes.len() - 188 * i as usize]);
        nginx.list(&name, "2.000");
    }
    let last_write = Instant::now();
    watch
        .wait_for("three segments listed", secs(20), at_least(3))
        .await;
    let end = watch
        .wait_for(
            "#EXT-X-ENDLIST without on_publish_done",
            idle + secs(15),
            ended,
        )
        .await;
    let after = end.seen_at - last_write;
    assert!(
        after >= idle,
        "ENDLIST came {after:?} after the last fragment, before the {idle:?} idle time"
    );
    let observed = watch.finish().await;
    assert!(
        observed.versions[..observed.versions.len() - 1]
            .iter()
            .all(|v| !v.playlist.ended),
        "an earlier version already had ENDLIST"
    );
    let stored = assert_bucket_matches(&rig, CHANNEL, &observed, FinalPlaylist::ListsAll).await;
    assert_eq!(stored.len(), 3, "{stored:#?}");
}
