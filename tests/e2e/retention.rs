//! Retention, end to end: ffmpeg → nginx-rtmp → livebucket → Garage, then
//! sweeps asked for with `livebucket retention sweep`, with periods of
//! seconds set on channel records by `livebucket channel create
//! --retention-secs` (the config's default keeps everything).
//!
//! - two sessions apart in time and a period that covers only the first: a
//!   dry run names the first's objects and deletes nothing; the sweep then
//!   deletes exactly those; a VOD over the first answers 404 and one over
//!   both lists only the second, every segment URI fetchable; a channel
//!   live during the sweep keeps everything, and loses it to the next sweep
//!   once it ended;
//! - one push live the whole test, VOD manifests of three fragments: while
//!   it is live, sweeps delete its oldest closed chunks (manifest and
//!   fragments) and nothing of the newest; VOD over the whole push lists
//!   only stored fragments, the live playlist stays valid and fetchable, and
//!   after the push every fragment nginx wrote after the deleted ones is
//!   stored exactly once;
//! - livebucket killed (-9) mid-sweep (S3 slowed by a proxy, one key per
//!   DeleteObjects): no manifest names a missing fragment, and the sweep
//!   after the restart finishes the work;
//! - in a cluster, a node sweeps nothing of a channel live on another node,
//!   nor of a channel whose sweep lock another holder has in etcd, and
//!   sweeps it once the lock is gone;
//! - a channel's variants (`CHANNEL/<rung>/…`, written by hand beside a real
//!   push) stay out of the source's VOD, from manifests and from a listing,
//!   and are swept with the channel's period; its master goes once nothing
//!   it names is left (with the record's `LivebucketRenditions` set and
//!   refused through the CLI).

use crate::common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::livebucket::BIN;
use common::*;

/// No periodic sweep during a test: each is asked for.
const RETENTION: &str = "[retention]\ninterval_secs = 3600\n";

/// `livebucket ARGS…`; panics with its output unless it succeeds. Returns
/// stdout.
fn livebucket(args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run livebucket {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "livebucket {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn config_arg(stack: &Stack) -> &str {
    stack.livebucket.config_path().to_str().unwrap()
}

/// `livebucket channel create … --retention-secs SECS`.
fn set_period(stack: &Stack, channel: &str, secs: u64) {
    let secs = secs.to_string();
    livebucket(&[
        "channel",
        "create",
        "--config",
        config_arg(stack),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--retention-secs",
        &secs,
    ]);
}

/// `tests/oss2/client.py … OP [channel=CHANNEL]` with Alibaba's oss2: its
/// JSON answer.
fn oss2(stack: &Stack, op: &str, channel: &str) -> serde_json::Value {
    let python = std::env::var("OSS2_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/livebucket/oss2-2.19.1/bin/python",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let key = stack.key();
    let mut cmd = Command::new(&python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oss2/client.py"))
        .args([&stack.livebucket.url(), BUCKET, &key.id, &key.secret, op]);
    if !channel.is_empty() {
        cmd.arg(format!("channel={channel}"));
    }
    let out = common::process::run(&format!("oss2 {op}"), &mut cmd);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("oss2 {op} printed no JSON ({e}): {out}"))
}

/// What `livebucket retention sweep` reported.
struct Swept {
    keys: BTreeSet<String>,
    errors: Vec<String>,
}

fn sweep(stack: &Stack, dry_run: bool) -> Swept {
    let mut args = vec!["retention", "sweep", "--config", config_arg(stack)];
    if dry_run {
        args.push("--dry-run");
    }
    let out = livebucket(&args);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not a report ({e}): {out}"));
    assert_eq!(report["dry_run"], dry_run, "{report}");
    Swept {
        keys: report["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("no keys: {report}"))
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect(),
        errors: report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect(),
    }
}

/// Every key under `prefix`.
async fn keys(s3: &S3, prefix: &str) -> BTreeSet<String> {
    s3.list(BUCKET, prefix)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// The channel's fragments and manifests (not its LL-HLS parts, which
/// livebucket deletes on its own once their segment is stored).
async fn recording(s3: &S3, channel: &str) -> BTreeSet<String> {
    let mut all = keys(s3, &format!(".livebucket/index/{channel}/")).await;
    all.extend(
        keys(s3, &format!("{channel}/"))
            .await
            .into_iter()
            .filter(|k| is_fragment_key(k)),
    );
    all
}

/// Waits for `push` to end and its channel's playlist `name` to be stored
/// with ENDLIST.
async fn wait_stored(stack: &Stack, push: &mut Push, channel: &str, name: &str) {
    let status = push.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());
    let key = format!("{channel}/{name}");
    wait_until("the session's ENDLIST", secs(40), millis(200), async || {
        let out = stack
            .s3
            .client()
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .map_err(|e| format!("GET {key}: {e}"))?;
        let text = out.body.collect().await.map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&text.into_bytes())
            .contains("#EXT-X-ENDLIST")
            .then_some(())
            .ok_or_else(|| "no ENDLIST yet".to_owned())
    })
    .await;
}

/// Fails if a manifest of `channel` names a fragment not in the bucket.
async fn assert_consistent(s3: &S3, channel: &str) {
    let present = keys(s3, &format!("{channel}/")).await;
    for m in keys(s3, &format!(".livebucket/index/{channel}/")).await {
        let body: serde_json::Value = serde_json::from_slice(&s3.get(BUCKET, &m).await).unwrap();
        for f in body["fragments"].as_array().unwrap() {
            let key = format!("{channel}/{:013}.ts", f["k"].as_u64().unwrap());
            assert!(present.contains(&key), "{m} names {key}, not in the bucket");
        }
    }
}

/// The VOD API over `[start, end)` of `channel`, presigned segment URLs.
async fn vod(stack: &Stack, channel: &str, start: u64, end: u64) -> common::httpc::Response {
    vod_of(stack, channel, start, end, &[]).await
}

/// [`vod`] with more `livebucket sign vod` arguments (`--variant V`).
async fn vod_of(
    stack: &Stack,
    channel: &str,
    start: u64,
    end: u64,
    more: &[&str],
) -> common::httpc::Response {
    let (start, end) = (start.to_string(), end.to_string());
    let mut args = vec![
        "sign",
        "vod",
        "--config",
        config_arg(stack),
        "--bucket",
        BUCKET,
        "--channel",
        channel,
        "--start",
        &start,
        "--end",
        &end,
        "--urls",
        "presigned",
        "--expires-in",
        "600",
        "--via-livebucket",
    ];
    let via = stack.livebucket.url();
    args.push(&via);
    args.extend_from_slice(more);
    let url = livebucket(&args);
    common::httpc::get(url.lines().next().unwrap().trim()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_session_is_swept_manifest_first_and_recent_and_live_ones_stay() {
    let stack = Stack::start_with("retention-sweep", RETENTION);
    // A channel live during the sweeps, with a period of a second.
    set_period(&stack, "live", 1);
    let begin = unix_now() - 1;

    let mut first = stack.push(&stack.sign_push("cam"), 6);
    wait_stored(&stack, &mut first, "cam", "index.m3u8").await;
    let old = recording(&stack.s3, "cam").await;
    assert!(
        old.iter().filter(|k| is_fragment_key(k)).count() >= 2,
        "{old:?}"
    );
    tokio::time::sleep(secs(1)).await;
    let between = unix_now();
    tokio::time::sleep(secs(5)).await;
    let mut live = stack.push(&stack.sign_push("live"), 40);
    let mut second = stack.push(&stack.sign_push("cam"), 6);
    wait_stored(&stack, &mut second, "cam", "index.m3u8").await;
    let both = recording(&stack.s3, "cam").await;
    let new: BTreeSet<String> = both.difference(&old).cloned().collect();
    assert!(!new.is_empty());
    let live_before = recording(&stack.s3, "live").await;
    assert!(
        !live_before.is_empty(),
        "the live channel stored nothing yet"
    );

    // The first session's end is `between`: the period reaches back to it.
    set_period(&stack, "cam", unix_now() - between);
    // Alibaba's SDK still reads the channel (it skips the extension), and
    // the record keeps the period.
    let info = oss2(&stack, "get", "cam");
    assert_eq!(info["playlist_name"], "playlist.m3u8", "{info}");
    let listed = oss2(&stack, "list", "");
    assert!(listed.get("error").is_none(), "{listed}");
    let got = livebucket(&[
        "channel",
        "get",
        "--config",
        config_arg(&stack),
        "--bucket",
        BUCKET,
        "--channel",
        "cam",
    ]);
    assert!(got.contains("RetentionSeconds"), "{got}");
    let planned = sweep(&stack, true);
    assert!(planned.errors.is_empty(), "{:?}", planned.errors);
    // Also the old live playlist: the second session rewrote it.
    let planned_cam: BTreeSet<String> = planned
        .keys
        .iter()
        .filter(|k| !k.ends_with(".m3u8") && !k.contains("/.ll/"))
        .cloned()
        .collect();
    assert_eq!(
        planned_cam, old,
        "the dry run names the first session, only"
    );
    assert_eq!(
        recording(&stack.s3, "cam").await,
        both,
        "a dry run deletes nothing"
    );

    let swept = sweep(&stack, false);
    assert!(swept.errors.is_empty(), "{:?}", swept.errors);
    assert_eq!(
        swept.keys, planned.keys,
        "the sweep deletes what the dry run named"
    );
    assert_eq!(recording(&stack.s3, "cam").await, new);
    assert_consistent(&stack.s3, "cam").await;
    // Live: its period of a second is not applied.
    let live_now = recording(&stack.s3, "live").await;
    assert!(
        live_before.is_subset(&live_now),
        "a live channel lost {:?}",
        live_before.difference(&live_now).collect::<Vec<_>>()
    );

    // VOD: the first session's range is gone, both read as the second.
    let resp = vod(&stack, "cam", begin, between).await;
    assert_eq!(resp.status, 404, "{}", resp.text());
    let resp = vod(&stack, "cam", begin, unix_now() + 1).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let text = resp.text();
    let uris: Vec<&str> = text.lines().filter(|l| l.starts_with("http")).collect();
    let fragments = new.iter().filter(|k| is_fragment_key(k)).count();
    assert_eq!(uris.len(), fragments, "{text}");
    for uri in uris {
        let got = common::httpc::get(uri).await;
        assert_eq!(got.status, 200, "{uri}");
    }

    // Once the live channel ended, its period applies.
    wait_stored(&stack, &mut live, "live", "playlist.m3u8").await;
    wait_until(
        "the ended channel swept",
        secs(30),
        millis(500),
        async || {
            let swept = sweep(&stack, false);
            let left = recording(&stack.s3, "live").await;
            left.is_empty()
                .then_some(())
                .ok_or(format!("left: {left:?}; errors: {:?}", swept.errors))
        },
    )
    .await;
}

/// The channel's manifest keys.
async fn manifests(s3: &S3, channel: &str) -> BTreeSet<String> {
    keys(s3, &format!(".livebucket/index/{channel}/")).await
}

/// The fragment ms in `CHANNEL/<ms>.ts`.
fn fragment_ms(key: &str) -> u64 {
    key.rsplit('/').next().unwrap()[..13].parse().unwrap()
}

/// Every segment URI of `text` answers 200.
async fn assert_segments_fetch(text: &str, what: &str) -> usize {
    let uris: Vec<&str> = text.lines().filter(|l| l.starts_with("http")).collect();
    for uri in &uris {
        let got = common::httpc::get(uri).await;
        assert_eq!(got.status, 200, "{what}: {uri}\n{text}");
    }
    uris.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_never_ends_loses_its_closed_chunks_while_live() {
    use common::fragments::{Ledger, Recorder};
    // 2 s fragments, three per manifest: a chunk is closed every 6 s (its
    // manifest written at most every 10 s). With a window of three, a closed
    // chunk goes once it ended 2 x 3 + 3 fragments (about 18 s) ago.
    let stack = Stack::start_with(
        "retention-live-chunks",
        &format!("{RETENTION}[live]\nwindow_segments = 3\nmanifest_chunk_fragments = 3\n"),
    );
    // Relayed to hls_1s: nginx cuts at the push's keyframes, every 2 s.
    livebucket(&[
        "channel",
        "create",
        "--config",
        config_arg(&stack),
        "--bucket",
        BUCKET,
        "--channel",
        "cam",
        "--retention-secs",
        "2",
        "--frag-duration",
        "1",
    ]);
    let ledger = Ledger::new(stack.dir.join("nginx-wrote"));
    let _recorder = Recorder::start(&stack.hls_dir, &ledger);
    let begin = unix_now() - 1;
    let mut push = stack.push(&stack.sign_push("cam"), 60);

    // Sweep while it is live until a closed chunk has gone.
    let (deleted, swept_manifests) = wait_until(
        "a closed chunk of the live recording swept",
        secs(60),
        secs(2),
        async || {
            let swept = sweep(&stack, false);
            assert!(swept.errors.is_empty(), "{:?}", swept.errors);
            let gone: BTreeSet<String> = swept
                .keys
                .iter()
                .filter(|k| k.starts_with(".livebucket/index/"))
                .cloned()
                .collect();
            if gone.is_empty() {
                return Err(format!("nothing swept yet: {:?}", swept.keys));
            }
            Ok((swept.keys, gone))
        },
    )
    .await;
    assert!(
        push.try_wait().is_none(),
        "the push ended before a sweep took a chunk; ffmpeg:\n{}",
        push.log()
    );
    // Whole chunks: each deleted manifest's fragments with it, and the
    // newest chunk and the fragments after it stay.
    let left = manifests(&stack.s3, "cam").await;
    assert!(!left.is_empty(), "the live chunk was swept");
    assert!(swept_manifests.iter().all(|m| !left.contains(m)));
    let newest_left = left.iter().max().unwrap();
    assert!(
        swept_manifests.iter().all(|m| m < newest_left),
        "swept {swept_manifests:?}, newest left {newest_left}"
    );
    let deleted_fragments: Vec<u64> = deleted
        .iter()
        .filter(|k| is_fragment_key(k))
        .map(|k| fragment_ms(k))
        .collect();
    assert_eq!(
        deleted_fragments.len(),
        3 * swept_manifests.len(),
        "three fragments per closed chunk: {deleted:?}"
    );
    let last_deleted = *deleted_fragments.iter().max().unwrap();
    assert_consistent(&stack.s3, "cam").await;

    // VOD over the whole push lists only stored fragments.
    let resp = vod(&stack, "cam", begin, unix_now() + 1).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let listed = assert_segments_fetch(&resp.text(), "VOD").await;
    assert!(listed > 0);
    // The live playlist keeps playing: valid, every segment fetchable.
    let play = common::httpc::get(&stack.sign_play("cam/playlist.m3u8")).await;
    assert_eq!(play.status, 200, "{}", play.text());
    let text = play.text();
    common::hlscheck::check_playlist(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(assert_segments_fetch(&text, "live").await >= 1, "{text}");

    // After the push: every fragment nginx wrote after the deleted ones is
    // stored, once.
    wait_stored(&stack, &mut push, "cam", "playlist.m3u8").await;
    ledger.assert_complete();
    assert_consistent(&stack.s3, "cam").await;
    let stored: Vec<String> = keys(&stack.s3, "cam/")
        .await
        .into_iter()
        .filter(|k| is_fragment_key(k))
        .collect();
    assert!(stored.iter().all(|k| fragment_ms(k) > last_deleted));
    let mut stored_shas = BTreeSet::new();
    for key in &stored {
        let sha = common::fragments::sha256_hex(&stack.s3.get(BUCKET, key).await);
        assert!(stored_shas.insert(sha), "{key} stored twice");
    }
    let mut latest = std::collections::BTreeMap::new();
    for copy in ledger.copies().into_iter().filter(|c| c.listed) {
        latest.insert(copy.name.clone(), copy.sha256);
    }
    for (name, sha) in latest {
        let ms: u64 = name.trim_end_matches(".ts").parse().unwrap();
        if ms > last_deleted + 1_000 {
            assert!(stored_shas.contains(&sha), "nginx's {name} is not stored");
        }
    }
}

/// A TCP proxy that holds each chunk from the client for `delay` ms (0:
/// none) before passing it on: every S3 request through it is that slow.
struct SlowProxy {
    addr: SocketAddr,
    delay: Arc<AtomicU64>,
    accept: tokio::task::AbortHandle,
}

impl SlowProxy {
    async fn start(upstream: SocketAddr) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay = Arc::new(AtomicU64::new(0));
        let d = delay.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let d = d.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = cr.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let ms = d.load(Ordering::SeqCst);
                            if ms > 0 {
                                tokio::time::sleep(millis(ms)).await;
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = sw.shutdown().await;
                    };
                    let down = async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    };
                    tokio::join!(up, down);
                });
            }
        })
        .abort_handle();
        SlowProxy {
            addr,
            delay,
            accept,
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_killed_midway_leaves_a_consistent_bucket_and_finishes_after_restart() {
    let mut stack = Stack::start_with("retention-kill", &format!("{RETENTION}batch_size = 1\n"));
    // livebucket reaches Garage through the proxy.
    let endpoint = stack.store.endpoint().to_owned();
    let upstream: SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("the store's endpoint is http://IP:PORT");
    let proxy = SlowProxy::start(upstream).await;
    let config = std::fs::read_to_string(stack.livebucket.config_path()).unwrap();
    let proxied = config.replace(&endpoint, &format!("http://{}", proxy.addr));
    assert_ne!(proxied, config);
    std::fs::write(stack.livebucket.config_path(), proxied).unwrap();
    stack.livebucket.restart();

    let mut push = stack.push(&stack.sign_push("cam"), 10);
    wait_stored(&stack, &mut push, "cam", "index.m3u8").await;
    let stored = recording(&stack.s3, "cam").await;
    let fragments = stored.iter().filter(|k| is_fragment_key(k)).count();
    assert!(fragments >= 3, "{stored:?}");
    tokio::time::sleep(secs(2)).await;
    set_period(&stack, "cam", 1);
    // Wait for the pipeline to let go of the channel: a dry run names it.
    wait_until("the session finished", secs(30), millis(300), async || {
        let planned = sweep(&stack, true);
        (planned.keys.len() > fragments)
            .then_some(())
            .ok_or(format!("planned {:?}", planned.keys))
    })
    .await;

    // Each S3 request now takes 400 ms; the sweep deletes one key each.
    proxy.delay.store(400, Ordering::SeqCst);
    let sweep_url = format!(
        "http://{}/retention/sweep?dry_run=false",
        stack.livebucket.operator_addr()
    );
    let asked = tokio::spawn(async move { common::httpc::request("POST", &sweep_url).await });
    wait_until("the manifest deleted", secs(30), millis(50), async || {
        let left = keys(&stack.s3, ".livebucket/index/cam/").await;
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    })
    .await;
    stack.livebucket.kill9();
    let _ = asked.await;
    let left = recording(&stack.s3, "cam").await;
    assert!(
        left.iter().any(|k| is_fragment_key(k)),
        "the kill came after the sweep: nothing left to resume"
    );
    assert_consistent(&stack.s3, "cam").await;

    proxy.delay.store(0, Ordering::SeqCst);
    stack.livebucket.restart();
    let swept = sweep(&stack, false);
    assert!(swept.errors.is_empty(), "{:?}", swept.errors);
    assert_eq!(
        recording(&stack.s3, "cam").await,
        BTreeSet::new(),
        "the sweep after the restart finished the work"
    );
    assert!(
        left.iter()
            .filter(|k| is_fragment_key(k))
            .all(|k| swept.keys.contains(k)),
        "the restarted sweep deleted what the killed one left"
    );
}

/// `etcdctl ARGS…` against `etcd`'s first member; its stdout.
fn etcdctl(etcd: &common::etcd::Etcd, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(&etcd.endpoints[0])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run etcdctl {args:?}: {e}"));
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_leaves_channels_live_elsewhere_or_locked_alone() {
    use common::cluster::Node;
    let dir = TestDir::new("retention-cluster");
    let mut garage = common::garage::Garage::start(&dir);
    garage.create_bucket(BUCKET);
    let etcd = common::etcd::Etcd::start(&dir, 1);
    let endpoints = etcd.endpoints_toml();
    let a = Node::start("ra", &garage, &endpoints, RETENTION);
    let b = Node::start("rb", &garage, &endpoints, RETENTION);
    let s3 = garage.s3();
    let config = |n: &Node| n.livebucket.config_path().to_str().unwrap().to_owned();
    for channel in ["old", "cam"] {
        livebucket(&[
            "channel",
            "create",
            "--config",
            &config(&a),
            "--bucket",
            BUCKET,
            "--channel",
            channel,
            "--retention-secs",
            "1",
        ]);
    }
    let sign = |channel: &str| {
        common::livebucket::sign_push(a.livebucket.config_path(), BUCKET, channel, &a.push_base())
    };
    let mut old = common::ffmpeg::push(&dir, &sign("old"), 4);
    let status = old.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {}", old.log());
    let mut live = common::ffmpeg::push(&dir, &sign("cam"), 40);
    wait_until("both channels stored", secs(40), millis(300), async || {
        let (o, c) = (recording(&s3, "old").await, recording(&s3, "cam").await);
        let ended = s3
            .list(BUCKET, "old/playlist.m3u8")
            .await
            .iter()
            .any(|_| true);
        (ended
            && o.iter().any(|k| is_fragment_key(k))
            && c.iter().filter(|k| is_fragment_key(k)).count() >= 2)
            .then_some(())
            .ok_or(format!("old {o:?}, cam {c:?}"))
    })
    .await;
    tokio::time::sleep(secs(3)).await;
    let old_before = recording(&s3, "old").await;
    let cam_before = recording(&s3, "cam").await;

    // Another sweeper holds "old"'s lock; "cam" is live on node a.
    let lease = etcdctl(&etcd, &["lease", "grant", "60"]);
    let lease = lease
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    let lock = format!("/livebucket/sweep/{BUCKET}/old");
    etcdctl(
        &etcd,
        &["put", &format!("--lease={lease}"), &lock, "someone"],
    );
    let out = livebucket(&["retention", "sweep", "--config", &config(&b)]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["busy"],
        serde_json::json!([format!("{BUCKET}/old")]),
        "{report}"
    );
    assert_eq!(
        recording(&s3, "old").await,
        old_before,
        "a locked channel was swept"
    );
    let cam_now = recording(&s3, "cam").await;
    assert!(
        cam_before.is_subset(&cam_now),
        "a channel live on node a lost {:?}",
        cam_before.difference(&cam_now).collect::<Vec<_>>()
    );

    // The lock gone, node b sweeps "old" (a finished channel), not "cam".
    etcdctl(&etcd, &["del", &lock]);
    wait_until(
        "node b sweeps the old channel",
        secs(30),
        millis(500),
        async || {
            let out = livebucket(&["retention", "sweep", "--config", &config(&b)]);
            let left = recording(&s3, "old").await;
            left.is_empty()
                .then_some(())
                .ok_or(format!("left {left:?}; {out}"))
        },
    )
    .await;
    let cam_now = recording(&s3, "cam").await;
    assert!(
        cam_before.is_subset(&cam_now),
        "the live channel lost fragments"
    );
    assert!(
        etcdctl(&etcd, &["get", "--prefix", "/livebucket/sweep/"])
            .trim()
            .is_empty(),
        "node b left its sweep lock behind"
    );
    live.kill();
}

/// A ladder whose rung `1080p` sorts among the fragment keys' digits
/// (`cam/1080p/…` before `cam/17…`).
const LADDER: &str = "[renditions]\n\
    [[renditions.rungs]]\nname = \"1080p\"\nheight = 1080\nvideo_kbps = 4000\n\
    [[renditions.rungs]]\nname = \"360p\"\nheight = 360\nvideo_kbps = 800\n";

/// `livebucket channel create --channel CHANNEL ARGS…`: its output and
/// whether it succeeded.
fn channel_create(stack: &Stack, channel: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args([
            "channel",
            "create",
            "--config",
            config_arg(stack),
            "--bucket",
            BUCKET,
            "--channel",
            channel,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run livebucket");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The object keys of a VOD playlist's presigned segment URLs, in order.
fn vod_keys(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("http"))
        .map(|l| {
            let path = l.split('?').next().unwrap();
            let (_, key) = path
                .split_once(&format!("/{BUCKET}/"))
                .unwrap_or_else(|| panic!("{l} is not an object of {BUCKET}"));
            key.to_owned()
        })
        .collect()
}

/// CopyObject (metadata, `extinf` included, kept).
async fn copy(s3: &S3, from: &str, to: &str) {
    s3.client()
        .copy_object()
        .copy_source(format!("{BUCKET}/{from}"))
        .bucket(BUCKET)
        .key(to)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CopyObject {from}: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
}

/// A variant's playlist naming `frags` (epoch ms), ended.
fn variant_playlist(frags: &[u64]) -> Vec<u8> {
    let mut text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n".to_owned();
    for ms in frags {
        text.push_str(&format!("#EXTINF:2.000,\n{ms:013}.ts\n"));
    }
    text.push_str("#EXT-X-ENDLIST\n");
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_stay_out_of_the_source_and_are_swept_with_it() {
    // A listing may HEAD 5 fragments: the source's (a 6 s push of 2 s
    // fragments), not also the 6 of a variant beside them.
    let stack = Stack::start_with(
        "retention-variants",
        &format!("{RETENTION}{LADDER}[vod]\nmax_fallback_fragments = 5\n"),
    );

    // The record's ladder: set and shown through the CLI; a rung the config
    // does not have is refused by name; oss2 still reads the channel.
    let (ok, out) = channel_create(&stack, "abr", &["--renditions", "1080p,360p"]);
    assert!(ok, "{out}");
    let got = livebucket(&[
        "channel",
        "get",
        "--config",
        config_arg(&stack),
        "--bucket",
        BUCKET,
        "--channel",
        "abr",
    ]);
    assert!(got.contains("LivebucketRenditions: 1080p,360p"), "{got}");
    assert_eq!(oss2(&stack, "get", "abr")["playlist_name"], "playlist.m3u8");
    let (ok, out) = channel_create(&stack, "abr", &["--renditions", "720p"]);
    assert!(
        !ok && out.contains("InvalidArgument") && out.contains("720p"),
        "{out}"
    );
    let (ok, out) = channel_create(
        &stack,
        "abr",
        &["--renditions", "360p", "--playlist-name", "master.m3u8"],
    );
    assert!(!ok && out.contains("master.m3u8"), "{out}");

    // A real push of the source. Its channel has no renditions: its
    // variants are written by hand below, as a rendition's pipeline lays
    // them out, keyed 1 ms after the source's fragments so a mix-up shows.
    let (ok, out) = channel_create(
        &stack,
        "cam",
        &["--renditions", "none", "--frag-duration", "2"],
    );
    assert!(ok, "{out}");
    let begin = unix_now() - 1;
    let mut push = stack.push(&stack.sign_push("cam"), 6);
    wait_stored(&stack, &mut push, "cam", "playlist.m3u8").await;
    let end = unix_now() + 1;
    let source: Vec<String> = keys(&stack.s3, "cam/")
        .await
        .into_iter()
        .filter(|k| is_fragment_key(k))
        .collect();
    assert!((2..=5).contains(&source.len()), "{source:?}");
    let reference = vod(&stack, "cam", begin, end).await;
    assert_eq!(reference.status, 200, "{}", reference.text());
    assert_eq!(vod_keys(&reference.text()), source);

    for rung in ["1080p", "360p"] {
        let mut frags = Vec::new();
        for key in &source {
            let ms = fragment_ms(key) + 1;
            copy(&stack.s3, key, &format!("cam/{rung}/{ms:013}.ts")).await;
            frags.push(ms);
        }
        for m in manifests(&stack.s3, "cam").await {
            let mut body: serde_json::Value =
                serde_json::from_slice(&stack.s3.get(BUCKET, &m).await).unwrap();
            body["channel"] = format!("cam/{rung}").into();
            for f in body["fragments"].as_array_mut().unwrap() {
                f["k"] = (f["k"].as_u64().unwrap() + 1).into();
            }
            let name = m.rsplit('/').next().unwrap();
            stack
                .s3
                .put(
                    BUCKET,
                    &format!(".livebucket/index/cam/{rung}/{name}"),
                    serde_json::to_vec(&body).unwrap(),
                    "application/json",
                )
                .await;
        }
        let playlist = format!("cam/{rung}/playlist.m3u8");
        stack
            .s3
            .put(
                BUCKET,
                &playlist,
                variant_playlist(&frags),
                "application/vnd.apple.mpegurl",
            )
            .await;
        let part = format!("cam/{rung}/.ll/rec{rung}/{:013}-000.ts", frags[0]);
        stack
            .s3
            .put(BUCKET, &part, vec![0x47; 188], "video/mp2t")
            .await;
    }
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2000000\nplaylist.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=4000000\n1080p/playlist.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/playlist.m3u8\n";
    stack
        .s3
        .put(
            BUCKET,
            "cam/master.m3u8",
            master.into(),
            "application/vnd.apple.mpegurl",
        )
        .await;

    // With variants in the range, the VOD of the channel is a master of
    // the source and each rung of the ladder (another range than the
    // reference's, which livebucket has cached); the source's own VOD from
    // its manifests (`--variant source`) is exactly the source, as before.
    let range = (begin - 1, end + 1);
    let master = vod(&stack, "cam", range.0, range.1).await;
    assert_eq!(master.status, 200, "{}", master.text());
    let text = master.text();
    for variant in ["source", "1080p", "360p"] {
        assert!(
            text.contains("#EXT-X-STREAM-INF:") && text.contains(&format!("variant={variant}")),
            "no {variant} in the VOD master:\n{text}"
        );
    }
    let from_index = vod_of(&stack, "cam", range.0, range.1, &["--variant", "source"]).await;
    assert_eq!(from_index.status, 200, "{}", from_index.text());
    assert_eq!(vod_keys(&from_index.text()), source, "from the manifests");

    // And from a listing (a channel without manifests), beside a variant
    // whose rung sorts among its fragments' keys.
    let first_ms = fragment_ms(&source[0]);
    let odd_rung = format!("{:013}", first_ms + 1);
    let mut copied = Vec::new();
    for key in &source {
        let name = key.rsplit('/').next().unwrap();
        copy(&stack.s3, key, &format!("old/{name}")).await;
        copied.push(format!("old/{name}"));
    }
    for i in 0..6 {
        let name = format!("{:013}.ts", first_ms + i);
        copy(&stack.s3, &source[0], &format!("old/{odd_rung}/{name}")).await;
    }
    let listed = vod(&stack, "old", begin, end).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert_eq!(vod_keys(&listed.text()), copied, "from the listing");

    // Retention: a dry run names the variants' objects and not yet the
    // master (the playlists it names are still there); the sweep then
    // deletes the source, every variant, and the master last.
    tokio::time::sleep(secs(2)).await;
    let (ok, out) = channel_create(
        &stack,
        "cam",
        &["--renditions", "none", "--retention-secs", "1"],
    );
    assert!(ok, "{out}");
    let planned = sweep(&stack, true);
    assert!(planned.errors.is_empty(), "{:?}", planned.errors);
    for rung in ["1080p", "360p"] {
        for want in [
            format!("cam/{rung}/playlist.m3u8"),
            format!("cam/{rung}/{:013}.ts", first_ms + 1),
        ] {
            assert!(
                planned.keys.contains(&want),
                "{want} not planned: {:?}",
                planned.keys
            );
        }
        assert!(
            planned
                .keys
                .iter()
                .any(|k| k.starts_with(&format!(".livebucket/index/cam/{rung}/"))),
            "{:?}",
            planned.keys
        );
        assert!(
            planned
                .keys
                .iter()
                .any(|k| k.starts_with(&format!("cam/{rung}/.ll/"))),
            "{:?}",
            planned.keys
        );
    }
    assert!(
        !planned.keys.contains("cam/master.m3u8"),
        "{:?}",
        planned.keys
    );
    assert!(keys(&stack.s3, "cam/1080p/").await.len() > source.len());

    let swept = sweep(&stack, false);
    assert!(swept.errors.is_empty(), "{:?}", swept.errors);
    assert!(swept.keys.contains("cam/master.m3u8"), "{:?}", swept.keys);
    let left: BTreeSet<String> = keys(&stack.s3, "cam/")
        .await
        .into_iter()
        .chain(keys(&stack.s3, ".livebucket/index/cam/").await)
        .collect();
    assert!(left.is_empty(), "left after the sweep: {left:?}");
    // `old` has no period of its own: the config's default keeps it.
    assert_eq!(keys(&stack.s3, "old/").await.len(), source.len() + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_stays_while_a_playlist_it_names_is_left() {
    let stack = Stack::start_with("retention-master", &format!("{RETENTION}{LADDER}"));
    // A variant's playlist naming only fragments from the future is never
    // expired, so the master naming it stays; once it is gone, so is the
    // master.
    let (ok, out) = channel_create(&stack, "cam", &["--retention-secs", "1"]);
    assert!(ok, "{out}");
    let past = (unix_now() - 3600) * 1000;
    let future = (unix_now() + 3600) * 1000;
    stack
        .s3
        .put(
            BUCKET,
            &format!("cam/360p/{past:013}.ts"),
            vec![0x47; 188],
            "video/mp2t",
        )
        .await;
    stack
        .s3
        .put(
            BUCKET,
            "cam/360p/playlist.m3u8",
            variant_playlist(&[future]),
            "application/vnd.apple.mpegurl",
        )
        .await;
    let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/playlist.m3u8\n";
    stack
        .s3
        .put(
            BUCKET,
            "cam/master.m3u8",
            master.into(),
            "application/vnd.apple.mpegurl",
        )
        .await;
    let swept = sweep(&stack, false);
    assert!(swept.errors.is_empty(), "{:?}", swept.errors);
    assert_eq!(
        swept.keys,
        BTreeSet::from([format!("cam/360p/{past:013}.ts")]),
        "only the variant's old fragment"
    );
    assert_eq!(
        keys(&stack.s3, "cam/").await,
        BTreeSet::from([
            "cam/360p/playlist.m3u8".to_owned(),
            "cam/master.m3u8".to_owned()
        ])
    );
    stack
        .s3
        .client()
        .delete_object()
        .bucket(BUCKET)
        .key("cam/360p/playlist.m3u8")
        .send()
        .await
        .expect("DELETE the variant's playlist");
    let swept = sweep(&stack, false);
    assert!(swept.errors.is_empty(), "{:?}", swept.errors);
    assert_eq!(swept.keys, BTreeSet::from(["cam/master.m3u8".to_owned()]));
    assert!(keys(&stack.s3, "cam/").await.is_empty());
}
