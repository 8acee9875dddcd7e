//! A fragment's true duration from its own MPEG-TS timestamps, for the
//! fragments nginx never lists (cut short by a crash, or gone from its
//! window while livebucket was down): the span between the first and the
//! last presentation timestamp (PTS) of its audio and video PES packets,
//! plus one frame.
//!
//! Only the head and the tail of the file are read ([`media_ms`]): the first
//! PTS is in the first packets, the last in the last ones, so a fragment of
//! any size costs two small reads. The parsing ([`span_ms`]) has no I/O.
//! PTS are 33-bit and wrap (every 26.5 hours): spans are taken modulo 2^33
//! around the first timestamp, so a fragment across the wrap measures right.
//!
//! The same head read tells whether the fragment's first video frame is a
//! keyframe ([`keyframe_start`]): nginx-rtmp (like ffmpeg's muxer) sets the
//! random access indicator in the adaptation field of the packet that starts
//! a keyframe's PES, and the pipeline warns about an encoder whose
//! fragments do not start with one (`pipeline/machine/fit.rs`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// PTS ticks per millisecond (90 kHz clock).
const TICKS_PER_MS: i64 = 90;
const WRAP: i64 = 1 << 33;
/// Bytes read at each end of the file: a few hundred packets, far more than
/// the distance from a fragment's end to its last PES header.
const END_BYTES: u64 = 188 * 1024;

/// What the pipeline reads from a kept fragment's own bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Its duration in ms from its timestamps ([`span_ms`]).
    pub media_ms: Option<u64>,
    /// Whether its first video frame is a keyframe ([`keyframe_start`]).
    pub keyframe_start: Option<bool>,
}

/// [`Facts`] of the MPEG-TS file at `path`, from two small reads; each
/// `None` when the file cannot be read or lacks what it needs.
pub(crate) fn facts(path: &Path) -> Facts {
    let read = || -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        let mut head = Vec::new();
        (&mut f).take(END_BYTES).read_to_end(&mut head)?;
        let mut tail = Vec::new();
        if len > END_BYTES {
            f.seek(SeekFrom::Start(len.saturating_sub(END_BYTES)))?;
            f.read_to_end(&mut tail)?;
        }
        Ok((head, tail))
    };
    match read() {
        Ok((head, tail)) => Facts {
            media_ms: span_ms(&head, &tail),
            keyframe_start: keyframe_start(&head),
        },
        Err(_) => Facts::default(),
    }
}

/// The duration of the MPEG-TS file at `path`, in ms, from its timestamps;
/// `None` when it cannot be read or holds no PTS.
pub(crate) fn media_ms(path: &Path) -> Option<u64> {
    facts(path).media_ms
}

/// Whether the first video PES in `head` (a file's first bytes, from a
/// packet boundary) starts with the random access indicator, i.e. is a
/// keyframe; `None` when `head` holds no video PES start.
pub(crate) fn keyframe_start(head: &[u8]) -> Option<bool> {
    head.chunks_exact(PACKET)
        .filter(|p| p[0] == SYNC && p[1] & 0x40 != 0)
        .find_map(|p| {
            let control = (p[3] >> 4) & 3;
            let adaptation = control & 2 != 0;
            let offset = if adaptation { 5 + usize::from(p[4]) } else { 4 };
            let pes = p.get(offset..)?;
            let video = pes.len() >= 4 && pes[..3] == [0, 0, 1] && (0xE0..=0xEF).contains(&pes[3]);
            // The flags byte follows the adaptation field's length; bit 6
            // is the random access indicator.
            video.then(|| adaptation && p[4] > 0 && p[5] & 0x40 != 0)
        })
}

/// The duration in ms that the PTS in `head` (the file's first bytes) and
/// `tail` (its last bytes, may be empty when `head` is the whole file) span,
/// plus one frame of the stream with the most timestamps; `None` without
/// two distinct timestamps.
pub(crate) fn span_ms(head: &[u8], tail: &[u8]) -> Option<u64> {
    let mut stamps: Vec<(u16, u64)> = pts(head).collect();
    stamps.extend(pts(tail));
    let &(_, first) = stamps.first()?;
    // Relative to the first timestamp, in (-2^32, 2^32]: wraps undone.
    let rel = |p: u64| {
        let d = (p as i64 - first as i64).rem_euclid(WRAP);
        if d > WRAP / 2 { d - WRAP } else { d }
    };
    let lo = stamps.iter().map(|&(_, p)| rel(p)).min()?;
    let hi = stamps.iter().map(|&(_, p)| rel(p)).max()?;
    if hi <= lo {
        return None;
    }
    Some(((hi - lo + frame(&stamps, rel)) / TICKS_PER_MS) as u64)
}

/// One frame of the stream (PID) with the most timestamps in the head: the
/// smallest step between its consecutive sorted PTS (0 if unknown).
fn frame(stamps: &[(u16, u64)], rel: impl Fn(u64) -> i64) -> i64 {
    let mut pids: Vec<u16> = stamps.iter().map(|&(pid, _)| pid).collect();
    pids.sort_unstable();
    let busiest = pids
        .chunk_by(|a, b| a == b)
        .max_by_key(|c| c.len())
        .and_then(|c| c.first().copied());
    let mut own: Vec<i64> = stamps
        .iter()
        .filter(|&&(pid, _)| Some(pid) == busiest)
        .map(|&(_, p)| rel(p))
        .collect();
    own.sort_unstable();
    own.dedup();
    own.windows(2).map(|w| w[1] - w[0]).min().unwrap_or(0)
}

/// (PID, PTS) of every audio or video PES header in `bytes`, which may start
/// mid-packet (a tail read): packets are found by two syncs 188 bytes apart.
fn pts(bytes: &[u8]) -> impl Iterator<Item = (u16, u64)> + '_ {
    let start = (0..PACKET.min(bytes.len()))
        .find(|&o| bytes.get(o) == Some(&SYNC) && bytes.get(o + PACKET).is_none_or(|&b| b == SYNC))
        .unwrap_or(bytes.len());
    bytes[start..]
        .chunks_exact(PACKET)
        .filter(|p| p[0] == SYNC)
        .filter_map(packet_pts)
}

/// The PTS of a packet that starts an audio or video PES with one.
fn packet_pts(p: &[u8]) -> Option<(u16, u64)> {
    let unit_start = p[1] & 0x40 != 0;
    if !unit_start {
        return None;
    }
    let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
    let control = (p[3] >> 4) & 3;
    if control & 1 == 0 {
        return None; // no payload
    }
    let offset = if control & 2 != 0 {
        5 + usize::from(p[4])
    } else {
        4
    };
    let pes = p.get(offset..)?;
    if pes.len() < 14 || pes[..3] != [0, 0, 1] {
        return None;
    }
    let stream = pes[3];
    // 0xC0-0xDF audio, 0xE0-0xEF video; the flags say a PTS follows.
    if !(0xC0..=0xEF).contains(&stream) || pes[7] & 0x80 == 0 {
        return None;
    }
    let b = &pes[9..14];
    let pts = (u64::from(b[0] >> 1) & 7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1);
    Some((pid, pts))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: u16 = 0x100;
    const AUDIO: u16 = 0x101;

    /// One TS packet starting a PES of `stream` with `pts`, padded with an
    /// adaptation field as muxers do; or a continuation packet (no PTS).
    fn packet(pid: u16, stream: u8, pts: Option<u64>) -> Vec<u8> {
        let mut p = vec![SYNC, (pid >> 8) as u8 & 0x1f, pid as u8, 0x30];
        let mut pes = Vec::new();
        if let Some(t) = pts {
            p[1] |= 0x40;
            pes.extend_from_slice(&[0, 0, 1, stream, 0, 0, 0x80, 0x80, 5]);
            pes.push(0x21 | ((t >> 29) as u8 & 0x0e));
            pes.push((t >> 22) as u8);
            pes.push(((t >> 14) as u8 & 0xfe) | 1);
            pes.push((t >> 7) as u8);
            pes.push(((t << 1) as u8 & 0xfe) | 1);
        }
        let stuffing = PACKET - 4 - 1 - pes.len() - 20;
        p.push(stuffing as u8);
        p.push(0);
        p.extend(std::iter::repeat_n(0xff, stuffing - 1));
        p.extend(pes);
        p.extend(std::iter::repeat_n(0xaa, 20));
        assert_eq!(p.len(), PACKET);
        p
    }

    /// `seconds` of 30 fps video and ~23 ms AAC frames from `start`, each
    /// frame a PES header packet and a continuation packet.
    fn fragment(start: u64, seconds: f64) -> Vec<u8> {
        let mut out = Vec::new();
        let frames = (seconds * 30.0) as u64;
        for i in 0..frames {
            out.extend(packet(VIDEO, 0xE0, Some((start + i * 3000) % (1 << 33))));
            out.extend(packet(VIDEO, 0xE0, None));
            if i % 2 == 0 {
                out.extend(packet(AUDIO, 0xC0, Some((start + i * 3000) % (1 << 33))));
            }
        }
        out
    }

    #[test]
    fn the_span_of_a_whole_fragment() {
        let ts = fragment(900_000, 1.5);
        // 45 frames of 33.3 ms: 1.5 s, whatever the names say.
        assert_eq!(span_ms(&ts, &[]), Some(1500));
        let ts = fragment(0, 6.0);
        assert_eq!(span_ms(&ts, &[]), Some(6000));
    }

    #[test]
    fn head_and_tail_of_a_long_fragment() {
        let ts = fragment(5_000, 10.0);
        let head = &ts[..188 * 50];
        // A tail read that does not start on a packet boundary.
        let tail = &ts[ts.len() - 188 * 50 - 77..];
        assert_eq!(span_ms(head, tail), Some(10_000));
    }

    #[test]
    fn across_the_33_bit_wrap() {
        let ts = fragment((1 << 33) - 90_000, 2.0);
        assert_eq!(span_ms(&ts, &[]), Some(2000));
    }

    #[test]
    fn the_first_video_frame_says_whether_a_fragment_starts_with_a_keyframe() {
        // `packet` writes an adaptation field with no flags: not a keyframe.
        let key = |pts| {
            let mut p = packet(VIDEO, 0xE0, Some(pts));
            p[5] |= 0x40; // random access indicator
            p
        };
        let audio = packet(AUDIO, 0xC0, Some(0));
        let keyed = [audio.clone(), key(3000), packet(VIDEO, 0xE0, Some(6000))].concat();
        assert_eq!(keyframe_start(&keyed), Some(true));
        let cut = [audio.clone(), packet(VIDEO, 0xE0, Some(3000)), key(6000)].concat();
        assert_eq!(keyframe_start(&cut), Some(false));
        // Only audio, or nothing readable: unknown.
        assert_eq!(keyframe_start(&audio), None);
        assert_eq!(keyframe_start(&[0u8; 1000]), None);
        // Only the first video PES start counts, not its continuations.
        let continued = [packet(VIDEO, 0xE0, None), key(0)].concat();
        assert_eq!(keyframe_start(&continued), Some(true));
    }

    #[test]
    fn no_timestamps_no_duration() {
        assert_eq!(span_ms(&[], &[]), None);
        assert_eq!(span_ms(&[0u8; 1000], &[]), None);
        let one = packet(VIDEO, 0xE0, Some(42));
        assert_eq!(span_ms(&one, &[]), None);
        let mut no_pts = Vec::new();
        for _ in 0..10 {
            no_pts.extend(packet(VIDEO, 0xE0, None));
        }
        assert_eq!(span_ms(&no_pts, &[]), None);
        // A PES of another stream type (private data) is not media.
        let mut private = packet(VIDEO, 0xBD, Some(0));
        private.extend(packet(VIDEO, 0xBD, Some(90_000)));
        assert_eq!(span_ms(&private, &[]), None);
    }

    #[test]
    fn media_ms_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.ts");
        std::fs::write(&path, fragment(0, 3.0)).unwrap();
        assert_eq!(media_ms(&path), Some(3000));
        assert_eq!(media_ms(&dir.path().join("missing.ts")), None);
    }
}
