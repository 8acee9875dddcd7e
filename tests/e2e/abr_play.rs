//! Playing a channel with renditions (issue 25's playback half) against the
//! real pipeline, Garage and livebucket's HTTP surface, without
//! transcoders: the test stands in for the admission of a push with a
//! ladder by leaving, as a crash would, the records of a source session
//! (with `renditions`) and of one rung's rendition session (`variant`) in
//! the state directory, with the fragments and playlists nginx wrote in
//! their HLS directories. livebucket recovers them at start, stores every
//! fragment under `CHANNEL/` and `CHANNEL/360p/`, and writes
//! `CHANNEL/master.m3u8`.
//!
//! Checked, for a push whose sessions had ended: the stored master tag by
//! tag (rates measured from the stored fragments, the probe's resolution,
//! frame rate and codecs); `/play` of the master with each variant a signed
//! play URL that plays, down to a segment's bytes; the VOD master of the
//! range with a signed VOD URL per variant, each answering exactly that
//! variant's fragments. For a live push: no master until every variant has
//! a stored fragment, then the rung's live window under its play URL.

use std::path::Path;

use crate::common;
use common::fake_nginx::make_ts;
use common::hlscheck;
use common::httpc;
use common::livebucket::{ConfigParams, Livebucket, config_toml, sign_play};
use common::store::{StoreKind, TestStore};
use common::*;

const BUCKET: &str = "abr";
const CHANNEL: &str = "cam";
const SOURCE_ID: &str = "5ca1ab1e000000000000000000000001";
const RUNG_ID: &str = "5ca1ab1e000000000000000000000002";

/// One session left behind by a previous run: its record (marked ended
/// unless `live`) and nginx's directory with `fragments` (name, bytes),
/// listed at 2 s each.
fn seed_session(
    state: &Path,
    hls: &Path,
    meta: serde_json::Value,
    fragments: &[(String, Vec<u8>)],
    live: bool,
) {
    let id = meta["id"].as_str().unwrap();
    let sdir = state.join("sessions").join(id);
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(sdir.join("meta.json"), meta.to_string()).unwrap();
    if !live {
        std::fs::write(sdir.join("ended"), b"").unwrap();
    }
    let dir = hls.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut playlist = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-TARGETDURATION:2\n\n",
    );
    for (name, bytes) in fragments {
        std::fs::write(dir.join(name), bytes).unwrap();
        playlist += &format!("#EXTINF:2.000,\n{name}\n");
    }
    std::fs::write(dir.join("index.m3u8"), playlist).unwrap();
}

/// The value of attribute `name` in an `#EXT-X-STREAM-INF:` line.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let list = tag.split_once(':')?.1;
    // CODECS is the only quoted value and comes last.
    let (plain, codecs) = list.split_once(",CODECS=").unwrap_or((list, ""));
    if name == "CODECS" {
        return (!codecs.is_empty()).then(|| codecs.trim_matches('"'));
    }
    plain
        .split(',')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// The URI lines of a playlist.
fn uris(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// livebucket's config for the test: no nginx, a one-rung ladder.
fn config(store: &TestStore, key: &common::garage::Key, state: &Path, hls: &Path) -> String {
    config_toml(&ConfigParams {
        listen: free_addr(),
        stat_url: None,
        state_dir: state,
        hls_dir: hls,
        relay_url: "rtmp://127.0.0.1:1935/hls",
        s3_endpoint: store.endpoint(),
        keys: &[(key, &[BUCKET])],
        extra: "[upload]\nmax_backoff_secs = 2\n\n\
                [[renditions.rungs]]\nname = \"360p\"\nheight = 360\nvideo_kbps = 400\n",
    })
}

/// The source and rung session records of a push started at `started_ms`.
fn push_records(key_id: &str, started_ms: u64) -> (serde_json::Value, serde_json::Value) {
    let session = |id: &str, channel: &str| {
        serde_json::json!({
            "id": id, "bucket": BUCKET, "channel": channel, "playlist": "index.m3u8",
            "key_id": key_id, "clientid": "1", "name": CHANNEL, "addr": "127.0.0.1",
            "started_ms": started_ms, "low_latency": false,
        })
    };
    let mut src = session(SOURCE_ID, CHANNEL);
    src["renditions"] = serde_json::json!(["360p"]);
    let mut rung = session(RUNG_ID, &format!("{CHANNEL}/360p"));
    rung["variant"] = serde_json::json!({"of": SOURCE_ID, "channel": CHANNEL, "rung": "360p"});
    (src, rung)
}

async fn get_ok(url: &str) -> httpc::Response {
    let resp = httpc::get(url).await;
    assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_push_with_a_rung_gets_a_master_that_plays_and_a_vod_master() {
    let dir = TestDir::new("abr-play");
    let mut store = TestStore::start(StoreKind::Garage, &dir);
    store.create_bucket(BUCKET);
    let key = store.key().clone();
    let s3 = store.s3();
    let (hls, state) = (dir.subdir("hls"), dir.subdir("state"));

    // Two aligned fragments per variant, as nginx cuts them (same names:
    // the transcoder keeps the source's timestamps).
    let source = [
        make_ts(&dir, "testsrc=size=320x180:rate=25", 2),
        make_ts(&dir, "smptebars=size=320x180:rate=25", 2),
    ];
    let rung = [
        make_ts(&dir, "testsrc=size=160x90:rate=25", 2),
        make_ts(&dir, "smptebars=size=160x90:rate=25", 2),
    ];
    let first_ms = (unix_now() - 60) * 1000;
    let names = [format!("{first_ms}.ts"), format!("{}.ts", first_ms + 2000)];
    let (src_meta, rung_meta) = push_records(&key.id, first_ms);
    let pair = |ts: &[Vec<u8>; 2]| -> Vec<(String, Vec<u8>)> {
        names.iter().cloned().zip(ts.iter().cloned()).collect()
    };
    seed_session(&state, &hls, src_meta, &pair(&source), false);
    seed_session(&state, &hls, rung_meta, &pair(&rung), false);
    let lb = Livebucket::start(&dir, &config(&store, &key, &state, &hls));

    // Both sessions end (recovered as ended): their playlists get ENDLIST,
    // their manifests are stored, and the master is written.
    let ended = |text: &str| text.contains("#EXT-X-ENDLIST");
    wait_until(
        "both variants stored and ended",
        secs(60),
        millis(200),
        async || {
            for channel in [CHANNEL.to_owned(), format!("{CHANNEL}/360p")] {
                let keys = s3.list(BUCKET, &format!("{channel}/")).await;
                let playlist = keys
                    .iter()
                    .any(|(k, _)| *k == format!("{channel}/index.m3u8"));
                if !playlist {
                    return Err(format!("no {channel}/index.m3u8 yet"));
                }
                let text =
                    String::from_utf8(s3.get(BUCKET, &format!("{channel}/index.m3u8")).await)
                        .unwrap();
                if !ended(&text) || uris(&text).len() != 2 {
                    return Err(format!("{channel}: {text}"));
                }
                let manifests = s3
                    .list(BUCKET, &format!(".livebucket/index/{channel}/"))
                    .await;
                if manifests.is_empty() {
                    return Err(format!("no manifest of {channel} yet"));
                }
            }
            let keys = s3.list(BUCKET, &format!("{CHANNEL}/master.m3u8")).await;
            if keys.is_empty() {
                return Err("no master yet".to_owned());
            }
            Ok(())
        },
    )
    .await;

    // The stored master, tag by tag.
    let master =
        String::from_utf8(s3.get(BUCKET, &format!("{CHANNEL}/master.m3u8")).await).unwrap();
    let lines: Vec<&str> = master.lines().collect();
    assert_eq!(
        lines[..3],
        ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"],
        "{master}"
    );
    assert_eq!(lines.len(), 7, "two variants: {master}");
    assert_eq!(lines[4], "index.m3u8", "the source first: {master}");
    assert_eq!(lines[6], "360p/index.m3u8", "{master}");
    // Rates from what was stored: bytes × 8 / 2 s.
    let bps = |ts: &[Vec<u8>; 2]| ts.iter().map(|t| t.len() as u64 * 4).collect::<Vec<_>>();
    for (tag, ts, size) in [(lines[3], &source, "320x180"), (lines[5], &rung, "160x90")] {
        assert!(tag.starts_with("#EXT-X-STREAM-INF:"), "{tag}");
        let rates = bps(ts);
        let peak = rates.iter().max().unwrap().to_string();
        let average = (rates.iter().sum::<u64>() / 2).to_string();
        assert_eq!(attr(tag, "BANDWIDTH"), Some(peak.as_str()), "{tag}");
        assert_eq!(
            attr(tag, "AVERAGE-BANDWIDTH"),
            Some(average.as_str()),
            "{tag}"
        );
        assert_eq!(attr(tag, "RESOLUTION"), Some(size), "{tag}");
        assert_eq!(attr(tag, "FRAME-RATE"), Some("25.000"), "{tag}");
        let codecs = attr(tag, "CODECS").unwrap_or_default();
        assert!(
            codecs.starts_with("avc1.") && codecs.len() == "avc1.64001e".len() + ",mp4a.40.2".len(),
            "{tag}"
        );
        assert!(codecs.ends_with(",mp4a.40.2"), "{tag}");
    }

    // /play of the master: every variant a signed play URL with the
    // master's expiry, stable across reloads, each of which plays.
    let url = sign_play(
        lb.config_path(),
        BUCKET,
        &format!("{CHANNEL}/master.m3u8"),
        &lb.url(),
    );
    let signed = get_ok(&url).await.text();
    assert_eq!(signed, get_ok(&url).await.text(), "stable across reloads");
    let expires = common::livebucket::query_param(&url, "Expires").unwrap();
    let base = url.split_once("master.m3u8").unwrap().0;
    let variants = uris(&signed);
    assert_eq!(variants.len(), 2, "{signed}");
    assert!(variants[0].starts_with("index.m3u8?"), "{signed}");
    assert!(variants[1].starts_with("360p/index.m3u8?"), "{signed}");
    for (uri, ts) in variants.iter().zip([&source, &rung]) {
        assert_eq!(
            common::livebucket::query_param(uri, "Expires").as_deref(),
            Some(expires.as_str())
        );
        let playlist = get_ok(&format!("{base}{uri}")).await.text();
        assert!(ended(&playlist), "{playlist}");
        if let Err(e) = hlscheck::check_playlist(&playlist) {
            panic!("{uri} is not a valid media playlist: {e}\n{playlist}");
        }
        let segments = uris(&playlist);
        assert_eq!(segments.len(), 2, "{playlist}");
        let bytes = get_ok(segments[1]).await.body;
        assert_eq!(bytes, ts[1], "the variant's second segment");
    }
    // A tampered variant URL is refused.
    let forged = format!("{base}{}", variants[1].replace("360p/", "720p/"));
    assert_eq!(httpc::get(&forged).await.status, 403);

    // VOD of the push: a master of VOD URLs, one per variant.
    let (start, end) = (first_ms / 1000 - 10, first_ms / 1000 + 30);
    let sign_vod = |extra: &[&str]| {
        let out = std::process::Command::new(common::livebucket::BIN)
            .args(["sign", "vod", "--config"])
            .arg(lb.config_path())
            .args(["--bucket", BUCKET, "--channel", CHANNEL])
            .args(["--start", &start.to_string(), "--end", &end.to_string()])
            .args(["--expires-in", "600", "--via-livebucket", &lb.url()])
            .args(extra)
            .output()
            .unwrap();
        let url = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(url.starts_with("http://"), "sign vod: {out:?}");
        url
    };
    let vod_url = sign_vod(&[]);
    let vod = get_ok(&vod_url).await.text();
    let vod_variants = uris(&vod);
    assert_eq!(vod_variants.len(), 2, "{vod}");
    assert!(vod_variants[0].contains("&variant=source&"), "{vod}");
    assert!(vod_variants[1].contains("&variant=360p&"), "{vod}");
    // Each variant's attributes are the stored master's.
    let vod_tags: Vec<&str> = vod
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF"))
        .collect();
    assert_eq!(vod_tags, [lines[3], lines[5]], "{vod}");
    let vod_base = vod_url.split_once("vod?").unwrap().0;
    for (uri, ts) in vod_variants.iter().zip([&source, &rung]) {
        let playlist = get_ok(&format!("{vod_base}{uri}")).await.text();
        assert!(ended(&playlist), "{playlist}");
        if let Err(e) = hlscheck::check_playlist(&playlist) {
            panic!("{uri} is not a valid media playlist: {e}\n{playlist}");
        }
        let segments = uris(&playlist);
        let mut got = Vec::new();
        for s in &segments {
            got.push(get_ok(s).await.body);
        }
        // Exactly the variant's own fragments, in order (a rung's never
        // count as the source's: the listings are delimited).
        assert_eq!(got, ts.to_vec(), "the fragments of {uri}");
    }
    // One variant's media playlist asked for directly (sign vod --variant).
    let direct = get_ok(&sign_vod(&["--variant", "360p"])).await.text();
    assert!(ended(&direct) && uris(&direct).len() == 2, "{direct}");
    let bad = sign_vod(&["--variant", "360p"]).replace("variant=360p", "variant=720p");
    assert_eq!(httpc::get(&bad).await.status, 403, "the variant is signed");
    drop(lb);
}
