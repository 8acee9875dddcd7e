//! One-time push URLs (`auth.one_time_push`): each signed push URL admits
//! one push on this livebucket; a later publish with the same grant is
//! refused with `replayed` until the URL expires plus `auth.clock_skew_secs`
//! (after that it is refused as `expired` anyway, so it is forgotten). The
//! set is this node's, in its state directory: in cluster mode each node
//! admits a URL once.
//!
//! A grant is its verified HMAC tag ([`GrantTag`]), not the text of its
//! `Signature` parameter: the accepted spellings of one tag (a `/` written as
//! `z`, a raw `+`) are one grant. What is remembered is the tag's
//! [`GrantTag::fingerprint`], never the tag: within its lifetime it is a
//! credential.
//!
//! A URL is spent only when its push is admitted: `on_publish` first
//! [`PushReplay::reserve`]s the grant (so a concurrent use of the same URL is
//! refused), and [`Reservation::commit`]s it once every other check passed
//! and the session is begun; a push refused in between (spool full, channel
//! live, cluster unavailable) drops the reservation and leaves the URL
//! usable. This is the one part of `auth` that does I/O: the spent set is
//! read from `STATE_DIR/push-signatures.json` at start, and rewritten
//! (temp file, fsync, rename, fsync of the directory) at every commit, before
//! the push is approved, so a restart does not reopen used URLs. Pushes are
//! rare next to fragments, so a whole-file rewrite per approval is cheap.
//!
//! Sets saved before grants were keyed by tag hold fingerprints of the
//! signature text; [`legacy_ids`] checks those spellings too until they
//! expire.
//!
//! Off by default, as on OSS: an encoder that reconnects after a network
//! drop reuses its URL, and one-time mode refuses it.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::push::GrantTag;

/// Used push grants, each until its URL's expiry (plus the clock skew the
/// verifier allows), and the grants of pushes being admitted right now.
pub(crate) struct PushReplay {
    path: PathBuf,
    seen: Mutex<Seen>,
}

/// The decision's state, without I/O.
#[derive(Default)]
struct Seen {
    /// Spent grants (fingerprints) → unix seconds after which they are
    /// forgotten; this is what is saved.
    spent: HashMap<String, u64>,
    /// Grants reserved by a push being admitted.
    held: HashSet<String>,
}

/// Why a grant could not be reserved or spent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplayError {
    #[error("this push URL was already used")]
    Replayed,
    #[error("this push URL is being used by another publish right now")]
    InUse,
    #[error("cannot save used push signatures to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A grant held for one push being admitted: [`Reservation::commit`] spends
/// it; dropped uncommitted, it is released and the URL stays usable.
pub(crate) struct Reservation<'a> {
    replay: &'a PushReplay,
    id: String,
    forget_after: u64,
    committed: bool,
}

impl PushReplay {
    /// Loads the saved set; a missing or unreadable file starts empty (and an
    /// unreadable one is logged).
    pub(crate) fn open(path: &Path) -> PushReplay {
        let spent = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "used push signatures unreadable; starting empty");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        PushReplay {
            path: path.to_owned(),
            seen: Mutex::new(Seen {
                spent,
                held: HashSet::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the grant `tag` of `key_id` for a push being admitted, to be
    /// spent until `forget_after` (unix seconds): `Replayed` if it was spent
    /// (in any spelling), `InUse` if another publish holds it. `signature`
    /// is the parameter's text as sent, for sets saved by older versions.
    pub(crate) fn reserve(
        &self,
        key_id: &str,
        tag: &GrantTag,
        signature: &str,
        forget_after: u64,
        now: u64,
    ) -> Result<Reservation<'_>, ReplayError> {
        let id = tag.fingerprint(key_id);
        let legacy = legacy_ids(key_id, tag, signature);
        reserve(&mut self.lock(), &id, &legacy, now)?;
        Ok(Reservation {
            replay: self,
            id,
            forget_after,
            committed: false,
        })
    }
}

impl Reservation<'_> {
    /// Spends the grant and saves the set; on a failed save the grant is
    /// released (the push must then be refused: a restart would not know it
    /// was used).
    pub(crate) fn commit(mut self) -> Result<(), ReplayError> {
        let replay = self.replay;
        let mut seen = replay.lock();
        seen.held.remove(&self.id);
        seen.spent.insert(self.id.clone(), self.forget_after);
        self.committed = true;
        if let Err(source) = save(&replay.path, &seen.spent) {
            seen.spent.remove(&self.id);
            return Err(ReplayError::Save {
                path: replay.path.clone(),
                source,
            });
        }
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.replay.lock().held.remove(&self.id);
        }
    }
}

/// The decision, without I/O: drops what has expired, then holds `id`
/// unless it (or one of its `legacy` ids) was spent or is held.
fn reserve(seen: &mut Seen, id: &str, legacy: &[String], now: u64) -> Result<(), ReplayError> {
    seen.spent.retain(|_, until| *until >= now);
    if seen.spent.contains_key(id) || legacy.iter().any(|l| seen.spent.contains_key(l)) {
        return Err(ReplayError::Replayed);
    }
    if !seen.held.insert(id.to_owned()) {
        return Err(ReplayError::InUse);
    }
    Ok(())
}

/// What sets saved before grants were keyed by tag hold for this grant:
/// SHA-256(key id, NUL, signature text) of the text as sent and of the
/// tag's usual spellings (standard base64, with raw `+` read as spaces,
/// and with `/` written as `z`).
fn legacy_ids(key_id: &str, tag: &GrantTag, sent: &str) -> Vec<String> {
    let standard = STANDARD.encode(tag.as_bytes());
    let z = standard.replace('/', "z");
    [
        sent.to_owned(),
        standard.replace('+', " "),
        z.replace('+', " "),
        standard,
        z,
    ]
    .iter()
    .map(|text| {
        let mut h = Sha256::new();
        h.update(key_id.as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        hex::encode(h.finalize())
    })
    .collect()
}

fn save(path: &Path, seen: &HashMap<String, u64>) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(seen).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::push::test_tag;

    #[test]
    fn a_spent_grant_is_refused_until_forgotten() {
        let mut seen = Seen::default();
        assert!(reserve(&mut seen, "a", &[], 10).is_ok());
        seen.held.remove("a");
        seen.spent.insert("a".into(), 100);
        assert!(matches!(
            reserve(&mut seen, "a", &[], 50),
            Err(ReplayError::Replayed)
        ));
        assert!(reserve(&mut seen, "b", &[], 50).is_ok());
        // Past its expiry the entry is dropped (the verifier refuses the URL
        // as expired by then).
        assert!(reserve(&mut seen, "a", &[], 101).is_ok());
    }

    #[test]
    fn a_held_grant_refuses_a_concurrent_use() {
        let mut seen = Seen::default();
        assert!(reserve(&mut seen, "a", &[], 10).is_ok());
        assert!(matches!(
            reserve(&mut seen, "a", &[], 10),
            Err(ReplayError::InUse)
        ));
    }

    #[test]
    fn only_an_admitted_push_spends_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let r = PushReplay::open(&dir.path().join("push-signatures.json"));
        let tag = test_tag(1);
        {
            // Refused later in admission (spool full, channel live, ...):
            // the reservation is dropped, the URL stays usable.
            let held = r.reserve("GK1", &tag, "sig", u64::MAX, 1).unwrap();
            assert!(matches!(
                r.reserve("GK1", &tag, "sig", u64::MAX, 1),
                Err(ReplayError::InUse)
            ));
            drop(held);
        }
        r.reserve("GK1", &tag, "sig", u64::MAX, 2)
            .unwrap()
            .commit()
            .unwrap();
        assert!(matches!(
            r.reserve("GK1", &tag, "sig", u64::MAX, 3),
            Err(ReplayError::Replayed)
        ));
        // The same tag under another key is another grant.
        assert!(r.reserve("GK2", &tag, "sig", u64::MAX, 3).is_ok());
    }

    #[test]
    fn any_spelling_of_a_spent_tag_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = PushReplay::open(&dir.path().join("push-signatures.json"));
        let tag = test_tag(2);
        let standard = STANDARD.encode(tag.as_bytes());
        r.reserve("GK1", &tag, &standard, u64::MAX, 1)
            .unwrap()
            .commit()
            .unwrap();
        for spelling in [standard.replace('/', "z"), standard.replace('+', " ")] {
            assert!(matches!(
                r.reserve("GK1", &tag, &spelling, u64::MAX, 2),
                Err(ReplayError::Replayed)
            ));
        }
    }

    #[test]
    fn survives_a_restart_and_stores_no_signature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("push-signatures.json");
        let r = PushReplay::open(&path);
        let tag = test_tag(3);
        let standard = STANDARD.encode(tag.as_bytes());
        r.reserve("GK1", &tag, &standard, u64::MAX, 1)
            .unwrap()
            .commit()
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&standard));
        assert!(!text.contains(&hex::encode(tag.as_bytes())));
        let again = PushReplay::open(&path);
        assert!(matches!(
            again.reserve("GK1", &tag, &standard, u64::MAX, 3),
            Err(ReplayError::Replayed)
        ));
    }

    #[test]
    fn sets_saved_by_older_versions_still_refuse_their_urls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("push-signatures.json");
        let tag = test_tag(4);
        let z = STANDARD.encode(tag.as_bytes()).replace('/', "z");
        // What the previous version saved: SHA-256(key, NUL, text as sent).
        let mut h = Sha256::new();
        h.update(b"GK1\0");
        h.update(z.as_bytes());
        let old: HashMap<String, u64> = [(hex::encode(h.finalize()), u64::MAX)].into();
        std::fs::write(&path, serde_json::to_vec(&old).unwrap()).unwrap();
        let r = PushReplay::open(&path);
        let standard = STANDARD.encode(tag.as_bytes());
        assert!(matches!(
            r.reserve("GK1", &tag, &standard, u64::MAX, 1),
            Err(ReplayError::Replayed)
        ));
    }
}
