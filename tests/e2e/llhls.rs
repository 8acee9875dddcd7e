//! Low-Latency HLS from the bucket, end to end (real nginx-rtmp, ffmpeg,
//! Garage): `/play` serves the LL playlist of a live channel, checked tag
//! by tag on every reload (`common::hlscheck::check_ll_playlist`); parts
//! and segments keep their numbers and URIs across reloads; part objects
//! hold exactly the stored fragment's bytes (after the PAT and PMT put in
//! front of every part but a segment's first); blocking reloads are
//! released when their part lands and refused when too far ahead; delta
//! updates skip what the rules allow; the bucket's own playlist stays plain;
//! part objects are gone after the session; and a `kill -9` mid-stream
//! loses nothing while the LL playlist carries on.

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bucket_check::{self, FinalPlaylist};
use common::fragments::{Ledger, Recorder};
use common::hlscheck::{CheckedLl, check_ll_playlist};
use common::playlist_watch::PlaylistWatch;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_livebucket");
const CHANNEL: &str = "cam";
/// LL on with half-second parts. Eight 2 s segments in the window: more
/// than the 12 s `CAN-SKIP-UNTIL` of a 2 s target, so a delta update has
/// something to skip.
const LL: &str = "[live]\nlow_latency = true\npart_target_ms = 500\ntarget_duration_secs = 2\nwindow_segments = 8\n";
/// The size of the PAT and PMT put in front of a part.
const PSI: usize = 2 * 188;

/// A `/play` URL for the channel's live playlist, valid for ten minutes.
fn play_url(stack: &Stack) -> String {
    let out = Command::new(BIN)
        .args(["sign", "play", "--config"])
        .arg(stack.livebucket.config_path())
        .args([
            "--bucket",
            BUCKET,
            "--key-name",
            &format!("{CHANNEL}/index.m3u8"),
        ])
        .args([
            "--via-livebucket",
            &stack.livebucket.url(),
            "--expires-in",
            "600",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run livebucket sign play");
    assert!(out.status.success(), "sign play: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// GETs the LL playlist (with `extra` query parameters) and checks it.
async fn ll(url: &str, extra: &str) -> (u16, Result<CheckedLl, String>, String) {
    let r = httpc::get(&format!("{url}{extra}")).await;
    let text = r.text();
    let checked = if r.status == 200 {
        check_ll_playlist(&text)
    } else {
        Err(format!("status {}", r.status))
    };
    (r.status, checked, text)
}

/// Waits until the LL playlist lists parts of a segment in progress.
async fn ll_with_tail(url: &str, timeout: Duration) -> CheckedLl {
    wait_until(
        "an LL playlist with parts in progress",
        timeout,
        millis(200),
        async || {
            let (status, checked, text) = ll(url, "").await;
            match checked {
                Ok(c) if !c.tail.is_empty() => Ok(c),
                Ok(_) => Err(format!("no parts in progress yet:\n{text}")),
                Err(e) => Err(format!("{status}: {e}\n{text}")),
            }
        },
    )
    .await
}

/// What reloads have said so far: each segment's URI and each part's URI
/// and duration by (media sequence, part index). A later reload must agree.
#[derive(Default)]
struct Numbering {
    segments: BTreeMap<u64, String>,
    parts: BTreeMap<(u64, usize), (String, String)>,
}

impl Numbering {
    fn check(&mut self, c: &CheckedLl) -> Result<(), String> {
        let mut errs = Vec::new();
        for (i, uri) in c.base.uris.iter().enumerate() {
            let msn = c.first_msn() + i as u64;
            let old = self.segments.entry(msn).or_insert_with(|| uri.clone());
            if old != uri {
                errs.push(format!("segment {msn} was {old}, now {uri}"));
            }
        }
        let listed = c
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| (c.first_msn() + i as u64, p))
            .chain(std::iter::once((c.tail_msn(), &c.tail)));
        for (msn, parts) in listed {
            for (j, p) in parts.iter().enumerate() {
                let now = (p.uri.clone(), format!("{:.3}", p.duration));
                let old = self.parts.entry((msn, j)).or_insert_with(|| now.clone());
                if *old != now {
                    errs.push(format!("part {msn}.{j} was {old:?}, now {now:?}"));
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n"))
        }
    }
}

/// Whether the first video packet of this TS (after its PAT/PMT) starts a
/// keyframe: its adaptation field's random access indicator is set.
fn starts_with_keyframe(ts: &[u8]) -> bool {
    let mut pmt = None;
    let mut video = None;
    for p in ts.chunks_exact(188) {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let pusi = p[1] & 0x40 != 0;
        let has_af = p[3] & 0x20 != 0;
        let payload = if has_af { 5 + usize::from(p[4]) } else { 4 };
        if pid == 0 && pusi {
            let s = &p[payload + 1 + usize::from(p[payload])..];
            pmt = Some((u16::from(s[10] & 0x1f) << 8) | u16::from(s[11]));
        } else if Some(pid) == pmt && pusi && video.is_none() {
            let s = &p[payload + 1 + usize::from(p[payload])..];
            let info = usize::from(u16::from(s[10] & 0x0f) << 8 | u16::from(s[11]));
            let mut es = &s[12 + info..];
            while es.len() >= 5 && video.is_none() {
                if es[0] == 0x1b {
                    video = Some((u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]));
                }
                let n = usize::from(u16::from(es[3] & 0x0f) << 8 | u16::from(es[4]));
                es = &es[(5 + n).min(es.len())..];
            }
        } else if Some(pid) == video && pusi {
            return has_af && p[4] > 0 && p[5] & 0x40 != 0;
        }
    }
    false
}

/// The LL playlist on `/play`, checked on every reload for 20 s of a
/// stream, with its parts' bytes, blocking reloads, a delta update, the
/// bucket's plain playlist and the parts' cleanup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_playlist_on_play_from_the_bucket() {
    let stack = Stack::start_with("llhls", LL);
    let mut push = stack.push(&stack.sign_push(CHANNEL), 34);
    let url = play_url(&stack);

    // Every reload, tag by tag, numbering kept.
    let first = ll_with_tail(&url, secs(30)).await;
    let mut numbering = Numbering::default();
    numbering.check(&first).unwrap();
    let mut reloads = 0;
    let mut last = first;
    let watch_until = Instant::now() + secs(8);
    while Instant::now() < watch_until {
        let (status, checked, text) = ll(&url, "").await;
        let c = checked.unwrap_or_else(|e| panic!("reload {reloads} ({status}): {e}\n{text}"));
        numbering
            .check(&c)
            .unwrap_or_else(|e| panic!("reload {reloads} renumbered:\n{e}\n{text}"));
        assert!(c.tail_msn() >= last.tail_msn(), "went back:\n{text}");
        last = c;
        reloads += 1;
        tokio::time::sleep(millis(100)).await;
    }
    let segments_with_parts = numbering
        .segments
        .keys()
        .filter(|msn| numbering.parts.contains_key(&(**msn, 0)))
        .count();
    assert!(
        segments_with_parts >= 3,
        "only {segments_with_parts} segments had parts"
    );

    // A blocking reload for the next part waits for it, and is released
    // as soon as it lands.
    for _ in 0..4 {
        let (_, now, _) = ll(&url, "").await;
        let now = now.unwrap();
        let (msn, part) = (now.tail_msn(), now.tail.len());
        let asked = Instant::now();
        let (status, next, text) = ll(&url, &format!("&_HLS_msn={msn}&_HLS_part={part}")).await;
        let took = asked.elapsed();
        let next = next.unwrap_or_else(|e| panic!("blocking reload ({status}): {e}\n{text}"));
        numbering.check(&next).unwrap();
        let has = next.tail_msn() > msn || next.tail.len() > part;
        assert!(has, "released without part {msn}.{part}:\n{text}");
        eprintln!("blocking reload for {msn}.{part} answered in {took:?}");
        assert!(
            took < secs(3),
            "part {msn}.{part} took {took:?}: not released when it landed"
        );
    }

    // The preload hint names the next part: it answers when the part lands,
    // with a redirect to the URI the next playlist lists for it.
    let (_, now, text) = ll(&url, "").await;
    let now = now.unwrap();
    let hint = now
        .preload_hint
        .clone()
        .unwrap_or_else(|| panic!("no preload hint:\n{text}"));
    let (msn, part) = (now.tail_msn(), now.tail.len());
    let base = &url[..url[..url.find('?').unwrap()].rfind('/').unwrap() + 1];
    let hinted = httpc::get(&format!("{base}{hint}")).await;
    let (_, next, text) = ll(&url, &format!("&_HLS_msn={msn}&_HLS_part={part}")).await;
    let next = next.unwrap();
    let listed = if next.tail_msn() == msn {
        next.tail.get(part)
    } else {
        next.parts
            .get((msn - next.first_msn()) as usize)
            .and_then(|p| p.get(part))
    };
    eprintln!("preload hint for {msn}.{part}: {}", hinted.status);
    match listed {
        Some(p) => {
            assert_eq!(
                hinted.status,
                302,
                "hint for {msn}.{part}: {}",
                hinted.text()
            );
            assert_eq!(hinted.header("location"), Some(p.uri.as_str()));
        }
        // The segment ended before that part: the hint is gone.
        None => assert_eq!(hinted.status, 404, "hint for {msn}.{part}:\n{text}"),
    }
    let far = httpc::get(&format!("{url}&part={}.0", now.tail_msn() + 3)).await;
    assert_eq!(far.status, 400, "a hint too far ahead: {}", far.text());

    // Too far ahead, or malformed: refused at once.
    let (_, now, _) = ll(&url, "").await;
    let now = now.unwrap();
    for (query, why) in [
        (
            format!("&_HLS_msn={}", now.tail_msn() + 3),
            "three segments ahead",
        ),
        (
            format!(
                "&_HLS_msn={}&_HLS_part={}",
                now.tail_msn(),
                now.tail.len() + 8
            ),
            "eight parts ahead",
        ),
        ("&_HLS_part=1".to_owned(), "a part without a segment"),
        ("&_HLS_msn=x".to_owned(), "not a number"),
    ] {
        let asked = Instant::now();
        let r = httpc::get(&format!("{url}{query}")).await;
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        assert!(asked.elapsed() < secs(1), "{why} was held");
    }

    // The part objects are the stored fragment's bytes: a segment whose
    // object and parts are all listed.
    let (_, now, text) = ll(&url, "").await;
    let now = now.unwrap();
    let (i, parts) = now
        .parts
        .iter()
        .enumerate()
        .rev()
        .find(|(_, p)| !p.is_empty())
        .unwrap_or_else(|| panic!("no stored segment with parts:\n{text}"));
    let segment = httpc::get(&now.base.uris[i]).await;
    assert_eq!(segment.status, 200, "segment: {}", segment.text());
    let mut joined = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let r = httpc::get(&p.uri).await;
        assert_eq!(r.status, 200, "part {j}: {}", r.text());
        if p.independent {
            assert!(
                starts_with_keyframe(&r.body),
                "INDEPENDENT part {j} starts without a keyframe"
            );
        }
        if j == 0 {
            joined.extend_from_slice(&r.body);
        } else {
            assert_eq!(&r.body[..PSI], &segment.body[..PSI], "part {j}'s PAT/PMT");
            joined.extend_from_slice(&r.body[PSI..]);
        }
    }
    assert!(
        parts[0].independent,
        "a segment's first part starts at its keyframe"
    );
    assert!(
        joined == segment.body,
        "the parts are not the segment's bytes"
    );

    // A delta update skips the segments that end before CAN-SKIP-UNTIL
    // from the end, and lists the rest as the full playlist does.
    let (full, delta) = wait_until(
        "a delta update with segments skipped",
        secs(20),
        millis(300),
        async || {
            let (_, now, _) = ll(&url, "").await;
            let now = now.map_err(|e| e.to_string())?;
            // Both for the part the playlist already has: answered at once,
            // from the same model unless a part landed in between.
            let q = format!(
                "&_HLS_msn={}&_HLS_part={}",
                now.tail_msn(),
                now.tail.len().saturating_sub(1)
            );
            let (_, full, _) = ll(&url, &q).await;
            let (_, delta, text) = ll(&url, &format!("{q}&_HLS_skip=YES")).await;
            let (full, delta) = (full?, delta.map_err(|e| format!("{e}\n{text}"))?);
            if (full.tail_msn(), full.tail.len()) != (delta.tail_msn(), delta.tail.len()) {
                return Err("a part landed in between".to_owned());
            }
            if delta.skipped == 0 {
                return Err(format!("nothing skipped yet:\n{text}"));
            }
            Ok((full, delta))
        },
    )
    .await;
    let total: f64 =
        full.base.durations.iter().sum::<f64>() + full.tail.iter().map(|p| p.duration).sum::<f64>();
    let mut end = 0.0;
    let expected = full
        .base
        .durations
        .iter()
        .take_while(|d| {
            end += **d;
            total - end >= full.can_skip_until - 1e-6
        })
        .count() as u64;
    assert_eq!(delta.skipped, expected, "SKIPPED-SEGMENTS");
    assert_eq!(delta.base.uris[..], full.base.uris[expected as usize..]);
    assert_eq!(delta.tail, full.tail);

    // The bucket's own playlist knows nothing of parts.
    let stored =
        String::from_utf8(stack.s3.get(BUCKET, &format!("{CHANNEL}/index.m3u8")).await).unwrap();
    hlscheck::check_playlist(&stored).unwrap();
    for tag in [
        "#EXT-X-PART",
        "#EXT-X-PART-INF",
        "CAN-BLOCK-RELOAD",
        "#EXT-X-SKIP",
        "#EXT-X-PRELOAD-HINT",
    ] {
        assert!(
            !stored.contains(tag),
            "the stored playlist has {tag}:\n{stored}"
        );
    }
    assert!(
        stack
            .s3
            .list(BUCKET, &format!("{CHANNEL}/.ll/"))
            .await
            .len()
            >= 4,
        "part objects are under {CHANNEL}/.ll/"
    );

    // After the session, the playlist on /play ends without parts (the LL
    // form, then the stored one once the session is forgotten) and the part
    // objects go.
    let status = push.exit_within(secs(40)).await;
    assert!(status.success(), "push failed:\n{}", push.log());
    wait_until(
        "the playlist on /play to end",
        secs(30),
        millis(300),
        async || {
            let r = httpc::get(&url).await;
            let text = r.text();
            match hlscheck::check_playlist(&text) {
                Ok(c) if c.ended && !text.contains("#EXT-X-PART:") => Ok(()),
                Ok(_) => Err(format!("not ended, or with parts:\n{text}")),
                Err(e) => Err(format!("{}: {e}\n{text}", r.status)),
            }
        },
    )
    .await;
    wait_until("no part object left", secs(30), millis(500), async || {
        let left = stack.s3.list(BUCKET, &format!("{CHANNEL}/.ll/")).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}

/// `kill -9` of livebucket mid-stream with LL on: every fragment is still
/// stored exactly once, and after the restart the LL playlist carries on
/// with the same numbering (parts re-cut from the fragment being written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_the_ll_playlist_recovers() {
    let config = LL.replace("window_segments = 8", "window_segments = 200");
    let mut stack = Stack::start_with("llhls-crash", &config);
    let ledger = Ledger::new(stack.dir.join("nginx-wrote"));
    let _recorder = Recorder::start(&stack.hls_dir, &ledger);
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, CHANNEL);
    let mut push = stack.push(&stack.sign_push(CHANNEL), 30);
    let started = Instant::now();
    let url = play_url(&stack);

    let mut numbering = Numbering::default();
    let before = ll_with_tail(&url, secs(30)).await;
    numbering.check(&before).unwrap();
    // Between nginx's on_update calls (every 10 s): a missed one would end
    // the stream.
    tokio::time::sleep_until((started + secs(11)).into()).await;
    let (_, last, _) = ll(&url, "").await;
    let last = last.unwrap();
    numbering.check(&last).unwrap();
    tokio::task::block_in_place(|| stack.livebucket.kill9());
    tokio::time::sleep(secs(2)).await;
    tokio::task::block_in_place(|| stack.livebucket.restart());

    let after = wait_until(
        "the LL playlist past the crash",
        secs(20),
        millis(200),
        async || {
            let (status, c, text) = ll(&url, "").await;
            let c = c.map_err(|e| format!("{status}: {e}\n{text}"))?;
            if c.tail_msn() > last.tail_msn() && !c.tail.is_empty() {
                Ok(c)
            } else {
                Err(format!("not past segment {} yet:\n{text}", last.tail_msn()))
            }
        },
    )
    .await;
    numbering
        .check(&after)
        .unwrap_or_else(|e| panic!("renumbered across the restart:\n{e}"));
    // The fragment being written at the restart is re-cut from its start
    // (several parts at once): once stored, it lists all its parts.
    let resumed = after.tail_msn();
    wait_until(
        "the resumed segment stored with its parts",
        secs(15),
        millis(200),
        async || {
            let (status, c, text) = ll(&url, "").await;
            let c = c.map_err(|e| format!("{status}: {e}\n{text}"))?;
            numbering
                .check(&c)
                .map_err(|e| format!("renumbered: {e}"))?;
            match resumed
                .checked_sub(c.first_msn())
                .and_then(|i| c.parts.get(i as usize))
            {
                Some(parts) if !parts.is_empty() => Ok(()),
                _ => Err(format!(
                    "segment {resumed} not stored with parts yet:\n{text}"
                )),
            }
        },
    )
    .await;

    let status = push.exit_within(secs(60)).await;
    assert!(status.success(), "push failed:\n{}", push.log());
    watch
        .wait_for("#EXT-X-ENDLIST", secs(60), |v| {
            if v.playlist.ended {
                Ok(())
            } else {
                Err("not ended".into())
            }
        })
        .await;
    // Part objects are gone before the bucket is compared with what nginx
    // wrote (they are not fragments).
    wait_until("no part object left", secs(30), millis(500), async || {
        let left = stack.s3.list(BUCKET, &format!("{CHANNEL}/.ll/")).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    let observed = watch.finish().await;
    let stored = bucket_check::assert_bucket_matches(
        &ledger,
        &stack.s3,
        CHANNEL,
        &observed,
        FinalPlaylist::ListsAll,
    )
    .await;
    assert!(
        stored.len() >= 12,
        "a 30 s push stored only {}",
        stored.len()
    );
}

/// S3 down for 6 s mid-stream with LL on: part uploads fail fast and are
/// not listed, every LL playlist served meanwhile stays valid and keeps its
/// numbering, parts come back after the outage, and every fragment is
/// still stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_costs_parts_never_fragments() {
    let config = format!(
        "[upload]\nmax_backoff_secs = 2\n{}",
        LL.replace("window_segments = 8", "window_segments = 200")
    );
    let mut stack = Stack::start_with("llhls-outage", &config);
    let ledger = Ledger::new(stack.dir.join("nginx-wrote"));
    let _recorder = Recorder::start(&stack.hls_dir, &ledger);
    let watch = PlaylistWatch::start(&stack.s3, BUCKET, CHANNEL);
    let mut push = stack.push(&stack.sign_push(CHANNEL), 30);
    let started = Instant::now();
    let url = play_url(&stack);

    let mut numbering = Numbering::default();
    numbering
        .check(&ll_with_tail(&url, secs(30)).await)
        .unwrap();
    // Between nginx's on_update calls, as in the crash test.
    tokio::time::sleep_until((started + secs(11)).into()).await;
    tokio::task::block_in_place(|| stack.store.stop());
    let outage = Instant::now();
    let mut during = 0;
    while outage.elapsed() < secs(6) {
        let (status, c, text) = ll(&url, "").await;
        let c = c.unwrap_or_else(|e| panic!("during the outage ({status}): {e}\n{text}"));
        numbering
            .check(&c)
            .unwrap_or_else(|e| panic!("renumbered during the outage:\n{e}"));
        during = c.tail_msn();
        tokio::time::sleep(millis(200)).await;
    }
    tokio::task::block_in_place(|| stack.store.start_again());
    let after = wait_until("parts past the outage", secs(30), millis(200), async || {
        let (status, c, text) = ll(&url, "").await;
        let c = c.map_err(|e| format!("{status}: {e}\n{text}"))?;
        numbering
            .check(&c)
            .map_err(|e| format!("renumbered: {e}"))?;
        if c.tail_msn() > during && !c.tail.is_empty() {
            Ok(c)
        } else {
            Err(format!("no parts past segment {during} yet:\n{text}"))
        }
    })
    .await;
    assert!(after.tail_msn() > during);

    let status = push.exit_within(secs(60)).await;
    assert!(status.success(), "push failed:\n{}", push.log());
    watch
        .wait_for("#EXT-X-ENDLIST", secs(60), |v| {
            if v.playlist.ended {
                Ok(())
            } else {
                Err("not ended".into())
            }
        })
        .await;
    wait_until("no part object left", secs(30), millis(500), async || {
        let left = stack.s3.list(BUCKET, &format!("{CHANNEL}/.ll/")).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    let observed = watch.finish().await;
    let stored = bucket_check::assert_bucket_matches(
        &ledger,
        &stack.s3,
        CHANNEL,
        &observed,
        FinalPlaylist::ListsAll,
    )
    .await;
    assert!(
        stored.len() >= 12,
        "a 30 s push stored only {}",
        stored.len()
    );
    let failed = stack.livebucket.metric("livebucket_parts_failed_total");
    assert!(failed > 0, "no part failed during a 6 s outage");
}
