//! `on_publish` admission as a sans-IO core: whether a push may start, and
//! what must be done, in which order, to start it or to leave nothing behind.
//!
//! [`Admission`] is a state machine in the manner of `pipeline::machine`: it
//! takes the parsed callback, the configuration and the time, and answers
//! [`Admission::poll`] with the next [`Effect`] to perform; an effect that
//! asks something (the limiter, the replay set, the channel record, the
//! spool, a session id, the cluster, the session store, the stream
//! directory) is answered with [`Admission::answer`]. It ends in one
//! [`Decision`]: approve (a `302` to the relay target) or refuse with a
//! [`Refusal`]. It does no I/O and reads no clock: the driver
//! (`http::hooks::admit`) performs the effects and feeds their outcomes back,
//! and the unit tests drive every ordering without a file system, S3 or
//! etcd.
//!
//! The order, and why:
//! 1. the failure limiter, before anything reads the URL (a banned address
//!    learns nothing);
//! 2. the public application, then the signature and the key's policy
//!    (pure, [`crate::auth::push::verify_publish`]);
//! 3. with `auth.one_time_push`, the grant is reserved: a concurrent use of
//!    the same URL is refused, and nothing is spent yet;
//! 4. the channel record (S3, cached; an outage reads as "no record") and
//!    its plan ([`crate::channels::plan_push`]): disabled or unknown
//!    channels are refused;
//! 5. the spool: past its high-water mark, new pushes are refused so live
//!    ones keep their space;
//! 6. a session id, then in a cluster the channel's claim in etcd (and where
//!    its playlist stands);
//! 7. the session is begun (the channel's one live publisher on this node),
//!    its HLS directory made, and only then the one-time grant spent
//!    (written and fsync'd): a push refused at any earlier step leaves its
//!    URL usable, and a URL that cannot be recorded as spent is not
//!    approved;
//! 8. in a cluster the claim is marked started, the pipeline is told, and
//!    the answer is `302 Location: <relay_url>/<session id>`.
//!
//! Invariants (each has a test in `tests.rs`):
//! - a refusal undoes, in reverse, exactly what was done before it: the
//!   session id given back or the session finished, its directory removed,
//!   the cluster claim given back, the reservation released;
//! - the one-time grant is spent last, and only on the way to an approval;
//! - only refusals by auth's policy ([`Refusal::Refused`], except
//!   `too_many_failures`) count as failures for the limiter: a full spool,
//!   a live channel or a cluster outage never bans a publisher.
//!
//! [`Refusal::code`] is the label logged and counted; the HTTP layer maps a
//! `Refusal` into its `HttpError` (the same labels). [`update`] decides
//! `on_update` of a running push the same way, as a plain function.

mod machine;
pub(crate) mod update;

#[cfg(test)]
mod tests;

pub(crate) use machine::Admission;

use crate::auth::push::GrantTag;
use crate::auth::reject::Reject;
use crate::auth::replay::ReplayError;
use crate::channels::record::ChannelRecord;
use crate::cluster::ClaimError;
use crate::pipeline::fence::Resume;
use crate::session::{SessionError, SessionMeta};

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Perform this effect; if it is a question, answer it before polling
    /// again.
    Do(Effect),
    /// Admission is decided; every effect it needed has been handed out.
    Done(Decision),
}

/// One thing to do. Questions (the first group) must be answered with the
/// [`Answer`] variant named in their doc; the rest are done and forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Is `addr` banned? Answer [`Answer::Limiter`].
    CheckLimiter { addr: String },
    /// Hold the one-time grant until `forget_after`. Answer
    /// [`Answer::Reserved`].
    Reserve {
        key_id: String,
        tag: GrantTag,
        /// The `Signature` parameter as sent, for sets saved by older
        /// versions.
        signature: String,
        forget_after: u64,
        now: u64,
    },
    /// The channel's record, within the lookup bound. Answer
    /// [`Answer::Channel`].
    LookupChannel {
        key_id: String,
        bucket: String,
        channel: String,
    },
    /// Is the spool past its high-water mark? Answer [`Answer::SpoolFull`].
    CheckSpool,
    /// A new session id, and the wall clock in milliseconds. Answer
    /// [`Answer::Id`].
    TakeId,
    /// Claim the channel in the cluster for this session and read where its
    /// playlist stands. Answer [`Answer::Claimed`].
    Claim { meta: Box<SessionMeta> },
    /// Begin the session in the session store. Answer [`Answer::Begun`].
    Begin { meta: Box<SessionMeta> },
    /// Make the session's HLS directory. Answer [`Answer::StreamDir`].
    MakeStreamDir { id: String },
    /// Spend the reserved one-time grant (saved to disk). Answer
    /// [`Answer::Committed`].
    Commit,

    /// Count a failed attempt from `addr` in the limiter.
    CountFailure { addr: String },
    /// Drop the reservation uncommitted: the URL stays usable.
    Release,
    /// The id was not begun: it may serve the next session.
    GiveBack { id: String },
    /// Undo a begun session.
    Finish { id: String },
    /// Remove the session's (empty) HLS directory.
    RemoveStreamDir { id: String },
    /// Give back the cluster claim of a session that did not start.
    Unclaim {
        bucket: String,
        channel: String,
        id: String,
    },
    /// The claimed session started (cluster mode).
    Started { id: String },
    /// Tell the pipeline about the approved session.
    StartPipeline { meta: Box<SessionMeta> },
}

/// The outcome of a question [`Effect`].
#[derive(Debug)]
pub(crate) enum Answer {
    Limiter(Result<(), Reject>),
    Reserved(Result<(), ReplayError>),
    /// `None`: no record, or none could be read in time (an S3 outage must
    /// not stop new pushes; the driver logs why).
    Channel(Option<ChannelRecord>),
    SpoolFull(bool),
    Id {
        id: String,
        now_ms: u64,
    },
    Claimed(Result<Option<Box<Resume>>, ClaimError>),
    Begun(Result<SessionMeta, SessionError>),
    StreamDir(std::io::Result<()>),
    Committed(Result<(), ReplayError>),
}

/// What `on_publish` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Relay the stream to `location` (`<relay_url>/<session id>`).
    Approve {
        location: String,
        meta: Box<SessionMeta>,
    },
    Refuse(Refusal),
}

/// Why a push is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// Auth's policy (signature, key, expiry, replay, channel policy, ban).
    #[error("refused: {0}")]
    Refused(#[from] Reject),
    /// The callback came from an application that is not public.
    #[error("application {0:?} is not a public application")]
    WrongApp(String),
    /// `BUCKET/CHANNEL` has a live publisher (here or on another node).
    #[error("channel {0} already has a live publisher")]
    ChannelLive(String),
    /// livebucket cannot take a new push now (spool full, state not
    /// writable, cluster coordinator unreachable).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// Stable label for logs and `livebucket_push_rejected_total`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::Refused(r) => r.code(),
            Refusal::WrongApp(_) => "wrong_app",
            Refusal::ChannelLive(_) => "channel_live",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the limiter counts this refusal as a failed attempt (and the
    /// answer is delayed): auth's refusals, except the ban itself.
    pub(crate) fn counts_as_failure(&self) -> bool {
        matches!(self, Refusal::Refused(r) if *r != Reject::TooManyFailures)
    }
}

/// The refusal for a grant that cannot be reserved or spent.
fn replay_refusal(e: ReplayError) -> Refusal {
    match e {
        ReplayError::Replayed | ReplayError::InUse => Refusal::Refused(Reject::Replayed),
        save @ ReplayError::Save { .. } => Refusal::Unavailable(save.to_string()),
    }
}
