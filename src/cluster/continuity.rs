//! Continuity across nodes: a channel that resumes on another node goes on
//! from the playlist the last holder stored in the bucket. The bucket is the
//! record (every node reads it, it outlives any node), and the playlist is
//! what players saw, so continuing from it keeps the media sequence, the
//! discontinuity sequence and the window exactly as they were; the new
//! session then adds one `#EXT-X-DISCONTINUITY` (`ChannelLive::begin_session`).
//!
//! Only livebucket's own playlists are read back, so only what
//! `hls::render_live` writes is understood; anything else yields `None` (the
//! channel then starts a new playlist, as a single node does).

use crate::live::WindowSeg;
use crate::pipeline::fence::Resume;

/// The state of a live playlist as rendered by livebucket; `None` if it is
/// not one (or lists a URI that is not `<13-digit ms>.ts`).
pub(crate) fn parse(text: &str) -> Option<Resume> {
    let mut lines = text.lines();
    if lines.next()?.trim_end() != "#EXTM3U" {
        return None;
    }
    let mut r = Resume {
        media_sequence: 0,
        discontinuity_sequence: 0,
        window: Vec::new(),
        ended: false,
    };
    let mut discontinuity = false;
    let mut pdt: Option<u64> = None;
    let mut extinf: Option<String> = None;
    for line in lines.map(str::trim_end).filter(|l| !l.is_empty()) {
        if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            r.media_sequence = v.parse().ok()?;
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            r.discontinuity_sequence = v.parse().ok()?;
        } else if line == "#EXT-X-DISCONTINUITY" {
            discontinuity = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            let t = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .ok()?;
            pdt = Some(u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?);
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            extinf = Some(v.split(',').next()?.to_owned());
        } else if line == "#EXT-X-ENDLIST" {
            r.ended = true;
        } else if line.starts_with('#') {
            continue;
        } else {
            let key_ms = crate::layout::parse_fragment_name(line)?;
            let extinf = extinf.take()?;
            let duration_ms = extinf_ms(&extinf)?;
            r.window.push(WindowSeg {
                key_ms,
                extinf,
                duration_ms,
                discontinuity: std::mem::take(&mut discontinuity),
                program_date_time_ms: pdt.take(),
            });
        }
    }
    Some(r)
}

/// `2.002` → 2002.
fn extinf_ms(v: &str) -> Option<u64> {
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let mut ms: u64 = secs.parse::<u64>().ok()?.checked_mul(1000)?;
    let frac = format!("{frac:0<3}");
    ms += frac.get(..3)?.parse::<u64>().ok()?;
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::ChannelLive;

    fn seg(key_ms: u64, ms: u64, pdt: Option<u64>) -> WindowSeg {
        WindowSeg {
            key_ms,
            extinf: format!("{}.{:03}", ms / 1000, ms % 1000),
            duration_ms: ms,
            discontinuity: false,
            program_date_time_ms: pdt,
        }
    }

    /// What one node rendered, another reads back: the same sequences,
    /// window, discontinuities, dates; then it continues with exactly one
    /// new discontinuity and the next media sequence numbers.
    #[test]
    fn round_trip_and_continue() {
        let mut a = ChannelLive::default();
        let base = 1_732_000_000_000u64;
        a.append(seg(base, 2002, Some(base)), 3, 2);
        for i in 1..5 {
            a.append(seg(base + i * 2000, 2002, None), 3, 2);
        }
        a.begin_session();
        a.append(seg(base + 20_000, 1500, Some(base + 20_000)), 3, 2);
        a.end();
        let text = a.render(2);
        let r = parse(&text).expect("parses");
        assert_eq!(r.media_sequence, a.media_sequence());
        assert_eq!(r.discontinuity_sequence, a.discontinuity_sequence);
        assert_eq!(r.window, a.window.iter().cloned().collect::<Vec<_>>());
        assert!(r.ended);

        let mut b = ChannelLive::default();
        assert!(b.adopt(&r));
        assert_eq!(b.render(2), text);
        b.begin_session();
        b.append(seg(base + 30_000, 2000, Some(base + 30_000)), 3, 2);
        let next = b.render(2);
        assert_eq!(next.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{next}");
        assert!(!next.contains("ENDLIST"));
        assert_eq!(b.total, a.total + 1);
        // Older than what a node knows already: kept out.
        let mut c = ChannelLive {
            last_key_ms: base + 40_000,
            ..ChannelLive::default()
        };
        assert!(!c.adopt(&r));
    }

    #[test]
    fn not_ours_is_none() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("#EXTM3U\n#EXTINF:2.0,\nfoo.ts\n"), None);
        assert_eq!(parse("#EXTM3U\nabc.ts\n"), None);
        assert_eq!(extinf_ms("2.5"), Some(2500));
        assert_eq!(extinf_ms("10"), Some(10_000));
        assert_eq!(extinf_ms("x"), None);
    }
}
