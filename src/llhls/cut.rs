//! Where to cut a growing fragment into partial segments.
//!
//! Cuts fall only where a video frame starts ([`super::ts::FrameStart`]),
//! or, before the fragment's first video frame (an audio-only lead, or a
//! stream without video), where an audio PES packet starts: every byte
//! before such a packet belongs to whole frames. A part's duration is the
//! decode-time distance from its first frame to the next part's first frame
//! (nginx-rtmp measures EXTINF on decode times too), so it is known as soon
//! as the next part starts. The cutter closes a part at the frame that
//! keeps it within the part target while the next frame, one frame interval
//! later, would not: parts are then as long as the target allows (at 25 fps
//! and a 0.5 s target, 0.48 s), above the draft's 85 % floor whenever the
//! frame interval is under 15 % of the target. A part is `INDEPENDENT` when
//! its first video frame is a keyframe (an audio-only part is). The first
//! part starts at byte 0, so it carries the PAT, PMT and any packets before
//! the first frame; its time starts at the fragment's first video frame
//! when that frame is in it (the few audio packets nginx writes before a
//! keyframe would otherwise shift every part against the EXTINF). The last
//! part is cut at the fragment's close; its duration is what the fragment's
//! EXTINF leaves, so the parts add up to the segment exactly.

use super::ts::FrameStart;

/// PTS ticks per millisecond.
const TICKS_PER_MS: u64 = 90;
/// PTS wrap (33 bits).
const PTS_WRAP: u64 = 1 << 33;

/// One part: bytes `start..end` of the fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Its number in the fragment, from 0.
    pub index: usize,
    pub start: u64,
    pub end: u64,
    pub duration_ms: u64,
    pub independent: bool,
}

/// The cutting state over one fragment.
#[derive(Debug)]
pub(crate) struct Cutter {
    target_ms: u64,
    /// Offset and decode time where the open part starts, and whether its
    /// first video frame is a keyframe (`None`: no video frame in it yet).
    open: Option<(u64, u64, Option<bool>)>,
    /// Offset, decode time and keyframe flag (as in `open`) of the last
    /// frame seen after the open part's first.
    prev: Option<(u64, u64, Option<bool>)>,
    /// PTS distance between the last two frames.
    interval: u64,
    emitted_ms: u64,
    parts: usize,
    /// A video frame was seen: audio no longer gives cut points.
    video: bool,
}

fn ticks(a: u64, b: u64) -> u64 {
    b.wrapping_sub(a) % PTS_WRAP
}

fn ms(t: u64) -> u64 {
    (t + TICKS_PER_MS / 2) / TICKS_PER_MS
}

impl Cutter {
    /// A cutter for parts of at most `target_ms`.
    pub(crate) fn new(target_ms: u64) -> Cutter {
        Cutter {
            target_ms,
            open: None,
            prev: None,
            interval: 0,
            emitted_ms: 0,
            parts: 0,
            video: false,
        }
    }

    /// Parts cut so far.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }

    /// A frame starts: appends the parts it completes.
    pub(crate) fn frame(&mut self, f: FrameStart, out: &mut Vec<Cut>) {
        let Some(pts) = f.dts else { return };
        if !f.video && self.video {
            return;
        }
        let first_video = f.video && !self.video;
        self.video |= f.video;
        let key = f.video.then_some(f.key);
        let target = self.target_ms * TICKS_PER_MS;
        let Some((start, start_pts, open_key)) = self.open else {
            // The first part takes the bytes before the first frame too.
            self.open = Some((0, pts, key));
            return;
        };
        if open_key.is_none() && f.video {
            // The part's first video frame: it decides INDEPENDENT, and in
            // the fragment's first part it starts the part's time.
            let start_pts = if first_video && self.parts == 0 {
                self.prev = None;
                self.interval = 0;
                pts
            } else {
                start_pts
            };
            self.open = Some((start, start_pts, key));
        }
        if let Some((prev_off, prev_pts, prev_key)) = self.prev {
            self.interval = ticks(prev_pts, pts);
            if ticks(start_pts, pts) > target && prev_off > start {
                // This frame came later than predicted: the part ends at
                // the previous frame, within the target.
                self.emit(start, prev_off, ticks(start_pts, prev_pts), key, out);
                self.open = Some((prev_off, prev_pts, prev_key));
                self.prev = None;
                return self.frame(f, out);
            }
        }
        let (start, start_pts, open_key) = self.open.unwrap_or((start, start_pts, open_key));
        let d = ticks(start_pts, pts);
        if d > target || d + self.interval > target {
            self.emit(start, f.offset, d, open_key, out);
            self.open = Some((f.offset, pts, key));
            self.prev = None;
        } else {
            self.prev = Some((f.offset, pts, key));
        }
    }

    fn emit(&mut self, start: u64, end: u64, dur: u64, key: Option<bool>, out: &mut Vec<Cut>) {
        let independent = key.unwrap_or(true);
        let duration_ms = ms(dur);
        self.emitted_ms += duration_ms;
        self.parts += 1;
        out.push(Cut {
            index: self.parts - 1,
            start,
            end,
            duration_ms,
            independent,
        });
    }

    /// The fragment closed at `end` bytes with this EXTINF (ms): the last
    /// part, unless no byte is left for one.
    pub(crate) fn finish(&mut self, end: u64, extinf_ms: u64) -> Option<Cut> {
        let (start, _, key) = self.open.take().unwrap_or((0, 0, Some(false)));
        if end <= start {
            return None;
        }
        let duration_ms = extinf_ms.saturating_sub(self.emitted_ms);
        self.emitted_ms += duration_ms;
        self.parts += 1;
        Some(Cut {
            index: self.parts - 1,
            start,
            end,
            duration_ms,
            independent: key.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(offset: u64, pts_ms: u64, key: bool) -> FrameStart {
        FrameStart {
            offset,
            dts: Some(pts_ms * TICKS_PER_MS),
            key,
            video: true,
        }
    }

    #[test]
    fn an_audio_only_lead_is_cut_on_audio_then_video_takes_over() {
        let audio = |offset, pts_ms: u64| FrameStart {
            offset,
            dts: Some(pts_ms * TICKS_PER_MS),
            key: true,
            video: false,
        };
        let mut c = Cutter::new(500);
        let mut out = Vec::new();
        // 1.2 s of audio every 100 ms, then 25 fps video with audio between.
        for i in 0..12 {
            c.frame(audio(i * 10, i * 100), &mut out);
        }
        for i in 0..20 {
            c.frame(f(1000 + i * 10, 1200 + i * 40, i == 0), &mut out);
            c.frame(audio(1005 + i * 10, 1210 + i * 40), &mut out);
        }
        out.extend(c.finish(2000, 2000));
        let durs: Vec<u64> = out.iter().map(|p| p.duration_ms).collect();
        assert_eq!(durs, vec![500, 500, 480, 480, 40]);
        assert_eq!(out[2].start, 100, "the audio before the keyframe");
        let independent: Vec<bool> = out.iter().map(|p| p.independent).collect();
        assert_eq!(independent, vec![true, true, true, false, false]);
    }

    #[test]
    fn audio_before_the_keyframe_does_not_shift_the_parts() {
        // nginx writes a few audio packets before each fragment's keyframe.
        let audio = |offset, pts_ms: u64| FrameStart {
            offset,
            dts: Some(pts_ms * TICKS_PER_MS),
            key: true,
            video: false,
        };
        let mut c = Cutter::new(500);
        let mut out = Vec::new();
        c.frame(audio(10, 0), &mut out);
        for i in 0..50 {
            c.frame(f(100 + i * 10, 30 + i * 40, i == 0), &mut out);
            c.frame(audio(105 + i * 10, 40 + i * 40), &mut out);
        }
        out.extend(c.finish(1000, 2000));
        let durs: Vec<u64> = out.iter().map(|p| p.duration_ms).collect();
        assert_eq!(durs, vec![480, 480, 480, 480, 80]);
        assert!(out[0].independent && !out[1].independent);
        assert_eq!(out[0].start, 0);
    }

    /// Cuts a fragment of frames at these PTS (ms), one 1000-byte frame each.
    fn cut(target: u64, pts: &[u64], extinf: u64) -> Vec<Cut> {
        let mut c = Cutter::new(target);
        let mut out = Vec::new();
        for (i, p) in pts.iter().enumerate() {
            c.frame(f(100 + i as u64 * 1000, *p, i == 0), &mut out);
        }
        out.extend(c.finish(100 + pts.len() as u64 * 1000, extinf));
        out
    }

    #[test]
    fn twenty_five_fps_into_half_second_parts() {
        let pts: Vec<u64> = (0..50).map(|i| 10_000 + i * 40).collect();
        let parts = cut(500, &pts, 2000);
        let durs: Vec<u64> = parts.iter().map(|p| p.duration_ms).collect();
        assert_eq!(durs, vec![480, 480, 480, 480, 80]);
        assert!(parts[0].independent && parts[1..].iter().all(|p| !p.independent));
        assert_eq!(parts[0].start, 0, "the first part holds the PAT and PMT");
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert_eq!(parts[4].end, 50_100);
    }

    #[test]
    fn a_late_frame_ends_the_part_at_the_previous_frame() {
        // 100 ms frames, then a 300 ms gap: 0,100,200 then 500 would make
        // the part 0..500 exceed 400; it ends at 200.
        let parts = cut(400, &[0, 100, 200, 500, 600], 700);
        let durs: Vec<u64> = parts.iter().map(|p| p.duration_ms).collect();
        assert_eq!(durs, vec![200, 300, 200]);
        assert_eq!(durs.iter().sum::<u64>(), 700);
    }

    proptest! {
        /// Parts tile the fragment, never exceed the target (a single frame
        /// longer than the target excepted), and add up to its EXTINF.
        #[test]
        fn parts_tile_the_fragment_within_the_target(
            target in 200u64..1500,
            gaps in proptest::collection::vec(10u64..120, 1..200),
            start in 0u64..(1 << 33) / 90,
        ) {
            let mut pts = vec![start];
            for g in &gaps {
                pts.push(pts.last().unwrap() + g);
            }
            let extinf = pts.last().unwrap() - start + 40;
            let parts = cut(target, &pts, extinf);
            prop_assert_eq!(parts.first().map(|p| p.start), Some(0));
            for (i, p) in parts.iter().enumerate() {
                prop_assert_eq!(p.index, i);
            }
            prop_assert_eq!(parts.last().map(|p| p.end), Some(100 + pts.len() as u64 * 1000));
            for w in parts.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
            }
            for p in &parts[..parts.len() - 1] {
                prop_assert!(p.duration_ms <= target, "{:?}", p);
                // At least the target less one frame interval.
                prop_assert!(p.duration_ms + 121 >= target, "{:?}", p);
            }
            prop_assert_eq!(parts.iter().map(|p| p.duration_ms).sum::<u64>(), extinf);
        }
    }
}
