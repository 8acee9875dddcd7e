//! The sweep's decisions for one channel, without I/O: from what the
//! driver listed and read (manifests, fragment, part, playlist and snapshot
//! keys), the time, the channel's period and whether it is live, the
//! ordered steps that delete what is older than the period.
//!
//! # Invariants (checked by the proptest below)
//!
//! - Executed in order, every prefix of the plan leaves no remaining
//!   manifest naming a deleted fragment: every manifest that names an
//!   expired fragment is rewritten without it or deleted in
//!   [`Phase::Index`], and fragments go only in [`Phase::Media`], after.
//!   Stored playlists naming an expired fragment go in the first phase too.
//! - Of a live recording only closed chunks go: when the channel is live,
//!   its newest manifest (the chunk the pipeline still rewrites) and
//!   everything keyed at or after its start are kept. An earlier chunk of
//!   that recording is closed (the pipeline starts a chunk only once the one
//!   before is stored full, and never writes that one again); it goes whole
//!   (manifest, then its fragments and parts) once every fragment in it
//!   ended by the cutoff and by `now -` [`live_guard_ms`], or not at all.
//! - Nothing younger than the cutoff (`now - period`) is planned: a fragment
//!   goes when it ended by the cutoff (a manifest's duration), or, named by
//!   no manifest, when it started before it.
//! - Executing a plan and planning again with the same inputs plans
//!   nothing: a sweep cut short (a crash) is finished by the next one,
//!   started from scratch; no cursor is kept.

use std::collections::{HashMap, HashSet};

use crate::index::{IndexedFragment, Manifest};

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub key: String,
    pub size: u64,
    /// Its LastModified, epoch ms (0 when the store did not say).
    pub modified_ms: u64,
}

/// A stored playlist under the channel (`CHANNEL/<name>.m3u8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaylistSeen {
    pub object: Listed,
    /// The earliest fragment it names (epoch ms); `None`: names none.
    pub earliest_ms: Option<u64>,
}

/// What the driver found for one channel.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    /// The key of the channel's newest manifest, wherever it starts (the
    /// live recording's, or the one before it, when the channel is live).
    pub newest_manifest: Option<String>,
    /// Manifest chunks (key and content) that start before the cutoff.
    pub manifests: Vec<(String, Manifest)>,
    /// Fragment objects (`CHANNEL/<ms>.ts`) that start before the cutoff.
    pub fragments: Vec<Listed>,
    /// LL-HLS part objects (`CHANNEL/.ll/…`).
    pub parts: Vec<Listed>,
    /// Playlists directly under `CHANNEL/`.
    pub playlists: Vec<PlaylistSeen>,
    /// Snapshot objects under the channel's snapshot prefix (in
    /// [`Where::Snapshots`]).
    pub snapshots: Vec<Listed>,
}

/// The decision's inputs besides what was found.
#[derive(Debug, Clone)]
pub(crate) struct Inputs<'a> {
    pub channel: &'a str,
    pub now_ms: u64,
    /// Seconds; 0 keeps everything.
    pub period_secs: u64,
    /// The channel is live (here or on another node) or still being stored
    /// here.
    pub live: bool,
    /// Playlist object names (under the channel) kept while it is live.
    pub live_playlists: &'a [String],
    /// Segments in the live playlist window (`[live] window_segments`).
    /// While live, a closed chunk of the live recording goes only once its
    /// last fragment ended [`live_guard_ms`] before `now`: the span the live
    /// window, its LL-HLS parts and players still reading it may name,
    /// whatever the period.
    pub window_segments: usize,
}

/// Which bucket a delete goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Where {
    /// The channel's own bucket.
    Channel,
    /// The channel's snapshot destination bucket.
    Snapshots,
}

/// The two phases; every step of the first comes before any of the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Manifests rewritten or deleted, playlists deleted.
    Index,
    /// Fragments, parts and snapshots deleted.
    Media,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Replace the manifest at `key` by `manifest` (fewer fragments).
    Put { key: String, manifest: Manifest },
    /// Delete these keys (one DeleteObjects request); `bytes` is what the
    /// listing said they weigh (0 for keys known only from a manifest).
    Delete {
        phase: Phase,
        place: Where,
        keys: Vec<String>,
        bytes: u64,
    },
}

impl Step {
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        match self {
            Step::Put { .. } => Phase::Index,
            Step::Delete { phase, .. } => *phase,
        }
    }
}

/// The steps in execution order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    /// The cutoff the plan was made for (epoch ms); 0 when nothing expires.
    pub cutoff_ms: u64,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Keys deleted and bytes they weighed.
    #[cfg(test)]
    pub(crate) fn totals(&self) -> (usize, u64) {
        self.steps.iter().fold((0, 0), |(n, b), s| match s {
            Step::Delete { keys, bytes, .. } => (n + keys.len(), b + bytes),
            Step::Put { .. } => (n, b),
        })
    }
}

/// The oldest time kept: `now - period`; `None` when the period keeps
/// everything (0).
pub(crate) fn cutoff_ms(now_ms: u64, period_secs: u64) -> Option<u64> {
    (period_secs > 0).then(|| now_ms.saturating_sub(period_secs.saturating_mul(1000)))
}

/// The plan for one channel; deletes come in batches of at most `batch`
/// keys (at least 1).
pub(crate) fn plan(found: &Found, inputs: &Inputs<'_>, batch: usize) -> Plan {
    let Some(cutoff) = cutoff_ms(inputs.now_ms, inputs.period_secs) else {
        return Plan::default();
    };
    let batch = batch.max(1);
    // Live: the newest manifest is (or comes before) the live recording's
    // current chunk; its recording and everything from its start are kept.
    let newest = found
        .manifests
        .iter()
        .map(|(k, _)| k)
        .chain(found.newest_manifest.as_ref())
        .filter_map(|k| crate::layout::parse_manifest_key(k))
        .max_by_key(|(ms, _)| *ms);
    let (floor, kept_recording) = match (inputs.live, newest) {
        (false, _) => (u64::MAX, None),
        (true, Some((ms, recording))) => (ms, Some(recording)),
        (true, None) => (0, None),
    };
    let kept = |ms: u64| ms >= floor || ms >= cutoff;
    // The live recording's longest fragment read: its live window's
    // segments are as long.
    let longest_live = found
        .manifests
        .iter()
        .filter(|(_, m)| kept_recording == Some(m.session.as_str()))
        .flat_map(|(_, m)| m.fragments.iter().map(|f| f.d))
        .max()
        .unwrap_or(0);
    let expired = |f: &IndexedFragment| f.k.saturating_add(f.d) <= cutoff && !kept(f.k);

    let mut index_deletes: Vec<(String, u64)> = Vec::new();
    let mut puts: Vec<Step> = Vec::new();
    let mut media: Vec<(String, u64)> = Vec::new();
    // Every fragment some remaining manifest still names: never deleted.
    let mut still_named: HashSet<u64> = HashSet::new();
    let mut named: HashSet<u64> = HashSet::new();
    // The last fragment of the live recording's closed chunks planned: its
    // parts up to there go with them.
    let mut closed_until: Option<u64> = None;
    for (key, m) in &found.manifests {
        let Some((start, _)) = crate::layout::parse_manifest_key(key) else {
            continue;
        };
        named.extend(m.fragments.iter().map(|f| f.k));
        if kept(start) {
            still_named.extend(m.fragments.iter().map(|f| f.k));
            continue;
        }
        if kept_recording == Some(m.session.as_str()) {
            // A closed chunk of the live recording (it starts before the
            // newest manifest): whole or not at all, never rewritten.
            let guard = inputs
                .now_ms
                .saturating_sub(live_guard_ms(inputs.window_segments, longest_live));
            let whole = !m.fragments.is_empty()
                && m.fragments
                    .iter()
                    .all(|f| expired(f) && f.k.saturating_add(f.d) <= guard);
            if whole {
                index_deletes.push((key.clone(), 0));
                media.extend(
                    m.fragments
                        .iter()
                        .map(|f| (crate::layout::fragment_key(inputs.channel, f.k), 0)),
                );
                closed_until = closed_until.max(m.fragments.iter().map(|f| f.k).max());
            } else {
                still_named.extend(m.fragments.iter().map(|f| f.k));
            }
            continue;
        }
        let (gone, left): (Vec<IndexedFragment>, Vec<IndexedFragment>) =
            m.fragments.iter().partition(|f| expired(f));
        still_named.extend(left.iter().map(|f| f.k));
        if left.is_empty() {
            // Wholly expired (or an empty chunk from before the cutoff).
            index_deletes.push((key.clone(), 0));
        } else if !gone.is_empty() {
            puts.push(Step::Put {
                key: key.clone(),
                manifest: Manifest {
                    fragments: left,
                    ..m.clone()
                },
            });
        }
        media.extend(
            gone.iter()
                .map(|f| (crate::layout::fragment_key(inputs.channel, f.k), 0)),
        );
    }
    let planned: HashMap<String, usize> = media
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    for f in &found.fragments {
        let Some((ch, ms)) = crate::layout::parse_fragment_key(&f.key) else {
            continue;
        };
        if ch != inputs.channel {
            continue;
        }
        if let Some(&i) = planned.get(&f.key) {
            // Named by an expiring manifest: count its size.
            media[i].1 = f.size;
            continue;
        }
        // Named by no manifest (a crash between phases, or a fragment stored
        // before any manifest): goes once it started before the cutoff.
        if !named.contains(&ms) && ms < cutoff && !kept(ms) {
            media.push((f.key.clone(), f.size));
        }
    }
    media.retain(|(k, _)| {
        crate::layout::parse_fragment_key(k).is_none_or(|(_, ms)| !still_named.contains(&ms))
    });
    for p in &found.playlists {
        let name = p
            .object
            .key
            .strip_prefix(inputs.channel)
            .and_then(|k| k.strip_prefix('/'))
            .unwrap_or(&p.object.key);
        let protected = inputs.live && inputs.live_playlists.iter().any(|l| l == name);
        if !protected && p.earliest_ms.is_some_and(|ms| ms < cutoff) {
            index_deletes.push((p.object.key.clone(), p.object.size));
        }
    }
    for part in &found.parts {
        let Some(recording) = crate::layout::parse_part_recording(inputs.channel, &part.key) else {
            continue;
        };
        let ms = part_ms(&part.key);
        let old = ms.is_some_and(|ms| ms < cutoff && !kept(ms));
        let closed = ms.is_some_and(|ms| closed_until.is_some_and(|c| ms <= c));
        if old && (kept_recording != Some(recording) || closed) {
            media.push((part.key.clone(), part.size));
        }
    }
    let mut snapshots = Vec::new();
    for s in &found.snapshots {
        let ms = snapshot_ms(&s.key).unwrap_or(s.modified_ms);
        if ms < cutoff && !kept(ms) && s.modified_ms < cutoff {
            snapshots.push((s.key.clone(), s.size));
        }
    }

    let mut steps = puts;
    steps.extend(batches(index_deletes, Phase::Index, Where::Channel, batch));
    steps.extend(batches(media, Phase::Media, Where::Channel, batch));
    steps.extend(batches(snapshots, Phase::Media, Where::Snapshots, batch));
    Plan {
        steps,
        cutoff_ms: cutoff,
    }
}

/// How long before now a closed chunk of the live recording must have
/// ended before it goes: twice the live window plus three fragments (LL-HLS
/// parts and stored playlists in flight), at the recording's `longest`
/// fragment (ms).
pub(crate) fn live_guard_ms(window_segments: usize, longest: u64) -> u64 {
    (window_segments as u64)
        .saturating_mul(2)
        .saturating_add(3)
        .saturating_mul(longest)
}

fn batches(items: Vec<(String, u64)>, phase: Phase, place: Where, batch: usize) -> Vec<Step> {
    items
        .chunks(batch)
        .map(|c| Step::Delete {
            phase,
            place,
            keys: c.iter().map(|(k, _)| k.clone()).collect(),
            bytes: c.iter().map(|(_, b)| b).sum(),
        })
        .collect()
}

/// How far fragments may be listed as candidates when only the first
/// `read` of the `expiring` manifest keys (in key order) are read this
/// round: up to the start of the first unread one, which may name any
/// fragment from there on, and never past `cutoff`.
pub(crate) fn unnamed_horizon<K: AsRef<str>>(expiring: &[K], read: usize, cutoff: u64) -> u64 {
    expiring
        .get(read)
        .and_then(|k| crate::layout::parse_manifest_key(k.as_ref()))
        .map_or(cutoff, |(ms, _)| ms.min(cutoff))
}

/// The nginx fragment ms in a part key (`…/<13 digits>-<3 digits>.ts`).
fn part_ms(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?.strip_suffix(".ts")?;
    let (ms, _) = name.split_once('-')?;
    (ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()))
        .then(|| ms.parse().ok())
        .flatten()
}

/// The ms in a snapshot key (`…/<13 digits>.jpg`); `None` for `latest.jpg`.
fn snapshot_ms(key: &str) -> Option<u64> {
    let ms = key.rsplit('/').next()?.strip_suffix(".jpg")?;
    (ms.len() == 13 && ms.bytes().all(|b| b.is_ascii_digit()))
        .then(|| ms.parse().ok())
        .flatten()
}

/// The earliest fragment a playlist's text names (a URI line whose last
/// path segment, before any query, is `<13 digits>.ts`).
pub(crate) fn earliest_fragment(text: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let path = l.trim().split(['?', '#']).next()?;
            crate::layout::parse_fragment_name(path.rsplit('/').next()?)
        })
        .min()
}

/// The keys a stored master playlist (`CHANNEL/master.m3u8`) names: its
/// variant URIs (lines that are not tags, and `URI="…"` attributes of tags
/// such as `EXT-X-MEDIA`), relative to the channel (`<playlist>`,
/// `<rung>/<playlist>`), query and fragment dropped. Absolute URIs and ones
/// that leave the channel (`/…`, `..`) name nothing in the bucket and are
/// left out.
pub(crate) fn master_names(channel: &str, text: &str) -> Vec<String> {
    let mut uris: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            if let Some((_, rest)) = line.split_once("URI=\"")
                && let Some((uri, _)) = rest.split_once('"')
            {
                uris.push(uri);
            }
        } else {
            uris.push(line);
        }
    }
    let mut names: Vec<String> = uris
        .into_iter()
        .filter_map(|u| u.split(['?', '#']).next())
        .filter(|u| {
            !u.is_empty()
                && !u.starts_with('/')
                && !u.contains("://")
                && !u
                    .split('/')
                    .any(|seg| seg == ".." || seg == "." || seg.is_empty())
        })
        .map(|u| format!("{channel}/{u}"))
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests;
