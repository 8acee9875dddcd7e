//! The node's etcd lease over its whole life, without I/O: what the keeper
//! asks etcd next (a grant or a renewal), and what each answer means for the
//! node. The keeper in [`super::tasks`] sends the request, classifies what
//! came back with [`classify`] and feeds it to [`Lease::answer`], which says
//! how long to wait, whether the node's channels were lost with the lease,
//! whether they go onto a new one, and what to log.
//!
//! Invariants:
//! - no answer leaves the node without a next request: a lease that etcd
//!   no longer knows (revoked, expired: etcd-client 0.21 reports a
//!   keep-alive of such a lease as `Err("lease not found")`) is dropped and
//!   a new one is asked for at once;
//! - failures are retried with a backoff that never exceeds a third of the
//!   TTL, so a renewal is attempted at least three times per TTL and a node
//!   whose etcd came back gets a lease within a third of the TTL;
//! - the lease counts as alive only for one TTL after the last renewal that
//!   etcd acknowledged was *sent* ([`super::decide::lease_alive`]).

use std::time::{Duration, Instant};

use super::decide;
use super::etcd::EtcdError;

/// What etcd answered to one request of the keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A new lease, with the node's key registered on it.
    Granted(i64),
    /// The keep-alive was acknowledged with a TTL left.
    Renewed,
    /// etcd does not know the lease (revoked, expired): it is gone, and so
    /// are the keys that were on it.
    Gone,
    /// No answer within `request_timeout_ms`.
    Timeout,
    /// Anything else (connection refused, no leader, stream closed...):
    /// etcd may still hold the lease.
    Transient,
}

impl Answer {
    /// The `/metrics` label of a failed request.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Answer::Granted(_) => "granted",
            Answer::Renewed => "renewed",
            Answer::Gone => "gone",
            Answer::Timeout => "timeout",
            Answer::Transient => "transient",
        }
    }
}

/// The answer to a keep-alive: `Ok(ttl)` is the TTL etcd reported.
pub(crate) fn classify_renewal(r: &Result<i64, EtcdError>) -> Answer {
    match r {
        Ok(ttl) if *ttl > 0 => Answer::Renewed,
        // etcd answers a keep-alive of a lease it does not know with TTL 0.
        Ok(_) => Answer::Gone,
        Err(e) => classify(e),
    }
}

/// What a failed etcd request says about the lease it used.
pub(crate) fn classify(e: &EtcdError) -> Answer {
    match e {
        EtcdError::Timeout(_) => Answer::Timeout,
        // etcd-client opens a keep-alive stream by sending one request and
        // turns a TTL of 0 into this error.
        EtcdError::Etcd(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
            Answer::Gone
        }
        // A put, a transaction or a time-to-live on a lease etcd does not
        // know: gRPC NOT_FOUND, "etcdserver: requested lease not found".
        EtcdError::Etcd(etcd_client::Error::GRpcStatus(s))
            if s.message().contains("requested lease not found") =>
        {
            Answer::Gone
        }
        _ => Answer::Transient,
    }
}

/// The next request the keeper sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// No lease: ask for one (and register the node on it).
    Grant,
    /// Renew this lease.
    Renew(i64),
}

/// What the node logs after an answer (the keeper words it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A new lease: the node takes pushes again.
    Granted,
    /// A renewal after failures: etcd answers again.
    Back,
    /// etcd no longer knows the lease: its keys are gone.
    Lost,
    /// A failure; `failures` in a row so far (logged at the first and then
    /// every [`LOG_EVERY`]th).
    Failed { failures: u32 },
}

/// Failures in a row between two log lines.
pub(crate) const LOG_EVERY: u32 = 20;

/// What the keeper does after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// Before the next request.
    pub wait: Duration,
    /// The lease is gone: every channel held on it is lost (the keeper
    /// retakes those nobody else took once it has a new lease).
    pub lose_channels: bool,
    /// A new lease: put the node's channels onto it.
    pub retake: Option<i64>,
    pub event: Option<Event>,
}

/// First wait after a failure; doubled per failure up to a third of the TTL.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The lease as the keeper knows it.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    ttl: Duration,
    id: Option<i64>,
    /// When the last renewal (or grant) that etcd acknowledged was sent.
    renewed: Option<Instant>,
    /// Failed requests in a row.
    failures: u32,
}

impl Lease {
    pub(crate) fn new(ttl: Duration) -> Lease {
        Lease {
            ttl,
            id: None,
            renewed: None,
            failures: 0,
        }
    }

    /// How often a live lease is renewed: a third of the TTL (at least
    /// 500 ms), so two renewals in a row can fail before it expires.
    pub(crate) fn every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(500))
    }

    pub(crate) fn next(&self) -> Next {
        match self.id {
            Some(id) => Next::Renew(id),
            None => Next::Grant,
        }
    }

    /// The lease id, whether or not it can still be alive.
    pub(crate) fn id(&self) -> Option<i64> {
        self.id
    }

    /// The lease id if it can be alive at `now`.
    pub(crate) fn alive(&self, now: Instant) -> Option<i64> {
        self.id
            .filter(|_| decide::lease_alive(self.renewed, self.ttl, now))
    }

    /// Until when a fenced write may land ([`decide::write_deadline`]).
    pub(crate) fn write_deadline(&self) -> Option<Instant> {
        self.id
            .and_then(|_| decide::write_deadline(self.renewed, self.ttl))
    }

    /// Forgets the lease (revoked at shutdown).
    pub(crate) fn take(&mut self) -> Option<i64> {
        self.renewed = None;
        self.id.take()
    }

    /// Failed requests in a row.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Feeds the answer to the request sent at `sent`.
    pub(crate) fn answer(&mut self, sent: Instant, a: Answer) -> Step {
        let steady = Step {
            wait: self.every(),
            lose_channels: false,
            retake: None,
            event: None,
        };
        match (self.id, a) {
            (_, Answer::Granted(id)) => {
                // A grant while a lease is held does not happen (the keeper
                // asks for one only without); the older lease expires alone.
                self.id = Some(id);
                self.renewed = Some(sent);
                self.failures = 0;
                Step {
                    retake: Some(id),
                    event: Some(Event::Granted),
                    ..steady
                }
            }
            (Some(_), Answer::Renewed) => {
                self.renewed = Some(sent);
                let back = std::mem::take(&mut self.failures) > 0;
                Step {
                    event: back.then_some(Event::Back),
                    ..steady
                }
            }
            (Some(_), Answer::Gone) => {
                self.id = None;
                self.renewed = None;
                self.failures = 0;
                Step {
                    wait: Duration::ZERO,
                    lose_channels: true,
                    event: Some(Event::Lost),
                    ..steady
                }
            }
            // A renewal or grant that failed; or an answer about a lease
            // this node no longer has (cannot come from the keeper): wait
            // and ask again.
            (_, Answer::Renewed | Answer::Gone | Answer::Timeout | Answer::Transient) => {
                self.failures = self.failures.saturating_add(1);
                let log = self.failures == 1 || self.failures.is_multiple_of(LOG_EVERY);
                Step {
                    wait: self.retry_wait(),
                    event: log.then_some(Event::Failed {
                        failures: self.failures,
                    }),
                    ..steady
                }
            }
        }
    }

    /// 250 ms doubled per failure in a row, at most a third of the TTL.
    fn retry_wait(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        (FIRST_RETRY * 2u32.pow(doublings)).min(self.every())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(9);

    fn granted(t0: Instant) -> Lease {
        let mut l = Lease::new(TTL);
        assert_eq!(l.next(), Next::Grant);
        let s = l.answer(t0, Answer::Granted(7));
        assert_eq!(s.retake, Some(7));
        assert_eq!(s.event, Some(Event::Granted));
        assert_eq!(s.wait, Duration::from_secs(3));
        assert_eq!(l.next(), Next::Renew(7));
        l
    }

    #[test]
    fn etcd_answers_are_classified() {
        use etcd_client::Error;
        let gone = EtcdError::Etcd(Error::LeaseKeepAliveError("lease not found".into()));
        assert_eq!(classify(&gone), Answer::Gone);
        assert_eq!(classify_renewal(&Err(gone)), Answer::Gone);
        assert_eq!(classify_renewal(&Ok(0)), Answer::Gone);
        assert_eq!(classify_renewal(&Ok(-1)), Answer::Gone);
        assert_eq!(classify_renewal(&Ok(8)), Answer::Renewed);
        let status = etcd_client::Error::GRpcStatus(tonic_status_not_found());
        assert_eq!(classify(&EtcdError::Etcd(status)), Answer::Gone);
        assert_eq!(
            classify(&EtcdError::Timeout(Duration::from_secs(1))),
            Answer::Timeout
        );
        let closed = EtcdError::Etcd(Error::WatchError("failed to create lease keeper".into()));
        assert_eq!(classify(&closed), Answer::Transient);
        let other = EtcdError::Etcd(Error::LeaseKeepAliveError("channel closed".into()));
        assert_eq!(classify(&other), Answer::Transient);
        let io = EtcdError::Etcd(Error::IoError(std::io::Error::other("refused")));
        assert_eq!(classify(&io), Answer::Transient);
    }

    /// What etcd sends for a put on a revoked lease (gRPC NOT_FOUND), built
    /// through etcd-client's own conversion of a status.
    fn tonic_status_not_found() -> tonic::Status {
        tonic::Status::not_found("etcdserver: requested lease not found")
    }

    #[test]
    fn renewals_keep_the_lease_alive_for_a_ttl_from_when_they_were_sent() {
        let t0 = Instant::now();
        let mut l = granted(t0);
        let t1 = t0 + Duration::from_secs(3);
        let s = l.answer(t1, Answer::Renewed);
        assert_eq!(s.event, None);
        assert_eq!(s.wait, Duration::from_secs(3));
        assert_eq!(l.alive(t1 + Duration::from_secs(8)), Some(7));
        assert_eq!(l.alive(t1 + TTL), None);
        // Still the same lease to renew: etcd may answer again.
        assert_eq!(l.next(), Next::Renew(7));
    }

    /// The outage of issue 26: etcd stops answering, then comes back having
    /// revoked the lease. The node must get a new one at once.
    #[test]
    fn a_revoked_lease_is_replaced_at_once() {
        let t0 = Instant::now();
        let mut l = granted(t0);
        let mut t = t0;
        let mut waits = Vec::new();
        for _ in 0..12 {
            t += Duration::from_secs(1);
            let s = l.answer(t, Answer::Timeout);
            assert!(!s.lose_channels);
            waits.push(s.wait.as_millis());
        }
        assert_eq!(
            waits,
            [
                250, 500, 1000, 2000, 3000, 3000, 3000, 3000, 3000, 3000, 3000, 3000
            ]
        );
        assert_eq!(l.alive(t), None, "past its TTL without a renewal");
        assert_eq!(l.next(), Next::Renew(7));
        let s = l.answer(t, Answer::Gone);
        assert!(s.lose_channels);
        assert_eq!(s.event, Some(Event::Lost));
        assert_eq!(s.wait, Duration::ZERO);
        assert_eq!(l.next(), Next::Grant);
        assert_eq!(l.alive(t), None);
        let s = l.answer(t, Answer::Granted(8));
        assert_eq!(s.retake, Some(8));
        assert_eq!(l.alive(t), Some(8));
        assert_eq!(l.next(), Next::Renew(8));
    }

    #[test]
    fn grants_that_fail_are_retried_with_backoff_and_logged_now_and_then() {
        let t0 = Instant::now();
        let mut l = Lease::new(TTL);
        let mut logged = Vec::new();
        for i in 1..=40 {
            let a = if i % 2 == 0 {
                Answer::Timeout
            } else {
                Answer::Transient
            };
            let s = l.answer(t0, a);
            assert!(s.wait <= l.every() && s.wait >= FIRST_RETRY);
            assert_eq!(s.retake, None);
            if let Some(Event::Failed { failures }) = s.event {
                logged.push(failures);
            }
            assert_eq!(l.next(), Next::Grant);
        }
        assert_eq!(logged, [1, 20, 40]);
        assert_eq!(l.failures(), 40);
        let s = l.answer(t0, Answer::Granted(3));
        assert_eq!(s.event, Some(Event::Granted));
        assert_eq!(l.failures(), 0);
    }

    #[test]
    fn a_renewal_after_failures_says_etcd_is_back() {
        let t0 = Instant::now();
        let mut l = granted(t0);
        l.answer(t0, Answer::Transient);
        let s = l.answer(t0 + Duration::from_secs(1), Answer::Renewed);
        assert_eq!(s.event, Some(Event::Back));
        assert_eq!(s.wait, l.every());
        // Renewed while past the TTL (etcd extends leases on a new leader):
        // alive again, the same keys.
        let late = t0 + Duration::from_secs(30);
        assert_eq!(l.alive(late), None);
        l.answer(late, Answer::Renewed);
        assert_eq!(l.alive(late), Some(7));
    }

    /// Every answer in every state leads to a next request within a third
    /// of the TTL: nothing leaves the node stuck.
    #[test]
    fn no_answer_leaves_the_node_without_a_next_request() {
        let answers = [
            Answer::Granted(9),
            Answer::Renewed,
            Answer::Gone,
            Answer::Timeout,
            Answer::Transient,
        ];
        let t0 = Instant::now();
        for start in [Lease::new(TTL), granted(t0)] {
            for a in answers {
                for b in answers {
                    let mut l = start.clone();
                    for x in [a, b] {
                        let s = l.answer(t0, x);
                        assert!(s.wait <= l.every(), "{a:?} then {b:?}");
                        match l.next() {
                            Next::Grant => assert_eq!(l.id(), None),
                            Next::Renew(id) => assert_eq!(l.id(), Some(id)),
                        }
                    }
                }
            }
        }
        let mut l = Lease::new(TTL);
        l.take();
        assert_eq!(l.next(), Next::Grant);
        let mut l = granted(t0);
        assert_eq!(l.take(), Some(7));
        assert_eq!(l.alive(t0), None);
    }
}
