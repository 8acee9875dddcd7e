//! The bucket against nginx's output: what a test's [`Ledger`] recorded
//! nginx writing, compared with the fragments stored under `CHANNEL/` in
//! [`BUCKET`] and with every playlist version a
//! [`PlaylistWatch`](super::playlist_watch::PlaylistWatch) saw.
//! Shared by the pipeline tests and the compose stack's test.

use std::collections::BTreeMap;

use super::BUCKET;
use super::fragments::{Copy, Ledger, sha256_hex};
use super::playlist_watch::Observed;
use super::s3::S3;

/// A fragment in the bucket, matched to the fragment nginx wrote.
#[derive(Debug)]
pub struct StoredFragment {
    pub key: String,
    pub key_ms: u64,
    pub sha256: String,
    /// The version nginx wrote with these bytes.
    pub copy: Copy,
}

/// What [`assert_bucket_matches`] also demands of the final playlist.
#[derive(Clone, Copy, PartialEq)]
pub enum FinalPlaylist {
    /// Lists every stored fragment, in key order (the window holds them all).
    ListsAll,
    /// Slides: only its keys' order and existence are checked (by the watch).
    Window,
}

/// Compares `CHANNEL/*.ts` in the bucket with what nginx wrote (the ledger)
/// and what the playlist watch saw, and panics listing every violation:
/// - every stored fragment equals, byte for byte, a fragment nginx closed,
///   under a key at or shortly after that fragment's name (epoch ms);
/// - no fragment version is stored twice;
/// - every fragment version an nginx playlist listed is stored;
/// - every stored fragment appeared in some playlist version;
/// - the final playlist ended, and with [`FinalPlaylist::ListsAll`] lists
///   exactly the stored fragments in key order.
///
/// Returns the stored fragments in key order.
pub async fn assert_bucket_matches(
    ledger: &Ledger,
    s3: &S3,
    channel: &str,
    observed: &Observed,
    final_playlist: FinalPlaylist,
) -> Vec<StoredFragment> {
    ledger.assert_complete();
    let copies = ledger.copies();
    let objects = s3.list(BUCKET, &format!("{channel}/")).await;
    let mut problems = Vec::new();
    let mut stored = Vec::new();
    // Copy index → the keys holding it.
    let mut keys_of: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (key, _) in objects
        .iter()
        .filter(|(k, _)| crate::common::is_fragment_key(k))
    {
        let key_ms: u64 = key
            .strip_prefix(&format!("{channel}/"))
            .and_then(|n| n.strip_suffix(".ts"))
            .filter(|d| d.len() == 13)
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("{key} is not CHANNEL/<13-digit epoch ms>.ts"));
        let sha256 = sha256_hex(&s3.get(BUCKET, key).await);
        // Two pushes of the same test pattern give byte-identical fragments:
        // the version meant is the one that started last before the key.
        let same_bytes = copies
            .iter()
            .enumerate()
            .filter(|(_, c)| c.sha256 == sha256);
        let Some((i, copy)) = same_bytes
            .clone()
            .filter(|(_, c)| name_ms(&c.name).is_some_and(|n| n <= key_ms))
            .max_by_key(|(_, c)| name_ms(&c.name))
            .or_else(|| same_bytes.clone().next())
        else {
            problems.push(format!("{key} matches no fragment nginx wrote (altered?)"));
            continue;
        };
        if !name_ms(&copy.name).is_some_and(|n| (n..n + 10_000).contains(&key_ms)) {
            problems.push(format!(
                "{key} holds nginx's {}/{}: the key is not its start time",
                copy.session, copy.name
            ));
        }
        keys_of.entry(i).or_default().push(key);
        stored.push(StoredFragment {
            key: key.clone(),
            key_ms,
            sha256,
            copy: copy.clone(),
        });
    }
    for (i, keys) in keys_of.iter().filter(|(_, k)| k.len() > 1) {
        let c = &copies[*i];
        problems.push(format!(
            "nginx's {}/{} is stored {} times: {keys:?}",
            c.session,
            c.name,
            keys.len()
        ));
    }
    let missing: Vec<String> = copies
        .iter()
        .enumerate()
        .filter(|(i, c)| c.listed && !keys_of.contains_key(i))
        .map(|(_, c)| {
            format!(
                "{}/{} ({} bytes, copy {})",
                c.session,
                c.name,
                c.size,
                c.path.display()
            )
        })
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} fragment(s) nginx listed are not in the bucket:\n  {}",
            missing.len(),
            missing.join("\n  ")
        ));
    }
    let ever_listed = observed.all_keys();
    let never: Vec<&str> = stored
        .iter()
        .map(|s| s.key.as_str())
        .filter(|k| !ever_listed.contains(*k))
        .collect();
    if !never.is_empty() {
        problems.push(format!("stored but in no playlist version seen: {never:?}"));
    }
    let last = observed.latest().expect("no playlist seen");
    if !last.playlist.ended {
        problems.push("the final playlist has no #EXT-X-ENDLIST".into());
    }
    if final_playlist == FinalPlaylist::ListsAll {
        let all: Vec<&str> = stored.iter().map(|s| s.key.as_str()).collect();
        if last.keys != all {
            problems.push(format!(
                "the final playlist does not list exactly the stored fragments:\n  listed {:?}\n  stored {all:?}",
                last.keys
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the bucket does not hold what nginx wrote ({} fragment versions recorded, {} stored):\n{}\n\
         final playlist:\n{}",
        copies.len(),
        stored.len(),
        problems.join("\n"),
        last.text
    );
    stored
}

/// The epoch ms of a `system`-named fragment (`1732571234567.ts`).
fn name_ms(name: &str) -> Option<u64> {
    name.strip_suffix(".ts")?.parse().ok()
}
