//! A channel's Low-Latency playlist as `/play` serves it: the stored live
//! window, the parts of its last segments, and the parts of the segment in
//! progress; its rendering (full or as a delta update) and the readiness
//! decision of a blocking reload. No I/O: [`super::hub`] builds the model,
//! `/play` asks and renders it.
//!
//! Rules kept (draft-pantos-hls-rfc8216bis):
//! - `#EXT-X-PART-INF:PART-TARGET` bounds every part's duration;
//! - `#EXT-X-SERVER-CONTROL`: `CAN-BLOCK-RELOAD=YES`, `HOLD-BACK` three
//!   target durations (as the stored playlist states it, for players that
//!   ignore parts), `PART-HOLD-BACK` three part targets, `CAN-SKIP-UNTIL`
//!   six target durations;
//! - a segment's parts precede its `#EXTINF`, the segment in progress has
//!   parts and no URI line, and only segments whose object is stored have
//!   one;
//! - `_HLS_msn=M[&_HLS_part=P]` is ready once the playlist holds part P of
//!   segment M (or segment M whole, or anything after it); it is refused
//!   when M is beyond the last segment plus two, or P beyond the last part
//!   by the advance part limit (3 s of parts);
//! - `_HLS_skip=YES` replaces the segments that start before the skip
//!   boundary (`CAN-SKIP-UNTIL` before the end) with `#EXT-X-SKIP`.

use std::fmt::Write;

/// One partial segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    /// Relative to the playlist, like segment URIs.
    pub uri: String,
    pub duration_ms: u64,
    pub independent: bool,
}

/// A stored segment of the live window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub uri: String,
    /// `#EXTINF` as the stored playlist states it.
    pub extinf: String,
    pub duration_ms: u64,
    pub discontinuity: bool,
    pub program_date_time_ms: Option<u64>,
    /// Its parts, when they are still listed (empty otherwise).
    pub parts: Vec<Part>,
}

/// The segment nginx is writing (its sequence number follows the window's
/// last).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Tail {
    pub discontinuity: bool,
    pub parts: Vec<Part>,
}

/// The model of one LL playlist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LlPlaylist {
    pub target_duration: u64,
    pub part_target_ms: u64,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub segments: Vec<Segment>,
    pub tail: Option<Tail>,
    pub ended: bool,
}

/// A blocking reload's answer, decided on the current model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Answer now.
    Ready,
    /// Wait for a newer model.
    Wait,
    /// Further ahead than a client may ask (answer 400).
    TooFar,
}

/// A parsed `_HLS_*` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Directives {
    pub msn: Option<u64>,
    pub part: Option<u64>,
    pub skip: bool,
}

/// A `_HLS_*` parameter that cannot be honoured.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DirectiveError {
    #[error("{0} must be a non-negative integer")]
    NotANumber(&'static str),
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
    #[error("_HLS_skip must be YES or v2")]
    BadSkip,
}

impl Directives {
    /// Reads `_HLS_msn`, `_HLS_part` and `_HLS_skip` from a query.
    pub(crate) fn parse(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Directives, DirectiveError> {
        let num = |name: &'static str| {
            get(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| DirectiveError::NotANumber(name))
                })
                .transpose()
        };
        let msn = num("_HLS_msn")?;
        let part = num("_HLS_part")?;
        if part.is_some() && msn.is_none() {
            return Err(DirectiveError::PartWithoutMsn);
        }
        let skip = match get("_HLS_skip").as_deref() {
            None => false,
            Some("YES" | "v2") => true,
            Some(_) => return Err(DirectiveError::BadSkip),
        };
        Ok(Directives { msn, part, skip })
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

impl LlPlaylist {
    /// The sequence number of the segment in progress (one past the last
    /// stored).
    pub(crate) fn next_msn(&self) -> u64 {
        self.media_sequence + self.segments.len() as u64
    }

    /// Parts listed for the segment in progress.
    fn tail_parts(&self) -> u64 {
        self.tail.as_ref().map_or(0, |t| t.parts.len() as u64)
    }

    /// The advance part limit: three seconds' worth of parts, at least 3.
    fn advance_parts(&self) -> u64 {
        (3000 / self.part_target_ms.max(1)).max(3)
    }

    /// Whether a blocking reload for segment `msn` (part `part`) can be
    /// answered from this model.
    pub(crate) fn readiness(&self, msn: u64, part: Option<u64>) -> Readiness {
        if self.ended {
            return Readiness::Ready;
        }
        let next = self.next_msn();
        // The last segment the playlist has is `next - 1` (or `next`, when
        // it lists parts of it); a client may ask two ahead of it.
        let last = if self.tail_parts() > 0 {
            next
        } else {
            next.saturating_sub(1)
        };
        if msn > last + 2 {
            return Readiness::TooFar;
        }
        if msn < next {
            return Readiness::Ready;
        }
        match part {
            Some(p) if msn == next => {
                let have = self.tail_parts();
                if p < have {
                    Readiness::Ready
                } else if p >= have + self.advance_parts() {
                    Readiness::TooFar
                } else {
                    Readiness::Wait
                }
            }
            _ => Readiness::Wait,
        }
    }

    /// The URI of part `part` of segment `msn`, if the model lists it.
    pub(crate) fn part_uri(&self, msn: u64, part: u64) -> Option<&str> {
        let parts = if msn == self.next_msn() {
            &self.tail.as_ref()?.parts
        } else {
            let i = usize::try_from(msn.checked_sub(self.media_sequence)?).ok()?;
            &self.segments.get(i)?.parts
        };
        let part = usize::try_from(part).ok()?;
        parts.get(part).map(|p| p.uri.as_str())
    }

    /// How many segments a delta update skips: those that start before the
    /// skip boundary, `CAN-SKIP-UNTIL` before the end of the playlist.
    pub(crate) fn skippable(&self) -> usize {
        let total: u64 = self.segments.iter().map(|s| s.duration_ms).sum::<u64>()
            + self
                .tail
                .as_ref()
                .map_or(0, |t| t.parts.iter().map(|p| p.duration_ms).sum());
        let boundary = self.skip_until_ms();
        let mut start = 0;
        let mut n = 0;
        for s in &self.segments {
            if total - start <= boundary {
                break;
            }
            // A segment is skipped whole only if it ends before the boundary.
            if total - (start + s.duration_ms) < boundary {
                break;
            }
            start += s.duration_ms;
            n += 1;
        }
        n
    }

    fn skip_until_ms(&self) -> u64 {
        6 * self.target_duration * 1000
    }

    /// The playlist text with URIs relative to it; a delta update when
    /// `skip` (and anything can be skipped).
    pub(crate) fn render(&self, skip: bool) -> String {
        let mut out = String::with_capacity(256 + self.segments.len() * 400);
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:{}\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,HOLD-BACK={}.0,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}\n\
             #EXT-X-PART-INF:PART-TARGET={}\n\
             #EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            self.target_duration,
            3 * self.target_duration,
            secs(3 * self.part_target_ms),
            secs(self.skip_until_ms()),
            secs(self.part_target_ms),
            self.media_sequence,
            self.discontinuity_sequence,
        );
        let skipped = if skip && !self.ended {
            self.skippable()
        } else {
            0
        };
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
        for s in &self.segments[skipped..] {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if let Some(ms) = s.program_date_time_ms
                && let Ok(t) =
                    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
            {
                crate::hls::write_program_date_time(&mut out, t);
            }
            if !self.ended {
                write_parts(&mut out, &s.parts);
            }
            let _ = write!(out, "#EXTINF:{},\n{}\n", s.extinf, s.uri);
        }
        if let Some(t) = self.tail.as_ref().filter(|_| !self.ended) {
            if t.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            write_parts(&mut out, &t.parts);
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }
}

fn write_parts(out: &mut String, parts: &[Part]) {
    for p in parts {
        let _ = writeln!(
            out,
            "#EXT-X-PART:DURATION={},URI=\"{}\"{}",
            secs(p.duration_ms),
            p.uri,
            if p.independent {
                ",INDEPENDENT=YES"
            } else {
                ""
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(i: usize, ms: u64) -> Part {
        Part {
            uri: format!("p{i}.ts"),
            duration_ms: ms,
            independent: i == 0,
        }
    }

    fn model(segments: usize, tail_parts: usize) -> LlPlaylist {
        LlPlaylist {
            target_duration: 2,
            part_target_ms: 500,
            media_sequence: 10,
            discontinuity_sequence: 1,
            segments: (0..segments)
                .map(|i| Segment {
                    uri: format!("{i}.ts"),
                    extinf: "2.000".into(),
                    duration_ms: 2000,
                    discontinuity: i == 1,
                    program_date_time_ms: (i == 1).then_some(1_700_000_000_000),
                    parts: if i + 1 == segments {
                        (0..5)
                            .map(|j| part(j, if j == 4 { 80 } else { 480 }))
                            .collect()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            tail: Some(Tail {
                discontinuity: false,
                parts: (0..tail_parts).map(|j| part(j, 480)).collect(),
            }),
            ended: false,
        }
    }

    #[test]
    fn renders_parts_before_their_segment_and_the_tail_last() {
        let text = model(2, 2).render(false);
        let want = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,HOLD-BACK=6.0,PART-HOLD-BACK=1.500,CAN-SKIP-UNTIL=12.000\n\
            #EXT-X-PART-INF:PART-TARGET=0.500\n\
            #EXT-X-MEDIA-SEQUENCE:10\n#EXT-X-DISCONTINUITY-SEQUENCE:1\n\
            #EXTINF:2.000,\n0.ts\n\
            #EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n\
            #EXT-X-PART:DURATION=0.480,URI=\"p0.ts\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.480,URI=\"p1.ts\"\n\
            #EXT-X-PART:DURATION=0.480,URI=\"p2.ts\"\n\
            #EXT-X-PART:DURATION=0.480,URI=\"p3.ts\"\n\
            #EXT-X-PART:DURATION=0.080,URI=\"p4.ts\"\n\
            #EXTINF:2.000,\n1.ts\n\
            #EXT-X-PART:DURATION=0.480,URI=\"p0.ts\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.480,URI=\"p1.ts\"\n";
        assert_eq!(text, want);
        let mut ended = model(2, 2);
        ended.ended = true;
        let text = ended.render(true);
        assert!(!text.contains("#EXT-X-PART:") && !text.contains("SKIP:"));
        assert!(text.ends_with("1.ts\n#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn blocking_reload_readiness() {
        let m = model(3, 2); // segments 10..=12 stored, 13 in progress with parts 0, 1
        use Readiness::*;
        assert_eq!(m.readiness(12, None), Ready);
        assert_eq!(
            m.readiness(12, Some(9)),
            Ready,
            "a whole segment holds any part"
        );
        assert_eq!(m.readiness(13, Some(1)), Ready);
        assert_eq!(m.readiness(13, Some(2)), Wait);
        assert_eq!(m.readiness(13, None), Wait, "segment 13 is not whole yet");
        assert_eq!(m.readiness(14, Some(0)), Wait);
        assert_eq!(m.readiness(15, None), Wait);
        assert_eq!(m.readiness(16, None), TooFar);
        assert_eq!(m.readiness(13, Some(7)), Wait);
        assert_eq!(
            m.readiness(13, Some(8)),
            TooFar,
            "six parts (3 s) past the last"
        );
        assert_eq!(m.part_uri(13, 1), Some("p1.ts"));
        assert_eq!(m.part_uri(13, 2), None);
        assert_eq!(
            m.part_uri(12, 4),
            Some("p4.ts"),
            "the last stored segment's"
        );
        assert_eq!(m.part_uri(11, 0), None, "no parts listed");
        assert_eq!(m.part_uri(9, 0), None, "before the window");
        let bare = model(3, 0);
        assert_eq!(bare.readiness(14, None), Wait);
        assert_eq!(bare.readiness(15, None), TooFar);
        let mut ended = model(3, 2);
        ended.ended = true;
        assert_eq!(ended.readiness(100, None), Ready);
    }

    #[test]
    fn delta_updates_skip_what_lies_before_the_boundary() {
        // 10 segments of 2 s plus 0.96 s of parts; boundary 12 s before the
        // end: segments starting before 8.96 s and ending before it go.
        let m = model(10, 2);
        assert_eq!(m.skippable(), 4);
        let text = m.render(true);
        assert!(text.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXTINF:2.000,\n4.ts\n"));
        assert!(!text.contains("\n3.ts\n"));
        assert_eq!(model(5, 0).skippable(), 0);
        assert!(!model(5, 0).render(true).contains("SKIP:"));
    }

    #[test]
    fn directives_parse() {
        let q = |pairs: &'static [(&'static str, &'static str)]| {
            Directives::parse(|k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(
            q(&[("_HLS_msn", "5"), ("_HLS_part", "2"), ("_HLS_skip", "YES")]),
            Ok(Directives {
                msn: Some(5),
                part: Some(2),
                skip: true
            })
        );
        assert_eq!(q(&[]), Ok(Directives::default()));
        assert_eq!(
            q(&[("_HLS_part", "2")]),
            Err(DirectiveError::PartWithoutMsn)
        );
        assert_eq!(
            q(&[("_HLS_msn", "-1")]),
            Err(DirectiveError::NotANumber("_HLS_msn"))
        );
        assert_eq!(q(&[("_HLS_skip", "no")]), Err(DirectiveError::BadSkip));
    }
}
