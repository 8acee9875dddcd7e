//! The transcoders of adaptive bitrate against real nginx-rtmp, ffmpeg and
//! Garage: a push with a ladder is stored as the source plus one variant
//! per rung (`CHANNEL/<rung>/…`, each playlist valid); a transcoder killed
//! mid-push is restarted (a discontinuity in its variant) while the source
//! loses nothing; a refused push starts no transcoder, and disabling the
//! channel mid-push stops them all; `kill -9` of livebucket takes its
//! transcoders with it, and the restarted livebucket gives the live push
//! new ones; one that falls behind real time is dropped.

use crate::common;

use common::ladder::{ladder_toml, ladder_toml_fps, oss2_ok, rung_transcoders, transcoders};
use common::stored::{Stored, ended, wait_for_playlist};
use common::*;

/// Two small rungs under the harness's 320x240 push.
const RUNGS: &[(&str, u32)] = &[("180p", 180), ("120p", 120)];

/// Final playlists that list every fragment of a short push.
const WINDOW: &str = "[live]\nwindow_segments = 100\n";

fn stack(name: &str, renditions_extra: &str) -> Stack {
    Stack::start_with(
        name,
        &format!("{WINDOW}{}", ladder_toml(RUNGS, renditions_extra)),
    )
}

/// The pids of the transcoders on the stack's nginx.
fn transcoder_pids(stack: &Stack) -> Vec<u32> {
    transcoders(stack.nginx.rtmp_port())
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// The stored fragments directly under `prefix` (not a variant's).
fn fragments_under<'a>(stored: &'a Stored, prefix: &str) -> Vec<&'a str> {
    stored
        .segment_objects()
        .into_iter()
        .filter(|k| {
            k.strip_prefix(prefix)
                .is_some_and(|rest| !rest.contains('/'))
        })
        .collect()
}

/// Waits until `channel`'s playlist ended; asserts it lists exactly the
/// fragments stored directly under `channel/`, and returns it.
async fn ended_playlist(stack: &Stack, channel: &str, push: &mut Push) -> Stored {
    let stored = wait_for_playlist(&stack.s3, channel, "index.m3u8", push, "ended", ended).await;
    let mut under = fragments_under(&stored, &format!("{channel}/"));
    under.sort();
    let mut listed: Vec<&str> = stored.segment_keys.iter().map(String::as_str).collect();
    listed.sort();
    assert_eq!(
        under, listed,
        "{channel}: the stored fragments and the playlist differ"
    );
    stored
}

async fn no_transcoder_left(stack: &Stack) {
    let port = stack.nginx.rtmp_port();
    wait_until("every transcoder gone", secs(20), millis(200), async || {
        let left = transcoders(port);
        let running = stack.livebucket.metric("livebucket_transcoders_running");
        (left.is_empty() && running == 0)
            .then_some(())
            .ok_or(format!("{running} running; processes: {left:?}"))
    })
    .await;
}

/// `[events]` to an endpoint that refuses every connection: the events
/// stay queued in `<state_dir>/events/`, where the test reads them.
const UNDELIVERED_EVENTS: &str = "[events]\nsecret = \"whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=\"\n\
     [[events.endpoints]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/\"\n";

#[tokio::test]
async fn a_two_rung_push_stores_a_valid_variant_per_rung() {
    // 120p at half the source's 30 fps: its keyframes must survive the cap.
    let ladder = ladder_toml_fps(&[("180p", 180, None), ("120p", 120, Some(15))], "");
    let stack = Stack::start_with(
        "transcode-two",
        &format!("{WINDOW}{UNDELIVERED_EVENTS}{ladder}"),
    );
    // A keyframe every 67 frames (2.23 s, inside nginx's 2 to 2.4 s cut
    // window): every other cut is on an odd frame, which a frame rate cap
    // that ignores keyframes drops (then nginx cuts elsewhere).
    let media = common::ffmpeg::TestMedia {
        video: "testsrc=size=320x240:rate=30",
        tone_hz: 440,
        seconds: 12,
        gop: 67,
        live: true,
    };
    let url = stack.sign_push("cam");
    let mut push = common::ffmpeg::push_media(&stack.dir, &media, &url, &[]);
    assert!(push.exit_within(secs(40)).await.success(), "{}", push.log());
    let source = ended_playlist(&stack, "cam", &mut push).await;
    assert!(
        source.playlist.uris.len() >= 4,
        "{:?}",
        source.playlist.uris
    );
    for (rung, _) in RUNGS {
        let variant = ended_playlist(&stack, &format!("cam/{rung}"), &mut push).await;
        // Keyframes forced where the source has them, cut by the same
        // application: the same fragments.
        assert_eq!(
            variant.playlist.uris.len(),
            source.playlist.uris.len(),
            "{rung}: {:?} against the source's {:?}",
            variant.playlist.durations,
            source.playlist.durations
        );
        assert_eq!(variant.playlist.discontinuities, 0, "{rung}");
        // Cut at the same keyframes: the same durations, within a frame of
        // the 15 fps rung (the last one ends where each encoder stopped).
        let n = source.playlist.durations.len() - 1;
        for (s, v) in source.playlist.durations[..n]
            .iter()
            .zip(&variant.playlist.durations[..n])
        {
            assert!(
                (s - v).abs() <= 0.07,
                "{rung}: {:?} against the source's {:?}",
                variant.playlist.durations,
                source.playlist.durations
            );
        }
        let first = stack.s3.get(BUCKET, &variant.segment_keys[0]).await;
        let path = stack.dir.join(format!("{rung}.ts"));
        std::fs::write(&path, first).unwrap();
        let height = common::process::run(
            "ffprobe",
            std::process::Command::new("ffprobe")
                .args(["-v", "error", "-select_streams", "v", "-show_entries"])
                .args(["stream=height", "-of", "csv=p=0"])
                .arg(&path),
        );
        // A TS lists its streams under its program too: the first line.
        let height = height.lines().next().unwrap_or_default().trim();
        assert_eq!(height, rung_height(rung).to_string(), "{rung}");
    }
    no_transcoder_left(&stack).await;
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_rendition_restarts_total{rung=\"180p\"}"),
        0
    );
    // The push's events are the source's: its transcoders' sessions send
    // none (no stream.ended or recording.ready for `cam/180p`).
    let events: Vec<String> = wait_until("the push's events", secs(20), millis(200), async || {
        let texts: Vec<String> = std::fs::read_dir(stack.dir.join("state/events"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        let ready = texts.iter().any(|t| t.contains("recording.ready"));
        ready.then_some(texts).ok_or("no recording.ready yet")
    })
    .await;
    let stray: Vec<&String> = events
        .iter()
        .filter(|t| RUNGS.iter().any(|(r, _)| t.contains(&format!("cam/{r}"))))
        .collect();
    assert!(stray.is_empty(), "events of rendition sessions: {stray:?}");
}

fn rung_height(rung: &str) -> &'static u32 {
    &RUNGS.iter().find(|(n, _)| *n == rung).unwrap().1
}

#[tokio::test]
async fn a_killed_transcoder_is_restarted_and_the_source_loses_nothing() {
    let stack = stack("transcode-kill", "");
    let seconds = 20;
    let mut push = stack.push(&stack.sign_push("cam"), seconds);
    wait_for_playlist(
        &stack.s3,
        "cam/180p",
        "index.m3u8",
        &mut push,
        "two segments",
        common::stored::at_least_segments(2),
    )
    .await;
    let port = stack.nginx.rtmp_port();
    let victims = rung_transcoders(port, 180);
    assert_eq!(victims.len(), 1, "{:?}", transcoders(port));
    // SAFETY: kill only sends a signal.
    assert_eq!(unsafe { libc::kill(victims[0] as i32, libc::SIGKILL) }, 0);
    wait_until(
        "the transcoder restarted",
        secs(15),
        millis(200),
        async || {
            let restarts = stack
                .livebucket
                .metric("livebucket_rendition_restarts_total{rung=\"180p\"}");
            let now = rung_transcoders(port, 180);
            (restarts == 1 && now.len() == 1 && now[0] != victims[0])
                .then_some(())
                .ok_or(format!("{restarts} restarts; transcoders {now:?}"))
        },
    )
    .await;
    assert!(push.exit_within(secs(40)).await.success(), "{}", push.log());

    // The source: one session, nothing missing from its start to its end.
    let source = ended_playlist(&stack, "cam", &mut push).await;
    assert_eq!(source.playlist.discontinuities, 0);
    let total: f64 = source.playlist.durations.iter().sum();
    assert!(
        total >= f64::from(seconds) - 2.5,
        "the source holds {total} s of a {seconds} s push: {:?}",
        source.playlist.durations
    );
    // The killed rung: two sessions, valid, the second after a
    // discontinuity; the other rung untouched.
    let killed = ended_playlist(&stack, "cam/180p", &mut push).await;
    assert_eq!(killed.playlist.discontinuities, 1, "{:?}", killed.playlist);
    let other = ended_playlist(&stack, "cam/120p", &mut push).await;
    assert_eq!(other.playlist.discontinuities, 0);
    assert_eq!(other.playlist.uris.len(), source.playlist.uris.len());
    no_transcoder_left(&stack).await;
}

#[tokio::test]
async fn a_refused_push_starts_nothing_and_disabling_the_channel_stops_the_transcoders() {
    let stack = stack("transcode-stop", "");
    let port = stack.nginx.rtmp_port();

    let forged = with_query_param(&stack.sign_push("cam"), "Expires", "1700000000");
    let mut refused = stack.push(&forged, 4);
    assert!(!refused.exit_within(secs(20)).await.success());
    let rejected = |reason: &str| {
        stack.livebucket.metric(&format!(
            "livebucket_push_rejected_total{{reason=\"{reason}\"}}"
        ))
    };
    assert!(rejected("expired") + rejected("bad_signature") >= 1);
    assert!(transcoders(port).is_empty(), "{:?}", transcoders(port));
    assert_eq!(stack.livebucket.metric("livebucket_transcoders_running"), 0);
    // Nobody plays from the internal application without a transcoder's
    // token, even from 127.0.0.1.
    let played = std::process::Command::new("timeout")
        .args(["15", "ffmpeg", "-nostdin", "-loglevel", "error", "-i"])
        .arg(format!(
            "rtmp://127.0.0.1:{port}/hls/0123456789abcdef0123456789abcdef?lbt=guess"
        ))
        .args(["-t", "1", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(!played.status.success());
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_play_refused_total{reason=\"play_unknown_token\"}"),
        1
    );

    oss2_ok(&stack, "create", &[("channel", "cam")]);
    let mut push = stack.push(&stack.sign_push("cam"), 60);
    wait_until(
        "both transcoders running",
        secs(20),
        millis(200),
        async || {
            let running = stack.livebucket.metric("livebucket_transcoders_running");
            let found = transcoders(port);
            (running == 2 && found.len() == 2)
                .then_some(())
                .ok_or(format!("{running} running; processes {found:?}"))
        },
    )
    .await;
    oss2_ok(
        &stack,
        "status",
        &[("channel", "cam"), ("status", "disabled")],
    );
    // nginx asks on_update every 10 s; the push drops then.
    assert!(!push.exit_within(secs(25)).await.success());
    no_transcoder_left(&stack).await;
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_rendition_restarts_total{rung=\"180p\"}")
            + stack
                .livebucket
                .metric("livebucket_rendition_restarts_total{rung=\"120p\"}"),
        0,
        "a transcoder was restarted after its source ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_livebucket_takes_the_transcoders_and_the_restart_brings_them_back() {
    let mut stack = Stack::start_held(
        "transcode-crash",
        &format!("{WINDOW}{}", ladder_toml(RUNGS, "")),
    );
    let seconds = 30;
    let mut push = stack.push(&stack.sign_push("cam"), seconds);
    let push_started = std::time::Instant::now();
    wait_for_playlist(
        &stack.s3,
        "cam/120p",
        "index.m3u8",
        &mut push,
        "a segment",
        common::stored::at_least_segments(1),
    )
    .await;
    let before = transcoder_pids(&stack);
    assert_eq!(
        before.len(),
        2,
        "{:?}",
        transcoders(stack.nginx.rtmp_port())
    );
    // Between two of nginx's on_update calls (every 10 s), which would drop
    // the push while nothing answers.
    tokio::time::sleep_until((push_started + secs(11)).into()).await;
    stack.livebucket.kill9();
    wait_until(
        "the transcoders died with livebucket",
        secs(5),
        millis(100),
        async || {
            let left = transcoder_pids(&stack);
            left.is_empty()
                .then_some(())
                .ok_or(format!("{left:?} still run"))
        },
    )
    .await;
    stack.livebucket.restart();
    wait_until("new transcoders", secs(20), millis(200), async || {
        let now = transcoder_pids(&stack);
        let running = stack.livebucket.metric("livebucket_transcoders_running");
        (running == 2 && now.len() == 2 && now.iter().all(|p| !before.contains(p)))
            .then_some(())
            .ok_or(format!("{running} running; {now:?}"))
    })
    .await;
    assert!(push.exit_within(secs(60)).await.success(), "{}", push.log());

    let source = ended_playlist(&stack, "cam", &mut push).await;
    assert_eq!(source.playlist.discontinuities, 0);
    let total: f64 = source.playlist.durations.iter().sum();
    assert!(
        total >= f64::from(seconds) - 2.5,
        "the source holds {total} s of a {seconds} s push: {:?}",
        source.playlist.durations
    );
    for (rung, _) in RUNGS {
        // The run before the crash, ended; the run after it.
        let variant = ended_playlist(&stack, &format!("cam/{rung}"), &mut push).await;
        assert_eq!(
            variant.playlist.discontinuities, 1,
            "{rung}: {:?}",
            variant.playlist
        );
    }
    no_transcoder_left(&stack).await;
}

/// A transcoder that falls behind real time (stopped for a while, as a
/// starved one is) is killed and its rung dropped; the source and the
/// other rung go on untouched.
#[tokio::test]
async fn a_lagging_transcoder_is_dropped_and_the_rest_goes_on() {
    let stack = stack("transcode-lag", "max_lag_secs = 3\n");
    let seconds = 20;
    let mut push = stack.push(&stack.sign_push("cam"), seconds);
    wait_for_playlist(
        &stack.s3,
        "cam/180p",
        "index.m3u8",
        &mut push,
        "a segment",
        common::stored::at_least_segments(1),
    )
    .await;
    let port = stack.nginx.rtmp_port();
    let victim = *rung_transcoders(port, 180)
        .first()
        .expect("the 180p transcoder") as i32;
    // Its input piles up meanwhile (TCP buffers): resumed, it reports an
    // output time 6 s behind the clock.
    // SAFETY: kill only sends signals.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGSTOP) }, 0);
    tokio::time::sleep(secs(6)).await;
    assert_eq!(unsafe { libc::kill(victim, libc::SIGCONT) }, 0);
    wait_until(
        "the rung dropped for lag",
        secs(15),
        millis(200),
        async || {
            let dropped = stack
                .livebucket
                .metric("livebucket_rendition_dropped_total{reason=\"lag\"}");
            let left = transcoders(port);
            (dropped == 1 && left.len() == 1 && left[0].1.contains("scale=-2:120"))
                .then_some(())
                .ok_or(format!("{dropped} dropped; transcoders {left:?}"))
        },
    )
    .await;
    assert!(push.exit_within(secs(40)).await.success(), "{}", push.log());

    let source = ended_playlist(&stack, "cam", &mut push).await;
    assert_eq!(source.playlist.discontinuities, 0);
    let other = ended_playlist(&stack, "cam/120p", &mut push).await;
    assert_eq!(other.playlist.discontinuities, 0);
    assert_eq!(other.playlist.uris.len(), source.playlist.uris.len());
    // The dropped rung's session ended with what it had stored; no restart.
    let dropped = ended_playlist(&stack, "cam/180p", &mut push).await;
    assert_eq!(dropped.playlist.discontinuities, 0);
    assert!(dropped.playlist.uris.len() < source.playlist.uris.len());
    assert_eq!(
        stack
            .livebucket
            .metric("livebucket_rendition_restarts_total{rung=\"180p\"}"),
        0
    );
    no_transcoder_left(&stack).await;
}
