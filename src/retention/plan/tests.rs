use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::layout::{fragment_key, manifest_key, part_key};

const CH: &str = "cam";

fn listed(key: String) -> Listed {
    Listed {
        key,
        size: 100,
        modified_ms: 0,
    }
}

/// A recording of `n` 2 s fragments from `start`, as manifest chunks of up
/// to `chunk` fragments (later chunks keyed by their first fragment).
fn recording(id: &str, start: u64, n: usize, chunk: usize) -> Vec<(String, Manifest)> {
    let frags: Vec<IndexedFragment> = (0..n as u64)
        .map(|i| IndexedFragment {
            k: start + i * 2000,
            d: 2000,
        })
        .collect();
    let chunks: Vec<&[IndexedFragment]> = if frags.is_empty() {
        vec![&[]]
    } else {
        frags.chunks(chunk.max(1)).collect()
    };
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let key_ms = if i == 0 { start } else { c[0].k };
            (
                manifest_key(CH, key_ms, id),
                Manifest {
                    version: 1,
                    session: id.into(),
                    channel: CH.into(),
                    started_ms: start,
                    ended: true,
                    fragments: c.to_vec(),
                },
            )
        })
        .collect()
}

fn found_of(manifests: Vec<(String, Manifest)>, orphans: &[u64]) -> Found {
    let mut fragments: Vec<Listed> = manifests
        .iter()
        .flat_map(|(_, m)| m.fragments.iter().map(|f| listed(fragment_key(CH, f.k))))
        .collect();
    fragments.extend(orphans.iter().map(|&ms| listed(fragment_key(CH, ms))));
    fragments.sort_by(|a, b| a.key.cmp(&b.key));
    Found {
        manifests,
        fragments,
        ..Found::default()
    }
}

fn inputs(now_ms: u64, period_secs: u64, live: bool) -> Inputs<'static> {
    Inputs {
        channel: CH,
        now_ms,
        period_secs,
        live,
        live_playlists: &[],
        window_segments: 0,
    }
}

fn deleted(plan: &Plan) -> BTreeSet<String> {
    plan.steps
        .iter()
        .flat_map(|s| match s {
            Step::Delete { keys, .. } => keys.clone(),
            Step::Put { .. } => vec![],
        })
        .collect()
}

#[test]
fn a_period_of_zero_keeps_everything() {
    let found = found_of(recording("a", 1_000, 5, 100), &[]);
    assert!(plan(&found, &inputs(10_000_000, 0, false), 10).is_empty());
}

#[test]
fn an_old_recording_goes_manifest_first_and_a_recent_one_stays() {
    let mut manifests = recording("old", 1_000_000, 3, 100);
    manifests.extend(recording("new", 9_000_000, 3, 100));
    let found = found_of(manifests, &[]);
    // Cutoff 5,000,000: all of "old" ended before it.
    let p = plan(&found, &inputs(10_000_000, 5_000, false), 2);
    assert_eq!(p.cutoff_ms, 5_000_000);
    let Step::Delete { phase, keys, .. } = &p.steps[0] else {
        panic!("{p:?}")
    };
    assert_eq!(*phase, Phase::Index);
    assert_eq!(keys, &vec![manifest_key(CH, 1_000_000, "old")]);
    // Fragments after, two per batch.
    let media: Vec<&Vec<String>> = p.steps[1..]
        .iter()
        .map(|s| match s {
            Step::Delete {
                phase: Phase::Media,
                keys,
                ..
            } => keys,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(media.len(), 2);
    assert_eq!(
        media[0],
        &vec![fragment_key(CH, 1_000_000), fragment_key(CH, 1_002_000)]
    );
    assert_eq!(p.totals(), (4, 300));
    assert!(!deleted(&p).iter().any(|k| k.contains("9000000")));
}

#[test]
fn a_recording_across_the_cutoff_is_trimmed_before_its_fragments_go() {
    // Fragments at 0, 2 s, 4 s, 6 s; cutoff at 5 s: the first two ended.
    let found = found_of(recording("a", 0, 4, 100), &[]);
    let p = plan(&found, &inputs(5_000 + 1_000_000, 1_000, false), 10);
    let Step::Put { key, manifest } = &p.steps[0] else {
        panic!("{p:?}")
    };
    assert_eq!(key, &manifest_key(CH, 0, "a"));
    assert_eq!(
        manifest.fragments.iter().map(|f| f.k).collect::<Vec<_>>(),
        vec![4000, 6000]
    );
    assert_eq!(
        deleted(&p),
        BTreeSet::from([fragment_key(CH, 0), fragment_key(CH, 2000)])
    );
}

#[test]
fn a_live_channel_keeps_its_newest_chunk_and_takes_closed_ones_whole() {
    let mut manifests = recording("old", 0, 2, 100);
    // The live recording, in three chunks of two, all older than the cutoff.
    manifests.extend(recording("live", 100_000, 6, 2));
    let mut found = found_of(manifests, &[200_000]);
    found.parts = vec![
        listed(part_key(CH, "live", 100_000, 0)),
        listed(part_key(CH, "live", 108_000, 0)),
        listed(part_key(CH, "old", 0, 0)),
    ];
    let p = plan(&found, &inputs(10_000_000, 1_000, true), 10);
    let gone = deleted(&p);
    assert!(gone.contains(&manifest_key(CH, 0, "old")));
    assert!(gone.contains(&part_key(CH, "old", 0, 0)));
    // The two closed chunks go, manifests first, with their fragments and
    // parts; the newest chunk (the pipeline still rewrites it), its
    // fragments and parts, and what came after its start stay.
    let index: Vec<String> = p
        .steps
        .iter()
        .filter(|s| s.phase() == Phase::Index)
        .flat_map(|s| match s {
            Step::Delete { keys, .. } => keys.clone(),
            Step::Put { .. } => vec![],
        })
        .collect();
    for key in [
        manifest_key(CH, 100_000, "live"),
        manifest_key(CH, 104_000, "live"),
    ] {
        assert!(index.contains(&key), "{key} in {index:?}");
    }
    for ms in [100_000, 102_000, 104_000, 106_000] {
        assert!(gone.contains(&fragment_key(CH, ms)), "{ms}: {gone:?}");
    }
    assert!(gone.contains(&part_key(CH, "live", 100_000, 0)));
    for kept in [
        manifest_key(CH, 108_000, "live"),
        fragment_key(CH, 108_000),
        fragment_key(CH, 110_000),
        fragment_key(CH, 200_000),
        part_key(CH, "live", 108_000, 0),
    ] {
        assert!(!gone.contains(&kept), "{kept} deleted");
    }
    assert!(p.steps.iter().all(|s| !matches!(s, Step::Put { .. })));
    // Not live any more: it all goes.
    let gone = deleted(&plan(&found, &inputs(10_000_000, 1_000, false), 10));
    assert!(gone.contains(&part_key(CH, "live", 108_000, 0)));
    assert!(gone.contains(&fragment_key(CH, 200_000)));
}

#[test]
fn a_closed_live_chunk_goes_whole_or_not_at_all() {
    // Live chunks at 0 (0, 2 s, 4 s), 6 s (6, 8, 10 s), 12 s (newest).
    let found = found_of(recording("live", 0, 7, 3), &[]);
    // Cutoff 5 s: the first chunk's last fragment ends at 6 s, so nothing
    // goes (no trimmed copy of a closed chunk), though two fragments expired.
    let p = plan(&found, &inputs(1_005_000, 1_000, true), 10);
    assert!(p.is_empty(), "{p:?}");
    // Cutoff 6 s: the first chunk goes whole.
    let p = plan(&found, &inputs(1_006_000, 1_000, true), 10);
    assert_eq!(
        deleted(&p),
        BTreeSet::from([
            manifest_key(CH, 0, "live"),
            fragment_key(CH, 0),
            fragment_key(CH, 2_000),
            fragment_key(CH, 4_000),
        ])
    );
    // The live guard holds it while the live window may still name it,
    // whatever the period: 2 x 3 + 3 fragments of 2 s = 18 s.
    assert_eq!(live_guard_ms(3, 2_000), 18_000);
    let guarded = Inputs {
        window_segments: 3,
        ..inputs(6_000 + 17_999, 1, true)
    };
    assert!(plan(&found, &guarded, 10).is_empty());
    let passed = Inputs {
        window_segments: 3,
        ..inputs(6_000 + 18_000, 1, true)
    };
    assert_eq!(deleted(&plan(&found, &passed, 10)), deleted(&p));
}

#[test]
fn a_live_channel_without_manifests_keeps_everything() {
    let found = found_of(vec![], &[0, 2000]);
    assert!(plan(&found, &inputs(10_000_000, 1, true), 10).is_empty());
    assert_eq!(
        deleted(&plan(&found, &inputs(10_000_000, 1, false), 10)).len(),
        2
    );
}

#[test]
fn playlists_naming_an_expired_fragment_go_first_and_live_ones_stay_while_live() {
    let mut found = found_of(recording("a", 0, 2, 100), &[]);
    let seen = |name: &str, earliest| PlaylistSeen {
        object: listed(format!("{CH}/{name}")),
        earliest_ms: earliest,
    };
    found.playlists = vec![
        seen("vod.m3u8", Some(0)),
        seen("later.m3u8", Some(9_999_000)),
        seen("index.m3u8", Some(2000)),
        seen("empty.m3u8", None),
    ];
    let live = ["index.m3u8".to_owned()];
    let mut i = inputs(10_000_000, 1_000, true);
    i.live_playlists = &live;
    // Live with no manifest newer: "a" is the newest, kept whole.
    let p = plan(&found, &i, 10);
    assert_eq!(deleted(&p), BTreeSet::from([format!("{CH}/vod.m3u8")]));
    i.live = false;
    let p = plan(&found, &i, 10);
    let Step::Delete { phase, keys, .. } = &p.steps[0] else {
        panic!("{p:?}")
    };
    assert_eq!(*phase, Phase::Index);
    assert!(keys.contains(&format!("{CH}/index.m3u8")));
    assert!(keys.contains(&format!("{CH}/vod.m3u8")));
}

#[test]
fn snapshots_go_by_their_time_and_latest_by_its_age() {
    let mut found = Found::default();
    let mut latest = listed(format!("{CH}/snapshot/latest.jpg"));
    latest.modified_ms = 9_999_999;
    found.snapshots = vec![
        listed(format!("{CH}/snapshot/0000000001000.jpg")),
        listed(format!("{CH}/snapshot/0000009999000.jpg")),
        latest,
    ];
    let p = plan(&found, &inputs(10_000_000, 1_000, false), 10);
    assert_eq!(
        p.steps,
        vec![Step::Delete {
            phase: Phase::Media,
            place: Where::Snapshots,
            keys: vec![format!("{CH}/snapshot/0000000001000.jpg")],
            bytes: 100,
        }]
    );
}

#[test]
fn fragments_of_unread_manifests_are_never_candidates() {
    let keys: Vec<String> = [1_000, 5_000, 9_000]
        .iter()
        .map(|&ms| manifest_key(CH, ms, "r"))
        .collect();
    assert_eq!(unnamed_horizon(&keys, 3, 20_000), 20_000, "all read");
    assert_eq!(unnamed_horizon(&keys, 1, 20_000), 5_000);
    assert_eq!(unnamed_horizon(&keys, 1, 2_000), 2_000);
}

#[test]
fn a_variant_is_planned_as_a_channel_of_its_own() {
    // The variant `cam/360p` of an old push: its manifest, fragments, parts
    // and playlist, keyed under the variant, go like a channel's.
    const V: &str = "cam/360p";
    let frags = [1_000_000, 1_002_000];
    let manifest = Manifest {
        version: 1,
        session: "v".into(),
        channel: V.into(),
        started_ms: 1_000_000,
        ended: true,
        fragments: frags
            .iter()
            .map(|&k| IndexedFragment { k, d: 2000 })
            .collect(),
    };
    let found = Found {
        manifests: vec![(manifest_key(V, 1_000_000, "v"), manifest)],
        fragments: frags.iter().map(|&k| listed(fragment_key(V, k))).collect(),
        parts: vec![listed(part_key(V, "v", 1_000_000, 0))],
        playlists: vec![PlaylistSeen {
            object: listed(format!("{V}/playlist.m3u8")),
            earliest_ms: Some(1_000_000),
        }],
        ..Found::default()
    };
    let variant = Inputs {
        channel: V,
        ..inputs(10_000_000, 5_000, false)
    };
    let want: BTreeSet<String> = [
        manifest_key(V, 1_000_000, "v"),
        fragment_key(V, 1_000_000),
        fragment_key(V, 1_002_000),
        part_key(V, "v", 1_000_000, 0),
        format!("{V}/playlist.m3u8"),
    ]
    .into_iter()
    .collect();
    assert_eq!(deleted(&plan(&found, &variant, 10)), want);
    // The source's plan never takes the variant's fragments or parts for
    // its own, should a listing hand it some.
    let as_source = Found {
        manifests: vec![],
        playlists: vec![],
        ..found
    };
    assert!(plan(&as_source, &inputs(10_000_000, 5_000, false), 10).is_empty());
}

#[test]
fn a_master_names_its_variants_playlists() {
    let master = "#EXTM3U\n#EXT-X-VERSION:3\n\
        #EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720\nplaylist.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=800000\n360p/playlist.m3u8?x=1\n\
        #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"audio\",URI=\"audio/playlist.m3u8\"\n\
        #EXT-X-STREAM-INF:BANDWIDTH=1\n360p/playlist.m3u8\n\
        https://elsewhere.example/x.m3u8\n/abs/x.m3u8\n../other/playlist.m3u8\n";
    assert_eq!(
        master_names(CH, master),
        vec![
            "cam/360p/playlist.m3u8".to_owned(),
            "cam/audio/playlist.m3u8".to_owned(),
            "cam/playlist.m3u8".to_owned(),
        ]
    );
    assert!(master_names(CH, "#EXTM3U\n").is_empty());
}

#[test]
fn playlist_text_names_its_earliest_fragment() {
    let text = "#EXTM3U\n#EXTINF:2.0,\n0000000005000.ts\n#EXTINF:2.0,\n\
                https://s3/b/cam/0000000003000.ts?X-Amz-Signature=1\n#EXT-X-ENDLIST\n";
    assert_eq!(earliest_fragment(text), Some(3000));
    assert_eq!(earliest_fragment("#EXTM3U\n"), None);
}

/// The bucket as the plan's execution leaves it.
#[derive(Debug, Clone)]
struct Bucket {
    manifests: BTreeMap<String, Manifest>,
    objects: BTreeSet<String>,
}

impl Bucket {
    fn of(found: &Found) -> Bucket {
        Bucket {
            manifests: found.manifests.iter().cloned().collect(),
            objects: found.fragments.iter().map(|f| f.key.clone()).collect(),
        }
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Put { key, manifest } => {
                self.manifests.insert(key.clone(), manifest.clone());
            }
            Step::Delete { keys, .. } => {
                for k in keys {
                    self.manifests.remove(k);
                    self.objects.remove(k);
                }
            }
        }
    }

    /// No manifest names a missing fragment.
    fn consistent(&self) -> Result<(), String> {
        for (key, m) in &self.manifests {
            for f in &m.fragments {
                let fk = fragment_key(CH, f.k);
                if !self.objects.contains(&fk) {
                    return Err(format!("{key} names deleted {fk}"));
                }
            }
        }
        Ok(())
    }

    fn found(&self) -> Found {
        Found {
            manifests: self
                .manifests
                .iter()
                .map(|(k, m)| (k.clone(), m.clone()))
                .collect(),
            fragments: self.objects.iter().cloned().map(listed).collect(),
            ..Found::default()
        }
    }
}

fn scenario() -> impl Strategy<Value = (Found, u64, u64, bool, usize, usize)> {
    (
        prop::collection::vec((1u64..50, 0usize..12, 1usize..5), 0..6),
        prop::collection::vec(0u64..400, 0..4),
        0u64..200,
        any::<bool>(),
        1usize..6,
        0usize..4,
    )
        .prop_map(|(sessions, orphans, period, live, batch, window)| {
            let mut manifests = Vec::new();
            let mut at = 0u64;
            for (i, (gap, n, chunk)) in sessions.into_iter().enumerate() {
                at += gap * 1000;
                manifests.extend(recording(&format!("r{i}"), at, n, chunk));
                at += n as u64 * 2000;
            }
            let orphans: Vec<u64> = orphans.into_iter().map(|o| o * 1000 + 1).collect();
            let now = at + 10_000;
            (
                found_of(manifests, &orphans),
                now,
                period,
                live,
                batch,
                window,
            )
        })
}

proptest! {
    #[test]
    fn every_prefix_of_a_plan_leaves_a_consistent_bucket(
        (found, now, period, live, batch, window) in scenario()
    ) {
        let i = Inputs { window_segments: window, ..inputs(now, period, live) };
        let p = plan(&found, &i, batch);
        let mut bucket = Bucket::of(&found);
        bucket.consistent().map_err(TestCaseError::fail)?;
        let mut phase = Phase::Index;
        for step in &p.steps {
            prop_assert!(step.phase() >= phase, "phases in order");
            phase = step.phase();
            if let Step::Delete { keys, .. } = step {
                prop_assert!(keys.len() <= batch);
            }
            bucket.apply(step);
            bucket.consistent().map_err(TestCaseError::fail)?;
        }
        // Nothing younger than the cutoff; of the live recording, nothing of
        // its newest chunk, and closed chunks only whole, ended by the cutoff
        // and the live guard.
        let cutoff = cutoff_ms(now, period).unwrap_or(0);
        let newest = found.manifests.iter().max_by_key(|(k, _)| k.clone());
        let gone = deleted(&p);
        for key in &gone {
            if let Some((_, ms)) = crate::layout::parse_fragment_key(key) {
                prop_assert!(ms < cutoff, "{key} is not older than {cutoff}");
            }
        }
        if live && let Some((newest_key, newest_m)) = newest {
            prop_assert!(!gone.contains(newest_key), "{newest_key} is the live chunk");
            for (key, m) in &found.manifests {
                if m.session != newest_m.session {
                    continue;
                }
                let frags: Vec<String> =
                    m.fragments.iter().map(|f| fragment_key(CH, f.k)).collect();
                if key == newest_key || !gone.contains(key) {
                    for f in &frags {
                        prop_assert!(!gone.contains(f), "{f} of kept live chunk {key}");
                    }
                    continue;
                }
                for (f, k) in m.fragments.iter().zip(&frags) {
                    prop_assert!(gone.contains(k), "closed chunk {key} taken without {k}");
                    let guard = live_guard_ms(window, 2_000);
                    prop_assert!(f.k + f.d <= cutoff && f.k + f.d <= now.saturating_sub(guard));
                }
            }
            prop_assert!(
                p.steps.iter().all(|s| match s {
                    Step::Put { manifest, .. } => manifest.session != newest_m.session,
                    Step::Delete { .. } => true,
                }),
                "a live chunk rewritten"
            );
        }
        // Resumable: planning again over the result plans nothing.
        let again = plan(&bucket.found(), &i, batch);
        prop_assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_crash_anywhere_then_a_fresh_plan_finishes_the_sweep(
        (found, now, period, live, batch, window) in scenario(),
        cut in 0usize..20,
    ) {
        let i = Inputs { window_segments: window, ..inputs(now, period, live) };
        let full = plan(&found, &i, batch);
        let mut bucket = Bucket::of(&found);
        for step in full.steps.iter().take(cut) {
            bucket.apply(step);
        }
        let rest = plan(&bucket.found(), &i, batch);
        for step in &rest.steps {
            bucket.apply(step);
            bucket.consistent().map_err(TestCaseError::fail)?;
        }
        let mut done = Bucket::of(&found);
        for step in &full.steps {
            done.apply(step);
        }
        prop_assert_eq!(bucket.objects, done.objects);
        prop_assert_eq!(bucket.manifests, done.manifests);
    }
}
