//! The VOD index: one small manifest object per publish session, so a time
//! range becomes a VOD playlist with a handful of requests instead of a HEAD
//! per fragment.
//!
//! Manifests live at `.livebucket/index/CHANNEL/<13-digit start ms>-<recording>.json`
//! (the session's `session::recording_id`, which cannot be turned back into
//! the session id; manifests written before carry the session id and read
//! the same),
//! outside the channel's own prefix so tools that list `CHANNEL/` see only
//! media. The pipeline rewrites a session's manifest at most every 10 s
//! while fragments are stored (S3 cannot append), and a last time when the
//! session ends; a manifest lists only fragments already in the bucket. A
//! long session is split into several manifest objects (chunks) of up to
//! `[live] manifest_chunk_fragments` fragments each (default 1,800, an hour
//! of 2 s fragments; the later ones keyed by their first fragment), so
//! rewriting stays cheap: only the newest chunk is rewritten. Consecutive
//! manifests of one session read as one, also when retention has deleted
//! the earlier chunks of a live session. Because manifest keys start with the session's start
//! time, the sessions that can overlap a range are a prefix listing away.
//!
//! Buckets filled by other tools have no manifests: then the range is read by
//! listing `CHANNEL/<epoch-ms>.ts` keys (time-ordered, so the listing starts
//! at the range) and reading each fragment's `extinf` metadata.

use serde::{Deserialize, Serialize};

/// One stored fragment: its object key time and duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedFragment {
    /// Epoch ms in the key `CHANNEL/<key_ms>.ts`; also its start time.
    pub k: u64,
    /// Duration in ms, as nginx's playlist gave it.
    pub d: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The session's recording id (the session id in manifests written
    /// before recording ids): chunks with the same one read as one session.
    pub session: String,
    pub channel: String,
    pub started_ms: u64,
    pub ended: bool,
    pub fragments: Vec<IndexedFragment>,
}

pub use crate::layout::{INDEX_PREFIX, manifest_key, manifest_prefix};

/// Start time (ms) encoded in a manifest key.
pub fn manifest_start(key: &str) -> Option<u64> {
    crate::layout::parse_manifest_key(key).map(|(ms, _)| ms)
}

/// A fragment selected for a VOD playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeFragment {
    pub key_ms: u64,
    pub duration_ms: u64,
    /// Starts a new session, or follows a gap: needs `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
    /// First fragment of a session: gets `#EXT-X-PROGRAM-DATE-TIME`.
    pub session_start: bool,
}

/// A gap longer than this between two fragments (end of one to start of the
/// next) is a discontinuity even within a session.
pub const GAP_MS: u64 = 1_000;

/// Fragments whose start is in `[start_ms, end_ms)`, from manifests sorted by
/// start time, with discontinuities between sessions and across gaps.
pub fn select(manifests: &[Manifest], start_ms: u64, end_ms: u64) -> Vec<RangeFragment> {
    let mut out: Vec<RangeFragment> = Vec::new();
    let mut prev_end: Option<u64> = None;
    let mut prev_session: Option<&str> = None;
    for m in manifests {
        // A later chunk of the same session continues it.
        let mut first_of_session = prev_session != Some(m.session.as_str());
        prev_session = Some(m.session.as_str());
        for f in m
            .fragments
            .iter()
            .filter(|f| f.k >= start_ms && f.k < end_ms)
        {
            let gap = prev_end.is_some_and(|e| f.k > e + GAP_MS);
            out.push(RangeFragment {
                key_ms: f.k,
                duration_ms: f.d,
                discontinuity: !out.is_empty() && (first_of_session || gap),
                session_start: first_of_session,
            });
            first_of_session = false;
            prev_end = Some(f.k + f.d);
        }
    }
    out
}

/// Same, for fragments found by listing (no session boundaries known: every
/// gap is a discontinuity, and the fragment after a gap starts a "session").
pub fn select_listed(fragments: &[(u64, u64)], start_ms: u64, end_ms: u64) -> Vec<RangeFragment> {
    let mut out: Vec<RangeFragment> = Vec::new();
    let mut prev_end: Option<u64> = None;
    for &(k, d) in fragments
        .iter()
        .filter(|(k, _)| *k >= start_ms && *k < end_ms)
    {
        let gap = prev_end.is_none_or(|e| k > e + GAP_MS);
        out.push(RangeFragment {
            key_ms: k,
            duration_ms: d,
            discontinuity: !out.is_empty() && gap,
            session_start: gap,
        });
        prev_end = Some(k + d);
    }
    out
}

/// Parses an `extinf` metadata value ("2.002") into milliseconds.
pub fn extinf_ms(s: &str) -> Option<u64> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: u64 = int.parse().ok()?;
    let mut ms = int.checked_mul(1000)?;
    let digits: String = frac.chars().take(3).collect();
    if !digits.is_empty() {
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let scale = [100, 10, 1][digits.len() - 1];
        ms += digits.parse::<u64>().ok()? * scale;
    }
    Some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(session: &str, frags: &[(u64, u64)]) -> Manifest {
        Manifest {
            version: 1,
            session: session.into(),
            channel: "c".into(),
            started_ms: frags.first().map_or(0, |f| f.0),
            ended: true,
            fragments: frags
                .iter()
                .map(|&(k, d)| IndexedFragment { k, d })
                .collect(),
        }
    }

    #[test]
    fn range_is_half_open_with_one_discontinuity_between_sessions() {
        let a = m("a", &[(1000, 2000), (3000, 2000), (5000, 2000)]);
        let b = m("b", &[(20_000, 2000), (22_000, 2000)]);
        let sel = select(&[a.clone(), b.clone()], 3000, 22_000);
        let keys: Vec<u64> = sel.iter().map(|f| f.key_ms).collect();
        assert_eq!(keys, vec![3000, 5000, 20_000]);
        let disc: Vec<bool> = sel.iter().map(|f| f.discontinuity).collect();
        assert_eq!(disc, vec![false, false, true]);
        assert!(sel[0].session_start && sel[2].session_start && !sel[1].session_start);
        assert!(select(&[a, b], 7000, 20_000).is_empty());
    }

    #[test]
    fn chunks_of_one_session_read_as_one() {
        let first = m("a", &[(1000, 2000), (3000, 2000)]);
        let second = m("a", &[(5000, 2000), (7000, 2000)]);
        let other = m("b", &[(20_000, 2000)]);
        let sel = select(&[first, second, other], 0, u64::MAX);
        assert_eq!(
            sel.iter().map(|f| f.discontinuity).collect::<Vec<_>>(),
            vec![false, false, false, false, true]
        );
        assert_eq!(
            sel.iter().map(|f| f.session_start).collect::<Vec<_>>(),
            vec![true, false, false, false, true]
        );
    }

    #[test]
    fn gap_inside_session_is_a_discontinuity() {
        let a = m("a", &[(0, 2000), (2000, 2000), (10_000, 2000)]);
        let sel = select(&[a], 0, u64::MAX);
        assert_eq!(
            sel.iter().map(|f| f.discontinuity).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        let listed = select_listed(&[(0, 2000), (2000, 2000), (10_000, 2000)], 0, u64::MAX);
        assert_eq!(
            listed.iter().map(|f| f.discontinuity).collect::<Vec<_>>(),
            vec![false, false, true]
        );
    }

    #[test]
    fn keys_and_extinf() {
        let k = manifest_key("cam", 1_732_571_234_567, "abc");
        assert_eq!(k, ".livebucket/index/cam/1732571234567-abc.json");
        assert_eq!(manifest_start(&k), Some(1_732_571_234_567));
        assert_eq!(extinf_ms("2.002"), Some(2002));
        assert_eq!(extinf_ms("2.5"), Some(2500));
        assert_eq!(extinf_ms("3"), Some(3000));
        assert_eq!(extinf_ms("x"), None);
        assert_eq!(extinf_ms("1.a"), None);
    }
}
