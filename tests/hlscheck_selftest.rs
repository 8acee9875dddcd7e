//! Tests of the playlist checker itself: valid playlists pass, and each
//! violation it claims to catch is caught. A checker that accepts anything
//! would make every end-to-end playlist assertion meaningless.

#[path = "e2e/common/hlscheck.rs"]
#[allow(
    dead_code,
    reason = "the checker's own tests read part of what it returns; the e2e binary uses all of it"
)]
mod hlscheck;

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
