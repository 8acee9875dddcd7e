//! What a master playlist says about a variant, read from one of its stored
//! MPEG-TS fragments: the video's `CODECS` entry (`avc1.PPCCLL` from the
//! H.264 sequence parameter set's `profile_idc`, constraint flags and
//! `level_idc`), `RESOLUTION` (the SPS's picture size minus its cropping),
//! `FRAME-RATE` (from the video's decode time stamps) and the audio's
//! `mp4a.40.N` (the ADTS header's object type). No I/O: bytes in, facts out.
//!
//! Packets and PES boundaries come from [`crate::llhls::ts`]. Only H.264
//! video and AAC (ADTS) audio are described: anything else leaves its
//! entry out (a master without a codec entry for a stream is still valid;
//! players then probe it themselves).

use crate::llhls::ts::{FrameStart, PACKET, Scanner, pes_data, split};

/// What one fragment says about its variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub video: Option<Video>,
    /// `mp4a.40.N`.
    pub audio: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    /// `avc1.PPCCLL`, lower-case hex.
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// Frames per second over the fragment's video decode time stamps;
    /// `None` with fewer than two frames.
    pub fps: Option<f64>,
}

impl Probe {
    /// The `CODECS` attribute's value: video first, then audio.
    pub fn codecs(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = &self.video {
            parts.push(v.codec.as_str());
        }
        if let Some(a) = &self.audio {
            parts.push(a.as_str());
        }
        parts.join(",")
    }
}

/// Probes one whole fragment; `None` when it is not MPEG-TS or holds
/// neither an H.264 SPS nor an ADTS header.
pub fn probe(ts: &[u8]) -> Option<Probe> {
    let whole = ts.len() - ts.len() % PACKET;
    let mut scanner = Scanner::new();
    let mut frames: Vec<FrameStart> = Vec::new();
    scanner.push(&ts[..whole], &mut frames).ok()?;
    let (video_pid, audio_pid) = scanner.streams();
    let video = video_pid.and_then(|pid| {
        let sps = first_pes_matching(ts, pid, find_sps)?;
        let fps = frame_rate(frames.iter().filter(|f| f.video).filter_map(|f| f.dts));
        Some(Video {
            codec: format!(
                "avc1.{:02x}{:02x}{:02x}",
                sps.profile, sps.constraints, sps.level
            ),
            width: sps.width,
            height: sps.height,
            fps,
        })
    });
    let audio = audio_pid.and_then(|pid| first_pes_matching(ts, pid, adts_codec));
    (video.is_some() || audio.is_some()).then_some(Probe { video, audio })
}

/// Reassembles the PES packets of `pid` in order and returns the first
/// answer `f` gives for one's elementary-stream bytes.
fn first_pes_matching<T>(ts: &[u8], pid: u16, f: impl Fn(&[u8]) -> Option<T>) -> Option<T> {
    let mut pes: Option<Vec<u8>> = None;
    for pkt in ts.chunks_exact(PACKET) {
        let Some(p) = split(pkt).filter(|p| p.pid == pid) else {
            continue;
        };
        if p.pusi {
            if let Some(done) = pes.take()
                && let Some(found) = pes_data(&done).and_then(&f)
            {
                return Some(found);
            }
            pes = Some(p.payload.to_vec());
        } else if let Some(buf) = pes.as_mut() {
            buf.extend_from_slice(p.payload);
        }
    }
    pes.as_deref().and_then(pes_data).and_then(f)
}

/// The mean frame rate over a stream's decode time stamps (90 kHz; they
/// wrap at 2^33), as [`nominal_rate`] reads it, rounded to the thousandth
/// as `FRAME-RATE` is written.
fn frame_rate(dts: impl Iterator<Item = u64>) -> Option<f64> {
    let mut first = None;
    let mut span = 0u64;
    let mut last = 0u64;
    let mut frames = 0u64;
    for d in dts {
        match first {
            None => first = Some(d),
            Some(_) => span += d.wrapping_sub(last) & ((1 << 33) - 1),
        }
        last = d;
        frames += 1;
    }
    (frames >= 2 && span > 0).then(|| {
        let mean = (frames - 1) as f64 * 90_000.0 / span as f64;
        (nominal_rate(mean) * 1000.0).round() / 1000.0
    })
}

/// RTMP carries time stamps in whole milliseconds, so a fragment's mean
/// frame rate is off by up to about 1 ms over its span (a 30 fps source
/// reads 29.995). The nearest whole rate, or NTSC's `N × 1000/1001`, when
/// the mean is within 0.05 % of it (a millisecond in two seconds, and
/// closer than 29.97 is to 30); else the mean itself.
fn nominal_rate(mean: f64) -> f64 {
    let whole = mean.round();
    let ntsc = (mean * 1.001).round() / 1.001;
    let off = |r: f64| ((mean - r) / r).abs();
    [whole, ntsc]
        .into_iter()
        .filter(|&r| r > 0.0 && off(r) < 0.0005)
        .min_by(|a, b| off(*a).total_cmp(&off(*b)))
        .unwrap_or(mean)
}

/// The AAC object type of the first ADTS header: `mp4a.40.N`.
fn adts_codec(es: &[u8]) -> Option<String> {
    let h = es.get(..3)?;
    if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
        return None;
    }
    // The 2-bit profile field is the MPEG-4 audio object type minus one.
    Some(format!("mp4a.40.{}", (h[2] >> 6) + 1))
}

/// The parts of an SPS a master playlist names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sps {
    profile: u8,
    constraints: u8,
    level: u8,
    width: u32,
    height: u32,
}

/// The first SPS NAL unit (type 7) of an Annex B access unit, parsed.
fn find_sps(es: &[u8]) -> Option<Sps> {
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i..i + 3] == [0, 0, 1] {
            let nal = &es[i + 3..];
            if nal.first().is_some_and(|h| h & 0x1f == 7) {
                let end = nal
                    .windows(3)
                    .position(|w| w == [0, 0, 1] || w == [0, 0, 0])
                    .unwrap_or(nal.len());
                return parse_sps(&unescape(&nal[1..end]));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// RBSP bytes: every emulation-prevention byte (`00 00 03`) removed.
fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// An SPS (ITU-T H.264 §7.3.2.1.1) after its NAL header, as far as the
/// cropped picture size.
fn parse_sps(rbsp: &[u8]) -> Option<Sps> {
    let mut r = Bits::new(rbsp);
    let profile = r.bits(8)? as u8;
    let constraints = r.bits(8)? as u8;
    let level = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            for _ in 0..r.ue()? {
                r.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? {
        left = r.ue()?;
        right = r.ue()?;
        top = r.ue()?;
        bottom = r.ue()?;
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    // §7.4.2.1.1: crop units by ChromaArrayType.
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (unit_x, unit_y) = match chroma_array_type {
        0 | 3 => (1, field_factor),
        1 => (2, 2 * field_factor),
        _ => (2, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(unit_x * (left + right))?;
    let height = (field_factor * height_map_units * 16).checked_sub(unit_y * (top + bottom))?;
    (width > 0 && height > 0).then_some(Sps {
        profile,
        constraints,
        level,
        width,
        height,
    })
}

fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// A big-endian bit reader with Exp-Golomb codes; every read is `None`
/// past the end, so a truncated SPS is refused, never read past.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.pos / 8)?;
        let b = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Some(b == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = v << 1 | u32::from(self.bit()?);
        }
        Some(v)
    }

    /// ue(v); values past 2^31 (never in a valid SPS) are refused.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// se(v).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made once with ffmpeg's libx264 (`-profile:v main -level 3.0`,
    /// 320x180 so the SPS crops 4 rows, 25 fps) and AAC-LC.
    const MAIN: &[u8] = include_bytes!("../../tests/data/abr/main_320x180_25fps_aac.ts");
    /// libx264 `-profile:v high -level 2.1`, 426x240 (cropped on the
    /// right), 30000/1001 fps, no audio.
    const HIGH: &[u8] = include_bytes!("../../tests/data/abr/high_426x240_29.97fps.ts");
    /// AAC-LC alone.
    const AAC: &[u8] = include_bytes!("../../tests/data/abr/aac_only.ts");

    #[test]
    fn a_main_profile_fragment_with_audio() {
        let p = probe(MAIN).expect("probed");
        assert_eq!(
            p.video,
            Some(Video {
                codec: "avc1.4d401e".into(),
                width: 320,
                height: 180,
                fps: Some(25.0),
            })
        );
        assert_eq!(p.audio.as_deref(), Some("mp4a.40.2"));
        assert_eq!(p.codecs(), "avc1.4d401e,mp4a.40.2");
    }

    #[test]
    fn a_high_profile_fragment_cropped_on_the_right_at_ntsc_rate() {
        let p = probe(HIGH).expect("probed");
        let v = p.video.clone().expect("video");
        assert_eq!(
            (v.codec.as_str(), v.width, v.height),
            ("avc1.640015", 426, 240)
        );
        assert_eq!(v.fps, Some(29.97));
        assert_eq!(p.audio, None);
        assert_eq!(p.codecs(), "avc1.640015");
    }

    #[test]
    fn an_audio_only_fragment() {
        let p = probe(AAC).expect("probed");
        assert_eq!(p.video, None);
        assert_eq!(p.codecs(), "mp4a.40.2");
    }

    #[test]
    fn garbage_and_truncation_are_refused_without_panicking() {
        assert_eq!(probe(b""), None);
        assert_eq!(probe(&[0u8; 188 * 3]), None);
        for cut in (0..MAIN.len()).step_by(97) {
            let _ = probe(&MAIN[..cut]);
        }
        // The fixture's SPS cut short anywhere: refused, never read past
        // its end.
        let rbsp = first_pes_matching(MAIN, 0x100, |es| {
            let at = es.windows(4).position(|w| w == [0, 0, 1, 0x67])?;
            Some(unescape(&es[at + 4..]))
        })
        .expect("the fixture's SPS");
        assert!(parse_sps(&rbsp).is_some());
        for n in 0..8 {
            assert_eq!(parse_sps(&rbsp[..n]), None, "{n} bytes");
        }
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            unescape(&[1, 0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![1, 0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn exp_golomb_codes() {
        // 1 | 010 | 011 | 00100 | 00101 → ue 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = Bits::new(&data);
        let got: Vec<u32> = (0..5).map(|_| r.ue().unwrap()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        let mut r = Bits::new(&data);
        let got: Vec<i64> = (0..5).map(|_| r.se().unwrap()).collect();
        assert_eq!(got, vec![0, 1, -1, 2, -2]);
    }

    #[test]
    fn millisecond_time_stamps_read_as_the_nominal_rate() {
        // 60 frames of 30 fps in ms: 1967 ms from the first to the last.
        assert_eq!(nominal_rate(59.0 / 1.967), 30.0);
        // 29.97 fps in ms: 59 frames in 1969 ms.
        assert!((nominal_rate(59.0 / 1.969) - 30_000.0 / 1001.0).abs() < 1e-9);
        assert_eq!(nominal_rate(25.0), 25.0);
        // Nothing nominal near: the mean stays.
        assert_eq!(nominal_rate(27.3), 27.3);
        let ms = |frames: u64, span_ms: u64| {
            frame_rate((0..frames).map(|i| i * span_ms * 90 / (frames - 1)))
        };
        assert_eq!(ms(60, 1967), Some(30.0));
        assert_eq!(ms(60, 1969), Some(29.97));
    }
}
