//! Brute-force protection for push authentication: an address that fails
//! `max_failures` times within `window` is refused for `ban`. The window opens
//! at an address's first failure (a fixed window, not a sliding one), and a new
//! count starts when it or a ban is over.
//!
//! The HTTP layer calls [`FailureLimiter::check`] before verifying a callback
//! and [`FailureLimiter::record_failure`] after a refusal. Time is passed in,
//! so tests need no sleeping.
//!
//! Invariants:
//! - state is per address; one address's failures never affect another's;
//! - memory is bounded: at most `max_entries` addresses (each key at most
//!   [`MAX_ADDR_LEN`] bytes). When full, finished entries go first, then the
//!   oldest unbanned ones, and banned addresses only as a last resort, so that
//!   flooding the table from many addresses does not lift a ban cheaply;
//! - a lock poisoned by a panic elsewhere is recovered, not propagated: the
//!   counters stay meaningful whatever the panicking thread was doing;
//! - [`FailureLimiter::reconfigure`] (SIGHUP) changes the policy and keeps
//!   the counts and bans already made; the new numbers apply from the next
//!   check or failure.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::reject::Reject;
use crate::config::AuthConfig;

/// Default bound on tracked addresses.
pub(crate) const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// Longest address key kept; nginx's `addr` (IPv6 text included) is shorter,
/// so this only bounds memory against odd callers.
pub(crate) const MAX_ADDR_LEN: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    fn banned_at(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| now < until)
    }

    /// Nothing left to remember: no ban in force and the window is over.
    fn finished_at(&self, now: Instant, window: Duration) -> bool {
        !self.banned_at(now) && now.saturating_duration_since(self.window_start) >= window
    }
}

/// Per-address failure counter with temporary bans. Shareable through an
/// `Arc`; all methods take `&self`.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    policy: Mutex<Policy>,
    max_entries: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Policy {
    max_failures: u32,
    window: Duration,
    ban: Duration,
}

impl FailureLimiter {
    /// `max_failures == 0` turns the limiter off (nothing is ever banned).
    pub(crate) fn new(max_failures: u32, window: Duration, ban: Duration) -> Self {
        Self {
            policy: Mutex::new(Policy {
                max_failures,
                window,
                ban,
            }),
            max_entries: DEFAULT_MAX_ENTRIES,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The limiter `auth.max_failures`, `auth.failure_window_secs` and
    /// `auth.ban_secs` describe.
    pub(crate) fn from_config(auth: &AuthConfig) -> Self {
        Self::new(
            auth.max_failures,
            Duration::from_secs(auth.failure_window_secs),
            Duration::from_secs(auth.ban_secs),
        )
    }

    /// Takes a reloaded `[auth]` policy, keeping what was counted.
    pub(crate) fn reconfigure(&self, auth: &AuthConfig) {
        *self
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Policy {
            max_failures: auth.max_failures,
            window: Duration::from_secs(auth.failure_window_secs),
            ban: Duration::from_secs(auth.ban_secs),
        };
    }

    fn policy(&self) -> Policy {
        *self
            .policy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the bound on tracked addresses (at least 1).
    #[cfg(test)]
    pub(crate) fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// `Err(TooManyFailures)` while `addr` is banned.
    pub(crate) fn check(&self, addr: &str, now: Instant) -> Result<(), Reject> {
        let entries = self.lock();
        match entries.get(key(addr)) {
            Some(entry) if entry.banned_at(now) => Err(Reject::TooManyFailures),
            _ => Ok(()),
        }
    }

    /// Counts one failed attempt from `addr`; the `max_failures`-th within one
    /// window starts a ban. Attempts refused by [`Self::check`] need not be
    /// recorded: failures during a ban change nothing.
    pub(crate) fn record_failure(&self, addr: &str, now: Instant) {
        let policy = self.policy();
        if policy.max_failures == 0 {
            return;
        }
        let addr = key(addr);
        let mut entries = self.lock();
        if !entries.contains_key(addr) && entries.len() >= self.max_entries {
            self.make_room(&mut entries, now, policy.window);
        }
        let entry = entries.entry(addr.to_owned()).or_insert(Entry {
            window_start: now,
            failures: 0,
            banned_until: None,
            last_seen: now,
        });
        entry.last_seen = now;
        if entry.banned_at(now) {
            // Failures while banned were refused before verification; they
            // neither extend nor shorten the ban.
            return;
        }
        if entry.banned_until.is_some()
            || now.saturating_duration_since(entry.window_start) >= policy.window
        {
            entry.window_start = now;
            entry.failures = 0;
            entry.banned_until = None;
        }
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= policy.max_failures {
            entry.banned_until = Some(now + policy.ban);
        }
    }

    /// Addresses currently tracked (for metrics and tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Frees at least one slot, and about an eighth of the table when it has
    /// to evict live entries, so the O(n) sweep is paid once per many inserts.
    fn make_room(&self, entries: &mut HashMap<String, Entry>, now: Instant, window: Duration) {
        entries.retain(|_, e| !e.finished_at(now, window));
        if entries.len() < self.max_entries {
            return;
        }
        let target = self.max_entries - (self.max_entries / 8).max(1);
        let mut victims: Vec<(bool, Instant, String)> = entries
            .iter()
            .map(|(addr, e)| (e.banned_at(now), e.last_seen, addr.clone()))
            .collect();
        // Unbanned (false) before banned, oldest first.
        victims.sort_unstable();
        let excess = entries.len() - target;
        for (_, _, addr) in victims.into_iter().take(excess) {
            entries.remove(&addr);
        }
    }
}

/// The map key for `addr`, cut to [`MAX_ADDR_LEN`] bytes at a character
/// boundary.
fn key(addr: &str) -> &str {
    if addr.len() <= MAX_ADDR_LEN {
        return addr;
    }
    let mut end = MAX_ADDR_LEN;
    while !addr.is_char_boundary(end) {
        end -= 1;
    }
    &addr[..end]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);
    const BAN: Duration = Duration::from_secs(30);

    fn limiter() -> FailureLimiter {
        FailureLimiter::new(3, WINDOW, BAN)
    }

    #[test]
    fn reconfigure_applies_the_new_policy_and_keeps_counts() {
        let l = limiter();
        let t0 = Instant::now();
        l.record_failure("a", t0);
        l.record_failure("a", t0);
        assert!(l.check("a", t0).is_ok());
        l.reconfigure(&AuthConfig {
            max_failures: 1,
            ban_secs: 5,
            ..AuthConfig::default()
        });
        l.record_failure("a", t0);
        assert!(l.check("a", t0).is_err(), "the new, lower limit bans");
        assert!(
            l.check("a", t0 + Duration::from_secs(6)).is_ok(),
            "the new ban length applies"
        );
    }

    #[test]
    fn bans_after_max_failures_in_window() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..2 {
            l.record_failure("192.0.2.1", t0 + Duration::from_secs(i));
            assert!(l.check("192.0.2.1", t0 + Duration::from_secs(i)).is_ok());
        }
        l.record_failure("192.0.2.1", t0 + Duration::from_secs(2));
        let err = l
            .check("192.0.2.1", t0 + Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(err.code(), "too_many_failures");
        assert_eq!(err, Reject::TooManyFailures);
        let end = t0 + Duration::from_secs(2) + BAN;
        assert!(
            l.check("192.0.2.1", end - Duration::from_millis(1))
                .is_err()
        );
        assert!(l.check("192.0.2.1", end).is_ok());
    }

    #[test]
    fn failures_spread_over_windows_do_not_ban() {
        let l = limiter();
        let t0 = Instant::now();
        for i in 0..10 {
            l.record_failure("192.0.2.1", t0 + WINDOW * i / 2);
            assert!(l.check("192.0.2.1", t0 + WINDOW * i / 2).is_ok(), "{i}");
        }
    }

    #[test]
    fn ban_expires_and_counting_restarts() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..3 {
            l.record_failure("a", t0);
        }
        assert!(l.check("a", t0 + BAN - Duration::from_millis(1)).is_err());
        // Failing while banned does not extend the ban.
        l.record_failure("a", t0 + Duration::from_secs(10));
        let after = t0 + BAN;
        assert!(l.check("a", after).is_ok());
        // A fresh count starts: one failure is not enough for a new ban.
        l.record_failure("a", after);
        assert!(l.check("a", after).is_ok());
    }

    #[test]
    fn other_addresses_are_unaffected() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..5 {
            l.record_failure("192.0.2.1", t0);
        }
        assert!(l.check("192.0.2.1", t0).is_err());
        assert!(l.check("192.0.2.2", t0).is_ok());
        assert!(l.check("2001:db8::1", t0).is_ok());
    }

    #[test]
    fn built_from_config() {
        let l = FailureLimiter::from_config(&AuthConfig::default());
        let t0 = Instant::now();
        for _ in 0..AuthConfig::default().max_failures {
            assert!(l.check("a", t0).is_ok());
            l.record_failure("a", t0);
        }
        assert!(l.check("a", t0).is_err());
    }

    #[test]
    fn zero_max_failures_disables() {
        let l = FailureLimiter::new(0, WINDOW, BAN);
        let t0 = Instant::now();
        for _ in 0..100 {
            l.record_failure("a", t0);
        }
        assert!(l.check("a", t0).is_ok());
        assert!(l.is_empty());
    }

    #[test]
    fn memory_is_capped_and_bans_survive_floods() {
        let l = limiter().with_max_entries(64);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.record_failure("banned", t0);
        }
        for i in 0..10_000u32 {
            l.record_failure(
                &format!("10.0.{}.{}", i / 256, i % 256),
                t0 + Duration::from_millis(u64::from(i)),
            );
            assert!(l.len() <= 64);
        }
        assert!(l.check("banned", t0 + Duration::from_secs(10)).is_err());
        // Once their windows and bans are over, old entries are swept as soon
        // as room is needed, before any live entry is evicted.
        let later = t0 + WINDOW * 3;
        for i in 0..64 {
            l.record_failure(&format!("fresh{i}"), later);
        }
        assert_eq!(l.len(), 64);
        assert!(l.lock().keys().all(|k| k.starts_with("fresh")));
    }

    #[test]
    fn long_addresses_are_cut() {
        let l = FailureLimiter::new(1, WINDOW, BAN);
        let t0 = Instant::now();
        let long = format!("{}é{}", "x".repeat(63), "y".repeat(1000));
        l.record_failure(&long, t0);
        assert!(l.check(&long, t0).is_err());
        assert_eq!(key(&long).len(), 63);
    }

    #[test]
    fn shareable_across_threads() {
        let l = Arc::new(FailureLimiter::new(1000, WINDOW, BAN));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        l.record_failure("a", t0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(l.check("a", t0).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Against a simple model: never more than the cap, and an address
        /// with fewer than max_failures failures in its window is never banned.
        #[test]
        fn bounded_and_never_bans_early(ops in proptest::collection::vec((0u8..40, 0u64..5_000), 1..400)) {
            let window = Duration::from_secs(10);
            let ban = Duration::from_secs(5);
            let l = FailureLimiter::new(3, window, ban).with_max_entries(16);
            let mut recorded: HashMap<String, Vec<Instant>> = HashMap::new();
            let mut now = Instant::now();
            for (addr, step_ms) in ops {
                now += Duration::from_millis(step_ms);
                let addr = addr.to_string();
                let times = recorded.entry(addr.clone()).or_default();
                if l.check(&addr, now).is_ok() {
                    l.record_failure(&addr, now);
                    times.push(now);
                } else {
                    // A ban needs 3 failures within one window, and lasts
                    // `ban` after the last of them.
                    let recent = times
                        .iter()
                        .filter(|t| now.saturating_duration_since(**t) < window + ban)
                        .count();
                    prop_assert!(recent >= 3, "{addr} banned after {recent} recent failures");
                }
                prop_assert!(l.len() <= 16);
            }
            prop_assert!(l.check("never-seen", now).is_ok());
        }
    }
}
