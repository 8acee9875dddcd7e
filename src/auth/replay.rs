//! One-time push URLs (`auth.one_time_push`): each signed push URL is
//! accepted by `on_publish` once; a second publish with the same signature is
//! refused with `replayed` until the URL expires (after that it is refused as
//! `expired` anyway, so it is forgotten).
//!
//! What is remembered is SHA-256(key id, NUL, signature), never the signature
//! itself: within its lifetime a signature is a credential. The set is saved
//! to `STATE_DIR/push-signatures.json` (write, fsync, rename) before the push
//! is approved, so a restart does not reopen used URLs. Pushes are rare next
//! to fragments, so a whole-file rewrite per approval is cheap.
//!
//! Off by default, as on OSS: an encoder that reconnects after a network
//! drop reuses its URL, and one-time mode refuses it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Used push signatures, each until its URL's expiry (plus the clock skew
/// the verifier allows).
pub struct PushReplay {
    path: PathBuf,
    seen: Mutex<HashMap<String, u64>>,
}

/// Why a first use could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("this push URL was already used")]
    Replayed,
    #[error("cannot save used push signatures to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl PushReplay {
    /// Loads the saved set; a missing or unreadable file starts empty (and an
    /// unreadable one is logged).
    pub fn open(path: &Path) -> PushReplay {
        let seen = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "used push signatures unreadable; starting empty");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        PushReplay {
            path: path.to_owned(),
            seen: Mutex::new(seen),
        }
    }

    /// Records the first use of `signature` by `key_id`, valid until
    /// `forget_after` (unix seconds); `Replayed` if it was used before.
    pub fn first_use(
        &self,
        key_id: &str,
        signature: &str,
        forget_after: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let id = fingerprint(key_id, signature);
        if !record(&mut seen, id.clone(), forget_after, now) {
            return Err(ReplayError::Replayed);
        }
        if let Err(source) = save(&self.path, &seen) {
            // Not saved: do not approve, or a restart would accept it again.
            seen.remove(&id);
            return Err(ReplayError::Save {
                path: self.path.clone(),
                source,
            });
        }
        Ok(())
    }
}

/// The decision, without I/O: drops what has expired, then records `id`
/// unless it is present. `false` for a replay.
fn record(seen: &mut HashMap<String, u64>, id: String, forget_after: u64, now: u64) -> bool {
    seen.retain(|_, until| *until >= now);
    if seen.contains_key(&id) {
        return false;
    }
    seen.insert(id, forget_after);
    true
}

fn fingerprint(key_id: &str, signature: &str) -> String {
    let mut h = Sha256::new();
    h.update(key_id.as_bytes());
    h.update([0]);
    h.update(signature.as_bytes());
    hex::encode(h.finalize())
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

    #[test]
    fn second_use_is_refused_until_forgotten() {
        let mut seen = HashMap::new();
        assert!(record(&mut seen, "a".into(), 100, 10));
        assert!(!record(&mut seen, "a".into(), 100, 50));
        assert!(record(&mut seen, "b".into(), 100, 50));
        // Past its expiry the entry is dropped (the verifier refuses the URL
        // as expired by then).
        assert!(record(&mut seen, "a".into(), 300, 101));
    }

    #[test]
    fn survives_a_restart_and_stores_no_signature() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("push-signatures.json");
        let r = PushReplay::open(&path);
        r.first_use("GK1", "c2lnbmF0dXJl", u64::MAX, 1).unwrap();
        assert!(matches!(
            r.first_use("GK1", "c2lnbmF0dXJl", u64::MAX, 2),
            Err(ReplayError::Replayed)
        ));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("c2lnbmF0dXJl"));
        let again = PushReplay::open(&path);
        assert!(matches!(
            again.first_use("GK1", "c2lnbmF0dXJl", u64::MAX, 3),
            Err(ReplayError::Replayed)
        ));
        again.first_use("GK2", "c2lnbmF0dXJl", u64::MAX, 3).unwrap();
    }
}
