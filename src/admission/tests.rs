//! The admission machine driven through every ordering-sensitive case, with
//! the outcomes of the real parts given as answers: no file system, S3 or
//! etcd. Each scenario checks the exact effects handed out, in order, and a
//! property test checks the undo invariants over every combination of
//! answers.

use proptest::prelude::*;

use super::*;
use crate::auth::callback::test_support::nginx_publish_body;
use crate::auth::callback::{Callback, parse_callback};
use crate::channels::record::{ChannelRecord, ChannelStatus, HlsTarget, LiveChannelConfig};
use crate::config::Config;
use crate::sign::push::sign_rgw;

const SECRET: &str = "0123456789abcdef";
const NOW: u64 = 1_700_000_000;
const EXPIRES: u64 = NOW + 600;
const ID: &str = "0123456789abcdef0123456789abcdef";
const NOW_MS: u64 = 1_700_000_001_234;

fn config(extra: &str) -> Config {
    crate::config::for_tests(&format!(
        "[[keys]]\nid = \"GK1\"\nsecret = \"{SECRET}\"\nbuckets = [\"demo\"]\n{extra}"
    ))
}

fn one_time() -> Config {
    config("[auth]\none_time_push = true\n")
}

/// An `on_publish` callback for `demo/cam1`, signed correctly or not.
fn callback(app: &str, genuine: bool) -> Callback {
    let sig = if genuine {
        sign_rgw(SECRET, "demo", "cam1", EXPIRES).expect("sign")
    } else {
        sign_rgw("another secret!!", "demo", "cam1", EXPIRES).expect("sign")
    };
    let sig: String =
        percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC).to_string();
    let query = format!("Bucket=demo&AccessKeyId=GK1&Expires={EXPIRES}&Signature={sig}");
    let body = nginx_publish_body("rtmp://127.0.0.1:1935/live", "cam1", &query);
    let mut cb = parse_callback(&body).expect("a well-formed body");
    cb.app = app.into();
    cb
}

fn record(status: ChannelStatus) -> ChannelRecord {
    ChannelRecord {
        name: "cam1".into(),
        config: LiveChannelConfig {
            status,
            target: HlsTarget {
                frag_duration: 5,
                frag_count: 3,
                playlist_name: "live.m3u8".into(),
                low_latency: None,
            },
            ..LiveChannelConfig::default()
        },
        last_modified: 0,
    }
}

/// How the real parts answer, by question.
#[derive(Debug, Clone)]
struct World {
    banned: bool,
    reserve: Outcome,
    record: Option<ChannelStatus>,
    /// The record's `LivebucketRenditions`.
    renditions: Option<crate::channels::record::Renditions>,
    spool_full: bool,
    claim: Claim,
    begin: Begin,
    stream_dir_ok: bool,
    commit_ok: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Replayed,
    InUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Ok,
    Live,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Begin {
    Ok,
    ChannelLive,
    Io,
}

impl Default for World {
    fn default() -> Self {
        World {
            banned: false,
            reserve: Outcome::Ok,
            record: None,
            renditions: None,
            spool_full: false,
            claim: Claim::Ok,
            begin: Begin::Ok,
            stream_dir_ok: true,
            commit_ok: true,
        }
    }
}

fn resume() -> Box<crate::pipeline::fence::Resume> {
    Box::new(crate::pipeline::fence::Resume {
        media_sequence: 7,
        discontinuity_sequence: 1,
        window: Vec::new(),
        ended: false,
    })
}

fn save_error() -> ReplayError {
    ReplayError::Save {
        path: "/state/push-signatures.json".into(),
        source: std::io::Error::other("disk full"),
    }
}

impl World {
    fn answer(&self, effect: &Effect) -> Option<Answer> {
        Some(match effect {
            Effect::CheckLimiter { .. } => Answer::Limiter(if self.banned {
                Err(Reject::TooManyFailures)
            } else {
                Ok(())
            }),
            Effect::Reserve { .. } => Answer::Reserved(match self.reserve {
                Outcome::Ok => Ok(()),
                Outcome::Replayed => Err(ReplayError::Replayed),
                Outcome::InUse => Err(ReplayError::InUse),
            }),
            Effect::LookupChannel { .. } => Answer::Channel(self.record.map(|status| {
                let mut r = record(status);
                r.config.renditions = self.renditions.clone();
                r
            })),
            Effect::CheckSpool => Answer::SpoolFull(self.spool_full),
            Effect::TakeId => Answer::Id {
                id: ID.into(),
                now_ms: NOW_MS,
            },
            Effect::Claim { .. } => Answer::Claimed(match self.claim {
                Claim::Ok => Ok(Some(resume())),
                Claim::Live => Err(ClaimError::Live("node-b".into())),
                Claim::Unavailable => Err(ClaimError::Unavailable("etcd unreachable".into())),
            }),
            Effect::Begin { meta } => Answer::Begun(match self.begin {
                Begin::Ok => Ok((**meta).clone()),
                Begin::ChannelLive => Err(SessionError::ChannelLive {
                    bucket: meta.bucket.clone(),
                    channel: meta.channel.clone(),
                }),
                Begin::Io => Err(SessionError::Io {
                    path: "/state/sessions".into(),
                    source: std::io::Error::other("read-only file system"),
                }),
            }),
            Effect::MakeStreamDir { .. } => Answer::StreamDir(if self.stream_dir_ok {
                Ok(())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
            }),
            Effect::Commit => Answer::Committed(if self.commit_ok {
                Ok(())
            } else {
                Err(save_error())
            }),
            _ => return None,
        })
    }
}

/// Drives one admission to its decision; the effects in the order handed
/// out.
fn run(cb: &Callback, cfg: &Config, clustered: bool, world: &World) -> (Vec<Effect>, Decision) {
    let mut machine = Admission::new(cb, cfg, NOW, clustered);
    let mut effects = Vec::new();
    for _ in 0..100 {
        match machine.poll() {
            Step::Done(d) => return (effects, d),
            Step::Do(effect) => {
                let answer = world.answer(&effect);
                effects.push(effect);
                if let Some(a) = answer {
                    machine.answer(a);
                }
            }
        }
    }
    panic!("no decision after 100 effects: {effects:?}");
}

/// The effects' names, for readable comparisons.
fn names(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .map(|e| match e {
            Effect::CheckLimiter { .. } => "check_limiter",
            Effect::Reserve { .. } => "reserve",
            Effect::LookupChannel { .. } => "lookup_channel",
            Effect::CheckSpool => "check_spool",
            Effect::TakeId => "take_id",
            Effect::Claim { .. } => "claim",
            Effect::Begin { .. } => "begin",
            Effect::MakeStreamDir { .. } => "make_stream_dir",
            Effect::Commit => "commit",
            Effect::CountFailure { .. } => "count_failure",
            Effect::Release => "release",
            Effect::GiveBack { .. } => "give_back",
            Effect::Finish { .. } => "finish",
            Effect::RemoveStreamDir { .. } => "remove_stream_dir",
            Effect::Unclaim { .. } => "unclaim",
            Effect::Started { .. } => "started",
            Effect::StartPipeline { .. } => "start_pipeline",
        })
        .collect()
}

fn refusal(d: &Decision) -> &Refusal {
    match d {
        Decision::Refuse(r) => r,
        Decision::Approve { .. } => panic!("approved: {d:?}"),
    }
}

/// The approved session records its rungs: the record's (those the ladder
/// has), else the config's `default`; `none` gives none.
#[test]
fn the_session_records_the_rungs_its_push_gets() {
    use crate::channels::record::Renditions;
    let cfg = config(
        "[renditions]\ndefault = [\"360p\"]\n\
         [[renditions.rungs]]\nname = \"360p\"\nheight = 360\nvideo_kbps = 800\n\
         [[renditions.rungs]]\nname = \"audio\"\n",
    );
    let rungs = |world: &World| match run(&callback("live", true), &cfg, false, world).1 {
        Decision::Approve { meta, .. } => meta.renditions,
        d => panic!("refused: {d:?}"),
    };
    assert_eq!(rungs(&World::default()), ["360p"]);
    let mut world = World {
        record: Some(ChannelStatus::Enabled),
        ..World::default()
    };
    assert_eq!(rungs(&world), ["360p"]);
    world.renditions = Some(Renditions::Rungs(vec!["audio".into(), "gone".into()]));
    assert_eq!(rungs(&world), ["audio"]);
    world.renditions = Some(Renditions::None);
    assert!(rungs(&world).is_empty());
}

#[test]
fn approves_and_relays_to_the_session() {
    let cfg = config("");
    let cb = callback("live", true);
    let (effects, d) = run(&cb, &cfg, false, &World::default());
    assert_eq!(
        names(&effects),
        [
            "check_limiter",
            "lookup_channel",
            "check_spool",
            "take_id",
            "begin",
            "make_stream_dir",
            "start_pipeline",
        ]
    );
    let Decision::Approve { location, meta } = d else {
        panic!("refused: {d:?}");
    };
    let relay = cfg.nginx.relay_url.trim_end_matches('/');
    assert_eq!(location, format!("{relay}/{ID}"));
    assert_eq!(
        (meta.bucket.as_str(), meta.channel.as_str()),
        ("demo", "cam1")
    );
    assert_eq!(meta.playlist, crate::names::DEFAULT_PLAYLIST);
    assert_eq!((meta.id.as_str(), meta.started_ms), (ID, NOW_MS));
    assert_eq!(
        (meta.clientid.as_str(), meta.addr.as_str()),
        ("42", "192.0.2.7")
    );
    assert!(!meta.grant.is_empty());
    assert_eq!(effects.last(), Some(&Effect::StartPipeline { meta }));
}

/// With one-time URLs in a cluster: the grant is reserved right after
/// verification, the channel claimed before the session begins, and the
/// grant spent last, after the stream directory.
#[test]
fn full_order_with_one_time_urls_in_a_cluster() {
    let cfg = one_time();
    let cb = callback("live", true);
    let (effects, d) = run(&cb, &cfg, true, &World::default());
    assert_eq!(
        names(&effects),
        [
            "check_limiter",
            "reserve",
            "lookup_channel",
            "check_spool",
            "take_id",
            "claim",
            "begin",
            "make_stream_dir",
            "commit",
            "started",
            "start_pipeline",
        ]
    );
    let Decision::Approve { meta, .. } = d else {
        panic!("refused: {d:?}");
    };
    // The session continues the channel's playlist where the cluster had it.
    assert_eq!(meta.resume, Some(resume()));
    let Effect::Reserve {
        key_id,
        forget_after,
        now,
        ..
    } = &effects[1]
    else {
        panic!("{effects:?}");
    };
    assert_eq!(key_id, "GK1");
    assert_eq!(*forget_after, EXPIRES + cfg.auth.clock_skew_secs);
    assert_eq!(*now, NOW);
}

#[test]
fn the_channel_record_sets_the_playlist_and_relay() {
    let cfg = config("");
    let cb = callback("live", true);
    let world = World {
        record: Some(ChannelStatus::Enabled),
        ..World::default()
    };
    let (_, d) = run(&cb, &cfg, false, &world);
    let Decision::Approve { location, meta } = d else {
        panic!("refused: {d:?}");
    };
    assert_eq!(meta.playlist, "live.m3u8");
    let plan = crate::channels::plan_push(Some(&record(ChannelStatus::Enabled)), &cfg).unwrap();
    assert_eq!(location, format!("{}/{ID}", plan.relay_url));
    assert_eq!(meta.shape, plan.shape);
}

/// A wrong signature is refused and counted before the one-time set is
/// asked anything: it neither reserves nor spends a URL.
#[test]
fn bad_signature_never_touches_a_one_time_url() {
    let cfg = one_time();
    let (effects, d) = run(&callback("live", false), &cfg, true, &World::default());
    assert_eq!(names(&effects), ["check_limiter", "count_failure"]);
    assert_eq!(refusal(&d), &Refusal::Refused(Reject::BadSignature));
    assert_eq!(
        effects[1],
        Effect::CountFailure {
            addr: "192.0.2.7".into()
        }
    );
}

/// A banned address is refused before its URL is read, and the refusal
/// does not count again.
#[test]
fn a_banned_address_is_refused_first_and_not_counted() {
    let world = World {
        banned: true,
        ..World::default()
    };
    for genuine in [true, false] {
        let (effects, d) = run(&callback("live", genuine), &one_time(), true, &world);
        assert_eq!(names(&effects), ["check_limiter"]);
        assert_eq!(refusal(&d), &Refusal::Refused(Reject::TooManyFailures));
        assert!(!refusal(&d).counts_as_failure());
    }
}

#[test]
fn a_private_application_is_refused_uncounted() {
    let (effects, d) = run(&callback("hls", true), &one_time(), true, &World::default());
    assert_eq!(names(&effects), ["check_limiter"]);
    assert_eq!(refusal(&d), &Refusal::WrongApp("hls".into()));
    assert_eq!(refusal(&d).code(), "wrong_app");
}

/// A used URL, or one another publish holds, is `replayed` (a failure).
#[test]
fn a_used_or_held_url_is_replayed() {
    for reserve in [Outcome::Replayed, Outcome::InUse] {
        let world = World {
            reserve,
            ..World::default()
        };
        let (effects, d) = run(&callback("live", true), &one_time(), false, &world);
        assert_eq!(
            names(&effects),
            ["check_limiter", "reserve", "count_failure"]
        );
        assert_eq!(refusal(&d), &Refusal::Refused(Reject::Replayed));
    }
}

/// A channel refused by its record releases the reservation: the URL stays
/// usable once the channel is enabled.
#[test]
fn a_refused_channel_releases_the_url() {
    let disabled = World {
        record: Some(ChannelStatus::Disabled),
        ..World::default()
    };
    let (effects, d) = run(&callback("live", true), &one_time(), false, &disabled);
    assert_eq!(
        names(&effects),
        [
            "check_limiter",
            "reserve",
            "lookup_channel",
            "release",
            "count_failure"
        ]
    );
    assert_eq!(refusal(&d), &Refusal::Refused(Reject::ChannelDisabled));

    let refuse_unknown = config("[auth]\none_time_push = true\n[channels]\nunknown = \"refuse\"\n");
    let (effects, d) = run(
        &callback("live", true),
        &refuse_unknown,
        false,
        &World::default(),
    );
    assert_eq!(names(&effects)[3..], ["release", "count_failure"]);
    assert_eq!(refusal(&d), &Refusal::Refused(Reject::NoSuchChannel));
}

/// A full spool refuses before any session id is taken and before anything
/// is recorded: the reservation is released, nothing counts.
#[test]
fn a_full_spool_refuses_before_anything_is_recorded() {
    let world = World {
        spool_full: true,
        ..World::default()
    };
    let (effects, d) = run(&callback("live", true), &one_time(), true, &world);
    assert_eq!(
        names(&effects),
        [
            "check_limiter",
            "reserve",
            "lookup_channel",
            "check_spool",
            "release"
        ]
    );
    assert_eq!(refusal(&d).code(), "unavailable");
    assert!(!refusal(&d).counts_as_failure());
}

/// A claim the cluster refuses never begins a session: the id is given
/// back and the URL released.
#[test]
fn a_refused_cluster_claim_never_leaves_a_session() {
    for (claim, code) in [
        (Claim::Live, "channel_live"),
        (Claim::Unavailable, "unavailable"),
    ] {
        let world = World {
            claim,
            ..World::default()
        };
        let (effects, d) = run(&callback("live", true), &one_time(), true, &world);
        assert_eq!(
            names(&effects),
            [
                "check_limiter",
                "reserve",
                "lookup_channel",
                "check_spool",
                "take_id",
                "claim",
                "give_back",
                "release"
            ]
        );
        assert_eq!(effects[6], Effect::GiveBack { id: ID.into() });
        assert_eq!(refusal(&d).code(), code);
        assert!(!refusal(&d).counts_as_failure());
    }
    let world = World {
        claim: Claim::Live,
        ..World::default()
    };
    let (_, d) = run(&callback("live", true), &one_time(), true, &world);
    assert_eq!(refusal(&d), &Refusal::ChannelLive("demo/cam1".into()));
}

/// A session the store refuses (channel live here, state not writable)
/// gives back the cluster claim; the store gave the id back itself.
#[test]
fn a_refused_begin_gives_back_the_claim() {
    for (begin, code) in [
        (Begin::ChannelLive, "channel_live"),
        (Begin::Io, "unavailable"),
    ] {
        let world = World {
            begin,
            ..World::default()
        };
        let (effects, d) = run(&callback("live", true), &one_time(), true, &world);
        assert_eq!(names(&effects)[6..], ["begin", "unclaim", "release"]);
        assert_eq!(
            effects[7],
            Effect::Unclaim {
                bucket: "demo".into(),
                channel: "cam1".into(),
                id: ID.into()
            }
        );
        assert_eq!(refusal(&d).code(), code);
    }
}

/// A stream directory that cannot be made finishes the session, gives the
/// claim back and leaves the URL usable; the message names the directory
/// setting, not the session id.
#[test]
fn a_failed_stream_dir_undoes_the_session_and_keeps_the_url() {
    let world = World {
        stream_dir_ok: false,
        ..World::default()
    };
    let (effects, d) = run(&callback("live", true), &one_time(), true, &world);
    assert_eq!(
        names(&effects)[6..],
        ["begin", "make_stream_dir", "finish", "unclaim", "release"]
    );
    let Refusal::Unavailable(why) = refusal(&d) else {
        panic!("{d:?}");
    };
    assert!(why.contains("nginx.hls_dir"), "{why}");
    assert!(!why.contains(ID), "{why}");
}

/// A URL that cannot be recorded as spent is not approved: the session is
/// finished and its directory removed, the claim given back, and nothing is
/// started.
#[test]
fn an_unsaved_spend_undoes_everything() {
    let world = World {
        commit_ok: false,
        ..World::default()
    };
    let (effects, d) = run(&callback("live", true), &one_time(), true, &world);
    assert_eq!(
        names(&effects)[6..],
        [
            "begin",
            "make_stream_dir",
            "commit",
            "finish",
            "remove_stream_dir",
            "unclaim"
        ]
    );
    assert_eq!(refusal(&d).code(), "unavailable");
}

fn world() -> impl Strategy<Value = World> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Outcome::Ok),
            Just(Outcome::Replayed),
            Just(Outcome::InUse)
        ],
        prop_oneof![
            Just(None),
            Just(Some(ChannelStatus::Enabled)),
            Just(Some(ChannelStatus::Disabled))
        ],
        any::<bool>(),
        prop_oneof![Just(Claim::Ok), Just(Claim::Live), Just(Claim::Unavailable)],
        prop_oneof![Just(Begin::Ok), Just(Begin::ChannelLive), Just(Begin::Io)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(banned, reserve, record, spool_full, claim, begin, stream_dir_ok, commit_ok)| World {
                banned,
                reserve,
                record,
                renditions: None,
                spool_full,
                claim,
                begin,
                stream_dir_ok,
                commit_ok,
            },
        )
}

proptest! {
    /// Whatever the parts answer: one decision; a refusal undoes all that
    /// was done (every taken id given back or its session finished, every
    /// claim given back, every grant held released or failed to commit)
    /// and starts nothing; an approval undoes nothing and spends its URL
    /// exactly when one-time URLs are on; the limiter counts exactly auth's
    /// refusals other than the ban; and nothing follows a spend but the
    /// start.
    #[test]
    fn every_path_leaves_nothing_behind(
        w in world(),
        genuine in any::<bool>(),
        public in any::<bool>(),
        one_time_urls in any::<bool>(),
        clustered in any::<bool>(),
    ) {
        let cfg = if one_time_urls { one_time() } else { config("") };
        let cb = callback(if public { "live" } else { "hls" }, genuine);
        let (effects, d) = run(&cb, &cfg, clustered, &w);
        let n = names(&effects);
        let count = |name: &str| n.iter().filter(|e| **e == name).count();
        prop_assert!(count("reserve") <= 1 && count("commit") <= 1 && count("take_id") <= 1);
        prop_assert!(count("reserve") == 0 || (genuine && public && !w.banned));
        if clustered {
            prop_assert_eq!(count("claim"), count("take_id"));
        } else {
            prop_assert_eq!(count("claim") + count("started") + count("unclaim"), 0);
        }
        let reserved = count("reserve") == 1 && w.reserve == Outcome::Ok;
        let claimed = count("claim") == 1 && w.claim == Claim::Ok;
        let begun = count("begin") == 1 && w.begin == Begin::Ok;
        match &d {
            Decision::Refuse(r) => {
                prop_assert_eq!(count("release") + count("commit"), usize::from(reserved));
                prop_assert_eq!(count("unclaim"), usize::from(claimed));
                prop_assert_eq!(count("finish"), usize::from(begun));
                prop_assert_eq!(count("give_back"), usize::from(count("take_id") == 1 && count("begin") == 0));
                prop_assert_eq!(count("start_pipeline") + count("started"), 0);
                prop_assert_eq!(count("count_failure"), usize::from(r.counts_as_failure()));
            }
            Decision::Approve { .. } => {
                prop_assert!(genuine && public && !w.banned && !w.spool_full);
                prop_assert_eq!(count("release") + count("give_back") + count("finish") + count("unclaim") + count("count_failure"), 0);
                prop_assert_eq!(count("commit"), usize::from(one_time_urls));
                prop_assert_eq!(n.last(), Some(&"start_pipeline"));
                prop_assert_eq!(count("started"), usize::from(clustered));
            }
        }
        if let Some(spend) = n.iter().position(|e| *e == "commit") {
            prop_assert!(n[spend + 1..].iter().all(|e| ["started", "start_pipeline", "finish", "remove_stream_dir", "unclaim"].contains(e)), "{:?}", n);
            prop_assert!(n[..spend].contains(&"begin") && n[..spend].contains(&"make_stream_dir"));
        }
    }
}
