//! The hooks secret across a reload: the secret in every callback URL
//! (`/hooks/SECRET/…`) may change with a SIGHUP, but nginx keeps calling
//! with the old one until nginx itself is reloaded. For
//! `hooks.previous_secret_grace_secs` after a change, both the new and the
//! previous secret are accepted, so live streams are not dropped by their
//! next `on_update`; after that only the new one.
//!
//! Both comparisons run in constant time, and both always run, so the
//! answer's timing tells nothing about either secret. [`Matched`] says which
//! one matched, for the log; the secrets themselves are never logged.

use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// The accepted hooks secrets: the configured one and, for a while after a
/// reload changed it, the one before.
pub(crate) struct HookSecrets {
    current: String,
    /// The replaced secret and when it stops being accepted.
    previous: Option<(String, Instant)>,
}

/// Which accepted secret a callback carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matched {
    Current,
    /// The secret before the last reload, within its grace period.
    Previous,
}

impl HookSecrets {
    /// Only `current` is accepted.
    pub(crate) fn new(current: &str) -> HookSecrets {
        HookSecrets {
            current: current.to_owned(),
            previous: None,
        }
    }

    /// After a reload: `new` becomes the secret; if it differs from the
    /// current one, that one is still accepted for `grace` from `now` (not
    /// at all for a zero grace). An unchanged secret keeps any grace period
    /// under way. Returns whether the secret changed.
    pub(crate) fn rotate(&mut self, new: &str, grace: Duration, now: Instant) -> bool {
        if new == self.current {
            return false;
        }
        let old = std::mem::replace(&mut self.current, new.to_owned());
        self.previous = (!grace.is_zero()).then(|| (old, now + grace));
        true
    }

    /// Which secret `given` is at `now`, if either.
    pub(crate) fn check(&self, given: &[u8], now: Instant) -> Option<Matched> {
        let current: bool = given.ct_eq(self.current.as_bytes()).into();
        let previous = self.previous.as_ref().is_some_and(|(secret, until)| {
            let same: bool = given.ct_eq(secret.as_bytes()).into();
            same & (now < *until)
        });
        match (current, previous) {
            (true, _) => Some(Matched::Current),
            (false, true) => Some(Matched::Previous),
            (false, false) => None,
        }
    }

    /// When the previous secret stops being accepted, if one still is at
    /// `now`.
    #[cfg(test)]
    pub(crate) fn previous_until(&self, now: Instant) -> Option<Instant> {
        self.previous
            .as_ref()
            .map(|(_, until)| *until)
            .filter(|until| now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-secret-0123456789abcdef0123456789";
    const NEW: &str = "new-secret-0123456789abcdef0123456789";

    #[test]
    fn both_secrets_are_accepted_during_the_grace_period_only() {
        let t0 = Instant::now();
        let mut s = HookSecrets::new(OLD);
        assert_eq!(s.check(OLD.as_bytes(), t0), Some(Matched::Current));
        assert_eq!(s.check(NEW.as_bytes(), t0), None);

        assert!(s.rotate(NEW, Duration::from_secs(300), t0));
        assert_eq!(s.check(NEW.as_bytes(), t0), Some(Matched::Current));
        let later = t0 + Duration::from_secs(299);
        assert_eq!(s.check(OLD.as_bytes(), later), Some(Matched::Previous));
        assert_eq!(s.previous_until(later), Some(t0 + Duration::from_secs(300)));
        let over = t0 + Duration::from_secs(300);
        assert_eq!(s.check(OLD.as_bytes(), over), None);
        assert_eq!(s.previous_until(over), None);
        assert_eq!(s.check(NEW.as_bytes(), over), Some(Matched::Current));
        // Neither a prefix nor an empty path matches.
        assert_eq!(s.check(&NEW.as_bytes()[..10], t0), None);
        assert_eq!(s.check(b"", t0), None);
    }

    #[test]
    fn an_unchanged_secret_keeps_the_grace_and_a_zero_grace_has_none() {
        let t0 = Instant::now();
        let mut s = HookSecrets::new(OLD);
        assert!(s.rotate(NEW, Duration::from_secs(60), t0));
        // A second reload without a change: the old one is still accepted.
        assert!(!s.rotate(NEW, Duration::from_secs(60), t0 + Duration::from_secs(30)));
        let t = t0 + Duration::from_secs(59);
        assert_eq!(s.check(OLD.as_bytes(), t), Some(Matched::Previous));
        // Another change: only the secret it replaced is still accepted.
        assert!(s.rotate(
            "third-secret-0123456789abcdef012345",
            Duration::from_secs(60),
            t
        ));
        assert_eq!(s.check(OLD.as_bytes(), t), None);
        assert_eq!(s.check(NEW.as_bytes(), t), Some(Matched::Previous));

        let mut s = HookSecrets::new(OLD);
        assert!(s.rotate(NEW, Duration::ZERO, t0));
        assert_eq!(s.check(OLD.as_bytes(), t0), None);
        assert_eq!(s.previous_until(t0), None);
    }
}
