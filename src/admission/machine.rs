//! The admission state machine: one per `on_publish` callback. See the
//! module doc of [`crate::admission`] for the order and its invariants.

use std::collections::VecDeque;

use tracing::warn;

use super::{Answer, Decision, Effect, Refusal, Step, replay_refusal};
use crate::auth::callback::Callback;
use crate::auth::push::{PushGrant, verify_publish};
use crate::auth::reject::Reject;
use crate::channels::PushPlan;
use crate::cluster::ClaimError;
use crate::config::Config;
use crate::session::{SessionError, SessionMeta};
use crate::snapshot::SnapshotPlan;

/// The question the machine waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Limiter,
    Reserved,
    Channel,
    Spool,
    Id,
    Claimed,
    Begun,
    StreamDir,
    Committed,
}

/// One push being admitted.
pub(crate) struct Admission<'a> {
    cb: &'a Callback,
    cfg: &'a Config,
    /// Unix seconds at the callback, for expiry and the replay set.
    now: u64,
    /// Whether this node is in a cluster (the channel is claimed in etcd).
    clustered: bool,
    /// Effects handed out by `poll`, in order.
    queue: VecDeque<Effect>,
    waiting: Option<Waiting>,
    decision: Option<Decision>,
    grant: Option<PushGrant>,
    /// The one-time grant is held (and must be released or spent).
    reserved: bool,
    plan: Option<PushPlan>,
    snapshot: Option<SnapshotPlan>,
    /// The channel's `Snapshot/NotifyTopic`, carried by its events.
    notify_topic: Option<String>,
    /// The record's `LivebucketRenditions` (`None`: no record, or none
    /// given), turned into rungs once the playlist is known.
    renditions: Option<crate::channels::record::Renditions>,
    meta: Option<SessionMeta>,
    /// The channel is claimed in the cluster for `meta`.
    claimed: bool,
}

impl<'a> Admission<'a> {
    /// Starts admitting the push `cb` under `cfg` at `now` (Unix seconds);
    /// `clustered`: this node is in a cluster.
    pub(crate) fn new(cb: &'a Callback, cfg: &'a Config, now: u64, clustered: bool) -> Self {
        let mut a = Admission {
            cb,
            cfg,
            now,
            clustered,
            queue: VecDeque::new(),
            waiting: None,
            decision: None,
            grant: None,
            reserved: false,
            plan: None,
            snapshot: None,
            notify_topic: None,
            renditions: None,
            meta: None,
            claimed: false,
        };
        a.ask(
            Effect::CheckLimiter {
                addr: cb.addr.clone(),
            },
            Waiting::Limiter,
        );
        a
    }

    /// The next effect to perform, or the decision once every effect is out.
    /// Polling after a question without answering it is a driver bug: the
    /// push is then refused as unavailable.
    pub(crate) fn poll(&mut self) -> Step {
        if let Some(effect) = self.queue.pop_front() {
            return Step::Do(effect);
        }
        match (&self.decision, self.waiting) {
            (Some(d), _) => Step::Done(d.clone()),
            (None, Some(w)) => {
                debug_assert!(false, "admission polled while waiting for {w:?}");
                self.waiting = None;
                self.refuse(Refusal::Unavailable(format!(
                    "admission's driver did not answer {w:?}"
                )));
                self.poll()
            }
            (None, None) => {
                debug_assert!(false, "admission has neither a question nor a decision");
                self.refuse(Refusal::Unavailable("admission stalled".into()));
                self.poll()
            }
        }
    }

    /// Feeds the outcome of the question last handed out.
    pub(crate) fn answer(&mut self, answer: Answer) {
        if self.decision.is_some() {
            debug_assert!(false, "admission answered {answer:?} after its decision");
            return;
        }
        let expected = self.waiting.take();
        match (expected, answer) {
            (Some(Waiting::Limiter), Answer::Limiter(r)) => match r {
                Ok(()) => self.verify(),
                Err(reject) => self.refuse(reject.into()),
            },
            (Some(Waiting::Reserved), Answer::Reserved(r)) => match r {
                Ok(()) => {
                    self.reserved = true;
                    self.lookup_channel();
                }
                Err(e) => self.refuse(replay_refusal(e)),
            },
            (Some(Waiting::Channel), Answer::Channel(record)) => self.plan(record),
            (Some(Waiting::Spool), Answer::SpoolFull(full)) => {
                if full {
                    self.refuse(Refusal::Unavailable(
                        "spool past its high-water mark; refusing new publishes to protect live ones"
                            .into(),
                    ));
                } else {
                    self.ask(Effect::TakeId, Waiting::Id);
                }
            }
            (Some(Waiting::Id), Answer::Id { id, now_ms }) => self.session(id, now_ms),
            (Some(Waiting::Claimed), Answer::Claimed(r)) => match r {
                Ok(resume) => {
                    self.claimed = true;
                    let Some(meta) = self.meta.as_mut() else {
                        return self.out_of_order("a claim without a session");
                    };
                    meta.resume = resume;
                    let meta = meta.clone();
                    self.ask(
                        Effect::Begin {
                            meta: Box::new(meta),
                        },
                        Waiting::Begun,
                    );
                }
                Err(e) => {
                    let Some(meta) = self.meta.take() else {
                        return self.out_of_order("a claim without a session");
                    };
                    self.queue.push_back(Effect::GiveBack { id: meta.id });
                    self.refuse(match e {
                        ClaimError::Live(_) => {
                            Refusal::ChannelLive(format!("{}/{}", meta.bucket, meta.channel))
                        }
                        ClaimError::Unavailable(why) => Refusal::Unavailable(why),
                    });
                }
            },
            (Some(Waiting::Begun), Answer::Begun(r)) => match r {
                Ok(meta) => {
                    let id = meta.id.clone();
                    self.meta = Some(meta);
                    self.ask(Effect::MakeStreamDir { id }, Waiting::StreamDir);
                }
                // `Sessions::begin` gave the id back itself.
                Err(SessionError::ChannelLive { bucket, channel }) => {
                    self.refuse(Refusal::ChannelLive(format!("{bucket}/{channel}")))
                }
                Err(other) => self.refuse(Refusal::Unavailable(other.to_string())),
            },
            (Some(Waiting::StreamDir), Answer::StreamDir(r)) => match r {
                Ok(()) if self.reserved => {
                    // The push is admitted: spend its URL now, or undo the
                    // session (a URL that cannot be recorded as used is not
                    // approved).
                    self.reserved = false;
                    self.ask(Effect::Commit, Waiting::Committed);
                }
                Ok(()) => self.approve(),
                Err(e) => {
                    self.finish_session(false);
                    // The session id stays out of the message (it names the
                    // internal stream).
                    self.refuse(Refusal::Unavailable(format!(
                        "cannot make the session's directory in nginx.hls_dir ({}): {e}",
                        self.cfg.nginx.hls_dir.display()
                    )));
                }
            },
            (Some(Waiting::Committed), Answer::Committed(r)) => match r {
                Ok(()) => self.approve(),
                Err(e) => {
                    self.finish_session(true);
                    self.refuse(replay_refusal(e));
                }
            },
            (expected, answer) => {
                debug_assert!(
                    false,
                    "admission answered {answer:?} while waiting for {expected:?}"
                );
                self.refuse(Refusal::Unavailable(format!(
                    "admission's driver answered out of order (waiting for {expected:?})"
                )));
            }
        }
    }

    fn ask(&mut self, effect: Effect, waiting: Waiting) {
        self.queue.push_back(effect);
        self.waiting = Some(waiting);
    }

    /// The public application, then the URL's signature and policy.
    fn verify(&mut self) {
        let (cb, cfg) = (self.cb, self.cfg);
        if !cfg.nginx.public_apps.iter().any(|a| a == &cb.app) {
            return self.refuse(Refusal::WrongApp(cb.app.clone()));
        }
        let grant = match verify_publish(cb, &cfg.keys, &cfg.auth, self.now) {
            Ok(g) => g,
            Err(reject) => return self.refuse(reject.into()),
        };
        // auth.one_time_push: the grant is held from here, so a concurrent
        // use of the same URL is refused, and spent only once the push is
        // admitted.
        if cfg.auth.one_time_push {
            let reserve = Effect::Reserve {
                key_id: grant.key_id.clone(),
                tag: grant.tag,
                // Verified, so the signature parameter is present.
                signature: cb.client_param("Signature").unwrap_or_default().to_owned(),
                forget_after: grant.expires.saturating_add(cfg.auth.clock_skew_secs),
                now: self.now,
            };
            self.grant = Some(grant);
            self.ask(reserve, Waiting::Reserved);
        } else {
            self.grant = Some(grant);
            self.lookup_channel();
        }
    }

    fn lookup_channel(&mut self) {
        let Some(g) = self.grant.as_ref() else {
            return self.out_of_order("a lookup before verification");
        };
        let effect = Effect::LookupChannel {
            key_id: g.key_id.clone(),
            bucket: g.bucket.clone(),
            channel: g.channel.clone(),
        };
        self.ask(effect, Waiting::Channel);
    }

    /// The channel's plan (and snapshots) from its record.
    fn plan(&mut self, record: Option<crate::channels::record::ChannelRecord>) {
        let cfg = self.cfg;
        let plan = match crate::channels::plan_push(record.as_ref(), cfg) {
            Ok(p) => p,
            Err(refused) => return self.refuse(Reject::from(refused).into()),
        };
        let Some(grant) = self.grant.as_ref() else {
            return self.out_of_order("a plan before verification");
        };
        self.snapshot = record
            .as_ref()
            .and_then(|r| r.config.snapshot.as_ref())
            .zip(cfg.key(&grant.key_id))
            .and_then(|(s, key)| {
                SnapshotPlan::new(s, key)
                    .inspect_err(
                        |e| warn!(error = %e, channel = %grant.channel, "no snapshots for this push"),
                    )
                    .ok()
            });
        self.notify_topic = record
            .as_ref()
            .and_then(|r| r.notify_topic())
            .map(str::to_owned);
        self.renditions = record.as_ref().and_then(|r| r.config.renditions.clone());
        self.plan = Some(plan);
        self.ask(Effect::CheckSpool, Waiting::Spool);
    }

    /// The session's record, then its claim (in a cluster) or its start.
    fn session(&mut self, id: String, now_ms: u64) {
        let (cb, clustered) = (self.cb, self.clustered);
        let (Some(grant), Some(plan)) = (self.grant.take(), self.plan.as_ref()) else {
            return self.out_of_order("a session before verification and plan");
        };
        // A playlistName in the push URL wins over the channel's.
        let playlist = if cb.client_param("playlistName").is_some() {
            grant.playlist_name
        } else {
            plan.playlist.clone()
        };
        let chosen = crate::transcode::plan::rungs_for(
            self.renditions.as_ref(),
            &self.cfg.renditions,
            &playlist,
        );
        for (name, why) in &chosen.skipped {
            warn!(channel = %grant.channel, rung = %name, "rung not transcoded: {why}");
        }
        let meta = SessionMeta {
            id,
            grant: grant.tag.fingerprint(&grant.key_id),
            bucket: grant.bucket,
            channel: grant.channel,
            playlist,
            key_id: grant.key_id,
            clientid: cb.clientid.clone(),
            name: cb.name.clone(),
            addr: cb.addr.clone(),
            started_ms: now_ms,
            shape: plan.shape,
            low_latency: plan.low_latency,
            snapshot: self.snapshot.take(),
            resume: None,
            notify_topic: self.notify_topic.take(),
            variant: None,
            renditions: chosen.rungs,
        };
        self.meta = Some(meta.clone());
        if clustered {
            self.ask(
                Effect::Claim {
                    meta: Box::new(meta),
                },
                Waiting::Claimed,
            );
        } else {
            self.ask(
                Effect::Begin {
                    meta: Box::new(meta),
                },
                Waiting::Begun,
            );
        }
    }

    /// Undoes a begun session: finished, and its directory removed when it
    /// was made (the claim and the reservation are [`Self::refuse`]'s).
    fn finish_session(&mut self, dir_made: bool) {
        let Some(id) = self.meta.as_ref().map(|m| m.id.clone()) else {
            return;
        };
        self.queue.push_back(Effect::Finish { id: id.clone() });
        if dir_made {
            self.queue.push_back(Effect::RemoveStreamDir { id });
        }
    }

    /// The push is admitted: the claim is marked started, the pipeline told,
    /// and nginx relays to `<relay_url>/<session id>`.
    fn approve(&mut self) {
        let (Some(meta), Some(plan)) = (self.meta.take(), self.plan.take()) else {
            return self.out_of_order("an approval without a session");
        };
        if std::mem::take(&mut self.claimed) {
            self.queue.push_back(Effect::Started {
                id: meta.id.clone(),
            });
        }
        let meta = Box::new(meta);
        self.queue
            .push_back(Effect::StartPipeline { meta: meta.clone() });
        self.decision = Some(Decision::Approve {
            location: format!("{}/{}", plan.relay_url, meta.id),
            meta,
        });
    }

    /// A driver that answers out of order (a bug) gets the push refused as
    /// unavailable, never a panic on the request path.
    fn out_of_order(&mut self, what: &str) {
        debug_assert!(false, "admission: {what}");
        self.refuse(Refusal::Unavailable(format!(
            "admission out of order: {what}"
        )));
    }

    /// Decides `refusal`, after giving back the cluster claim and the
    /// reservation still held, and counting the failure.
    fn refuse(&mut self, refusal: Refusal) {
        if std::mem::take(&mut self.claimed)
            && let Some(m) = &self.meta
        {
            self.queue.push_back(Effect::Unclaim {
                bucket: m.bucket.clone(),
                channel: m.channel.clone(),
                id: m.id.clone(),
            });
        }
        if std::mem::take(&mut self.reserved) {
            self.queue.push_back(Effect::Release);
        }
        if refusal.counts_as_failure() {
            self.queue.push_back(Effect::CountFailure {
                addr: self.cb.addr.clone(),
            });
        }
        self.decision = Some(Decision::Refuse(refusal));
    }
}
