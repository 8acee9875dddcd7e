//! Push authorisation, end to end: ffmpeg (or a hostile RTMP client) →
//! nginx-rtmp → livebucket → Garage, each test judged by what the bucket
//! holds.
//!
//! - an OSS-style URL, whose bucket is the first label of the tcUrl host,
//!   writes the playlist its `playlistName` names;
//! - the signature spellings generators produce (`/` written as `z`, a raw
//!   `+`) are accepted;
//! - a second publisher to a live channel is refused and the first goes on;
//! - a key disabled by a reload (SIGHUP) drops its live stream at nginx's next
//!   `on_update`, and refuses new pushes;
//! - a client that streams media without waiting for `publish`'s answer gets
//!   nothing stored, whether its signature is bad or its channel is live.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::ffmpeg::push_with_args;
use common::livebucket::sign_push_with;
use common::rawrtmp::{NoWaitOutcome, make_flv, publish_without_waiting, read_flv};
use common::stored::{Stored, at_least_segments, ended, read_playlist, wait_for_playlist};
use common::*;

/// Waits until `CHANNEL/PLAYLIST` ends with `#EXT-X-ENDLIST`, whatever became
/// of the push (for pushes the server dropped).
async fn wait_for_ended_playlist(s3: &S3, channel: &str, playlist_name: &str) -> Stored {
    let playlist_key = format!("{channel}/{playlist_name}");
    wait_until(
        &format!("s3://{BUCKET}/{playlist_key}: #EXT-X-ENDLIST"),
        secs(60),
        millis(500),
        async || read_playlist(s3, &playlist_key, &ended).await,
    )
    .await
}

/// The `session` metadata of every `.ts` object under `CHANNEL/`.
async fn segment_sessions(s3: &S3, channel: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, _) in s3.list(BUCKET, &format!("{channel}/")).await {
        if common::is_fragment_key(&key) {
            let head = s3.head(BUCKET, &key).await;
            let session = head
                .metadata
                .get("session")
                .unwrap_or_else(|| panic!("{key} has no session metadata: {head:?}"))
                .clone();
            out.push((key, session));
        }
    }
    out
}

/// The sessions livebucket approved, from its log: the first digits of
/// each one's recording id, which fragments carry as `session` metadata.
fn approved_sessions(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("push approved"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("session="))
                .map(str::to_owned)
        })
        .collect()
}

/// `livebucket_push_rejected_total{reason="REASON"}`.
fn rejected(stack: &Stack, reason: &str) -> u64 {
    stack.livebucket.metric(&format!(
        "livebucket_push_rejected_total{{reason=\"{reason}\"}}"
    ))
}

/// The stream key (`CHANNEL?QUERY`) of a push URL on `base`.
fn stream_key<'a>(url: &'a str, base: &str) -> &'a str {
    url.strip_prefix(base)
        .and_then(|s| s.strip_prefix('/'))
        .unwrap_or_else(|| panic!("{url} is not on {base}"))
}

/// Long enough to outlive nginx's first `on_update` (every 10 s).
const PUSH_SECONDS: u32 = 12;

#[tokio::test]
async fn oss_url_with_playlist_name_stores_that_playlist() {
    let stack = Stack::start_with("oss", "[auth]\noss_live_domain = \"live.example.test\"\n");
    let port = stack.nginx.rtmp_port();
    let oss_base = format!("rtmp://{BUCKET}.live.example.test:{port}/live");
    let channel = "osscam";
    let url = sign_push_with(
        stack.livebucket.config_path(),
        BUCKET,
        channel,
        &oss_base,
        &["--scheme", "oss", "--playlist-name", "my.m3u8"],
    );
    assert!(
        url.starts_with(&format!("{oss_base}/{channel}?"))
            && query_param(&url, "OSSAccessKeyId").as_deref() == Some(stack.key().id.as_str())
            && query_param(&url, "playlistName").as_deref() == Some("my.m3u8")
            && query_param(&url, "Bucket").is_none(),
        "not an OSS-style URL: {url}"
    );
    // Connect to 127.0.0.1 but present the OSS host in tcUrl, as a streamer
    // resolving BUCKET.live.example.test to this server would.
    let local_url = url.replacen(&format!("{BUCKET}.live.example.test"), "127.0.0.1", 1);
    let mut push = push_with_args(
        &stack.dir,
        &local_url,
        PUSH_SECONDS,
        &["-rtmp_tcurl", &oss_base],
    );

    // Control: the same kind of URL with the tcUrl ffmpeg derives from the
    // address it connects to names no bucket, and is refused.
    let control_channel = "osscam-plain-tcurl";
    let control_url = sign_push_with(
        stack.livebucket.config_path(),
        BUCKET,
        control_channel,
        &oss_base,
        &["--scheme", "oss", "--playlist-name", "my.m3u8"],
    )
    .replacen(&format!("{BUCKET}.live.example.test"), "127.0.0.1", 1);
    let mut control = stack.push(&control_url, 10);

    let stored = wait_for_playlist(
        &stack.s3,
        channel,
        "my.m3u8",
        &mut push,
        "two segments listed",
        at_least_segments(2),
    )
    .await;
    assert!(stored.segment_objects().len() >= 2, "{:?}", stored.objects);

    let status = control.exit_within(secs(20)).await;
    assert!(
        !status.success(),
        "the push presenting tcUrl rtmp://127.0.0.1 was accepted; its log:\n{}",
        control.log()
    );
    assert!(
        rejected(&stack, "oss_host_mismatch") >= 1,
        "{}",
        stack.livebucket.get("/metrics").unwrap().1
    );

    let status = push.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", push.log());
    let done = wait_for_playlist(
        &stack.s3,
        channel,
        "my.m3u8",
        &mut push,
        "#EXT-X-ENDLIST",
        ended,
    )
    .await;

    let names: Vec<&str> = done.objects.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !names.contains(&format!("{channel}/index.m3u8").as_str()),
        "an OSS push with playlistName=my.m3u8 also wrote index.m3u8: {names:?}"
    );
    assert!(
        names
            .iter()
            .all(|k| *k == format!("{channel}/my.m3u8") || k.ends_with(".ts")),
        "unexpected objects: {names:?}"
    );
    for key in &done.segment_keys {
        assert!(names.contains(&key.as_str()), "{key} listed but not stored");
    }
    assert!(
        stack
            .s3
            .list(BUCKET, &format!("{control_channel}/"))
            .await
            .is_empty(),
        "the refused control push stored objects"
    );
}

#[tokio::test]
async fn z_and_raw_plus_signature_spellings_are_accepted() {
    let stack = Stack::start("spellings");
    let key = stack.key().clone();
    let base = stack.nginx.push_base();
    let soon = unix_now() + 600;

    // A signature with a `/`, sent with every `/` written as `z`.
    let z_channel = "zcam";
    let (z_expires, z_real) = (soon..soon + 10_000)
        .map(|e| (e, push_signature(&key.secret, BUCKET, z_channel, e)))
        .find(|(_, sig)| sig.contains('/'))
        .expect("no signature with a '/' in 10000 expiries");
    let z_sig = z_real.replace('/', "z");
    let z_url = with_query_param(
        &push_url(&base, z_channel, BUCKET, &key, z_expires),
        "Signature",
        &z_sig,
    );
    assert_eq!(
        query_param(&z_url, "Signature").as_deref(),
        Some(z_sig.as_str())
    );

    // A signature with a `+` (and no `/`), sent raw: not percent-encoded.
    let plus_channel = "pluscam";
    let (plus_expires, plus_sig) = (soon..soon + 10_000)
        .map(|e| (e, push_signature(&key.secret, BUCKET, plus_channel, e)))
        .find(|(_, sig)| sig.contains('+') && !sig.contains('/'))
        .expect("no signature with a '+' and no '/' in 10000 expiries");
    let plus_url = format!(
        "{base}/{plus_channel}?Bucket={BUCKET}&AccessKeyId={}&Expires={plus_expires}&Signature={plus_sig}",
        key.id
    );
    assert!(
        plus_url.contains('+') && !plus_url.contains('%'),
        "{plus_url}"
    );

    let mut pushes = [
        (z_channel, stack.push(&z_url, PUSH_SECONDS)),
        (plus_channel, stack.push(&plus_url, PUSH_SECONDS)),
    ];
    for (channel, push) in &mut pushes {
        let stored = wait_for_playlist(
            &stack.s3,
            channel,
            "index.m3u8",
            push,
            "two segments listed",
            at_least_segments(2),
        )
        .await;
        assert!(stored.segment_objects().len() >= 2, "{:?}", stored.objects);
    }
    for (channel, push) in &mut pushes {
        let status = push.exit_within(secs(60)).await;
        assert!(
            status.success(),
            "{channel}: ffmpeg {status}\n{}",
            push.log()
        );
        wait_for_playlist(
            &stack.s3,
            channel,
            "index.m3u8",
            push,
            "#EXT-X-ENDLIST",
            ended,
        )
        .await;
    }
    assert_eq!(
        stack.livebucket.metric("livebucket_push_accepted_total"),
        2,
        "{}",
        stack.livebucket.get("/metrics").unwrap().1
    );
}

#[tokio::test]
async fn second_publisher_to_a_live_channel_is_refused() {
    let stack = Stack::start("second-publisher");
    let channel = "cam";
    let mut first = stack.push(&stack.sign_push(channel), 24);
    let live = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut first,
        "one segment listed",
        at_least_segments(1),
    )
    .await;
    assert_eq!(rejected(&stack, "channel_live"), 0);

    // A freshly signed, valid URL for the same channel, pushed for longer
    // than the test waits: only a refusal ends it that soon.
    let second_started = Instant::now();
    let mut second = stack.push(&stack.sign_push(channel), 60);
    let status = second.exit_within(secs(15)).await;
    assert!(
        !status.success(),
        "the second publisher was accepted (ffmpeg: {status}); its log:\n{}",
        second.log()
    );
    assert!(
        first.try_wait().is_none(),
        "the first publisher stopped when the second was refused; its log:\n{}",
        first.log()
    );
    assert_eq!(
        rejected(&stack, "channel_live"),
        1,
        "{}",
        stack.livebucket.get("/metrics").unwrap().1
    );
    eprintln!(
        "second publisher refused after {:?}",
        second_started.elapsed()
    );

    // The first keeps storing segments after the refusal.
    let before = live.segment_objects().len();
    wait_until(
        "new segments after the refusal",
        secs(30),
        millis(500),
        async || {
            if let Some(status) = first.try_wait() {
                panic!(
                    "the first publisher ended ({status}); its log:\n{}",
                    first.log()
                );
            }
            let now = stack
                .s3
                .list(BUCKET, &format!("{channel}/"))
                .await
                .into_iter()
                .filter(|(k, _)| common::is_fragment_key(k))
                .count();
            if now >= before + 2 {
                Ok(())
            } else {
                Err(format!("{now} segments, {before} before the refusal"))
            }
        },
    )
    .await;

    let status = first.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", first.log());
    let done = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut first,
        "#EXT-X-ENDLIST",
        ended,
    )
    .await;
    assert_eq!(done.playlist.discontinuities, 0, "one session only");
    let sessions: BTreeSet<String> = segment_sessions(&stack.s3, channel)
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        sessions.len(),
        1,
        "segments from more than one session: {sessions:?}"
    );
    assert_eq!(stack.livebucket.metric("livebucket_push_accepted_total"), 1);
    // nginx's callbacks are timed from accept to answer.
    let timed = stack
        .livebucket
        .metric("livebucket_hook_seconds_count{call=\"on_publish\"}");
    assert!(timed >= 1, "no on_publish in livebucket_hook_seconds");
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_hook_seconds_bucket{call=\"on_publish\",le=\"+Inf\"}"),
        timed
    );
}

#[tokio::test]
async fn key_disabled_by_reload_drops_its_live_stream() {
    let mut stack = Stack::start("disabled-key");
    let channel = "cam";
    let planned = 60;
    let push_started = Instant::now();
    let mut push = stack.push(&stack.sign_push(channel), planned);
    wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut push,
        "one segment listed",
        at_least_segments(1),
    )
    .await;

    // Disable the key in the config file and reload.
    let config_path = stack.livebucket.config_path().to_owned();
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(&config_path).unwrap())
        .expect("the harness's config is TOML");
    let keys = config
        .get_mut("keys")
        .and_then(toml::Value::as_array_mut)
        .expect("no [[keys]] in the config");
    assert_eq!(keys.len(), 1, "{keys:?}");
    keys[0]
        .as_table_mut()
        .unwrap()
        .insert("disabled".into(), toml::Value::Boolean(true));
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    stack.livebucket.reload();
    wait_until(
        "livebucket to log the reload",
        secs(10),
        millis(100),
        async || {
            let log = stack.livebucket.log();
            if log.contains("configuration reloaded") {
                Ok(())
            } else if log.contains("reload failed") {
                panic!("livebucket refused the new config:\n{log}")
            } else {
                Err("not yet")
            }
        },
    )
    .await;
    let reloaded = Instant::now();

    // nginx's next on_update (every 10 s) gets 403 and drops the publisher.
    let status = push.exit_within(secs(25)).await;
    eprintln!(
        "ffmpeg ended {:?} after the reload, {:?} into a {planned} s push: {status}",
        reloaded.elapsed(),
        push_started.elapsed()
    );
    assert!(
        push_started.elapsed() < secs(u64::from(planned) - 20),
        "ffmpeg ran {:?} of its planned {planned} s",
        push_started.elapsed()
    );
    assert!(
        !status.success(),
        "ffmpeg finished cleanly; was it dropped? its log:\n{}",
        push.log()
    );
    assert!(
        rejected(&stack, "key_disabled") >= 1,
        "{}",
        stack.livebucket.get("/metrics").unwrap().1
    );
    let done = wait_for_ended_playlist(&stack.s3, channel, "index.m3u8").await;

    // A new push with the key is refused (signed here: `sign push` itself
    // will not sign with a disabled key).
    let key = stack.key().clone();
    let url = push_url(
        &stack.nginx.push_base(),
        channel,
        BUCKET,
        &key,
        unix_now() + 600,
    );
    let refusals = rejected(&stack, "key_disabled");
    let mut again = stack.push(&url, 30);
    let status = again.exit_within(secs(15)).await;
    assert!(
        !status.success(),
        "a push with the disabled key was accepted; its log:\n{}",
        again.log()
    );
    assert_eq!(rejected(&stack, "key_disabled"), refusals + 1);
    let objects = stack.s3.list(BUCKET, &format!("{channel}/")).await;
    assert_eq!(
        objects, done.objects,
        "objects changed after the refused push"
    );
    assert_eq!(stack.livebucket.metric("livebucket_push_accepted_total"), 1);
}

/// Records the name of every directory that appears directly under the HLS
/// directory, polling until dropped.
struct DirWatch {
    seen: Arc<Mutex<BTreeSet<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DirWatch {
    fn start(dir: std::path::PathBuf) -> DirWatch {
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(entries) = std::fs::read_dir(&dir) {
                        let mut seen = seen.lock().unwrap();
                        for e in entries.flatten() {
                            if e.path().is_dir() {
                                seen.insert(e.file_name().to_string_lossy().into_owned());
                            }
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            })
        };
        DirWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> BTreeSet<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn assert_refused_without_answer(what: &str, outcome: &NoWaitOutcome, burst_tags: usize) {
    assert!(
        outcome.media_sent_before_answer >= burst_tags,
        "{what}: only {} media messages went out before the answer ({outcome:?})",
        outcome.media_sent_before_answer
    );
    assert!(
        !outcome
            .statuses
            .iter()
            .any(|s| s == "NetStream.Publish.Start"),
        "{what}: nginx told the client to start publishing: {outcome:?}"
    );
    let closed = outcome
        .closed_after
        .unwrap_or_else(|| panic!("{what}: the server never closed the connection: {outcome:?}"));
    assert!(
        closed < secs(10),
        "{what}: the server took {closed:?} to drop the client: {outcome:?}"
    );
}

/// The legitimate push beside the hostile clients.
const LEGIT_SECONDS: u32 = 16;

#[tokio::test]
async fn media_sent_before_the_publish_answer_is_never_stored() {
    // A window larger than the push, so the final playlist lists every
    // segment the legitimate session stored.
    let stack = Stack::start_with("no-wait", "[live]\nwindow_segments = 100\n");
    let watch = DirWatch::start(stack.hls_dir.clone());
    let flv = make_flv(&stack.dir, "hostile", 8);
    let tags = read_flv(&flv);
    let burst = secs(3);
    let burst_tags = tags
        .iter()
        .filter(|t| u128::from(t.timestamp) <= burst.as_millis())
        .count();

    let channel = "cam";
    let legit_url = stack.sign_push(channel);
    let mut legit = stack.push(&legit_url, LEGIT_SECONDS);
    wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut legit,
        "one segment listed",
        at_least_segments(1),
    )
    .await;

    let base = stack.nginx.push_base();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], stack.nginx.rtmp_port()).into();
    // Bad signature, on a channel nobody pushes.
    let intruder = "intruder";
    let key = stack.key().clone();
    let good = push_url(&base, intruder, BUCKET, &key, unix_now() + 600);
    let expires: u64 = query_param(&good, "Expires").unwrap().parse().unwrap();
    let forged = with_query_param(
        &good,
        "Signature",
        &push_signature("not-the-secret-at-all", BUCKET, intruder, expires),
    );
    // A valid URL (a leaked one) for the channel that is live.
    let cases = [
        ("bad signature", stream_key(&forged, &base).to_owned()),
        ("live channel", stream_key(&legit_url, &base).to_owned()),
    ];
    let clients: Vec<_> = cases
        .iter()
        .map(|(what, key)| {
            let (what, key, tags, base) = (*what, key.clone(), tags.clone(), base.clone());
            tokio::task::spawn_blocking(move || {
                let outcome =
                    publish_without_waiting(addr, &base, "live", &key, &tags, burst, secs(15));
                (what, outcome)
            })
        })
        .collect();
    for client in clients {
        let (what, outcome) = client.await.expect("the hostile client panicked");
        eprintln!("hostile client ({what}): {outcome:?}");
        assert_refused_without_answer(what, &outcome, burst_tags);
    }
    assert!(
        legit.try_wait().is_none(),
        "the legitimate push stopped; its log:\n{}",
        legit.log()
    );
    assert!(rejected(&stack, "bad_signature") >= 1);
    assert!(rejected(&stack, "channel_live") >= 1);

    let status = legit.exit_within(secs(60)).await;
    assert!(status.success(), "ffmpeg: {status}\n{}", legit.log());
    let done = wait_for_playlist(
        &stack.s3,
        channel,
        "index.m3u8",
        &mut legit,
        "#EXT-X-ENDLIST",
        ended,
    )
    .await;

    // Nothing of the intruder, under its channel or its index.
    for prefix in [
        format!("{intruder}/"),
        format!(".livebucket/index/{intruder}/"),
    ] {
        let objects = stack.s3.list(BUCKET, &prefix).await;
        assert!(
            objects.is_empty(),
            "the bad-signature client stored {objects:?}"
        );
    }

    // The live channel holds exactly the legitimate session's segments: one
    // approved session, every segment from it, all of them in the playlist.
    let approved = approved_sessions(&stack.livebucket.log());
    assert_eq!(approved.len(), 1, "approved sessions: {approved:?}");
    assert_eq!(stack.livebucket.metric("livebucket_push_accepted_total"), 1);
    let sessions = segment_sessions(&stack.s3, channel).await;
    for (key, session) in &sessions {
        assert!(
            session.starts_with(approved[0].as_str()),
            "{key} is not from the legitimate session ({session} vs {})",
            approved[0]
        );
    }
    let stored: BTreeSet<&str> = done.segment_objects();
    let listed: BTreeSet<&str> = done.segment_keys.iter().map(String::as_str).collect();
    assert_eq!(stored, listed, "stored segments vs the final playlist");
    assert_eq!(done.playlist.discontinuities, 0, "one session only");
    let seconds: f64 = done.playlist.durations.iter().sum();
    assert!(
        (f64::from(LEGIT_SECONDS) - 4.0..=f64::from(LEGIT_SECONDS) + 2.0).contains(&seconds),
        "a {LEGIT_SECONDS} s push stored {seconds:.3} s of segments: {:?}",
        done.segment_keys
    );
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_fragments_uploaded_total"),
        stored.len() as u64,
        "fragments uploaded vs .ts objects in the bucket"
    );

    // nginx wrote HLS only for the approved session.
    let dirs = watch.seen();
    drop(watch);
    assert!(
        !dirs.is_empty(),
        "the legitimate push's HLS directory was never seen"
    );
    for dir in &dirs {
        assert!(
            approved.contains(&::livebucket::session::log_tag(dir)),
            "HLS directory {dir:?} belongs to no approved session (approved: {approved:?})"
        );
    }
    assert_eq!(
        stack.livebucket.metric("livebucket_unknown_dirs_total"),
        0,
        "livebucket saw HLS directories of no approved session"
    );
}
