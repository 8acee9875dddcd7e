//! Alignment of variants (rfc8216bis §6.2.4: variants of one master must
//! have their segment boundaries at the same times, so a player switches at
//! any segment without a gap or overlap): [`first_video_pts`] reads a
//! MPEG-TS fragment's first video PTS (PAT → PMT → the H.264 stream's first
//! PES header), and [`check_alignment`] compares those across variants.
//!
//! A reader of its own (ISO/IEC 13818-1 §2.4.3, §2.4.4, §2.5.4), not
//! livebucket's TS probe: a bug there must not be mirrored here.

/// MPEG-TS ticks (90 kHz) in one frame at 30 fps.
pub const FRAME_30FPS: u64 = 3000;

const PACKET: usize = 188;
/// PTS is 33 bits; differences wrap.
const PTS_MODULO: u64 = 1 << 33;

/// The PTS (90 kHz) of the first PES of the fragment's first video stream
/// (stream_type 0x1B H.264 or 0x24 HEVC, as its PMT says); `Err` when the
/// bytes are not a TS with a PAT, a PMT, a video stream and a PES header with
/// a PTS on it.
pub fn first_video_pts(ts: &[u8]) -> Result<u64, String> {
    if ts.is_empty() || !ts.len().is_multiple_of(PACKET) {
        return Err(format!(
            "{} bytes is not a whole number of 188-byte TS packets",
            ts.len()
        ));
    }
    let mut pmt_pid: Option<u16> = None;
    let mut video_pid: Option<u16> = None;
    for (i, p) in ts.chunks_exact(PACKET).enumerate() {
        if p[0] != 0x47 {
            return Err(format!("packet {i} lacks the sync byte 0x47"));
        }
        let start = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let Some(payload) = payload(p) else {
            continue;
        };
        if !start {
            continue;
        }
        if pid == 0 && pmt_pid.is_none() {
            pmt_pid = Some(pat_first_program(payload).map_err(|e| format!("packet {i}: {e}"))?);
        } else if Some(pid) == pmt_pid && video_pid.is_none() {
            video_pid = pmt_video_pid(payload).map_err(|e| format!("packet {i}: {e}"))?;
            if video_pid.is_none() {
                return Err("the PMT lists no H.264 or HEVC stream".into());
            }
        } else if Some(pid) == video_pid {
            return pes_pts(payload).map_err(|e| format!("packet {i}: {e}"));
        }
    }
    Err(match (pmt_pid, video_pid) {
        (None, _) => "no PAT".into(),
        (Some(_), None) => "no PMT".into(),
        (Some(_), Some(pid)) => format!("no PES starts on the video PID {pid:#x}"),
    })
}

/// The packet's payload, after any adaptation field.
fn payload(p: &[u8]) -> Option<&[u8]> {
    let control = (p[3] >> 4) & 0x3;
    match control {
        0b01 => Some(&p[4..]),
        0b11 => {
            let len = usize::from(p[4]);
            p.get(5 + len..)
        }
        _ => None,
    }
}

/// A PSI section after its pointer field: (table_id, the section's body
/// between its 3-byte header and its CRC).
fn section(payload: &[u8]) -> Result<(u8, &[u8]), String> {
    let pointer = usize::from(*payload.first().ok_or("an empty PSI payload")?);
    let s = payload
        .get(1 + pointer..)
        .ok_or("the pointer field points past the packet")?;
    if s.len() < 3 {
        return Err("a PSI section shorter than its header".into());
    }
    let len = usize::from(u16::from(s[1] & 0x0f) << 8 | u16::from(s[2]));
    let body = s
        .get(3..3 + len)
        .ok_or("a PSI section longer than its packet")?;
    let body = body
        .get(..body.len().saturating_sub(4))
        .ok_or("a PSI section without its CRC")?;
    Ok((s[0], body))
}

/// The PMT PID of the PAT's first program (program_number ≠ 0).
fn pat_first_program(payload: &[u8]) -> Result<u16, String> {
    let (table, body) = section(payload)?;
    if table != 0 {
        return Err(format!("PID 0 carries table {table:#x}, not a PAT"));
    }
    // transport_stream_id, version, section numbers: 5 bytes.
    body.get(5..)
        .unwrap_or_default()
        .chunks_exact(4)
        .find(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
        .ok_or_else(|| "the PAT lists no program".into())
}

/// The PID of the PMT's first H.264 (0x1B) or HEVC (0x24) stream.
fn pmt_video_pid(payload: &[u8]) -> Result<Option<u16>, String> {
    let (table, body) = section(payload)?;
    if table != 2 {
        return Err(format!("the PMT PID carries table {table:#x}, not a PMT"));
    }
    // program_number, version, section numbers, PCR PID: 7 bytes, then the
    // program info length.
    let info = body.get(7..9).ok_or("a PMT too short")?;
    let info_len = usize::from(u16::from(info[0] & 0x0f) << 8 | u16::from(info[1]));
    let mut es = body.get(9 + info_len..).ok_or("a PMT too short")?;
    while es.len() >= 5 {
        let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
        if matches!(es[0], 0x1b | 0x24) {
            return Ok(Some(pid));
        }
        let es_info = usize::from(u16::from(es[3] & 0x0f) << 8 | u16::from(es[4]));
        es = es.get(5 + es_info..).unwrap_or_default();
    }
    Ok(None)
}

/// The PTS of a PES header.
fn pes_pts(pes: &[u8]) -> Result<u64, String> {
    if pes.len() < 14 || pes[..3] != [0, 0, 1] {
        return Err("the video PID's payload does not start a PES".into());
    }
    if pes[7] & 0x80 == 0 {
        return Err("the video PES header carries no PTS".into());
    }
    let b = &pes[9..14];
    Ok((u64::from(b[0] >> 1) & 0x7) << 30
        | u64::from(b[1]) << 22
        | u64::from(b[2] >> 1) << 15
        | u64::from(b[3]) << 7
        | u64::from(b[4] >> 1))
}

/// Checks that every variant has as many segments as the first, and that
/// each segment starts (first video PTS, 90 kHz) within `tolerance` ticks of
/// the first variant's segment at the same position. `variants` are
/// (name, first PTS of each segment in playlist order); every mismatch is
/// reported.
pub fn check_alignment(variants: &[(String, Vec<u64>)], tolerance: u64) -> Result<(), String> {
    let Some(((base_name, base), rest)) = variants.split_first().map(|(b, r)| ((&b.0, &b.1), r))
    else {
        return Err("no variant to compare".into());
    };
    let mut errs = Vec::new();
    for (name, pts) in rest {
        if pts.len() != base.len() {
            errs.push(format!(
                "{name} has {} segments, {base_name} has {}",
                pts.len(),
                base.len()
            ));
        }
        for (i, (a, b)) in base.iter().zip(pts).enumerate() {
            let d = (a.wrapping_sub(*b) % PTS_MODULO).min(b.wrapping_sub(*a) % PTS_MODULO);
            if d > tolerance {
                errs.push(format!(
                    "segment {i} starts at PTS {b} in {name} and {a} in {base_name}: \
                     {d} ticks apart, more than {tolerance} ({:.1} ms)",
                    d as f64 / 90.0
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}
