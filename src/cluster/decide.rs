//! The cluster's decisions, without etcd: what a claim, a fence check, an
//! `on_update` and a lost lease mean, from what etcd answered and what this
//! node knows. The async driver (`super`) asks etcd and does what these
//! return; the tests below drive every case.

use std::time::{Duration, Instant};

use crate::pipeline::fence::FenceVerdict;

/// A channel key as etcd holds it: who, and its create revision (the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub node: String,
    pub session: String,
    pub epoch: i64,
}

/// What `on_publish` does with a channel's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Nobody holds it: create it on this node's lease.
    Take,
    /// This node holds it for a session that is no longer live here (it is
    /// finishing, or a previous run of this node left it): hand it to the
    /// new session, keeping the epoch.
    TakeOver { epoch: i64 },
    /// Someone publishes the channel: refuse (`channel_live`).
    Refuse { node: String },
}

pub(crate) fn claim(current: Option<&Held>, me: &str, live_here: impl Fn(&str) -> bool) -> Claim {
    match current {
        None => Claim::Take,
        Some(h) if h.node == me && !live_here(&h.session) => Claim::TakeOver { epoch: h.epoch },
        Some(h) => Claim::Refuse {
            node: h.node.clone(),
        },
    }
}

/// A channel this node published, as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Holding {
    /// The key is ours at this epoch (as far as we last heard).
    Held { session: String, epoch: i64 },
    /// Our lease expired with the key on it; the keeper tries to take the
    /// key again once it has a new lease.
    Lost { session: String },
    /// Another node took the channel: this node writes its playlist no more.
    Superseded { session: String, by: String },
}

impl Holding {
    pub(crate) fn session(&self) -> &str {
        match self {
            Holding::Held { session, .. }
            | Holding::Lost { session }
            | Holding::Superseded { session, .. } => session,
        }
    }
}

/// Whether the lease can still be alive: renewed (the renewal *sent*) less
/// than a TTL ago. Past that, etcd may have expired it and handed the
/// channels to other nodes, whatever this node believes.
pub(crate) fn lease_alive(last_renewal_sent: Option<Instant>, ttl: Duration, now: Instant) -> bool {
    last_renewal_sent.is_some_and(|t| now.saturating_duration_since(t) < ttl)
}

/// The latest instant a fenced write may still land: the lease's end as
/// this node can be sure of it (the last renewal etcd acknowledged was sent
/// at `last_renewal_sent`, and etcd counts its TTL from when it got it, which
/// is later), less a margin for the store's own delay between the last byte
/// and the object taking effect (a fifth of the TTL, at most 1 s). `None`
/// without a renewal (no lease).
pub(crate) fn write_deadline(last_renewal_sent: Option<Instant>, ttl: Duration) -> Option<Instant> {
    let margin = (ttl / 5).min(Duration::from_secs(1));
    last_renewal_sent.map(|t| t + ttl.saturating_sub(margin))
}

/// What the fence transaction found at the channel's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Its create revision is our epoch.
    Ours,
    Absent,
    Other(Held),
}

/// The fence's verdict: `holding` is what this node knows, `lease` whether
/// its lease can be alive, `found` the transaction's answer (`None`: etcd
/// did not answer in time).
pub(crate) fn fence(
    holding: Option<&Holding>,
    lease: bool,
    me: &str,
    found: Option<&KeyState>,
) -> FenceVerdict {
    match holding {
        None | Some(Holding::Superseded { .. }) => return FenceVerdict::Yield,
        Some(Holding::Lost { .. }) => return FenceVerdict::Hold,
        Some(Holding::Held { .. }) => {}
    }
    if !lease {
        return FenceVerdict::Hold;
    }
    match found {
        Some(KeyState::Ours) => FenceVerdict::Write,
        Some(KeyState::Other(h)) if h.node != me => FenceVerdict::Yield,
        // Gone (our lease expired) or re-taken by this node at a new epoch
        // the holding does not know yet: the keeper sorts it out.
        Some(KeyState::Absent | KeyState::Other(_)) | None => FenceVerdict::Hold,
    }
}

/// `on_update` for a live session: keep the publisher, or drop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Keep,
    /// Another node publishes the channel now.
    Superseded(String),
    /// This node cannot have its lease any more: its channels may already
    /// be another node's; the publisher should reconnect to a healthy node.
    CutOff,
}

pub(crate) fn update(holding: Option<&Holding>, lease: bool) -> Update {
    match holding {
        Some(Holding::Superseded { by, .. }) => Update::Superseded(by.clone()),
        _ if !lease => Update::CutOff,
        _ => Update::Keep,
    }
}

/// After the keeper got a new lease: what to do with a holding whose key
/// was on the old one, given who holds the key now.
pub(crate) fn after_new_lease(h: &Holding, current: Option<&Held>, me: &str) -> Option<Claim> {
    match h {
        Holding::Superseded { .. } => None,
        Holding::Held { .. } | Holding::Lost { .. } => Some(match current {
            None => Claim::Take,
            Some(c) if c.node == me => Claim::TakeOver { epoch: c.epoch },
            Some(c) => Claim::Refuse {
                node: c.node.clone(),
            },
        }),
    }
}

/// Who last took a channel (`last/<bucket>/<channel>`, written with every
/// take and never on a lease): it outlives the holder's lease, so a node
/// restarted after a crash can tell whether anybody continued the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Last {
    pub node: String,
    pub session: String,
}

/// What a node restarted after a crash does with the channel of a session
/// it recovered (it holds nothing for it yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovered {
    /// Nobody continued the channel: take it again, so the recovered
    /// session writes (and ends) its playlist.
    Take,
    /// Its key is still on this node's old lease for this session (a quick
    /// restart): move it onto the new lease.
    TakeOver { epoch: i64 },
    /// Another node continued the channel: its playlist is theirs.
    Yield { by: String },
    /// Another session of this node holds the channel: that session writes
    /// the playlist; nothing to record.
    Leave,
}

pub(crate) fn recovered(
    current: Option<&Held>,
    last: Option<&Last>,
    me: &str,
    session: &str,
) -> Recovered {
    match (current, last) {
        (Some(h), _) if h.node == me && h.session == session => {
            Recovered::TakeOver { epoch: h.epoch }
        }
        (Some(h), _) if h.node == me => Recovered::Leave,
        (Some(h), _) => Recovered::Yield { by: h.node.clone() },
        (None, Some(l)) if l.node == me && l.session == session => Recovered::Take,
        (None, Some(l)) if l.node == me => Recovered::Leave,
        (None, Some(l)) => Recovered::Yield { by: l.node.clone() },
        // No record (a channel taken before this version): nothing says
        // anybody continued it.
        (None, None) => Recovered::Take,
    }
}

/// Whether a balancer should send streamers to this node (`/readyz`): only
/// while its lease can be alive, since without one every `on_publish` is
/// refused (`unavailable`). `Err` is the reason, for the body and the log.
pub(crate) fn ready(lease_alive: bool, failures: u32) -> Result<(), String> {
    if lease_alive {
        Ok(())
    } else if failures > 0 {
        Err(format!(
            "no live etcd lease ({failures} lease requests failed in a row); pushes are refused"
        ))
    } else {
        Err("no live etcd lease; pushes are refused".to_owned())
    }
}

/// Whether the keeper should try again to put a holding onto its lease: it
/// was lost with an old lease, and no retake has settled it yet (etcd
/// answered the renewal but not the channel's request).
pub(crate) fn retake_due(h: &Holding) -> bool {
    matches!(h, Holding::Lost { .. })
}

/// Whether another node publishes a channel, as far as this node can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// Nobody, or only this node (whose own sessions say whether it is live).
    No,
    /// Another node (`node`) publishes it.
    Yes { node: String },
    /// etcd could not be asked or answered something unreadable: a change to
    /// the channel must wait, as it would if the channel were live.
    Unknown,
}

/// [`Elsewhere`] from etcd's answer for the channel's key. An error is
/// `Unknown`, never "not live": a PutLiveChannel or DeleteLiveChannel
/// allowed on a failed lookup could change a channel another node is
/// publishing (fail closed).
pub(crate) fn elsewhere<E>(holder: Result<Option<&str>, E>, me: &str) -> Elsewhere {
    match holder {
        Ok(Some(node)) if node != me => Elsewhere::Yes {
            node: node.to_owned(),
        },
        Ok(_) => Elsewhere::No,
        Err(_) => Elsewhere::Unknown,
    }
}

/// The channel whose claim fences the writes of `channel`'s playlist: a
/// variant `CHANNEL/<rung>` (a rendition's sub-channel) is written under its
/// source `CHANNEL`'s claim, so the node holding a channel publishes its
/// variants and a fail-over moves them with it; any other channel under its
/// own. Channel names hold no `/` (`names::validate_channel`), so the first
/// `/` starts the rung.
pub(crate) fn fenced_by(channel: &str) -> &str {
    channel
        .split_once('/')
        .map_or(channel, |(source, _)| source)
}

/// Which of the sessions known here for a channel (its own and its
/// renditions') a recovered claim is taken back for: the streamer's newest
/// session, else the newest rendition's (a variant still being stored
/// after its source finished).
pub(crate) fn adopter(
    sessions: &[crate::session::SessionMeta],
) -> Option<&crate::session::SessionMeta> {
    sessions
        .iter()
        .max_by_key(|m| (!m.is_rendition(), m.started_ms))
}

/// Whether a held channel's claim may be released: the session it was
/// taken for is finished here (and not one `on_publish` is still
/// beginning), and no rendition of the channel is still being stored here
/// (their playlists are written under this claim).
pub(crate) fn releasable(session_known: bool, pending: bool, variants_known: bool) -> bool {
    !session_known && !pending && !variants_known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_is_fenced_by_its_source_channel() {
        assert_eq!(fenced_by("cam"), "cam");
        assert_eq!(fenced_by("cam/360p"), "cam");
        assert_eq!(fenced_by("cam.1-x/audio_64k"), "cam.1-x");
    }

    #[test]
    fn a_recovered_claim_goes_to_the_source_else_the_newest_rendition() {
        let meta = |id: &str, started_ms: u64, rung: Option<&str>| crate::session::SessionMeta {
            id: id.into(),
            bucket: "b".into(),
            channel: rung.map_or("cam".into(), |r| format!("cam/{r}")),
            playlist: "p.m3u8".into(),
            key_id: "k".into(),
            clientid: String::new(),
            name: String::new(),
            addr: String::new(),
            started_ms,
            shape: None,
            low_latency: None,
            snapshot: None,
            resume: None,
            grant: String::new(),
            notify_topic: None,
            variant: rung.map(|r| crate::session::VariantOf {
                of: "src".into(),
                channel: "cam".into(),
                rung: r.into(),
            }),
            renditions: Vec::new(),
        };
        let both = [
            meta("v1", 20, Some("360p")),
            meta("src", 10, None),
            meta("v2", 30, Some("720p")),
        ];
        assert_eq!(adopter(&both).map(|m| m.id.as_str()), Some("src"));
        assert_eq!(adopter(&both[..1]).map(|m| m.id.as_str()), Some("v1"));
        let renditions = [both[0].clone(), both[2].clone()];
        assert_eq!(adopter(&renditions).map(|m| m.id.as_str()), Some("v2"));
        assert_eq!(adopter(&[]), None);
    }

    #[test]
    fn a_claim_stays_while_the_channels_renditions_are_stored() {
        assert!(releasable(false, false, false));
        assert!(!releasable(true, false, false));
        assert!(!releasable(false, true, false));
        assert!(
            !releasable(false, false, true),
            "a variant still stored here"
        );
    }

    #[test]
    fn an_unanswered_holder_lookup_is_unknown_not_free() {
        assert_eq!(elsewhere::<()>(Ok(None), "n1"), Elsewhere::No);
        assert_eq!(elsewhere::<()>(Ok(Some("n1")), "n1"), Elsewhere::No);
        assert_eq!(
            elsewhere::<()>(Ok(Some("n2")), "n1"),
            Elsewhere::Yes { node: "n2".into() }
        );
        assert_eq!(elsewhere(Err("etcd timed out"), "n1"), Elsewhere::Unknown);
    }

    fn held(node: &str, session: &str, epoch: i64) -> Held {
        Held {
            node: node.into(),
            session: session.into(),
            epoch,
        }
    }

    #[test]
    fn claims() {
        assert_eq!(claim(None, "a", |_| false), Claim::Take);
        let mine = held("a", "s1", 7);
        assert_eq!(
            claim(Some(&mine), "a", |_| false),
            Claim::TakeOver { epoch: 7 }
        );
        assert_eq!(
            claim(Some(&mine), "a", |s| s == "s1"),
            Claim::Refuse { node: "a".into() }
        );
        let theirs = held("b", "s1", 7);
        assert_eq!(
            claim(Some(&theirs), "a", |_| false),
            Claim::Refuse { node: "b".into() }
        );
    }

    #[test]
    fn lease_alive_for_one_ttl_after_the_renewal_was_sent() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert!(!lease_alive(None, ttl, t0));
        assert!(lease_alive(Some(t0), ttl, t0 + Duration::from_secs(9)));
        assert!(!lease_alive(Some(t0), ttl, t0 + ttl));
    }

    #[test]
    fn fence_writes_only_when_etcd_confirms_our_epoch() {
        let h = Holding::Held {
            session: "s".into(),
            epoch: 5,
        };
        let other = KeyState::Other(held("b", "x", 9));
        let me_again = KeyState::Other(held("a", "x", 9));
        assert_eq!(
            fence(Some(&h), true, "a", Some(&KeyState::Ours)),
            FenceVerdict::Write
        );
        assert_eq!(
            fence(Some(&h), true, "a", Some(&other)),
            FenceVerdict::Yield
        );
        assert_eq!(
            fence(Some(&h), true, "a", Some(&me_again)),
            FenceVerdict::Hold
        );
        assert_eq!(
            fence(Some(&h), true, "a", Some(&KeyState::Absent)),
            FenceVerdict::Hold
        );
        // etcd silent, or the lease past its TTL: never write.
        assert_eq!(fence(Some(&h), true, "a", None), FenceVerdict::Hold);
        assert_eq!(
            fence(Some(&h), false, "a", Some(&KeyState::Ours)),
            FenceVerdict::Hold
        );
        // A channel this node does not hold (a session recovered after a
        // crash, while another node carried on) is not written.
        assert_eq!(
            fence(None, true, "a", Some(&KeyState::Ours)),
            FenceVerdict::Yield
        );
        let lost = Holding::Lost {
            session: "s".into(),
        };
        assert_eq!(
            fence(Some(&lost), true, "a", Some(&KeyState::Ours)),
            FenceVerdict::Hold
        );
        let gone = Holding::Superseded {
            session: "s".into(),
            by: "b".into(),
        };
        assert_eq!(
            fence(Some(&gone), true, "a", Some(&KeyState::Ours)),
            FenceVerdict::Yield
        );
    }

    #[test]
    fn a_recovered_session_ends_its_playlist_only_when_nobody_continued() {
        let last = |node: &str, session: &str| Last {
            node: node.into(),
            session: session.into(),
        };
        // Key gone with the old lease, this session took the channel last.
        assert_eq!(
            recovered(None, Some(&last("a", "s")), "a", "s"),
            Recovered::Take
        );
        assert_eq!(recovered(None, None, "a", "s"), Recovered::Take);
        // Restarted within the TTL: the key is still on the old lease.
        assert_eq!(
            recovered(Some(&held("a", "s", 4)), Some(&last("a", "s")), "a", "s"),
            Recovered::TakeOver { epoch: 4 }
        );
        // Another node holds it, or took it and finished meanwhile.
        assert_eq!(
            recovered(Some(&held("b", "x", 9)), Some(&last("b", "x")), "a", "s"),
            Recovered::Yield { by: "b".into() }
        );
        assert_eq!(
            recovered(None, Some(&last("b", "x")), "a", "s"),
            Recovered::Yield { by: "b".into() }
        );
        // A new session of this node continued it.
        assert_eq!(
            recovered(Some(&held("a", "t", 9)), Some(&last("a", "t")), "a", "s"),
            Recovered::Leave
        );
        assert_eq!(
            recovered(None, Some(&last("a", "t")), "a", "s"),
            Recovered::Leave
        );
    }

    #[test]
    fn fenced_writes_end_before_the_lease_can() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        assert_eq!(write_deadline(None, ttl), None);
        let end = write_deadline(Some(t0), ttl).unwrap();
        assert_eq!(end, t0 + Duration::from_secs(9));
        // Never past the instant the lease stops counting as alive.
        assert!(!lease_alive(Some(t0), ttl, t0 + ttl));
        assert!(lease_alive(Some(t0), ttl, end));
        // A short TTL keeps a fifth of it as margin.
        let short = write_deadline(Some(t0), Duration::from_secs(2)).unwrap();
        assert_eq!(short, t0 + Duration::from_millis(1600));
    }

    #[test]
    fn ready_only_with_a_live_lease() {
        assert_eq!(ready(true, 0), Ok(()));
        assert_eq!(ready(true, 3), Ok(()));
        assert!(ready(false, 0).unwrap_err().contains("no live etcd lease"));
        assert!(
            ready(false, 4)
                .unwrap_err()
                .contains("4 lease requests failed")
        );
    }

    #[test]
    fn updates() {
        let h = Holding::Held {
            session: "s".into(),
            epoch: 1,
        };
        assert_eq!(update(Some(&h), true), Update::Keep);
        assert_eq!(update(Some(&h), false), Update::CutOff);
        let gone = Holding::Superseded {
            session: "s".into(),
            by: "b".into(),
        };
        assert_eq!(update(Some(&gone), true), Update::Superseded("b".into()));
    }

    #[test]
    fn new_lease_retakes_what_nobody_took() {
        let lost = Holding::Lost {
            session: "s".into(),
        };
        assert_eq!(after_new_lease(&lost, None, "a"), Some(Claim::Take));
        assert_eq!(
            after_new_lease(&lost, Some(&held("b", "x", 3)), "a"),
            Some(Claim::Refuse { node: "b".into() })
        );
        assert_eq!(
            after_new_lease(&lost, Some(&held("a", "s", 3)), "a"),
            Some(Claim::TakeOver { epoch: 3 })
        );
        // A lost holding is retried every round until settled either way.
        assert!(retake_due(&lost));
        assert!(!retake_due(&Holding::Held {
            session: "s".into(),
            epoch: 3
        }));
        assert!(!retake_due(&Holding::Superseded {
            session: "s".into(),
            by: "b".into()
        }));
    }
}
