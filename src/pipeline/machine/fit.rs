//! Whether the encoder's fragments fit the session's target duration.
//!
//! nginx-rtmp cuts a fragment at the first keyframe after `hls_fragment`,
//! and at any frame past `hls_max_fragment` (`nginx/nginx.conf.in`). An
//! encoder whose keyframe interval is not the fragment length or a divisor
//! of it therefore yields fragments that start without a keyframe (a player
//! joining there shows nothing, or garbage, until the next one), and without
//! `hls_max_fragment` fragments longer than the target duration, which
//! breaks the playlist's promise. Neither loses media, so the push goes on;
//! the first misfit of a session is logged with the settings that fix it,
//! and every misfit is counted (`livebucket_fragment_misfit_total`).

use tracing::warn;

use super::Core;
use super::types::Effect;

/// How a fragment misses its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Misfit {
    /// Its EXTINF rounds above the target duration (RFC 8216 §4.3.3.1).
    TooLong,
    /// It starts without a keyframe: nginx cut it at `hls_max_fragment`.
    NoKeyframe,
}

/// The misfit of a fragment of `duration_ms` whose first video frame is a
/// keyframe (`Some(true)`), is not (`Some(false)`), or is unknown (`None`:
/// no video, or unreadable), in a session with target `target_secs`.
/// A fragment too long is reported as such even if it also lacks a keyframe.
pub(super) fn misfit(
    duration_ms: u64,
    target_secs: u64,
    keyframe_start: Option<bool>,
) -> Option<Misfit> {
    if crate::hls::target_duration_of(std::iter::once(duration_ms)) > target_secs {
        Some(Misfit::TooLong)
    } else if keyframe_start == Some(false) {
        Some(Misfit::NoKeyframe)
    } else {
        None
    }
}

impl Core {
    /// Checks a fragment nginx listed with `duration_ms`; see the module doc.
    pub(super) fn check_fit(&mut self, id: &str, key: u64, duration_ms: u64, fx: &mut Vec<Effect>) {
        let target = self.cfg.live.target_duration_secs;
        let Some(s) = self.sessions.get_mut(id) else {
            return;
        };
        let target = s
            .meta
            .shape
            .map_or(target, |shape| shape.target_duration_secs);
        let Some(c) = s.captures.iter().find(|c| c.key == key) else {
            return;
        };
        let Some(why) = misfit(duration_ms, target, c.keyframe_start) else {
            return;
        };
        fx.push(Effect::Count("livebucket_fragment_misfit_total"));
        if std::mem::replace(&mut s.misfit_warned, true) {
            return;
        }
        let session = crate::session::log_tag(id);
        let (fragment, channel) = (c.name.as_str(), s.meta.channel.as_str());
        let advice = format!(
            "set the encoder's keyframe interval to {target} s or a divisor of it \
             (ffmpeg: -g <fps × {target}> -keyint_min <same> -sc_threshold 0; \
             OBS: Output › Keyframe Interval {target} s)"
        );
        match why {
            Misfit::TooLong => warn!(
                session = %session,
                channel = %channel,
                fragment = %fragment,
                duration_ms,
                target_secs = target,
                "fragment longer than the live playlist's target duration (warned once per \
                 session): {advice}; and render nginx.conf with scripts/render-nginx-conf \
                 (hls_max_fragment, wait_video) with live.target_duration_secs matching \
                 HLS_FRAGMENT"
            ),
            Misfit::NoKeyframe => warn!(
                session = %session,
                channel = %channel,
                fragment = %fragment,
                duration_ms,
                target_secs = target,
                "fragment cut without a keyframe: the encoder's keyframe interval does not fit \
                 the fragment length (warned once per session; players joining there wait for \
                 the next keyframe): {advice}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_fit_up_to_half_a_second_over() {
        assert_eq!(misfit(2000, 2, Some(true)), None);
        assert_eq!(misfit(2499, 2, Some(true)), None);
        assert_eq!(misfit(2500, 2, Some(true)), Some(Misfit::TooLong));
        // An audio-only lead before the first keyframe: long, not keyless.
        assert_eq!(misfit(3930, 2, Some(true)), Some(Misfit::TooLong));
        assert_eq!(misfit(1000, 2, Some(true)), None);
    }

    #[test]
    fn a_fragment_without_keyframe_misfits_whatever_its_length() {
        assert_eq!(misfit(1400, 1, Some(false)), Some(Misfit::NoKeyframe));
        assert_eq!(misfit(4000, 2, Some(false)), Some(Misfit::TooLong));
        // No video, or unreadable: only the length counts.
        assert_eq!(misfit(2000, 2, None), None);
    }
}
