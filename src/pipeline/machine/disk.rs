//! The rules about nginx's files that the actor applies with the file
//! system in hand: which fragments of a session's directory count as
//! closed when it is rescanned, and the order in which a closed fragment's
//! bytes are taken into the capture area or the spool. Plain functions,
//! so the model test (`tests.rs`) applies the same rules to its own disk.

use crate::hls::NginxEntry;
use crate::layout::name_ms;

use super::types::{CaptureOutcome, Location};

/// The fragments among `files` (names in a session's HLS directory) that
/// nginx has closed, oldest first: those its playlist `listed`, those older
/// than the newest listed one, and all of them once the session's publisher
/// has gone (`live` false). The newest unlisted fragment of a live session
/// is still being written; its IN_CLOSE_WRITE will come. Names without a
/// time (not fragments) are left out.
pub(crate) fn closed_fragments(
    files: impl IntoIterator<Item = String>,
    listed: &[NginxEntry],
    live: bool,
) -> Vec<String> {
    let max_listed = listed.iter().filter_map(|e| name_ms(&e.uri)).max();
    let mut names: Vec<(u64, String)> = files
        .into_iter()
        .filter_map(|n| name_ms(&n).map(|ms| (ms, n)))
        .collect();
    names.sort();
    names
        .into_iter()
        .filter(|(ms, name)| {
            listed.iter().any(|e| &e.uri == name) || max_listed.is_some_and(|m| *ms < m) || !live
        })
        .map(|(_, name)| name)
        .collect()
}

/// One way of taking nginx's closed file into a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaptureStep {
    /// Rename it into the capture area (possible only when the capture area
    /// shares nginx's file system); nginx's file is gone after it.
    Move,
    /// Copy it into this area; nginx's file stays.
    Copy(Location),
}

/// What one [`CaptureStep`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepResult {
    /// The bytes are in the capture file.
    Done,
    /// nginx rewrote the file since its close: nothing is kept; its next
    /// close comes.
    Changed,
    /// This way did not work (another file system, the area full…): the
    /// next is tried.
    Failed,
}

/// The steps tried for a fragment, in order: outside pressure a rename into
/// the capture area, else a copy there, else to the spool; under pressure
/// (`spool`) a copy to the spool, else to the capture area.
pub(crate) fn capture_steps(spool: bool) -> Vec<CaptureStep> {
    if spool {
        vec![
            CaptureStep::Copy(Location::Spool),
            CaptureStep::Copy(Location::Capture),
        ]
    } else {
        vec![
            CaptureStep::Move,
            CaptureStep::Copy(Location::Capture),
            CaptureStep::Copy(Location::Spool),
        ]
    }
}

/// Takes a closed fragment's bytes by trying each of [`capture_steps`] with
/// `try_step` (the I/O, the caller's) until one keeps them: where they are
/// kept, or [`CaptureOutcome::Changed`] at once if nginx rewrote the file.
/// When every step fails, nginx's own file is all there is
/// ([`Location::Nginx`]): it is uploaded from there and not deleted before.
pub(crate) fn capture_with(
    spool: bool,
    mut try_step: impl FnMut(CaptureStep) -> StepResult,
) -> CaptureOutcome {
    for step in capture_steps(spool) {
        match try_step(step) {
            StepResult::Done => {
                return CaptureOutcome::Kept(match step {
                    CaptureStep::Move => Location::Capture,
                    CaptureStep::Copy(at) => at,
                });
            }
            StepResult::Changed => return CaptureOutcome::Changed,
            StepResult::Failed => {}
        }
    }
    CaptureOutcome::Kept(Location::Nginx)
}

/// Where a journaled capture's file may be, preferred first: the area it was
/// copied to, then the other (the preferred one was full, or it was moved to
/// the spool since).
pub(crate) fn candidates(spool: bool) -> [Location; 2] {
    if spool {
        [Location::Spool, Location::Capture]
    } else {
        [Location::Capture, Location::Spool]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, uri: &str) -> NginxEntry {
        NginxEntry {
            seq,
            uri: uri.into(),
            extinf: "2.000".into(),
            duration_ms: 2_000,
            discontinuity: false,
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_newest_unlisted_fragment_of_a_live_session_is_not_closed() {
        let files = names(&["6000.ts", "2000.ts", "index.m3u8", "4000.ts"]);
        let listed = [entry(0, "2000.ts")];
        assert_eq!(
            closed_fragments(files.clone(), &listed, true),
            names(&["2000.ts"])
        );
        // Older than a listed one: closed, though missed by nginx's window.
        let listed = [entry(1, "4000.ts")];
        assert_eq!(
            closed_fragments(files.clone(), &listed, true),
            names(&["2000.ts", "4000.ts"])
        );
        // The publisher has gone: every fragment, oldest first.
        assert_eq!(
            closed_fragments(files, &[], false),
            names(&["2000.ts", "4000.ts", "6000.ts"])
        );
    }

    #[test]
    fn a_capture_falls_back_area_by_area_then_to_nginx() {
        let mut tried = Vec::new();
        let out = capture_with(false, |s| {
            tried.push(s);
            StepResult::Failed
        });
        assert_eq!(out, CaptureOutcome::Kept(Location::Nginx));
        assert_eq!(tried, capture_steps(false));
        assert_eq!(
            capture_with(false, |s| match s {
                CaptureStep::Move => StepResult::Failed,
                _ => StepResult::Done,
            }),
            CaptureOutcome::Kept(Location::Capture)
        );
        assert_eq!(
            capture_with(true, |s| match s {
                CaptureStep::Copy(Location::Spool) => StepResult::Failed,
                _ => StepResult::Done,
            }),
            CaptureOutcome::Kept(Location::Capture)
        );
        // A rewrite stops the chain: nothing else is tried.
        let mut n = 0;
        let out = capture_with(false, |_| {
            n += 1;
            StepResult::Changed
        });
        assert_eq!((out, n), (CaptureOutcome::Changed, 1));
    }
}
