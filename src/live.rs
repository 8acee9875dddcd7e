//! A channel's live playlist: the sliding window of stored fragments that the
//! playlist object in S3 lists, across publish sessions.
//!
//! Invariants (RFC 8216 §6.2.1–6.2.2), kept across reloads and restarts:
//! - only fragments already stored in S3 enter the window;
//! - the media sequence is the number of fragments that ever left the window,
//!   so a fragment keeps its sequence number while listed;
//! - the discontinuity sequence counts discontinuity tags that left the window;
//! - the target duration never changes while the playlist is live;
//! - a new session continuing a playlist starts with a discontinuity.
//!
//! The window is saved to `state_dir/channels/` (when the pipeline's core
//! says: at most every 30 s once a changed playlist is stored, right before
//! a session's journal is compacted or its state removed, and when the
//! pipeline stops; `pipeline/machine/save.rs`) so a restart continues the same
//! numbering; after a crash, the sessions' journals publish again what was
//! stored since the last save.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::hls::{LivePlaylist, Segment};
use crate::layout::fragment_name;
use crate::session::Resume;
pub(crate) use crate::session::WindowSeg;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ChannelId {
    pub bucket: String,
    pub channel: String,
    pub playlist: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChannelLive {
    /// Fragments ever appended to this playlist.
    pub total: u64,
    pub discontinuity_sequence: u64,
    pub window: VecDeque<WindowSeg>,
    /// Highest object key handed out for the channel: keys only grow, so no
    /// key is ever reused for different bytes.
    pub last_key_ms: u64,
    pub ended: bool,
    /// The next appended fragment starts a new session.
    pub pending_discontinuity: bool,
    /// How many fragments of each unfinished session are in this playlist
    /// (saved with it, so recovery knows where each session stands).
    #[serde(default)]
    pub published: std::collections::BTreeMap<String, usize>,
    #[serde(skip)]
    pub version: u64,
    #[serde(skip)]
    pub stored_version: u64,
}

impl ChannelLive {
    pub(crate) fn state_path(state_dir: &Path, id: &ChannelId) -> PathBuf {
        let digest =
            sha2::Sha256::digest(format!("{}\n{}\n{}", id.bucket, id.channel, id.playlist));
        state_dir
            .join("channels")
            .join(format!("{}.json", hex::encode(&digest[..16])))
    }

    pub(crate) fn load(state_dir: &Path, id: &ChannelId) -> ChannelLive {
        let path = Self::state_path(state_dir, id);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable channel state; starting a new playlist");
                ChannelLive::default()
            }),
            Err(_) => ChannelLive::default(),
        }
    }

    pub(crate) fn save(&self, state_dir: &Path, id: &ChannelId) -> std::io::Result<()> {
        let path = Self::state_path(state_dir, id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        // Saved from the pipeline's own task: a temp file and a rename keep
        // it whole across a crash of livebucket, without an fsync stalling
        // every channel. (A power cut loses the tmpfs fragments this
        // describes anyway.)
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &body)?;
        std::fs::rename(&tmp, &path)
    }

    /// Takes over the playlist another node stored last ([`Resume`]), when it
    /// is newer than what this node knows: the window, both sequences and
    /// the key clock continue from it. Returns whether it was taken.
    pub(crate) fn adopt(&mut self, r: &Resume) -> bool {
        let Some(last) = r.window.last().map(|w| w.key_ms) else {
            return false;
        };
        if last <= self.last_key_ms {
            return false;
        }
        *self = ChannelLive {
            total: r.media_sequence + r.window.len() as u64,
            discontinuity_sequence: r.discontinuity_sequence,
            window: r.window.iter().cloned().collect(),
            last_key_ms: last,
            ended: r.ended,
            pending_discontinuity: false,
            // Not stored by this node yet: the next upload writes it.
            version: self.version + 1,
            stored_version: self.stored_version,
            // This node's own sessions keep their counts.
            published: std::mem::take(&mut self.published),
        };
        true
    }

    /// A new publish session begins on this channel.
    pub(crate) fn begin_session(&mut self) {
        if !self.window.is_empty() {
            self.pending_discontinuity = true;
        }
    }

    /// Appends a stored fragment and slides the window to at least `window`
    /// fragments. RFC 8216 §6.2.2 forbids removing a fragment when less than
    /// three target durations would remain, so the window may hold more.
    pub(crate) fn append(&mut self, mut seg: WindowSeg, window: usize, target_duration: u64) {
        seg.discontinuity = std::mem::take(&mut self.pending_discontinuity);
        self.ended = false;
        self.window.push_back(seg);
        self.total += 1;
        let min_ms = 3 * target_duration * 1000;
        let mut total_ms: u64 = self.window.iter().map(|s| s.duration_ms).sum();
        while self.window.len() > window
            && self
                .window
                .front()
                .is_some_and(|f| total_ms - f.duration_ms >= min_ms)
        {
            if let Some(old) = self.window.pop_front() {
                total_ms -= old.duration_ms;
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
        self.version += 1;
    }

    pub(crate) fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.version += 1;
        }
    }

    pub(crate) fn media_sequence(&self) -> u64 {
        self.total - self.window.len() as u64
    }

    pub(crate) fn render(&self, target_duration: u64) -> String {
        let segments = self
            .window
            .iter()
            .map(|s| Segment {
                uri: fragment_name(s.key_ms),
                duration_ms: s.duration_ms,
                extinf: s.extinf.clone(),
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time_ms.and_then(|ms| {
                    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).ok()
                }),
            })
            .collect();
        crate::hls::render_live(&LivePlaylist {
            target_duration,
            media_sequence: self.media_sequence(),
            discontinuity_sequence: self.discontinuity_sequence,
            segments,
            ended: self.ended,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::hlscheck::{CheckedPlaylist, check_playlist, check_reload};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Fragments appended one by one, sessions ending and new ones
        /// continuing the playlist: every consecutive pair of rendered
        /// playlists passes the independent checker's reload rules.
        #[test]
        fn reloads_follow_rfc(
            steps in proptest::collection::vec(
                (100u64..=6_000, proptest::bool::weighted(0.15)),
                1..60,
            ),
            window in 3usize..8,
        ) {
            const TARGET: u64 = 6;
            let mut c = ChannelLive::default();
            let mut prev: Option<CheckedPlaylist> = None;
            for (i, (ms, new_session)) in steps.iter().enumerate() {
                let mut reopened = None;
                if *new_session {
                    c.end();
                    let ended = check_playlist(&c.render(TARGET)).map_err(TestCaseError::fail)?;
                    if let Some(p) = &prev {
                        check_reload(p, &ended).map_err(TestCaseError::fail)?;
                    }
                    // A new publish reopens the ended playlist (by design, as
                    // OSS does): not a reload RFC 8216 allows, so it is
                    // checked for continuity instead.
                    reopened = Some(ended);
                    prev = None;
                    c.begin_session();
                }
                c.append(
                    WindowSeg {
                        key_ms: 1_700_000_000_000 + i as u64 * 10_000,
                        extinf: String::new(),
                        duration_ms: *ms,
                        discontinuity: false,
                        program_date_time_ms: None,
                    },
                    window,
                    TARGET,
                );
                let next = check_playlist(&c.render(TARGET)).map_err(TestCaseError::fail)?;
                if let Some(ended) = &reopened {
                    prop_assert!(next.media_sequence >= ended.media_sequence);
                    // Continuing a non-empty playlist starts with a discontinuity.
                    let continues = !ended.uris.is_empty();
                    prop_assert_eq!(next.discontinuity_flags.last(), Some(&continues));
                    prop_assert!(!next.ended);
                }
                if let Some(p) = &prev {
                    check_reload(p, &next).map_err(TestCaseError::fail)?;
                }
                prev = Some(next);
            }
        }
    }

    fn seg(k: u64) -> WindowSeg {
        WindowSeg {
            key_ms: k,
            extinf: "2.000".into(),
            duration_ms: 2000,
            discontinuity: false,
            program_date_time_ms: None,
        }
    }

    #[test]
    fn window_slides_and_counts_discontinuities() {
        let mut c = ChannelLive::default();
        // 2 s fragments, target 2: at least 3 fragments and 6 s must remain.
        for k in 1..=4 {
            c.append(seg(k), 3, 2);
        }
        assert_eq!(c.media_sequence(), 1);
        c.end();
        c.begin_session();
        c.append(seg(10), 3, 2);
        assert!(!c.ended);
        assert!(c.window.back().unwrap().discontinuity);
        for k in 11..=13 {
            c.append(seg(k), 3, 2);
        }
        assert_eq!(c.discontinuity_sequence, 1);
        assert_eq!(c.media_sequence(), 5);
        // A long target duration keeps more than `window` fragments.
        let mut long = ChannelLive::default();
        for k in 1..=20 {
            long.append(seg(k), 3, 6);
        }
        assert_eq!(long.window.len(), 9);
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let id = ChannelId {
            bucket: "b".into(),
            channel: "c".into(),
            playlist: "index.m3u8".into(),
        };
        let mut c = ChannelLive::default();
        c.append(seg(5), 3, 2);
        c.last_key_ms = 5;
        c.save(dir.path(), &id).unwrap();
        let back = ChannelLive::load(dir.path(), &id);
        assert_eq!(back.window, c.window);
        assert_eq!(back.total, 1);
        assert_eq!(back.last_key_ms, 5);
    }
}
