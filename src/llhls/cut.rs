//! Where to cut a growing fragment into partial segments.
//!
//! Cuts fall only where a frame of the media stream starts
//! ([`super::ts::FrameStart`]): every byte before such a packet belongs to
//! whole frames. A part's duration is the PTS distance from its first frame
//! to the next part's first frame, so it is known as soon as the next part
//! starts. The cutter closes a part at the frame that keeps it within the
//! part target while the next frame, one frame interval later, would not:
//! parts are then as long as the target allows (at 25 fps and a 0.5 s
//! target, 0.48 s), above the draft's 85 % floor whenever the frame
//! interval is under 15 % of the target. A part is `INDEPENDENT` when its
//! first frame is a keyframe. The first part starts at byte 0, so it
//! carries the PAT, PMT and any packets before the first frame. The last
//! part is cut at the fragment's close; its duration is what the
//! fragment's EXTINF leaves, so the parts add up to the segment exactly.

use super::ts::FrameStart;

/// PTS ticks per millisecond.
const TICKS_PER_MS: u64 = 90;
/// PTS wrap (33 bits).
const PTS_WRAP: u64 = 1 << 33;

/// One part: bytes `start..end` of the fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub start: u64,
    pub end: u64,
    pub duration_ms: u64,
    pub independent: bool,
}

/// The cutting state over one fragment.
#[derive(Debug)]
pub struct Cutter {
    target_ms: u64,
    /// Offset, PTS and keyframe flag where the open part starts.
    open: Option<(u64, u64, bool)>,
    /// Offset, PTS and keyframe flag of the last frame seen after the open
    /// part's first.
    prev: Option<(u64, u64, bool)>,
    /// PTS distance between the last two frames.
    interval: u64,
    emitted_ms: u64,
    parts: usize,
}

fn ticks(a: u64, b: u64) -> u64 {
    b.wrapping_sub(a) % PTS_WRAP
}

fn ms(t: u64) -> u64 {
    (t + TICKS_PER_MS / 2) / TICKS_PER_MS
}

impl Cutter {
    /// A cutter for parts of at most `target_ms`.
    pub fn new(target_ms: u64) -> Cutter {
        Cutter {
            target_ms,
            open: None,
            prev: None,
            interval: 0,
            emitted_ms: 0,
            parts: 0,
        }
    }

    /// Parts cut so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// A frame starts: appends the parts it completes.
    pub fn frame(&mut self, f: FrameStart, out: &mut Vec<Cut>) {
        let Some(pts) = f.pts else { return };
        let target = self.target_ms * TICKS_PER_MS;
        let Some((start, start_pts, key)) = self.open else {
            // The first part takes the bytes before the first frame too.
            self.open = Some((0, pts, f.key));
            return;
        };
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
        let (start, start_pts, key) = self.open.unwrap_or((start, start_pts, key));
        let d = ticks(start_pts, pts);
        if d > target || d + self.interval > target {
            self.emit(start, f.offset, d, key, out);
            self.open = Some((f.offset, pts, f.key));
            self.prev = None;
        } else {
            self.prev = Some((f.offset, pts, f.key));
        }
    }

    fn emit(&mut self, start: u64, end: u64, dur: u64, independent: bool, out: &mut Vec<Cut>) {
        let duration_ms = ms(dur);
        self.emitted_ms += duration_ms;
        self.parts += 1;
        out.push(Cut {
            start,
            end,
            duration_ms,
            independent,
        });
    }

    /// The fragment closed at `end` bytes with this EXTINF (ms): the last
    /// part, unless no byte is left for one.
    pub fn finish(&mut self, end: u64, extinf_ms: u64) -> Option<Cut> {
        let (start, _, key) = self.open.take().unwrap_or((0, 0, false));
        if end <= start {
            return None;
        }
        let duration_ms = extinf_ms.saturating_sub(self.emitted_ms);
        self.emitted_ms += duration_ms;
        self.parts += 1;
        Some(Cut {
            start,
            end,
            duration_ms,
            independent: key,
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
            pts: Some(pts_ms * TICKS_PER_MS),
            key,
        }
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
