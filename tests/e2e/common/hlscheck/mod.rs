//! An independent RFC 8216 checker for the media playlists livebucket
//! publishes, for integration tests.
//!
//! It deliberately does not use `livebucket::hls`: a bug there must not be
//! mirrored here. Each playlist is read twice, by a strict line-by-line
//! reader written against the RFC, and by m3u8-rs as a typical lenient
//! client; both must agree on the segments.
//!
//! Every violation found is reported, one per line of the `Err` string, so
//! one failing test shows everything that is wrong.
//!
//! Stricter than the RFC, on purpose (livebucket always writes these):
//! `#EXT-X-MEDIA-SEQUENCE` is required, and a tag that applies to the next
//! segment must be followed by one. Reload checks ([`check_reload`]) cover
//! §6.2.1–6.2.2: a live playlist only gains segments at the tail and loses
//! them at the head, without renumbering.
//!
//! Master playlists have their own checker ([`master`]), and variants of one
//! master their alignment check ([`align`]).

pub mod align;
pub mod master;

use std::collections::HashMap;

/// What a valid playlist says, in the terms the reload rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPlaylist {
    pub media_sequence: u64,
    /// `#EXT-X-DISCONTINUITY-SEQUENCE`, 0 when absent.
    pub discontinuity_sequence: u64,
    pub target_duration: u64,
    pub uris: Vec<String>,
    /// EXTINF durations in seconds.
    pub durations: Vec<f64>,
    /// Number of `#EXT-X-DISCONTINUITY` tags.
    pub discontinuities: usize,
    /// Per segment: a `#EXT-X-DISCONTINUITY` tag precedes it. Reload checks
    /// need to know which segments carry the tags, not only how many.
    pub discontinuity_flags: Vec<bool>,
    /// `#EXT-X-ENDLIST` is present.
    pub ended: bool,
    /// `#EXT-X-PLAYLIST-TYPE:VOD`.
    pub vod: bool,
    /// `HOLD-BACK` of `#EXT-X-SERVER-CONTROL` (rfc8216bis §4.4.3.8), in
    /// seconds, when stated.
    pub hold_back: Option<f64>,
}

/// Tags of master playlists; a media playlist must not contain them (§4.1).
const MASTER_TAGS: &[&str] = &[
    "#EXT-X-STREAM-INF",
    "#EXT-X-I-FRAME-STREAM-INF",
    "#EXT-X-MEDIA",
    "#EXT-X-SESSION-DATA",
    "#EXT-X-SESSION-KEY",
];

/// A playlist's numbered lines (1-based, `\r\n` or `\n`) after its first,
/// which must be `#EXTM3U`, with no byte order mark before it (§4.1): what
/// media and master playlists share; violations go to `errs`.
pub(super) fn after_header<'a>(
    text: &'a str,
    errs: &mut Vec<String>,
) -> impl Iterator<Item = (usize, &'a str)> + 'a {
    if text.starts_with('\u{feff}') {
        errs.push("starts with a byte order mark (§4.1 forbids it)".into());
    }
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, "#EXTM3U")) => {}
        other => errs.push(format!(
            "line 1: first line must be #EXTM3U, found {:?}",
            other.map_or("", |(_, l)| l)
        )),
    }
    lines
}

/// Checks one media playlist against RFC 8216 and returns what it says, or
/// every violation found.
pub fn check_playlist(text: &str) -> Result<CheckedPlaylist, String> {
    let mut errs: Vec<String> = Vec::new();
    let lines = after_header(text, &mut errs);

    let mut version: Option<u64> = None;
    let mut target: Option<u64> = None;
    let mut media_sequence: Option<u64> = None;
    let mut discontinuity_sequence: Option<u64> = None;
    let mut playlist_type: Option<String> = None;
    let mut server_control: Option<(usize, Option<f64>)> = None;
    let mut ended = false;
    // The EXTINF line, its duration text and value, awaiting a URI.
    let mut pending_extinf: Option<(usize, String, f64)> = None;
    // Line of a DISCONTINUITY / PROGRAM-DATE-TIME awaiting its segment.
    let mut pending_disc: Option<usize> = None;
    let mut pending_pdt: Option<usize> = None;
    let mut seen_disc_tag = false;
    let mut decimal_extinf = false;

    let mut uris: Vec<String> = Vec::new();
    let mut durations: Vec<f64> = Vec::new();
    let mut extinf_lines: Vec<usize> = Vec::new();
    let mut flags: Vec<bool> = Vec::new();

    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        if line.trim() != line {
            errs.push(format!(
                "line {n}: leading or trailing whitespace in {line:?} (§4.1)"
            ));
        }
        let line = line.trim();
        let segment_started = pending_extinf.is_some() || !uris.is_empty();

        if line.starts_with("#EXT") {
            let (name, value) = match line.split_once(':') {
                Some((name, value)) => (name, Some(value)),
                None => (line, None),
            };
            let mut once = |seen: bool| {
                if seen {
                    errs.push(format!("line {n}: {name} appears more than once"));
                }
            };
            match name {
                "#EXTM3U" => errs.push(format!("line {n}: #EXTM3U repeated")),
                "#EXT-X-VERSION" => {
                    once(version.is_some());
                    version = integer_value(n, name, value, &mut errs).or(version);
                }
                "#EXT-X-TARGETDURATION" => {
                    once(target.is_some());
                    target = integer_value(n, name, value, &mut errs).or(target);
                }
                "#EXT-X-MEDIA-SEQUENCE" => {
                    once(media_sequence.is_some());
                    if segment_started {
                        errs.push(format!(
                            "line {n}: {name} after the first segment (§4.3.3.2)"
                        ));
                    }
                    media_sequence = integer_value(n, name, value, &mut errs).or(media_sequence);
                }
                "#EXT-X-DISCONTINUITY-SEQUENCE" => {
                    once(discontinuity_sequence.is_some());
                    if segment_started || seen_disc_tag {
                        errs.push(format!(
                            "line {n}: {name} after the first segment or a DISCONTINUITY (§4.3.3.3)"
                        ));
                    }
                    discontinuity_sequence =
                        integer_value(n, name, value, &mut errs).or(discontinuity_sequence);
                }
                "#EXT-X-PLAYLIST-TYPE" => {
                    once(playlist_type.is_some());
                    match value {
                        Some(v @ ("VOD" | "EVENT")) => playlist_type = Some(v.to_owned()),
                        _ => errs.push(format!(
                            "line {n}: {name} must be VOD or EVENT, found {value:?}"
                        )),
                    }
                }
                "#EXT-X-SERVER-CONTROL" => {
                    once(server_control.is_some());
                    server_control = Some((n, hold_back(n, value, &mut errs)));
                }
                "#EXT-X-ENDLIST" => {
                    once(ended);
                    no_value(n, name, value, &mut errs);
                    ended = true;
                }
                "#EXT-X-DISCONTINUITY" => {
                    no_value(n, name, value, &mut errs);
                    if pending_disc.is_some() {
                        errs.push(format!(
                            "line {n}: two DISCONTINUITY tags before one segment"
                        ));
                    }
                    pending_disc = Some(n);
                    seen_disc_tag = true;
                }
                "#EXT-X-PROGRAM-DATE-TIME" => {
                    match value {
                        Some(v) if is_iso8601_date_time(v) => {}
                        _ => errs.push(format!(
                            "line {n}: {name} is not an ISO 8601 date-time with zone: {value:?}"
                        )),
                    }
                    pending_pdt = Some(n);
                }
                "#EXTINF" => {
                    if let Some((prev, _, _)) = &pending_extinf {
                        errs.push(format!("line {prev}: EXTINF has no URI before line {n}"));
                    }
                    match value.map(|v| v.split_once(',')) {
                        Some(Some((d, _title))) => {
                            if is_decimal_float(d) {
                                decimal_extinf |= d.contains('.');
                                let secs = d.parse::<f64>().unwrap_or(f64::NAN);
                                pending_extinf = Some((n, d.to_owned(), secs));
                            } else {
                                errs.push(format!(
                                    "line {n}: EXTINF duration {d:?} is not a non-negative decimal"
                                ));
                            }
                        }
                        _ => errs.push(format!(
                            "line {n}: EXTINF must be `#EXTINF:<duration>,[<title>]` (§4.3.2.1), found {line:?}"
                        )),
                    }
                }
                _ if MASTER_TAGS.contains(&name) => errs.push(format!(
                    "line {n}: master playlist tag {name} in a media playlist"
                )),
                // Clients ignore tags they do not know (§4.1).
                _ => {}
            }
        } else if line.starts_with('#') {
            // A comment.
        } else {
            match pending_extinf.take() {
                Some((extinf_line, _, secs)) => {
                    uris.push(line.to_owned());
                    durations.push(secs);
                    extinf_lines.push(extinf_line);
                    flags.push(pending_disc.take().is_some());
                    pending_pdt = None;
                }
                None => errs.push(format!(
                    "line {n}: URI {line:?} without a preceding EXTINF (§4.3.2.1)"
                )),
            }
        }
    }

    if let Some((n, _, _)) = pending_extinf {
        errs.push(format!("line {n}: EXTINF is not followed by a URI"));
    }
    // In a Low-Latency playlist these tags may precede the parts of the
    // segment in progress, which has no URI line yet (rfc8216bis §4.4.4.9);
    // a player that ignores parts finds no segment after them and applies
    // them to the segment's URI once it is listed.
    let parts_follow = |n: usize| text.lines().skip(n).any(|l| l.starts_with("#EXT-X-PART:"));
    for (n, tag) in [
        (pending_disc, "DISCONTINUITY"),
        (pending_pdt, "PROGRAM-DATE-TIME"),
    ] {
        if let Some(n) = n.filter(|&n| !parts_follow(n)) {
            errs.push(format!("line {n}: {tag} applies to no segment"));
        }
    }
    if target.is_none() {
        errs.push("missing #EXT-X-TARGETDURATION (§4.3.3.1)".into());
    }
    if media_sequence.is_none() {
        errs.push("missing #EXT-X-MEDIA-SEQUENCE".into());
    }
    if decimal_extinf && version.unwrap_or(1) < 3 {
        errs.push(format!(
            "decimal EXTINF durations need #EXT-X-VERSION 3 or more, found {version:?} (§7)"
        ));
    }
    let target = target.unwrap_or(0);
    for ((uri, secs), n) in uris.iter().zip(&durations).zip(&extinf_lines) {
        if secs.round() > target as f64 {
            errs.push(format!(
                "line {n}: EXTINF {secs} of {uri:?} rounds above TARGETDURATION {target} (§4.3.3.1)"
            ));
        }
    }
    if let Some((n, Some(hold))) = server_control
        && hold < 3.0 * target as f64
    {
        errs.push(format!(
            "line {n}: HOLD-BACK {hold} is less than three times TARGETDURATION {target} (rfc8216bis §4.4.3.8)"
        ));
    }
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    for (i, uri) in uris.iter().enumerate() {
        if let Some(first) = first_seen.insert(uri, i) {
            errs.push(format!(
                "URI {uri:?} appears twice (segments {first} and {i})"
            ));
        }
    }
    let vod = playlist_type.as_deref() == Some("VOD");
    if vod && !ended {
        errs.push("PLAYLIST-TYPE:VOD without #EXT-X-ENDLIST".into());
    }

    let checked = CheckedPlaylist {
        media_sequence: media_sequence.unwrap_or(0),
        discontinuity_sequence: discontinuity_sequence.unwrap_or(0),
        target_duration: target,
        discontinuities: flags.iter().filter(|f| **f).count(),
        discontinuity_flags: flags,
        uris,
        durations,
        ended,
        vod,
        hold_back: server_control.and_then(|(_, h)| h),
    };
    // Only a playlist we accept is compared, so m3u8-rs's view does not
    // repeat problems already reported.
    if errs.is_empty() {
        cross_check_m3u8_rs(text, &checked, &mut errs);
    }
    if errs.is_empty() {
        Ok(checked)
    } else {
        Err(errs.join("\n"))
    }
}

/// m3u8-rs stops quietly at the first line it cannot parse, so agreement on
/// every segment, not just success, is what shows a lenient client reads
/// what we read.
fn cross_check_m3u8_rs(text: &str, c: &CheckedPlaylist, errs: &mut Vec<String>) {
    let m = match m3u8_rs::parse_media_playlist_res(text.as_bytes()) {
        Ok(m) => m,
        Err(e) => {
            errs.push(format!("m3u8-rs cannot parse the playlist: {e:?}"));
            return;
        }
    };
    let theirs: Vec<(&str, bool)> = m
        .segments
        .iter()
        .map(|s| (s.uri.as_str(), s.discontinuity))
        .collect();
    let ours: Vec<(&str, bool)> = c
        .uris
        .iter()
        .map(String::as_str)
        .zip(c.discontinuity_flags.iter().copied())
        .collect();
    if theirs != ours {
        errs.push(format!(
            "m3u8-rs reads other segments (uri, discontinuity): {theirs:?}, expected {ours:?}"
        ));
    }
    let fields = [
        ("media sequence", m.media_sequence, c.media_sequence),
        (
            "discontinuity sequence",
            m.discontinuity_sequence,
            c.discontinuity_sequence,
        ),
        ("target duration", m.target_duration, c.target_duration),
    ];
    for (what, theirs, ours) in fields {
        if theirs != ours {
            errs.push(format!("m3u8-rs reads {what} {theirs}, expected {ours}"));
        }
    }
    if m.end_list != c.ended {
        errs.push(format!("m3u8-rs reads ENDLIST = {}", m.end_list));
    }
}

/// Checks that `next` is a valid reload of `prev` (§6.2.1, §6.2.2), listing
/// every violation.
pub fn check_reload(prev: &CheckedPlaylist, next: &CheckedPlaylist) -> Result<(), String> {
    for c in [prev, next] {
        if c.durations.len() != c.uris.len() || c.discontinuity_flags.len() != c.uris.len() {
            return Err(
                "CheckedPlaylist fields have different lengths; build it with check_playlist"
                    .into(),
            );
        }
    }
    let mut errs: Vec<String> = Vec::new();
    if prev.ended || prev.vod {
        if prev != next {
            errs.push(format!(
                "playlist changed after ENDLIST/VOD: {}",
                differences(prev, next)
            ));
        }
        return finish(errs);
    }
    if prev.vod != next.vod {
        errs.push("PLAYLIST-TYPE changed".into());
    }
    if prev.target_duration != next.target_duration {
        errs.push(format!(
            "TARGETDURATION changed from {} to {} (§6.2.1)",
            prev.target_duration, next.target_duration
        ));
    }
    if next.media_sequence < prev.media_sequence {
        errs.push(format!(
            "MEDIA-SEQUENCE decreased from {} to {}",
            prev.media_sequence, next.media_sequence
        ));
        return finish(errs);
    }
    if next.discontinuity_sequence < prev.discontinuity_sequence {
        errs.push(format!(
            "DISCONTINUITY-SEQUENCE decreased from {} to {}",
            prev.discontinuity_sequence, next.discontinuity_sequence
        ));
    }
    let prev_end = prev.media_sequence.saturating_add(prev.uris.len() as u64);
    let next_end = next.media_sequence.saturating_add(next.uris.len() as u64);
    if next_end < prev_end {
        errs.push(format!(
            "segments {next_end}..{prev_end} were removed from the tail (§6.2.1)"
        ));
    }

    // Segments present in both must be the same, with the same tags.
    for seq in next.media_sequence.max(prev.media_sequence)..prev_end.min(next_end) {
        let p = (seq - prev.media_sequence) as usize;
        let n = (seq - next.media_sequence) as usize;
        if prev.uris[p] != next.uris[n] {
            errs.push(format!(
                "sequence {seq} was {:?}, now {:?}",
                prev.uris[p], next.uris[n]
            ));
        }
        if prev.durations[p] != next.durations[n] {
            errs.push(format!(
                "sequence {seq} duration changed from {} to {}",
                prev.durations[p], next.durations[n]
            ));
        }
        if prev.discontinuity_flags[p] != next.discontinuity_flags[n] {
            errs.push(format!(
                "sequence {seq} DISCONTINUITY changed to {}",
                next.discontinuity_flags[n]
            ));
        }
    }

    // §6.2.2: each DISCONTINUITY removed from the head increments the
    // sequence. Beyond prev's end nothing is known of what slid out, so only
    // a lower bound can be checked there.
    let removed = ((next.media_sequence - prev.media_sequence) as usize).min(prev.uris.len());
    let slid_out = prev.discontinuity_flags[..removed]
        .iter()
        .filter(|f| **f)
        .count() as u64;
    let expected = prev.discontinuity_sequence + slid_out;
    if next.media_sequence <= prev_end {
        if next.discontinuity_sequence != expected {
            errs.push(format!(
                "DISCONTINUITY-SEQUENCE is {}, expected {expected}: {slid_out} tags slid out (§6.2.2)",
                next.discontinuity_sequence
            ));
        }
    } else if next.discontinuity_sequence < expected {
        errs.push(format!(
            "DISCONTINUITY-SEQUENCE is {}, at least {expected} expected (§6.2.2)",
            next.discontinuity_sequence
        ));
    }

    // §6.2.2: no removal may leave less than three target durations.
    if next.media_sequence > prev.media_sequence && !next.ended {
        let total: f64 = next.durations.iter().sum();
        let min = 3.0 * next.target_duration as f64;
        if total + 1e-6 < min {
            errs.push(format!(
                "segments removed leaving {total:.3} s, less than three target durations ({min} s) (§6.2.2)"
            ));
        }
    }
    finish(errs)
}

fn finish(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

fn differences(a: &CheckedPlaylist, b: &CheckedPlaylist) -> String {
    let fields = [
        (a.media_sequence != b.media_sequence, "media sequence"),
        (
            a.discontinuity_sequence != b.discontinuity_sequence,
            "discontinuity sequence",
        ),
        (a.target_duration != b.target_duration, "target duration"),
        (a.uris != b.uris, "uris"),
        (a.durations != b.durations, "durations"),
        (
            a.discontinuity_flags != b.discontinuity_flags,
            "discontinuities",
        ),
        (a.ended != b.ended, "ENDLIST"),
        (a.vod != b.vod, "playlist type"),
    ];
    let differ: Vec<&str> = fields
        .into_iter()
        .filter_map(|(differs, name)| differs.then_some(name))
        .collect();
    differ.join(", ")
}

/// The `HOLD-BACK` attribute of an `#EXT-X-SERVER-CONTROL` value, if any;
/// a malformed attribute list or value is reported.
fn hold_back(n: usize, value: Option<&str>, errs: &mut Vec<String>) -> Option<f64> {
    let Some(value) = value else {
        errs.push(format!(
            "line {n}: #EXT-X-SERVER-CONTROL without attributes"
        ));
        return None;
    };
    let mut hold = None;
    for attr in value.split(',') {
        match attr.split_once('=') {
            Some(("HOLD-BACK", v)) if is_decimal_float(v) => hold = v.parse().ok(),
            Some(("HOLD-BACK", v)) => errs.push(format!(
                "line {n}: HOLD-BACK {v:?} is not a decimal number of seconds"
            )),
            Some((name, _))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-') => {}
            _ => errs.push(format!(
                "line {n}: malformed #EXT-X-SERVER-CONTROL attribute {attr:?} (§4.2)"
            )),
        }
    }
    hold
}

/// A `decimal-integer` attribute (§4.2): digits only, fits in u64.
fn integer_value(n: usize, name: &str, value: Option<&str>, errs: &mut Vec<String>) -> Option<u64> {
    let parsed = value
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok());
    if parsed.is_none() {
        errs.push(format!(
            "line {n}: {name} must be a decimal integer, found {value:?}"
        ));
    }
    parsed
}

fn no_value(n: usize, name: &str, value: Option<&str>, errs: &mut Vec<String>) {
    if let Some(v) = value {
        errs.push(format!("line {n}: {name} takes no value, found {v:?}"));
    }
}

/// `[0-9]+(\.[0-9]+)?`, the shape of a non-negative decimal.
fn is_decimal_float(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac)
}

/// `YYYY-MM-DDThh:mm:ss[.f+](Z|±hh:mm)`, the RFC 3339 profile of ISO 8601
/// that §4.3.2.6 asks for, checked by shape and ranges.
fn is_iso8601_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let fields = (|| {
        let ok = at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':');
        let (month, day) = (num(5..7)?, num(8..10)?);
        let (h, m, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        num(0..4)?;
        Some(
            ok && (1..=12).contains(&month)
                && (1..=31).contains(&day)
                && h < 24
                && m < 60
                && sec <= 60,
        )
    })();
    if fields != Some(true) {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest.as_bytes() {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// One `#EXT-X-PART` as an LL playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPart {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

/// What a valid Low-Latency playlist (draft-pantos-hls-rfc8216bis) says.
#[derive(Debug, Clone)]
pub struct CheckedLl {
    /// The playlist without its LL tags, as RFC 8216 reads it.
    pub base: CheckedPlaylist,
    pub can_skip_until: f64,
    /// `#EXT-X-SKIP:SKIPPED-SEGMENTS` (0 without the tag).
    pub skipped: u64,
    /// The parts listed before each segment of `base`, in order.
    pub parts: Vec<Vec<CheckedPart>>,
    /// The parts of the segment in progress (after the last URI line).
    pub tail: Vec<CheckedPart>,
    /// The URI of `#EXT-X-PRELOAD-HINT:TYPE=PART`, if any.
    pub preload_hint: Option<String>,
}

impl CheckedLl {
    /// The media sequence number of `base.uris[0]`.
    pub fn first_msn(&self) -> u64 {
        self.base.media_sequence + self.skipped
    }

    /// The media sequence number of the segment in progress.
    pub fn tail_msn(&self) -> u64 {
        self.first_msn() + self.base.uris.len() as u64
    }
}

/// The attributes of a tag's value (`A=B,C="D,E"`), in order.
fn attributes(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.push((name.to_owned(), val.to_owned()));
        rest = next.strip_prefix(',').unwrap_or(next);
    }
    out
}

/// Checks an LL playlist: everything [`check_playlist`] checks on its
/// segments (and `HOLD-BACK`), and the LL rules: `PART-INF` and `SERVER-CONTROL` present with
/// `CAN-BLOCK-RELOAD=YES`, `PART-HOLD-BACK` ≥ 2 × `PART-TARGET` (the draft's
/// minimum), `CAN-SKIP-UNTIL` ≥ 6 × `TARGETDURATION`; every part has a URI
/// and a duration ≤ `PART-TARGET`; the parts of a segment add up to its
/// EXTINF (within a millisecond), and each but its last lasts at least 85 %
/// of the target unless it is `INDEPENDENT`; `EXT-X-SKIP` comes before the
/// first segment; a `DISCONTINUITY` without a segment only before the
/// segment in progress's parts.
pub fn check_ll_playlist(text: &str) -> Result<CheckedLl, String> {
    let mut errs = Vec::new();
    let mut plain = String::new();
    let mut part_target = None;
    let mut hold_back = None;
    let mut skip_until = None;
    let mut block = false;
    let mut skipped = 0;
    let mut parts: Vec<Vec<CheckedPart>> = Vec::new();
    let mut pending: Vec<CheckedPart> = Vec::new();
    let mut pending_disc = false;
    let mut seen_segment = false;
    let mut preload_hint: Option<String> = None;
    for line in text.lines() {
        if preload_hint.is_some() && !line.trim().is_empty() {
            errs.push(format!(
                "{line:?} after the PRELOAD-HINT, which must come last"
            ));
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        match name {
            "#EXT-X-PART-INF" => {
                for (k, v) in attributes(value) {
                    if k == "PART-TARGET" {
                        part_target = v.parse::<f64>().ok();
                    }
                }
                continue;
            }
            "#EXT-X-SERVER-CONTROL" => {
                for (k, v) in attributes(value) {
                    match k.as_str() {
                        "CAN-BLOCK-RELOAD" => block = v == "YES",
                        "PART-HOLD-BACK" => hold_back = v.parse::<f64>().ok(),
                        "CAN-SKIP-UNTIL" => skip_until = v.parse::<f64>().ok(),
                        _ => {}
                    }
                }
                // Kept for check_playlist, which reads HOLD-BACK.
            }
            "#EXT-X-SKIP" => {
                if seen_segment {
                    errs.push("EXT-X-SKIP after the first segment".to_owned());
                }
                for (k, v) in attributes(value) {
                    if k == "SKIPPED-SEGMENTS" {
                        skipped = v.parse().unwrap_or_else(|_| {
                            errs.push(format!("SKIPPED-SEGMENTS {v:?} is not an integer"));
                            0
                        });
                    }
                }
                continue;
            }
            "#EXT-X-PART" => {
                let attrs = attributes(value);
                let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                let duration = get("DURATION").and_then(|d| d.parse::<f64>().ok());
                match (get("URI"), duration) {
                    (Some(uri), Some(duration)) => pending.push(CheckedPart {
                        uri,
                        duration,
                        independent: get("INDEPENDENT").as_deref() == Some("YES"),
                    }),
                    _ => errs.push(format!("{line:?} lacks a URI or a DURATION")),
                }
                continue;
            }
            "#EXT-X-PRELOAD-HINT" => {
                let attrs = attributes(value);
                let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                if get("TYPE").as_deref() != Some("PART") {
                    errs.push(format!("{line:?}: livebucket hints parts only"));
                }
                match get("URI") {
                    Some(uri) => preload_hint = Some(uri),
                    None => errs.push(format!("{line:?} lacks a URI")),
                }
                continue;
            }
            "#EXT-X-DISCONTINUITY" => pending_disc = true,
            _ => {}
        }
        if !line.starts_with('#') && !line.trim().is_empty() {
            seen_segment = true;
            parts.push(std::mem::take(&mut pending));
            pending_disc = false;
        }
        plain.push_str(line);
        plain.push('\n');
    }
    // The segment in progress's DISCONTINUITY applies to its parts.
    let tail_discontinuity = pending_disc;
    if tail_discontinuity {
        let cut = plain.rfind("#EXT-X-DISCONTINUITY\n").unwrap_or(plain.len());
        plain.replace_range(cut..cut + "#EXT-X-DISCONTINUITY\n".len(), "");
    }
    let base = check_playlist(&plain);
    let Some(part_target) = part_target else {
        errs.push("no #EXT-X-PART-INF:PART-TARGET".to_owned());
        return Err(errs.join("\n"));
    };
    if !block {
        errs.push("SERVER-CONTROL lacks CAN-BLOCK-RELOAD=YES".to_owned());
    }
    let hold_back = hold_back.unwrap_or(0.0);
    if hold_back < 2.0 * part_target {
        errs.push(format!(
            "PART-HOLD-BACK {hold_back} is under 2 × PART-TARGET {part_target}"
        ));
    }
    let skip_until = skip_until.unwrap_or(0.0);
    let base = match base {
        Ok(b) => b,
        Err(e) => {
            errs.push(e);
            return Err(errs.join("\n"));
        }
    };
    if skip_until < 6.0 * base.target_duration as f64 {
        errs.push(format!(
            "CAN-SKIP-UNTIL {skip_until} is under 6 × TARGETDURATION {}",
            base.target_duration
        ));
    }
    let all = parts.iter().chain(std::iter::once(&pending));
    for p in all.clone().flatten() {
        if p.duration > part_target + 1e-9 {
            errs.push(format!(
                "part {} lasts {} > PART-TARGET {part_target}",
                p.uri, p.duration
            ));
        }
    }
    for (i, (ps, extinf)) in parts.iter().zip(&base.durations).enumerate() {
        if ps.is_empty() {
            continue;
        }
        let sum: f64 = ps.iter().map(|p| p.duration).sum();
        if (sum - extinf).abs() > 0.0015 {
            errs.push(format!(
                "the parts of segment {i} add up to {sum}, its EXTINF is {extinf}"
            ));
        }
        for p in &ps[..ps.len() - 1] {
            if !p.independent && p.duration < 0.85 * part_target - 1e-9 {
                errs.push(format!(
                    "part {} lasts {}, under 85 % of {part_target}",
                    p.uri, p.duration
                ));
            }
        }
    }
    let mut uris = HashMap::new();
    for p in all.flatten() {
        if uris.insert(p.uri.clone(), ()).is_some() {
            errs.push(format!("part URI {} appears twice", p.uri));
        }
    }
    if errs.is_empty() {
        Ok(CheckedLl {
            base,
            can_skip_until: skip_until,
            skipped,
            parts,
            tail: pending,
            preload_hint,
        })
    } else {
        Err(errs.join("\n"))
    }
}
