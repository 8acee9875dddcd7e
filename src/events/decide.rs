//! The delivery decisions, without I/O: which POSTs are due, how long a
//! failed one waits, when an event is too old to keep, what an answer means.
//!
//! Invariants:
//! - Per endpoint and lane (a channel), events go out in the order they were
//!   queued: only the oldest event of a lane still pending for an endpoint
//!   is sent to it, and nothing else of that lane while it is in flight.
//! - An event leaves the queue only when every endpoint it is for answered
//!   2xx, or when it is older than `max_age` (dropped, never silently: the
//!   caller counts and logs what [`Queue::expire`] returns). A failing
//!   endpoint's events wait at the maximum backoff meanwhile.
//! - Lanes and endpoints are independent: a receiver that is down, or a
//!   channel whose head keeps failing, holds back no other.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Unix milliseconds.
pub(crate) type Ms = u64;

/// A queued event as the decisions see it.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub seq: u64,
    pub kind: &'static str,
    pub lane: String,
    pub created_ms: Ms,
    /// The body sent (the same bytes on every attempt).
    pub body: Arc<str>,
    pub id: Arc<str>,
    /// Endpoints still to answer 2xx, with their attempt state.
    pub targets: BTreeMap<String, Attempts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attempts {
    pub failures: u32,
    pub next_at: Ms,
    pub in_flight: bool,
}

/// One POST to make now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Send {
    pub seq: u64,
    pub target: String,
}

/// What an attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    /// Try again after the backoff; `reason` labels the log line.
    Retry {
        reason: &'static str,
    },
}

/// An answer's status, or `None` when none came (connect error, timeout,
/// connection closed): 2xx delivers; anything else is retried, as Standard
/// Webhooks receivers expect. A 4xx is retried too: a receiver rejecting the
/// signature is usually a secret being rotated, and `max_age` bounds it.
pub(crate) fn classify(status: Option<u16>) -> Outcome {
    match status {
        Some(s) if (200..300).contains(&s) => Outcome::Delivered,
        Some(s) if (400..500).contains(&s) => Outcome::Retry { reason: "refused" },
        Some(_) => Outcome::Retry {
            reason: "receiver_error",
        },
        None => Outcome::Retry {
            reason: "unreachable",
        },
    }
}

/// The wait after the `failures`-th failure in a row: doubling from 1 s,
/// capped at `cap`, scaled by `jitter` in [0, 1] (full jitter, so receivers
/// coming back are not hit by every sender at once), at least 250 ms.
pub(crate) fn backoff(failures: u32, cap: Ms, jitter: f64) -> Ms {
    let ceiling = 1000u64
        .saturating_mul(1u64 << failures.saturating_sub(1).min(30))
        .min(cap);
    ((ceiling as f64 * jitter.clamp(0.0, 1.0)) as Ms).max(250)
}

/// The queue's state: every pending event, by sequence number.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    entries: BTreeMap<u64, Pending>,
    max_age: Ms,
    max_backoff: Ms,
}

impl Queue {
    pub(crate) fn new(max_age: Ms, max_backoff: Ms) -> Queue {
        Queue {
            entries: BTreeMap::new(),
            max_age,
            max_backoff,
        }
    }

    pub(crate) fn push(&mut self, p: Pending) {
        self.entries.insert(p.seq, p);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&Pending> {
        self.entries.get(&seq)
    }

    /// When the oldest event happened.
    pub(crate) fn oldest(&self) -> Option<Ms> {
        self.entries.values().map(|p| p.created_ms).min()
    }

    /// The POSTs due at `now`, at most `limit`, marked in flight: for each
    /// endpoint and lane, its oldest pending event, unless that is in
    /// flight or waiting out its backoff.
    pub(crate) fn due(&mut self, now: Ms, limit: usize) -> Vec<Send> {
        let mut blocked: HashSet<(&str, &str)> = HashSet::new();
        let mut out = Vec::new();
        for p in self.entries.values() {
            for (target, a) in &p.targets {
                if out.len() >= limit {
                    break;
                }
                // The lane's head for this endpoint: everything after it in
                // the lane waits, whatever its state.
                if !blocked.insert((target.as_str(), p.lane.as_str())) {
                    continue;
                }
                if !a.in_flight && a.next_at <= now {
                    out.push(Send {
                        seq: p.seq,
                        target: target.clone(),
                    });
                }
            }
        }
        for s in &out {
            if let Some(a) = self
                .entries
                .get_mut(&s.seq)
                .and_then(|p| p.targets.get_mut(&s.target))
            {
                a.in_flight = true;
            }
        }
        out
    }

    /// Records an attempt's outcome; `jitter` in [0, 1] scales the backoff.
    /// Returns the event when it is now delivered to every endpoint (the
    /// caller removes its file).
    pub(crate) fn outcome(
        &mut self,
        send: &Send,
        outcome: Outcome,
        now: Ms,
        jitter: f64,
    ) -> Option<Pending> {
        let p = self.entries.get_mut(&send.seq)?;
        match outcome {
            Outcome::Delivered => {
                p.targets.remove(&send.target);
            }
            Outcome::Retry { .. } => {
                let cap = self.max_backoff;
                if let Some(a) = p.targets.get_mut(&send.target) {
                    a.in_flight = false;
                    a.failures = a.failures.saturating_add(1);
                    a.next_at = now + backoff(a.failures, cap, jitter);
                }
            }
        }
        if p.targets.is_empty() {
            self.entries.remove(&send.seq)
        } else {
            None
        }
    }

    /// Removes and returns the events older than `max_age` at `now` that
    /// have no POST in flight (one in flight is judged by its answer).
    pub(crate) fn expire(&mut self, now: Ms) -> Vec<Pending> {
        let old: Vec<u64> = self
            .entries
            .values()
            .filter(|p| {
                now.saturating_sub(p.created_ms) > self.max_age
                    && !p.targets.values().any(|a| a.in_flight)
            })
            .map(|p| p.seq)
            .collect();
        old.iter().filter_map(|s| self.entries.remove(s)).collect()
    }

    /// The next instant something becomes due or expires, if anything is
    /// waiting (not in flight).
    pub(crate) fn next_wake(&self) -> Option<Ms> {
        self.entries
            .values()
            .flat_map(|p| {
                let expiry = p.created_ms.saturating_add(self.max_age + 1);
                p.targets
                    .values()
                    .filter(|a| !a.in_flight)
                    .map(move |a| a.next_at.min(expiry))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, lane: &str, targets: &[&str], created_ms: Ms) -> Pending {
        Pending {
            seq,
            kind: "stream.started",
            lane: lane.into(),
            created_ms,
            body: Arc::from("{}"),
            id: Arc::from(format!("evt_{seq}")),
            targets: targets
                .iter()
                .map(|t| (t.to_string(), Attempts::default()))
                .collect(),
        }
    }

    fn sends(v: &[(u64, &str)]) -> Vec<Send> {
        v.iter()
            .map(|(seq, t)| Send {
                seq: *seq,
                target: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn a_lane_sends_one_event_at_a_time_in_order_and_lanes_are_independent() {
        let mut q = Queue::new(60_000, 10_000);
        q.push(ev(1, "b/cam", &["app"], 0));
        q.push(ev(2, "b/cam", &["app"], 0));
        q.push(ev(3, "b/other", &["app"], 0));
        assert_eq!(q.due(0, 10), sends(&[(1, "app"), (3, "app")]));
        assert_eq!(q.due(0, 10), vec![], "both heads are in flight");
        // The head fails: the lane waits its backoff, its second event with it.
        assert!(
            q.outcome(&sends(&[(1, "app")])[0], classify(Some(503)), 0, 1.0)
                .is_none()
        );
        assert_eq!(q.due(500, 10), vec![]);
        assert_eq!(q.due(1000, 10), sends(&[(1, "app")]));
        let done = q.outcome(&sends(&[(1, "app")])[0], classify(Some(204)), 1000, 1.0);
        assert_eq!(done.map(|p| p.seq), Some(1));
        assert_eq!(q.due(1000, 10), sends(&[(2, "app")]));
    }

    #[test]
    fn an_event_stays_until_every_endpoint_took_it_and_endpoints_do_not_wait_for_each_other() {
        let mut q = Queue::new(60_000, 10_000);
        q.push(ev(1, "b/cam", &["a", "b"], 0));
        q.push(ev(2, "b/cam", &["a", "b"], 0));
        assert_eq!(q.due(0, 10), sends(&[(1, "a"), (1, "b")]));
        assert!(
            q.outcome(&sends(&[(1, "a")])[0], Outcome::Delivered, 0, 0.0)
                .is_none()
        );
        q.outcome(&sends(&[(1, "b")])[0], classify(None), 0, 1.0);
        // "a" goes on with the lane's next event while "b" retries the first.
        assert_eq!(q.due(0, 10), sends(&[(2, "a")]));
        assert_eq!(q.len(), 2);
        assert_eq!(q.due(1000, 10), sends(&[(1, "b")]));
        assert!(
            q.outcome(&sends(&[(1, "b")])[0], Outcome::Delivered, 1000, 0.0)
                .is_some()
        );
    }

    #[test]
    fn due_respects_the_limit() {
        let mut q = Queue::new(60_000, 10_000);
        for i in 0..5 {
            q.push(ev(i, &format!("b/c{i}"), &["app"], 0));
        }
        assert_eq!(q.due(0, 2).len(), 2);
        assert_eq!(q.due(0, 10).len(), 3);
    }

    #[test]
    fn only_events_past_max_age_and_not_in_flight_are_dropped() {
        let mut q = Queue::new(60_000, 10_000);
        q.push(ev(1, "b/cam", &["app"], 0));
        q.push(ev(2, "b/cam", &["app"], 30_000));
        assert!(q.expire(60_000).is_empty(), "not older than max_age yet");
        assert_eq!(q.due(60_000, 10).len(), 1);
        assert!(q.expire(60_001).is_empty(), "its POST is in flight");
        q.outcome(&sends(&[(1, "app")])[0], classify(Some(500)), 60_001, 0.5);
        let dropped = q.expire(60_002);
        assert_eq!(dropped.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1]);
        // The lane moves on to the next event.
        assert_eq!(q.due(60_002, 10), sends(&[(2, "app")]));
        assert_eq!(q.oldest(), Some(30_000));
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        assert_eq!(backoff(1, 300_000, 1.0), 1000);
        assert_eq!(backoff(2, 300_000, 1.0), 2000);
        assert_eq!(backoff(5, 300_000, 1.0), 16_000);
        assert_eq!(backoff(40, 300_000, 1.0), 300_000);
        assert_eq!(backoff(40, 300_000, 0.5), 150_000);
        assert_eq!(backoff(3, 300_000, 0.0), 250, "never a tight loop");
    }

    #[test]
    fn only_2xx_delivers() {
        assert_eq!(classify(Some(200)), Outcome::Delivered);
        assert_eq!(classify(Some(204)), Outcome::Delivered);
        for s in [301, 400, 401, 410, 429, 500, 503] {
            assert!(matches!(classify(Some(s)), Outcome::Retry { .. }), "{s}");
        }
        assert!(matches!(classify(None), Outcome::Retry { .. }));
    }

    #[test]
    fn the_next_wake_is_the_earliest_retry_or_expiry() {
        let mut q = Queue::new(60_000, 10_000);
        assert_eq!(q.next_wake(), None);
        q.push(ev(1, "b/cam", &["app"], 0));
        assert_eq!(q.next_wake(), Some(0));
        q.due(0, 10);
        assert_eq!(q.next_wake(), None, "in flight: the answer wakes");
        q.outcome(&sends(&[(1, "app")])[0], classify(None), 100, 1.0);
        assert_eq!(q.next_wake(), Some(1100));
    }
}
