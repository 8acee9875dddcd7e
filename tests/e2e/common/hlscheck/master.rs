//! An independent checker for master (multivariant) playlists: RFC 8216
//! §4.3.4.2 and §4.1, with the attribute rules of draft-pantos-hls-rfc8216bis
//! (§4.4.6.2), read tag by tag; and [`check_bandwidth`], which holds a
//! variant's `BANDWIDTH` against the segments it names.
//!
//! Stricter than the RFC, on purpose (livebucket always writes these):
//! `CODECS` is required (the draft's SHOULD), and a variant with a video codec
//! states its `RESOLUTION` and `FRAME-RATE` while an audio-only one states
//! neither. As in [`super::check_playlist`], every violation is reported, one
//! per line, and a master we accept is read again by m3u8-rs, which must see
//! the same variants.

use std::collections::HashSet;

use super::after_header;

/// One `EXT-X-STREAM-INF` and its URI.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedVariant {
    pub uri: String,
    pub bandwidth: u64,
    pub average_bandwidth: Option<u64>,
    /// `RESOLUTION` as (width, height).
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    /// The formats listed in `CODECS`, e.g. `["avc1.42c01e", "mp4a.40.2"]`.
    pub codecs: Vec<String>,
}

impl CheckedVariant {
    /// `CODECS` lists a video format.
    pub fn has_video(&self) -> bool {
        self.codecs.iter().any(|c| is_video_codec(c))
    }
}

/// What a valid master playlist says.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedMaster {
    /// In the order listed.
    pub variants: Vec<CheckedVariant>,
}

impl CheckedMaster {
    /// The variant whose URI, without its query, is `path` or ends in
    /// `/path`.
    pub fn variant(&self, path: &str) -> Option<&CheckedVariant> {
        self.variants.iter().find(|v| {
            let bare = v.uri.split('?').next().unwrap_or_default();
            bare == path || bare.ends_with(&format!("/{path}"))
        })
    }
}

/// Tags that belong to media playlists only (media segment, media playlist
/// and Low-Latency tags): a master must not contain them (§4.1).
const MEDIA_TAGS: &[&str] = &[
    "#EXTINF",
    "#EXT-X-BYTERANGE",
    "#EXT-X-DISCONTINUITY",
    "#EXT-X-KEY",
    "#EXT-X-MAP",
    "#EXT-X-PROGRAM-DATE-TIME",
    "#EXT-X-DATERANGE",
    "#EXT-X-GAP",
    "#EXT-X-BITRATE",
    "#EXT-X-TARGETDURATION",
    "#EXT-X-MEDIA-SEQUENCE",
    "#EXT-X-DISCONTINUITY-SEQUENCE",
    "#EXT-X-ENDLIST",
    "#EXT-X-PLAYLIST-TYPE",
    "#EXT-X-I-FRAMES-ONLY",
    "#EXT-X-PART-INF",
    "#EXT-X-SERVER-CONTROL",
    "#EXT-X-PART",
    "#EXT-X-SKIP",
    "#EXT-X-PRELOAD-HINT",
    "#EXT-X-RENDITION-REPORT",
];

/// Checks one master playlist and returns its variants, or every violation
/// found.
pub fn check_master(text: &str) -> Result<CheckedMaster, String> {
    let mut errs: Vec<String> = Vec::new();
    let lines = after_header(text, &mut errs);

    let mut variants: Vec<CheckedVariant> = Vec::new();
    // The STREAM-INF awaiting its URI: its line and what it said (None when
    // its attributes were already reported as wrong).
    let mut pending: Option<(usize, Option<CheckedVariant>)> = None;
    let mut version_seen = false;
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
        if line.starts_with("#EXT") {
            let (name, value) = match line.split_once(':') {
                Some((name, value)) => (name, Some(value)),
                None => (line, None),
            };
            if let Some((at, _)) = &pending {
                errs.push(format!(
                    "line {at}: EXT-X-STREAM-INF is followed by the tag {name} at line {n}, not by its URI (§4.3.4.2)"
                ));
                pending = None;
            }
            match name {
                "#EXTM3U" => errs.push(format!("line {n}: #EXTM3U repeated")),
                "#EXT-X-VERSION" => {
                    if version_seen {
                        errs.push(format!("line {n}: {name} appears more than once"));
                    }
                    version_seen = true;
                    if !value.is_some_and(is_decimal_integer) {
                        errs.push(format!(
                            "line {n}: {name} must be a decimal integer, found {value:?}"
                        ));
                    }
                }
                "#EXT-X-STREAM-INF" => {
                    let variant = stream_inf(n, value.unwrap_or_default(), &mut errs);
                    pending = Some((n, variant));
                }
                _ if MEDIA_TAGS.contains(&name) => errs.push(format!(
                    "line {n}: media playlist tag {name} in a master playlist (§4.1)"
                )),
                // EXT-X-MEDIA, EXT-X-INDEPENDENT-SEGMENTS, SESSION-DATA…:
                // livebucket writes none of them, and clients ignore tags
                // they do not know (§4.1).
                _ => {}
            }
        } else if line.starts_with('#') {
            // A comment.
        } else {
            match pending.take() {
                Some((_, Some(mut variant))) => {
                    variant.uri = line.to_owned();
                    variants.push(variant);
                }
                Some((_, None)) => {}
                None => errs.push(format!(
                    "line {n}: URI {line:?} without a preceding EXT-X-STREAM-INF (§4.3.4.2)"
                )),
            }
        }
    }
    if let Some((n, _)) = pending {
        errs.push(format!(
            "line {n}: EXT-X-STREAM-INF is not followed by a URI"
        ));
    }
    if variants.is_empty() && errs.is_empty() {
        errs.push("no EXT-X-STREAM-INF: a master playlist lists its variants".into());
    }
    let mut seen = HashSet::new();
    for v in &variants {
        if !seen.insert(v.uri.as_str()) {
            errs.push(format!("variant URI {:?} listed twice", v.uri));
        }
    }
    let checked = CheckedMaster { variants };
    if errs.is_empty() {
        cross_check_m3u8_rs(text, &checked, &mut errs);
    }
    if errs.is_empty() {
        Ok(checked)
    } else {
        Err(errs.join("\n"))
    }
}

/// The attributes of the `EXT-X-STREAM-INF` at line `n`, checked; `None`
/// when one is wrong (reported in `errs`).
fn stream_inf(n: usize, value: &str, errs: &mut Vec<String>) -> Option<CheckedVariant> {
    let before = errs.len();
    let attrs = match attribute_list(value) {
        Ok(a) => a,
        Err(e) => {
            errs.push(format!("line {n}: EXT-X-STREAM-INF: {e} (§4.2)"));
            return None;
        }
    };
    let get = |name: &str| attrs.iter().find(|a| a.name == name);
    let mut bad = |what: String| errs.push(format!("line {n}: EXT-X-STREAM-INF {what}"));

    let integer =
        |a: &Attr| (!a.quoted && is_decimal_integer(&a.value)).then(|| a.value.parse().ok())?;
    let bandwidth = match get("BANDWIDTH") {
        None => {
            bad("lacks BANDWIDTH, which is required (§4.3.4.2)".into());
            None
        }
        Some(a) => {
            let v = integer(a);
            if v.is_none() {
                bad(format!("BANDWIDTH {:?} is not a decimal-integer", a.value));
            }
            v
        }
    };
    let average_bandwidth = get("AVERAGE-BANDWIDTH").and_then(|a| {
        let v = integer(a);
        if v.is_none() {
            bad(format!(
                "AVERAGE-BANDWIDTH {:?} is not a decimal-integer",
                a.value
            ));
        }
        v
    });
    if let (Some(peak), Some(avg)) = (bandwidth, average_bandwidth)
        && avg > peak
    {
        bad(format!(
            "AVERAGE-BANDWIDTH {avg} exceeds BANDWIDTH {peak}: the peak cannot be under the average"
        ));
    }
    let resolution = get("RESOLUTION").and_then(|a| {
        let r = (!a.quoted).then(|| decimal_resolution(&a.value)).flatten();
        if r.is_none() {
            bad(format!(
                "RESOLUTION {:?} is not a decimal-resolution WIDTHxHEIGHT",
                a.value
            ));
        }
        r
    });
    let frame_rate = get("FRAME-RATE").and_then(|a| {
        let ok = !a.quoted && is_decimal_float(&a.value) && {
            let frac = a.value.split_once('.').map_or("", |(_, f)| f);
            frac.len() <= 3
        };
        if !ok {
            bad(format!(
                "FRAME-RATE {:?} is not a decimal-floating-point with at most three decimals",
                a.value
            ));
        }
        ok.then(|| a.value.parse().ok()).flatten()
    });
    let codecs: Vec<String> = match get("CODECS") {
        None => {
            bad("lacks CODECS (rfc8216bis: every EXT-X-STREAM-INF SHOULD have one; livebucket always writes it)".into());
            Vec::new()
        }
        Some(a) if !a.quoted => {
            bad(format!("CODECS {:?} is not a quoted-string", a.value));
            Vec::new()
        }
        Some(a) => {
            let list: Vec<String> = a.value.split(',').map(str::to_owned).collect();
            for c in &list {
                if let Err(e) = check_codec(c) {
                    bad(format!("CODECS lists {c:?}: {e}"));
                }
            }
            let videos = list.iter().filter(|c| is_video_codec(c)).count();
            let audios = list.len() - videos;
            if videos > 1 || audios > 1 {
                bad(format!("CODECS {:?} lists a media type twice", a.value));
            }
            list
        }
    };
    let video = codecs.iter().any(|c| is_video_codec(c));
    if video && resolution.is_none() {
        bad("lists a video codec but no RESOLUTION".into());
    }
    if video && frame_rate.is_none() {
        bad("lists a video codec but no FRAME-RATE".into());
    }
    if !video && !codecs.is_empty() && (resolution.is_some() || frame_rate.is_some()) {
        bad("states RESOLUTION or FRAME-RATE for an audio-only variant".into());
    }
    if errs.len() > before {
        return None;
    }
    Some(CheckedVariant {
        uri: String::new(),
        bandwidth: bandwidth?,
        average_bandwidth,
        resolution,
        frame_rate,
        codecs,
    })
}

/// m3u8-rs must read the same variants, in order.
fn cross_check_m3u8_rs(text: &str, c: &CheckedMaster, errs: &mut Vec<String>) {
    let m = match m3u8_rs::parse_master_playlist_res(text.as_bytes()) {
        Ok(m) => m,
        Err(e) => {
            errs.push(format!("m3u8-rs cannot parse the master playlist: {e:?}"));
            return;
        }
    };
    let theirs: Vec<(&str, u64, Option<u64>)> = m
        .variants
        .iter()
        .filter(|v| !v.is_i_frame)
        .map(|v| (v.uri.as_str(), v.bandwidth, v.average_bandwidth))
        .collect();
    let ours: Vec<(&str, u64, Option<u64>)> = c
        .variants
        .iter()
        .map(|v| (v.uri.as_str(), v.bandwidth, v.average_bandwidth))
        .collect();
    if theirs != ours {
        errs.push(format!(
            "m3u8-rs reads other variants (uri, bandwidth, average): {theirs:?}, expected {ours:?}"
        ));
    }
}

/// One attribute of an attribute-list.
struct Attr {
    name: String,
    value: String,
    quoted: bool,
}

/// Parses an attribute-list (§4.2): `NAME=VALUE` pairs separated by commas,
/// names of `[A-Z0-9-]`, a value either a quoted-string (no `"`, CR or LF
/// inside) or an unquoted run up to the next comma; no name twice.
fn attribute_list(value: &str) -> Result<Vec<Attr>, String> {
    let mut out: Vec<Attr> = Vec::new();
    let mut rest = value;
    loop {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("{rest:?} is not NAME=VALUE"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!("attribute name {name:?} is not [A-Z0-9-]+"));
        }
        if out.iter().any(|a| a.name == name) {
            return Err(format!("attribute {name} appears twice"));
        }
        let (val, quoted, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q
                .find('"')
                .ok_or_else(|| format!("{name}'s quoted-string is not closed"))?;
            (&q[..end], true, &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], false, &after[end..])
        };
        if !quoted && (val.is_empty() || val.contains('"')) {
            return Err(format!("{name} has a malformed value {val:?}"));
        }
        out.push(Attr {
            name: name.to_owned(),
            value: val.to_owned(),
            quoted,
        });
        match next.strip_prefix(',') {
            Some(more) => rest = more,
            None if next.is_empty() => return Ok(out),
            None => {
                return Err(format!(
                    "{next:?} follows {name}'s value instead of a comma"
                ));
            }
        }
    }
}

fn is_decimal_integer(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `[0-9]+(\.[0-9]+)?` (§4.2 decimal-floating-point).
fn is_decimal_float(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac)
}

/// `WIDTHxHEIGHT`, both decimal-integers above zero.
fn decimal_resolution(s: &str) -> Option<(u32, u32)> {
    let (w, h) = s.split_once('x')?;
    let (w, h) = (
        is_decimal_integer(w).then(|| w.parse::<u32>().ok())??,
        is_decimal_integer(h).then(|| h.parse::<u32>().ok())??,
    );
    (w > 0 && h > 0).then_some((w, h))
}

fn is_video_codec(c: &str) -> bool {
    ["avc1.", "avc3.", "hvc1.", "hev1."]
        .iter()
        .any(|p| c.starts_with(p))
}

/// The formats a livebucket master may list (RFC 6381): H.264 as
/// `avc1.PPCCLL` (profile, constraint flags, level, six hex digits) and
/// AAC as `mp4a.40.N` (N the audio object type, a decimal).
fn check_codec(c: &str) -> Result<(), String> {
    if let Some(hex) = c.strip_prefix("avc1.").or_else(|| c.strip_prefix("avc3.")) {
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("an H.264 format is avc1.PPCCLL, six hex digits (RFC 6381 §3.3)".into());
        }
        let profile = u8::from_str_radix(&hex[..2], 16).unwrap_or(0);
        // The profile_idc values of ITU-T H.264 Annex A (and its SVC/MVC
        // annexes), which the SPS carries.
        const PROFILES: &[u8] = &[66, 77, 88, 100, 110, 122, 244, 44, 83, 86, 118, 128];
        if !PROFILES.contains(&profile) {
            return Err(format!("profile_idc {profile} is not an H.264 profile"));
        }
        let level = u8::from_str_radix(&hex[4..], 16).unwrap_or(0);
        if !(9..=62).contains(&level) {
            return Err(format!("level_idc {level} is not an H.264 level"));
        }
        return Ok(());
    }
    if let Some(aot) = c.strip_prefix("mp4a.40.") {
        return match aot.parse::<u8>() {
            Ok(1..=46) if is_decimal_integer(aot) && !aot.starts_with('0') => Ok(()),
            _ => Err("an AAC format is mp4a.40.N, N a decimal audio object type".into()),
        };
    }
    Err("not an H.264 (avc1.PPCCLL) or AAC (mp4a.40.N) format".into())
}

/// Checks a variant's `BANDWIDTH` against its media segments, given as
/// (EXTINF seconds, bytes): rfc8216bis §4.4.6.2 asks for at least the peak
/// segment bit rate, bytes × 8 / EXTINF of the worst segment. EXTINF is
/// rounded to the millisecond in the playlist, so 0.1 % of slack is allowed.
/// A `BANDWIDTH` above twice the peak is refused too: it is not a
/// measurement, and players would pick a lower variant than they could play.
/// `AVERAGE-BANDWIDTH`, when given, must be within 10 % of total bits over
/// total duration.
pub fn check_bandwidth(variant: &CheckedVariant, segments: &[(f64, u64)]) -> Result<(), String> {
    let mut errs = Vec::new();
    if segments.is_empty() {
        return Err(format!(
            "variant {:?} has no segment to measure",
            variant.uri
        ));
    }
    let mut peak = 0.0_f64;
    let (mut bits, mut secs) = (0.0_f64, 0.0_f64);
    for (i, &(d, bytes)) in segments.iter().enumerate() {
        if d <= 0.0 {
            errs.push(format!("segment {i} lasts {d} s"));
            continue;
        }
        peak = peak.max(bytes as f64 * 8.0 / d);
        bits += bytes as f64 * 8.0;
        secs += d;
    }
    let declared = variant.bandwidth as f64;
    if declared * 1.001 < peak {
        errs.push(format!(
            "BANDWIDTH {} of {:?} is under its peak segment bit rate {peak:.0} (rfc8216bis §4.4.6.2)",
            variant.bandwidth, variant.uri
        ));
    }
    if declared > 2.0 * peak {
        errs.push(format!(
            "BANDWIDTH {} of {:?} is over twice its peak segment bit rate {peak:.0}: not measured",
            variant.bandwidth, variant.uri
        ));
    }
    if let Some(avg) = variant.average_bandwidth
        && secs > 0.0
    {
        let measured = bits / secs;
        if (avg as f64 - measured).abs() > 0.1 * measured {
            errs.push(format!(
                "AVERAGE-BANDWIDTH {avg} of {:?} is not within 10 % of its segments' {measured:.0}",
                variant.uri
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}
