//! The transcoders' decisions, without I/O or clock: whether a dead
//! transcoder is restarted and after how long, how far behind real time a
//! running one is (from ffmpeg's `-progress` lines), whether a play of a
//! source is a transcoder's, and how much of ffmpeg's stderr is logged.

use std::time::Duration;

/// Why a rung was dropped for the rest of a push: the label of
/// `livebucket_rendition_dropped_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// Its transcoder fell more than `max_lag_secs` behind real time.
    Lag,
    /// Its transcoder died `max_restarts` times.
    Restarts,
    /// ffmpeg could not be started at all (not installed, not executable).
    Spawn,
    /// Its rendition session could not be recorded (the variant channel is
    /// live already, the state directory failed, its HLS directory).
    Session,
}

impl DropReason {
    pub(crate) fn code(self) -> &'static str {
        match self {
            DropReason::Lag => "lag",
            DropReason::Restarts => "restarts",
            DropReason::Spawn => "spawn",
            DropReason::Session => "session",
        }
    }
}

/// The first restart waits this long; each next one 1.5 times longer.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The least wait after a clean exit: ffmpeg exits 0 when its input ends,
/// which is how a push's end usually reaches it, before `on_publish_done`
/// reaches livebucket; by then the source is no longer live, and nothing
/// is restarted.
const CLEAN_EXIT_WAIT: Duration = Duration::from_secs(3);

/// A rung's restarts within one push.
#[derive(Debug)]
pub(crate) struct Restarts {
    done: u32,
    max: u32,
}

/// What follows a transcoder's exit while its source is live.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterExit {
    Restart { after: Duration },
    Drop,
}

impl Restarts {
    pub(crate) fn new(max: u32) -> Restarts {
        Restarts { done: 0, max }
    }

    /// A transcoder exited (`clean`: with status 0): restarted after a
    /// backoff (500 ms × 1.5ⁿ, at most 10 s; at least 3 s after a clean
    /// exit) unless it was restarted `max` times already. The caller
    /// restarts only if the source is still live after the wait.
    pub(crate) fn after_exit(&mut self, clean: bool) -> AfterExit {
        if self.done >= self.max {
            return AfterExit::Drop;
        }
        let after = FIRST_BACKOFF
            .mul_f64(1.5f64.powi(self.done as i32))
            .min(MAX_BACKOFF);
        self.done += 1;
        AfterExit::Restart {
            after: if clean {
                after.max(CLEAN_EXIT_WAIT)
            } else {
                after
            },
        }
    }
}

/// Reads ffmpeg's `-progress` output: blocks of `key=value` lines, each
/// ended by `progress=continue` (or `progress=end`).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    out_us: Option<i64>,
}

impl Progress {
    /// One line; at the end of a block, the output timestamp it reported
    /// (µs; with `-copyts` the source's timeline, not from 0), if any yet.
    pub(crate) fn line(&mut self, line: &str) -> Option<i64> {
        let (key, value) = line.trim().split_once('=')?;
        match key {
            "out_time_us" => {
                // "N/A" before the first frame is written.
                self.out_us = value.parse().ok();
                None
            }
            "progress" => self.out_us,
            _ => None,
        }
    }
}

/// How far a transcoder is behind real time: wall time elapsed minus
/// output time elapsed, measured from the sample where the output was
/// furthest ahead (so ffmpeg's start, while it probes and then catches up,
/// counts as no lag).
#[derive(Debug, Default)]
pub(crate) struct Lag {
    /// The least (wall ms − output ms) seen.
    best: Option<i64>,
}

impl Lag {
    /// A sample: wall clock `wall_ms`, output timestamp `out_us`. Returns
    /// the lag in ms.
    pub(crate) fn sample(&mut self, wall_ms: u64, out_us: i64) -> u64 {
        let offset = wall_ms as i64 - out_us / 1000;
        let best = *self.best.get_or_insert(offset);
        let best = best.min(offset);
        self.best = Some(best);
        (offset - best) as u64
    }

    /// Whether `lag_ms` is past `max_lag_secs`: the rung is dropped, when
    /// [`may_drop`] lets it.
    pub(crate) fn too_far(lag_ms: u64, max_lag_secs: u64) -> bool {
        lag_ms > max_lag_secs.saturating_mul(1000)
    }
}

/// Whether a rung past its lag limit may be dropped now, given when the
/// last rung anywhere on this node was (`last_drop_ms`): one rung at a
/// time, `hold_ms` apart. When the machine cannot keep up, every
/// transcoder falls behind at once; dropping one frees CPU the others can
/// catch up with, so they get `hold_ms` (`max_lag_secs`) to show they do
/// before the next goes.
pub(crate) fn may_drop(now_ms: u64, last_drop_ms: Option<u64>, hold_ms: u64) -> bool {
    last_drop_ms.is_none_or(|t| now_ms.saturating_sub(t) >= hold_ms)
}

/// Why `on_play` refused a play in an internal application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PlayRefusal {
    #[error("the play is not nginx's play call")]
    WrongCall,
    #[error("the play carries no transcoder token")]
    NoToken,
    #[error("the token is unknown or used already")]
    UnknownToken,
    #[error("the token is for another stream")]
    WrongStream,
    #[error("the source session is not live")]
    SourceEnded,
    #[error("the source session has no such rung")]
    NoSuchRung,
}

impl PlayRefusal {
    /// Stable snake_case label for logs and `livebucket_play_refused_total`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            PlayRefusal::WrongCall => "play_wrong_call",
            PlayRefusal::NoToken => "play_no_token",
            PlayRefusal::UnknownToken => "play_unknown_token",
            PlayRefusal::WrongStream => "play_wrong_stream",
            PlayRefusal::SourceEnded => "play_source_ended",
            PlayRefusal::NoSuchRung => "play_no_such_rung",
        }
    }
}

/// A one-use token's promise: the transcoder of `rung` may play `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub source: String,
    pub rung: String,
}

/// The play decision: the token's ticket (`None`: unknown or spent) must
/// name the stream played, whose session must be live and (its
/// `renditions`) have the ticket's rung.
pub(crate) fn admit_play(
    ticket: Option<&Ticket>,
    name: &str,
    source_live: bool,
    source_rungs: &[String],
) -> Result<(), PlayRefusal> {
    let ticket = ticket.ok_or(PlayRefusal::UnknownToken)?;
    if ticket.source != name {
        return Err(PlayRefusal::WrongStream);
    }
    if !source_live {
        return Err(PlayRefusal::SourceEnded);
    }
    if !source_rungs.contains(&ticket.rung) {
        return Err(PlayRefusal::NoSuchRung);
    }
    Ok(())
}

/// How many stderr lines of one transcoder are logged per window; the rest
/// are counted and the count logged when the window ends.
#[derive(Debug)]
pub(crate) struct LineBudget {
    per_window: u32,
    window_ms: u64,
    started_ms: u64,
    used: u32,
    suppressed: u32,
}

/// What to do with one stderr line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineVerdict {
    /// Log it; `suppressed` lines of the previous window were not.
    Log {
        suppressed: u32,
    },
    Skip,
}

impl LineBudget {
    pub(crate) fn new(per_window: u32, window_ms: u64) -> LineBudget {
        LineBudget {
            per_window,
            window_ms,
            started_ms: 0,
            used: 0,
            suppressed: 0,
        }
    }

    pub(crate) fn line(&mut self, now_ms: u64) -> LineVerdict {
        let mut suppressed = 0;
        if now_ms.saturating_sub(self.started_ms) >= self.window_ms {
            self.started_ms = now_ms;
            self.used = 0;
            suppressed = std::mem::take(&mut self.suppressed);
        }
        if self.used < self.per_window {
            self.used += 1;
            LineVerdict::Log { suppressed }
        } else {
            self.suppressed += 1;
            LineVerdict::Skip
        }
    }
}

/// `line` with the value of every `lbt=` (the one-use play token) replaced
/// by `…`: ffmpeg names its input URL in errors.
pub(crate) fn redact(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("lbt=") {
        out.push_str(&rest[..at + 4]);
        out.push('…');
        rest = &rest[at + 4..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_transcoder_is_restarted_with_growing_backoff_then_dropped() {
        let mut r = Restarts::new(3);
        let waits: Vec<AfterExit> = (0..4).map(|_| r.after_exit(false)).collect();
        assert_eq!(
            waits,
            [
                AfterExit::Restart {
                    after: Duration::from_millis(500)
                },
                AfterExit::Restart {
                    after: Duration::from_millis(750)
                },
                AfterExit::Restart {
                    after: Duration::from_millis(1125)
                },
                AfterExit::Drop,
            ]
        );
        let mut r = Restarts::new(100);
        let last = (0..50).map(|_| r.after_exit(false)).last();
        assert_eq!(last, Some(AfterExit::Restart { after: MAX_BACKOFF }));
        assert_eq!(Restarts::new(0).after_exit(false), AfterExit::Drop);
        // A clean exit (the input ended) leaves time for on_publish_done.
        assert_eq!(
            Restarts::new(3).after_exit(true),
            AfterExit::Restart {
                after: CLEAN_EXIT_WAIT
            }
        );
    }

    #[test]
    fn progress_reports_the_output_time_at_the_end_of_each_block() {
        let mut p = Progress::default();
        let block = "frame=0\nout_time_us=N/A\nout_time=N/A\nspeed=N/A\nprogress=continue\n\
                     frame=25\nout_time_us=1000000\nprogress=continue\nout_time_us=2000000\nprogress=end\n";
        let got: Vec<i64> = block.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(got, [1_000_000, 2_000_000]);
    }

    #[test]
    fn lag_is_wall_time_past_output_time_from_the_best_sample() {
        let mut lag = Lag::default();
        // -copyts: the output starts at the source's timestamp, 50 s.
        assert_eq!(lag.sample(1_000_000, 50_000_000), 0);
        // Catching up after probing: ahead of the first sample, no lag.
        assert_eq!(lag.sample(1_001_000, 51_500_000), 0);
        assert_eq!(lag.sample(1_002_000, 52_500_000), 0);
        // Then stuck: 3 s of wall time, 1 s of output.
        assert_eq!(lag.sample(1_005_000, 53_500_000), 2_000);
        assert!(!Lag::too_far(2_000, 2));
        assert!(Lag::too_far(2_001, 2));
    }

    #[test]
    fn a_play_needs_a_live_source_with_the_tickets_rung() {
        let t = Ticket {
            source: "s1".into(),
            rung: "360p".into(),
        };
        let rungs = ["360p".to_owned()];
        assert_eq!(admit_play(Some(&t), "s1", true, &rungs), Ok(()));
        assert_eq!(
            admit_play(None, "s1", true, &rungs),
            Err(PlayRefusal::UnknownToken)
        );
        assert_eq!(
            admit_play(Some(&t), "s2", true, &rungs),
            Err(PlayRefusal::WrongStream)
        );
        assert_eq!(
            admit_play(Some(&t), "s1", false, &rungs),
            Err(PlayRefusal::SourceEnded)
        );
        assert_eq!(
            admit_play(Some(&t), "s1", true, &[]),
            Err(PlayRefusal::NoSuchRung)
        );
    }

    #[test]
    fn stderr_is_logged_up_to_a_budget_per_window() {
        let mut b = LineBudget::new(2, 1000);
        assert_eq!(b.line(5_000), LineVerdict::Log { suppressed: 0 });
        assert_eq!(b.line(5_001), LineVerdict::Log { suppressed: 0 });
        assert_eq!(b.line(5_002), LineVerdict::Skip);
        assert_eq!(b.line(5_999), LineVerdict::Skip);
        assert_eq!(b.line(6_000), LineVerdict::Log { suppressed: 2 });
    }

    #[test]
    fn tokens_are_redacted_from_logged_lines() {
        assert_eq!(
            redact("rtmp://127.0.0.1:1/hls/abc?lbt=0123abcd: Broken pipe lbt=ff"),
            "rtmp://127.0.0.1:1/hls/abc?lbt=…: Broken pipe lbt=…"
        );
        assert_eq!(redact("no token here"), "no token here");
    }

    #[test]
    fn rungs_are_dropped_one_at_a_time() {
        assert!(
            may_drop(5_000, None, 10_000),
            "the first drop waits for nothing"
        );
        assert!(
            !may_drop(5_000, Some(1_000), 10_000),
            "another rung went 4 s ago"
        );
        assert!(may_drop(11_000, Some(1_000), 10_000), "a hold later");
        assert!(
            !may_drop(500, Some(1_000), 10_000),
            "a clock that went back holds"
        );
    }
}
