//! Tests of the playlist checker itself: valid playlists pass, and each
//! violation it claims to catch is caught. A checker that accepts anything
//! would make every end-to-end playlist assertion meaningless.

#[path = "e2e/common/hlscheck/mod.rs"]
#[allow(
    dead_code,
    reason = "the checker's own tests read part of what it returns; the e2e binary uses all of it"
)]
mod hlscheck;

use hlscheck::align::{FRAME_30FPS, check_alignment, first_video_pts};
use hlscheck::master::{CheckedMaster, check_bandwidth, check_master};
use hlscheck::{CheckedPlaylist, check_playlist, check_reload};

const LIVE: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:3
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:2
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2024-11-25T22:44:35.123Z
#EXTINF:2.002,
s/10.ts
#EXTINF:2.500,
s/11.ts
#EXT-X-DISCONTINUITY
#EXTINF:2.000,
s/12.ts
#EXTINF:2.000,
s/13.ts
";

const VOD: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXTINF:2.000,
a.ts
#EXTINF:1.499,
b.ts
#EXT-X-ENDLIST
";

fn ok(text: &str) -> CheckedPlaylist {
    match check_playlist(text) {
        Ok(c) => c,
        Err(e) => panic!("rejected:\n{e}\n--- playlist ---\n{text}"),
    }
}

/// `text` is rejected with a message containing `needle`.
fn rejected(text: &str, needle: &str) {
    match check_playlist(text) {
        Ok(c) => panic!("accepted ({c:?}), expected {needle:?}:\n{text}"),
        Err(e) => assert!(e.contains(needle), "expected {needle:?} in:\n{e}"),
    }
}

fn reload_rejected(prev: &str, next: &str, needle: &str) {
    match check_reload(&ok(prev), &ok(next)) {
        Ok(()) => panic!("reload accepted, expected {needle:?}:\n{prev}\n=>\n{next}"),
        Err(e) => assert!(e.contains(needle), "expected {needle:?} in:\n{e}"),
    }
}

/// A live playlist of 2 s segments `first..first + count`, target 2, with
/// DISCONTINUITY before every segment whose number is in `discs`.
fn live(first: u64, count: u64, disc_seq: u64, discs: &[u64]) -> String {
    let mut s = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n\
         #EXT-X-DISCONTINUITY-SEQUENCE:{disc_seq}\n"
    );
    for seq in first..first + count {
        if discs.contains(&seq) {
            s.push_str("#EXT-X-DISCONTINUITY\n");
        }
        s.push_str(&format!("#EXTINF:2.000,\n{seq}.ts\n"));
    }
    s
}

#[test]
fn valid_live_playlist_passes() {
    let c = ok(LIVE);
    assert_eq!(c.media_sequence, 10);
    assert_eq!(c.discontinuity_sequence, 2);
    assert_eq!(c.target_duration, 3);
    assert_eq!(c.uris, ["s/10.ts", "s/11.ts", "s/12.ts", "s/13.ts"]);
    assert_eq!(c.durations, [2.002, 2.5, 2.0, 2.0]);
    assert_eq!(c.discontinuities, 2);
    assert_eq!(c.discontinuity_flags, [true, false, true, false]);
    assert!(!c.ended && !c.vod);
}

#[test]
fn valid_vod_playlist_passes() {
    let c = ok(VOD);
    assert!(c.vod && c.ended);
    assert_eq!(c.discontinuity_sequence, 0);
}

#[test]
fn tolerated_forms_pass() {
    // CRLF, blank lines, no final newline, titles, comments, unknown tags,
    // an offset date-time and an integer EXTINF.
    let text = "#EXTM3U\r\n\r\n#EXT-X-VERSION:3\r\n#EXT-X-TARGETDURATION:3\r\n\
        #EXT-X-MEDIA-SEQUENCE:0\r\n# comment\r\n#EXT-X-INDEPENDENT-SEGMENTS\r\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-11-25T23:44:35+01:00\r\n#EXTINF:3,title\r\na.ts";
    assert_eq!(ok(text).uris, ["a.ts"]);
}

#[test]
fn each_playlist_violation_is_caught() {
    let cases: &[(&str, &str, &str)] = &[
        ("#EXTM3U\n", "", "first line must be #EXTM3U"),
        ("#EXTM3U\n", "\u{feff}#EXTM3U\n", "byte order mark"),
        (
            "#EXT-X-TARGETDURATION:3\n",
            "",
            "missing #EXT-X-TARGETDURATION",
        ),
        (
            "#EXT-X-TARGETDURATION:3",
            "#EXT-X-TARGETDURATION:3.0",
            "decimal integer",
        ),
        (
            "#EXT-X-TARGETDURATION:3",
            "#EXT-X-TARGETDURATION:2",
            "rounds above",
        ),
        (
            "#EXT-X-MEDIA-SEQUENCE:10\n",
            "",
            "missing #EXT-X-MEDIA-SEQUENCE",
        ),
        (
            "#EXT-X-MEDIA-SEQUENCE:10",
            "#EXT-X-MEDIA-SEQUENCE:-1",
            "decimal integer",
        ),
        ("#EXT-X-VERSION:3", "#EXT-X-VERSION:2", "VERSION 3"),
        ("#EXT-X-VERSION:3\n", "", "VERSION 3"),
        ("s/13.ts", "s/12.ts", "appears twice"),
        ("#EXTINF:2.002,", "#EXTINF:2.002", "EXTINF must be"),
        ("#EXTINF:2.002,", "#EXTINF:-2.002,", "non-negative decimal"),
        ("#EXTINF:2.002,", "#EXTINF:2.0.2,", "non-negative decimal"),
        ("#EXTINF:2.500,\n", "", "without a preceding EXTINF"),
        ("s/13.ts\n", "", "not followed by a URI"),
        (
            "#EXTINF:2.500,\ns/11.ts",
            "#EXTINF:2.500,\n#EXTINF:2.500,\ns/11.ts",
            "has no URI before",
        ),
        ("s/10.ts", "s/10.ts ", "whitespace"),
        (
            "s/13.ts\n",
            "s/13.ts\n#EXT-X-DISCONTINUITY\n",
            "applies to no segment",
        ),
        ("35.123Z", "35.123", "ISO 8601"),
        ("2024-11-25T", "2024-13-25T", "ISO 8601"),
        (
            "#EXT-X-PROGRAM-DATE-TIME:2024-11-25T22:44:35.123Z",
            "#EXT-X-PROGRAM-DATE-TIME:yesterday",
            "ISO 8601",
        ),
        (
            "#EXT-X-VERSION:3\n",
            "#EXT-X-VERSION:3\n#EXT-X-VERSION:3\n",
            "more than once",
        ),
        (
            "#EXT-X-MEDIA-SEQUENCE:10\n",
            "#EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",
            "master playlist tag",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(LIVE.contains(from), "{from:?}");
        rejected(&LIVE.replacen(from, to, 1), needle);
    }
    // Tags that must precede the first segment.
    rejected(
        &LIVE
            .replace("#EXT-X-DISCONTINUITY-SEQUENCE:2\n", "")
            .replace("s/11.ts\n", "s/11.ts\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n"),
        "DISCONTINUITY-SEQUENCE after",
    );
    rejected(
        &LIVE
            .replace("#EXT-X-MEDIA-SEQUENCE:10\n", "")
            .replace("s/11.ts\n", "s/11.ts\n#EXT-X-MEDIA-SEQUENCE:10\n"),
        "MEDIA-SEQUENCE after",
    );
    // VOD rules.
    rejected(
        &VOD.replace("#EXT-X-ENDLIST\n", ""),
        "without #EXT-X-ENDLIST",
    );
    rejected(&VOD.replace("VOD", "LIVE"), "must be VOD or EVENT");
    rejected(
        &VOD.replace("#EXT-X-ENDLIST", "#EXT-X-ENDLIST:1"),
        "takes no value",
    );
}

#[test]
fn every_violation_is_listed() {
    let text = LIVE
        .replace("#EXT-X-TARGETDURATION:3", "#EXT-X-TARGETDURATION:2")
        .replace("s/13.ts", "s/12.ts");
    let err = check_playlist(&text).unwrap_err();
    assert!(err.contains("rounds above"), "{err}");
    assert!(err.contains("appears twice"), "{err}");
    assert!(err.lines().count() >= 2, "{err}");
}

#[test]
fn garbage_is_rejected_without_panic() {
    for text in [
        "",
        "\n",
        "#EXTM3U",
        "#EXTM3U\n#EXTINF:é,\n",
        "\u{0}\u{1}",
        "#EXTM3U\n#EXT-X-PROGRAM-DATE-TIME:2024-11-25Té",
    ] {
        assert!(check_playlist(text).is_err(), "{text:?}");
    }
}

#[test]
fn valid_reloads_pass() {
    // Appending only.
    check_reload(&ok(&live(0, 3, 0, &[0])), &ok(&live(0, 4, 0, &[0]))).unwrap();
    // Sliding: segment 3 carried a DISCONTINUITY and slid out; segment 5's stays.
    check_reload(&ok(&live(3, 4, 7, &[3, 5])), &ok(&live(4, 4, 8, &[5]))).unwrap();
    // A jump past the old end: only a lower bound on the sequence is known.
    check_reload(&ok(&live(0, 3, 0, &[1])), &ok(&live(10, 3, 5, &[]))).unwrap();
    // Ending, then staying ended.
    let ended = format!("{}#EXT-X-ENDLIST\n", live(3, 4, 0, &[]));
    check_reload(&ok(&live(3, 4, 0, &[])), &ok(&ended)).unwrap();
    check_reload(&ok(&ended), &ok(&ended)).unwrap();
    check_reload(&ok(VOD), &ok(VOD)).unwrap();
}

#[test]
fn each_reload_violation_is_caught() {
    let base = live(3, 4, 0, &[5]);
    reload_rejected(
        &base,
        &live(3, 4, 0, &[5]).replace("TARGETDURATION:2", "TARGETDURATION:3"),
        "TARGETDURATION changed",
    );
    reload_rejected(&base, &live(2, 5, 0, &[5]), "MEDIA-SEQUENCE decreased");
    reload_rejected(&base, &live(3, 3, 0, &[5]), "removed from the tail");
    reload_rejected(&base, &base.replace("4.ts", "other.ts"), "sequence 4 was");
    reload_rejected(&base, &live(3, 4, 0, &[5, 6]), "DISCONTINUITY changed");
    reload_rejected(
        &base,
        &live(3, 4, 0, &[5]).replace("#EXTINF:2.000,\n6.ts", "#EXTINF:1.000,\n6.ts"),
        "duration changed",
    );
    // Segment 5 with its tag slid out, but the sequence did not move.
    reload_rejected(&base, &live(6, 4, 0, &[]), "expected 1");
    // Nothing with a tag slid out, but the sequence moved.
    reload_rejected(&base, &live(4, 4, 1, &[5]), "expected 0");
    reload_rejected(&live(3, 4, 2, &[]), &live(20, 4, 1, &[]), "at least 2");
    // Sliding to 2 segments of 2 s with a 2 s target: under 3 × 2 s.
    reload_rejected(&base, &live(5, 2, 0, &[5]), "three target durations");
    // Changing anything after ENDLIST.
    let ended = format!("{base}#EXT-X-ENDLIST\n");
    reload_rejected(
        &ended,
        &format!("{}#EXT-X-ENDLIST\n", live(3, 5, 0, &[5])),
        "after ENDLIST",
    );
    reload_rejected(&ended, &base, "after ENDLIST");
    reload_rejected(VOD, &VOD.replace("b.ts", "c.ts"), "after ENDLIST");
}

const LL: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,HOLD-BACK=6.0,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
#EXT-X-PART-INF:PART-TARGET=0.500\n#EXT-X-MEDIA-SEQUENCE:7\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n\
#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n\
#EXT-X-PART:DURATION=0.480,URI=\"a0.ts?x=1,2\",INDEPENDENT=YES\n\
#EXT-X-PART:DURATION=0.480,URI=\"a1.ts\"\n\
#EXT-X-PART:DURATION=0.480,URI=\"a2.ts\"\n\
#EXT-X-PART:DURATION=0.480,URI=\"a3.ts\"\n\
#EXT-X-PART:DURATION=0.080,URI=\"a4.ts\"\n\
#EXTINF:2.000,\na.ts\n\
#EXT-X-DISCONTINUITY\n\
#EXT-X-PART:DURATION=0.480,URI=\"b0.ts\",INDEPENDENT=YES\n";

#[test]
fn valid_ll_playlist_passes() {
    let c = hlscheck::check_ll_playlist(LL).unwrap();
    assert_eq!((c.first_msn(), c.tail_msn(), c.skipped), (9, 10, 2));
    assert_eq!(c.parts[0].len(), 5);
    assert_eq!(c.parts[0][0].uri, "a0.ts?x=1,2");
    assert!(c.parts[0][0].independent && !c.parts[0][1].independent);
    assert_eq!(c.tail.len(), 1);
    // The DISCONTINUITY before the tail's parts is not a.ts's.
    assert_eq!(c.base.discontinuities, 0);
    assert_eq!(c.preload_hint, None);
    let hinted = format!("{LL}#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"b1.ts\"\n");
    let c = hlscheck::check_ll_playlist(&hinted).unwrap();
    assert_eq!(c.preload_hint.as_deref(), Some("b1.ts"));
    let misplaced = format!("{hinted}#EXT-X-PART:DURATION=0.480,URI=\"b2.ts\"\n");
    assert!(
        hlscheck::check_ll_playlist(&misplaced)
            .unwrap_err()
            .contains("must come last")
    );
}

#[test]
fn each_ll_violation_is_caught() {
    let cases = [
        (
            "DURATION=0.480,URI=\"a1.ts\"",
            "DURATION=0.520,URI=\"a1.ts\"",
            "> PART-TARGET",
        ),
        (
            "DURATION=0.080,URI=\"a4.ts\"",
            "DURATION=0.070,URI=\"a4.ts\"",
            "add up to",
        ),
        (
            "DURATION=0.480,URI=\"a2.ts\"",
            "DURATION=0.380,URI=\"a2.ts\"",
            "under 85 %",
        ),
        (
            "PART-HOLD-BACK=1.500",
            "PART-HOLD-BACK=0.900",
            "PART-HOLD-BACK",
        ),
        (
            "CAN-SKIP-UNTIL=12.000",
            "CAN-SKIP-UNTIL=6.000",
            "CAN-SKIP-UNTIL",
        ),
        (
            "CAN-BLOCK-RELOAD=YES",
            "CAN-BLOCK-RELOAD=NO",
            "CAN-BLOCK-RELOAD",
        ),
        ("URI=\"a3.ts\"", "URI=\"a2.ts\"", "appears twice"),
        ("#EXT-X-PART-INF:PART-TARGET=0.500\n", "", "PART-INF"),
        (
            "HOLD-BACK=6.0",
            "HOLD-BACK=5.0",
            "HOLD-BACK 5 is less than three",
        ),
    ];
    for (from, to, needle) in cases {
        assert!(LL.contains(from), "{from}");
        let err = hlscheck::check_ll_playlist(&LL.replacen(from, to, 1)).unwrap_err();
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    let moved =
        LL.replace("#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n", "") + "#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n";
    assert!(
        hlscheck::check_ll_playlist(&moved)
            .unwrap_err()
            .contains("EXT-X-SKIP after")
    );
}

#[test]
fn hold_back_is_read_and_at_least_three_target_durations() {
    let with = |attrs: &str| {
        LIVE.replacen(
            "#EXT-X-MEDIA-SEQUENCE",
            &format!("#EXT-X-SERVER-CONTROL:{attrs}\n#EXT-X-MEDIA-SEQUENCE"),
            1,
        )
    };
    assert_eq!(ok(&with("HOLD-BACK=9.0")).hold_back, Some(9.0));
    assert_eq!(
        ok(&with("CAN-BLOCK-RELOAD=YES,HOLD-BACK=10")).hold_back,
        Some(10.0)
    );
    assert_eq!(ok(LIVE).hold_back, None);
    rejected(
        &with("HOLD-BACK=8.9"),
        "less than three times TARGETDURATION 3",
    );
    rejected(&with("HOLD-BACK=soon"), "not a decimal");
    rejected(
        &with("hold-back"),
        "malformed #EXT-X-SERVER-CONTROL attribute",
    );
}

// ---- master playlists ----

/// A master as livebucket writes one: the source, two video rungs and an
/// audio-only rung.
const MASTER: &str = "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=812345,AVERAGE-BANDWIDTH=700000,RESOLUTION=320x240,FRAME-RATE=30.000,CODECS=\"avc1.42c00d,mp4a.40.2\"
index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=300000,AVERAGE-BANDWIDTH=250000,RESOLUTION=240x180,FRAME-RATE=29.97,CODECS=\"avc1.64000c,mp4a.40.2\"
180p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=150000,RESOLUTION=160x120,FRAME-RATE=15,CODECS=\"avc1.4d400b,mp4a.40.5\"
120p/index.m3u8?sig=a,b
#EXT-X-STREAM-INF:BANDWIDTH=64000,CODECS=\"mp4a.40.2\"
audio/index.m3u8
";

fn master_ok(text: &str) -> CheckedMaster {
    match check_master(text) {
        Ok(c) => c,
        Err(e) => panic!("rejected:\n{e}\n--- master ---\n{text}"),
    }
}

#[test]
fn valid_master_passes() {
    let m = master_ok(MASTER);
    let uris: Vec<&str> = m.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "index.m3u8",
            "180p/index.m3u8",
            "120p/index.m3u8?sig=a,b",
            "audio/index.m3u8"
        ]
    );
    let v = &m.variants[1];
    assert_eq!(v.bandwidth, 300_000);
    assert_eq!(v.average_bandwidth, Some(250_000));
    assert_eq!(v.resolution, Some((240, 180)));
    assert_eq!(v.frame_rate, Some(29.97));
    assert_eq!(v.codecs, ["avc1.64000c", "mp4a.40.2"]);
    assert!(v.has_video() && !m.variants[3].has_video());
    assert_eq!(m.variant("120p/index.m3u8"), Some(&m.variants[2]));
    assert_eq!(m.variant("index.m3u8"), Some(&m.variants[0]));
}

#[test]
fn each_master_violation_is_caught() {
    let line0 = "#EXT-X-STREAM-INF:BANDWIDTH=812345,AVERAGE-BANDWIDTH=700000,RESOLUTION=320x240,FRAME-RATE=30.000,CODECS=\"avc1.42c00d,mp4a.40.2\"";
    let inf = |attrs: &str| format!("#EXT-X-STREAM-INF:{attrs}");
    let cases: Vec<(&str, String, &str)> = vec![
        ("#EXTM3U\n", String::new(), "first line must be #EXTM3U"),
        ("#EXTM3U\n", "\u{feff}#EXTM3U\n".into(), "byte order mark"),
        (
            "#EXT-X-VERSION:3\n",
            "#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n".into(),
            "media playlist tag #EXT-X-TARGETDURATION",
        ),
        (
            "audio/index.m3u8\n",
            "audio/index.m3u8\n#EXTINF:2.0,\na.ts\n".into(),
            "media playlist tag #EXTINF",
        ),
        (
            "#EXT-X-VERSION:3\n",
            "#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:0\n".into(),
            "media playlist tag",
        ),
        (
            "index.m3u8\n",
            "#EXT-X-INDEPENDENT-SEGMENTS\nindex.m3u8\n".into(),
            "not by its URI",
        ),
        ("audio/index.m3u8\n", String::new(), "not followed by a URI"),
        (
            "#EXT-X-INDEPENDENT-SEGMENTS\n",
            "#EXT-X-INDEPENDENT-SEGMENTS\nstray.m3u8\n".into(),
            "without a preceding EXT-X-STREAM-INF",
        ),
        ("BANDWIDTH=64000,", String::new(), "lacks BANDWIDTH"),
        (
            "BANDWIDTH=64000",
            "BANDWIDTH=64000.5".into(),
            "not a decimal-integer",
        ),
        (
            "BANDWIDTH=64000",
            "BANDWIDTH=\"64000\"".into(),
            "not a decimal-integer",
        ),
        (
            "AVERAGE-BANDWIDTH=250000",
            "AVERAGE-BANDWIDTH=350000".into(),
            "exceeds BANDWIDTH",
        ),
        (
            "RESOLUTION=240x180",
            "RESOLUTION=240X180".into(),
            "decimal-resolution",
        ),
        (
            "RESOLUTION=240x180",
            "RESOLUTION=240x0".into(),
            "decimal-resolution",
        ),
        ("RESOLUTION=240x180,", String::new(), "no RESOLUTION"),
        (
            "FRAME-RATE=29.97",
            "FRAME-RATE=29.9700".into(),
            "at most three decimals",
        ),
        (
            "FRAME-RATE=29.97",
            "FRAME-RATE=30fps".into(),
            "decimal-floating-point",
        ),
        ("FRAME-RATE=29.97,", String::new(), "no FRAME-RATE"),
        (",CODECS=\"mp4a.40.2\"", String::new(), "lacks CODECS"),
        (
            "CODECS=\"mp4a.40.2\"",
            "CODECS=mp4a.40.2".into(),
            "not a quoted-string",
        ),
        ("avc1.64000c", "avc1.64000".into(), "six hex digits"),
        ("avc1.64000c", "avc1.64000g".into(), "six hex digits"),
        ("avc1.64000c", "avc1.07000c".into(), "not an H.264 profile"),
        ("avc1.64000c", "avc1.6400ff".into(), "not an H.264 level"),
        ("mp4a.40.5", "mp4a.40.x".into(), "mp4a.40.N"),
        ("mp4a.40.5", "mp4a.40.05".into(), "mp4a.40.N"),
        ("mp4a.40.5", "opus".into(), "not an H.264"),
        (
            "avc1.64000c,mp4a.40.2",
            "avc1.64000c,avc1.64000c".into(),
            "a media type twice",
        ),
        (
            "BANDWIDTH=64000,CODECS",
            "BANDWIDTH=64000,RESOLUTION=2x2,CODECS".into(),
            "audio-only",
        ),
        (
            "BANDWIDTH=64000",
            "BANDWIDTH=64000,BANDWIDTH=64000".into(),
            "appears twice",
        ),
        ("BANDWIDTH=64000", "bandwidth=64000".into(), "[A-Z0-9-]+"),
        (
            "CODECS=\"mp4a.40.2\"",
            "CODECS=\"mp4a.40.2".into(),
            "not closed",
        ),
        ("audio/index.m3u8", "180p/index.m3u8".into(), "listed twice"),
        (line0, format!("{line0} "), "trailing whitespace"),
        (line0, inf(""), "is not NAME=VALUE"),
    ];
    for (from, to, needle) in cases {
        assert!(MASTER.contains(from), "{from:?} is not in MASTER");
        let text = MASTER.replacen(from, &to, 1);
        match check_master(&text) {
            Ok(c) => panic!("accepted ({c:?}), expected {needle:?}:\n{text}"),
            Err(e) => assert!(e.contains(needle), "expected {needle:?} in:\n{e}\n{text}"),
        }
    }
    match check_master("#EXTM3U\n#EXT-X-VERSION:3\n") {
        Ok(c) => panic!("an empty master accepted: {c:?}"),
        Err(e) => assert!(e.contains("no EXT-X-STREAM-INF"), "{e}"),
    }
    // A media playlist is not a master.
    assert!(check_master(LIVE).is_err());
}

#[test]
fn bandwidth_is_held_against_the_segments() {
    let m = master_ok(MASTER);
    let v = m.variant("180p/index.m3u8").unwrap().clone();
    // BANDWIDTH 300000, AVERAGE 250000: a peak of 2.000 s × 300 kbit/s =
    // 75000 bytes, and 500 kbit over 2 s at the average.
    let good = [(2.0, 75_000), (2.0, 50_000), (1.0, 23_000)];
    check_bandwidth(&v, &good).unwrap();
    // EXTINF rounding: 0.05 % over the declared peak passes.
    check_bandwidth(&v, &[(2.0, 75_030), (2.0, 50_000)]).unwrap();
    let cases: &[(&[(f64, u64)], &str)] = &[
        (&[(2.0, 76_000), (2.0, 50_000)], "under its peak"),
        // The peak is one short segment's.
        (
            &[(0.5, 20_000), (2.0, 50_000), (2.0, 50_000)],
            "under its peak",
        ),
        (&[(2.0, 30_000), (2.0, 30_000)], "over twice"),
        (&[(2.0, 75_000), (2.0, 75_000)], "AVERAGE-BANDWIDTH"),
        (&[], "no segment"),
    ];
    for (segments, needle) in cases {
        match check_bandwidth(&v, segments) {
            Ok(()) => panic!("{segments:?} accepted, expected {needle:?}"),
            Err(e) => assert!(e.contains(needle), "expected {needle:?} in:\n{e}"),
        }
    }
}

// ---- variant alignment ----

/// One 188-byte TS packet of `pid` carrying `payload` (stuffed through an
/// adaptation field when `stuffed`, else padded with 0xff).
fn ts_packet(pid: u16, start: bool, payload: &[u8], stuffed: bool) -> Vec<u8> {
    let mut p = vec![
        0x47,
        (pid >> 8) as u8 | if start { 0x40 } else { 0 },
        pid as u8,
    ];
    if stuffed {
        let af_len = 188 - 5 - payload.len();
        p.push(0x30);
        p.push(af_len as u8);
        if af_len > 0 {
            p.push(0x00);
            p.resize(5 + af_len, 0xff);
        }
    } else {
        p.push(0x10);
    }
    p.extend_from_slice(payload);
    p.resize(188, 0xff);
    p
}

/// A PSI section with its pointer field and a (dummy) CRC.
fn psi(table: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() + 4;
    let mut s = vec![0, table, 0xb0 | (len >> 8) as u8, len as u8];
    s.extend_from_slice(body);
    s.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    s
}

fn pes(stream_id: u8, pts: u64) -> Vec<u8> {
    let b = [
        0x21 | ((pts >> 29) & 0x0e) as u8,
        (pts >> 22) as u8,
        0x01 | ((pts >> 14) & 0xfe) as u8,
        (pts >> 7) as u8,
        0x01 | ((pts << 1) & 0xfe) as u8,
    ];
    let mut p = vec![0, 0, 1, stream_id, 0, 0, 0x80, 0x80, 5];
    p.extend_from_slice(&b);
    p.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
    p
}

/// A fragment as nginx-rtmp writes one: PAT, PMT (AAC on 0x101 listed
/// first, H.264 on 0x100), an audio PES, then the video PES at `pts`.
fn fragment(pts: u64) -> Vec<u8> {
    let pat = psi(0x00, &[0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00]);
    let pmt = psi(
        0x02,
        &[
            0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0x00, // PCR PID 0x100, no info
            0x0f, 0xe1, 0x01, 0xf0, 0x00, // AAC (ADTS) on 0x101
            0x1b, 0xe1, 0x00, 0xf0, 0x00, // H.264 on 0x100
        ],
    );
    let mut ts = ts_packet(0, true, &pat, false);
    ts.extend(ts_packet(0x1000, true, &pmt, false));
    ts.extend(ts_packet(
        0x101,
        true,
        &pes(0xc0, pts.saturating_sub(900)),
        true,
    ));
    ts.extend(ts_packet(0x100, false, &[0; 10], false));
    ts.extend(ts_packet(0x100, true, &pes(0xe0, pts), true));
    ts.extend(ts_packet(0x100, false, &[0; 10], false));
    ts
}

#[test]
fn first_video_pts_is_read() {
    for pts in [0, 126_000, (1 << 33) - 1, 0x1_2345_6789] {
        assert_eq!(first_video_pts(&fragment(pts)), Ok(pts));
    }
    let good = fragment(126_000);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..good.len() - 1].to_vec(), "whole number"),
        (Vec::new(), "whole number"),
        ([&[0x46][..], &good[1..]].concat(), "sync byte"),
        (good[188..].to_vec(), "no PAT"),
        ([&good[..188], &good[376..]].concat(), "no PMT"),
        (good[..188 * 4].to_vec(), "no PES starts"),
    ];
    for (bytes, needle) in cases {
        match first_video_pts(&bytes) {
            Ok(p) => panic!("read PTS {p}, expected {needle:?}"),
            Err(e) => assert!(e.contains(needle), "expected {needle:?} in {e}"),
        }
    }
}

/// Fragments ffmpeg wrote (`tests/data/abr/`): the PTS ffprobe reads as
/// each one's first video packet, and none in the audio-only one.
#[test]
fn first_video_pts_agrees_with_ffprobe_on_real_fragments() {
    let read = |name: &str| {
        let path = format!("{}/tests/data/abr/{name}", env!("CARGO_MANIFEST_DIR"));
        first_video_pts(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
    };
    assert_eq!(read("high_426x240_29.97fps.ts"), Ok(126_000));
    assert_eq!(read("main_320x180_25fps_aac.ts"), Ok(128_090));
    let audio = read("aac_only.ts").unwrap_err();
    assert!(audio.contains("no H.264 or HEVC stream"), "{audio}");
}

#[test]
fn alignment_is_checked_within_a_frame() {
    let v = |name: &str, pts: &[u64]| (name.to_owned(), pts.to_vec());
    let source = v("source", &[180_000, 360_000, 540_000]);
    check_alignment(
        &[
            source.clone(),
            v("180p", &[180_000, 362_999, 537_001]),
            v("120p", &[180_000, 360_000, 540_000]),
        ],
        FRAME_30FPS,
    )
    .unwrap();
    // Across the 33-bit wrap.
    check_alignment(&[v("a", &[(1 << 33) - 1000]), v("b", &[1000])], FRAME_30FPS).unwrap();
    let cases = [
        (v("180p", &[180_000, 360_000]), "has 2 segments"),
        (v("180p", &[180_000, 363_001, 540_000]), "segment 1 starts"),
        (v("180p", &[360_000, 540_000, 720_000]), "segment 0 starts"),
    ];
    for (other, needle) in cases {
        match check_alignment(&[source.clone(), other], FRAME_30FPS) {
            Ok(()) => panic!("accepted, expected {needle:?}"),
            Err(e) => assert!(e.contains(needle), "expected {needle:?} in:\n{e}"),
        }
    }
}
