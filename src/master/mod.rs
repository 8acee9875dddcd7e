//! Master playlists (RFC 8216 §4.3.4.2, draft-pantos-hls-rfc8216bis) for a
//! channel with renditions: what each variant's `EXT-X-STREAM-INF` says,
//! measured from what was stored, never configured. No I/O: the pipeline
//! feeds fragment sizes, durations and [`probe`] results in
//! (`pipeline::master`), `/play` signs the URIs of a stored master.
//!
//! - `BANDWIDTH` is the peak over the variant's stored segments of
//!   segment bytes × 8 / EXTINF; `AVERAGE-BANDWIDTH` is their total bits
//!   over their total duration ([`Rate`]).
//! - `RESOLUTION`, `FRAME-RATE` and `CODECS` come from one stored fragment
//!   ([`probe::Probe`]); an audio-only variant has neither `RESOLUTION` nor
//!   `FRAME-RATE`.
//! - The source comes first (players that ignore bandwidth start with it),
//!   then the rungs by `BANDWIDTH`, highest first.
//! - URIs are relative to the master, which is stored at
//!   `CHANNEL/master.m3u8`: `<playlist>` for the source, `R/<playlist>` for
//!   rung R ([`variant_uri`]).

pub mod probe;

use std::fmt::Write as _;

use probe::Probe;

/// The master playlist's object name under the channel.
pub const MASTER: &str = "master.m3u8";

/// A variant's rate, accumulated over its stored segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// The highest segment bitrate seen, bits per second.
    pub peak_bps: u64,
    pub total_bits: u64,
    pub total_ms: u64,
}

impl Rate {
    /// Counts one stored segment of `bytes` lasting `extinf_ms`. A segment
    /// without a duration counts for nothing: its rate is undefined.
    pub fn add(&mut self, bytes: u64, extinf_ms: u64) {
        if extinf_ms == 0 {
            return;
        }
        let bits = bytes.saturating_mul(8);
        self.peak_bps = self.peak_bps.max(bits.saturating_mul(1000) / extinf_ms);
        self.total_bits = self.total_bits.saturating_add(bits);
        self.total_ms = self.total_ms.saturating_add(extinf_ms);
    }

    /// `AVERAGE-BANDWIDTH`, bits per second; 0 before any segment.
    pub fn average_bps(&self) -> u64 {
        if self.total_ms == 0 {
            return 0;
        }
        (u128::from(self.total_bits) * 1000 / u128::from(self.total_ms)) as u64
    }
}

/// One variant as the master lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInf {
    /// `None` for the source, else the rung's name.
    pub rung: Option<String>,
    /// The URI relative to the master ([`variant_uri`]).
    pub uri: String,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub probe: Probe,
}

impl StreamInf {
    /// The entry for a variant with `rate` and `probe`, playing `playlist`.
    pub fn new(rung: Option<&str>, playlist: &str, rate: &Rate, probe: Probe) -> StreamInf {
        StreamInf {
            rung: rung.map(str::to_owned),
            uri: variant_uri(rung, playlist),
            bandwidth: rate.peak_bps,
            average_bandwidth: rate.average_bps(),
            probe,
        }
    }
}

/// A variant's URI relative to the master: the playlist name for the
/// source, `R/<playlist>` for rung R.
pub fn variant_uri(rung: Option<&str>, playlist: &str) -> String {
    match rung {
        None => playlist.to_owned(),
        Some(r) => format!("{r}/{playlist}"),
    }
}

/// Which variant a master's URI line names: `(None, playlist)` for the
/// source, `(Some(rung), playlist)` for a rung; `None` for anything else
/// (an absolute URL, more than one `/`).
pub fn parse_variant_uri(uri: &str) -> Option<(Option<&str>, &str)> {
    if uri.contains("://") || uri.starts_with('/') {
        return None;
    }
    match uri.split_once('/') {
        None if !uri.is_empty() => Some((None, uri)),
        Some((rung, playlist))
            if !rung.is_empty() && !playlist.is_empty() && !playlist.contains('/') =>
        {
            Some((Some(rung), playlist))
        }
        _ => None,
    }
}

/// Whether a playlist's text is a master playlist (it lists variants, not
/// segments).
pub fn is_master(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("#EXT-X-STREAM-INF:"))
}

/// The variants in master order: the source first, then rungs by
/// `BANDWIDTH`, highest first (ties by name, so the order is stable).
pub fn ordered(mut variants: Vec<StreamInf>) -> Vec<StreamInf> {
    variants.sort_by(|a, b| match (&a.rung, &b.rung) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(x), Some(y)) => b.bandwidth.cmp(&a.bandwidth).then_with(|| x.cmp(y)),
    });
    variants
}

/// A master's first lines. `EXT-X-INDEPENDENT-SEGMENTS`: every fragment
/// nginx cuts starts with a keyframe, in every variant.
const HEAD: &str = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n";

impl StreamInf {
    /// The variant's `#EXT-X-STREAM-INF:` line, without its newline.
    pub fn tag(&self) -> String {
        let mut out = format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            self.bandwidth, self.average_bandwidth
        );
        if let Some(video) = &self.probe.video {
            let _ = write!(out, ",RESOLUTION={}x{}", video.width, video.height);
            if let Some(fps) = video.fps {
                let _ = write!(out, ",FRAME-RATE={fps:.3}");
            }
        }
        let codecs = self.probe.codecs();
        if !codecs.is_empty() {
            let _ = write!(out, ",CODECS=\"{codecs}\"");
        }
        out
    }
}

/// The master playlist listing `variants` (in [`ordered`] order).
pub fn render(variants: &[StreamInf]) -> String {
    let entries: Vec<(String, String)> = ordered(variants.to_vec())
        .into_iter()
        .map(|v| (v.tag(), v.uri))
        .collect();
    render_tags(&entries)
}

/// A master playlist of `(EXT-X-STREAM-INF line, URI)` pairs, in the order
/// given.
pub fn render_tags(entries: &[(String, String)]) -> String {
    let mut out = String::from(HEAD);
    for (tag, uri) in entries {
        let _ = write!(out, "{tag}\n{uri}\n");
    }
    out
}

/// A master playlist's `(EXT-X-STREAM-INF line, URI)` pairs, in order.
pub fn stream_infs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut tag: Option<&str> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#EXT-X-STREAM-INF:") {
            tag = Some(line);
        } else if !line.is_empty()
            && !line.starts_with('#')
            && let Some(t) = tag.take()
        {
            out.push((t.to_owned(), line.to_owned()));
        }
    }
    out
}

/// How far a measured rate may drift from the one a stored master states
/// before the master is rewritten, in percent. Apple's HLS authoring rules
/// and its `mediastreamvalidator` flag a measured peak or average more than
/// 10 % away from the master's `BANDWIDTH` / `AVERAGE-BANDWIDTH`;
/// rewriting at half that keeps the stored master inside the tolerance
/// while the rate settles, without a rewrite per segment.
pub const REWRITE_DRIFT_PERCENT: u64 = 5;

/// Whether `now` should replace the stored master `written`: another set
/// of variants, another probe, or a rate past [`REWRITE_DRIFT_PERCENT`].
pub fn materially_changed(written: &[StreamInf], now: &[StreamInf]) -> bool {
    let (written, now) = (ordered(written.to_vec()), ordered(now.to_vec()));
    written.len() != now.len()
        || written.iter().zip(&now).any(|(w, n)| {
            w.uri != n.uri
                || w.probe != n.probe
                || drifted(w.bandwidth, n.bandwidth)
                || drifted(w.average_bandwidth, n.average_bandwidth)
        })
}

fn drifted(stated: u64, measured: u64) -> bool {
    u128::from(stated.abs_diff(measured)) * 100
        > u128::from(stated) * u128::from(REWRITE_DRIFT_PERCENT)
}

#[cfg(test)]
mod tests {
    use super::probe::Video;
    use super::*;

    fn video(codec: &str, w: u32, h: u32, fps: f64) -> Probe {
        Probe {
            video: Some(Video {
                codec: codec.into(),
                width: w,
                height: h,
                fps: Some(fps),
            }),
            audio: Some("mp4a.40.2".into()),
        }
    }

    fn rate(segments: &[(u64, u64)]) -> Rate {
        let mut r = Rate::default();
        for &(bytes, ms) in segments {
            r.add(bytes, ms);
        }
        r
    }

    #[test]
    fn bandwidth_is_the_peak_segment_rate_and_average_the_total() {
        // 1 Mbit over 2 s (500 kbit/s), 1.5 Mbit over 1 s, 0.5 Mbit over 2 s.
        let r = rate(&[(125_000, 2000), (187_500, 1000), (62_500, 2000)]);
        assert_eq!(r.peak_bps, 1_500_000);
        assert_eq!(r.average_bps(), 3_000_000 / 5);
        // A segment without a duration changes nothing.
        let mut same = r;
        same.add(1 << 30, 0);
        assert_eq!(same, r);
        assert_eq!(Rate::default().average_bps(), 0);
    }

    #[test]
    fn the_master_lists_the_source_first_then_rungs_by_bandwidth() {
        let src = StreamInf::new(
            None,
            "index.m3u8",
            &rate(&[(1_000_000, 2000)]),
            video("avc1.64001f", 1280, 720, 30.0),
        );
        let low = StreamInf::new(
            Some("360p"),
            "index.m3u8",
            &rate(&[(200_000, 2000), (100_000, 2000)]),
            video("avc1.4d401e", 640, 360, 29.97),
        );
        let mid = StreamInf::new(
            Some("540p"),
            "index.m3u8",
            &rate(&[(400_000, 2000)]),
            video("avc1.4d401f", 960, 540, 30.0),
        );
        let audio = StreamInf::new(
            Some("audio"),
            "index.m3u8",
            &rate(&[(24_000, 2000)]),
            Probe {
                video: None,
                audio: Some("mp4a.40.2".into()),
            },
        );
        let text = render(&[audio, low, src, mid]);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=4000000,AVERAGE-BANDWIDTH=4000000,RESOLUTION=1280x720,FRAME-RATE=30.000,CODECS=\"avc1.64001f,mp4a.40.2\"\n\
             index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1600000,AVERAGE-BANDWIDTH=1600000,RESOLUTION=960x540,FRAME-RATE=30.000,CODECS=\"avc1.4d401f,mp4a.40.2\"\n\
             540p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=800000,AVERAGE-BANDWIDTH=600000,RESOLUTION=640x360,FRAME-RATE=29.970,CODECS=\"avc1.4d401e,mp4a.40.2\"\n\
             360p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=96000,AVERAGE-BANDWIDTH=96000,CODECS=\"mp4a.40.2\"\n\
             audio/index.m3u8\n"
        );
        assert!(is_master(&text));
        let pairs = stream_infs(&text);
        assert_eq!(pairs.len(), 4);
        assert_eq!(pairs[3].1, "audio/index.m3u8");
        assert_eq!(render_tags(&pairs), text, "parsed back as written");
        assert!(!is_master("#EXTM3U\n#EXTINF:2.0,\n1.ts\n"));
    }

    #[test]
    fn variant_uris_round_trip_and_nothing_else_parses() {
        assert_eq!(
            parse_variant_uri(&variant_uri(None, "i.m3u8")),
            Some((None, "i.m3u8"))
        );
        assert_eq!(
            parse_variant_uri(&variant_uri(Some("360p"), "i.m3u8")),
            Some((Some("360p"), "i.m3u8"))
        );
        for bad in ["", "/i.m3u8", "a/b/i.m3u8", "https://x/i.m3u8", "a/", "/"] {
            assert_eq!(parse_variant_uri(bad), None, "{bad}");
        }
    }

    #[test]
    fn rewrites_only_for_material_changes() {
        let p = video("avc1.64001f", 1280, 720, 30.0);
        let at = |bw: u64, avg: u64| StreamInf {
            rung: None,
            uri: "index.m3u8".into(),
            bandwidth: bw,
            average_bandwidth: avg,
            probe: p.clone(),
        };
        let written = vec![at(1_000_000, 800_000)];
        assert!(!materially_changed(&written, &[at(1_050_000, 760_000)]));
        assert!(materially_changed(&written, &[at(1_050_001, 800_000)]));
        assert!(materially_changed(&written, &[at(1_000_000, 759_999)]));
        // Another probe, or another set of variants.
        let mut other = at(1_000_000, 800_000);
        other.probe = video("avc1.64001f", 1280, 720, 25.0);
        assert!(materially_changed(&written, &[other]));
        let mut rung = at(300_000, 300_000);
        rung.rung = Some("360p".into());
        rung.uri = "360p/index.m3u8".into();
        assert!(materially_changed(
            &written,
            &[at(1_000_000, 800_000), rung]
        ));
    }
}
