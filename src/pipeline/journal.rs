//! A session's write-ahead journal: one JSON line per step, appended.
//!
//! Written before the step's side effect, so that after a crash the journal
//! knows every key it ever chose for a fragment (a key must never be reused
//! for different bytes) and every duration nginx gave. A torn last line (crash
//! mid-write) is cut off when the journal is opened, so the lines appended
//! after it start on a line of their own and are read at the next start.
//! When a full manifest chunk of the session is stored, the journal is
//! rewritten to a checkpoint plus what is still in flight (right after its
//! channel's window is saved, which then vouches for what the journal
//! forgets), so it does not grow with the session. Appends are not fsync'd: they protect against a
//! crash of livebucket, which the page cache survives; a power cut loses the
//! tmpfs fragments the journal describes anyway.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// Fragment file `name` (size, mtime) is being copied to capture key `key`.
    Captured {
        name: String,
        key: u64,
        size: u64,
        mtime_ns: u64,
        spool: bool,
    },
    /// nginx listed the captured fragment `key` with this duration.
    Listed {
        key: u64,
        extinf: String,
        duration_ms: u64,
        /// nginx's media sequence number of the entry (none for fragments
        /// nginx never listed).
        #[serde(default)]
        seq: Option<u64>,
    },
    /// The fragment `key` is stored in S3.
    Stored { key: u64 },
    /// First line of a compacted journal: the session's first `base`
    /// fragments are stored, published, in stored manifests and forgotten,
    /// and those before `chunk_start` in closed manifest chunks; nginx's
    /// entries up to `last_seq` were matched; keys up to `last_key` are spent.
    Checkpoint {
        base: u64,
        /// Where the manifest object being written starts (≥ `base`).
        chunk_start: u64,
        last_seq: Option<u64>,
        last_key: u64,
        /// Names matched by estimate that nginx has not listed since.
        #[serde(default)]
        estimated: Vec<String>,
    },
}

pub(crate) struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Opens (creating) the journal and returns what it already holds.
    pub(crate) fn open(path: &Path) -> std::io::Result<(Journal, Vec<Entry>)> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (entries, valid) = read_entries(&bytes);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - valid,
                "cutting a torn journal line"
            );
            // Appends (O_APPEND) then start right after the last whole line.
            file.set_len(valid as u64)?;
        }
        Ok((
            Journal {
                path: path.to_owned(),
                file,
            },
            entries,
        ))
    }

    pub(crate) fn append(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write call per line keeps lines whole in the common case.
        self.file.write_all(&line)
    }

    /// Replaces the journal with `entries` (compaction): written to a temp
    /// file and renamed over, so a crash leaves the old or the new journal.
    pub(crate) fn rewrite(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let mut body = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut body, e).map_err(std::io::Error::other)?;
            body.push(b'\n');
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, &body)?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        Ok(())
    }
}

/// The entries of whole, parsable lines up to the first that is not, and
/// how many bytes they take.
fn read_entries(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut valid = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let Some(body) = line.strip_suffix(b"\n") else {
            break;
        };
        match serde_json::from_slice::<Entry>(body) {
            Ok(e) => entries.push(e),
            Err(_) => break,
        }
        valid += line.len();
    }
    (entries, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let (mut j, old) = Journal::open(&p).unwrap();
        assert!(old.is_empty());
        let a = Entry::Captured {
            name: "1.ts".into(),
            key: 1,
            size: 3,
            mtime_ns: 9,
            spool: false,
        };
        let b = Entry::Listed {
            key: 1,
            extinf: "2.000".into(),
            duration_ms: 2000,
            seq: Some(4),
        };
        j.append(&a).unwrap();
        j.append(&b).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"t\":\"sto")
            .unwrap();
        let (mut j, entries) = Journal::open(&p).unwrap();
        assert_eq!(entries, vec![a.clone(), b.clone()]);
        // What is appended after a torn line is read at the next start.
        let c = Entry::Stored { key: 1 };
        j.append(&c).unwrap();
        drop(j);
        let (_, entries) = Journal::open(&p).unwrap();
        assert_eq!(entries, vec![a, b, c]);
    }
}
