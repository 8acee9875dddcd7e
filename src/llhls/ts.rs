//! An incremental MPEG-TS scanner: it is fed a growing fragment in whole
//! 188-byte packets and reports where each PES packet of the fragment's
//! first video and first audio stream starts, with its decode time stamp
//! (DTS, else PTS) and whether it is a keyframe.
//!
//! A frame starts at a packet with `payload_unit_start_indicator` on one of
//! those PIDs; nginx-rtmp writes each frame's packets before the next
//! frame's, so every byte before such a packet belongs to whole frames. A
//! keyframe is flagged by the adaptation field's `random_access_indicator`
//! (nginx-rtmp and ffmpeg set it) or, failing that, by an H.264 IDR NAL unit
//! in the frame's first packet. The PAT and PMT packets are kept so a part
//! that does not begin its fragment can be made decodable on its own.

/// The size of an MPEG-TS packet.
pub(crate) const PACKET: usize = 188;

/// Stream types of the PMT taken as video (MPEG-2, MPEG-4 part 2, H.264, HEVC).
const VIDEO_TYPES: [u8; 4] = [0x02, 0x10, 0x1b, 0x24];
/// Stream types taken as audio (MPEG-1/2 audio, AAC ADTS, AAC LATM, AC-3).
const AUDIO_TYPES: [u8; 5] = [0x03, 0x04, 0x0f, 0x11, 0x81];

/// Where one access unit of the media stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameStart {
    /// Byte offset of its first packet in the fragment.
    pub offset: u64,
    /// Its decode time stamp (90 kHz): the DTS when the PES header has one,
    /// else its PTS. Decode order is byte order, so these only grow
    /// (modulo 2^33), with or without B-frames.
    pub dts: Option<u64>,
    /// A random access point (always true for audio).
    pub key: bool,
    /// Of the video stream (else of the audio stream).
    pub video: bool,
}

/// The fragment is not MPEG-TS as expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum TsError {
    #[error("no sync byte at offset {0}")]
    Sync(u64),
}

/// The scanner's state over one fragment.
#[derive(Debug, Default)]
pub(crate) struct Scanner {
    offset: u64,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    audio_pid: Option<u16>,
    pat: Option<[u8; PACKET]>,
    pmt: Option<[u8; PACKET]>,
}

impl Scanner {
    /// A scanner at the start of a fragment.
    pub(crate) fn new() -> Scanner {
        Scanner::default()
    }

    /// The fragment's PAT and PMT packets, once both were seen.
    pub(crate) fn psi(&self) -> Option<[u8; 2 * PACKET]> {
        let (pat, pmt) = (self.pat?, self.pmt?);
        let mut out = [0u8; 2 * PACKET];
        out[..PACKET].copy_from_slice(&pat);
        out[PACKET..].copy_from_slice(&pmt);
        Some(out)
    }

    /// Scans the next whole packets of `data` (a multiple of [`PACKET`];
    /// any trailing partial packet is left for the caller to feed again)
    /// and appends the frame starts found. Returns the bytes consumed.
    pub(crate) fn push(
        &mut self,
        data: &[u8],
        out: &mut Vec<FrameStart>,
    ) -> Result<usize, TsError> {
        let mut used = 0;
        for pkt in data.chunks_exact(PACKET) {
            if pkt[0] != 0x47 {
                return Err(TsError::Sync(self.offset));
            }
            self.packet(pkt, out);
            self.offset += PACKET as u64;
            used += PACKET;
        }
        Ok(used)
    }

    /// The PIDs of the first video and the first audio stream of the PMT,
    /// once it was seen.
    pub(crate) fn streams(&self) -> (Option<u16>, Option<u16>) {
        (self.video_pid, self.audio_pid)
    }

    fn packet(&mut self, pkt: &[u8], out: &mut Vec<FrameStart>) {
        let Some(Packet {
            pid,
            pusi,
            random_access,
            payload,
        }) = split(pkt)
        else {
            return;
        };
        if pid == 0 && pusi {
            if self.pat.is_none() {
                self.pat = Some(whole(pkt));
            }
            if self.pmt_pid.is_none() {
                self.pmt_pid = pat_pmt_pid(payload);
            }
        } else if Some(pid) == self.pmt_pid && pusi {
            if self.pmt.is_none() {
                self.pmt = Some(whole(pkt));
            }
            if self.video_pid.is_none()
                && self.audio_pid.is_none()
                && let Some((video, audio)) = pmt_streams(payload)
            {
                self.video_pid = video;
                self.audio_pid = audio;
            }
        } else if pusi && (Some(pid) == self.video_pid || Some(pid) == self.audio_pid) {
            let video = Some(pid) == self.video_pid;
            out.push(FrameStart {
                offset: self.offset,
                dts: pes_dts(payload),
                key: !video || random_access || has_idr(payload),
                video,
            });
        }
    }
}

/// One TS packet's header fields and payload.
pub(crate) struct Packet<'a> {
    pub pid: u16,
    /// `payload_unit_start_indicator`: a PES packet or section starts here.
    pub pusi: bool,
    /// The adaptation field's `random_access_indicator`.
    pub random_access: bool,
    pub payload: &'a [u8],
}

/// The fields of one whole packet (`pkt.len() == PACKET`, sync byte
/// checked by the caller); `None` when it carries no payload.
pub(crate) fn split(pkt: &[u8]) -> Option<Packet<'_>> {
    let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
    let pusi = pkt[1] & 0x40 != 0;
    let afc = (pkt[3] >> 4) & 3;
    let mut start = 4;
    let mut random_access = false;
    if afc & 2 != 0 {
        let len = usize::from(pkt[4]);
        random_access = len > 0 && pkt[5] & 0x40 != 0;
        start = 5 + len;
    }
    if afc & 1 == 0 || start >= pkt.len() {
        return None;
    }
    Some(Packet {
        pid,
        pusi,
        random_access,
        payload: &pkt[start..],
    })
}

/// The elementary-stream bytes after the PES header at the start of
/// `payload` (the first packet of a PES packet).
pub(crate) fn pes_data(payload: &[u8]) -> Option<&[u8]> {
    if payload.get(..3)? != [0, 0, 1] {
        return None;
    }
    payload.get(9 + usize::from(*payload.get(8)?)..)
}

fn whole(pkt: &[u8]) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    p.copy_from_slice(pkt);
    p
}

/// The section a PSI payload starts (after its pointer field).
fn section(payload: &[u8]) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    let len = usize::from(u16::from(*s.get(1)? & 0x0f) << 8 | u16::from(*s.get(2)?));
    // Without the CRC; a section longer than the packet is cut to it (one
    // packet holds any PAT/PMT nginx or ffmpeg write).
    s.get(..(3 + len).saturating_sub(4).min(s.len()))
}

/// The PID of the first program's PMT.
fn pat_pmt_pid(payload: &[u8]) -> Option<u16> {
    let s = section(payload)?;
    if s.first() != Some(&0) {
        return None;
    }
    s.get(8..)?.chunks_exact(4).find_map(|e| {
        let program = u16::from(e[0]) << 8 | u16::from(e[1]);
        (program != 0).then_some(u16::from(e[2] & 0x1f) << 8 | u16::from(e[3]))
    })
}

/// The PIDs of the first video and the first audio stream.
fn pmt_streams(payload: &[u8]) -> Option<(Option<u16>, Option<u16>)> {
    let s = section(payload)?;
    if s.first() != Some(&2) {
        return None;
    }
    let info = usize::from(u16::from(*s.get(10)? & 0x0f) << 8 | u16::from(*s.get(11)?));
    let mut rest = s.get(12 + info..)?;
    let (mut video, mut audio) = (None, None);
    while rest.len() >= 5 {
        let kind = rest[0];
        let pid = u16::from(rest[1] & 0x1f) << 8 | u16::from(rest[2]);
        let es_len = usize::from(u16::from(rest[3] & 0x0f) << 8 | u16::from(rest[4]));
        if video.is_none() && VIDEO_TYPES.contains(&kind) {
            video = Some(pid);
        }
        if audio.is_none() && AUDIO_TYPES.contains(&kind) {
            audio = Some(pid);
        }
        rest = rest.get(5 + es_len..).unwrap_or(&[]);
    }
    (video.is_some() || audio.is_some()).then_some((video, audio))
}

/// The DTS (else the PTS) of a PES header at the start of `payload`.
fn pes_dts(payload: &[u8]) -> Option<u64> {
    if payload.get(..3)? != [0, 0, 1] {
        return None;
    }
    let p = match payload.get(7)? >> 6 {
        3 => payload.get(14..19)?,
        2 => payload.get(9..14)?,
        _ => return None,
    };
    Some(
        (u64::from(p[0] >> 1) & 7) << 30
            | u64::from(p[1]) << 22
            | u64::from(p[2] >> 1) << 15
            | u64::from(p[3]) << 7
            | u64::from(p[4] >> 1),
    )
}

/// Whether the PES payload in this packet holds an H.264 IDR NAL unit.
fn has_idr(payload: &[u8]) -> bool {
    let Some(&hdr_len) = payload.get(8) else {
        return false;
    };
    let es = payload.get(9 + usize::from(hdr_len)..).unwrap_or(&[]);
    es.windows(4)
        .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5)
}

/// Synthesized MPEG-TS for tests: a PAT, a PMT with one H.264 stream
/// (PID 0x100) and one AAC stream (0x101), and PES packets.
#[cfg(test)]
pub(crate) mod synth {
    use super::PACKET;

    pub(crate) const VIDEO: u16 = 0x100;
    pub(crate) const AUDIO: u16 = 0x101;

    fn header(pid: u16, pusi: bool, cc: u8) -> [u8; 4] {
        [
            0x47,
            (u8::from(pusi) << 6) | (pid >> 8) as u8,
            pid as u8,
            0x10 | (cc & 0x0f),
        ]
    }

    fn psi_packet(pid: u16, section: &[u8]) -> Vec<u8> {
        let mut p = header(pid, true, 0).to_vec();
        p.push(0);
        p.extend_from_slice(section);
        p.resize(PACKET, 0xff);
        p
    }

    /// PAT then PMT.
    pub(crate) fn psi() -> Vec<u8> {
        // PAT: program 1 → PMT PID 0x1000 (CRC left as zeros: not checked).
        let pat = [
            0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 0, 0, 0, 0,
        ];
        let pmt = [
            0x02, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0, //
            0x1b, 0xe1, 0x00, 0xf0, 0, //
            0x0f, 0xe1, 0x01, 0xf0, 0, //
            0, 0, 0, 0,
        ];
        let mut out = psi_packet(0, &pat);
        out.extend(psi_packet(0x1000, &pmt));
        out
    }

    fn ts_bytes(marker: u8, t: u64) -> [u8; 5] {
        [
            marker | ((t >> 29) as u8 & 0x0e),
            (t >> 22) as u8,
            0x01 | ((t >> 14) as u8 & 0xfe),
            (t >> 7) as u8,
            0x01 | ((t << 1) as u8 & 0xfe),
        ]
    }

    /// [`frame`] with a PTS and a DTS (a B-frame stream).
    pub(crate) fn frame_with_dts(pid: u16, pts: u64, dts: u64, packets: usize) -> Vec<u8> {
        let mut out = frame(pid, pts, false, packets);
        // PES header: flags PTS+DTS, header length 10.
        out[4 + 2 + 7] = 0xc0;
        out[4 + 2 + 8] = 10;
        out[4 + 2 + 9..4 + 2 + 14].copy_from_slice(&ts_bytes(0x31, pts));
        out[4 + 2 + 14..4 + 2 + 19].copy_from_slice(&ts_bytes(0x11, dts));
        out
    }

    /// One frame of `packets` packets on `pid` with this PTS; a keyframe
    /// carries the random access indicator.
    pub(crate) fn frame(pid: u16, pts: u64, key: bool, packets: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..packets.max(1) {
            let mut p = Vec::with_capacity(PACKET);
            if i == 0 {
                let mut h = header(pid, true, 0);
                h[3] = 0x30;
                p.extend_from_slice(&h);
                p.extend_from_slice(&[1, if key { 0x40 } else { 0 }]);
                p.extend_from_slice(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 5]);
                p.extend_from_slice(&ts_bytes(0x21, pts));
            } else {
                p.extend_from_slice(&header(pid, false, i as u8));
            }
            p.resize(PACKET, 0xaa);
            out.extend(p);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::synth::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_video_frame_starts_with_pts_and_keyframes() {
        let mut ts = psi();
        ts.extend(frame(AUDIO, 1000, false, 2));
        ts.extend(frame(VIDEO, 3600, true, 3));
        ts.extend(frame(AUDIO, 4000, false, 1));
        ts.extend(frame(VIDEO, 7200, false, 2));
        let mut s = Scanner::new();
        let mut out = Vec::new();
        assert_eq!(s.push(&ts, &mut out), Ok(ts.len()));
        let p = PACKET as u64;
        let at = |offset, dts, key, video| FrameStart {
            offset,
            dts: Some(dts),
            key,
            video,
        };
        assert_eq!(
            out,
            vec![
                at(2 * p, 1000, true, false),
                at(4 * p, 3600, true, true),
                at(7 * p, 4000, true, false),
                at(8 * p, 7200, false, true),
            ]
        );
        assert_eq!(&s.psi().unwrap()[..], &ts[..2 * PACKET]);
    }

    #[test]
    fn a_bad_sync_byte_is_an_error_and_a_partial_packet_is_left() {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        let ts = psi();
        assert_eq!(s.push(&ts[..PACKET + 10], &mut out), Ok(PACKET));
        assert_eq!(
            s.push(&[0u8; PACKET], &mut out),
            Err(TsError::Sync(PACKET as u64))
        );
    }

    #[test]
    fn the_dts_is_taken_over_the_pts() {
        let mut ts = psi();
        ts.extend(frame_with_dts(VIDEO, 9000, 6000, 1));
        let mut out = Vec::new();
        Scanner::new().push(&ts, &mut out).unwrap();
        assert_eq!(out[0].dts, Some(6000));
    }

    #[test]
    fn an_idr_nal_marks_a_keyframe_without_the_indicator() {
        let mut ts = psi();
        let mut f = frame(VIDEO, 90_000, false, 1);
        // PES payload after the 14-byte PES header: an IDR NAL unit.
        f[4 + 2 + 14..4 + 2 + 18].copy_from_slice(&[0, 0, 1, 0x65]);
        ts.extend(f);
        let mut out = Vec::new();
        Scanner::new().push(&ts, &mut out).unwrap();
        assert!(out[0].key && out[0].video);
    }

    proptest! {
        /// Fed in any split of whole packets, the scanner finds the same
        /// frames as in one go.
        #[test]
        fn any_packet_split_gives_the_same_frames(
            frames in proptest::collection::vec((any::<bool>(), 1usize..4, 0u64..(1 << 33)), 1..30),
            splits in proptest::collection::vec(0usize..40, 0..10),
        ) {
            let mut ts = psi();
            for (key, n, pts) in &frames {
                ts.extend(frame(VIDEO, *pts, *key, *n));
            }
            let mut whole = Vec::new();
            Scanner::new().push(&ts, &mut whole).unwrap();
            prop_assert_eq!(whole.len(), frames.len());
            for (f, (key, _, pts)) in whole.iter().zip(&frames) {
                prop_assert_eq!(f.dts, Some(*pts));
                prop_assert_eq!(f.key, *key);
            }
            let mut s = Scanner::new();
            let mut parts = Vec::new();
            let mut at = 0;
            for n in splits {
                let end = (at + n * PACKET).min(ts.len());
                at += s.push(&ts[at..end], &mut parts).unwrap();
            }
            s.push(&ts[at..], &mut parts).unwrap();
            prop_assert_eq!(parts, whole);
        }
    }
}
